"""Compartment switching (issue 15, ``femur.remodeling.switching``): the rule (crossings,
hysteresis, adjacency), the state carried over, the compartment courses on the current tags
(they still add up to the DXA-site change), and the FE path's switching independent of the
partition. The default thresholds switch nothing in a year on the built-in bones, so the
driver tests force switching with thresholds next to the baseline BV/TV.
"""

from __future__ import annotations

import numpy as np
import pytest

import femur  # noqa: F401
from mpi4py import MPI

from femur.core.errors import InputError
from femur.remodeling.model import RemodelingModel
from femur.remodeling.patient import Patient
from femur.remodeling.switching import (
    SwitchingParameters,
    decide_switches,
    switch_compartments,
    switching_parameters,
)
from femur.workflows.systemic import simulate_sites


def _state(f0, f, comp):
    m = RemodelingModel("placebo", Patient())
    s = m.initial_state(f0=np.asarray(f0, float), compartment=np.asarray(comp))
    s.f = np.asarray(f, float).copy()
    s.C = np.linspace(0.5, 1.5, s.n_elements)
    s.V1[:] = 0.7
    s.V2[:] = 0.8
    s.pore[:] = 0.01
    return s


def test_rule_crossings_hysteresis_and_adjacency():
    p = SwitchingParameters()  # 0.60 / 0.70
    # cortical: crosses below 0.6 | started below 0.6 (thin shell) | still above
    # trabecular: crosses above 0.7 next to the cortex | the same away from it | below
    f0 = [0.65, 0.46, 0.80, 0.65, 0.65, 0.30]
    f = [0.59, 0.40, 0.61, 0.71, 0.71, 0.69]
    comp = [1, 1, 1, 2, 2, 2]
    cort0 = np.array(comp) == 1
    near = np.array([False, False, False, True, False, True])
    s = _state(f0, f, comp)
    C = s.C.copy()
    to_t, to_c = switch_compartments(s, p, cort0, near_cortex=near)
    assert to_t.tolist() == [True, False, False, False, False, False]
    assert to_c.tolist() == [False, False, False, True, False, False]
    assert s.compartment.tolist() == [2, 1, 1, 1, 2, 2]
    # carried over: trabecularised -> no canal lag, no porosity record; corticalised ->
    # cavities at the current resorption, porosity counted from BV/TV
    assert (s.V1[0], s.V2[0], s.pore[0]) == (1.0, 1.0, 0.0)
    assert (s.V1[3], s.V2[3]) == (C[3], C[3]) and s.pore[3] == pytest.approx(0.65 - 0.71)
    assert s.f.tolist() == f and s.C.tolist() == C.tolist()
    # hysteresis: the trabecularised element does not come back at 0.65, does above 0.70
    s.f[0] = 0.65
    assert not decide_switches(s, p, cort0)[1][0]
    s.f[0] = 0.71
    assert decide_switches(s, p, cort0)[1][0]  # a baseline-cortical element needs no neighbour
    # off, and ineligible elements
    assert not any(x.any() for x in decide_switches(s, SwitchingParameters(enabled=False), cort0))
    assert not decide_switches(s, p, cort0, eligible=np.zeros(6, bool))[1].any()


def test_parameters_checked():
    assert switching_parameters(None) == SwitchingParameters()
    assert switching_parameters(False).enabled is False
    with pytest.raises(InputError, match="trabecularise_below_bvtv"):
        SwitchingParameters(trabecularise_below_bvtv=0.8, corticalise_above_bvtv=0.7)
    with pytest.raises(InputError, match="switching"):
        switching_parameters("yes")


def test_default_thresholds_switch_nothing_in_a_year_and_off_is_identical():
    on = simulate_sites("placebo", 12)
    off = simulate_sites("placebo", 12, switching=False)
    sw = on.run["compartment_switches"]
    assert all(sw[site][k]["ever"] == 0 for site in sw for k in sw[site])
    assert "compartment_switches" not in off.run
    for k, v in off.compartments.items():
        assert np.array_equal(on.compartments[k], v), k


def test_systemic_trabecularisation_moves_bone_between_the_courses():
    """Thresholds just under the hip cortex's baseline BV/TV: placebo's loss turns the hip
    cortex trabecular; its bone leaves the cortical course for the trabecular one, and the
    two still add up to the total-hip aBMD change."""
    tc0 = simulate_sites("placebo", 12, sites=("total_hip",), switching=False)
    m = RemodelingModel("placebo", Patient())
    from femur.workflows.systemic import site_elements

    rho, _, cort = site_elements("total_hip", Patient())
    f0 = m.initial_state(density_g_cm3=rho, compartment=cort.astype(int)).f0[cort].min()
    p = SwitchingParameters(trabecularise_below_bvtv=f0 - 1e-4, corticalise_above_bvtv=0.95)
    tc = simulate_sites("placebo", 12, sites=("total_hip",), switching=p)
    sw = tc.run["compartment_switches"]["th"]["to_trabecular"]
    assert sw["now"] > 0 and 0 < sw["bmc_share_now"] <= 1
    c, t = tc.compartments["hip_cortical_bmc_pct"][-1], tc.compartments["hip_trabecular_bmc_pct"][-1]
    assert c < tc0.compartments["hip_cortical_bmc_pct"][-1] - 10.0  # cortex handed over
    assert t > tc0.compartments["hip_trabecular_bmc_pct"][-1] + 10.0
    sh = tc.compartment_baseline["hip_cortical_bmc_share"]
    rec = sh * tc.compartments["hip_cortical_bmc_pct"] + (1 - sh) * tc.compartments["hip_trabecular_bmc_pct"]
    assert np.allclose(rec, tc.bmd_pct["th"], atol=2e-3)
    # the tag drives the equations: the trabecularised cortex loses the cortical surface and
    # focal deficit, so the site's own course changes too
    assert tc.bmd_pct["th"][-1] != pytest.approx(tc0.bmd_pct["th"][-1], abs=1e-3)


def _fe_run(comm, lo_hi):
    from femur.workflows.simulation import Simulation

    sim = Simulation("romosozumab", 3, fe_interval_days=30, strength_months=(0,), mesh_size_mm=5.0,
                     bones=("femur",), progress=False, comm=comm, switching=SwitchingParameters(trabecularise_below_bvtv=lo_hi[0],
                                                                          corticalise_above_bvtv=lo_hi[1]))
    return sim.run()


def _forcing_thresholds(comm):
    """Thresholds that make the coarse femur switch both ways under romosozumab: just under
    the cortex's baseline BV/TV is not reached (romosozumab gains), so the cortex stays; a
    trabecular threshold just above the densest trabecular cell next to the cortex is."""
    from femur.geometry.compartments import cells_next_to
    from femur.workflows.bones import patient_bone

    bone = patient_bone("femur", Patient(), mesh_size_mm=5.0, comm=comm)
    m = RemodelingModel("romosozumab", Patient())
    cort = bone.compartment_mask("cortical")
    s = m.initial_state(density_g_cm3=bone.density.x.array, compartment=np.where(cort, 1, 2))
    near = cells_next_to(bone, cort) & ~cort
    no = bone.num_owned_cells
    hi = comm.allreduce(float(s.f0[:no][near[:no]].max()), op=MPI.MAX) + 1e-4
    lo = min(hi - 0.01, 0.05)
    return lo, hi


@pytest.mark.serial  # the switching rule; the FE path on two ranks has its own tests (CI time)
def test_fe_corticalisation_next_to_the_cortex():
    lo_hi = _forcing_thresholds(MPI.COMM_WORLD)
    tc = _fe_run(MPI.COMM_WORLD, lo_hi)
    sw = tc.run["compartment_switches"]["femur"]
    assert sw["to_cortical"]["now"] >= 1 and sw["to_trabecular"]["ever"] == 0, sw
    sh = tc.compartment_baseline["hip_cortical_bmc_share"]
    rec = sh * tc.compartments["hip_cortical_bmc_pct"] + (1 - sh) * tc.compartments["hip_trabecular_bmc_pct"]
    assert np.allclose(rec, tc.bmd_pct["th"], atol=1e-8)
    if MPI.COMM_WORLD.size > 1:
        ser = _fe_run(MPI.COMM_SELF, lo_hi)
        ss = ser.run["compartment_switches"]["femur"]
        for way in ("to_cortical", "to_trabecular"):
            # counts exactly; the volume share is a sum whose order depends on the partition
            assert {k: v for k, v in ss[way].items() if k != "volume_share_now"} == \
                {k: v for k, v in sw[way].items() if k != "volume_share_now"}, (way, ss, sw)
            assert np.isclose(ss[way].get("volume_share_now", 0.0), sw[way].get("volume_share_now", 0.0),
                              rtol=1e-12, atol=1e-15), (way, ss, sw)
        for k, v in tc.compartments.items():
            assert np.allclose(v, ser.compartments[k], rtol=1e-6, atol=1e-6), k


def test_neighbour_search_is_reused_only_while_the_tags_stay():
    """The cells next to the cortex are searched again exactly when some rank's tags change
    (the switching step reuses them otherwise), and then match a fresh search."""
    from femur.geometry.compartments import cells_next_to
    from femur.workflows.simulation import Simulation

    sim = Simulation("placebo", 1, mesh_size_mm=6.0, bones=("femur",), progress=False, strength_months=(0,))
    t = sim.tracks["femur"]
    cort = t.state.compartment == 1
    a = t._cells_next_to_cortex(cort)
    assert t._cells_next_to_cortex(cort.copy()) is a
    far = np.flatnonzero(~a[: t.bone.num_owned_cells])
    cort2 = cort.copy()
    if MPI.COMM_WORLD.rank == 0 and far.size:  # one rank's change: every rank searches again
        cort2[far[0]] = True
    b = t._cells_next_to_cortex(cort2)
    assert b is not a and np.array_equal(b, cells_next_to(t.bone, cort2))
    if MPI.COMM_WORLD.rank == 0 and far.size:
        assert b[far[0]] and not a[far[0]]
    t.close()


def test_a_cortex_that_switches_away_entirely_leaves_its_measures_undefined():
    """The built-in femur's cortex has one BV/TV, so it crosses a switching threshold all at
    once (as low-T-score women's femurs did in a 100-woman FREEDOM placebo arm). The run
    goes on: the hip cortex's porosity is then undefined (NaN in the course, null in the
    JSON, None at a study visit), not a KeyError."""
    import json

    from femur.workflows.simulation import Simulation, visit_course

    sim = Simulation("placebo", 2, mesh_size_mm=6.0, bones=("femur",), progress=False, strength_months=(0,),
                     switching=SwitchingParameters(trabecularise_below_bvtv=0.8249, corticalise_above_bvtv=0.999))
    f0 = sim.tracks["femur"].state.f0[sim.tracks["femur"].state.compartment == 1]
    assert np.ptp(f0) < 1e-12 and 0.8249 < f0[0] < 0.8251  # the premise: one cortical BV/TV
    tc = sim.run()
    po = tc.compartments["hip_cortical_porosity_pct"]
    assert np.isfinite(po[0]) and np.isnan(po[-1])
    assert tc.compartments["hip_cortical_bmc_pct"][-1] == pytest.approx(-100.0)
    assert json.loads(json.dumps(tc.to_dict(), allow_nan=False))["hip_cortical_porosity_pct"][-1] is None
    assert np.isnan(visit_course([{"a": 1.0}, {}], "a")[1])


@pytest.mark.serial
def test_study_case_with_an_undefined_measure_is_valid_json(monkeypatch):
    """A study case whose hip cortex switched away entirely writes valid JSON (null for the
    undefined porosity at the visits and in the monthly courses)."""
    import json

    import femur.study.evaluator as evaluator
    from femur.study import Study
    from femur.study.parse import load_study

    build = evaluator.simulation_for_record

    def forcing(record, comm, **kw):  # the threshold just under the patient's cortical BV/TV
        sim = build(record, comm, **kw)
        t = sim.tracks["femur"]
        f0 = float(t.state.f0[t.state.compartment == 1].max())
        t.switching = SwitchingParameters(trabecularise_below_bvtv=f0 - 1e-4, corticalise_above_bvtv=0.999)
        return sim

    monkeypatch.setattr(evaluator, "simulation_for_record", forcing)
    spec = load_study("frame").with_overrides(patients=1, months=2, strength_model="linear")
    rec = next(r for r in Study(spec).cases() if r["arm"] == "placebo")
    res = json.loads(json.dumps(evaluator.run_case(rec, MPI.COMM_SELF), allow_nan=False))
    assert res["monthly"]["hip_cortical_porosity_pct"][0] == 0.0
    assert res["monthly"]["hip_cortical_porosity_pct"][-1] is None
    assert res["visits"][-1]["hip_cortical_porosity_pct"] is None
