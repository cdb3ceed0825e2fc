"""Anatomical femur: landmark algorithms (exact answers on a synthetic femur), the shipped
reference mesh (landmarks, validity, cortex, tags, ROIs), load cases and DXA sites, the
morph (targets met, tags/ROIs/density kept, inversion rejected), partition independence.

Runs on 1 and 2 ranks (``--with-mpi``); every count/volume is a global reduction.
Uses the trial-size mesh (4 mm) to stay fast.
"""

from __future__ import annotations

import pathlib

import numpy as np
import pytest

import femur  # noqa: F401
from mpi4py import MPI

import dolfinx  # noqa: E402
import ufl  # noqa: E402

from femur.core.errors import InputError, MeshError
from femur.geometry import anatomical_regions as regions
from femur.geometry.anatomical import (
    AnatomicalFemur,
    FemurShape,
    _read_cached,
    cortex_surface_cells,
    reference_cell_index,
    to_reference_order,
)
from femur.geometry.trisurf_remesh import orient_outward, triangle_quality
from femur.geometry.landmarks import analyse_femur, measure_proximal
from femur.geometry.morph import ShapeMorph
from femur.geometry.trisurf import TriSurface, check_closed

COMM = MPI.COMM_WORLD
TRIAL = 4.0
OBJ = pathlib.Path(__file__).resolve().parents[2] / "shared" / "data" / "visible-human-femur" / "FemurR.obj"


# ----------------------------------------------------------------------------- helpers
def gsum(bone, values) -> float:
    return bone.comm.allreduce(float(np.sum(np.asarray(values)[: bone.num_owned_cells])), op=MPI.SUM)


def owned_facets(bone, name):
    n = bone.mesh.topology.index_map(2).size_local
    ft = bone.facet_tags
    return ft.indices[(ft.values == bone.facet_ids[name]) & (ft.indices < n)]


def facet_count(bone, name) -> int:
    return bone.comm.allreduce(len(owned_facets(bone, name)), op=MPI.SUM)


def area_of(bone, facets) -> float:
    mesh = bone.mesh
    tags = dolfinx.mesh.meshtags(mesh, 2, np.sort(facets).astype(np.int32), np.ones(len(facets), np.int32))
    ds = ufl.Measure("ds", domain=mesh, subdomain_data=tags)
    a = dolfinx.fem.assemble_scalar(dolfinx.fem.form(dolfinx.fem.Constant(mesh, 1.0) * ds(1)))
    return mesh.comm.allreduce(float(a), op=MPI.SUM)


def boundary_surface(bone) -> TriSurface:
    """The exterior surface of the bone gathered on every rank (for re-measuring)."""
    mesh = bone.mesh
    mesh.topology.create_connectivity(2, 3)
    ext = dolfinx.mesh.exterior_facet_indices(mesh.topology)
    ext = ext[ext < mesh.topology.index_map(2).size_local]
    g = dolfinx.mesh.entities_to_geometry(mesh, 2, ext)
    tri = mesh.geometry.x[g].reshape(-1, 3, 3)
    tri = np.concatenate(mesh.comm.allgather(tri))
    pts, inv = np.unique(np.round(tri.reshape(-1, 3), 9), axis=0, return_inverse=True)
    return orient_outward(TriSurface(pts, inv.reshape(-1, 3), bone.name))


@pytest.fixture(scope="module")
def trial():
    return AnatomicalFemur(mesh_size_mm=TRIAL).build(COMM)


@pytest.fixture(scope="module")
def ref():
    return AnatomicalFemur(mesh_size_mm=TRIAL).reference()


# ----------------------------------------------------------------------------- landmarks
def _synthetic_whole_femur():
    """ProximalFemur (known head radius, neck length, neck-shaft angle, anteversion) with the
    shaft continued 230 mm distally and two cylindrical condyles whose posterior tangent is
    parallel to x (so anteversion is measured from x, as in ProximalFemur)."""
    from femur.geometry._gmsh_util import gmsh_model
    from femur.geometry.femur_model import ProximalFemur, _fused_solid

    p = ProximalFemur()
    g = p._geometry()
    with gmsh_model("synthetic-femur", {"Mesh.MeshSizeMax": 3.0, "Mesh.MeshSizeMin": 0.5}) as model:
        occ = model.occ
        top = _fused_solid(model, g, (0.0, 0.0, 0.0, 0.0), 0)
        shaft = occ.addCylinder(0, 0, -230, 0, 0, 231, g["R_s"])
        c1 = occ.addCylinder(2, -8, -240, 20, 0, 0, 22)
        c2 = occ.addCylinder(-22, -8, -240, 20, 0, 0, 22)
        occ.fuse([(3, top)], [(3, shaft), (3, c1), (3, c2)])
        occ.synchronize()
        model.mesh.generate(2)
        tags, xyz, _ = model.mesh.getNodes()
        tris = [np.asarray(model.mesh.getElements(2, s)[2][0]).reshape(-1, 3) for _, s in model.getEntities(2)]
    X = np.asarray(xyz).reshape(-1, 3)
    lk = np.zeros(int(tags.max()) + 1, dtype=np.int64)
    lk[np.asarray(tags, dtype=np.int64)] = np.arange(len(tags))
    u, inv = np.unique(lk[np.concatenate(tris)].ravel(), return_inverse=True)
    surf = orient_outward(TriSurface(X[u], inv.reshape(-1, 3), "synthetic"))
    check_closed(surf)
    return p, g, surf


@pytest.mark.serial
def test_landmarks_exact_on_synthetic_femur():
    p, g, surf = _synthetic_whole_femur()
    a = analyse_femur(surf)
    assert not a.mirrored  # ProximalFemur is a left femur in a right-handed frame
    assert np.allclose(a.frame, np.eye(3), atol=1e-3), a.frame
    assert abs(a.head_radius_mm - p.head_radius_mm) < 1e-6
    assert np.allclose(a.head_center, g["C"], atol=1e-6)
    assert abs(a.neck_shaft_angle_deg - p.neck_shaft_angle_deg) < 0.05
    assert abs(a.anteversion_deg - p.anteversion_deg) < 0.05
    assert abs(a.neck_length_mm - p.neck_length_mm) < 0.05
    # narrowest section: just beyond the head-neck junction; the frustum radius there
    s = a.neck_section_s_mm
    r = 0.5 * p.neck_diameter_mm + (g["r_b"] - 0.5 * p.neck_diameter_mm) * s / p.neck_length_mm
    assert abs(a.neck_width_mm - 2 * r) < 0.2
    assert abs(a.neck_depth_mm - 2 * r * p.neck_aspect_ratio) < 0.2
    # the mirror image is recognised as a right femur with the same anatomy
    m = analyse_femur(TriSurface(surf.vertices * np.array([-1.0, 1.0, 1.0]), surf.faces[:, [0, 2, 1]], "mirror"))
    assert m.mirrored
    for k in ("neck_shaft_angle_deg", "anteversion_deg", "neck_length_mm", "head_radius_mm"):
        assert abs(getattr(m, k) - getattr(a, k)) < 1e-6, k


@pytest.mark.serial
@pytest.mark.skipif(not OBJ.is_file(), reason="Visible Human surface not available (../shared/data)")
def test_reference_json_matches_the_source_surface(ref):
    from femur.geometry.anatomical_build import read_surface

    a = analyse_femur(read_surface(OBJ))
    assert a.mirrored and ref["side_of_source"] == "right"
    for k, v in a.scalars().items():
        if isinstance(v, float):
            assert abs(v - ref["anatomy"][k]) < 1e-6, k


def test_reference_landmarks(trial, ref, check):
    """Landmarks of the shipped femur: the JSON values re-measured on the volume mesh's
    boundary (independent surface: remeshed, cut, tetrahedralised), and inside the ranges
    of adult femora (typical ranges, UNCONFIRMED; see meshes/README.md)."""
    a = ref["anatomy"]
    m = measure_proximal(boundary_surface(trial))
    check(abs(m["head_radius_mm"] - a["head_radius_mm"]) < 0.3, f"head radius {m['head_radius_mm']}")
    check(abs(m["neck_shaft_angle_deg"] - a["neck_shaft_angle_deg"]) < 0.5, f"NSA {m['neck_shaft_angle_deg']}")
    check(abs(m["anteversion_deg"] - a["anteversion_deg"]) < 0.5, f"AV {m['anteversion_deg']}")
    check(abs(m["neck_length_mm"] - a["neck_length_mm"]) < 0.5, f"neck length {m['neck_length_mm']}")
    check(abs(m["neck_width_mm"] - a["neck_width_mm"]) < 0.5, f"neck width {m['neck_width_mm']}")
    # the values recorded in the JSON (Visible Human female femur)
    check(abs(a["head_diameter_mm"] - 47.6) < 0.1 and abs(a["neck_shaft_angle_deg"] - 120.8) < 0.1
          and abs(a["anteversion_deg"] - 12.7) < 0.1, str(a))
    check(38 < a["head_diameter_mm"] < 52 and 115 < a["neck_shaft_angle_deg"] < 140
          and -5 < a["anteversion_deg"] < 30 and 40 < a["neck_length_mm"] < 65, "adult ranges")
    lm = trial.landmarks
    check(np.allclose(lm["head_center"], ref["head_center"]) and lm["anterior"] @ [0, 1, 0] == 1, "keys")
    check(lm["trochanter_point"][0] < -20 and lm["lesser_trochanter"][0] > 15, "trochanters lateral/medial")
    check(lm["lesser_trochanter"][1] < 0, "lesser trochanter posterior")


# ----------------------------------------------------------------------------- mesh
def test_mesh_validity_tags_and_cortex(trial, ref, check):
    b = trial
    tdim = 3
    n_cells = b.mesh.topology.index_map(tdim).size_global
    check(n_cells == ref["mesh"]["tetrahedra"], f"{n_cells} cells")
    x = b.mesh.geometry.x
    dm = b.mesh.geometry.dofmaps[0][: b.num_owned_cells]
    P = x[dm]
    vol6 = np.einsum("ij,ij->i", P[:, 1] - P[:, 0], np.cross(P[:, 2] - P[:, 0], P[:, 3] - P[:, 0]))
    sign = np.sign(vol6)
    check(np.all(np.abs(vol6) > 1e-6) and (np.all(sign > 0) or np.all(sign < 0)), "tet volumes")
    v = b.cell_volumes()
    total = gsum(b, v)
    check(abs(total - ref["mesh"]["proximal_volume_mm3"]) < 0.01 * total, f"volume {total}")
    for name in b.facet_ids:
        check(facet_count(b, name) > 0, f"facet tag {name} empty")
    for name in b.cell_ids:
        check(gsum(b, b.compartment_mask(name)) > 0, f"compartment {name} empty")
    for name in ("head", "neck", "shaft", "greater_trochanter", "lesser_trochanter", "intertrochanteric"):
        check(gsum(b, b.roi_mask(name)) > 50, f"ROI {name}")
    # head load patch: spherical cap of 30 deg half-angle (area 2 pi R^2 (1 - cos 30))
    R = ref["head_radius_mm"]
    cap = 2 * np.pi * R**2 * (1 - np.cos(np.radians(30.0)))
    a = area_of(b, owned_facets(b, "head_load"))
    check(abs(a - cap) < 0.1 * cap, f"head_load area {a} vs {cap}")
    # cortical thickness: cortical volume over periosteal area ~ t (head 1 mm, shaft 4 mm)
    peri_cells = cortex_surface_cells(b)
    check(gsum(b, peri_cells["endocortical"]) > 0 and gsum(b, peri_cells["periosteal"]) > 0, "cortex cells")
    cort = b.compartment_mask("cortical")
    ext = dolfinx.mesh.exterior_facet_indices(b.mesh.topology)
    ext = ext[ext < b.mesh.topology.index_map(2).size_local]
    mid = dolfinx.mesh.compute_midpoints(b.mesh, 2, ext) if len(ext) else np.zeros((0, 3))
    cm = b.cell_midpoints()
    for roi, t_expect, lo_z in (("head", ref["cortex"]["head_mm"], None), ("shaft", ref["cortex"]["shaft_mm"], 10.0)):
        fmask = np.asarray(trial.rois[roi](mid.T), dtype=bool) & (mid[:, 2] > 1e-6)
        cmask = b.roi_mask(roi) & cort
        if lo_z is not None:  # away from the distal face
            fmask &= mid[:, 2] > lo_z
            cmask &= cm[:, 2] > lo_z
        t_eff = gsum(b, v * cmask) / area_of(b, ext[fmask])
        check(0.75 * t_expect < t_eff < 1.1 * t_expect, f"{roi} cortex {t_eff:.2f} mm vs {t_expect}")


def test_cortical_thickness_function(ref):
    C = np.asarray(ref["head_center"])
    n = np.asarray(ref["neck_axis"])
    R = ref["head_radius_mm"]
    e = np.asarray(ref["neck_e_si"])
    s_mid = np.mean(ref["neck_roi_s_mm"])
    pts = np.array([
        C + R * np.array([0, 0, 1.0]),  # head top
        C - s_mid * n + 15 * e,  # superior neck
        C - s_mid * n - 15 * e,  # inferior neck
        np.array([-14.0, 0.0, 5.0]),  # lateral shaft near the cut
        np.asarray(ref["trochanter_point"]),
    ])  # fmt: skip
    t = regions.cortical_thickness_mm(pts, ref)
    c = ref["cortex"]
    assert np.allclose(t, [c["head_mm"], c["neck_superior_mm"], c["neck_inferior_mm"], c["shaft_mm"],
                           c["trochanter_mm"]], atol=0.05), t


def test_unknown_size_and_missing_file():
    with pytest.raises(InputError, match="make_anatomical_femur"):
        AnatomicalFemur(mesh_size_mm=2.0).build(COMM)
    with pytest.raises(InputError, match="not found"):
        AnatomicalFemur(mesh_file="/nonexistent/femur.msh").build(COMM)


# ----------------------------------------------------------------------------- mechanics, DXA
def test_load_cases_and_dxa_sites(trial, check):
    from femur.outcomes import dxa
    from femur.geometry.density import assign_density
    from femur.mechanics import SidewaysFall, SingleLegStance, solve

    b = trial
    assign_density(b, age_y=70)
    for lc in (SingleLegStance(), SidewaysFall(), SidewaysFall(direction="posterolateral"),
               SidewaysFall(direction="anterolateral")):
        m = solve(b, lc)
        check(m.stiffness_n_per_mm > 0, f"{lc.name} stiffness")
        R = sum(np.asarray(r) for r in m.reactions_n.values())
        check(np.allclose(R, -lc.load_n * m.load.direction, atol=1e-3 * lc.load_n), f"{lc.name} equilibrium {R}")
    rep = dxa.report(b)
    fn, th = rep["femoral_neck"], rep["total_hip"]
    check(np.isfinite(fn["t_score"]) and np.isfinite(th["t_score"]), str(rep))
    check(3.0 < fn["area_cm2"] < 6.0 and 25.0 < th["area_cm2"] < 50.0, f"areas {fn['area_cm2']} {th['area_cm2']}")
    # the DXA neck width (AP projection) is about the neck's superior-inferior width
    w = b.parameters["anatomy"]["neck_width_mm"]
    check(abs(fn["neck_width_mm"] - w) < 3.0, f"DXA neck width {fn['neck_width_mm']} vs {w}")


# ----------------------------------------------------------------------------- morph
SHAPE = FemurShape(scale=1.05, head_radius_mm=22.0, neck_length_mm=52.0, neck_width_mm=31.0,
                   neck_shaft_angle_deg=128.0, anteversion_deg=20.0)


def test_morph_meets_targets_and_keeps_tags(trial, ref, check):
    b0 = trial
    b = AnatomicalFemur(mesh_size_mm=TRIAL, shape=SHAPE).build(COMM)
    a = b.parameters["anatomy"]
    for k in ("head_radius_mm", "neck_length_mm", "neck_width_mm", "neck_shaft_angle_deg", "anteversion_deg"):
        check(abs(a[k] - getattr(SHAPE, k)) < 1e-3, f"landmark {k} {a[k]}")
    m = measure_proximal(boundary_surface(b))
    check(abs(m["head_radius_mm"] - 22.0) < 0.3 and abs(m["neck_length_mm"] - 52.0) < 0.5
          and abs(m["neck_width_mm"] - 31.0) < 0.5 and abs(m["neck_shaft_angle_deg"] - 128.0) < 0.5
          and abs(m["anteversion_deg"] - 20.0) < 0.5, f"re-measured {m}")
    # same cells (by reference index), same compartments; the head load patch is re-split
    idx0, idx = reference_cell_index(b0), reference_cell_index(b)
    comp0 = np.zeros(ref["mesh"]["tetrahedra"], dtype=np.int32)
    comp = np.zeros_like(comp0)
    n0, n = b0.num_owned_cells, b.num_owned_cells
    for bone, ix, arr, no in ((b0, idx0, comp0, n0), (b, idx, comp, n)):
        ct = bone.cell_tags
        own = ct.indices < no
        arr[ix[ct.indices[own]]] = ct.values[own]
        COMM.Allreduce(MPI.IN_PLACE, arr, op=MPI.SUM)
    check(np.array_equal(comp0, comp) and np.all(comp > 0), "compartments by reference cell")
    for name in ("distal", "trochanter", "endocortical"):
        check(facet_count(b, name) == facet_count(b0, name), f"facet tag {name}")
    check(facet_count(b, "head_load") + facet_count(b, "head_surface")
          == facet_count(b0, "head_load") + facet_count(b0, "head_surface"), "head facets")
    for name in b0.rois:
        n_ref, n_m = gsum(b0, b0.roi_mask(name)), gsum(b, b.roi_mask(name))
        check(abs(n_m - n_ref) <= 0.01 * n_ref, f"ROI {name}: {n_m} vs {n_ref}")
    # per-cell reference data (e.g. an adapted density) follow the cells
    from femur.geometry.density import assign_density

    rng = np.random.default_rng(1)
    ref_rho = 0.2 + 1.5 * rng.random(ref["mesh"]["tetrahedra"])
    for bone in (b0, b):
        assign_density(bone, values=ref_rho[reference_cell_index(bone)])
    check(abs(gsum(b, b.density.x.array) - gsum(b0, b0.density.x.array)) < 1e-8 * gsum(b0, b0.density.x.array),
          "density by reference cell")
    check(np.array_equal(to_reference_order(b, b.density.x.array[: b.num_local_cells]), ref_rho), "round trip")


def test_morph_inverse_and_element_check(ref):
    af = AnatomicalFemur(mesh_size_mm=TRIAL)
    p = af.mesh_path()
    st = p.stat()
    X = _read_cached(str(p.resolve()), st.st_mtime_ns, st.st_size)["points"]
    m = ShapeMorph(ref, SHAPE)
    assert np.abs(m.inverse(m(X)) - X).max() < 1e-8
    assert np.allclose(ShapeMorph(ref, FemurShape())(X), X)
    # an extreme neck-shaft angle folds the neck over: refused with a clear error
    with pytest.raises(MeshError, match="too far from the reference"):
        AnatomicalFemur(mesh_size_mm=TRIAL, shape=FemurShape(neck_shaft_angle_deg=165.0)).build(COMM)
    with pytest.raises(MeshError, match="too far from the reference"):
        AnatomicalFemur(mesh_size_mm=TRIAL, shape=FemurShape(neck_width_mm=44.0)).build(COMM)
    with pytest.raises(InputError, match="scale"):
        FemurShape(scale=-1.0).validate()
    with pytest.raises(InputError, match="neck_shaft_angle_deg"):
        ShapeMorph(ref, FemurShape(neck_shaft_angle_deg=200.0))


# ----------------------------------------------------------------------------- MPI
def test_partition_independent_counts(trial, ref, check):
    """Global cell count, volume and ROI/compartment sizes equal the serial values
    computed from the reference file on one process (so 1 and 2 ranks agree)."""
    af = AnatomicalFemur(mesh_size_mm=TRIAL)
    p = af.mesh_path()
    st = p.stat()
    pl = _read_cached(str(p.resolve()), st.st_mtime_ns, st.st_size)
    X, T = pl["points"], pl["cells"]
    P = X[T]
    vol = np.abs(np.einsum("ij,ij->i", P[:, 1] - P[:, 0], np.cross(P[:, 2] - P[:, 0], P[:, 3] - P[:, 0]))) / 6
    mid = P.mean(axis=1)
    b = trial
    check(abs(gsum(b, b.cell_volumes()) - vol.sum()) < 1e-9 * vol.sum(), "volume")
    for name, f in regions.regions(ref).items():
        check(gsum(b, b.roi_mask(name)) == int(np.sum(f(mid.T))), f"ROI {name}")
    for name, cid in b.cell_ids.items():
        check(gsum(b, b.compartment_mask(name)) == int(np.sum(pl["cell_values"] == cid)), name)


def test_surface_tools_reject_open_and_bad_obj(tmp_path):
    bad = tmp_path / "bad.obj"
    bad.write_text("v 0 0 0\nv 1 0 0\nv 0 1 0\nf 1 2 3\n")
    from femur.geometry.trisurf import read_obj

    s = read_obj(bad)
    with pytest.raises(InputError, match="not a closed 2-manifold"):
        check_closed(s)
    bad.write_text("v 0 0 0\nv 1 0\nf 1 2 3\n")
    with pytest.raises(InputError, match="bad.obj:2"):
        read_obj(bad)
    q = triangle_quality(np.array([[[0, 0, 0], [1, 0, 0], [0.5, np.sqrt(3) / 2, 0]]], float))
    assert abs(q[0] - 1.0) < 1e-12


def test_t_score_targeting_on_the_anatomical_femur(trial, check):
    """FN T-score targeting on the new bone, uniform and with the habitual-loading
    pattern. With the pattern in the cancellous compartment (the default) the total hip
    stays above the neck, as in women (FN is the lower site); with the pattern in the
    cortex too, pore-free cortical cells keep their bone at any T-score and the total hip
    falls below the neck (the issue-11 T-score problem)."""
    from femur.geometry.adapted_density import bone_with_adapted_density
    from femur.outcomes import dxa
    from femur.workflows.t_score import bone_with_t_score

    b = bone_with_t_score(trial, -2.5)
    t = dxa.report(b)["femoral_neck"]["t_score"]
    check(abs(t + 2.5) < 0.01, f"FN T-score {t}")
    th = {}
    for label, patterned in (("cancellous", ("trabecular",)), ("both", ("trabecular", "cortical"))):
        p = bone_with_t_score(bone_with_adapted_density(trial, patterned=patterned), -2.5)
        rep = dxa.report(p)
        check(abs(rep["femoral_neck"]["t_score"] + 2.5) < 0.01, f"{label}: FN T {rep['femoral_neck']['t_score']}")
        th[label] = rep["total_hip"]["t_score"]
    check(th["cancellous"] > -2.5 > th["both"], f"total-hip T at FN -2.5: {th}")


@pytest.mark.slow
def test_p2_stance_solves(trial, check):
    """P2 on the trial mesh (about 147k DOF, ~30 s serial)."""
    from femur.geometry.density import assign_density
    from femur.mechanics import SingleLegStance, solve

    assign_density(trial, age_y=70)
    m1 = solve(trial, SingleLegStance(), order=1)
    m2 = solve(trial, SingleLegStance(), order=2)
    # P2 is less stiff than P1 (P1 tetrahedra lock in bending), by a few per cent here
    check(0.85 * m1.stiffness_n_per_mm < m2.stiffness_n_per_mm < m1.stiffness_n_per_mm,
          f"P1 {m1.stiffness_n_per_mm} P2 {m2.stiffness_n_per_mm}")


def test_closed_form_stretch_eigenvalues_match_lapack():
    """The morph check's closed-form eigenvalues of F^T F (largest first) equal LAPACK's,
    including the isotropic case (a multiple of the identity)."""
    from femur.geometry.morph import _sym3_eigvals

    rng = np.random.default_rng(3)
    F = np.eye(3) + 0.4 * rng.standard_normal((500, 3, 3))
    F[0], F[1] = np.eye(3), 1.7 * np.eye(3)
    C = np.einsum("kji,kjl->kil", F, F)
    ref = np.linalg.eigvalsh(C)[:, ::-1]
    assert np.allclose(_sym3_eigvals(C), ref, rtol=0, atol=1e-12 * ref.max())


def test_element_check_with_the_cached_edge_inverses_is_the_plain_one():
    """The cofactor determinants equal LAPACK's, and a morph's element check with the
    reference edge inverses computed once (a cohort's cache) gives the plain check's
    values, and the same rejection."""
    from femur.geometry.anatomical import AnatomicalFemur, read_reference
    from femur.geometry.mesh_io import read_mesh_arrays
    from femur.geometry.morph import FemurShape, _det3, edge_inverse

    rng = np.random.default_rng(5)
    F = np.eye(3) + 0.5 * rng.standard_normal((400, 3, 3))
    assert np.allclose(_det3(F), np.linalg.det(F), rtol=1e-12, atol=1e-12)
    path = AnatomicalFemur(mesh_size_mm=4.0).mesh_path()
    mesh = read_mesh_arrays(str(path))
    X, tets = mesh["points"], mesh["cells"]
    inv = edge_inverse(X, tets)
    for shape, ok in ((FemurShape(neck_shaft_angle_deg=122.0, anteversion_deg=18.0), True),
                      (FemurShape(neck_shaft_angle_deg=165.0), False)):
        morph = ShapeMorph(read_reference(path), shape)
        if ok:
            plain, cached = morph.check_elements(X, tets), morph.check_elements(X, tets, inv)
            assert plain.keys() == cached.keys()
            for k in plain:
                assert cached[k] == pytest.approx(plain[k], rel=1e-12, abs=1e-12), k
        else:
            for kw in ({}, {"edge_inverse": inv}):
                with pytest.raises(MeshError, match="too far from the reference"):
                    morph.check_elements(X, tets, **kw)
