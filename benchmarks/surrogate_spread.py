#!/usr/bin/env python
"""How the pushover peak relates to the linear first-element load, by load case, in the
strength surrogate's samples: the median ratio peak / first-element load, the spread
between women of each (SD of log strength at baseline), and the correlation of the ratio
with the load at baseline (negative: the pushover lifts weak femurs more). It reads the
committed samples only (seconds, no FE).

    python benchmarks/surrogate_spread.py [--json] [--work DIR]
"""

from __future__ import annotations

import numpy as np

from _common import finish, sample_rows, samples_arguments



def main(argv=None) -> int:
    a = samples_arguments(__doc__, argv)
    rows = [r for r in sample_rows(a.work) if r["converged"] and (r.get("load") or 0) > 0]
    out = {"benchmark": "surrogate_spread", "cases": {}}
    for prefix in sorted({r["prefix"] for r in rows}):
        mine = [r for r in rows if r["prefix"] == prefix]
        ratio = np.array([r["nonlinear_strength_n"] / r["load"] for r in mine])
        base = [r for r in mine if r["state"] == "baseline"]
        load = np.array([r["load"] for r in base])
        peak = np.array([r["nonlinear_strength_n"] for r in base])
        out["cases"][prefix] = {
            "samples": len(mine), "baseline_women": len(base),
            "median_peak_over_load": float(np.median(ratio)),
            "sd_log_load_baseline": float(np.std(np.log(load))),
            "sd_log_peak_baseline": float(np.std(np.log(peak))),
            "corr_ratio_load_baseline": float(np.corrcoef(peak / load, load)[0, 1]),
        }
        if not a.json:
            c = out["cases"][prefix]
            print(f"{prefix:<30} median peak / first-element load {c['median_peak_over_load']:.2f}; baseline "
                  f"({len(base)} women): SD log load {c['sd_log_load_baseline']:.3f}, SD log peak "
                  f"{c['sd_log_peak_baseline']:.3f}, corr(ratio, load) {c['corr_ratio_load_baseline']:+.2f}")
    return finish("surrogate_spread", out, a.json)


if __name__ == "__main__":
    raise SystemExit(main())
