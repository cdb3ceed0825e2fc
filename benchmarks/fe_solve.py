#!/usr/bin/env python
"""FE solve benchmark: the default femur (single-leg stance) at several refinements,
serially and on 2 MPI ranks.

Records, per mesh and rank count: DOFs, assembly, AMG setup and solve times, CG
iterations, peak memory per rank (whole process, including meshing) and the memory the
solve adds (RSS after the solve minus RSS before the solver was created), as JSON in
benchmarks/results/fe_solve.json (or fe_solve_quick.json), and checks the targets:

* iterations grow at most 30 % from the coarsest to the finest mesh;
* at least 40k DOF/s per core end to end (assembly + setup + solve) at >= 200k DOF;
* 2 ranks at least 1.6x faster (assembly + setup + solve) on the largest mesh;
* at most 2.5 KB of memory per DOF (P1): solve-added memory / DOFs on the largest mesh.

    python benchmarks/fe_solve.py [--json] [--quick] [--ranks 1,2] [--sizes 3.0,2.0,1.4]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import current_rss_mb, peak_rss_mb, run_worker, finish  # noqa: E402

FULL_SIZES_MM = [4.0, 2.5, 1.45]  # P1 DOFs ~18k, ~65k, ~220k: > 8x apart, finest > 200k
QUICK_SIZES_MM = [4.0, 3.0]


def worker(size_mm: float, order: int, solver: str) -> dict:
    from femur.core.mpi import MPI
    from femur.mechanics import SingleLegStance
    from femur.mechanics.problem import make_solver
    from femur.mechanics.strength import material_for
    from femur.workflows.bones import build_bone

    comm = MPI.COMM_WORLD
    t0 = time.perf_counter()
    # the parametric femur: the one femur that meshes at any size (the anatomical femur ships
    # 3 and 4 mm meshes only)
    bone = build_bone("parametric-femur", mesh_size_mm=size_mm, t_score=-2.5, comm=comm)
    t_mesh = time.perf_counter() - t0
    material = material_for(bone)
    comm.barrier()
    rss0 = current_rss_mb()
    es, load, E, nu = make_solver(bone, SingleLegStance(), material, order=order, solver=solver)
    info = es.solve()
    comm.barrier()
    rss1 = current_rss_mb()
    # a second solve after a modulus update: what a remodeling step costs
    es.update_modulus(material.modulus_array(bone) * 1.01)
    info2 = es.solve()
    es.close()
    peaks = comm.gather(peak_rss_mb(), root=0)
    added = comm.gather(rss1 - rss0, root=0)
    res = {
        "mesh_size_mm": size_mm,
        "ranks": comm.size,
        "order": order,
        "solver": solver,
        "dofs": int(info.dofs),
        "cells": int(comm.allreduce(bone.num_owned_cells)),
        "mesh_and_density_s": t_mesh,
        "assembly_s": info.assembly_s,
        "setup_s": info.setup_s,
        "solve_s": info.solve_s,
        "total_s": info.total_s,
        "iterations": int(info.iterations),
        "resolve_total_s": info2.total_s,
        "resolve_iterations": int(info2.iterations),
        "peak_rss_mb_per_rank": max(peaks) if peaks else None,
        "solve_added_mb_total": sum(added) if added else None,
    }
    if comm.rank == 0:
        res["dofs_per_s_per_core"] = res["dofs"] / (res["total_s"] * comm.size)
        res["solve_added_kb_per_dof"] = res["solve_added_mb_total"] * 1024 / res["dofs"]
        res["peak_kb_per_dof"] = max(peaks) * comm.size * 1024 / res["dofs"]
    return res


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--quick", action="store_true", help="two coarse meshes, under a minute")
    ap.add_argument("--ranks", default="1,2")
    ap.add_argument("--sizes", default=None, help="comma-separated mesh sizes in mm")
    ap.add_argument("--order", type=int, default=1)
    ap.add_argument("--solver", default="gamg")
    ap.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--size", type=float, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)

    if args.worker:
        res = worker(args.size, args.order, args.solver)
        from femur.core.mpi import MPI

        if MPI.COMM_WORLD.rank == 0:
            print(json.dumps(res), flush=True)
        return 0

    sizes = [float(s) for s in args.sizes.split(",")] if args.sizes else (
        QUICK_SIZES_MM if args.quick else FULL_SIZES_MM)
    ranks = [int(r) for r in args.ranks.split(",")]
    runs = []
    for r in ranks:
        for h in sizes:
            res = run_worker(Path(__file__), r, ["--size", str(h), "--order", str(args.order),
                                                 "--solver", args.solver])
            runs.append(res)
            if not args.json:
                print(f"ranks={r} h={h} mm dofs={res['dofs']} assembly={res['assembly_s']:.2f}s "
                      f"setup={res['setup_s']:.2f}s solve={res['solve_s']:.2f}s its={res['iterations']} "
                      f"peak={res['peak_rss_mb_per_rank']:.0f}MB/rank", flush=True)
    serial = sorted((x for x in runs if x["ranks"] == 1), key=lambda x: x["dofs"])
    par = sorted((x for x in runs if x["ranks"] == 2), key=lambda x: x["dofs"])
    checks = {}
    if len(serial) >= 2:
        growth = serial[-1]["iterations"] / serial[0]["iterations"] - 1
        checks["iteration_growth"] = {"value": growth, "target": "<= 0.30", "ok": growth <= 0.30,
                                      "dof_ratio": serial[-1]["dofs"] / serial[0]["dofs"]}
        big = serial[-1]
        checks["dofs_per_s_per_core"] = {"value": big["dofs_per_s_per_core"], "dofs": big["dofs"],
                                         "target": ">= 40000 at >= 200k DOF",
                                         "ok": big["dofs_per_s_per_core"] >= 4e4 and big["dofs"] >= 2e5}
        checks["kb_per_dof"] = {"value": big["solve_added_kb_per_dof"], "target": "<= 2.5 (P1)",
                                "ok": big["solve_added_kb_per_dof"] <= 2.5,
                                "peak_process_kb_per_dof": big["peak_kb_per_dof"]}
    if serial and par:
        s, p = serial[-1], par[-1]
        if s["dofs"] == p["dofs"]:
            sp = s["total_s"] / p["total_s"]
            checks["speedup_2_ranks"] = {"value": sp, "target": ">= 1.6", "ok": sp >= 1.6, "dofs": s["dofs"]}
    out = {"benchmark": "fe_solve", "quick": args.quick, "order": args.order, "solver": args.solver,
           "runs": runs, "checks": checks}
    return finish("fe_solve_quick" if args.quick else "fe_solve", out, args.json)


if __name__ == "__main__":
    sys.exit(main())
