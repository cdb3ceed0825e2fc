"""Built-in bones to stiffness and fracture load: what `femur strength` runs.

Femur: the parametric elderly-woman femur given a DXA-equivalent femoral-neck T-score
(default -2.5), Morgan 2003 femoral-neck law, single-leg stance (8 deg) and a sideways
fall (lateral, 10 deg adduction, 15 deg internal rotation). Fracture load from the
asymmetric principal-strain criterion (Schileo 2014) in the femoral neck ROI.
Vertebra: the parametric L1-like body at a spine T-score, Morgan 2003 vertebral law,
displacement-controlled axial compression (optionally through 8 MPa or PMMA layers);
fracture load from the same criterion over the bone, plus the 0.2 %-strain surrogate.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from femur._mpi import MPI, rank0_print
from femur.errors import InputError

#: fracture-load evaluation region per bone: the femoral neck ROI for the femur
#: (femoral neck fracture load); the whole bone (all bone compartments) for the vertebra
FEMUR_REGION = "neck"


def build_bone(kind: str, mesh_size_mm: float | None = None, t_score: float | None = -2.5,
               age: float | None = None, sex: str = "female", layers: str = "none",
               comm=MPI.COMM_WORLD, **geometry):
    """A built-in bone with its density field.

    With ``age`` the densities follow the age model (``femur.density.density_for_age``);
    otherwise the bone is scaled to the DXA-equivalent ``t_score`` (femoral neck for the
    femur, spine for the vertebra).
    """
    from femur.density import assign_density, bone_with_t_score

    if kind == "femur":
        from femur.geometry.femur_model import ProximalFemur

        params = dict(geometry)
        if mesh_size_mm is not None:
            params["mesh_size_mm"] = mesh_size_mm
        bone = ProximalFemur(**params).build(comm)
    elif kind == "vertebra":
        from femur.geometry.vertebra import Vertebra

        params = dict(geometry, layers=layers)
        if mesh_size_mm is not None:
            params["mesh_size_mm"] = mesh_size_mm
        bone = Vertebra(**params).build(comm)
    else:
        raise InputError(f"bone must be 'femur' or 'vertebra', got '{kind}'")
    if age is not None:
        return assign_density(bone, age_y=age, sex=sex)
    return bone_with_t_score(bone, t_score=-2.5 if t_score is None else t_score, sex=sex)


def material_for(bone, law: str | None = None):
    from femur.materials import MaterialModel, default_material

    mat = default_material(bone)
    if law is not None:
        mat = MaterialModel(default_law=law, compartment_laws=mat.compartment_laws,
                            roi_laws=mat.roi_laws, floor_mpa=mat.floor_mpa,
                            poisson_ratio=mat.poisson_ratio)
    return mat


#: sideways-fall directions run by default (several directions: Keyak, Bone 2013)
DEFAULT_FALL_DIRECTIONS = ("lateral", "posterolateral")


def load_cases_for(bone, fall_directions=DEFAULT_FALL_DIRECTIONS):
    from femur.mechanics import AxialCompression, SidewaysFall, SingleLegStance

    if bone.kind == "femur":
        return [SingleLegStance()] + [SidewaysFall(direction=d) for d in fall_directions]
    return [AxialCompression()]


def record_from(fr, bone, material) -> dict:
    """The JSON record of one bone/load case (keys are an interface contract)."""
    mech = fr.mechanics
    site = fr.failure_site or {}
    where = site.get("region") or site.get("compartment") or ""
    coords = site.get("coordinates_mm")
    site_str = f"{where} ({fr.mode})" if where else fr.mode
    return {
        "bone": bone.name,
        "load_case": fr.load_case,
        "dofs": int(fr.dofs),
        "stiffness_n_per_mm": float(fr.stiffness_n_per_mm),
        "fracture_load_n": float(fr.fracture_load_n),
        "failure_site": site_str,
        "failure_point_mm": [float(c) for c in coords] if coords else None,
        "failure_mode": fr.mode,
        "criterion": fr.criterion,
        "region": fr.region,
        "max_displacement_mm": float(mech.max_displacement_mm),
        "applied_load_n": float(fr.applied_load_n),
        "surrogate_0p2pct_load_n": (None if fr.strain_surrogate_load_n is None
                                    else float(fr.strain_surrogate_load_n)),
        "order": int(mech.order),
        "iterations": int(mech.iterations),
        "law": material.default_law.name,
        "t_score": (bone.parameters.get("t_score") or {}).get("achieved"),
        "timings_s": {k: float(v) for k, v in mech.timings.items()},
    }


def builtin_strength(bone: str = "all", mesh_size_mm: float | None = None, order: int = 1,
                     solver: str = "gamg", law: str | None = None, t_score: float = -2.5,
                     age: float | None = None, criterion: str = "principal_strain",
                     layers: str = "none", out: str | None = None, export_inp: str | None = None,
                     fall_directions=DEFAULT_FALL_DIRECTIONS, critical_volume_mm3: float | None = None,
                     progress: bool = True,
                     comm=MPI.COMM_WORLD) -> list[dict]:
    """Stiffness and fracture load of the built-in femur and/or vertebra (list of records)."""
    from femur.mechanics import fracture_load

    kinds = ["femur", "vertebra"] if bone == "all" else [bone]
    records = []
    for kind in kinds:
        t0 = time.perf_counter()
        if progress:
            rank0_print(f"[femur] building the {kind} model ...", comm=comm)
        b = build_bone(kind, mesh_size_mm=mesh_size_mm, t_score=t_score, age=age,
                       layers=layers, comm=comm)
        mat = material_for(b, law)
        region = FEMUR_REGION if kind == "femur" else None
        for case in load_cases_for(b, fall_directions):
            if progress:
                rank0_print(f"[femur]   {kind}: solving {getattr(case, 'name', case)} "
                            f"(P{order}, {solver}) ...", comm=comm)
            extra = {} if critical_volume_mm3 is None else {"critical_volume_mm3": critical_volume_mm3}
            fr = fracture_load(b, case, material=mat, criterion=criterion, region=region,
                               order=order, solver=solver, **extra)
            rec = record_from(fr, b, mat)
            records.append(rec)
            if out:
                write_outputs(b, fr, mat, Path(out))
            if export_inp:
                from femur.mechanics import export_inp as _export

                path = Path(export_inp) / f"{b.name}_{rec['load_case']}.inp"
                _export(b, case, path, material=mat, order=order)
        if progress:
            rank0_print(f"[femur]   {kind} done in {time.perf_counter() - t0:.1f} s", comm=comm)
    return records


def write_outputs(bone, fr, material, out: Path) -> None:
    """Fields for ParaView (XDMF: density, modulus, displacement, max/min principal strain,
    risk factor) and a PNG of density and principal strain."""
    import dolfinx
    import dolfinx.io

    from femur.viz import render_cell_fields

    comm = bone.comm
    if comm.rank == 0:
        out.mkdir(parents=True, exist_ok=True)
    comm.barrier()
    mech = fr.mechanics
    stem = f"{bone.name}_{mech.load_case}"
    pr = mech.principal_strains  # (cells, pts, 3)
    e1 = pr[..., 0].max(axis=1)
    e3 = pr[..., 2].min(axis=1)
    rf = np.maximum(e1 / fr.eps_tension, -e3 / fr.eps_compression) * fr.fracture_load_n / fr.applied_load_n
    V0 = dolfinx.fem.functionspace(bone.mesh, ("DG", 0))
    fields = {}
    for name, arr in (("max_principal_strain", e1), ("min_principal_strain", e3),
                      ("risk_factor_at_fracture_load", rf)):
        f = dolfinx.fem.Function(V0, name=name)
        f.x.array[:] = arr
        fields[name] = f
    E = material.modulus_field(bone)
    E.name = "modulus_mpa"
    rho = bone.density
    rho.name = "density_g_cm3"
    with dolfinx.io.XDMFFile(comm, str(out / f"{stem}.xdmf"), "w") as xdmf:
        xdmf.write_mesh(bone.mesh)
        for f in (rho, E, *fields.values()):
            xdmf.write_function(f)
    # displacement on its own (P1/P2 Lagrange) with VTX when ADIOS2 is available
    if dolfinx.io.has_adios2:
        u = mech.u
        u.name = "displacement_mm"
        with dolfinx.io.VTXWriter(comm, str(out / f"{stem}_displacement.bp"), [u], engine="BP4") as vtx:
            vtx.write(0.0)
    render_cell_fields(
        bone.mesh,
        {"density_g_cm3": rho.x.array, "max_principal_strain": e1 * 100, "min_principal_strain": e3 * 100},
        out / f"{stem}.png",
        titles={"density_g_cm3": "density (g/cm3)", "max_principal_strain": "max principal strain (%)",
                "min_principal_strain": "min principal strain (%)"},
        cmaps={"density_g_cm3": "bone", "max_principal_strain": "Reds", "min_principal_strain": "Blues_r"},
        clip_normal="-y",
    )
