"""Mechanics: density-modulus laws (``materials``), linear elasticity (DOLFINx + PETSc),
load cases, failure criteria and fracture load, strength of a bone (``strength``: load
cases, regions and the names of the strength quantities), Abaqus export.

Units: mm, N, MPa.  Public API::

    solve(bone, load_case, material=None, order=1, solver="gamg") -> MechanicsResult
    fracture_load(bone, load_case, material=None, criterion="principal_strain", region=None)
    solve_pushover(bone, load_case, material=None, yield_model=None, ...) -> PushoverSolution
    (``femur.pushover`` wraps it with a plot and files)
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
from femur.mechanics.pushover import solve_pushover
from femur.mechanics.pushover_result import PushoverSolution
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
    "solve_pushover",
    "PushoverSolution",
    "YieldModel",
    "default_yield_model",
    "get_yield_law",
    "YIELD_LAWS",
    "Softening",
    "VonMises",
    "DruckerPrager",
]
