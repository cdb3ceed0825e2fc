"""FE-coupled remodeling of one patient (femur.workflows.simulation): invariants and contracts.

Calibration targets are asserted on the systemic model in test_calibration_targets.py;
here: steady state, bounds, rank invariance, FE-interval independence, bad input, and
the `femur simulate --json` contract.
"""

import json

import numpy as np
import pytest
from mpi4py import MPI

from femur.core.errors import InputError
from femur.workflows.simulation import Simulation

COARSE = dict(mesh_size_mm=5.0, progress=False)


@pytest.mark.serial  # nothing rank-specific; rank invariance has its own tests (CI time)
def test_no_drug_no_aging_is_steady(check):
    import femur.remodeling as rm

    sim = Simulation("placebo", 2, fe_interval_days=30, strength_months=(0, 2), aging=False, **COARSE)
    r = sim.run()
    for key in ("ls_bmd_pct", "th_bmd_pct", "fn_bmd_pct", "p1np_pct", "ctx_pct"):
        check(np.allclose(r.series[key], 0.0, atol=1e-9), f"{key} drifted: {r.series[key]}")
    for key, vals in r.strength_pct.items():
        check(np.allclose(vals, 0.0, atol=1e-6), f"{key} drifted: {vals}")
    assert isinstance(sim.patient, rm.Patient)


@pytest.mark.serial  # nothing rank-specific; rank invariance has its own tests (CI time)
def test_densities_stay_in_bounds_under_a_sequence(check):
    sim = Simulation("denosumab:2,romosozumab:2", 4, fe_interval_days=30, strength_months=(0,), **COARSE)
    sim.run()
    for tr in sim.tracks.values():
        rho = tr.bone.density.x.array
        check(np.all(np.isfinite(rho)) and rho.min() > 0 and rho.max() <= 2.3, "density out of bounds")
        f = tr.state.f
        check(f.min() >= 0.01 - 1e-12 and f.max() <= 0.99 + 1e-12, "BV/TV out of [0.01, 0.99]")


@pytest.mark.serial  # nothing rank-specific; rank invariance has its own tests (CI time)
def test_romosozumab_raises_bmd_and_strength_and_placebo_loses(check):
    romo = Simulation("romosozumab", 3, fe_interval_days=30, strength_months=(0, 3), **COARSE).run()
    plac = Simulation("placebo", 3, fe_interval_days=30, strength_months=(0, 3), **COARSE).run()
    for key in ("ls_bmd_pct", "th_bmd_pct", "fn_bmd_pct"):
        check(romo.series[key][-1] > 1.0, f"romosozumab {key} {romo.series[key][-1]}")
        check(-1.0 < plac.series[key][-1] < 0.0, f"placebo {key} {plac.series[key][-1]}")
    for key in ("vertebral_strength_pct", "femoral_fall_strength_pct", "femoral_stance_strength_pct"):
        check(romo.strength_pct[key][-1] > plac.strength_pct[key][-1], key)
    # romosozumab: formation marker up, resorption marker down (mechanism, not fitted here)
    check(max(romo.series["p1np_pct"]) > 30 and min(romo.series["ctx_pct"]) < -20, "markers")


# slow (CI time): rank invariance of a simulation stays in CI through
# test_ct_treatment::test_rank_invariant and test_parallel_invariance
@pytest.mark.slow
@pytest.mark.partition
def test_rank_invariant():
    """The distributed run (1 or 2 ranks) equals a COMM_SELF run of the same model."""
    vals = []
    for comm in (MPI.COMM_WORLD, MPI.COMM_SELF):
        r = Simulation("romosozumab", 2, fe_interval_days=30, strength_months=(0, 2), comm=comm,
                       **COARSE).run()
        vals.append(np.array([r.series["ls_bmd_pct"][-1], r.series["th_bmd_pct"][-1],
                              r.series["p1np_pct"][-1], r.strength["vertebral_strength_n"][-1],
                              r.strength["femoral_fall_strength_n"][-1]]))
    assert np.allclose(vals[0], vals[1], rtol=1e-8, atol=1e-10)


@pytest.mark.slow
def test_fe_interval_does_not_change_the_answer():
    """7- vs 30-day FE re-solves: BMD and strength changes agree within 0.05 points
    (measured 0.003 points at 12 months, default mesh)."""
    out = []
    for dt in (7, 30):
        r = Simulation("romosozumab", 6, fe_interval_days=dt, strength_months=(0, 6), **COARSE).run()
        out.append([r.series["ls_bmd_pct"][-1], r.series["th_bmd_pct"][-1],
                    r.strength_pct["vertebral_strength_pct"][-1], r.strength_pct["femoral_fall_strength_pct"][-1]])
    assert np.allclose(out[0], out[1], atol=0.05)


@pytest.mark.parametrize("kwargs, word", [
    (dict(treatment="romosozumab", months=0), "months"),
    (dict(treatment="romosozumab", months=-3), "months"),
    (dict(treatment="aspirin", months=3), "unknown drug"),
    (dict(treatment="romosozumab", months=3, fe_interval_days=0), "fe_interval_days"),
    (dict(treatment="romosozumab", months=3, bones=("tibia",)), "bones"),
])
def test_bad_input(kwargs, word):
    with pytest.raises(InputError, match=word):
        Simulation(**kwargs, **COARSE)


@pytest.mark.serial
def test_cli_simulate_json_contract(capsys, tmp_path):
    from femur.cli import main

    rc = main(["simulate", "--treatment", "romosozumab:1,denosumab:1", "--months", "2", "--mesh-size", "5",
               "--strength-months", "0,2", "--fe-interval-days", "30", "--json", "--out", str(tmp_path)])
    assert rc == 0
    d = json.loads(capsys.readouterr().out)
    n = len(d["months"])
    assert d["months"] == [0.0, 1.0, 2.0]
    compartments = ("hip_cortical_bmc_pct", "hip_trabecular_bmc_pct", "spine_cortical_bmc_pct",
                    "spine_trabecular_bmc_pct", "neck_cortical_thickness_pct", "hip_cortical_porosity_pct")
    for key in ("ls_bmd_pct", "th_bmd_pct", "fn_bmd_pct", "p1np_pct", "ctx_pct", "drug_serum_ug_per_ml",
                *compartments):
        assert len(d[key]) == n
    for key in ("ls_bmd_pct", "th_bmd_pct", "fn_bmd_pct", "p1np_pct", "ctx_pct", *compartments):
        assert abs(d[key][0]) < 1e-9  # change from baseline
    assert 0.3 < d["compartment_baseline"]["hip_cortical_bmc_share"] < 0.95
    assert d["strength_months"] == [0.0, 2.0]
    for key in ("vertebral_strength_pct", "femoral_fall_strength_pct", "femoral_stance_strength_pct"):
        assert len(d[key]) == 2 and d[key][0] == 0.0
    assert (tmp_path / "simulation.json").exists() and (tmp_path / "timecourse.png").exists()
    assert (tmp_path / "femur_density.bp").is_dir() and (tmp_path / "vertebra_density_change.png").exists()


def test_men_have_bigger_bones_and_no_menopause_step(check):
    import femur.remodeling as rm

    out = {}
    for sex in ("female", "male"):
        sim = Simulation("placebo", 1, patient=rm.Patient(sex=sex, age_years=71), bones=("vertebra",),
                         fe_interval_days=30, strength_months=(0,), **COARSE)
        vol = sim.comm.allreduce(float(sim.tracks["vertebra"].bone.cell_volumes()[
            : sim.tracks["vertebra"].bone.num_owned_cells].sum()), op=MPI.SUM)
        out[sex] = (vol, sim.run().series["ls_bmd_pct"][-1])
    check(out["male"][0] > 1.2 * out["female"][0], f"male vertebra volume {out}")
    # men: no menopause term, smaller untreated loss
    check(out["male"][1] > out["female"][1], f"male vs female placebo loss {out}")


@pytest.mark.serial  # nothing rank-specific; rank invariance has its own tests (CI time)
def test_fe_path_romosozumab_month_12_within_frame_bands():
    """The FE-coupled built-in bones (anatomical femur, mechanostat on) land in the FRAME
    calibration bands (about 12 s serial):
    LS 13.1 +- 2.5 %, TH 6.0 +- 1.5 %, spine above hip (the calibration ran on the systemic
    driver with these bones' DXA-site templates, mechanostat off)."""
    r = Simulation("romosozumab", 12, fe_interval_days=30, strength_months=(0,), progress=False).run()
    ls, th = r.series["ls_bmd_pct"][-1], r.series["th_bmd_pct"][-1]
    assert 10.6 <= ls <= 15.6 and 4.5 <= th <= 7.5 and ls > th, (ls, th)


@pytest.mark.parametrize("drug", ["romosozumab", "denosumab", "alendronate", "teriparatide"])
def test_patient_multipliers_move_the_response_the_right_way(drug, check):
    """The cohort's per-patient turnover and drug-response multipliers (femur.workflows.simulation):
    a stronger responder gains more on every drug; a high-turnover patient loses more on
    placebo; 1.0/1.0 is the calibrated model itself."""
    from femur.remodeling import ModelParameters, scale_for_patient
    from femur.workflows.systemic import simulate_sites

    base = ModelParameters()
    assert scale_for_patient(base, 1.0, 1.0) is base

    def ls(treatment, turnover=1.0, response=1.0):
        p = scale_for_patient(base, turnover, response)
        return simulate_sites(treatment, 6, params=p, sites=("lumbar_spine",)).ls_bmd_pct[-1]

    weak, mid, strong = (ls(drug, response=r) for r in (0.5, 1.0, 2.0))
    check(weak < mid < strong, f"{drug}: response 0.5/1/2 -> LS {weak:.2f} / {mid:.2f} / {strong:.2f}")
    lo, hi = ls("placebo", turnover=0.7), ls("placebo", turnover=1.5)
    check(hi < lo < 0, f"placebo: turnover 0.7 -> {lo:.2f}, 1.5 -> {hi:.2f}")


def test_simulation_copies_the_bones_it_is_given(check):
    """A Simulation works on copies: the caller's Bone (density, parameters) is unchanged."""
    from femur.remodeling import Patient
    from femur.workflows.bones import patient_bone

    bone = patient_bone("vertebra", Patient(), mesh_size_mm=5.0)
    before = bone.density.x.array.copy()
    params = dict(bone.parameters)
    r = Simulation("romosozumab", 1, vertebra_bone=bone, bones=("vertebra",), fe_interval_days=30,
                   strength_months=(0,), progress=False).run()
    check(r.ls_bmd_pct[-1] > 0.5, "the copy remodeled")
    check(np.array_equal(bone.density.x.array, before), "caller's density changed")
    check(bone.parameters == params and bone.density.name == "density_g_cm3", "caller's bone changed")


def test_default_strength_months_include_the_last_month():
    from femur.workflows.simulation import default_strength_months

    assert default_strength_months(36) == [0.0, 6.0, 12.0, 24.0, 36.0]
    assert default_strength_months(3) == [0.0, 3.0]
    assert default_strength_months(12) == [0.0, 6.0, 12.0]


def test_timecourse_save_uses_the_runs_communicator(mpi_tmp_path):
    """Each rank's own COMM_SELF run writes its files (not only world rank 0's)."""
    from femur.workflows.timecourse import TimeCourse

    z = np.zeros(2)
    tc = TimeCourse(driver="fe", treatment="placebo:1", regimen=[], months=np.array([0.0, 1.0]),
                    patient={"sex": "female", "age_years": 71.0, "fn_t_score": -2.5},
                    bmd_pct={"ls": z}, p1np_pct=z, ctx_pct=z, drug_serum_ug_per_ml=z, comm=MPI.COMM_SELF)
    out = mpi_tmp_path / f"rank{MPI.COMM_WORLD.rank}"
    tc.save(out)
    assert (out / "simulation.json").exists() and (out / "timecourse.png").exists()
    assert json.loads((out / "simulation.json").read_text())["ls_bmd_pct"] == [0.0, 0.0]


@pytest.mark.serial
def test_cli_help_says_what_a_bare_drug_means(capsys):
    from femur.cli import main

    with pytest.raises(SystemExit):
        main(["simulate", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "runs for the whole simulation" in text and "romosozumab is 12 monthly doses" in text
    assert "always the last month" in text


@pytest.mark.slow  # ~25 s: P2 pushovers at two strength months
def test_nonlinear_strength_model_in_a_run(check):
    """strength_model="nonlinear": the strength quantities come from pushovers (their
    0.2 %-offset yield loads too); the run says which model it used; romosozumab raises
    the nonlinear vertebral strength over 3 months."""
    r = Simulation("romosozumab", 3, fe_interval_days=30, strength_months=(0, 3), bones=("vertebra",),
                   strength_model="nonlinear", mesh_size_mm=6.0, progress=False).run()
    check(r.run["strength_model"] == "nonlinear", r.run)
    s, y = r.strength["vertebral_strength_n"], r.strength["vertebral_yield_load_n"]
    check(np.all(y > 0) and np.all(y <= s), f"offset yield {y} vs peak {s}")
    check(r.strength_pct["vertebral_strength_pct"][-1] > 0.0, f"{r.strength_pct}")


@pytest.mark.serial
def test_track_pushover_takes_the_linear_solves_moduli(monkeypatch):
    """A simulation's pushover sees the same mineral-aware moduli as its linear solves (not
    the density law on the apparent density, which differs once mineral has changed)."""
    import femur.workflows.tracks as tracks

    sim = Simulation("alendronate", 6, bones=("vertebra",), fe_interval_days=30, strength_months=(0,), **COARSE)
    sim.run()
    track = sim.tracks["vertebra"]
    linear_E = np.array(track.solvers["vertebral"][0].E.x.array)
    seen = {}
    monkeypatch.setattr(tracks, "solve_pushover", lambda bone, case, material, **kw: seen.update(E=material, **kw))
    track.pushover("vertebral")
    assert np.allclose(seen["E"], linear_E, rtol=1e-12)
    assert seen["yield_model"] is not None and seen["progress"] is False
    apparent = track.material.modulus_array(track.bone)
    assert np.max(np.abs(apparent / linear_E - 1.0)) > 1e-3  # mineral moved: the two laws differ
