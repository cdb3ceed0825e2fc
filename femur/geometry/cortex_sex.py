"""Sex-specific cortex of the anatomical femur: men's cortical thickness pattern (issue 15).

The shipped anatomical femur is a woman's (Visible Human female) with one cortical
thickness pattern (`anatomical_regions.CORTEX_DEFAULTS`); a man's femur is that bone scaled
to his size (``femur.geometry.population.MALE_SIZE_FACTOR``), which scales the cortex with
it. Men's cortex is thicker than a scaled woman's, and not uniformly so.
:data:`CORTEX_SEX_FACTORS` holds, per region of the thickness map, a man's cortical
thickness relative to a woman's of the same body size; :func:`cortex_for_sex` turns them
into the thickness values (mm) of the reference femur, and :func:`thicken_cortex` moves the
nodes of the shipped mesh so that its cortex has them (topology, cell order and tags kept,
so per-cell reference data such as the adapted density still map one-to-one).

Sources (men vs women, proximal femur; the exact ratios are UNCONFIRMED):

* Looker et al., JBMR 2001, 16:1291 (NHANES III, 5623 adults, DXA hip structural analysis):
  femoral-neck and proximal-shaft cortical thickness higher in men; after adjustment for
  height and weight the geometry (widths, section modulus, cortical thickness) is still
  **5-17 % higher in men** [abstract];
* Johannesdottir et al., JBMR 2013, 28:2165 (AGES-Reykjavik, QCT of the mid femoral neck,
  100 men and 300 women, 66-90 y): at baseline women had lower values than men in the
  **superolateral** region (cortical thickness among them), not inferomedially; women lose
  superolateral cortex faster [abstract]; Johannesdottir et al., Bone 2011 (same cohort,
  controls): significant sex differences in the estimated cortical thickness by quadrant.

So (ASSUMPTIONS inside the Looker range, regional split from AGES): superolateral neck
x 1.15 (upper end: the sex difference sits superiorly), inferomedial neck x 1.05 (lower
end), trochanters and shaft x 1.10 (middle), head x 1.00 (no data). Nothing is fitted to men.

The thickening (:func:`thicken_cortex`): every node of a cortical cell that is not on the
periosteal (outer, non-distal) surface is moved along the line from its nearest periosteal
point q, ``p' = q + k(q) (p - q)``, ``k`` the ratio of the sex's thickness map to the
mesh's own (`anatomical_regions.cortical_thickness_mm`, smooth); marrow nodes follow with
an inverse-distance-weighted average of the nearby cortex displacements, fading to zero
``FADE_MM`` inside the endosteal surface; nodes on the distal cut stay in it. A
``MeshError`` if any element would invert.
"""

from __future__ import annotations

import numpy as np

from femur.core.errors import MeshError
from femur.core.sex import normalise_sex
from femur.geometry import anatomical_regions as regions
from femur.geometry.trisurf import TriSurface
from femur.geometry.trisurf_remesh import sample_surface

#: men's cortical thickness relative to women's of the same size, by region of the thickness
#: map (module docstring: Looker 2001, Johannesdottir 2013; ratios UNCONFIRMED); women 1
CORTEX_SEX_FACTORS = {
    "female": {"head_mm": 1.0, "neck_superior_mm": 1.0, "neck_inferior_mm": 1.0, "trochanter_mm": 1.0,
               "shaft_mm": 1.0},
    "male": {"head_mm": 1.0, "neck_superior_mm": 1.15, "neck_inferior_mm": 1.05, "trochanter_mm": 1.10,
             "shaft_mm": 1.10},
}
#: marrow nodes follow the endosteal displacement, fading to zero this far inside (mm)
FADE_MM = 6.0
#: sampling of the periosteal surface for the nearest-point search (mm)
SAMPLE_MM = 0.25
#: smallest allowed element volume ratio after the thickening
MIN_VOLUME_RATIO = 0.2


def cortex_for_sex(sex: str, ref: dict) -> dict | None:
    """The cortical thickness values (mm, `anatomical_regions.CORTEX_DEFAULTS` keys) of the
    reference femur ``ref`` for a patient of ``sex``; None when they are the mesh's own
    (women: the shipped mesh is unchanged)."""
    factors = CORTEX_SEX_FACTORS[normalise_sex(sex)]
    if all(v == 1.0 for v in factors.values()):
        return None
    own = dict(regions.CORTEX_DEFAULTS)
    own.update(ref.get("cortex", {}))
    return {k: float(own[k]) * float(factors[k]) for k in regions.CORTEX_DEFAULTS}


def _exterior_faces(cells: np.ndarray) -> np.ndarray:
    faces = np.concatenate([cells[:, [0, 1, 2]], cells[:, [0, 1, 3]], cells[:, [0, 2, 3]], cells[:, [1, 2, 3]]])
    key = np.sort(faces, axis=1)
    _, idx, cnt = np.unique(key, axis=0, return_index=True, return_counts=True)
    return faces[idx[cnt == 1]]


def _signed_volumes(x: np.ndarray, cells: np.ndarray) -> np.ndarray:
    a, b, c, d = (x[cells[:, j]] for j in range(4))
    return np.einsum("ij,ij->i", np.cross(b - a, c - a), d - a) / 6.0


def thicken_cortex(points: np.ndarray, cells: np.ndarray, cell_values: np.ndarray, ref: dict,
                   cortex: dict, cortical_id: int = 1) -> np.ndarray:
    """Node coordinates of the reference mesh with the cortex of thickness map ``cortex``
    (mm values, `anatomical_regions.cortical_thickness_mm`) instead of the mesh's own (module
    docstring). ``points`` (m, 3), ``cells`` (k, 4) tetrahedra, ``cell_values`` their tags."""
    from scipy.spatial import cKDTree

    X = np.asarray(points, dtype=float)
    cells = np.asarray(cells, dtype=np.int64)
    cort = np.asarray(cell_values) == cortical_id
    ext = _exterior_faces(cells)
    distal = np.all(np.abs(X[ext][:, :, 2]) < 1e-6, axis=1)
    peri = ext[~distal]
    peri_nodes = np.unique(peri)
    cort_nodes = np.setdiff1d(np.unique(cells[cort]), peri_nodes)
    marrow = np.setdiff1d(np.unique(cells[~cort]), np.unique(cells[cort]))
    dense = sample_surface(TriSurface(X, peri), SAMPLE_MM)
    own = dict(regions.CORTEX_DEFAULTS)
    own.update(ref.get("cortex", {}))
    k_dense = regions.cortical_thickness_mm(dense, ref, cortex) / regions.cortical_thickness_mm(dense, ref, own)
    _, j = cKDTree(dense).query(X[cort_nodes])
    q = dense[j]
    Y = X.copy()
    Y[cort_nodes] = q + k_dense[j][:, None] * (X[cort_nodes] - q)
    disp = Y[cort_nodes] - X[cort_nodes]
    if marrow.size and cort_nodes.size:
        nn = min(8, cort_nodes.size)
        d, i = cKDTree(X[cort_nodes]).query(X[marrow], k=nn)
        d, i = d.reshape(len(marrow), nn), i.reshape(len(marrow), nn)
        w = 1.0 / np.maximum(d, 1e-6) ** 2
        avg = np.einsum("mk,mkj->mj", w, disp[i]) / w.sum(axis=1)[:, None]
        fade = np.clip(1.0 - d[:, 0] / FADE_MM, 0.0, 1.0) ** 2
        Y[marrow] = X[marrow] + fade[:, None] * avg
    on_cut = np.abs(X[:, 2]) < 1e-6
    Y[on_cut, 2] = X[on_cut, 2]
    v0, v1 = _signed_volumes(X, cells), _signed_volumes(Y, cells)
    ratio = v1 / np.where(v0 != 0, v0, 1.0)
    if np.any(ratio < MIN_VOLUME_RATIO):
        bad = int(np.sum(ratio < MIN_VOLUME_RATIO))
        raise MeshError(f"anatomical femur: the sex-specific cortex {cortex} would crush or invert {bad} "
                        f"elements (volume ratio {ratio.min():.3g} < {MIN_VOLUME_RATIO})")
    return Y


#: thickened node sets already computed in this process: (mesh key, cortex) -> points
_CACHE: dict = {}


def thickened_points(mesh_key: str, payload: dict, ref: dict, cortex: dict) -> np.ndarray:
    """:func:`thicken_cortex` of a shipped mesh's payload, cached per (mesh, cortex) in this
    process (a cohort builds many men's femurs from the same mesh). ``mesh_key`` names the
    mesh file version (path, mtime, size)."""
    key = (mesh_key, tuple(sorted(cortex.items())))
    if key not in _CACHE:
        if len(_CACHE) >= 4:
            _CACHE.pop(next(iter(_CACHE)))
        Y = thicken_cortex(payload["points"], payload["cells"], payload["cell_values"], ref, cortex)
        Y.setflags(write=False)
        _CACHE[key] = Y
    return _CACHE[key]


__all__ = ["CORTEX_SEX_FACTORS", "FADE_MM", "cortex_for_sex", "thicken_cortex", "thickened_points"]
