"""Landmarks of a whole femur surface: head sphere, shaft and neck axes, condyles, angles.

Everything is derived automatically from a closed triangle surface in mm (any position,
orientation and side); nothing is picked by hand.  :func:`analyse_femur` returns a
:class:`FemurAnatomy` with the landmarks in the *input* coordinates and the rigid map
(possibly a mirror) to the femur frame of `femur.geometry.femur_model`: z = shaft axis
pointing proximally, x = medial, y = anterior, right-handed -- a *left* femur.  A right
femur is mirrored (documented in ``mirrored``).

Definitions (all in mm and degrees):

* **proximal end** -- of the two ends of the principal (PCA) long axis, the one whose
  end region is best fitted by a sphere (the femoral head; the condyles are not a sphere).
* **head centre, radius** -- geometric least-squares sphere fit to the head's surface
  vertices, chosen iteratively: vertices within ``band`` (max(1.5 mm, 6 % R)) of the
  current sphere, outside a cone of 55 deg half-angle around the neck direction (which
  removes the neck and the head-neck junction); the fovea is a pit deeper than the band
  and drops out by itself.  Iterated until the selection is stable.
* **shaft axis** -- least-squares line through the centroids of cross-sections
  perpendicular to the axis, from 25 % to 50 % of the bone length below the proximal end
  (proximal diaphysis, below the lesser trochanter; the shaft's anterior bow makes a
  whole-diaphysis axis differ by a few degrees).  Refined once with sections perpendicular
  to the first fit.  Oriented proximally.
* **neck axis** -- the line through the head centre and the centroid of the narrowest
  (smallest-area) cross-section of the neck, sections perpendicular to the axis itself,
  iterated to a fixed point.  Oriented from the neck base toward the head.
* **neck base** -- the point of the neck axis closest to the shaft axis (the two lines
  are skew when the neck is anteverted); **neck length** = head centre to neck base;
  **offset** = distance from the head centre to the shaft axis.
* **neck-shaft angle** -- angle between the neck axis (toward the head) and the shaft
  axis (distally), in 3-D.
* **posterior condylar axis** -- the line touching the posterior surfaces of both femoral
  condyles in the transverse plane (the longest edge of the convex hull of the distal
  35 mm, projected on the plane perpendicular to the shaft axis, among the hull edges
  facing posteriorly), oriented lateral -> medial.
* **anteversion** -- angle from the posterior condylar axis to the neck axis, both
  projected on the plane perpendicular to the shaft axis; positive when the neck points
  anteriorly (the usual CT definition).
* **neck width** -- superior-inferior width of the narrowest section (its extent along
  the shaft axis made perpendicular to the neck axis), comparable with
  ``ProximalFemur.neck_diameter_mm`` and with a DXA neck width; **neck depth** -- its
  antero-posterior extent; **neck minimum diameter** -- its smallest caliper width.
* **femur frame** -- z = shaft axis; x = the posterior condylar axis (medial) made
  perpendicular to z, so that the neck axis lies at the anteversion angle from x toward
  anterior, exactly as in ``ProximalFemur``; y = anterior (the condyles lie posterior).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import numpy as np

from femur.core.errors import InputError
from femur.geometry.trisurf import (
    TriSurface,
    caliper_widths,
    loop_containing,
    plane_section,
)

HEAD_BAND_MIN_MM = 1.5
HEAD_BAND_FRACTION = 0.06
HEAD_NECK_CONE_DEG = 55.0
SHAFT_RANGE = (0.25, 0.50)  # fraction of the bone length below the proximal end
CONDYLE_DEPTH_MM = 35.0


def _unit(v):
    v = np.asarray(v, float)
    return v / np.linalg.norm(v)


# ----------------------------------------------------------------------------- fits
def fit_sphere(points: np.ndarray, centre0=None, radius0=None):
    """Geometric least-squares sphere (centre, radius, rms residual) through ``points``."""
    from scipy.optimize import least_squares

    P = np.asarray(points, float)
    if len(P) < 4:
        raise InputError(f"sphere fit needs at least 4 points, got {len(P)}")
    if centre0 is None:  # algebraic fit as the start
        A = np.column_stack([2 * P, np.ones(len(P))])
        b = (P**2).sum(axis=1)
        sol, *_ = np.linalg.lstsq(A, b, rcond=None)
        centre0 = sol[:3]
        radius0 = np.sqrt(max(sol[3] + centre0 @ centre0, 1e-12))

    def res(p):
        return np.linalg.norm(P - p[:3], axis=1) - p[3]

    out = least_squares(res, np.r_[centre0, radius0], method="lm")
    c, r = out.x[:3], abs(out.x[3])
    return c, float(r), float(np.sqrt(np.mean(res(out.x) ** 2)))


def fit_line(points: np.ndarray):
    """Least-squares line (point, unit direction) through ``points``."""
    P = np.asarray(points, float)
    c = P.mean(axis=0)
    _, _, vt = np.linalg.svd(P - c)
    return c, vt[0]


def _closest_points(p1, d1, p2, d2):
    """Closest points of two lines (p + t d): (on line 1, on line 2)."""
    w = p1 - p2
    a, b, c = d1 @ d1, d1 @ d2, d2 @ d2
    d, e = d1 @ w, d2 @ w
    den = a * c - b * b
    if abs(den) < 1e-12:
        return p1, p2 + (e / c) * d2
    s = (b * e - c * d) / den
    t = (a * e - b * d) / den
    return p1 + s * d1, p2 + t * d2


# ----------------------------------------------------------------------------- result
@dataclass
class FemurAnatomy:
    """Landmarks of a whole femur, in the coordinates of the analysed surface (mm)."""

    head_center: np.ndarray
    head_radius_mm: float
    head_fit_rms_mm: float
    head_fit_points: int
    shaft_point: np.ndarray
    shaft_axis: np.ndarray  # unit, proximal
    neck_axis: np.ndarray  # unit, base -> head
    neck_center: np.ndarray  # centroid of the narrowest neck section
    neck_base: np.ndarray
    neck_length_mm: float
    offset_mm: float
    neck_shaft_angle_deg: float
    anteversion_deg: float
    neck_width_mm: float  # superior-inferior
    neck_depth_mm: float  # antero-posterior
    neck_min_diameter_mm: float
    neck_area_mm2: float
    neck_section_s_mm: float  # distance of the narrowest section from the head centre
    condylar_axis: np.ndarray  # unit, lateral -> medial (posterior condylar line)
    condyle_points: np.ndarray  # (2, 3): lateral, medial posterior condylar points
    length_mm: float  # extent along the shaft axis
    proximal_end: np.ndarray  # most proximal point along the shaft axis
    frame: np.ndarray  # (3, 3) rows x (medial), y (anterior), z (proximal) in input coords
    mirrored: bool  # True: the input is a right femur and the frame mirrors it
    sections: list = field(default_factory=list)  # (s, area) of the neck scan, for reports

    def scalars(self) -> dict:
        keys = ("head_radius_mm", "head_fit_rms_mm", "neck_length_mm", "offset_mm",
                "neck_shaft_angle_deg", "anteversion_deg", "neck_width_mm", "neck_depth_mm",
                "neck_min_diameter_mm", "neck_area_mm2", "length_mm")
        out = {k: float(getattr(self, k)) for k in keys}
        out["head_diameter_mm"] = 2.0 * self.head_radius_mm
        out["side"] = "right" if self.mirrored else "left"
        return out

    def to_dict(self) -> dict:
        d = asdict(self)
        return {k: (v.tolist() if isinstance(v, np.ndarray) else v) for k, v in d.items()}


# ----------------------------------------------------------------------------- pieces
def _coverage(dirs: np.ndarray, n_bins: int = 400) -> float:
    """Fraction of a Fibonacci lattice of directions that has an inlier direction nearest."""
    k = np.arange(n_bins) + 0.5
    phi = np.arccos(1 - 2 * k / n_bins)
    th = np.pi * (1 + 5**0.5) * k
    lat = np.column_stack([np.cos(th) * np.sin(phi), np.sin(th) * np.sin(phi), np.cos(phi)])
    hit = np.unique(np.argmax(dirs @ lat.T, axis=1))
    return len(hit) / n_bins


def _seed_sphere(V, axis, length):
    """Band-iterated sphere fit seeded at the extreme vertex along ``axis``.

    Returns (centre, radius, coverage): coverage is the fraction of the sphere's directions
    covered by inlier vertices (about 0.6 for a femoral head, much less for the condyles)."""
    top = V[int(np.argmax(V @ axis))]
    r = 0.05 * length  # femoral head radius / femur length is about 0.05
    c = top - r * axis
    prev = None
    for _ in range(30):
        dist = np.linalg.norm(V - c, axis=1)
        band = max(HEAD_BAND_MIN_MM, 2 * HEAD_BAND_FRACTION * r)
        idx = np.flatnonzero(np.abs(dist - r) < band)
        if len(idx) < 10:
            return c, r, 0.0
        c, r, _ = fit_sphere(V[idx], c, r)
        if not (0.02 * length < r < 0.12 * length):
            return c, r, 0.0
        key = tuple(idx)
        if key == prev:
            break
        prev = key
    return c, r, _coverage(_unit_rows(V[idx] - c))


def _unit_rows(A):
    return A / np.maximum(np.linalg.norm(A, axis=1), 1e-300)[:, None]


def _head_fit(V, c0, r0, neck_dir, iterations: int = 12):
    c, r = c0, r0
    cos_cone = np.cos(np.radians(HEAD_NECK_CONE_DEG))
    prev = None
    rms = np.inf
    for _ in range(iterations):
        rel = V - c
        dist = np.linalg.norm(rel, axis=1)
        band = max(HEAD_BAND_MIN_MM, HEAD_BAND_FRACTION * r)
        ok = np.abs(dist - r) < band
        ok &= (rel @ neck_dir) < cos_cone * dist  # outside the cone around the neck
        idx = np.flatnonzero(ok)
        if len(idx) < 30:
            raise InputError("femur head sphere fit: too few head vertices found")
        c, r, rms = fit_sphere(V[idx], c, r)
        key = tuple(idx)
        if key == prev:
            break
        prev = key
    return c, r, rms, len(idx)


def _shaft_axis(surf, top_point, axis, length):
    V = surf.vertices
    for _ in range(2):
        cents = []
        for f in np.linspace(SHAFT_RANGE[0], SHAFT_RANGE[1], 16):
            p = top_point - f * length * axis
            loops = [lp for lp in plane_section(surf, p, axis) if lp.area > 0]
            if not loops:
                continue
            cents.append(max(loops, key=lambda lp: lp.area).centroid)
        if len(cents) < 5:
            raise InputError(f"{surf.name}: could not find the femoral shaft sections")
        p0, d = fit_line(np.array(cents))
        axis = d if d @ axis > 0 else -d
        top_point = p0 + ((top_point - p0) @ axis) * axis
    del V
    return p0, axis


def _neck_scan(surf, C, R, n, s_range=(0.5, 2.3), step=1.0):
    """Sections perpendicular to n at distances s from C toward the base."""
    out = []
    for s in np.arange(s_range[0] * R, s_range[1] * R, step):
        p = C - s * n
        lp = loop_containing(plane_section(surf, p, n), p, n)
        if lp is not None:
            out.append((float(s), lp))
    if len(out) < 5:
        raise InputError(f"{surf.name}: the femoral neck could not be found around the head")
    return out


def _neck_axis(surf, C, R, n0, iterations: int = 20):
    n = n0
    for _ in range(iterations):
        scan = _neck_scan(surf, C, R, n)
        areas = np.array([lp.area for _, lp in scan])
        k = int(np.argmin(areas))
        if k in (0, len(scan) - 1):
            raise InputError(
                f"{surf.name}: no narrowest neck section between the head and the neck base "
                f"(area minimum at the end of the scan)"
            )
        s, lp = scan[k]
        n_new = _unit(C - lp.centroid)
        if np.degrees(np.arccos(np.clip(n_new @ n, -1, 1))) < 1e-3:
            n = n_new
            break
        n = n_new
    scan = _neck_scan(surf, C, R, n)
    areas = np.array([lp.area for _, lp in scan])
    k = int(np.argmin(areas))
    return n, scan, k


def _posterior_condyles(V, z, posterior, medial, depth=CONDYLE_DEPTH_MM):
    from scipy.spatial import ConvexHull

    h = V @ z
    sel = V[h <= h.min() + depth]
    e1, e2 = medial, np.cross(z, medial)
    q = np.column_stack([sel @ e1, sel @ e2])
    hull = ConvexHull(q)
    post2 = np.array([posterior @ e1, posterior @ e2])
    best, best_len = None, -1.0
    for a, b in hull.simplices:
        t = q[b] - q[a]
        nrm = np.array([t[1], -t[0]]) / np.linalg.norm(t)
        if nrm @ (q[a] - q[hull.vertices].mean(axis=0)) < 0:
            nrm = -nrm
        if nrm @ post2 > np.cos(np.radians(45.0)) and np.linalg.norm(t) > best_len:
            best, best_len = (a, b), float(np.linalg.norm(t))
    if best is None or best_len < 15.0:
        raise InputError("femur condyles: no posterior condylar tangent found")
    pa, pb = sel[best[0]], sel[best[1]]
    if pa @ medial > pb @ medial:
        pa, pb = pb, pa  # pa lateral, pb medial
    return pa, pb


# ----------------------------------------------------------------------------- main
def _head_and_neck(surf: TriSurface, shaft_p, z, length):
    """Head sphere and neck axis of a femur surface whose shaft axis (point, unit, proximal)
    is known: (C, R, rms, n_points, n, scan, k)."""
    V = surf.vertices
    c0, r0, _ = _seed_sphere(V, z, length)
    foot = shaft_p + ((c0 - shaft_p) @ z) * z
    medial0 = _unit(c0 - foot)
    nsa0 = np.radians(127.0)
    n0 = _unit(np.sin(nsa0) * medial0 - np.cos(nsa0) * z)  # neck axis guess (base -> head)
    C, R, rms, npts = _head_fit(V, c0, r0, -n0)
    n, scan, k = _neck_axis(surf, C, R, n0)
    C, R, rms, npts = _head_fit(V, C, R, -n)
    n, scan, k = _neck_axis(surf, C, R, n)
    return C, R, rms, npts, n, scan, k


def _neck_measures(C, n, lp, shaft_p, z, x, y) -> dict:
    """Angles and lengths from the head centre C, neck axis n, narrowest section loop lp,
    the shaft axis (shaft_p, z) and the transverse reference directions x (medial), y
    (anterior)."""
    nsa = float(np.degrees(np.arccos(np.clip(n @ (-z), -1, 1))))
    nproj = n - (n @ z) * z
    av = float(np.degrees(np.arctan2(nproj @ y, nproj @ x)))
    P0, _ = _closest_points(C, n, shaft_p, z)
    e_si = _unit(z - (z @ n) * n)
    e_ap = np.cross(n, e_si)
    _, widths = caliper_widths(lp, n)
    return dict(
        neck_shaft_angle_deg=nsa, anteversion_deg=av, neck_base=P0,
        neck_length_mm=float(np.linalg.norm(C - P0)),
        offset_mm=float(np.linalg.norm((C - shaft_p) - ((C - shaft_p) @ z) * z)),
        neck_width_mm=float(np.ptp(lp.points @ e_si)), neck_depth_mm=float(np.ptp(lp.points @ e_ap)),
        neck_min_diameter_mm=float(widths.min()), neck_area_mm2=float(lp.area),
        neck_center=lp.centroid,
    )  # fmt: skip


def measure_proximal(surf: TriSurface, shaft_point=(0.0, 0.0, 0.0), frame=np.eye(3)) -> dict:
    """Head, neck and angles of a (proximal) femur surface whose frame is known: rows of
    ``frame`` are x (medial reference for anteversion), y (anterior), z (shaft axis,
    proximal); the shaft axis passes through ``shaft_point``.  Same definitions as
    :func:`analyse_femur` (for a surface in the femur frame, the defaults apply)."""
    x, y, z = (np.asarray(r, float) for r in frame)
    h = (surf.vertices - np.asarray(shaft_point, float)) @ z
    C, R, rms, npts, n, scan, k = _head_and_neck(surf, np.asarray(shaft_point, float), z, float(np.ptp(h)))
    out = dict(head_center=C, head_radius_mm=R, head_diameter_mm=2 * R, head_fit_rms_mm=rms,
               neck_axis=n, neck_section_s_mm=scan[k][0])
    out.update(_neck_measures(C, n, scan[k][1], np.asarray(shaft_point, float), z, x, y))
    return out


def analyse_femur(surf: TriSurface) -> FemurAnatomy:
    """Landmarks and femur frame of a whole femur surface (mm); see the module docstring."""
    V = surf.vertices
    c = V.mean(axis=0)
    _, _, vt = np.linalg.svd(V - c, full_matrices=False)
    u = vt[0]
    t = (V - c) @ u
    length = float(np.ptp(t))
    # proximal end: the end with the better-covered sphere (the femoral head)
    fits = [_seed_sphere(V, s * u, length) for s in (1.0, -1.0)]
    sign = 1.0 if fits[0][2] >= fits[1][2] else -1.0
    if max(fits[0][2], fits[1][2]) < 0.3:
        raise InputError(f"{surf.name}: no femoral head (sphere) found at either end of the bone")
    u = sign * u
    t = (V - c) @ u
    top = V[int(np.argmax(t))]
    shaft_p, z = _shaft_axis(surf, top, u, length)
    h = (V - shaft_p) @ z
    length = float(np.ptp(h))
    top = V[int(np.argmax(h))]
    C, R, rms, npts, n, scan, k = _head_and_neck(surf, shaft_p, z, length)
    s_narrow, lp = scan[k]
    # frame: medial from the head, anterior from the condyles (they lie posterior)
    foot = shaft_p + ((C - shaft_p) @ z) * z
    medial = _unit((C - foot) - ((C - foot) @ z) * z)
    ant_rh = np.cross(z, medial)
    distal = V[h <= h.min() + CONDYLE_DEPTH_MM]
    dfoot = shaft_p + ((distal.mean(axis=0) - shaft_p) @ z) * z
    off = distal.mean(axis=0) - dfoot  # condyle bulk relative to the shaft axis
    anterior0 = -ant_rh if off @ ant_rh > 0 else ant_rh
    pl, pm = _posterior_condyles(V, z, -anterior0, medial)
    x = _unit((pm - pl) - ((pm - pl) @ z) * z)
    y_rh = np.cross(z, x)
    mirrored = bool(anterior0 @ y_rh < 0)
    y = -y_rh if mirrored else y_rh
    m = _neck_measures(C, n, lp, shaft_p, z, x, y)
    return FemurAnatomy(
        head_center=C, head_radius_mm=R, head_fit_rms_mm=rms, head_fit_points=npts,
        shaft_point=shaft_p, shaft_axis=z, neck_axis=n, neck_center=m["neck_center"],
        neck_base=m["neck_base"], neck_length_mm=m["neck_length_mm"], offset_mm=m["offset_mm"],
        neck_shaft_angle_deg=m["neck_shaft_angle_deg"], anteversion_deg=m["anteversion_deg"],
        neck_width_mm=m["neck_width_mm"], neck_depth_mm=m["neck_depth_mm"],
        neck_min_diameter_mm=m["neck_min_diameter_mm"], neck_area_mm2=m["neck_area_mm2"],
        neck_section_s_mm=float(s_narrow), condylar_axis=x, condyle_points=np.vstack([pl, pm]),
        length_mm=length, proximal_end=top, frame=np.vstack([x, y, z]), mirrored=mirrored,
        sections=[(s, float(lp_.area)) for s, lp_ in scan],
    )  # fmt: skip
