"""Parametric proximal femur (gmsh OCC), meshed with a cortical shell and a trabecular core.

One cohesive thing (hence about 700 lines): the parameters, the OCC construction, the surface
tags and the ROI predicates all derive from the same geometry dict.

Frame (agreed convention): z = shaft axis pointing proximally, x = medial (toward the
head), y = anterior; lengths in mm, angles in degrees.  x, y, z is right-handed, so the
model is a *left* femur seen in a patient frame with x to the patient's right.

Construction (all primitives are simple OCC solids, fused):

* shaft       cylinder of radius R_s from the distal cut (z = 0) to z_a;
* metaphysis  cone frustum from z_a (radius R_s) to its flat top z_t (radius 1.3 R_s);
* neck        elliptic frustum (ruled loft of two ellipses) along the neck axis from its
              intersection with the shaft axis (P0, semi-axes up to 1.1 x those at the head)
              to the head centre; the major axis (superior-inferior width, ``neck_diameter_mm``)
              lies in the plane of the neck and shaft axes, the minor (antero-posterior
              depth) is ``neck_aspect_ratio`` x the width;
* head        sphere of radius R_h centred on the neck axis, ``neck_length_mm`` from P0;
* greater trochanter  ellipsoid, lateral and slightly posterior;
* lesser trochanter   ellipsoid, posteromedial, below the neck.

The trabecular core is the union of the same primitives shrunk by the local cortical
thickness (sphere/cylinder/cone radii minus t, ellipsoid semi-axes minus t), so every
point of the core is at least t from the outer surface; the core is fragmented against
the outer solid so both volumes share a conformal interface.  In the shaft the "core" is
the medullary canal (tagged trabecular; the density model decides its value).

The trochanter sizes and the metaphysis are scaled with the shaft radius (ratios chosen
to look like a typical proximal femur, not fitted to data).

Mesh size: the thin proximal cortex (neck, head, trochanters, 1-1.5 mm) is resolved by a
gmsh size field: elements of ``cortex_mesh_size_mm`` within one cortical thickness of the
proximal core surface, growing linearly to ``mesh_size_mm`` over
``_CORTEX_SIZE_RAMP_MM``; the thick shaft cortex (4 mm) keeps ``mesh_size_mm``.

Robustness: OCC's one-shot multi-solid fuse silently dropped the neck and head for some
parameter sets, so the parts are fused one at a time and every step is checked (one
solid, no volume lost, probe points inside); another order is tried when a step fails.
The head sphere's pole axis is the neck axis.  If gmsh fails to mesh, the ellipsoids are
rebuilt with another parametrisation (same shape) and meshing is retried.

Facet regions are classified on the gmsh surface mesh (all three vertices on the head
sphere / distal plane / trochanter ellipsoid, then the patch criteria) and stored as
discrete gmsh surfaces with physical groups, so ``.msh`` exports carry them too.
"head_surface" (14) is the head *outside* the load patch (a facet carries one tag); the
whole head is ``ds((11, 14))``.
"""

from __future__ import annotations

import functools
import time
from dataclasses import asdict, dataclass

import numpy as np

from femur.core.mpi import MPI
from femur.core.errors import InputError, MeshError
from femur.geometry._gmsh_util import gmsh_model, log_build, mesh_on_rank0
from femur.geometry.bone import Bone

CELL_IDS = {"cortical": 1, "trabecular": 2}
FACET_IDS = {"head_load": 11, "distal": 12, "trochanter": 13, "head_surface": 14}

# Shape ratios relative to the shaft radius R_s (typical proportions; no single source).
_META_TOP_RATIO = 1.3  # metaphysis top radius / R_s
_META_BELOW_P0 = 3.2  # metaphysis starts 3.2 R_s below P0
_META_ABOVE_P0 = 0.4  # flat top of the metaphysis 0.4 R_s above P0
_NECK_FLARE = 1.1  # neck base radius / neck radius at the head
_GT_CENTRE = (-0.7, -0.3, 0.35)  # greater trochanter centre (x, y, z - z_P0) / R_s
_GT_SEMI = (0.85, 1.1, 1.85)  # greater trochanter semi-axes / R_s
_LT_RADIAL = 0.85  # lesser trochanter centre distance from the shaft axis / R_s
_LT_AZIMUTH_DEG = -30.0  # posteromedial: 30 deg from medial toward posterior
_LT_BELOW_P0 = 1.6  # lesser trochanter centre 1.6 R_s below P0
_LT_SEMI = (0.55, 0.55, 0.85)  # lesser trochanter semi-axes / R_s
_CORTEX_SIZE_RAMP_MM = 3.0  # distance over which the cortex mesh size grows to mesh_size_mm


@dataclass
class ProximalFemur:
    """Parameters of the parametric proximal femur (mm, degrees).

    Defaults describe a typical elderly woman's femur (typical anthropometric values:
    femoral head diameter ~44 mm, neck-shaft angle ~127 deg, anteversion ~12 deg,
    mid-shaft diameter ~28 mm, femoral offset ~38 mm; femoral neck elliptic, typical
    women's superior-inferior width ~30-33 mm and antero-posterior depth ~24-27 mm, i.e.
    an AP/SI ratio ~0.8).  Cortical thicknesses are *effective* (mean) values: the real
    neck cortex is thin superiorly (~0.5 mm) and thicker inferiorly (~2-3 mm), mean
    ~1-1.5 mm in elderly women (typical values); the head shell ~1 mm, the trochanteric
    and intertrochanteric shells ~1-1.5 mm; the proximal diaphysis ~4 mm.  With these and
    realistic compartment densities (cortex BV/TV ~0.89, cancellous ~0.10) the
    DXA-equivalent femoral-neck T-score is -2.5 (``femur.workflows.t_score.bone_with_t_score``
    from young-adult densities; total hip T ~-0.7).

    ``neck_length_mm`` is measured along the neck axis from its intersection with the
    shaft axis to the head centre.  ``neck_diameter_mm`` is the neck's superior-inferior
    width at the head (the neck flares toward its base); its antero-posterior depth is
    ``neck_aspect_ratio`` x that width.  ``length_mm`` runs along the shaft axis from the
    distal cut to the top of the head.  ``neck_shaft_angle_deg`` is the true 3-D angle
    between the neck axis (toward the head) and the shaft axis (distally); anteversion is
    the angle of the neck axis in the transverse plane, from medial toward anterior.
    """

    head_radius_mm: float = 22.0
    neck_length_mm: float = 48.0
    neck_diameter_mm: float = 30.0
    neck_aspect_ratio: float = 0.82  # AP depth / SI width of the neck cross-section
    neck_shaft_angle_deg: float = 127.0
    anteversion_deg: float = 12.0
    shaft_diameter_mm: float = 28.0
    length_mm: float = 170.0
    cortical_thickness_shaft_mm: float = 4.0
    cortical_thickness_neck_mm: float = 1.2
    cortical_thickness_head_mm: float = 1.0
    cortical_thickness_trochanter_mm: float = 1.5
    mesh_size_mm: float = 3.0
    # element size in the thin proximal cortex (None: 0.8 x mesh_size_mm, at most
    # mesh_size_mm); see the module docstring
    cortex_mesh_size_mm: float | None = None
    # Stance load direction for the head load patch: the joint force acts at 8 deg to the
    # shaft axis in the frontal plane (Cristofolini, J Biomech 2007; biomechanics.md
    # "Load cases"), so the patch is centred on the superomedial head.
    stance_angle_deg: float = 8.0
    head_patch_half_angle_deg: float = 30.0
    trochanter_patch_radius_mm: float = 15.0
    neck_roi_width_mm: float = 10.0
    name: str = "femur"

    # --------------------------------------------------------------- validation
    def validate(self) -> None:
        def positive(name):
            v = getattr(self, name)
            if not np.isfinite(v) or v <= 0:
                raise InputError(f"ProximalFemur.{name} must be a positive number of mm, got {v!r}")

        for name in (
            "head_radius_mm",
            "neck_length_mm",
            "neck_diameter_mm",
            "shaft_diameter_mm",
            "length_mm",
            "cortical_thickness_shaft_mm",
            "cortical_thickness_neck_mm",
            "cortical_thickness_head_mm",
            "cortical_thickness_trochanter_mm",
            "mesh_size_mm",
            "trochanter_patch_radius_mm",
            "neck_roi_width_mm",
        ):
            positive(name)

        def in_range(name, lo, hi):
            v = getattr(self, name)
            if not np.isfinite(v) or not lo <= v <= hi:
                raise InputError(
                    f"ProximalFemur.{name} must lie in [{lo}, {hi}] degrees, got {v!r}"
                )

        in_range("neck_shaft_angle_deg", 100.0, 160.0)
        in_range("anteversion_deg", -30.0, 45.0)
        in_range("stance_angle_deg", -45.0, 45.0)
        in_range("head_patch_half_angle_deg", 5.0, 90.0)
        v = self.neck_aspect_ratio
        if not np.isfinite(v) or not 0.5 <= v <= 1.0:
            raise InputError(f"ProximalFemur.neck_aspect_ratio must lie in [0.5, 1], got {v!r}")
        if self.cortex_mesh_size_mm is not None:
            v = self.cortex_mesh_size_mm
            if not np.isfinite(v) or not 0.3 <= v <= self.mesh_size_mm:
                raise InputError(
                    f"ProximalFemur.cortex_mesh_size_mm must lie in [0.3, mesh_size_mm = "
                    f"{self.mesh_size_mm}] mm, got {v!r}"
                )

        R_h, r_n, R_s = self.head_radius_mm, self.neck_diameter_mm / 2, self.shaft_diameter_mm / 2
        if r_n >= 0.9 * R_h:
            raise InputError(
                f"ProximalFemur.neck_diameter_mm ({self.neck_diameter_mm}) must be less than "
                f"0.9 x the head diameter ({2 * R_h} mm)"
            )
        if r_n >= 1.25 * R_s:
            raise InputError(
                f"ProximalFemur.neck_diameter_mm ({self.neck_diameter_mm}) must be less than "
                f"1.25 x shaft_diameter_mm ({self.shaft_diameter_mm})"
            )
        if not 0.5 * R_s <= R_h <= 3.0 * R_s:
            raise InputError(
                f"ProximalFemur.head_radius_mm ({R_h}) must lie between 0.5 and 3 shaft radii "
                f"({0.5 * R_s} to {3 * R_s} mm)"
            )
        if self.neck_length_mm < R_h:
            raise InputError(
                f"ProximalFemur.neck_length_mm ({self.neck_length_mm}) must be at least the head "
                f"radius ({R_h} mm): the head would swallow the neck"
            )
        for name, radius in (
            ("cortical_thickness_shaft_mm", R_s),
            ("cortical_thickness_neck_mm", self.neck_aspect_ratio * r_n),
            ("cortical_thickness_head_mm", R_h),
            ("cortical_thickness_trochanter_mm", 0.55 * R_s),
        ):
            if getattr(self, name) >= 0.5 * radius:
                raise InputError(
                    f"ProximalFemur.{name} ({getattr(self, name)}) must be less than half the "
                    f"radius it thins ({0.5 * radius:.3g} mm)"
                )
        g = self._geometry(check=False)
        if g["z_a"] < 1.5 * R_s:
            raise InputError(
                f"ProximalFemur.length_mm ({self.length_mm}) is too short: the shaft below the "
                f"trochanters would be {g['z_a']:.1f} mm, need at least {1.5 * R_s:.1f} mm "
                f"(1.5 shaft radii); use length_mm >= {self.length_mm - g['z_a'] + 1.5 * R_s:.0f}"
            )
        if self.mesh_size_mm > 0.5 * R_s:
            raise InputError(
                f"ProximalFemur.mesh_size_mm ({self.mesh_size_mm}) must not exceed half the shaft "
                f"radius ({0.5 * R_s} mm)"
            )
        if self.mesh_size_mm < 0.3:
            raise InputError(
                f"ProximalFemur.mesh_size_mm ({self.mesh_size_mm}) below 0.3 mm would give a huge mesh"
            )

    # --------------------------------------------------------------- geometry
    def _geometry(self, check: bool = True) -> dict:
        """All derived points, axes and primitive sizes (mm)."""
        if check:
            self.validate()
        R_h = float(self.head_radius_mm)
        r_n = 0.5 * float(self.neck_diameter_mm)
        R_s = 0.5 * float(self.shaft_diameter_mm)
        d = float(self.neck_length_mm)
        beta = np.radians(180.0 - self.neck_shaft_angle_deg)
        theta = np.radians(self.anteversion_deg)
        n = np.array([np.sin(beta) * np.cos(theta), np.sin(beta) * np.sin(theta), np.cos(beta)])
        z_h = float(self.length_mm) - R_h
        z_p = z_h - d * np.cos(beta)
        P0 = np.array([0.0, 0.0, z_p])
        C = P0 + d * n
        R_m = _META_TOP_RATIO * R_s
        z_a = z_p - _META_BELOW_P0 * R_s
        z_t = z_p + _META_ABOVE_P0 * R_s

        def meta_radius(z):
            return R_s + (R_m - R_s) * (z - z_a) / (z_t - z_a)

        r_b = min(_NECK_FLARE * r_n, 0.95 * meta_radius(z_p))
        asp = float(self.neck_aspect_ratio)
        # neck cross-section axes: e_si (major, superior-inferior: the shaft axis made
        # perpendicular to n), e_ap = n x e_si (minor, antero-posterior)
        zax = np.array([0.0, 0.0, 1.0])
        e_si = zax - (zax @ n) * n
        e_si /= np.linalg.norm(e_si)
        e_ap = np.cross(n, e_si)
        G = np.array([_GT_CENTRE[0] * R_s, _GT_CENTRE[1] * R_s, z_p + _GT_CENTRE[2] * R_s])
        gt_semi = np.array(_GT_SEMI) * R_s
        phi = np.radians(_LT_AZIMUTH_DEG)
        L = np.array(
            [_LT_RADIAL * R_s * np.cos(phi), _LT_RADIAL * R_s * np.sin(phi), z_p - _LT_BELOW_P0 * R_s]
        )
        lt_semi = np.array(_LT_SEMI) * R_s
        gamma = np.radians(self.stance_angle_deg)
        stance_dir = np.array([np.sin(gamma), 0.0, np.cos(gamma)])  # from head centre to patch
        troch_point = G - np.array([gt_semi[0], 0.0, 0.0])
        # neck ROI: a slab ending 2 mm below the head-neck junction
        s_junction = d - np.sqrt(R_h**2 - r_n**2)
        s1 = s_junction - 2.0
        s0 = s1 - float(self.neck_roi_width_mm)
        return dict(
            R_h=R_h, r_n=r_n, r_b=r_b, asp=asp, e_si=e_si, e_ap=e_ap, R_s=R_s, R_m=R_m, d=d, n=n, C=C, P0=P0, z_p=z_p,
            z_a=z_a, z_t=z_t, G=G, gt_semi=gt_semi, L=L, lt_semi=lt_semi,
            stance_dir=stance_dir, troch_point=troch_point, s0=s0, s1=s1,
            meta_radius_top=R_m,
        )  # fmt: skip

    # ------------------------------------------------------------------ build
    def _mesh_options(self) -> dict[str, float]:
        h = float(self.mesh_size_mm)
        return {
            "Mesh.MeshSizeMax": h,
            "Mesh.MeshSizeMin": 0.2 * h,
            "Mesh.MeshSizeFromCurvature": 0,
            "Mesh.MeshSizeExtendFromBoundary": 1,
            "Mesh.Algorithm": 6,  # Frontal-Delaunay surfaces
            "Mesh.Algorithm3D": 1,  # Delaunay volumes
            "Mesh.Optimize": 1,
            "Mesh.OptimizeNetgen": 0,
        }

    def build(self, comm=MPI.COMM_WORLD) -> Bone:
        """Mesh the femur on rank 0 of ``comm`` and distribute it; returns a `Bone`."""
        self.validate()
        g = self._geometry()
        t0 = time.perf_counter()
        options = self._mesh_options()
        data, info = mesh_on_rank0(
            comm, functools.partial(_build_gmsh, params=self, g=g), "proximal-femur", options
        )
        bone = Bone.from_mesh_data(
            data, name=self.name, kind="femur", cell_ids=dict(CELL_IDS), facet_ids=dict(FACET_IDS),
            rois=femur_rois(g, self), landmarks=femur_landmarks(g),
            parameters={"model": "ProximalFemur", **asdict(self)}, source="parametric:ProximalFemur")
        log_build(comm, "ProximalFemur", data.mesh, time.perf_counter() - t0)
        return bone

    def rois(self) -> dict:
        """The ROI predicates of this femur (e.g. to attach to a mesh read from a file)."""
        return femur_rois(self._geometry(), self)

    def landmarks(self) -> dict:
        """The landmarks of this femur (mm, unit vectors)."""
        return femur_landmarks(self._geometry())

    def cad_volumes(self) -> dict[str, float]:
        """Exact volumes (mm3) of the CAD solids (OCC), before meshing: total, cortical,
        trabecular.  The mesh volumes converge to these as ``mesh_size_mm`` shrinks."""
        self.validate()
        g = self._geometry()
        with gmsh_model("proximal-femur-cad") as model:
            cort, trab = _build_geometry(model, self, g)
            vc = sum(model.occ.getMass(3, t) for t in cort)
            vt = sum(model.occ.getMass(3, t) for t in trab)
        return {"total": vc + vt, "cortical": vc, "trabecular": vt}

    def write_msh(self, path) -> None:
        """Write the tagged mesh to a gmsh .msh file (serial, no MPI needed)."""
        self.validate()
        g = self._geometry()
        options = self._mesh_options()
        options.update({"Mesh.MshFileVersion": 4.1, "Mesh.Binary": 0})
        import gmsh  # heavy optional import: only when writing a .msh

        with gmsh_model("proximal-femur", options) as model:
            _build_gmsh(model, params=self, g=g)
            gmsh.write(str(path))


# ---------------------------------------------------------------------------- gmsh
# Orientations of the unit sphere an ellipsoid is made from (pole axis z, y or x).  The
# ellipsoid is the same; only its parametrisation (seam, poles) moves.  gmsh sometimes
# fails on a seam cut by an intersection curve, so the build retries the next one.
# Each entry: (axis permutation applied to the semi-axes before dilation, rotation axis).
_SPHERE_TURNS = (((0, 1, 2), None), ((0, 2, 1), (1, 0, 0)), ((2, 1, 0), (0, 1, 0)))


def _add_ellipsoid(occ, centre, semi, orient: int = 0):
    perm, axis = _SPHERE_TURNS[orient]
    s = [float(semi[i]) for i in perm]
    tag = occ.addSphere(0.0, 0.0, 0.0, 1.0)
    occ.dilate([(3, tag)], 0.0, 0.0, 0.0, s[0], s[1], s[2])
    if axis is not None:  # +90 deg about x maps (y, z) -> (-z, y); about y maps (x, z) -> (z, -x)
        occ.rotate([(3, tag)], 0.0, 0.0, 0.0, *map(float, axis), np.pi / 2)
    occ.translate([(3, tag)], *map(float, centre))
    return tag


def _add_head(occ, centre, axis, radius):
    """Sphere whose pole axis is the neck axis: the neck cone meets it on a parallel
    (a coaxial intersection, which OCC's booleans handle reliably)."""
    tag = occ.addSphere(0.0, 0.0, 0.0, float(radius))
    rot = np.cross([0.0, 0.0, 1.0], axis)
    angle = float(np.arccos(np.clip(axis[2], -1.0, 1.0)))
    if np.linalg.norm(rot) > 1e-12:
        occ.rotate([(3, tag)], 0.0, 0.0, 0.0, *map(float, rot / np.linalg.norm(rot)), angle)
    occ.translate([(3, tag)], *map(float, centre))
    return tag


def _add_frustum(occ, base, axis_vec, r0, r1):
    return occ.addCone(*map(float, base), *map(float, axis_vec), float(r0), float(r1))


def _add_elliptic_frustum(occ, base, axis_vec, e_major, semi0, semi1):
    """Ruled loft between two ellipses (semi-axes ``semi0`` at ``base``, ``semi1`` at
    ``base + axis_vec``; major axis along ``e_major``, perpendicular to the axis)."""
    length = float(np.linalg.norm(axis_vec))
    z = np.asarray(axis_vec, float) / length
    wires = []
    for centre, (a, b) in ((np.asarray(base, float), semi0),
                           (np.asarray(base, float) + axis_vec, semi1)):
        if b > a:  # gmsh wants the major radius first
            raise MeshError("ProximalFemur: neck ellipse minor axis exceeds its major axis")
        ell = occ.addEllipse(*map(float, centre), float(a), float(b),
                             zAxis=list(map(float, z)), xAxis=list(map(float, e_major)))
        wires.append(occ.addWire([ell], checkClosed=True))
    out = occ.addThruSections(wires, makeSolid=True, makeRuled=True)
    vols = [t for d, t in out if d == 3]
    if len(vols) != 1:
        raise MeshError("ProximalFemur: the elliptic neck loft did not give one solid")
    return vols[0]


def _primitives(occ, g, t_shaft, t_neck, t_head, t_troch, orient=0):
    """Add the femur primitives shrunk by the given thicknesses; returns volume tags."""
    R_s, z_a, z_t = g["R_s"], g["z_a"], g["z_t"]
    tags = []
    tags.append(occ.addCylinder(0, 0, 0, 0, 0, z_a, R_s - t_shaft))
    top = z_t - t_troch
    r_top = R_s + (g["R_m"] - R_s) * (top - z_a) / (z_t - z_a) - t_troch
    tags.append(_add_frustum(occ, (0, 0, z_a), (0, 0, top - z_a), R_s - t_shaft, r_top))
    asp = g["asp"]
    tags.append(_add_elliptic_frustum(
        occ, g["P0"], g["d"] * g["n"], g["e_si"],
        (g["r_b"] - t_neck, asp * g["r_b"] - t_neck), (g["r_n"] - t_neck, asp * g["r_n"] - t_neck),
    ))
    tags.append(_add_head(occ, g["C"], g["n"], g["R_h"] - t_head))
    tags.append(_add_ellipsoid(occ, g["G"], g["gt_semi"] - t_troch, orient))
    tags.append(_add_ellipsoid(occ, g["L"], g["lt_semi"] - t_troch, orient))
    return tags


# Orders in which the parts (shaft, metaphysis, neck, head, GT, LT) are fused one by one.
# OCC's booleans occasionally drop a part for some parameter sets; each step is checked
# (one solid, no volume lost) and another order is tried when a step fails.
_FUSE_ORDERS = (
    (0, 1, 2, 3, 4, 5),
    (3, 2, 1, 0, 4, 5),
    (1, 2, 3, 0, 4, 5),
    (2, 3, 1, 0, 4, 5),
    (1, 0, 4, 5, 2, 3),
)


def _probe_points(g) -> list[list[float]]:
    """Points that must lie inside the fused solid (outer and core alike)."""
    pts = [
        g["C"],
        g["P0"] + 0.6 * g["d"] * g["n"],
        g["G"],
        g["L"],
        np.array([0.0, 0.0, 0.5 * g["z_a"]]),
        np.array([0.0, 0.0, 0.5 * (g["z_a"] + g["z_t"])]),
    ]
    return [list(map(float, p)) for p in pts]


def _fused_solid(model, g, thicknesses, orient) -> int:
    """Fuse the primitives into one checked solid; returns its volume tag."""
    occ = model.occ
    for order in _FUSE_ORDERS:
        before = set(occ.getEntities(3))
        tags = _primitives(occ, g, *thicknesses, orient)
        masses = [occ.getMass(3, t) for t in tags]
        cur, ok = tags[order[0]], True
        for k in order[1:]:
            prev = occ.getMass(3, cur)
            out, _ = occ.fuse([(3, cur)], [(3, tags[k])])
            vols = [t for d, t in out if d == 3]
            if len(vols) != 1 or occ.getMass(3, vols[0]) < max(prev, masses[k]) * (1 - 1e-6):
                ok = False
                break
            cur = vols[0]
        if ok:
            occ.synchronize()
            ok = all(model.isInside(3, cur, pt) for pt in _probe_points(g))
        if ok:
            return cur
        left = [dt for dt in occ.getEntities(3) if dt not in before]
        if left:
            occ.remove(left, recursive=True)
        occ.synchronize()
    raise MeshError(
        "ProximalFemur: OCC could not fuse the parts into one solid for these parameters; "
        "try slightly different dimensions"
    )


def _build_geometry(model, params: ProximalFemur, g: dict, orient: int = 0):
    occ = model.occ
    outer = _fused_solid(model, g, (0.0, 0.0, 0.0, 0.0), orient)
    inner = _fused_solid(
        model,
        g,
        (
            params.cortical_thickness_shaft_mm,
            params.cortical_thickness_neck_mm,
            params.cortical_thickness_head_mm,
            params.cortical_thickness_trochanter_mm,
        ),
        orient,
    )
    v_outer, v_inner = occ.getMass(3, outer), occ.getMass(3, inner)
    _, out_map = occ.fragment([(3, outer)], [(3, inner)])
    occ.synchronize()
    trab = sorted({t for d, t in out_map[1] if d == 3})
    cort = sorted({t for d, t in out_map[0] if d == 3} - set(trab))
    if not trab or not cort:
        raise MeshError("ProximalFemur: could not separate the cortical shell from the core")
    vt = sum(occ.getMass(3, t) for t in trab)
    vc = sum(occ.getMass(3, t) for t in cort)
    if abs(vt - v_inner) > 1e-4 * v_inner or abs(vc + vt - v_outer) > 1e-4 * v_outer:
        raise MeshError(
            "ProximalFemur: the core is not inside the outer solid (cortical thicknesses too "
            "large for these dimensions?)"
        )
    return cort, trab


def _clear(model) -> None:
    model.mesh.clear()
    model.removePhysicalGroups()
    model.occ.remove(model.occ.getEntities(), recursive=True)
    model.occ.synchronize()


def _build_gmsh(model, params: ProximalFemur, g: dict) -> dict:
    errors = []
    for orient in range(len(_SPHERE_TURNS)):
        if orient:
            _clear(model)
        try:
            cort, trab = _build_geometry(model, params, g, orient)
            model.addPhysicalGroup(3, cort, CELL_IDS["cortical"], name="cortical")
            model.addPhysicalGroup(3, trab, CELL_IDS["trabecular"], name="trabecular")
            _cortex_size_field(model, params, g, trab)
            model.mesh.generate(3)
        except Exception as exc:  # gmsh meshing failure: retry with another parametrisation
            errors.append(str(exc))
            continue
        _tag_femur_surface(model, g, params)
        return {"attempt": orient}
    raise MeshError(
        f"ProximalFemur: gmsh could not mesh this geometry ({'; '.join(errors)}); "
        f"try another mesh_size_mm (now {params.mesh_size_mm} mm)"
    )


def _cortex_size_field(model, params: ProximalFemur, g: dict, trab) -> None:
    """Background size field: ``cortex_mesh_size_mm`` within one thin-cortex thickness of
    the proximal core surface (above the diaphysis), ramping to ``mesh_size_mm``."""
    h = float(params.mesh_size_mm)
    hc = params.cortex_mesh_size_mm
    hc = 0.8 * h if hc is None else float(hc)
    if hc >= h:
        return
    surfs = model.getBoundary([(3, t) for t in trab], combined=True, oriented=False)
    tol = 1e-6 * params.length_mm
    proximal = []
    for _, sf in surfs:
        zmax = model.getBoundingBox(2, abs(sf))[5]
        if zmax > g["z_a"] + tol:  # not the medullary canal of the shaft or the distal cut
            proximal.append(abs(sf))
    if not proximal:
        return
    t_thin = max(params.cortical_thickness_neck_mm, params.cortical_thickness_head_mm,
                 params.cortical_thickness_trochanter_mm)
    f = model.mesh.field
    dist = f.add("Distance")
    f.setNumbers(dist, "SurfacesList", sorted(set(proximal)))
    f.setNumber(dist, "Sampling", 100)
    thr = f.add("Threshold")
    f.setNumber(thr, "InField", dist)
    f.setNumber(thr, "SizeMin", hc)
    f.setNumber(thr, "SizeMax", h)
    f.setNumber(thr, "DistMin", t_thin)
    f.setNumber(thr, "DistMax", t_thin + _CORTEX_SIZE_RAMP_MM)
    f.setAsBackgroundMesh(thr)


def _boundary_triangles(model):
    """Triangles (node tags, (m, 3)) on the outer boundary of all volumes, and node coords."""
    vols = model.getEntities(3)
    surfs = model.getBoundary(vols, combined=True, oriented=False, recursive=False)
    tris = []
    for _, s in surfs:
        etypes, _, ntags = model.mesh.getElements(2, abs(s))
        for et, nt in zip(etypes, ntags):
            if et == 2:
                tris.append(np.asarray(nt, dtype=np.int64).reshape(-1, 3))
    tris = np.concatenate(tris) if tris else np.zeros((0, 3), dtype=np.int64)
    node_tags, coords, _ = model.mesh.getNodes()
    coords = np.asarray(coords).reshape(-1, 3)
    lookup = np.zeros(int(np.max(node_tags)) + 1, dtype=np.int64)
    lookup[np.asarray(node_tags, dtype=np.int64)] = np.arange(len(node_tags))
    return tris, coords, lookup


def _add_facet_group(model, tris: np.ndarray, tag: int, name: str) -> None:
    if len(tris) == 0:
        raise InputError(f"ProximalFemur: facet region '{name}' came out empty; check the parameters")
    ent = model.addDiscreteEntity(2)
    model.mesh.addElementsByType(ent, 2, [], tris.ravel().tolist())
    model.addPhysicalGroup(2, [ent], tag, name=name)


def _tag_femur_surface(model, g: dict, p: ProximalFemur) -> None:
    tris, coords, lookup = _boundary_triangles(model)
    X = coords[lookup[tris]]  # (m, 3 vertices, 3)
    tol = 1e-3 * p.length_mm
    # distal cut: all vertices on z = 0
    distal = np.all(np.abs(X[..., 2]) < tol, axis=1)
    # head sphere: all vertices on the sphere
    rc = np.linalg.norm(X - g["C"], axis=2)
    head = np.all(np.abs(rc - g["R_h"]) < tol, axis=1)
    cen = X.mean(axis=1)
    dirs = (cen - g["C"]) / np.linalg.norm(cen - g["C"], axis=1)[:, None]
    in_patch = dirs @ g["stance_dir"] >= np.cos(np.radians(p.head_patch_half_angle_deg))
    head_load = head & in_patch
    head_rest = head & ~in_patch
    # greater trochanter: vertices on the ellipsoid, centroid near the most lateral point
    f = np.sum(((X - g["G"]) / g["gt_semi"]) ** 2, axis=2)
    on_gt = np.all(np.abs(f - 1.0) < 2e-3, axis=1)
    near = np.linalg.norm(cen - g["troch_point"], axis=1) <= p.trochanter_patch_radius_mm
    troch = on_gt & near
    _add_facet_group(model, tris[head_load], FACET_IDS["head_load"], "head_load")
    _add_facet_group(model, tris[distal], FACET_IDS["distal"], "distal")
    _add_facet_group(model, tris[troch], FACET_IDS["trochanter"], "trochanter")
    _add_facet_group(model, tris[head_rest], FACET_IDS["head_surface"], "head_surface")


# ---------------------------------------------------------------------------- ROIs
def _roi_head(x, C, n, R, s_junction):
    rel = x.T - C
    return (np.linalg.norm(rel, axis=1) <= R + 1e-9) & (rel @ n >= -s_junction)


def _neck_coords(x, P0, n, e_si, e_ap, asp, r_b, r_n, d):
    """Distance along the neck axis from P0 and the normalised elliptic radius (1 on the
    neck surface) of points x (3, m)."""
    rel = x.T - P0
    s = rel @ n
    A = r_b + (r_n - r_b) * np.clip(s, 0.0, d) / d
    rho = np.hypot((rel @ e_si) / A, (rel @ e_ap) / (asp * A))
    return s, rho


def _roi_neck(x, P0, n, e_si, e_ap, asp, s0, s1, r_b, r_n, d):
    s, rho = _neck_coords(x, P0, n, e_si, e_ap, asp, r_b, r_n, d)
    return (s >= s0) & (s <= s1) & (rho <= 1.0 + 1e-9)


def _roi_shaft(x, z_a):
    return x[2] <= z_a


def _roi_ellipsoid(x, centre, semi):
    return np.sum(((x.T - centre) / semi) ** 2, axis=1) <= 1.0


def _roi_gt(x, G, semi, P0, n, e_si, e_ap, asp, r_b, r_n, d):
    inside = _roi_ellipsoid(x, G, semi)
    s, rho = _neck_coords(x, P0, n, e_si, e_ap, asp, r_b, r_n, d)
    in_neck = (s >= 0) & (rho <= 1.0)
    return inside & ~in_neck & (x[0] < 0.0)


def _roi_intertroch(x, z_lo, z_hi, z_a, R_s, R_m, z_t, G, gt_semi):
    r = np.hypot(x[0], x[1])
    R = R_s + (R_m - R_s) * (x[2] - z_a) / (z_t - z_a)
    return (x[2] >= z_lo) & (x[2] <= z_hi) & (r <= R + 1e-9) & ~_roi_ellipsoid(x, G, gt_semi)


def femur_rois(g: dict, p: ProximalFemur) -> dict:
    s_junction = np.sqrt(g["R_h"] ** 2 - g["r_n"] ** 2)
    neck_args = dict(P0=g["P0"], n=g["n"], e_si=g["e_si"], e_ap=g["e_ap"], asp=g["asp"],
                     r_b=g["r_b"], r_n=g["r_n"], d=g["d"])
    return {
        "head": functools.partial(_roi_head, C=g["C"], n=g["n"], R=g["R_h"], s_junction=s_junction),
        "neck": functools.partial(_roi_neck, s0=g["s0"], s1=g["s1"], **neck_args),
        "shaft": functools.partial(_roi_shaft, z_a=g["z_a"]),
        "greater_trochanter": functools.partial(
            _roi_gt, G=g["G"], semi=g["gt_semi"], **neck_args
        ),
        "lesser_trochanter": functools.partial(_roi_ellipsoid, centre=g["L"], semi=g["lt_semi"]),
        "intertrochanteric": functools.partial(
            _roi_intertroch,
            z_lo=g["L"][2] - g["lt_semi"][2],
            z_hi=g["z_p"],
            z_a=g["z_a"],
            R_s=g["R_s"],
            R_m=g["R_m"],
            z_t=g["z_t"],
            G=g["G"],
            gt_semi=g["gt_semi"],
        ),
    }


def femur_landmarks(g: dict) -> dict:
    s_c = 0.5 * (g["s0"] + g["s1"])
    return {
        "head_center": g["C"].copy(),
        "head_radius": np.array([g["R_h"]]),
        "shaft_axis": np.array([0.0, 0.0, 1.0]),
        "neck_axis": g["n"].copy(),
        "neck_base": g["P0"].copy(),
        "neck_center": g["P0"] + s_c * g["n"],
        "distal_center": np.zeros(3),
        "trochanter_point": g["troch_point"].copy(),
        "head_load_direction": -g["stance_dir"],
        "lateral": np.array([-1.0, 0.0, 0.0]),
        "medial": np.array([1.0, 0.0, 0.0]),
        "anterior": np.array([0.0, 1.0, 0.0]),
    }
