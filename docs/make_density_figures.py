"""Mid-coronal slices of the default femur's density (docs/figures/anatomical_density_romosozumab.png).

    PYVISTA_OFF_SCREEN=true .venv/bin/python docs/make_density_figures.py

The default patient (woman, 71 y, femoral-neck T-score -2.5) on the default femur (the
anatomical femur, 3 mm mesh), FE-coupled romosozumab 210 mg monthly for 12 months
(``femur simulate --treatment romosozumab --months 12 --bone femur``, femur only). Panels on
the plane through the head centre holding the neck and shaft axes
(``femur.exports.adaptation_figures``): (a) the young-adult density the femur starts from
(habitual-loading pattern in the cancellous compartment, uniform cortex; grey scale 0-1
g/cm3, the cortex saturates), (b) the patient's density at baseline (scaled to FN T = -2.5
by ``bone_with_t_score``; 0-0.5 g/cm3), (c) the density change after 12 months (%).
"""

from __future__ import annotations

import os
from pathlib import Path

os.environ.setdefault("PYVISTA_OFF_SCREEN", "true")

from femur.core.mpi import MPI  # noqa: E402
from femur.exports.adaptation_figures import coronal_slice_figure  # noqa: E402
from femur.exports.fields import density_change_pct  # noqa: E402
from femur.geometry.adapted_density import bone_with_adapted_density  # noqa: E402
from femur.remodeling.patient import Patient  # noqa: E402
from femur.workflows.simulation import Simulation  # noqa: E402

OUT = Path(__file__).resolve().parent / "figures" / "anatomical_density_romosozumab.png"


class _Slices:
    """Export object: draws the slices when the run has finished (before its solvers close)."""

    def start(self, run) -> None:
        pass

    def write(self, run, month: float) -> None:
        pass

    def finish(self, run, result) -> None:
        track = run.tracks["femur"]
        young = bone_with_adapted_density(track.bone).density.x.array
        change = density_change_pct(track)
        lim = float(track.bone.comm.allreduce(abs(change).max(), op=MPI.MAX))
        coronal_slice_figure(
            track.bone, {"young": young, "baseline": track.rho0, "change": change}, OUT,
            titles={"young": "(a) young adult: habitual-loading pattern (0-1 g/cm3)",
                    "baseline": "(b) woman 71 y, FN T-score -2.5 (0-0.5 g/cm3)",
                    "change": "(c) after 12 months of romosozumab"},
            cmaps={"young": "gray", "baseline": "gray", "change": "RdBu"},
            clims={"young": (0.0, 1.0), "baseline": (0.0, 0.5), "change": (-lim, lim)},
            units={"young": "g/cm3", "baseline": "g/cm3", "change": "density change (%)"})


def main() -> int:
    sim = Simulation("romosozumab", 12, Patient(age_years=71.0), bones=("femur",), strength_months=(0,),
                     progress=False, exports=[_Slices()])
    sim.run()
    if MPI.COMM_WORLD.rank == 0:
        print(f"wrote {OUT}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
