#!/usr/bin/env python
"""The cell model's share of a trial case (issue 15: under 10 %), fast step against the
step-by-step transcription of the equations, in one run.

Runs the cases of the built-in FRAME-like study (``--patients`` women x placebo /
romosozumab, 12 months, trial mesh) serially through the study evaluator, alternating the
cell model's ``advance`` between ``femur.remodeling.step`` (today's) and a loop over
``reference_step`` of tests/test_remodeling_step.py (the equations written out step by
step with ``np.where``, as the model stepped before issue 15's speed work). Reports per
variant the cases' own timings (``cells_s``: the cell model's advances and compartment
switching; the case total: build + cells + FE + strength + DXA), the cell model's share,
the ratio of the two ``cells_s``, and the largest BMD / strength visit difference between
the variants (the FE solves' Krylov tolerances see round-off differences of the densities).
Optionally (``--step-days 2``) the same with the fast step at a longer cell step, to size
what a larger step would buy and change.

    python benchmarks/cell_model.py [--patients 2] [--repeats 2] [--step-days 2] [--json]

BLAS on one thread, as in the trial benchmark's ranks. Results: benchmarks/results/cell_model.json.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent / "tests"))
from _common import finish, worst_visit_difference  # noqa: E402

TIMING_KEYS = ("build_s", "cells_s", "fe_s", "strength_s", "dxa_s")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--patients", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--step-days", type=float, default=None,
                    help="also run the fast step at this cell step (days)")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args(argv)
    import numpy as np

    from femur.remodeling.model import RemodelingModel
    from femur.study import Study
    from femur.study import evaluator as ev
    from test_remodeling_step import reference_step

    fast_advance, fast_init = RemodelingModel.advance, RemodelingModel.__init__

    def reference_advance(self, state, t0, t1, stimulus=None):
        self._ensure_horizon(t1)
        s = state.copy()
        mech = self._mech(stimulus, s.n_elements)
        n = int(np.ceil((t1 - t0) / self.max_step_days - 1e-9))
        dt = (t1 - t0) / n
        for i in range(n):
            s.t_day = t0 + i * dt
            reference_step(self, s, dt, mech)
        s.t_day = float(t1)
        return s

    def longer_step(self, *a, **k):
        k.setdefault("max_step_days", args.step_days)
        fast_init(self, *a, **k)

    variants = {"reference": (reference_advance, fast_init), "fast": (fast_advance, fast_init)}
    if args.step_days:
        variants[f"fast_{args.step_days:g}d"] = (fast_advance, longer_step)
    records = Study.load("frame", patients=args.patients).cases()
    ev.run_case(records[0])  # the bones into the cache
    runs = {k: [] for k in variants}
    for _ in range(args.repeats):
        for name, (adv, init) in variants.items():
            RemodelingModel.advance, RemodelingModel.__init__ = adv, init
            for rec in records:
                runs[name].append(ev.run_case(rec))
    RemodelingModel.advance, RemodelingModel.__init__ = fast_advance, fast_init
    rows = {}
    for name, outs in runs.items():
        t = {k: float(np.mean([o["timings_s"][k] for o in outs])) for k in TIMING_KEYS}
        case = sum(t.values())
        ref = runs["reference"]
        worst = max(worst_visit_difference(a["visits"], b["visits"]) for a, b in zip(ref, outs))
        rows[name] = {**t, "case_s": case, "cells_share": t["cells_s"] / case,
                      "worst_pp_vs_reference": worst}
        if not args.json:
            print(f"{name:<10} cells {t['cells_s']:.3f} s of {case:.3f} s per case ({100 * t['cells_s'] / case:.1f} %), "
                  f"worst BMD/strength difference vs reference {worst:.2g} pp", flush=True)
    ratio = rows["reference"]["cells_s"] / rows["fast"]["cells_s"]
    out = {"benchmark": "cell_model", "patients": args.patients, "repeats": args.repeats,
           "cases": len(records), "rows": rows, "cells_s_reference_over_fast": ratio,
           "checks": {"cells_share": {"value": rows["fast"]["cells_share"], "target": "< 0.10 of a trial case (issue 15)",
                                      "ok": rows["fast"]["cells_share"] < 0.10},
                      "unchanged": {"value": rows["fast"]["worst_pp_vs_reference"],
                                    "target": "<= 0.05 pp (issue 13's criterion)",
                                    "ok": rows["fast"]["worst_pp_vs_reference"] <= 0.05}}}
    if not args.json:
        print(f"cells_s reference / fast = {ratio:.2f}")
    return finish("cell_model", out, args.json)


if __name__ == "__main__":
    sys.exit(main())
