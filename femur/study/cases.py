"""Case records (one per patient x arm) and the evaluator result format.

A case record is a plain JSON-serialisable dict that holds everything needed to re-run
that one case alone: the patient (every sampled parameter and its seed), the arm's
regimen, the visit months, the model settings, the risk settings, the study seed and the
package version.

The evaluator
-------------
An evaluator is ``evaluator(record, comm) -> result`` (or ``evaluator(record)``), where
``comm`` is the MPI communicator of the rank group that runs this case (all ranks of
the group call it together).  It must be deterministic given the record (use
``record["patient"]["case_seed"]`` for any random numbers) and must not depend on the
group size beyond round-off.  The result returned on group rank 0 is kept; other ranks
may return None.  ``result`` is ``{"visits": [visit, ...]}`` (or just the list) with one dict
per visit month of the record, each holding (NaN/None allowed for endpoints the study
does not ask for)::

    month                        visit month (must match record["visit_months"])
    ls_bmd_pct, th_bmd_pct, fn_bmd_pct            % change of areal BMD from month 0
    vertebral_strength_pct                         % change of vertebral strength
    femoral_fall_strength_pct, femoral_stance_strength_pct
    p1np_pct, ctx_pct                              % change of the markers from month 0
    vertebral_strength_n                           absolute strengths (N), for the risk
    femoral_fall_strength_n                        model (femoral_fall = lateral fall)
    femoral_stance_strength_n
    femoral_fall_posterolateral_strength_n         optional: the other fall directions;
    femoral_fall_anterolateral_strength_n          without them the hip risk uses the
                                                   lateral strength for every direction

The strength names are the quantity names of ``femur.mechanics.strength`` (of the strength
model the study asks for, ``[model] strength_model``; "linear": ``*_strength_n``).
The result may also hold ``"monthly": {"month": [...], "ctx_pct": [...], ...}`` (monthly
courses between the visits; the risk model's turnover term reads ``ctx_pct`` from it). An evaluator
that accepts ``fields_dir=`` is given a folder for the case's fields when the study is run
with ``fields=True`` (``femur run --figures``); it writes them there (the default
evaluator: ``<bone>_fields.vtu``).

Any other keys are kept in the case file but not put in the table.
"""

from __future__ import annotations

import hashlib
import inspect
import json
import math
from importlib import import_module

from femur.core.errors import InputError, SolverError
from femur.core.units import DAYS_PER_MONTH
from femur.core.version import __version__
from femur.mechanics.strength import FALL_PREFIXES, pct_name, quantity_name
from femur.study.spec import StudySpec
from femur.treatments.regimen import Regimen, TreatmentSequence

#: 2: fall strengths in three directions, the risk settings left out of the record (the
#: risk is computed from the case files, so changing it never invalidates a case)
RESULT_FORMAT_VERSION = 2

#: the strengths a case reports: the quantity names of femur.mechanics.strength
STRENGTH_PREFIXES = ("vertebral", "femoral_fall", "femoral_stance",
                     *(p for p in FALL_PREFIXES.values() if p != "femoral_fall"))
ABS_KEYS = tuple(quantity_name(p) for p in STRENGTH_PREFIXES)
PCT_KEYS = (
    "ls_bmd_pct",
    "th_bmd_pct",
    "fn_bmd_pct",
    *(pct_name(k) for k in ABS_KEYS),
    "p1np_pct",
    "ctx_pct",
)
RESULT_KEYS = PCT_KEYS + ABS_KEYS

# endpoint -> result keys the evaluator must provide for it
ENDPOINT_KEYS = {
    "ls_bmd": ("ls_bmd_pct",),
    "th_bmd": ("th_bmd_pct",),
    "fn_bmd": ("fn_bmd_pct",),
    "vertebral_strength": ("vertebral_strength_pct", "vertebral_strength_n"),
    "femoral_fall_strength": ("femoral_fall_strength_pct", "femoral_fall_strength_n"),
    "femoral_stance_strength": ("femoral_stance_strength_pct", "femoral_stance_strength_n"),
    "p1np": ("p1np_pct",),
    "ctx": ("ctx_pct",),
    "vertebral_fracture": ("vertebral_strength_n",),
    "hip_fracture": ("femoral_fall_strength_n",),
}

# The real (FE + remodeling) evaluator.
DEFAULT_EVALUATOR = "femur.study.evaluator:run_case"


def canonical_json(obj) -> str:
    """Deterministic JSON (sorted keys, exact float repr)."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), allow_nan=False)


def record_hash(record: dict) -> str:
    return hashlib.sha256(canonical_json(record).encode()).hexdigest()[:16]


def case_id(patient: dict, arm_name: str) -> str:
    """Stable id: does not depend on the cohort size or the number of arms."""
    return f"{patient['patient_id']}-{arm_name}"


def make_records(spec: StudySpec, patients: list[dict]) -> list[dict]:
    """One record per patient x arm, ordered patient-major (case_index)."""
    records = []
    model = {
        "femur": spec.model.femur,
        "mesh_size_mm": spec.model.mesh_size_mm,
        "order": spec.model.order,
        "solver": spec.model.solver,
        "fe_interval_days": spec.model.fe_interval_days,
        "strength_model": spec.model.strength_model,
    }
    if spec.model.fe_adaptive_tol is not None:  # only then: the records of fixed-interval runs are unchanged
        model["fe_adaptive_tol"] = spec.model.fe_adaptive_tol
    for p in patients:
        for j, arm in enumerate(spec.arms):
            records.append(
                {
                    "case_id": case_id(p, arm.name),
                    "case_index": len(records),
                    "study": spec.name,
                    "study_seed": spec.seed,
                    "femur_version": __version__,
                    "result_format": RESULT_FORMAT_VERSION,
                    "arm": arm.name,
                    "arm_index": j,
                    "regimen": [
                        {
                            "drug": ph.drug,
                            "dose_mg": ph.dose_mg,
                            "interval_days": ph.interval_days,
                            "start_month": ph.start_month,
                            "end_month": ph.end_month,
                        }
                        for ph in arm.regimen
                    ],
                    "regimen_text": arm.regimen_text,
                    "duration_months": spec.duration_months,
                    "visit_months": list(spec.visit_months),
                    "endpoints": list(spec.endpoints),
                    "model": model,
                    "patient": p,
                }
            )
    # records must be JSON-clean (fail early, not after hours of compute)
    for r in records:
        canonical_json(r)
    return records


def dose_times_days(record: dict) -> list[tuple[float, str, float]]:
    """(time in days, drug, dose in mg) of every dose of the record's regimen; a helper
    for evaluators.  Month m starts at day m * 365.25 / 12."""
    out = []
    for ph in record["regimen"]:
        if ph["drug"] == "placebo" or ph["dose_mg"] <= 0:
            continue
        t = ph["start_month"] * DAYS_PER_MONTH
        end = ph["end_month"] * DAYS_PER_MONTH
        while t < end - 1e-9:
            out.append((t, ph["drug"], ph["dose_mg"]))
            t += ph["interval_days"]
    return out


def record_treatment(record: dict):
    """The record's regimen as a :class:`femur.treatments.regimen.TreatmentSequence`
    (placebo phases included as placebo courses), for evaluators."""
    courses = []
    for ph in record["regimen"]:
        kw = {}
        if ph["drug"] != "placebo":
            kw = {"dose": ph["dose_mg"], "dose_unit": "mg", "interval_days": ph["interval_days"]}
        courses.append(
            Regimen(
                ph["drug"],
                start_day=ph["start_month"] * DAYS_PER_MONTH,
                duration_days=(ph["end_month"] - ph["start_month"]) * DAYS_PER_MONTH,
                **kw,
            )
        )
    return TreatmentSequence(tuple(courses))


# ---------------------------------------------------------------------------------------
# evaluators
# ---------------------------------------------------------------------------------------
def resolve_evaluator(evaluator=None, spec: StudySpec | None = None):
    """A callable from a callable, a ``"module:function"`` string, the study's
    ``[model] evaluator`` or :data:`DEFAULT_EVALUATOR`."""
    if evaluator is None and spec is not None and spec.model.evaluator:
        evaluator = spec.model.evaluator
    if evaluator is None:
        evaluator = DEFAULT_EVALUATOR
    if callable(evaluator):
        return evaluator
    if isinstance(evaluator, str) and ":" in evaluator:
        mod_name, attr = evaluator.split(":", 1)
        try:
            mod = import_module(mod_name)
        except ImportError as exc:
            raise InputError(
                f"evaluator {evaluator!r}: cannot import module {mod_name!r} ({exc}); "
                "the FE + remodeling case evaluator may not be installed yet"
            ) from None
        fn = getattr(mod, attr, None)
        if not callable(fn):
            raise InputError(f"evaluator {evaluator!r}: {mod_name} has no function {attr!r}")
        return fn
    raise InputError(f"evaluator must be a callable or 'module:function', got {evaluator!r}")


def takes_fields_dir(evaluator) -> bool:
    """True when the evaluator accepts ``fields_dir=`` (it can write per-case fields)."""
    try:
        return "fields_dir" in inspect.signature(evaluator).parameters
    except (TypeError, ValueError):
        return False


def call_evaluator(evaluator, record: dict, comm, fields_dir=None):
    """Call an evaluator as it accepts: ``(record)``, ``(record, comm)``; with
    ``fields_dir`` when given (only to evaluators that take it)."""
    try:
        params = inspect.signature(evaluator).parameters
        takes_comm = "comm" in params or len(
            [p for p in params.values() if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
        ) >= 2
    except (TypeError, ValueError):
        takes_comm = True
    kw = {"fields_dir": fields_dir} if fields_dir is not None else {}
    return evaluator(record, comm, **kw) if takes_comm else evaluator(record, **kw)


def _float_or_none(value, where):
    if value is None:
        return None
    if isinstance(value, bool):
        raise SolverError(f"{where}: expected a number, got {value!r}")
    try:
        x = float(value)
    except (TypeError, ValueError):
        raise SolverError(f"{where}: expected a number, got {value!r}") from None
    return x if math.isfinite(x) else None


def normalise_result(record: dict, result) -> dict:
    """Check an evaluator's result against the record and return
    ``{"visits": [...]}`` with plain floats (None for missing/NaN)."""
    cid = record["case_id"]
    if isinstance(result, dict) and "visits" in result:
        visits = result["visits"]
        extra = {k: v for k, v in result.items() if k != "visits"}
    else:
        visits, extra = result, {}
    if isinstance(visits, dict):
        visits = [dict(v, month=float(m)) for m, v in visits.items()]
    if not isinstance(visits, list) or not all(isinstance(v, dict) for v in visits):
        raise SolverError(f"case {cid}: evaluator must return {{'visits': [dict per visit]}}, got {type(result).__name__}")
    by_month = {}
    for v in visits:
        if "month" not in v:
            raise SolverError(f"case {cid}: a visit dict has no 'month'")
        by_month[float(v["month"])] = v
    expected = [float(m) for m in record["visit_months"]]
    if sorted(by_month) != expected:
        raise SolverError(f"case {cid}: evaluator returned visit months {sorted(by_month)}, expected {expected}")
    required = sorted({k for e in record["endpoints"] for k in ENDPOINT_KEYS[e]})
    out_visits = []
    for m in expected:
        v = by_month[m]
        row = {"month": m}
        for key in RESULT_KEYS:
            row[key] = _float_or_none(v.get(key), f"case {cid}, month {m:g}, {key}")
        missing = [k for k in required if row[k] is None]
        if missing:
            raise SolverError(f"case {cid}, month {m:g}: evaluator gave no finite value for {missing}")
        for key in ABS_KEYS:
            if row[key] is not None and row[key] <= 0:
                raise SolverError(f"case {cid}, month {m:g}: {key} must be > 0 N, got {row[key]}")
        others = {k: v[k] for k in v if k not in row and k != "month"}
        if others:
            row["extra"] = others
        out_visits.append(row)
    out = {"visits": out_visits}
    if extra:
        out["extra"] = extra
    try:
        canonical_json(out)
    except (TypeError, ValueError) as exc:
        raise SolverError(f"case {cid}: evaluator result is not JSON-serialisable: {exc}") from None
    return out


__all__ = [
    "ABS_KEYS",
    "DEFAULT_EVALUATOR",
    "PCT_KEYS",
    "RESULT_KEYS",
    "call_evaluator",
    "canonical_json",
    "case_id",
    "dose_times_days",
    "make_records",
    "normalise_result",
    "record_hash",
    "record_treatment",
    "resolve_evaluator",
    "takes_fields_dir",
]
