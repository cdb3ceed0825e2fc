"""Rigid platens on a bone surface by penalty, free to tilt: the loading cup and the support
pad of a cadaver test as boundary conditions of the nonlinear pushover (mm, N, MPa).

A platen acts on a patch of boundary facets along the solve frame's first axis d (the
load direction).  The patch's displacement along d is made (by a stiff penalty) the
motion of a rigid plane:

    u.d(x) = delta + a1 xi1 + a2 xi2   on the patch,   xi = (x - c) . (e1, e2),

with ``delta`` prescribed (``value`` x the load scale: the loading cup moves, the support
does not) and, for a *rotating* platen, the tilts ``a`` free: the platen turns about the
two axes perpendicular to d through the patch's area centroid ``c`` -- a ball joint at
the patch.  The motion across d is free (frictionless contact).  So the load resultant
passes through the centroid of the patch, as with the uniform pressure of the linear
load cases, while the patch itself stays plane (a rigid cup or pad) instead of being
loaded by a prescribed pressure.  A non-rotating platen (``rotating=False``) is a plane
that only translates (a uniform displacement of the whole patch along d, which also
prevents the bone from turning there).

Penalty form.  With the energy ``k/2 int_patch (u.d - delta - a.xi)^2 ds`` minimised over
the free tilts (``int xi ds = 0`` at the centroid):

    a = S^-1 b,  S = k int xi xi^T ds (2x2),  b = k int xi u.d ds,
    residual   r = k int (u.d - delta) v.d ds - U S^-1 b,   U_j = k int xi_j v.d ds,
    tangent    K = k int u.d v.d ds - U S^-1 U^T,

a sparse boundary mass term (assembled with the stiffness) plus a rank-2 correction per
rotating platen (a PETSc ``LRC`` matrix around the assembled one; the preconditioner is
built from the assembled part).  The force on the platen along d is
``F = k int (delta - u.d) ds`` (the tilt terms integrate to zero).

Penalty stiffness per unit area: ``k = PENALTY x E_max / h`` (E_max the largest
modulus of the cells touching the patch, h the patch's mean facet size): the platen then
yields by about 1/PENALTY of the bone's local compliance, so the reaction force is
within ~1e-3 of a kinematic constraint (measured against the Dirichlet form of a
non-rotating platen in the tests).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from femur.core.mpi import MPI
import dolfinx  # noqa: E402
import dolfinx.fem.petsc  # noqa: E402
import ufl  # noqa: E402
from petsc4py import PETSc  # noqa: E402

from femur.core.errors import InputError  # noqa: E402

#: penalty stiffness per unit area, in units of E_max / h of the patch
PENALTY = 1.0e3


@dataclass
class Platen:
    """A rigid platen on local boundary ``facets``: motion along the solve frame's first
    axis ``value`` mm per unit load scale; ``rotating``: free to tilt (see the module
    docstring)."""

    facets: np.ndarray
    value: float = 1.0
    rotating: bool = True
    name: str = "platen"


class PlatenSet:
    """The penalty forms, vectors and low-rank operator of the platens of one solver.

    Use: ``bilinear(u, v)`` and ``residual(u, v)`` go into the solver's forms (built with
    :meth:`measure`), then :meth:`setup` (inside the solver's solve frame) computes the
    centroids, tilt vectors and the LRC pieces."""

    def __init__(self, platens, mesh, V, modulus_cells):
        self.platens = list(platens)
        if not self.platens:
            raise InputError("PlatenSet needs at least one platen")
        self.mesh, self.V, self.comm = mesh, V, mesh.comm
        fdim = mesh.topology.dim - 1
        mesh.topology.create_connectivity(fdim, mesh.topology.dim)
        all_f = np.concatenate([np.asarray(p.facets, np.int32) for p in self.platens])
        if np.unique(all_f).size != all_f.size:
            raise InputError("platen facet sets overlap: give each facet to one platen")
        ids = np.concatenate([np.full(len(p.facets), i + 1, np.int32) for i, p in enumerate(self.platens)])
        order = np.argsort(all_f)
        self.tags = dolfinx.mesh.meshtags(mesh, fdim, all_f[order], ids[order])
        self.ds = ufl.Measure("ds", domain=mesh, subdomain_data=self.tags)
        self.delta = [dolfinx.fem.Constant(mesh, 0.0) for _ in self.platens]
        self.k = [dolfinx.fem.Constant(mesh, self._stiffness(p, modulus_cells)) for p in self.platens]
        self._ready = False

    # ------------------------------------------------------------------ set-up
    def _stiffness(self, p, E_cells) -> float:
        """PENALTY x E_max / h for platen ``p`` (collective)."""
        mesh, comm = self.mesh, self.comm
        fdim = mesh.topology.dim - 1
        f2c = mesh.topology.connectivity(fdim, mesh.topology.dim)
        facets = np.asarray(p.facets, np.int32)
        cells = f2c.array[f2c.offsets[facets]] if len(facets) else np.zeros(0, np.int32)
        emax = comm.allreduce(float(np.max(E_cells[cells], initial=0.0)), op=MPI.MAX)
        n = comm.allreduce(int(np.count_nonzero(facets < mesh.topology.index_map(fdim).size_local)),
                           op=MPI.SUM)
        one = dolfinx.fem.Constant(mesh, 1.0)
        tags = dolfinx.mesh.meshtags(mesh, fdim, np.sort(facets), np.ones(len(facets), np.int32))
        area = comm.allreduce(dolfinx.fem.assemble_scalar(dolfinx.fem.form(
            one * ufl.Measure("ds", domain=mesh, subdomain_data=tags)(1))), op=MPI.SUM)
        if n == 0 or not area > 0:
            raise InputError(f"platen '{p.name}' has no boundary facets")
        if not emax > 0:
            raise InputError(f"platen '{p.name}': no modulus on the cells under it")
        h = np.sqrt(2.0 * area / n)  # edge of a right triangle of the mean facet area
        return PENALTY * emax / h

    def bilinear(self, u, v):
        return sum(k * u[0] * v[0] * self.ds(i + 1) for i, k in enumerate(self.k))

    def residual(self, u, v):
        """The assembled part of the platen residual: k int (u.d - delta) v.d ds."""
        return sum(k * (u[0] - d) * v[0] * self.ds(i + 1)
                   for i, (k, d) in enumerate(zip(self.k, self.delta)))

    def setup(self):
        """Centroids, tilt vectors U_j, S and the force vectors m (call inside the solve
        frame: the coordinates are the solve frame's)."""
        mesh, comm = self.mesh, self.comm
        x = ufl.SpatialCoordinate(mesh)
        v = ufl.TestFunction(self.V)
        one = dolfinx.fem.Constant(mesh, 1.0)

        def scalar(expr):
            return comm.allreduce(dolfinx.fem.assemble_scalar(dolfinx.fem.form(expr)), op=MPI.SUM)

        def vector(form_expr):
            vec = dolfinx.fem.petsc.assemble_vector(dolfinx.fem.form(form_expr))
            vec.ghostUpdate(addv=PETSc.InsertMode.ADD, mode=PETSc.ScatterMode.REVERSE)
            return vec

        self.area, self.m, self.U, self.Sinv = [], [], [], []
        for i, (p, k) in enumerate(zip(self.platens, self.k)):
            dsi = self.ds(i + 1)
            area = scalar(one * dsi)
            self.area.append(area)
            self.m.append(vector(k * v[0] * dsi))  # k int v.d ds: force = k delta A - m.u
            if not p.rotating:
                self.U.append(None)
                self.Sinv.append(None)
                continue
            c = [scalar(x[j] * dsi) / area for j in (1, 2)]
            xi = [x[1] - c[0], x[2] - c[1]]
            S = np.array([[scalar(k * xi[a] * xi[b] * dsi) for b in (0, 1)] for a in (0, 1)])
            if not np.linalg.cond(S) < 1e12:
                raise InputError(f"platen '{p.name}': its patch is too narrow to carry a tilt")
            self.U.append([vector(k * xi[j] * v[0] * dsi) for j in (0, 1)])
            self.Sinv.append(np.linalg.inv(S))
        self._build_lrc_factors()
        self._ready = True

    def _build_lrc_factors(self):
        """Dense U (columns U_p Q_p) and c = -eig(S_p^-1) so that the rank-2 terms are
        U diag(c) U^T (PETSc LRC wants a diagonal C)."""
        cols, diag = [], []
        for U, Sinv in zip(self.U, self.Sinv):
            if U is None:
                continue
            lam, Q = np.linalg.eigh(Sinv)
            arrs = np.column_stack([u.array_r for u in U])  # owned entries
            cols.append(arrs @ Q)
            diag.extend(-lam)
        self.n_lowrank = len(diag)
        self._Ud = self._c = None
        if not self.n_lowrank:
            return
        A = np.hstack(cols)
        nloc = A.shape[0]
        self._Ud = PETSc.Mat().createDense(((nloc, PETSc.DETERMINE), (PETSc.DECIDE, self.n_lowrank)),
                                           array=np.ascontiguousarray(A), comm=self.comm)
        self._Ud.assemble()
        self._c = PETSc.Vec().createWithArray(np.array(diag, dtype=float), comm=MPI.COMM_SELF)

    # ------------------------------------------------------------------ use
    def set_scale(self, scale: float):
        for p, d in zip(self.platens, self.delta):
            d.value = float(scale) * float(p.value)

    def correct_residual(self, r, u_vec):
        """r -= U S^-1 (U^T u) for the rotating platens (owned entries, global dots)."""
        for U, Sinv in zip(self.U, self.Sinv):
            if U is None:
                continue
            b = np.array([Uj.dot(u_vec) for Uj in U])
            coef = Sinv @ b
            for Uj, cj in zip(U, coef):
                r.axpy(-float(cj), Uj)

    def force(self, u_vec) -> float:
        """Force (N) work-conjugate to the load scale: sum over platens of value x the
        platen's force along d, k delta A - m.u (collective)."""
        f = 0.0
        for p, k, d, a, m in zip(self.platens, self.k, self.delta, self.area, self.m):
            if p.value != 0.0:
                f += float(p.value) * (float(k.value) * float(d.value) * a - m.dot(u_vec))
        return f

    def tilts(self, u_vec) -> list:
        """Current tilt (rad) of each rotating platen about the two axes across d (None
        for a non-rotating one)."""
        out = []
        for U, Sinv in zip(self.U, self.Sinv):
            out.append(None if U is None else (Sinv @ np.array([Uj.dot(u_vec) for Uj in U])).tolist())
        return out

    def operator(self, K):
        """K plus the rank-2 terms (a new LRC Mat wrapping K), or K itself."""
        if not self.n_lowrank:
            return K
        return PETSc.Mat().createLRC(K, self._Ud, self._c, self._Ud)

    def destroy(self):
        for lst in (getattr(self, "m", []), *[u for u in getattr(self, "U", []) if u is not None]):
            for vec in lst:
                vec.destroy()
        for obj in (getattr(self, "_Ud", None), getattr(self, "_c", None)):
            if obj is not None:
                obj.destroy()


class TiltDeflation:
    """Preconditioner context (PETSc ``python`` PC) for the platens' LRC operator.

    The AMG hierarchy B is built from the assembled matrix A (stiffness + the platens'
    penalty mass), in which a tilt of a platen costs penalty energy; in the operator
    ``A - U S^-1 U^T`` it costs only the bone's.  B then overestimates the tilt modes by
    about PENALTY, which leaves 2 tiny eigenvalues per rotating platen in the
    preconditioned operator and slows CG.  The additive coarse correction on the
    space they span, W = B U:

        P^-1 = B + W (W^T K W)^-1 W^T,

    (SPD, so CG applies) moves them back near 1.  Set-up: one AMG application and one
    operator product per column of U."""

    def __init__(self, platen_set: PlatenSet):
        self.U = [u for lst in platen_set.U if lst is not None for u in lst]
        self.W, self.Einv, self.amg = [], None, None

    def rebuild(self, amg, K, A=None, sweeps: int = 0, warm_sweeps: int | None = None):
        """W = B U and (W^T K W)^-1 for the AMG PC ``amg`` (set up) and operator K; with
        ``sweeps`` > 0 and the assembled matrix ``A``, W is improved toward A^-1 U by that
        many preconditioned Richardson sweeps w += B (u - A w).  ``warm_sweeps``: on a
        rebuild (W exists), start from the last W (an approximation of A^-1 U for the
        previous matrix) and do this many sweeps instead."""
        old = self.W
        warm = bool(old) and warm_sweeps is not None and A is not None
        self.amg, self.W = amg, []
        KW = []
        for j, u in enumerate(self.U):
            if warm:
                w, n = old[j], int(warm_sweeps)
            else:
                w, n = u.duplicate(), int(sweeps)
                amg.apply(u, w)
            if n and A is not None:
                r, z = u.duplicate(), u.duplicate()
                for _ in range(n):
                    A.mult(w, r)
                    r.aypx(-1.0, u)
                    amg.apply(r, z)
                    w.axpy(1.0, z)
                r.destroy()
                z.destroy()
            kw = w.duplicate()
            K.mult(w, kw)
            self.W.append(w)
            KW.append(kw)
        if not warm:
            for w in old:
                w.destroy()
        E = np.array([[wi.dot(kwj) for kwj in KW] for wi in self.W])
        for kw in KW:
            kw.destroy()
        self.Einv = np.linalg.inv(0.5 * (E + E.T))

    def apply(self, pc, x, y):
        self.amg.apply(x, y)
        coef = self.Einv @ np.array([w.dot(x) for w in self.W])
        for w, c in zip(self.W, coef):
            y.axpy(float(c), w)

    def destroy(self, pc=None):
        """Free W (also called by PETSc with the PC when the python PC goes)."""
        for w in self.W:
            w.destroy()
        self.W = []


__all__ = ["PENALTY", "Platen", "PlatenSet", "TiltDeflation"]
