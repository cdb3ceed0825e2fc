"""Issue 15: sclerostin as a state (osteocytes its source, romosozumab binds it) and Wnt on
the whole osteoblast lineage (femur.remodeling.wnt, femur.remodeling.model)."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from femur.remodeling import ModelParameters, Patient, RemodelingModel
from femur.remodeling.wnt import sclerostin_step, wnt_activation, wnt_inhibition
from femur.workflows.systemic import simulate_sites

# no MPI, mesh or FE here: the one-process half covers these (CI time)
pytestmark = pytest.mark.serial

F0 = np.array([0.1, 0.2, 0.85])
COMP = np.array([0, 0, 1])


def _params(**cells):
    base = ModelParameters()
    return replace(base, cells=replace(base.cells, **cells))


def _course(spec="romosozumab:12", days=(0, 14, 30, 90, 180, 270, 330), aging=False, **cells):
    """Per-element state at the given days (no ageing: only the drug moves the cells)."""
    m = RemodelingModel(spec, Patient(), params=_params(**cells), aging=aging)
    s = m.initial_state(f0=F0, compartment=COMP)
    out, t = {0: s}, 0.0
    for d in days[1:]:
        s = m.advance(s, t, float(d))
        out[d], t = s, float(d)
    return m, out


def test_sclerostin_binding_total_rises_free_falls():
    """Antibody-bound sclerostin clears slowly (Eudy 2015), so under romosozumab the total
    rises and the free form falls, per element and in serum; without the drug both stay at
    baseline; after the last dose both return toward baseline."""
    _, s = _course(days=(0, 7, 30, 180, 330, 540))
    for d in (7, 30, 180, 330):
        assert np.all(s[d].sost_total > 2.0), (d, s[d].sost_total)
        assert np.all(s[d].sost_free < 0.8), (d, s[d].sost_free)
    assert np.all(np.abs(s[540].sost_free - 1.0) < 0.5) and np.all(s[540].sost_total < 2.0)
    r = simulate_sites("romosozumab:12", 18, sites=("total_hip",), step_days=2.0)
    tot, free = r.series["serum_sclerostin_total_pct"], r.series["serum_sclerostin_free_pct"]
    assert tot[0] == pytest.approx(0.0, abs=1e-9) and free[0] == pytest.approx(0.0, abs=1e-9)
    assert np.all(tot[1:13] > 100.0) and np.all(free[1:13] < -20.0)
    p = simulate_sites("placebo", 6, sites=("total_hip",), step_days=2.0, aging=False)
    assert np.allclose(p.series["serum_sclerostin_total_pct"], 0.0, atol=1e-9)


def test_sclerostin_step_matches_its_steady_state():
    """The implicit step relaxes to the analytic steady state T = k_out p / (k_out phi + k0 (1 - phi))."""
    t, phi, k_out, k0 = np.ones(1), 0.01, 25.0, 0.197
    for _ in range(400):
        t, free = sclerostin_step(t, 1.0, phi, 0.5, k_out, k0)
    ref = k_out / (k_out * phi + k0 * (1 - phi))
    assert t[0] == pytest.approx(ref, rel=1e-9) and free[0] == pytest.approx(phi * ref, rel=1e-9)
    assert wnt_inhibition(1.0, 1.0, 0.3) == pytest.approx(1.0)
    assert wnt_activation(1.0, 5.0) == pytest.approx(0.0)
    assert wnt_activation(0.0, 5.0) == pytest.approx(5.0)
    assert wnt_activation(wnt_inhibition(0.0, 1.0, 0.3), 5.0) > 0 > wnt_activation(2.0, 5.0) > -1


def test_formation_wanes_with_the_antibody_present_through_the_feedback():
    """Formation peaks in the first weeks and wanes while the antibody is still there (free
    sclerostin stays low); the osteocyte (new bone -> more sclerostin and DKK1) and DKK1
    (Wnt-induced) feedbacks carry part of the waning: without them it wanes less."""
    m, s = _course()
    romo = m.serum_ug_ml(np.array([30.0, 270.0, 300.0]))
    assert np.all(romo > 5.0)  # the antibody is still present at M9-M10
    tb = 0  # trabecular element
    peak = max(s[d].formation[tb] for d in (14, 30))
    assert s[270].formation[tb] < 0.8 * peak
    assert s[270].sost_free[tb] < 0.8  # free sclerostin still suppressed
    assert s[270].dkk1[tb] > 1.0 and s[270].Y[tb] > 1.0  # the feedback signals are up
    _, s_nofb = _course(dkk1_induction=0.0, osteocyte_sost_exponent=0.0)
    peak_nofb = max(s_nofb[d].formation[tb] for d in (14, 30))
    assert s_nofb[270].formation[tb] / peak_nofb > s[270].formation[tb] / peak


@pytest.mark.parametrize("switch", ["wnt_differentiation_gain", "wnt_msc_gain", "wnt_survival_gain",
                                    "wnt_matrix_gain", "modelling_gain"])
def test_each_wnt_effect_raises_formation(switch):
    """Switching one Wnt effect off makes romosozumab's formation (and bone gain) smaller."""
    _, on = _course(days=(0, 30, 90))
    _, off = _course(days=(0, 30, 90), **{switch: 0.0})
    cum_on = on[90].f - F0
    cum_off = off[90].f - F0
    assert np.all(cum_off < cum_on), (switch, cum_on, cum_off)
    assert off[30].formation[0] < on[30].formation[0]


def test_remodelling_osteoblasts_see_wnt():
    """Wnt reaches the remodelling (BMU) osteoblasts too, not only modelling ones: their
    number rises early under romosozumab although resorption (their coupling signal) falls,
    and CTX falls through the free-sclerostin RANKL arm (none without it)."""
    m, s = _course(days=(0, 14, 30))
    assert np.all(s[14].B > 1.05) and np.all(s[14].C < 1.0)
    assert m.markers(s[30])["ctx_pct"] < -10.0
    m0, s0 = _course(days=(0, 14, 30), sost_rankl_exponent=0.0)
    assert m0.markers(s0[30])["ctx_pct"] > m.markers(s[30])["ctx_pct"]


def test_sclerostin_follows_osteocytes_and_age_under_placebo():
    """Untreated, osteocytes are lost with the bone and sclerostin follows them, times the
    rise of production per osteocyte with age (Mödder 2011: faster in men); free and total
    agree without the antibody."""
    m, s = _course("placebo:24", days=(0, 365, 730), aging=True)
    assert np.all(s[730].Y < 1.0)
    np.testing.assert_allclose(s[730].sost_free, s[730].sost_total, rtol=1e-12)
    age = m._sost_age_factor(730.0)
    assert 1.02 < age < 1.04
    np.testing.assert_allclose(s[730].sost_total, s[730].Y * age, rtol=2e-3)
    man = RemodelingModel("placebo:24", Patient(sex="male"))
    assert man._sost_age_factor(730.0) > age


def test_serum_sclerostin_in_the_json_record():
    """The systemic driver's monthly record (femur simulate --json) carries both courses."""
    r = simulate_sites("romosozumab", 3, sites=("total_hip",), step_days=2.0)
    d = r.to_dict()
    for k in ("serum_sclerostin_total_pct", "serum_sclerostin_free_pct"):
        assert len(d[k]) == len(d["months"])
    assert d["serum_sclerostin_total_pct"][2] > 0 > d["serum_sclerostin_free_pct"][2]


def test_effect_site_lags_the_serum_level():
    """The bone (effect-site) romosozumab level follows the serum level with a first-order
    delay: exact on a constant, the serum itself without delay, a later and lower peak."""
    from femur.treatments.pk import compute_exposure, effect_site

    t = np.arange(0, 100, 0.25)
    np.testing.assert_allclose(effect_site(t, np.full(t.size, 3.0), 7.0), 3.0, rtol=1e-12)
    x = np.sin(t / 5.0) ** 2
    np.testing.assert_array_equal(effect_site(t, x, 0.0), x)
    # a decaying exponential input, c = exp(-t/a), c_e(0) = c(0) = 1:
    # c_e = K exp(-t/a) + (1 - K) exp(-t/tau), K = a / (a - tau), solves tau c_e' = c - c_e
    a, tau = 20.0, 7.0
    k = a / (a - tau)
    ref = k * np.exp(-t / a) + (1.0 - k) * np.exp(-t / tau)
    np.testing.assert_allclose(effect_site(t, np.exp(-t / a), tau), ref, atol=2e-4)
    ex = compute_exposure("romosozumab:1", 60.0)
    i, j = int(np.argmax(ex.romo_ug_ml)), int(np.argmax(ex.romo_site_ug_ml))
    assert ex.t_days[j] > ex.t_days[i] and ex.romo_site_ug_ml[j] < ex.romo_ug_ml[i]
