"""Exceptions raised for bad user input or failed computations.

Every message names the file, field or parameter at fault and what was
expected, so that nobody gets a traceback from deep inside PETSc or meshio.
"""


class FemurError(Exception):
    """Base class of all femur errors."""


class InputError(FemurError, ValueError):
    """Bad user input: a file, field or parameter that is not what was expected."""


class MeshError(InputError):
    """A mesh file or mesh object that cannot be used (cell type, inverted cells, tags...)."""


class DensityError(InputError):
    """A density field with impossible values or in the wrong unit."""


class SolverError(FemurError, RuntimeError):
    """A linear solve that did not converge (carries PETSc's converged reason)."""
