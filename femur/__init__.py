"""femur: finite-element engine for osteoporosis treatment, bone strength and fracture risk.

Importing femur initialises MPI (mpi4py) before dolfinx and petsc4py, as the
dolfinx-solver-real wheel requires.
"""

from femur._mpi import MPI  # noqa: F401  (must stay first)

__version__ = "0.1.0"

from femur.errors import DensityError, FemurError, InputError, MeshError, SolverError  # noqa: E402
from femur.geometry.bone import Bone  # noqa: E402

__all__ = [
    "MPI",
    "Bone",
    "FemurError",
    "InputError",
    "MeshError",
    "DensityError",
    "SolverError",
    "__version__",
]
