"""Export the complete FE model (mesh, per-element material, BCs, loads) as Abaqus .inp.

The file runs unchanged in CalculiX (``ccx -i <job>``) and Abaqus/Standard:

* ``*NODE`` / ``*ELEMENT`` -- C3D4 (P1 tets), C3D10 (P2 tets, Abaqus node order, edge
  nodes matched geometrically), C3D8 (Q1 hexahedra); elements are re-oriented to a
  positive Jacobian where dolfinx's ordering is negative.
* one ``*MATERIAL`` + ``*SOLID SECTION`` per modulus bin (default at most 256 bins,
  log-spaced; every distinct value gets its own material when there are fewer), with
  the binning error (max |E_bin / E - 1|) reported in the header and the return value;
  ``bins=None`` writes one material per distinct modulus (exact).
* ``*BOUNDARY`` -- the same Dirichlet constraints as the dolfinx solve; ``*CLOAD`` -- the
  assembled consistent nodal load vector (equivalent to the traction).
* when the load case solves in a rotated frame (sideways fall, axial compression along
  an oblique axis) the mesh is written in that frame (stated in the header), so the
  direction constraints are plain DOF constraints.
* ``*STATIC`` step with ``*NODE PRINT, NSET=NALL`` of U and RF (the .dat file).

Units: mm, N, MPa.  MPI: everything is gathered to rank 0, which writes the file.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from femur.core.mpi import MPI
import dolfinx  # noqa: E402

from femur.core.errors import InputError  # noqa: E402
from femur.mechanics.problem import make_solver  # noqa: E402


@dataclass
class InpExport:
    path: str
    element_type: str
    num_nodes: int
    num_elements: int
    num_materials: int
    max_binning_error: float
    total_load_n: np.ndarray = field(default_factory=lambda: np.zeros(3))
    num_bc_nodes: int = 0
    frame: np.ndarray | None = None


# Abaqus C3D10 edge nodes (0-based corner pairs) in Abaqus order
_C3D10_EDGES = [(0, 1), (1, 2), (2, 0), (0, 3), (1, 3), (2, 3)]
# dolfinx (tensor-product) hexahedron vertices -> Abaqus C3D8 order
_HEX_TO_ABQ = [0, 1, 3, 2, 4, 5, 7, 6]


def _element_connectivity(V, coords_local, n_owned_cells):
    """(element type, (n_owned_cells, k) local node indices in Abaqus order)."""
    mesh = V.mesh
    ct = mesh.topology.cell_type
    dm = V.dofmap.list[:n_owned_cells]
    order = V.element.basix_element.degree
    if ct == dolfinx.mesh.CellType.tetrahedron:
        conn = dm[:, :4].copy()
        x = coords_local[conn]
        det = np.einsum("ij,ij->i", np.cross(x[:, 1] - x[:, 0], x[:, 2] - x[:, 0]), x[:, 3] - x[:, 0])
        if order == 1:
            etype = "C3D4"
        else:
            etype = "C3D10"
            edge_dofs = dm[:, 4:10]
            xe = coords_local[edge_dofs]  # (n, 6, 3)
            mids = np.stack([(x[:, a] + x[:, b]) / 2 for a, b in _C3D10_EDGES], axis=1)
            dist = np.linalg.norm(mids[:, :, None, :] - xe[:, None, :, :], axis=3)
            pick = np.argmin(dist, axis=2)  # (n, 6)
            if np.any(np.min(dist, axis=2) > 1e-8 * (1 + np.abs(x).max())):
                raise InputError("C3D10 export needs straight-sided (affine) tetrahedra")
            conn = np.concatenate([conn, np.take_along_axis(edge_dofs, pick, axis=1)], axis=1)
        neg = det < 0
        if etype == "C3D4":
            conn[neg] = conn[neg][:, [0, 2, 1, 3]]
        else:
            conn[neg] = conn[neg][:, [0, 2, 1, 3, 6, 5, 4, 7, 9, 8]]
        return etype, conn
    if ct == dolfinx.mesh.CellType.hexahedron:
        if order != 1:
            raise InputError("Abaqus export of hexahedra supports order 1 (C3D8) only")
        conn = dm[:, _HEX_TO_ABQ].copy()
        x = coords_local[conn]
        det = np.einsum("ij,ij->i", np.cross(x[:, 1] - x[:, 0], x[:, 3] - x[:, 0]), x[:, 4] - x[:, 0])
        neg = det < 0
        conn[neg] = conn[neg][:, [4, 5, 6, 7, 0, 1, 2, 3]]
        return "C3D8", conn
    raise InputError(f"Abaqus export: unsupported cell type {ct}")


def bin_moduli(E: np.ndarray, bins: int | None = 256):
    """(material index per element, material moduli, max relative binning error)."""
    E = np.asarray(E, dtype=float)
    uniq, inv = np.unique(E, return_inverse=True)
    if bins is None or len(uniq) <= bins:
        return inv, uniq, 0.0
    edges = np.geomspace(E.min(), E.max(), int(bins) + 1)
    idx = np.clip(np.searchsorted(edges, E, side="right") - 1, 0, bins - 1)
    used = np.unique(idx)
    vals = np.empty(len(used))
    remap = np.full(bins, -1)
    for k, b in enumerate(used):
        m = E[idx == b]
        vals[k] = np.sqrt(m.min() * m.max())  # minimises the max relative error in the bin
        remap[b] = k
    mat = remap[idx]
    err = float(np.max(np.abs(vals[mat] / E - 1.0)))
    return mat, vals, err


def _lines(ids, per=16):
    ids = list(ids)
    return [", ".join(str(i) for i in ids[k:k + per]) for k in range(0, len(ids), per)]


def export_inp(bone, load_case, path, material=None, order: int = 1, bins: int | None = 256,
               nu: float | None = None) -> InpExport:
    """Write ``bone`` under ``load_case`` to the Abaqus/CalculiX input file ``path``.
    Collective; rank 0 writes.  Returns an InpExport summary (on every rank)."""
    es, load, E, nu = make_solver(bone, load_case, material, order, "gamg", None, nu)
    try:
        es.setup()
        if not es._E_is_field:
            raise InputError("Abaqus export needs a piecewise-constant (DG0) modulus")
        return _write(bone, es, load, path, bins)
    finally:
        es.close()


def _write(bone, es, load, path, bins):
    comm = bone.comm
    V = es.V
    imap = V.dofmap.index_map
    n_own = imap.size_local
    n_all = n_own + imap.num_ghosts
    gnum = imap.local_to_global(np.arange(n_all, dtype=np.int32)) + 1  # Abaqus ids 1-based
    x = V.tabulate_dof_coordinates()[:n_all].copy()
    Q = es.frame
    if Q is not None:
        x = x @ Q.T
    n_cells = bone.num_owned_cells
    etype, conn = _element_connectivity(V, x, n_cells)
    cim = bone.mesh.topology.index_map(3)
    cell_g = cim.local_to_global(np.arange(n_cells, dtype=np.int32)) + 1
    Ecell = es.E.x.array[:n_cells]
    f = es.load_array().reshape(-1, 3)[:n_own]

    bc_node, bc_comp, bc_val = [], [], []
    for nodes, comp, vals in es.bc_records:
        nodes = np.asarray(nodes)
        own = nodes < n_own
        if comp is None:
            v = np.asarray(vals)[own]
            for c in range(3):
                bc_node.append(gnum[nodes[own]])
                bc_comp.append(np.full(own.sum(), c + 1))
                bc_val.append(v[:, c])
        else:
            bc_node.append(gnum[nodes[own]])
            bc_comp.append(np.full(own.sum(), comp + 1))
            bc_val.append(np.full(own.sum(), float(vals)))
    cat = (lambda a: np.concatenate(a) if a else np.zeros(0))
    bc = (cat(bc_node).astype(np.int64), cat(bc_comp).astype(np.int64), cat(bc_val))

    fmask = np.any(f != 0.0, axis=1)
    data = dict(
        nodes=(gnum[:n_own], x[:n_own]),
        elems=(cell_g, gnum[conn]),
        E=Ecell,
        loads=(gnum[:n_own][fmask], f[fmask]),
        bc=bc,
    )
    gathered = comm.gather(data, root=0)
    result = None
    if comm.rank == 0:
        result = _write_rank0(gathered, etype, bone, load, path, bins, es.nu, Q)
    return comm.bcast(result, root=0)


def _merged(parts, key, extra=None):
    """The gathered arrays ``parts[r][key]`` (a tuple) concatenated over ranks and sorted by
    their first array (then by the second one for the boundary conditions)."""
    cols = [np.concatenate([p[key][i] for p in parts]) for i in range(len(parts[0][key]))]
    if extra is not None:
        cols.append(np.concatenate([p[extra] for p in parts]))
    o = np.lexsort((cols[1], cols[0])) if key == "bc" else np.argsort(cols[0])
    return [c[o] for c in cols]


def _write_rank0(parts, etype, bone, load, path, bins, nu, Q):
    nid, nx = _merged(parts, "nodes")
    eid, econ, E = _merged(parts, "elems", extra="E")
    lid, lf = _merged(parts, "loads")
    bn, bcomp, bv = _merged(parts, "bc")

    mat, vals, err = bin_moduli(E, bins)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    out = []
    w = out.append
    w("** femur FE model export (Abaqus/CalculiX input). Units: mm, N, MPa.")
    w(f"** bone: {bone.name} ({bone.kind}); load case: {load.name}; element: {etype}")
    w(f"** materials: {len(vals)} (modulus bins: {bins}); max binning error |E_bin/E - 1| = {err:.3e}")
    if Q is not None:
        w("** coordinates are in the solve frame x' = Q x (bone frame x); rows of Q:")
        for r in Q:
            w(f"**   {r[0]:.14g} {r[1]:.14g} {r[2]:.14g}")
    w("*HEADING")
    w(f"femur {bone.name} {load.name}")
    w("*NODE, NSET=NALL")
    for i, p in zip(nid, nx):
        w(f"{i}, {p[0]:.14g}, {p[1]:.14g}, {p[2]:.14g}")
    w(f"*ELEMENT, TYPE={etype}, ELSET=EALL")
    for i, c in zip(eid, econ):
        w(f"{i}, " + ", ".join(str(int(k)) for k in c))
    for k, Ek in enumerate(vals):
        w(f"*ELSET, ELSET=EM{k + 1}")
        out.extend(_lines(eid[mat == k]))
    for k, Ek in enumerate(vals):
        w(f"*MATERIAL, NAME=M{k + 1}")
        w("*ELASTIC")
        w(f"{Ek:.10g}, {nu:.10g}")
        w(f"*SOLID SECTION, ELSET=EM{k + 1}, MATERIAL=M{k + 1}")
    w("*STEP")
    w("*STATIC")
    w("*BOUNDARY")
    for n, c, v in zip(bn, bcomp, bv):
        w(f"{n}, {c}, {c}, {v:.14g}")
    w("*CLOAD")
    for n, fv in zip(lid, lf):
        for c in range(3):
            if fv[c] != 0.0:
                w(f"{n}, {c + 1}, {fv[c]:.14g}")
    w("*NODE PRINT, NSET=NALL")
    w("U, RF")
    w("*END STEP")
    path.write_text("\n".join(out) + "\n")
    return InpExport(
        path=str(path), element_type=etype, num_nodes=len(nid), num_elements=len(eid),
        num_materials=len(vals), max_binning_error=err, total_load_n=lf.sum(axis=0),
        num_bc_nodes=len(np.unique(bn)), frame=Q,
    )
