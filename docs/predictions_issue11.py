"""Predictions on the anatomical femur (issue 11): nothing here is fitted or tuned.

FE-coupled runs (``femur.workflows.simulation.Simulation``, mechanostat on) of the default
femur (the anatomical femur, habitual-loading pattern, femoral-neck T-score -2.5 for
women, -1.5 for men, age 71), femur only:

* romosozumab 12 months: FN vs TH gain; women vs men (each sex's default patient);
* teriparatide 12 and 24 months: the hip gain;
* romosozumab for 12 months after 12 months of denosumab or of alendronate (sequence
  gains at month 24 and over the romosozumab year), against romosozumab first;
* by compartment, per drug at the end of its first 12 months: mineral change of the
  cortical cells on the endocortical surface, on the periosteal surface, the other
  (intracortical) cortical cells and the trabecular cells, with the mean cortical
  porosity before and after (cortical cells: intracortical porosity); and of the trabecular groups (principal
  compressive, principal tensile, Ward's triangle; ``femur.outcomes.density_pattern``).

The same scenarios on the systemic DXA-site driver (the calibration path,
``femur.workflows.systemic``) are printed next to them (no mechanostat; its sites are the
default bones' element distributions).

    .venv/bin/python docs/predictions_issue11.py [--mesh-size 3] [--json FILE]

(default mesh 3 mm; 8 runs of 12-24 months, about 10 minutes serial)
"""

from __future__ import annotations

import argparse
import json

import numpy as np

from femur.core.mpi import MPI
from femur.geometry.anatomical import cortex_surface_cells
from femur.outcomes.density_pattern import roi_masks
from femur.remodeling.patient import Patient
from femur.workflows.simulation import Simulation
from femur.workflows.systemic import simulate_sites

WOMAN = Patient(sex="female", age_years=71.0)
MAN = Patient(sex="male", age_years=71.0)
# label, treatment, months, patient
SCENARIOS = [
    ("placebo (woman)", "placebo", 12, WOMAN),
    ("romosozumab (woman)", "romosozumab:12", 12, WOMAN),
    ("romosozumab (man)", "romosozumab:12", 12, MAN),
    ("teriparatide (woman)", "teriparatide", 24, WOMAN),
    ("denosumab (woman)", "denosumab", 12, WOMAN),
    ("alendronate (woman)", "alendronate", 12, WOMAN),
    ("denosumab 12 -> romosozumab 12", "denosumab:12,romosozumab:12", 24, WOMAN),
    ("alendronate 12 -> romosozumab 12", "alendronate:12,romosozumab:12", 24, WOMAN),
]
REGIONS = ("endocortical", "periosteal", "intracortical", "trabecular")
#: trabecular-group ROIs of ``femur.outcomes.density_pattern`` (cancellous cells only)
GROUPS = ("compressive", "tensile", "wards")


def _regions(bone) -> dict:
    """Masks over local cells: cortical cells on the endocortical surface, on the periosteal
    surface (not endocortical), the other cortical cells, the trabecular cells, and the
    trabecular groups (compressive, tensile, Ward's triangle)."""
    surf = cortex_surface_cells(bone)
    cort = bone.compartment_mask("cortical")
    endo = surf["endocortical"]
    peri = surf["periosteal"] & ~endo
    return {"endocortical": endo, "periosteal": peri, "intracortical": cort & ~endo & ~peri,
            "trabecular": bone.compartment_mask("trabecular"), **roi_masks(bone)}


def _by_compartment(track, comm) -> dict:
    """Mineral change (%) and mean porosity (before, after) per region: 1 - BV/TV, of which
    on cortical cells only the intracortical (canal) part moves (``state.pore``; bone gained
    or lost on the endocortical and periosteal surfaces changes thickness, not porosity)."""
    s = track.state
    n = track.bone.num_owned_cells
    cort = track.bone.compartment_mask("cortical")
    po1 = np.where(cort, 1 - s.f0 + s.pore, 1 - s.f)
    out = {}
    for name, mask in _regions(track.bone).items():
        w = s.volume[:n] * mask[:n]
        m0, m1 = s.f0 * s.alpha0, s.f * s.alpha
        v = comm.allreduce(np.array([np.sum(w * m1[:n]), np.sum(w * m0[:n]), np.sum(w * (1 - s.f0[:n])),
                                     np.sum(w * po1[:n]), np.sum(w)]), op=MPI.SUM)
        out[name] = {"mineral_pct": 100.0 * (v[0] / v[1] - 1.0), "porosity_before": v[2] / v[4],
                     "porosity_after": v[3] / v[4], "volume_share": None, "volume_mm3": v[4]}
    total = sum(out[k]["volume_mm3"] for k in REGIONS)
    for r in out.values():
        r["volume_share"] = r["volume_mm3"] / total
    return out


class _CompartmentsAt:
    """An export object (``Simulation(exports=...)``) that records the compartments at one month."""

    def __init__(self, month: float):
        self.month, self.values = float(month), {}

    def start(self, run) -> None:
        pass

    def write(self, run, month: float) -> None:
        if abs(month - self.month) < 1e-6:
            self.values = _by_compartment(run.tracks["femur"], run.comm)

    def finish(self, run, result) -> None:
        pass


def run(mesh_size_mm: float | None = None) -> dict:
    results = {}
    for label, treatment, months, patient in SCENARIOS:
        strength = sorted({0.0, 12.0, float(months)})
        at12 = _CompartmentsAt(12.0)
        sim = Simulation(treatment, months, patient, bones=("femur",), mesh_size_mm=mesh_size_mm,
                         strength_months=strength, progress=False, exports=[at12])
        tc = sim.run()
        first12 = at12.values
        rec = {"treatment": tc.treatment, "months": months, "sex": patient.sex,
               "fn_t_score": patient.fn_t_score, "geometry": tc.run["geometry"]["femur"]}
        for m in sorted({12, months}):
            rec[f"fn_m{m}"] = tc.at_month("fn_bmd_pct", m)
            rec[f"th_m{m}"] = tc.at_month("th_bmd_pct", m)
            rec[f"fall_strength_m{m}"] = tc.at_month("femoral_fall_strength_pct", m)
        rec["compartments_m12"] = first12
        sys_ = simulate_sites(treatment, months, patient=patient, sites=("total_hip", "femoral_neck"))
        rec["systemic"] = {f"{k}_m{m}": float(getattr(sys_, f"{k}_bmd_pct")[int(m)]) for k in ("fn", "th")
                           for m in sorted({12, months})}
        results[label] = rec
    return results


def report(results: dict) -> str:
    lines = ["FE-coupled, anatomical femur (" + next(iter(results.values()))["geometry"] + ")",
             f"{'scenario':36s} {'FN M12':>7s} {'TH M12':>7s} {'FN end':>7s} {'TH end':>7s} "
             f"{'fall str. end':>13s} | systemic FN/TH end"]
    for label, r in results.items():
        m = r["months"]
        lines.append(f"{label:36s} {r['fn_m12']:7.2f} {r['th_m12']:7.2f} {r[f'fn_m{m}']:7.2f} {r[f'th_m{m}']:7.2f} "
                     f"{r[f'fall_strength_m{m}']:13.2f} | {r['systemic'][f'fn_m{m}']:.2f} / "
                     f"{r['systemic'][f'th_m{m}']:.2f}")
    for seq in ("denosumab 12 -> romosozumab 12", "alendronate 12 -> romosozumab 12"):
        if seq not in results:
            continue
        r = results[seq]
        lines.append(f"  {seq}: gain during the romosozumab year TH {r['th_m24'] - r['th_m12']:.2f}, "
                     f"FN {r['fn_m24'] - r['fn_m12']:.2f} percentage points")
    lines += _region_table(results, REGIONS, "by compartment at month 12 (mineral change %, porosity "
                           "before -> after: intracortical on cortical cells, 1 - BV/TV on trabecular)", porosity=True)
    shares = next(r["compartments_m12"] for r in results.values() if r["compartments_m12"])
    lines.append("volume shares: " + ", ".join(f"{k} {shares[k]['volume_share']:.2f}" for k in REGIONS))
    lines += _region_table(results, GROUPS, "trabecular groups at month 12 (mineral change %, BV/TV "
                           "before -> after)", porosity=False)
    return "\n".join(lines)


def _region_table(results: dict, keys, title: str, porosity: bool) -> list[str]:
    """Rows of mineral change and porosity (or BV/TV) before -> after per region."""
    lines = ["", title, f"{'scenario':36s} " + " ".join(f"{k:>24s}" for k in keys)]
    for label, r in results.items():
        c = r["compartments_m12"]
        if not c:
            continue
        cells = []
        for k in keys:
            before, after = c[k]["porosity_before"], c[k]["porosity_after"]
            if not porosity:
                before, after = 1.0 - before, 1.0 - after
            cells.append(f"{c[k]['mineral_pct']:+7.2f} ({before:.3f}->{after:.3f})")
        lines.append(f"{label:36s} " + " ".join(cells))
    return lines


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--mesh-size", type=float, default=None)
    ap.add_argument("--json", default=None, help="also write the numbers to this JSON file")
    args = ap.parse_args(argv)
    results = run(args.mesh_size)
    if MPI.COMM_WORLD.rank == 0:
        print(report(results))
        if args.json:
            with open(args.json, "w") as fh:
                json.dump(results, fh, indent=1)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
