"""Small tagged box bones shared by the materials and density tests."""

import dolfinx
import numpy as np
from mpi4py import MPI

from femur.geometry.bone import Bone


def tagged_box(name="box", kind="generic", thickness_mm=10.0, layers=False, hexes=False, **bone_kw):
    """Box 20 (x) x thickness (y, the AP direction) x 30 (z) mm: x < 10 cortical (1),
    x >= 10 trabecular (2); optional non-bone layers z < 5 (3, "layer_inferior") and
    z > 25 (4, "layer_superior")."""
    ct = dolfinx.mesh.CellType.hexahedron if hexes else dolfinx.mesh.CellType.tetrahedron
    mesh = dolfinx.mesh.create_box(MPI.COMM_WORLD, [[0, 0, 0], [20, thickness_mm, 30]], [4, 2, 6], ct)
    n = mesh.topology.index_map(3).size_local + mesh.topology.index_map(3).num_ghosts
    cells = np.arange(n, dtype=np.int32)
    mid = dolfinx.mesh.compute_midpoints(mesh, 3, cells)
    vals = np.where(mid[:, 0] < 10, 1, 2).astype(np.int32)
    ids = {"cortical": 1, "trabecular": 2}
    if layers:
        vals[mid[:, 2] < 5] = 3
        vals[mid[:, 2] > 25] = 4
        ids.update(layer_inferior=3, layer_superior=4)
    tags = dolfinx.mesh.meshtags(mesh, 3, cells, vals)
    return Bone(name, kind, mesh, cell_tags=tags, cell_ids=ids, **bone_kw)
