"""Linear isotropic elasticity on DOLFINx with a heterogeneous modulus.

One cohesive thing (hence about 650 lines): the ElasticitySolver owns its forms, operators
(assembled by DOLFINx or, where it applies, from the stored map of
``femur.mechanics.p1_stiffness``), preconditioner reuse, warm starts and the
retry-from-zero fallbacks of one PETSc solve.

Units: mm, N, MPa (N/mm2); displacements in mm, strain dimensionless.

``ElasticitySolver`` is the reusable FE core: it compiles the forms and assembles the
matrix once, keeps the sparsity pattern and the KSP/PC, reassembles the values in place
when the modulus changes (``update_modulus``, for remodeling steps), re-uses the GAMG
interpolation (``pc_gamg_reuse_interpolation`` in ``solvers/gamg.toml``) and warm-starts
from the last displacement, scaled by its energy-optimal factor
alpha = (b . x) / (x . A x) (one mat-vec; ``scaled_warm_start``): between remodeling
visits the bone stiffens or softens by a few to 20 %, mostly as a whole, and the scaled
guess removes that part of the error before CG starts (issue 13: 6-11 % fewer CG
iterations over a 12-month FRAME case, the same results to the solve tolerance).

Boundary conditions are given in the *solve frame*.  By default this is the bone frame;
``frame=Q`` (a 3x3 rotation whose rows are the solve axes expressed in bone coordinates)
rotates the mesh coordinates in place to ``x' = Q x`` while assembling, so that a
component constraint along an arbitrary direction (e.g. the fall direction) becomes a
coordinate-component constraint.  The solution is rotated back: ``u`` (bone frame) is
what callers see.  The coordinates are restored bit-for-bit from a saved copy.
"""

from __future__ import annotations

import contextlib
import time
from dataclasses import dataclass, field

import numpy as np

from femur.core.mpi import MPI
import dolfinx  # noqa: E402
import dolfinx.fem.petsc  # noqa: E402
import dolfinx.la.petsc  # noqa: E402
import ufl  # noqa: E402
from petsc4py import PETSc  # noqa: E402

from femur.core.errors import InputError, SolverError  # noqa: E402
from femur.mechanics.p1_stiffness import applies as p1_stiffness_applies  # noqa: E402
from femur.mechanics.p1_stiffness import operator_for as p1_stiffness  # noqa: E402
from femur.mechanics.solvers import (  # noqa: E402
    GlobalOptions,
    PrefixedOptions,
    load_solver_config,
    unique_prefix,
)

_REASONS = {
    getattr(PETSc.KSP.ConvergedReason, n): n
    for n in dir(PETSc.KSP.ConvergedReason)
    if not n.startswith("_") and isinstance(getattr(PETSc.KSP.ConvergedReason, n), int)
}


def reason_name(code: int) -> str:
    return _REASONS.get(int(code), f"UNKNOWN({int(code)})")


def lame_parameters(E, nu):
    """(lambda, mu) in MPa from Young's modulus E (MPa) and Poisson ratio nu."""
    lmbda = E * nu / ((1.0 + nu) * (1.0 - 2.0 * nu))
    mu = E / (2.0 * (1.0 + nu))
    return lmbda, mu


def strain(u):
    return ufl.sym(ufl.grad(u))


def stress(u, E, nu):
    lmbda, mu = lame_parameters(E, nu)
    eps = strain(u)
    return 2.0 * mu * eps + lmbda * ufl.tr(eps) * ufl.Identity(len(u))


def rigid_body_modes(V) -> list:
    """The 6 rigid-body modes of a blocked vector space, orthonormalised (dolfinx.la),
    as PETSc vectors (the near-nullspace for smoothed-aggregation AMG)."""
    index_map = V.dofmap.index_map
    bs = V.dofmap.index_map_bs
    if bs != 3:
        raise InputError(f"rigid_body_modes: expected a 3D vector space, got block size {bs}")
    basis = [dolfinx.la.vector(index_map, bs=bs, dtype=PETSc.ScalarType) for _ in range(6)]
    n = index_map.size_local
    x = V.tabulate_dof_coordinates()[:n]
    b = [v.array for v in basis]
    dofs = [bs * np.arange(n) + i for i in range(3)]
    for i in range(3):
        b[i][dofs[i]] = 1.0
    b[3][dofs[0]] = -x[:, 1]
    b[3][dofs[1]] = x[:, 0]
    b[4][dofs[0]] = x[:, 2]
    b[4][dofs[2]] = -x[:, 0]
    b[5][dofs[2]] = x[:, 1]
    b[5][dofs[1]] = -x[:, 2]
    dolfinx.la.orthonormalize(basis)
    return [dolfinx.la.petsc.create_vector_wrap(v) for v in basis]


@contextlib.contextmanager
def rotated_mesh(mesh, Q):
    """Temporarily rotate ``mesh.geometry.x`` to ``x' = Q x`` (restored exactly)."""
    if Q is None:
        yield
        return
    x = mesh.geometry.x
    x0 = x.copy()
    try:
        x[:] = x0 @ np.asarray(Q, dtype=float).T
        yield
    finally:
        x[:] = x0


def _as_dg0_modulus(mesh, modulus, name="modulus_mpa"):
    """A DG0 Function (MPa) owned by the solver from a float, array or Function."""
    V0 = dolfinx.fem.functionspace(mesh, ("DG", 0))
    E = dolfinx.fem.Function(V0, name=name)
    _assign_modulus(E, modulus)
    return E


def _assign_modulus(E, modulus):
    n = E.x.array.size
    if isinstance(modulus, dolfinx.fem.Function):
        if modulus.x.array.size != n:
            raise InputError(
                f"modulus Function '{modulus.name}' has {modulus.x.array.size} local values, "
                f"expected a DG0 field with {n} (one per local cell)"
            )
        vals = modulus.x.array
    else:
        vals = np.broadcast_to(np.asarray(modulus, dtype=float), (n,)) if np.ndim(modulus) == 0 \
            else np.asarray(modulus, dtype=float)
        if vals.shape != (n,):
            raise InputError(
                f"modulus array has shape {vals.shape}; expected ({n},) = one value (MPa) per "
                "local cell (owned + ghost)"
            )
    if not np.all(np.isfinite(vals)) or np.any(vals <= 0):
        bad = vals[~(np.isfinite(vals) & (vals > 0))]
        raise InputError(
            f"modulus_mpa must be finite and > 0 everywhere; got {bad.size} bad values "
            f"(e.g. {bad[:3]})"
        )
    E.x.array[:] = vals
    E.x.scatter_forward()


@dataclass
class SolveInfo:
    """Iterations, convergence and timings (s) of one solve."""

    iterations: int
    reason: str
    residual_norm: float
    assembly_s: float
    setup_s: float
    solve_s: float
    dofs: int
    solver: str

    @property
    def total_s(self) -> float:
        return self.assembly_s + self.setup_s + self.solve_s


@dataclass
class _Dirichlet:
    facets: np.ndarray | None
    nodes: np.ndarray | None
    value: object
    component: int | None


class ElasticitySolver:
    """Reusable linear-elastic solver.

    Parameters
    ----------
    bone_or_mesh : Bone or dolfinx Mesh (mm)
    modulus : float, array over local cells, DG0 Function (MPa), or a UFL expression
        (e.g. a smooth manufactured field; then ``update_modulus`` is unavailable)
    nu : Poisson ratio
    order : 1 or 2 (vector Lagrange degree)
    solver : name of a configuration in ``solvers/`` or a SolverConfig
    options : extra PETSc options (unprefixed) overriding the configuration
    frame : optional 3x3 rotation (rows = solve axes in bone coordinates)
    quadrature_degree : of the stiffness form (default: UFL's estimate; 2 for P1 on hexahedra)
    reuse_preconditioner : keep the whole preconditioner after ``update_modulus``
        (stale but cheap); default False rebuilds it (GAMG keeps its interpolation).
    fast_assembly : assemble the matrix through ``femur.mechanics.p1_stiffness`` (the
        stored E -> values map of the mesh) where it applies (one rank, P1 tetrahedra, a
        DG0 modulus, a mesh small enough for the map's memory cap): the same matrix to
        round-off, about 7x faster to reassemble; else (and by default) DOLFINx's assembly.
    """

    def __init__(self, bone_or_mesh, modulus, nu: float = 0.3, order: int = 1,
                 solver="gamg", prefix: str | None = None, options: dict | None = None,
                 frame=None, reuse_preconditioner: bool = False,
                 quadrature_degree: int | None = None, fast_assembly: bool = False):
        mesh = getattr(bone_or_mesh, "mesh", bone_or_mesh)
        if not isinstance(mesh, dolfinx.mesh.Mesh):
            raise InputError(f"ElasticitySolver needs a Bone or a dolfinx Mesh, got {type(mesh)}")
        if order not in (1, 2):
            raise InputError(f"element order must be 1 or 2, got {order!r}")
        if not (-1.0 < float(nu) < 0.5):
            raise InputError(f"poisson_ratio must lie in (-1, 0.5), got {nu}")
        if mesh.geometry.dim != 3:
            raise InputError(f"expected a 3D mesh, got geometric dimension {mesh.geometry.dim}")
        self.mesh = mesh
        self.comm = mesh.comm
        self.order = int(order)
        self.nu = float(nu)
        self.config = load_solver_config(solver).with_options(options)
        self.prefix = prefix or unique_prefix()
        self.frame = None if frame is None else np.asarray(frame, dtype=float)
        if self.frame is not None and not np.allclose(self.frame @ self.frame.T, np.eye(3), atol=1e-12):
            raise InputError("frame must be an orthonormal 3x3 matrix")
        self.reuse_preconditioner = bool(reuse_preconditioner)
        self.fast_assembly = bool(fast_assembly)
        self._fast = None  # the fast assembly's operator and positions (False: not applicable)
        if quadrature_degree is None and self.order == 1 and \
                mesh.topology.cell_type == dolfinx.mesh.CellType.hexahedron:
            # trilinear hexahedra (CT voxel meshes): 2x2x2 Gauss, the usual full integration
            # of Q1 stiffness, exact for parallelepipeds (every voxel element). UFL's own
            # estimate for the Q1 x Q1 x DG0 form is higher and assembles ~2.6x slower
            # (measured on the 8,870-element VerSe L2 mesh) for the same matrix.
            quadrature_degree = 2
        self.quadrature_degree = quadrature_degree

        self.V = dolfinx.fem.functionspace(mesh, ("Lagrange", self.order, (3,)))
        if isinstance(modulus, ufl.core.expr.Expr) and not isinstance(modulus, dolfinx.fem.Function):
            self.E = modulus
            self._E_is_field = False
        elif isinstance(modulus, dolfinx.fem.Function) and modulus.function_space.element.basix_element.degree != 0:
            self.E = modulus  # non-DG0 coefficient: used as given
            self._E_is_field = False
        else:
            self.E = _as_dg0_modulus(mesh, modulus)
            self._E_is_field = True
        self._u = dolfinx.fem.Function(self.V, name="displacement_solve_frame")
        self.u = dolfinx.fem.Function(self.V, name="displacement") if self.frame is not None else self._u
        self._energy_form = None  # a(u, u) of the displacement, compiled at first use

        self._dirichlet: list[_Dirichlet] = []
        self._tractions: list[tuple[np.ndarray, object]] = []
        self._body_force = None

        self._built = False
        self._matrix_dirty = True
        self._solved_once = False
        #: warm starts scaled by their energy-optimal factor (module docstring)
        self.scaled_warm_start = True
        self.A = self.b = self.ksp = None
        self._nullspace = None
        self._ns_vecs = []
        self.bcs = []
        self.last: SolveInfo | None = None
        self._pc_reused = False
        self.rebuilds = 0  # preconditioner rebuilds forced after a failed reuse
        self.fallback_used = False  # the config's [fallback] options replaced the fast ones

    # ------------------------------------------------------------------ problem set-up
    @property
    def dofs(self) -> int:
        im = self.V.dofmap.index_map
        return im.size_global * self.V.dofmap.index_map_bs

    def add_dirichlet(self, facets=None, value=0.0, component: int | None = None, nodes=None):
        """Prescribe displacement (solve frame) on boundary ``facets`` (local facet indices)
        or at ``nodes`` (local node = block-dof indices of V).

        value: float (for a component or all components), a 3-vector, or a callable
        x(3, n) -> values(3, n) (full vector only).
        """
        if self._built:
            raise InputError("add boundary conditions before the first solve")
        if (facets is None) == (nodes is None):
            raise InputError("add_dirichlet: give exactly one of facets= or nodes=")
        if component is not None and component not in (0, 1, 2):
            raise InputError(f"component must be 0, 1, 2 or None, got {component!r}")
        if component is not None and callable(value):
            raise InputError("a callable value is only supported for full-vector constraints")
        self._dirichlet.append(_Dirichlet(
            None if facets is None else np.asarray(facets, dtype=np.int32),
            None if nodes is None else np.asarray(nodes, dtype=np.int32),
            value, component))

    def add_traction(self, facets, traction):
        """Surface traction (MPa, solve frame) on local boundary facets: a 3-vector or UFL expr."""
        if self._built:
            raise InputError("add tractions before the first solve")
        self._tractions.append((np.asarray(facets, dtype=np.int32), traction))

    def set_body_force(self, f):
        """Body force density (N/mm3, solve frame): a 3-vector or a UFL expression."""
        if self._built:
            raise InputError("set the body force before the first solve")
        self._body_force = f

    # ------------------------------------------------------------------ building
    def _frame_ctx(self):
        return rotated_mesh(self.mesh, self.frame)

    def _build_bcs(self):
        V, fdim = self.V, self.mesh.topology.dim - 1
        self.mesh.topology.create_connectivity(fdim, self.mesh.topology.dim)
        bcs = []
        self.bc_records = []  # (local nodes, component or None, values (n, 3) or float): export
        for d in self._dirichlet:
            if d.component is None:
                if d.facets is not None:
                    dofs = dolfinx.fem.locate_dofs_topological(V, fdim, d.facets)
                else:
                    dofs = d.nodes
                if callable(d.value) or isinstance(d.value, dolfinx.fem.Function):
                    if isinstance(d.value, dolfinx.fem.Function):
                        g = d.value
                    else:
                        g = dolfinx.fem.Function(V)
                        g.interpolate(d.value)
                    bcs.append(dolfinx.fem.dirichletbc(g, dofs))
                    self.bc_records.append((dofs, None, g.x.array.reshape(-1, 3)[dofs].copy()))
                else:
                    val = np.broadcast_to(np.asarray(d.value, dtype=PETSc.ScalarType), (3,)).copy()
                    bcs.append(dolfinx.fem.dirichletbc(val, dofs, V))
                    self.bc_records.append((dofs, None, np.tile(val, (len(dofs), 1))))
            else:
                Vc = V.sub(d.component)
                if d.facets is not None:
                    dofs = dolfinx.fem.locate_dofs_topological(Vc, fdim, d.facets)
                else:
                    dofs = (3 * d.nodes + d.component).astype(np.int32)
                bcs.append(dolfinx.fem.dirichletbc(PETSc.ScalarType(float(d.value)), dofs, Vc))
                self.bc_records.append((dofs // 3, d.component, float(d.value)))
        return bcs

    def _build_forms(self):
        mesh = self.mesh
        fdim = mesh.topology.dim - 1
        u, v = ufl.TrialFunction(self.V), ufl.TestFunction(self.V)
        md = {} if self.quadrature_degree is None else {"quadrature_degree": self.quadrature_degree}
        dx = ufl.Measure("dx", domain=mesh, metadata=md)
        self._nu_c = dolfinx.fem.Constant(mesh, PETSc.ScalarType(self.nu))
        a = ufl.inner(stress(u, self.E, self._nu_c), strain(v)) * dx
        zero = dolfinx.fem.Constant(mesh, np.zeros(3, dtype=PETSc.ScalarType))
        L = ufl.inner(zero, v) * dx
        if self._body_force is not None:
            f = self._body_force
            if not isinstance(f, ufl.core.expr.Expr):
                f = dolfinx.fem.Constant(mesh, np.asarray(f, dtype=PETSc.ScalarType))
            L = L + ufl.inner(f, v) * dx
        if self._tractions:
            all_f = np.concatenate([f for f, _ in self._tractions]) if self._tractions else []
            if np.unique(all_f).size != len(all_f):
                raise InputError("traction facet sets overlap: give each facet one traction")
            ids = np.concatenate([np.full(len(f), k + 1, dtype=np.int32)
                                  for k, (f, _) in enumerate(self._tractions)])
            order = np.argsort(all_f)
            self._traction_tags = dolfinx.mesh.meshtags(mesh, fdim, all_f[order], ids[order])
            ds = ufl.Measure("ds", domain=mesh, subdomain_data=self._traction_tags)
            for k, (_, t) in enumerate(self._tractions):
                if not isinstance(t, ufl.core.expr.Expr):
                    t = dolfinx.fem.Constant(mesh, np.asarray(t, dtype=PETSc.ScalarType))
                L = L + ufl.inner(t, v) * ds(k + 1)
        self._a_ufl, self._L_ufl = a, L
        self.a = dolfinx.fem.form(a)
        self.L = dolfinx.fem.form(L)
        self._residual = dolfinx.fem.form(ufl.action(a, self._u) - L)

    def _build(self):
        t0 = time.perf_counter()
        self._build_forms()
        self.bcs = self._build_bcs()
        self.A = dolfinx.fem.petsc.create_matrix(self.a)
        self.A.setBlockSize(3)
        self.b = dolfinx.fem.petsc.create_vector(self.V)
        self._res_vec = dolfinx.fem.petsc.create_vector(self.V)
        if self.config.near_nullspace:
            with self._frame_ctx():
                self._ns_vecs = rigid_body_modes(self.V)
            self._nullspace = PETSc.NullSpace().create(vectors=self._ns_vecs, comm=self.comm)
            self.A.setNearNullSpace(self._nullspace)
        self.ksp = PETSc.KSP().create(self.comm)
        self.ksp.setOptionsPrefix(self.prefix)
        self._opts = PrefixedOptions(self.prefix, self.config.options)
        try:
            self.ksp.setFromOptions()
        finally:
            self._opts.clear()
        self._built = True
        self._t_build = time.perf_counter() - t0

    def _fast_operator(self):
        """(P1Stiffness, zero positions, diagonal positions, row pointers, column indices)
        for this solver's matrix and Dirichlet conditions, or False where the fast assembly
        does not apply. A mesh's operator is used only after its CSR pattern was found to
        be that of a matrix DOLFINx assembled from this form (checked once per operator),
        and then for every assembly of every solver on the mesh, the first included (so a
        solver's matrices do not depend on which solvers ran before it)."""
        if not p1_stiffness_applies(self.V, self._E_is_field):
            return False
        op = p1_stiffness(self.V, self.E, self.nu)
        if op.verified is None:
            B = dolfinx.fem.petsc.create_matrix(self.a)
            try:
                dolfinx.fem.petsc.assemble_matrix(B, self.a)
                B.assemble()
                ai, aj, _ = B.getValuesCSR()
                op.verified = op.matches(ai, aj)
            finally:
                B.destroy()
        if not op.verified:
            return False
        dofs = [bc.dof_indices()[0] for bc in self.bcs]
        zero, diag = op.dirichlet_positions(np.concatenate(dofs) if dofs else np.zeros(0, np.int64))
        return (op, zero, diag, np.asarray(op.rowptr, dtype=PETSc.IntType),
                np.asarray(op.colind, dtype=PETSc.IntType))

    def _assemble_matrix(self):
        if self._fast is None:
            self._fast = self._fast_operator() if self.fast_assembly else False
        if self._fast:
            op, zero, diag, rowptr, colind = self._fast
            vals = op.values(self.E.x.array, self.frame)
            vals[zero] = 0.0
            vals[diag] = 1.0
            self.A.setValuesCSR(rowptr, colind, vals)
            self.A.assemble()
            self.ksp.setOperators(self.A)
            self._pc_reused = bool(self.reuse_preconditioner and self._solved_once)
            self.ksp.getPC().setReusePreconditioner(self._pc_reused)
            self._matrix_dirty = False
            return
        self._assemble_matrix_dolfinx()

    def _assemble_matrix_dolfinx(self):
        with self._frame_ctx():
            self.A.zeroEntries()
            dolfinx.fem.petsc.assemble_matrix(self.A, self.a, bcs=self.bcs)
            self.A.assemble()
        self.ksp.setOperators(self.A)
        self._pc_reused = bool(self.reuse_preconditioner and self._solved_once)
        self.ksp.getPC().setReusePreconditioner(self._pc_reused)
        self._matrix_dirty = False

    def _assemble_rhs(self):
        with self.b.localForm() as bl:
            bl.set(0.0)
        with self._frame_ctx():
            dolfinx.fem.petsc.assemble_vector(self.b, self.L)
            dolfinx.fem.petsc.apply_lifting(self.b, [self.a], bcs=[self.bcs])
        self.b.ghostUpdate(addv=PETSc.InsertMode.ADD, mode=PETSc.ScatterMode.REVERSE)
        dolfinx.fem.petsc.set_bc(self.b, self.bcs)

    def setup(self):
        """Compile the forms, build the BCs, matrix and KSP (done by the first solve)."""
        if not self._built:
            self._build()
        return self

    # ------------------------------------------------------------------ updates
    def update_modulus(self, modulus):
        """New modulus values (MPa; float, local-cell array or DG0 Function), same mesh.
        The matrix is reassembled in place at the next solve."""
        if not self._E_is_field:
            raise InputError("update_modulus needs a solver built with a DG0 modulus field")
        _assign_modulus(self.E, modulus)
        self._matrix_dirty = True

    # ------------------------------------------------------------------ solve
    def solve(self, rtol: float | None = None) -> SolveInfo:
        """Assemble (if needed) and solve; returns SolveInfo, raises SolverError if the
        Krylov solve does not converge (PETSc's reason and iteration count).

        ``rtol``: relative tolerance for this solve only (default: the configuration's),
        e.g. a looser one where only a stimulus, not a fracture load, is needed."""
        if rtol is None:
            return self._solve()
        if not (np.isfinite(rtol) and 0 < rtol < 1):
            raise InputError(f"rtol must lie in (0, 1), got {rtol}")
        if not self._built:
            self._build()
        saved = self.ksp.getTolerances()
        self.ksp.setTolerances(rtol=float(rtol))
        try:
            return self._solve()
        finally:
            self.ksp.setTolerances(rtol=saved[0])

    def _rerun_from_zero(self, x):
        """Retry the Krylov solve from a zero guess with a fresh set-up; (setup_s, solve_s)."""
        with x.localForm() as xl:
            xl.set(0.0)
        self.ksp.setInitialGuessNonzero(False)
        self.ksp.setOperators(self.A)
        return self._run_ksp(x)

    def _solve(self) -> SolveInfo:
        t0 = time.perf_counter()
        if not self._built:
            self._build()
        if self._matrix_dirty:
            self._assemble_matrix()
        self._assemble_rhs()
        t_asm = time.perf_counter() - t0
        x = self._u.x.petsc_vec
        self.ksp.setInitialGuessNonzero(self._solved_once)
        if self._solved_once and self.scaled_warm_start:
            self._scale_warm_start(x)
        t_setup, t_solve = self._run_ksp(x)
        pc = self.ksp.getPC()
        if self.ksp.getConvergedReason() < 0 and self._pc_reused:
            # a fully reused AMG hierarchy can be unusable for the new matrix (e.g. the
            # Chebyshev eigenvalue bounds after the modulus grew): rebuild once and retry
            pc.setReusePreconditioner(False)
            self._pc_reused = False
            t_setup2, t_solve2 = self._rerun_from_zero(x)
            t_setup, t_solve = t_setup + t_setup2, t_solve + t_solve2
            self.rebuilds += 1
        if self.ksp.getConvergedReason() < 0 and self.config.fallback and not self.fallback_used:
            # the configuration's robust variant (solvers/<name>.toml [fallback]), once, from
            # scratch; it then stays in use for this solver's later solves
            self.fallback_used = True
            self.config = self.config.with_options(self.config.fallback)
            pc.reset()
            self._opts = PrefixedOptions(self.prefix, self.config.options)
            try:
                self.ksp.setFromOptions()
            finally:
                self._opts.clear()
            t_setup2, t_solve2 = self._rerun_from_zero(x)
            t_setup, t_solve = t_setup + t_setup2, t_solve + t_solve2
        reason = self.ksp.getConvergedReason()
        its = self.ksp.getIterationNumber()
        # true residual, also as a guard for direct solvers (preonly reports CONVERGED_ITS)
        r = self.b.duplicate()
        self.A.mult(x, r)
        r.aypx(-1.0, self.b)
        rnorm, bnorm = r.norm(), self.b.norm()
        r.destroy()
        rel = rnorm / bnorm if bnorm > 0 else rnorm
        bad = reason < 0 or not np.isfinite(rel)
        if self.config.is_direct and rel > 1e-6:
            bad = True
        if bad:
            with x.localForm() as xl:
                xl.set(0.0)
            self._solved_once = False
            raise SolverError(
                f"linear solve did not converge: solver '{self.config.name}' stopped with "
                f"{reason_name(reason)} after {its} iterations (relative residual {rel:.3e}, "
                f"ksp_rtol {self.config.options.get('ksp_rtol', 'default')}, "
                f"ksp_max_it {self.config.options.get('ksp_max_it', 'default')}, "
                f"{self.dofs} DOFs)"
            )
        # Dirichlet values exactly (the Krylov iterate meets them only to the tolerance)
        dolfinx.fem.petsc.set_bc(x, self.bcs)
        self._u.x.scatter_forward()
        if self.frame is not None:
            ub = self._u.x.array.reshape(-1, 3) @ self.frame
            self.u.x.array[:] = ub.ravel()
        self._solved_once = True
        self.last = SolveInfo(its, reason_name(reason), float(rel), t_asm, t_setup, t_solve,
                              self.dofs, self.config.name)
        return self.last

    def _scale_warm_start(self, x):
        """x <- alpha x with alpha = (b . x) / (x . A x), the multiple of the last solution
        closest to the new one in the energy norm; the Dirichlet values are set again."""
        Ax = x.duplicate()
        try:
            self.A.mult(x, Ax)
            den, num = x.dot(Ax), self.b.dot(x)
        finally:
            Ax.destroy()
        if den > 0 and num > 0 and np.isfinite(num / den):
            x.scale(num / den)
            dolfinx.fem.petsc.set_bc(x, self.bcs)

    def _run_ksp(self, x):
        """KSP set-up and solve with the prefixed options present; returns (setup_s, solve_s)."""
        self._opts = PrefixedOptions(self.prefix, self.config.options)
        serial = self.config.serial_setup_options if self.comm.size == 1 else {}
        try:
            t1 = time.perf_counter()
            gopts = GlobalOptions(serial)
            try:
                self.ksp.setUp()
            except PETSc.Error as exc:
                raise SolverError(
                    f"solver '{self.config.name}' (prefix {self.prefix}): preconditioner set-up "
                    f"failed (PETSc error {exc.ierr}); the matrix may be singular (check the "
                    "boundary conditions remove all rigid-body modes)"
                ) from None
            finally:
                gopts.clear()
            t2 = time.perf_counter()
            try:
                self.ksp.solve(self.b, x)
            except PETSc.Error as exc:
                raise SolverError(
                    f"solver '{self.config.name}': PETSc error {exc.ierr} during the solve"
                ) from None
            t3 = time.perf_counter()
        finally:
            self._opts.clear()
        return t2 - t1, t3 - t2

    # ------------------------------------------------------------------ post-processing
    def residual_array(self) -> np.ndarray:
        """r = K u - f without boundary conditions (solve frame), local owned+ghost entries
        with ghost contributions accumulated: the nodal reaction forces (N) on constrained
        DOFs, ~0 on free DOFs."""
        with self._res_vec.localForm() as rl:
            rl.set(0.0)
        with self._frame_ctx():
            dolfinx.fem.petsc.assemble_vector(self._res_vec, self._residual)
        self._res_vec.ghostUpdate(addv=PETSc.InsertMode.ADD, mode=PETSc.ScatterMode.REVERSE)
        self._res_vec.ghostUpdate(addv=PETSc.InsertMode.INSERT, mode=PETSc.ScatterMode.FORWARD)
        return self._res_vec.array_r.copy()

    def load_array(self) -> np.ndarray:
        """Assembled nodal load vector f (N, solve frame, no BCs), owned+ghost, accumulated."""
        f = dolfinx.fem.petsc.create_vector(self.V)
        with f.localForm() as fl:
            fl.set(0.0)
        with self._frame_ctx():
            dolfinx.fem.petsc.assemble_vector(f, self.L)
        f.ghostUpdate(addv=PETSc.InsertMode.ADD, mode=PETSc.ScatterMode.REVERSE)
        f.ghostUpdate(addv=PETSc.InsertMode.INSERT, mode=PETSc.ScatterMode.FORWARD)
        out = f.array_r.copy()
        f.destroy()
        return out

    def energy_form(self):
        """The compiled form a(u, u) (twice the strain energy, N mm) of the displacement,
        compiled once: its coefficients are the solver's own Functions, so it stays valid
        for every later solve."""
        if self._energy_form is None:
            self._energy_form = dolfinx.fem.form(
                ufl.inner(stress(self.u, self.E, self.nu), strain(self.u)) * ufl.dx(domain=self.mesh))
        return self._energy_form

    def solution_arrays(self) -> tuple[np.ndarray, np.ndarray]:
        """Copies of the local displacement arrays (solve frame, bone frame): with
        :meth:`set_solution`, a solve's state to start a later solve from."""
        return self._u.x.array.copy(), self.u.x.array.copy()

    def set_solution(self, u_frame: np.ndarray, u_bone: np.ndarray) -> None:
        """Set the displacement (the next solve's initial guess) from :meth:`solution_arrays`."""
        self._u.x.array[:] = u_frame
        self.u.x.array[:] = u_bone

    def reaction_force(self, facets, residual: np.ndarray | None = None) -> np.ndarray:
        """Total reaction force (N, bone frame) on the nodes of local ``facets``
        (collective; each owned node counted once). ``residual``: this solution's
        :meth:`residual_array`, when the caller has it already (several facet sets)."""
        fdim = self.mesh.topology.dim - 1
        nodes = dolfinx.fem.locate_dofs_topological(self.V, fdim, np.asarray(facets, np.int32))
        n_owned = self.V.dofmap.index_map.size_local
        nodes = nodes[nodes < n_owned]
        r = (self.residual_array() if residual is None else residual).reshape(-1, 3)
        R = self.comm.allreduce(r[nodes].sum(axis=0), op=MPI.SUM)
        return R @ self.frame if self.frame is not None else R

    # ------------------------------------------------------------------ clean-up
    def close(self):
        for obj in (self.ksp, self.A, self.b, getattr(self, "_res_vec", None), self._nullspace):
            if obj is not None:
                obj.destroy()
        for v in self._ns_vecs:
            v.destroy()
        self._ns_vecs = []
        self.ksp = self.A = self.b = self._res_vec = self._nullspace = None
        self._built = False

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
        return False
