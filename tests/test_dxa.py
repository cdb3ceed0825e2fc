"""DXA-equivalent projection: analytic boxes, T-score arithmetic, MPI invariance."""

import numpy as np
import pytest

import femur  # noqa: F401  (MPI before dolfinx)
import dolfinx
from mpi4py import MPI

from femur.outcomes import dxa, references
from femur.outcomes.vbmd import volumetric_bmd
from femur.geometry.density import assign_density
from femur.core.errors import DensityError, InputError
from femur.geometry.bone import Bone


def block_bone(extent=(20.0, 10.0, 30.0), n=(4, 2, 6), hexes=False, split="x", layers=False,
               anterior=None):
    """Box [0, ex] x [0, ey] x [0, ez] mm; compartments split at the middle of ``split``
    (lower half cortical=1, upper half trabecular=2); optional layers in z < 5 / z > 25."""
    ct = dolfinx.mesh.CellType.hexahedron if hexes else dolfinx.mesh.CellType.tetrahedron
    mesh = dolfinx.mesh.create_box(MPI.COMM_WORLD, [[0, 0, 0], list(extent)], list(n), ct)
    nc = mesh.topology.index_map(3).size_local + mesh.topology.index_map(3).num_ghosts
    cells = np.arange(nc, dtype=np.int32)
    mid = dolfinx.mesh.compute_midpoints(mesh, 3, cells)
    k = "xyz".index(split)
    vals = np.where(mid[:, k] < extent[k] / 2, 1, 2).astype(np.int32)
    ids = {"cortical": 1, "trabecular": 2}
    if layers:
        vals[mid[:, 2] < 5] = 3
        vals[mid[:, 2] > extent[2] - 5] = 4
        ids.update(layer_inferior=3, layer_superior=4)
    tags = dolfinx.mesh.meshtags(mesh, 3, cells, vals)
    lm = {"axis": np.array([0.0, 0.0, 1.0])}
    if anterior is not None:
        lm["anterior"] = np.asarray(anterior, dtype=float)
    return Bone("block", "generic", mesh, cell_tags=tags, cell_ids=ids, landmarks=lm,
                rois={"low": lambda x: x[2] < 15.0})


@pytest.mark.parametrize("hexes", [False, True])
def test_uniform_block_is_exact(hexes):
    bone = block_bone(hexes=hexes)
    assign_density(bone, cortical_g_cm3=0.8, trabecular_g_cm3=0.8)
    r = dxa.measure(bone, "whole")
    # aBMD = rho_ash * thickness = 0.6 * 0.8 g/cm3 * 1.0 cm; area 2 cm x 3 cm
    assert r["areal_bmd_g_cm2"] == pytest.approx(0.48, rel=1e-12)
    assert r["area_cm2"] == pytest.approx(6.0, rel=1e-12)
    assert r["bmc_g"] == pytest.approx(0.48 * 6.0, rel=1e-12)


def test_two_compartments_side_by_side_and_in_series():
    # side by side (split across x): mean of the two columns
    bone = block_bone(split="x")
    assign_density(bone, cortical_g_cm3=1.5, trabecular_g_cm3=0.5)
    assert dxa.areal_bmd(bone, "whole") == pytest.approx(0.6 * 1.0 * 1.0, rel=1e-12)
    # in series along the ray (split across y): every ray crosses 5 mm of each
    bone = block_bone(split="y")
    assign_density(bone, cortical_g_cm3=1.5, trabecular_g_cm3=0.5)
    img, extent, _ = dxa.dxa_image(bone)
    assert img.shape == (40, 60)
    assert np.allclose(img, 0.6 * (1.5 * 0.5 + 0.5 * 0.5), rtol=1e-12)
    # rows run along -x (e1 = axis x anterior), columns along z
    assert extent == pytest.approx((-20.0, 0.0, 0.0, 30.0), abs=1e-4)


def test_layers_are_not_bone():
    bone = block_bone(layers=True)
    assign_density(bone, cortical_g_cm3=0.8, trabecular_g_cm3=0.8)
    r = dxa.measure(bone, "whole")
    assert r["areal_bmd_g_cm2"] == pytest.approx(0.48, rel=1e-12)
    assert r["area_cm2"] == pytest.approx(2.0 * 2.0, rel=1e-12)  # z from 5 to 25 mm


def test_oblique_projection_conserves_mineral():
    # project along a tilted direction: BMC = total mineral, area = shadow of the box
    d = np.array([0.3, 1.0, 0.2])
    d /= np.linalg.norm(d)
    ex, ey, ez = 20.0, 10.0, 30.0
    bone = block_bone(extent=(ex, ey, ez), anterior=d)
    assign_density(bone, cortical_g_cm3=1.0, trabecular_g_cm3=1.0)
    r = dxa.measure(bone, "whole", pixel_mm=0.25)
    mass_g = 0.6 * 1.0 * ex * ey * ez / 1000.0
    shadow_cm2 = (abs(d[0]) * ey * ez + abs(d[1]) * ex * ez + abs(d[2]) * ex * ey) / 100.0
    assert r["bmc_g"] == pytest.approx(mass_g, rel=5e-3)
    assert r["area_cm2"] == pytest.approx(shadow_cm2, rel=1e-2)


def test_spine_roi_and_tscore():
    bone = block_bone(extent=(30.0, 25.0, 20.0), n=(2, 3, 2))
    bone.kind = "vertebra"
    assign_density(bone, cortical_g_cm3=1.0, trabecular_g_cm3=0.5)
    bmd = dxa.areal_bmd(bone, "spine")
    assert bmd == pytest.approx(0.6 * 0.75 * 2.5, rel=1e-12)
    r = dxa.measure(bone, "spine")
    assert r["t_score"] == pytest.approx((bmd - 1.047) / 0.110, rel=1e-12)


def test_spine_posterior_element_allowance():
    """The parametric vertebral body (no posterior elements) gets the posterior elements'
    share of the PA spine BMC (Lee et al., JBMR 2009: 52.8 % in women); other bones do not."""
    bone = block_bone(extent=(30.0, 25.0, 20.0), n=(2, 3, 2))
    bone.kind = "vertebra"
    assign_density(bone, cortical_g_cm3=1.0, trabecular_g_cm3=0.5)
    body = 0.6 * 0.75 * 2.5
    assert dxa.measure(bone, "spine")["posterior_bmc_fraction"] == 0.0
    bone.parameters = {"model": "Vertebra"}
    r = dxa.measure(bone, "spine")
    assert r["areal_bmd_g_cm2"] == pytest.approx(body / (1 - 0.528), rel=1e-12)
    assert r["area_cm2"] == pytest.approx(3.0 * 2.0, rel=1e-12)
    # a bone with posterior compartments is measured as projected (ROI = the body's extent,
    # here the x < 15 mm half of density 1.0)
    bone.cell_ids = {"cortical": 1, "posterior_trabecular": 2}
    assert dxa.areal_bmd(bone, "spine") == pytest.approx(0.6 * 1.0 * 2.5, rel=1e-9)


def test_t_score_arithmetic():
    assert references.t_score(0.858 - 2.5 * 0.120, "femoral_neck") == pytest.approx(-2.5, abs=1e-12)
    assert references.t_score(0.942, "total_hip") == pytest.approx(0.0, abs=1e-12)
    assert references.t_score(0.942 + 0.122, "total_hip", sex="male") == pytest.approx(1.0)
    assert references.bmd_from_t_score(-1.0, "spine") == pytest.approx(1.047 - 0.110)
    assert "Looker" in references.reference("femoral_neck").source
    with pytest.raises(InputError, match="femoral_neck"):
        references.t_score(0.8, "wrist")


def test_errors():
    bone = block_bone()
    with pytest.raises(DensityError, match="no density"):
        dxa.areal_bmd(bone, "whole")
    assign_density(bone, 1.0, 0.5)
    with pytest.raises(InputError, match="needs a femur"):
        dxa.areal_bmd(bone, "femoral_neck")
    with pytest.raises(InputError, match="unknown DXA site"):
        dxa.areal_bmd(bone, "forearm")


def test_volumetric_bmd():
    bone = block_bone(layers=True)
    assign_density(bone, cortical_g_cm3=1.5, trabecular_g_cm3=0.5)
    assert volumetric_bmd(bone) == pytest.approx(600.0, rel=1e-12)
    assert volumetric_bmd(bone, compartment="trabecular") == pytest.approx(300.0, rel=1e-12)
    assert volumetric_bmd(bone, region="low", compartment="cortical") == pytest.approx(900.0)


def test_parallel_consistency(comm):
    bone = block_bone(n=(5, 3, 7), anterior=[0.2, 1.0, 0.1])
    x0 = bone.cell_midpoints()
    assign_density(bone, values=lambda x: 0.2 + 0.01 * x[0] + 0.02 * x[2])
    r = dxa.measure(bone, "whole")
    vals = comm.allgather(r["areal_bmd_g_cm2"])
    assert max(vals) == min(vals)
    # analytic total mineral: integral of 0.6*rho over the box (linear field -> midpoint exact)
    vol = 20 * 10 * 30.0
    mean_rho = 0.2 + 0.01 * 10 + 0.02 * 15
    assert r["bmc_g"] == pytest.approx(0.6 * mean_rho * vol / 1000, rel=2e-2)
    assert x0.shape[1] == 3


# ------------------------------------------------------------------ parametric femur
@pytest.fixture(scope="module")
def femur_bones():
    from femur.geometry.femur_model import ProximalFemur

    p = ProximalFemur(mesh_size_mm=5.0)
    return p, p.build(MPI.COMM_WORLD), p.build(MPI.COMM_SELF)


def test_femur_dxa_rank_invariant_and_plausible(femur_bones):
    p, bone, serial = femur_bones
    out = {}
    for b, key in ((bone, "world"), (serial, "self")):
        assign_density(b, cortical_g_cm3=1.5, trabecular_g_cm3=0.3)
        out[key] = {s: dxa.measure(b, s) for s in ("femoral_neck", "total_hip")}
    for s in ("femoral_neck", "total_hip"):
        w, o = out["world"][s], out["self"][s]
        assert w["areal_bmd_g_cm2"] == pytest.approx(o["areal_bmd_g_cm2"], rel=1e-8)
        assert w["area_cm2"] == pytest.approx(o["area_cm2"], rel=1e-12)
    fn = out["world"]["femoral_neck"]
    # the box is 10 mm along the neck; the narrowest projected neck is the 30 mm neck
    # (superior-inferior) width near the head (the neck flares 10 % toward its base, and the
    # box starts one head radius from the head centre: ~31.4 mm)
    assert fn["neck_box_s_mm"][1] - fn["neck_box_s_mm"][0] == pytest.approx(dxa.NECK_BOX_MM)
    assert fn["neck_box_s_mm"][0] >= p.head_radius_mm - 1e-9  # no head inside the box
    assert 29.0 <= fn["neck_width_mm"] <= 32.0
    # the neck box covers ~box width x the neck width
    assert fn["area_cm2"] == pytest.approx(
        dxa.NECK_BOX_MM * fn["neck_width_mm"] / 100, rel=0.1)
    th = out["world"]["total_hip"]
    assert th["area_cm2"] > 3 * fn["area_cm2"]


def test_femur_projection_conserves_mineral(femur_bones):
    _, bone, _ = femur_bones
    assign_density(bone, values=lambda x: 0.3 + 0.005 * x[2])  # graded along the shaft
    n_owned = bone.num_owned_cells
    mass = bone.comm.allreduce(
        float(np.sum(0.6 * bone.density.x.array[:n_owned] * bone.cell_volumes()[:n_owned])),
        op=MPI.SUM) / 1000.0  # g/cm3 * mm3 -> g
    r = dxa.measure(bone, "whole")
    # pixel-centre quadrature of the line integrals: error O(pixel) only at the outline
    assert r["bmc_g"] == pytest.approx(mass, rel=1e-3)  # measured 6e-5 at 0.5 mm


def test_report_matches_single_sites(femur_bones):
    _, bone, _ = femur_bones
    assign_density(bone, cortical_g_cm3=1.2, trabecular_g_cm3=0.2)
    rep = dxa.report(bone)
    assert set(rep) == {"femoral_neck", "total_hip"}
    for site in rep:
        assert rep[site]["areal_bmd_g_cm2"] == pytest.approx(dxa.areal_bmd(bone, site), rel=1e-14)
        assert rep[site]["t_score"] == pytest.approx(
            references.t_score(rep[site]["areal_bmd_g_cm2"], site), rel=1e-14)
