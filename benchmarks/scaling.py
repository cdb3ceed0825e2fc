#!/usr/bin/env python
"""MPI scaling of the FE core beyond 2 ranks: strong and weak scaling of one P1 elasticity
solve (CG + GAMG with the rigid-body near-nullspace, solvers/gamg.toml) on a box of
heterogeneous bone (needs no gmsh, so it runs on any machine with dolfinx).

The box [0,20]x[0,20]x[0,40] mm is a `femur.mechanics.verification.prism_bone` under
displacement-controlled axial compression (`femur.mechanics.AxialCompression`, frictionless
end plates); each cell's modulus is 50-2000 MPa, a fixed function of its midpoint (so it is
the same field on any partition): a smooth "trabecular" pattern plus a 1 mm dense "cortical"
rim of 15 GPa, a contrast like the femur's.

* strong scaling: one mesh of ~``--strong-dofs`` DOFs on every rank count;
* weak scaling: ~``--weak-dofs-per-rank`` DOFs per rank.

Per run: DOFs, assembly, AMG setup and solve times, CG iterations, DOF/s/core (end to
end), the reaction force (identical across rank counts to the solver tolerance) and peak
memory per rank. Written to benchmarks/results/scaling.json.

    python benchmarks/scaling.py [--ranks 1,2,4,8,16] [--strong-dofs 2e6] [--weak-dofs-per-rank 2.5e5] [--json]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import finish, peak_rss_mb, run_worker  # noqa: E402

BOX_MM = (20.0, 20.0, 40.0)


def _divisions(dofs: float) -> tuple[int, int, int]:
    """Box divisions (n, n, 2n) whose P1 vector space has about ``dofs`` DOFs."""
    n = max(2, round((dofs / 6.0) ** (1.0 / 3.0) - 1))
    return n, n, 2 * n


def _modulus(mid):
    """Cell moduli (MPa) from cell midpoints (n, 3)."""
    import numpy as np

    x, y, z = mid[:, 0], mid[:, 1], mid[:, 2]
    a, b, _ = BOX_MM
    pattern = 0.5 + 0.5 * np.sin(0.9 * x) * np.sin(0.7 * y + 0.3) * np.cos(0.5 * z)
    E = 50.0 + 1950.0 * pattern**2
    rim = (x < 1.0) | (x > a - 1.0) | (y < 1.0) | (y > b - 1.0)
    return np.where(rim, 15000.0, E)


def worker(dofs: float, solver: str) -> dict:
    import numpy as np

    from femur.core.mpi import MPI  # before dolfinx (loads the MPI library)
    import dolfinx
    from femur.mechanics import AxialCompression
    from femur.mechanics.problem import make_solver
    from femur.mechanics.verification import prism_bone

    comm = MPI.COMM_WORLD
    t0 = time.perf_counter()
    n = _divisions(dofs)
    bone = prism_bone(comm, size=BOX_MM, n=n, cell="tetrahedron", name="scaling_box")
    ncell = bone.num_local_cells
    mid = dolfinx.mesh.compute_midpoints(bone.mesh, 3, np.arange(ncell, dtype=np.int32))
    modulus = _modulus(mid)
    t_mesh = time.perf_counter() - t0

    es, info, _, _ = make_solver(bone, AxialCompression(), modulus, order=1, solver=solver, nu=0.3)
    es.solve()
    last = es.last
    force = abs(float(es.reaction_force(info.load_facets) @ info.direction))
    peaks = comm.gather(peak_rss_mb(), root=0)
    if comm.rank != 0:
        return {}
    total = last.assembly_s + last.setup_s + last.solve_s
    return {
        "ranks": comm.size, "divisions": list(n), "dofs": int(es.dofs), "mesh_s": t_mesh,
        "assembly_s": last.assembly_s, "setup_s": last.setup_s, "solve_s": last.solve_s,
        "total_s": total, "iterations": int(last.iterations),
        "dofs_per_s_per_core": es.dofs / total / comm.size,
        "reaction_force_n": force, "peak_rss_mb_per_rank": max(peaks),
    }


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--ranks", default="1,2,4,8,16")
    ap.add_argument("--strong-dofs", type=float, default=2.0e6)
    ap.add_argument("--weak-dofs-per-rank", type=float, default=2.5e5)
    ap.add_argument("--solver", default="gamg")
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--dofs", type=float, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.worker:
        res = worker(args.dofs, args.solver)
        if res:
            print(json.dumps(res), flush=True)
        return 0
    ranks = [int(r) for r in args.ranks.split(",")]
    script = Path(__file__).resolve()
    strong, weak = [], []
    for r in ranks:
        res = run_worker(script, r, ["--dofs", str(args.strong_dofs), "--solver", args.solver])
        strong.append(res)
        print(f"strong {r:3d} ranks: {res['dofs']:,} DOF {res['total_s']:.2f} s "
              f"({res['iterations']} its)", file=sys.stderr, flush=True)
    for r in ranks:
        res = run_worker(script, r, ["--dofs", str(args.weak_dofs_per_rank * r), "--solver", args.solver])
        weak.append(res)
        print(f"weak   {r:3d} ranks: {res['dofs']:,} DOF {res['total_s']:.2f} s "
              f"({res['iterations']} its)", file=sys.stderr, flush=True)
    base = strong[0]
    for s in strong:
        s["speedup"] = base["total_s"] / s["total_s"]
        s["efficiency"] = s["speedup"] / (s["ranks"] / base["ranks"])
    for w in weak:
        # weak-scaling efficiency: throughput per core relative to the smallest run
        w["efficiency"] = w["dofs_per_s_per_core"] / weak[0]["dofs_per_s_per_core"]
    forces = [s["reaction_force_n"] for s in strong]
    spread = (max(forces) - min(forces)) / max(abs(forces[0]), 1e-300)
    its = [w["iterations"] for w in weak]
    growth = its[-1] / its[0] - 1.0
    checks = {
        "reaction_force_spread_over_ranks": {"value": spread, "target": "<= 1e-6", "ok": spread <= 1e-6},
        "weak_iteration_growth": {"value": growth, "target": "<= 0.20 (DESIGN: 0.1 M to 100 M DOF)",
                                  "ok": growth <= 0.20},
        "weak_efficiency_at_max_ranks": {"value": weak[-1]["efficiency"], "target": ">= 0.80",
                                         "ok": weak[-1]["efficiency"] >= 0.80},
        "dofs_per_s_per_core_max": {"value": max(s["dofs_per_s_per_core"] for s in strong),
                                    "target": ">= 3e4 (science note target 3)",
                                    "ok": max(s["dofs_per_s_per_core"] for s in strong) >= 3e4},
    }
    out = {"benchmark": "scaling", "solver": args.solver, "box_mm": BOX_MM,
           "strong": strong, "weak": weak, "checks": checks,
           "machine": {"cpu_count": os.cpu_count()}}
    return finish("scaling", out, args.json)


if __name__ == "__main__":
    sys.exit(main())
