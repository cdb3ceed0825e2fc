"""Where a vertebra's density changed: its compartments and its axial zones.

Regions of a vertebra (local cell masks, owned + ghost):

* ``trabecular centrum`` -- the "trabecular" compartment (CT label 1);
* ``cortical shell`` -- the "cortical" compartment of the body (CT label 2);
* ``posterior elements`` -- every compartment named "posterior*" (CT labels 3, 4);
* ``body near superior endplate`` / ``body near inferior endplate`` -- body cells (centrum
  and shell) whose midpoint lies within ``endplate_zone_mm`` (default 5 mm, about two 2-mm
  elements) of the plane of that endplate, measured along the cranio-caudal axis;
* ``body mid`` -- the other body cells.

The endplate planes pass through the area-weighted centres of the layer/bone interfaces
(``landmarks["endplate_superior_center"]``, ...) when the bone has loading layers, else
through the centres of its own end faces, normal to ``landmarks["axis"]``. Non-bone
compartments (layers, ``femur.geometry.compartments``) are in no region.

The change of a region (:func:`regional_change`) is the change of its mass: sum of volume x
density over its owned cells, summed over ranks, relative to the same sum at baseline, so
that a region's % change is what a QCT of that region would report (the volume-weighted
mean density), not an average of per-cell ratios.
"""

from __future__ import annotations

import numpy as np

from femur.core.errors import InputError
from femur.core.mpi import MPI
from femur.geometry.compartments import non_bone_mask

#: depth of the endplate zones (mm) along the axis; ASSUMPTION: two 2-mm elements and a half
ENDPLATE_ZONE_MM = 5.0

REGIONS = ("trabecular centrum", "cortical shell", "posterior elements",
           "body near superior endplate", "body mid", "body near inferior endplate")


def _mask(bone, name: str) -> np.ndarray:
    if name in bone.cell_ids:
        return bone.compartment_mask(name)
    return np.zeros(bone.num_local_cells, dtype=bool)


def vertebral_regions(bone, endplate_zone_mm: float = ENDPLATE_ZONE_MM) -> dict[str, np.ndarray]:
    """Local cell masks of the regions of a vertebra (module docstring)."""
    if not (np.isfinite(endplate_zone_mm) and endplate_zone_mm > 0):
        raise InputError(f"endplate_zone_mm must be > 0 mm, got {endplate_zone_mm}")
    lm = bone.landmarks
    if "axis" not in lm:
        raise InputError(f"bone '{bone.name}' has no landmark 'axis' (the cranio-caudal axis)")
    axis = np.asarray(lm["axis"], dtype=float).ravel()
    axis = axis / np.linalg.norm(axis)
    sup = lm.get("endplate_superior_center", lm.get("superior_center"))
    inf = lm.get("endplate_inferior_center", lm.get("inferior_center"))
    if sup is None or inf is None:
        raise InputError(f"bone '{bone.name}' has no endplate landmarks (superior_center, inferior_center)")
    bone_cells = ~non_bone_mask(bone)
    trab = _mask(bone, "trabecular") & bone_cells
    cort = _mask(bone, "cortical") & bone_cells
    post = np.zeros(bone.num_local_cells, dtype=bool)
    for name in bone.cell_ids:
        if name.lower().startswith("posterior"):
            post |= bone.compartment_mask(name)
    post &= bone_cells
    body = trab | cort
    s = bone.cell_midpoints() @ axis
    s_sup, s_inf = float(np.asarray(sup) @ axis), float(np.asarray(inf) @ axis)
    near_sup = body & (s >= s_sup - endplate_zone_mm)
    near_inf = body & (s <= s_inf + endplate_zone_mm) & ~near_sup
    return {
        "trabecular centrum": trab, "cortical shell": cort, "posterior elements": post,
        "body near superior endplate": near_sup, "body mid": body & ~near_sup & ~near_inf,
        "body near inferior endplate": near_inf,
    }


def regional_change(bone, baseline, current, regions: dict | None = None) -> dict[str, dict]:
    """Per region: owned cells, volume (mm3), volume-weighted mean density at baseline and
    now (the arrays' unit, e.g. g/cm3) and the % change of the region's mass (collective;
    the same on every rank)."""
    regions = vertebral_regions(bone) if regions is None else regions
    n_owned = bone.num_owned_cells
    vol = bone.cell_volumes()[:n_owned]
    b = np.asarray(baseline, dtype=float)[:n_owned]
    c = np.asarray(current, dtype=float)[:n_owned]
    out = {}
    for name, mask in regions.items():
        m = np.asarray(mask, dtype=bool)[:n_owned]
        sums = np.array([m.sum(), (vol * m).sum(), (vol * b * m).sum(), (vol * c * m).sum()], dtype=float)
        sums = bone.comm.allreduce(sums, op=MPI.SUM)
        cells, v, mb, mc = sums
        out[name] = {
            "cells": int(cells), "volume_mm3": float(v),
            "baseline_mean": float(mb / v) if v > 0 else None,
            "current_mean": float(mc / v) if v > 0 else None,
            "change_pct": float(100.0 * (mc / mb - 1.0)) if mb > 0 else None,
        }
    return out


__all__ = ["ENDPLATE_ZONE_MM", "REGIONS", "regional_change", "vertebral_regions"]
