"""Mechanics: linear elasticity (DOLFINx + PETSc), load cases, fracture load, Abaqus export.

Units: mm, N, MPa.  Public API::

    solve(bone, load_case, material=None, order=1, solver="gamg") -> MechanicsResult
    fracture_load(bone, load_case, material=None, criterion="principal_strain", region=None)
    pushover(bone, load_case, material=None, yield_model=None, ...) -> PushoverResult
    SingleLegStance, SidewaysFall, AxialCompression
    ElasticitySolver, load_solver_config, export_inp
"""

from femur.mechanics.abaqus import export_inp
from femur.mechanics.elasticity import ElasticitySolver, SolveInfo
from femur.mechanics.failure import (
    EPS_COMPRESSION,
    EPS_TENSION,
    FractureResult,
    evaluate_criterion,
    fracture_load,
)
from femur.mechanics.loadcases import (
    FALL_DIRECTIONS,
    AxialCompression,
    LoadInfo,
    SidewaysFall,
    SingleLegStance,
)
from femur.mechanics.problem import MechanicsResult, resolve_material, solve
from femur.mechanics.plasticity import DruckerPrager, Softening, VonMises
from femur.mechanics.pushover import pushover
from femur.mechanics.pushover_result import PushoverResult
from femur.mechanics.yield_laws import YIELD_LAWS, YieldModel, default_yield_model, get_yield_law
from femur.mechanics.solvers import SolverConfig, available_solvers, load_solver_config

__all__ = [
    "solve",
    "fracture_load",
    "evaluate_criterion",
    "SingleLegStance",
    "SidewaysFall",
    "AxialCompression",
    "FALL_DIRECTIONS",
    "ElasticitySolver",
    "SolveInfo",
    "MechanicsResult",
    "FractureResult",
    "LoadInfo",
    "export_inp",
    "load_solver_config",
    "available_solvers",
    "SolverConfig",
    "resolve_material",
    "EPS_TENSION",
    "EPS_COMPRESSION",
    "pushover",
    "PushoverResult",
    "YieldModel",
    "default_yield_model",
    "get_yield_law",
    "YIELD_LAWS",
    "Softening",
    "VonMises",
    "DruckerPrager",
]
