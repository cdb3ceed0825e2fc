"""Fast reassembly of the P1 elasticity matrix on tetrahedra, for a modulus that changes.

A remodeling run reassembles the same stiffness form many times with new element moduli
(every habitual solve, every strength case at a visit). With a piecewise-constant (DG0)
Young's modulus E, linear tetrahedra and a fixed Poisson ratio, the element matrix is
linear in its cell's modulus: K = sum_e E_e K_e, with K_e the element matrix at E = 1.
:class:`P1Stiffness` stores the map E -> values of K (a sparse matrix with the 144 entries
of each K_e at their places in the CSR pattern of K) once per mesh and Poisson ratio, and
gives the matrix values of a new modulus as one sparse product; a solve frame ``Q`` (the
falls' rotated axes, ``femur.mechanics.elasticity``) is the node-block rotation
Q K_ab Q^T of the bone-frame values, and Dirichlet rows and columns are zeroed with a one
on the diagonal, as ``dolfinx.fem.petsc.assemble_matrix`` does.

The element matrix (isotropic, unit modulus, Lame lambda' = nu / ((1 + nu)(1 - 2 nu)),
mu' = 1 / (2 (1 + nu))) of basis gradients g_i (constant on a P1 tetrahedron, volume V):

    K_e[(i, a), (j, b)] = V (lambda' g_ia g_jb + mu' (g_ib g_ja + delta_ab g_i . g_j))

which is the form sigma(u) : eps(v) of ``femur.mechanics.elasticity`` integrated exactly
(the integrand is constant per cell). The values agree with DOLFINx's assembly of that
form to round-off (1e-13 relative, ``tests/test_p1_stiffness.py``) in about an eighth of
its time on the trial femur (32,748 tetrahedra, BLAS on one thread: 0.056 s -> 0.0075 s
with the rotation, the boundary conditions and the copy into PETSc). The operator costs
about 0.1 s to build (in chunks of cells) and 12 bytes per stored entry, about 57 MB for
that femur; it is kept per mesh (weakly, with a fingerprint of the coordinates), so a
patient's arms and all the load cases of a bone share it.

Serial only (one-rank communicators, as a study's cases run by default): the map uses
the local CSR pattern of a SeqAIJ matrix. Other cases (MPI, P2, hexahedra, a modulus that
is not a DG0 field, a map over :data:`MAX_MAP_MB`) keep DOLFINx's assembly; the solver
checks once per operator that a matrix DOLFINx assembled from the form has exactly this
pattern before it uses the operator.
"""

from __future__ import annotations

import weakref

import numpy as np
import scipy.sparse as sp

from femur.core.mpi import MPI  # noqa: F401  (mpi4py before DOLFINx)
import dolfinx  # noqa: E402

#: switch for the whole process (False: every solver keeps DOLFINx's assembly; the
#: throughput benchmark's earlier steps)
enabled = True

#: the largest map kept (MB; 12 bytes per entry, 144 entries per cell: about 58,000
#: tetrahedra). A finer mesh (the 1.25 mm default femur has ~10x the trial mesh's cells)
#: keeps DOLFINx's assembly: its map would cost more memory than the matrix is worth.
MAX_MAP_MB = 100.0

#: reference gradients of the four P1 basis functions on the unit tetrahedron
_REF_GRADS = np.array([[-1.0, -1.0, -1.0], [1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]])


def applies(V, modulus_is_dg0_field: bool) -> bool:
    """Whether :class:`P1Stiffness` can assemble the elasticity matrix of space ``V``: one
    rank, linear tetrahedra (P1 geometry and P1 vector space), a DG0 modulus field and at
    most :data:`MAX_MAP_MB` for the map (and the module switch :data:`enabled` on)."""
    mesh = V.mesh
    cells = mesh.topology.index_map(mesh.topology.dim).size_local
    return (enabled and modulus_is_dg0_field and mesh.comm.size == 1
            and 144 * 12 * cells <= MAX_MAP_MB * 1e6
            and mesh.topology.cell_type == dolfinx.mesh.CellType.tetrahedron
            and mesh.geometry.cmaps[0].degree == 1
            and V.element.basix_element.degree == 1 and V.dofmap.index_map_bs == 3)


#: operators by mesh (weakly: they go with the mesh) and Poisson ratio
_OPERATORS: "weakref.WeakKeyDictionary" = weakref.WeakKeyDictionary()


def _fingerprint(mesh) -> tuple:
    x = mesh.geometry.x
    return x.shape, float(x.sum()), float(np.einsum("ij,ij->", x, x))


def operator_for(V, modulus, nu: float, build: bool = True) -> "P1Stiffness | None":
    """The :class:`P1Stiffness` of ``V``'s mesh for the DG0 Function ``modulus`` and
    Poisson ratio ``nu``: built once per mesh (kept while the mesh lives and its
    coordinates are unchanged; a bone's copies share their mesh, so a patient's arms and
    all the load cases of one bone share the operator). ``build=False``: the stored
    operator or None."""
    mesh = V.mesh
    per_mesh = _OPERATORS.setdefault(mesh, {})
    key = (float(nu), _fingerprint(mesh))
    op = per_mesh.get(key)
    mdofs = np.asarray(modulus.function_space.dofmap.list)[:, 0]
    if op is None or not op.same_space(V) or not np.array_equal(op.modulus_dofs, mdofs):
        if not build:
            return None
        per_mesh.clear()  # one operator per mesh: a changed geometry drops the old one
        op = per_mesh[key] = P1Stiffness(V, mdofs, nu)
    return op


#: cells per chunk of the element-matrix computation
_CHUNK = 4096


def _element_matrices(X: np.ndarray, nu: float) -> np.ndarray:
    """Unit-modulus element matrices (c, i, a, j, b) of tetrahedra with vertex coordinates
    X (c, 4, 3) (module docstring)."""
    J = np.stack([X[:, 1] - X[:, 0], X[:, 2] - X[:, 0], X[:, 3] - X[:, 0]], axis=2)
    g = np.einsum("kd,cde->cke", _REF_GRADS, np.linalg.inv(J))  # basis gradients (c, 4, 3)
    vol = np.abs(np.linalg.det(J)) / 6.0
    lam = nu / ((1.0 + nu) * (1.0 - 2.0 * nu))
    mu = 1.0 / (2.0 * (1.0 + nu))
    G = np.einsum("cia,cjb->ciajb", g, g)
    Ke = lam * G + mu * G.transpose(0, 1, 4, 3, 2)
    Ke += mu * np.einsum("cij,ab->ciajb", np.einsum("cia,cja->cij", g, g), np.eye(3))
    Ke *= vol[:, None, None, None, None]
    return Ke


class P1Stiffness:
    """The E -> matrix-values map of the P1 elasticity form on one tetrahedral mesh
    (module docstring). ``V``: the P1 vector space; ``modulus_dofs``: the DG0 dof of each
    cell (the modulus Function's dofmap); ``nu``: Poisson ratio."""

    def __init__(self, V, modulus_dofs: np.ndarray, nu: float):
        mesh = V.mesh
        self.nu = float(nu)
        self.modulus_dofs = np.array(modulus_dofs, dtype=np.int64)
        self.cells = np.array(V.dofmap.list, dtype=np.int64)  # (nc, 4) node (block) dofs
        nc = self.cells.shape[0]
        im = V.dofmap.index_map
        nn = im.size_local + im.num_ghosts
        self.size = 3 * nn
        # block (node-pair) pattern, sorted by row then column: the CSR of DOLFINx's matrix
        r = np.repeat(self.cells, 4, axis=1).ravel()
        c = np.tile(self.cells, (1, 4)).ravel()
        ukey, inv = np.unique(r * nn + c, return_inverse=True)
        br, bc = ukey // nn, ukey % nn
        bptr = np.zeros(nn + 1, np.int64)
        np.add.at(bptr, br + 1, 1)
        bptr = np.cumsum(bptr)
        nb = np.diff(bptr)
        k = np.arange(ukey.size) - bptr[br]
        self.rowptr = np.zeros(self.size + 1, np.int64)
        self.rowptr[1:] = np.cumsum(np.repeat(3 * nb, 3))
        # CSR position of entry (a, b) of every block: row 3 br + a, column 3 bc + b
        ab = np.arange(3)
        block_pos = (9 * bptr[br] + 3 * k)[:, None, None] + (3 * nb[br])[:, None, None] * ab[:, None] \
            + ab[None, None, :]  # (nblocks, 3, 3)
        self.colind = np.empty(self.rowptr[-1], np.int64)
        self.colind[block_pos] = (3 * bc)[:, None, None] + ab[None, None, :]
        # the map's rows are block-major (block, a, b): a solve frame rotates contiguous
        # 3x3 blocks; ``csr_order`` takes them to the CSR order
        data = np.empty(144 * nc)
        rows = np.empty(144 * nc, np.int32)
        inv = inv.reshape(nc, 4, 4)
        X = mesh.geometry.x[np.asarray(mesh.geometry.dofmaps[0])]
        for lo in range(0, nc, _CHUNK):  # in chunks: a few MB of temporaries, not ~200
            hi = min(lo + _CHUNK, nc)
            data[144 * lo:144 * hi] = _element_matrices(X[lo:hi], self.nu).reshape(-1)
            pos = (9 * inv[lo:hi])[..., None, None] + (3 * ab[:, None] + ab[None, :])  # (c, i, j, a, b)
            rows[144 * lo:144 * hi] = pos.transpose(0, 1, 3, 2, 4).reshape(-1)  # order (i, a, j, b)
        # one column per cell with its 144 entries (distinct rows: no sums, no sorting)
        self.map = sp.csc_matrix((data, rows, np.arange(0, 144 * nc + 1, 144, dtype=np.int32)),
                                 shape=(int(self.rowptr[-1]), nc))
        self.csr_order = np.empty(self.rowptr[-1], np.int32)
        self.csr_order[block_pos.reshape(-1)] = np.arange(self.rowptr[-1], dtype=np.int32)
        self.rowptr, self.colind = self.rowptr.astype(np.int32), self.colind.astype(np.int32)
        self._row_of = None
        #: whether a matrix DOLFINx assembled had this CSR pattern (None: not checked yet;
        #: ``femur.mechanics.elasticity.ElasticitySolver`` checks it before the first use)
        self.verified: bool | None = None
        self._last = None  # (modulus copy, bone-frame values) of the last call

    @property
    def nbytes(self) -> int:
        m = self.map
        return m.data.nbytes + m.indices.nbytes + m.indptr.nbytes + self.csr_order.nbytes + self.colind.nbytes

    def same_space(self, V) -> bool:
        """Whether ``V`` has this operator's cell-to-node numbering."""
        return np.array_equal(np.asarray(V.dofmap.list), self.cells)

    def matches(self, rowptr, colind) -> bool:
        """Whether a CSR pattern (e.g. ``Mat.getValuesCSR()``) is this operator's."""
        return np.array_equal(np.asarray(rowptr), self.rowptr) and np.array_equal(np.asarray(colind), self.colind)

    def values(self, modulus: np.ndarray, frame=None) -> np.ndarray:
        """CSR values of the matrix for the DG0 ``modulus`` (MPa) in the solve frame
        ``frame`` (rows: solve axes in bone coordinates; None: the bone frame), without
        boundary conditions. A new array each call."""
        modulus = np.asarray(modulus, dtype=float)
        last = self._last
        if last is not None and last[0].shape == modulus.shape and np.array_equal(last[0], modulus):
            vals = last[1]  # the same modulus as the last call (another load case of the bone)
        else:
            vals = self.map @ modulus[self.modulus_dofs]
            self._last = (modulus.copy(), vals)
        if frame is not None:
            # Q K_ab Q^T of every block: kron(Q, Q) on the row-major flattened blocks
            Q = np.asarray(frame, dtype=float)
            vals = (vals.reshape(-1, 9) @ np.kron(Q, Q).T).reshape(-1)
        return vals[self.csr_order]

    def dirichlet_positions(self, dofs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(positions to zero, diagonal positions to set to one) of the CSR values for
        Dirichlet ``dofs`` (unrolled indices): their rows and columns."""
        dofs = np.unique(np.asarray(dofs, np.int64))
        if self._row_of is None:
            self._row_of = np.repeat(np.arange(self.size, dtype=np.int32), np.diff(self.rowptr))
        bc = np.zeros(self.size, dtype=bool)
        bc[dofs] = True
        zero = np.flatnonzero(bc[self._row_of] | bc[self.colind])
        diag = zero[self._row_of[zero] == self.colind[zero]]
        return zero, diag


__all__ = ["P1Stiffness", "applies", "operator_for"]
