"""Volumetric BMD (mg/cm3 of mineral) of a bone's cells: QCT-like, volume-weighted."""

from __future__ import annotations

import numpy as np

from femur.core.mpi import MPI  # noqa: F401  (MPI before dolfinx)
from femur.core import units  # noqa: E402
from femur.core.errors import DensityError, InputError  # noqa: E402
from femur.geometry.compartments import owned_bone_cells  # noqa: E402


def volumetric_bmd(bone, region: str | None = None, compartment: str | None = None) -> float:
    """Volumetric BMD (mg/cm3, mineral = ash density) over bone cells of ``region`` (ROI or
    compartment name; None = whole bone) and optionally one ``compartment``.

    QCT-like: with the identity QCT -> ash calibration (femur.core.units) this is the
    mineral-equivalent vBMD a calibrated QCT would report. Volume-weighted over owned cells.
    """
    if bone.density is None:
        raise DensityError(f"bone '{bone.name}' has no density field")
    cells = owned_bone_cells(bone)
    mask = np.ones(cells.shape[0], dtype=bool)
    if region is not None:
        mask &= bone.roi_mask(region)[cells]
    if compartment is not None:
        mask &= bone.compartment_mask(compartment)[cells]
    sel = cells[mask]
    vol = bone.cell_volumes()[sel]
    rho_ash = units.apparent_to_ash_g_cm3(bone.density.x.array[sel])
    num = bone.comm.allreduce(float(np.sum(rho_ash * vol)), op=MPI.SUM)
    den = bone.comm.allreduce(float(np.sum(vol)), op=MPI.SUM)
    if den == 0:
        raise InputError(f"bone '{bone.name}': region {region!r} / compartment {compartment!r} is empty")
    return 1000.0 * num / den


__all__ = ["volumetric_bmd"]
