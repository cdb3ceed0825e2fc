"""Trial throughput (issue 13): reuse must not change results.

* the DXA projection operator (pixels x cells) gives the areal BMD of the pairwise ray sum;
  a bone and its copies are projected once;
* geometry-derived ROI masks are computed once per bone and handed out as copies.

Run on 1 and 2 ranks (the 2-rank run checks the same identities on a partitioned mesh).
"""

import re

import numpy as np
import pytest

import femur  # noqa: F401  (MPI before dolfinx)
from mpi4py import MPI

from femur.outcomes import dxa
from femur.workflows.bones import build_bone
from tests.conftest import assert_all_ranks


@pytest.fixture(scope="module")
def femur_4mm():
    return build_bone("femur", mesh_size_mm=4.0, t_score=-2.5, comm=MPI.COMM_WORLD)


def _pairwise_image(proj, bone, rho):
    """The projection as it was computed before the operator: one term per (pixel, tet)."""
    w = 0.6 * rho[proj.cell] * proj.chord_mm * 0.1
    img = np.bincount(proj.pix, weights=w, minlength=proj.shape[0] * proj.shape[1])
    bone.comm.Allreduce(MPI.IN_PLACE, img, op=MPI.SUM)
    return img.reshape(proj.shape)


def test_dxa_operator_equals_pairwise_sum(femur_4mm):
    bone = femur_4mm.copy()
    rng = np.random.default_rng(7)
    rho = bone.density.x.array * rng.uniform(0.8, 1.2, bone.num_local_cells)
    for site in ("femoral_neck", "total_hip"):
        proj = dxa.prepare(bone, site)
        ref = _pairwise_image(proj, bone, rho)
        img = proj.image(bone, rho)
        assert_all_ranks(np.allclose(img, ref, rtol=1e-12, atol=1e-15), f"{site}: operator image differs")
        roi = proj.roi & proj.covered
        bmd_ref = ref[roi].sum() / np.count_nonzero(roi)
        bmd = dxa.areal_bmd(bone, site, prepared=proj, density_g_cm3=rho)  # BMC / area
        assert_all_ranks(abs(bmd - bmd_ref) <= 1e-12 * bmd_ref, f"{site}: {bmd} vs {bmd_ref}")


def test_bone_and_copies_are_projected_once(femur_4mm, monkeypatch):
    calls = []
    real = dxa.project

    def counting(*a, **k):
        calls.append(1)
        return real(*a, **k)

    monkeypatch.setattr(dxa, "project", counting)
    bone = femur_4mm.copy()
    bone.derived.clear()  # a fresh geometry cache (the copies share it)
    fresh = dxa._prepare_hip(bone, dxa.DEFAULT_PIXEL_MM, dxa.NECK_BOX_MM,
                             dxa.TOTAL_HIP_BELOW_LESSER_TROCHANTER_MM)
    calls.clear()
    a = dxa.areal_bmd(bone, "femoral_neck")
    b = dxa.areal_bmd(bone.copy(), "total_hip")
    c = dxa.report(bone.copy())
    assert_all_ranks(len(calls) == 1, f"{len(calls)} projections of one bone")
    # the cached projection measures what a fresh one does
    fn = dxa.measure(bone, "femoral_neck", prepared=dxa.dataclasses.replace(fresh[0], roi=fresh[1]))
    th = dxa.measure(bone, "total_hip", prepared=dxa.dataclasses.replace(fresh[0], roi=fresh[2]))
    assert_all_ranks(a == fn["areal_bmd_g_cm2"] and b == th["areal_bmd_g_cm2"]
                     and c["total_hip"]["areal_bmd_g_cm2"] == b)
    # a bone with other landmarks is projected again
    moved = femur_4mm.copy()
    moved.landmarks = dict(moved.landmarks, anterior=np.array(moved.landmarks["anterior"], float))
    dxa.areal_bmd(moved, "femoral_neck")
    assert_all_ranks(len(calls) == 2)


def test_roi_mask_cached_and_copied(femur_4mm):
    bone = femur_4mm.copy()
    name = next(iter(bone.rois))
    m1 = bone.roi_mask(name)
    expected = np.asarray(bone.rois[name](bone.cell_midpoints().T), dtype=bool)
    m1[:] = ~m1  # a caller changing its mask must not change the cache
    m2 = bone.copy().roi_mask(name)
    assert_all_ranks(np.array_equal(m2, expected))


# --- scheduling and the per-patient bone cache -----------------------------------------
import json  # noqa: E402
import time  # noqa: E402

from femur.study import Study  # noqa: E402
from femur.study.evaluator import bone_cache  # noqa: E402
from femur.study.runner import CLAIMS_DIR, SCHEDULE, work_units  # noqa: E402
from femur.study.unchanged import compare_results  # noqa: E402
from tests.test_study import synthetic_evaluator  # noqa: E402


def _uneven(record, comm=None):
    """The synthetic evaluator, with a cost that differs by patient, saying which world
    rank ran the case."""
    time.sleep(0.02 * (1 + 3 * (record["patient"]["index"] % 2)))
    out = synthetic_evaluator(record, comm)
    out["world_rank"] = MPI.COMM_WORLD.rank
    return out


def test_work_units():
    records = Study.load("frame", patients=3).cases()
    assert work_units(records, [r["case_index"] for r in records]) == [[0, 1], [2, 3], [4, 5]]
    assert work_units(records, [1, 2, 5]) == [[1], [2], [5]]
    assert work_units([{"case_index": 0}, {"case_index": 1}], [0, 1]) == [[0], [1]]


def test_dynamic_schedule_same_results_one_group_per_patient(mpi_tmp_path):
    s = Study.load("frame", patients=5)
    dyn = s.run(_uneven, out=mpi_tmp_path / "dyn", progress=False, plots=False)
    sta = s.run(_uneven, out=mpi_tmp_path / "static", progress=False, plots=False, schedule="static")
    ok, msg = True, ""
    if MPI.COMM_WORLD.rank == 0:
        cmp = compare_results(sta, dyn, tol_pp=0.0)
        ranks = {}
        for c in dyn.cases:
            ranks.setdefault(c["record"]["patient"]["patient_id"], set()).add(c["result"]["extra"]["world_rank"])
        report = json.loads((mpi_tmp_path / "dyn" / SCHEDULE).read_text())
        ok = (cmp["ok"] and len(dyn.cases) == 10 and all(len(r) == 1 for r in ranks.values())
              and len(report["ranks_detail"]) == MPI.COMM_WORLD.size
              and sum(r["cases"] for r in report["ranks_detail"]) == 10
              and all(r["idle_s"] >= 0 for r in report["ranks_detail"])
              and not (mpi_tmp_path / "dyn" / CLAIMS_DIR).exists())
        msg = f"{cmp}, ranks per patient {ranks}, schedule {report}"
    assert_all_ranks(ok, msg)


def test_bone_cache_leaves_results_unchanged(monkeypatch):
    """Both arms of a patient with the per-patient bone cache (the second arm's bones and
    month-0 fall strengths come from the cache, and its fall solvers are the first arm's,
    set back to their month-0 state) give the case results of bones built from scratch,
    bit for bit: the handed-over solvers keep the preconditioner of their month-0 solve and
    start from its solution, as the second arm's own month-0 solves would have left them."""
    from femur.study.evaluator import run_case

    # the linear strength model: the cache and its solvers are the subject, not the strength model
    records = Study.load("frame", patients=1, months=1, strength_model="linear").cases()
    assert [r["arm"] for r in records] == ["placebo", "romosozumab"]
    bone_cache.clear()
    cached = [run_case(r, MPI.COMM_WORLD) for r in records]
    hits, shared, solvers = bone_cache.hits, bone_cache.baseline_hits, bone_cache.solver_hits
    bone_cache.clear()
    monkeypatch.setattr(bone_cache, "enabled", False)
    fresh = run_case(records[1], MPI.COMM_WORLD)
    diff = [(v["month"], k, x, w[k]) for v, w in zip(cached[1]["visits"], fresh["visits"])
            for k, x in v.items() if x != w[k]]
    ok = (hits == 2 and shared == 1 and solvers == 1 and not diff and cached[1]["monthly"] == fresh["monthly"]
          and len(cached[1]["visits"]) == 2)
    assert_all_ranks(ok, f"{hits} cache hits (expected 2), {shared} baseline-strength hits (expected 1), "
                         f"{solvers} solver hand-overs (expected 1); differences {diff[:4]}")


def test_solver_hand_over_to_the_same_mesh_only(femur_4mm):
    """A track hands over its solved strength solvers but the habitual one; a track on the
    same mesh adopts them (set back to the baseline moduli and the first solution, its
    strengths are the first track's); one on another mesh, or without the case, does not."""
    from femur.remodeling.model import RemodelingModel
    from femur.remodeling.patient import Patient
    from femur.treatments import as_sequence
    from femur.workflows.bones import build_bone
    from femur.workflows.tracks import BoneTrack, RunStats

    model = RemodelingModel(as_sequence("placebo"), Patient(ls_t_score=-2.5))
    a = BoneTrack("femur", femur_4mm.copy(), model, RunStats())
    qa = a.strength()
    handed = a.hand_over()
    ok = set(handed) == set(a.cases) - {a.habitual} and set(a.solvers) == {a.habitual}
    vert = BoneTrack("vertebra", build_bone("vertebra", mesh_size_mm=6.0, t_score=-2.5, comm=MPI.COMM_WORLD),
                     model, RunStats())
    fall = next(iter(handed))
    ves, vinfo, vnu = vert.solvers[vert.habitual]
    b = BoneTrack("femur", femur_4mm.copy(), model, RunStats())
    foreign = {fall: (ves, vinfo, vnu, (None, None))}  # a femur case on the vertebra's mesh
    ok &= b.adopt(foreign) == foreign and vert.adopt(handed) == handed
    ok &= b.adopt(handed) == {} and set(b.solvers) == set(b.cases)
    qb = b.strength()
    worst = max(abs(qb[p][k] / qa[p][k] - 1.0) for p in handed for k in qa[p])
    ok &= worst < 1e-9
    for t in (a, b, vert):
        t.close()
    assert_all_ranks(ok, f"handed {sorted(handed)}, strengths differ by {worst:.2e}")


# --- adaptive habitual solves ----------------------------------------------------------
def _vertebra_run(tol, treatment="placebo", cell_step_days=1.0):
    from femur.remodeling.patient import Patient
    from femur.workflows.simulation import Simulation

    sim = Simulation(treatment, 6, Patient(ls_t_score=-2.5), bones=("vertebra",), fe_interval_days=14,
                     progress=False, fe_adaptive_tol=tol, mesh_size_mm=4.0, cell_step_days=cell_step_days)
    return sim.run()


@pytest.mark.parametrize("treatment", ["romosozumab", "denosumab"])
def test_trial_cell_step_moves_results_little(treatment):
    """The trials' 2-day cell step (femur.study.evaluator, "Cell step") against 1-day steps:
    6 months of the fastest movers (romosozumab's formation peak, denosumab's resorption
    stop), BMD and strength changes within 0.1 percentage points (measured over 12-month
    FRAME cases: at most 0.059); it is recorded in the run; a bad step is named."""
    from femur.core.errors import InputError
    from femur.workflows.simulation import Simulation

    one, two = _vertebra_run(None, treatment), _vertebra_run(None, treatment, cell_step_days=2.0)
    worst = _worst_pp(one, two)
    assert_all_ranks(0.0 < worst <= 0.1 and two.run["cell_step_days"] == 2.0,
                     f"{treatment}: 1- vs 2-day cell steps differ by {worst} pp")
    with pytest.raises(InputError, match="cell_step_days"):
        Simulation("placebo", 1, bones=("vertebra",), progress=False, cell_step_days=0.0)


def _worst_pp(a, b):
    keys = [k for k in a.series if k.endswith("bmd_pct")]
    d = [abs(x - y) for k in keys for x, y in zip(a.series[k], b.series[k])]
    d += [abs(x - y) for k in a.strength_pct for x, y in zip(a.strength_pct[k], b.strength_pct[k])]
    return max(d)


@pytest.mark.parametrize("treatment", ["placebo", "romosozumab"])
def test_adaptive_fe_interval_matches_fixed(treatment):
    """The adaptive habitual-solve option against the fixed interval: tolerance 0 is the
    fixed interval exactly; 0.005 skips solves and keeps BMD and strength within 0.05 pp."""
    fixed = _vertebra_run(None, treatment)
    zero = _vertebra_run(0.0, treatment)
    loose = _vertebra_run(0.005, treatment)
    assert_all_ranks(zero.run["fe_skipped"] == 0 and zero.run["fe_solves"] == fixed.run["fe_solves"]
                     and _worst_pp(fixed, zero) == 0.0, f"tol 0: {zero.run}")
    worst = _worst_pp(fixed, loose)
    assert_all_ranks(worst <= 0.05, f"{treatment}: adaptive vs fixed differ by {worst} pp")
    if treatment == "placebo":  # slow loss: most solves are skipped
        assert_all_ranks(loose.run["fe_skipped"] > 0 and loose.run["fe_solves"] < fixed.run["fe_solves"],
                         f"{loose.run}")


def test_adaptive_tolerance_is_checked():
    from femur.core.errors import InputError
    from femur.workflows.simulation import Simulation

    with pytest.raises(InputError, match="fe_adaptive_tol"):
        Simulation("placebo", 1, bones=("vertebra",), fe_adaptive_tol=-0.1, progress=False)


# --- trial solve settings (issue 13, phase 2) ------------------------------------------
def test_trial_solve_settings_are_checked():
    from femur.core.errors import InputError
    from femur.workflows.simulation import Simulation

    for kw, word in ((dict(habitual_rtol=0.0), "habitual_rtol"), (dict(habitual_rtol=2.0), "habitual_rtol"),
                     (dict(strength_rtol={"tibia": 1e-6}), "unknown bones"),
                     (dict(strength_rtol={"vertebra": -1.0}), "strength_rtol")):
        with pytest.raises(InputError, match=word):
            Simulation("placebo", 1, bones=("vertebra",), progress=False, **kw)


def test_trial_solves_defaults_and_switch():
    """A study file's fe_adaptive_tol wins (0: the fixed grid); without it the trial default;
    disabled: the Simulation defaults (tight tolerances, fixed grid)."""
    from femur.study.evaluator import TrialSolves

    t = TrialSolves()
    assert t.kwargs({})["fe_adaptive_tol"] == t.fe_adaptive_tol == 0.01
    assert t.kwargs({"fe_adaptive_tol": 0.0})["fe_adaptive_tol"] is None
    assert t.kwargs({"fe_adaptive_tol": 0.02})["fe_adaptive_tol"] == 0.02
    assert t.kwargs({})["habitual_rtol"] == 1e-4 and t.kwargs({})["strength_rtol"] == {"femur": 1e-6}
    assert t.kwargs({})["solver"].options["pc_gamg_agg_nsmooths"] == 0  # the trial GAMG options
    assert "solver" not in t.kwargs({"solver": "mumps"})  # a study's own solver is kept
    assert t.kwargs({})["cell_step_days"] == t.cell_step_days == 2.0
    t.enabled = False  # the cell step is a model setting: it stays
    assert t.kwargs({}) == {"fe_adaptive_tol": None, "cell_step_days": 2.0}  # no trial GAMG options either
    assert t.kwargs({"fe_adaptive_tol": 0.005}) == {"fe_adaptive_tol": 0.005, "cell_step_days": 2.0}


def _same_to_printed_precision(a: str, b: str) -> tuple[bool, str]:
    """Two printed tables agree token by token, numbers to one unit of their last printed
    digit (a value on a rounding boundary may flip it: e.g. a 1-month study's hip NNT,
    1/ARR ~ 1.2e6 printed to units, moved from 1195100 to 1195101 with the trial solves)."""
    ta, tb = re.split(r"[\s(),]+", a), re.split(r"[\s(),]+", b)
    if len(ta) != len(tb):
        return False, f"{len(ta)} vs {len(tb)} tokens"
    for x, y in zip(ta, tb):
        if x == y:
            continue
        try:
            fx, fy = float(x.rstrip("%")), float(y.rstrip("%"))
        except ValueError:
            return False, f"{x!r} vs {y!r}"
        ulp = 10.0 ** -(len(x.rstrip("%").split(".")[1]) if "." in x else 0)
        if abs(fx - fy) > ulp * (1 + 1e-9):
            return False, f"{x} vs {y}"
    return True, ""


@pytest.mark.slow  # ~35 s CPU: 8 FE cases (the quick trial benchmark's --check-unchanged is the same check)
def test_small_study_unchanged_without_issue13_reuse(mpi_tmp_path, monkeypatch):
    """The results-unchanged check of issue 13 on a small study (2 women x 2 arms x 1 month):
    with every issue-13 reuse (bone cache, shared month-0 strengths, trial tolerances,
    adaptive interval, dynamic schedule) against none of them (static deal, bones built per
    case, tight tolerances, fixed grid): BMD and strength changes within 0.05 percentage
    points, and the printed summary the same to its last digit (one unit there: see
    :func:`_same_to_printed_precision`)."""
    from femur.mechanics import p1_stiffness
    from femur.study.evaluator import trial_solves

    s = Study.load("frame", patients=2, months=1, strength_model="linear")  # as above
    bone_cache.clear()
    fast = s.run(out=mpi_tmp_path / "fast", progress=False, plots=False)
    monkeypatch.setattr(bone_cache, "enabled", False)
    monkeypatch.setattr(trial_solves, "enabled", False)
    monkeypatch.setattr(p1_stiffness, "enabled", False)
    ref = s.run(out=mpi_tmp_path / "ref", progress=False, plots=False, schedule="static")
    ok, msg = True, ""
    if MPI.COMM_WORLD.rank == 0:
        cmp = compare_results(ref, fast)
        same, why = _same_to_printed_precision(ref.format_table(), fast.format_table())
        ok = (same and cmp["cases"] == 4 and not cmp["missing_cases"]
              and all(d <= cmp["tolerance_pp"] for d in cmp["max_diff"].values()))
        msg = f"{cmp}; printed summary: {why}"
    assert_all_ranks(ok, msg)
