#!/usr/bin/env python
"""CPU seconds per study case, with the issue-13 reuse switched on step by step.

Runs the cases of the built-in FRAME-like study (``--patients`` women x placebo /
romosozumab, 12 months, trial mesh) serially through the study evaluator and reports the
process CPU time per case (``time.process_time`` around ``run_case``; steadier than wall
time on a shared machine), FE solves and CG iterations per case, and the largest difference
of any visit's BMD or strength % change from the reference step. Steps are cumulative:

    reference   tight tolerances, fixed habitual grid, no month-0 strength sharing
    tolerances  + the phase-2 trial Krylov tolerances (habitual 1e-4, femur strength 1e-6)
    shared      + the month-0 strengths shared by a patient's arms (and, since phase 4,
                  the falls' strength solvers handed from a patient's arm to the next)
    adaptive    + the adaptive habitual interval
    fastasm     + the stored P1 stiffness map for reassembly (femur.mechanics.p1_stiffness)
    gamg        + the study's GAMG options (plain aggregation, coarse grid up to 3,000 rows;
                  femur.study.evaluator.TRIAL_GAMG_OPTIONS): today's study default

    python benchmarks/case_cpu.py [--patients 2] [--steps reference,tolerances,...] [--json]

BLAS runs on one thread (``OMP_NUM_THREADS=1``, as in the trial benchmark's ranks): a
multi-threaded BLAS spends CPU time spinning on this 2-core machine.

Results: benchmarks/results/case_cpu.json.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")  # before numpy is imported (module docstring)
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import finish, worst_visit_difference  # noqa: E402

STEPS = ("reference", "tolerances", "shared", "adaptive", "fastasm", "gamg")


def configure(step: str, ev, p1_stiffness) -> None:
    """Set the evaluator's reuse switches for ``step`` (module docstring)."""
    i = STEPS.index(step)
    ts = ev.TrialSolves()
    ev.trial_solves.habitual_rtol = ts.habitual_rtol if i >= 1 else 1e-8
    ev.trial_solves.strength_rtol = dict(ts.strength_rtol) if i >= 1 else {}
    ev.bone_cache.share_strength = i >= 2
    ev.trial_solves.fe_adaptive_tol = ts.fe_adaptive_tol if i >= 3 else None
    p1_stiffness.enabled = i >= 4
    ev.trial_solves.gamg_options = dict(ts.gamg_options) if i >= 5 else {}
    ev.bone_cache.clear()


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--patients", type=int, default=2)
    ap.add_argument("--steps", default=",".join(STEPS))
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args(argv)
    steps = [s for s in args.steps.split(",") if s]
    bad = [s for s in steps if s not in STEPS]
    if bad:
        ap.error(f"--steps: unknown {bad}; expected from {','.join(STEPS)}")
    from femur.study import Study
    from femur.study import evaluator as ev
    from femur.mechanics import p1_stiffness

    records = Study.load("frame", patients=args.patients).cases()
    rows, ref = [], None
    for step in steps:
        configure(step, ev, p1_stiffness)
        cpu, solves, its, visits = 0.0, 0, 0, []
        for rec in records:
            t0 = time.process_time()
            out = ev.run_case(rec)
            cpu += time.process_time() - t0
            solves += out["fe_solves"]
            its += out["timings_s"].get("fe_breakdown", {}).get("iterations", 0)
            visits.append(out["visits"])
        ref = visits if ref is None else ref
        worst = max((worst_visit_difference(ca, cb) for ca, cb in zip(ref, visits)), default=0.0)
        n = len(records)
        rows.append({"step": step, "cpu_s_per_case": cpu / n, "fe_solves_per_case": solves / n,
                     "cg_iterations_per_case": its / n, "worst_pp_vs_first_step": worst})
        if not args.json:
            print(f"{step:<11} {cpu / n:6.2f} CPU s/case  {solves / n:5.1f} solves  {its / n:7.0f} CG its  "
                  f"worst {worst:.1e} pp", flush=True)
    worst = max(r["worst_pp_vs_first_step"] for r in rows)
    out = {"benchmark": "case_cpu", "patients": args.patients, "rows": rows,
           "checks": {"worst_pp": {"value": worst, "target": "<= 0.05 pp (issue 13)", "ok": worst <= 0.05}}}
    return finish("case_cpu", out, args.json)


if __name__ == "__main__":
    sys.exit(main())
