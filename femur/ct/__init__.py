"""Patient-specific bones from CT: calibrated images -> density fields -> FE bones.

Public API: :func:`read_ct`, :func:`read_labels`, :class:`CTImage`,
:class:`PhantomCalibration`, :class:`InternalCalibration`, :func:`load_calibration`,
:func:`bone_from_ct`, :func:`ct_strength`.
"""

from femur.ct.image import CTImage, read_ct, read_image, read_labels  # noqa: F401
from femur.ct.calibration import (  # noqa: F401
    InternalCalibration, PhantomCalibration, check_image_units, load_calibration,
)
from femur.ct.bone import bone_from_ct, calibrate  # noqa: F401

__all__ = [
    "CTImage", "read_ct", "read_image", "read_labels", "PhantomCalibration",
    "InternalCalibration", "load_calibration", "check_image_units", "bone_from_ct",
    "calibrate", "ct_strength",
]


def ct_strength(image, labels=None, law: str = "kopperdahl2002", layers=(5, 6),
                mesh: str = "voxel", voxel_coarsen: int = 1, calibration=None,
                calibrated_mg_cm3: bool = False, layer_material="pmma",
                poisson_ratio: float = 0.3, strain: float = 0.01, ends: str = "frictionless",
                criterion: str = "principal_strain", order: int = 1, solver: str = "gamg",
                tet_size_mm: float | None = None, kind: str = "vertebra",
                options: dict | None = None, comm=None, out=None,
                export_inp=None) -> list[dict]:
    """CT -> bone -> axial compression -> stiffness, linear fracture load, 0.2 % surrogate.

    The backend of ``femur strength --ct IMAGE --labels LABELS``.  Returns one record per
    load case (here: displacement-controlled axial compression between the outer faces of
    the two loading layers, ``strain`` x height, ``ends`` frictionless or bonded), with keys
    bone, load_case, dofs, stiffness_n_per_mm, fracture_load_n, failure_site,
    max_displacement_mm, applied_load_n, surrogate_0p2pct_load_n (+ provenance fields).

    Meshes: ``mesh="voxel"`` (one hexahedron per voxel_coarsen^3 voxel block) or ``"tet"``
    (gmsh tetrahedra of size ``tet_size_mm``, default voxel_coarsen x voxel size).

    Materials: ``law`` (a femur.materials registry name, default Kopperdahl 2002,
    E = 2980 rho_QCT^1.05) on every bone label; layers a constant modulus
    (``layer_material``: "pmma" = 2500 MPa, "compliant" = 8 MPa, or MPa); nu 0.3.
    """
    import time

    from femur._mpi import MPI
    from femur.errors import InputError
    from femur.materials import MaterialModel, constant_law, get_law
    from femur.mechanics import AxialCompression, fracture_load

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
    t0 = time.perf_counter()
    fr = fracture_load(bone, AxialCompression(strain=strain, ends=ends), material=material,
                       criterion=criterion, order=order, solver=solver, options=options)
    t_solve = time.perf_counter() - t0
    res = fr.mechanics
    from femur.pipeline import record_from, write_outputs

    rec = record_from(fr, bone, material)
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
        from pathlib import Path

        write_outputs(bone, fr, material, Path(out))
    if export_inp:
        from pathlib import Path

        from femur.mechanics import export_inp as _export

        _export(bone, AxialCompression(strain=strain, ends=ends),
                Path(export_inp) / f"{bone.name}_{res.load_case}.inp", material=material, order=order)
    return [rec]
