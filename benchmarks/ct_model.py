"""Benchmark: VerSe L2 CT -> FE vertebra -> stiffness; time and peak memory.

Usage:
    python benchmarks/ct_model.py [--json] [--quick] [--np N] [--case NAME]

Cases: voxel_1mm, voxel_2mm (coarsen 2), tet_2mm, tet_1mm (gmsh element size).  --quick
runs voxel_2mm only.  Each case runs in a fresh process (``--case``), so that the peak
resident memory (``resource.getrusage(...).ru_maxrss``) belongs to that case alone; with
``--np N`` each case runs under ``mpiexec -n N`` and memory is summed over ranks.

Data: shared/data/verse004-L2 (CC BY-SA 2.0; VerSe, Loeffler et al. 2020, Sekuboyina et
al. 2020/2021; derived by the Bonelab group, Walle et al. 2025).  Nothing derived from it
is written to disk.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "verse004-L2"
IMAGE = DATA / "sub-verse004_0000_vertebra_21_im.nii.gz"
LABELS = DATA / "sub-verse004_0000_vertebra_21_seg.nii.gz"

CASES = {
    "voxel_1mm": dict(mesh="voxel", voxel_coarsen=1),
    "voxel_2mm": dict(mesh="voxel", voxel_coarsen=2),
    "tet_2mm": dict(mesh="tet", tet_size_mm=2.0),
    "tet_1mm": dict(mesh="tet", tet_size_mm=1.0),
}


def _maxrss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # kB on Linux


def run_case(name: str) -> dict:
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    import femur  # noqa: F401
    from femur.core.mpi import MPI
    from femur.ct import bone_from_ct
    from femur.mechanics.materials import MaterialModel
    from femur.mechanics import AxialCompression, fracture_load

    comm = MPI.COMM_WORLD
    kw = CASES[name]
    t0 = time.perf_counter()
    bone = bone_from_ct(IMAGE, LABELS, calibrated_mg_cm3=True, layers=(5, 6), comm=comm, **kw)
    comm.barrier()
    t_build = time.perf_counter() - t0
    mem_build = comm.allreduce(_maxrss_mb(), op=MPI.SUM)
    # Kopperdahl 2002 on all bone labels, PMMA 2500 MPa layers, nu 0.3 (data README)
    mat = MaterialModel("kopperdahl2002",
                        compartment_laws={"layer_superior": "pmma", "layer_inferior": "pmma"},
                        poisson_ratio=0.3)
    t0 = time.perf_counter()
    fr = fracture_load(bone, AxialCompression(strain=0.01), material=mat)
    comm.barrier()
    t_solve = time.perf_counter() - t0
    mem_total = comm.allreduce(_maxrss_mb(), op=MPI.SUM)
    return {
        "case": name, "ranks": comm.size, "cells": comm.allreduce(bone.num_owned_cells),
        "cell_type": bone.parameters["cell_type"], "dofs": fr.dofs,
        "stiffness_n_per_mm": fr.stiffness_n_per_mm, "fracture_load_n": fr.fracture_load_n,
        "surrogate_0p2pct_load_n": fr.strain_surrogate_load_n,
        "iterations": fr.mechanics.iterations,
        "build_s": t_build, "solve_s": t_solve, "total_s": t_build + t_solve,
        "peak_rss_after_build_mb": mem_build, "peak_rss_mb": mem_total,
    }


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--json", action="store_true", help="print JSON records")
    ap.add_argument("--quick", action="store_true", help="voxel_2mm only")
    ap.add_argument("--np", type=int, default=1, help="MPI ranks per case (mpiexec -n)")
    ap.add_argument("--case", choices=sorted(CASES), help="run one case in this process")
    args = ap.parse_args(argv)
    if not IMAGE.exists():
        print(f"VerSe data not found at {DATA}", file=sys.stderr)
        return 2
    if args.case:
        rec = run_case(args.case)
        from femur.core.mpi import MPI

        if MPI.COMM_WORLD.rank == 0:
            print("RESULT " + json.dumps(rec))
        return 0
    names = ["voxel_2mm"] if args.quick else list(CASES)
    records = []
    for name in names:
        cmd = [sys.executable, __file__, "--case", name]
        if args.np > 1:
            mpiexec = Path(sys.executable).with_name("mpiexec")
            cmd = [str(mpiexec), "-n", str(args.np)] + cmd
        env = dict(os.environ, OMP_NUM_THREADS="1")
        out = subprocess.run(cmd, capture_output=True, text=True, env=env)
        line = [x for x in out.stdout.splitlines() if x.startswith("RESULT ")]
        if out.returncode != 0 or not line:
            records.append({"case": name, "error": (out.stderr or out.stdout)[-2000:]})
        else:
            records.append(json.loads(line[-1][len("RESULT "):]))
        if not args.json:
            r = records[-1]
            if "error" in r:
                print(f"{name:10s} FAILED: {r['error'][-300:]}")
            else:
                print(f"{name:10s} {r['ranks']} rank(s) {r['cells']:7d} {r['cell_type'][:3]} "
                      f"{r['dofs']:7d} dofs  K {r['stiffness_n_per_mm']:8.0f} N/mm  "
                      f"F {r['fracture_load_n']:7.0f} N  F0.2% {r['surrogate_0p2pct_load_n']:6.0f} N"
                      f"  build {r['build_s']:5.1f} s  solve {r['solve_s']:5.1f} s  "
                      f"peak {r['peak_rss_mb']:6.0f} MB", flush=True)
    if args.json:
        print(json.dumps(records, indent=1))
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from _common import write_results

    name = f"ct_model{'_quick' if args.quick else ''}_np{args.np}"
    path = write_results(name, {"benchmark": "ct_model", "quick": args.quick, "ranks": args.np,
                                "cases": records})
    if not args.json:
        print(f"written {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
