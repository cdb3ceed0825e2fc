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
* :func:`strength_record` -- the JSON record of one bone and load case (`femur strength`).
"""

from __future__ import annotations

from femur.core.errors import InputError
from femur.mechanics.failure import SURROGATE_STRAIN, evaluate_criterion
from femur.mechanics.loadcases import AxialCompression, SidewaysFall, SingleLegStance
from femur.mechanics.materials import MaterialModel, default_material

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

#: every strength quantity, in table order: (prefix, kind) with kind "strength",
#: "surrogate" (0.2 %-strain load, displacement-controlled cases) or "stiffness"
QUANTITY_ORDER = (
    ("vertebral", "strength"), ("vertebral", "surrogate"), ("femoral_fall", "strength"),
    ("femoral_stance", "strength"), ("femoral_fall_posterolateral", "strength"),
    ("femoral_fall_anterolateral", "strength"), ("vertebral", "stiffness"),
    ("femoral_fall", "stiffness"), ("femoral_stance", "stiffness"),
    ("femoral_fall_posterolateral", "stiffness"), ("femoral_fall_anterolateral", "stiffness"),
)
_SUFFIX = {"strength": "_strength_n", "surrogate": "_surrogate_0p2pct_load_n",
           "stiffness": "_stiffness_n_per_mm"}

#: strength models -> the quantity kind that holds a bone's strength under that model. The
#: risk model reads ``quantity_name(prefix, STRENGTH_MODELS[model])``; today the engine has
#: the linear first-failure load only. A nonlinear (pushover) strength or its surrogate
#: registers its kind and suffix here and the risk model reads it by name.
STRENGTH_MODELS = {"linear": "strength"}


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
    """The quantity kind of strength model ``model`` ("linear", ...); InputError if unknown."""
    if model not in STRENGTH_MODELS:
        raise InputError(f"strength model {model!r} is not available; known: {sorted(STRENGTH_MODELS)}")
    return STRENGTH_MODELS[model]


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


__all__ = ["DEFAULT_FALL_DIRECTIONS", "FALL_PREFIXES", "FEMUR_REGION", "QUANTITY_ORDER", "STRENGTH_CASES",
           "STRENGTH_MODELS", "strength_kind",
           "load_cases_for", "material_for", "pct_name", "quantity_name", "region_for",
           "strength_cases", "strength_quantities", "strength_record"]
