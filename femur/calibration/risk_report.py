"""The fracture-risk calibration report: each target, the model's value, the residual,
whether it lies inside the published 95 % CI; then the checks (never fitted).

Incidences are shown cumulative (FREEDOM's conditional intervals are fitted, but the table
gives the cumulative incidence at each month, as published). The CI of an incidence is the
Wilson interval of its binomial (events, n) -- the arm size is an ASSUMPTION where the
notes give only a total (see ``risk_targets``); the CI of a relative risk is the published
one. Beside each model ratio, its own 95 % interval over parameter sets drawn from the
calibration's covariance (:func:`ratio_intervals`), and whether it overlaps the published
CI: a model ratio outside the published CI whose interval overlaps it is not distinguished
from the trial by the calibration. The issue's acceptance checks are added as columns:
placebo incidences within +-30 % (vertebral) or +-50 % (FREEDOM hip), hip fractures per fall
within 0.5-3 %.
"""

from __future__ import annotations

import math
from dataclasses import replace

import numpy as np
from scipy.optimize import minimize

from femur.outcomes import risk
from femur.outcomes.risk.hip import FALL_DIRECTIONS
from femur.outcomes.risk.model import risk_concentration
from femur.calibration.risk_fit import CalibrationData, FitResult, _Prepared, model_value, ratio_value, usable
from femur.calibration.risk_targets import (BETWEEN_PERSON_CHECKS, RATIOS, SOF_HIP_PER_1000_WOMAN_YEARS, TARGETS,
                                            Target)


def wilson(p: float, n: float, z: float = 1.959964) -> tuple[float, float]:
    """Wilson 95 % interval of a proportion ``p`` of ``n``."""
    den = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / den
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / den
    return centre - half, centre + half


def _cumulative(t: Target) -> Target:
    return replace(t, since_month=None, since_value=None)


def report_rows(data: CalibrationData, result: FitResult) -> list[dict]:
    """One dict per target, ratio and check."""
    prep = _Prepared(data, result.fixed)
    values = result.all_values()
    cache = {}
    rows = []
    for t in usable(data, TARGETS):
        c = _cumulative(t)
        model = model_value(prep, c, values, cache)
        lo, hi = wilson(t.value, t.n)
        carried = t.key in result.carried  # left to its published ratio: a check here
        row = {"key": t.key, "row": t.row, "label": t.label, "role": "check" if carried else t.role,
               "published": t.value, "ci95": [lo, hi], "model": model, "residual": model - t.value,
               "inside_ci": lo <= model <= hi, "note": t.note}
        if carried:
            row["carried_by_ratio"] = True
        if t.arm == "placebo" and t.kind == "vertebral" and t.prevalent is None:
            row["within_30pct"] = abs(model / t.value - 1) <= 0.30
        if t.key == "freedom_placebo_hip_m36":
            row["within_50pct"] = abs(model / t.value - 1) <= 0.50
        if t.kind == "hip_per_fall":
            row["within_0p5_3pct"] = 0.005 <= model <= 0.03
        rows.append(row)
    ratios = [r for r in RATIOS if r.study in data.batches]
    spread = ratio_intervals(prep, result, ratios, draws=RATIO_DRAWS)
    for r in ratios:
        model = ratio_value(prep, r, values, cache)
        lo, hi = spread[r.key]
        rows.append({"key": r.key, "row": r.row, "label": r.label, "role": "ratio", "published": r.value,
                     "ci95": list(r.ci95), "model": model, "residual": model - r.value,
                     "inside_ci": bool(r.ci95[0] <= model <= r.ci95[1]),
                     "fitted": r.key in result.ratio_keys, "model_ci95": [lo, hi],
                     "overlaps_ci": bool(math.isfinite(lo) and lo <= r.ci95[1] and hi >= r.ci95[0])})
    per_fall = [t for t in usable(data, TARGETS) if t.kind == "hip_per_fall"]
    if per_fall:
        rows.append(hip_risk_concentration_row(data, result, per_fall[0]))
    rows += check_rows(data, result)
    return rows


#: parameter draws behind a ratio's model interval (the calibration's uncertainty)
RATIO_DRAWS = 200
#: their seed (fixed: the report is deterministic)
RATIO_DRAW_SEED = 20261202


def ratio_intervals(prep: _Prepared, result: FitResult, ratios, draws: int = RATIO_DRAWS,
                    seed: int = RATIO_DRAW_SEED) -> dict:
    """{ratio key: (2.5 %, 97.5 %)} of each model ratio over ``draws`` parameter sets drawn
    from the fit's normal approximation (its covariance: the targets' part, scaled by the
    dispersion factor, plus the virtual cohorts' bootstrap part), on the calibration's own
    virtual cohorts. It says whether a ratio outside the published CI is a miss or lies
    within what the calibration pins down; (nan, nan) without a covariance."""
    if not ratios or draws < 2 or len(result.names) == 0:
        return {r.key: (float("nan"), float("nan")) for r in ratios}
    params = risk.RiskParameters(dict(result.values), dict(result.fixed), tuple(result.names),
                                 np.asarray(result.covariance, dtype=float))
    vals = []
    for v in params.draws(draws, seed):
        cache = {}  # a draw's incidences, shared by the ratios of one study
        vals.append([ratio_value(prep, r, v, cache) for r in ratios])
    vals = np.array(vals)
    lo, hi = np.nanpercentile(vals, [2.5, 97.5], axis=0)
    return {r.key: (float(a), float(b)) for r, a, b in zip(ratios, lo, hi)}


def hip_risk_concentration_row(data: CalibrationData, result: FitResult, t: Target) -> dict:
    """A check row: on how many of the per-fall target's virtual women the hip targets rest
    (their per-fall hip risk at baseline). A few weak femurs carrying most of it make the
    hip scale, and every hip prediction, depend on those few."""
    b = data.batches[t.study].subset(data.arm_index(t.study, t.arm))
    values = result.all_values()
    by_dir = values["hip_impact_share"] * risk.hip_per_impact(b, values, by_direction=True)[:, 0, :]
    p = by_dir.sum(axis=1)
    row = {"key": "hip_risk_concentration", "row": "check", "role": "check", "cohort": f"{t.study} {t.arm}",
           "label": f"{t.study} {t.arm}: women carrying the per-fall hip risk (eff. n)",
           "published": None, "ci95": None, "residual": None, "inside_ci": None}
    if not np.sum(p) > 0:
        return {**row, "model": float("nan"), "n_women": int(p.size),
                "note": f"none of the {p.size} women has a per-fall hip risk (baseline)"}
    c = risk_concentration(p)
    shares = " / ".join(f"{100 * v:.0f}" for v in c["top_shares"].values())
    ks = " / ".join(str(k) for k in c["top_shares"])
    directions = {d: float(v) for d, v in zip(FALL_DIRECTIONS, by_dir.sum(axis=0) / p.sum())}
    top = _top_women(b, p, k=max(c["top_shares"]))
    weights = " / ".join(f"{100 * values[f'fall_direction_weight_{d}']:.0f}" for d in FALL_DIRECTIONS)
    return {**row, "model": c["effective_women"], **c, "direction_shares": directions, "top_women": top,
            "note": f"the {ks} women of highest per-fall risk carry {shares} % of the summed risk of "
                    f"{c['n_women']} women (baseline)",
            "direction_note": "hip fractures by fall direction: "
                              + " / ".join(f"{d} {100 * v:.0f}" for d, v in directions.items())
                              + f" % (falls in each direction: {weights} %, an ASSUMPTION)",
            "top_note": _top_note(top)}


def _top_women(batch, p, k: int) -> dict:
    """What sets the ``k`` women of highest per-fall risk apart: their soft tissue over the
    trochanter, body mass and weakest baseline fall strength, with the cohort's medians."""
    idx = np.argsort(p)[::-1][:k]
    weakest = batch.fall_strength_n[:, 0, :].min(axis=1)
    out = {"n": int(len(idx)), "body_mass_kg": [float(x) for x in batch.body_mass_kg[idx]],
           "weakest_fall_strength_n": [float(x) for x in weakest[idx]],
           "median_body_mass_kg": float(np.median(batch.body_mass_kg)),
           "median_weakest_fall_strength_n": float(np.median(weakest))}
    if batch.soft_tissue_mm is not None:
        out["soft_tissue_mm"] = [float(x) for x in batch.soft_tissue_mm[idx]]
        out["median_soft_tissue_mm"] = float(np.median(batch.soft_tissue_mm))
    return out


def _top_note(top: dict) -> str:
    def span(key, unit, fmt="{:.0f}"):
        v = top[key]
        return f"{fmt.format(min(v))}-{fmt.format(max(v))} {unit} (cohort median {fmt.format(top['median_' + key])})"

    parts = []
    if "soft_tissue_mm" in top:
        parts.append("trochanteric soft tissue " + span("soft_tissue_mm", "mm"))
    parts.append("body mass " + span("body_mass_kg", "kg"))
    parts.append("weakest fall strength " + span("weakest_fall_strength_n", "N", "{:,.0f}"))
    return f"the {top['n']} women of highest per-fall risk: " + ", ".join(parts)


def check_rows(data: CalibrationData, result: FitResult) -> list[dict]:
    """SOF hip incidence and the between-person gradients on the SOF-like check cohort."""
    out = []
    b = data.batches.get("sof_check")
    if b is None:
        return out
    values = result.all_values()
    if b.fall_strength_n is not None:
        hip = risk.hip_incidence(b, values)
        per_1000 = 1000.0 * float(np.interp(12.0, b.months, hip.mean(axis=0)))
        out.append({"key": "sof_hip", "row": "check", "label": "SOF-like cohort: hip fx per 1,000 woman-years",
                    "role": "check", "published": SOF_HIP_PER_1000_WOMAN_YEARS, "ci95": None, "model": per_1000,
                    "residual": per_1000 - SOF_HIP_PER_1000_WOMAN_YEARS, "inside_ci": None,
                    "note": "SOF, Cummings NEJM 1995 (derived); check cohort: women >= 65, no BMD criterion"})
        out.append(_gradient_row("hip", hip[:, -1], b.fall_strength_n[:, 0, 0]))
    if b.vertebral_strength_n is not None:
        spine_inc = risk.spine_incidence(b, values)
        out.append(_gradient_row("vertebral", spine_inc[:, -1], b.vertebral_strength_n[:, 0]))
    return out


def odds_ratio_per_sd(probability, strength_n) -> float:
    """Odds ratio per SD LOWER baseline strength, as a cohort study would estimate it: a
    logistic regression of the outcome on the standardised strength, fitted here to each
    woman's expected probability (fractional-response likelihood)."""
    p = np.clip(np.asarray(probability, dtype=float), 1e-12, 1 - 1e-12)
    s = np.asarray(strength_n, dtype=float)
    if s.size < 3 or np.std(s) == 0:
        return float("nan")
    z = (s - s.mean()) / np.std(s, ddof=1)

    def nll(ab):
        eta = ab[0] + ab[1] * z
        return -float(np.sum(p * eta - np.logaddexp(0.0, eta)))

    m = float(np.mean(p))
    res = minimize(nll, np.array([math.log(m / (1 - m)), 0.0]), method="BFGS")
    return math.exp(-float(res.x[1]))


def _gradient_row(kind: str, probability, strength_n) -> dict:
    ref, ci, src = BETWEEN_PERSON_CHECKS[kind]
    model = odds_ratio_per_sd(probability, strength_n)
    return {"key": f"{kind}_between_person_gradient", "row": "check",
            "label": f"{kind} fx odds ratio per SD lower baseline strength (SOF-like cohort)", "role": "check",
            "published": ref, "ci95": list(ci), "model": model, "residual": model - ref,
            "inside_ci": bool(ci[0] <= model <= ci[1]),
            "note": src + "; model: logistic fit of each woman's 12-month probability on her standardised "
                          "baseline strength (lateral fall strength for the hip)"}


def format_report(rows: list[dict], result: FitResult, title: str) -> str:
    """The report as a text table."""
    lines = [title, ""]
    head = f"{'row':>5}  {'target':<66}{'role':>7}{'published':>11}{'95% CI':>19}{'model':>10}{'resid.':>9}  in CI"
    lines += [head, "-" * len(head)]
    for r in rows:
        pct = (r["role"] not in ("ratio",) and not r["key"].endswith("gradient")
               and r["key"] not in ("sof_hip", "hip_risk_concentration"))

        def f(x):
            if x is None or (isinstance(x, float) and not math.isfinite(x)):
                return "-"
            if not pct and abs(x) > 1e3:
                return ">1000"  # e.g. an odds ratio when a few women carry all the risk
            return f"{100 * x:.2f}%" if pct else f"{x:.3g}"

        ci = "-" if r["ci95"] is None else f"{f(r['ci95'][0])}-{f(r['ci95'][1])}"
        inside = {True: "yes", False: "NO", None: "-"}[r["inside_ci"]]
        extra = []
        for key, label in (("within_30pct", "+-30%"), ("within_50pct", "+-50%"), ("within_0p5_3pct", "0.5-3%")):
            if key in r:
                extra.append(f"{label}: {'yes' if r[key] else 'NO'}")
        if r.get("carried_by_ratio"):
            extra.append("fitted through its relative risk")
        if r.get("fitted"):
            extra.append(f"fitted, weight {result.ratio_weight:g}")
        if "model_ci95" in r and math.isfinite(r["model_ci95"][0]):
            extra.append(f"model 95% {f(r['model_ci95'][0])}-{f(r['model_ci95'][1])}, "
                         f"overlaps the published CI: {'yes' if r['overlaps_ci'] else 'NO'}")
        lines.append(f"{r['row']:>5}  {r['label'][:65]:<66}{r['role']:>7}{f(r['published']):>11}{ci:>19}"
                     f"{f(r['model']):>10}{f(r['residual']):>9}  {inside}" + (f"  ({'; '.join(extra)})" if extra else ""))
    for r in rows:
        if r["key"] == "hip_risk_concentration":
            lines.append(f"hip risk concentration ({r['cohort']}): {r['note']}")
            if "direction_note" in r:
                lines.append(f"{r['direction_note']} ({r['cohort']}, baseline)")
            if "top_note" in r:
                lines.append(f"{r['top_note']} ({r['cohort']}, baseline)")
    lines.append("")
    se = np.sqrt(np.clip(np.diag(result.covariance), 0, None))
    se_t = np.sqrt(np.clip(np.diag(result.cov_targets), 0, None))
    se_c = np.sqrt(np.clip(np.diag(result.cov_cohort), 0, None))
    w = max([28] + [len(k) + 1 for k in (*result.names, *result.held)])
    lines.append(f"{'parameter':<{w}}{'value':>10}{'SE':>10}{'SE targets':>12}{'SE cohort':>12}")
    for i, k in enumerate(result.names):
        flag = "  (at a bound)" if k in result.at_bound else ""
        lines.append(f"{k:<{w}}{result.values[k]:>10.4g}{se[i]:>10.3g}{se_t[i]:>12.3g}{se_c[i]:>12.3g}{flag}")
    for k in result.held:
        lines.append(f"{k:<{w}}{result.values[k]:>10.4g}{'held':>10}")
    for block, d in result.dispersion.items():
        lines.append(f"{block}: Pearson chi2 {d['chi2']:.3g} on {d['n']} observations, df {d['df']}, "
                     f"dispersion factor applied {d['factor']:.3g}")
    lines.append(f"virtual-cohort part of the covariance from {result.bootstrap} bootstrap refits")
    spine = "the binomial arm incidences (role fit" + (": the placebo arms)" if result.carried else ")")
    if result.ratio_weight > 0 and result.ratio_keys:
        how = ("each trial's treatment contrast enters once: its treated arm's incidence is a check"
               if result.carried else "they repeat the arms' contrasts")
        spine += (f" + {result.ratio_weight:g} x the log-normal likelihood of the {len(result.ratio_keys)} "
                  f"published vertebral relative risks (SE from their 95 % CIs; {how})")
    else:
        spine += " alone (ratio weight 0)"
    lines.append("spine likelihood: " + spine)
    return "\n".join(lines)


__all__ = ["RATIO_DRAWS", "check_rows", "format_report", "hip_risk_concentration_row", "ratio_intervals",
           "report_rows", "wilson"]
