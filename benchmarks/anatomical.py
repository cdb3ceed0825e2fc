#!/usr/bin/env python
"""Anatomical femur benchmark: building the bone from the shipped meshes, morphing it to a
cohort shape, and one stance solve, next to the parametric femur; 1 and 2 MPI ranks.

Records per mesh and rank count: global cells, P1 DOFs, build time of the reference bone
(first build in the process, which reads the .msh, and a second, cached one), the build
time of a morphed bone (``FemurShape`` of a smaller woman's femur) at the same size, CG
iterations and wall time of a stance solve (70-year-old densities), as JSON in
benchmarks/results/anatomical.json.  Target (issue 11): a cohort patient's femur (morph +
density) in under 5 s at the trial size; the density part is the adaptation's stored
field mapped by reference cell (`femur.geometry.anatomical.reference_cell_index`), here
stood in for by a per-cell array of the same length.

    python benchmarks/anatomical.py [--json] [--ranks 1,2]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import finish, peak_rss_mb, run_worker  # noqa: E402

SHAPE = dict(scale=0.95, head_radius_mm=21.5, neck_length_mm=50.0, neck_width_mm=30.0,
             neck_shaft_angle_deg=127.0, anteversion_deg=15.0)


def worker(model: str, size_mm: float) -> dict:
    import numpy as np

    from femur.core.mpi import MPI
    from femur.geometry.density import assign_density
    from femur.geometry.anatomical import AnatomicalFemur, FemurShape, reference_cell_index
    from femur.geometry.femur_model import ProximalFemur
    from femur.mechanics import SingleLegStance, solve

    comm = MPI.COMM_WORLD
    res = {"model": model, "mesh_size_mm": size_mm, "ranks": comm.size}
    comm.barrier()
    t0 = time.perf_counter()
    if model == "anatomical":
        bone = AnatomicalFemur(mesh_size_mm=size_mm).build(comm)
        res["build_first_s"] = time.perf_counter() - t0
        comm.barrier()
        t0 = time.perf_counter()
        bone = AnatomicalFemur(mesh_size_mm=size_mm).build(comm)
        res["build_cached_s"] = time.perf_counter() - t0
        comm.barrier()
        t0 = time.perf_counter()
        morphed = AnatomicalFemur(mesh_size_mm=size_mm, shape=FemurShape(**SHAPE)).build(comm)
        stored = np.full(int(bone.mesh.topology.index_map(3).size_global), 0.9)  # per reference cell
        assign_density(morphed, values=stored[reference_cell_index(morphed)])
        res["morph_and_density_s"] = time.perf_counter() - t0
        res["morph_check"] = morphed.parameters.get("morph_check")
    else:
        bone = ProximalFemur(mesh_size_mm=size_mm).build(comm)
        res["build_first_s"] = time.perf_counter() - t0
    res["cells"] = int(bone.mesh.topology.index_map(3).size_global)
    res["p1_dofs"] = 3 * int(bone.mesh.topology.index_map(0).size_global)
    assign_density(bone, age_y=70)
    comm.barrier()
    t0 = time.perf_counter()
    m = solve(bone, SingleLegStance())
    res["stance_solve_s"] = time.perf_counter() - t0
    res["stance_iterations"] = int(m.info.iterations)
    res["stance_stiffness_n_per_mm"] = float(m.stiffness_n_per_mm)
    peaks = comm.gather(peak_rss_mb(), root=0)
    res["peak_rss_mb_per_rank"] = max(peaks) if comm.rank == 0 else None
    return res


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--ranks", default="1,2")
    ap.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--model", help=argparse.SUPPRESS)
    ap.add_argument("--size", type=float, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.worker:
        res = worker(args.model, args.size)
        from femur.core.mpi import MPI

        if MPI.COMM_WORLD.rank == 0:
            print(json.dumps(res), flush=True)
        return 0
    runs = []
    for r in (int(x) for x in args.ranks.split(",")):
        for model, h in (("anatomical", 4.0), ("anatomical", 3.0), ("parametric", 3.0)):
            res = run_worker(Path(__file__), r, ["--model", model, "--size", str(h)])
            runs.append(res)
            if not args.json:
                print(json.dumps(res), flush=True)
    trial = [x for x in runs if x["model"] == "anatomical" and x["mesh_size_mm"] == 4.0 and x["ranks"] == 1]
    checks = {}
    if trial:
        v = trial[0]["morph_and_density_s"]
        checks["cohort_femur_trial_size_s"] = {"value": v, "target": "< 5 s (morph + density, trial mesh)",
                                               "ok": v < 5.0}
    out = {"benchmark": "anatomical", "shape": SHAPE, "runs": runs, "checks": checks}
    return finish("anatomical", out, args.json)


if __name__ == "__main__":
    sys.exit(main())
