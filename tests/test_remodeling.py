"""Invariants of the bone-cell + per-element density engine."""

from __future__ import annotations

import numpy as np
import pytest

from femur.core.errors import InputError
from femur.remodeling import (
    Patient,
    RemodelingModel,
    specific_surface_per_mm,
    stimulus_from_sed,
    tissue_density_g_cm3,
    uniform_stress_stimulus,
)
from femur.core.units import DAYS_PER_MONTH
from femur.remodeling.parameters import TissueParameters
from femur.workflows.systemic import simulate_sites


F_MIX = np.array([0.05, 0.1, 0.15, 0.25, 0.4, 0.6, 0.8, 0.9, 0.95])


def test_martin_specific_surface_table():
    """remodeling.md section 3 table."""
    f = np.array([0.05, 0.1, 0.2, 0.3, 0.4, 0.5, 0.7, 0.8, 0.9, 0.95])
    table = np.array([1.39, 2.41, 3.60, 4.08, 4.14, 3.96, 3.08, 2.34, 1.35, 0.75])
    np.testing.assert_allclose(specific_surface_per_mm(f), table, atol=0.011)
    assert specific_surface_per_mm(0.0) == 0.0
    assert specific_surface_per_mm(1.0) == pytest.approx(0.1, abs=1e-9)


def test_tissue_density():
    t = TissueParameters()
    # fully mineralised: 3.2*0.442 + 1.1*3/7 + 1.0*(1 - 3/7 - 0.442) = 2.0153 g/cm3
    assert tissue_density_g_cm3(1.0, t) == pytest.approx(2.0153, abs=1e-4)
    assert 1.85 < tissue_density_g_cm3(0.9, t) < 1.95


def test_steady_state_without_drug_or_aging():
    m = RemodelingModel("placebo:24", Patient(), aging=False)
    s0 = m.initial_state(f0=F_MIX)
    s1 = m.advance(s0, 0.0, 24 * DAYS_PER_MONTH, stimulus=np.zeros(F_MIX.size))
    np.testing.assert_allclose(s1.f, s0.f, rtol=1e-12)
    np.testing.assert_allclose(s1.alpha, s0.alpha, rtol=1e-12)
    for name in ("P", "B", "Cp", "C", "Q", "sost_total", "sost_free", "dkk1"):
        np.testing.assert_allclose(getattr(s1, name), 1.0, rtol=1e-12)
    mk = m.markers(s1)
    assert abs(mk["p1np_pct"]) < 1e-9 and abs(mk["ctx_pct"]) < 1e-9
    # stimulus inside the lazy zone is neutral too
    s2 = m.advance(s0, 0.0, 90.0, stimulus=np.full(F_MIX.size, 0.2))
    np.testing.assert_allclose(s2.f, s0.f, rtol=1e-12)


def test_initial_state_from_density_roundtrip():
    m = RemodelingModel("placebo")
    rho = np.array([0.1, 0.3, 0.8, 1.5, 1.85])
    s = m.initial_state(rho)
    np.testing.assert_allclose(m.density_g_cm3(s), rho, rtol=1e-6)
    assert np.all((s.f > 0) & (s.f < 1))
    # trabecular (high S_v) bone is less mineralised at baseline than cortex
    assert s.alpha[0] < s.alpha[-1]


@pytest.mark.serial
@pytest.mark.parametrize(
    "spec",
    ["romosozumab:12", "denosumab:24", "alendronate:12", "teriparatide:12", "placebo:12",
     "romosozumab:12,denosumab:12", "denosumab:12,placebo:12", "teriparatide:6,alendronate:6"],
)
def test_densities_bounded(spec):
    m = RemodelingModel(spec, Patient(age_years=85))
    f = np.array([0.011, 0.02, 0.1, 0.5, 0.98, 0.989])
    s = m.initial_state(f0=f)
    stim = np.array([5.0, -5.0, 5.0, -5.0, 5.0, -5.0])  # far outside the lazy zone
    t = 0.0
    while t < 24 * DAYS_PER_MONTH - 1e-9:
        s = m.advance(s, t, t + 30.0, stimulus=stim)
        t += 30.0
        assert np.all(s.f >= 0.01) and np.all(s.f <= 0.99)
        assert np.all(s.alpha >= 0) and np.all(s.alpha <= 1)
        for name in ("P", "B", "Cp", "C", "A", "Q", "M", "sost_total", "sost_free", "dkk1"):
            v = getattr(s, name)
            assert np.all(np.isfinite(v)) and np.all(v >= 0)


def test_element_order_and_partition_invariance():
    rng = np.random.default_rng(1)
    f = rng.uniform(0.05, 0.95, 40)
    vol = rng.uniform(0.5, 2.0, 40)
    stim = rng.uniform(-1.0, 1.0, 40)
    m = RemodelingModel("romosozumab:12,denosumab:6", Patient())
    s = m.advance(m.initial_state(f0=f, volume=vol), 0.0, 400.0, stimulus=stim)
    perm = rng.permutation(40)
    sp = m.advance(m.initial_state(f0=f[perm], volume=vol[perm]), 0.0, 400.0, stimulus=stim[perm])
    np.testing.assert_array_equal(sp.f, s.f[perm])
    np.testing.assert_array_equal(sp.alpha, s.alpha[perm])
    # two "ranks": each advances its part; summed marker numerators equal the whole
    a, b = perm[:17], perm[17:]
    sa = m.advance(m.initial_state(f0=f[a], volume=vol[a]), 0.0, 400.0, stimulus=stim[a])
    sb = m.advance(m.initial_state(f0=f[b], volume=vol[b]), 0.0, 400.0, stimulus=stim[b])
    np.testing.assert_allclose(m.marker_sums(sa) + m.marker_sums(sb), m.marker_sums(s), rtol=1e-12)


@pytest.mark.serial
def test_coupling_interval_does_not_matter_without_mechanics_change():
    """FE every 7 vs 30 days (same stimulus): identical; halving the inner step: < 0.05 %."""
    m = RemodelingModel("romosozumab:12", Patient())
    s0 = m.initial_state(f0=F_MIX)
    stim = np.linspace(-0.8, 0.8, F_MIX.size)
    end = 12 * DAYS_PER_MONTH

    def run(interval, model):
        s, t = s0, 0.0
        while t < end - 1e-9:
            t1 = min(t + interval, end)
            s = model.advance(s, t, t1, stimulus=stim)
            t = t1
        return s

    a, b = run(7.0, m), run(30.0, m)
    np.testing.assert_allclose(a.f, b.f, rtol=1e-3)
    fine = RemodelingModel("romosozumab:12", Patient(), max_step_days=0.5)
    c = run(30.0, fine)
    rel = (c.f * c.alpha) / (a.f * a.alpha) - 1
    assert np.max(np.abs(rel)) < 5e-4


@pytest.mark.serial
def test_mechanics_update_interval_tolerance():
    """Stimulus re-evaluated from the current densities (uniform-stress surrogate of the FE
    solve) every 7 vs 14 vs 30 days: element mineral mass differs by < 0.2 % (stated
    tolerance), the spread shrinking with the interval. (24 months of romosozumab and a
    very sparse element: with the mineral-aware modulus of issue 15 a romosozumab ->
    denosumab sequence keeps this surrogate stimulus inside the lazy zone, and the check that
    the mechanics matters would be vacuous.)"""
    spec = "romosozumab:24"
    m = RemodelingModel(spec, Patient())
    f0 = np.array([0.03, 0.06, 0.1, 0.15, 0.25, 0.4, 0.7, 0.9])
    end = 24 * DAYS_PER_MONTH

    def run(interval):
        s, t = m.initial_state(f0=f0), 0.0
        while t < end - 1e-9:
            t1 = min(t + interval, end)
            s = m.advance(s, t, t1, stimulus=uniform_stress_stimulus(s))
            t = t1
        return s.f * s.alpha

    ref = run(1.0)
    err = {d: np.max(np.abs(run(d) / ref - 1)) for d in (7.0, 14.0, 30.0)}
    assert err[30.0] < 2e-3
    assert err[7.0] <= err[14.0] <= err[30.0]
    # mechanics feedback matters: it differs from the stimulus-free run
    s_free = m.advance(m.initial_state(f0=f0), 0.0, end)
    assert np.max(np.abs(s_free.f * s_free.alpha / ref - 1)) > 1e-3


def test_mechanostat_direction():
    m = RemodelingModel("placebo:12", Patient(), aging=False)
    s0 = m.initial_state(f0=np.full(3, 0.2))
    s = m.advance(s0, 0.0, 180.0, stimulus=np.array([1.0, 0.0, -1.0]))
    assert s.f[0] > s0.f[0] and s.f[2] < s0.f[2]
    assert s.f[1] == pytest.approx(s0.f[1], rel=1e-12)
    np.testing.assert_allclose(stimulus_from_sed([2.0, 1.0], [1.0, 2.0]), [1.0, -0.5])


def test_trabecular_responds_faster_than_cortical():
    """Same drug, no site parameter: high-S_v (trabecular) elements change more (in %)."""
    for spec in ("romosozumab:12", "denosumab:12"):
        m = RemodelingModel(spec, Patient())
        s0 = m.initial_state(f0=np.array([0.12, 0.9]))
        s = m.advance(s0, 0.0, 12 * DAYS_PER_MONTH)
        gain = s.f * s.alpha / (s0.f * s0.alpha) - 1
        assert gain[0] > 2 * gain[1] > 0


@pytest.mark.serial
def test_denosumab_stop_rebound_needs_precursor_pool():
    """Variable OC-precursor pool -> CTX overshoots baseline after stopping denosumab."""
    r = simulate_sites("denosumab:12,placebo:12", 24, sites=("total_hip",))
    assert r.ctx_pct[3] < -50
    after = (r.daily["t_days"] > 12 * DAYS_PER_MONTH) & (r.daily["t_days"] < 18 * DAYS_PER_MONTH)
    assert np.max(r.daily["ctx_pct"][after]) > 15.0


def test_men_have_no_menopause_step():
    from femur.remodeling.parameters import default_cell_parameters

    c = default_cell_parameters()
    d, delta = Patient(sex="male", age_years=60).drivers(np.array([0.0, 3650.0]), c)
    np.testing.assert_allclose(d, 1.0)
    assert delta[0] == delta[1] > 0
    d, _ = Patient(age_years=53, years_since_menopause=1).drivers(np.array([0.0, 3650.0]), c)
    assert d[1] < d[0]


@pytest.mark.serial
def test_api_errors():
    m = RemodelingModel("placebo")
    s = m.initial_state(f0=F_MIX)
    with pytest.raises(InputError, match="stimulus must have one value per element"):
        m.advance(s, 0.0, 10.0, stimulus=np.zeros(3))
    with pytest.raises(InputError, match="not at t0"):
        m.advance(s, 5.0, 10.0)
    with pytest.raises(InputError, match="must be after"):
        m.advance(s, 0.0, 0.0)
    with pytest.raises(InputError, match="density_g_cm3"):
        m.initial_state(np.array([-0.1, 1.0]))
    with pytest.raises(InputError, match="exactly one"):
        m.initial_state()
    with pytest.raises(InputError, match="sex"):
        Patient(sex="x")
    with pytest.raises(InputError, match="years_since_menopause"):
        Patient(sex="male", years_since_menopause=5)
    with pytest.raises(InputError, match="months must be > 0"):
        simulate_sites("romosozumab", 0)
    with pytest.raises(InputError, match="unknown drug"):
        simulate_sites("romozumab", 12)
    with pytest.raises(InputError, match="unknown site"):
        simulate_sites("placebo", 12, sites=("wrist",))


@pytest.mark.serial
def test_site_results_outputs():
    r = simulate_sites("romosozumab:12,denosumab:12", 24)
    d = r.to_dict()
    n = len(d["months"])
    assert n == 25 and d["months"][0] == 0 and d["months"][-1] == 24
    for k in ("ls_bmd_pct", "th_bmd_pct", "fn_bmd_pct", "p1np_pct", "ctx_pct", "drug_serum_ug_per_ml"):
        assert len(d[k]) == n
        assert d[k][0] == pytest.approx(0.0, abs=1e-9) or k == "drug_serum_ug_per_ml"
    assert "LS BMD%" in r.table() and "romosozumab 210 mg" in r.table()


def test_markers_and_bmd_identical_across_ranks():
    """Each rank advances its own elements; reduced markers/BMD equal the serial result."""
    from mpi4py import MPI

    comm = MPI.COMM_WORLD
    rng = np.random.default_rng(7)
    f = rng.uniform(0.05, 0.95, 30)
    vol = rng.uniform(0.5, 2.0, 30)
    m = RemodelingModel("romosozumab:6,denosumab:6", Patient())
    full = m.advance(m.initial_state(f0=f, volume=vol), 0.0, 300.0)
    mine = np.arange(comm.rank, 30, comm.size)
    part = m.advance(m.initial_state(f0=f[mine], volume=vol[mine]), 0.0, 300.0)
    a, b = m.markers(full), m.markers(part, comm=comm)
    ok = all(abs(a[k] - b[k]) <= 1e-8 * max(1.0, abs(a[k])) for k in a)
    ok &= abs(m.bmd_change_pct(full) - m.bmd_change_pct(part, comm=comm)) < 1e-8
    sa, sb = m.serum_sclerostin(full), m.serum_sclerostin(part, comm=comm)
    ok &= all(abs(sa[k] - sb[k]) <= 1e-8 * max(1.0, abs(sa[k])) for k in sa)
    assert comm.allreduce(ok, op=MPI.LAND)


def test_osteocytes_follow_the_bone_and_feed_sclerostin_back():
    """Osteocytes (the sclerostin source) are buried with new bone and removed with resorbed
    bone, so their number tracks f/f0; more bone -> more sclerostin -> a smaller anabolic
    response than with osteocyte-independent sclerostin (sigma = 0)."""
    from dataclasses import replace

    from femur.remodeling import ModelParameters

    f0 = np.array([0.08, 0.15, 0.3, 0.85])
    model = RemodelingModel("romosozumab", Patient(), max_step_days=1.0)
    s = model.advance(model.initial_state(f0=f0), 0.0, 365.0)
    assert np.all(s.f > f0)
    assert np.allclose(s.Y, s.f / s.f0, rtol=2e-3)
    base = ModelParameters()
    flat = replace(base, cells=replace(base.cells, osteocyte_sost_exponent=0.0))
    s_flat = RemodelingModel("romosozumab", Patient(), params=flat).advance(
        RemodelingModel("romosozumab", Patient(), params=flat).initial_state(f0=f0), 0.0, 365.0)
    assert np.all(s_flat.f - f0 > s.f - f0)


def test_systemic_driver_echoes_the_regimen_it_simulated():
    r = simulate_sites("denosumab", 36, sites=("total_hip",))
    assert r.treatment == "denosumab:36" and r.regimen[0]["doses"] == 6
    assert r.regimen[0]["end_month"] == pytest.approx(36.0)


def test_cortical_elements_have_their_own_surface_and_balance():
    """Compartment-driven equations: a cortical element (compartment 1) of the same BV/TV
    as a trabecular one turns over faster (endocortical + canal surface) and, untreated,
    loses more (larger focal-balance deficit); without drug or ageing both stay at their
    own baseline (steady state, markers flat)."""
    f0 = np.array([0.9, 0.9, 0.3, 0.3])
    comp = np.array([1, 2, 1, 0])  # FE path tags 1/2, systemic driver 1/0: 1 is cortical
    m = RemodelingModel("placebo:24", Patient(), aging=False)
    s0 = m.initial_state(f0=f0, compartment=comp)
    k = m.turnover_per_day(f0, comp == 1)
    assert k[0] > k[1] and k[2] > k[3]
    assert s0.alpha[0] < s0.alpha[1]  # faster turnover: younger, less mineralised tissue
    s1 = m.advance(s0, 0.0, 24 * DAYS_PER_MONTH)
    np.testing.assert_allclose(s1.f, s0.f, rtol=1e-12)
    np.testing.assert_allclose(s1.alpha, s0.alpha, rtol=1e-12)
    mk = m.markers(s1)
    assert abs(mk["p1np_pct"]) < 1e-9 and abs(mk["ctx_pct"]) < 1e-9
    aged = RemodelingModel("placebo:24", Patient())
    s = aged.advance(aged.initial_state(f0=f0, compartment=comp), 0.0, 24 * DAYS_PER_MONTH)
    loss = 1 - s.f / f0
    assert loss[0] > loss[1] > 0 and loss[2] > loss[3] > 0
    # no compartment given: every element follows the trabecular equations
    s_none = m.initial_state(f0=f0)
    np.testing.assert_allclose(s_none.alpha[[1, 3]], s0.alpha[[1, 3]], rtol=1e-12)
    np.testing.assert_allclose(s_none.alpha[0], s0.alpha[1], rtol=1e-12)


def test_cortical_porosity_direction_per_drug():
    """Issue 15 / row 19: canal cavities open under resorption and refill after a lag, so at
    12 months (systemic driver, FREEDOM-age woman) teriparatide raises the hip's cortical
    porosity (more activation: a larger remodelling space), denosumab does not (resorption
    stops, open cavities refill) and romosozumab lowers it (modelling formation in the canals
    and endocortex, less resorption); romosozumab thickens the neck cortex."""
    patient = Patient(age_years=70.0)
    po = {}
    for drug in ("teriparatide", "denosumab", "romosozumab", "placebo"):
        r = simulate_sites(drug, 12, patient=patient, sites=("total_hip", "femoral_neck"), step_days=2.0)
        po[drug] = r.at_month("hip_cortical_porosity_pct", 12)
        if drug == "romosozumab":
            assert r.at_month("neck_cortical_thickness_pct", 12) > 0
    assert po["teriparatide"] > 1.0, po
    assert po["denosumab"] <= 0.5, po
    assert po["romosozumab"] < -1.0, po
    assert po["teriparatide"] > po["placebo"] > po["romosozumab"], po


def test_canal_remodelling_space_steady_and_lagged():
    """The canal cavities (V1, V2) sit at 1 without drug or ageing (porosity unchanged) and
    refill with the mean lag cortical_refill_days after a step in resorption: after denosumab
    stops resorption the porosity falls by at most the remodelling space k (1 - e) T."""
    f0 = np.array([0.9])
    m = RemodelingModel("placebo:12", Patient(), aging=False)
    s = m.advance(m.initial_state(f0=f0, compartment=np.array([1])), 0.0, 360.0)
    np.testing.assert_allclose([s.V1[0], s.V2[0], s.pore[0] + 1.0], 1.0, atol=1e-12)
    d = RemodelingModel("denosumab:24", Patient(), aging=False)
    c = d.params.cells
    space = float(d.turnover_per_day(f0, np.array([True]))[0]) * (1 - c.endocortical_share) * c.cortical_refill_days
    s = d.initial_state(f0=f0, compartment=np.array([1]))
    lag = d.advance(s, 0.0, 0.25 * c.cortical_refill_days)
    deep = d.advance(s, 0.0, 1.5 * c.cortical_refill_days)  # resorption suppressed since day ~3
    assert lag.V2[0] > lag.V1[0]  # the formation stage lags the resorption stage
    assert -1.05 * space < deep.pore[0] < lag.pore[0] < 0.0
    assert deep.V2[0] < 0.5 and deep.pore[0] < -0.5 * space  # most open cavities refilled


def test_mineralisation_two_phases():
    """Row 20: a packet of new bone reaches ~67 % of the plateau mineral by day 18 (primary
    phase), then approaches the plateau over years (secondary phase: still short of it at
    day 350 in the human-calibrated model, slower than rabbit), never above it; the plateau
    (v_m 0.442, Martínez-Reina 2019) is below full mineralisation (v_m = 1 - v_organic)."""
    m = RemodelingModel("placebo")
    a = m.packet_mineral([2.0, 18.0, 350.0, 20 * 365.0])
    assert a[0] < 0.4
    assert a[1] == pytest.approx(0.67, abs=0.03)
    assert a[1] < a[2] < 0.97
    assert 0.97 < a[3] <= 1.0
    t = m.params.tissue
    assert t.v_mineral_full < 1.0 - t.v_organic


def test_antiresorptive_raises_tissue_mineral():
    """Row 20 direction: 2 years of alendronate raise the tissue mineral density of the
    spine's trabecular and the hip's cortical bone against placebo (the compact gain is
    smaller than the biopsies' +9 %: the hip cortex turns over slowly; since the issue-15 Wnt
    refit +0.8 points at 2 years, so only > 0.5 is asserted)."""
    p = Patient(age_years=68.0)
    aln = simulate_sites("alendronate", 24, patient=p, sites=("lumbar_spine", "total_hip"), step_days=2.0)
    pbo = simulate_sites("placebo", 24, patient=p, sites=("lumbar_spine", "total_hip"), step_days=2.0)
    assert aln.at_month("hip_cortical_tmd_pct", 24) > pbo.at_month("hip_cortical_tmd_pct", 24) + 0.5
    assert aln.at_month("spine_trabecular_tmd_pct", 24) - pbo.at_month("spine_trabecular_tmd_pct", 24) > 4.0
