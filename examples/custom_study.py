#!/usr/bin/env python
"""Run the custom TOML study next to this script and print its trial-paper table.

    python examples/custom_study.py [--out results/custom] [--patients N]
    mpiexec -n 2 python examples/custom_study.py        # cases spread over the ranks

Edit examples/custom_study.toml (arms, regimens, cohort, visits) to make your own study.
"""

import argparse
from pathlib import Path

from femur.core.log import configure
from femur.core.mpi import MPI
from femur.study import Study

TOML = Path(__file__).with_name("custom_study.toml")


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", default="results/custom")
    ap.add_argument("--patients", type=int, default=None)
    args = ap.parse_args(argv)
    configure()
    study = Study.load(TOML, patients=args.patients)
    results = study.run(out=args.out, progress=False)
    if MPI.COMM_WORLD.rank == 0:
        print(results.format_table())
    return results


if __name__ == "__main__":
    main()
