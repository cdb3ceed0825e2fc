"""The systemic driver's DXA-site templates (femur.remodeling.sites).

The calibration runs on the systemic driver; these tests tie it to the FE-coupled path:
same bones, same DXA weights, same markers, so without the mechanostat both give the same
BMD and marker changes (up to the density binning).
"""

from dataclasses import replace

import numpy as np
import pytest

from femur.errors import InputError
from femur.remodeling import ModelParameters, Patient, simulate_sites
from femur.remodeling.model import RemodelingModel
from femur.remodeling.sites import (
    DEFAULT_TEMPLATE_PATH,
    GROUPS,
    N_BINS,
    bin_elements,
    bone_groups,
    site_set,
    table_from_bones,
)


def test_binning_keeps_weight_and_weighted_mean(check):
    rng = np.random.default_rng(3)
    rho = np.concatenate([rng.uniform(0.1, 0.4, 500), rng.uniform(1.2, 1.8, 300)])
    w = rng.uniform(0.1, 2.0, rho.size)
    cort = rho > 1.0
    s = bin_elements(rho, w, cort)
    check(s.rho.size == 2 * N_BINS, f"{s.rho.size} bins")
    for flag in (False, True):
        m = cort == flag
        mb = s.cortical == flag
        check(np.isclose(s.weight[mb].sum(), w[m].sum()), "weight not conserved")
        check(np.isclose((s.weight[mb] * s.rho[mb]).sum(), (w[m] * rho[m]).sum()), "mean not kept")
    check(np.all(np.diff(s.rho[~s.cortical]) > 0), "bins not ordered by density")


def test_binning_error_on_a_treated_bmd_change_is_small():
    """Binned vs every element: romosozumab 12-month mineral change of a wide density mix."""
    rng = np.random.default_rng(5)
    rho = np.concatenate([rng.uniform(0.08, 0.5, 3000), rng.uniform(1.0, 1.85, 1500)])
    w = rng.uniform(0.5, 1.5, rho.size) * rho
    s = bin_elements(rho, w, rho > 1.0)

    def change(r, weight):
        model = RemodelingModel("romosozumab", Patient(), max_step_days=2.0, horizon_days=370.0)
        st = model.initial_state(density_g_cm3=r)
        m0 = st.f0 * st.alpha0
        for i in range(183):
            st.t_day = 2.0 * i
            model.step(st, 2.0)
        return 100 * (np.sum(weight * st.f * st.alpha / m0) / weight.sum() - 1)

    full, binned = change(rho, w), change(s.rho, s.weight)
    assert full > 3.0
    assert abs(full - binned) < 0.05, (full, binned)


def test_stored_table_has_every_group_and_interpolates(check):
    assert DEFAULT_TEMPLATE_PATH.exists()
    for sex in ("female", "male"):
        for g in GROUPS:
            a, b, mid = (site_set(g, sex, t) for t in (-3.0, -2.5, -2.75))
            check(np.allclose(mid.weight, 0.5 * (a.weight + b.weight)), f"{sex} {g} interpolation")
            check(np.all(a.rho <= b.rho + 1e-12), f"{sex} {g}: lower T-score must not be denser")
    # clamped outside the grid
    check(np.allclose(site_set("total_hip", "female", -9.0).rho, site_set("total_hip", "female", -5.0).rho),
          "not clamped")
    with pytest.raises(InputError, match="unknown site"):
        site_set("wrist")
    with pytest.raises(InputError, match="sex"):
        site_set("total_hip", "other")


@pytest.mark.serial
def test_stored_table_matches_the_default_bones():
    """A geometry or density change of the built-in bones must come with a regenerated
    table (python -m femur.remodeling.sites --write)."""
    from femur.pipeline import build_bone

    for kind, groups in (("vertebra", ("lumbar_spine", "vertebra")),
                         ("femur", ("total_hip", "femoral_neck", "femur"))):
        fresh = bone_groups(build_bone(kind, t_score=-2.5))
        for g in groups:
            ref = site_set(g, "female", -2.5)
            assert fresh[g].rho.shape == ref.rho.shape, g
            assert np.allclose(fresh[g].rho, ref.rho, rtol=1e-4), g  # T-score solve tolerance
            assert np.allclose(fresh[g].weight / fresh[g].weight.sum(), ref.weight / ref.weight.sum(),
                               rtol=1e-4), g


def test_systemic_driver_equals_fe_path_without_mechanostat(check):
    """Same coarse bones: the FE-coupled simulation with the mechanostat switched off and
    the systemic driver on those bones' template give the same BMD and marker changes."""
    from femur.simulation import Simulation

    base = ModelParameters()
    params = replace(base, cells=replace(base.cells, mech_anabolic_gain=0.0, mech_catabolic_gain=0.0))
    sim = Simulation("romosozumab", 3, fe_interval_days=30, strength_months=(0,), mesh_size_mm=5.0,
                     params=params, progress=False)
    table = table_from_bones([t.bone for t in sim.tracks.values()])
    fe = sim.run()
    sys_ = simulate_sites("romosozumab", 3, params=params, template=table)
    for key in ("ls_bmd_pct", "th_bmd_pct", "fn_bmd_pct"):
        a, b = fe.series[key][-1], getattr(sys_, key)[-1]
        check(a > 1.0 and abs(a - b) < 0.05, f"{key}: FE path {a:.3f} vs systemic {b:.3f}")
    for key in ("p1np_pct", "ctx_pct"):
        a, b = fe.series[key][-1], getattr(sys_, key)[-1]
        check(abs(a - b) < 0.5, f"{key}: FE path {a:.2f} vs systemic {b:.2f}")
