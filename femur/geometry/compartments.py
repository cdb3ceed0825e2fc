"""Which cells of a bone are bone: the one definition used by every stage.

A compartment (a cell tag of ``Bone.cell_ids``) is *not bone* when its name contains one
of :data:`NON_BONE_WORDS` -- loading layers (``layer_*``), PMMA or cement, fillers, platens,
pads. Non-bone cells keep constant moduli (``femur.mechanics.materials``), are ignored by
DXA and by failure criteria, and do not remodel.
"""

from __future__ import annotations

import numpy as np

#: Words that mark a compartment name as non-bone.
NON_BONE_WORDS = ("layer", "pmma", "cement", "filler", "platen", "pad")


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


__all__ = ["NON_BONE_WORDS", "bone_mask", "is_bone_compartment", "non_bone_mask", "owned_bone_cells"]
