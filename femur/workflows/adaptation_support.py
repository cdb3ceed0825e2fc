"""Numerical helpers of the habitual-loading adaptation
(``femur.workflows.habitual_adaptation``): the mass-conserving reference stimulus and the
strain-energy-density expression.  (Vertex averaging of cell fields, the node-based scheme:
``femur.geometry.node_average``; the young-adult mean density:
``femur.geometry.density.young_adult_mean_density``.)
"""

from __future__ import annotations

import numpy as np

from femur.core.mpi import MPI
import dolfinx  # noqa: E402
import ufl  # noqa: E402

from femur.mechanics.elasticity import strain, stress  # noqa: E402


def mass_reference(step_state, psi, weights, target_mean, comm, guess, rtol: float = 1e-8) -> float:
    """psi* (MPa/day) at which the updated state's weighted mean density equals
    ``target_mean`` (the mean falls monotonically as psi* rises): bracket around ``guess``,
    then bisection in log psi*.  ``weights``: owned entries' volumes (cells) or lumped
    masses (vertices: sum_n m_n rho_n is exactly the volume integral of the cell means)."""
    n = len(weights)
    wsum = comm.allreduce(float(weights.sum()), op=MPI.SUM)

    def excess(log_ref):
        return comm.allreduce(float(np.dot(weights, step_state(psi, np.exp(log_ref))[:n])),
                              op=MPI.SUM) / wsum - target_mean

    a = b = float(np.log(guess))
    width = np.log(1.5)
    for _ in range(200):  # expand until the root is bracketed: excess(a) >= 0 >= excess(b)
        a, b = a - width, b + width
        if excess(a) >= 0 >= excess(b):
            break
        width *= 2.0
    else:
        return float(guess)
    while b - a > rtol:
        mid = 0.5 * (a + b)
        if excess(mid) > 0:
            a = mid
        else:
            b = mid
    return float(np.exp(0.5 * (a + b)))


def sed_expression(es):
    """Expression of the strain energy density U = sigma:eps/2 (MPa) into DG0."""
    V0 = dolfinx.fem.functionspace(es.mesh, ("DG", 0))
    U = dolfinx.fem.Function(V0)
    expr = dolfinx.fem.Expression(0.5 * ufl.inner(stress(es.u, es.E, es.nu), strain(es.u)),
                                  V0.element.interpolation_points)
    return U, expr


__all__ = ["mass_reference", "sed_expression"]
