"""Calibrate the fracture-risk model: one command, rerunnable, from trials to parameters.

    mpiexec -n 2 python -m femur.calibration.risk [--patients N] [--hip-patients N] [--quick] [--write]
    mpiexec -n 2 python -m femur.calibration.risk --only freedom_hip [--courses FILE] [--write]
    python -m femur.calibration.risk --refit-only [--courses FILE] [--write]
    python -m femur.calibration.risk --refit-only [--strengths auto|linear|surrogate] [--write]

1. SIMULATE, once, the calibration trials with the engine itself -- FRAME (placebo arm
   only, row 8), FREEDOM (rows 10-11), FPT (row 12), FIT-1 (row 13), FIT-2 (row 14), each
   with its own cohort (inclusion, age, prevalent fractures), regimens and visits from the
   built-in study files -- plus an untreated SOF-like check cohort and the hip cohort: a
   larger placebo-only FREEDOM-like cohort of other women (``--hip-patients``, default
   500), on which the two hip targets are evaluated (``risk_targets.HIP_COHORT``: they
   rest on the few weakest femurs, which 100 women hold too few of). The cases go to
   ``OUT/<study>/cases/`` (an interrupted run resumes where it stopped). ``--only STUDY,..``
   simulates only those studies and takes the others' courses from the stored ones
   (``--courses``, default ``femur/data/``); each study's courses record when and at which
   commit they were simulated.
2. STORE each case's risk inputs (visit strengths, monthly CTX, patient attributes;
   ``femur.outcomes.risk.case_inputs``) in ``OUT/courses.json.gz``: refitting the risk
   parameters needs no FE (``--refit-only``).
3. FIT the spine and hip parameters to the targets (``risk_fit``: binomial likelihood of
   the arm incidences, plus ``--ratio-weight`` (default 1) times the log-normal likelihood
   of the published vertebral relative risks; covariance from the observed information and
   virtual-cohort bootstrap refits) and print
   the report (``risk_report``): each target, the model's value, the residual, inside the
   published 95 % CI or not; then the checks (SOF hip incidence, between-person gradients).
4. WRITE (``--write``) the parameters with their provenance (targets, cohort sizes, seeds,
   engine version, git commit, date, command, fixed inputs and their sources, covariance,
   the report) to ``femur/data/fracture_risk.json`` and the courses to
   ``femur/data/fracture_risk_courses.json.gz``; without ``--write`` both go to ``OUT``.

``--quick``: 10 women per arm (or ``--patients``), the trials' full durations: a check that
the machinery works end to end, NOT a calibration (its parameter file says so).

``--strengths``: the cases run the linear strength model (``SIMULATED_MODEL``), and each
stores its load cases' linear quantities at the visits. The risk parameters scale absolute
strengths, so they are fitted on the strengths the trials run on: by default (``auto``)
those of a built-in study's default strength model, which are the strength surrogate's
predictions from those quantities -- the numbers a surrogate run of the same cases gives,
without simulating again (``with_surrogate_strengths``) -- once the surrogate's data file
makes that model the surrogate or the hybrid one, and the linear loads before
(``fitted_strengths``). ``--strengths linear|surrogate`` chooses; ``--surrogate-strengths``
is ``--strengths surrogate``. The stored courses keep the linear loads either way.

Never fitted: FRAME's romosozumab arm, ARCH, BRIDGE (romosozumab): predictions.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import gzip
import json
import shlex
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np

from femur.core.datafiles import atomic_write_text, data_path, read_fitted, write_fitted
from femur.core.errors import FemurError, InputError
from femur.core.log import configure, get_logger
from femur.core.mpi import MPI
from femur.core.version import __version__
from femur.mechanics.strength import resolve_strength_model
from femur.mechanics.surrogate import DATA_FILE as SURROGATE_FILE
from femur.mechanics.surrogate import case_verdicts, load_fits, surrogate_status
from femur.outcomes import risk
from femur.outcomes.risk.parameters import FITTED_PARAMETERS, PARAMETER_FILE, parameters_from_document
from femur.exports.calibration_figures import risk_calibration_figure
from femur.calibration.risk_fit import (DEFAULT_RATIO_WEIGHT, DEFAULT_TREATED_ARMS, LEGACY_TREATED_ARMS, TREATED_ARMS,
                                        CalibrationData, FitResult, fit)
from femur.calibration.risk_report import format_report, report_rows
from femur.calibration.risk_targets import (CALIBRATION_STUDIES, DEFAULT_HIP_PATIENTS, HIP_COHORT, HIP_COHORT_BASE,
                                            HIP_COHORT_SEED, RATIOS, SOF_CHECK, TARGETS)
from femur.study import Study
from femur.study.cases import resolve_evaluator
from femur.study.cohort import sample_patient
from femur.study.parse import load_study, parse_study
from femur.study.spec import ModelSpec
from femur.study.runner import run_cases
from femur.workflows.bones import bone_anatomy

log = get_logger(__name__)

COURSES_FILE = "fracture_risk_courses.json.gz"
COURSES_FORMAT = 1
DEFAULT_PATIENTS = 100
QUICK_PATIENTS = 10
DEFAULT_BOOTSTRAP = 100
QUICK_BOOTSTRAP = 30
FIT_SEED = 12


#: the strength model the calibration's cases run: the linear solve, whose cases keep every
#: load case's linear quantities at the visits, so that the fit can take the strength
#: surrogate's strengths from them without simulating again (``--strengths``)
SIMULATED_MODEL = "linear"

#: ``--strengths`` choices: the strengths the parameters are fitted to
STRENGTH_CHOICES = ("auto", "linear", "surrogate")


def calibration_specs(patients: int, hip_patients: int | None = None) -> dict:
    """{name: StudySpec} of the calibration studies (arms the targets need), the check
    cohort, at ``patients`` women per arm, and the hip cohort (FREEDOM's study file, placebo
    arm, its own seed) of ``hip_patients`` women (default: ``patients``), every one running
    :data:`SIMULATED_MODEL`."""
    specs = {}
    for name, arms in CALIBRATION_STUDIES.items():
        spec = load_study(name).with_overrides(patients=patients, strength_model=SIMULATED_MODEL)
        if arms is not None:
            spec = replace(spec, arms=tuple(a for a in spec.arms if a.name in arms))
        specs[name] = spec
    specs["sof_check"] = parse_study(json.loads(json.dumps(SOF_CHECK)), "femur.calibration.risk_targets.SOF_CHECK"
                                     ).with_overrides(patients=patients, strength_model=SIMULATED_MODEL)
    hip = load_study(HIP_COHORT_BASE).with_overrides(patients=hip_patients or patients, seed=HIP_COHORT_SEED,
                                                     strength_model=SIMULATED_MODEL)
    specs[HIP_COHORT] = replace(hip, name=HIP_COHORT, arms=tuple(a for a in hip.arms if a.name == "placebo"))
    return specs


def simulate(specs: dict, out, evaluator=None, comm=None, group_size: int = 1, progress: bool = True) -> dict | None:
    """Run every case of every spec (collective); return {study: {"n_patients", "seed",
    "cases": [risk inputs]}} on rank 0 (None elsewhere). Failed cases are left out (and
    logged)."""
    comm = comm or MPI.COMM_WORLD
    out = Path(out)
    studies = {}
    for name, spec in specs.items():
        s = Study(spec)
        fn = resolve_evaluator(evaluator, spec)
        data = run_cases(s.cases(), fn, out / name, manifest=s.manifest(), comm=comm, group_size=group_size,
                         resume=True, progress=progress, label=f"calibration {name}")
        if comm.rank != 0:
            continue
        cases = []
        for d in data:
            if "error" in d:
                log.warning("calibration case %s failed and is left out: %s", d["record"]["case_id"], d["error"])
                continue
            cases.append(risk.case_inputs(d["record"], d["result"], spec.model.strength_model))
        studies[name] = {"n_patients": spec.cohort.size, "seed": spec.seed, "duration_months": spec.duration_months,
                         "vertebral_fracture_definition": spec.risk.vertebral_fracture_definition,
                         "arms": [a.name for a in spec.arms],
                         "regimens": {a.name: a.regimen_text for a in spec.arms}, "cases": cases}
    return studies if comm.rank == 0 else None


def check_mergeable(base: dict, strength_model: str, quick: bool) -> None:
    """InputError unless courses of a run with ``strength_model`` and ``quick`` may join the
    stored courses ``base`` (the same strength model and quick setting)."""
    stored = (base.get("engine") or {}).get("strength_model")
    if stored != strength_model:
        raise InputError(f"--only: the stored courses ran the {stored!r} strength model, "
                         f"this run {strength_model!r}; simulate every study again")
    if bool(base.get("quick")) != bool(quick):
        raise InputError("--only: the stored courses and this run differ in --quick")


def merged_courses(base: dict, studies: dict, meta: dict) -> dict:
    """The stored courses ``base`` with the newly simulated ``studies`` added (or replaced);
    the new ones keep when and at which commit they ran (``extended``). InputError when the
    two ran different strength models or quick settings."""
    en = meta.get("engine") or {}
    check_mergeable(base, en.get("strength_model"), bool(meta.get("quick")))
    ext = [e for e in base.get("extended") or [] if not set(e["studies"]) <= set(studies)]
    ext.append({"studies": sorted(studies), **{k: meta[k] for k in ("date", "git_commit", "command")},
                "femur_version": en.get("femur_version")})
    return {**base, "extended": ext, "studies": {**base["studies"], **studies}}


def git_commit() -> str:
    """The git commit of the source tree (with '+dirty' when it has changes), or 'unknown'."""
    root = Path(__file__).resolve().parents[2]
    try:
        sha = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True,
                             timeout=10).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=root,
                               capture_output=True, text=True, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return (sha + ("+dirty" if dirty else "")) if sha else "unknown"


def save_courses(path, studies: dict, meta: dict) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    doc = {"format": COURSES_FORMAT, **meta, "studies": studies}
    tmp = path.with_name(f".{path.name}.tmp")
    with gzip.open(tmp, "wt", encoding="utf-8", compresslevel=9) as fh:
        json.dump(doc, fh, sort_keys=True, separators=(",", ":"))
    tmp.replace(path)
    return path


def load_courses(path) -> dict:
    path = Path(path)
    try:
        with gzip.open(path, "rt", encoding="utf-8") as fh:
            doc = json.load(fh)
    except FileNotFoundError:
        raise InputError(f"{path}: no stored calibration courses (run the calibration without "
                         "--refit-only first)") from None
    except (OSError, ValueError) as exc:
        raise InputError(f"{path}: unreadable calibration courses: {exc}") from None
    if doc.get("format") != COURSES_FORMAT or "studies" not in doc:
        raise InputError(f"{path}: not a calibration course file of format {COURSES_FORMAT}")
    return doc


def course_anatomy(name: str, study: dict) -> dict:
    """{patient index: her femur's anatomy} of the stored courses of calibration study
    ``name`` (courses kept before the cases stored it): each woman is drawn again from the
    study's cohort and seed (femur.study.cohort.sample_patient) and her femur's anatomy
    follows from her shape without a mesh. InputError if a drawn woman is not the stored
    one (another cohort definition)."""
    spec = calibration_specs(int(study["n_patients"]), int(study["n_patients"]))[name]
    if int(study["seed"]) != int(spec.seed):
        raise InputError(f"stored courses of {name}: seed {study['seed']}, the study's is {spec.seed}")
    out = {}
    for case in study["cases"]:
        i = int(case["patient_index"])
        if i in out:
            continue
        rec = sample_patient(i, spec.seed, spec.cohort)
        if abs(float(rec["age_years"]) - float(case["age_years"])) > 1e-9 or "femur_shape" not in rec:
            raise InputError(f"stored courses of {name}: case {case['case_id']} is not the study's woman {i} "
                             "drawn again (another cohort definition); simulate the calibration again")
        out[i] = bone_anatomy("femur", spec.model.mesh_size_mm, rec["femur_shape"], sex=rec["sex"])
    return out


def with_course_anatomy(doc: dict) -> dict:
    """The courses ``doc`` with every linear-model case that stored the surrogate's features
    carrying its femur's anatomy (``femur_anatomy``; :func:`course_anatomy` for courses kept
    before the cases stored it), so that turning them into the surrogate's strengths needs
    no woman drawn again (a derived quantity: the stored file gets it when written)."""
    studies = {}
    for name, st in doc["studies"].items():
        if all("femur_anatomy" in c or "strength_features" not in c for c in st["cases"]):
            studies[name] = st
            continue
        anatomy = course_anatomy(name, st)
        studies[name] = {**st, "cases": [c if "femur_anatomy" in c or "strength_features" not in c
                                         else {**c, "femur_anatomy": anatomy[int(c["patient_index"])]}
                                         for c in st["cases"]]}
    return {**doc, "studies": studies}


def with_surrogate_strengths(doc: dict) -> dict:
    """The courses ``doc`` with every case's strengths from the fitted strength surrogate,
    computed from the linear quantities the linear-model cases stored
    (femur.outcomes.risk.courses.with_surrogate_strengths: the same numbers a surrogate run
    gives). The surrogate must be fitted in full for the vertebra and the three fall
    directions on the calibration's bones (built-in, trial mesh), each case meeting the
    accuracy target or meeting it when anchored on a month-0 pushover (what a hybrid run,
    ``auto``'s choice then, computes); InputError otherwise. An anchored case takes the
    fit's own level here, because the courses hold no pushover: the strengths differ from a
    hybrid run's by that fit's level error (its test, in the surrogate's data file), on the
    same scale (pushover peaks)."""
    engine = dict(doc.get("engine") or {})
    if engine.get("strength_model") == "surrogate":
        return doc
    if engine.get("strength_model") != "linear":
        raise InputError(f"--surrogate-strengths: the courses ran the {engine.get('strength_model')!r} strength "
                         "model; surrogate strengths come from linear-model courses")
    prefixes = list(risk.RISK_PREFIXES.values())
    status, why = surrogate_status(prefixes, ModelSpec().mesh_size_mm)
    verdicts = case_verdicts(prefixes)
    anchored = [p for p in prefixes if verdicts[p] == "anchored"]
    if status not in ("validated", "failed") or any(v not in ("met", "anchored") for v in verdicts.values()):
        raise InputError(f"--surrogate-strengths: {why}")
    fits = load_fits()
    studies = {name: {**st, "cases": [risk.with_surrogate_strengths(c, fits) for c in st["cases"]]}
               for name, st in with_course_anatomy(doc)["studies"].items()}
    engine["strength_model"] = "surrogate"
    engine["strength_from"] = (f"the linear-model courses of {doc.get('date')} (commit {doc.get('git_commit')}), "
                               f"their strengths replaced by the surrogate of {SURROGATE_FILE} "
                               f"({read_fitted(SURROGATE_FILE).provenance.get('date')}): {why}")
    if anchored:
        engine["anchored_at_fit_level"] = anchored
        engine["strength_from"] += (f"; {', '.join(anchored)}, which a hybrid run anchors on a month-0 pushover, "
                                    "takes the fit's own level here (the courses hold no pushover)")
    return {**doc, "engine": engine, "studies": studies}


def fitted_strengths(choice: str = "auto") -> tuple[str, str]:
    """(``"linear"`` or ``"surrogate"``, why): the strengths the risk parameters are fitted
    to. The parameters scale absolute strengths, so they must be fitted on the scale the
    trials run on (femur.mechanics.strength.strength_scale); "auto" takes what a built-in
    study's default strength model ("auto" for the built-in femur and vertebra on the trial
    mesh) gives: the surrogate's strengths when that model reads the surrogate (the
    surrogate, or the hybrid model, whose anchored cases take the fit's level here:
    :func:`with_surrogate_strengths`), the linear loads when it is linear. InputError when
    it is the nonlinear pushover at every visit (stored courses cannot give it)."""
    if choice not in STRENGTH_CHOICES:
        raise InputError(f"--strengths: expected one of {', '.join(STRENGTH_CHOICES)}, got {choice!r}")
    if choice != "auto":
        return choice, "as given"
    model, why = resolve_strength_model("auto", ("femur", "vertebra"), "--strengths auto",
                                        ModelSpec().mesh_size_mm)
    if model == "linear":
        return "linear", f"a study's default strength model runs linear: {why}"
    if model == "surrogate":
        return "surrogate", f"a study's default strength model runs the surrogate: {why}"
    if model == "hybrid":
        # a study then runs the surrogate, given parameters fitted so (femur.study.spec)
        return "surrogate", (f"the built-in bones' default strength model runs hybrid: {why}; its anchored "
                             "cases take the fit's level here, and a study of those bones runs the surrogate "
                             "once its risk parameters were fitted so")
    raise InputError(f"--strengths auto: a study's default strength model is the pushover at every visit ({why}); "
                     "stored courses cannot give its strengths: choose --strengths linear or surrogate")


def fracture_definition(name: str, study: dict) -> str:
    """How calibration study ``name`` counts a new vertebral fracture: as its stored courses
    say, else (courses stored before the setting existed) as its built-in study file says."""
    if study.get("vertebral_fracture_definition"):
        return study["vertebral_fracture_definition"]
    if name == "sof_check":
        return SOF_CHECK.get("risk", {}).get("vertebral_fracture_definition", risk.DEFAULT_FRACTURE_DEFINITION)
    return load_study(name).risk.vertebral_fracture_definition


def as_fitted(doc: dict, provenance: dict) -> dict:
    """The stored courses ``doc`` with the strengths a parameter file was fitted to (its
    ``provenance``, e.g. ``load_parameters("default").provenance``): the surrogate's
    (:func:`with_surrogate_strengths`, from the surrogate's data file as it is now) when its
    engine says so, else the courses' own."""
    if (provenance.get("engine") or {}).get("strength_model") == "surrogate":
        return with_surrogate_strengths(doc)
    return doc


def fit_courses(doc: dict, settings: dict) -> tuple[CalibrationData, FitResult]:
    """Fit the parameters to stored courses with ``settings`` (bootstrap, seed, held
    parameters, fixed inputs, ratio weight: 0 when absent, as in the files written before
    session 18; treated arms: "incidences" when absent, as before session 19);
    deterministic."""
    data = CalibrationData({name: s["cases"] for name, s in doc["studies"].items()},
                           {name: fracture_definition(name, s) for name, s in doc["studies"].items()})
    fixed = dict(settings.get("fixed") or risk.default_fixed())
    fixed.setdefault("reference_vertebral_strength_n", data.reference_strength_n())
    held = {k: float(v) for k, v in (settings.get("held") or {}).items()}
    fitted = [k for k in FITTED_PARAMETERS if k not in held]
    result = fit(data, fixed, fitted=fitted, bootstrap=int(settings.get("bootstrap", 0)),
                 seed=int(settings.get("seed", FIT_SEED)), start=held,
                 ratio_weight=float(settings.get("ratio_weight", 0.0)),
                 treated_arms=settings.get("treated_arms", LEGACY_TREATED_ARMS))
    return data, result


def parameter_document(result: FitResult, rows: list[dict], doc: dict, settings: dict, status: str,
                       command: str) -> dict:
    """values + provenance of a fit (the content of femur/data/fracture_risk.json)."""
    sources = risk.fixed_sources()
    cohorts = {name: {k: s[k] for k in ("n_patients", "seed", "duration_months", "arms", "regimens") if k in s}
               | {"cases": len(s["cases"])} for name, s in doc["studies"].items()}
    return {
        "values": {k: float(v) for k, v in result.values.items()},
        "targets": {
            "source": "shared/science/clinical-targets.md rows 8, 10-15 (never romosozumab fracture results)",
            "fitted": [f"row {t.row}: {t.label} = {t.value:.4g} (n {t.n:.0f})" for t in TARGETS
                       if t.role == "fit" and t.key not in result.carried]
                      + [f"row {r.row}: {r.label} = {r.value} {list(r.ci95)} (weight {result.ratio_weight:g})"
                         for r in RATIOS if r.key in result.ratio_keys],
            "reported": [f"row {r.row}: {r.label} = {r.value} {list(r.ci95)}" for r in RATIOS
                         if r.key not in result.ratio_keys]
                        + [f"row {t.row}: {t.label}" for t in TARGETS if t.role == "check"]
                        + [f"row {t.row}: {t.label} (carried by its relative risk)" for t in TARGETS
                           if t.key in result.carried],
            "per_parameter": {k: FITTED_PARAMETERS[k][3] for k in result.values},
        },
        "seeds": {name: c.get("seed") for name, c in cohorts.items()} | {"fit_bootstrap": settings.get("seed")},
        "extra": {
            "status": status,
            "git_commit": doc.get("git_commit", "unknown"),
            "engine": doc.get("engine", {}),
            "cohorts": cohorts,
            "fit_settings": settings,
            "fixed": {k: float(v) for k, v in result.fixed.items()},
            "fixed_sources": {k: sources.get(k, "") for k in result.fixed},
            "meaning": {k: FITTED_PARAMETERS[k][2] for k in result.values},
            "held": list(result.held),
            "at_bound": list(result.at_bound),
            "covariance": {"names": list(result.names), "matrix": result.covariance.tolist(),
                           "targets_part": result.cov_targets.tolist(), "cohort_part": result.cov_cohort.tolist(),
                           "dispersion": result.dispersion, "bootstrap_refits": result.bootstrap},
            "report": rows,
            "courses_date": doc.get("date"),
            "simulation_command": doc.get("command", "python -m femur.calibration.risk (on 2 MPI ranks)"),
        },
        "command": command,
    }


def write_parameters(pdoc: dict, path=None) -> Path:
    return write_fitted(PARAMETER_FILE, pdoc["values"], targets=pdoc["targets"], seeds=pdoc["seeds"],
                        command=pdoc["command"], notes=pdoc["extra"]["status"], path=path,
                        extra=_jsonable(pdoc["extra"]))


def _jsonable(obj):
    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, (np.bool_, bool)):
        return bool(obj)
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, float) and not np.isfinite(obj):
        return None
    return obj


def calibrate(patients=None, quick=False, out=None, refit_only=False, courses=None, write=False, evaluator=None,
              bootstrap=None, held=None, group_size=1, comm=None, progress=True, command=None,
              strengths="auto", hip_patients=None, only=None, ratio_weight=None,
              treated_arms=None) -> dict | None:
    """The whole calibration (module docstring); returns {"parameters", "report", "rows",
    "paths"} on rank 0, None elsewhere. ``strengths``: the strengths the parameters are
    fitted to (:func:`fitted_strengths`): "linear" (the courses' first-element loads),
    "surrogate" (the strength surrogate's, from the linear quantities of linear-model
    courses: :func:`with_surrogate_strengths`) or "auto" (what a study's default strength
    model runs on). ``hip_patients``: women of the hip cohort (default
    ``max(patients, 500)``; quick: ``patients``). ``only``: simulate these studies alone and
    take the others from the stored courses ``courses`` (default femur/data/).
    ``ratio_weight``: the published vertebral relative risks' weight in the spine
    likelihood (``risk_fit``; default ``DEFAULT_RATIO_WEIGHT``, 1; 0: the arm incidences
    alone); ``treated_arms``: how a treated arm enters beside its published ratio
    (``risk_fit.TREATED_ARMS``; default "ratios": through the ratio alone)."""
    comm = comm or MPI.COMM_WORLD
    n = patients or (QUICK_PATIENTS if quick else DEFAULT_PATIENTS)
    n_hip = hip_patients or (n if quick else max(n, DEFAULT_HIP_PATIENTS))
    if only and refit_only:
        raise InputError("--only simulates studies; it cannot be combined with --refit-only")
    out = Path(out) if out is not None else Path("results") / ("calibrate_risk_quick" if quick else "calibrate_risk")
    command = command or "python -m femur.calibration.risk"
    if refit_only:
        doc = None
        if comm.rank == 0:
            src = Path(courses) if courses else (out / "courses.json.gz" if (out / "courses.json.gz").exists()
                                                  else data_path(COURSES_FILE))
            doc = load_courses(src)
            log.info("refitting from the stored courses %s", src)
    else:
        specs = calibration_specs(n, n_hip)
        base = None
        if only:
            unknown = [s for s in only if s not in specs]
            if unknown:
                raise InputError(f"--only {','.join(only)}: no calibration study {', '.join(map(repr, unknown))}; "
                                 f"expected some of {', '.join(specs)}")
            specs = {k: v for k, v in specs.items() if k in only}
            err = None  # checked on rank 0 before any rank starts the (collective) simulation
            if comm.rank == 0:
                try:
                    base = load_courses(Path(courses) if courses else data_path(COURSES_FILE))
                    check_mergeable(base, next(iter(specs.values())).model.strength_model, quick)
                except InputError as exc:
                    err = str(exc)
            err = comm.bcast(err, root=0)
            if err:
                raise InputError(err)
        studies = simulate(specs, out, evaluator, comm, group_size, progress)
        doc = None
        if comm.rank == 0:
            meta = {"date": _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
                    "git_commit": git_commit(), "quick": bool(quick), "command": command,
                    "engine": {"femur_version": __version__,
                               "strength_model": next(iter(specs.values())).model.strength_model,
                               "evaluator": evaluator if isinstance(evaluator, str) or evaluator is None
                               else getattr(evaluator, "__name__", str(evaluator))}}
            for st in studies.values():
                st["simulated"] = {k: meta[k] for k in ("date", "git_commit", "command")}
            doc = {"format": COURSES_FORMAT, **meta, "studies": studies}
            if base is not None:
                doc = merged_courses(base, studies, meta)
            save_courses(out / "courses.json.gz", doc["studies"], {k: v for k, v in doc.items()
                                                                   if k not in ("studies", "format")})
    if comm.rank != 0:
        return None
    chosen, why = fitted_strengths(strengths)
    log.info("fitted strengths: %s (%s)", chosen, why)
    # the courses as simulated are what is stored (a later refit may choose its strengths
    # again), with each woman's femur anatomy (the surrogate's geometry terms read it)
    stored_model = (doc.get("engine") or {}).get("strength_model")
    simulated = doc = with_course_anatomy(doc) if stored_model == "linear" else doc
    if chosen == "surrogate":
        doc = with_surrogate_strengths(doc)
        log.info("strengths: %s", doc["engine"]["strength_from"])
    elif stored_model == "surrogate":
        raise InputError("--strengths linear: the courses hold the surrogate's strengths (converted before "
                         "they were stored), not the first-element loads")
    settings = {"bootstrap": int(bootstrap if bootstrap is not None else
                                 (QUICK_BOOTSTRAP if doc.get("quick") else DEFAULT_BOOTSTRAP)),
                "seed": FIT_SEED, "held": dict(held or {}),
                "ratio_weight": float(DEFAULT_RATIO_WEIGHT if ratio_weight is None else ratio_weight),
                "treated_arms": DEFAULT_TREATED_ARMS if treated_arms is None else treated_arms}
    data, result = fit_courses(doc, settings)
    settings["fixed"] = dict(result.fixed)
    rows = report_rows(data, result)
    sizes = {name: s["n_patients"] for name, s in doc["studies"].items()}
    status = (f"QUICK MODE machinery check ({min(sizes.values())}-{max(sizes.values())} women per arm, "
              f"engine {doc.get('engine', {}).get('femur_version')}, strength model "
              f"{doc.get('engine', {}).get('strength_model')}): NOT the final calibration"
              if doc.get("quick") else
              f"calibration on {min(sizes.values())}-{max(sizes.values())} women per arm, engine "
              f"{doc.get('engine', {}).get('femur_version')}, strength model "
              f"{doc.get('engine', {}).get('strength_model')}")
    title = f"Fracture-risk calibration report -- {status}\ncourses: {doc.get('date')}, commit {doc.get('git_commit')}"
    for ext in doc.get("extended") or []:
        title += f"; {', '.join(ext['studies'])}: {ext['date']}, commit {ext['git_commit']}"
    text = format_report(rows, result, title)
    pdoc = parameter_document(result, rows, doc, settings, status, command)
    paths = {}
    out.mkdir(parents=True, exist_ok=True)  # the report goes there in every mode
    if write:
        paths["parameters"] = write_parameters(pdoc)
        paths["courses"] = save_courses(data_path(COURSES_FILE), simulated["studies"],
                                        {k: v for k, v in simulated.items() if k not in ("studies", "format")})
    else:
        paths["parameters"] = write_parameters(pdoc, out / PARAMETER_FILE)
    atomic_write_text(out / "report.txt", text + "\n")
    paths["report"] = out / "report.txt"
    paths["figure"] = risk_calibration_figure(rows, out / "calibration.png", title=status)
    params = parameters_from_document({"values": pdoc["values"], "provenance": _jsonable(pdoc["extra"])},
                                      str(paths["parameters"]))
    return {"parameters": params, "report": text, "rows": rows, "paths": paths, "result": result}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m femur.calibration.risk", description=__doc__.split("\n")[0])
    ap.add_argument("--patients", type=int, default=None,
                    help=f"women per arm in every calibration trial (default {DEFAULT_PATIENTS}; "
                    f"--quick: {QUICK_PATIENTS})")
    ap.add_argument("--quick", action="store_true", help="small cohorts: a machinery check, not a calibration")
    ap.add_argument("--refit-only", action="store_true", help="refit from stored courses (no FE)")
    ap.add_argument("--courses", default=None, metavar="FILE",
                    help="courses to refit (default OUT/courses.json.gz, else femur/data/" + COURSES_FILE + ")")
    ap.add_argument("--write", action="store_true",
                    help=f"store the parameters in femur/data/{PARAMETER_FILE} and the courses in femur/data/")
    ap.add_argument("--out", default=None, metavar="DIR", help="case files, courses and report "
                    "(default results/calibrate_risk[_quick])")
    ap.add_argument("--bootstrap", type=int, default=None,
                    help=f"virtual-cohort bootstrap refits (default {DEFAULT_BOOTSTRAP}; quick {QUICK_BOOTSTRAP})")
    ap.add_argument("--hold", action="append", default=[], metavar="NAME=VALUE",
                    help="hold a parameter at a value instead of fitting it (recorded in the provenance)")
    ap.add_argument("--strengths", choices=STRENGTH_CHOICES, default="auto",
                    help="the strengths the parameters are fitted to: the linear first-element loads, the "
                    "strength surrogate's (computed from the linear quantities the courses store, no FE), or "
                    "auto (default): those a study's default strength model runs on; the report says which")
    ap.add_argument("--surrogate-strengths", action="store_true", help="the same as --strengths surrogate")
    ap.add_argument("--hip-patients", type=int, default=None,
                    help=f"women of the hip cohort, on which the hip targets are evaluated (default "
                    f"max(--patients, {DEFAULT_HIP_PATIENTS}); --quick: --patients)")
    ap.add_argument("--only", default=None, metavar="STUDY[,STUDY]",
                    help="simulate only these calibration studies (e.g. " + HIP_COHORT + "); the others' courses "
                    "come from the stored ones (--courses, default femur/data/" + COURSES_FILE + ")")
    ap.add_argument("--ratio-weight", type=float, default=None, metavar="W",
                    help=f"weight of the published vertebral relative risks (rows 10, 12-14) in the spine "
                    f"likelihood, beside the arm incidences (default {DEFAULT_RATIO_WEIGHT:g}; 0: the arm "
                    "incidences alone)")
    ap.add_argument("--treated-arms", choices=TREATED_ARMS, default=None,
                    help=f"how a trial's treated arm enters the spine fit beside its published relative risk: "
                    f"ratios (default {DEFAULT_TREATED_ARMS!r}: through the relative risk alone, each trial's "
                    "contrast once; its incidence is reported as a check) or incidences (its incidence too, "
                    "counting the contrast twice: session 18)")
    ap.add_argument("--group-size", type=int, default=1, help="MPI ranks per case")
    ap.add_argument("--evaluator", default=None, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    configure()
    comm = MPI.COMM_WORLD
    try:
        held = {}
        for item in args.hold:
            name, _, value = item.partition("=")
            if name not in FITTED_PARAMETERS or not value:
                raise InputError(f"--hold {item!r}: expected NAME=VALUE with NAME one of {sorted(FITTED_PARAMETERS)}")
            try:
                held[name] = float(value)
            except ValueError:
                raise InputError(f"--hold {item!r}: {value!r} is not a number") from None
        if args.ratio_weight is not None and not (args.ratio_weight >= 0 and np.isfinite(args.ratio_weight)):
            raise InputError(f"--ratio-weight must be a finite number >= 0, got {args.ratio_weight}")
        if args.patients is not None and args.patients < 1:
            raise InputError(f"--patients must be >= 1, got {args.patients}")
        if args.hip_patients is not None and args.hip_patients < 1:
            raise InputError(f"--hip-patients must be >= 1, got {args.hip_patients}")
        only = [s.strip() for s in args.only.split(",") if s.strip()] if args.only is not None else None
        if only is not None and not only:
            raise InputError("--only: expected one or more calibration study names")
        command = "python -m femur.calibration.risk " + " ".join(shlex.quote(a) for a in (argv or sys.argv[1:]))
        if comm.size > 1:
            command = f"mpiexec -n {comm.size} " + command
        res = calibrate(args.patients, args.quick, args.out, args.refit_only, args.courses, args.write,
                        args.evaluator, args.bootstrap, held, args.group_size, comm, command=command.strip(),
                        strengths="surrogate" if args.surrogate_strengths else args.strengths,
                        hip_patients=args.hip_patients, only=only, ratio_weight=args.ratio_weight,
                        treated_arms=args.treated_arms)
    except FemurError as exc:
        if comm.rank == 0:
            print(f"femur: error: {exc}", file=sys.stderr)
        return 2
    if comm.rank == 0:
        print(res["report"])
        for kind, path in res["paths"].items():
            print(f"{kind}: {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
