"""Parametric bones: volumes vs exact/analytic values, tags, ROIs, landmarks, validation.

Runs on 1 and 2 ranks; every count/volume is a global reduction over owned entities.
"""

from __future__ import annotations

import numpy as np
import pytest

import femur  # noqa: F401
from mpi4py import MPI

import dolfinx  # noqa: E402
import ufl  # noqa: E402

from femur.core.errors import InputError
from femur.geometry.femur_model import CELL_IDS, FACET_IDS, ProximalFemur
from femur.geometry.vertebra import Vertebra, waisted_ellipse_volume


# ----------------------------------------------------------------------------- helpers
def owned_volume(bone, mask=None) -> float:
    v = bone.cell_volumes()[: bone.num_owned_cells]
    if mask is not None:
        v = v[mask[: bone.num_owned_cells]]
    return bone.comm.allreduce(float(v.sum()), op=MPI.SUM)


def owned_count(bone, mask) -> int:
    return bone.comm.allreduce(int(np.sum(mask[: bone.num_owned_cells])), op=MPI.SUM)


def facet_count(bone, name) -> int:
    n = bone.mesh.topology.index_map(2).size_local
    ft = bone.facet_tags
    return bone.comm.allreduce(
        int(np.sum((ft.values == bone.facet_ids[name]) & (ft.indices < n))), op=MPI.SUM
    )


def facet_area(bone, name, interior=False) -> float:
    kind = "dS" if interior else "ds"
    measure = ufl.Measure(kind, domain=bone.mesh, subdomain_data=bone.facet_tags)
    one = dolfinx.fem.Constant(bone.mesh, 1.0)
    expr = one("+") if interior else one
    val = dolfinx.fem.assemble_scalar(dolfinx.fem.form(expr * measure(bone.facet_ids[name])))
    return bone.comm.allreduce(float(val), op=MPI.SUM)


def tagged_facet_points(bone, name) -> np.ndarray:
    """Vertex coordinates (k, 3 vertices, 3) of local facets with tag ``name``."""
    ft = bone.facet_tags
    idx = ft.indices[ft.values == bone.facet_ids[name]]
    if len(idx) == 0:
        return np.zeros((0, 3, 3))
    geo = dolfinx.mesh.entities_to_geometry(bone.mesh, 2, idx)
    return bone.mesh.geometry.x[geo]


@pytest.fixture(scope="module")
def femur_bone():
    return ProximalFemur().build(MPI.COMM_WORLD)


@pytest.fixture(scope="module")
def vertebra_bone():
    return Vertebra().build(MPI.COMM_WORLD)


@pytest.fixture(scope="module")
def vertebra_layers():
    return Vertebra(layers="pmma", mesh_size_mm=3.0).build(MPI.COMM_WORLD)


# ------------------------------------------------------------------------------- femur
def test_femur_default_size_and_volumes(femur_bone, check):
    b = femur_bone
    dofs = 3 * b.mesh.topology.index_map(0).size_global
    check(15_000 <= dofs <= 40_000, f"default femur P1 DOFs {dofs} outside 15k-40k")
    cad = ProximalFemur().cad_volumes()
    total = owned_volume(b)
    cort = owned_volume(b, b.compartment_mask("cortical"))
    trab = owned_volume(b, b.compartment_mask("trabecular"))
    # exact OCC volumes vs the polyhedral mesh (inscribed: slightly smaller)
    check(abs(total / cad["total"] - 1) < 0.02, f"mesh volume {total} vs CAD {cad['total']}")
    check(abs(cort / cad["cortical"] - 1) < 0.03, f"cortical {cort} vs CAD {cad['cortical']}")
    check(abs(trab / cad["trabecular"] - 1) < 0.03, f"trabecular {trab} vs CAD {cad['trabecular']}")
    check(abs(cort + trab - total) < 1e-8 * total, "compartments do not partition the mesh")
    check(0.15 < cort / total < 0.5, f"cortical fraction {cort / total:.3f} implausible")
    # rough analytic bound: the fused solid is at least shaft + head, at most their sum + trochanters
    p = ProximalFemur()
    R_s, R_h = p.shaft_diameter_mm / 2, p.head_radius_mm
    lower = np.pi * R_s**2 * 80 + 4 / 3 * np.pi * R_h**3 * 0.8
    check(lower < total < 3 * lower, f"total volume {total} implausible (lower estimate {lower})")


def test_femur_shaft_cortex_analytic(femur_bone, check):
    """Below the metaphysis the bone is a tube: cortical fraction (R^2 - (R-t)^2) / R^2."""
    b, p = femur_bone, ProximalFemur()
    g = p._geometry()
    R, t = p.shaft_diameter_mm / 2, p.cortical_thickness_shaft_mm
    mid = b.cell_midpoints()
    slab = (mid[:, 2] > 5.0) & (mid[:, 2] < g["z_a"] - 5.0)
    vol = owned_volume(b, slab)
    cort = owned_volume(b, slab & b.compartment_mask("cortical"))
    length = g["z_a"] - 10.0
    check(abs(vol / (np.pi * R**2 * length) - 1) < 0.03, f"shaft slab volume {vol}")
    expected = (R**2 - (R - t) ** 2) / R**2
    check(abs(cort / vol - expected) < 0.03, f"shaft cortical fraction {cort / vol} vs {expected}")


def test_femur_tags_present_on_all_rank_counts(femur_bone, check):
    b = femur_bone
    check(b.kind == "femur" and b.cell_ids == CELL_IDS and b.facet_ids == FACET_IDS, "ids")
    for name in CELL_IDS:
        check(owned_count(b, b.compartment_mask(name)) > 100, f"compartment {name} empty")
    for name in FACET_IDS:
        check(facet_count(b, name) > 20, f"facet region {name} has {facet_count(b, name)} facets")
    for name in ("neck", "head", "shaft", "greater_trochanter", "lesser_trochanter", "intertrochanteric"):
        check(owned_count(b, b.roi_mask(name)) > 20, f"ROI {name} empty")


def test_femur_facet_geometry(femur_bone, check):
    b, p = femur_bone, ProximalFemur()
    C = b.landmarks["head_center"]
    R = float(b.landmarks["head_radius"][0])
    R_s = p.shaft_diameter_mm / 2
    # distal cut: a disc of radius R_s at z = 0 (inscribed polygon: area slightly below)
    X = tagged_facet_points(b, "distal")
    check(np.all(np.abs(X[..., 2]) < 1e-8), "distal facets not on z = 0")
    a = facet_area(b, "distal")
    check(0.97 < a / (np.pi * R_s**2) <= 1.0 + 1e-9, f"distal area {a} vs {np.pi * R_s**2}")
    # head facets lie on the sphere; the load patch is a cap around the stance direction
    for name in ("head_load", "head_surface"):
        X = tagged_facet_points(b, name)
        r = np.linalg.norm(X - C, axis=2)
        check(np.all(np.abs(r - R) < 1e-3 * R), f"{name} vertices off the head sphere")
    X = tagged_facet_points(b, "head_load")
    u = -b.landmarks["head_load_direction"]
    cen = X.mean(axis=1) - C
    cosang = cen @ u / np.linalg.norm(cen, axis=1)
    check(np.all(cosang >= np.cos(np.radians(p.head_patch_half_angle_deg)) - 1e-12), "patch")
    cap = 2 * np.pi * R**2 * (1 - np.cos(np.radians(p.head_patch_half_angle_deg)))
    a = facet_area(b, "head_load")
    check(abs(a / cap - 1) < 0.1, f"head_load area {a} vs cap {cap}")
    check(u[0] > 0 and u[2] > 0.95, "stance patch should face superomedially")
    # trochanter patch: near the most lateral point, lateral side of the bone
    X = tagged_facet_points(b, "trochanter")
    d = np.linalg.norm(X.mean(axis=1) - b.landmarks["trochanter_point"], axis=1)
    check(np.all(d <= p.trochanter_patch_radius_mm + 1e-9), "trochanter patch too large")
    check(np.all(X[..., 0] < 0), "trochanter patch not lateral (x < 0)")
    # trochanter point is the most lateral point of the bone
    xmin = b.comm.allreduce(float(b.mesh.geometry.x[:, 0].min()), op=MPI.MIN)
    check(abs(xmin - b.landmarks["trochanter_point"][0]) < 0.05 * R_s, f"lateral extent {xmin}")


@pytest.mark.serial  # nothing rank-specific; rank invariance has its own tests (CI time)
@pytest.mark.parametrize("angle, antev", [(127.0, 12.0), (135.0, 20.0)])
def test_femur_landmarks_match_parameters(angle, antev, check):
    p = ProximalFemur(neck_shaft_angle_deg=angle, anteversion_deg=antev, mesh_size_mm=5.0)
    b = p.build(MPI.COMM_WORLD)
    lm = b.landmarks
    n, z = lm["neck_axis"], lm["shaft_axis"]
    check(abs(np.linalg.norm(n) - 1) < 1e-12 and abs(np.linalg.norm(z) - 1) < 1e-12, "unit axes")
    nsa = np.degrees(np.arccos(np.clip(-n @ z, -1, 1)))
    check(abs(nsa - angle) < 1e-9, f"neck-shaft angle {nsa} vs {angle}")
    ant = np.degrees(np.arctan2(n @ lm["anterior"], n @ -lm["lateral"]))
    check(abs(ant - antev) < 1e-9, f"anteversion {ant} vs {antev}")
    C, R = lm["head_center"], lm["head_radius"][0]
    check(abs(C[2] + R - p.length_mm) < 1e-9, "top of head is not at length_mm")
    check(abs(np.linalg.norm(C - lm["neck_base"]) - p.neck_length_mm) < 1e-9, "neck length")
    zmax = b.comm.allreduce(float(b.mesh.geometry.x[:, 2].max()), op=MPI.MAX)
    check(abs(zmax - p.length_mm) < 0.01 * p.length_mm, f"bone top {zmax} vs {p.length_mm}")
    # the neck ROI centre is on the neck axis, between the neck base and the head
    s = (lm["neck_center"] - lm["neck_base"]) @ n
    check(0 < s < p.neck_length_mm - np.sqrt(R**2 - (p.neck_diameter_mm / 2) ** 2), "neck centre")
    check(np.allclose(lm["distal_center"], 0.0), "distal centre")


def test_femur_roi_volumes(femur_bone, check):
    b, p = femur_bone, ProximalFemur()
    g = p._geometry()
    R, r_n = p.head_radius_mm, p.neck_diameter_mm / 2
    # head ROI: sphere minus the cap cut off by the head-neck junction plane
    h = R - np.sqrt(R**2 - r_n**2)
    head = 4 / 3 * np.pi * R**3 - np.pi * h**2 * (3 * R - h) / 3
    v = owned_volume(b, b.roi_mask("head"))
    check(abs(v / head - 1) < 0.04, f"head ROI {v} vs {head}")
    # neck ROI: a slab of the elliptic neck frustum (semi-axes r(s) and asp * r(s))
    s0, s1 = g["s0"], g["s1"]

    def r(s):
        return g["r_b"] + (g["r_n"] - g["r_b"]) * s / g["d"]

    slab = g["asp"] * np.pi * (s1 - s0) * (r(s0) ** 2 + r(s0) * r(s1) + r(s1) ** 2) / 3
    v = owned_volume(b, b.roi_mask("neck"))
    check(abs(v / slab - 1) < 0.06, f"neck ROI {v} vs {slab}")
    # the neck ROI is away from head and trochanters
    for other in ("head", "greater_trochanter", "lesser_trochanter"):
        both = owned_count(b, b.roi_mask("neck") & b.roi_mask(other))
        check(both == 0, f"neck ROI overlaps {other}")


def test_femur_parts_are_all_fused():
    """Regression: for this parameter set OCC's one-shot fuse silently dropped the neck and
    head; the checked, part-by-part fuse keeps every part (volume >= disjoint parts)."""
    p = ProximalFemur(
        head_radius_mm=23.489297183975623,
        neck_length_mm=53.64212541569051,
        neck_diameter_mm=30.336469162938556,
        neck_shaft_angle_deg=119.8029234321167,
        anteversion_deg=27.794668446413397,
        shaft_diameter_mm=29.094958815215094,
        length_mm=185.7622219126573,
    )
    g = p._geometry()
    head = 4 / 3 * np.pi * p.head_radius_mm**3
    shaft = np.pi * g["R_s"] ** 2 * g["z_a"]
    cad = p.cad_volumes()
    assert cad["total"] > head + shaft
    assert cad["cortical"] + cad["trabecular"] == pytest.approx(cad["total"], rel=1e-12)


def test_femur_validation():
    cases = [
        (dict(head_radius_mm=-1.0), "head_radius_mm"),
        (dict(neck_diameter_mm=42.0), "neck_diameter_mm"),
        (dict(neck_shaft_angle_deg=170.0), "neck_shaft_angle_deg"),
        (dict(anteversion_deg=60.0), "anteversion_deg"),
        (dict(mesh_size_mm=0.0), "mesh_size_mm"),
        (dict(mesh_size_mm=9.0), "mesh_size_mm"),
        (dict(length_mm=80.0), "length_mm"),
        (dict(cortical_thickness_neck_mm=9.0), "cortical_thickness_neck_mm"),
        (dict(neck_length_mm=10.0), "neck_length_mm"),
        (dict(shaft_diameter_mm=float("nan")), "shaft_diameter_mm"),
    ]
    for kwargs, name in cases:
        with pytest.raises(InputError, match=name):
            ProximalFemur(**kwargs).build(MPI.COMM_WORLD)


# ---------------------------------------------------------------------------- vertebra
def test_waisted_volume_formula():
    # w = 0: elliptic cylinder; numerical quadrature of the profile otherwise
    assert waisted_ellipse_volume(2.0, 3.0, 5.0, 0.0) == pytest.approx(np.pi * 30.0, rel=1e-14)
    z = np.linspace(-1, 1, 200001)
    s = 1 - 0.2 * (1 - z**2)
    quad = np.pi * 20 * 15 * 25 / 2 * np.trapezoid(s**2, z)
    assert waisted_ellipse_volume(20, 15, 25, 0.2) == pytest.approx(quad, rel=1e-9)


def test_vertebra_volumes_vs_analytic(vertebra_bone, check):
    b, p = vertebra_bone, Vertebra()
    an = p.analytic_volumes()
    total = owned_volume(b)
    check(abs(total / an["body"] - 1) < 0.01, f"body {total} vs {an['body']}")
    for name in ("cortical", "trabecular"):
        v = owned_volume(b, b.compartment_mask(name))
        check(abs(v / an[name] - 1) < 0.02, f"{name} {v} vs {an[name]}")
    # the waist makes the body smaller than the elliptic cylinder
    check(total < np.pi * 20 * 15 * 25, "no waist")


def test_vertebra_tags_and_landmarks(vertebra_bone, check):
    b, p = vertebra_bone, Vertebra()
    H = p.height_mm
    area = np.pi * p.semi_axis_lateral_mm * p.semi_axis_ap_mm
    check(b.kind == "vertebra" and set(b.facet_ids) == {"superior", "inferior"}, "facet ids")
    for name, z in (("superior", H), ("inferior", 0.0)):
        check(facet_count(b, name) > 50, f"{name} empty")
        X = tagged_facet_points(b, name)
        check(np.all(np.abs(X[..., 2] - z) < 1e-9), f"{name} facets not at z = {z}")
        a = facet_area(b, name)
        check(0.98 < a / area <= 1 + 1e-9, f"{name} area {a} vs {area}")
    check(np.allclose(b.landmarks["axis"], [0, 0, 1]), "axis")
    check(np.allclose(b.landmarks["superior_center"], [0, 0, H]), "superior centre")
    check(b.landmarks["height"][0] == H, "height")
    # endplates and shell are cortical: every cell touching z = 0 or z = H is cortical
    mid = b.cell_midpoints()
    near_plate = (mid[:, 2] < 0.3) | (mid[:, 2] > H - 0.3)
    check(np.all(b.compartment_mask("cortical")[near_plate]), "endplate cells not cortical")
    # centrum ROI: inside the trabecular core, volume of its elliptic cylinder
    cen = b.roi_mask("centrum")
    check(owned_count(b, cen & b.compartment_mask("cortical")) == 0, "centrum touches the cortex")
    a_i, b_i = p.semi_axis_lateral_mm - p.cortical_thickness_mm, p.semi_axis_ap_mm - p.cortical_thickness_mm
    exp = np.pi * (0.6 * a_i) * (0.6 * b_i) * 0.7 * H
    v = owned_volume(b, cen)
    check(abs(v / exp - 1) < 0.08, f"centrum {v} vs {exp}")


def test_vertebra_layers(vertebra_layers, check):
    b, p = vertebra_layers, Vertebra(layers="pmma", mesh_size_mm=3.0)
    H, T = p.height_mm, p.layer_thickness_mm
    area = np.pi * p.semi_axis_lateral_mm * p.semi_axis_ap_mm
    check(b.cell_ids == {"cortical": 1, "trabecular": 2, "layer_superior": 3, "layer_inferior": 4}, "ids")
    check(
        b.facet_ids == {"superior": 21, "inferior": 22, "endplate_superior": 23, "endplate_inferior": 24},
        "facet ids",
    )
    an = p.analytic_volumes()
    for name in ("layer_superior", "layer_inferior", "cortical", "trabecular"):
        v = owned_volume(b, b.compartment_mask(name))
        check(abs(v / an[name] - 1) < 0.03, f"{name} {v} vs {an[name]}")
    for name, z, interior in (
        ("superior", H + T, False),
        ("inferior", -T, False),
        ("endplate_superior", H, True),
        ("endplate_inferior", 0.0, True),
    ):
        X = tagged_facet_points(b, name)
        check(np.all(np.abs(X[..., 2] - z) < 1e-9), f"{name} not at z = {z}")
        a = facet_area(b, name, interior=interior)
        check(0.97 < a / area <= 1 + 1e-9, f"{name} area {a} vs {area}")
    check(b.landmarks["loaded_height"][0] == H + 2 * T, "loaded height")
    zmin = b.comm.allreduce(float(b.mesh.geometry.x[:, 2].min()), op=MPI.MIN)
    check(abs(zmin + T) < 1e-9, "inferior layer bottom")


def test_vertebra_validation():
    cases = [
        (dict(layers="rubber"), "layers"),
        (dict(height_mm=-25.0), "height_mm"),
        (dict(cortical_thickness_mm=6.0), "cortical_thickness_mm"),
        (dict(waist_fraction=0.6), "waist_fraction"),
        (dict(endplate_thickness_mm=8.0), "endplate_thickness_mm"),
        (dict(mesh_size_mm=20.0), "mesh_size_mm"),
        (dict(centrum_fraction=1.5), "centrum_fraction"),
    ]
    for kwargs, name in cases:
        with pytest.raises(InputError, match=name):
            Vertebra(**kwargs).build(MPI.COMM_WORLD)


# ------------------------------------------------------------------------ gmsh hygiene
def test_meshing_is_deterministic(check):
    p = Vertebra(mesh_size_mm=4.0)
    x1 = p.build(MPI.COMM_WORLD).mesh.geometry.x.copy()
    x2 = p.build(MPI.COMM_WORLD).mesh.geometry.x.copy()
    check(x1.shape == x2.shape and np.array_equal(x1, x2), "two builds differ")


def test_gmsh_state_is_left_alone(check):
    import gmsh

    gmsh.initialize(readConfigFiles=False, interruptible=False)
    try:
        gmsh.model.add("users-model")
        gmsh.option.setNumber("Mesh.MeshSizeMax", 123.0)
        gmsh.option.setNumber("General.Terminal", 1)
        b = Vertebra(mesh_size_mm=4.0).build(MPI.COMM_WORLD)
        check(b.mesh.topology.index_map(3).size_global > 100, "mesh built")
        check(gmsh.isInitialized() == 1, "gmsh was finalised under the user")
        check(gmsh.model.getCurrent() == "users-model", "current model changed")
        check(gmsh.option.getNumber("Mesh.MeshSizeMax") == 123.0, "option not restored")
        check(gmsh.option.getNumber("General.Terminal") == 1, "terminal option not restored")
    finally:
        gmsh.option.setNumber("General.Terminal", 0)
        gmsh.finalize()
    b = Vertebra(mesh_size_mm=4.0).build(MPI.COMM_WORLD)  # works after finalize too
    check(gmsh.isInitialized() == 0, "gmsh left initialised")
