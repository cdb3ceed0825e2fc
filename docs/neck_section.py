"""A femoral-neck cross-section before and after 12 months of treatment (issue 15): cortical
porosity and bone volume fraction cell by cell, per drug, on the FE-coupled default femur.

The section is the plane through the centre of the femur's "neck" ROI perpendicular to its
neck axis (``landmarks["neck_axis"]``), drawn with the anterior direction to the right; the
cells within half an element of it are shown (``femur.exports.slices``). Panels: baseline
BV/TV, then for each drug the change of BV/TV in percentage points (trabecular and cortical
cells) with the cortical cells outlined by their own colour scale of intracortical porosity
change (the canal remodelling of the cell model, ``state.pore``, relative to the cell's
baseline porosity 1 - BV/TV; endocortical and periosteal gains thicken the cortex instead). The
numbers printed with it are the run's compartment courses at month 12 (neck cortical
thickness, hip cortical porosity; ``femur.outcomes.compartments``). Nothing is fitted here.

    .venv/bin/python docs/neck_section.py [--out docs/figures/neck_section.png] [--mesh-size 3]

(four femur-only runs of 12 months, FE every 30 days: about 2-4 minutes serial)
"""

from __future__ import annotations

import argparse

import numpy as np

from femur.core.mpi import MPI
from femur.exports.slices import cell_slice, plot_slices
from femur.remodeling.patient import Patient
from femur.workflows.simulation import Simulation

DRUGS = ("placebo", "romosozumab", "teriparatide", "denosumab")


def neck_plane(bone):
    """(origin, normal, u, v): the neck ROI's centre, the neck axis, anterior, and the
    superior-ish direction completing the frame (mm)."""
    n = np.asarray(bone.landmarks["neck_axis"], dtype=float)
    n /= np.linalg.norm(n)
    mask = bone.roi_mask("neck")[: bone.num_owned_cells]
    mid = bone.cell_midpoints()[: bone.num_owned_cells]
    s = bone.comm.allreduce(mid[mask].sum(axis=0) if mask.any() else np.zeros(3), op=MPI.SUM)
    c = bone.comm.allreduce(int(mask.sum()), op=MPI.SUM)
    origin = s / max(c, 1)
    a = np.asarray(bone.landmarks["anterior"], dtype=float)
    u = a - (a @ n) * n
    u /= np.linalg.norm(u)
    v = np.cross(n, u)
    return origin, n, u, v


def run(drug: str, mesh_size_mm: float | None):
    sim = Simulation(drug, 12, Patient(), bones=("femur",), fe_interval_days=30, strength_months=(0,),
                     mesh_size_mm=mesh_size_mm, progress=False)
    res = sim.run()
    track = sim.tracks["femur"]
    return track, res


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", default="docs/figures/neck_section.png")
    ap.add_argument("--mesh-size", type=float, default=None, help="femur mesh size (mm), default 3")
    args = ap.parse_args(argv)
    panels, lines = [], []
    base = None
    for drug in DRUGS:
        track, res = run(drug, args.mesh_size)
        bone, s = track.bone, track.state
        cort = bone.compartment_mask("cortical")
        fields = {"f0": np.where(track.remodels, s.f0, np.nan), "df": np.where(track.remodels, 100 * (s.f - s.f0), np.nan),
                  "dpo": np.where(cort & track.remodels, 100 * s.pore / (1 - s.f0), np.nan)}
        sl = cell_slice(bone, fields, *neck_plane(bone))
        c = {k: float(v[-1]) for k, v in res.compartments.items()}
        lines.append(f"{drug:13s} neck cortical thickness {c['neck_cortical_thickness_pct']:+.2f} %, hip cortical "
                     f"porosity {c['hip_cortical_porosity_pct']:+.2f} %, hip cortical BMC "
                     f"{c['hip_cortical_bmc_pct']:+.2f} %, trabecular {c['hip_trabecular_bmc_pct']:+.2f} %")
        if MPI.COMM_WORLD.rank != 0:
            continue
        if base is None:
            base = sl
            panels.append(("baseline BV/TV", sl.images["f0"], sl.extent, {"cmap": "bone", "vmin": 0, "vmax": 1,
                                                                          "label": "BV/TV"}))
        panels.append((f"{drug}: cortical porosity change", sl.images["dpo"], sl.extent,
                       {"cmap": "RdBu_r", "vmin": -15, "vmax": 15, "label": "% of baseline porosity",
                        "background": sl.images["f0"], "extend": "both"}))
    if MPI.COMM_WORLD.rank == 0:
        path = plot_slices(panels, args.out, suptitle="femoral-neck section, 12 months (default woman, 71 y, "
                           "FN T -2.5); grey: trabecular cells; " + "; ".join(
                               f"{ln.split()[0]} Ct.Th {ln.split('thickness ')[1].split(',')[0]}" for ln in lines),
                           u_label="anterior (mm)", v_label="superior (mm)")
        print("\n".join(lines))
        print(f"written {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
