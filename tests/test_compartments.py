"""Compartment courses (femur.outcomes.compartments): cortical and trabecular mineral at
the hip and the spine, neck cortical thickness, hip cortical porosity -- on both drivers."""

import json

import numpy as np
import pytest
from mpi4py import MPI

from femur.outcomes.compartments import (
    BASELINE_KEYS,
    COMPARTMENT_KEYS,
    changes_from_sums,
    cortical_share_of_change,
    roi_sums,
)
from femur.workflows.systemic import simulate_sites


def test_sums_give_exact_changes_on_hand_built_cells(check):
    """Four cells, two cortical: every % change worked out by hand."""
    v = np.array([1.0, 2.0, 1.0, 3.0])            # mm3 inside the ROI prism
    rho0 = np.array([1.8, 1.6, 0.3, 0.2])          # g/cm3
    cort = np.array([True, True, False, False])
    f0 = np.array([0.9, 0.8, 0.15, 0.1])
    f = np.array([0.99, 0.8, 0.15, 0.12])          # cortical cell 0 +10 %, trabecular cell 3 +20 %
    ratio = np.array([1.1, 1.0, 1.0, 1.2])         # mineral ratios
    out = changes_from_sums({"th": roi_sums(v, rho0, cort, ratio, f, f0),
                             "fn": roi_sums(v, rho0, cort, ratio, f, f0)})
    cort_w, trab_w = 1.8 + 3.2, 0.3 + 0.6
    check(np.isclose(out["hip_cortical_bmc_pct"], 100 * (1.8 * 1.1 + 3.2) / cort_w - 100), "cortical BMC")
    check(np.isclose(out["hip_trabecular_bmc_pct"], 100 * (0.3 + 0.6 * 1.2) / trab_w - 100), "trabecular BMC")
    check(np.isclose(out["neck_cortical_thickness_pct"], 100 * (0.99 + 1.6) / (0.9 + 1.6) - 100), "thickness")
    check(np.isclose(out["hip_cortical_porosity_pct"], 100 * (0.01 + 0.4) / (0.1 + 0.4) - 100), "porosity")
    check(np.isclose(out["hip_cortical_porosity"], 0.5 / 3.0), "baseline porosity")
    check(np.isclose(out["hip_cortical_bmc_share"], cort_w / (cort_w + trab_w)), "share")
    # the shares recombine the compartments into the ROI's total mineral change
    total = 100 * (np.sum(v * rho0 * ratio) / np.sum(v * rho0) - 1)
    share = out["hip_cortical_bmc_share"]
    check(np.isclose(share * out["hip_cortical_bmc_pct"] + (1 - share) * out["hip_trabecular_bmc_pct"], total),
          "shares do not recombine")
    check(np.isclose(cortical_share_of_change(total, out["hip_cortical_bmc_pct"], share),
                     share * out["hip_cortical_bmc_pct"] / total), "cortical share of the change")
    # a bone without cortex: the cortical measures are left out, not reported as 0 or NaN
    none = changes_from_sums({"ls": roi_sums(v, rho0, np.zeros(4, bool), ratio, f, f0)})
    check("spine_cortical_bmc_pct" not in none and "spine_trabecular_bmc_pct" in none, str(none))
    with pytest.raises(ValueError, match="unknown compartment site"):
        changes_from_sums({"wrist": np.zeros(16)})
    # intracortical porosity given separately (canal remodelling): only it counts as porosity;
    # tissue mineral density from f alpha over f, cell by cell worked by hand
    alpha0 = np.array([0.9, 0.9, 0.8, 0.8])
    alpha = np.array([0.95, 0.9, 0.8, 0.84])
    pore = np.array([-0.02, 0.0, 0.0, 0.0])
    o2 = changes_from_sums({"th": roi_sums(v, rho0, cort, ratio, f, f0, pore=pore, alpha=alpha, alpha0=alpha0),
                            "ls": roi_sums(v, rho0, cort, ratio, f, f0, pore=pore, alpha=alpha, alpha0=alpha0)})
    check(np.isclose(o2["hip_cortical_porosity_pct"], 100 * (0.08 + 0.4) / (0.1 + 0.4) - 100), "canal porosity")
    tmd_c = ((0.99 * 0.95 + 1.6 * 0.9) / (0.99 + 1.6)) / ((0.9 * 0.9 + 1.6 * 0.9) / (0.9 + 1.6))
    check(np.isclose(o2["hip_cortical_tmd_pct"], 100 * tmd_c - 100), "cortical TMD")
    tmd_t = ((0.15 * 0.8 + 0.36 * 0.84) / (0.15 + 0.36)) / 0.8
    check(np.isclose(o2["spine_trabecular_tmd_pct"], 100 * tmd_t - 100), "trabecular TMD")


def test_systemic_driver_reports_every_course_and_the_shares_add_up(check):
    tc = simulate_sites("placebo", 12)
    check(set(COMPARTMENT_KEYS) <= set(tc.series), f"missing: {set(COMPARTMENT_KEYS) - set(tc.series)}")
    check(set(BASELINE_KEYS) == set(tc.compartment_baseline), str(tc.compartment_baseline))
    for k in COMPARTMENT_KEYS:
        check(tc.compartments[k].shape == tc.months.shape and tc.compartments[k][0] == pytest.approx(0, abs=1e-12),
              f"{k} does not start at 0")
    for site, pre in (("th", "hip"), ("ls", "spine")):
        sh = tc.compartment_baseline[f"{pre}_cortical_bmc_share"]
        rec = sh * tc.compartments[f"{pre}_cortical_bmc_pct"] + (1 - sh) * tc.compartments[f"{pre}_trabecular_bmc_pct"]
        # the site's aBMD is sampled from daily values: the same to the interpolation error
        check(np.allclose(rec, tc.bmd_pct[site], atol=2e-3), f"{site}: {rec[-1]} vs {tc.bmd_pct[site][-1]}")
    # placebo: bone is lost from both compartments and the cortex becomes more porous
    last = {k: v[-1] for k, v in tc.compartments.items()}
    check(last["hip_cortical_bmc_pct"] < 0 and last["hip_trabecular_bmc_pct"] < 0, str(last))
    check(last["hip_cortical_porosity_pct"] > 0 and last["neck_cortical_thickness_pct"] < 0, str(last))
    d = json.loads(tc.to_json())
    check(all(len(d[k]) == len(d["months"]) for k in COMPARTMENT_KEYS), "JSON courses")
    check(set(d["compartment_baseline"]) == set(BASELINE_KEYS), "JSON baseline")
    check("neck Ct.Th%" in tc.table(), "table has no compartment block")


def test_systemic_courses_move_with_the_drugs(check):
    """Directions every remodeling model must give: anabolic romosozumab thickens the neck
    cortex and lowers hip cortical porosity; more trabecular than cortical gain."""
    romo = simulate_sites("romosozumab", 12, sites=("total_hip", "femoral_neck"))
    last = {k: v[-1] for k, v in romo.compartments.items()}
    check(set(last) == {"hip_cortical_bmc_pct", "hip_trabecular_bmc_pct", "hip_cortical_porosity_pct",
                        "hip_cortical_tmd_pct", "neck_cortical_thickness_pct"}, f"only the sites asked for: {sorted(last)}")
    check(last["neck_cortical_thickness_pct"] > 0 and last["hip_cortical_porosity_pct"] < 0, str(last))
    check(last["hip_trabecular_bmc_pct"] > last["hip_cortical_bmc_pct"] > 0, str(last))


def _coarse_run(comm, with_table=False):
    """A 2-month romosozumab run on coarse bones, mechanostat off; with the site table of
    its bones at baseline (before the run changes their densities)."""
    from dataclasses import replace

    from femur.calibration.site_template import table_from_bones
    from femur.remodeling import ModelParameters
    from femur.workflows.simulation import Simulation

    base = ModelParameters()
    params = replace(base, cells=replace(base.cells, mech_anabolic_gain=0.0, mech_catabolic_gain=0.0))
    sim = Simulation("romosozumab", 2, fe_interval_days=30, strength_months=(0,), mesh_size_mm=5.0,
                     params=params, progress=False, comm=comm)
    table = table_from_bones([t.bone for t in sim.tracks.values()]) if with_table else None
    return sim, sim.run(), table


def test_fe_path_courses_add_up_and_match_the_systemic_driver(check):
    """FE-coupled path, coarse bones, mechanostat off: the compartments recombine into the
    DXA sites' aBMD change (same chords, same weights) and the systemic driver on the
    same bones' template gives the same courses (binning error only)."""
    sim, fe, table = _coarse_run(MPI.COMM_WORLD, with_table=True)
    check(set(COMPARTMENT_KEYS) <= set(fe.series), f"missing {set(COMPARTMENT_KEYS) - set(fe.series)}")
    for site, pre in (("th", "hip"), ("ls", "spine")):
        sh = fe.compartment_baseline[f"{pre}_cortical_bmc_share"]
        rec = sh * fe.compartments[f"{pre}_cortical_bmc_pct"] + (1 - sh) * fe.compartments[f"{pre}_trabecular_bmc_pct"]
        check(np.allclose(rec, fe.bmd_pct[site], atol=1e-8), f"{site}: {rec[-1]} vs {fe.bmd_pct[site][-1]}")
    sys_ = simulate_sites("romosozumab", 2, params=sim.params, template=table)
    for k in COMPARTMENT_KEYS:
        a, b = fe.compartments[k][-1], sys_.compartments[k][-1]
        check(abs(a - b) < 0.03, f"{k}: FE {a:.4f} vs systemic {b:.4f}")
    for k in BASELINE_KEYS:
        a, b = fe.compartment_baseline[k], sys_.compartment_baseline[k]
        check(abs(a - b) < 1e-6, f"{k}: FE {a:.6f} vs systemic {b:.6f}")


# slow (CI time): the FE-path courses run on two ranks in the other tests of this file
@pytest.mark.slow
@pytest.mark.partition
def test_fe_path_courses_do_not_depend_on_the_partition(check):
    """The same coarse run on all ranks and on each rank alone (under mpiexec -n 2: a
    partitioned run against a serial one)."""
    _, par, _ = _coarse_run(MPI.COMM_WORLD)
    _, ser, _ = _coarse_run(MPI.COMM_SELF)
    for k in COMPARTMENT_KEYS:
        check(np.allclose(par.compartments[k], ser.compartments[k], rtol=1e-6, atol=1e-6),
              f"{k}: {par.compartments[k][-1]} vs {ser.compartments[k][-1]}")


@pytest.mark.serial
def test_cortex_diagnosis_script_runs(tmp_path):
    """docs/cortex_diagnosis.py (systemic part): the per-drug table and the rows 16-21."""
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / "docs" / "cortex_diagnosis.py"
    spec = importlib.util.spec_from_file_location("cortex_diagnosis", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    assert mod.main(["--markdown", str(tmp_path / "d.md"), "--json", str(tmp_path / "d.json")]) == 0
    d = json.loads((tmp_path / "d.json").read_text())
    assert set(d["drugs_12m"]) == set(mod.DRUGS)
    for row in d["drugs_12m"].values():
        assert all(k in row for k in COMPARTMENT_KEYS) and row["th_ls_ratio"] is not None
    assert {"row16", "row20", "row21"} <= set(d)
    text = (tmp_path / "d.md").read_text()
    assert all(f"| {r} |" in text for r in range(16, 22))
