"""The fast cell-model step (femur.remodeling.step) against a plain transcription of the
model's equations (femur.remodeling.model docstring), step by step as the model was
written before issue 15's speed work: the same numbers to round-off (1e-9 relative) for
every drug, both sexes, mixed compartments, with and without a mechanical stimulus."""

from __future__ import annotations

import numpy as np
import pytest

from femur.remodeling.model import RemodelingModel, _cortical_mask
from femur.remodeling.patient import Patient
from femur.remodeling.wnt import dkk1_step, free_fraction, sclerostin_step, wnt_activation, wnt_inhibition

# no MPI, mesh or FE here: the one-process half covers these (CI time)
pytestmark = pytest.mark.serial


def _pow(x, a):
    return x if a == 1.0 else np.exp(a * np.log(x))


def reference_step(m: RemodelingModel, s, dt, mech=(0.0, 0.0)):
    """One step of the model's equations, written out with np.where (reference)."""
    c, tis = m.params.cells, m.params.tissue
    t0 = s.t_day
    ex = m.exposure.mean(t0, t0 + dt)
    d_rel, delta = m.patient.drivers(t0 + 0.5 * dt, c, m.aging)
    mp, mm = mech
    e_pth = ex["pth"]
    prod = _pow(s.Y, c.osteocyte_sost_exponent)
    if m.aging:
        prod = prod * m._sost_age_factor(t0 + 0.5 * dt)
    phi = free_fraction(ex["romo_site_ug_ml"], c.romo_k_ug_ml)
    s.sost_total, s.sost_free = sclerostin_step(s.sost_total, prod, phi, dt, c.sost_clearance_per_day,
                                                c.sost_bound_clearance_per_day)
    wnt = wnt_activation(wnt_inhibition(s.sost_free, s.dkk1, c.dkk1_share), c.wnt_diff_gain)
    wp = np.maximum(wnt, 0.0)
    s.dkk1 = dkk1_step(s.dkk1, prod, wp, dt, c.dkk1_days, c.dkk1_induction)
    r = (d_rel * _pow(s.sost_free, c.sost_rankl_exponent) * (1.0 + c.pth_rankl_gain * e_pth) * (1.0 + mm)
         / (1.0 + ex["dmab_ng_ml"] / c.dmab_k_ng_ml))
    msc = 1.0 + c.wnt_msc_gain * wnt
    eta_w = 1.0 / (1.0 + c.wnt_survival_gain * wnt)
    mat = 1.0 + c.wnt_matrix_gain * wnt
    src = _pow(s.C, c.coupling_exponent) * msc * (1.0 + mp) / (1.0 + mm)
    d_pth = 1.0 + c.pth_ob_potency * e_pth
    diff = d_pth * (1.0 + c.wnt_differentiation_gain * wnt)
    hp, hb, hq = dt / c.tau_p_days, dt / c.tau_b_days, dt / c.tau_q_days
    s.P = (s.P + hp * src) / (1.0 + hp * diff)
    s.B = (s.B + hb * diff * s.P) / (1.0 + (hb / d_pth) * eta_w)
    s.Q = (s.Q + hq * msc) / ((1.0 + hq) + hq * wp)
    s.M = (s.M + (hb * c.modelling_gain) * wp * s.Q) / (1.0 + hb * eta_w)
    hcp, hc, cpf = dt / c.tau_cp_days, dt / c.tau_c_days, c.cp_diff_fraction
    s.Cp = (s.Cp + hcp) / ((1.0 + hcp * (1.0 - cpf)) + (hcp * cpf) * r)
    s.C = (s.C + hc * r * s.Cp) / ((1.0 + hc) + (hc * c.bp_potency) * s.A)
    s.A = (s.A + (dt * ex["aln_bone_mg_per_day"]) * s.C) / (1.0 + (dt / c.bp_release_days) * s.C)
    cort = _cortical_mask(s.compartment, s.n_elements)
    R = s.C
    dtk = dt * m.turnover_per_day(s.f, cort)
    keep = 1.0 - delta * m.deficit_ratio(cort)
    b_keep = s.B * keep
    if cort is None or not cort.any():
        F = mat * (b_keep + s.M)
    else:
        hv = dt / (0.5 * c.cortical_refill_days)
        s.V1 = np.where(cort, (s.V1 + hv * R) / (1.0 + hv), 1.0)
        s.V2 = np.where(cort, (s.V2 + hv * s.V1) / (1.0 + hv), 1.0)
        e = c.endocortical_share
        f_ic = mat * (s.V2 * keep + c.modelling_ratio_intracortical * s.M)
        f_cort = mat * (e * b_keep + (e * c.modelling_ratio_endocortical
                                      + c.periosteal_share * c.modelling_ratio_periosteal) * s.M) + (1.0 - e) * f_ic
        F = np.where(cort, f_cort, mat * (b_keep + s.M))
        s.pore = np.where(cort, s.pore - ((1.0 - e) * dtk) * (f_ic - R), 0.0)
    formed, resorbed = dtk * F, dtk * R
    f_new = np.clip(s.f + (formed - resorbed), tis.f_min, tis.f_max)
    s.Y = (s.Y + formed / s.f0) / (1.0 + resorbed / s.f)
    s.alpha, s.O = m.mineral_step(s.f, f_new, s.alpha, s.O, formed, resorbed, dt)
    s.f = f_new
    s.formation, s.resorption = F, R
    s.t_day = t0 + dt
    return s


STATE_KEYS = ("f", "alpha", "P", "B", "Cp", "C", "A", "Q", "M", "Y", "sost_total", "sost_free", "dkk1",
              "V1", "V2", "pore", "O", "formation", "resorption")


def _compare(a, b, rtol=1e-9):
    for k in STATE_KEYS:
        x, y = getattr(a, k), getattr(b, k)
        scale = np.maximum(np.abs(y), 1e-12 if k != "pore" else np.max(np.abs(y)) + 1e-30)
        err = float(np.max(np.abs(x - y) / scale))
        assert err < rtol, (k, err)


@pytest.mark.parametrize("sex", ["female", "male"])
@pytest.mark.parametrize("drug", ["placebo", "romosozumab", "denosumab", "alendronate", "teriparatide"])
def test_fast_step_matches_the_equations(drug, sex):
    rng = np.random.default_rng(3)
    n = 40
    f0 = rng.uniform(0.05, 0.95, n)
    comp = np.where(f0 > 0.6, 1, 2)
    stim = rng.normal(0.0, 0.6, n)
    m = RemodelingModel(drug, Patient(sex=sex, age_years=70), horizon_days=400)
    for mech_on in (False, True):
        s0 = m.initial_state(f0=f0, compartment=comp)
        fast = s0
        for t0 in range(0, 360, 30):  # FE-interval-like advances
            fast = m.advance(fast, float(t0), float(t0 + 30), stimulus=stim if mech_on else None)
        ref = s0.copy()
        mech = m._mech(stim, n) if mech_on else (0.0, 0.0)
        for d in range(360):
            ref.t_day = float(d)
            reference_step(m, ref, 1.0, mech)
        _compare(fast, ref)
        # the public one-step call (the systemic driver's) gives the same
        one = s0.copy()
        for d in range(60):
            one.t_day = float(d)
            m.step(one, 1.0, mech)
        ref = s0.copy()
        for d in range(60):
            ref.t_day = float(d)
            reference_step(m, ref, 1.0, mech)
        _compare(one, ref)


def test_plan_follows_compartment_switches():
    """The cached per-element plan is rebuilt when the tags change between steps."""
    f0 = np.array([0.9, 0.65, 0.2])
    m = RemodelingModel("teriparatide", Patient(), horizon_days=200)
    a = m.initial_state(f0=f0, compartment=np.array([1, 1, 2]))
    b = a.copy()
    for d in range(40):
        if d == 20:  # retag element 1 in both runs
            for s in (a, b):
                s.compartment[1] = 2
                s.V1[1] = s.V2[1] = 1.0
                s.pore[1] = 0.0
        a.t_day = b.t_day = float(d)
        m.step(a, 1.0)
        reference_step(m, b, 1.0)
    _compare(a, b)


@pytest.mark.parametrize("drug", ["romosozumab", "alendronate"])
def test_advance_leaves_its_input_state_alone(drug):
    """advance() shares the input's arrays with the state it returns (no copy per advance);
    that is safe only while no step writes into an array: the input keeps every value."""
    from dataclasses import fields

    m = RemodelingModel(drug, Patient())
    rho = np.linspace(0.1, 1.7, 40)
    s0 = m.initial_state(density_g_cm3=rho, compartment=np.where(rho > 1.0, 1, 2))
    before = {f.name: np.array(getattr(s0, f.name), copy=True) for f in fields(s0)}
    s1 = m.advance(s0, 0.0, 60.0, stimulus=np.linspace(-0.5, 0.5, 40))
    s2 = m.advance(s1, 60.0, 90.0)
    for name, v in before.items():
        assert np.array_equal(np.asarray(getattr(s0, name)), v), name
    assert s0.t_day == 0.0 and s1.t_day == 60.0 and s2.t_day == 90.0
    assert not np.array_equal(s1.f, s0.f) and not np.array_equal(s2.f, s1.f)
