"""Virtual trials: study files, cohorts, case records, batch runs, resume, results.

The evaluator used here, ``synthetic_evaluator``, is a TEST DOUBLE: closed-form BMD,
strength and marker trajectories computed from the record's parameters so that the
study machinery can be tested in milliseconds.  It is not the model (the real evaluator
runs the FE + remodeling simulation) and none of its numbers is a prediction.
"""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from femur.core.errors import InputError, SolverError
from femur.study import Study, load_study, run_study_cli
from femur.study.cases import dose_times_days, normalise_result
from femur.study.cohort import generate_cohort, sample_patient
from femur.study.evaluator import simulation_for_record
from femur.study.parse import parse_study

from mpi4py import MPI

TESTS_DIR = Path(__file__).resolve().parent

# --- test double ----------------------------------------------------------------------
# %/month BMD change (LS, TH, FN) while on a drug, times the patient's drug response
_GAIN = {
    "romosozumab": (1.1, 0.5, 0.45),
    "denosumab": (0.6, 0.3, 0.25),
    "alendronate": (0.4, 0.22, 0.2),
    "teriparatide": (0.7, 0.2, 0.15),
}
_LOSS = (-0.05, -0.04, -0.08)  # %/month off drug, times the turnover multiplier


def synthetic_evaluator(record, comm=None):
    """Closed-form stand-in for the FE + remodeling case evaluator (test double)."""
    p = record["patient"]
    resp, turn = p["drug_response_multiplier"], p["turnover_multiplier"]
    vert0 = 4500.0 * (1 + 0.3 * (p["ls_t_score"] + 2.5))
    fall0 = 3000.0 * (1 + 0.25 * (p["th_t_score"] + 2.5))
    visits = []
    for m in record["visit_months"]:
        pct = [0.0, 0.0, 0.0]
        p1np = ctx = 0.0
        for ph in record["regimen"]:
            dt = max(0.0, min(m, ph["end_month"]) - ph["start_month"])
            for s in range(3):
                rate = _GAIN[ph["drug"]][s] * resp if ph["drug"] != "placebo" else _LOSS[s] * turn
                pct[s] += rate * dt
            if ph["drug"] == "romosozumab" and dt > 0:
                p1np += 100 * resp * math.exp(-dt / 4.0) - 15 * (1 - math.exp(-dt / 4.0))
                ctx += -40 * resp * math.exp(-dt / 8.0) - 25 * (1 - math.exp(-dt / 8.0))
        visits.append(
            {
                "month": m,
                "ls_bmd_pct": pct[0],
                "th_bmd_pct": pct[1],
                "fn_bmd_pct": pct[2],
                "vertebral_strength_pct": 1.8 * pct[0],
                "femoral_fall_strength_pct": 1.8 * pct[1],
                "femoral_stance_strength_pct": 1.5 * pct[1],
                "p1np_pct": p1np,
                "ctx_pct": ctx,
                "vertebral_strength_n": vert0 * (1 + 1.8 * pct[0] / 100),
                "femoral_fall_strength_n": fall0 * (1 + 1.8 * pct[1] / 100),
                "femoral_stance_strength_n": 3 * fall0 * (1 + 1.5 * pct[1] / 100),
                "group_size": 1 if comm is None else comm.size,
            }
        )
    return {"visits": visits}


_CALLS = {"n": 0}


def killing_evaluator(record, comm=None):
    """Test double that kills its own process (SIGKILL) at call FEMUR_TEST_KILL_AT."""
    _CALLS["n"] += 1
    if _CALLS["n"] == int(os.environ["FEMUR_TEST_KILL_AT"]):
        os.kill(os.getpid(), signal.SIGKILL)
    return synthetic_evaluator(record, comm)


def failing_evaluator(record, comm=None):
    """Test double that fails for one patient."""
    if record["patient"]["index"] == 1 and record["arm"] == "romosozumab":
        raise RuntimeError("synthetic failure")
    return synthetic_evaluator(record, comm)


# --- study files -----------------------------------------------------------------------
GOOD = """
[study]
name = "mini"
duration_months = 12
visit_months = [0, 6, 12]
seed = 7

[cohort]
size = 3
sex = "F"
[cohort.inclusion]
age = [55, 90]
t_score_th = [-3.5, -2.5]
t_score_fn = [-3.5, -2.5]

[[arms]]
name = "placebo"
regimen = "placebo"

[[arms]]
name = "romosozumab"
regimen = "romosozumab"

[model]
mesh_size_mm = 4.0
order = 1
solver = "gamg"
fe_interval_days = 30
"""


def _write(tmp_path, text, name="study.toml"):
    path = Path(tmp_path) / name
    MPI.COMM_WORLD.barrier()  # no rank still reads a file of this name that rank 0 replaces
    if MPI.COMM_WORLD.rank == 0:
        path.write_text(text)
    MPI.COMM_WORLD.barrier()
    return path


def test_builtin_frame():
    spec = load_study("frame")
    assert spec.name == "frame"
    assert spec.duration_months == 12
    assert spec.visit_months == (0, 6, 12)
    assert [a.name for a in spec.arms] == ["placebo", "romosozumab"]
    romo = spec.arm("romosozumab").regimen
    assert len(romo) == 1 and romo[0].drug == "romosozumab"
    assert romo[0].dose_mg == 210.0 and romo[0].interval_days == pytest.approx(365.25 / 12)
    assert spec.arm("placebo").is_placebo
    assert spec.cohort.sex == "female" and spec.cohort.inclusion.age == (55, 90)
    assert spec.cohort.inclusion.t_score == {"th": (-3.5, -2.5), "fn": (-3.5, -2.5)}
    assert spec.cohort.inclusion.t_score_rule == "any"
    # risk: the calibrated parameters (femur/data/fracture_risk.json), RR against placebo
    assert spec.risk.parameters == "default" and spec.risk.reference_arm == "placebo"
    # the default, "auto", settled for the study's bones by what the strength surrogate's data
    # file records of its test (femur.mechanics.strength.resolve_strength_model)
    # and its risk parameters: where the bones' "auto" is hybrid only to anchor cases that
    # the risk calibration took at the surrogate's level, the study runs the surrogate
    # (femur.study.spec.settle_strength_model)
    from femur.mechanics.strength import resolve_strength_model

    settled = resolve_strength_model("auto", ("femur", "vertebra"), mesh_size_mm=spec.model.mesh_size_mm)
    assert settled[0] in ("linear", "surrogate", "hybrid", "nonlinear") and settled[1].startswith("auto: ")
    assert spec.model.strength_model_reason.startswith(settled[1].split(", so hybrid")[0])
    if settled[0] == "hybrid":  # the package's files: the anterolateral fall anchored, fitted at its level
        assert spec.model.strength_model == "surrogate"
        assert "fracture-risk parameters (fracture_risk.json) were fitted" in spec.model.strength_model_reason
    else:
        assert (spec.model.strength_model, spec.model.strength_model_reason) == settled
    assert spec.cohort.prevalent_vertebral_fractures == (0.82, 0.12, 0.04, 0.02)
    assert (spec.cohort.age_mean, spec.cohort.age_sd) == (70.9, 7.0)
    with pytest.raises(InputError, match="built-in studies: .*frame"):
        load_study("no_such_study")


def test_regimen_forms(mpi_tmp_path):
    tmp_path = mpi_tmp_path
    text = GOOD.replace("duration_months = 12", "duration_months = 24").replace(
        'regimen = "romosozumab"', 'regimen = "romosozumab:12,denosumab:12"'
    )
    spec = load_study(_write(tmp_path, text))
    ph = spec.arm("romosozumab").regimen
    assert [(p.drug, p.start_month, p.end_month) for p in ph] == [("romosozumab", 0, 12), ("denosumab", 12, 24)]
    assert ph[1].dose_mg == 60.0 and ph[1].interval_days == pytest.approx(365.25 / 2)
    # 12 monthly romosozumab doses, then denosumab at month 12 and month 18
    study = Study(spec)
    rec = [r for r in study.cases() if r["arm"] == "romosozumab"][0]
    doses = dose_times_days(rec)
    assert [d[1] for d in doses].count("romosozumab") == 12
    assert [d[0] for d in doses if d[1] == "denosumab"] == pytest.approx([365.25, 365.25 * 1.5])
    # the same regimen as a treatments.TreatmentSequence (for the evaluator)
    from femur.study.cases import record_treatment

    seq = record_treatment(rec)
    assert [c.drug for c in seq] == ["romosozumab", "denosumab"]
    t, d = seq.doses("romosozumab")
    assert len(t) == 12 and d == pytest.approx([210.0] * 12)
    t, d = seq.doses("denosumab")
    assert t == pytest.approx([365.25, 365.25 * 1.5]) and d == pytest.approx([60.0, 60.0])
    # explicit table with a short treatment: the untreated tail becomes placebo
    text2 = GOOD.replace(
        'regimen = "romosozumab"',
        'regimen = [{drug = "alendronate", dose_mg = 35, interval_days = 3.5, months = 6}]',
    )
    ph2 = load_study(_write(tmp_path, text2, "b.toml")).arm("romosozumab").regimen
    assert [(p.drug, p.dose_mg, p.interval_days, p.end_month) for p in ph2] == [
        ("alendronate", 35.0, 3.5, 6.0),
        ("placebo", 0.0, 0.0, 12.0),
    ]


def test_study_regimens_are_the_drug_tables_label_regimens(mpi_tmp_path):
    """A bare drug in a study is its label regimen from the one drug table; a drug whose
    label fixes the course (romosozumab: 12 doses) stops there, others run to the end."""
    from femur.treatments.drugs import DRUGS

    text = GOOD.replace("duration_months = 12", "duration_months = 24").replace(
        "visit_months = [0, 6, 12]", "visit_months = [0, 12, 24]")
    for drug, d in DRUGS.items():
        if drug == "placebo":
            continue
        spec = load_study(_write(mpi_tmp_path, text.replace('regimen = "romosozumab"', f'regimen = "{drug}"'),
                                 f"{drug}.toml"))
        ph = spec.arm("romosozumab").regimen
        assert ph[0].drug == drug and ph[0].dose_mg == d.dose_mg and ph[0].interval_days == d.interval_days
        end = 24.0 if d.label_course_months is None else d.label_course_months
        assert ph[0].end_month == end, drug
        if end < 24:
            assert ph[1].drug == "placebo" and ph[1].end_month == 24.0


def test_overrides():
    spec = load_study("frame").with_overrides(patients=3, months=9, seed=5)
    assert spec.cohort.size == 3 and spec.seed == 5
    assert spec.visit_months == (0, 6, 9) and spec.duration_months == 9
    assert spec.arm("romosozumab").regimen[-1].end_month == 9
    with pytest.raises(InputError, match="--patients"):
        load_study("frame").with_overrides(patients=0)
    # the strength model: as given, or "auto" settled for the study's bones as the file's is
    pushed = load_study("frame").with_overrides(strength_model="nonlinear")
    assert (pushed.model.strength_model, pushed.model.strength_model_reason) == ("nonlinear", "as given")
    auto = load_study("frame").with_overrides(strength_model="auto")
    assert (auto.model.strength_model, auto.model.strength_model_reason) == (
        load_study("frame").model.strength_model, load_study("frame").model.strength_model_reason)
    with pytest.raises(InputError, match="--strength-model: unknown strength model 'fast'"):
        load_study("frame").with_overrides(strength_model="fast")
    # longer: an open-ended regimen runs on, up to its label course (romosozumab: 12 doses)
    longer = load_study("frame").with_overrides(months=24)
    assert longer.visit_months == (0, 6, 12, 24)
    ph = longer.arm("romosozumab").regimen
    assert [(p.drug, p.start_month, p.end_month) for p in ph] == [("romosozumab", 0, 12), ("placebo", 12, 24)]
    deno = parse_study(
        {**_frame_dict(), "arms": [{"name": "placebo", "regimen": "placebo"}, {"name": "d", "regimen": "denosumab"}]}
    ).with_overrides(months=24)
    assert [(p.drug, p.start_month, p.end_month) for p in deno.arm("d").regimen] == [("denosumab", 0, 24)]
    fixed = parse_study(
        {**_frame_dict(), "arms": [{"name": "placebo", "regimen": "placebo"}, {"name": "r", "regimen": "romosozumab:12"}]}
    ).with_overrides(months=18)
    assert [(p.drug, p.start_month, p.end_month) for p in fixed.arm("r").regimen] == [
        ("romosozumab", 0, 12),
        ("placebo", 12, 18),
    ]


def _frame_dict():
    import tomllib

    from femur.study.spec import builtin_studies

    with open(builtin_studies()["frame"], "rb") as fh:
        return tomllib.load(fh)


BAD = [
    ('regimen = "romosozumab"', 'regimen = "romosozmab"', r"arms\[1\]\.regimen.*unknown drug 'romosozmab'.*known drugs"),
    (
        'regimen = "romosozumab"',
        'regimen = {drug = "romosozumab", dose_mg = -210}',
        r"arms\[1\]\.regimen\.dose_mg.*negative dose",
    ),
    ("visit_months = [0, 6, 12]", "visit_months = [0, 6, 12, 18]", r"study\.visit_months.*\[18\.0\] after the end"),
    ("size = 3", "size = 0", r"cohort\.size.*must be >= 1"),
    ('sex = "F"', 'sex = "F"\nprevalent_vertebral_fractures = [0.5, 0.5, 0.1, 0.0]',
     r"cohort\.prevalent_vertebral_fractures.*sum to 1"),
    ('sex = "F"', 'sex = "F"\nprevalent_vertebral_fractures = [1.0]', r"cohort\.prevalent_vertebral_fractures.*0, 1, 2"),
    ('sex = "F"', 'sex = "F"\nage_sd = 0', r"cohort\.age_sd.*> 0"),
    ("order = 1", 'order = 1\nstrength_model = "bogus"', r"model\.strength_model.*unknown strength model"),
    ("seed = 7", "seed = 7\nsedd = 8", r"\[study\].*unknown key\(s\) \['sedd'\].*allowed keys"),
    ('name = "placebo"', 'name = "placebo"\ndose = 3', r"arms\[0\].*unknown key\(s\) \['dose'\]"),
    ("order = 1", "order = 1\nmesh = 2", r"\[model\].*unknown key\(s\) \['mesh'\]"),
    ("duration_months = 12", 'duration_months = "12"', r"study\.duration_months.*expected a number, got str"),
    ("size = 3", "size = 2.5", r"cohort\.size.*expected an integer"),
    ("order = 1", "order = 3", r"model\.order.*1 or 2"),
    ("order = 1", 'order = 1\nstrength_model = "pushover"', r"model\.strength_model.*unknown strength model"),
    ("visit_months = [0, 6, 12]", "visit_months = [6, 12]", r"first visit must be month 0"),
    ("visit_months = [0, 6, 12]", "visit_months = [0, 12, 6]", r"increase strictly"),
    (
        'regimen = "romosozumab"',
        'regimen = "romosozumab:12,denosumab:12"',
        r"regimen runs to month 24, after the study end",
    ),
    ('regimen = "romosozumab"', 'regimen = "romosozumab,denosumab"', r"every phase but the last"),
    ('name = "romosozumab"', 'name = "placebo"', r"duplicate arm name"),
    ('regimen = "romosozumab"', 'regimen = {drug = "romosozumab", interval_days = 0}', r"interval_days.*> 0"),
    ('[[arms]]\nname = "placebo"\nregimen = "placebo"', "", None),  # handled below
]


@pytest.mark.parametrize("old,new,pattern", [b for b in BAD if b[2]])
def test_bad_study_files(mpi_tmp_path, old, new, pattern):
    tmp_path = mpi_tmp_path
    assert old in GOOD
    path = _write(tmp_path, GOOD.replace(old, new, 1))
    with pytest.raises(InputError) as info:
        load_study(path)
    msg = str(info.value)
    assert str(path) in msg, msg
    import re

    assert re.search(pattern, msg), msg


@pytest.mark.parametrize("model", ["surrogate", "hybrid"])
def test_study_asking_for_an_unfitted_surrogate(mpi_tmp_path, without_surrogate_fit, model):
    path = _write(mpi_tmp_path, GOOD.replace("order = 1", f'order = 1\nstrength_model = "{model}"', 1))
    with pytest.raises(InputError, match=rf"model\.strength_model.*'{model}'.*surrogate.*not fitted") as info:
        load_study(path)
    assert str(path) in str(info.value)


def test_missing_arms_and_other_file_errors(mpi_tmp_path):
    tmp_path = mpi_tmp_path
    head = GOOD[: GOOD.index("[[arms]]")]
    tail = GOOD[GOOD.index("[model]") :]
    path = _write(tmp_path, head + tail, "noarms.toml")
    with pytest.raises(InputError, match=r"noarms\.toml: \[\[arms\]\]: missing"):
        load_study(path)
    path = _write(tmp_path, "arms = []\n" + head + tail, "emptyarms.toml")
    with pytest.raises(InputError, match=r"emptyarms\.toml: \[\[arms\]\]: no arm"):
        load_study(path)
    path = _write(tmp_path, GOOD.replace("[study]", "[studdy]"), "top.toml")
    with pytest.raises(InputError, match=r"top level: unknown key\(s\) \['studdy'\]"):
        load_study(path)
    path = _write(tmp_path, "[study\nname=1", "broken.toml")
    with pytest.raises(InputError, match=r"broken\.toml: not valid TOML"):
        load_study(path)
    # no placebo arm: no reference arm unless the study names one
    no_placebo = GOOD.replace('name = "placebo"\nregimen = "placebo"', 'name = "deno"\nregimen = "denosumab"')
    assert load_study(_write(tmp_path, no_placebo, "noplacebo.toml")).risk.reference_arm is None
    ok = load_study(_write(tmp_path, no_placebo + '\n[risk]\nreference_arm = "deno"\n', "ref.toml"))
    assert ok.risk.reference_arm == "deno"
    # how the trial counts a new vertebral fracture: semiquantitative unless the file says
    assert ok.risk.vertebral_fracture_definition == "semiquantitative"
    assert load_study("fit1").risk.vertebral_fracture_definition == "morphometric"
    mq = load_study(_write(tmp_path, no_placebo + '\n[risk]\nvertebral_fracture_definition = "morphometric"\n',
                           "mq.toml"))
    assert mq.risk.vertebral_fracture_definition == "morphometric"
    for text, pattern in (
        ('\n[risk]\nreference_arm = "nope"\n', r"risk\.reference_arm.*no arm 'nope'"),
        ('\n[risk]\nvertebral_h0_per_year = 0.3\n', r"risk\.vertebral_h0_per_year.*no longer a study setting"),
        ('\n[risk]\np_hip_impact = 0.3\n', r"risk\.p_hip_impact.*hip_impact_share"),
        ('\n[risk]\nhip_impact_share = 1.3\n', r"risk\.hip_impact_share.*\[0, 1\]"),
        ('\n[risk]\nparameters = "nofile.json"\n', r"risk\.parameters.*no parameter file"),
        ('\n[risk]\nparameter_draws = -1\n', r"risk\.parameter_draws"),
        ('\n[risk]\nvertebral_fracture_definition = "clinical"\n',
         r"risk\.vertebral_fracture_definition.*'morphometric', 'semiquantitative'.*'clinical'"),
    ):
        with pytest.raises(InputError, match=pattern):
            load_study(_write(tmp_path, no_placebo + text, "riskbad.toml"))


def test_strength_model_goes_from_the_study_file_to_the_simulation(mpi_tmp_path):
    """[model] strength_model = "nonlinear" reaches the case records and the Simulation the
    evaluator builds (one choice, the same code path as `femur simulate`)."""
    spec = load_study(_write(mpi_tmp_path, GOOD.replace("order = 1", 'order = 1\nstrength_model = "nonlinear"')))
    assert spec.model.strength_model == "nonlinear"
    rec = Study(spec.with_overrides(patients=1)).cases()[0]
    assert rec["model"]["strength_model"] == "nonlinear"
    sim = simulation_for_record(dict(rec, model=dict(rec["model"], mesh_size_mm=5.0)))
    try:
        assert sim.strength_model == "nonlinear"
        assert all(t.strength_model == "nonlinear" for t in sim.tracks.values())
    finally:
        for t in sim.tracks.values():
            t.close()


def test_cohort_reproducible_and_independent_of_size():
    spec = load_study("frame")
    small = generate_cohort(spec.cohort, spec.seed, 3)
    large = generate_cohort(spec.cohort, spec.seed, 12)
    assert small == large[:3]
    assert sample_patient(7, spec.seed, spec.cohort) == large[7]
    other = generate_cohort(spec.cohort, spec.seed + 1, 3)
    assert other[0]["age_years"] != small[0]["age_years"]
    for p in large:
        assert 55 <= p["age_years"] <= 90
        assert -3.5 <= p["th_t_score"] <= -2.5 or -3.5 <= p["fn_t_score"] <= -2.5
        assert p["sex"] == "female"
        assert set(p["femur_params"]) == {
            "head_radius_mm",
            "neck_length_mm",
            "neck_diameter_mm",
            "neck_shaft_angle_deg",
            "anteversion_deg",
            "shaft_diameter_mm",
        }
        assert set(p["vertebra_params"]) == {"semi_axis_lateral_mm", "semi_axis_ap_mm", "height_mm"}
        assert 110 <= p["femur_params"]["neck_shaft_angle_deg"] <= 145
        assert set(p["femur_shape"]) == {"scale", "head_radius_mm", "neck_length_mm", "neck_width_mm",
                                         "neck_shaft_angle_deg", "anteversion_deg"}
        assert 110 <= p["femur_shape"]["neck_shaft_angle_deg"] <= 145
        assert -10 <= p["femur_shape"]["anteversion_deg"] <= 35
        assert p["turnover_multiplier"] > 0 and p["drug_response_multiplier"] > 0
    json.dumps(large)  # plain, serialisable


def test_model_femur_choice():
    """Studies run the anatomical femur unless model.femur says "parametric-femur"."""
    from femur.study.spec import FEMUR_MODELS
    from femur.workflows.bones import BONE_KINDS

    assert set(FEMUR_MODELS) <= set(BONE_KINDS) and FEMUR_MODELS[0] == BONE_KINDS[0] == "femur"
    assert load_study("frame").model.femur == "femur"
    d = _frame_dict()
    par = parse_study({**d, "model": {**d["model"], "femur": "parametric-femur"}})
    assert par.model.femur == "parametric-femur"
    assert Study.load(par, patients=1).cases()[0]["model"]["femur"] == "parametric-femur"
    with pytest.raises(InputError, match="model.femur"):
        parse_study({**d, "model": {**d["model"], "femur": "tibia"}})


@pytest.mark.serial  # per-patient sampling, nothing rank-specific (CI time)
def test_cohort_femur_shapes_are_checked_morphs(monkeypatch):
    """Each patient's anatomical femur shape passes the morph's element check on every
    shipped mesh; implausible draws are rejected and drawn again (counted); men's femurs
    are scaled by the male size factor."""
    import numpy as np

    from femur.core.errors import MeshError
    from femur.geometry import population
    from femur.geometry.anatomical import check_shape
    from femur.geometry.morph import FemurShape
    from femur.study import cohort as cohort_mod

    spec = load_study("frame")
    women = generate_cohort(spec.cohort, spec.seed, 6)
    for p in women:
        check_shape(FemurShape(**p["femur_shape"]))  # raises if the morph is not acceptable
        assert abs(p["femur_shape"]["scale"] - population.body_size_factor("female", p["height_m"])) < 1e-12
    men_spec = parse_study({**_frame_dict(), "cohort": {"size": 3, "sex": "male"}})
    men = generate_cohort(men_spec.cohort, men_spec.seed, 3)
    for p in men:
        assert abs(p["femur_shape"]["scale"] - population.body_size_factor("male", p["height_m"])) < 1e-12
        assert p["femur_shape"]["scale"] > 1.0
    # far too wide a neck-length spread: many draws fail the element check and are redrawn
    wide = dict(population.ANATOMICAL_SHAPE_F, neck_length_mm=(48.0, 25.0, True))
    monkeypatch.setattr(cohort_mod, "ANATOMICAL_SHAPE_F", wide)
    rng = np.random.default_rng(1)
    rejected = []
    for _ in range(5):
        shape, n = cohort_mod.sample_femur_shape(rng, 1.0)
        check_shape(FemurShape(**shape))
        rejected.append(n)
    assert sum(rejected) > 0
    with pytest.raises(MeshError):
        check_shape(FemurShape(neck_length_mm=20.0))


def test_case_records():
    study = Study.load("frame", patients=3)
    recs = study.cases()
    assert len(recs) == 6
    assert len({r["case_id"] for r in recs}) == 6
    assert recs[1]["case_id"] == "p00000-romosozumab"
    import femur

    for r in recs:
        assert r["femur_version"] == femur.__version__
        assert r["study_seed"] == study.spec.seed
        assert r["visit_months"] == [0, 6, 12]
        assert r["model"]["solver"] == "gamg"
        assert r["model"]["strength_model"] == study.spec.model.strength_model  # "auto", settled
        json.loads(json.dumps(r))
    # the same patient in both arms
    assert recs[0]["patient"] == recs[1]["patient"]
    # ids do not depend on the cohort size
    assert [r["case_id"] for r in Study.load("frame", patients=5).cases()[:6]] == [r["case_id"] for r in recs]


def test_result_validation():
    rec = Study.load("frame", patients=1).cases()[0]
    good = synthetic_evaluator(rec)
    out = normalise_result(rec, good)
    assert [v["month"] for v in out["visits"]] == [0.0, 6.0, 12.0]
    assert out["visits"][0]["extra"] == {"group_size": 1}
    with pytest.raises(SolverError, match="visit months"):
        normalise_result(rec, {"visits": good["visits"][:2]})
    bad = json.loads(json.dumps(good))
    bad["visits"][1]["vertebral_strength_n"] = -5.0
    with pytest.raises(SolverError, match="vertebral_strength_n must be > 0"):
        normalise_result(rec, bad)
    bad = json.loads(json.dumps(good))
    del bad["visits"][2]["th_bmd_pct"]
    with pytest.raises(SolverError, match=r"month 12: .*th_bmd_pct"):
        normalise_result(rec, bad)


def _read(path):
    return Path(path).read_bytes()


def _rank0_check(fn):
    """Run assertions on rank 0 only and share the verdict, so no rank hangs."""
    msg = None
    if MPI.COMM_WORLD.rank == 0:
        try:
            fn()
        except AssertionError as exc:
            msg = f"rank 0: {exc!r}"
    msg = MPI.COMM_WORLD.bcast(msg, root=0)
    assert msg is None, msg


@pytest.mark.serial  # nothing rank-specific; rank invariance has its own tests (CI time)
def test_prevalent_fractures_and_age_of_a_cohort():
    """The trial's prevalent-fracture shares are met closely even by a small cohort (a
    low-discrepancy draw), each patient's count does not depend on the cohort size, and the
    other patient variables do not depend on the shares."""
    spec = load_study("fpt")
    counts = [p["prevalent_vertebral_fractures"] for p in generate_cohort(spec.cohort, spec.seed, 40)]
    for c, share in zip((0, 1, 2, 3), spec.cohort.prevalent_vertebral_fractures):
        assert abs(counts.count(c) / 40 - share) <= 1.5 / 40, (c, counts)
    assert counts[:7] == [p["prevalent_vertebral_fractures"] for p in generate_cohort(spec.cohort, spec.seed, 7)]
    from dataclasses import replace

    other = replace(spec.cohort, prevalent_vertebral_fractures=(1.0, 0.0, 0.0, 0.0))
    a, b = sample_patient(3, spec.seed, spec.cohort), sample_patient(3, spec.seed, other)
    assert b["prevalent_vertebral_fractures"] == 0
    assert {k: v for k, v in a.items() if k != "prevalent_vertebral_fractures"} == \
        {k: v for k, v in b.items() if k != "prevalent_vertebral_fractures"}
    ages = [p["age_years"] for p in generate_cohort(load_study("arch").cohort, 1, 60)]
    assert 71 < sum(ages) / len(ages) < 78  # ARCH mean age 74.3 (row 9), within its range
    assert all(55 <= x <= 90 for x in ages)


def test_risk_outputs_of_a_study(mpi_tmp_path):
    """Incidence curves, relative risk with a 95 % CI from cohort resampling x parameter
    draws, absolute risk reduction and NNT, hip fractures per fall, the incidence plot."""
    out = mpi_tmp_path / "risk"
    summary = run_study_cli("frame", patients=5, out=out, evaluator=synthetic_evaluator, json_output=True)

    def checks():
        from femur.outcomes import risk

        arms = {a["arm"]: a for a in summary["arms"]}
        plc, romo = arms["placebo"], arms["romosozumab"]
        text = (out / "summary.txt").read_text()
        assert summary["reference_arm"] == "placebo"
        for a in (plc, romo):
            c = a["cumulative_incidence"]
            assert c["month"] == [float(m) for m in range(13)]
            for kind in ("vertebral", "hip"):
                curve = c[kind]
                assert curve[0] == 0.0 and all(y >= x for x, y in zip(curve, curve[1:]))
                assert curve[-1] == pytest.approx(a[f"{kind}_fracture_incidence"], rel=1e-12)
                lo, hi = a[f"{kind}_fracture_incidence_ci95"]
                assert lo <= a[f"{kind}_fracture_incidence"] <= hi
        for kind in ("vertebral", "hip"):
            rr, (lo, hi) = romo[f"relative_risk_{kind}"], romo[f"relative_risk_{kind}_ci95"]
            assert rr == pytest.approx(romo[f"{kind}_fracture_incidence"] / plc[f"{kind}_fracture_incidence"])
            assert 0 < lo <= rr <= hi
            # calibration uncertainty widens the cohort-only interval
            clo, chi = romo[f"relative_risk_{kind}_ci95_cohort_only"]
            assert hi - lo >= chi - clo
            arr = plc[f"{kind}_fracture_incidence"] - romo[f"{kind}_fracture_incidence"]
            assert romo[f"absolute_risk_reduction_{kind}"] == pytest.approx(arr)
            if arr > 0:
                assert romo[f"number_needed_to_treat_{kind}"] == pytest.approx(1 / arr)
            assert plc[f"relative_risk_{kind}"] is None
        assert 0 < plc["hip_fractures_per_fall_baseline"] < summary["risk"]["fixed"]["hip_impact_share"]
        # the effective number of women the per-fall share rests on: between 1 and the arm's 5
        for a in (plc, romo):
            assert a["n"] == 5 and 1.0 <= a["hip_risk_effective_women"] <= 5 + 1e-9
        assert "effective women of 5 carry it" in text
        assert summary["risk"]["values"] == risk.load_parameters().values
        assert summary["risk"]["parameter_draws"] == 1000
        # the test double gives no monthly CTX and one fall direction: the summary says so
        assert any("lateral one is used" in n for n in summary["risk"]["notes"])
        assert (out / "plots" / "cumulative_incidence.png").stat().st_size > 5000
        assert "RR vert (95% CI)" in text and "NNT vert" in text and "risk parameters:" in text
        assert summary["risk"]["vertebral_fracture_definition"] == "semiquantitative"
        assert "semiquantitative reading" in text

    _rank0_check(checks)


def test_small_study_invariants(mpi_tmp_path, check):
    out = mpi_tmp_path / "run"
    summary = run_study_cli(
        "frame", patients=4, out=out, evaluator=synthetic_evaluator, json_output=True
    )
    rank0 = MPI.COMM_WORLD.rank == 0

    def checks():
        arms = {a["arm"]: a for a in summary["arms"]}
        plc, romo = arms["placebo"], arms["romosozumab"]
        assert plc["n"] == romo["n"] == 4
        # placebo near natural loss (test double: about -0.5 to -1 %/yr), romosozumab gains
        for key in ("ls_bmd_pct_mean", "th_bmd_pct_mean", "fn_bmd_pct_mean"):
            assert -2.0 < plc[key] < 0.0
            assert romo[key] > 2.0
        # the calibrated risk parameters (femur/data/fracture_risk.json): outputs here
        assert 0.0 < plc["vertebral_fracture_incidence"] < 0.5
        assert plc["relative_risk_vertebral"] is None and plc["relative_risk_hip"] is None
        assert 0 < romo["relative_risk_vertebral"] < 1
        assert 0 < romo["relative_risk_hip"] <= 1
        lo, hi = romo["relative_risk_vertebral_ci95"]
        assert lo <= romo["relative_risk_vertebral"] <= hi
        rows = (out / "results.csv").read_text().splitlines()
        assert "prevalent_vertebral_fractures" in rows[0] and "p_hip_fx_cum" in rows[0]
        assert len(rows) == 1 + 2 * 4 * 3
        assert (out / "plots" / "trajectories.png").stat().st_size > 1000
        assert (out / "plots" / "strength_change.png").stat().st_size > 1000
        assert len(list((out / "cases").glob("*.json"))) == 8
        assert json.loads((out / "summary.json").read_text())["arms"][1]["arm"] == "romosozumab"

    _rank0_check(checks)
    check(rank0 or summary is None, "summary only on rank 0")
    before = _read(out / "results.csv") if rank0 else None
    # a resumed run of a finished study recomputes nothing and writes the same bytes
    again = run_study_cli("frame", patients=4, out=out, evaluator=failing_evaluator, resume=True, json_output=True)

    def same():
        assert _read(out / "results.csv") == before
        assert again == summary

    _rank0_check(same)
    # without --resume, an existing run is not overwritten
    with pytest.raises(InputError, match="--resume"):
        run_study_cli("frame", patients=4, out=out, evaluator=synthetic_evaluator, json_output=True)
    # resuming into a folder of another study is refused
    with pytest.raises(InputError, match="different study"):
        run_study_cli("frame", patients=4, seed=99, out=out, evaluator=synthetic_evaluator, resume=True, json_output=True)


def test_failed_case_then_resume(mpi_tmp_path):
    clean, broken = mpi_tmp_path / "clean", mpi_tmp_path / "broken"
    run_study_cli("frame", patients=3, out=clean, evaluator=synthetic_evaluator, json_output=True)
    with pytest.raises(SolverError, match=r"1 case\(s\) failed: p00001-romosozumab: RuntimeError"):
        run_study_cli("frame", patients=3, out=broken, evaluator=failing_evaluator, json_output=True)
    _rank0_check(lambda: _expect(len(list((broken / "cases").glob("*.json"))) == 5))
    run_study_cli("frame", patients=3, out=broken, evaluator=synthetic_evaluator, resume=True, json_output=True)

    def same():
        for name in ("results.csv", "summary.json", "summary.txt"):
            assert _read(broken / name) == _read(clean / name), name

    _rank0_check(same)


def _expect(cond):
    assert cond


@pytest.mark.serial
def test_killed_run_then_resume(tmp_path):
    """SIGKILL in the middle of a run: finished cases survive, resume is bit-identical."""
    clean, killed = tmp_path / "clean", tmp_path / "killed"
    run_study_cli("frame", patients=3, out=clean, evaluator=synthetic_evaluator, json_output=True)
    script = (
        "import sys; sys.path.insert(0, %r)\n"
        "from femur.study import run_study_cli\n"
        "run_study_cli('frame', patients=3, out=%r, evaluator='test_study:killing_evaluator', json_output=True)\n"
    ) % (str(TESTS_DIR), str(killed))
    env = dict(os.environ, FEMUR_TEST_KILL_AT="4", MPLBACKEND="Agg", OMP_NUM_THREADS="1")
    proc = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, timeout=300)
    assert proc.returncode == -signal.SIGKILL, proc.stderr.decode()[-2000:]
    finished = sorted(p.name for p in (killed / "cases").glob("*.json"))
    assert finished == ["p00000-placebo.json", "p00000-romosozumab.json", "p00001-placebo.json"]
    for p in (killed / "cases").glob("*.json"):
        json.loads(p.read_text())  # complete files only
    assert not (killed / "results.csv").exists()
    run_study_cli("frame", patients=3, out=killed, evaluator=synthetic_evaluator, resume=True, json_output=True)
    for name in ("results.csv", "summary.json", "summary.txt"):
        assert _read(killed / name) == _read(clean / name)
    for p in (clean / "cases").glob("*.json"):
        assert _read(killed / "cases" / p.name) == _read(p)


def test_group_size_must_divide(mpi_tmp_path):
    with pytest.raises(InputError, match="--group-size 3"):
        run_study_cli("frame", patients=2, out=mpi_tmp_path / "g", evaluator=synthetic_evaluator, group_size=3)


def test_missing_default_evaluator(mpi_tmp_path):
    with pytest.raises(InputError, match="evaluator 'nonexistent_module_x:run'"):
        run_study_cli("frame", patients=2, out=mpi_tmp_path / "e", evaluator="nonexistent_module_x:run")


@pytest.mark.serial
def test_truncated_case_file_is_logged_and_recomputed_on_resume(tmp_path, caplog):
    out = tmp_path / "run"
    run_study_cli("frame", patients=2, out=out, evaluator=synthetic_evaluator, json_output=True)
    case = out / "cases" / "p00001-placebo.json"
    good = case.read_text()
    case.write_text(good[: len(good) // 2])  # a truncated file, as a full disk would leave it
    with caplog.at_level("WARNING", logger="femur"):
        run_study_cli("frame", patients=2, out=out, evaluator=synthetic_evaluator, resume=True,
                      json_output=True)
    assert any("p00001-placebo.json: unreadable" in r.getMessage() and "computing case p00001-placebo again"
               in r.getMessage() for r in caplog.records), caplog.text
    assert json.loads(case.read_text()) == json.loads(good)


@pytest.mark.serial
def test_figures_read_the_case_fields_the_evaluator_wrote(tmp_path):
    """`femur run --figures`: an evaluator that takes fields_dir writes per-case fields, and
    the figures are drawn from them (no patient is run again)."""
    from femur.study.runner import case_fields_dir

    calls = []

    def fields_evaluator(record, comm=None, fields_dir=None):
        import numpy as np

        from femur.exports.pictures import save_cell_fields
        from femur.mechanics.verification import prism_bone

        calls.append(record["case_id"])
        bone = prism_bone(MPI.COMM_SELF)
        n = bone.num_local_cells
        for kind in ("femur", "vertebra"):
            save_cell_fields(bone.mesh, {"density_g_cm3": np.ones(n), "density_change_pct": np.full(n, 2.0)},
                             Path(fields_dir) / f"{kind}_fields.vtu")
        return synthetic_evaluator(record, comm)

    out = tmp_path / "fig"
    s = Study.load("frame", patients=1)
    s.run(evaluator=fields_evaluator, out=out, progress=False, plots=False, fields=True)
    assert len(calls) == 2 and (case_fields_dir(out, "p00000-placebo") / "femur_fields.vtu").exists()
    paths = s.figures(out)
    assert [p.name for p in paths] == ["density_change_femur.png", "density_change_vertebra.png"]
    assert all(p.stat().st_size > 5000 for p in paths) and len(calls) == 2
    with pytest.raises(InputError, match="run the study with fields"):
        s.figures(tmp_path / "elsewhere")


def test_number_needed_to_treat_in_the_summary_table():
    """An NNT prints as a whole number; one from a vanishing risk difference (1/1e-15) does
    not print its 16 digits into the next column."""
    from femur.study.results import format_nnt

    assert format_nnt(None) == "-"
    assert format_nnt(348.4) == "348"
    assert format_nnt(-25.2) == "-25"
    assert format_nnt(1.5e14) == ">100000" and format_nnt(-3e9) == "<-100000"
