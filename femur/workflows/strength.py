"""Strength of a bone: what `femur strength` runs, for the built-in bones and for CT scans.

Femur: the anatomical femur (default; ``--bone parametric-femur``: the parametric one)
given a DXA-equivalent femoral-neck T-score (default -2.5), Morgan 2003 femoral-neck law, single-leg stance (8 deg) and sideways
falls (lateral, posterolateral; 10 deg adduction, 15 deg internal rotation). Fracture load
from the asymmetric principal-strain criterion (Schileo 2014) in the femoral neck ROI.
Vertebra: the parametric L1-like body at a spine T-score, Morgan 2003 vertebral law,
displacement-controlled axial compression (optionally through 8 MPa or PMMA layers);
fracture load from the same criterion over the bone, plus the 0.2 %-strain surrogate.
CT: a calibrated scan -> voxel or tet bone -> axial compression between loading layers.

``model="nonlinear"`` (the default of `femur strength`; ``--model linear`` for the
first-failure load alone) adds to every record the
material-nonlinear pushover of the same bone and load case (``femur.pushover``; its
defaults: P2 unless ``order`` is given, rotating cup and support pad on the femur, end at
4 mm femur / 2 % of the loaded height vertebra): ``nonlinear_strength_n`` (peak up to the
end displacement), ``yield_load_n`` (0.2 %-offset yield), ``displacement_at_peak_mm``,
``increments``, ``newton_iterations``, ``load_displacement`` and more
(``femur.mechanics.strength.pushover_fields``); ``out`` then also gets each curve as CSV
and PNG and the plastic-strain field (``femur.exports.pushover``).  Without a mesh size,
the anatomical femur's pushover runs on its trial mesh (:data:`NONLINEAR_FEMUR_MESH_MM`):
at P2 its sideways-fall strength is within 0.3 % of the default 3 mm mesh's and within
the 2 mm mesh's by the amount in the README's convergence table
(``python benchmarks/nonlinear.py --convergence``), at half the DOFs.
"""

from __future__ import annotations

import time
from pathlib import Path

from femur.core.errors import InputError
from femur.core.log import get_logger
from femur.core.mpi import MPI
from femur.exports.fields import StrengthFields
from femur.geometry.ct import bone_from_ct
from femur.mechanics.abaqus import export_inp as write_inp
from femur.mechanics.failure import fracture_load
from femur.mechanics.loadcases import AxialCompression
from femur.mechanics.materials import MaterialModel, constant_law, get_law
from femur.mechanics.strength import (
    DEFAULT_FALL_DIRECTIONS,
    check_strength_model,
    load_cases_for,
    material_for,
    pushover_fields,
    region_for,
    strength_record,
)
from femur.workflows.bones import KIND_OF, bone_name, build_bone, describe_geometry
from femur.workflows.pushover import pushover

log = get_logger(__name__)

#: mesh of the anatomical femur when the nonlinear model runs without a given mesh size
#: (module docstring: the convergence study)
NONLINEAR_FEMUR_MESH_MM = 4.0


#: the strength models of a single strength evaluation (the surrogate and the hybrid
#: predict a pushover from a run's month 0; they belong to simulations and studies)
SINGLE_MODELS = ("linear", "nonlinear")


def _check_model(model) -> None:
    check_strength_model(model, "model")
    if model not in SINGLE_MODELS:
        raise InputError(f"model: {model!r} is a strength model of simulations and studies; a strength "
                         f"evaluation runs one of {', '.join(SINGLE_MODELS)}")


def _with_pushover(rec, bone, case, material, model, order, solver, out, options=None):
    """``rec`` plus the pushover's fields when ``model`` is "nonlinear" (``order`` None:
    the pushover's default order)."""
    if model != "nonlinear":
        return rec
    log.info("  %s: nonlinear pushover %s ...", bone.name, getattr(case, "name", case))
    res = pushover(bone, case, material, out=out, stem=f"{bone.name}_{rec['load_case']}",
                   order=order, solver=solver, options=options)
    rec.update(pushover_fields(res))
    return rec


def builtin_strength(bone: str = "all", mesh_size_mm: float | None = None, order: int | None = None,
                     solver: str = "gamg", law: str | None = None, t_score: float = -2.5,
                     age: float | None = None, criterion: str = "principal_strain",
                     layers: str = "none", out: str | None = None, export_inp: str | None = None,
                     fall_directions=DEFAULT_FALL_DIRECTIONS, critical_volume_mm3: float | None = None,
                     model: str = "linear", comm=MPI.COMM_WORLD) -> list[dict]:
    """Stiffness and fracture load of the built-in femur and/or vertebra (list of records).

    ``bone``: "all" (the default femur and the vertebra), one of
    ``femur.workflows.bones.BONE_KINDS`` ("femur" is the anatomical femur), or a
    comma-separated list of them. Each record names the geometry used (``geometry``).
    ``order``: element order (None: P1 for the linear solve, the pushover's default for
    ``model="nonlinear"``); ``out``: write the fields and pictures of every load case
    there (:class:`femur.exports.fields.StrengthFields`, and with the nonlinear model the
    pushover files); ``export_inp``: write ``<bone>_<load_case>.inp`` files for
    CalculiX/Abaqus there."""
    _check_model(model)
    names = strength_bones(bone)
    fields = StrengthFields(out) if out else None
    records = []
    for name in names:
        kind = KIND_OF[name]
        t0 = time.perf_counter()
        size = mesh_size_mm
        if size is None and model == "nonlinear" and name == "femur":
            size = NONLINEAR_FEMUR_MESH_MM
            log.info("anatomical femur, nonlinear model: the %g mm trial mesh (converged at P2; "
                     "--mesh-size 3 for the default mesh)", size)
        log.info("building the %s model ...", name)
        b = build_bone(name, mesh_size_mm=size, t_score=t_score, age=age,
                       layers=layers, comm=comm)
        mat = material_for(b, law)
        geometry = describe_geometry(b)
        for case in load_cases_for(b, fall_directions):
            log.info("  %s: solving %s (P%d, %s) ...", name, getattr(case, "name", case), order or 1, solver)
            extra = {} if critical_volume_mm3 is None else {"critical_volume_mm3": critical_volume_mm3}
            fr = fracture_load(b, case, material=mat, criterion=criterion, region=region_for(kind),
                               order=order or 1, solver=solver, **extra)
            rec = strength_record(fr, b, mat)
            rec["geometry"] = geometry
            rec = _with_pushover(rec, b, case, mat, model, order, solver, out)
            records.append(rec)
            if fields:
                fields.write(b, fr, mat)
            if export_inp:
                write_inp(b, case, Path(export_inp) / f"{b.name}_{rec['load_case']}.inp",
                          material=mat, order=order or 1)
        log.info("  %s done in %.1f s", kind, time.perf_counter() - t0)
    return records


def strength_bones(bone: str) -> list[str]:
    """The built-in bones of a ``--bone`` value: "all" (the default femur and the vertebra),
    a name of ``femur.workflows.bones.BONE_KINDS`` or an alias, or a comma-separated list."""
    if str(bone).strip().lower() == "all":
        return ["femur", "vertebra"]
    names = [bone_name(b) for b in str(bone).split(",") if b.strip()]
    if not names:
        raise InputError("bone: give femur, parametric-femur, vertebra, all or a comma-separated list")
    return list(dict.fromkeys(names))


def ct_strength(image, labels=None, law: str = "kopperdahl2002", layers=(5, 6),
                mesh: str = "voxel", voxel_coarsen: int = 1, calibration=None,
                calibrated_mg_cm3: bool = False, layer_material="pmma",
                poisson_ratio: float = 0.3, strain: float = 0.01, ends: str = "frictionless",
                criterion: str = "principal_strain", order: int | None = None, solver: str = "gamg",
                tet_size_mm: float | None = None, kind: str = "vertebra",
                options: dict | None = None, comm=None, out=None,
                export_inp=None, model: str = "linear") -> list[dict]:
    """CT -> bone -> axial compression -> stiffness, linear fracture load, 0.2 % surrogate.

    The backend of ``femur strength --ct IMAGE --labels LABELS``.  Returns one record per
    load case (here: displacement-controlled axial compression between the outer faces of
    the two loading layers, ``strain`` x height, ``ends`` frictionless or bonded), with keys
    bone, load_case, dofs, stiffness_n_per_mm, fracture_load_n, failure_site,
    max_displacement_mm, applied_load_n, surrogate_0p2pct_load_n (+ provenance fields).

    Meshes: ``mesh="voxel"`` (one hexahedron per voxel_coarsen^3 voxel block) or ``"tet"``
    (gmsh tetrahedra of size ``tet_size_mm``, default voxel_coarsen x voxel size).

    Materials: ``law`` (a femur.mechanics.materials registry name, default Kopperdahl 2002,
    E = 2980 rho_QCT^1.05) on every bone label; layers a constant modulus
    (``layer_material``: "pmma" = 2500 MPa, "compliant" = 8 MPa, or MPa); nu 0.3.

    ``model="nonlinear"`` adds the pushover (the Bonelab protocol of
    biomechanics.md 2.4 with the defaults: Kopperdahl 2002 yield on every bone label,
    equal in tension and compression, von Mises; PMMA layers yield at 70 MPa, compliant
    ones stay elastic; displacement to 2 % of the loaded height, ``ends`` as the linear case).
    """
    _check_model(model)
    comm = comm or MPI.COMM_WORLD
    t0 = time.perf_counter()
    bone = bone_from_ct(image, labels, calibration=calibration,
                        calibrated_mg_cm3=calibrated_mg_cm3, mesh=mesh,
                        voxel_coarsen=voxel_coarsen, layers=layers, tet_size_mm=tet_size_mm,
                        layer_material=layer_material, kind=kind, comm=comm)
    t_build = time.perf_counter() - t0
    if isinstance(layer_material, (int, float)) and not isinstance(layer_material, bool):
        layer_law = constant_law(float(layer_material))
    elif str(layer_material).lower() in ("pmma", "cement"):
        layer_law = get_law("pmma")
    elif str(layer_material).lower() in ("compliant", "disc", "compliant_layer"):
        layer_law = get_law("compliant_layer")
    else:
        raise InputError(
            f"layer_material must be 'pmma', 'compliant' or a modulus in MPa, got {layer_material!r}"
        )
    comp = {n: layer_law for n in bone.cell_ids if n.startswith("layer_")}
    material = MaterialModel(get_law(law), compartment_laws=comp, poisson_ratio=poisson_ratio)
    case = AxialCompression(strain=strain, ends=ends)
    t0 = time.perf_counter()
    fr = fracture_load(bone, case, material=material, criterion=criterion, order=order or 1,
                       solver=solver, options=options)
    t_solve = time.perf_counter() - t0
    rec = _with_pushover(strength_record(fr, bone, material), bone, AxialCompression(ends=ends),
                         material, model, order, solver, out, options)
    rec.update({
        "layer_modulus_mpa": float(layer_law.modulus_mpa(0.0)) if comp else None,
        "poisson_ratio": poisson_ratio,
        "mesh": mesh,
        "cell_type": bone.parameters["cell_type"],
        "element_size_mm": bone.parameters["element_size_mm"],
        "cells": int(comm.allreduce(bone.num_owned_cells)),
        "height_mm": float(bone.landmarks["height"][0]),
        "loaded_height_mm": float(bone.landmarks["loaded_height"][0]),
        "ends": ends,
        "applied_strain": strain,
        "build_s": t_build,
        "solve_s": t_solve,
    })
    if out:
        StrengthFields(out).write(bone, fr, material)
    if export_inp:
        write_inp(bone, case, Path(export_inp) / f"{bone.name}_{fr.mechanics.load_case}.inp",
                  material=material, order=order or 1)
    return [rec]


__all__ = ["builtin_strength", "ct_strength", "strength_bones"]
