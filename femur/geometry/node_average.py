"""Vertex averaging of a per-cell (DG0) field on a bone mesh, and back.

Used by the node-based habitual-loading adaptation (``femur.workflows.habitual_adaptation``)
and by the checkerboard measures of ``femur.outcomes.density_pattern``: a cell field is
averaged to the mesh vertices with the lumped P1 mass (volume weighted; assembled, so it is
MPI safe), and a vertex field goes back to the cells as the mean of each cell's four
vertex values (the P1 interpolant at the centroid).
"""

from __future__ import annotations

import numpy as np

from femur.core.mpi import MPI  # noqa: F401  (mpi4py before DOLFINx)
import dolfinx  # noqa: E402
import ufl  # noqa: E402


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
        """Volume-weighted vertex means of a per-cell array (owned + ghost cells)."""
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


__all__ = ["NodeAverager"]
