"""Landmark-based regions and measures of a proximal-femur density field (the habitual-loading
adaptation's pattern: trabecular groups, Ward's triangle, shaft cortex, checkerboards).

Regions (all sizes in units of the head radius R, from the landmarks "head_center",
"head_radius", "neck_axis" (toward the head), "shaft_axis" (proximal) and "neck_base"
(the neck axis' point nearest the shaft axis; computed if absent), so they fit the
parametric and an anatomical femur alike).  Neck frame: ``n`` the neck axis, ``u`` the
superior direction of the neck cross-section (the shaft axis made perpendicular to
``n``), ``t`` the distance along ``n`` from the neck base, ``d`` = |C - P0| (the neck
length from the shaft axis).  They follow the radiographic description of the
trabecular groups (Singh, Nagrath & Maini, J Bone Joint Surg Am 1970;52:457 -- the
Singh index groups; described here in words, positions are our reading of it):

* ``compressive``: principal compressive group, a capsule of radius 0.3 R from the
  superomedial head (0.5 R from the centre toward the stance contact, i.e. against the
  stance joint force) to the inferomedial neck base (t = 0.3 d, 0.55 R below the axis),
  where it fans into the medial (calcar) cortex;
* ``tensile``: the part of the principal tensile group that runs under the superior
  neck cortex (the group arches from the inferior head over the superior neck into the
  lateral cortex below the greater trochanter): a capsule of radius 0.22 R from just
  lateral of the head centre (t = d - 0.3 R, 0.35 R above the axis) to above the neck
  base (t = 0.15 d, 0.5 R above the axis);
* ``wards``: Ward's triangle, a sphere of radius 0.28 R centred on the neck axis at
  t = 0.4 d, between the two groups and the secondary compressive group;
* shaft levels: slabs along the shaft axis for the cortical thickness profile.

Only cells of the cancellous compartment ("trabecular") count in the three group ROIs
when the bone has one (the groups are trabecular structures).

Checkerboard measures (:func:`checkerboard_measures`): the mean density jump across
interior facets between the two neighbouring cells, and the roughness ||rho - S rho|| /
||rho||, S = node averaging and back (a smooth field changes little under S, a
checkerboard a lot).
"""

from __future__ import annotations

import numpy as np

from femur.core.mpi import MPI
import dolfinx  # noqa: E402

from femur.core.errors import InputError  # noqa: E402
from femur.geometry.node_average import NodeAverager  # noqa: E402
from femur.mechanics.muscle_loads import CARTER_DAILY_LOADS  # noqa: E402

GROUP_ROIS = ("compressive", "tensile", "wards")


def neck_frame(bone) -> dict:
    """C, R, n, u (superior), s (shaft), P0 (neck base) and d from the landmarks."""
    lm = bone.landmarks
    try:
        C = np.asarray(lm["head_center"], float)
        R = float(np.ravel(lm["head_radius"])[0])
        n = np.asarray(lm["neck_axis"], float)
        s = np.asarray(lm.get("shaft_axis", (0.0, 0.0, 1.0)), float)
    except KeyError as exc:
        raise InputError(f"bone '{bone.name}' lacks landmark {exc} needed for the adaptation ROIs; "
                         f"it has {sorted(lm)}") from None
    n = n / np.linalg.norm(n)
    s = s / np.linalg.norm(s)
    u = s - (s @ n) * n
    u /= np.linalg.norm(u)
    if "neck_base" in lm:
        P0 = np.asarray(lm["neck_base"], float)
    else:  # point of the neck axis closest to the shaft axis (through distal_center)
        D = np.asarray(lm.get("distal_center", np.zeros(3)), float)
        w0 = C - D
        b = n @ s
        t = (b * (w0 @ s) - (w0 @ n)) / (1.0 - b * b)
        P0 = C + t * n
    d = float(np.linalg.norm(C - P0))
    return {"C": C, "R": R, "n": n, "u": u, "s": s, "P0": P0, "d": d}


def _capsule(x, a, b, r):
    ab = b - a
    t = np.clip(((x - a) @ ab) / (ab @ ab), 0.0, 1.0)
    return np.linalg.norm(x - (a + t[:, None] * ab), axis=1) <= r


def roi_masks(bone, stance_direction=None) -> dict[str, np.ndarray]:
    """Boolean masks over local cells for the group ROIs (see the module docstring)."""
    f = neck_frame(bone)
    C, R, n, u, P0, d = f["C"], f["R"], f["n"], f["u"], f["P0"], f["d"]
    if stance_direction is None:
        stance_direction = CARTER_DAILY_LOADS[0].joint_direction(bone)
    toward_contact = -np.asarray(stance_direction, float)
    x = bone.cell_midpoints()
    comp = {
        "compressive": _capsule(x, C + 0.5 * R * toward_contact, P0 + 0.3 * d * n - 0.55 * R * u, 0.3 * R),
        "tensile": _capsule(x, P0 + (d - 0.3 * R) * n + 0.35 * R * u, P0 + 0.15 * d * n + 0.5 * R * u,
                            0.22 * R),
        "wards": np.linalg.norm(x - (P0 + 0.4 * d * n), axis=1) <= 0.28 * R,
    }
    if "trabecular" in (bone.cell_ids or {}):
        trab = bone.compartment_mask("trabecular")
        comp = {k: v & trab for k, v in comp.items()}
    return comp


def roi_means(bone, rho, masks=None) -> dict[str, float]:
    """Volume-weighted mean density per ROI over owned cells (collective)."""
    masks = masks or roi_masks(bone)
    n = bone.num_owned_cells
    vol = bone.cell_volumes()[:n]
    r = np.asarray(rho, float)[:n]
    out = {}
    for k, m in masks.items():
        s = bone.comm.allreduce(np.array([np.sum(vol * r * m[:n]), np.sum(vol * m[:n])]), op=MPI.SUM)
        if s[1] <= 0:
            raise InputError(f"adaptation ROI '{k}' holds no cell of bone '{bone.name}' (mesh too coarse?)")
        out[k] = float(s[0] / s[1])
    return out


def pattern_report(bone, rho) -> dict:
    """ROI means, the compressive/Ward's and tensile/Ward's ratios, and the shaft cortex profile."""
    means = roi_means(bone, rho)
    return {"roi_mean_g_cm3": means,
            "compressive_to_wards": means["compressive"] / means["wards"],
            "tensile_to_wards": means["tensile"] / means["wards"],
            "shaft_profile": shaft_profile(bone, rho)}


def shaft_profile(bone, rho, dense_g_cm3: float = 1.0, n_levels: int = 6) -> list[dict]:
    """Dense-bone (>= ``dense_g_cm3``) area fraction and equivalent cortical thickness
    (dense area / perimeter of the equal-area circle) in slabs along the shaft, from the
    lesser-trochanter level (neck base - 1.5 R along the shaft) down to 1.5 R above the
    distal cut (the fixed end).  Thickness should grow distally for a loaded femur."""
    f = neck_frame(bone)
    s = f["s"]
    lm = bone.landmarks
    D = np.asarray(lm.get("distal_center", np.zeros(3)), float)
    z_top = (f["P0"] - D) @ s - 1.5 * f["R"]
    z_bot = 1.5 * f["R"]
    if not z_top > z_bot:
        raise InputError(f"bone '{bone.name}': shaft too short for the cortical profile")
    n = bone.num_owned_cells
    x = bone.cell_midpoints()[:n]
    z = (x - D) @ s
    vol = bone.cell_volumes()[:n]
    r = np.asarray(rho, float)[:n]
    edges = np.linspace(z_top, z_bot, n_levels + 1)
    out = []
    for hi, lo in zip(edges[:-1], edges[1:]):
        m = (z <= hi) & (z > lo)
        v = bone.comm.allreduce(np.array([np.sum(vol[m]), np.sum(vol[m] * (r[m] >= dense_g_cm3))]), op=MPI.SUM)
        h = hi - lo
        area, dense = v[0] / h, v[1] / h
        out.append({"level_mm": float(0.5 * (hi + lo)), "dense_fraction": float(v[1] / v[0]),
                    "thickness_mm": float(dense / (2.0 * np.sqrt(np.pi * area)))})
    return out


def checkerboard_measures(bone, rho) -> dict:
    """Mean |rho_a - rho_b| over interior facets (owned facets with both cells on this
    rank) relative to the mean density, and the roughness ||rho - S rho|| / ||rho||
    (volume weighted, S = vertex averaging and back); collective."""
    mesh = bone.mesh
    tdim = mesh.topology.dim
    mesh.topology.create_connectivity(tdim - 1, tdim)
    f2c = mesh.topology.connectivity(tdim - 1, tdim)
    n_f = mesh.topology.index_map(tdim - 1).size_local
    counts = np.diff(f2c.offsets[: n_f + 1])
    inner = np.flatnonzero(counts == 2)
    pairs = f2c.array[f2c.offsets[inner][:, None] + np.arange(2)]
    r = np.asarray(rho, float)
    jump = np.abs(r[pairs[:, 0]] - r[pairs[:, 1]])
    n = bone.num_owned_cells
    vol = bone.cell_volumes()[:n]
    avg = NodeAverager(mesh)
    smooth = avg.to_cells(avg.to_nodes(r))
    sums = bone.comm.allreduce(np.array([
        jump.sum(), float(len(jump)), np.sum(vol * r[:n]), np.sum(vol),
        np.sum(vol * (r[:n] - smooth[:n]) ** 2), np.sum(vol * r[:n] ** 2)]), op=MPI.SUM)
    mean_rho = sums[2] / sums[3]
    return {"mean_neighbour_jump_g_cm3": float(sums[0] / sums[1]),
            "relative_neighbour_jump": float(sums[0] / sums[1] / mean_rho),
            "roughness": float(np.sqrt(sums[4] / sums[5]))}


__all__ = ["roi_masks", "roi_means", "pattern_report", "shaft_profile", "checkerboard_measures",
           "neck_frame", "GROUP_ROIS"]
