"""Test double for the fracture-risk tests: closed-form strength and CTX courses per drug
(shapes like the engine's: denosumab and alendronate suppress CTX and gain a few % of
strength, teriparatide gains more strength and raises CTX, romosozumab gains most). It is
NOT the model; none of its numbers is a prediction. It returns the evaluator result format
of femur.study.cases, with monthly CTX, so that the calibration and the study risk can be
tested in milliseconds."""

from __future__ import annotations

import math

# per drug: (vertebral strength %/month, fall strength %/month, CTX ratio while on drug)
_DRUG = {
    "placebo": (-0.1, -0.05, 1.0),
    "denosumab": (0.45, 0.15, 0.2),
    "alendronate": (0.3, 0.1, 0.3),
    "teriparatide": (0.8, 0.2, 1.2),
    "romosozumab": (1.2, 0.4, 0.6),
}


def _drug_at(record, month):
    for ph in record["regimen"]:
        if ph["start_month"] <= month < ph["end_month"]:
            return ph["drug"]
    return "placebo"


def risk_double(record, comm=None):
    p = record["patient"]
    vert0 = 5200.0 * math.exp(0.12 * (p["ls_t_score"] + 2.5)) * (p["body_mass_kg"] / 65.0) ** 0.2
    fall0 = 3600.0 * math.exp(0.10 * (p["th_t_score"] + 2.5))
    end = int(math.ceil(record["duration_months"]))
    lv, lf, ctx = [0.0], [0.0], [0.0]
    for m in range(1, end + 1):
        dv, df, c = _DRUG[_drug_at(record, m - 0.5)]
        lv.append(lv[-1] + dv / 100.0)
        lf.append(lf[-1] + df / 100.0)
        ctx.append(100.0 * (c - 1.0))
    visits = []
    for vm in record["visit_months"]:
        i = int(round(vm))
        v = {"month": vm, "ls_bmd_pct": 60 * lv[i], "th_bmd_pct": 60 * lf[i], "fn_bmd_pct": 60 * lf[i],
             "p1np_pct": 0.0, "ctx_pct": ctx[i],
             "vertebral_strength_n": vert0 * math.exp(lv[i]), "vertebral_strength_pct": 100 * math.expm1(lv[i]),
             "femoral_stance_strength_n": 3 * fall0 * math.exp(lf[i]),
             "femoral_stance_strength_pct": 100 * math.expm1(lf[i])}
        for prefix, f in (("femoral_fall", 1.0), ("femoral_fall_posterolateral", 0.9),
                          ("femoral_fall_anterolateral", 1.1)):
            v[f"{prefix}_strength_n"] = f * fall0 * math.exp(lf[i])
            v[f"{prefix}_strength_pct"] = 100 * math.expm1(lf[i])
        visits.append(v)
    return {"visits": visits, "monthly": {"month": [float(m) for m in range(end + 1)], "ctx_pct": ctx}}
