"""Strength of a bone: which load cases, which material, which region, and the one set of
names for the strength quantities from the solver to the risk model.

* :func:`material_for` -- the bone's default density-modulus law (or a named one);
* :func:`load_cases_for` -- `femur strength`'s load cases: femur stance + sideways falls,
  vertebra axial compression;
* :data:`STRENGTH_CASES` / :func:`strength_quantities` -- the FE-coupled simulation's
  strength load cases per bone and the names of what they give (``<prefix>_strength_n``,
  ``<prefix>_stiffness_n_per_mm``, ``<prefix>_surrogate_0p2pct_load_n`` and their
  ``*_pct`` changes). The same names are used by the time-course results, the study's
  case records and tables, and the risk model;
* :func:`strength_record` -- the JSON record of one bone and load case (`femur strength`);
  :func:`pushover_fields` -- what a nonlinear pushover adds to it;
* :data:`STRENGTH_MODELS` -- which model gives "the strength" (``<prefix>_strength_n``):
  ``"linear"`` (the Schileo first-element fracture load of a linear solve),
  ``"nonlinear"`` (the peak of the material-nonlinear pushover,
  ``femur.mechanics.pushover``; with it the 0.2 %-offset yield load
  ``<prefix>_yield_load_n``, and the stiffness is the pushover's initial one) or
  ``"surrogate"`` (a linear-FE predictor of the nonlinear strength, fitted by
  ``python -m femur.calibration.strength_surrogate``: femur.mechanics.surrogate; refused
  while its data file is missing) or ``"hybrid"`` (per load case, by the test the
  surrogate's data file records: the surrogate where its fit meets the accuracy target on
  its test patients; where it meets it only when anchored on each woman's pushover, the
  pushover at the run's month 0 and the fit's predicted change after it; the pushover at
  every strength visit for the others: :func:`split_cases`). The
  default, ``"auto"``, is the model that meets the surrogate's accuracy target
  (:func:`resolve_strength_model`).
  One choice for `femur simulate --strength-model`, the study file's ``[model]
  strength_model`` and the evaluator; `femur strength --model` (one evaluation, no month 0
  to predict from) takes "linear" or "nonlinear".
"""

from __future__ import annotations

from typing import NamedTuple

from femur.core.errors import InputError
from femur.mechanics.failure import SURROGATE_STRAIN, evaluate_criterion
from femur.mechanics.loadcases import AxialCompression, SidewaysFall, SingleLegStance
from femur.mechanics.materials import MaterialModel, default_material
from femur.mechanics.surrogate import (FEATURE_KINDS, FIT_COMMAND, case_verdicts, surrogate_file_exists,
                                      surrogate_status)

#: fracture-load evaluation region per bone: the femoral neck ROI for the femur
#: (femoral neck fracture load); the whole bone (all bone compartments) for the vertebra
FEMUR_REGION = "neck"

#: sideways-fall directions run by default (several directions: Keaveny, Bone 2013)
DEFAULT_FALL_DIRECTIONS = ("lateral", "posterolateral")

#: the fall directions of the FE-coupled simulation and their quantity prefixes (the hip
#: fracture risk needs a fall strength per direction, femur.outcomes.risk): lateral keeps
#: the historical name ``femoral_fall``
FALL_PREFIXES = {"lateral": "femoral_fall", "posterolateral": "femoral_fall_posterolateral",
                 "anterolateral": "femoral_fall_anterolateral"}


def _fall(direction: str):
    return lambda: SidewaysFall(direction=direction)


#: FE-coupled simulation: quantity prefix -> load case, per bone. The first case of each
#: bone is also its habitual load (the mechanostat stimulus).
STRENGTH_CASES = {
    "femur": {"femoral_stance": SingleLegStance,
              **{prefix: _fall(d) for d, prefix in FALL_PREFIXES.items()}},
    "vertebra": {"vertebral": AxialCompression},
}

#: every strength quantity, in table order: (prefix, kind) with kind "strength" (from the
#: strength model), "surrogate" (linear model: 0.2 %-strain load of the
#: displacement-controlled cases), "yield" (nonlinear model: 0.2 %-offset yield load) or
#: "stiffness"
QUANTITY_ORDER = (
    ("vertebral", "strength"), ("vertebral", "surrogate"), ("vertebral", "yield"),
    ("femoral_fall", "strength"), ("femoral_fall", "yield"), ("femoral_stance", "strength"),
    ("femoral_stance", "yield"), ("femoral_fall_posterolateral", "strength"),
    ("femoral_fall_posterolateral", "yield"), ("femoral_fall_anterolateral", "strength"),
    ("femoral_fall_anterolateral", "yield"), ("vertebral", "stiffness"),
    ("femoral_fall", "stiffness"), ("femoral_stance", "stiffness"),
    ("femoral_fall_posterolateral", "stiffness"), ("femoral_fall_anterolateral", "stiffness"),
)
_SUFFIX = {"strength": "_strength_n", "surrogate": "_surrogate_0p2pct_load_n",
           "yield": "_yield_load_n", "stiffness": "_stiffness_n_per_mm",
           # the linear first-element load that a surrogate run's quantities keep beside the
           # predicted strength (a later state's change is taken from it; not an output)
           "linear": "_linear_strength_n"}

#: the strength models (see the module docstring)
STRENGTH_MODELS = ("linear", "nonlinear", "surrogate", "hybrid")
#: the models that read the surrogate's data file
_READS_SURROGATE = ("surrogate", "hybrid")
#: the default: the model that meets issue 10's accuracy target, chosen when a run knows its
#: bones (:func:`resolve_strength_model`)
AUTO = "auto"
STRENGTH_MODEL_CHOICES = (AUTO,) + STRENGTH_MODELS
DEFAULT_STRENGTH_MODEL = AUTO


def check_strength_model(name, where: str = "strength_model") -> str:
    """``name`` if it is a strength model that can run (or ``"auto"``); an InputError naming
    ``where`` otherwise (unknown name, or the surrogate while its data file is missing)."""
    if name not in STRENGTH_MODEL_CHOICES:
        raise InputError(f"{where}: unknown strength model {name!r}; expected one of "
                         f"{', '.join(STRENGTH_MODEL_CHOICES)}")
    if name in _READS_SURROGATE and not surrogate_file_exists():
        raise InputError(
            f"{where}: the {name!r} strength model reads the strength surrogate (a linear-FE predictor "
            f"of the nonlinear strength), which is not fitted on this installation; fit it with "
            f"`{FIT_COMMAND}`, or use 'linear' (fast, first-element fracture load) or 'nonlinear' (pushover)")
    return name


def resolve_strength_model(name, kinds=("femur", "vertebra"), where: str = "strength_model",
                           mesh_size_mm=None, builtin: bool = True) -> tuple[str, str]:
    """(the strength model that runs, why) for a run of bone kinds ``kinds`` (built-in
    bones of element size ``mesh_size_mm``, None: their defaults; ``builtin`` False: a CT
    scan or the user's own bone).

    A named model runs as named; a named ``"surrogate"`` whose test does not back it on
    these bones says why in its reason ("as given, though ..."). ``"auto"`` (the default) picks, as issue 10 asks, the model
    that meets the surrogate's accuracy target:

    * ``"surrogate"`` when its data file holds a full fit of every strength case of these
      bones, each meeting the target on its own test patients;
    * ``"hybrid"`` when some cases' fits miss the target: the surrogate for those that
      meet it, a month-0 pushover with the fit's change after it for those that meet it
      when so anchored (the data file's ``anchored`` test), and the pushover at every
      strength visit (15-40x a linear solve each) for the others;
    * ``"nonlinear"`` when no case's fit meets the target, anchored or not (the pushover at
      every strength visit);
    * ``"linear"`` (the first-element fracture load) while a case has no validated fit yet,
      or on bones unlike those the surrogate was fitted and tested on (another mesh size, a
      CT scan: femur.mechanics.surrogate.surrogate_status).
    """
    name = check_strength_model(name, where)
    if name not in (AUTO, "surrogate"):
        return name, "as given"
    unknown = [k for k in kinds if k not in STRENGTH_CASES]
    if unknown:
        raise InputError(f"{where}: no strength load cases for bone kind(s) {', '.join(map(repr, unknown))}; "
                         f"expected {', '.join(STRENGTH_CASES)}")
    prefixes = [p for k in kinds for p in STRENGTH_CASES[k]]
    status, why = surrogate_status(prefixes, mesh_size_mm, builtin)
    if name == "surrogate":
        # a named surrogate runs, and says so where its own test does not back it on these bones
        return name, ("as given" if status == "validated" else f"as given, though {why}")
    if status == "validated":
        return "surrogate", f"auto: {why}"
    if status == "failed":
        split = split_cases("hybrid", prefixes)
        if not (split.predicted or split.anchored):
            return "nonlinear", (f"auto: {why}, so the nonlinear pushover runs at every strength visit "
                                 "(15-40x a linear solve per load case)")
        parts = ([f"the surrogate runs for {', '.join(split.predicted)}"] if split.predicted else []) + (
            [f"the pushover at the first strength visit for {', '.join(split.anchored)}, the fit's change "
             "after it (its anchored test meets the target)"] if split.anchored else []) + (
            [f"the nonlinear pushover runs for {', '.join(split.pushed)} at every strength visit (15-40x a "
             "linear solve per load case)"] if split.pushed else [])
        return "hybrid", f"auto: {why}, so hybrid: " + "; ".join(parts)
    if status == "outside":
        return "linear", f"auto: {why}; the linear first-element load runs (the pushover: 'nonlinear')"
    return "linear", f"auto: {why}; the linear first-element load runs until it is validated"


class CaseSplit(NamedTuple):
    """How a strength model computes a bone's load cases (the rest: the linear first-element
    load): ``predicted`` by the surrogate from the linear solve; ``anchored``: the pushover
    at the run's month 0, then its peak times the surrogate's predicted change;
    ``pushed``: the pushover at every strength visit."""

    predicted: list
    anchored: list
    pushed: list


def split_cases(model: str, prefixes) -> CaseSplit:
    """The :class:`CaseSplit` of load cases ``prefixes`` under strength model ``model``.
    "surrogate": all predicted; "nonlinear": all pushed over; "hybrid": by the test the
    surrogate's data file records (femur.mechanics.surrogate.case_verdicts): a fit that meets
    the accuracy target predicts, one that meets it only when anchored on a month-0 pushover
    is anchored, the others (a miss, no fit) are pushed over."""
    prefixes = list(prefixes)
    if model == "surrogate":
        return CaseSplit(prefixes, [], [])
    if model == "nonlinear":
        return CaseSplit([], [], prefixes)
    if model == "hybrid":
        v = case_verdicts(prefixes)
        return CaseSplit([p for p in prefixes if v[p] == "met"], [p for p in prefixes if v[p] == "anchored"],
                         [p for p in prefixes if v[p] in ("missed", "absent")])
    return CaseSplit([], [], [])


def describe_strength_model(model: str, reason: str = "as given") -> str:
    """``model``, with the reason :func:`resolve_strength_model` gave when "auto" chose it."""
    return model if reason == "as given" else f"{model} ({reason})"


def quantity_name(prefix: str, kind: str = "strength") -> str:
    """E.g. ("femoral_fall", "strength") -> "femoral_fall_strength_n"."""
    return prefix + _SUFFIX[kind]


def pct_name(name: str) -> str:
    """The name of a quantity's % change: "femoral_fall_strength_n" -> "femoral_fall_strength_pct"."""
    for suffix in ("_n_per_mm", "_n"):
        if name.endswith(suffix):
            return name[: -len(suffix)] + "_pct"
    return name + "_pct"


def strength_kind(model: str) -> str:
    """The quantity kind that holds a bone's strength under strength model ``model``: every
    model writes its strength under ``<prefix>_strength_n`` (the linear first-element load,
    or the pushover peak), so the risk model reads ``quantity_name(prefix, "strength")``;
    InputError for an unknown model."""
    if model not in STRENGTH_MODELS:
        raise InputError(f"strength model {model!r} is not available; known: {', '.join(STRENGTH_MODELS)}")
    return "strength"


def strength_scale(model: str) -> str:
    """What strength model ``model``'s strengths measure: ``"first-element load"`` (linear)
    or ``"pushover peak"`` (nonlinear, and the surrogate and hybrid models, which predict
    or anchor on it). Strengths of one scale may share parameters fitted to absolute
    strengths (the fracture-risk model); the scales differ by bone and load case (median
    pushover peak over first-element load in the surrogate's samples: 1.5-2.1 for the femur's
    load cases, 0.5 for the vertebra; ``benchmarks/surrogate_spread.py``).
    InputError for an unknown model."""
    strength_kind(model)
    return "first-element load" if model == "linear" else "pushover peak"


def strength_cases(kind: str) -> dict:
    """{prefix: load case} of a bone kind for the FE-coupled simulation (habitual first)."""
    return {prefix: make() for prefix, make in STRENGTH_CASES[kind].items()}


def region_for(kind: str) -> str | None:
    return FEMUR_REGION if kind == "femur" else None


def strength_quantities(prefix: str, mechanics_result, material, region=None) -> dict:
    """Strength (Schileo principal-strain criterion), stiffness and, for displacement control,
    the 0.2 %-strain surrogate load of one solved load case, under their quantity names."""
    load, _, _, _ = evaluate_criterion(mechanics_result, "principal_strain", region, 0.0,
                                       material=material)
    out = {quantity_name(prefix): float(load),
           quantity_name(prefix, "stiffness"): float(mechanics_result.stiffness_n_per_mm)}
    if mechanics_result.apparent_strain:
        out[quantity_name(prefix, "surrogate")] = float(
            mechanics_result.applied_load_n * SURROGATE_STRAIN / mechanics_result.apparent_strain)
    return out


def surrogate_features(prefix: str, linear: dict) -> dict:
    """The surrogate's feature values (femur.mechanics.surrogate.FEATURE_KINDS) of load case
    ``prefix`` from its linear quantities (as :func:`strength_quantities` names them), or
    from a surrogate run's quantities (:func:`surrogate_quantities`: the first-element load
    is kept under ``<prefix>_linear_strength_n``)."""
    kept = linear.get(quantity_name(prefix, "linear"))
    return {f: (kept if kind == "strength" and kept is not None else linear.get(quantity_name(prefix, kind)))
            for f, kind in FEATURE_KINDS.items()}


def surrogate_quantities(prefix: str, linear: dict, fit, geometry: dict | None = None,
                         reference: dict | None = None) -> dict:
    """The surrogate model's quantities of one load case: the linear ones with the strength
    (``<prefix>_strength_n``) replaced by the fitted prediction of the nonlinear strength,
    and the first-element load kept as ``<prefix>_linear_strength_n`` (``fit``: a
    femur.mechanics.surrogate.SurrogateFit; ``geometry``: the bone's anatomy,
    ``bone.parameters["anatomy"]``, for a fit with geometry terms; ``reference``: the
    quantities of the same bone at the run's month 0, linear or surrogate, for a fit with a
    change part; None: this state is the reference)."""
    feats = surrogate_features(prefix, linear)
    ref = None if reference is None else surrogate_features(prefix, reference)
    out = dict(linear)
    out[quantity_name(prefix, "linear")] = feats["load"]
    out[quantity_name(prefix)] = fit.predict(feats, geometry, ref)
    return out


def anchored_quantities(prefix: str, linear: dict, fit, reference: dict | None = None,
                        pushover=None, geometry: dict | None = None) -> dict:
    """The quantities of one load case whose surrogate is anchored on a pushover: the linear
    ones (the first-element load kept as ``<prefix>_linear_strength_n``, as the surrogate
    keeps it) with the strength ``<prefix>_strength_n`` from the pushover. At the run's
    month 0 (``reference`` None) the strength is the pushover's peak (``pushover``: its
    ``PushoverSolution``); at a later state it is month 0's strength times the fit's
    predicted change ratio between month 0's linear quantities (``reference``: month 0's
    quantities of this function) and these. No yield load: the fit predicts the peak only."""
    feats = surrogate_features(prefix, linear)
    out = dict(linear)
    out[quantity_name(prefix, "linear")] = feats["load"]
    if reference is None:
        if pushover is None:
            raise ValueError(f"{prefix}: an anchored surrogate needs the month-0 pushover")
        out[quantity_name(prefix)] = float(pushover.nonlinear_strength_n)
        return out
    ref = surrogate_features(prefix, reference)
    out[quantity_name(prefix)] = float(reference[quantity_name(prefix)]) * fit.change_ratio(feats, ref, geometry)
    return out


def pushover_quantities(prefix: str, pushover) -> dict:
    """The nonlinear model's quantities of one pushover (``PushoverSolution``): strength
    (peak load), 0.2 %-offset yield load (None if the curve never crossed the offset
    line) and initial stiffness, under their quantity names."""
    y = pushover.yield_load_n
    return {quantity_name(prefix): float(pushover.nonlinear_strength_n),
            quantity_name(prefix, "yield"): None if y is None else float(y),
            quantity_name(prefix, "stiffness"): float(pushover.linear_stiffness_n_per_mm)}


def pushover_fields(pushover) -> dict:
    """What `femur strength --model nonlinear` adds to a record (keys are an interface
    contract; the curve as [[mm, N], ...])."""
    return {
        "nonlinear_strength_n": float(pushover.nonlinear_strength_n),
        "yield_load_n": None if pushover.yield_load_n is None else float(pushover.yield_load_n),
        "displacement_at_peak_mm": float(pushover.displacement_at_peak_mm),
        "first_yield_load_n": float(pushover.first_yield_load_n),
        "initial_stiffness_n_per_mm": float(pushover.linear_stiffness_n_per_mm),
        "end_displacement_mm": float(pushover.max_displacement_mm),
        "end_slope_fraction": pushover.end_slope_fraction,
        "increments": int(pushover.increments),
        "newton_iterations": int(pushover.newton_iterations),
        "linear_iterations": int(pushover.linear_iterations),
        "converged": bool(pushover.converged),
        "stopped_reason": pushover.stopped_reason,
        "nonlinear_order": int(pushover.order),
        "nonlinear_dofs": int(pushover.dofs),
        "yield_criterion": pushover.criterion,
        "yield_law": pushover.yield_model["default"],
        "platens": pushover.platens,
        "pushover_s": float(pushover.timings.get("total_s", 0.0)),
        "load_displacement": [[float(a), float(b)] for a, b in pushover.load_displacement],
    }


def material_for(bone, law: str | None = None) -> MaterialModel:
    """The bone's default material model, with ``law`` as its default law when given."""
    mat = default_material(bone)
    if law is not None:
        mat = MaterialModel(default_law=law, compartment_laws=mat.compartment_laws,
                            roi_laws=mat.roi_laws, floor_mpa=mat.floor_mpa,
                            poisson_ratio=mat.poisson_ratio)
    return mat


def load_cases_for(bone, fall_directions=DEFAULT_FALL_DIRECTIONS) -> list:
    """`femur strength`'s load cases: femur stance and sideways falls; vertebra compression."""
    if bone.kind == "femur":
        return [SingleLegStance()] + [SidewaysFall(direction=d) for d in fall_directions]
    return [AxialCompression()]


def strength_record(fr, bone, material) -> dict:
    """The JSON record of one bone/load case (keys are an interface contract)."""
    mech = fr.mechanics
    site = fr.failure_site or {}
    where = site.get("region") or site.get("compartment") or ""
    coords = site.get("coordinates_mm")
    site_str = f"{where} ({fr.mode})" if where else fr.mode
    return {
        "bone": bone.name,
        "load_case": fr.load_case,
        "dofs": int(fr.dofs),
        "stiffness_n_per_mm": float(fr.stiffness_n_per_mm),
        "fracture_load_n": float(fr.fracture_load_n),
        "failure_site": site_str,
        "failure_point_mm": [float(c) for c in coords] if coords else None,
        "failure_mode": fr.mode,
        "criterion": fr.criterion,
        "region": fr.region,
        "max_displacement_mm": float(mech.max_displacement_mm),
        "applied_load_n": float(fr.applied_load_n),
        "surrogate_0p2pct_load_n": (None if fr.strain_surrogate_load_n is None
                                    else float(fr.strain_surrogate_load_n)),
        "order": int(mech.order),
        "iterations": int(mech.iterations),
        "law": material.default_law.name,
        "t_score": (bone.parameters.get("t_score") or {}).get("achieved"),
        "timings_s": {k: float(v) for k, v in mech.timings.items()},
    }


__all__ = ["DEFAULT_FALL_DIRECTIONS", "DEFAULT_STRENGTH_MODEL", "FALL_PREFIXES", "FEMUR_REGION",
           "AUTO", "CaseSplit", "QUANTITY_ORDER", "STRENGTH_CASES", "STRENGTH_MODELS", "STRENGTH_MODEL_CHOICES",
           "anchored_quantities", "check_strength_model",
           "describe_strength_model", "load_cases_for", "material_for", "pct_name", "pushover_fields", "pushover_quantities",
           "quantity_name", "region_for", "resolve_strength_model", "split_cases", "strength_cases", "strength_kind", "strength_quantities", "strength_scale",
           "strength_record", "surrogate_features", "surrogate_quantities"]
