"""Exceptions raised for bad user input or failed computations, and the one number check.

Every message names the file, field or parameter at fault and what was
expected, so that nobody gets a traceback from deep inside PETSc or meshio.
"""

import math


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


def check_number(value, what: str, *, positive: bool = False, nonneg: bool = False) -> float:
    """``value`` as a finite float, or an InputError that names ``what`` (e.g.
    ``"patient: age_years"``) and what was expected."""
    try:
        x = float(value)
    except (TypeError, ValueError):
        raise InputError(f"{what} must be a number, got {value!r}") from None
    if not math.isfinite(x):
        raise InputError(f"{what} must be finite, got {value!r}")
    if positive and x <= 0:
        raise InputError(f"{what} must be > 0, got {x}")
    if nonneg and x < 0:
        raise InputError(f"{what} must be >= 0, got {x}")
    return x
