#!/usr/bin/env python
"""A patient's CT vertebra under two treatments: where the bone density changes.

    python examples/ct_treatment.py [IMAGE LABELS] [--months 12] [--voxel-coarsen 2]
        [--treatments romosozumab,denosumab] [--out results/ct_treatment]
    mpiexec -n 2 python examples/ct_treatment.py        (the same numbers, faster)

For each treatment the scanned vertebra runs through the coupled remodeling loop
(`femur simulate --ct`), then the script writes to ``--out``:

* ``sagittal_change.png`` -- the mid-sagittal slice of the baseline density and of the
  density change after the last month under each treatment, side by side (one colour
  scale for the changes; grey: the loading layers);
* ``regions.md`` / ``regions.json`` -- the change of density (FE, apparent) and of mineral
  (DXA-equivalent) by compartment (trabecular centrum, cortical shell, posterior elements)
  and along the body (near the superior / inferior endplate vs mid-body;
  ``femur.outcomes.regions``).

These are model predictions; nothing is tuned to them. Default input: the VerSe L2
vertebra with PMMA loading layers (labels 5, 6) in ../shared/data/verse004-L2, already
calibrated in mg/cm3, meshed with one hexahedron per 2x2x2 voxels. Data: VerSe (Loeffler et
al., Radiol Artif Intell 2020; Sekuboyina et al., Radiol Artif Intell 2020 and arXiv
2001.09193), derived by the Bonelab group (Walle, Matheson, Boyd 2025); CC BY-SA 2.0. The
pictures and tables made from it are derived data under the same licence.
"""

import argparse
import json
from pathlib import Path

import numpy as np

from femur.core.log import configure
from femur.core.mpi import MPI
from femur.exports.fields import density_change_pct
from femur.exports.slices import cell_slice, plot_slices, vertebra_sagittal_frame
from femur.outcomes.regions import REGIONS, regional_change
from femur.workflows.scans import CTScan, scan_bone, scan_patient
from femur.workflows.simulation import Simulation

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "verse004-L2"
IMAGE = DATA / "sub-verse004_0000_vertebra_21_im.nii.gz"
LABELS = DATA / "sub-verse004_0000_vertebra_21_seg.nii.gz"
ATTRIBUTION = ("VerSe L2 (Loeffler 2020, Sekuboyina 2020; Bonelab, Walle 2025), CC BY-SA 2.0; "
               "derived figure, same licence")


def run(scan: CTScan, treatments, months: float, fe_interval_days: float = 14.0, progress=True):
    """Every treatment on the scan: {treatment: (TimeCourse, regions, slice or None)}."""
    comm = MPI.COMM_WORLD
    bone = scan_bone(scan, comm)
    patient = scan_patient(bone)
    origin, normal, u, v = vertebra_sagittal_frame(bone)
    out = {}
    for treatment in treatments:
        sim = Simulation(treatment, months, patient, vertebra_bone=bone, bones=("vertebra",),
                         fe_interval_days=fe_interval_days, progress=progress, comm=comm)
        res = sim.run()
        track = sim.tracks["vertebra"]
        regions = {
            "density": regional_change(track.bone, track.rho0, track.bone.density.x.array),
            "mineral": regional_change(track.bone, track.rho0, track.dxa_density()),
        }
        layers = np.where(track.bone_mask, np.nan, 1.0)
        sl = cell_slice(track.bone, {"change_pct": np.where(track.bone_mask, density_change_pct(track), np.nan),
                                     "rho0": np.where(track.bone_mask, track.rho0, np.nan),
                                     "layers": layers}, origin, normal, u, v)
        out[treatment] = (res, regions, sl)
    return out


def regions_table(results: dict, months: float) -> str:
    """Markdown table: one row per region, density and mineral change per treatment."""
    names = list(results)
    head = ["region", "elements", "baseline density g/cm3"]
    head += [f"{t} density %" for t in names] + [f"{t} mineral %" for t in names]
    lines = [f"Change after {months:g} months (mass of each region, relative to baseline).", "",
             "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    first = results[names[0]][1]["density"]
    for region in REGIONS:
        row = [region, str(first[region]["cells"]), f"{first[region]['baseline_mean']:.3f}"]
        row += [f"{results[t][1]['density'][region]['change_pct']:+.1f}" for t in names]
        row += [f"{results[t][1]['mineral'][region]['change_pct']:+.1f}" for t in names]
        lines.append("| " + " | ".join(row) + " |")
    return "\n".join(lines) + "\n"


def figure(results: dict, months: float, path) -> Path:
    """Baseline density and each treatment's density change in the mid-sagittal plane."""
    names = list(results)
    slices = [results[t][2] for t in names]
    changes = np.concatenate([s.images["change_pct"][np.isfinite(s.images["change_pct"])] for s in slices])
    lim = float(np.percentile(np.abs(changes), 99)) or 1.0
    s0 = slices[0]
    rho = s0.images["rho0"][np.isfinite(s0.images["rho0"])]
    panels = [("baseline density (scan)", s0.images["rho0"], s0.extent,
               {"cmap": "viridis", "vmin": 0.0, "vmax": float(np.percentile(rho, 90)), "extend": "max",
                "label": "apparent density (g/cm3)",
                "background": s0.images["layers"]})]
    for t, s in zip(names, slices):
        panels.append((f"{t}, {months:g} months", s.images["change_pct"], s.extent,
                       {"cmap": "RdBu", "vmin": -lim, "vmax": lim, "label": "density change (%)", "extend": "both",
                        "background": s.images["layers"]}))
    return plot_slices(panels, path, suptitle=f"mid-sagittal slice; {ATTRIBUTION}",
                       u_label="posterior -> anterior (mm)", v_label="inferior -> superior (mm)")


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("image", nargs="?", default=str(IMAGE))
    ap.add_argument("labels", nargs="?", default=str(LABELS))
    ap.add_argument("--months", type=float, default=12.0)
    ap.add_argument("--voxel-coarsen", type=int, default=2)
    ap.add_argument("--fe-interval-days", type=float, default=14.0)
    ap.add_argument("--treatments", default="romosozumab,denosumab")
    ap.add_argument("--out", default="results/ct_treatment")
    args = ap.parse_args(argv)
    configure()
    scan = CTScan(args.image, args.labels, calibrated_mg_cm3=True, layers=(5, 6),
                  voxel_coarsen=args.voxel_coarsen)
    treatments = [t.strip() for t in args.treatments.split(",") if t.strip()]
    results = run(scan, treatments, args.months, args.fe_interval_days)
    if MPI.COMM_WORLD.rank == 0:
        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        table = regions_table(results, args.months)
        (out / "regions.md").write_text(table)
        (out / "regions.json").write_text(json.dumps(
            {t: {"months": args.months, "regions": r[1], "ls_bmd_pct": float(r[0].ls_bmd_pct[-1]),
                 "vertebral_strength_pct": float(r[0].strength_pct["vertebral_strength_pct"][-1])}
             for t, r in results.items()}, indent=1) + "\n")
        figure(results, args.months, out / "sagittal_change.png")
        print(table)
        for t, (res, _, _) in results.items():
            print(f"{t}: LS BMD {res.ls_bmd_pct[-1]:+.2f} %, vertebral strength "
                  f"{res.strength_pct['vertebral_strength_pct'][-1]:+.2f} % at month {args.months:g}")
        print(f"written {out / 'sagittal_change.png'}, {out / 'regions.md'}")
    return results


if __name__ == "__main__":
    main()
