"""Image -> element density mapping (Bonemat-style element averages).

Voxel meshes: each block's density is the exact mean of its bone voxels (see
:func:`femur.geometry.ct.voxel_mesh.coarsen_grid`) -- the element and its voxels overlap exactly.

Other meshes (tetrahedra, or hexahedra not aligned with the voxels): the element average
is a quadrature over equal-volume sub-cells -- the 64 children of two 1:8 tetrahedron
subdivisions, or n^3 sub-hexahedra -- of the trilinearly interpolated image.

Partial-volume rule at the bone boundary: interpolation is *mask-weighted*.  With m the
bone mask (1 on voxels with a bone label, 0 on background and loading layers) and rho the
calibrated image, each sample takes interp(rho*m) and interp(m), and the element value is
sum(interp(rho*m)) / sum(interp(m)).  Background (soft tissue, air, the zero fill of a
masked image) and layer voxels therefore never dilute the bone density of a boundary
element; elements with no bone voxel within reach take the nearest bone voxel's value.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage


def _tet_subdivide(tets: np.ndarray) -> np.ndarray:
    """1:8 subdivision of tetrahedra given by vertex arrays (n, 4, d) -> (8n, 4, d); the
    eight children have equal volume."""
    a, b, c, d = (tets[:, i] for i in range(4))
    ab, ac, ad = (a + b) / 2, (a + c) / 2, (a + d) / 2
    bc, bd, cd = (b + c) / 2, (b + d) / 2, (c + d) / 2
    kids = [
        (a, ab, ac, ad), (ab, b, bc, bd), (ac, bc, c, cd), (ad, bd, cd, d),
        # octahedron ab-ac-ad-bc-bd-cd split along the ac-bd diagonal
        (ab, ac, ad, bd), (ab, ac, bc, bd), (ac, ad, bd, cd), (ac, bc, bd, cd),
    ]
    return np.concatenate([np.stack(k, axis=1) for k in kids], axis=0)


def tet_sample_barycentric(levels: int = 2) -> np.ndarray:
    """Barycentric coordinates (s, 4) of the centroids of 8^levels equal-volume sub-tets."""
    t = np.eye(4)[None, :, :]
    for _ in range(levels):
        t = _tet_subdivide(t)
    return t.mean(axis=1)


def hex_sample_reference(n: int = 4) -> np.ndarray:
    """Reference points (n^3, 3) in [0,1]^3 at the centres of n^3 sub-cubes."""
    g = (np.arange(n) + 0.5) / n
    z, y, x = np.meshgrid(g, g, g, indexing="ij")
    return np.column_stack([x.ravel(), y.ravel(), z.ravel()])


def _hex_shape(ref: np.ndarray) -> np.ndarray:
    """Trilinear shape functions (s, 8) in dolfinx vertex order."""
    x, y, z = ref[:, 0], ref[:, 1], ref[:, 2]
    cols = []
    for cx, cy, cz in [(0, 0, 0), (1, 0, 0), (0, 1, 0), (1, 1, 0),
                       (0, 0, 1), (1, 0, 1), (0, 1, 1), (1, 1, 1)]:
        cols.append((x if cx else 1 - x) * (y if cy else 1 - y) * (z if cz else 1 - z))
    return np.column_stack(cols)


def element_sample_points(cell_coords: np.ndarray, cell_type: str, n: int = 4):
    """World sample points (ncell, s, 3) and weights (ncell, s) per element.

    Tetrahedra: centroids of 8^L equal-volume sub-tets (equal weights), L = 2 (64 points)
    for n >= 3, L = 1 (8 points) for n <= 2.  Hexahedra: n^3 sub-cube centres weighted by
    |det J| (exact weights for parallelepipeds, as voxel hexes are).
    """
    if cell_type == "tetrahedron":
        bary = tet_sample_barycentric(2 if n >= 3 else 1)
        pts = np.matmul(bary[None], cell_coords)
        w = np.ones(pts.shape[:2])
        return pts, w
    ref = hex_sample_reference(n)
    shp = _hex_shape(ref)
    pts = np.matmul(shp[None], cell_coords)
    x, y, z = ref[:, 0], ref[:, 1], ref[:, 2]
    verts = [(0, 0, 0), (1, 0, 0), (0, 1, 0), (1, 1, 0), (0, 0, 1), (1, 0, 1), (0, 1, 1), (1, 1, 1)]

    def f(t, c):
        return t if c else 1 - t

    def df(c):
        return 1.0 if c else -1.0

    dshape = np.stack([
        np.column_stack([df(cx) * f(y, cy) * f(z, cz) for cx, cy, cz in verts]),
        np.column_stack([f(x, cx) * df(cy) * f(z, cz) for cx, cy, cz in verts]),
        np.column_stack([f(x, cx) * f(y, cy) * df(cz) for cx, cy, cz in verts]),
    ], axis=-1)  # (s, 8, 3)
    J = np.einsum("svr,cvd->csdr", dshape, cell_coords)
    w = np.abs(np.linalg.det(J))
    return pts, w


def element_average(image_values: np.ndarray, mask: np.ndarray, inv_affine: np.ndarray,
                    cell_coords: np.ndarray, cell_type: str, n: int | None = 4) -> np.ndarray:
    """Mask-weighted average of a voxel image over each element.

    image_values, mask: arrays on the voxel grid; inv_affine: world -> voxel index 4x4;
    cell_coords (ncell, nv, 3) world mm vertex coordinates; sample points from
    :func:`element_sample_points` (processed in chunks to bound memory).  Returns (ncell,)
    averages; elements whose samples see no masked voxel get the value of the nearest
    masked voxel.
    """
    nc = cell_coords.shape[0]
    if n is None:  # enough sub-samples per voxel: 8 per tet up to ~1.5 voxels, else 64
        voxel = float(np.mean(1.0 / np.linalg.norm(inv_affine[:3, :3], axis=1)))
        edge = float(np.mean(np.linalg.norm(cell_coords[:, 1] - cell_coords[:, 0], axis=1)))
        n = 4 if edge > 1.5 * voxel else 2
    m = mask.astype(float)
    rm = image_values * m
    num = np.zeros(nc)
    den = np.zeros(nc)
    chunk = 20000
    for a in range(0, nc, chunk):
        b = min(nc, a + chunk)
        pts, w = element_sample_points(cell_coords[a:b], cell_type, n)
        ns = pts.shape[1]
        idx = pts.reshape(-1, 3) @ inv_affine[:3, :3].T + inv_affine[:3, 3]
        nu = ndimage.map_coordinates(rm, idx.T, order=1, mode="constant", cval=0.0)
        de = ndimage.map_coordinates(m, idx.T, order=1, mode="constant", cval=0.0)
        num[a:b] = (nu.reshape(b - a, ns) * w).sum(axis=1)
        den[a:b] = (de.reshape(b - a, ns) * w).sum(axis=1)
    out = np.zeros(nc)
    ok = den > 1e-12
    out[ok] = num[ok] / den[ok]
    if np.any(~ok) and mask.any():
        # nearest masked voxel to the element's mean sample point
        _, (ii, jj, kk) = ndimage.distance_transform_edt(~mask.astype(bool), return_indices=True)
        centre = cell_coords[~ok].mean(axis=1) @ inv_affine[:3, :3].T + inv_affine[:3, 3]
        c = np.clip(np.rint(centre).astype(int), 0, np.array(mask.shape) - 1)
        near = (ii[c[:, 0], c[:, 1], c[:, 2]], jj[c[:, 0], c[:, 1], c[:, 2]],
                kk[c[:, 0], c[:, 1], c[:, 2]])
        out[~ok] = image_values[near]
    return out


def nearest_label(labels: np.ndarray, inv_affine: np.ndarray, points: np.ndarray) -> np.ndarray:
    """Label of the voxel containing each point (n, 3); points in background voxels take
    the label of the nearest labelled voxel."""
    idx = points @ inv_affine[:3, :3].T + inv_affine[:3, 3]
    c = np.clip(np.rint(idx).astype(int), 0, np.array(labels.shape) - 1)
    lab = labels[c[:, 0], c[:, 1], c[:, 2]]
    if np.any(lab == 0):
        _, (ii, jj, kk) = ndimage.distance_transform_edt(labels == 0, return_indices=True)
        z = lab == 0
        cz = c[z]
        lab[z] = labels[ii[cz[:, 0], cz[:, 1], cz[:, 2]], jj[cz[:, 0], cz[:, 1], cz[:, 2]],
                        kk[cz[:, 0], cz[:, 1], cz[:, 2]]]
    return lab
