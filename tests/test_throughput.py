"""Trial throughput (issue 13): reuse must not change results.

* the DXA projection operator (pixels x cells) gives the areal BMD of the pairwise ray sum;
  a bone and its copies are projected once;
* geometry-derived ROI masks are computed once per bone and handed out as copies.

Run on 1 and 2 ranks (the 2-rank run checks the same identities on a partitioned mesh).
"""

import numpy as np
import pytest

import femur  # noqa: F401  (MPI before dolfinx)
from mpi4py import MPI

from femur.outcomes import dxa
from femur.workflows.bones import build_bone
from tests.conftest import assert_all_ranks


@pytest.fixture(scope="module")
def femur_4mm():
    return build_bone("femur", mesh_size_mm=4.0, t_score=-2.5, comm=MPI.COMM_WORLD)


def _pairwise_image(proj, bone, rho):
    """The projection as it was computed before the operator: one term per (pixel, tet)."""
    w = 0.6 * rho[proj.cell] * proj.chord_mm * 0.1
    img = np.bincount(proj.pix, weights=w, minlength=proj.shape[0] * proj.shape[1])
    bone.comm.Allreduce(MPI.IN_PLACE, img, op=MPI.SUM)
    return img.reshape(proj.shape)


def test_dxa_operator_equals_pairwise_sum(femur_4mm):
    bone = femur_4mm.copy()
    rng = np.random.default_rng(7)
    rho = bone.density.x.array * rng.uniform(0.8, 1.2, bone.num_local_cells)
    for site in ("femoral_neck", "total_hip"):
        proj = dxa.prepare(bone, site)
        ref = _pairwise_image(proj, bone, rho)
        img = proj.image(bone, rho)
        assert_all_ranks(np.allclose(img, ref, rtol=1e-12, atol=1e-15), f"{site}: operator image differs")
        roi = proj.roi & proj.covered
        bmd_ref = ref[roi].sum() / np.count_nonzero(roi)
        bmd = dxa.areal_bmd(bone, site, prepared=proj, density_g_cm3=rho)  # BMC / area
        assert_all_ranks(abs(bmd - bmd_ref) <= 1e-12 * bmd_ref, f"{site}: {bmd} vs {bmd_ref}")


def test_bone_and_copies_are_projected_once(femur_4mm, monkeypatch):
    calls = []
    real = dxa.project

    def counting(*a, **k):
        calls.append(1)
        return real(*a, **k)

    monkeypatch.setattr(dxa, "project", counting)
    bone = femur_4mm.copy()
    bone.derived.clear()  # a fresh geometry cache (the copies share it)
    fresh = dxa._prepare_hip(bone, dxa.DEFAULT_PIXEL_MM, dxa.NECK_BOX_MM,
                             dxa.TOTAL_HIP_BELOW_LESSER_TROCHANTER_MM)
    calls.clear()
    a = dxa.areal_bmd(bone, "femoral_neck")
    b = dxa.areal_bmd(bone.copy(), "total_hip")
    c = dxa.report(bone.copy())
    assert_all_ranks(len(calls) == 1, f"{len(calls)} projections of one bone")
    # the cached projection measures what a fresh one does
    fn = dxa.measure(bone, "femoral_neck", prepared=dxa.dataclasses.replace(fresh[0], roi=fresh[1]))
    th = dxa.measure(bone, "total_hip", prepared=dxa.dataclasses.replace(fresh[0], roi=fresh[2]))
    assert_all_ranks(a == fn["areal_bmd_g_cm2"] and b == th["areal_bmd_g_cm2"]
                     and c["total_hip"]["areal_bmd_g_cm2"] == b)
    # a bone with other landmarks is projected again
    moved = femur_4mm.copy()
    moved.landmarks = dict(moved.landmarks, anterior=np.array(moved.landmarks["anterior"], float))
    dxa.areal_bmd(moved, "femoral_neck")
    assert_all_ranks(len(calls) == 2)


def test_roi_mask_cached_and_copied(femur_4mm):
    bone = femur_4mm.copy()
    name = next(iter(bone.rois))
    m1 = bone.roi_mask(name)
    expected = np.asarray(bone.rois[name](bone.cell_midpoints().T), dtype=bool)
    m1[:] = ~m1  # a caller changing its mask must not change the cache
    m2 = bone.copy().roi_mask(name)
    assert_all_ranks(np.array_equal(m2, expected))
