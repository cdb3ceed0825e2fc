#!/usr/bin/env python
"""How much of a cohort's hip risk the women of highest per-fall risk carry, by fall
direction: the share of the summed per-fall hip-fracture probability (baseline, the stored
calibration courses on the strengths the parameters were fitted to, the parameters of
``femur/data/fracture_risk.json``) carried by the top 5 / 10 / 20 % of women ranked by it.
It sizes a hybrid run that would push over only the women whose hip risk depends on the
anchored fall direction. Seconds, no FE.

And a rule such a run could use, decided per woman at month 0 (not built): anchor her when
her per-impact hip probability (all directions) could move by more than ``delta`` if her
anterolateral strength moved by +-2 level SDs (the fit's level error against the pushover:
the SD over the surrogate's 30 test women in ``benchmarks/results/anchored_level.json``).
For each delta: the share of women it anchors, and what it costs against anchoring every
woman, by Monte Carlo (each woman's pushover level drawn around the fit's level with that
SD; the bias of the summed per-impact probability, mean and 95th percentile of its size).

    python benchmarks/anchor_selection.py [--json]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

import femur  # noqa: F401  (MPI before dolfinx)
from femur.calibration import risk as cal
from femur.calibration.risk_fit import CalibrationData
from femur.core.datafiles import data_path
from femur.outcomes import risk
from femur.outcomes.risk import hip
from femur.outcomes.risk.hip import FALL_DIRECTIONS

from _common import finish

SHARES = (0.05, 0.10, 0.20)
ARMS = (("freedom_hip", "placebo"), ("freedom", "placebo"))
#: the anchoring rule's thresholds (change of the per-impact probability) and its draws
DELTAS = (0.01, 0.03, 0.1)
DRAWS, SEED = 300, 20261202
AL = FALL_DIRECTIONS.index("anterolateral")
LEVEL_FILE = Path(__file__).resolve().parent / "results" / "anchored_level.json"


def level_sd() -> tuple[float, str]:
    """(SD of the anterolateral pushover peak around the fit's level, as a fraction; where
    from): the surrogate's test women in anchored_level.json, else 0.075 (an assumption)."""
    try:
        sd = json.loads(LEVEL_FILE.read_text())["sets"]["test"]["anchored_strength_difference_pct"]["sd"]
        return float(sd) / 100.0, f"{LEVEL_FILE.name}: test women"
    except (OSError, KeyError, ValueError):
        return 0.075, "assumed (no anchored_level.json)"


def anchoring_rule(b, values: dict, sd: float) -> dict:
    """{delta: (share anchored, mean bias, 95th percentile of |bias|)} of the per-woman rule
    (module docstring) on course batch ``b`` at baseline."""
    s0 = b.fall_strength_n[:, 0, :]
    stt = None if b.soft_tissue_mm is None else b.soft_tissue_mm

    def per_impact(al_factor):
        s = s0.copy()
        s[:, AL] *= al_factor
        return hip.fracture_probability_per_impact(s, b.body_mass_kg, stt, values["hip_log_strength_scale"], values)

    level = per_impact(1.0)
    span = per_impact(np.exp(-2 * sd)) - per_impact(np.exp(2 * sd))
    rng = np.random.default_rng(SEED)
    draws = [per_impact(np.exp(rng.normal(0.0, sd, level.size))) for _ in range(DRAWS)]
    out = {}
    for delta in DELTAS:
        anchored = span >= delta
        bias = np.array([(d[anchored].sum() + level[~anchored].sum()) / d.sum() - 1.0 for d in draws])
        out[delta] = (float(anchored.mean()), float(bias.mean()), float(np.percentile(np.abs(bias), 95)))
    return out


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
    sd, sd_from = level_sd()
    out = {"benchmark": "anchor_selection", "top_fractions": list(SHARES), "cohorts": {},
           "rule": {"level_sd": sd, "level_sd_from": sd_from, "deltas": list(DELTAS), "draws": DRAWS, "seed": SEED}}
    for study, arm in ARMS:
        b = data.batches[study].subset(data.arm_index(study, arm))
        by_dir = values["hip_impact_share"] * risk.hip_per_impact(b, values, by_direction=True)[:, 0, :]
        out["cohorts"][f"{study} {arm}"] = {
            "women": int(by_dir.shape[0]),
            "all_directions": top_shares(by_dir.sum(axis=1)),
            **{d: top_shares(by_dir[:, j]) for j, d in enumerate(FALL_DIRECTIONS)},
            "rule": {f"{delta:g}": {"anchored": a_, "bias_mean": m_, "bias_abs_p95": p_}
                     for delta, (a_, m_, p_) in anchoring_rule(b, values, sd).items()},
        }
    if not a.json:
        for name, c in out["cohorts"].items():
            for key in ("all_directions", *FALL_DIRECTIONS):
                print(f"{name} ({c['women']} women), {key}: top 5 / 10 / 20 % carry "
                      + " / ".join(f"{100 * v:.1f}" for v in c[key]) + " %")
            for delta, r in c["rule"].items():
                print(f"{name}: anchoring where the per-impact risk could move by > {delta} (level SD "
                      f"{100 * sd:.1f} %) anchors {100 * r['anchored']:.0f} % of the women; summed per-impact "
                      f"risk {100 * r['bias_mean']:+.2f} % against anchoring all (95 % of draws within "
                      f"{100 * r['bias_abs_p95']:.2f} %)")
    return finish("anchor_selection", out, a.json)


if __name__ == "__main__":
    raise SystemExit(main())
