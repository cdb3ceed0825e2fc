#!/usr/bin/env python
"""A vertebra from CT: stiffness, linear fracture load and the 0.2 %-strain surrogate.

    python examples/ct_vertebra.py [IMAGE LABELS] [--voxel-coarsen 2]

Default input: the VerSe L2 vertebra with PMMA loading layers (labels 5, 6) in
../shared/data/verse004-L2 (CC BY-SA 2.0: VerSe, Loeffler et al. 2020, Sekuboyina et al.
2020/2021; derived by the Bonelab group, Walle et al. 2025). The image is already
calibrated in mg/cm3; the mesh is one hexahedron per 2x2x2 voxels (2 mm).
"""

import argparse
import json
from pathlib import Path

from femur.core.log import configure
from femur.core.mpi import MPI
from femur.ct import ct_strength

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "verse004-L2"
IMAGE = DATA / "sub-verse004_0000_vertebra_21_im.nii.gz"
LABELS = DATA / "sub-verse004_0000_vertebra_21_seg.nii.gz"


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("image", nargs="?", default=str(IMAGE))
    ap.add_argument("labels", nargs="?", default=str(LABELS))
    ap.add_argument("--voxel-coarsen", type=int, default=2)
    args = ap.parse_args(argv)
    configure()
    [rec] = ct_strength(args.image, args.labels, layers=(5, 6), calibrated_mg_cm3=True,
                        voxel_coarsen=args.voxel_coarsen, law="kopperdahl2002", layer_material="pmma")
    if MPI.COMM_WORLD.rank == 0:
        print(json.dumps({k: rec[k] for k in ("dofs", "stiffness_n_per_mm", "fracture_load_n",
                                              "surrogate_0p2pct_load_n", "failure_site")}, indent=1))
    return rec


if __name__ == "__main__":
    main()
