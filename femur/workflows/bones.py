"""Building a patient's bones: the built-in femur and vertebra with their density fields.

* :func:`build_bone` -- a built-in bone at a DXA-equivalent T-score (femoral neck for the
  femur, spine for the vertebra) or at the density of an age (age model);
* :func:`patient_bone` -- a patient's built-in bone: a man's bones are scaled to his size
  (``femur.geometry.population``), the femur gets the femoral-neck T-score and the
  vertebra the spine T-score of the patient.
"""

from __future__ import annotations

from femur.core.errors import InputError
from femur.core.mpi import MPI
from femur.geometry.density import assign_density
from femur.geometry.femur_model import ProximalFemur
from femur.geometry.population import male_geometry
from femur.geometry.vertebra import Vertebra
from femur.workflows.t_score import bone_with_t_score

BUILDERS = {"femur": ProximalFemur, "vertebra": Vertebra}


def build_bone(kind: str, mesh_size_mm: float | None = None, t_score: float | None = -2.5,
               age: float | None = None, sex: str = "female", layers: str = "none",
               comm=MPI.COMM_WORLD, **geometry):
    """A built-in bone with its density field.

    With ``age`` the densities follow the age model
    (``femur.geometry.density.density_for_age``); otherwise the bone is scaled to the
    DXA-equivalent ``t_score`` (femoral neck for the femur, spine for the vertebra).
    """
    if kind not in BUILDERS:
        raise InputError(f"bone must be 'femur' or 'vertebra', got '{kind}'")
    params = dict(geometry)
    if kind == "vertebra":
        params["layers"] = layers
    if mesh_size_mm is not None:
        params["mesh_size_mm"] = mesh_size_mm
    bone = BUILDERS[kind](**params).build(comm)
    if age is not None:
        return assign_density(bone, age_y=age, sex=sex)
    return bone_with_t_score(bone, t_score=-2.5 if t_score is None else t_score, sex=sex)


def patient_bone(kind: str, patient, mesh_size_mm: float | None = None, geometry: dict | None = None,
                 comm=MPI.COMM_WORLD):
    """The built-in ``kind`` bone of a ``femur.remodeling.Patient``: ``geometry`` (builder
    parameters, e.g. a cohort patient's sampled ones) or the default bone (a man's scaled
    to his size), at the patient's femoral-neck (femur) or spine (vertebra) T-score."""
    if geometry is None and patient.sex == "male":
        geometry = male_geometry(kind)
    t_score = patient.fn_t_score if kind == "femur" else patient.ls_t_score
    return build_bone(kind, mesh_size_mm=mesh_size_mm, t_score=t_score, sex=patient.sex, comm=comm,
                      **(geometry or {}))


__all__ = ["BUILDERS", "build_bone", "patient_bone"]
