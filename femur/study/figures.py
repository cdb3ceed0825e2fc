"""pyvista figures of a representative patient: density change, treatment beside placebo.

The representative patient is the cohort's first patient (index 0, or a chosen one);
its femur and vertebra are simulated once per arm with the study's model settings
(the same case records the study ran), and the element density change (%) at the last
visit is drawn side by side, one panel per arm, on a common colour scale.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from femur._mpi import MPI


def density_change_figures(study, out, patient_index: int = 0, comm=MPI.COMM_WORLD) -> list[Path]:
    """Write ``out/density_change_<bone>.png`` (all ranks call; rank 0 writes)."""
    from femur.simulation import simulation_for_record
    from femur.viz import render_cell_fields

    records = [r for r in study.cases() if r["patient"]["index"] == patient_index]
    if not records:
        from femur.errors import InputError

        raise InputError(f"study has no patient with index {patient_index}")
    sims = {}
    for rec in records:
        sim = simulation_for_record(rec, comm)
        sim.run()
        sims[rec["arm"]] = sim
    paths = []
    out = Path(out)
    first = next(iter(sims.values()))
    for bone in first.tracks:
        fields = {}
        for arm, sim in sims.items():
            tr = sim.tracks[bone]
            fields[arm] = 100.0 * (tr.bone.density.x.array / tr.rho0 - 1.0)
        lim = max(float(comm.allreduce(np.abs(v).max(), op=MPI.MAX)) for v in fields.values()) or 1.0
        # every arm's bone is the same deterministic mesh with the same partition: the
        # fields share the first arm's mesh and cell order
        path = render_cell_fields(
            first.tracks[bone].bone.mesh, fields, out / f"density_change_{bone}.png",
            titles={arm: f"{arm}: density change (%)" for arm in fields},
            cmaps={arm: "RdBu" for arm in fields}, clims={arm: (-lim, lim) for arm in fields},
            clip_normal="-y",
        )
        paths.append(out / f"density_change_{bone}.png")
    return paths
