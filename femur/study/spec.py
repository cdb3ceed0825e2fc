"""A study recipe as data: the StudySpec dataclasses, value checks and command-line overrides.

Parsing a TOML file or dict into a StudySpec is ``femur.study.parse``. A study file is a
recipe.  Layout (every key is checked; unknown keys are errors)::

    [study]
    name = "frame"
    duration_months = 12
    visit_months = [0, 6, 12]
    seed = 20161017
    endpoints = ["ls_bmd", "th_bmd", ...]       # optional (default: all)

    [cohort]
    size = 8                                    # virtual patients; each runs in every arm
    sex = "female"                              # or "male" ("F"/"M" are accepted too)
    age_mean = 70.9                             # optional: age distribution before the
    age_sd = 7.0                                # inclusion range (default 70.9 +- 7 y)
    prevalent_vertebral_fractures = [0.8, 0.12, 0.05, 0.03]
                                                # optional: shares of women with 0, 1, 2
                                                # and >= 3 prevalent vertebral fractures
                                                # (default: none has one)
    [cohort.inclusion]
    age = [55, 90]
    th_t_score = [-3.5, -2.5]                   # (older spelling t_score_th accepted)
    fn_t_score = [-3.5, -2.5]
    t_score_rule = "any"                        # "any" listed site in range, or "all"

    # or, patients from CT scans of vertebrae (each scan is one patient in every arm):
    # [cohort]
    # scans = "scans"                           # a folder holding manifest.csv, or a CSV file
    # voxel_coarsen = 2                         # optional: mesh of every scan (default 1)
    # or a list of tables (paths relative to the study file):
    # [[cohort.scans]]
    # id = "verse004"                           # optional (default: the image file name)
    # image = "verse004_im.nii.gz"
    # labels = "verse004_seg.nii.gz"
    # calibrated_mg_cm3 = true                  # or calibration = "record.txt"
    # layers = [5, 6]                           # optional loading-layer labels
    # bone_labels = [1, 2, 3, 4]                # optional (default: all but the layers)
    # sex = "female"
    # age_years = 70
    # body_mass_kg = 60                         # optional (default 65 women, 80 men)
    # height_m = 1.60                           # optional (default 1.60 women, 1.75 men)
    # The manifest CSV has the same columns (header row; layers/bone_labels as "5;6"; empty
    # cell = not given; paths relative to the manifest). A scan study's endpoints are the
    # vertebra's: ls_bmd, vertebral_strength, p1np, ctx, vertebral_fracture.

    [[arms]]
    name = "placebo"
    regimen = "placebo"
    [[arms]]
    name = "romosozumab"
    regimen = "romosozumab"                     # label regimen: 210 mg monthly, 12 doses (a
                                                # bare drug without a label course, e.g.
                                                # "denosumab", runs to the study end)
    # or "romosozumab:12,denosumab:12", or a table / list of tables:
    # regimen = [{drug = "romosozumab", dose_mg = 210, interval_days = 30.4375, months = 12},
    #            {drug = "denosumab"}]

    [model]
    femur = "femur"                             # the anatomical femur (default), or
                                                # "parametric-femur"
    mesh_size_mm = 4.0                          # anatomical femur: the 4 mm (trial) mesh
    order = 1
    solver = "gamg"
    fe_interval_days = 30
    strength_model = "auto"                     # what gives the strengths at the visits (and
                                                # what the risk model reads): "linear"
                                                # (first-element fracture load), "nonlinear"
                                                # (pushover peak, P2, 15-40x slower per load
                                                # case), "surrogate" (needs its fit:
                                                # femur.calibration.strength_surrogate),
                                                # "hybrid" (the surrogate for the load cases
                                                # whose fit meets its accuracy target, the
                                                # pushover for the others) or "auto" (default:
                                                # the surrogate where every load case of the
                                                # study's bones has a fit that meets it, hybrid
                                                # where some miss it, linear while a case has
                                                # no validated fit; but the surrogate where
                                                # hybrid would only anchor cases that the risk
                                                # parameters were fitted on at the fit's own
                                                # level; the summary records which ran and why)

    [risk]                                      # optional
    parameters = "default"                      # the calibrated fracture-risk parameters
                                                # (femur/data/fracture_risk.json, written by
                                                # python -m femur.calibration.risk) or a
                                                # parameter file (path relative to the study)
    reference_arm = "placebo"                   # relative risks against this arm (default:
                                                # the placebo arm)
    parameter_draws = 1000                      # draws for the 95 % CIs (cohort resampling
                                                # x calibration uncertainty)
    vertebral_fracture_definition = "semiquantitative"
                                                # how the trial counts a new vertebral
                                                # fracture: "semiquantitative" (Genant grade
                                                # >= 1; default, as FREEDOM, FPT, FRAME) or
                                                # "morphometric" (height lost >= 20 % and
                                                # 4 mm, as FIT): the risk model's incidences
                                                # follow the definition
    falls_per_year = 0.8                        # optional sensitivity overrides of the fall
    hip_impact_share = 0.4                      # model's fixed inputs (default: the values
                                                # the parameters were calibrated with)
"""

from __future__ import annotations

import math
import re
from dataclasses import asdict, dataclass, field, replace
from importlib import resources
from pathlib import Path

from femur.core.errors import InputError
from femur.mechanics.strength import (AUTO, DEFAULT_STRENGTH_MODEL, STRENGTH_CASES, resolve_strength_model,
                                      split_cases)
from femur.outcomes.risk.parameters import load_parameters
from femur.treatments.drugs import get_drug

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

#: the endpoints of a study on CT scans (vertebrae): no femur, so no hip endpoints
SCAN_ENDPOINTS = ("ls_bmd", "vertebral_strength", "p1np", "ctx", "vertebral_fracture")
#: the columns of a scan table or manifest row
SCAN_KEYS = ("id", "image", "labels", "calibration", "calibrated_mg_cm3", "layers", "bone_labels",
             "voxel_coarsen", "sex", "age_years", "body_mass_kg", "height_m")

_ALLOWED = {
    "<top>": {"study", "cohort", "arms", "model", "risk", "endpoints"},
    "study": {"name", "duration_months", "visit_months", "seed", "endpoints", "description"},
    "cohort": {"size", "sex", "inclusion", "scans", "voxel_coarsen", "age_mean", "age_sd",
               "prevalent_vertebral_fractures"},
    "cohort.scans": set(SCAN_KEYS),
    "cohort.inclusion": {"age", "th_t_score", "fn_t_score", "ls_t_score", "t_score_th", "t_score_fn",
                         "t_score_ls", "t_score_rule"},
    "arms": {"name", "regimen", "description"},
    "regimen": {"drug", "dose_mg", "interval_days", "months"},
    "model": {"femur", "mesh_size_mm", "order", "solver", "fe_interval_days", "evaluator", "strength_model",
              "fe_adaptive_tol"},
    "risk": {"parameters", "reference_arm", "parameter_draws", "vertebral_fracture_definition", "falls_per_year",
             "hip_impact_share"},
}

#: the built-in femurs a study may run (``femur.workflows.bones.BONE_KINDS``), default first
FEMUR_MODELS = ("femur", "parametric-femur")

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
class ScanEntry:
    """A patient given by a CT scan of a vertebra: ``scan`` is the
    ``femur.workflows.scans.CTScan`` as a dict (absolute paths); ``where`` says where it was
    listed (file and row), for error messages."""

    id: str
    scan: dict
    sex: str
    age_years: float
    body_mass_kg: float | None = None
    height_m: float | None = None
    where: str = ""


#: default age distribution of a sampled cohort (before the inclusion range): FRAME mean
#: age 70.9 (clinical-targets.md row 9), SD 7 years (ASSUMPTION)
DEFAULT_AGE_MEAN = 70.9
DEFAULT_AGE_SD = 7.0


@dataclass(frozen=True)
class CohortSpec:
    size: int
    sex: str = "female"
    inclusion: Inclusion = field(default_factory=Inclusion)
    scans: tuple[ScanEntry, ...] = ()  # patients from CT scans (then size = how many are run)
    age_mean: float = DEFAULT_AGE_MEAN
    age_sd: float = DEFAULT_AGE_SD
    #: shares of women with 0, 1, 2 and >= 3 prevalent vertebral fractures (sum 1)
    prevalent_vertebral_fractures: tuple[float, ...] = (1.0, 0.0, 0.0, 0.0)


def settle_strength_model(name: str, scans: bool, femur_model: str, mesh_size_mm, where: str,
                          risk_parameters: str | None = None):
    """(the strength model a study runs, why): ``name`` for the study's bones (its scans'
    vertebrae, or the built-in femur and vertebra; "auto" picks one:
    femur.mechanics.strength.resolve_strength_model). Settled when the study is read, so
    that every case, the summary and the risk model read the model that ran.

    A study's strengths feed its fracture risk (``risk_parameters``: the ``[risk]
    parameters`` it reads), whose parameters scale absolute strengths and were fitted on
    one strength model's strengths. So where "auto" would run ``"hybrid"`` only to anchor
    load cases that the risk calibration took at the surrogate fit's own level (its
    courses hold no pushover: femur.calibration.risk.with_surrogate_strengths), and pushes
    over no case at every visit, the study runs the surrogate: the strengths the risk
    model was fitted on, without one pushover per woman (:func:`risk_consistent_model`)."""
    kinds = ("vertebra",) if scans else ("femur", "vertebra")
    model, why = resolve_strength_model(name, kinds, where, mesh_size_mm,
                                        builtin=not scans and femur_model == "femur")
    if name == AUTO and model == "hybrid" and risk_parameters is not None:
        return risk_consistent_model(model, why, [p for k in kinds for p in STRENGTH_CASES[k]],
                                     risk_parameters)
    return model, why


def risk_consistent_model(model: str, why: str, prefixes, risk_parameters: str) -> tuple[str, str]:
    """(``"surrogate"``, why) when the fracture-risk parameters ``risk_parameters`` were
    fitted on the surrogate's strengths with every case that the hybrid ``model`` would
    anchor at the fit's own level, and the hybrid pushes over no case at every visit; else
    (``model``, ``why``) unchanged."""
    params = load_parameters(risk_parameters)
    engine = params.provenance.get("engine") or {}
    at_fit_level = set(engine.get("anchored_at_fit_level") or ())
    split = split_cases(model, prefixes)
    if engine.get("strength_model") != "surrogate" or split.pushed or not set(split.anchored) <= at_fit_level:
        return model, why
    anchored = ", ".join(split.anchored)
    found = why.split(", so hybrid:")[0]
    return "surrogate", (
        f"{found}, so hybrid would anchor {anchored} on a month-0 pushover per woman (90-150 s each); "
        f"the study's fracture-risk parameters ({Path(params.source).name}) were fitted on the surrogate's "
        f"strengths with {anchored} at the fit's own level, so the study runs the surrogate: the strengths "
        "its risk model was fitted on (--strength-model hybrid anchors it)")


@dataclass(frozen=True)
class ModelSpec:
    mesh_size_mm: float = 4.0
    femur: str = "femur"
    order: int = 1
    solver: str = "gamg"
    fe_interval_days: float = 30.0
    evaluator: str | None = None
    strength_model: str = DEFAULT_STRENGTH_MODEL  # femur.mechanics.strength.STRENGTH_MODELS
    #: adaptive habitual solves (issue 13; femur.workflows.simulation): skip a solve while the
    #: RMS relative modulus change since the last one is at most this; 0: every solve of the
    #: fixed interval; None: the study evaluator's default (femur.study.evaluator.trial_solves)
    fe_adaptive_tol: float | None = None
    #: why this strength model runs ("as given", or what "auto" found:
    #: femur.mechanics.strength.resolve_strength_model)
    strength_model_reason: str = "as given"


@dataclass(frozen=True)
class RiskSpec:
    """Fracture-risk settings: which calibrated parameters (``"default"``: the data file
    femur/data/fracture_risk.json, or a path), the arm relative risks are taken against
    (None: the placebo arm, else none), the number of draws for the confidence intervals,
    how the trial counts a new vertebral fracture, and optional sensitivity overrides of
    the fall model's fixed inputs."""

    parameters: str = "default"
    reference_arm: str | None = None
    parameter_draws: int = 1000
    vertebral_fracture_definition: str = "semiquantitative"
    falls_per_year: float | None = None
    hip_impact_share: float | None = None


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
        if self.model.fe_adaptive_tol is None:  # the fixed interval: as before the option
            d["model"].pop("fe_adaptive_tol")
        if not self.cohort.scans:  # sampled cohorts: the same description as before scans
            d["cohort"].pop("scans")
        else:  # a scan's patient is not sampled
            for k in ("age_mean", "age_sd", "prevalent_vertebral_fractures"):
                d["cohort"].pop(k)
        return _jsonable(d)

    def arm(self, name: str) -> Arm:
        for a in self.arms:
            if a.name == name:
                return a
        raise InputError(f"study {self.name!r} has no arm {name!r}; arms: {[a.name for a in self.arms]}")

    def with_overrides(self, patients=None, months=None, seed=None, strength_model=None) -> StudySpec:
        """Command-line overrides: cohort size, study duration (visits after it are
        dropped, the new end becomes a visit, regimens are cut there), seed, strength model
        (settled for the study's bones as the file's is: "auto" picks one)."""
        spec = self
        if strength_model is not None:
            name, why = settle_strength_model(strength_model, bool(spec.cohort.scans), spec.model.femur,
                                              spec.model.mesh_size_mm, "--strength-model", spec.risk.parameters)
            spec = replace(spec, model=replace(spec.model, strength_model=name, strength_model_reason=why))
        if patients is not None:
            n = _int(patients, "--patients", "command line")
            if n < 1:
                raise InputError(f"--patients must be >= 1, got {patients!r}")
            if spec.cohort.scans and n > len(spec.cohort.scans):
                raise InputError(f"--patients {n}: the study lists {len(spec.cohort.scans)} scan(s)")
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
    """Cut a regimen at ``end_month``, or extend it: an open-ended last phase runs on (up
    to its drug's label course, if the label fixes one), a fixed-length one is followed by
    placebo."""
    out = []
    for p in phases:
        if p.start_month >= end_month:
            break
        out.append(replace(p, end_month=min(p.end_month, end_month)))
    last = out[-1]
    if last.end_month < end_month:
        label = get_drug(last.drug).label_course_months if last.open_ended else None
        if last.open_ended:
            stop = end_month if label is None else min(end_month, last.start_month + label)
            out[-1] = last = replace(last, end_month=stop)
        if last.end_month < end_month:
            out.append(Phase("placebo", 0.0, 0.0, last.end_month, end_month, True))
    return tuple(out)


def _jsonable(obj):
    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    return obj


# ---------------------------------------------------------------------------------------
# value checks (shared with femur.study.parse)
# ---------------------------------------------------------------------------------------
def _err(src: str, key: str, msg: str) -> InputError:
    return InputError(f"{src}: {key}: {msg}")


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


__all__ = [
    "DEFAULT_AGE_MEAN",
    "DEFAULT_AGE_SD",
    "Arm",
    "CohortSpec",
    "ENDPOINTS",
    "FEMUR_MODELS",
    "SCAN_ENDPOINTS",
    "SCAN_KEYS",
    "ScanEntry",
    "Inclusion",
    "ModelSpec",
    "Phase",
    "RiskSpec",
    "StudySpec",
    "builtin_studies",
    "risk_consistent_model",
    "settle_strength_model",
]
