"""Two-level p-multigrid preconditioner for P2 elasticity: P2 smoother + GAMG on P1.

Smoothed-aggregation AMG applied directly to quadratic (P2) tetrahedra converges slowly:
measured on the parametric femur (6 mm, 57,789 DOF) with the pushover's platens, the
elastic step (one solve to 1e-10) needed 298 CG iterations with GAMG and 143 with this
preconditioner (half the CPU time); a P1 model of the femur needs ~50 with GAMG.  Over a
whole pushover of that femur: 4,036 -> 1,675 CG iterations (benchmarks/README.md).
The standard remedy (p-multigrid) uses the linear (P1) space on the *same* mesh as the
coarse level:

    level 1 (fine):   the P2 operator A, Chebyshev/Jacobi smoothing,
    level 0 (coarse): A_c = I^T A I, I the P1 -> P2 interpolation (nodal, exact for the
                      P1 functions), approximately inverted by one GAMG V-cycle with the
                      P1 rigid-body modes as near-nullspace.

Rows of I at constrained (Dirichlet) P2 DOFs are zeroed, so the coarse correction never
moves them (the fine matrix has identity rows there); A_c stays SPD.  The preconditioner
is a fixed linear operator (a V-cycle with fixed smoothing steps), so it is symmetric
and CG applies.  ``update(A)`` redoes the Galerkin product (same sparsity) and the set-up
of the smoother and of the coarse GAMG (which keeps its prolongators when
``pc_gamg_reuse_interpolation`` is set).

The PETSc options of the coarse AMG are the solver configuration's (``solvers/*.toml``,
e.g. ``pc_gamg_*`` and ``mg_levels_*``), placed under ``<prefix>mg_coarse_``.
"""

from __future__ import annotations

import numpy as np

from femur.core.mpi import MPI  # noqa: F401  (MPI before dolfinx)
import dolfinx  # noqa: E402
import dolfinx.fem.petsc  # noqa: E402
from petsc4py import PETSc  # noqa: E402

from femur.mechanics.elasticity import rigid_body_modes  # noqa: E402
from femur.mechanics.solvers import GlobalOptions, PrefixedOptions  # noqa: E402

#: smoother of the P2 level: Chebyshev of this degree (pre and post) with Jacobi
FINE_SMOOTHING_STEPS = 2
FINE_PC = "jacobi"
#: Chebyshev bounds of the P2 level: (0.1, 1.2) x the largest eigenvalue of diag(A)^-1 A
#: estimated by 20 CG iterations. PETSc's default estimate (10 iterations, x 1.1) fell short
#: on the anatomical femur's trial mesh (4 mm, P2, 2 ranks, with platens): the smoother then
#: amplified the top of the spectrum and CG stopped with DIVERGED_INDEFINITE_PC in the elastic
#: step; x 1.2 with 20 iterations (and x 1.3 with 10, x 1.1 with 30) converged with the same
#: CG count (330 vs 321-325 over the first 0.6 mm).
FINE_ESTEIG = "0,0.1,0,1.2"
FINE_ESTEIG_ITS = 20
#: options of the coarse (P1) GAMG that replace the configuration's: symmetric SOR level
#: smoothing (measured, elastic step of the parametric femur 6 mm P2 with platens: 179 CG
#: iterations with the configuration's Chebyshev/Jacobi levels, 143 with SOR, at less CPU)
COARSE_OVERRIDES = {"mg_levels_pc_type": "sor"}
#: option names of the configuration that configure the KSP itself, not the AMG
_KSP_KEYS = ("ksp_type", "ksp_rtol", "ksp_atol", "ksp_max_it", "ksp_norm_type", "pc_type")


class P1CoarsePMG:
    """PCMG with two levels (P2 fine, P1 coarse by GAMG); see the module docstring.

    V : the P2 vector space; constrained : local (owned, unrolled) indices of the
    Dirichlet DOFs of V; frame_ctx : context manager putting the mesh in the solve frame
    (for the rigid-body modes); amg_options / serial_options : the configuration's."""

    def __init__(self, V, constrained, frame_ctx, prefix: str, amg_options: dict,
                 serial_options: dict | None = None, smoothing_steps: int | None = None,
                 fine_pc: str | None = None):
        mesh = V.mesh
        self.comm = mesh.comm
        self.prefix = prefix
        self.V1 = dolfinx.fem.functionspace(mesh, ("Lagrange", 1, (3,)))
        I = dolfinx.fem.petsc.interpolation_matrix(self.V1, V)
        I.assemble()
        rstart = I.getOwnershipRange()[0]
        rows = np.asarray(constrained, dtype=np.int32) + rstart
        I.zeroRows(rows.astype(PETSc.IntType), diag=0.0)
        self.I = I
        with frame_ctx():
            self._ns_vecs = rigid_body_modes(self.V1)
        self._ns = PETSc.NullSpace().create(vectors=self._ns_vecs, comm=self.comm)
        self.Ac = None
        amg = {**{k: v for k, v in amg_options.items() if k not in _KSP_KEYS}, **COARSE_OVERRIDES}
        opts = {f"mg_coarse_{k}": v for k, v in amg.items()}
        steps = FINE_SMOOTHING_STEPS if smoothing_steps is None else smoothing_steps
        opts.update({"mg_coarse_ksp_type": "preonly", "mg_coarse_pc_type": "gamg",
                     "mg_levels_ksp_type": "chebyshev", "mg_levels_pc_type": fine_pc or FINE_PC,
                     "mg_levels_ksp_max_it": int(steps),
                     "mg_levels_ksp_chebyshev_esteig": FINE_ESTEIG,
                     "mg_levels_esteig_ksp_max_it": FINE_ESTEIG_ITS})
        self._options = opts
        self._serial = serial_options or {}
        self.pc = PETSc.PC().create(self.comm)
        self.pc.setOptionsPrefix(prefix)
        self.pc.setType(PETSc.PC.Type.MG)
        self.pc.setMGLevels(2)
        self.pc.setMGType(PETSc.PC.MGType.MULTIPLICATIVE)
        self.pc.setMGCycleType(PETSc.PC.MGCycleType.V)
        self.pc.setMGInterpolation(1, I)
        self._with_options(self.pc.setFromOptions)
        self.setups = 0

    def _with_options(self, fn):
        popts = PrefixedOptions(self.prefix, self._options)
        gopts = GlobalOptions(self._serial if self.comm.size == 1 else {})
        try:
            return fn()
        finally:
            gopts.clear()
            popts.clear()

    def update(self, A):
        """(Re)build for the fine matrix ``A`` (the assembled P2 operator)."""
        if self.Ac is None:
            self.Ac = A.ptap(self.I)
            self.Ac.setBlockSize(3)
            self.Ac.setNearNullSpace(self._ns)
        else:
            A.ptap(self.I, result=self.Ac)
        self.pc.setOperators(A, A)
        coarse = self.pc.getMGCoarseSolve()
        coarse.setOperators(self.Ac, self.Ac)
        self.pc.setReusePreconditioner(False)
        self._with_options(self.pc.setUp)
        self.setups += 1

    def apply(self, x, y):
        self.pc.apply(x, y)

    def destroy(self):
        for obj in (self.pc, self.I, self.Ac, self._ns, *self._ns_vecs):
            if obj is not None:
                obj.destroy()
        self.pc = self.I = self.Ac = self._ns = None
        self._ns_vecs = []


__all__ = ["P1CoarsePMG", "FINE_SMOOTHING_STEPS"]
