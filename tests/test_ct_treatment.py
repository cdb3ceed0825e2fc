"""A CT vertebra through the coupled run (issue 14): held cells, non-bone labels, rank
invariance, the `femur simulate --ct` contract and clear errors for bad scans.

The scans are tiny synthetic NIfTI images written in tmp_path (1 mm voxels, a few hundred
elements); the VerSe L2 run is marked slow.
"""

from __future__ import annotations

import io
import json
from contextlib import redirect_stdout
from pathlib import Path

import numpy as np
import pytest

import femur  # noqa: F401  (MPI before dolfinx)
from mpi4py import MPI

from femur.core.errors import DensityError, InputError
from femur.geometry.ct import bone_from_ct
from femur.geometry.ct.image import write_nifti
from femur.workflows.scans import CTScan, scan_bone, scan_patient
from femur.workflows.simulation import Simulation
from femur.workflows.tracks import remodeling_density_range

COMM = MPI.COMM_WORLD
DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "verse004-L2"
VERSE_IM = DATA / "sub-verse004_0000_vertebra_21_im.nii.gz"
VERSE_SEG = DATA / "sub-verse004_0000_vertebra_21_seg.nii.gz"

RUN = dict(fe_interval_days=30.0, strength_months=(0, 2), progress=False)


def synthetic_scan(folder: Path, scale: float = 1.0, empty_voxel: bool = True,
                   dense_voxel: bool = True, extra_label: bool = True, name: str = "scan"):
    """A small vertebra-like scan in mg/cm3 (written by rank 0): a trabecular core (label 1,
    150-185 mg/cm3 graded along x), a cortical shell (label 2, 600), a posterior block
    (label 3, 300), PMMA layers below (5) and above (6) with no density, and optionally
    one trabecular voxel at -40 mg/cm3 (floored at 0: no bone), one cortical voxel at 1800
    (capped: denser than the cell model's fully dense bone) and a non-bone label 7 (120 mg/cm3)
    beside the body. ``scale`` multiplies every density (a second, denser patient)."""
    lab = np.zeros((10, 16, 14), np.uint8)
    lab[1:9, 1:12, 2:12] = 2
    lab[2:8, 2:11, 3:11] = 1
    lab[3:7, 12:15, 4:10] = 3
    lab[1:9, 1:12, 1] = 5
    lab[1:9, 1:12, 12] = 6
    if extra_label:
        lab[0, 2:6, 4:8] = 7
    x = np.arange(lab.shape[0])[:, None, None] * np.ones(lab.shape)
    rho = np.select([lab == 1, lab == 2, lab == 3, lab == 7], [150.0 + 5.0 * x, 600.0, 300.0, 120.0], 0.0)
    if empty_voxel:
        rho[4, 4, 6] = -40.0
    if dense_voxel:
        rho[1, 1, 2] = 1800.0
    rho = rho * scale + 0.25 * (lab == 0)  # fractional fill: not integer HU
    A = np.diag([1.0, 1.0, 1.0, 1.0])
    A[:3, 3] = [-20.0, 10.0, 100.0]
    im, sg = folder / f"{name}_im.nii.gz", folder / f"{name}_seg.nii.gz"
    if COMM.rank == 0:
        folder.mkdir(parents=True, exist_ok=True)
        write_nifti(im, rho.astype(np.float32), A)
        write_nifti(sg, lab, A)
    COMM.barrier()
    return im, sg


class Recorder:
    """Export that keeps a copy of every bone's density at every monthly visit."""

    def __init__(self):
        self.density = []

    def start(self, run):
        pass

    def write(self, run, month):
        self.density.append({k: t.bone.density.x.array.copy() for k, t in run.tracks.items()})

    def finish(self, run, result):
        pass


def _scan_bone(mpi_tmp_path, comm=COMM, **kw):
    im, sg = synthetic_scan(mpi_tmp_path, **kw)
    return bone_from_ct(im, sg, calibrated_mg_cm3=True, layers=(5, 6), bone_labels=(1, 2, 3), comm=comm)


def test_empty_element_and_layers_do_not_stop_a_run_and_held_cells_never_change(mpi_tmp_path, check):
    bone = _scan_bone(mpi_tmp_path)
    check("non_bone_label_7" in bone.cell_ids and "layer_superior" in bone.cell_ids, "compartments")
    rec = Recorder()
    sim = Simulation("romosozumab", 2, scan_patient(bone), vertebra_bone=bone, bones=("vertebra",),
                     exports=[rec], **RUN)
    res = sim.run()
    track = sim.tracks["vertebra"]
    held = track.held
    check(held["below_floor_cells"] == 1 and held["above_ceiling_cells"] == 1, f"held cells {held}")
    check("trabecular 1" in held["below_floor"] and "cortical 1" in held["above_ceiling"], str(held))
    lo, hi = remodeling_density_range(sim.model)
    check(0.015 < lo < 0.02 and 1.95 < hi < 2.0, f"cell model range {lo}, {hi} g/cm3")
    rho0 = track.rho0
    fixed = ~track.remodels
    nonbone = bone.compartment_mask("non_bone_label_7") | bone.compartment_mask("layer_superior") \
        | bone.compartment_mask("layer_inferior")
    check(np.all(fixed[nonbone]), "layers and the non-bone label never remodel")
    check(np.count_nonzero(fixed & ~nonbone) == np.count_nonzero(
        track.bone_mask & ((rho0 < lo) | (rho0 > hi))), "held bone cells are those out of range")
    for visit in rec.density:
        check(np.array_equal(visit["vertebra"][fixed], rho0[fixed]), "a held cell's density changed")
    change = np.abs(rec.density[-1]["vertebra"][track.remodels] / rho0[track.remodels] - 1)
    grew = COMM.allreduce(float(change.max()) if change.size else 0.0, op=MPI.MAX)
    check(grew > 1e-3, f"remodeling cells changed by at most {grew}")
    check(res.series["ls_bmd_pct"][-1] > 0.5, f"romosozumab LS BMD {res.series['ls_bmd_pct']}")
    check(res.strength_pct["vertebral_strength_pct"][-1] > 0, "strength rose")
    check(res.to_dict()["geometry"]["vertebra"]["held_cells"]["below_floor_cells"] == 1, "geometry")
    # the scan's own vBMD at month 0: volume-weighted QCT-equivalent density of the labels
    check(600.0 < res.series["vertebra_vbmd_cortical_mg_cm3"][0] < 700.0, "cortical vBMD from the scan")


def _run_values(bone, comm):
    sim = Simulation("denosumab", 2, scan_patient(bone), vertebra_bone=bone, bones=("vertebra",),
                     comm=comm, **RUN)
    r = sim.run()
    return np.array([r.series["ls_bmd_pct"][-1], r.series["p1np_pct"][-1], r.series["ctx_pct"][-1],
                     r.series["vertebra_vbmd_trabecular_mg_cm3"][-1],
                     r.series["vertebra_vbmd_cortical_mg_cm3"][-1],
                     r.strength["vertebral_strength_n"][-1], r.strength["vertebral_stiffness_n_per_mm"][-1],
                     r.patient["ls_t_score"]])


@pytest.mark.partition
def test_rank_invariant(mpi_tmp_path, check):
    """The distributed run (1 or 2 ranks) equals a one-rank (COMM_SELF) run of the scan."""
    world = _run_values(_scan_bone(mpi_tmp_path), COMM)
    serial = _run_values(_scan_bone(mpi_tmp_path, comm=MPI.COMM_SELF), MPI.COMM_SELF)
    check(np.allclose(world, serial, rtol=1e-8, atol=1e-9), f"{world} vs {serial}")


def test_simulate_ct_cli_json_contract(mpi_tmp_path, check):
    """`femur simulate --ct ... --json`: the keys of the built-in vertebra run plus geometry."""
    from femur.cli import main

    im, sg = synthetic_scan(mpi_tmp_path)

    def run(args):
        buf = io.StringIO()
        with redirect_stdout(buf):
            rc = main(["simulate", "--months", "1", "--fe-interval-days", "30", "--json", "--quiet", *args])
        return rc, buf.getvalue()

    rc, text = run(["--ct", str(im), "--labels", str(sg), "--layers", "5,6", "--bone-labels", "1,2,3",
                    "--calibrated-mg-cm3", "--treatment", "romosozumab", "--age", "66",
                    "--out", str(mpi_tmp_path / "out")])
    check(rc == 0, f"exit {rc}")
    rc2, text2 = run(["--bone", "vertebra", "--mesh-size", "6"])
    if COMM.rank == 0:
        ct, builtin = json.loads(text), json.loads(text2)
        assert set(ct) == set(builtin) | {"geometry"}, set(ct) ^ set(builtin)
        assert ct["geometry"]["vertebra"]["image"] == str(im)
        assert ct["patient"]["age_years"] == 66 and ct["patient"]["sex"] == "female"
        out = mpi_tmp_path / "out"
        for name in ("simulation.json", "timecourse.png", "vertebra_density_change.png"):
            assert (out / name).stat().st_size > 0, name
        assert (out / "vertebra_density.bp").is_dir()
    check(True)


def test_simulate_accepts_a_ct_scan(mpi_tmp_path, check):
    im, sg = synthetic_scan(mpi_tmp_path)
    r = femur.simulate(bone=CTScan(str(im), str(sg), calibrated_mg_cm3=True, layers=(5, 6)),
                       regimen="placebo", months=1, fe_interval_days=30, progress=False)
    check(r.patient["age_years"] == 71.0 and "vertebra" in r.geometry, "default patient, geometry")
    check(r.patient["ls_t_score"] == r.patient["fn_t_score"], "fn T-score follows the scan's spine")


# --------------------------------------------------------------------------- bad scans
def test_bad_scans_give_clear_errors(mpi_tmp_path):
    im, sg = synthetic_scan(mpi_tmp_path)
    with pytest.raises(InputError, match=r"seg\.nii\.gz: no bone label: none of the bone labels \[8, 9\]"):
        bone_from_ct(im, sg, calibrated_mg_cm3=True, layers=(5, 6), bone_labels=(8, 9))
    lay = mpi_tmp_path / "layers_only.nii.gz"
    if COMM.rank == 0:
        import nibabel as nib

        lab = np.asarray(nib.load(str(sg)).dataobj)
        write_nifti(lay, np.where(np.isin(lab, (5, 6)), lab, 0).astype(np.uint8), nib.load(str(sg)).affine)
    COMM.barrier()
    with pytest.raises(InputError, match=r"layers_only\.nii\.gz: no bone label"):
        bone_from_ct(im, lay, calibrated_mg_cm3=True, layers=(5, 6))
    with pytest.raises(InputError, match=r"scan .*im\.nii\.gz: no calibration"):
        CTScan(str(im), str(sg))
    with pytest.raises(InputError, match=r"manifest\.csv row 2: image file .*nothere\.nii\.gz not found"):
        scan_bone(CTScan(str(mpi_tmp_path / "nothere.nii.gz"), str(sg), calibrated_mg_cm3=True,
                         where="manifest.csv row 2"))


def test_wrong_units_g_cm3_refused(mpi_tmp_path):
    im, sg = synthetic_scan(mpi_tmp_path, scale=1e-3, name="gcm3")
    with pytest.raises(InputError, match=r"gcm3_im\.nii\.gz: expected mg/cm3 .*looks like g/cm3"):
        bone_from_ct(im, sg, calibrated_mg_cm3=True, layers=(5, 6))


def test_density_out_of_range_names_how_many_and_where(mpi_tmp_path):
    # most of the bone below the cell model's floor (0.018 g/cm3 apparent = 11 mg/cm3 QCT):
    # the scan is refused, naming the count, the compartments and points
    im, sg = synthetic_scan(mpi_tmp_path, scale=0.015, name="faint")
    bone = bone_from_ct(im, sg, calibrated_mg_cm3=True, layers=(5, 6), bone_labels=(1, 2, 3),
                        check_units=False)
    with pytest.raises(InputError, match=r"of \d+ bone elements .*outside the range.*below it \d+ "
                                         r"elements \(.*trabecular \d+\) at \(.*mm"):
        Simulation("placebo", 1, vertebra_bone=bone, bones=("vertebra",), **RUN)
    # impossible densities on a given bone: how many and where
    bone = _scan_bone(mpi_tmp_path)
    bone.density.x.array[bone.compartment_mask("trabecular")] = -0.1
    with pytest.raises(DensityError, match=r"apparent densities of \d+ elements \(trabecular \d+\) "
                                           r"at \(.*mm are negative"):
        Simulation("placebo", 1, vertebra_bone=bone, bones=("vertebra",), **RUN)


# --------------------------------------------------------------------------- real data
@pytest.mark.slow
@pytest.mark.skipif(not VERSE_IM.exists(), reason="VerSe data not present")
def test_verse_l2_romosozumab_12_months(check):
    """The issue's command on the VerSe L2 (2 mm voxels): runs, with one element floored at
    0 and 9 capped; BMD and strength rise under romosozumab."""
    from femur.cli import main

    buf = io.StringIO()
    with redirect_stdout(buf):
        rc = main(["simulate", "--ct", str(VERSE_IM), "--labels", str(VERSE_SEG), "--layers", "5,6",
                   "--calibrated-mg-cm3", "--voxel-coarsen", "2", "--treatment", "romosozumab",
                   "--months", "12", "--json", "--quiet"])
    check(rc == 0, "exit status")
    if COMM.rank == 0:
        d = json.loads(buf.getvalue())
        g = d["geometry"]["vertebra"]
        assert g["cells"] == 8870 and g["negative_density_cells"] == 1 and g["capped_density_cells"] == 9
        assert d["ls_bmd_pct"][-1] > 3 and d["vertebral_strength_pct"][-1] > 3
    check(True)


def test_vertebral_regions_change_and_sagittal_slice(mpi_tmp_path, check):
    from femur.exports.slices import cell_slice, vertebra_sagittal_frame
    from femur.outcomes.regions import regional_change, vertebral_regions

    bone = _scan_bone(mpi_tmp_path)
    reg = vertebral_regions(bone, endplate_zone_mm=2.0)
    trab, cort = bone.compartment_mask("trabecular"), bone.compartment_mask("cortical")
    check(np.array_equal(reg["trabecular centrum"], trab) and np.array_equal(reg["cortical shell"], cort),
          "compartments")
    check(np.array_equal(reg["posterior elements"], bone.compartment_mask("posterior_trabecular")), "posterior")
    zones = [reg[k] for k in ("body near superior endplate", "body mid", "body near inferior endplate")]
    check(np.array_equal(zones[0] | zones[1] | zones[2], trab | cort), "zones cover the body")
    check(not np.any((zones[0] & zones[1]) | (zones[1] & zones[2]) | (zones[0] & zones[2])), "disjoint")
    # endplates (layer/bone interfaces) at z = 100 + 1.5 and 100 + 11.5 mm: 2 mm zones hold
    # the body slices k = 2, 3 (midpoints 102, 103) and k = 10, 11 (110, 111)
    z = bone.cell_midpoints()[:, 2]
    zs = np.unique(np.concatenate(COMM.allgather(np.unique(z[zones[0]]))))
    zi = np.unique(np.concatenate(COMM.allgather(np.unique(z[zones[2]]))))
    check(np.allclose(zs, [110.0, 111.0]) and np.allclose(zi, [102.0, 103.0]), f"zones {zs} {zi}")
    rho0 = bone.density.x.array.copy()
    now = np.where(trab, 1.1 * rho0, rho0)
    ch = regional_change(bone, rho0, now, reg)
    check(abs(ch["trabecular centrum"]["change_pct"] - 10.0) < 1e-9, "10 % on the centrum")
    check(abs(ch["cortical shell"]["change_pct"]) < 1e-12, "shell unchanged")
    n_trab = COMM.allreduce(int(np.count_nonzero(trab[: bone.num_owned_cells])), op=MPI.SUM)
    check(ch["trabecular centrum"]["cells"] == n_trab, "cells counted once")
    origin, normal, u, v = vertebra_sagittal_frame(bone)
    check(u[1] < -0.99 and abs(v[2] - 1) < 1e-12 and abs(normal[0]) > 0.99,
          f"anterior points away from the posterior block: u {u}")
    mids = bone.cell_midpoints()[: bone.num_owned_cells] - origin
    near = np.abs(mids @ normal) <= 0.5 + 1e-9
    spots = {(int(np.floor(a + 0.5)), int(np.floor(b + 0.5))) for a, b in zip(mids[near] @ u, mids[near] @ v)}
    spots = set().union(*COMM.allgather(spots))
    sl = cell_slice(bone, {"rho": rho0}, origin, normal, u, v, pixel_mm=1.0)
    if COMM.rank == 0:
        assert int(np.isfinite(sl.images["rho"]).sum()) == len(spots)  # one pixel per element column
    check(True)
