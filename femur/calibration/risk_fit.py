"""Fit the fracture-risk parameters to the trial targets from stored simulated courses.

Input: the compact risk inputs of every simulated case (``femur.outcomes.risk.case_inputs``)
of the calibration studies. No FE runs here: a refit takes seconds.

* Spine: the seven spine parameters (``femur.outcomes.risk.spine.FITTED``) maximise the
  binomial likelihood of the vertebral targets (``risk_targets.TARGETS``, role "fit"),
  plus, with ``ratio_weight`` w > 0, w times the log-normal likelihood of the published
  vertebral relative risks (``risk_targets.RATIOS`` of kind "vertebral": rows 10, 12-14;
  the SE of ln RR from the published 95 % CI). ``treated_arms`` says how a trial's treated
  arm enters then: ``"ratios"`` (the default of a new calibration since session 19): through
  its published relative risk alone, its incidence (the ratio's numerator at the ratio's
  month) left out of the likelihood and reported as a check, so each trial gives its
  placebo level and its treatment contrast once; ``"incidences"`` (session 18): its
  incidence too, which counts each contrast twice. The hip ratios stay predictions (the
  hip scale is fitted to rows 11 and 15 only).
* Hip: the one hip parameter (``hip_log_strength_scale``) maximises the binomial likelihood
  of hip fractures per fall (row 15) and the FREEDOM placebo hip incidence (row 11).
* Covariance = (target part) + (virtual-cohort part):
  - target part: the inverse observed information (central-difference Hessian of the
    negative log-likelihood, ratio terms included), times the Pearson dispersion chi2/df
    when it exceeds 1 (the model cannot fit the targets to within their binomial noise):
    chi2 of the binomial targets, plus, with ``treated_arms="ratios"``, w times the squared
    z-scores of the fitted ratios (each an observation; session 18's files, which fitted
    the treated arms' incidences too, computed it from the binomial targets alone);
  - virtual-cohort part: the covariance of refits on bootstrap resamples of the virtual
    patients (the same patients in both arms of a trial), which shrinks as the cohorts grow.
  Parameters at a bound are reported as such; their standard errors mean little.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace

import numpy as np
from scipy.optimize import minimize

from femur.core.errors import InputError
from femur.core.log import get_logger
from femur.outcomes import risk
from femur.outcomes.risk import spine
from femur.outcomes.risk.parameters import FITTED_PARAMETERS, HIP_FITTED, SPINE_FITTED
from femur.calibration.risk_targets import HIP_COHORT, RATIOS, TARGETS, RatioTarget, Target

_EPS = 1e-12
log = get_logger(__name__)


class CalibrationData:
    """The stored courses of the calibration studies: {study: [case inputs, ...]}."""

    def __init__(self, studies: dict, definitions: dict | None = None):
        if not studies:
            raise InputError("no simulated calibration cases")
        # sorted by name: a stored (sorted-key JSON) and a fresh set iterate alike
        self.inputs = {name: list(studies[name]) for name in sorted(studies)}
        # how each study counts a new vertebral fracture (default: semiquantitative)
        self.definitions = {name: (definitions or {}).get(name, risk.DEFAULT_FRACTURE_DEFINITION)
                            for name in self.inputs}
        self.batches = {}
        for name, cases in self.inputs.items():
            if not cases:
                raise InputError(f"calibration study {name!r} has no finished case")
            self.batches[name] = risk.CourseBatch.of([risk.RiskCourse.from_inputs(d) for d in cases],
                                                     self.definitions[name])

    def reference_strength_n(self, exclude=("sof_check", HIP_COHORT)) -> float:
        """Median baseline vertebral strength of the calibration trials' cohorts (the spine
        hazard's reference; a convention fixed with the fit; not the check cohort, nor the
        hip cohort, which carries only the hip targets)."""
        vals = [b.vertebral_strength_n[:, 0] for n, b in self.batches.items()
                if n not in exclude and b.vertebral_strength_n is not None]
        if not vals:
            raise InputError("the calibration cases have no vertebral strength")
        return float(np.median(np.concatenate(vals)))

    def arm_index(self, study: str, arm: str, prevalent=None) -> np.ndarray:
        b = self.batches[study]
        ok = np.array([c.arm == arm for c in b.courses])
        if prevalent is not None:
            ok &= np.isin(b.prevalent, prevalent)
        return np.flatnonzero(ok)

    def resample(self, rng: np.random.Generator) -> CalibrationData:
        """A bootstrap resample of the virtual patients of every study: paired (a drawn
        patient brings her case in every arm) and stratified by prevalent-fracture count
        (the trial's count shares are a design input, and every count subgroup target keeps
        its women)."""
        out = {}
        for name, cases in self.inputs.items():
            by_patient = {}
            for d in cases:
                by_patient.setdefault(d["patient_index"], []).append(d)
            strata = {}
            for i, ds in sorted(by_patient.items()):
                strata.setdefault(ds[0].get("prevalent_vertebral_fractures") or 0, []).append(i)
            new, j = [], 0
            for _, members in sorted(strata.items()):
                for i in rng.integers(0, len(members), size=len(members)):
                    for d in by_patient[members[i]]:
                        new.append(dict(d, patient_index=j, case_id=f"{d['case_id']}#{j}"))
                    j += 1
            out[name] = new
        return CalibrationData(out, self.definitions)


@dataclass
class _Prepared:
    """Per-study spine design matrices (depend on the fixed inputs only)."""

    data: CalibrationData
    fixed: dict
    designs: dict = field(default_factory=dict)

    def __post_init__(self):
        for name, b in self.data.batches.items():
            if b.vertebral_strength_n is not None:
                self.designs[name] = spine.design(b, self.fixed)

    def spine_incidence(self, study: str, theta: np.ndarray) -> np.ndarray:
        x, offset = self.designs[study]
        b = self.data.batches[study]
        return -np.expm1(-spine.cumulative_hazard(x @ theta + offset, b.months))


def _arm_mean(prep: _Prepared, inc: np.ndarray, t: Target, month: float) -> float:
    idx = prep.data.arm_index(t.study, t.arm, t.prevalent)
    if idx.size == 0:
        raise InputError(f"target {t.key}: no simulated case of {t.study}/{t.arm}"
                         + (f" with prevalent count {t.prevalent}" if t.prevalent else ""))
    b = prep.data.batches[t.study]
    if month > b.months[-1] + 1e-9:
        raise InputError(f"target {t.key}: month {month:g} is after the simulated {b.months[-1]:g} months")
    curve = inc[idx].mean(axis=0)
    return float(np.interp(month, b.months, curve))


def model_value(prep: _Prepared, t: Target, values: dict, cache: dict | None = None) -> float:
    """The model's proportion for target ``t`` (conditional for interval targets)."""
    cache = {} if cache is None else cache
    if t.kind == "vertebral":
        key = ("vertebral", t.study)
        if key not in cache:
            cache[key] = prep.spine_incidence(t.study, np.array([values[k] for k in SPINE_FITTED]))
        inc = cache[key]
    elif t.kind == "hip":
        key = ("hip", t.study)
        if key not in cache:
            cache[key] = risk.hip_incidence(prep.data.batches[t.study], values)
        inc = cache[key]
    elif t.kind == "hip_per_fall":
        b = prep.data.batches[t.study]
        idx = prep.data.arm_index(t.study, t.arm)
        p = risk.hip_per_impact(b.subset(idx), values)[:, 0]
        return float(values["hip_impact_share"] * p.mean())
    else:
        raise InputError(f"target {t.key}: unknown kind {t.kind!r}")
    now = _arm_mean(prep, inc, t, t.month)
    if t.since_month is None:
        return now
    before = _arm_mean(prep, inc, t, t.since_month)
    return (now - before) / max(1.0 - before, _EPS)


def usable(data: CalibrationData, targets) -> list:
    """The targets the simulated cases can evaluate (a target whose study was not run, or
    whose arm or prevalent-count subgroup has no case, is left out with a warning; one
    whose study was not run but whose ``fallback_study`` was is evaluated on that one)."""
    out = []
    for t in targets:
        if t.study not in data.batches and t.fallback_study in data.batches:
            log.warning("target %s: the courses have no %s cases; evaluated on %s instead", t.key, t.study,
                        t.fallback_study)
            t = replace(t, study=t.fallback_study, fallback_study=None)
        if t.study in data.batches and data.arm_index(t.study, t.arm, t.prevalent).size:
            out.append(t)
        else:
            log.warning("target %s left out: no simulated case of %s/%s%s", t.key, t.study, t.arm,
                        f" with prevalent count {t.prevalent}" if t.prevalent else "")
    return out


def ratio_value(prep: _Prepared, r: RatioTarget, values: dict, cache: dict | None = None) -> float:
    """The model's ratio ``r`` (arm / reference arm cumulative incidence at ``r.month``)."""
    a = model_value(prep, Target(r.key, r.row, r.study, r.arm, r.kind, r.month, 0, 1, "check", ""), values, cache)
    b = model_value(prep, Target(r.key, r.row, r.study, r.reference, r.kind, r.month, 0, 1, "check", ""),
                    values, cache)
    return a / b if b > 0 else float("nan")


#: the kinds of published ratio a positive ``ratio_weight`` fits (the hip ratios stay
#: predictions: the one hip parameter is fitted to rows 11 and 15 only)
FITTED_RATIO_KINDS = ("vertebral",)
#: the weight of the published relative risks in a new calibration's spine likelihood
#: (``femur.calibration.risk --ratio-weight``; 0: the arm incidences alone, as before
#: session 18); a parameter file records the weight it was fitted with
DEFAULT_RATIO_WEIGHT = 1.0


def fitted_ratios(data: CalibrationData, ratios=None) -> tuple:
    """The published ratios a positive ``ratio_weight`` fits: of a fitted kind, and with
    both arms simulated."""
    out = []
    for r in RATIOS if ratios is None else ratios:
        if r.kind in FITTED_RATIO_KINDS and r.study in data.batches and data.arm_index(r.study, r.arm).size \
                and data.arm_index(r.study, r.reference).size:
            out.append(r)
    return tuple(out)


#: how a trial's treated arm enters a spine fit with published ratios (module docstring):
#: through its relative risk alone, or its incidence too; a new calibration's default, and
#: what a parameter file without the setting (written before session 19) was fitted with
TREATED_ARMS = ("ratios", "incidences")
DEFAULT_TREATED_ARMS = "ratios"
LEGACY_TREATED_ARMS = "incidences"


def carried_by_ratios(targets, ratios) -> tuple:
    """The keys of ``targets`` that a fitted ratio of ``ratios`` carries: a treated arm's
    incidence of the ratio's kind at the ratio's month (the ratio's numerator)."""
    numerators = {(r.study, r.arm, r.kind, float(r.month)) for r in ratios}
    return tuple(t.key for t in targets if (t.study, t.arm, t.kind, float(t.month)) in numerators)


def _ratio_z2(prep, values, ratios, cache) -> list[float]:
    out = []
    for r in ratios:
        m = ratio_value(prep, r, values, cache)
        se = (math.log(r.ci95[1]) - math.log(r.ci95[0])) / (2 * 1.959964)
        out.append(((math.log(max(m, _EPS)) - math.log(r.value)) / se) ** 2)
    return out


def _ratio_nll(prep, values, ratios, weight, cache) -> float:
    return 0.5 * weight * sum(_ratio_z2(prep, values, ratios, cache))


def _nll(prep, names, theta, values0, targets, ratios=(), ratio_weight=0.0) -> float:
    values = dict(values0, **dict(zip(names, theta)))
    cache = {}
    total = 0.0
    for t in targets:
        p = min(max(model_value(prep, t, values, cache), _EPS), 1 - _EPS)
        e, n = t.events, t.at_risk
        total -= e * math.log(p) + (n - e) * math.log1p(-p)
    if ratio_weight > 0 and ratios:
        total += _ratio_nll(prep, values, ratios, ratio_weight, cache)
    return total


def _minimise(prep, names, start, values0, targets, ratios=(), ratio_weight=0.0):
    bounds = [FITTED_PARAMETERS[k][1] for k in names]
    fun = lambda th: _nll(prep, names, th, values0, targets, ratios, ratio_weight)  # noqa: E731
    best = None
    for _ in range(2):  # a restart from the first optimum polishes it
        res = minimize(fun, start if best is None else best.x, method="L-BFGS-B", bounds=bounds,
                       options={"maxiter": 2000, "ftol": 1e-13, "gtol": 1e-9})
        if best is None or res.fun <= best.fun:
            best = res
    return best


def _hessian(fun, x, bounds) -> np.ndarray:
    n = len(x)
    h = np.array([1e-3 * max(1.0, abs(v)) for v in x])
    hess = np.zeros((n, n))
    f0 = fun(x)
    for i in range(n):
        for j in range(i, n):
            if i == j:
                e = np.zeros(n)
                e[i] = h[i]
                hess[i, i] = (fun(x + e) - 2 * f0 + fun(x - e)) / h[i] ** 2
            else:
                ei, ej = np.zeros(n), np.zeros(n)
                ei[i], ej[j] = h[i], h[j]
                hess[i, j] = hess[j, i] = (fun(x + ei + ej) - fun(x + ei - ej) - fun(x - ei + ej)
                                           + fun(x - ei - ej)) / (4 * h[i] * h[j])
    return hess


def _pearson(prep, values, targets) -> tuple[float, int]:
    cache, chi2 = {}, 0.0
    for t in targets:
        p = min(max(model_value(prep, t, values, cache), _EPS), 1 - _EPS)
        n = t.at_risk
        chi2 += (t.events - n * p) ** 2 / (n * p * (1 - p))
    return chi2, len(targets)


@dataclass
class FitResult:
    values: dict  # every parameter of FITTED_PARAMETERS (fitted, or held at a given value)
    fixed: dict  # fixed inputs (incl. the reference strength)
    names: tuple  # the fitted ones, in the order of the covariance
    cov_targets: np.ndarray
    cov_cohort: np.ndarray
    dispersion: dict  # per block: chi2, n, df, factor
    at_bound: list
    nll: dict
    bootstrap: int
    held: tuple = ()
    ratio_weight: float = 0.0  # the published relative risks' weight in the spine likelihood
    ratio_keys: tuple = ()  # the ratios it fitted
    treated_arms: str = LEGACY_TREATED_ARMS  # how the treated arms entered (TREATED_ARMS)
    carried: tuple = ()  # the target keys left to the ratios (reported as checks)

    @property
    def covariance(self) -> np.ndarray:
        return self.cov_targets + self.cov_cohort

    def all_values(self) -> dict:
        return {**self.fixed, **self.values}


def _fit_block(prep, names, values0, targets, ratios=(), ratio_weight=0.0):
    start = np.array([values0.get(k, FITTED_PARAMETERS[k][0]) for k in names])
    return _minimise(prep, names, start, values0, targets, ratios, ratio_weight)


def fit(data: CalibrationData, fixed: dict, fitted=None, bootstrap: int = 40, seed: int = 12,
        start: dict | None = None, targets=None, ratio_weight: float = 0.0, ratios=None,
        treated_arms: str = LEGACY_TREATED_ARMS) -> FitResult:
    """Fit the risk parameters. ``fixed``: every fixed input (with the reference
    strength); ``fitted``: the parameters to fit (default all; others are held at their
    value in ``start`` or their initial value); ``bootstrap``: virtual-cohort resamples
    for the cohort part of the covariance (0: none); ``targets``: the target table
    (default ``risk_targets.TARGETS``; its role-"fit" rows enter the likelihood);
    ``ratio_weight``: the weight of the published vertebral relative risks in the spine
    likelihood (module docstring; 0: none); ``ratios``: their table (default
    ``risk_targets.RATIOS``, the vertebral ones with both arms simulated); ``treated_arms``:
    how a treated arm enters beside its ratio (:data:`TREATED_ARMS`, module docstring)."""
    if not (ratio_weight >= 0 and math.isfinite(ratio_weight)):
        raise InputError(f"ratio_weight: expected a finite number >= 0, got {ratio_weight!r}")
    if treated_arms not in TREATED_ARMS:
        raise InputError(f"treated_arms: expected one of {', '.join(TREATED_ARMS)}, got {treated_arms!r}")
    fit_ratios = fitted_ratios(data, ratios) if ratio_weight > 0 else ()
    all_targets = TARGETS if targets is None else tuple(targets)
    by_ratio = treated_arms == "ratios" and bool(fit_ratios)
    carried = carried_by_ratios([t for t in all_targets if t.role == "fit"], fit_ratios) if by_ratio else ()
    fitted = tuple(FITTED_PARAMETERS) if fitted is None else tuple(fitted)
    start = dict(start or {})
    held = {k: float(start.get(k, FITTED_PARAMETERS[k][0])) for k in FITTED_PARAMETERS if k not in fitted}
    values0 = {**fixed, **held}
    blocks = []
    for block_names, kinds in ((SPINE_FITTED, ("vertebral",)), (HIP_FITTED, ("hip", "hip_per_fall"))):
        names = tuple(k for k in block_names if k in fitted)
        targets = usable(data, [t for t in all_targets if t.role == "fit" and t.kind in kinds
                                and t.key not in carried])
        if names:
            blocks.append((names, targets, fit_ratios if "vertebral" in kinds else ()))
    prep = _Prepared(data, fixed)
    values = dict(held)
    cov_t = {}
    dispersion, nll = {}, {}
    for names, targets, rts in blocks:
        init = {**values0, **{k: start.get(k, FITTED_PARAMETERS[k][0]) for k in names}}
        res = _fit_block(prep, names, init, targets, rts, ratio_weight)
        values.update(dict(zip(names, (float(v) for v in res.x))))
        full = {**values0, **values}
        fun = lambda th, nm=names, fv=full, tg=targets, rt=rts: _nll(prep, nm, th, fv, tg, rt, ratio_weight)  # noqa: E731
        hess = _hessian(fun, np.asarray(res.x), [FITTED_PARAMETERS[k][1] for k in names])
        try:
            cov = np.linalg.inv(hess)
        except np.linalg.LinAlgError:
            cov = np.linalg.pinv(hess)
        chi2, n = _pearson(prep, full, targets)
        if by_ratio and rts:  # each fitted ratio is an observation of the likelihood
            chi2 += ratio_weight * sum(_ratio_z2(prep, full, rts, {}))
            n += len(rts)
        df = n - len(names)
        factor = max(1.0, chi2 / df) if df > 0 else 1.0
        dispersion[names[0].split("_")[0]] = {"chi2": chi2, "n": n, "df": df, "factor": factor}
        nll[names[0].split("_")[0]] = float(res.fun)
        for i, a in enumerate(names):
            for j, b in enumerate(names):
                cov_t[(a, b)] = float(cov[i, j] * factor)
    names_all = tuple(k for k in FITTED_PARAMETERS if k in fitted)
    cov_targets = np.array([[cov_t.get((a, b), 0.0) for b in names_all] for a in names_all])
    at_bound = [k for k in names_all
                if min(abs(values[k] - FITTED_PARAMETERS[k][1][0]), abs(values[k] - FITTED_PARAMETERS[k][1][1])) < 1e-6]
    # virtual-cohort part: refits on bootstrap resamples of the virtual patients
    cov_cohort = np.zeros_like(cov_targets)
    if bootstrap > 1:
        rng = np.random.Generator(np.random.PCG64(seed))
        reps = []
        for _ in range(int(bootstrap)):
            d = data.resample(rng)
            p = _Prepared(d, fixed)
            v = dict(held)
            for names, targets, rts in blocks:
                init = {**values0, **values}
                res = _minimise(p, names, np.array([values[k] for k in names]), init, targets, rts, ratio_weight)
                v.update(dict(zip(names, res.x)))
            reps.append([v[k] for k in names_all])
        cov_cohort = np.cov(np.array(reps).T, ddof=1).reshape(len(names_all), len(names_all))
    all_values = {k: float(values[k]) for k in FITTED_PARAMETERS}
    return FitResult(all_values, dict(fixed), names_all, cov_targets, cov_cohort, dispersion, at_bound,
                     nll, int(bootstrap), tuple(held), float(ratio_weight), tuple(r.key for r in fit_ratios),
                     treated_arms, tuple(carried))


__all__ = ["DEFAULT_RATIO_WEIGHT", "DEFAULT_TREATED_ARMS", "FITTED_RATIO_KINDS", "LEGACY_TREATED_ARMS", "TREATED_ARMS",
           "CalibrationData", "FitResult", "carried_by_ratios", "fit", "fitted_ratios", "model_value", "ratio_value"]
