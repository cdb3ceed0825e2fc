"""pyvista figures of a representative patient: density change, treatment beside placebo.

The representative patient is the cohort's first patient (index 0, or a chosen one). The
figures READ the per-case fields that the study wrote when it was run with fields
(``Study.run(fields=True)``, ``femur run --figures``: ``OUT/fields/<case_id>/<bone>_fields.vtu``);
they never re-run a patient. The element density change (%) at the end of the study is
drawn side by side, one panel per arm, on a common colour scale.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from femur.core.errors import InputError
from femur.exports.pictures import read_grid, render_grids
from femur.study.runner import case_fields_dir

BONES = ("femur", "vertebra")


def density_change_figures(study, out, patient_index: int = 0, figures_dir=None) -> list[Path]:
    """Write ``<figures_dir>/density_change_<bone>.png`` from the fields stored in the
    study folder ``out`` (default figures folder: ``out/plots``). Serial (call on rank 0)."""
    out = Path(out)
    figures_dir = Path(figures_dir) if figures_dir is not None else out / "plots"
    records = [r for r in study.cases() if r["patient"]["index"] == patient_index]
    if not records:
        raise InputError(f"study has no patient with index {patient_index}")
    paths = []
    for bone in BONES:
        files = {rec["arm"]: case_fields_dir(out, rec["case_id"]) / f"{bone}_fields.vtu" for rec in records}
        if not any(f.exists() for f in files.values()):
            continue
        missing = [str(f) for f in files.values() if not f.exists()]
        if missing:
            raise InputError(f"no fields in {missing}: run the study with fields "
                             "(femur run --figures, Study.run(fields=True))")
        grids = {arm: read_grid(f) for arm, f in files.items()}
        lim = max(float(np.abs(g.cell_data["density_change_pct"]).max()) for g in grids.values()) or 1.0
        target = figures_dir / f"density_change_{bone}.png"
        render_grids({arm: (g, "density_change_pct") for arm, g in grids.items()}, target,
                     titles={arm: f"{arm}: density change (%)" for arm in grids},
                     cmaps={arm: "RdBu" for arm in grids}, clims={arm: (-lim, lim) for arm in grids},
                     clip_normal="-y")
        paths.append(target)
    if not paths:
        raise InputError(f"{out / 'fields'}: no case fields of patient {patient_index}; run the "
                         "study with fields (femur run --figures, Study.run(fields=True))")
    return paths


__all__ = ["density_change_figures"]
