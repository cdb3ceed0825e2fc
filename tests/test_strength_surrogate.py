"""The strength surrogate (femur.mechanics.surrogate, femur.calibration.strength_surrogate):
the power-law fit, its metrics, the stored-fit round trip, and the surrogate strength model
inside a simulation."""

import json
import shutil

import numpy as np
import pytest

from femur.calibration import strength_surrogate as ss
from femur.core.datafiles import DATA_DIR, write_fitted
from femur.core.errors import InputError
from femur.core.mpi import MPI
from femur.mechanics.surrogate import DATA_FILE, SurrogateFit, fit_log_linear, fit_log_ratio

# nothing here is rank-specific (fits, their files, one-process simulations); the MPI half of
# the test run would only repeat it (CI time)
pytestmark = pytest.mark.serial


def test_fit_recovers_a_power_law():
    rng = np.random.default_rng(0)
    X = np.exp(rng.uniform(5, 9, size=(40, 2)))
    y = np.exp(0.7) * X[:, 0] ** 0.8 * X[:, 1] ** 0.3
    assert np.allclose(fit_log_linear(X, y), [0.7, 0.8, 0.3], rtol=1e-10, atol=1e-10)


def test_prediction_by_hand_and_bad_features():
    fit = SurrogateFit("vertebral", ("load",), (np.log(2.0), 0.5))
    assert fit.predict({"load": 400.0}) == pytest.approx(40.0, rel=1e-12)
    with pytest.raises(InputError, match="feature 'load'"):
        fit.predict({"load": -1.0})
    with pytest.raises(InputError, match="expected 1\\+"):
        SurrogateFit("vertebral", ("volume",), (0.0, 1.0))
    with pytest.raises(InputError, match="too few"):
        fit_log_linear(np.ones((3, 2)), np.ones(3))


def test_geometry_terms_by_hand_and_their_errors():
    """A fit with anatomy terms: log F = c0 + c1 log load + g * head radius; the anatomy is
    required, named, and kept through the data-file dict."""
    fit = SurrogateFit("femoral_fall", ("load",), (np.log(2.0), 0.5, 0.1), ("head_radius_mm",))
    assert fit.predict({"load": 400.0}, {"head_radius_mm": 20.0}) == pytest.approx(40.0 * np.exp(2.0), rel=1e-12)
    with pytest.raises(InputError, match="anatomy 'head_radius_mm'"):
        fit.predict({"load": 400.0})
    with pytest.raises(InputError, match="0\\+ of"):
        SurrogateFit("femoral_fall", ("load",), (0.0, 1.0, 1.0), ("shoe_size",))
    with pytest.raises(InputError, match="3 coefficients"):
        SurrogateFit("femoral_fall", ("load",), (0.0, 1.0, 1.0))
    assert fit.to_dict() == {"features": ["load"], "coef": [np.log(2.0), 0.5, 0.1], "geometry": ["head_radius_mm"]}
    ranged = SurrogateFit("femoral_fall", ("load",), fit.coef, ("head_radius_mm",), {"head_radius_mm": (20.0, 26.0)})
    assert ranged.outside_range({"head_radius_mm": 23.0}) == []
    assert ranged.outside_range({"head_radius_mm": 27.5}) == ["head_radius_mm 27.5 (training 20.0-26.0)"]
    rng = np.random.default_rng(5)
    X = np.exp(rng.uniform(5, 9, size=(30, 1)))
    G = rng.uniform(18, 28, size=(30, 2))
    y = np.exp(0.7 + 0.05 * G[:, 0] - 0.02 * G[:, 1]) * X[:, 0] ** 0.8
    assert np.allclose(fit_log_linear(X, y, G), [0.7, 0.8, 0.05, -0.02], atol=1e-9)


def test_change_part_by_hand_and_its_errors():
    """A fit with a change part: a treated bone's strength is the level of its reference
    (month-0) bone times the ratio power law; without a reference the level is its own."""
    fit = SurrogateFit("vertebral", ("load",), (np.log(2.0), 0.5), change_features=("stiffness",),
                       change_coef=(0.8,))
    ref, now = {"load": 400.0, "stiffness": 1000.0}, {"load": 900.0, "stiffness": 1210.0}
    assert fit.predict(ref) == pytest.approx(40.0, rel=1e-12)
    assert fit.predict(ref, None, ref) == pytest.approx(40.0, rel=1e-12)
    assert fit.predict(now, None, ref) == pytest.approx(40.0 * 1.21 ** 0.8, rel=1e-12)
    assert fit.predict(now) == pytest.approx(60.0, rel=1e-12)  # no reference: its own level
    assert SurrogateFit.from_dict("vertebral", fit.to_dict()) == fit
    with pytest.raises(InputError, match="reference feature 'stiffness'"):
        fit.predict(now, None, {"load": 400.0})
    with pytest.raises(InputError, match="one slope each"):
        SurrogateFit("vertebral", ("load",), (0.0, 1.0), change_features=("stiffness",), change_coef=())
    with pytest.raises(InputError, match="change features"):
        SurrogateFit("vertebral", ("load",), (0.0, 1.0), change_features=("volume",), change_coef=(1.0,))
    assert np.allclose(fit_log_ratio(np.array([[1.1], [1.3], [0.9]]), np.array([1.1, 1.3, 0.9]) ** 0.7), [0.7])


def test_change_part_learns_the_within_woman_slope():
    """Women whose strength goes with their stiffness more steeply between them (their
    anatomy follows their stiffness) than within one woman on treatment: the change part
    recovers the within-woman slope from the training pairs, and its test change error is
    far below that of the pooled power law alone."""
    rng = np.random.default_rng(5)

    def women(n, split, first):
        rows = []
        for p in range(first, first + n):
            load0, stiff0 = rng.uniform(2000, 6000), rng.uniform(3000, 20000)
            level = 1.5 * load0 ** 0.5 * stiff0 ** 0.6
            for state, g in (("baseline", 1.0), ("romosozumab", rng.uniform(1.05, 1.3)),
                             ("denosumab", rng.uniform(1.0, 1.1)), ("teriparatide", rng.uniform(1.0, 1.2))):
                h = 1.0 if state == "baseline" else rng.uniform(0.95, 1.05)
                load, stiff = load0 * g * h, stiff0 * g ** 0.7
                y = level * (stiff / stiff0) ** 1.1 * np.exp(0.002 * rng.standard_normal())
                rows.append({"patient": p, "split": split, "state": state, "prefix": "femoral_fall", "load": load,
                             "stiffness": stiff, "strain_load": None, "nonlinear_strength_n": y, "converged": True})
        return rows

    rows = women(20, "train", 0) + women(12, "test", 20)
    values, report = ss.fit(rows, ["femoral_fall"])
    v = values["femoral_fall"]
    assert v["change_features"] == ["stiffness"] and v["change_coef"][0] == pytest.approx(1.1, abs=0.02)
    assert report["femoral_fall"]["change_features"] == ["stiffness"]
    test = [r for r in rows if r["split"] == "test"]
    use = ss._usable(test, "femoral_fall", tuple(v["features"]))
    pooled = ss.metrics(use, ss.predict(v["coef"], use, tuple(v["features"])))
    assert report["femoral_fall"]["test"]["change_mae_pp"] < 0.5 < pooled["change_mae_pp"]


def _rows(n_patients, split, rng, noise=0.0, first=0):
    """Synthetic samples whose nonlinear strength is 1.5 load^0.8 stiffness^0.3 (x noise)."""
    rows = []
    for p in range(first, first + n_patients):
        load0, stiff0 = rng.uniform(2000, 6000), rng.uniform(3000, 20000)
        for state, g in (("baseline", 1.0), ("romosozumab", rng.uniform(1.05, 1.3)), ("denosumab", rng.uniform(1.0, 1.1))):
            load, stiff = load0 * g, stiff0 * g ** 0.7
            y = 1.5 * load**0.8 * stiff**0.3 * np.exp(noise * rng.standard_normal())
            rows.append({"patient": p, "split": split, "state": state, "prefix": "femoral_fall", "load": load,
                         "stiffness": stiff, "strain_load": None, "nonlinear_strength_n": y, "converged": True})
    return rows


def test_change_metrics_by_hand():
    rows = [{"patient": 0, "prefix": "v", "state": "baseline", "nonlinear_strength_n": 100.0},
            {"patient": 1, "prefix": "v", "state": "baseline", "nonlinear_strength_n": 200.0},
            {"patient": 0, "prefix": "v", "state": "romosozumab", "nonlinear_strength_n": 110.0},
            {"patient": 1, "prefix": "v", "state": "romosozumab", "nonlinear_strength_n": 220.0}]
    m = ss.metrics(rows, [100.0, 200.0, 112.0, 220.0])
    assert m["change_mae_pp"] == pytest.approx(1.0) and m["change_max_pp"] == pytest.approx(2.0)
    assert m["mae_n"] == pytest.approx(0.5) and m["n_changes"] == 2


def test_fit_chooses_features_and_judges_the_target(tmp_path):
    rng = np.random.default_rng(1)
    rows = _rows(12, "train", rng, 0.002) + _rows(8, "test", rng, 0.002, first=12)
    values, report = ss.fit(rows, ["femoral_fall"])
    assert values["femoral_fall"]["features"] == ["load", "stiffness"]
    assert np.allclose(values["femoral_fall"]["coef"][1:], [0.8, 0.3], atol=0.05)
    assert report["femoral_fall"]["test"]["r2"] > 0.99 and report["femoral_fall"]["meets_target"]
    # a strength that has nothing to do with the features misses the target
    for r in rows:
        r["nonlinear_strength_n"] = float(rng.uniform(1000, 9000))
    _, bad = ss.fit(rows, ["femoral_fall"])
    assert not bad["femoral_fall"]["meets_target"]


def test_fit_adds_an_anatomy_term_only_where_it_explains_the_strength():
    """Forward selection on the training patients: a strength that also depends on each
    woman's head radius gets that term (and meets the target with it); anatomy that has
    nothing to do with the strength is left out."""
    rng = np.random.default_rng(3)
    rows = _rows(20, "train", rng, 0.005) + _rows(12, "test", rng, 0.005, first=20)
    radius = {p: rng.uniform(19, 27) for p in {r["patient"] for r in rows}}
    noise = {p: {"neck_shaft_angle_deg": rng.uniform(115, 140), "anteversion_deg": rng.uniform(0, 25)}
             for p in radius}
    for r in rows:
        r["anatomy"] = {"head_radius_mm": radius[r["patient"]], **noise[r["patient"]]}
    values, report = ss.fit(rows, ["femoral_fall"])
    assert "geometry" not in values["femoral_fall"] and report["femoral_fall"]["geometry"] == []
    for r in rows:
        r["nonlinear_strength_n"] *= float(np.exp(0.08 * (radius[r["patient"]] - 23.0)))
    values, report = ss.fit(rows, ["femoral_fall"])
    assert values["femoral_fall"]["geometry"] == ["head_radius_mm"]
    train_radii = [radius[p] for p in range(20)]
    assert values["femoral_fall"]["geometry_range"] == {"head_radius_mm": [min(train_radii), max(train_radii)]}
    assert values["femoral_fall"]["coef"][-1] == pytest.approx(0.08, abs=0.01)
    assert report["femoral_fall"]["meets_target"] and report["femoral_fall"]["test"]["r2"] > 0.99
    assert "load+stiffness+head_radius_mm" in report["femoral_fall"]["cv_rmse_log"]
    assert "load+stiffness+head_radius_mm" in ss.report_table(report)
    # on 9 training women (fewer than ss.GEOMETRY_PATIENTS_PER_TERM) no anatomy term is fitted
    few = [r for r in rows if r["patient"] < 9 or r["split"] == "test"]
    values, report = ss.fit(few, ["femoral_fall"])
    assert "geometry" not in values["femoral_fall"] and report["femoral_fall"]["geometry"] == []


def test_selection_rule_on_synthetic_women():
    """The forward selection's threshold (ss.GEOMETRY_MIN_GAIN) on synthetic training sets
    like the real one (30 women x 3 states, 3 % per-sample and 3 % per-woman noise, six
    anatomy candidates): an anatomy term with no effect gets in rarely, a weak true one
    (1.2 %/mm of head radius) is found in most."""
    spurious = found = 0
    seeds = range(20)
    keys = ("neck_shaft_angle_deg", "anteversion_deg", "neck_length_mm", "offset_mm", "neck_width_mm")
    for seed in seeds:
        rng = np.random.default_rng(100 + seed)
        rows = _rows(30, "train", rng, 0.03)
        radius = {p: rng.uniform(19, 27) for p in range(30)}
        other = {p: dict(zip(keys, rng.uniform(20, 140, size=len(keys)))) for p in range(30)}
        offset = {p: rng.normal(0.0, 0.03) for p in range(30)}
        for r in rows:
            r["anatomy"] = {"head_radius_mm": radius[r["patient"]], **other[r["patient"]]}
            r["nonlinear_strength_n"] *= float(np.exp(offset[r["patient"]]))
        spurious += bool(ss.choose_model(rows, "femoral_fall")[1])
        for r in rows:
            r["nonlinear_strength_n"] *= float(np.exp(0.012 * (radius[r["patient"]] - 23.0)))
        found += "head_radius_mm" in ss.choose_model(rows, "femoral_fall")[1]
    assert spurious / len(seeds) <= 0.15
    assert found / len(seeds) >= 0.85


def test_anatomy_of_a_patient_is_her_built_femur_s():
    """The samples' anatomy terms (drawn again from the cohort, no mesh) are what her built
    femur records."""
    from femur.remodeling.patient import Patient
    from femur.study.cohort import sample_patient
    from femur.workflows.bones import bone_anatomy, patient_bone

    s = ss.Settings()
    rec = sample_patient(7, s.seed, ss.cohort())
    bone = patient_bone("femur", Patient.from_record(rec), s.mesh_size_mm, rec["femur_shape"], MPI.COMM_SELF)
    anatomy = ss.patient_anatomy(7, s)
    for key in ("head_radius_mm", "neck_length_mm", "neck_shaft_angle_deg", "anteversion_deg", "offset_mm"):
        assert anatomy[key] == pytest.approx(bone.parameters["anatomy"][key], rel=1e-12), key
    assert anatomy["head_radius_mm"] == pytest.approx(rec["femur_shape"]["head_radius_mm"], rel=1e-9)
    assert bone_anatomy("vertebra") == {}
    rows = ss.with_anatomy([{"patient": 7, "prefix": "femoral_fall"}, {"patient": 7, "prefix": "vertebral"}], s)
    assert rows[0]["anatomy"] == anatomy and "anatomy" not in rows[1]


def test_written_fit_is_reproduced_by_a_refit(tmp_path):
    rng = np.random.default_rng(2)
    rows = _rows(6, "train", rng, 0.01) + _rows(3, "test", rng, 0.01, first=6)
    values, report = ss.fit(rows, ["femoral_fall"])
    path = write_fitted(DATA_FILE, values, path=tmp_path / DATA_FILE, command="test", targets="synthetic",
                        extra={"samples": rows, "report": report})
    stored, refit, _ = ss.refit_only(path)
    assert stored["femoral_fall"]["features"] == refit["femoral_fall"]["features"]
    assert np.allclose(stored["femoral_fall"]["coef"], refit["femoral_fall"]["coef"], rtol=1e-12)


def test_shipped_fit_is_reproduced_by_a_refit():
    """The package's fitted surrogate (if this installation has one) is what its stored
    samples give."""
    if not (DATA_DIR / DATA_FILE).is_file():
        pytest.skip(f"femur/data/{DATA_FILE} is not fitted yet (python -m femur.calibration.strength_surrogate)")
    stored, refit, _ = ss.refit_only(DATA_DIR / DATA_FILE)
    for p in stored:
        assert np.allclose(stored[p]["coef"], refit[p]["coef"], rtol=1e-10)


@pytest.fixture
def data_dir_with_fit(without_surrogate_fit):
    """A data folder with the package's files plus a hand-made surrogate: the vertebra's
    strength is half its linear first-element load."""
    d = without_surrogate_fit
    write_fitted(DATA_FILE, {"vertebral": {"features": ["load"], "coef": [float(np.log(0.5)), 1.0],
                                           "change_features": ["load"], "change_coef": [0.5]}},
                 path=d / DATA_FILE, command="test", targets="hand-made")
    return d


def test_surrogate_strength_model_in_a_simulation(data_dir_with_fit):
    from femur.workflows.simulation import Simulation

    run = dict(bones=("vertebra",), fe_interval_days=30, strength_months=(0, 1), mesh_size_mm=5.0, progress=False)
    lin = Simulation("romosozumab", 1, strength_model="linear", **run).run()
    sur = Simulation("romosozumab", 1, strength_model="surrogate", **run).run()
    lin_load = lin.strength["vertebral_strength_n"]
    # month 0 is the reference: its level, then the change part's half power of the load ratio
    assert sur.strength["vertebral_strength_n"][0] == pytest.approx(0.5 * lin_load[0], rel=1e-9)
    assert sur.strength["vertebral_strength_n"][1] == pytest.approx(
        0.5 * lin_load[0] * (lin_load[1] / lin_load[0]) ** 0.5, rel=1e-9)
    assert abs(lin_load[1] / lin_load[0] - 1.0) > 1e-3  # the bone did change
    for i in range(2):
        assert sur.strength["vertebral_stiffness_n_per_mm"][i] == pytest.approx(
            lin.strength["vertebral_stiffness_n_per_mm"][i], rel=1e-9)
    # the femur needs fits for all its load cases: a clear error names the missing ones
    with pytest.raises(InputError, match="femoral_stance.*strength_surrogate"):
        Simulation("romosozumab", 1, strength_model="surrogate", bones=("femur",), mesh_size_mm=5.0, progress=False)


def test_quick_settings_and_bad_cases():
    s = ss.Settings(**ss.QUICK).check()
    assert s.quick and s.train == 3 and set(s.cases) == {"femoral_fall", "vertebral"}
    with pytest.raises(InputError, match="unknown load case"):
        ss.Settings(cases=("femoral_twist",)).check()


def test_work_folder_resume_rules(tmp_path):
    """A work folder resumes with more patients or other load cases (samples are per patient
    and load case), but not with settings that change the samples themselves."""
    path = tmp_path / "settings.json"
    s = ss.Settings(**ss.QUICK).check()
    assert ss._check_resume(path, s) is None and path.exists()
    more = ss.Settings(**{**ss.QUICK, "train": 5, "cases": ("femoral_fall",)}).check()
    assert ss._check_resume(path, more) is None
    other = ss.Settings(**{**ss.QUICK, "mesh_size_mm": 4.0}).check()
    problem = ss._check_resume(path, other)
    assert problem and "settings.json" in problem and "mesh_size_mm=6.0, now 4.0" in problem
    assert ss.sample_path(tmp_path, 7, "vertebral").name == "patient_0007_vertebral.json"


def test_samples_count_their_data_versions():
    v = ss.model_versions()
    assert set(v) == {"femur_version", *ss.SHAPING_DATA} and all(len(v[n]) == 12 for n in ss.SHAPING_DATA)
    rows = [{"split": "train", "versions": v}, {"split": "train", "versions": v},
            {"split": "test", "versions": {**v, "cell_model.json": "0" * 12}}, {"split": "test"}]
    counts = ss.sample_versions(rows)
    assert len(counts) == 3 and counts["unrecorded"] == {"test": 1}
    assert sorted(sum(c.values()) for c in counts.values()) == [1, 1, 2]


def test_cases_on_fewer_patients(tmp_path):
    """``--cases PREFIX:N`` samples a load case on the first N patients of each split: the
    per-case patients, the parse errors, and a resumed work folder that reads only those
    samples (every file present: nothing is computed)."""
    kw = ss._parse_cases("femoral_fall,vertebral:3")
    assert kw == {"cases": ("femoral_fall", "vertebral"), "case_patients": (("vertebral", 3),)}
    s = ss.Settings(train=5, test=4, **kw).check()
    assert s.split_sizes("femoral_fall") == (5, 4) and s.split_sizes("vertebral") == (3, 3)
    assert s.cases_of(2) == ("femoral_fall", "vertebral") and s.cases_of(3) == ("femoral_fall",)
    assert s.cases_of(7) == ("femoral_fall", "vertebral") and s.cases_of(8) == ("femoral_fall",)
    with pytest.raises(InputError, match="PREFIX:N"):
        ss._parse_cases("vertebral:ten")
    with pytest.raises(InputError, match="at least 3"):
        ss.Settings(cases=("vertebral",), case_patients=(("vertebral", 2),)).check()
    with pytest.raises(InputError, match="vertebral:5"):
        ss.Settings(cases=("femoral_fall",), case_patients=(("vertebral", 5),)).check()
    # an existing folder made with every patient of both cases resumes with the subset
    ss._check_resume(tmp_path / "settings.json", ss.Settings(train=5, test=4, cases=("femoral_fall", "vertebral")))
    for i in range(9):
        for prefix in s.cases:
            row = {"patient": i, "split": "train" if i < 5 else "test", "prefix": prefix}
            ss.sample_path(tmp_path, i, prefix).write_text(json.dumps([row]))
    rows = ss.collect(s, tmp_path, comm=MPI.COMM_SELF)
    vert = sorted(r["patient"] for r in rows if r["prefix"] == "vertebral")
    assert vert == [0, 1, 2, 5, 6, 7] and sum(r["prefix"] == "femoral_fall" for r in rows) == 9


def test_only_patients_that_lack_a_sample_are_dealt_out(tmp_path):
    """A run that adds a load case to a few patients deals out those patients only (not every
    patient round-robin, which left one rank with most of the work), each with what it lacks."""
    for i in range(9):
        ss.sample_path(tmp_path, i, "femoral_fall").write_text("[]")
    s = ss.Settings(train=5, test=4, cases=("femoral_fall", "femoral_stance"),
                    case_patients=(("femoral_stance", 3),)).check()
    todo = ss.pending(s, tmp_path)
    assert todo == [(i, split, ["femoral_stance"]) for i, split in
                    [(0, "train"), (1, "train"), (2, "train"), (5, "test"), (6, "test"), (7, "test")]]
    assert [job[0] for job in todo[0::2]] == [0, 2, 6] and [job[0] for job in todo[1::2]] == [1, 5, 7]
    ss.sample_path(tmp_path, 3, "femoral_fall").unlink()
    assert (3, "train", ["femoral_fall"]) in ss.pending(s, tmp_path)
    assert ss.pending(ss.Settings(train=5, test=4, cases=("femoral_fall",)), tmp_path) == [(3, "train", ["femoral_fall"])]


def _data_dir(tmp_path, monkeypatch, report=None, mode="full"):
    """A data folder with the package's files and, if ``report`` is given, a surrogate fit
    whose stored test report is ``{prefix: (test R2, change error pp[, anchored test R2])}``."""
    d = tmp_path / "data"
    shutil.copytree(DATA_DIR, d, ignore=shutil.ignore_patterns(DATA_FILE))
    if report is not None:
        rep = {}
        for p, (r2, pp, *anchored) in report.items():
            rep[p] = {"features": ["load"], "patients": {"train": 30, "test": 30},
                      "test": {"r2": r2, "change_mae_pp": pp}, "meets_target": ss._meets({"r2": r2, "change_mae_pp": pp})}
            if anchored:
                a = {"r2": anchored[0], "change_mae_pp": pp}
                rep[p]["anchored"] = dict(a, meets_target=ss._meets(a))
        write_fitted(DATA_FILE, {p: {"features": ["load"], "coef": [0.0, 1.0]} for p in report},
                     path=d / DATA_FILE, command="test", targets="hand-made",
                     extra={"mode": mode, "report": rep, "settings": {"mesh_size_mm": 4.0}})
    monkeypatch.setenv("FEMUR_DATA_DIR", str(d))
    return d


FEMUR_CASES = ("femoral_stance", "femoral_fall", "femoral_fall_posterolateral", "femoral_fall_anterolateral")


def test_auto_strength_model_follows_the_surrogate_validation(tmp_path, monkeypatch):
    """"auto" runs the model that meets the surrogate's accuracy target: the surrogate when
    every load case of the bones has a full fit that meets it, the nonlinear pushover when a
    fit misses it, the linear load while a case has no validated fit."""
    from functools import partial

    from femur.mechanics.strength import resolve_strength_model as resolve

    resolve_strength_model = partial(resolve, mesh_size_mm=4.0)  # the fit's (trial) mesh

    _data_dir(tmp_path / "none", monkeypatch)
    model, why = resolve_strength_model("auto", ("vertebra",))
    assert model == "linear" and "not fitted" in why
    assert resolve_strength_model("nonlinear", ("vertebra",)) == ("nonlinear", "as given")

    _data_dir(tmp_path / "quick", monkeypatch, {"vertebral": (0.99, 0.1)}, mode="quick")
    model, why = resolve_strength_model("auto", ("vertebra",))
    assert model == "linear" and "quick" in why

    _data_dir(tmp_path / "spine", monkeypatch, {"vertebral": (0.95, 0.3), "femoral_fall": (0.93, 1.1)})
    assert resolve_strength_model("auto", ("vertebra",))[0] == "surrogate"
    model, why = resolve_strength_model("auto", ("femur", "vertebra"))
    assert model == "linear" and "femoral_stance" in why and "femoral_fall_anterolateral" in why

    # bones unlike the fit's: another mesh size, the default meshes, a scan
    model, why = resolve("auto", ("vertebra",), mesh_size_mm=2.0)
    assert model == "linear" and "4 mm meshes" in why and "2 mm" in why
    assert resolve("auto", ("vertebra",))[0] == "linear"
    model, why = resolve("auto", ("vertebra",), mesh_size_mm=4.0, builtin=False)
    assert model == "linear" and "built-in bones" in why

    ok = {p: (0.92, 1.5) for p in FEMUR_CASES}
    _data_dir(tmp_path / "all", monkeypatch, {"vertebral": (0.95, 0.3), **ok})
    model, why = resolve_strength_model("auto", ("femur", "vertebra"))
    assert model == "surrogate" and "meets its accuracy target" in why

    _data_dir(tmp_path / "miss", monkeypatch, {"vertebral": (0.95, 0.3), **ok, "femoral_stance": (0.85, 1.0)})
    model, why = resolve_strength_model("auto", ("femur", "vertebra"))
    assert model == "hybrid" and "femoral_stance: test R2 0.850" in why
    assert "pushover runs for femoral_stance at every strength visit" in why
    assert resolve_strength_model("auto", ("vertebra",))[0] == "surrogate"

    # every case misses: the pushover for all of them
    _data_dir(tmp_path / "all-miss", monkeypatch, {"vertebral": (0.8, 0.3), **{p: (0.92, 2.5) for p in FEMUR_CASES}})
    model, why = resolve_strength_model("auto", ("femur", "vertebra"))
    assert model == "nonlinear" and "femoral_fall_anterolateral: test R2 0.920, change error 2.50 pp" in why

    with pytest.raises(InputError, match="unknown strength model 'fast'.*auto"):
        resolve_strength_model("fast", ("vertebra",))


def test_hybrid_model_splits_the_load_cases_by_their_test(tmp_path, monkeypatch):
    """"hybrid": the surrogate for the load cases whose fit meets its accuracy target, the
    pushover at the first visit then the fit's change for those that meet it only when so
    anchored, the pushover at every visit for the others; the other models predict all or
    none."""
    from femur.mechanics.strength import resolve_strength_model, split_cases

    cases = ("vertebral",) + FEMUR_CASES
    _data_dir(tmp_path, monkeypatch, {"vertebral": (0.95, 0.3), "femoral_fall": (0.93, 1.1),
                                      "femoral_stance": (0.85, 1.0, 0.97), "femoral_fall_posterolateral": (0.95, 2.1, 0.99)})
    assert split_cases("hybrid", cases) == (["vertebral", "femoral_fall"], ["femoral_stance"],
                                            ["femoral_fall_posterolateral", "femoral_fall_anterolateral"])
    assert split_cases("surrogate", cases) == (list(cases), [], [])
    assert split_cases("nonlinear", cases) == ([], [], list(cases))
    assert split_cases("linear", cases) == ([], [], [])
    _data_dir(tmp_path / "quick", monkeypatch, {"vertebral": (0.99, 0.1)}, mode="quick")
    assert split_cases("hybrid", cases) == ([], [], list(cases))  # a quick fit validates nothing

    # auto: hybrid where no case needs the pushover at every visit, nonlinear where no fit helps
    _data_dir(tmp_path / "anchored", monkeypatch, {"vertebral": (0.95, 0.3), **{p: (0.93, 1.1) for p in FEMUR_CASES},
                                                   "femoral_fall_anterolateral": (0.68, 1.3, 0.99)})
    model, why = resolve_strength_model("auto", ("femur", "vertebra"), mesh_size_mm=4.0)
    assert model == "hybrid" and "the pushover at the first strength visit for femoral_fall_anterolateral" in why
    _data_dir(tmp_path / "none-met", monkeypatch, {"vertebral": (0.8, 0.3, 0.85), **{p: (0.7, 2.5) for p in FEMUR_CASES}})
    assert resolve_strength_model("auto", ("femur", "vertebra"), mesh_size_mm=4.0)[0] == "nonlinear"
    _data_dir(tmp_path / "none-met-anchored", monkeypatch, {"vertebral": (0.8, 0.3, 0.95),
                                                            **{p: (0.7, 1.5, 0.95) for p in FEMUR_CASES}})
    model, why = resolve_strength_model("auto", ("femur", "vertebra"), mesh_size_mm=4.0)
    assert model == "hybrid" and "surrogate for" not in why


def test_a_study_runs_the_strengths_its_risk_model_was_fitted_on(tmp_path, monkeypatch):
    """A study's "auto" runs the surrogate where it would run hybrid only to anchor load
    cases that its fracture-risk parameters were fitted on at the surrogate fit's own level;
    it stays hybrid when the parameters were fitted on other strengths, left a case it
    anchors out, or a case needs the pushover at every visit; a named model runs as named."""
    from femur.study.spec import risk_consistent_model, settle_strength_model

    d = _data_dir(tmp_path, monkeypatch, {"vertebral": (0.95, 0.3), **{p: (0.93, 1.1) for p in FEMUR_CASES},
                                          "femoral_fall_anterolateral": (0.68, 1.3, 0.99)})
    doc = json.loads((d / "fracture_risk.json").read_text())

    def fitted_on(name, **engine):
        path = tmp_path / f"{name}.json"
        path.write_text(json.dumps({**doc, "provenance": {**doc["provenance"], "engine": engine}}))
        return str(path)

    at_level = fitted_on("at_level", strength_model="surrogate", anchored_at_fit_level=["femoral_fall_anterolateral"])
    settle = lambda name, params: settle_strength_model(name, False, "femur", 4.0, "test", params)  # noqa: E731
    model, why = settle("auto", at_level)
    assert model == "surrogate" and "femoral_fall_anterolateral at the fit's own level" in why
    assert "so hybrid would anchor femoral_fall_anterolateral" in why and "(at_level.json)" in why
    hybrid = settle("auto", None)
    assert hybrid[0] == "hybrid"
    prefixes = ("femoral_stance", "femoral_fall", "femoral_fall_posterolateral", "femoral_fall_anterolateral",
                "vertebral")
    for other in (fitted_on("linear", strength_model="linear"), fitted_on("not_listed", strength_model="surrogate"),
                  fitted_on("other_case", strength_model="surrogate", anchored_at_fit_level=["femoral_stance"])):
        assert risk_consistent_model(*hybrid, prefixes, other) == hybrid
        assert settle("auto", other) == hybrid
    assert settle("hybrid", at_level) == ("hybrid", "as given")
    # a case pushed over at every visit: the surrogate would not give the calibration's strengths
    _data_dir(tmp_path / "pushed", monkeypatch, {"vertebral": (0.95, 0.3), **{p: (0.93, 1.1) for p in FEMUR_CASES},
                                                 "femoral_fall_anterolateral": (0.68, 1.3, 0.99),
                                                 "femoral_stance": (0.7, 2.5)})
    pushed = settle("auto", None)
    assert pushed[0] == "hybrid" and settle("auto", at_level) == pushed


def test_hybrid_strength_model_in_a_simulation(tmp_path, monkeypatch):
    """A hybrid run pushes over the femur's load cases whose fit misses its target at every
    strength visit, an anchored case at month 0 only (later: month 0's pushover peak times the
    fit's change ratio), and predicts the others from their linear solves (identity fits here:
    the linear load)."""
    import femur.workflows.tracks as tracks
    from femur.workflows.simulation import Simulation

    _data_dir(tmp_path, monkeypatch, {"femoral_stance": (0.95, 1.0), "femoral_fall": (0.93, 1.1, 0.99),
                                      "femoral_fall_posterolateral": (0.85, 1.2),
                                      "femoral_fall_anterolateral": (0.7, 0.9, 0.98)})
    pushed = []

    class Peak:  # what the track reads of a pushover
        nonlinear_strength_n, yield_load_n, linear_stiffness_n_per_mm = 1234.5, 1000.0, 1.0

    monkeypatch.setattr(tracks.BoneTrack, "pushover", lambda self, prefix: pushed.append(prefix) or Peak)
    run = dict(bones=("femur",), fe_interval_days=30, strength_months=(0, 1), mesh_size_mm=6.0, progress=False)
    hyb = Simulation("romosozumab", 1, strength_model="hybrid", **run).run()
    assert hyb.run["strength_model"] == "hybrid"
    assert hyb.run["strength_methods"]["femur"] == {
        "femoral_stance": "surrogate", "femoral_fall": "surrogate", "femoral_fall_posterolateral": "pushover",
        "femoral_fall_anterolateral": "anchored"}
    assert sorted(pushed) == sorted(["femoral_fall_posterolateral", "femoral_fall_anterolateral",
                                     "femoral_fall_posterolateral"])  # anchored: month 0 only
    lin = Simulation("romosozumab", 1, strength_model="linear", **run).run()
    s, ls = hyb.strength, lin.strength
    assert list(s["femoral_fall_posterolateral_strength_n"]) == [1234.5, 1234.5]
    a = "femoral_fall_anterolateral"
    ratio = ls[f"{a}_strength_n"][1] / ls[f"{a}_strength_n"][0]
    assert abs(ratio - 1.0) > 1e-4  # the bone did change
    assert s[f"{a}_strength_n"][0] == 1234.5 and s[f"{a}_strength_n"][1] == pytest.approx(1234.5 * ratio, rel=1e-9)
    assert s[f"{a}_stiffness_n_per_mm"][1] == pytest.approx(ls[f"{a}_stiffness_n_per_mm"][1], rel=1e-9)  # linear
    for p in ("femoral_stance", "femoral_fall"):
        assert list(s[f"{p}_strength_n"]) == pytest.approx(list(ls[f"{p}_strength_n"]), rel=1e-9)
    # a named surrogate on bones its fit was not made on (a 6 mm mesh) runs and says so; one
    # its caller settled for the bones (a study's case) runs as named, without a second verdict
    named = Simulation("romosozumab", 1, strength_model="surrogate", **run)
    assert named.strength_model == "surrogate"
    assert named.strength_model_reason.startswith("as given, though the strength surrogate is fitted and tested on 4 mm")
    settled = Simulation("romosozumab", 1, strength_model="surrogate", strength_model_settled=True, **run)
    assert (settled.strength_model, settled.strength_model_reason) == ("surrogate", "as given")


def test_anchored_test_of_a_fit_by_hand():
    """The fit report's anchored test: a baseline sample is its own pushover peak, a treated
    one her baseline peak times the fit's change ratio."""
    fit = SurrogateFit("femoral_fall", ("load",), (0.0, 1.0), change_features=("load",), change_coef=(0.5,))
    rows = [{"patient": 1, "prefix": "femoral_fall", "state": "baseline", "load": 100.0, "nonlinear_strength_n": 900.0},
            {"patient": 1, "prefix": "femoral_fall", "state": "romosozumab", "load": 144.0, "nonlinear_strength_n": 1000.0}]
    assert list(ss.anchored_values(fit, rows, ss.references(rows))) == pytest.approx([900.0, 900.0 * 1.2])
    nochange = SurrogateFit("femoral_fall", ("load",), (0.3, 2.0))
    assert list(ss.anchored_values(nochange, rows, ss.references(rows))) == pytest.approx([900.0, 900.0 * 1.44 ** 2])
    with pytest.raises(InputError, match="no baseline sample to anchor"):
        ss.anchored_values(fit, rows[1:], {})


def test_single_strength_evaluations_refuse_the_run_models():
    from femur.workflows.strength import builtin_strength

    for model in ("surrogate", "hybrid", "auto"):
        with pytest.raises(InputError, match=f"model: '{model}' is a strength model of simulations"):
            builtin_strength("vertebra", model=model)


def test_study_settles_auto_and_reports_it(tmp_path, monkeypatch):
    """A study file's default strength model is settled when it is read: the spec, its
    records and the summary carry the model that runs, with the reason."""
    import tomllib

    from femur.study.parse import parse_study
    from femur.study.spec import builtin_studies

    with open(builtin_studies()["frame"], "rb") as fh:
        d = tomllib.load(fh)
    d["model"] = {k: v for k, v in d.get("model", {}).items() if k != "strength_model"}
    _data_dir(tmp_path, monkeypatch, {"vertebral": (0.95, 0.3), "femoral_fall": (0.93, 1.1)})
    spec = parse_study(d)
    assert spec.model.strength_model == "linear"
    assert "femoral_stance" in spec.model.strength_model_reason
    assert spec.to_dict()["model"]["strength_model"] == "linear"
    # a named surrogate runs as named, and its reason says where its own test does not back it
    explicit = parse_study({**d, "model": {**d["model"], "strength_model": "surrogate"}})
    assert explicit.model.strength_model == "surrogate"
    assert explicit.model.strength_model_reason.startswith("as given, though the strength surrogate has no fit for")
    _data_dir(tmp_path / "missed", monkeypatch, {"vertebral": (0.95, 0.3), "femoral_fall": (0.93, 1.1),
                                                  **{p: (0.95, 1.0) for p in FEMUR_CASES[2:]},
                                                  "femoral_stance": (0.8, 1.0)})
    explicit = parse_study({**d, "model": {**d["model"], "strength_model": "surrogate"}})
    assert "though the strength surrogate misses its accuracy target (femoral_stance: test R2 0.800" in (
        explicit.model.strength_model_reason)
    _data_dir(tmp_path / "met", monkeypatch, {"vertebral": (0.95, 0.3), "femoral_fall": (0.93, 1.1),
                                               **{p: (0.95, 1.0) for p in FEMUR_CASES}})
    explicit = parse_study({**d, "model": {**d["model"], "strength_model": "surrogate"}})
    assert (explicit.model.strength_model, explicit.model.strength_model_reason) == ("surrogate", "as given")


def test_risk_flags_a_strength_model_it_was_not_calibrated_on():
    """The risk parameters scale absolute strengths: a study whose strength model measures
    another scale than the calibration's (first-element loads against pushover peaks) gets
    a note saying so, and none when the scales agree (the surrogate and hybrid models
    predict or anchor on the pushover peak)."""
    import tomllib

    from femur.mechanics.strength import STRENGTH_MODELS, strength_scale
    from femur.outcomes.risk import load_parameters
    from femur.study.parse import parse_study
    from femur.study.risk_summary import StudyRisk
    from femur.study.spec import builtin_studies

    assert strength_scale("linear") == "first-element load"
    assert {strength_scale(m) for m in ("nonlinear", "surrogate", "hybrid")} == {"pushover peak"}
    with pytest.raises(InputError, match="not available"):
        strength_scale("auto")
    calibrated = load_parameters("default").provenance["engine"]["strength_model"]
    with open(builtin_studies()["frame"], "rb") as fh:
        d = tomllib.load(fh)
    for model in STRENGTH_MODELS:
        spec = parse_study({**d, "model": {**d.get("model", {}), "strength_model": model}})
        notes = StudyRisk(spec, []).notes
        flagged = strength_scale(model) != strength_scale(calibrated)
        assert any(f"calibrated on the '{calibrated}' strength model" in n for n in notes) == flagged, model


def test_risk_courses_give_the_surrogate_run_strengths(tmp_path, monkeypatch):
    """The risk calibration's surrogate strengths, computed from a linear-model case's
    stored linear quantities, are those of the same case run with the surrogate model; the
    calibration refuses them while the surrogate is not validated for its strengths."""
    from femur.calibration import risk as calibration
    from femur.outcomes import risk
    from femur.study import Study
    from femur.study.cases import normalise_result
    from femur.study.evaluator import run_case
    from femur.study.parse import load_study

    cases = {"vertebral": ["load", "stiffness", "strain_load"], **{p: ["load", "stiffness"] for p in FEMUR_CASES}}
    d = _data_dir(tmp_path, monkeypatch, {p: (0.95, 0.5) for p in cases})
    coef = {p: [0.3, 0.6, 0.3, 0.05][: len(f) + 1] for p, f in cases.items()}
    fits = {p: {"features": f, "coef": coef[p]} for p, f in cases.items()}
    # the lateral fall's also reads the femur's anatomy (the case must carry it through)
    fits["femoral_fall"] = {"features": ["load", "stiffness"], "coef": [0.3, 0.6, 0.3, 0.02, -0.003],
                            "geometry": ["head_radius_mm", "neck_shaft_angle_deg"],
                            "change_features": ["stiffness"], "change_coef": [0.9]}
    # change parts take a visit's change from month 0, in a run and in the stored courses alike
    fits["vertebral"].update(change_features=["load", "stiffness"], change_coef=[0.7, 0.25])
    write_fitted(DATA_FILE, fits, path=d / DATA_FILE,
                 command="test", targets="hand-made",
                 extra={"mode": "full", "settings": {"mesh_size_mm": 4.0},
                        "report": {p: {"meets_target": True, "test": {"r2": 0.95, "change_mae_pp": 0.5},
                                       "patients": {"test": 30}} for p in cases}})
    spec = load_study("frame").with_overrides(patients=1, months=2)
    rec = next(r for r in Study(spec).cases() if r["arm"] != "placebo")
    inputs = {}
    for model in ("linear", "surrogate"):
        r = {**rec, "model": {**rec["model"], "strength_model": model}}
        inputs[model] = risk.case_inputs(r, normalise_result(r, run_case(r, MPI.COMM_SELF)), model)
    converted = risk.with_surrogate_strengths(inputs["linear"], calibration.load_fits())
    assert set(converted["strength_n"]) == set(inputs["surrogate"]["strength_n"]) == {
        "vertebral", "lateral", "posterolateral", "anterolateral"}
    for label, vals in inputs["surrogate"]["strength_n"].items():
        assert converted["strength_n"][label] == pytest.approx(vals, rel=1e-9), label
    assert inputs["linear"]["femur_anatomy"]["head_radius_mm"] == pytest.approx(
        rec["patient"]["femur_shape"]["head_radius_mm"], rel=1e-9)
    no_anatomy = {k: v for k, v in inputs["linear"].items() if k != "femur_anatomy"}
    with pytest.raises(InputError, match="femoral_fall reads the femur's anatomy"):
        risk.with_surrogate_strengths(no_anatomy, calibration.load_fits())
    assert inputs["linear"]["strength_n"]["vertebral"] != pytest.approx(inputs["surrogate"]["strength_n"]["vertebral"])
    doc = {"engine": {"strength_model": "linear"}, "date": "d", "git_commit": "c",
           "studies": {"frame": {"cases": [inputs["linear"]]}}}
    out = calibration.with_surrogate_strengths(doc)
    assert out["engine"]["strength_model"] == "surrogate" and "linear-model courses of d" in out["engine"]["strength_from"]
    assert out["studies"]["frame"]["cases"][0]["strength_n"] == converted["strength_n"]
    assert "anchored_at_fit_level" not in out["engine"]
    _data_dir(tmp_path / "spine_only", monkeypatch, {"vertebral": (0.95, 0.5)})
    with pytest.raises(InputError, match="--surrogate-strengths: .*no fit for femoral_fall"):
        calibration.with_surrogate_strengths(doc)
    # a fall direction whose fit meets the target only when anchored on a month-0 pushover (a
    # hybrid run's): the courses hold no pushover, so it takes the fit's level, and says so
    report = {p: (0.95, 0.5) for p in cases}
    _data_dir(tmp_path / "anchored", monkeypatch, {**report, "femoral_fall_anterolateral": (0.8, 1.2, 0.99)})
    out = calibration.with_surrogate_strengths(doc)
    assert out["engine"]["anchored_at_fit_level"] == ["femoral_fall_anterolateral"]
    assert "femoral_fall_anterolateral, which a hybrid run anchors" in out["engine"]["strength_from"]
    # ... and none that misses it even anchored
    _data_dir(tmp_path / "missed", monkeypatch, {**report, "femoral_fall_anterolateral": (0.8, 1.2, 0.85)})
    with pytest.raises(InputError, match="--surrogate-strengths: the strength surrogate misses"):
        calibration.with_surrogate_strengths(doc)


def test_risk_calibration_fits_the_strengths_the_trials_run_on(tmp_path, monkeypatch):
    """`python -m femur.calibration.risk --strengths auto` (the default) fits the risk
    parameters to the strengths a built-in study's default strength model gives: the
    surrogate's once that model reads it (surrogate or hybrid), the linear loads before; a
    pushover at every visit cannot come from stored courses. Courses without the surrogate's
    features are refused naming the case."""
    from femur.calibration import risk as calibration
    from femur.outcomes import risk

    assert calibration.fitted_strengths("linear") == ("linear", "as given")
    with pytest.raises(InputError, match="--strengths: expected one of auto, linear, surrogate"):
        calibration.fitted_strengths("pushover")
    _data_dir(tmp_path / "none", monkeypatch)
    assert calibration.fitted_strengths()[0] == "linear"
    met = {p: (0.95, 0.5) for p in ("vertebral",) + FEMUR_CASES}
    _data_dir(tmp_path / "met", monkeypatch, met)
    chosen, why = calibration.fitted_strengths()
    assert chosen == "surrogate" and "runs the surrogate" in why
    _data_dir(tmp_path / "anchored", monkeypatch, {**met, "femoral_fall_anterolateral": (0.8, 1.0, 0.99)})
    chosen, why = calibration.fitted_strengths()
    assert chosen == "surrogate" and "runs hybrid" in why
    _data_dir(tmp_path / "missed", monkeypatch, {p: (0.5, 5.0) for p in met})
    with pytest.raises(InputError, match="--strengths auto: .*pushover at every visit"):
        calibration.fitted_strengths()
    # a case whose evaluator stored no stiffness (the surrogate's fit reads it)
    fit = SurrogateFit("vertebral", ("load", "stiffness"), (0.1, 0.7, 0.3))
    case = {"case_id": "c1", "strength_model": "linear", "visit_months": [0.0, 12.0],
            "strength_n": {"vertebral": [3000.0, 3100.0]},
            "strength_features": {"vertebral": {"load": [3000.0, 3100.0]}}}
    with pytest.raises(InputError, match="case c1: the strength surrogate of vertebral reads stiffness.*--strengths linear"):
        risk.with_surrogate_strengths(case, {"vertebral": fit})
