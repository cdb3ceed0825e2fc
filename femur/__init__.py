"""femur: finite-element engine for osteoporosis treatment, bone strength and fracture risk.

Importing femur initialises MPI (mpi4py) before dolfinx and petsc4py, as the
dolfinx-solver-real wheel requires.  Units: mm, N, MPa, g/cm3 (apparent density).

    import femur
    bone = femur.bone_with_t_score(femur.ProximalFemur().build(), -2.5)
    result = femur.fracture_load(bone, femur.SidewaysFall(), region="neck")
    print(result.stiffness_n_per_mm, result.fracture_load_n, result.failure_site)
"""

from femur._mpi import MPI  # noqa: F401  (must stay first)

__version__ = "0.1.0"

from femur.errors import DensityError, FemurError, InputError, MeshError, SolverError  # noqa: E402
from femur.geometry.bone import Bone  # noqa: E402
from femur.geometry.femur_model import ProximalFemur  # noqa: E402
from femur.geometry.vertebra import Vertebra  # noqa: E402
from femur.geometry.mesh_io import load_mesh  # noqa: E402
from femur.materials import LAWS, MaterialModel, default_material, get_law  # noqa: E402
from femur.density import assign_density, bone_with_t_score, validate_density  # noqa: E402
from femur.dxa import areal_bmd, t_score  # noqa: E402
from femur.mechanics import (  # noqa: E402
    AxialCompression,
    ElasticitySolver,
    SidewaysFall,
    SingleLegStance,
    export_inp,
    fracture_load,
    load_solver_config,
    pushover,
    solve,
)

from femur.simulation import Simulation, SimulationResult, simulate  # noqa: E402

__all__ = [
    "simulate", "Simulation", "SimulationResult",
    "MPI", "Bone", "FemurError", "InputError", "MeshError", "DensityError", "SolverError",
    "ProximalFemur", "Vertebra", "load_mesh",
    "LAWS", "MaterialModel", "default_material", "get_law",
    "assign_density", "bone_with_t_score", "validate_density", "areal_bmd", "t_score",
    "AxialCompression", "ElasticitySolver", "SidewaysFall", "SingleLegStance",
    "export_inp", "fracture_load", "load_solver_config", "solve", "pushover",
    "__version__",
]
