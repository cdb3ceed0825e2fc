#!/usr/bin/env python
"""How much of a cohort's hip risk the women of highest per-fall risk carry, by fall
direction: the share of the summed per-fall hip-fracture probability (baseline, the stored
calibration courses on the strengths the parameters were fitted to, the parameters of
``femur/data/fracture_risk.json``) carried by the top 5 / 10 / 20 % of women ranked by it.
It sizes a hybrid run that would push over only the women whose hip risk depends on the
anchored fall direction. Seconds, no FE.

    python benchmarks/anchor_selection.py [--json]
"""

from __future__ import annotations

import argparse

import numpy as np

import femur  # noqa: F401  (MPI before dolfinx)
from femur.calibration import risk as cal
from femur.calibration.risk_fit import CalibrationData
from femur.core.datafiles import data_path
from femur.outcomes import risk
from femur.outcomes.risk.hip import FALL_DIRECTIONS

from _common import finish

SHARES = (0.05, 0.10, 0.20)
ARMS = (("freedom_hip", "placebo"), ("freedom", "placebo"))


def top_shares(p: np.ndarray) -> list[float]:
    """The share of ``sum(p)`` carried by the top 5 / 10 / 20 % of the entries."""
    o = np.sort(np.asarray(p, dtype=float))[::-1]
    return [float(o[:max(1, int(f * o.size))].sum() / o.sum()) for f in SHARES]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--json", action="store_true")
    a = ap.parse_args(argv)
    params = risk.load_parameters("default")
    doc = cal.as_fitted(cal.load_courses(data_path(cal.COURSES_FILE)), params.provenance)
    data = CalibrationData({n: s["cases"] for n, s in doc["studies"].items()},
                           {n: cal.fracture_definition(n, s) for n, s in doc["studies"].items()})
    values = params.all_values()
    out = {"benchmark": "anchor_selection", "top_fractions": list(SHARES), "cohorts": {}}
    for study, arm in ARMS:
        b = data.batches[study].subset(data.arm_index(study, arm))
        by_dir = values["hip_impact_share"] * risk.hip_per_impact(b, values, by_direction=True)[:, 0, :]
        out["cohorts"][f"{study} {arm}"] = {
            "women": int(by_dir.shape[0]),
            "all_directions": top_shares(by_dir.sum(axis=1)),
            **{d: top_shares(by_dir[:, j]) for j, d in enumerate(FALL_DIRECTIONS)},
        }
    if not a.json:
        for name, c in out["cohorts"].items():
            for key in ("all_directions", *FALL_DIRECTIONS):
                print(f"{name} ({c['women']} women), {key}: top 5 / 10 / 20 % carry "
                      + " / ".join(f"{100 * v:.1f}" for v in c[key]) + " %")
    return finish("anchor_selection", out, a.json)


if __name__ == "__main__":
    raise SystemExit(main())
