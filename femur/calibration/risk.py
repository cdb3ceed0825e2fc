"""Calibrate the default vertebral baseline hazard h0 once, on the built-in FRAME-like cohort.

    mpiexec -n 2 python -m femur.calibration.risk --patients 50 [--write] [--out DIR]

Runs the placebo arm of the built-in ``frame`` study (FRAME inclusion, seed 2016, the
study's mesh and model) and solves for the h0 that gives the FRAME placebo new-vertebral-
fracture incidence of 1.8 % in 12 months (clinical-targets.md, calibration target #8;
`femur.outcomes.risk.calibrate_vertebral_h0`). ``--write`` stores it with its provenance
in ``femur/data/vertebral_h0.json``, the value every study uses unless its ``[risk]``
table says ``vertebral_h0_per_year = "calibrate"`` or gives a number. This is the only
fitted number of the risk model; the treatment effect and every other cohort's placebo
incidence come out of the simulated strengths.
"""

from __future__ import annotations

import argparse
import sys
import tomllib
from dataclasses import replace
from pathlib import Path

from femur.core.datafiles import write_fitted
from femur.core.errors import InputError
from femur.core.log import configure
from femur.core.mpi import MPI
from femur.outcomes.risk import VERTEBRAL_H0_FILE
from femur.study import Study
from femur.study.parse import parse_study
from femur.study.spec import builtin_studies

COMMAND = "mpiexec -n 2 python -m femur.calibration.risk --patients {patients} --write"


def calibrate(patients: int = 50, out=None, progress: bool = True, comm=MPI.COMM_WORLD):
    """Run the frame placebo arm and return (h0 per year, provenance text, seed) on every rank."""
    path = builtin_studies()["frame"]
    data = tomllib.loads(path.read_text())
    data.setdefault("risk", {})["vertebral_h0_per_year"] = "calibrate"
    spec = parse_study(data, str(path)).with_overrides(patients=patients)
    placebo = [a for a in spec.arms if a.is_placebo]
    if not placebo:
        raise InputError("the built-in frame study has no placebo arm")
    spec = replace(spec, name=f"{spec.name}_h0", arms=tuple(placebo))
    out = Path(out) if out is not None else Path("results") / "calibrate_risk"
    res = Study(spec).run(out=out, comm=comm, progress=progress, plots=False)
    h0 = None
    if comm.rank == 0:
        vm = res.vertebral_model
        if vm is None or vm.h0_per_year is None:
            raise InputError("calibration failed: no vertebral factor-of-risk trajectories")
        h0 = float(vm.h0_per_year)
    h0 = comm.bcast(h0, root=0)
    text = (f"calibrated to FRAME placebo new vertebral fractures 1.8 % in 12 months "
            f"(clinical-targets.md #8) on the placebo arm of the built-in frame cohort "
            f"({patients} women, seed {spec.seed}, mesh {spec.model.mesh_size_mm} mm)")
    return h0, text, spec.seed


def write_default(h0: float, provenance: str, patients: int, seed: int, path=None) -> Path:
    """Store h0 with its provenance in femur/data/vertebral_h0.json (or ``path``)."""
    return write_fitted(
        VERTEBRAL_H0_FILE, {"vertebral_h0_per_year": float(f"{h0:.6g}")},
        targets={"source": "shared/science/clinical-targets.md, calibration target #8",
                 "per_parameter": {"vertebral_h0_per_year":
                                   "FRAME placebo new vertebral fractures 1.8 % in 12 months"}},
        seeds={"study_seed": seed, "cohort": f"built-in frame study, placebo arm, {patients} patients"},
        command=COMMAND.format(patients=patients), notes=provenance, path=path)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m femur.calibration.risk",
                                 description=__doc__.split("\n")[0])
    ap.add_argument("--patients", type=int, default=50)
    ap.add_argument("--out", default=None, help="study output folder (default results/calibrate_risk)")
    ap.add_argument("--write", action="store_true", help="store h0 in femur/data/vertebral_h0.json")
    args = ap.parse_args(argv)
    configure()
    try:
        h0, text, seed = calibrate(args.patients, args.out)
    except InputError as exc:
        if MPI.COMM_WORLD.rank == 0:
            print(f"femur: error: {exc}", file=sys.stderr)
        return 2
    if MPI.COMM_WORLD.rank == 0:
        print(f"vertebral h0 = {h0:.6g} per year ({text})")
        if args.write:
            print(f"written to {write_default(h0, text, args.patients, seed)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
