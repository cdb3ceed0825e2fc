"""Which cells of a bone are bone: the one definition used by every stage.

A compartment (a cell tag of ``Bone.cell_ids``) is *not bone* when its name contains one
of :data:`NON_BONE_WORDS` -- loading layers (``layer_*``), PMMA or cement, fillers, platens,
pads. Non-bone cells keep constant moduli (``femur.mechanics.materials``), are ignored by
DXA and by failure criteria, and do not remodel.
"""

from __future__ import annotations

import numpy as np

from femur.core.mpi import MPI  # noqa: F401  (MPI bootstrap before dolfinx)
import dolfinx  # noqa: E402

#: Words that mark a compartment name as non-bone ("non_bone": CT labels declared not bone,
#: ``femur.geometry.ct.bone_from_ct(bone_labels=...)``).
NON_BONE_WORDS = ("layer", "pmma", "cement", "filler", "platen", "pad", "non_bone")


def is_bone_compartment(name: str) -> bool:
    """True for bone tissue compartments; False for loading layers, cement, platens, fillers."""
    n = name.lower()
    return not any(w in n for w in NON_BONE_WORDS)


def non_bone_mask(bone, extra_names=()) -> np.ndarray:
    """Local cells (owned + ghost) of non-bone compartments; ``extra_names`` adds
    compartments that a material model treats as non-bone (constant moduli)."""
    names = set(extra_names or ())
    names |= {n for n in bone.cell_ids if not is_bone_compartment(n)}
    mask = np.zeros(bone.num_local_cells, dtype=bool)
    for n in names:
        if n in bone.cell_ids:
            mask |= bone.compartment_mask(n)
    return mask


def bone_mask(bone) -> np.ndarray:
    """Local cells (owned + ghost) of bone compartments (every cell of an untagged bone)."""
    return ~non_bone_mask(bone)


def owned_bone_cells(bone, exclude_prefix: str | None = None) -> np.ndarray:
    """Owned cells of bone compartments (all owned cells when the bone has no tags)."""
    n_owned = bone.num_owned_cells
    if not bone.cell_ids or bone.cell_tags is None:
        return np.arange(n_owned, dtype=np.int32)
    mask = np.zeros(bone.num_local_cells, dtype=bool)
    for name in bone.cell_ids:
        if is_bone_compartment(name) and not (exclude_prefix and name.startswith(exclude_prefix)):
            mask |= bone.compartment_mask(name)
    return np.flatnonzero(mask[:n_owned]).astype(np.int32)


def where_cells(bone, mask, limit: int = 3) -> str:
    """Where the local cells of ``mask`` (owned + ghost) are, in words (collective): how
    many (owned cells counted once over all ranks), in which compartments, and the
    midpoints (mm) of up to ``limit`` of them (the lowest x, y, z first: the same text on
    any partition). E.g. "2 elements (posterior_cortical 2) at (1.0, 2.0, 3.0), (...) mm"."""
    comm = bone.comm
    n_owned = bone.num_owned_cells
    mask = np.asarray(mask, dtype=bool)
    owned = np.flatnonzero(mask[:n_owned])
    counts = {}
    inv = {v: k for k, v in bone.cell_ids.items()}
    names = np.full(n_owned, "untagged", dtype=object)
    if bone.cell_tags is not None:
        ct = bone.cell_tags
        keep = ct.indices < n_owned
        names[ct.indices[keep]] = [inv.get(int(v), f"label {int(v)}") for v in ct.values[keep]]
    for name in names[owned]:
        counts[name] = counts.get(name, 0) + 1
    mids = bone.cell_midpoints()[owned] if owned.size else np.zeros((0, 3))
    order = np.lexsort((mids[:, 2], mids[:, 1], mids[:, 0])) if len(mids) else np.zeros(0, int)
    pts = [tuple(float(c) for c in mids[i]) for i in order[:limit]]
    total = {}
    for part in comm.allgather(counts):
        for k, v in part.items():
            total[k] = total.get(k, 0) + v
    pts = sorted(p for part in comm.allgather(pts) for p in part)[:limit]
    n = sum(total.values())
    if n == 0:
        return "no elements"
    by = ", ".join(f"{k} {v}" for k, v in sorted(total.items()))
    at = ", ".join("(" + ", ".join(f"{c:.1f}" for c in p) + ")" for p in pts)
    more = ", ..." if n > len(pts) else ""
    return f"{n} element{'s' if n != 1 else ''} ({by}) at {at}{more} mm"


def cells_next_to(bone, mask) -> np.ndarray:
    """Local cells sharing a facet with an owned cell of ``mask`` (any rank's: the facet
    counts are summed over the ranks that share the facet), the cells of ``mask`` included
    (collective)."""
    mesh = bone.mesh
    tdim = mesh.topology.dim
    mesh.topology.create_connectivity(tdim, tdim - 1)
    n, no = bone.num_local_cells, bone.num_owned_cells
    c2f = mesh.topology.connectivity(tdim, tdim - 1).array.reshape(-1, tdim + 1)[:n]
    count = dolfinx.la.vector(mesh.topology.index_map(tdim - 1), 1)
    count.array[:] = 0.0
    np.add.at(count.array, c2f[:no][np.asarray(mask, bool)[:no]].ravel(), 1.0)
    count.scatter_reverse(dolfinx.la.InsertMode.add)
    count.scatter_forward()
    return count.array[c2f].sum(axis=1) > 0


__all__ = ["NON_BONE_WORDS", "bone_mask", "is_bone_compartment", "non_bone_mask", "owned_bone_cells",
           "where_cells", "cells_next_to"]
