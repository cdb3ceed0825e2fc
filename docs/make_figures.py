#!/usr/bin/env python
"""Regenerate the README figures (docs/figures/*.png).

    ./dev run python docs/make_figures.py [--np 2]

1. `femur simulate --treatment romosozumab --months 12`: the default patient's BMD, markers
   and FE strength over time (timecourse.png).
2. `femur run frame`: the built-in 8-patient FRAME-like study, placebo vs romosozumab
   (trajectories.png, strength_change.png).
3. `examples/ct_treatment.py`: the VerSe L2 CT vertebra, 12 months of romosozumab and of
   denosumab: mid-sagittal density change (ct_l2_sagittal_change.png) and the change by
   region (ct_l2_regions.md). Derived from CC BY-SA 2.0 data: these two files carry the
   same licence (README, Data licence). Skipped where ../shared/data is absent.

Each command runs under `mpiexec -n NP`; its full output goes to results/figures/ (replaced
at every run). ``--only ct`` (or simulate, frame) makes one group of figures.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
FIGURES = ROOT / "docs" / "figures"
sys.path.insert(0, str(ROOT / "benchmarks"))
from _common import mpiexec  # noqa: E402  (the venv's mpiexec, or $FEMUR_MPIEXEC)


def _femur(np_: int, *args: str) -> None:
    cmd = [mpiexec(), "-n", str(np_), sys.executable, "-m", "femur.cli", *args]
    env = dict(os.environ, PYVISTA_OFF_SCREEN="true", MPLBACKEND="Agg")
    print("+", " ".join(cmd[3:]), flush=True)
    subprocess.run(cmd, check=True, env=env, cwd=ROOT)


def _ct(np_: int, out: Path) -> None:
    script = ROOT / "examples" / "ct_treatment.py"
    cmd = [mpiexec(), "-n", str(np_), sys.executable, str(script), "--out", str(out / "ct")]
    env = dict(os.environ, PYVISTA_OFF_SCREEN="true", MPLBACKEND="Agg", OMP_NUM_THREADS="1")
    print("+", " ".join(cmd[3:]), flush=True)
    subprocess.run(cmd, check=True, env=env, cwd=ROOT)
    shutil.copy(out / "ct" / "sagittal_change.png", FIGURES / "ct_l2_sagittal_change.png")
    shutil.copy(out / "ct" / "regions.md", FIGURES / "ct_l2_regions.md")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--np", type=int, default=2, help="MPI ranks (default 2)")
    ap.add_argument("--only", choices=["simulate", "frame", "ct"], default=None,
                    help="make one group of figures only")
    args = ap.parse_args(argv)
    out = ROOT / "results" / "figures"
    shutil.rmtree(out, ignore_errors=True)  # scratch outputs of the previous run
    FIGURES.mkdir(parents=True, exist_ok=True)
    if args.only in (None, "simulate"):
        _femur(args.np, "simulate", "--treatment", "romosozumab", "--months", "12", "--out", str(out / "simulate"))
        shutil.copy(out / "simulate" / "timecourse.png", FIGURES / "romosozumab_timecourse.png")
    if args.only in (None, "frame"):
        _femur(args.np, "run", "frame", "--out", str(out / "frame"))
        for name in ("trajectories.png", "strength_change.png"):
            shutil.copy(out / "frame" / "plots" / name, FIGURES / f"frame_{name}")
    if args.only in (None, "ct"):
        verse = ROOT.parent / "shared" / "data" / "verse004-L2"
        if verse.exists():
            _ct(args.np, out)
        else:
            print(f"{verse} not found: CT figures skipped")
    print(f"figures written to {FIGURES}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
