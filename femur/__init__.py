"""femur: finite-element engine for osteoporosis treatment, bone strength and fracture risk.

The package is a pipeline of stages, each a subpackage that imports only the stages
before it (ARCHITECTURE.md): ``core`` -> ``geometry`` -> ``treatments`` -> ``remodeling``
-> ``mechanics`` -> ``outcomes`` -> ``exports`` -> ``workflows`` -> ``study`` ->
``calibration`` / ``cli``.

The public names below are resolved on first use (PEP 562), so that ``import
femur.treatments`` loads only what that stage needs (no DOLFINx); ``import femur`` itself
initialises MPI (mpi4py) first, as the dolfinx-solver-real wheel requires. Units: mm, N,
MPa, g/cm3 (apparent density).

    import femur
    bone = femur.build_bone("femur", t_score=-2.5)   # the anatomical femur (default)
    result = femur.fracture_load(bone, femur.SidewaysFall(), region="neck")
    print(result.stiffness_n_per_mm, result.fracture_load_n, result.failure_site)
"""

from importlib import import_module

from femur.core.mpi import MPI  # noqa: F401  (must stay first)
from femur.core.version import __version__  # noqa: E402

#: public name -> module that defines it
_PUBLIC = {
    "FemurError": "femur.core.errors", "InputError": "femur.core.errors",
    "MeshError": "femur.core.errors", "DensityError": "femur.core.errors",
    "SolverError": "femur.core.errors",
    "Bone": "femur.geometry.bone", "ProximalFemur": "femur.geometry.femur_model",
    "AnatomicalFemur": "femur.geometry.anatomical", "FemurShape": "femur.geometry.morph",
    "bone_with_adapted_density": "femur.geometry.adapted_density",
    "Vertebra": "femur.geometry.vertebra", "load_mesh": "femur.geometry.mesh_io",
    "assign_density": "femur.geometry.density", "validate_density": "femur.geometry.density",
    "Regimen": "femur.treatments.regimen", "TreatmentSequence": "femur.treatments.regimen",
    "Patient": "femur.remodeling.patient",
    "LAWS": "femur.mechanics.materials", "MaterialModel": "femur.mechanics.materials",
    "default_material": "femur.mechanics.materials", "get_law": "femur.mechanics.materials",
    "AxialCompression": "femur.mechanics.loadcases", "SidewaysFall": "femur.mechanics.loadcases",
    "SingleLegStance": "femur.mechanics.loadcases",
    "ElasticitySolver": "femur.mechanics.elasticity", "export_inp": "femur.mechanics.abaqus",
    "fracture_load": "femur.mechanics.failure", "solve": "femur.mechanics.problem",
    "load_solver_config": "femur.mechanics.solvers",
    "pushover": "femur.workflows.pushover", "PushoverResult": "femur.workflows.pushover",
    "areal_bmd": "femur.outcomes.dxa", "t_score": "femur.outcomes.references",
    "bone_with_t_score": "femur.workflows.t_score", "build_bone": "femur.workflows.bones",
    "simulate": "femur.workflows.simulation", "Simulation": "femur.workflows.simulation",
    "TimeCourse": "femur.workflows.timecourse",
    "simulate_sites": "femur.workflows.systemic",
    "Study": "femur.study",
}

__all__ = ["MPI", "__version__", *sorted(_PUBLIC)]


def __getattr__(name):
    if name in _PUBLIC:
        value = getattr(import_module(_PUBLIC[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'femur' has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | set(_PUBLIC))
