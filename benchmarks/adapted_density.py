#!/usr/bin/env python
"""Adapted-density benchmark: how long a bone takes to get the stored habitual-loading
density field (femur.geometry.adapted_density) at the studies' mesh size.

Target (issue 11): building a cohort patient's femur -- morph plus density plus T-score --
in under 5 s at the trial mesh size (4 mm).  Timed per path:

* a cohort patient of the built-in FRAME-like study (patient 0): ``cohort_shape_s`` (the
  shape draw with the morph's element check on both shipped meshes, in
  ``femur.study.cohort``; the first call in a process also reads the meshes) and
  ``patient_femur_s`` (``femur.workflows.bones.patient_bone``: morph, density pattern,
  T-score) -- the check is ``patient_femur_s`` on a process that has read the mesh once
  (a cohort run builds many patients);
* its parts: ``morph_build_s`` (AnatomicalFemur with a FemurShape: read, morph, element
  check, distribute), ``density_s`` (``bone_with_adapted_density``: the stored field of
  the 4 mm mesh cell by cell, incl. the topology hash -- alone ``map_index_s`` -- and the
  compartment pattern), ``t_score_s`` (``bone_with_t_score`` to FN T = -2.5, DXA
  projections);
* parametric femur at 4 mm: ``map_sampled_s`` (the 3 mm field sampled compartment-wise
  onto another mesh).

Writes benchmarks/results/adapted_density.json.

    python benchmarks/adapted_density.py [--json] [--ranks 1,2]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import finish, peak_rss_mb, run_worker  # noqa: E402

TRIAL_MESH_MM = 4.0


def worker() -> dict:
    from femur.core.mpi import MPI
    from femur.geometry.adapted_density import adapted_density, bone_with_adapted_density, load_reference, reference_path
    from femur.workflows.t_score import bone_with_t_score
    from femur.geometry.anatomical import AnatomicalFemur
    from femur.geometry.femur_model import ProximalFemur
    from femur.geometry.morph import FemurShape
    from femur.remodeling.patient import Patient
    from femur.study.cohort import sample_patient
    from femur.study.parse import load_study
    from femur.workflows.bones import patient_bone

    comm = MPI.COMM_WORLD
    out = {"ranks": comm.size}
    spec = load_study("frame")
    t0 = time.perf_counter()
    rec = sample_patient(0, spec.seed, spec.cohort)
    out["cohort_patient_s"] = time.perf_counter() - t0  # first call: reads both meshes
    t0 = time.perf_counter()
    rec = sample_patient(1, spec.seed, spec.cohort)
    out["cohort_shape_s"] = time.perf_counter() - t0
    out["cohort_shape"] = rec["femur_shape"]
    comm.barrier()
    t0 = time.perf_counter()
    patient_bone("femur", Patient.from_record(rec), TRIAL_MESH_MM, rec["femur_shape"], comm)
    out["patient_femur_s"] = time.perf_counter() - t0
    shape = FemurShape(**rec["femur_shape"])
    comm.barrier()
    t0 = time.perf_counter()
    bone = AnatomicalFemur(mesh_size_mm=TRIAL_MESH_MM, shape=shape).build(comm)
    t1 = time.perf_counter()
    adapted, how = adapted_density(bone)
    t2 = time.perf_counter()
    patterned = bone_with_adapted_density(bone)
    t3 = time.perf_counter()
    bone_with_t_score(patterned, -2.5)
    t4 = time.perf_counter()
    out.update({"trial_cells": int(comm.allreduce(bone.num_owned_cells)), "morph_build_s": t1 - t0,
                "map_index_s": t2 - t1, "map_method": how["method"],
                "density_s": t3 - t2,  # bone_with_adapted_density: map + compartment pattern
                "t_score_s": t4 - t3})
    out["morph_plus_density_s"] = out["morph_build_s"] + out["density_s"]
    out["morph_density_t_score_s"] = out["morph_plus_density_s"] + out["t_score_s"]
    par = ProximalFemur(mesh_size_mm=TRIAL_MESH_MM).build(comm)
    comm.barrier()
    t0 = time.perf_counter()
    _, how2 = adapted_density(par)
    out["map_sampled_s"] = time.perf_counter() - t0
    out["map_sampled_method"] = how2["method"]
    adaptation = {}
    for family in ("anatomical-femur", "parametric-femur"):
        prov = load_reference(str(reference_path(family))).provenance
        adaptation[family] = {"mesh_size_mm": prov.get("mesh_size_mm"), "iterations": prov.get("iterations"),
                              "seconds": prov.get("seconds"), "ranks": prov.get("mpi_ranks"),
                              "solves": prov.get("solver", {}).get("solves")}
    out["adaptation"] = adaptation
    peaks = comm.gather(peak_rss_mb(), root=0)
    out["peak_rss_mb_per_rank"] = max(peaks) if peaks else None
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--ranks", default="1")
    ap.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.worker:
        res = worker()
        from femur.core.mpi import MPI

        if MPI.COMM_WORLD.rank == 0:
            print(json.dumps(res), flush=True)
        return 0
    runs = []
    for r in (int(x) for x in args.ranks.split(",")):
        res = run_worker(Path(__file__), r, [])
        runs.append(res)
        if not args.json:
            print(f"ranks={r} cohort patient femur={res['patient_femur_s']:.2f}s (shape draw "
                  f"{res['cohort_shape_s']:.2f}s) trial cells={res['trial_cells']} morph+build={res['morph_build_s']:.2f}s "
                  f"density={res['density_s']:.2f}s (map {res['map_index_s']:.2f}s) "
                  f"t-score={res['t_score_s']:.2f}s map(sampled, parametric)={res['map_sampled_s']:.2f}s",
                  flush=True)
    worst = max(x["patient_femur_s"] for x in runs)
    checks = {"cohort_patient_femur_trial_s": {"value": worst, "target": "< 5 s at the trial mesh size "
                                               "(morph + density + T-score)", "ok": worst < 5.0}}
    out = {"benchmark": "adapted_density", "trial_mesh_mm": TRIAL_MESH_MM, "runs": runs, "checks": checks}
    return finish("adapted_density", out, args.json)


if __name__ == "__main__":
    sys.exit(main())
