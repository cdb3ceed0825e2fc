#!/usr/bin/env python
"""One patient, romosozumab beside placebo: BMD, markers and FE strength over 3 months.

    python examples/treatment_vs_placebo.py [--months 3] [--mesh-size 4] [--out DIR]

A 71-year-old woman with a femoral-neck T-score of -2.5 (the default Patient) is simulated
twice on the same coarse built-in femur (the anatomical femur's 4 mm mesh) and vertebra:
on romosozumab 210 mg monthly and on placebo. Each run copies the bones, so they can be
shared.
"""

import argparse

import femur
from femur.core.log import configure
from femur.workflows.bones import patient_bone


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--months", type=float, default=3)
    ap.add_argument("--mesh-size", type=float, default=4.0,
                    help="element size (mm), coarse by default (the anatomical femur: its 4 mm mesh)")
    ap.add_argument("--out", default=None, help="write each arm's files to OUT/<arm>")
    args = ap.parse_args(argv)
    configure()
    patient = femur.Patient()
    bones = {kind: patient_bone(kind, patient, mesh_size_mm=args.mesh_size) for kind in ("femur", "vertebra")}
    results = {}
    for arm in ("placebo", "romosozumab"):
        out = f"{args.out}/{arm}" if args.out else None
        results[arm] = femur.simulate(regimen=arm, months=args.months, patient=patient, out=out,
                                      femur_bone=bones["femur"], vertebra_bone=bones["vertebra"],
                                      bones=("femur", "vertebra"), fe_interval_days=30, progress=False)
    if femur.MPI.COMM_WORLD.rank == 0:
        print(f"month {args.months:g}       placebo  romosozumab")
        for key in ("ls_bmd_pct", "th_bmd_pct", "fn_bmd_pct", "p1np_pct", "ctx_pct"):
            print(f"{key:<18s} {results['placebo'].at_month(key, args.months):8.2f} "
                  f"{results['romosozumab'].at_month(key, args.months):12.2f}")
        for key in results["placebo"].strength_pct:
            print(f"{key:<30s} {results['placebo'].strength_pct[key][-1]:6.2f} "
                  f"{results['romosozumab'].strength_pct[key][-1]:8.2f}")
    return results


if __name__ == "__main__":
    main()
