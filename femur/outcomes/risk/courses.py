"""A case's inputs to the fracture-risk model, on a monthly grid.

The engine computes strength at the FE visits and the cell model's markers every month.
The risk model integrates each woman's hazard monthly, so a case is turned into monthly
courses here:

* strengths (vertebral; femoral fall in three directions) interpolated LINEARLY IN LOG
  STRENGTH between the visits and held after the last one;
* CTX as a ratio to baseline, monthly from the evaluator's monthly course (else linear
  between the visits; else 1, with a note);
* the patient attributes the hazards use: age, prevalent vertebral fractures, body mass,
  trochanteric soft tissue.

:func:`case_inputs` keeps what a case contributes in a compact JSON-clean dict (visit
strengths, monthly CTX, patient attributes): the calibration stores these once and refits
the risk parameters from them without any FE (``femur.calibration.risk``). A case run with
the linear strength model also keeps each load case's linear quantities at the visits (the
strength surrogate's features), so :func:`with_surrogate_strengths` can give its strengths
under the fitted surrogate exactly as a surrogate run would (the surrogate is a function of
those quantities alone, and the strength model does not feed back into the remodeling).
:class:`CourseBatch` stacks the courses of cases that share a month grid (one study).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from femur.core.errors import InputError
from femur.mechanics.strength import FALL_PREFIXES, quantity_name, strength_kind
from femur.mechanics.surrogate import FEATURE_KINDS
from femur.outcomes.risk.hip import FALL_DIRECTIONS
from femur.outcomes.risk.spine import DEFAULT_FRACTURE_DEFINITION, FRACTURE_DEFINITIONS


#: the strengths the risk model reads: label (the vertebra, each fall direction) -> the load
#: case's quantity prefix (femur.mechanics.strength)
RISK_PREFIXES = {"vertebral": "vertebral", **{d: FALL_PREFIXES[d] for d in FALL_DIRECTIONS}}


def month_grid(duration_months: float) -> np.ndarray:
    """0, 1, 2, ... months up to the duration (which is added when it is not whole)."""
    t = float(duration_months)
    if not (math.isfinite(t) and t > 0):
        raise InputError(f"duration must be > 0 months, got {duration_months!r}")
    grid = np.arange(0.0, math.floor(t + 1e-9) + 1.0)
    if grid[-1] < t - 1e-9:
        grid = np.append(grid, t)
    return grid


def _visit_value(visit: dict, key: str):
    if visit.get(key) is not None:
        return visit[key]
    return (visit.get("extra") or {}).get(key)


def case_inputs(record: dict, result: dict, strength_model: str = "linear") -> dict:
    """The compact risk inputs of one finished case (``record`` and the normalised
    ``result`` of ``femur.study.cases``)."""
    kind = strength_kind(strength_model)
    p = record["patient"]
    visits = result["visits"]
    months = [float(v["month"]) for v in visits]
    strengths = {}
    names = {label: quantity_name(prefix, kind) for label, prefix in RISK_PREFIXES.items()}
    for label, key in names.items():
        vals = [_visit_value(v, key) for v in visits]
        if all(x is not None and x > 0 for x in vals):
            strengths[label] = [float(x) for x in vals]
    features = {}
    if strength_model == "linear":  # the surrogate's features (module docstring)
        for label, prefix in RISK_PREFIXES.items():
            feats = {f: [_visit_value(v, quantity_name(prefix, k)) for v in visits] for f, k in FEATURE_KINDS.items()}
            feats = {f: [float(x) for x in vals] for f, vals in feats.items()
                     if all(x is not None and x > 0 for x in vals)}
            if label in strengths and feats:
                features[label] = feats
    extra = result.get("extra") or {}
    monthly = extra.get("monthly") or {}
    ctx = None
    if "month" in monthly and "ctx_pct" in monthly:
        ctx = {"month": [float(m) for m in monthly["month"]], "ctx_pct": [float(c) for c in monthly["ctx_pct"]]}
    elif all(v.get("ctx_pct") is not None for v in visits):
        ctx = {"month": months, "ctx_pct": [float(v["ctx_pct"]) for v in visits], "at_visits": True}
    return {
        "case_id": record["case_id"],
        "study": record.get("study"),
        "arm": record["arm"],
        "patient_index": int(p.get("index", 0)),
        "duration_months": float(record["duration_months"]),
        "sex": p.get("sex", "female"),
        "age_years": float(p["age_years"]),
        "prevalent_vertebral_fractures": p.get("prevalent_vertebral_fractures"),
        "body_mass_kg": float(p["body_mass_kg"]),
        "soft_tissue_mm": p.get("trochanteric_soft_tissue_mm"),
        "visit_months": months,
        "strength_n": strengths,
        "ctx": ctx,
        "strength_model": strength_model,
        **({"strength_features": features} if features else {}),
        # the femur's scalar anatomy (the surrogate's geometry terms read it)
        **({"femur_anatomy": extra["femur_anatomy"]} if features and extra.get("femur_anatomy") else {}),
    }


def with_surrogate_strengths(case: dict, fits: dict, femur_anatomy: dict | None = None) -> dict:
    """A copy of ``case`` (:func:`case_inputs` of a linear-model case) whose visit
    strengths are the strength surrogate's predictions from the stored linear quantities
    and the femur's anatomy (``femur_anatomy``, default the case's own; the fits with
    geometry terms read it) (``fits``: {quantity prefix: femur.mechanics.surrogate.SurrogateFit}, e.g.
    ``load_fits()``). InputError naming the case and the load case when a strength has no
    stored features or no fit."""
    if case.get("strength_model") != "linear":
        raise InputError(f"case {case.get('case_id')}: surrogate strengths come from a linear-model case, "
                         f"this one ran {case.get('strength_model')!r}")
    stored = case.get("strength_features") or {}
    geometry = femur_anatomy or case.get("femur_anatomy")
    if not case.get("visit_months") or float(case["visit_months"][0]) != 0.0:
        raise InputError(f"case {case.get('case_id')}: surrogate strengths need the month-0 visit first "
                         f"(the reference of the change), got visit months {case.get('visit_months')!r}")
    out = {}
    for label in case["strength_n"]:
        prefix = RISK_PREFIXES[label]
        if label not in stored:
            raise InputError(f"case {case.get('case_id')}: no stored linear quantities of {prefix} (courses "
                             "made before they were kept): simulate the calibration again")
        if prefix not in fits:
            raise InputError(f"case {case.get('case_id')}: the strength surrogate has no fit for {prefix}")
        feats = stored[label]
        fit = fits[prefix]
        lacking = [f for f in dict.fromkeys((*fit.features, *fit.change_features)) if f not in feats]
        if lacking:
            raise InputError(f"case {case.get('case_id')}: the strength surrogate of {prefix} reads "
                             f"{', '.join(lacking)}, and the case stored only {', '.join(sorted(feats))} "
                             "(an evaluator that gives no such linear quantities: fit its courses with "
                             "--strengths linear)")
        n = len(case["visit_months"])
        if fits[prefix].geometry and not geometry:
            raise InputError(f"case {case.get('case_id')}: the strength surrogate of {prefix} reads the femur's "
                             "anatomy, and the case stored none (courses made before it was kept)")
        at = [{f: feats[f][i] for f in feats} for i in range(n)]
        # the first visit (month 0) is the reference of a fit's change part, as in a run
        out[label] = [fits[prefix].predict(at[i], geometry, at[0]) for i in range(n)]
    return {**case, "strength_n": out, "strength_model": "surrogate"}


@dataclass
class RiskCourse:
    """One case's monthly risk inputs (see the module docstring)."""

    case_id: str
    arm: str
    patient_index: int
    months: np.ndarray
    age_years: float
    prevalent_vertebral_fractures: int
    body_mass_kg: float
    soft_tissue_mm: float | None
    vertebral_strength_n: np.ndarray | None
    fall_strength_n: np.ndarray | None  # (months, 3): lateral, posterolateral, anterolateral
    ctx_ratio: np.ndarray
    notes: tuple = field(default=())

    @classmethod
    def from_inputs(cls, d: dict, months: np.ndarray | None = None) -> RiskCourse:
        grid = month_grid(d["duration_months"]) if months is None else np.asarray(months, float)
        notes = []
        vm = np.asarray(d["visit_months"], dtype=float)

        def log_interp(values):
            return np.exp(np.interp(grid, vm, np.log(np.asarray(values, dtype=float))))

        s = d["strength_n"]
        vert = log_interp(s["vertebral"]) if "vertebral" in s else None
        fall = None
        if "lateral" in s:
            cols = []
            for direction in FALL_DIRECTIONS:
                if direction not in s:
                    notes.append(f"no {direction} fall strength: the lateral one is used")
                cols.append(log_interp(s.get(direction, s["lateral"])))
            fall = np.stack(cols, axis=-1)
        ctx = d.get("ctx")
        if ctx is None:
            ratio = np.ones_like(grid)
            notes.append("no CTX course: turnover held at baseline")
        else:
            if ctx.get("at_visits"):
                notes.append("CTX known at the visits only: linear between them")
            ratio = np.maximum(1.0 + np.interp(grid, ctx["month"], ctx["ctx_pct"]) / 100.0, 1e-6)
        n_prev = d.get("prevalent_vertebral_fractures")
        if n_prev is None:
            notes.append("no prevalent vertebral fracture count: 0 assumed")
            n_prev = 0
        return cls(d["case_id"], d["arm"], int(d["patient_index"]), grid, float(d["age_years"]), int(n_prev),
                   float(d["body_mass_kg"]), d.get("soft_tissue_mm"), vert, fall, ratio, tuple(notes))


@dataclass
class CourseBatch:
    """The courses of several cases on one month grid, stacked (cases x months)."""

    courses: list
    months: np.ndarray
    age_years: np.ndarray
    prevalent: np.ndarray
    body_mass_kg: np.ndarray
    soft_tissue_mm: np.ndarray | None
    vertebral_strength_n: np.ndarray | None
    fall_strength_n: np.ndarray | None
    ctx_ratio: np.ndarray
    #: how the study counts a new vertebral fracture (spine.FRACTURE_DEFINITIONS)
    fracture_definition: str = DEFAULT_FRACTURE_DEFINITION

    @classmethod
    def of(cls, courses: list, fracture_definition: str = DEFAULT_FRACTURE_DEFINITION) -> CourseBatch:
        if not courses:
            raise InputError("a course batch needs at least one case")
        if fracture_definition not in FRACTURE_DEFINITIONS:
            raise InputError(f"vertebral fracture definition {fracture_definition!r}: expected one of "
                             f"{sorted(FRACTURE_DEFINITIONS)}")
        months = courses[0].months
        if any(c.months.shape != months.shape or np.any(c.months != months) for c in courses):
            raise InputError("the cases of a batch must share their month grid (one study)")
        vert = None
        if all(c.vertebral_strength_n is not None for c in courses):
            vert = np.stack([c.vertebral_strength_n for c in courses])
        fall = None
        if all(c.fall_strength_n is not None for c in courses):
            fall = np.stack([c.fall_strength_n for c in courses])
        stt = None
        if all(c.soft_tissue_mm is not None for c in courses):
            stt = np.array([float(c.soft_tissue_mm) for c in courses])
        return cls(list(courses), months, np.array([c.age_years for c in courses]),
                   np.array([c.prevalent_vertebral_fractures for c in courses]),
                   np.array([c.body_mass_kg for c in courses]), stt, vert, fall,
                   np.stack([c.ctx_ratio for c in courses]), fracture_definition)

    def __len__(self) -> int:
        return len(self.courses)

    def subset(self, index) -> CourseBatch:
        """The batch of the cases ``index`` (an index array; repeats allowed, as in a
        bootstrap resample)."""
        idx = np.asarray(index, dtype=int)

        def take(a):
            return None if a is None else a[idx]

        return CourseBatch([self.courses[i] for i in idx], self.months, self.age_years[idx],
                           self.prevalent[idx], self.body_mass_kg[idx], take(self.soft_tissue_mm),
                           take(self.vertebral_strength_n), take(self.fall_strength_n), self.ctx_ratio[idx],
                           self.fracture_definition)


__all__ = ["RISK_PREFIXES", "CourseBatch", "RiskCourse", "case_inputs", "month_grid", "with_surrogate_strengths"]
