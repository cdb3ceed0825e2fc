"""The fracture-risk calibration: targets never romosozumab, the fit recovers known
parameters, the command runs end to end and refits from stored courses, and the stored
parameters are what a refit of the stored courses gives.

The evaluator is the closed-form test double ``tests/_risk_double.py`` (not the model)."""

from __future__ import annotations

import json
import math
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from femur.calibration import risk as cal
from femur.calibration.risk_fit import CalibrationData, _Prepared, carried_by_ratios, fit, model_value, ratio_value
from femur.calibration.risk_report import ratio_intervals, wilson
from femur.outcomes.risk import risk_concentration
from femur.calibration.risk_targets import CALIBRATION_STUDIES, HIP_COHORT, HIP_COHORT_SEED, RATIOS, TARGETS
from femur.core.datafiles import data_path
from femur.core.errors import InputError
from femur.outcomes import risk
from femur.outcomes.risk.parameters import FITTED_PARAMETERS, PARAMETER_FILE

TESTS_DIR = Path(__file__).resolve().parent
sys.path.insert(0, str(TESTS_DIR))
DOUBLE = "_risk_double:risk_double"

pytestmark = pytest.mark.serial


def test_targets_are_never_romosozumab():
    specs = cal.calibration_specs(2)
    for t in TARGETS:
        assert t.study in specs and (t.fallback_study is None or t.fallback_study in specs)
        assert "romosozumab" not in t.arm
        assert t.arm in [a.name for a in specs[t.study].arms]
    for r in RATIOS:
        assert r.study in CALIBRATION_STUDIES and "romosozumab" not in (r.arm + r.reference)
    assert CALIBRATION_STUDIES["frame"] == ("placebo",)
    assert not {"arch", "bridge"} & set(specs)
    for spec in specs.values():
        assert all(p.drug != "romosozumab" for a in spec.arms for p in a.regimen)


def test_hip_cohort_is_other_freedom_like_women():
    """The hip targets' cohort: FREEDOM's study file (inclusion, visits, placebo regimen),
    placebo arm only, its own seed (other women), its own size."""
    from femur.study.cohort import sample_patient

    specs = cal.calibration_specs(3, 7)
    hip, fr = specs[HIP_COHORT], specs["freedom"]
    assert hip.cohort.size == 7 and fr.cohort.size == 3 and hip.seed == HIP_COHORT_SEED != fr.seed
    assert [a.name for a in hip.arms] == ["placebo"] and hip.arms[0].regimen == fr.arms[0].regimen
    assert hip.cohort.inclusion == fr.cohort.inclusion and hip.visit_months == fr.visit_months
    assert hip.duration_months == fr.duration_months == 36
    a, b = sample_patient(0, hip.seed, hip.cohort), sample_patient(0, fr.seed, fr.cohort)
    assert a["age_years"] != b["age_years"]
    hip_targets = [t for t in TARGETS if t.study == HIP_COHORT]
    assert {t.key for t in hip_targets} == {"freedom_placebo_hip_m36", "hips_per_fall"}
    assert all(t.fallback_study == "freedom" for t in hip_targets)
    assert cal.calibration_specs(4)[HIP_COHORT].cohort.size == 4  # default: as many as the trials


def test_wilson_interval():
    lo, hi = wilson(0.5, 100)
    assert lo == pytest.approx(0.4038, abs=1e-4) and hi == pytest.approx(0.5962, abs=1e-4)


def test_top_women_of_the_concentration_line():
    """The women named are those of highest risk, in order, with the cohort's medians."""
    from types import SimpleNamespace

    from femur.calibration.risk_report import _top_note, _top_women

    fall = np.array([[3000.0, 2000.0, 2500.0], [1200.0, 900.0, 1000.0], [2800.0, 2100.0, 1500.0],
                     [3500.0, 2600.0, 2900.0]])[:, None, :]
    b = SimpleNamespace(fall_strength_n=fall, body_mass_kg=np.array([60.0, 50.0, 70.0, 80.0]),
                        soft_tissue_mm=np.array([30.0, 8.0, 20.0, 45.0]))
    top = _top_women(b, np.array([0.01, 0.5, 0.1, 0.0]), k=2)
    assert top["weakest_fall_strength_n"] == [900.0, 1500.0] and top["soft_tissue_mm"] == [8.0, 20.0]
    assert top["median_soft_tissue_mm"] == 25.0 and top["median_weakest_fall_strength_n"] == 1750.0
    note = _top_note(top)
    assert note == ("the 2 women of highest per-fall risk: trochanteric soft tissue 8-20 mm (cohort median 25), "
                    "body mass 50-70 kg (cohort median 65), weakest fall strength 900-1,500 N (cohort median 1,750)")
    b.soft_tissue_mm = None
    assert "soft tissue" not in _top_note(_top_women(b, np.array([0.01, 0.5, 0.1, 0.0]), k=2))


def test_risk_concentration():
    even = risk_concentration([0.01] * 10)
    assert even["effective_women"] == pytest.approx(10.0) and even["top_shares"][1] == pytest.approx(0.1)
    assert even["top_shares"][5] == pytest.approx(0.5) and even["n_women"] == 10
    one = risk_concentration([0.0, 0.3, 0.0, 0.0])
    assert one["effective_women"] == pytest.approx(1.0) and one["top_shares"] == {1: 1.0, 3: 1.0}
    two = risk_concentration([0.2, 0.2, 0.0, 0.0, 0.0, 0.0])  # (0.4)^2 / 0.08 = 2
    assert two["effective_women"] == pytest.approx(2.0) and two["top_shares"][1] == pytest.approx(0.5)
    for bad in ([], [0.0, 0.0], [0.1, -0.1, 0.5], [0.1, float("nan")]):
        with pytest.raises(ValueError, match="risk concentration"):
            risk_concentration(bad)


@pytest.fixture(scope="module")
def double_courses(tmp_path_factory):
    out = tmp_path_factory.mktemp("cal")
    specs = cal.calibration_specs(8)
    studies = cal.simulate(specs, out, evaluator=DOUBLE, progress=False)
    assert studies["fit1"]["vertebral_fracture_definition"] == "morphometric"
    assert studies["fpt"]["vertebral_fracture_definition"] == "semiquantitative"
    return studies


def _data(studies) -> CalibrationData:
    return CalibrationData({name: s["cases"] for name, s in studies.items()},
                           {name: cal.fracture_definition(name, s) for name, s in studies.items()})


#: the parameters the fits below are asked to find again
KNOWN = {"spine_log_h0": math.log(0.015), "spine_within_gradient": -8.0, "spine_between_gradient": -3.0,
         "spine_turnover_gradient": 0.6, "spine_prevalent_any": 1.7, "spine_prevalent_count": 0.8,
         "spine_morphometric_ascertainment": -0.5, "hip_log_strength_scale": math.log(0.55)}


def _known(data):
    """(fixed inputs, KNOWN, the prepared data, all values) of the known-parameter fits."""
    fixed = dict(risk.default_fixed(), reference_vertebral_strength_n=data.reference_strength_n())
    return fixed, dict(KNOWN), _Prepared(data, fixed), {**fixed, **KNOWN}


def _exact_ratios(prep, values):
    """The published ratios as the model gives them at ``values``, each with a +-30 % CI."""
    out = []
    for r in RATIOS:
        v = ratio_value(prep, r, values)
        out.append(replace(r, value=v, ci95=(v / 1.3, v * 1.3)))
    return out


def _made_targets(prep, values, n):
    """The role-"fit" targets as the model gives them at ``values``, each of size ``n``."""
    made = []
    for t in TARGETS:
        if t.role != "fit":
            continue
        if t.since_month is None:
            made.append(replace(t, value=model_value(prep, t, values), n=n))
        else:  # interval targets: the model's cumulative values at both months
            v = model_value(prep, replace(t, since_month=None, since_value=None), values)
            v0 = model_value(prep, replace(t, month=t.since_month, since_month=None, since_value=None), values)
            made.append(replace(t, value=v, since_value=v0, n=n))
    return made


def test_fit_recovers_known_parameters(double_courses):
    """Targets made by the model itself at known parameters (very large n): the fit finds
    those parameters again."""
    data = _data(double_courses)
    assert data.definitions["fit2"] == "morphometric" and data.definitions["freedom"] == "semiquantitative"
    fixed, true, prep, values = _known(data)
    made = _made_targets(prep, values, 1e7)
    res = fit(data, fixed, bootstrap=0, targets=made)
    for k, v in true.items():
        assert res.values[k] == pytest.approx(v, abs=2e-3), k
    assert res.dispersion["spine"]["chi2"] < 1e-3
    # held parameters stay where they are put, and are not in the covariance
    held = fit(data, fixed, fitted=[k for k in FITTED_PARAMETERS if k != "spine_between_gradient"],
               bootstrap=0, targets=made, start={"spine_between_gradient": -3.0})
    assert held.values["spine_between_gradient"] == -3.0 and "spine_between_gradient" not in held.names
    assert held.values["spine_within_gradient"] == pytest.approx(-8.0, abs=2e-3)


def test_bootstrap_is_paired_and_stratified(double_courses):
    data = _data(double_courses)
    rs = data.resample(np.random.Generator(np.random.PCG64(1)))
    assert rs.definitions == data.definitions
    for name, cases in rs.inputs.items():
        before = sorted(d["prevalent_vertebral_fractures"] or 0 for d in data.inputs[name])
        assert sorted(d["prevalent_vertebral_fractures"] or 0 for d in cases) == before
        arms = {}
        for d in cases:
            arms.setdefault(d["patient_index"], set()).add(d["arm"])
        assert len({frozenset(a) for a in arms.values()}) == 1  # every drawn patient in every arm


def test_published_ratios_pull_the_fitted_contrasts(double_courses):
    """ratio_weight > 0: the spine fit also weighs the published vertebral relative risks
    (log-normal, SE from the CI). Ratios the model gives at the true parameters leave the
    fit there; a published FREEDOM month-24 ratio below the model's pulls the fitted one
    down, the more the larger the weight; the hip ratios are never fitted."""
    data = _data(double_courses)
    fixed, true, prep, values = _known(data)
    exact = _exact_ratios(prep, values)
    res = fit(data, fixed, bootstrap=0, targets=_made_targets(prep, values, 1e7), ratio_weight=1.0, ratios=exact)
    for k, v in true.items():
        assert res.values[k] == pytest.approx(v, abs=2e-3), k
    assert set(res.ratio_keys) == {r.key for r in RATIOS if r.kind == "vertebral"} and res.ratio_weight == 1.0
    # a published FREEDOM M24 ratio 30 % below the model's, on targets of 2,000 women
    low = [replace(r, value=0.7 * r.value) if r.key == "freedom_rr_m24" else r for r in exact]
    made = _made_targets(prep, values, 2000)
    m24 = next(r for r in RATIOS if r.key == "freedom_rr_m24")
    got = []
    for w in (0.0, 1.0, 4.0):
        f = fit(data, fixed, bootstrap=0, targets=made, ratio_weight=w, ratios=low)
        got.append(ratio_value(_Prepared(data, f.fixed), m24, f.all_values()))
        assert f.values["hip_log_strength_scale"] == pytest.approx(true["hip_log_strength_scale"], abs=2e-3)
    assert got[0] > got[1] > got[2], got
    assert got[0] == pytest.approx(ratio_value(prep, m24, values), rel=1e-3)
    with pytest.raises(InputError, match="ratio_weight"):
        fit(data, fixed, bootstrap=0, targets=made, ratio_weight=-1.0)


def test_treated_arms_enter_through_their_ratios(double_courses):
    """treated_arms="ratios": a treated arm's incidence that a fitted ratio carries (its
    numerator) leaves the likelihood, so each trial's contrast counts once; moving it
    changes nothing, where "incidences" (session 18) follows it. The spine dispersion counts
    the ratios as observations. Without fitted ratios nothing is left out."""
    data = _data(double_courses)
    fixed, true, prep, values = _known(data)
    exact = _exact_ratios(prep, values)
    made = _made_targets(prep, values, 1e6)
    treated = {t.key for t in made if t.kind == "vertebral" and t.arm != "placebo"}
    assert treated and carried_by_ratios(made, [r for r in exact if r.kind == "vertebral"]) == tuple(
        t.key for t in made if t.key in treated)
    res = fit(data, fixed, bootstrap=0, targets=made, ratio_weight=1.0, ratios=exact, treated_arms="ratios")
    assert set(res.carried) == treated and res.treated_arms == "ratios"
    for k, v in true.items():
        assert res.values[k] == pytest.approx(v, abs=5e-3), k
    spine_fit = [t for t in made if t.kind == "vertebral" and t.key not in treated]
    assert res.dispersion["spine"]["n"] == len(spine_fit) + len(res.ratio_keys)
    # a treated arm's incidence far off: ignored when its ratio carries it, followed otherwise
    off = [replace(t, value=3 * t.value) if t.key == "freedom_denosumab_vertebral_m24" else t for t in made]
    moved = fit(data, fixed, bootstrap=0, targets=off, ratio_weight=1.0, ratios=exact, treated_arms="ratios")
    assert moved.values == res.values
    both = fit(data, fixed, bootstrap=0, targets=off, ratio_weight=1.0, ratios=exact, treated_arms="incidences")
    assert both.carried == () and abs(both.values["spine_within_gradient"] - true["spine_within_gradient"]) > 0.05
    # weight 0: no ratio fitted, so every arm's incidence stays in
    assert fit(data, fixed, bootstrap=0, targets=made, ratio_weight=0.0, treated_arms="ratios").carried == ()
    with pytest.raises(InputError, match="treated_arms"):
        fit(data, fixed, bootstrap=0, targets=made, ratio_weight=1.0, treated_arms="arms")


def test_calibration_command_end_to_end_and_refit(tmp_path, capsys):
    out = tmp_path / "q"
    res = cal.calibrate(patients=4, quick=True, out=out, evaluator=DOUBLE, bootstrap=3, progress=False,
                        strengths="linear")
    p = res["parameters"]
    assert set(p.values) == set(FITTED_PARAMETERS) and "QUICK" in p.status
    assert (out / "courses.json.gz").exists() and (out / PARAMETER_FILE).exists() and (out / "report.txt").exists()
    assert res["paths"]["figure"] == out / "calibration.png" and (out / "calibration.png").stat().st_size > 10_000
    assert "FREEDOM placebo, new vertebral fx, M12" in res["report"]
    conc = next(r for r in res["rows"] if r["key"] == "hip_risk_concentration")
    assert 1.0 <= conc["effective_women"] <= conc["n_women"] == 4
    assert "hip risk concentration (freedom_hip placebo): the 1 / 3 women" in res["report"]
    shares = conc["direction_shares"]
    assert list(shares) == ["lateral", "posterolateral", "anterolateral"]
    assert sum(shares.values()) == pytest.approx(1.0, rel=1e-12) and min(shares.values()) >= 0
    assert "hip fractures by fall direction: lateral " in res["report"]
    # every ratio carries the model's own interval over the calibration's parameter draws
    ratios = [r for r in res["rows"] if r["role"] == "ratio"]
    assert ratios and all(len(r["model_ci95"]) == 2 and r["model_ci95"][0] <= r["model_ci95"][1] for r in ratios)
    assert any(r["model_ci95"][1] > r["model_ci95"][0] for r in ratios)
    assert "overlaps the published CI" in res["report"]
    top = conc["top_women"]
    assert top["n"] == 3 and len(top["body_mass_kg"]) == 3 and len(top["weakest_fall_strength_n"]) == 3
    assert min(top["weakest_fall_strength_n"]) > 0 and "the 3 women of highest per-fall risk: " in res["report"]
    doc = json.loads((out / PARAMETER_FILE).read_text())
    prov = doc["provenance"]
    for key in ("targets", "seeds", "femur_version", "date", "command", "git_commit", "cohorts", "fixed",
                "fixed_sources", "covariance", "report", "fit_settings"):
        assert key in prov, key
    assert prov["cohorts"]["freedom"]["n_patients"] == 4 and prov["cohorts"]["sof_check"]["cases"] == 4
    assert prov["cohorts"][HIP_COHORT]["cases"] == 4 and prov["seeds"][HIP_COHORT] == HIP_COHORT_SEED
    assert np.array(prov["covariance"]["matrix"]).shape == (8, 8)
    # no covariance (every parameter held): each ratio's interval is its point value
    settings = dict(res["parameters"].provenance["fit_settings"], bootstrap=0)
    assert settings["ratio_weight"] == 1.0  # the default: the published vertebral ratios are fitted too
    # and the treated arms enter through them alone: their incidences are reported as checks
    assert settings["treated_arms"] == "ratios" and "each trial's treatment contrast enters once" in res["report"]
    carried = [r for r in res["rows"] if r.get("carried_by_ratio")]
    assert carried and all(r["role"] == "check" for r in carried)
    assert "(carried by its relative risk)" in " ".join(prov["targets"]["reported"])
    data, result = cal.fit_courses(cal.load_courses(out / "courses.json.gz"), settings)
    prep = _Prepared(data, result.fixed)
    flat = ratio_intervals(prep, replace(result, cov_targets=0 * result.cov_targets,
                                                     cov_cohort=0 * result.cov_cohort),
                           [r for r in RATIOS if r.study in data.batches], draws=5)
    by_key = {r["key"]: r for r in ratios}
    for key, (lo, hi) in flat.items():
        if np.isfinite(by_key[key]["model"]):
            assert lo == pytest.approx(by_key[key]["model"], rel=1e-9) and hi == pytest.approx(lo, rel=1e-9)
    # refit from the stored courses (no simulation): the same parameters
    again = cal.calibrate(quick=True, out=out, refit_only=True, bootstrap=3, strengths="linear")
    assert again["parameters"].values == p.values
    np.testing.assert_allclose(again["parameters"].covariance, p.covariance, rtol=1e-10, atol=1e-14)
    # the command line, refitting a given course file
    assert cal.main(["--refit-only", "--courses", str(out / "courses.json.gz"), "--out", str(tmp_path / "r"),
                     "--bootstrap", "0", "--hold", "spine_between_gradient=-2.5", "--strengths", "linear"]) == 0
    text = capsys.readouterr().out
    assert "spine_between_gradient" in text and "held" in text
    refit = risk.load_parameters(str(tmp_path / "r" / PARAMETER_FILE))
    assert refit.values["spine_between_gradient"] == -2.5
    assert cal.main(["--only", "tibia", "--quick", "--out", str(tmp_path / "x")]) == 2
    assert "no calibration study 'tibia'" in capsys.readouterr().err
    assert cal.main(["--only", HIP_COHORT, "--refit-only", "--out", str(tmp_path / "x")]) == 2
    assert "--refit-only" in capsys.readouterr().err
    assert cal.main(["--refit-only", "--courses", str(tmp_path / "none.json.gz"), "--out", str(tmp_path / "x")]) == 2
    assert "no stored calibration courses" in capsys.readouterr().err
    assert cal.main(["--hold", "nonsense=1", "--refit-only"]) == 2
    assert cal.main(["--ratio-weight", "-1", "--refit-only"]) == 2
    assert "--ratio-weight must be a finite number >= 0" in capsys.readouterr().err
    with pytest.raises(InputError, match="not a calibration course file"):
        (tmp_path / "bad.json.gz").write_bytes(__import__("gzip").compress(b'{"format": 99}'))
        cal.load_courses(tmp_path / "bad.json.gz")


def test_stored_parameters_are_what_the_stored_courses_give():
    """femur/data/fracture_risk.json: a refit of femur/data/fracture_risk_courses.json.gz
    with the settings the file records gives its values (and the target part of its
    covariance); the bootstrap (cohort) part is checked by the slow test below."""
    stored = risk.load_parameters("default")
    settings = dict(stored.provenance["fit_settings"], bootstrap=0)
    # the strengths the file was fitted to (the strength surrogate's, from the courses' linear
    # quantities, when its provenance says so)
    doc = cal.as_fitted(cal.load_courses(data_path(cal.COURSES_FILE)), stored.provenance)
    data, res = cal.fit_courses(doc, settings)
    # to a thousandth of each parameter's standard error: where the likelihood is flat (the
    # within-person gradient, SE ~3) the optimiser's stopping point moves by ~1e-5 between
    # scipy versions, which is nothing against the uncertainty the file reports
    cov = stored.provenance["covariance"]
    se = dict(zip(cov["names"], np.sqrt(np.diag(np.array(cov["matrix"])))))
    for k, v in stored.values.items():
        assert res.values[k] == pytest.approx(v, abs=max(1e-3 * se.get(k, 0.0), 1e-9)), k
    assert res.fixed == pytest.approx(stored.fixed, rel=1e-12)
    np.testing.assert_allclose(res.cov_targets, np.array(cov["targets_part"]), rtol=1e-4, atol=1e-10)


@pytest.mark.slow
def test_stored_covariance_with_bootstrap():
    stored = risk.load_parameters("default")
    doc = cal.as_fitted(cal.load_courses(data_path(cal.COURSES_FILE)), stored.provenance)
    _, res = cal.fit_courses(doc, stored.provenance["fit_settings"])
    # to a thousandth of se_i se_j (the bootstrap refits stop where the optimiser stops, which
    # moves a little between scipy versions; see the test above)
    se = np.sqrt(np.diag(np.asarray(stored.covariance)))
    assert np.all(np.abs(np.asarray(res.covariance) - np.asarray(stored.covariance)) <= 1e-3 * np.outer(se, se) + 1e-10)


def test_stored_courses_get_their_women_s_femur_anatomy_again():
    """Courses stored before the cases kept their femur's anatomy get it by drawing each
    woman again from the study's cohort and seed; a stored woman who is not the one drawn
    (another cohort definition) is refused, naming the case."""
    from femur.study.cohort import sample_patient
    from femur.workflows.bones import bone_anatomy

    spec = cal.calibration_specs(3)["fit2"]
    rec = sample_patient(2, spec.seed, spec.cohort)
    case = {"case_id": "p00002-placebo", "patient_index": 2, "age_years": rec["age_years"]}
    study = {"n_patients": 3, "seed": spec.seed, "cases": [case]}
    anatomy = cal.course_anatomy("fit2", study)
    assert anatomy[2] == bone_anatomy("femur", spec.model.mesh_size_mm, rec["femur_shape"])
    assert anatomy[2]["head_radius_mm"] == pytest.approx(rec["femur_shape"]["head_radius_mm"], rel=1e-9)
    with pytest.raises(InputError, match="p00002-placebo is not the study's woman 2"):
        cal.course_anatomy("fit2", {**study, "cases": [{**case, "age_years": rec["age_years"] + 1.0}]})
    with pytest.raises(InputError, match="seed"):
        cal.course_anatomy("fit2", {**study, "seed": spec.seed + 1})


def test_only_adds_a_study_to_stored_courses_and_old_courses_fall_back(tmp_path):
    """`--only freedom_hip` simulates the hip cohort alone and takes every other study's
    courses from the stored ones, recording when and at which commit each part ran; courses
    without the hip cohort (stored before it existed) evaluate the hip targets on FREEDOM's
    placebo arm, as before."""
    base = tmp_path / "base"
    cal.calibrate(patients=3, quick=True, out=base, evaluator=DOUBLE, bootstrap=0, progress=False,
                  strengths="linear")
    before = cal.load_courses(base / "courses.json.gz")
    out = tmp_path / "ext"
    res = cal.calibrate(patients=3, hip_patients=6, quick=True, out=out, evaluator=DOUBLE, bootstrap=0,
                        progress=False, only=[HIP_COHORT], courses=base / "courses.json.gz", strengths="linear")
    doc = cal.load_courses(out / "courses.json.gz")
    assert set(doc["studies"]) == set(before["studies"])
    assert len(doc["studies"][HIP_COHORT]["cases"]) == 6 and doc["studies"][HIP_COHORT]["n_patients"] == 6
    for name in set(before["studies"]) - {HIP_COHORT}:
        assert doc["studies"][name] == before["studies"][name], name
    assert doc["date"] == before["date"] and [e["studies"] for e in doc["extended"]] == [[HIP_COHORT]]
    assert doc["studies"][HIP_COHORT]["simulated"]["git_commit"] == doc["extended"][0]["git_commit"]
    assert f"; {HIP_COHORT}: " in res["report"].splitlines()[1]
    conc = next(r for r in res["rows"] if r["key"] == "hip_risk_concentration")
    assert conc["n_women"] == 6 and conc["cohort"] == f"{HIP_COHORT} placebo"
    # courses without the hip cohort: the hip targets fall back to FREEDOM's placebo arm
    old = {k: v for k, v in before.items() if k != "studies"}
    old["studies"] = {k: v for k, v in before["studies"].items() if k != HIP_COHORT}
    cal.save_courses(tmp_path / "old.json.gz", old["studies"], {k: v for k, v in old.items() if k != "studies"})
    res_old = cal.calibrate(quick=True, out=tmp_path / "o", refit_only=True, bootstrap=0,
                            courses=tmp_path / "old.json.gz", strengths="linear")
    keys = {r["key"] for r in res_old["rows"]}
    assert {"freedom_placebo_hip_m36", "hips_per_fall"} <= keys
    conc = next(r for r in res_old["rows"] if r["key"] == "hip_risk_concentration")
    assert conc["cohort"] == "freedom placebo" and conc["n_women"] == 3
    # a stored file of another strength model is refused
    other = dict(before, engine=dict(before["engine"], strength_model="nonlinear"))
    cal.save_courses(tmp_path / "nl.json.gz", other["studies"], {k: v for k, v in other.items() if k != "studies"})
    with pytest.raises(InputError, match="strength model"):
        cal.calibrate(patients=3, quick=True, out=tmp_path / "n", evaluator=DOUBLE, bootstrap=0, progress=False,
                      only=[HIP_COHORT], courses=tmp_path / "nl.json.gz")
    assert not (tmp_path / "n" / HIP_COHORT).exists()  # refused before anything was simulated
    with pytest.raises(InputError, match="no stored calibration courses"):
        cal.calibrate(patients=3, quick=True, out=tmp_path / "m", evaluator=DOUBLE, bootstrap=0, progress=False,
                      only=[HIP_COHORT], courses=tmp_path / "missing.json.gz")
