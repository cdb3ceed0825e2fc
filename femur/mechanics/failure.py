"""Linear fracture load from strain criteria (loads scale linearly).

Asymmetric maximum-principal-strain criterion (Schileo, J Biomech 2014;
biomechanics.md sections 2.1-2.2): tensile limit eps_t = 0.73 %, compressive limit
eps_c = 1.04 %, risk factor RF = max(e1 / eps_t, -e3 / eps_c).

Evaluation points (choice): the strain is evaluated where it is exact for simplices --
P1: the constant cell strain (DG0); P2: the linear strain at the 4 cell vertices (DG1),
RF of a cell = its largest point value.  (Q1/Q2 hexahedra: cell centre / vertices of
the DQ interpolant.)  Only owned cells of bone compartments inside ``region`` count.

* criterion="principal_strain": failure load = applied load / max RF (first point to fail).
* criterion="critical_volume": failure needs ``critical_volume_mm3`` of tissue at RF >= 1:
  sort cells by RF (descending, ties by coordinates), accumulate cell volumes, and the
  failure load is applied / RF of the cell at which the volume reaches V_crit.  Global
  selection: every rank contributes only its own top-V_crit cells, so 1 and 2 ranks give
  the same result.
* vertebra (displacement control): the "load" is the reaction force; the 0.2 %-strain
  surrogate (Walle, GigaScience 2025) is the load at which the apparent axial strain of
  the vertebral body (mean endplate displacement difference / height) reaches 0.2 %:
  F = K * 0.002 * height without loading layers; with layers the endplates (not the
  layer faces) are the gauge, so the compliant layers' deformation is not counted.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from scipy.spatial import cKDTree

from femur.core.mpi import MPI
from femur.core.errors import InputError
from femur.geometry.compartments import non_bone_mask
from femur.mechanics.loadcases import facet_geometry
from femur.mechanics.problem import solve

#: Schileo 2014 (biomechanics.md 2.1): femur linear-FE limits
EPS_TENSION = 0.0073
EPS_COMPRESSION = 0.0104
#: Walle 2025 (biomechanics.md 2.2): linear vertebral surrogate at 0.2 % apparent axial strain
SURROGATE_STRAIN = 0.002
DEFAULT_CRITICAL_VOLUME_MM3 = 1.0


@dataclass
class FractureResult:
    bone: str
    load_case: str
    criterion: str
    fracture_load_n: float
    failure_site: dict
    mode: str
    max_rf: float
    rf_at_failure: float
    applied_load_n: float
    stiffness_n_per_mm: float
    dofs: int
    region: str | None = None
    critical_volume_mm3: float | None = None
    strain_surrogate_load_n: float | None = None
    eps_tension: float = EPS_TENSION
    eps_compression: float = EPS_COMPRESSION
    mechanics: object = field(default=None, repr=False)

    def summary(self) -> dict:
        return {
            "bone": self.bone,
            "load_case": self.load_case,
            "dofs": self.dofs,
            "stiffness_n_per_mm": self.stiffness_n_per_mm,
            "fracture_load_n": self.fracture_load_n,
            "failure_site": self.failure_site,
            "mode": self.mode,
            "criterion": self.criterion,
            "region": self.region,
            "applied_load_n": self.applied_load_n,
            "max_displacement_mm": getattr(self.mechanics, "max_displacement_mm", None),
            "strain_surrogate_load_n": self.strain_surrogate_load_n,
        }


def risk_factor(principal, eps_t=EPS_TENSION, eps_c=EPS_COMPRESSION):
    """(RF, is_tension) per point from principal strains (..., 3) sorted descending."""
    rt = principal[..., 0] / eps_t
    rc = -principal[..., 2] / eps_c
    return np.maximum(rt, rc), rt >= rc


def _compartment_names(bone) -> np.ndarray:
    """The compartment name of every local cell (once per bone geometry: ``Bone.cached``)."""
    def build():
        names = np.full(bone.num_local_cells, "", dtype=object)
        if bone.cell_tags is not None:
            inv = {v: k for k, v in bone.cell_ids.items()}
            ct = bone.cell_tags
            names[ct.indices] = [inv.get(int(v), str(int(v))) for v in ct.values]
        return names

    return bone.cached(("compartment_names", tuple(sorted(bone.cell_ids.items()))), build)


def _bc_points(bone, load) -> np.ndarray:
    """Midpoints (mm) of all loaded/constrained facets, gathered on every rank."""
    facets = [load.load_facets, *load.support_facets.values()]
    f = np.unique(np.concatenate([np.asarray(x, np.int32) for x in facets]))
    mid, _ = facet_geometry(bone.mesh, f)
    allm = bone.comm.allgather(mid)
    pts = np.concatenate(allm) if allm else np.zeros((0, 3))
    return np.unique(np.round(pts, 12), axis=0)


def evaluate_criterion(result, criterion="principal_strain", region=None,
                       critical_volume_mm3=DEFAULT_CRITICAL_VOLUME_MM3,
                       eps_t=EPS_TENSION, eps_c=EPS_COMPRESSION, material=None,
                       exclude=(), bc_margin_mm: float = 0.0):
    """Failure load (N) and site from a MechanicsResult (collective).

    bc_margin_mm: ignore cells whose midpoint lies within this distance of a loaded or
    constrained facet (load/support artefacts); the site reports its distance to them.
    """
    if criterion not in ("principal_strain", "critical_volume"):
        raise InputError(
            f"criterion must be 'principal_strain' or 'critical_volume', got {criterion!r}"
        )
    bone = result.bone
    comm = bone.comm
    mask = np.zeros(bone.num_local_cells, dtype=bool)
    mask[: bone.num_owned_cells] = True
    mask &= ~non_bone_mask(bone, getattr(material, "non_bone_compartments", ()))
    for name in exclude:
        mask &= ~bone.compartment_mask(name)
    if region is not None:
        mask &= bone.roi_mask(region)
    bc_pts = _bc_points(bone, result.load)
    tree = cKDTree(bc_pts) if len(bc_pts) else None

    def bc_distance(x):
        return tree.query(np.atleast_2d(x))[0] if tree is not None else np.full(len(np.atleast_2d(x)), np.inf)

    if bc_margin_mm and bc_margin_mm > 0:
        near = np.zeros_like(mask)
        near[mask] = bc_distance(bone.cell_midpoints()[mask]) < bc_margin_mm
        mask &= ~near
    n_elig = comm.allreduce(int(mask.sum()), op=MPI.SUM)
    if n_elig == 0:
        raise InputError(
            f"no bone cells in region {region!r} of bone '{bone.name}' to evaluate the criterion"
        )
    cells = np.flatnonzero(mask)
    # the risk factor of the eligible cells only (their principal strains alone)
    rf_pts, tens_pts = risk_factor(result.principal_strains_of(cells), eps_t, eps_c)
    k = np.argmax(rf_pts, axis=1)
    idx = np.arange(rf_pts.shape[0])
    r = rf_pts[idx, k]
    tension = tens_pts[idx, k]
    mid = bone.cell_midpoints()[cells]
    vol = bone.cell_volumes()[cells]
    comp = _compartment_names(bone)[cells]
    vcrit = float(critical_volume_mm3) if criterion == "critical_volume" else 0.0
    if vcrit < 0:
        raise InputError(f"critical_volume_mm3 must be >= 0, got {critical_volume_mm3}")
    # local candidates: the top cells until their volume reaches vcrit (at least one)
    order = np.lexsort((mid[:, 2], mid[:, 1], mid[:, 0], -r))
    cum = np.cumsum(vol[order])
    nloc = min(len(order), int(np.searchsorted(cum, vcrit)) + 1) if len(order) else 0
    sel = order[:nloc]
    cand = [(-float(r[i]), *map(float, mid[i]), float(vol[i]), bool(tension[i]), str(comp[i]))
            for i in sel]
    allc = sorted(c for lst in comm.allgather(cand) for c in lst)
    vols = np.cumsum([c[4] for c in allc])
    j = int(np.searchsorted(vols, vcrit))
    if j >= len(allc):
        raise InputError(
            f"region {region!r} has only {vols[-1]:.4g} mm3 of bone, less than "
            f"critical_volume_mm3={vcrit}"
        )
    peak = allc[0]
    rf_max = -peak[0]
    rf_fail = -allc[j][0]
    if not rf_fail > 0:
        raise InputError("the load case produces no strain in the evaluation region")
    site = {
        "coordinates_mm": [peak[1], peak[2], peak[3]],
        "mode": "tension" if peak[5] else "compression",
        "compartment": peak[6],
        "rf": rf_max,
        "distance_to_bc_mm": float(bc_distance(np.array(peak[1:4]))[0]),
    }
    return result.applied_load_n / rf_fail, site, rf_max, rf_fail


def fracture_load(bone, load_case, material=None, criterion: str = "principal_strain",
                  region: str | None = None, critical_volume_mm3: float = DEFAULT_CRITICAL_VOLUME_MM3,
                  order: int = 1, solver="gamg", options: dict | None = None,
                  eps_tension: float = EPS_TENSION, eps_compression: float = EPS_COMPRESSION,
                  bc_margin_mm: float = 0.0, nu: float | None = None,
                  result=None) -> FractureResult:
    """Linear fracture load (N) of ``bone`` under ``load_case``.

    region: ROI or compartment name restricting the evaluation (e.g. "neck" for the
    femoral neck fracture load).  bc_margin_mm: ignore cells this close to loaded or
    constrained facets.  ``result``: reuse an existing MechanicsResult.
    """
    if result is None:
        result = solve(bone, load_case, material=material, order=order, solver=solver,
                       options=options, nu=nu)
    load, site, rf_max, rf_fail = evaluate_criterion(
        result, criterion, region, critical_volume_mm3, eps_tension, eps_compression, material,
        bc_margin_mm=bc_margin_mm)
    surrogate = None
    if result.apparent_strain:
        # load at which the bone's apparent axial strain (endplate displacement / height)
        # reaches 0.2 %; = K * 0.002 * height when the platens load the endplates directly
        surrogate = result.applied_load_n * SURROGATE_STRAIN / result.apparent_strain
    return FractureResult(
        bone=bone.name, load_case=result.load_case, criterion=criterion,
        fracture_load_n=float(load), failure_site=site, mode=site["mode"], max_rf=rf_max,
        rf_at_failure=rf_fail, applied_load_n=result.applied_load_n,
        stiffness_n_per_mm=result.stiffness_n_per_mm, dofs=result.dofs, region=region,
        critical_volume_mm3=critical_volume_mm3 if criterion == "critical_volume" else None,
        strain_surrogate_load_n=surrogate, eps_tension=eps_tension,
        eps_compression=eps_compression, mechanics=result,
    )
