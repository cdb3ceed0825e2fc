"""High-level solve: bone + load case + material -> MechanicsResult (mm, N, MPa)."""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np

from femur.core.mpi import MPI
import dolfinx  # noqa: E402
import ufl  # noqa: E402

from femur.core.errors import InputError  # noqa: E402
from femur.mechanics.elasticity import (  # noqa: E402
    ElasticitySolver,
    SolveInfo,
    lame_parameters,
    strain,
)
from femur.mechanics.loadcases import LoadInfo, facet_mean  # noqa: E402
from femur.mechanics.materials import default_material  # noqa: E402

DEFAULT_POISSON_RATIO = 0.3  # isotropic bone (biomechanics.md section 1.6 / 6.2)


def resolve_material(bone, material=None, nu: float | None = None):
    """(modulus, poisson_ratio) from a MaterialModel (``.modulus_field(bone)``,
    ``.poisson_ratio``), a float (MPa), a per-cell array, or a DG0 Function (MPa).
    ``material=None`` uses ``femur.mechanics.materials.default_material(bone)``."""
    if material is None:
        material = default_material(bone)
    if hasattr(material, "modulus_field"):
        E = material.modulus_field(bone)
        nu = float(getattr(material, "poisson_ratio", DEFAULT_POISSON_RATIO)) if nu is None else nu
    elif isinstance(material, (int, float, np.ndarray, dolfinx.fem.Function)):
        E = material
    else:
        raise InputError(
            f"material must be a MaterialModel, a modulus (MPa) or a DG0 Function, got {type(material)}"
        )
    return E, (DEFAULT_POISSON_RATIO if nu is None else float(nu))


@dataclass
class MechanicsResult:
    """Result of one linear-elastic solve (bone frame).

    strain_points: (n_local_cells, n_pts, 3, 3) strain tensor at each cell's evaluation
    points (P1: the cell value, DG0; P2: the 4 vertices of the linear strain, DG1).
    principal_strains: (n_local_cells, n_pts, 3), eigenvalues descending (e1 >= e2 >= e3);
    computed when first asked for (:meth:`principal_strains_of` gives a subset of cells
    without computing the rest: the strength criterion needs its region only).
    """

    bone: object
    load_case: str
    order: int
    dofs: int
    u: "dolfinx.fem.Function"
    strain: "dolfinx.fem.Function"
    strain_points: np.ndarray
    stiffness_n_per_mm: float  # applied force / displacement along it (energy-consistent)
    applied_load_n: float  # force magnitude (force control) or axial reaction (displacement)
    load_displacement_mm: float
    max_displacement_mm: float
    reactions_n: dict
    apparent_strain: float | None
    load: LoadInfo
    info: SolveInfo
    modulus: object
    poisson_ratio: float
    timings: dict = field(default_factory=dict)

    @property
    def principal_strains(self) -> np.ndarray:
        pr = self.__dict__.get("_principal")
        if pr is None:
            pr = self.__dict__["_principal"] = principal_strains(self.strain_points)
        return pr

    def principal_strains_of(self, cells) -> np.ndarray:
        """Principal strains (n, n_pts, 3) of the local ``cells`` only (the same values as
        ``principal_strains[cells]``)."""
        pr = self.__dict__.get("_principal")
        return pr[cells] if pr is not None else principal_strains(self.strain_points[cells])

    @property
    def iterations(self) -> int:
        return self.info.iterations

    def summary(self) -> dict:
        return {
            "bone": getattr(self.bone, "name", ""),
            "load_case": self.load_case,
            "order": self.order,
            "dofs": self.dofs,
            "stiffness_n_per_mm": self.stiffness_n_per_mm,
            "applied_load_n": self.applied_load_n,
            "max_displacement_mm": self.max_displacement_mm,
            "iterations": self.info.iterations,
            **{k: v for k, v in self.timings.items()},
        }


def strain_field(u, order: int):
    """Strain tensor interpolated into DG(order-1) tensor space (exact for simplices); a
    new Function each call. The space and the compiled Expression are kept on ``u`` (a
    solver's displacement is post-processed after every solve, and building them cost as
    much as the interpolation; issue 13); they go with ``u``."""
    hit = getattr(u, "_femur_strain_expression", None)
    if hit is None or hit[0] != order:
        W = dolfinx.fem.functionspace(u.function_space.mesh, ("DG", order - 1, (3, 3)))
        hit = (order, W, dolfinx.fem.Expression(strain(u), W.element.interpolation_points))
        u._femur_strain_expression = hit
    _, W, expr = hit
    eps = dolfinx.fem.Function(W, name="strain")
    eps.interpolate(expr)
    eps.x.scatter_forward()
    return eps


def cell_strains(eps) -> np.ndarray:
    """(n_local_cells, n_pts, 3, 3) strain values per cell from a DG tensor Function."""
    dm = eps.function_space.dofmap.list
    return eps.x.array.reshape(-1, 3, 3)[dm]


def cell_strain_energy_density(u, modulus, nu: float, order: int) -> np.ndarray:
    """Strain energy density psi = lambda/2 tr(eps)^2 + mu eps:eps (MPa = mJ/mm3) per local
    cell, averaged over the cell's evaluation points (:func:`cell_strains`); ``modulus`` is
    the per-cell Young's modulus (MPa), the Lame parameters come from
    :func:`femur.mechanics.elasticity.lame_parameters`."""
    eps = cell_strains(strain_field(u, order))  # (cells, pts, 3, 3)
    tr = np.trace(eps, axis1=-2, axis2=-1)
    ee = np.einsum("...ij,...ij->...", eps, eps)
    lam, mu = lame_parameters(np.asarray(modulus, float)[:, None], nu)
    return (0.5 * lam * tr**2 + mu * ee).mean(axis=1)


def principal_strains(eps_points: np.ndarray) -> np.ndarray:
    """Eigenvalues of symmetric strain tensors, descending along the last axis."""
    ev = np.linalg.eigvalsh(eps_points)
    return ev[..., ::-1]


def make_solver(bone, load_case, material=None, order=1, solver="gamg", options=None, nu=None,
                fast_assembly: bool = True):
    """ElasticitySolver with the load case applied; returns (solver, LoadInfo, E, nu).
    ``fast_assembly``: assemble through the stored P1 stiffness map of the mesh where it
    applies (``femur.mechanics.p1_stiffness``: one rank, P1 tetrahedra, a mesh within the
    map's memory cap)."""
    E, nu = resolve_material(bone, material, nu)
    prepared = load_case.prepare(bone)
    es = ElasticitySolver(bone, E, nu, order=order, solver=solver, options=options,
                          frame=prepared.frame, fast_assembly=fast_assembly)
    info = prepared.apply(es)
    return es, info, E, nu


def postprocess(bone, es: ElasticitySolver, load: LoadInfo, solve_info: SolveInfo, E, nu,
                reactions: bool = True):
    """The MechanicsResult of a solved load case. ``reactions=False``: without the reaction
    forces (``reactions_n`` empty; they need a residual assembly, and a remodeling run's
    strength quantities do not use them)."""
    t0 = time.perf_counter()
    mesh, comm = bone.mesh, bone.comm
    u = es.u
    residual = es.residual_array() if reactions else None  # once for all the facet sets
    forces = {k: es.reaction_force(f, residual) for k, f in load.support_facets.items()} if reactions else {}
    # Stiffness from the strain energy (Clapeyron: F * delta = a(u, u), with delta the
    # patch-mean displacement along the load for a uniform traction, or the prescribed
    # displacement).  Equal to the direct definitions for the exact discrete solution,
    # but its error is quadratic in the Krylov error (Galerkin orthogonality), so the
    # stiffness is partition independent far below the solver tolerance.
    work = comm.allreduce(dolfinx.fem.assemble_scalar(es.energy_form()), op=MPI.SUM)
    if load.control == "force":
        applied = float(load.load_n)
        delta = float(work) / applied
        apparent = None
    else:
        if reactions:
            forces["load_face"] = es.reaction_force(load.load_facets, residual)
        delta = float(load.displacement_mm)
        applied = float(work) / delta
        apparent = None
        if load.gauge_facets is not None and load.height_mm:
            avec = dolfinx.fem.Constant(mesh, np.asarray(load.direction, dtype=float))
            d_sup = facet_mean(mesh, load.gauge_facets[0], ufl.dot(u, avec))
            d_inf = facet_mean(mesh, load.gauge_facets[1], ufl.dot(u, avec))
            apparent = (d_sup - d_inf) / load.height_mm
    stiffness = applied / delta if delta != 0 else float("inf")
    n_owned = es.V.dofmap.index_map.size_local
    umag = np.linalg.norm(u.x.array.reshape(-1, 3)[:n_owned], axis=1)
    umax = comm.allreduce(float(umag.max()) if umag.size else 0.0, op=MPI.MAX)
    eps = strain_field(u, es.order)
    pts = cell_strains(eps)
    t_post = time.perf_counter() - t0
    timings = {"assembly_s": solve_info.assembly_s, "setup_s": solve_info.setup_s,
               "solve_s": solve_info.solve_s, "postprocess_s": t_post}
    return MechanicsResult(
        bone=bone, load_case=load.name, order=es.order, dofs=es.dofs, u=u, strain=eps,
        strain_points=pts, stiffness_n_per_mm=float(stiffness),
        applied_load_n=applied, load_displacement_mm=float(delta), max_displacement_mm=umax,
        reactions_n=forces, apparent_strain=apparent, load=load, info=solve_info, modulus=E, poisson_ratio=nu,
        timings=timings,
    )


def solve(bone, load_case, material=None, order: int = 1, solver="gamg",
          options: dict | None = None, nu: float | None = None) -> MechanicsResult:
    """Solve ``load_case`` on ``bone``: stiffness (N/mm), displacement, strains.

    material: MaterialModel (default ``femur.mechanics.materials.default_material(bone)``), a modulus
    in MPa, a per-cell array or a DG0 Function.  solver: a name in ``solvers/``.
    options: extra PETSc options (unprefixed), e.g. {"ksp_rtol": 1e-10}.
    """
    es, load, E, nu = make_solver(bone, load_case, material, order, solver, options, nu)
    try:
        info = es.solve()
        return postprocess(bone, es, load, info, E, nu)
    finally:
        es.close()
