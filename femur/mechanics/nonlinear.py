"""Elasto-plastic FE solver: quadrature-point state, residual, tangent and Newton (mm, N, MPa).

(Somewhat over the ~450-line guide: one cohesive solver class -- state, assembly, Newton,
line search and preconditioner policy share its private data.)

``PlasticitySolver`` extends :class:`~femur.mechanics.elasticity.ElasticitySolver`: the same
boundary-condition API, solve frame, options prefix and KSP.  Its (linear) ``solve()`` is
the elastic step that the pushover starts with; ``newton()`` then solves the
material-nonlinear equilibrium for the current Dirichlet values.

State at the quadrature points
------------------------------
Stress and algorithmic tangent live in DOLFINx quadrature spaces
(``basix.ufl.quadrature_element``, Mandel 6-vector and 6x6): the residual is
``F(u; v) = int sigma . eps(v) dx`` and the tangent ``int eps(du) . C eps(v) dx`` with the
same quadrature rule (P1 tetrahedra: 1 point; P2: 4 points; Q1 hexahedra: 2x2x2, Q2:
3x3x3).  The total strain at the points comes from a ``dolfinx.fem.Expression``; the
return map (``femur.mechanics.plasticity``, numpy, all owned points at once) gives the
stress, tangent and trial internal variables, which become the committed state only when
an increment converges (``commit()``; ``restore()`` goes back after a cut-back).

Newton scheme and linear solves
-------------------------------
Full Newton with the consistent tangent, written out here rather than through
``dolfinx.fem.petsc.NonlinearProblem`` (SNES): the constitutive update is a numpy
operator that must run between the strain evaluation and the residual assembly, the
state must be committed or rolled back per increment, and the preconditioner must be
reused across increments -- all simpler to control in a short loop than through SNES
callbacks and lagging options.  Every iterate satisfies the Dirichlet values exactly (the
increment's predictor sets them), so the corrections have homogeneous Dirichlet
conditions.  Linear solves: CG on the tangent, preconditioned by GAMG with the rigid-body
near-nullspace, or (``preconditioner="pmg"``, the pushover's default at P2) by a two-level
p-multigrid whose coarse level is GAMG on the P1 space of the same mesh
(``femur.mechanics.pmg``): smoothed aggregation on P2 tetrahedra needed ~190 CG
iterations per correction on the trial femur, the p-multigrid about 2.4x fewer.  The
first plastic increment reuses the hierarchy built for the *elastic*
matrix in the elastic step; with ``pc_refresh="increment"`` (default) GAMG is rebuilt from
the tangent at the first Newton iteration of every increment and kept for the increment
(``pc_gamg_reuse_interpolation`` keeps the elastic prolongators, so only the Galerkin
products are redone; measured on the 4 mm femur fall: 19 % fewer CG iterations than
keeping the elastic hierarchy throughout, ``"never"``); ``"always"`` rebuilds it for every
Newton iteration.  A Krylov failure with a stale hierarchy is retried once with a fresh
one.  The tangent matrix is the elastic matrix plus the change of the material tangent
assembled over the cells that have plastic points only, so its cost follows the plastic
zone (copying the elastic values is ~10 % of a full assembly).

Krylov tolerance.  Perfectly plastic discrete problems are nearly singular: the converged
solution lies in a flat valley of the incremental potential (measured: different Newton
start points converged to residuals of 1e-13 give reaction forces that differ by 1e-6 to
1e-4).  Where Newton lands in it depends on the whole iteration path, so inexact
(partition-dependent) Krylov solves make 1 and 2 MPI ranks disagree at ~1e-5 whatever
the Newton tolerance.  ``ksp_rtol`` (default 1e-6) solves every correction to a fixed
relative tolerance, which keeps the paths, and the curves, equal to ~1e-9;
``ksp_rtol=None`` uses inexact Newton instead (Eisenstat-Walker choice 2,
``eta = 0.9 (r_k/r_{k-1})^2`` clipped to [``ksp_rtol_min``, ``ksp_rtol_max``], the first
iteration ``ksp_rtol_first``, and never tighter than the Newton tolerance needs).
Convergence: the norm of the residual on the free DOFs below ``rtol`` times the norm of
the reaction forces (the residual on the constrained DOFs).  A line search along each
correction (see ``newton``) guards against overshooting where the plastic zone changes.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np

from femur.core.mpi import MPI
import basix  # noqa: E402
import basix.ufl  # noqa: E402
import dolfinx  # noqa: E402
import dolfinx.fem.petsc  # noqa: E402
import ufl  # noqa: E402
from petsc4py import PETSc  # noqa: E402

from femur.core.errors import InputError, SolverError  # noqa: E402
from femur.mechanics.elasticity import ElasticitySolver, SolveInfo, reason_name  # noqa: E402
from femur.mechanics.plasticity import (  # noqa: E402
    PointMaterial,
    ReturnResult,
    bulk_shear,
    elastic_tangent,
    get_criterion,
)
from femur.mechanics.platens import Platen, PlatenSet, TiltDeflation  # noqa: E402
from femur.mechanics.pmg import P1CoarsePMG  # noqa: E402
from femur.mechanics.solvers import GlobalOptions, PrefixedOptions  # noqa: E402

SQ2 = np.sqrt(2.0)
#: preconditioners of the Newton corrections: GAMG on the tangent, or (P2 only) the
#: p-multigrid with a GAMG P1 coarse level (femur.mechanics.pmg)
PRECONDITIONERS = ("gamg", "pmg")
#: Richardson sweeps that build the tilt-deflation space (platens.TiltDeflation) at the
#: first preconditioner set-up, and those that update it (from the last one) at later
#: set-ups.  Measured on the parametric femur (6 mm, P2, fall, p-multigrid, reproducible
#: Newton), CG iterations / CPU s of the pushover: 10 cold sweeps at every set-up 1675 /
#: 43.9; 10 then 2 warm 1606 / 39.8; 3 then 1 warm 1790 / 42.3 (shared machine)
DEFLATION_SWEEPS = 10
DEFLATION_WARM_SWEEPS = 2


def mandel_strain(u):
    """Mandel 6-vector of the small strain of ``u`` (UFL)."""
    e = ufl.sym(ufl.grad(u))
    return ufl.as_vector([e[0, 0], e[1, 1], e[2, 2], SQ2 * e[1, 2], SQ2 * e[0, 2], SQ2 * e[0, 1]])


def quadrature_degree_for(mesh, order: int) -> int:
    """Rule for the plastic forms: exact for the elastic stiffness on affine cells."""
    simplex = mesh.topology.cell_type in (dolfinx.mesh.CellType.tetrahedron,
                                          dolfinx.mesh.CellType.triangle)
    return 2 * (order - 1) if simplex and order > 1 else (1 if simplex else 2 * order)


@dataclass
class NewtonInfo:
    converged: bool
    iterations: int
    linear_iterations: int
    residual: float  # final relative residual
    reason: str  # "converged" or why not (Krylov reason, max iterations, NaN)
    pc_setups: int


class PlasticitySolver(ElasticitySolver):
    """Elasto-plastic solver; see the module docstring.

    sigma_c, sigma_t : per local cell (owned + ghost) compressive/tensile yield (MPa)
    criterion : "von_mises" | "drucker_prager" | a Criterion
    softening : None (perfectly plastic) or a plasticity.Softening
    pc_refresh : "increment" (default: GAMG rebuilt from the tangent once per increment),
        "never" (the elastic hierarchy throughout) or "always" (every Newton iteration)
    ksp_rtol : fixed relative Krylov tolerance of every correction (reproducible across
        partitions), or None for inexact Newton (``ksp_rtol_first``/``_max``/``_min``)
    """

    def __init__(self, bone_or_mesh, modulus, nu, sigma_c, sigma_t, criterion="von_mises",
                 softening=None, order: int = 1, solver="gamg", options: dict | None = None,
                 frame=None, prefix: str | None = None, clip_softening_tangent: bool = True,
                 pc_refresh: str = "increment",
                 ksp_rtol_max: float = 1e-3, ksp_rtol_min: float = 1e-10,
                 ksp_rtol_first: float = 1e-2, ksp_rtol: float | None = 1e-6,
                 ksp_rtol_final: float | None = None, max_line_search: int = 3,
                 preconditioner: str = "gamg"):
        mesh = getattr(bone_or_mesh, "mesh", bone_or_mesh)
        if not isinstance(mesh, dolfinx.mesh.Mesh):
            raise InputError(f"PlasticitySolver needs a Bone or a dolfinx Mesh, got {type(mesh)}")
        if order not in (1, 2):
            raise InputError(f"element order must be 1 or 2, got {order!r}")
        self.qdeg = quadrature_degree_for(mesh, order)
        super().__init__(bone_or_mesh, modulus, nu, order=order, solver=solver, prefix=prefix,
                         options=options, frame=frame, quadrature_degree=self.qdeg)
        if pc_refresh not in ("increment", "never", "always"):
            raise InputError(f"pc_refresh must be 'increment', 'never' or 'always', got {pc_refresh!r}")
        nloc = mesh.topology.index_map(3).size_local + mesh.topology.index_map(3).num_ghosts
        self.sigma_c_cells = self._cell_array(sigma_c, nloc, "sigma_c")
        self.sigma_t_cells = self._cell_array(sigma_t, nloc, "sigma_t")
        self.criterion = get_criterion(criterion)
        self.softening = softening
        self.clip = bool(clip_softening_tangent)
        self.pc_refresh = pc_refresh
        if preconditioner not in PRECONDITIONERS:
            raise InputError(f"preconditioner must be one of {PRECONDITIONERS}, got {preconditioner!r}")
        if preconditioner == "pmg" and order != 2:
            raise InputError("preconditioner 'pmg' (P1 coarse level) needs order=2")
        self.preconditioner = preconditioner
        self._pmg = None
        self.ksp_rtol_max = float(ksp_rtol_max)
        self.ksp_rtol_min = float(ksp_rtol_min)
        self.ksp_rtol_first = float(ksp_rtol_first)
        self.tangent_assemblies = 0
        self.line_searches = 0
        self.max_line_search = int(max_line_search)
        if ksp_rtol is not None and not (0 < ksp_rtol < 1):
            raise InputError(f"ksp_rtol must lie in (0, 1) or be None, got {ksp_rtol}")
        self.ksp_rtol_fixed = ksp_rtol
        self.ksp_rtol_final = ksp_rtol_final
        self._plastic_ready = False
        self._elastic_only = False
        self._deflation = self._amg = None
        #: Richardson sweeps that improve the tilt-deflation space (platens.TiltDeflation):
        #: measured on the P2 femur fall (7 mm, 40k DOF), the elastic step's CG iterations
        #: 203 (0 sweeps), 141 (5), 121 (20); each sweep costs about one CG iteration per
        #: tilt mode and preconditioner set-up
        self.deflation_sweeps = DEFLATION_SWEEPS
        self.deflation_warm_sweeps = DEFLATION_WARM_SWEEPS
        self._platens: list[Platen] = []
        self.platen_set: PlatenSet | None = None
        self.pc_setups = 0
        self.force = 0.0

    @staticmethod
    def _cell_array(x, n, name):
        a = np.broadcast_to(np.asarray(x, dtype=float), (n,)) if np.ndim(x) == 0 else np.asarray(x, float)
        if a.shape != (n,):
            raise InputError(f"{name}: expected one value (MPa) per local cell ({n}), got shape {a.shape}")
        if np.any(~(a > 0)):
            raise InputError(f"{name}: yield stresses must be > 0 MPa (inf = elastic)")
        return a

    # ------------------------------------------------------------------ platens
    def add_platen(self, facets, value: float = 1.0, rotating: bool = True, name: str = "platen"):
        """A rigid platen (``femur.mechanics.platens``) on local boundary ``facets``, moving
        ``value`` mm along the solve frame's first axis per unit load scale, free to tilt
        if ``rotating``; motion across that axis is free."""
        if self._built:
            raise InputError("add platens before the first solve")
        self._platens.append(Platen(np.asarray(facets, np.int32), float(value), bool(rotating), name))

    def _platen_dofs(self):
        """(local DOFs along the solve frame's first axis on the patch, value) per platen."""
        fdim = self.mesh.topology.dim - 1
        V0 = self.V.sub(0)
        return [(dolfinx.fem.locate_dofs_topological(V0, fdim, p.facets), p.value)
                for p in self._platens]

    def _build_forms(self):
        super()._build_forms()
        if not self._platens:
            return
        if self._tractions:
            raise InputError("PlasticitySolver: platens and tractions cannot be combined")
        self.platen_set = PlatenSet(self._platens, self.mesh, self.V, self.E.x.array)
        u, v = ufl.TrialFunction(self.V), ufl.TestFunction(self.V)
        self._a_ufl = self._a_ufl + self.platen_set.bilinear(u, v)
        self.a = dolfinx.fem.form(self._a_ufl)
        self._residual = dolfinx.fem.form(ufl.action(self._a_ufl, self._u) - self._L_ufl)

    def solve(self, rtol: float | None = None) -> SolveInfo:
        """The elastic step for the reference load (scale 1).  Without platens the
        ElasticitySolver's linear solve; with platens a Newton solve with the elastic
        material from zero (the rank-2 platen terms need the LRC operator)."""
        if not self._platens:
            return super().solve(rtol)
        t0 = time.perf_counter()
        self._setup_state()
        self._elastic_only = True
        try:
            # start from the platens' translation on their patches (not zero): the first
            # residual is then of the size of the reaction forces, not of the penalty
            # forces, and one tight correction reaches the Newton tolerance
            self._u.x.array[:] = 0.0
            for dofs, value in self._platen_dofs():
                self._u.x.array[dofs] = value
            self._u.x.scatter_forward()
            self.set_dirichlet_scale(1.0)
            saved = self.ksp_rtol_fixed
            self.ksp_rtol_fixed = rtol or 1e-10
            try:
                info = self.newton(rtol=1e-9, max_it=5)
            finally:
                self.ksp_rtol_fixed = saved
        finally:
            self._elastic_only = False
        if not info.converged:
            raise SolverError(f"elastic step with platens did not converge: {info.reason}")
        t = time.perf_counter() - t0
        self.last = SolveInfo(info.linear_iterations, "converged", float(info.residual), 0.0, 0.0, t,
                              self.dofs, self.config.name)
        return self.last

    # ------------------------------------------------------------------ set-up
    def setup_plastic(self):
        """Quadrature spaces, forms, state and matrices; the elastic solution for the
        reference load (after ``solve()``)."""
        if self._plastic_ready:
            return
        self._setup_state()
        self._record_elastic()
        self._plastic_ready = True

    def _setup_state(self):
        if getattr(self, "_state_ready", False):
            return
        if not self._built:
            self._build()
        if self._matrix_dirty:
            self._assemble_matrix()
        mesh = self.mesh
        cell = mesh.basix_cell()
        self.qpoints, self.qweights = basix.make_quadrature(cell, self.qdeg)
        nq = len(self.qweights)
        Q6 = dolfinx.fem.functionspace(mesh, basix.ufl.quadrature_element(cell, value_shape=(6,), degree=self.qdeg))
        Q66 = dolfinx.fem.functionspace(mesh, basix.ufl.quadrature_element(cell, value_shape=(6, 6), degree=self.qdeg))
        if Q6.dofmap.list.shape[1] != nq:
            raise RuntimeError("quadrature space and rule disagree on the number of points")
        self.sig_q = dolfinx.fem.Function(Q6, name="stress_mandel")
        self.C_q = dolfinx.fem.Function(Q66, name="tangent_change_mandel")  # C_t - C_el
        self.n_owned_cells = mesh.topology.index_map(3).size_local
        self._cells = np.arange(self.n_owned_cells, dtype=np.int32)
        self._qdofs = Q6.dofmap.list[: self.n_owned_cells].ravel()
        self.nq = nq
        md = {"quadrature_degree": self.qdeg, "quadrature_scheme": "default"}
        dxm = ufl.Measure("dx", domain=mesh, metadata=md)
        v = ufl.TestFunction(self.V)
        du = ufl.TrialFunction(self.V)
        self._F_form = dolfinx.fem.form(ufl.inner(self.sig_q, mandel_strain(v)) * dxm)
        # tangent = elastic matrix + the change of the material tangent, integrated over
        # the cells with plastic points only (compiled once, created per iteration for
        # the current cells): assembly cost follows the plastic zone
        dxp = ufl.Measure("dx", domain=mesh, metadata=md, subdomain_id=1)
        self._dJ_compiled = dolfinx.fem.compile_form(
            self.comm, ufl.inner(ufl.dot(self.C_q, mandel_strain(du)), mandel_strain(v)) * dxp)
        if self.platen_set is not None:
            self._Fp_form = dolfinx.fem.form(self.platen_set.residual(self._u, v))
            with self._frame_ctx():
                self.platen_set.setup()
            self._pvec = dolfinx.fem.petsc.create_vector(self.V)
        self._strain_expr = dolfinx.fem.Expression(mandel_strain(self._u), self.qpoints)
        # material at the points (cell values repeated over the cell's points)
        V0 = self.E.function_space
        cdofs = V0.dofmap.list[: self.n_owned_cells, 0]
        E_c = self.E.x.array[cdofs]
        rep = lambda a: np.repeat(np.asarray(a, float), nq)  # noqa: E731
        K, mu = bulk_shear(E_c, self.nu)
        self.mat = PointMaterial(rep(K), rep(mu), rep(self.sigma_c_cells[: self.n_owned_cells]),
                                 rep(self.sigma_t_cells[: self.n_owned_cells]), rep(E_c),
                                 self.softening)
        npts = self.n_owned_cells * nq
        self.eps_p = np.zeros((npts, 6))
        self.kappa = np.zeros(npts)
        self._trial = None
        self.C_el = elastic_tangent(self.mat.K, self.mat.mu)
        # matrices and vectors
        self.Kt = self.A.duplicate(copy=True)  # the elastic matrix's sparsity and values
        if self._nullspace is not None:
            self.Kt.setNearNullSpace(self._nullspace)
        self.Kt_op = self.platen_set.operator(self.Kt) if self.platen_set is not None else self.Kt
        self._P = None  # preconditioner matrix once refreshed (else the elastic self.A)
        self._rvec = dolfinx.fem.petsc.create_vector(self.V)
        self._du = dolfinx.fem.Function(self.V)
        # Dirichlet dofs (owned, unrolled) and their reference values
        n_own_dofs = self.V.dofmap.index_map.size_local * 3
        dd = [bc.dof_indices()[0] for bc in self.bcs]
        D = np.unique(np.concatenate(dd)) if dd else np.zeros(0, np.int32)
        self._D = D[D < n_own_dofs].astype(np.int32)
        g = dolfinx.fem.Function(self.V)
        dolfinx.fem.petsc.set_bc(g.x.petsc_vec, self.bcs)
        g.x.scatter_forward()
        self.g_ref = g.x.array.copy()
        self.timers = {}
        self._state_ready = True

    def _record_elastic(self):
        """The elastic solution for the reference values (scale 1) as the start of the
        pushover: its displacement, stress and reaction force (N per unit scale)."""
        self.set_dirichlet_scale(1.0)
        self._u_el = self._u.x.array.copy()
        self._u_commit = self._u_el.copy()
        self._u_prev = np.zeros_like(self._u_el)
        self._sigma_el = np.einsum("nij,nj->ni", self.C_el, self.point_strains())
        self._write_q(self.sig_q, self._sigma_el, 6)
        self.elastic_force = self.reaction()

    # ------------------------------------------------------------------ pieces
    def point_strains(self) -> np.ndarray:
        """Total Mandel strain at the owned quadrature points (npts, 6)."""
        with self._frame_ctx():
            e = self._strain_expr.eval(self.mesh, self._cells)
        return np.asarray(e).reshape(-1, 6)

    def _write_q(self, func, values, width):
        arr = func.x.array.reshape(-1, width)
        arr[self._qdofs] = values.reshape(len(self._qdofs), width)

    def constitutive_update(self, tangent: bool = True):
        """Return map at the current displacement from the committed state (trial state)."""
        eps = self.point_strains()
        if self._elastic_only:  # elastic step: no yield anywhere
            r = ReturnResult(np.einsum("nij,nj->ni", self.C_el, eps), self.eps_p, self.kappa,
                             np.zeros(len(eps), bool), np.zeros(len(eps), bool),
                             np.zeros((0, 6, 6)), self.mat.K, self.mat.mu)
        else:
            r = self.criterion.return_map(eps, self.eps_p, self.kappa, self.mat, tangent=tangent,
                                          clip_softening_tangent=self.clip)
        self._trial = r
        self._write_q(self.sig_q, r.sigma, 6)
        if tangent:
            arr = self.C_q.x.array.reshape(-1, 36)
            arr[self._qdofs] = 0.0
            pidx = np.flatnonzero(r.plastic)
            arr[self._qdofs[pidx]] = (r.tangent_plastic - self.C_el[pidx]).reshape(-1, 36)
        return r

    def assemble_tangent(self):
        """Kt = elastic matrix + (C_t - C_el) over the cells with plastic points."""
        plastic_cells = np.flatnonzero(self._trial.plastic.reshape(-1, self.nq).any(axis=1))
        form = dolfinx.fem.create_form(
            self._dJ_compiled, [self.V, self.V], self.mesh,
            {dolfinx.fem.IntegralType.cell: [(1, plastic_cells.astype(np.int32))]},
            {self.C_q: self.C_q}, {})
        self.A.copy(self.Kt, structure=PETSc.Mat.Structure.SAME_NONZERO_PATTERN)
        with self._frame_ctx():
            # Dirichlet rows/columns: zero in the change, the elastic matrix's 1 on the diagonal
            dolfinx.fem.petsc.assemble_matrix(self.Kt, form, bcs=self.bcs, diag=1.0)
        self.Kt.assemble()

    def _assemble_owned(self, vec, form):
        """``vec`` zeroed, ``form`` assembled into it in the solve frame, ghost
        contributions added to their owners."""
        with vec.localForm() as loc:
            loc.set(0.0)
        with self._frame_ctx():
            dolfinx.fem.petsc.assemble_vector(vec, form)
        vec.ghostUpdate(addv=PETSc.InsertMode.ADD, mode=PETSc.ScatterMode.REVERSE)
        return vec

    def assemble_residual(self):
        """Internal-force vector (owned entries, ghost contributions added); with platens
        also their force vector (``self._pvec``, added to the returned one)."""
        b = self._assemble_owned(self._rvec, self._F_form)
        if self.platen_set is not None:
            p = self._assemble_owned(self._pvec, self._Fp_form)
            self.platen_set.correct_residual(p, self._u.x.petsc_vec)
            b.axpy(1.0, p)
        return b

    def _platen_force(self) -> float:
        return self.platen_set.force(self._u.x.petsc_vec) if self.platen_set is not None else 0.0

    def reaction(self, b=None) -> float:
        """Force (N) work-conjugate to the load scale: sum over the constrained DOFs of
        internal force x reference displacement (per mm), plus the platens' forces."""
        b = self.assemble_residual() if b is None else b
        loc = float(np.dot(b.array_r[self._D], self.g_ref[self._D]))
        return self.comm.allreduce(loc, op=MPI.SUM) + self._platen_force()

    def set_dirichlet_scale(self, scale: float):
        """u = scale x reference value on the constrained DOFs (interior untouched); the
        platens move to ``scale`` x their value."""
        arr = self._u.x.array
        D = self._D
        arr[D] = scale * self.g_ref[D]
        self._u.x.scatter_forward()
        if self.platen_set is not None:
            self.platen_set.set_scale(scale)

    def _setup_pc(self, P):
        """(Re)build the preconditioner from matrix P with the configuration's options
        (with tilting platens: the AMG of P plus the tilt deflation, platens.TiltDeflation;
        ``preconditioner="pmg"``: the AMG is the P2/P1 p-multigrid, femur.mechanics.pmg)."""
        serial = self.config.serial_setup_options if self.comm.size == 1 else {}
        gopts = GlobalOptions(serial)
        # the configuration's options present while the hierarchy is (re)built: GAMG
        # creates its levels (and reads their smoother options) at set-up, not at
        # setFromOptions; without them the levels got PETSc's defaults
        popts = PrefixedOptions(self.prefix, self.config.options)
        try:
            if self.preconditioner == "pmg" and self._pmg is None:
                self._pmg = P1CoarsePMG(self.V, self._D, self._frame_ctx, self.prefix + "pmg_",
                                        self.config.options, self.config.serial_setup_options)
                if not (self.platen_set is not None and self.platen_set.n_lowrank):
                    self.ksp.setPC(self._pmg.pc)
            if self.platen_set is not None and self.platen_set.n_lowrank:
                self._setup_deflated_pc(P)
            else:
                if self._pmg is not None:
                    self._pmg.update(P)
                self.ksp.setOperators(self.Kt_op, P)
                self.ksp.getPC().setReusePreconditioner(False)
                self.ksp.setUp()
        finally:
            gopts.clear()
            popts.clear()
        self.ksp.getPC().setReusePreconditioner(True)
        self.pc_setups += 1

    def _setup_deflated_pc(self, P):
        if self._deflation is None:
            # the KSP's configured AMG (or the p-multigrid) becomes the inner PC of a python PC
            # (getPC's wrapper holds a reference: the AMG outlives the KSP's switch to the
            # shell PC; an extra incRef here was never released and leaked the hierarchy,
            # ~50 MB per femur pushover)
            if self._pmg is not None:
                self._amg = self._pmg.pc
            else:
                self._amg = self.ksp.getPC()
            self._deflation = TiltDeflation(self.platen_set)
            shell = PETSc.PC().createPython(self._deflation, comm=self.comm)
            self.ksp.setPC(shell)
            shell.destroy()
        if self._pmg is not None:
            self._pmg.update(P)
        else:
            self._amg.setOperators(P, P)
            self._amg.setReusePreconditioner(False)
            self._amg.setUp()
        self._deflation.rebuild(self._amg, self.Kt_op, P, self.deflation_sweeps,
                               self.deflation_warm_sweeps)
        self.ksp.setOperators(self.Kt_op, P)
        self.ksp.getPC().setReusePreconditioner(False)
        self.ksp.setUp()

    def _refresh_pc(self):
        if self._P is None:
            self._P = self.Kt.duplicate(copy=True)
            if self._nullspace is not None:
                self._P.setNearNullSpace(self._nullspace)
        else:
            self.Kt.copy(self._P, structure=PETSc.Mat.Structure.SAME_NONZERO_PATTERN)
        self._setup_pc(self._P)

    def _linear_solve(self, b, rtol):
        """Solve Kt du = -b (homogeneous Dirichlet); returns (ok, its, reason)."""
        ksp = self.ksp
        P = self._P if self._P is not None else self.A
        ksp.setOperators(self.Kt_op, P)
        ksp.getPC().setReusePreconditioner(True)
        ksp.setInitialGuessNonzero(False)
        ksp.setTolerances(rtol=rtol)
        b.scale(-1.0)
        x = self._du.x.petsc_vec
        try:
            ksp.solve(b, x)
        except PETSc.Error as exc:
            b.scale(-1.0)
            return False, 0, f"PETSc error {exc.ierr}"
        b.scale(-1.0)
        reason = ksp.getConvergedReason()
        return reason > 0, ksp.getIterationNumber(), reason_name(reason)

    # ------------------------------------------------------------------ Newton
    def _tick(self, key, t0):
        self.timers[key] = self.timers.get(key, 0.0) + time.perf_counter() - t0

    def _evaluate(self):
        """Return map and residual at the current displacement: (residual vector with the
        constrained entries zeroed, relative residual); sets ``self.force``."""
        t0 = time.perf_counter()
        self.constitutive_update(tangent=True)
        self._tick("return_map", t0)
        t0 = time.perf_counter()
        b = self.assemble_residual()
        arr = b.array
        react = arr[self._D]
        force = float(np.dot(react, self.g_ref[self._D]))
        arr[self._D] = 0.0
        # reaction scale: the forces on the constrained DOFs and those of the platens
        pr = self._pvec.array_r if self.platen_set is not None else np.zeros(0)
        sums = self.comm.allreduce(np.array([float(arr @ arr), float(react @ react) + float(pr @ pr),
                                             force]), op=MPI.SUM)
        self._tick("residual", t0)
        rn, scale = np.sqrt(sums[0]), np.sqrt(sums[1])
        self.force = float(sums[2]) + self._platen_force()
        return b, (rn / scale if scale > 0 else rn)

    def _gdot(self, b) -> float:
        """Global dot product residual . correction (owned entries)."""
        return self.comm.allreduce(float(b.array @ self._du.x.petsc_vec.array), op=MPI.SUM)

    def newton(self, rtol: float = 1e-8, max_it: int = 25) -> NewtonInfo:
        """Equilibrium at the current Dirichlet values from the current iterate.  Sets
        ``self.force`` (the reaction along the prescribed displacement, N).

        Each Newton correction du (homogeneous Dirichlet values) is followed by a line
        search on g(a) = r(u + a du).du, the derivative of the incremental potential
        along du (g(0) < 0): the full step is kept if |g(1)| <= 0.8 |g(0)| or the
        potential still decreases at a = 1; otherwise secant steps on g (at most
        ``max_line_search``), each one return map and residual."""
        self._setup_state()
        lin_its, r_prev = 0, None
        setups0 = self.pc_setups
        final = False  # inexact Newton: the closing correction to ksp_rtol_final is running
        b, rel = self._evaluate()
        for it in range(max_it + 1):
            info = lambda ok, why: NewtonInfo(ok, it, lin_its, float(rel), why,  # noqa: E731
                                              self.pc_setups - setups0)
            if not np.isfinite(rel):
                return info(False, "non-finite residual")
            if rel <= rtol:
                if final or self.ksp_rtol_fixed is not None or self.ksp_rtol_final is None:
                    return info(True, "converged")
                final = True
            if it == max_it:
                return info(False, f"no convergence in {max_it} Newton iterations "
                                   f"(relative residual {rel:.3e} > {rtol:g})")
            if r_prev is not None and rel > 1e3 * r_prev and it > 2:
                return info(False, f"diverging Newton residual ({rel:.3e})")
            if self.ksp_rtol_fixed is not None:
                eta = self.ksp_rtol_fixed
            elif final:
                eta = self.ksp_rtol_final
            else:
                # inexact Newton: Eisenstat-Walker (choice 2) forcing term, clipped; once
                # the predicted next residual (quadratic model C rel^2, C from the last
                # step) is below the tolerance, solve just accurately enough for it
                if r_prev is not None and (rel / r_prev**2) * rel**2 < rtol:
                    eta = 0.3 * rtol / rel
                elif r_prev is None:
                    eta = self.ksp_rtol_first
                else:
                    eta = min(self.ksp_rtol_max, 0.9 * (rel / r_prev) ** 2)
                eta = min(max(eta, self.ksp_rtol_min), self.ksp_rtol_first)
            r_prev = rel
            t0 = time.perf_counter()
            self.assemble_tangent()
            self.tangent_assemblies += 1
            self._tick("tangent", t0)
            t0 = time.perf_counter()
            if self.pc_refresh == "always" or (self.pc_refresh == "increment" and it == 0):
                self._refresh_pc()
            ok, its, reason = self._linear_solve(b, eta)
            lin_its += its
            if not ok and self.pc_refresh != "never":  # retry with a fresh hierarchy
                self._refresh_pc()
                ok, its, reason = self._linear_solve(b, eta)
                lin_its += its
            self._tick("linear_solve", t0)
            if not ok:
                return info(False, f"linear solve failed: {reason}")
            b, rel = self._line_search(b)
        return info(False, "unreachable")  # pragma: no cover

    def _line_search(self, b0):
        """u += a du with a from the line search (see newton); returns (b, rel) there."""
        g0 = self._gdot(b0)
        u0 = self._u.x.array.copy()
        du = self._du.x.array
        a_lo, g_lo, a = 0.0, g0, 1.0
        for k in range(self.max_line_search + 1):
            self._u.x.array[:] = u0 + a * du
            self._u.x.scatter_forward()
            b, rel = self._evaluate()
            g = self._gdot(b)
            if not (g0 < 0) or g <= 0 or abs(g) <= 0.8 * abs(g0) or k == self.max_line_search \
                    or not np.isfinite(g):
                if k:
                    self.line_searches += 1
                return b, rel
            # overshoot (g > 0): secant between the last point with g < 0 and this one
            a_new = a_lo + (a - a_lo) * (-g_lo) / (g - g_lo)
            a = float(np.clip(a_new, a_lo + 0.1 * (a - a_lo), a_lo + 0.9 * (a - a_lo)))
        return b, rel  # pragma: no cover

    def first_yield_scale(self) -> float:
        """Scale of the reference Dirichlet values at which the first point yields
        (elastic solution; inf if no point can yield)."""
        self.setup_plastic()
        r = self.criterion.yield_ratio(self._sigma_el, self.mat)
        rmax = self.comm.allreduce(float(r.max()) if r.size else 0.0, op=MPI.MAX)
        return 1.0 / rmax if rmax > 0 else np.inf

    def start_from_elastic(self, scale: float):
        """Committed state = the elastic solution (from ``solve()``) scaled by ``scale``
        (no point may exceed its yield stress: scale <= first-yield factor)."""
        self.setup_plastic()
        self._u.x.array[:] = scale * self._u_el
        self._u.x.scatter_forward()
        if self.platen_set is not None:
            self.platen_set.set_scale(scale)
        self.constitutive_update(tangent=False)
        self.force = scale * self.elastic_force
        self._u_prev = np.zeros_like(self._u_commit)
        self._u_commit = self._u.x.array.copy()

    # ------------------------------------------------------------------ state
    def commit(self):
        """Accept the current iterate: the trial internal variables become the state."""
        r = self._trial
        self.eps_p = r.eps_p.copy()
        self.kappa = r.kappa.copy()
        self._u_prev = self._u_commit
        self._u_commit = self._u.x.array.copy()

    def restore(self):
        """Back to the last committed displacement (after a failed increment)."""
        self._u.x.array[:] = self._u_commit
        self._u.x.scatter_forward()

    def predict(self, ratio: float):
        """Extrapolated start for the next increment: u_n + ratio (u_n - u_{n-1})."""
        self._u.x.array[:] = self._u_commit + ratio * (self._u_commit - self._u_prev)
        self._u.x.scatter_forward()

    def close(self):
        op = getattr(self, "Kt_op", None)
        if op is not None and op is not getattr(self, "Kt", None):
            op.destroy()
        for m in (getattr(self, "Kt", None), getattr(self, "_P", None), getattr(self, "_rvec", None),
                  getattr(self, "_pvec", None)):
            if m is not None:
                m.destroy()
        if self.platen_set is not None:
            self.platen_set.destroy()
        if self._deflation is not None:
            self._deflation.destroy()
            if self._pmg is None or self._amg is not self._pmg.pc:  # the p-multigrid frees its own
                self._amg.destroy()
            self._deflation = self._amg = None
        if self._pmg is not None:
            self._pmg.destroy()
            self._pmg = None
        self.Kt = self.Kt_op = self._P = self._rvec = self._pvec = None
        super().close()


__all__ = ["PlasticitySolver", "NewtonInfo", "mandel_strain", "quadrature_degree_for"]
