"""Numerical helpers of the habitual-loading adaptation (``femur.habitual_adaptation``):
vertex averaging of cell fields (the node-based scheme), the mass-conserving reference
stimulus, the strain-energy-density expression, and the young-adult mean density.
"""

from __future__ import annotations

import numpy as np

from femur._mpi import MPI
import dolfinx  # noqa: E402
import ufl  # noqa: E402


def young_adult_mean_density(bone) -> float:
    """Volume-weighted mean of the young-adult compartment densities of ``bone``
    (``femur.density.T_SCORE_BASE_G_CM3``: femur cortex 1.85, cancellous 0.35 g/cm3) -- the
    bone mass the compartment model starts from.  Bones without cortical/trabecular tags:
    the mean of the two."""
    from femur.density import T_SCORE_BASE_G_CM3

    base = T_SCORE_BASE_G_CM3["vertebra" if bone.kind == "vertebra" else "femur"]
    if not {"cortical", "trabecular"} <= set(bone.cell_ids or {}):
        return 0.5 * (base["cortical"] + base["trabecular"])
    n = bone.num_owned_cells
    vol = bone.cell_volumes()[:n]
    vc = float(np.sum(vol[bone.compartment_mask("cortical")[:n]]))
    vt = float(np.sum(vol[bone.compartment_mask("trabecular")[:n]]))
    vc, vt = bone.comm.allreduce(np.array([vc, vt]), op=MPI.SUM)
    return float((vc * base["cortical"] + vt * base["trabecular"]) / (vc + vt))


class NodeAverager:
    """Volume-weighted vertex average of a DG0 field (lumped P1 mass; MPI-safe assembly)
    and the vertex -> cell mean."""

    def __init__(self, mesh):
        self.V1 = dolfinx.fem.functionspace(mesh, ("Lagrange", 1))
        self.V0 = dolfinx.fem.functionspace(mesh, ("DG", 0))
        v = ufl.TestFunction(self.V1)
        self.cell_field = dolfinx.fem.Function(self.V0)
        self.cell_nodes = self.V1.dofmap.list
        self.n_owned_nodes = self.V1.dofmap.index_map.size_local
        self._L = dolfinx.fem.form(self.cell_field * v * ufl.dx)
        mass = dolfinx.fem.assemble_vector(dolfinx.fem.form(v * ufl.dx))
        mass.scatter_reverse(dolfinx.la.InsertMode.add)
        mass.scatter_forward()
        self.mass = mass.array.copy()

    def to_nodes(self, cell_values) -> np.ndarray:
        self.cell_field.x.array[:] = cell_values
        self.cell_field.x.scatter_forward()
        b = dolfinx.fem.assemble_vector(self._L)
        b.scatter_reverse(dolfinx.la.InsertMode.add)
        b.scatter_forward()
        return b.array / self.mass

    def to_cells(self, nodal_values) -> np.ndarray:
        """Mean of each local cell's vertex values (= the P1 interpolant at the centroid);
        ``nodal_values`` must agree on ghost nodes (as :meth:`to_nodes` returns them)."""
        return np.asarray(nodal_values)[self.cell_nodes].mean(axis=1)


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
    from femur.mechanics.elasticity import strain, stress

    V0 = dolfinx.fem.functionspace(es.mesh, ("DG", 0))
    U = dolfinx.fem.Function(V0)
    expr = dolfinx.fem.Expression(0.5 * ufl.inner(stress(es.u, es.E, es.nu), strain(es.u)),
                                  V0.element.interpolation_points)
    return U, expr


__all__ = ["NodeAverager", "mass_reference", "sed_expression", "young_adult_mean_density"]
