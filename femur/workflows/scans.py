"""A patient's CT scan as the bone of a coupled run: the scan gives the bone, the caller the
patient.

* :class:`CTScan` -- where a scan is and how to read it: image, labels, calibration (a file)
  or ``calibrated_mg_cm3``, the two loading-layer labels, the bone labels, the mesh;
* :func:`scan_bone` -- the CT vertebra (``femur.geometry.ct.bone_from_ct``), with the
  file checks a study needs (a missing file is named, with where it was listed);
* :func:`scan_patient` -- the :class:`femur.remodeling.patient.Patient` of a scan. Sex and
  age come from the caller (defaults: a 71-year-old woman, the Patient defaults); body mass
  and height are optional (defaults 65 kg / 1.60 m for women, 80 kg / 1.75 m for men). The
  spine T-score is the DXA-equivalent T-score measured on the scan itself (its AP
  projection; the posterior elements project onto the body as in a PA spine scan, so no
  posterior allowance is added: ``femur.outcomes.dxa``). The femoral-neck T-score is not in
  a spine scan: it is the caller's value, or else set equal to the spine's (the Patient
  convention that one T-score stands for both). Neither T-score changes the cell model:
  its baseline state is the scan's own densities (``femur.workflows.tracks``).

Scans are vertebrae: the habitual load of the mechanostat and the strength case are the
axial compression between the loading layers (or the bone's own end faces without layers),
``femur.mechanics.strength``.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from femur.core.errors import InputError
from femur.core.log import get_logger
from femur.core.mpi import MPI
from femur.geometry.ct import bone_from_ct
from femur.outcomes import dxa
from femur.outcomes.references import t_score
from femur.remodeling.patient import Patient

log = get_logger(__name__)

#: mesh of a scan unless told: one hexahedron per voxel, as `femur strength --ct`
DEFAULT_VOXEL_COARSEN = 1
#: the range a Patient accepts for a T-score
T_SCORE_RANGE = (-6.0, 4.0)


@dataclass(frozen=True)
class CTScan:
    """A CT scan of a vertebra and how to read it (paths as given; ``where`` says where the
    scan was listed, e.g. "manifest.csv row 3", for error messages)."""

    image: str
    labels: str
    calibration: str | None = None
    calibrated_mg_cm3: bool = False
    layers: tuple | None = None
    bone_labels: tuple | None = None
    voxel_coarsen: int = DEFAULT_VOXEL_COARSEN
    mesh: str = "voxel"
    name: str | None = None
    where: str = field(default="", compare=False)

    def __post_init__(self):
        for key in ("layers", "bone_labels"):
            v = getattr(self, key)
            if v is not None:
                object.__setattr__(self, key, tuple(int(x) for x in v))
        if self.calibration is None and not self.calibrated_mg_cm3:
            raise InputError(f"{self._at()}scan {self.image}: no calibration: give a calibration "
                             "file or calibrated_mg_cm3 = true (an image already in mg/cm3)")
        if self.calibration is not None and self.calibrated_mg_cm3:
            raise InputError(f"{self._at()}scan {self.image}: give a calibration file or "
                             "calibrated_mg_cm3 = true, not both")

    def _at(self) -> str:
        return f"{self.where}: " if self.where else ""

    @property
    def label(self) -> str:
        return self.name or Path(str(self.image)).name.split(".")[0]

    def to_dict(self) -> dict:
        d = asdict(self)
        d.pop("where")
        for key in ("layers", "bone_labels"):
            if d[key] is not None:
                d[key] = list(d[key])
        return d

    @classmethod
    def from_dict(cls, d: dict, where: str = "") -> "CTScan":
        return cls(**{k: v for k, v in d.items() if k != "where"}, where=where)

    def check_files(self) -> None:
        """InputError naming the missing file and where the scan was listed."""
        for key in ("image", "labels", "calibration"):
            path = getattr(self, key)
            if path is not None and not Path(path).exists():
                raise InputError(f"{self._at()}{key} file {path} not found")


def scan_bone(scan: CTScan, comm=MPI.COMM_WORLD):
    """The scan's vertebra (collective): voxel (or tet) mesh, labels as compartments,
    apparent density in g/cm3 from the calibration."""
    err = None
    if comm.rank == 0:
        try:
            scan.check_files()
        except InputError as exc:
            err = str(exc)
    err = comm.bcast(err, root=0)
    if err is not None:
        raise InputError(err)
    try:
        return bone_from_ct(scan.image, scan.labels, calibration=scan.calibration,
                            calibrated_mg_cm3=scan.calibrated_mg_cm3, mesh=scan.mesh,
                            voxel_coarsen=scan.voxel_coarsen, layers=scan.layers,
                            bone_labels=scan.bone_labels, comm=comm, name=scan.name)
    except InputError as exc:
        if scan.where:
            raise type(exc)(f"{scan.where}: {exc}") from None
        raise


def spine_dxa(bone, sex: str = "female") -> dict:
    """DXA-equivalent spine aBMD (g/cm2), BMC, area and T-score of a vertebra's current
    density (collective)."""
    m = dxa.measure(bone, "spine")
    m["t_score"] = t_score(m["areal_bmd_g_cm2"], "spine", sex)
    return m


def scan_patient(bone, sex: str = "female", age_years: float = 71.0,
                 body_mass_kg: float | None = None, height_m: float | None = None,
                 fn_t_score: float | None = None) -> Patient:
    """The Patient of a scanned vertebra: sex, age and body size as given, the spine T-score
    measured on the scan (module docstring). A measured T-score outside [-6, 4] (a small or
    unusual vertebra, or a doubtful calibration) is recorded at the nearest end of that range,
    with a warning: it names the patient and does not enter the cell model."""
    sex = Patient(sex=sex).sex
    m = spine_dxa(bone, sex)
    measured = float(m["t_score"])
    ls = float(np.clip(measured, *T_SCORE_RANGE))
    if ls != measured:
        log.warning("bone '%s': the DXA-equivalent spine T-score measured on the scan is %.2f "
                    "(aBMD %.3f g/cm2), outside %s; the patient is given %.1f (check the image "
                    "units and the calibration)", bone.name, measured, m["areal_bmd_g_cm2"],
                    list(T_SCORE_RANGE), ls)
    fn = ls if fn_t_score is None else fn_t_score
    patient = Patient(sex=sex, age_years=age_years, body_mass_kg=body_mass_kg, height_m=height_m,
                      fn_t_score=fn, ls_t_score=ls)
    log.info("patient of scan %s: %s, %.0f years, %.0f kg, %.2f m; spine aBMD %.3f g/cm2, "
             "T-score %.2f (measured on the scan); femoral-neck T-score %.2f (%s)", bone.name,
             patient.sex, patient.age_years, patient.body_mass_kg, patient.height_m,
             m["areal_bmd_g_cm2"], measured, patient.fn_t_score,
             "given" if fn_t_score is not None else "not measured: set to the spine's")
    return patient


def is_ct_bone(bone) -> bool:
    return bone is not None and str(getattr(bone, "source", "")).lower().startswith("ct")


def scan_summary(bone) -> dict:
    """The scan a CT bone came from (the ``geometry`` of a run's JSON, with the held cells
    added by the run)."""
    p = bone.parameters or {}
    comm = bone.comm
    return {
        "source": "ct", "name": bone.name, "image": p.get("image"), "labels": p.get("labels"),
        "image_units": p.get("image_units"), "calibration": p.get("calibration"),
        "mesh": p.get("mesh"), "cell_type": p.get("cell_type"),
        "voxel_coarsen": p.get("voxel_coarsen"), "element_size_mm": p.get("element_size_mm"),
        "cells": int(comm.allreduce(bone.num_owned_cells, op=MPI.SUM)),
        "compartments": {k: int(v) for k, v in bone.cell_ids.items()},
        "layer_labels": p.get("layer_labels"), "non_bone_labels": p.get("non_bone_labels"),
        "height_mm": float(np.ravel(bone.landmarks["height"])[0]) if "height" in bone.landmarks else None,
        "negative_density_cells": p.get("negative_density_cells"),
        "capped_density_cells": p.get("capped_density_cells"),
    }


__all__ = ["CTScan", "DEFAULT_VOXEL_COARSEN", "is_ct_bone", "scan_bone", "scan_patient",
           "scan_summary", "spine_dxa"]
