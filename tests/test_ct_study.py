"""Studies whose patients are CT scans (issue 14): a manifest folder, a bad scan that is
reported while the study goes on, resume, and clear errors for bad manifests.

The scans are the tiny synthetic vertebra of test_ct_treatment; the second patient's scan is
made from the first by scaling every density by 1.2 (a denser vertebra, same geometry).
"""

from __future__ import annotations

import json

import pytest

import femur  # noqa: F401  (MPI before dolfinx)
from mpi4py import MPI

from femur.core.errors import InputError
from femur.study import Study, run_study_cli
from femur.study.spec import SCAN_ENDPOINTS
from test_ct_treatment import synthetic_scan

COMM = MPI.COMM_WORLD

STUDY = """
[study]
name = "scans"
duration_months = 2
visit_months = [0, 2]
seed = 3

[cohort]
scans = "scans"

[[arms]]
name = "placebo"
regimen = "placebo"

[[arms]]
name = "romosozumab"
regimen = "romosozumab"

[model]
fe_interval_days = 30
"""

MANIFEST = """id,image,labels,calibrated_mg_cm3,layers,bone_labels,sex,age_years,body_mass_kg
base,base_im.nii.gz,base_seg.nii.gz,true,5;6,1;2;3,female,68,62
denser,denser_im.nii.gz,denser_seg.nii.gz,true,5;6,1;2;3,F,74,
missing,nothere_im.nii.gz,base_seg.nii.gz,yes,5;6,,male,70,80
"""


def _write(path, text):
    COMM.barrier()  # no rank still reads the file rank 0 replaces
    if COMM.rank == 0:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    COMM.barrier()


def _scan_study(root):
    scans = root / "scans"
    synthetic_scan(scans, name="base")
    synthetic_scan(scans, scale=1.2, name="denser")
    _write(scans / "manifest.csv", MANIFEST)
    _write(root / "study.toml", STUDY)
    return root / "study.toml"


def _read(path):
    return path.read_bytes()


def test_study_on_scans_runs_reports_the_bad_scan_resumes_and_summarises(mpi_tmp_path, check):
    path = _scan_study(mpi_tmp_path)
    study = Study.load(path)
    check(study.spec.cohort.size == 3 and study.spec.endpoints == SCAN_ENDPOINTS, "3 scans, spine endpoints")
    recs = study.cases()
    check([r["case_id"] for r in recs][:2] == ["base-placebo", "base-romosozumab"], "case ids")
    check(recs[0]["patient"]["body_mass_kg"] == 62 and recs[2]["patient"]["body_mass_kg"] == 65.0,
          "body mass given / default")
    out = mpi_tmp_path / "out"
    summary = run_study_cli(str(path), out=str(out), json_output=True)

    def checks():
        failed = summary["failed_cases"]
        assert [f["case_id"] for f in failed] == ["missing-placebo", "missing-romosozumab"]
        assert "manifest.csv row 4: image file" in failed[0]["error"] and "not found" in failed[0]["error"]
        assert failed[0]["scan"].endswith("nothere_im.nii.gz")
        arms = {a["arm"]: a for a in summary["arms"]}
        assert arms["placebo"]["n"] == 2 and arms["romosozumab"]["n"] == 2
        assert arms["romosozumab"]["ls_bmd_pct_mean"] > arms["placebo"]["ls_bmd_pct_mean"]
        assert arms["romosozumab"]["vertebral_strength_pct_mean"] > 0
        assert arms["romosozumab"]["vertebral_fracture_incidence"] is not None
        rows = (out / "results.csv").read_text().splitlines()
        assert len(rows) == 1 + 2 * 2 * 2
        header = rows[0].split(",")
        first = dict(zip(header, rows[1].split(",")))
        assert first["patient_id"] == "base" and float(first["ls_t_score"]) < 0  # measured on the scan
        assert first["th_bmd_pct"] == ""
        text = (out / "summary.txt").read_text()
        assert "failed cases" in text and "missing-placebo" in text
        assert (out / "plots" / "trajectories.png").stat().st_size > 1000
        case = json.loads((out / "cases" / "denser-romosozumab.json").read_text())
        assert case["result"]["extra"]["geometry"]["vertebra"]["held_cells"]["below_floor_cells"] == 1
        assert case["record"]["patient"]["sex"] == "female"

    if COMM.rank == 0:
        checks()
    check(True)
    before = {n: _read(out / n) for n in ("results.csv", "summary.json", "summary.txt")} if COMM.rank == 0 else None
    # resume: the finished cases are kept, the bad scan is tried again and reported again
    again = run_study_cli(str(path), out=str(out), resume=True, json_output=True)
    if COMM.rank == 0:
        assert again == summary
        for n, b in before.items():
            assert _read(out / n) == b, n
    check(True)


def _bad(root, manifest=None, cohort=None, endpoints=None):
    scans = root / "scans"
    _write(scans / "manifest.csv", manifest or MANIFEST)
    text = STUDY
    if cohort:
        text = text.replace('scans = "scans"', cohort)
    if endpoints:
        text = text.replace("seed = 3", f"seed = 3\nendpoints = {endpoints}")
    _write(root / "study.toml", text)
    return root / "study.toml"


def test_bad_scan_cohorts_give_clear_errors(mpi_tmp_path):
    header = "id,image,labels,calibrated_mg_cm3,sex,age_years\n"
    cases = [
        ("id,image,labels,sex\nx,a.nii,b.nii,female\n", r"manifest\.csv: the header lacks column\(s\) \['age_years'\]"),
        (header + "x,a.nii,b.nii,true,female,\n", r"manifest\.csv row 2: age_years: missing"),
        (header + "x,a.nii,b.nii,true,other,70\n", r"manifest\.csv row 2: .*sex"),
        (header + "x,a.nii,b.nii,maybe,female,70\n", r"row 2: calibrated_mg_cm3: expected true or false"),
        (header + "x,a.nii,b.nii,false,female,70\n", r"row 2: scan .*a\.nii: no calibration"),
        (header + "x,a.nii,b.nii,true,female,70\nx,c.nii,b.nii,true,female,60\n",
         r"row 3: id 'x' is used twice"),
        ("id,image,labels,sex,age_years,weight\nx,a.nii,b.nii,female,70,60\n", r"row 2: unknown column"),
    ]
    for text, pattern in cases:
        with pytest.raises(InputError, match=pattern):
            Study.load(_bad(mpi_tmp_path, manifest=text))
    with pytest.raises(InputError, match=r"cohort\.size: not with scans"):
        Study.load(_bad(mpi_tmp_path, cohort='scans = "scans"\nsize = 3'))
    with pytest.raises(InputError, match=r"scan folder without manifest\.csv"):
        Study.load(_bad(mpi_tmp_path, cohort='scans = "."'))
    with pytest.raises(InputError, match=r"endpoint 'hip_fracture' needs a femur"):
        Study.load(_bad(mpi_tmp_path, endpoints='["ls_bmd", "hip_fracture"]'))
    with pytest.raises(InputError, match=r"--patients 5: the study lists 3 scan"):
        Study.load(_bad(mpi_tmp_path), patients=5)


def test_scan_tables_in_the_study_file(mpi_tmp_path, check):
    cohort = """voxel_coarsen = 2

[[cohort.scans]]
image = "scans/base_im.nii.gz"
labels = "scans/base_seg.nii.gz"
calibrated_mg_cm3 = true
layers = [5, 6]
sex = "female"
age_years = 80
"""
    study = Study.load(_bad(mpi_tmp_path, cohort=cohort))
    p = study.cohort()[0]
    check(p["patient_id"] == "base_im" and p["scan"]["voxel_coarsen"] == 2, str(p))
    check(p["scan"]["image"] == str((mpi_tmp_path / "scans" / "base_im.nii.gz").resolve()), "absolute path")
    check(p["scan_where"].endswith("cohort.scans[0]"), p["scan_where"])
