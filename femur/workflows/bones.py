"""Building a patient's bones: the built-in femurs and vertebra with their density fields.

The built-in bones (what ``--bone`` accepts, :data:`BONE_KINDS`):

* ``"femur"`` (default): the anatomical femur (``femur.geometry.anatomical``; a Visible
  Human female femur, altered), with the habitual-loading density pattern inside its
  cancellous compartment (``femur.geometry.adapted_density``), optionally morphed to a
  ``FemurShape``; shipped meshes of 3.0 mm (default) and 4.0 mm (studies, trial size);
* ``"parametric-femur"``: the parametric femur (``ProximalFemur``: sphere, elliptic
  neck, cylinder), uniform compartment densities, as before issue 11;
* ``"vertebra"``: the parametric L1-like vertebral body.

* :func:`build_bone` -- a built-in bone at a DXA-equivalent T-score (femoral neck for a
  femur, spine for the vertebra) or at the density of an age (age model);
* :func:`young_adult_bone` -- the same bone at the young-adult density it is scaled from
  (the site-template generator scales it to every T-score of its grid);
* :func:`patient_bone` -- a patient's built-in bone: a man's bones are scaled to his size
  (``femur.geometry.population``) and his anatomical femur gets men's cortical thickness
  pattern (``femur.geometry.cortex_sex``), a femur gets the femoral-neck T-score and the
  vertebra the spine T-score of the patient;
* :func:`describe_geometry` -- the one-line name of a bone's geometry (the ``geometry``
  key of ``femur strength --json``).

Mesh size of the anatomical femur: it comes as shipped meshes only (3.0 and 4.0 mm; a finer
one is made with ``meshes/make_anatomical_femur.py``). A requested size picks the nearest
shipped mesh; a coarser request than 4.0 mm takes the 4.0 mm mesh (logged), a finer one
than 3.0 mm is an error.
"""

from __future__ import annotations

import dataclasses

from femur.core.errors import InputError
from femur.core.log import get_logger
from femur.core.mpi import MPI
from femur.geometry.adapted_density import bone_with_adapted_density
from femur.geometry.anatomical import DEFAULT_MESH_SIZE_MM, SHIPPED, AnatomicalFemur
from femur.geometry.density import assign_density, density_for_age
from femur.geometry.femur_model import ProximalFemur
from femur.geometry.morph import FemurShape
from femur.geometry.population import male_geometry
from femur.geometry.vertebra import Vertebra
from femur.workflows.t_score import bone_with_t_score

log = get_logger(__name__)

#: the built-in bones, default femur first
BONE_KINDS = ("femur", "parametric-femur", "vertebra")
#: other spellings accepted for them
ALIASES = {"anatomical-femur": "femur", "anatomical": "femur", "parametric": "parametric-femur"}
#: the bone kind (Bone.kind, load cases, DXA sites) of each built-in bone
KIND_OF = {"femur": "femur", "parametric-femur": "femur", "vertebra": "vertebra"}
#: tolerance (mm) for a requested mesh size to count as a shipped one
_SIZE_TOL_MM = 0.25


def bone_name(bone: str) -> str:
    """The canonical built-in bone name (:data:`BONE_KINDS`) of ``bone`` or an alias."""
    name = ALIASES.get(str(bone).strip().lower(), str(bone).strip().lower())
    if name not in BONE_KINDS:
        raise InputError(f"bone must be one of {', '.join(BONE_KINDS)} (default femur: the anatomical "
                         f"femur), got '{bone}'")
    return name


def anatomical_mesh_size(mesh_size_mm: float | None) -> float:
    """The shipped anatomical-femur mesh size used for a requested element size (module doc)."""
    if mesh_size_mm is None:
        return DEFAULT_MESH_SIZE_MM
    h = float(mesh_size_mm)
    sizes = sorted(SHIPPED)
    if not h > 0:
        raise InputError(f"mesh_size_mm must be > 0 mm, got {mesh_size_mm}")
    if h < sizes[0] - _SIZE_TOL_MM:
        raise InputError(
            f"the anatomical femur ships meshes of {', '.join(f'{s:g}' for s in sizes)} mm only; for "
            f"{h:g} mm make one with `python meshes/make_anatomical_femur.py --mesh-size {h:g} --out DIR` "
            "and use AnatomicalFemur(mesh_file=...), or use --bone parametric-femur")
    size = min(sizes, key=lambda s: abs(s - h))
    if abs(size - h) > _SIZE_TOL_MM:
        log.info("anatomical femur: no %g mm mesh shipped; using the %g mm mesh", h, size)
    return size


def build_geometry(bone: str, mesh_size_mm: float | None = None, layers: str = "none",
                   comm=MPI.COMM_WORLD, sex: str = "female", **geometry):
    """The mesh of a built-in bone, without density. ``geometry``: the builder's shape
    parameters (``FemurShape`` fields for the anatomical femur, ``ProximalFemur`` /
    ``Vertebra`` fields for the parametric bones). ``sex``: a man's anatomical femur gets
    men's cortical thickness pattern (``femur.geometry.cortex_sex``); the parametric bones
    take their cortex from their own parameters."""
    name = bone_name(bone)
    params = dict(geometry)
    if name == "femur":
        return _anatomical(mesh_size_mm, sex, params).build(comm)
    if name == "vertebra":
        params["layers"] = layers
    if mesh_size_mm is not None:
        params["mesh_size_mm"] = mesh_size_mm
    builder = ProximalFemur if name == "parametric-femur" else Vertebra
    _check_fields(builder, params, name)
    return builder(**params).build(comm)


def _anatomical(mesh_size_mm, sex: str, params: dict) -> AnatomicalFemur:
    """The anatomical femur of ``params`` (``FemurShape`` fields, or ``shape``: a FemurShape)."""
    params = dict(params)
    shape = params.pop("shape", None)
    if params:
        _check_fields(FemurShape, params, "anatomical femur (FemurShape)")
        shape = FemurShape(**params)
    return AnatomicalFemur(mesh_size_mm=anatomical_mesh_size(mesh_size_mm), shape=shape, sex=sex)


def bone_anatomy(kind: str, mesh_size_mm: float | None = None, geometry: dict | None = None,
                 sex: str = "female") -> dict:
    """The scalar anatomy (mm, degrees) that the built-in ``kind`` bone with ``geometry``
    records in ``parameters["anatomy"]`` (as :func:`patient_bone` builds it: a man's default
    femur is scaled to his size), without building the mesh; {} for a bone that records
    none (the parametric bones)."""
    name = bone_name(kind)
    if name != "femur":
        return {}
    if geometry is None and sex == "male":
        geometry = male_geometry(name)
    return _anatomical(mesh_size_mm, sex, geometry or {}).anatomy()


def _check_fields(cls, params: dict, what: str) -> None:
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(params) - known)
    if unknown:
        raise InputError(f"{what}: unknown geometry parameter(s) {unknown}; known: {sorted(known)}")


def young_adult_bone(kind: str, mesh_size_mm: float | None = None, layers: str = "none",
                     comm=MPI.COMM_WORLD, sex: str = "female", **geometry):
    """A built-in bone with the density :func:`build_bone` scales to a T-score: the
    anatomical femur with its habitual-loading pattern at the young-adult compartment
    means; the parametric bones without a density (``bone_with_t_score`` then starts from
    the young-adult compartment densities)."""
    name = bone_name(kind)
    bone = build_geometry(name, mesh_size_mm, layers, comm, sex=sex, **geometry)
    return bone_with_adapted_density(bone) if name == "femur" else bone


def build_bone(kind: str, mesh_size_mm: float | None = None, t_score: float | None = -2.5,
               age: float | None = None, sex: str = "female", layers: str = "none",
               comm=MPI.COMM_WORLD, **geometry):
    """A built-in bone (``kind``: one of :data:`BONE_KINDS`) with its density field.

    With ``age`` the densities follow the age model
    (``femur.geometry.density.density_for_age``); otherwise the bone is scaled to the
    DXA-equivalent ``t_score`` (femoral neck for a femur, spine for the vertebra) from its
    young-adult density (:func:`young_adult_bone`). The anatomical femur carries the
    habitual-loading pattern in its cancellous compartment in both cases.
    """
    name = bone_name(kind)
    if age is None:
        bone = young_adult_bone(name, mesh_size_mm, layers, comm, sex=sex, **geometry)
        return bone_with_t_score(bone, t_score=-2.5 if t_score is None else t_score, sex=sex)
    bone = build_geometry(name, mesh_size_mm, layers, comm, sex=sex, **geometry)
    if name != "femur":
        return assign_density(bone, age_y=age, sex=sex)
    prof = density_for_age(age, sex=sex, site="femur")
    bone = bone_with_adapted_density(bone, base_g_cm3={"cortical": prof.cortical_g_cm3,
                                                       "trabecular": prof.trabecular_g_cm3})
    bone.parameters["density"]["age_model"] = {"age_y": float(age), "sex": sex,
                                               "fraction_of_peak": prof.fraction_of_peak}
    return bone


def patient_bone(kind: str, patient, mesh_size_mm: float | None = None, geometry: dict | None = None,
                 comm=MPI.COMM_WORLD):
    """The built-in ``kind`` bone of a ``femur.remodeling.Patient``: ``geometry`` (builder
    parameters, e.g. a cohort patient's sampled ones) or the default bone (a man's scaled
    to his size), at the patient's femoral-neck (femur) or spine (vertebra) T-score."""
    name = bone_name(kind)
    if geometry is None and patient.sex == "male":
        geometry = male_geometry(name)
    t_score = patient.ls_t_score if KIND_OF[name] == "vertebra" else patient.fn_t_score
    return build_bone(name, mesh_size_mm=mesh_size_mm, t_score=t_score, sex=patient.sex, comm=comm,
                      **(geometry or {}))


def describe_geometry(bone) -> str:
    """One line naming a built bone's geometry, e.g. "anatomical femur (Visible Human female,
    altered), 3.0 mm mesh" (``femur strength --json``: ``geometry``)."""
    p = bone.parameters or {}
    model = p.get("model")
    size = p.get("mesh_size_mm")
    mesh = f", {float(size):.1f} mm mesh" if size is not None else ""
    if model == "AnatomicalFemur":
        changed = {k: v for k, v in (p.get("shape") or {}).items()
                   if v is not None and not (k == "scale" and v == 1.0)}
        morphed = (", morphed (" + ", ".join(f"{k}={v:g}" for k, v in changed.items()) + ")") if changed else ""
        cortex = ", men's cortex" if p.get("cortex_sex") == "male" else ""
        return f"anatomical femur (Visible Human female, altered){mesh}{morphed}{cortex}"
    if model == "ProximalFemur":
        return f"parametric femur (ProximalFemur){mesh}"
    if model == "Vertebra":
        return f"parametric vertebra (L1-like body){mesh}"
    return f"{bone.kind} from {bone.source}"


__all__ = ["ALIASES", "BONE_KINDS", "KIND_OF", "anatomical_mesh_size", "bone_anatomy", "bone_name", "build_bone",
           "build_geometry", "describe_geometry", "patient_bone", "young_adult_bone"]
