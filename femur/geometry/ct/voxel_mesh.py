"""Voxel hexahedral meshes straight from a label image.

Each labelled voxel (or each K x K x K block, with ``coarsen=K``) becomes one hexahedron;
neighbouring hexahedra share nodes.  Node coordinates are world (RAS, mm) voxel corners, so
the mesh overlays the image in any viewer.  Arrays are built on rank 0 and distributed by
:func:`distribute_mesh` (``dolfinx.mesh.create_mesh``); cell data follow through
``topology.original_cell_index``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from femur.core.mpi import MPI  # noqa: F401  (MPI before dolfinx)
import dolfinx  # noqa: E402
import dolfinx.graph  # noqa: E402

from femur.core.errors import InputError, MeshError  # noqa: E402

#: dolfinx hexahedron vertex order: lexicographic (x fastest) over the unit cube
HEX_CORNERS = np.array(
    [[0, 0, 0], [1, 0, 0], [0, 1, 0], [1, 1, 0], [0, 0, 1], [1, 0, 1], [0, 1, 1], [1, 1, 1]]
)
#: the same hexahedron mirrored along local x (restores a positive Jacobian when the
#: image affine has a negative determinant)
_HEX_MIRROR = np.array([1, 0, 3, 2, 5, 4, 7, 6])


@dataclass
class BlockGrid:
    """A (possibly coarsened) label grid with per-block bone density.

    labels          int array (ni, nj, nk) of block labels (0 = not meshed)
    affine          4x4, block index -> world (mm) block centre
    density_mg_cm3  float array, mean calibrated density over the bone voxels of each block
                    (0 where the block has no bone voxel)
    bone_fraction   fraction of the block's voxels carrying a bone (non-layer) label
    k               coarsening factor
    """

    labels: np.ndarray
    affine: np.ndarray
    density_mg_cm3: np.ndarray
    bone_fraction: np.ndarray
    k: int


def coarsen_grid(labels: np.ndarray, density_mg_cm3: np.ndarray, affine: np.ndarray,
                 k: int = 1, layer_labels=(), path: str = "<labels>") -> BlockGrid:
    """Group voxels into k^3 blocks.

    Block label: the block is meshed when at least half of its voxels are labelled; it takes
    the most frequent non-zero label (ties -> the smaller label).  Block density: the mean of
    the calibrated density over the block's *bone* voxels only (labels > 0 and not a loading
    layer) -- background and layer voxels never dilute bone density (partial-volume rule).
    """
    k = int(k)
    if k < 1:
        raise InputError(f"voxel_coarsen must be a positive integer, got {k}")
    labels = np.asarray(labels)
    bone = (labels > 0) & ~np.isin(labels, list(layer_labels))
    if k == 1:
        dens = np.where(bone, density_mg_cm3, 0.0)
        return BlockGrid(labels.astype(np.int32), np.asarray(affine, float), dens,
                         bone.astype(float), 1)
    pad = [(0, (-n) % k) for n in labels.shape]
    lab = np.pad(labels, pad)
    rho = np.pad(np.asarray(density_mg_cm3, dtype=float), pad)
    bon = np.pad(bone, pad)
    nb = tuple(n // k for n in lab.shape)

    def blocksum(a):
        return a.reshape(nb[0], k, nb[1], k, nb[2], k).sum(axis=(1, 3, 5))

    present = [int(v) for v in np.unique(lab) if v > 0]
    counts = np.stack([blocksum(lab == v) for v in present], axis=0)
    labelled = counts.sum(axis=0)
    block_label = np.asarray(present, dtype=np.int32)[np.argmax(counts, axis=0)]
    block_label[2 * labelled < k**3] = 0
    nbone = blocksum(bon)
    dens = np.where(nbone > 0, blocksum(np.where(bon, rho, 0.0)) / np.maximum(nbone, 1), 0.0)
    scale = np.eye(4)
    scale[:3, :3] *= k
    scale[:3, 3] = (k - 1) / 2.0
    return BlockGrid(block_label, np.asarray(affine, float) @ scale, dens,
                     nbone / float(k**3), k)


def hex_mesh_arrays(labels: np.ndarray, affine: np.ndarray):
    """Nodes and hexahedra of all voxels with label > 0.

    Returns (nodes (N, 3) world mm, cells (M, 8) int64 in dolfinx order, ijk (M, 3) voxel
    index of each cell).
    """
    ijk = np.argwhere(np.asarray(labels) > 0)
    if ijk.size == 0:
        raise InputError("the label mask is empty: no voxel with a label > 0 to mesh")
    n = np.array(labels.shape) + 1  # node lattice
    corners = ijk[:, None, :] + HEX_CORNERS[None, :, :]  # (M, 8, 3)
    flat = np.ravel_multi_index((corners[..., 0], corners[..., 1], corners[..., 2]), n)
    uniq, inv = np.unique(flat, return_inverse=True)
    cells = inv.reshape(-1, 8).astype(np.int64)
    node_ijk = np.column_stack(np.unravel_index(uniq, n)).astype(float) - 0.5
    nodes = node_ijk @ affine[:3, :3].T + affine[:3, 3]
    if np.linalg.det(affine[:3, :3]) < 0:
        cells = cells[:, _HEX_MIRROR]
    return nodes, cells, ijk


def distribute_mesh(comm, cell_type: str, nodes, cells, cell_data: dict):
    """Create a distributed dolfinx mesh from rank-0 arrays and send cell data along.

    ``cell_data`` maps names to rank-0 arrays indexed by input cell; each rank gets the
    values of its local cells (owned + ghosts) in local order.
    """
    nv = 8 if cell_type == "hexahedron" else 4
    import basix.ufl

    element = basix.ufl.element("Lagrange", cell_type, 1, shape=(3,))
    if comm.rank == 0:
        x = np.ascontiguousarray(nodes, dtype=np.float64)
        c = np.ascontiguousarray(cells, dtype=np.int64)
    else:
        x = np.zeros((0, 3), dtype=np.float64)
        c = np.zeros((0, nv), dtype=np.int64)
    # shared_facet ghosting: both cells of every facet are local, so layer/bone interface
    # facets (endplates) are found, and dS integrals over them are right, on any partition
    partitioner = dolfinx.mesh.create_cell_partitioner(
        dolfinx.graph.partitioner(), dolfinx.mesh.GhostMode.shared_facet, 2)
    try:
        mesh = dolfinx.mesh.create_mesh(comm, c, element, x, partitioner=partitioner)
    except RuntimeError as exc:
        raise MeshError(f"could not build the {cell_type} mesh from the image ({exc})") from None
    tdim = mesh.topology.dim
    nloc = mesh.topology.index_map(tdim).size_local + mesh.topology.index_map(tdim).num_ghosts
    orig = np.asarray(mesh.topology.original_cell_index, dtype=np.int64)[:nloc]
    out = {}
    for name, arr in cell_data.items():
        full = comm.bcast(np.asarray(arr) if comm.rank == 0 else None, root=0)
        out[name] = full[orig]
    return mesh, out
