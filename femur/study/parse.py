"""Study files (TOML) and dicts -> :class:`femur.study.spec.StudySpec`: parse, validate,
normalise. The file layout is documented in ``femur.study.spec``.

Every error names the file and the key at fault. Regimens use the one drug table
(``femur.treatments.drugs``): a phase without ``months`` runs to the study end, unless the
drug's label fixes its course (romosozumab: 12 monthly doses), then an untreated
(placebo) tail follows.
"""

from __future__ import annotations

import copy
import tomllib
from pathlib import Path

from femur.core.errors import InputError
from femur.core.sex import normalise_sex
from femur.outcomes.risk import FRACTURE_DEFINITIONS
from femur.study.scans import parse_scans
from femur.study.spec import (
    _ALLOWED,
    _NAME_RE,
    DEFAULT_AGE_MEAN,
    DEFAULT_AGE_SD,
    ENDPOINTS,
    FEMUR_MODELS,
    SCAN_ENDPOINTS,
    T_SCORE_SITES,
    Arm,
    CohortSpec,
    Inclusion,
    ModelSpec,
    Phase,
    RiskSpec,
    StudySpec,
    _err,
    _int,
    _number,
    _range,
    _str,
    builtin_studies,
    settle_strength_model,
)
from femur.treatments.drugs import KNOWN_DRUGS, get_drug


def _check_keys(table: dict, section: str, src: str, where: str | None = None) -> None:
    allowed = _ALLOWED[section]
    unknown = sorted(set(table) - allowed)
    if unknown:
        raise _err(
            src,
            where or section,
            f"unknown key(s) {unknown}; allowed keys: {sorted(allowed)}",
        )


def _drug(name, key, src) -> str:
    d = _str(name, key, src).lower()
    if d not in KNOWN_DRUGS:
        raise _err(src, key, f"unknown drug {name!r}; known drugs: {sorted(KNOWN_DRUGS)}")
    return d


def _parse_regimen(value, key, src, duration) -> tuple[tuple[Phase, ...], str]:
    """Normalise a regimen to phases covering [0, duration]."""
    items: list[dict] = []
    if isinstance(value, str):
        text = value.strip()
        if not text:
            raise _err(src, key, "empty regimen")
        for part in text.split(","):
            part = part.strip()
            if ":" in part:
                drug, months = part.split(":", 1)
                try:
                    m = float(months)
                except ValueError:
                    raise _err(src, key, f"bad phase {part!r}: months must be a number") from None
                items.append({"drug": drug.strip(), "months": m})
            else:
                items.append({"drug": part})
    elif isinstance(value, dict):
        items = [value]
    elif isinstance(value, list) and value and all(isinstance(v, dict) for v in value):
        items = list(value)
    else:
        raise _err(
            src,
            key,
            "expected a string like 'romosozumab' or 'romosozumab:12,denosumab:12', "
            f"a table or a list of tables, got {value!r}",
        )
    phases = []
    start = 0.0
    for i, item in enumerate(items):
        pkey = f"{key}[{i}]" if len(items) > 1 else key
        _check_keys(item, "regimen", src, pkey)
        if "drug" not in item:
            raise _err(src, pkey, "missing 'drug'")
        drug = _drug(item["drug"], f"{pkey}.drug", src)
        default = get_drug(drug)
        if drug == "placebo":
            for k in ("dose_mg", "interval_days"):
                if k in item:
                    raise _err(src, f"{pkey}.{k}", "placebo takes no dose")
            dose, interval = 0.0, 0.0
        else:
            dose = _number(item.get("dose_mg", default.dose_mg), f"{pkey}.dose_mg", src)
            if dose < 0:
                raise _err(src, f"{pkey}.dose_mg", f"negative dose {dose} mg; a dose must be > 0")
            if dose == 0:
                raise _err(src, f"{pkey}.dose_mg", "dose is 0 mg; use drug 'placebo' for no drug")
            interval = _number(
                item.get("interval_days", default.interval_days), f"{pkey}.interval_days", src
            )
            if interval <= 0:
                raise _err(src, f"{pkey}.interval_days", f"must be > 0 days, got {interval}")
        open_ended = False
        if "months" in item:
            months = _number(item["months"], f"{pkey}.months", src)
            if months <= 0:
                raise _err(src, f"{pkey}.months", f"must be > 0, got {months}")
            end = start + months
        elif i == len(items) - 1:
            # no duration: to the study end, or the label's fixed course if shorter
            label = default.label_course_months
            end = float(duration) if label is None else min(float(duration), start + label)
            open_ended = True
        else:
            raise _err(src, f"{pkey}.months", "every phase but the last needs a duration in months")
        if end > duration + 1e-9:
            raise _err(
                src,
                key,
                f"regimen runs to month {end:g}, after the study end ({duration:g} months)",
            )
        phases.append(Phase(drug, dose, interval, start, end, open_ended))
        start = end
    if start < duration - 1e-9:  # untreated tail
        phases.append(Phase("placebo", 0.0, 0.0, start, float(duration), True))
    text = ",".join(
        f"{p.drug}:{p.end_month - p.start_month:g}" + (f"@{p.dose_mg:g}mg/{p.interval_days:g}d" if p.dose_mg else "")
        for p in phases
    )
    return tuple(phases), text


# ---------------------------------------------------------------------------------------
# public API
# ---------------------------------------------------------------------------------------
def parse_study(data: dict, source: str = "<dict>") -> StudySpec:
    """Validate a parsed TOML document and return a :class:`StudySpec`."""
    src = str(source)
    if not isinstance(data, dict):
        raise _err(src, "<top>", "expected a TOML table")
    data = copy.deepcopy(data)
    _check_keys(data, "<top>", src, "top level")

    study = data.get("study")
    if not isinstance(study, dict):
        raise _err(src, "[study]", "missing [study] table (name, duration_months, visit_months, seed)")
    _check_keys(study, "study", src, "[study]")
    for k in ("name", "duration_months", "visit_months"):
        if k not in study:
            raise _err(src, f"study.{k}", "missing required key")
    name = _str(study["name"], "study.name", src)
    if not _NAME_RE.match(name):
        raise _err(src, "study.name", f"use letters, digits, '_', '-', '.', got {name!r}")
    duration = _number(study["duration_months"], "study.duration_months", src)
    if duration <= 0:
        raise _err(src, "study.duration_months", f"must be > 0, got {duration:g}")
    visits_raw = study["visit_months"]
    if not isinstance(visits_raw, list) or not visits_raw:
        raise _err(src, "study.visit_months", f"expected a non-empty list of months, got {visits_raw!r}")
    visits = tuple(_number(v, "study.visit_months", src) for v in visits_raw)
    if any(b <= a for a, b in zip(visits, visits[1:])):
        raise _err(src, "study.visit_months", f"months must increase strictly, got {list(visits)}")
    if visits[0] != 0:
        raise _err(src, "study.visit_months", f"the first visit must be month 0 (baseline), got {visits[0]:g}")
    late = [v for v in visits if v > duration]
    if late:
        raise _err(
            src,
            "study.visit_months",
            f"visit(s) {late} after the end of the study (duration_months = {duration:g})",
        )
    seed = _int(study.get("seed", 0), "study.seed", src)
    if seed < 0:
        raise _err(src, "study.seed", f"must be >= 0, got {seed}")

    if "endpoints" in study and "endpoints" in data:
        raise _err(src, "endpoints", "given both at top level and in [study]; keep one")
    on_scans = isinstance(data.get("cohort"), dict) and "scans" in data["cohort"]
    endpoints_raw = study.get("endpoints", data.get("endpoints", list(SCAN_ENDPOINTS if on_scans else ENDPOINTS)))
    if not isinstance(endpoints_raw, list) or not endpoints_raw:
        raise _err(src, "study.endpoints", f"expected a non-empty list, got {endpoints_raw!r}")
    endpoints = []
    for e in endpoints_raw:
        e = _str(e, "study.endpoints", src)
        if e not in ENDPOINTS:
            raise _err(src, "study.endpoints", f"unknown endpoint {e!r}; known: {list(ENDPOINTS)}")
        if on_scans and e not in SCAN_ENDPOINTS:
            raise _err(src, "study.endpoints", f"endpoint {e!r} needs a femur; a study on CT scans "
                       f"(vertebrae) has the endpoints {list(SCAN_ENDPOINTS)}")
        endpoints.append(e)

    # cohort -----------------------------------------------------------------------------
    cohort = data.get("cohort")
    if not isinstance(cohort, dict):
        raise _err(src, "[cohort]", "missing [cohort] table (size, sex, inclusion)")
    _check_keys(cohort, "cohort", src, "[cohort]")
    scans = ()
    if on_scans:
        for k in ("size", "inclusion", "sex", "age_mean", "age_sd", "prevalent_vertebral_fractures"):
            if k in cohort:
                raise _err(src, f"cohort.{k}", "not with scans: a study on CT scans has one patient "
                           "per scan, with its own sex and age (listed in cohort.scans)")
        coarsen = _int(cohort.get("voxel_coarsen", 1), "cohort.voxel_coarsen", src)
        if coarsen < 1:
            raise _err(src, "cohort.voxel_coarsen", f"must be an integer >= 1, got {coarsen}")
        scans = parse_scans(cohort["scans"], src, coarsen)
        cohort = dict(cohort, size=len(scans))
    elif "voxel_coarsen" in cohort:
        raise _err(src, "cohort.voxel_coarsen", "is for a study on CT scans (cohort.scans)")
    if "size" not in cohort:
        raise _err(src, "cohort.size", "missing required key")
    size = _int(cohort["size"], "cohort.size", src)
    if size < 1:
        raise _err(src, "cohort.size", f"must be >= 1 virtual patient, got {size}")
    try:
        sex = normalise_sex(_str(cohort.get("sex", "female"), "cohort.sex", src))
    except InputError:
        raise _err(src, "cohort.sex", f"expected 'female' or 'male' ('F'/'M'), got {cohort.get('sex')!r}") from None
    inc = cohort.get("inclusion", {})
    if not isinstance(inc, dict):
        raise _err(src, "cohort.inclusion", f"expected a table, got {inc!r}")
    _check_keys(inc, "cohort.inclusion", src, "[cohort.inclusion]")
    age = _range(inc.get("age", [55, 90]), "cohort.inclusion.age", src)
    if age[0] < 18 or age[1] > 110:
        raise _err(src, "cohort.inclusion.age", f"expected ages within 18-110, got {list(age)}")
    t_scores = {}
    for site in T_SCORE_SITES:
        k, old_k = f"{site}_t_score", f"t_score_{site}"
        if k in inc and old_k in inc:
            raise _err(src, f"cohort.inclusion.{k}", f"given twice (also as {old_k}); keep one")
        k = old_k if old_k in inc else k
        if k in inc:
            lo, hi = _range(inc[k], f"cohort.inclusion.{k}", src)
            if lo < -6 or hi > 4:
                raise _err(src, f"cohort.inclusion.{k}", f"T-scores must lie in [-6, 4], got {[lo, hi]}")
            t_scores[site] = (lo, hi)
    rule = _str(inc.get("t_score_rule", "any"), "cohort.inclusion.t_score_rule", src).lower()
    if rule not in ("any", "all"):
        raise _err(src, "cohort.inclusion.t_score_rule", f"expected 'any' or 'all', got {rule!r}")
    age_mean = _number(cohort.get("age_mean", DEFAULT_AGE_MEAN), "cohort.age_mean", src)
    age_sd = _number(cohort.get("age_sd", DEFAULT_AGE_SD), "cohort.age_sd", src)
    if age_sd <= 0:
        raise _err(src, "cohort.age_sd", f"must be > 0 years, got {age_sd:g}")
    if not 18 <= age_mean <= 110:
        raise _err(src, "cohort.age_mean", f"expected an age within 18-110 years, got {age_mean:g}")
    shares = _prevalent_shares(cohort.get("prevalent_vertebral_fractures", [1.0, 0.0, 0.0, 0.0]), src)
    cohort_spec = CohortSpec(size, sex, Inclusion(age, t_scores, rule), scans, age_mean, age_sd, shares)

    # arms -------------------------------------------------------------------------------
    arms_raw = data.get("arms")
    if arms_raw is None:
        raise _err(src, "[[arms]]", "missing: a study needs at least one [[arms]] table")
    if not isinstance(arms_raw, list) or not all(isinstance(a, dict) for a in arms_raw):
        raise _err(src, "[[arms]]", "expected an array of tables ([[arms]])")
    if not arms_raw:
        raise _err(src, "[[arms]]", "no arm: a study needs at least one [[arms]] table")
    arms = []
    for i, a in enumerate(arms_raw):
        key = f"arms[{i}]"
        _check_keys(a, "arms", src, key)
        if "name" not in a:
            raise _err(src, f"{key}.name", "missing required key")
        if "regimen" not in a:
            raise _err(src, f"{key}.regimen", "missing required key")
        arm_name = _str(a["name"], f"{key}.name", src)
        if not _NAME_RE.match(arm_name):
            raise _err(src, f"{key}.name", f"use letters, digits, '_', '-', '.', got {arm_name!r}")
        if any(x.name == arm_name for x in arms):
            raise _err(src, f"{key}.name", f"duplicate arm name {arm_name!r}")
        phases, text = _parse_regimen(a["regimen"], f"{key}.regimen", src, duration)
        arms.append(Arm(arm_name, phases, text, str(a.get("description", ""))))

    # model ------------------------------------------------------------------------------
    model = data.get("model", {})
    if not isinstance(model, dict):
        raise _err(src, "[model]", f"expected a table, got {model!r}")
    _check_keys(model, "model", src, "[model]")
    mdef = ModelSpec()
    mesh = _number(model.get("mesh_size_mm", mdef.mesh_size_mm), "model.mesh_size_mm", src)
    if mesh <= 0:
        raise _err(src, "model.mesh_size_mm", f"must be > 0 mm, got {mesh:g}")
    order = _int(model.get("order", mdef.order), "model.order", src)
    if order not in (1, 2):
        raise _err(src, "model.order", f"element order must be 1 or 2, got {order}")
    solver = _str(model.get("solver", mdef.solver), "model.solver", src)
    if not _NAME_RE.match(solver):
        raise _err(src, "model.solver", f"expected a solver configuration name, got {solver!r}")
    fe_int = _number(model.get("fe_interval_days", mdef.fe_interval_days), "model.fe_interval_days", src)
    if fe_int <= 0:
        raise _err(src, "model.fe_interval_days", f"must be > 0 days, got {fe_int:g}")
    evaluator = model.get("evaluator")
    if evaluator is not None:
        evaluator = _str(evaluator, "model.evaluator", src)
        if ":" not in evaluator:
            raise _err(src, "model.evaluator", f"expected 'module:function', got {evaluator!r}")
    femur_model = _str(model.get("femur", mdef.femur), "model.femur", src)
    if femur_model not in FEMUR_MODELS:
        raise _err(src, "model.femur", f"expected one of {', '.join(FEMUR_MODELS)} (default femur: the "
                   f"anatomical femur), got {femur_model!r}")
    strength_model = _str(model.get("strength_model", mdef.strength_model), "model.strength_model", src)
    risk_spec = _parse_risk(data.get("risk", {}), src, [a.name for a in arms], arms)
    # "auto" (the default) is settled here, for the study's bones and its risk parameters
    # (and a resume sees a change)
    strength_model, strength_reason = settle_strength_model(
        strength_model, bool(cohort_spec.scans), femur_model, mesh, f"{src}: model.strength_model",
        risk_spec.parameters)
    adaptive = model.get("fe_adaptive_tol")
    if adaptive is not None:
        adaptive = _number(adaptive, "model.fe_adaptive_tol", src)
        if not 0 <= adaptive < 1:
            raise _err(src, "model.fe_adaptive_tol", f"must be a relative modulus change in [0, 1), got {adaptive:g}")
    model_spec = ModelSpec(mesh, femur_model, order, solver, fe_int, evaluator, strength_model, adaptive,
                           strength_reason)

    return StudySpec(name, duration, visits, seed, cohort_spec, tuple(arms), tuple(endpoints), model_spec,
                     risk_spec, source=src, description=str(study.get("description", "")))


#: [risk] keys of earlier versions and what replaced them
_RETIRED_RISK_KEYS = {
    "vertebral_h0_per_year": "the spine hazard is calibrated once on the FREEDOM, FPT, FIT and "
                             "FRAME placebo targets (python -m femur.calibration.risk) and read "
                             "from [risk] parameters",
    "mc_samples": "the hip model integrates over the fall variables by quadrature",
    "p_hip_impact": "it is now hip_impact_share (row 15: 40 % of falls)",
}


def _prevalent_shares(value, src) -> tuple[float, ...]:
    key = "cohort.prevalent_vertebral_fractures"
    if not isinstance(value, list) or len(value) != 4:
        raise _err(src, key, "expected the shares of women with 0, 1, 2 and >= 3 prevalent "
                   f"vertebral fractures, e.g. [0.77, 0.13, 0.06, 0.04], got {value!r}")
    shares = tuple(_number(v, key, src) for v in value)
    if any(x < 0 for x in shares) or abs(sum(shares) - 1.0) > 1e-6:
        raise _err(src, key, f"shares must be >= 0 and sum to 1, got {list(shares)} (sum {sum(shares):g})")
    return shares


def _parse_risk(risk, src, arm_names, arms) -> RiskSpec:
    if not isinstance(risk, dict):
        raise _err(src, "[risk]", f"expected a table, got {risk!r}")
    for old, why in _RETIRED_RISK_KEYS.items():
        if old in risk:
            raise _err(src, f"risk.{old}", f"no longer a study setting: {why}")
    _check_keys(risk, "risk", src, "[risk]")
    rdef = RiskSpec()
    params = _str(risk.get("parameters", rdef.parameters), "risk.parameters", src)
    if params != "default":
        path = Path(params)
        if not path.is_absolute() and src != "<dict>":
            path = Path(src).parent / path
        if not path.is_file():
            raise _err(src, "risk.parameters", f"no parameter file {str(path)!r}; give \"default\" "
                       "(femur/data/fracture_risk.json) or the path of a file written by "
                       "python -m femur.calibration.risk")
        params = str(path.resolve())
    ref = risk.get("reference_arm")
    if ref is not None:
        ref = _str(ref, "risk.reference_arm", src)
        if ref not in arm_names:
            raise _err(src, "risk.reference_arm", f"no arm {ref!r}; arms: {arm_names}")
    elif any(a.is_placebo for a in arms):
        ref = next(a.name for a in arms if a.is_placebo)
    draws = _int(risk.get("parameter_draws", rdef.parameter_draws), "risk.parameter_draws", src)
    if draws < 0:
        raise _err(src, "risk.parameter_draws", f"must be >= 0 (0: no confidence intervals), got {draws}")
    definition = _str(risk.get("vertebral_fracture_definition", rdef.vertebral_fracture_definition),
                      "risk.vertebral_fracture_definition", src)
    if definition not in FRACTURE_DEFINITIONS:
        raise _err(src, "risk.vertebral_fracture_definition",
                   f"expected one of {sorted(FRACTURE_DEFINITIONS)}, got {definition!r}")
    falls = risk.get("falls_per_year")
    if falls is not None:
        falls = _number(falls, "risk.falls_per_year", src)
        if falls < 0:
            raise _err(src, "risk.falls_per_year", f"must be >= 0, got {falls:g}")
    share = risk.get("hip_impact_share")
    if share is not None:
        share = _number(share, "risk.hip_impact_share", src)
        if not 0 <= share <= 1:
            raise _err(src, "risk.hip_impact_share", f"must be a share in [0, 1], got {share:g}")
    return RiskSpec(params, ref, draws, definition, falls, share)


def load_study(study) -> StudySpec:
    """Load a study from a TOML path, a built-in name (e.g. ``"frame"``), a dict or a
    :class:`StudySpec` (returned unchanged)."""
    if isinstance(study, StudySpec):
        return study
    if isinstance(study, dict):
        return parse_study(study, "<dict>")
    if not isinstance(study, (str, Path)):
        raise InputError(f"study must be a TOML path or a built-in name, got {study!r}")
    path = Path(study)
    builtins = builtin_studies()
    if not path.exists():
        if str(study) in builtins:
            path = builtins[str(study)]
        else:
            raise InputError(
                f"study {str(study)!r}: no such file and not a built-in study; "
                f"built-in studies: {sorted(builtins)}"
            )
    if path.is_dir():
        raise InputError(f"study {str(path)!r}: is a directory, expected a TOML file")
    try:
        with open(path, "rb") as fh:
            data = tomllib.load(fh)
    except tomllib.TOMLDecodeError as exc:
        raise InputError(f"{path}: not valid TOML: {exc}") from None
    except OSError as exc:
        raise InputError(f"{path}: cannot read study file: {exc.strerror}") from None
    return parse_study(data, str(path))


__all__ = ["load_study", "parse_study"]
