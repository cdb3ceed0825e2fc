"""CT image (+ labels) -> :class:`femur.geometry.bone.Bone`."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from femur.core.mpi import MPI
import dolfinx  # noqa: E402

from femur.core.errors import InputError  # noqa: E402
from femur.geometry.bone import Bone  # noqa: E402
from femur.core import units  # noqa: E402
from femur.geometry.density import MAX_APPARENT_G_CM3  # noqa: E402

from femur.geometry.ct.image import CTImage, read_ct, read_labels, check_labels_match  # noqa: E402
from femur.geometry.ct.calibration import (  # noqa: E402
    InternalCalibration, PhantomCalibration, check_image_units, load_calibration,
)
from femur.geometry.ct import mapping, tet_mesh, voxel_mesh  # noqa: E402
from femur.core.log import get_logger  # noqa: E402

log = get_logger(__name__)

#: label names of the VerSe/Bonelab spine FE data (data README, verse004-L2)
VERSE_LABEL_NAMES = {
    1: "trabecular", 2: "cortical", 3: "posterior_trabecular", 4: "posterior_cortical",
}

#: same ids as the parametric vertebra (agreed conventions)
FACET_IDS = {"superior": 21, "inferior": 22, "endplate_superior": 23, "endplate_inferior": 24}

#: outer faces of a loading layer: outward normal within ~25 deg of the axis ...
_NORMAL_COS = 0.9


def _log(comm, msg):
    """Progress of the CT pipeline (the log keeps rank 0's records)."""
    log.info("ct: %s", msg)


def calibrate(image: CTImage, calibration=None, calibrated_mg_cm3: bool = False,
              bone_mask: np.ndarray | None = None, check_units: bool = True) -> np.ndarray:
    """Return the image as equivalent mineral density (mg/cm3), checking unit plausibility."""
    bone_vals = image.array[bone_mask] if bone_mask is not None else None
    if calibrated_mg_cm3:
        if calibration is not None:
            raise InputError(
                f"{image.path}: give either a calibration or calibrated_mg_cm3=True, not both"
            )
        if check_units:
            check_image_units(image.array, "mg/cm3", image.path, bone_vals)
        image.units = "mg/cm3"
        return np.asarray(image.array, dtype=float)
    if calibration is None:
        raise InputError(
            f"{image.path}: no calibration given; pass a calibration (phantom rods, a "
            "calibration record file) or calibrated_mg_cm3=True if the image is already in mg/cm3"
        )
    if isinstance(calibration, (str, Path)):
        calibration = load_calibration(calibration)
    if not isinstance(calibration, (PhantomCalibration, InternalCalibration)):
        raise InputError(
            f"calibration must be a PhantomCalibration, InternalCalibration or a file path, "
            f"got {type(calibration).__name__}"
        )
    if check_units:
        check_image_units(image.array, "HU", image.path, bone_vals)
    image.units = "HU"
    return calibration.to_mg_cm3(image.array)


def _axis_from_affine(affine: np.ndarray) -> tuple[int, int]:
    """Voxel axis (0,1,2) closest to world superior (+z, RAS) and its sign."""
    d = affine[:3, :3] / np.linalg.norm(affine[:3, :3], axis=0)
    a = int(np.argmax(np.abs(d[2])))
    return a, int(np.sign(d[2, a]) or 1)


def _facet_geometry(mesh):
    """Exterior facets of the local mesh with their cell, outward unit normal, midpoint and
    area."""
    tdim = mesh.topology.dim
    fdim = tdim - 1
    mesh.topology.create_connectivity(fdim, tdim)
    facets = dolfinx.mesh.exterior_facet_indices(mesh.topology)
    f2c = mesh.topology.connectivity(fdim, tdim)
    cells = np.array([f2c.links(f)[0] for f in facets], dtype=np.int32)
    fx = mesh.geometry.x[dolfinx.mesh.entities_to_geometry(mesh, fdim, facets)]
    cx = mesh.geometry.x[dolfinx.mesh.entities_to_geometry(mesh, tdim, cells)].mean(axis=1)
    mid = fx.mean(axis=1)
    if fx.shape[1] == 4:  # quadrilateral, dolfinx order: v3 opposite v0
        n = 0.5 * np.cross(fx[:, 3] - fx[:, 0], fx[:, 2] - fx[:, 1])
    else:
        n = 0.5 * np.cross(fx[:, 1] - fx[:, 0], fx[:, 2] - fx[:, 0])
    area = np.linalg.norm(n, axis=1)
    n = n / np.maximum(area, 1e-300)[:, None]
    sgn = np.sign(np.einsum("ij,ij->i", n, mid - cx))
    n *= sgn[:, None]
    return facets, cells, n, mid, area


def _owned_facets(mesh, facets):
    fmap = mesh.topology.index_map(mesh.topology.dim - 1)
    return np.asarray(facets) < fmap.size_local


def _weighted_centre(comm, mid, area):
    tot = comm.allreduce(float(area.sum()), op=MPI.SUM)
    c = np.array([comm.allreduce(float((area * mid[:, d]).sum()), op=MPI.SUM) for d in range(3)])
    return (c / tot if tot > 0 else c), tot


def _interface_facets(mesh, cell_labels, layer_label, layers):
    """Local facets between a cell of ``layer_label`` and a bone cell (label > 0, not a
    layer): the endplate under a loading layer.  Needs shared-facet ghosting."""
    tdim = mesh.topology.dim
    fdim = tdim - 1
    mesh.topology.create_connectivity(tdim, fdim)
    mesh.topology.create_connectivity(fdim, tdim)
    c2f = mesh.topology.connectivity(tdim, fdim)
    f2c = mesh.topology.connectivity(fdim, tdim)
    lay_cells = np.flatnonzero(cell_labels == layer_label)
    if lay_cells.size == 0:
        return np.zeros(0, np.int32), np.zeros(0, np.int32)
    cand = np.unique(np.concatenate([c2f.links(c) for c in lay_cells]))
    out, bone_cells = [], []
    for f in cand:
        cs = f2c.links(f)
        if len(cs) != 2:
            continue
        la, lb = cell_labels[cs[0]], cell_labels[cs[1]]
        if la == layer_label and lb > 0 and lb not in layers:
            out.append(f)
            bone_cells.append(cs[1])
        elif lb == layer_label and la > 0 and la not in layers:
            out.append(f)
            bone_cells.append(cs[0])
    return np.asarray(out, np.int32), np.asarray(bone_cells, np.int32)


def _tag_layers(mesh, cell_labels, sup_label, inf_label, axis, tol_mm, layers=()):
    """Facet tags: outer faces of the two loading layers ("superior"/"inferior") and,
    with layers, the layer/bone interfaces ("endplate_superior"/"endplate_inferior");
    area-weighted centres (owned facets only, so no facet counts twice)."""
    comm = mesh.comm
    facets, cells, n, mid, area = _facet_geometry(mesh)
    owned = _owned_facets(mesh, facets)
    lab = cell_labels[cells] if len(cells) else np.zeros(0, int)
    h = mid @ axis
    tags_idx, tags_val, centres = [], [], {}
    for name, label, sgn in (("superior", sup_label, 1.0), ("inferior", inf_label, -1.0)):
        cand = (lab == label) & (sgn * (n @ axis) > _NORMAL_COS)
        ext = comm.allreduce(float(np.max(sgn * h[cand])) if cand.any() else -np.inf, op=MPI.MAX)
        sel = cand & (sgn * h >= ext - tol_mm)
        centres[name], tot = _weighted_centre(comm, mid[sel & owned], area[sel & owned])
        if tot <= 0:
            raise InputError(f"no outer face found on the {name} loading layer (label {label})")
        centres[name + "_area"] = tot
        tags_idx.append(facets[sel])
        tags_val.append(np.full(int(sel.sum()), FACET_IDS[name], dtype=np.int32))
        if layers:
            ifc, _ = _interface_facets(mesh, cell_labels, label, layers)
            fx = mesh.geometry.x[dolfinx.mesh.entities_to_geometry(mesh, 2, ifc)] if len(ifc) \
                else np.zeros((0, 4, 3))
            if fx.shape[1] == 4:
                a = 0.5 * np.linalg.norm(np.cross(fx[:, 3] - fx[:, 0], fx[:, 2] - fx[:, 1]), axis=1)
            else:
                a = 0.5 * np.linalg.norm(np.cross(fx[:, 1] - fx[:, 0], fx[:, 2] - fx[:, 0]), axis=1)
            own = _owned_facets(mesh, ifc)
            key = "endplate_" + name
            centres[key], tot = _weighted_centre(comm, fx.mean(axis=1)[own], a[own])
            if tot <= 0:
                raise InputError(f"loading layer {label} does not touch the bone: no {key} interface")
            centres[key + "_area"] = tot
            tags_idx.append(ifc)
            tags_val.append(np.full(len(ifc), FACET_IDS[key], dtype=np.int32))
    idx = np.concatenate(tags_idx).astype(np.int32)
    val = np.concatenate(tags_val)
    order = np.argsort(idx, kind="stable")
    idx, val = idx[order], val[order]
    if len(idx) and np.any(np.diff(idx) == 0):
        raise InputError("a facet belongs to two loading faces; the layers are too thin")
    ft = dolfinx.mesh.meshtags(mesh, mesh.topology.dim - 1, idx, val)
    return ft, centres


def bone_from_ct(image_path, labels_path=None, calibration=None, calibrated_mg_cm3: bool = False,
                 mesh: str = "voxel", voxel_coarsen: int = 1, layers=(5, 6),
                 tet_size_mm: float | None = None, label_names: dict | None = None,
                 kind: str = "vertebra", check_units: bool = True, frame: str = "LPS",
                 layer_material="pmma", comm=MPI.COMM_WORLD, name: str | None = None,
                 verbose: bool = False, bone_labels=None) -> Bone:
    """Build a CT-based :class:`Bone` (mesh in world mm, labels as compartments, apparent
    density in g/cm3).

    image_path        CT volume (HU, or mg/cm3 with ``calibrated_mg_cm3=True``)
    labels_path       label image on the same grid (0 = background); required
    calibration       PhantomCalibration | InternalCalibration | path of a calibration file
    mesh              "voxel" (one hexahedron per voxel / per voxel_coarsen^3 block) or "tet"
                      (smooth gmsh tetrahedra of size tet_size_mm, default voxel_coarsen x voxel)
    layers            the two loading-layer labels (e.g. PMMA disks); which one is superior is
                      read from the affine (world +z = superior).  ``None``: no layers; the
                      bone's own extreme faces along the axis are tagged.
    layer_material    recorded in ``bone.parameters["layers"]`` for femur.mechanics.materials'
                      default_material: "pmma" (2500 MPa, default, as in the VerSe benchmark),
                      "compliant" (8 MPa) or a modulus in MPa
    bone_labels       the labels that are bone (default: every label > 0 that is not a loading
                      layer). Any other label is meshed as a non-bone compartment named
                      "non_bone_<name>" (``femur.geometry.compartments``): its voxels never
                      count in bone densities, it does not remodel and DXA ignores it.
    """
    if labels_path is None:
        raise InputError(f"{image_path}: a label image is required to mesh a CT bone (labels_path)")
    if mesh not in ("voxel", "tet"):
        raise InputError(f"mesh must be 'voxel' or 'tet', got {mesh!r}")
    k = int(voxel_coarsen)
    if k < 1:
        raise InputError(f"voxel_coarsen must be a positive integer, got {voxel_coarsen}")
    layers = tuple(int(v) for v in layers) if layers else ()
    if layers and len(layers) != 2:
        raise InputError(f"layers must name two labels (e.g. 5,6), got {layers}")
    if bone_labels is not None:
        try:
            bone_labels = tuple(sorted({int(v) for v in bone_labels}))
        except (TypeError, ValueError):
            raise InputError(f"bone_labels must be label integers (e.g. 1,2,3,4), got {bone_labels!r}") from None
        if not bone_labels or min(bone_labels) < 1:
            raise InputError(f"bone_labels must be label integers >= 1 (e.g. 1,2,3,4), got {bone_labels}")
        if set(bone_labels) & set(layers):
            raise InputError(f"labels {sorted(set(bone_labels) & set(layers))} are given both as "
                             "bone_labels and as loading layers")

    # ---- read, check and calibrate on rank 0; errors are agreed across ranks
    payload, err = None, None
    if comm.rank == 0:
        try:
            payload = _prepare_rank0(image_path, labels_path, calibration, calibrated_mg_cm3,
                                     mesh, k, layers, tet_size_mm, check_units, frame, verbose,
                                     bone_labels)
        except InputError as exc:
            err = exc
    err = comm.bcast(err, root=0)
    if err is not None:
        raise err
    meta = comm.bcast(payload["meta"] if comm.rank == 0 else None, root=0)
    cell_type = meta["cell_type"]
    nodes = payload["nodes"] if comm.rank == 0 else None
    cells = payload["cells"] if comm.rank == 0 else None
    data = payload["cell_data"] if comm.rank == 0 else {"label": None, "rho_mg_cm3": None}
    msh, local = voxel_mesh.distribute_mesh(comm, cell_type, nodes, cells, data)

    tdim = msh.topology.dim
    nloc = msh.topology.index_map(tdim).size_local + msh.topology.index_map(tdim).num_ghosts
    cell_labels = local["label"].astype(np.int32)
    ct = dolfinx.mesh.meshtags(msh, tdim, np.arange(nloc, dtype=np.int32), cell_labels)

    # apparent density (g/cm3): QCT mg/cm3 -> g/cm3 -> ash (identity, units.py) -> /0.6
    # Negative calibrated values (noise/fat at the boundary) are floored at 0
    # (biomechanics.md section 6, rec. 1); apparent density is capped at femur.geometry.density's
    # physical maximum (2.3 g/cm3 = 1380 mg/cm3 QCT with ash = QCT and ash/apparent 0.6):
    # dense posterior-cortex voxels of clinical CT exceed it (verse004: up to 1893 mg/cm3).
    rho_qct_g = units.mg_cm3_to_g_cm3(local["rho_mg_cm3"])
    rho_app = units.qct_to_apparent_g_cm3(np.maximum(rho_qct_g, 0.0))
    rho_app = np.minimum(rho_app, MAX_APPARENT_G_CM3)
    V = dolfinx.fem.functionspace(msh, ("DG", 0))
    density = dolfinx.fem.Function(V, name="density_g_cm3")
    dofs = V.dofmap.list[:nloc, 0]
    density.x.array[dofs] = rho_app
    density.x.scatter_forward()

    axis = np.asarray(meta["axis"], dtype=float)
    names = dict(VERSE_LABEL_NAMES)
    if label_names:
        names.update({int(a): str(b) for a, b in label_names.items()})
    cell_ids = {}
    for lab in meta["labels_present"]:
        if layers and lab == meta["superior_label"]:
            cell_ids["layer_superior"] = lab
        elif layers and lab == meta["inferior_label"]:
            cell_ids["layer_inferior"] = lab
        elif lab in meta["non_bone_labels"]:
            cell_ids["non_bone_" + names.get(lab, f"label_{lab}")] = lab
        else:
            cell_ids[names.get(lab, f"label_{lab}")] = lab

    tol = meta["element_size_mm"] * (0.5 if cell_type == "hexahedron" else 1.0)
    if layers:
        ft, centres = _tag_layers(msh, cell_labels, meta["superior_label"],
                                  meta["inferior_label"], axis, tol, layers)
    else:
        all_lab = np.full_like(cell_labels, -1)
        ft, centres = _tag_layers(msh, np.where(cell_labels > 0, -1, all_lab), -1, -1, axis, tol)
    loaded_height = float((centres["superior"] - centres["inferior"]) @ axis)
    landmarks = {
        "axis": axis,
        "superior_center": centres["superior"],
        "inferior_center": centres["inferior"],
        "superior_area_mm2": np.array([centres["superior_area"]]),
        "inferior_area_mm2": np.array([centres["inferior_area"]]),
        "loaded_height": np.array([loaded_height]),
    }
    if layers:
        # bone height: axial distance between the area-weighted centres of the two
        # layer/bone interfaces (endplates); the apparent-strain gauge length
        height = float((centres["endplate_superior"] - centres["endplate_inferior"]) @ axis)
        landmarks.update({
            "endplate_superior_center": centres["endplate_superior"],
            "endplate_inferior_center": centres["endplate_inferior"],
            "endplate_superior_area_mm2": np.array([centres["endplate_superior_area"]]),
            "endplate_inferior_area_mm2": np.array([centres["endplate_inferior_area"]]),
        })
        facet_ids = dict(FACET_IDS)
    else:
        height = loaded_height
        facet_ids = {k: FACET_IDS[k] for k in ("superior", "inferior")}
    landmarks["height"] = np.array([height])
    params = dict(meta)
    params.pop("labels_present", None)
    if layers:
        params["layers"] = layer_material
    bone = Bone(
        name=name or Path(str(image_path)).name.split(".")[0],
        kind=kind, mesh=msh, cell_tags=ct, facet_tags=ft, cell_ids=cell_ids,
        facet_ids=facet_ids, rois={}, landmarks=landmarks, parameters=params,
        source=f"ct:{image_path}", density=density,
    )
    _log(comm, f"{bone.name}: {meta['n_cells']} {cell_type} cells, "
               f"{meta['n_nodes']} nodes, height {height:.2f} mm, {meta['density_note']}; "
               f"{meta['negative_density_cells']} cells floored at 0, "
               f"{meta['capped_density_cells']} capped at {MAX_APPARENT_G_CM3} g/cm3 apparent")
    return bone


def _prepare_rank0(image_path, labels_path, calibration, calibrated_mg_cm3, mesh, k, layers,
                   tet_size_mm, check_units, frame, verbose, bone_labels=None):
    image = read_ct(image_path, units="mg/cm3" if calibrated_mg_cm3 else "HU", frame=frame)
    labels = read_labels(labels_path, frame=frame)
    check_labels_match(labels, image)
    lab = labels.array
    present = [int(v) for v in np.unique(lab) if v > 0]
    if not present:
        raise InputError(f"{labels_path}: the label mask is empty (no voxel with a label > 0)")
    for L in layers:
        if L not in present:
            raise InputError(
                f"{labels_path}: loading-layer label {L} not found; labels present: {present}"
            )
    if bone_labels is None:
        non_bone = []
    else:
        missing = [L for L in bone_labels if L not in present]
        if len(missing) == len(bone_labels):
            raise InputError(
                f"{labels_path}: no bone label: none of the bone labels {list(bone_labels)} is in "
                f"the label image; labels present: {present}")
        non_bone = [L for L in present if L not in bone_labels and L not in layers]
    excluded = list(layers) + non_bone  # labels whose voxels are not bone
    bone_mask = (lab > 0) & ~np.isin(lab, excluded)
    if not bone_mask.any():
        raise InputError(f"{labels_path}: no bone label: only loading-layer or non-bone labels "
                         f"{sorted(excluded)} are present")
    rho = calibrate(image, calibration, calibrated_mg_cm3, bone_mask, check_units)

    ax, sgn = _axis_from_affine(image.affine)
    axis = image.direction[:, ax] * sgn
    if layers:
        cen = {L: image.index_to_world(np.argwhere(lab == L).mean(axis=0, keepdims=True))[0]
               for L in layers}
        sup, inf = sorted(layers, key=lambda L: -(cen[L] @ axis))
    else:
        sup = inf = -1
    voxel = float(np.mean(image.spacing))

    if mesh == "voxel":
        grid = voxel_mesh.coarsen_grid(lab, rho, image.affine, k, excluded, labels_path)
        nodes, cells, ijk = voxel_mesh.hex_mesh_arrays(grid.labels, grid.affine)
        clab = grid.labels[ijk[:, 0], ijk[:, 1], ijk[:, 2]]
        crho = grid.density_mg_cm3[ijk[:, 0], ijk[:, 1], ijk[:, 2]]
        cell_type = "hexahedron"
        size = voxel * k
        note = ("density: exact mean of the bone-labelled voxels in each element "
                "(background and layer voxels excluded)")
    else:
        size = float(tet_size_mm) if tet_size_mm else voxel * k
        nodes, cells = tet_mesh.tet_mesh_arrays(lab > 0, image.affine, size, verbose)
        inv = np.linalg.inv(image.affine)
        centroids = nodes[cells].mean(axis=1)
        clab = mapping.nearest_label(lab, inv, centroids)
        crho = mapping.element_average(rho, bone_mask, inv, nodes[cells], "tetrahedron", None)
        crho[np.isin(clab, excluded)] = 0.0
        cell_type = "tetrahedron"
        note = ("density: mask-weighted trilinear average over 8 (elements <= 1.5 voxels) or "
                "64 equal-volume sub-tetrahedra per element "
                "(only bone-labelled voxels contribute); labels by the voxel at the centroid")
    meta = {
        "cell_type": cell_type, "axis": axis.tolist(), "superior_label": int(sup),
        "inferior_label": int(inf), "labels_present": [int(v) for v in np.unique(clab)],
        "element_size_mm": float(size), "n_cells": int(len(cells)), "n_nodes": int(len(nodes)),
        "voxel_coarsen": int(k), "mesh": mesh, "image": str(image_path),
        "labels": str(labels_path), "image_units": image.units, "density_note": note,
        "non_bone_labels": [int(v) for v in non_bone], "layer_labels": [int(v) for v in layers],
        "negative_density_cells": int(np.sum(crho < 0)),
        "capped_density_cells": int(np.sum(units.qct_to_apparent_g_cm3(
            units.mg_cm3_to_g_cm3(crho)) > MAX_APPARENT_G_CM3)),
        "calibration": getattr(calibration, "describe", lambda: str(calibration))()
        if calibration is not None else "image already in mg/cm3",
    }
    return {"meta": meta, "nodes": nodes, "cells": cells,
            "cell_data": {"label": clab.astype(np.int32), "rho_mg_cm3": crho.astype(float)}}
