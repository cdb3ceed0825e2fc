"""MPI bootstrap.

mpi4py must be initialised before dolfinx and petsc4py are imported (the
`dolfinx-solver-real` wheel requires it).  Every femur module imports MPI from
here, and `import femur` imports this module first.
"""

from __future__ import annotations

try:  # the PyPI wheel ships a helper that sets up library paths
    import dolfinx_solver  # noqa: F401
except ImportError:  # conda / docker DOLFINx
    pass

from mpi4py import MPI  # noqa: E402

COMM_WORLD = MPI.COMM_WORLD


def rank0_print(*args, comm=None, **kwargs) -> None:
    """Print from rank 0 of `comm` only (log hygiene for MPI runs)."""
    comm = comm or MPI.COMM_WORLD
    if comm.rank == 0:
        print(*args, **kwargs, flush=True)


__all__ = ["MPI", "COMM_WORLD", "rank0_print"]
