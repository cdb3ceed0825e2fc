"""Meshes and bones with known analytic answers (verification, benchmarks, tests).

biomechanics.md section 4: patch test (MacNeal & Harder, Finite Elem Anal Des 1985),
prism, graded bar, hollow cylinder, Lame tube, MMS.  Units: mm.
"""

from __future__ import annotations

import itertools

import numpy as np

from femur.core.mpi import MPI
import dolfinx  # noqa: E402

from femur.geometry.bone import Bone  # noqa: E402

#: MacNeal & Harder 1985 patch-test interior nodes (unit cube), listed with the cube
#: corner (x, y, z bits) each one is nearest to.
MACNEAL_HARDER_NODES = {
    (0, 0, 0): (0.249, 0.342, 0.192),
    (1, 0, 0): (0.826, 0.288, 0.288),
    (1, 1, 0): (0.850, 0.649, 0.263),
    (0, 1, 0): (0.273, 0.750, 0.230),
    (0, 0, 1): (0.320, 0.186, 0.643),
    (1, 0, 1): (0.677, 0.305, 0.683),
    (1, 1, 1): (0.788, 0.693, 0.644),
    (0, 1, 1): (0.165, 0.745, 0.702),
}


def _cell_type(cell):
    if isinstance(cell, dolfinx.mesh.CellType):
        return cell
    return getattr(dolfinx.mesh.CellType, str(cell))


def mesh_from_arrays(comm, cells, x, cell="tetrahedron"):
    """Distribute a mesh given on rank 0 (other ranks' arrays are ignored)."""
    ct = _cell_type(cell)
    import basix.ufl
    import ufl

    element = ufl.Mesh(basix.ufl.element("Lagrange", ct.name, 1, shape=(3,)))
    if comm.rank == 0:
        cells = np.asarray(cells, dtype=np.int64)
        x = np.asarray(x, dtype=np.float64)
    else:
        nv = 4 if ct == dolfinx.mesh.CellType.tetrahedron else 8
        cells = np.zeros((0, nv), dtype=np.int64)
        x = np.zeros((0, 3), dtype=np.float64)
    return dolfinx.mesh.create_mesh(comm, cells, element, x)


def macneal_harder_mesh(comm=MPI.COMM_WORLD, cell="hexahedron"):
    """Unit cube split into 7 distorted hexahedra by the 8 MacNeal-Harder interior nodes;
    ``cell="tetrahedron"``: Delaunay tetrahedra of the same 16 nodes."""
    corners = {b: np.array(b, dtype=float) for b in itertools.product((0, 1), repeat=3)}
    keys = list(corners) + [("i",) + k for k in MACNEAL_HARDER_NODES]
    x = np.array([corners[k] for k in corners] + [MACNEAL_HARDER_NODES[k] for k in MACNEAL_HARDER_NODES])
    idx = {k: i for i, k in enumerate(keys)}

    def C(b):
        return idx[tuple(int(v) for v in b)]

    def Ii(b):
        return idx[("i",) + tuple(int(v) for v in b)]

    if _cell_type(cell) == dolfinx.mesh.CellType.hexahedron:
        hexes = [[Ii((b & 1, (b >> 1) & 1, (b >> 2) & 1)) for b in range(8)]]
        for axis in range(3):
            for side in (0, 1):
                h = []
                for b in range(8):
                    loc = [b & 1, (b >> 1) & 1, (b >> 2) & 1]
                    outer = (loc[axis] == 0) if side == 0 else (loc[axis] == 1)
                    g = list(loc)
                    g[axis] = side
                    h.append(C(g) if outer else Ii(g))
                hexes.append(h)
        return mesh_from_arrays(comm, hexes, x, "hexahedron")
    from scipy.spatial import Delaunay

    tets = Delaunay(x).simplices
    v = np.einsum("ij,ij->i", np.cross(x[tets[:, 1]] - x[tets[:, 0]], x[tets[:, 2]] - x[tets[:, 0]]),
                  x[tets[:, 3]] - x[tets[:, 0]]) / 6.0
    tets = tets[np.abs(v) > 1e-12]
    return mesh_from_arrays(comm, tets, x, "tetrahedron")


def tube_mesh(comm, r_in, r_out, length, n_r, n_theta, n_z, theta_max=2 * np.pi,
              cell="tetrahedron", grading=1.0):
    """Structured (r, theta, z) tube or tube sector, nodes exactly on the circles.
    ``grading`` > 1 clusters radial layers toward r_in (geometric ratio per layer)."""
    ct = _cell_type(cell)
    periodic = np.isclose(theta_max, 2 * np.pi)
    nt_nodes = n_theta if periodic else n_theta + 1
    if grading == 1.0:
        r = np.linspace(r_in, r_out, n_r + 1)
    else:
        w = grading ** np.arange(n_r)
        r = r_in + (r_out - r_in) * np.concatenate([[0], np.cumsum(w)]) / w.sum()
    th = np.linspace(0, theta_max, n_theta + 1)[:nt_nodes]
    z = np.linspace(0, length, n_z + 1)
    K, J, I = np.meshgrid(np.arange(n_z + 1), np.arange(nt_nodes), np.arange(n_r + 1), indexing="ij")
    x = np.column_stack([(r[I] * np.cos(th[J])).ravel(), (r[I] * np.sin(th[J])).ravel(), z[K].ravel()])

    def nid(i, j, k):
        return (k * nt_nodes + (j % nt_nodes)) * (n_r + 1) + i

    hexes = []
    for k in range(n_z):
        for j in range(n_theta):
            for i in range(n_r):
                hexes.append([nid(i + (b & 1), j + ((b >> 1) & 1), k + ((b >> 2) & 1)) for b in range(8)])
    hexes = np.array(hexes, dtype=np.int64)
    if ct == dolfinx.mesh.CellType.hexahedron:
        return mesh_from_arrays(comm, hexes, x, "hexahedron")
    tets = []
    for p in itertools.permutations(range(3)):  # Kuhn split: conforming on structured grids
        a, b = 1 << p[0], (1 << p[0]) | (1 << p[1])
        tets.append(hexes[:, [0, a, b, 7]])
    return mesh_from_arrays(comm, np.concatenate(tets), x, "tetrahedron")


def _tags(mesh, dim, groups):
    idx, val = [], []
    for tag, ents in groups.items():
        idx.append(np.asarray(ents, dtype=np.int32))
        val.append(np.full(len(ents), tag, dtype=np.int32))
    idx = np.concatenate(idx)
    val = np.concatenate(val)
    o = np.argsort(idx)
    return dolfinx.mesh.meshtags(mesh, dim, idx[o], val[o])


def prism_bone(comm=MPI.COMM_WORLD, size=(10.0, 10.0, 20.0), n=(4, 4, 8), cell="tetrahedron",
               name="prism") -> Bone:
    """Box [0,a]x[0,b]x[0,h] (mm) as a vertebra-like Bone: facets "superior" (z=h) and
    "inferior" (z=0), one compartment "trabecular", landmarks axis (+z) and height."""
    a, b, h = size
    mesh = dolfinx.mesh.create_box(comm, [[0, 0, 0], [a, b, h]], list(n), cell_type=_cell_type(cell))
    return _box_tags(mesh, h, name)


def _box_tags(mesh, h, name, kind="vertebra"):
    mesh.topology.create_connectivity(2, 3)
    top = dolfinx.mesh.locate_entities_boundary(mesh, 2, lambda x: np.isclose(x[2], h))
    bot = dolfinx.mesh.locate_entities_boundary(mesh, 2, lambda x: np.isclose(x[2], 0.0))
    ft = _tags(mesh, 2, {21: top, 22: bot})
    im = mesh.topology.index_map(3)
    ncell = im.size_local + im.num_ghosts
    ct = _tags(mesh, 3, {2: np.arange(ncell)})
    return Bone(name=name, kind=kind, mesh=mesh, cell_tags=ct, facet_tags=ft,
                cell_ids={"trabecular": 2}, facet_ids={"superior": 21, "inferior": 22},
                landmarks={"axis": np.array([0.0, 0.0, 1.0]), "height": np.array([h])},
                source="verification")


def rod_femur_bone(comm=MPI.COMM_WORLD, n=(3, 3, 12), cell="tetrahedron", length=60.0,
                   width=12.0) -> Bone:
    """A square rod standing on z=0 with femur-style tags, for load-case tests:
    "distal" (z=0), "head_load" (top face), "head_surface" (the upper 10 mm of the four
    sides), two compartments split at mid-height (cortical below, trabecular
    above) and a "neck" ROI (upper third)."""
    w = width
    mesh = dolfinx.mesh.create_box(comm, [[-w / 2, -w / 2, 0], [w / 2, w / 2, length]], list(n),
                                   cell_type=_cell_type(cell))
    mesh.topology.create_connectivity(2, 3)
    loc = dolfinx.mesh.locate_entities_boundary
    distal = loc(mesh, 2, lambda x: np.isclose(x[2], 0.0))
    top = loc(mesh, 2, lambda x: np.isclose(x[2], length))
    side = loc(mesh, 2, lambda x: (np.isclose(np.abs(x[0]), w / 2) | np.isclose(np.abs(x[1]), w / 2))
               & (x[2] >= length - 10 - 1e-9))
    ft = _tags(mesh, 2, {12: distal, 11: top, 14: np.setdiff1d(side, top)})
    im = mesh.topology.index_map(3)
    ncell = im.size_local + im.num_ghosts
    mid = dolfinx.mesh.compute_midpoints(mesh, 3, np.arange(ncell, dtype=np.int32))
    lower = np.flatnonzero(mid[:, 2] < length / 2)
    upper = np.flatnonzero(mid[:, 2] >= length / 2)
    ct = _tags(mesh, 3, {1: lower, 2: upper})
    return Bone(
        name="rod", kind="femur", mesh=mesh, cell_tags=ct, facet_tags=ft,
        cell_ids={"cortical": 1, "trabecular": 2},
        facet_ids={"head_load": 11, "distal": 12, "head_surface": 14},
        rois={"neck": lambda x: x[2] >= 2 * length / 3},
        landmarks={"shaft_axis": np.array([0.0, 0.0, 1.0]), "lateral": np.array([-1.0, 0.0, 0.0]),
                   "anterior": np.array([0.0, 1.0, 0.0])},
        source="verification",
    )
