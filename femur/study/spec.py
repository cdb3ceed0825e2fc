"""Study files (TOML): parse, validate, normalise.

A study file is a recipe.  Layout (every key is checked; unknown keys are errors)::

    [study]
    name = "frame"
    duration_months = 12
    visit_months = [0, 6, 12]
    seed = 20161017
    endpoints = ["ls_bmd", "th_bmd", ...]       # optional (default: all)

    [cohort]
    size = 8                                    # virtual patients; each runs in every arm
    sex = "F"
    [cohort.inclusion]
    age = [55, 90]
    t_score_th = [-3.5, -2.5]
    t_score_fn = [-3.5, -2.5]
    t_score_rule = "any"                        # "any" listed site in range, or "all"

    [[arms]]
    name = "placebo"
    regimen = "placebo"
    [[arms]]
    name = "romosozumab"
    regimen = "romosozumab"                     # 210 mg every month (label regimen)
    # or "romosozumab:12,denosumab:12", or a table / list of tables:
    # regimen = [{drug = "romosozumab", dose_mg = 210, interval_days = 30.4375, months = 12},
    #            {drug = "denosumab"}]

    [model]
    mesh_size_mm = 4.0
    order = 1
    solver = "gamg"
    fe_interval_days = 30

    [risk]                                      # optional
    vertebral_h0_per_year = "default"           # the frozen FRAME calibration (femur.risk),
                                                # "calibrate" (on the placebo arm, target #8)
                                                # or a number (1/year)
    falls_per_year = 0.65
    p_hip_impact = 0.25
    mc_samples = 4000
"""

from __future__ import annotations

import copy
import math
import re
import tomllib
from dataclasses import asdict, dataclass, field, replace
from importlib import resources
from pathlib import Path

from femur.errors import InputError

DAYS_PER_MONTH = 365.25 / 12.0

# Standard (label) regimens of the drugs the remodeling engine knows.  Sources: US
# prescribing information -- Evenity (romosozumab 210 mg SC once monthly), Prolia
# (denosumab 60 mg SC every 6 months), Fosamax (alendronate 70 mg orally once weekly),
# Forteo (teriparatide 20 ug SC once daily); clinical-targets.md lists the same regimens.
KNOWN_DRUGS: dict[str, dict | None] = {
    "placebo": None,
    "romosozumab": {"dose_mg": 210.0, "interval_days": DAYS_PER_MONTH},
    "denosumab": {"dose_mg": 60.0, "interval_days": 6 * DAYS_PER_MONTH},
    "alendronate": {"dose_mg": 70.0, "interval_days": 7.0},
    "teriparatide": {"dose_mg": 0.020, "interval_days": 1.0},
}

ENDPOINTS = (
    "ls_bmd",
    "th_bmd",
    "fn_bmd",
    "vertebral_strength",
    "femoral_fall_strength",
    "femoral_stance_strength",
    "p1np",
    "ctx",
    "vertebral_fracture",
    "hip_fracture",
)

T_SCORE_SITES = ("th", "fn", "ls")

_ALLOWED = {
    "<top>": {"study", "cohort", "arms", "model", "risk", "endpoints"},
    "study": {"name", "duration_months", "visit_months", "seed", "endpoints", "description"},
    "cohort": {"size", "sex", "inclusion"},
    "cohort.inclusion": {"age", "t_score_th", "t_score_fn", "t_score_ls", "t_score_rule"},
    "arms": {"name", "regimen", "description"},
    "regimen": {"drug", "dose_mg", "interval_days", "months"},
    "model": {"mesh_size_mm", "order", "solver", "fe_interval_days", "evaluator"},
    "risk": {"vertebral_h0_per_year", "falls_per_year", "p_hip_impact", "mc_samples"},
}

_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")


def builtin_studies() -> dict[str, Path]:
    """Built-in study names -> TOML paths (femur/data/studies/*.toml)."""
    root = resources.files("femur") / "data" / "studies"
    out = {}
    try:
        for entry in root.iterdir():
            if entry.name.endswith(".toml"):
                out[entry.name[: -len(".toml")]] = Path(str(entry))
    except (FileNotFoundError, NotADirectoryError):
        pass
    return dict(sorted(out.items()))


# ---------------------------------------------------------------------------------------
# dataclasses
# ---------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Phase:
    """One drug phase of a regimen: doses of ``dose_mg`` every ``interval_days``
    from ``start_month`` (first dose there) to ``end_month`` (exclusive)."""

    drug: str
    dose_mg: float
    interval_days: float
    start_month: float
    end_month: float
    open_ended: bool = False  # no duration given: runs to the study end (also after --months)


@dataclass(frozen=True)
class Arm:
    name: str
    regimen: tuple[Phase, ...]
    regimen_text: str
    description: str = ""

    @property
    def is_placebo(self) -> bool:
        return all(p.drug == "placebo" for p in self.regimen)


@dataclass(frozen=True)
class Inclusion:
    age: tuple[float, float] = (55.0, 90.0)
    t_score: dict = field(default_factory=dict)  # site -> (low, high)
    t_score_rule: str = "any"


@dataclass(frozen=True)
class CohortSpec:
    size: int
    sex: str = "F"
    inclusion: Inclusion = field(default_factory=Inclusion)


@dataclass(frozen=True)
class ModelSpec:
    mesh_size_mm: float = 4.0
    order: int = 1
    solver: str = "gamg"
    fe_interval_days: float = 30.0
    evaluator: str | None = None


@dataclass(frozen=True)
class RiskSpec:
    vertebral_h0_per_year: float | None = None  # None: calibrate on the placebo arm
    vertebral_h0_provenance: str = "calibrated on the study's placebo arm"
    falls_per_year: float = 0.65
    p_hip_impact: float = 0.25
    mc_samples: int = 4000


@dataclass(frozen=True)
class StudySpec:
    name: str
    duration_months: float
    visit_months: tuple[float, ...]
    seed: int
    cohort: CohortSpec
    arms: tuple[Arm, ...]
    endpoints: tuple[str, ...] = ENDPOINTS
    model: ModelSpec = field(default_factory=ModelSpec)
    risk: RiskSpec = field(default_factory=RiskSpec)
    source: str = "<dict>"
    description: str = ""

    def to_dict(self) -> dict:
        """JSON-serialisable, fully materialised description."""
        d = asdict(self)
        d["cohort"]["inclusion"]["t_score"] = {
            k: list(v) for k, v in self.cohort.inclusion.t_score.items()
        }
        return _jsonable(d)

    def arm(self, name: str) -> Arm:
        for a in self.arms:
            if a.name == name:
                return a
        raise InputError(f"study {self.name!r} has no arm {name!r}; arms: {[a.name for a in self.arms]}")

    def with_overrides(self, patients=None, months=None, seed=None) -> StudySpec:
        """Command-line overrides: cohort size, study duration (visits after it are
        dropped, the new end becomes a visit, regimens are cut there), seed."""
        spec = self
        if patients is not None:
            n = _int(patients, "--patients", "command line")
            if n < 1:
                raise InputError(f"--patients must be >= 1, got {patients!r}")
            spec = replace(spec, cohort=replace(spec.cohort, size=n))
        if seed is not None:
            s = _int(seed, "--seed", "command line")
            if s < 0:
                raise InputError(f"--seed must be >= 0, got {seed!r}")
            spec = replace(spec, seed=s)
        if months is not None:
            m = _number(months, "--months", "command line")
            if not m > 0:
                raise InputError(f"--months must be > 0, got {months!r}")
            visits = tuple(v for v in spec.visit_months if v <= m)
            if visits[-1] != m:
                visits = visits + (m,)
            arms = tuple(
                replace(a, regimen=_cut_regimen(a.regimen, m)) for a in spec.arms
            )
            spec = replace(spec, duration_months=m, visit_months=visits, arms=arms)
        return spec


def _cut_regimen(phases, end_month):
    """Cut a regimen at ``end_month``, or extend it: an open-ended last phase runs on, a
    fixed-length one is followed by placebo."""
    out = []
    for p in phases:
        if p.start_month >= end_month:
            break
        out.append(replace(p, end_month=min(p.end_month, end_month)))
    last = out[-1]
    if last.end_month < end_month:
        if last.open_ended:
            out[-1] = replace(last, end_month=end_month)
        else:
            out.append(Phase("placebo", 0.0, 0.0, last.end_month, end_month, True))
    return tuple(out)


def _jsonable(obj):
    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    return obj


# ---------------------------------------------------------------------------------------
# parsing helpers
# ---------------------------------------------------------------------------------------
def _err(src: str, key: str, msg: str) -> InputError:
    return InputError(f"{src}: {key}: {msg}")


def _check_keys(table: dict, section: str, src: str, where: str | None = None) -> None:
    allowed = _ALLOWED[section]
    unknown = sorted(set(table) - allowed)
    if unknown:
        raise _err(
            src,
            where or section,
            f"unknown key(s) {unknown}; allowed keys: {sorted(allowed)}",
        )


def _number(value, key, src) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise _err(src, key, f"expected a number, got {type(value).__name__} {value!r}")
    if not math.isfinite(value):
        raise _err(src, key, f"expected a finite number, got {value!r}")
    return float(value)


def _int(value, key, src) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        if isinstance(value, float) and value.is_integer():
            return int(value)
        raise _err(src, key, f"expected an integer, got {type(value).__name__} {value!r}")
    return int(value)


def _str(value, key, src) -> str:
    if not isinstance(value, str) or not value.strip():
        raise _err(src, key, f"expected a non-empty string, got {value!r}")
    return value.strip()


def _range(value, key, src) -> tuple[float, float]:
    if not isinstance(value, (list, tuple)) or len(value) != 2:
        raise _err(src, key, f"expected [low, high], got {value!r}")
    lo, hi = (_number(v, key, src) for v in value)
    if lo > hi:
        raise _err(src, key, f"low {lo} is above high {hi}")
    return lo, hi


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
        default = KNOWN_DRUGS[drug]
        if drug == "placebo":
            for k in ("dose_mg", "interval_days"):
                if k in item:
                    raise _err(src, f"{pkey}.{k}", "placebo takes no dose")
            dose, interval = 0.0, 0.0
        else:
            dose = _number(item.get("dose_mg", default["dose_mg"]), f"{pkey}.dose_mg", src)
            if dose < 0:
                raise _err(src, f"{pkey}.dose_mg", f"negative dose {dose} mg; a dose must be > 0")
            if dose == 0:
                raise _err(src, f"{pkey}.dose_mg", "dose is 0 mg; use drug 'placebo' for no drug")
            interval = _number(
                item.get("interval_days", default["interval_days"]), f"{pkey}.interval_days", src
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
            end = float(duration)
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
    endpoints_raw = study.get("endpoints", data.get("endpoints", list(ENDPOINTS)))
    if not isinstance(endpoints_raw, list) or not endpoints_raw:
        raise _err(src, "study.endpoints", f"expected a non-empty list, got {endpoints_raw!r}")
    endpoints = []
    for e in endpoints_raw:
        e = _str(e, "study.endpoints", src)
        if e not in ENDPOINTS:
            raise _err(src, "study.endpoints", f"unknown endpoint {e!r}; known: {list(ENDPOINTS)}")
        endpoints.append(e)

    # cohort -----------------------------------------------------------------------------
    cohort = data.get("cohort")
    if not isinstance(cohort, dict):
        raise _err(src, "[cohort]", "missing [cohort] table (size, sex, inclusion)")
    _check_keys(cohort, "cohort", src, "[cohort]")
    if "size" not in cohort:
        raise _err(src, "cohort.size", "missing required key")
    size = _int(cohort["size"], "cohort.size", src)
    if size < 1:
        raise _err(src, "cohort.size", f"must be >= 1 virtual patient, got {size}")
    sex = _str(cohort.get("sex", "F"), "cohort.sex", src).upper()
    if sex not in ("F", "M"):
        raise _err(src, "cohort.sex", f"expected 'F' or 'M', got {cohort.get('sex')!r}")
    inc = cohort.get("inclusion", {})
    if not isinstance(inc, dict):
        raise _err(src, "cohort.inclusion", f"expected a table, got {inc!r}")
    _check_keys(inc, "cohort.inclusion", src, "[cohort.inclusion]")
    age = _range(inc.get("age", [55, 90]), "cohort.inclusion.age", src)
    if age[0] < 18 or age[1] > 110:
        raise _err(src, "cohort.inclusion.age", f"expected ages within 18-110, got {list(age)}")
    t_scores = {}
    for site in T_SCORE_SITES:
        k = f"t_score_{site}"
        if k in inc:
            lo, hi = _range(inc[k], f"cohort.inclusion.{k}", src)
            if lo < -6 or hi > 4:
                raise _err(src, f"cohort.inclusion.{k}", f"T-scores must lie in [-6, 4], got {[lo, hi]}")
            t_scores[site] = (lo, hi)
    rule = _str(inc.get("t_score_rule", "any"), "cohort.inclusion.t_score_rule", src).lower()
    if rule not in ("any", "all"):
        raise _err(src, "cohort.inclusion.t_score_rule", f"expected 'any' or 'all', got {rule!r}")
    cohort_spec = CohortSpec(size, sex, Inclusion(age, t_scores, rule))

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
    model_spec = ModelSpec(mesh, order, solver, fe_int, evaluator)

    # risk -------------------------------------------------------------------------------
    risk = data.get("risk", {})
    if not isinstance(risk, dict):
        raise _err(src, "[risk]", f"expected a table, got {risk!r}")
    _check_keys(risk, "risk", src, "[risk]")
    rdef = RiskSpec()
    h0 = risk.get("vertebral_h0_per_year", "default")
    if h0 == "calibrate":
        h0, h0_src = None, RiskSpec.vertebral_h0_provenance
    elif h0 == "default":
        from femur import risk as _risk

        h0, h0_src = _risk.DEFAULT_VERTEBRAL_H0_PER_YEAR, _risk.DEFAULT_VERTEBRAL_H0_PROVENANCE
        if h0 is None:
            raise _err(src, "risk.vertebral_h0_per_year",
                       "the default vertebral hazard is not calibrated in this version: give "
                       "'calibrate' or a number")
    else:
        h0 = _number(h0, "risk.vertebral_h0_per_year", src)
        h0_src = "given in the study file [risk]"
        if h0 <= 0:
            raise _err(src, "risk.vertebral_h0_per_year",
                       f"must be > 0, 'default' or 'calibrate', got {h0:g}")
    falls = _number(risk.get("falls_per_year", rdef.falls_per_year), "risk.falls_per_year", src)
    if falls < 0:
        raise _err(src, "risk.falls_per_year", f"must be >= 0, got {falls:g}")
    p_hip = _number(risk.get("p_hip_impact", rdef.p_hip_impact), "risk.p_hip_impact", src)
    if not 0 <= p_hip <= 1:
        raise _err(src, "risk.p_hip_impact", f"must be a probability in [0, 1], got {p_hip:g}")
    mc = _int(risk.get("mc_samples", rdef.mc_samples), "risk.mc_samples", src)
    if mc < 1:
        raise _err(src, "risk.mc_samples", f"must be >= 1, got {mc}")
    if h0 is None and not any(a.is_placebo for a in arms):
        raise _err(
            src,
            "risk.vertebral_h0_per_year",
            "no placebo arm to calibrate the vertebral baseline hazard on: add a placebo arm "
            "or give vertebral_h0_per_year as a number",
        )
    risk_spec = RiskSpec(h0, h0_src, falls, p_hip, mc)

    return StudySpec(
        name=name,
        duration_months=duration,
        visit_months=visits,
        seed=seed,
        cohort=cohort_spec,
        arms=tuple(arms),
        endpoints=tuple(endpoints),
        model=model_spec,
        risk=risk_spec,
        source=src,
        description=str(study.get("description", "")),
    )


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


__all__ = [
    "Arm",
    "CohortSpec",
    "DAYS_PER_MONTH",
    "ENDPOINTS",
    "Inclusion",
    "KNOWN_DRUGS",
    "ModelSpec",
    "Phase",
    "RiskSpec",
    "StudySpec",
    "builtin_studies",
    "load_study",
    "parse_study",
]
