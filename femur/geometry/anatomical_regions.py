"""Regions of the anatomical proximal femur: cortical thickness, ROIs and landmarks.

Everything here is a plain function of a *reference* dictionary (``ref``, stored as JSON
next to the shipped mesh, see ``meshes/anatomical_femur.json``) in the femur frame of
`femur.geometry.femur_model` (mm): z = shaft axis pointing proximally, x = medial,
y = anterior, the distal cut in z = 0 with the shaft axis through the origin.

Neck coordinate: ``s(x) = (C - x) . n`` is the distance from the head centre C toward
the neck base along the neck axis n (n points from the base to the head).

ROIs (point predicates, same names and meaning as ``ProximalFemur``):

* ``head``  -- within R + 2 mm of C and on the head side of the head-neck junction plane
  (s <= s_junction = sqrt(R^2 - (w/2)^2), w the neck's superior-inferior width).
* ``neck``  -- the slab s_junction + 2 mm <= s <= s_junction + 12 mm (10 mm wide, ending
  2 mm below the head-neck junction, as in ``ProximalFemur``), within 0.75 w of the axis.
* ``shaft`` -- z <= z_shaft = (lowest point of the lesser trochanter) - 10 mm.
* ``greater_trochanter`` -- lateral of the shaft axis (x < 0), above the inferior border
  of the greater trochanter (where the lateral outline leaves the shaft's), outside the
  head and neck (s >= s_neck_base).
* ``lesser_trochanter`` -- an ellipsoid fitted around the lesser-trochanter bump
  (posteromedial; extent measured from the surface's radius profile).
* ``intertrochanteric`` -- from the lowest point of the lesser trochanter up to the neck
  base height, outside the greater trochanter, the neck and the head.

Cortical thickness t(x) (mm), a smooth function of position (used once, to offset the
endosteal surface when the mesh is generated):

* head ``head_mm``; neck from ``neck_superior_mm`` (superior, along +z) to
  ``neck_inferior_mm`` (inferior) with a cosine in the section angle; trochanters and
  intertrochanteric ``trochanter_mm``; shaft ``shaft_mm`` below the lesser trochanter;
* blends: head -> neck over s_junction - 4 .. s_junction + 2 mm; neck -> trochanteric over
  s_neck_base - 4 .. s_neck_base + 6 mm; trochanteric -> shaft from the lesser-trochanter
  tip height down to 20 mm below its lowest point (smoothstep blends, C1).

The default thicknesses are the *typical* values the parametric femur uses (superior neck
thin, ~0.5-1 mm, inferior ~2-3 mm, head ~1 mm, trochanters ~1-1.5 mm, proximal diaphysis
~4 mm; ``ProximalFemur`` docstring): UNCONFIRMED against a primary source.  The density
adaptation (issue 11) is meant to refine the cortex; the shell here sets the compartments.
"""

from __future__ import annotations

import functools

import numpy as np

#: Default cortical thicknesses (mm): typical values, UNCONFIRMED (module docstring).
CORTEX_DEFAULTS = {
    "head_mm": 1.0,
    "neck_superior_mm": 0.7,
    "neck_inferior_mm": 2.0,
    "trochanter_mm": 1.5,
    "shaft_mm": 4.0,
}
HEAD_ROI_MARGIN_MM = 2.0
NECK_ROI_GAP_MM = 2.0
NECK_ROI_WIDTH_MM = 10.0
SHAFT_BELOW_LT_MM = 10.0


def smoothstep(x, lo, hi):
    """0 below lo, 1 above hi, C1 cubic in between."""
    t = np.clip((np.asarray(x, float) - lo) / (hi - lo), 0.0, 1.0)
    return t * t * (3.0 - 2.0 * t)


def _arr(ref, key):
    return np.asarray(ref[key], dtype=float)


def neck_s(x, C, n):
    """Distance from the head centre toward the neck base along the neck axis; x (3, m)."""
    return (C - np.asarray(x, float).T) @ n


# ----------------------------------------------------------------------------- cortex
def cortical_thickness_mm(points: np.ndarray, ref: dict, cortex: dict | None = None) -> np.ndarray:
    """Cortical thickness (mm) at ``points`` (m, 3) of the reference femur (see module doc)."""
    c = dict(CORTEX_DEFAULTS)
    c.update(cortex or ref.get("cortex", {}))
    P = np.asarray(points, float)
    C, n = _arr(ref, "head_center"), _arr(ref, "neck_axis")
    e_si = _arr(ref, "neck_e_si")
    s = neck_s(P.T, C, n)
    sj, sb = float(ref["s_junction_mm"]), float(ref["s_neck_base_mm"])
    rel = P - C + s[:, None] * n[None, :]  # radial vector from the neck axis
    cos_sup = (rel @ e_si) / np.maximum(np.linalg.norm(rel, axis=1), 1e-9)
    t_mean = 0.5 * (c["neck_superior_mm"] + c["neck_inferior_mm"])
    t_half = 0.5 * (c["neck_inferior_mm"] - c["neck_superior_mm"])
    t_neck = t_mean - t_half * cos_sup
    w_head = 1.0 - smoothstep(s, sj - 4.0, sj + 2.0)
    t_hn = w_head * c["head_mm"] + (1.0 - w_head) * t_neck
    w_hn = 1.0 - smoothstep(s, sb - 4.0, sb + 6.0)
    z = P[:, 2]
    w_shaft = 1.0 - smoothstep(z, float(ref["lt_bottom_z_mm"]) - 20.0, float(ref["lt_tip"][2]))
    t_rest = c["trochanter_mm"] + (c["shaft_mm"] - c["trochanter_mm"]) * w_shaft
    return w_hn * t_hn + (1.0 - w_hn) * t_rest


# ----------------------------------------------------------------------------- ROIs
def _roi_head(x, C, n, R, sj):
    rel = np.asarray(x, float).T - C
    return (np.linalg.norm(rel, axis=1) <= R + HEAD_ROI_MARGIN_MM) & (-(rel @ n) <= sj)


def _roi_neck(x, C, n, s0, s1, rmax):
    rel = np.asarray(x, float).T - C
    s = -(rel @ n)
    rad = np.linalg.norm(rel + s[:, None] * n[None, :], axis=1)
    return (s >= s0) & (s <= s1) & (rad <= rmax)


def _roi_shaft(x, z_top):
    return np.asarray(x, float)[2] <= z_top


def _roi_gt(x, C, n, sb, z_lo):
    x = np.asarray(x, float)
    return (x[0] < 0.0) & (x[2] >= z_lo) & (neck_s(x, C, n) >= sb)


def _roi_ellipsoid(x, centre, axes, semi):
    q = (np.asarray(x, float).T - centre) @ np.asarray(axes, float).T
    return np.sum((q / semi) ** 2, axis=1) <= 1.0


def _roi_intertroch(x, C, n, sb, z_lo, z_hi, gt_z_lo):
    x = np.asarray(x, float)
    s = neck_s(x, C, n)
    in_gt = (x[0] < 0.0) & (x[2] >= gt_z_lo) & (s >= sb)
    return (x[2] >= z_lo) & (x[2] <= z_hi) & (s >= sb) & ~in_gt


def regions(ref: dict) -> dict:
    """ROI predicates (x of shape (3, m) in mm -> bool) of the reference femur."""
    C, n = _arr(ref, "head_center"), _arr(ref, "neck_axis")
    R = float(ref["head_radius_mm"])
    sj, sb = float(ref["s_junction_mm"]), float(ref["s_neck_base_mm"])
    s0, s1 = ref["neck_roi_s_mm"]
    return {
        "head": functools.partial(_roi_head, C=C, n=n, R=R, sj=sj),
        "neck": functools.partial(_roi_neck, C=C, n=n, s0=float(s0), s1=float(s1),
                                  rmax=float(ref["neck_roi_radius_mm"])),
        "shaft": functools.partial(_roi_shaft, z_top=float(ref["shaft_top_z_mm"])),
        "greater_trochanter": functools.partial(_roi_gt, C=C, n=n, sb=sb,
                                                z_lo=float(ref["gt_bottom_z_mm"])),
        "lesser_trochanter": functools.partial(
            _roi_ellipsoid, centre=_arr(ref, "lt_center"), axes=_arr(ref, "lt_axes"),
            semi=_arr(ref, "lt_semi_mm")),
        "intertrochanteric": functools.partial(
            _roi_intertroch, C=C, n=n, sb=sb, z_lo=float(ref["lt_bottom_z_mm"]),
            z_hi=float(np.asarray(ref["neck_base"])[2]), gt_z_lo=float(ref["gt_bottom_z_mm"])),
    }  # fmt: skip


def landmarks(ref: dict) -> dict:
    """Landmarks with the keys of ``ProximalFemur`` (mm; unit vectors)."""
    C, n = _arr(ref, "head_center"), _arr(ref, "neck_axis")
    g = np.radians(float(ref.get("stance_angle_deg", 8.0)))
    stance_dir = np.array([np.sin(g), 0.0, np.cos(g)])
    s0, s1 = ref["neck_roi_s_mm"]
    return {
        "head_center": C.copy(),
        "head_radius": np.array([float(ref["head_radius_mm"])]),
        "shaft_axis": np.array([0.0, 0.0, 1.0]),
        "neck_axis": n.copy(),
        "neck_base": _arr(ref, "neck_base"),
        "neck_center": C - 0.5 * (float(s0) + float(s1)) * n,
        "distal_center": np.zeros(3),
        "trochanter_point": _arr(ref, "trochanter_point"),
        "greater_trochanter_top": _arr(ref, "gt_top"),
        "lesser_trochanter": _arr(ref, "lt_tip"),
        "head_load_direction": -stance_dir,
        "lateral": np.array([-1.0, 0.0, 0.0]),
        "medial": np.array([1.0, 0.0, 0.0]),
        "anterior": np.array([0.0, 1.0, 0.0]),
    }


# ----------------------------------------------------------------------------- facets
def classify_outer_facets(tri_points: np.ndarray, ref: dict) -> np.ndarray:
    """Facet region of outer boundary triangles (k, 3 vertices, 3): 0 other, 11
    head_load, 13 trochanter, 14 head_surface, 16 abductor, 12 distal (all vertices on
    z = 0).

    Head facets: all three vertices within ``head_tolerance_mm`` of the fitted sphere and
    on the head side of the head-neck junction; the load patch (stance) is the head
    facets whose centroid direction from C lies within ``head_patch_half_angle_deg`` (30)
    of the stance direction (8 deg from the shaft axis toward medial; Cristofolini 2007),
    as in ``ProximalFemur``.  Trochanter: centroid within ``trochanter_patch_radius_mm``
    (15) of the most lateral point of the greater trochanter.  Abductor: centroid within
    ``abductor_patch_radius_mm`` (12) of the most proximal point of the greater trochanter
    (where gluteus medius and minimus insert, approximately; for habitual-load cases).
    """
    X = np.asarray(tri_points, float)
    C, n = _arr(ref, "head_center"), _arr(ref, "neck_axis")
    R, sj = float(ref["head_radius_mm"]), float(ref["s_junction_mm"])
    tol = float(ref.get("head_tolerance_mm", 1.5))
    out = np.zeros(len(X), dtype=np.int32)
    rc = np.linalg.norm(X - C, axis=2)
    s = (C - X) @ n
    head = np.all((np.abs(rc - R) < tol) & (s <= sj), axis=1)
    cen = X.mean(axis=1)
    d = (cen - C) / np.linalg.norm(cen - C, axis=1)[:, None]
    g = np.radians(float(ref.get("stance_angle_deg", 8.0)))
    stance = np.array([np.sin(g), 0.0, np.cos(g)])
    patch = d @ stance >= np.cos(np.radians(float(ref.get("head_patch_half_angle_deg", 30.0))))
    out[head & ~patch] = 14
    out[head & patch] = 11
    near = np.linalg.norm(cen - _arr(ref, "trochanter_point"), axis=1) <= float(
        ref.get("trochanter_patch_radius_mm", 15.0)
    )
    out[near & ~head] = 13
    abd = np.linalg.norm(cen - _arr(ref, "gt_top"), axis=1) <= float(ref.get("abductor_patch_radius_mm", 12.0))
    out[abd & ~head & ~near] = 16
    distal = np.all(np.abs(X[..., 2]) < 1e-6, axis=1)
    out[distal] = 12
    return out
