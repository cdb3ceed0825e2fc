"""Generate the DXA-site element templates of the built-in bones (femur/data/site_template.npz).

    python -m femur.calibration.site_template            # summary of the stored table
    python -m femur.calibration.site_template --write    # regenerate it (serial, ~2 min)

The table format, its reader and what it is for: ``femur.workflows.site_template``.
Nothing in it is fitted: it is geometry and density only.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

from femur.core.errors import InputError
from femur.core.log import configure, get_logger
from femur.core.mpi import MPI
from femur.core.sex import normalise_sex
from femur.geometry.compartments import non_bone_mask
from femur.geometry.population import male_geometry
from femur.outcomes import dxa
from femur.workflows.bones import young_adult_bone
from femur.workflows.site_template import (
    DEFAULT_TEMPLATE_PATH,
    DXA_NAMES,
    GROUPS,
    N_BINS,
    SEXES,
    SITE_BONES,
    T_GRID,
    SiteSet,
    bin_elements,
    load_table,
    site_set,
    store_groups,
)
from femur.workflows.t_score import bone_with_t_score

log = get_logger(__name__)


def bone_groups(bone, prepared: dict | None = None, n_bins: int = N_BINS) -> dict[str, SiteSet]:
    """Binned site and marker groups of one built bone (collective; gathered on every rank).

    ``prepared``: `femur.outcomes.dxa.prepare_all` output, reused when the same mesh is re-densified.
    """
    if bone.density is None:
        raise InputError(f"site template: bone '{bone.name}' has no density field")
    preps = prepared if prepared is not None else dxa.prepare_all(bone)
    n_owned = bone.num_owned_cells
    rho = np.asarray(bone.density.x.array, dtype=float)[:n_owned]
    is_bone = ~non_bone_mask(bone)[:n_owned]
    cort = (bone.compartment_mask("cortical")[:n_owned] if "cortical" in (bone.cell_ids or {})
            else np.zeros(n_owned, dtype=bool))
    weights = {}
    for site, dname in DXA_NAMES.items():
        if SITE_BONES[site] != bone.kind or dname not in preps:
            continue
        proj = preps[dname]
        inside = (proj.roi & proj.covered).ravel()[proj.pix]
        w = np.bincount(proj.cell[inside], weights=proj.chord_mm[inside], minlength=n_owned)[:n_owned]
        weights[site] = w * rho * is_bone
    weights[bone.kind] = bone.cell_volumes()[:n_owned] * is_bone
    comm = bone.comm
    out = {}
    for group, w in weights.items():
        parts = comm.allgather((rho[w > 0], w[w > 0], cort[w > 0]))
        r = np.concatenate([p[0] for p in parts])
        ww = np.concatenate([p[1] for p in parts])
        cc = np.concatenate([p[2] for p in parts])
        out[group] = bin_elements(r, ww, cc, n_bins)
    return out


def _default_bone(kind: str, sex: str, comm):
    """The default built-in bone of a sex (a man's scaled to his size) at its young-adult
    density, the state every T-score of the grid is scaled from -- as ``build_bone`` does;
    rescaling an already scaled bone is not the same above T = -2.5 (the cortical rule
    changes at s = 1)."""
    geometry = male_geometry(kind) if sex == "male" else {}
    return young_adult_bone(kind, comm=comm, sex=sex, **geometry)


def build_table(t_grid=T_GRID, sexes=SEXES, progress: bool = True, comm=None) -> dict[str, np.ndarray]:
    """Templates of the default bones over ``t_grid`` (arrays keyed 'sex/T/group/field')."""
    comm = comm or MPI.COMM_WORLD
    arrays: dict[str, np.ndarray] = {"t_grid": np.asarray(t_grid, dtype=float)}
    for sex in sexes:
        for kind in ("femur", "vertebra"):
            t0 = time.perf_counter()
            base = _default_bone(kind, sex, comm)
            preps = dxa.prepare_all(base)
            for t in t_grid:
                b = bone_with_t_score(base, t_score=float(t), sex=sex)
                store_groups(arrays, sex, t, bone_groups(b, preps))
            if progress:
                log.info("site template: %s %s done in %.1f s", sex, kind, time.perf_counter() - t0)
    return arrays


def table_from_bones(bones, sex: str = "female", t_score: float = -2.5) -> dict[str, np.ndarray]:
    """A one-point template table (same layout as the stored one) from already-built bones,
    e.g. a coarse femur and vertebra in a test (collective)."""
    arrays: dict[str, np.ndarray] = {"t_grid": np.array([float(t_score)])}
    for bone in bones:
        store_groups(arrays, sex, t_score, bone_groups(bone))
    return arrays


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m femur.calibration.site_template",
                                 description=__doc__.split("\n")[0])
    ap.add_argument("--write", action="store_true", help="regenerate femur/data/site_template.npz")
    ap.add_argument("--out", default=None, help="write to this path instead")
    ap.add_argument("--sexes", default=",".join(SEXES),
                    help="comma-separated sexes to regenerate (default: both); the other sexes' "
                         "groups are kept from the stored table")
    args = ap.parse_args(argv)
    configure()
    if not (args.write or args.out):
        tab = load_table()
        for g in GROUPS:
            s = site_set(g, "female", -2.5, tab)
            share = s.weight[s.cortical].sum() / s.weight.sum()
            print(f"{g:14s} bins {s.rho.size:3d}  density {s.rho.min():.3f}-{s.rho.max():.3f} g/cm3  "
                  f"cortical weight share {share:.2f}")
        return 0
    sexes = tuple(normalise_sex(x) for x in args.sexes.split(",") if x.strip())
    arrays = build_table(sexes=sexes)
    if set(sexes) != set(SEXES):
        kept = {k: v for k, v in load_table().items() if k.split("/")[0] in SEXES and k.split("/")[0] not in sexes}
        arrays.update(kept)
    path = Path(args.out) if args.out else DEFAULT_TEMPLATE_PATH
    if MPI.COMM_WORLD.rank == 0:
        np.savez_compressed(path, **arrays)
        log.info("wrote %s", path)
    return 0


__all__ = ["bone_groups", "build_table", "table_from_bones"]


if __name__ == "__main__":
    sys.exit(main())
