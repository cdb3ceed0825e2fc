#!/usr/bin/env python
"""What the risk calibration's shortcut for an anchored load case costs in hip risk.

A hybrid run (``strength_model = "hybrid"``, what ``auto`` picks for one simulation while
the anterolateral fall's surrogate misses its level target and meets it anchored; a study's
``auto`` runs the surrogate, for the reason measured here) takes that fall's strength
from a pushover at month 0 and the fit's predicted change after it. The risk calibration's
stored courses hold no pushover, so ``python -m femur.calibration.risk --refit-only``
(``--strengths auto``: the surrogate's) gives that fall the fit's own level instead
(``femur.calibration.risk.with_surrogate_strengths``). The two differ by the fit's level
error, one woman at a time.

This reads the surrogate's samples (every woman's baseline pushover peak and linear
quantities) and her body mass and trochanteric soft tissue (regenerated from the cohort
seed), and computes each woman's per-fall hip fracture probability with the calibrated hip
model (``femur/data/fracture_risk.json``) twice: every fall direction from the surrogate's
level (as the calibration computes it), and the anchored case from her pushover (as a hybrid
run computes it), the other directions from the surrogate in both. It reports the ratio of
the summed probabilities (how much the calibration's hip scale would move: it is fitted to
hip fractures per fall and to an incidence, both sums over women) and the per-woman spread,
on the test women (whom the fit never saw) and on all women. Seconds, no FE.

    python benchmarks/anchored_level.py [--json] [--work DIR]
"""

from __future__ import annotations

import numpy as np

import femur  # noqa: F401  (MPI before dolfinx)
from femur.calibration import strength_surrogate as ss
from femur.mechanics.surrogate import case_verdicts, load_fits
from femur.outcomes.risk import load_parameters
from femur.outcomes.risk.courses import RISK_PREFIXES
from femur.outcomes.risk.hip import FALL_DIRECTIONS, fracture_probability_per_impact
from femur.study.cohort import sample_patient

from _common import finish, sample_rows, samples_arguments



def main(argv=None) -> int:
    a = samples_arguments(__doc__, argv)
    prefixes = [RISK_PREFIXES[d] for d in FALL_DIRECTIONS]
    verdicts = case_verdicts(prefixes)
    anchored = [p for p in prefixes if verdicts[p] == "anchored"]
    fits = load_fits()
    settings = ss.Settings()
    base = {}
    for p in prefixes:
        for r in sample_rows(a.work, p):
            if r["state"] == "baseline" and r["converged"]:
                base[(r["patient"], p)] = r
    women = sorted({i for i, _ in base if all((i, p) in base for p in prefixes)})
    rows = ss.with_anatomy([base[(i, p)] for i in women for p in prefixes], settings)
    by = {(r["patient"], r["prefix"]): r for r in rows}
    params = load_parameters("default")
    values = params.all_values()
    level = np.array([[fits[p].predict(by[(i, p)], by[(i, p)].get("anatomy")) for p in prefixes] for i in women])
    hybrid = level.copy()
    for j, p in enumerate(prefixes):
        if p in anchored:
            hybrid[:, j] = [by[(i, p)]["nonlinear_strength_n"] for i in women]
    recs = {i: sample_patient(i, settings.seed, ss.cohort()) for i in women}
    mass = np.array([float(recs[i]["body_mass_kg"]) for i in women])
    stt = np.array([float(recs[i]["trochanteric_soft_tissue_mm"]) for i in women])
    scale = values["hip_log_strength_scale"]

    def per_fall(strength):
        return fracture_probability_per_impact(strength, mass, stt, scale, values)

    p_level, p_hybrid = per_fall(level), per_fall(hybrid)
    test = np.array([i >= settings.train for i in women])
    out = {"benchmark": "anchored_level", "anchored_cases": anchored,
           "risk_parameters": str(params.source),
           "risk_calibrated_on": (params.provenance.get("engine") or {}).get("strength_model"),
           "women": {"all": len(women), "test": int(test.sum())}, "sets": {}}
    for name, sel in (("test", test), ("all", np.ones_like(test))):
        lv, hv = p_level[sel], p_hybrid[sel]
        j = [prefixes.index(p) for p in anchored]
        err = (hybrid[sel][:, j] / level[sel][:, j] - 1.0) * 100 if j else np.zeros((int(sel.sum()), 0))
        out["sets"][name] = {
            "summed_per_fall_risk_ratio_hybrid_over_level": float(hv.sum() / lv.sum()),
            "mean_per_fall_risk_pct": {"level": float(100 * lv.mean()), "hybrid": float(100 * hv.mean())},
            "anchored_strength_difference_pct": {"mean": float(err.mean()) if err.size else 0.0,
                                                 "sd": float(err.std()) if err.size else 0.0},
        }
        if not a.json:
            s = out["sets"][name]
            print(f"{name} women ({int(sel.sum())}): summed per-fall hip risk, hybrid / calibration's level = "
                  f"{s['summed_per_fall_risk_ratio_hybrid_over_level']:.3f} (mean per-fall risk "
                  f"{s['mean_per_fall_risk_pct']['hybrid']:.3f} % against {s['mean_per_fall_risk_pct']['level']:.3f} %); "
                  f"{', '.join(anchored) or 'no case'}: pushover over the fit's level "
                  f"{s['anchored_strength_difference_pct']['mean']:+.1f} % (SD {s['anchored_strength_difference_pct']['sd']:.1f} %)")
    return finish("anchored_level", out, a.json)


if __name__ == "__main__":
    raise SystemExit(main())
