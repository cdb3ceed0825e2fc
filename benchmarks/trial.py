#!/usr/bin/env python
"""Virtual-trial benchmark: a built-in study (default the FRAME-like one, placebo vs
romosozumab 210 mg monthly) with the real FE + remodeling evaluator, on 1 and 2 MPI ranks.

Records wall time, time per case, where the time goes (summed over the cases: bone
building, cell model, habitual FE solves, strength solves, DXA, and the study's risk
post-processing) and peak memory per rank as JSON in benchmarks/results/trial.json
(trial_quick.json with --quick; trial_<study>.json for another --study). Targets: FRAME-like
2 arms x 50 patients x 12 months in at most 30 min on 2 cores; FREEDOM-like (issue 12)
2 arms x 100 patients x 36 months in at most 30 min on 2 cores -- a smaller run is measured
and projected to that size (``--target-patients``); 2 ranks at least 1.8x faster than 1; at
most 1 GB peak memory per rank.

    python benchmarks/trial.py [--json] [--quick] [--study NAME] [--patients N] [--months M]
                               [--ranks 1,2] [--target-patients 100] [--femur NAME]

``--femur``: the study's femur (``model.femur``): "femur" (the anatomical femur, default)
or "parametric-femur" (the default before issue 11).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import peak_rss_mb, run_worker, finish  # noqa: E402


TIMING_KEYS = ("build_s", "cells_s", "fe_s", "strength_s", "dxa_s")


def _where_the_time_goes(out: str, study: str, patients: int, months) -> dict:
    """Seconds summed over the case files (each case's own timings) and the risk
    post-processing (building the results from the case files once more)."""
    from femur.study import Study, StudyResults
    from femur.study.runner import CASES_DIR

    total = dict.fromkeys(TIMING_KEYS, 0.0)
    cases = []
    for path in sorted((Path(out) / CASES_DIR).glob("*.json")):
        case = json.loads(path.read_text())
        cases.append(case)
        t = (case["result"].get("extra") or {}).get("timings_s") or {}
        for k in TIMING_KEYS:
            total[k] += float(t.get(k, 0.0))
    spec = Study.load(study, patients=patients, months=months).spec
    t0 = time.perf_counter()
    StudyResults(spec, cases)
    total["risk_postprocessing_s"] = time.perf_counter() - t0
    return total


def _study_with_femur(name: str, femur: str) -> dict:
    """The built-in study ``name`` as a dict, its ``model.femur`` set to ``femur``."""
    from femur.study.spec import builtin_studies

    with open(builtin_studies()[name], "rb") as fh:
        study = tomllib.load(fh)
    study.setdefault("model", {})["femur"] = femur
    return study


def worker(name: str, patients: int, months, out: str, femur: str) -> dict:
    from femur.core.mpi import MPI
    from femur.study import run_study_cli

    comm = MPI.COMM_WORLD
    study = _study_with_femur(name, femur)
    t0 = time.perf_counter()
    summary = run_study_cli(study, patients=patients, months=months, out=out, json_output=True)
    wall = time.perf_counter() - t0
    peaks = comm.gather(peak_rss_mb(), root=0)
    if comm.rank != 0:
        return {}
    n_cases = len(summary["arms"]) * patients
    return {"ranks": comm.size, "study": name, "femur": femur, "patients": patients, "months": summary["duration_months"],
            "cases": n_cases, "wall_s": wall, "s_per_case": wall * comm.size / n_cases,
            "peak_rss_mb_per_rank": max(peaks),
            "time_summed_over_cases_s": _where_the_time_goes(out, study, patients, months), "summary": summary}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--quick", action="store_true", help="2 arms x 2 patients x 3 months")
    ap.add_argument("--patients", type=int, default=None)
    ap.add_argument("--months", type=float, default=None)
    ap.add_argument("--ranks", default="1,2")
    ap.add_argument("--study", default="frame", help="a built-in study (femur run --list)")
    ap.add_argument("--target-patients", type=int, default=None,
                    help="project the 2-rank wall time to this many patients per arm (default: 50 for "
                    "frame, 100 for freedom)")
    ap.add_argument("--femur", default="femur", choices=("femur", "parametric-femur"))
    ap.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--out", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.worker:
        res = worker(args.study, args.patients, args.months, args.out, args.femur)
        if res:
            print(json.dumps(res), flush=True)
        return 0
    patients = args.patients or (2 if args.quick else 50)
    months = args.months or (3 if args.quick else (12 if args.study == "frame" else None))
    month_args = ["--months", str(months)] if months else []
    runs = []
    for r in (int(x) for x in args.ranks.split(",")):
        with tempfile.TemporaryDirectory() as tmp:
            res = run_worker(Path(__file__), r, ["--study", args.study, "--patients", str(patients), *month_args,
                                                 "--out", tmp, "--femur", args.femur], timeout=4 * 3600)
        runs.append(res)
        if not args.json:
            where = ", ".join(f"{k} {v:.0f}" for k, v in res["time_summed_over_cases_s"].items())
            print(f"ranks={r} cases={res['cases']} wall={res['wall_s']:.1f}s s/case(core)={res['s_per_case']:.1f} "
                  f"peak={res['peak_rss_mb_per_rank']:.0f}MB/rank; seconds over cases: {where}", flush=True)
    checks = {}
    one = [x for x in runs if x["ranks"] == 1]
    two = [x for x in runs if x["ranks"] == 2]
    if one and two:
        sp = one[0]["wall_s"] / two[0]["wall_s"]
        checks["speedup_2_ranks"] = {"value": sp, "target": ">= 1.8", "ok": sp >= 1.8}
    target_patients = args.target_patients or (100 if args.study == "freedom" else 50)
    if two:
        arms = len(two[0]["summary"]["arms"])
        size = f"{arms}x{target_patients}x{two[0]['months']:g}"
        # projection: the measured seconds per case and core, times the target's cases, over
        # 2 ranks (the risk post-processing scaled with the case count)
        per_case = two[0]["s_per_case"]
        projected = per_case * arms * target_patients / 2
        checks["wall_2_ranks_s"] = {"value": two[0]["wall_s"], "target": f"<= 1800 s for {size}",
                                    "ok": two[0]["wall_s"] <= 1800,
                                    "full_size": not args.quick and patients == target_patients}
        checks["projected_wall_2_ranks_s"] = {"value": projected, "target": f"<= 1800 s for {size}",
                                              "ok": projected <= 1800, "from_patients": patients}
    peak = max(x["peak_rss_mb_per_rank"] for x in runs)
    checks["peak_mb_per_rank"] = {"value": peak, "target": "<= 1024", "ok": peak <= 1024}
    if len(runs) > 1:
        same = len({json.dumps(x["summary"], sort_keys=True) for x in runs}) == 1
        checks["identical_summary_any_rank_count"] = {"value": float(same), "target": "1", "ok": same}
    out = {"benchmark": "trial", "study": args.study, "femur": args.femur, "quick": args.quick, "patients": patients,
           "months": runs[0]["months"], "runs": runs, "checks": checks}
    name = "trial" if args.study == "frame" else f"trial_{args.study}"
    return finish(name + ("_quick" if args.quick else ""), out, args.json)


if __name__ == "__main__":
    sys.exit(main())
