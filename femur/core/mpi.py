"""MPI bootstrap.

mpi4py must be initialised before dolfinx and petsc4py are imported (the
`dolfinx-solver-real` wheel requires it). Every femur module that imports dolfinx,
petsc4py or ufl imports this module first; `import femur` imports it too.
"""

from __future__ import annotations

try:  # the PyPI wheel ships a helper that sets up library paths
    import dolfinx_solver  # noqa: F401
except ImportError:  # conda / docker DOLFINx
    pass

from mpi4py import MPI  # noqa: E402

COMM_WORLD = MPI.COMM_WORLD

__all__ = ["MPI", "COMM_WORLD"]
