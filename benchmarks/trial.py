#!/usr/bin/env python
"""Virtual-trial benchmark: the built-in FRAME-like study (placebo vs romosozumab 210 mg
monthly) with the real FE + remodeling evaluator, on 1 and 2 MPI ranks.

Records wall time, time per case and peak memory per rank as JSON in
benchmarks/results/trial.json (trial_quick.json with --quick). Targets (issue: virtual
trials): 2 arms x 50 patients x 12 months at the default resolution in at most 30 min on
2 cores; 2 ranks at least 1.8x faster than 1; at most 1 GB peak memory per rank.

    python benchmarks/trial.py [--json] [--quick] [--patients N] [--months M] [--femur NAME]

``--femur``: the study's femur (``model.femur``): "femur" (the anatomical femur, default)
or "parametric-femur" (the default before issue 11).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
import tomllib
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import peak_rss_mb, run_worker, finish  # noqa: E402


def worker(patients: int, months: float, out: str, femur: str) -> dict:
    from femur.core.mpi import MPI
    from femur.study import run_study_cli
    from femur.study.spec import builtin_studies

    comm = MPI.COMM_WORLD
    with open(builtin_studies()["frame"], "rb") as fh:
        study = tomllib.load(fh)
    study["model"]["femur"] = femur
    t0 = time.perf_counter()
    summary = run_study_cli(study, patients=patients, months=months, out=out, json_output=True)
    wall = time.perf_counter() - t0
    peaks = comm.gather(peak_rss_mb(), root=0)
    if comm.rank != 0:
        return {}
    n_cases = 2 * patients
    return {"ranks": comm.size, "femur": femur, "patients": patients, "months": months, "cases": n_cases,
            "wall_s": wall, "s_per_case": wall * comm.size / n_cases,
            "peak_rss_mb_per_rank": max(peaks), "summary": summary}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--quick", action="store_true", help="2 arms x 2 patients x 3 months")
    ap.add_argument("--patients", type=int, default=None)
    ap.add_argument("--months", type=float, default=None)
    ap.add_argument("--ranks", default="1,2")
    ap.add_argument("--femur", default="femur", choices=("femur", "parametric-femur"))
    ap.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--out", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.worker:
        res = worker(args.patients, args.months, args.out, args.femur)
        if res:
            print(json.dumps(res), flush=True)
        return 0
    patients = args.patients or (2 if args.quick else 50)
    months = args.months or (3 if args.quick else 12)
    runs = []
    for r in (int(x) for x in args.ranks.split(",")):
        with tempfile.TemporaryDirectory() as tmp:
            res = run_worker(Path(__file__), r, ["--patients", str(patients), "--months", str(months),
                                                 "--out", tmp, "--femur", args.femur],
                             timeout=4 * 3600)
        runs.append(res)
        if not args.json:
            print(f"ranks={r} cases={res['cases']} wall={res['wall_s']:.1f}s s/case(core)={res['s_per_case']:.1f} "
                  f"peak={res['peak_rss_mb_per_rank']:.0f}MB/rank", flush=True)
    checks = {}
    one = [x for x in runs if x["ranks"] == 1]
    two = [x for x in runs if x["ranks"] == 2]
    if one and two:
        sp = one[0]["wall_s"] / two[0]["wall_s"]
        checks["speedup_2_ranks"] = {"value": sp, "target": ">= 1.8", "ok": sp >= 1.8}
    if two:
        checks["wall_2_ranks_s"] = {"value": two[0]["wall_s"], "target": "<= 1800 s for 2x50x12",
                                    "ok": two[0]["wall_s"] <= 1800, "full_size": not args.quick}
    peak = max(x["peak_rss_mb_per_rank"] for x in runs)
    checks["peak_mb_per_rank"] = {"value": peak, "target": "<= 1024", "ok": peak <= 1024}
    if len(runs) > 1:
        same = len({json.dumps(x["summary"], sort_keys=True) for x in runs}) == 1
        checks["identical_summary_any_rank_count"] = {"value": float(same), "target": "1", "ok": same}
    out = {"benchmark": "trial", "quick": args.quick, "femur": args.femur, "patients": patients, "months": months,
           "runs": runs, "checks": checks}
    return finish("trial_quick" if args.quick else "trial", out, args.json)


if __name__ == "__main__":
    sys.exit(main())
