"""Sex-specific cortex of the anatomical femur (issue 15): a man's cortex is thicker than a
woman's of the same size by the regional factors of ``femur.geometry.cortex_sex``
(superolateral neck most, inferomedial neck least), a woman's femur is the shipped mesh
unchanged, and the male pattern reaches a patient's bone through ``patient_bone``.

Uses the trial-size mesh (4 mm). The mesh measures are cortical volumes per region of the
reference mesh, independent of how the thickening is done.
"""

from __future__ import annotations

import numpy as np
import pytest

import femur  # noqa: F401
from mpi4py import MPI

from femur.geometry import cortex_sex as cs
from femur.geometry.anatomical import AnatomicalFemur, _read_cached, read_reference

COMM = MPI.COMM_WORLD
TRIAL = 4.0


@pytest.fixture(scope="module")
def shipped():
    path = AnatomicalFemur(mesh_size_mm=TRIAL).mesh_path()
    st = path.stat()
    return _read_cached(str(path.resolve()), st.st_mtime_ns, st.st_size), read_reference(path)


def _regional_cortical_volumes(X, payload, ref):
    cells, cv = payload["cells"], payload["cell_values"]
    cort = cv == 1
    vol = np.abs(cs._signed_volumes(X, cells))
    mid = payload["points"][cells].mean(axis=1)  # regions on the reference positions
    C, n, e = (np.asarray(ref[k], float) for k in ("head_center", "neck_axis", "neck_e_si"))
    s = (C - mid) @ n
    s0, s1 = ref["neck_roi_s_mm"]
    neck = (s >= s0) & (s <= s1)
    rel = mid - C + s[:, None] * n[None, :]  # radial vector from the neck axis
    side = (rel @ e) / np.maximum(np.linalg.norm(rel, axis=1), 1e-9)  # cosine to superior
    shaft = mid[:, 2] < float(ref["lt_bottom_z_mm"]) - 25.0
    masks = {"neck_superior": neck & (side > 0.8), "neck_inferior": neck & (side < -0.8), "shaft": shaft}
    return {k: float(vol[m & cort].sum()) for k, m in masks.items()}


def test_male_cortex_thicker_by_region(shipped):
    payload, ref = shipped
    assert cs.cortex_for_sex("female", ref) is None
    cortex = cs.cortex_for_sex("M", ref)
    assert cortex["neck_superior_mm"] == pytest.approx(ref["cortex"]["neck_superior_mm"] * 1.15)
    Y = cs.thicken_cortex(payload["points"], payload["cells"], payload["cell_values"], ref, cortex)
    f = _regional_cortical_volumes(payload["points"], payload, ref)
    m = _regional_cortical_volumes(Y, payload, ref)
    ratio = {k: m[k] / f[k] for k in f}
    fac = cs.CORTEX_SEX_FACTORS["male"]
    # a shell thickened inward loses a little to curvature: volume ratio a bit under the
    # thickness ratio (thick shaft cortex most); the neck's thickness blends from superior
    # to inferior with the cosine of the section angle (cos > 0.8 here)
    assert fac["neck_superior_mm"] - 0.04 < ratio["neck_superior"] < fac["neck_superior_mm"] + 0.01, ratio
    assert fac["neck_inferior_mm"] - 0.02 < ratio["neck_inferior"] < fac["neck_inferior_mm"] + 0.01, ratio
    assert fac["shaft_mm"] - 0.04 < ratio["shaft"] < fac["shaft_mm"] + 0.01, ratio
    assert ratio["neck_superior"] > ratio["neck_inferior"] + 0.05
    # the periosteal (outer) surface does not move, the distal cut stays plane; no element
    # inverts
    X = payload["points"]
    ext = cs._exterior_faces(payload["cells"])
    distal = np.all(np.abs(X[ext][:, :, 2]) < 1e-6, axis=1)
    outer = np.unique(ext[~distal])
    assert np.array_equal(Y[outer], X[outer])
    assert np.all(Y[np.unique(ext[distal])][:, 2] == 0.0)
    assert np.all(cs._signed_volumes(Y, payload["cells"]) * cs._signed_volumes(payload["points"],
                                                                              payload["cells"]) > 0)


def test_built_male_and_female_femur():
    fem = AnatomicalFemur(mesh_size_mm=TRIAL).build(COMM)
    man = AnatomicalFemur(mesh_size_mm=TRIAL, sex="male").build(COMM)

    def cortical_volume(b):
        v = b.cell_volumes()[: b.num_owned_cells] * b.compartment_mask("cortical")[: b.num_owned_cells]
        return COMM.allreduce(float(v.sum()), op=MPI.SUM)

    assert "cortex_sex" not in fem.parameters and man.parameters["cortex_sex"] == "male"
    assert man.parameters["cortex"]["shaft_mm"] == pytest.approx(1.10 * fem.parameters["cortex"]["shaft_mm"])
    ratio = cortical_volume(man) / cortical_volume(fem)
    assert 1.04 < ratio < 1.12, ratio


def test_patient_bone_of_a_man_has_mens_cortex():
    from femur.remodeling.patient import Patient
    from femur.workflows.bones import describe_geometry, patient_bone

    b = patient_bone("femur", Patient(sex="male"), mesh_size_mm=TRIAL, comm=COMM)
    assert b.parameters["cortex_sex"] == "male"
    assert "men's cortex" in describe_geometry(b)
    w = patient_bone("femur", Patient(), mesh_size_mm=TRIAL, comm=COMM)
    assert "cortex_sex" not in w.parameters


def test_trabecular_surface_per_volume_by_sex():
    """Men's thicker trabeculae (Khosla 2006) scale the trabecular specific surface by
    1/1.2; cortical elements and women are unchanged."""
    from femur.remodeling.model import RemodelingModel
    from femur.remodeling.patient import MALE_TRABECULAR_THICKNESS_RATIO, Patient

    assert Patient().trabecular_sv_factor == 1.0
    assert Patient(sex="male").trabecular_sv_factor == pytest.approx(1.0 / MALE_TRABECULAR_THICKNESS_RATIO)
    f = np.array([0.1, 0.3, 0.85, 0.95])
    cort = np.array([False, False, True, True])
    woman = RemodelingModel("placebo", Patient()).turnover_per_day(f, cort)
    man = RemodelingModel("placebo", Patient(sex="male", age_years=71)).turnover_per_day(f, cort)
    assert np.allclose(man[~cort] / woman[~cort], 1.0 / 1.2, rtol=1e-12)
    assert np.array_equal(man[cort], woman[cort])
    assert np.allclose(RemodelingModel("placebo", Patient(sex="male")).turnover_per_day(f) /
                       RemodelingModel("placebo", Patient()).turnover_per_day(f), 1.0 / 1.2, rtol=1e-12)
