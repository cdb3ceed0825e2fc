"""Stored habitual-loading density fields (reference data) and how a bone gets one.

The adaptation (``femur.workflows.habitual_adaptation``) is slow (hundreds of FE solves), so its
result is computed once per reference mesh and stored in ``femur/data/`` as an ``.npz``
(regenerate with ``python -m femur.calibration.habitual_density --write``).  Building a bone then
only *maps* the stored field:

* **same topology** (the reference mesh itself, or a morph of it: same cells, moved
  nodes): the field is taken cell by cell through the mesh's original cell indices
  (``mesh.topology.original_cell_index``), so it follows the morph exactly and does not
  depend on the MPI partition.  The key is a SHA-256 of the cell-to-input-node table
  (:func:`mesh_signature`).
* **another mesh** (e.g. the parametric femur at the trial mesh size, or another
  parametric shape): nearest-cell
  sampling *within the same compartment*: each target cell takes the inverse-distance
  weighted mean of the 4 nearest reference cells of its own compartment (cell midpoints),
  after a similarity transform (scale, rotation, translation; Umeyama 1991 least squares)
  that maps the target's point landmarks onto the reference's (identity when they agree).
  Choice: the anatomical femur's two shipped meshes (3 mm default, 4 mm trial) each
  have their own adaptation, so a cohort morph of either takes its field cell by cell;
  the parametric femur has one (its default 3 mm mesh), sampled onto other sizes and
  shapes (milliseconds).

Compartments (how the adapted field defines the density of a tagged bone, issue 11):
the mesh's compartments stay as they are (the geometric cortex of the parametric model or
the conformal cortical shell of the anatomical mesh). By default the adapted field gives
the *pattern* of relative density inside the cancellous compartment only
(:func:`patterned_density`):

    rho_e = base_trab * a * rho_adapt,e / mean_trab(rho_adapt),

clipped to [0.01, 0.95] g/cm3 (below the 1.0 g/cm3 switch of the T-score rule of
``femur.workflows.t_score.bone_with_t_score``: BV/TV rule below, porosity rule above, so
the compartment keeps its rule), with the factor a found so that the compartment's
volume-weighted mean stays at its base density (default the young-adult density of
``femur.geometry.density.T_SCORE_BASE_G_CM3``: cancellous 0.35); the cortex takes its
base density uniformly (young adult: 1.85 g/cm3, porosity ~7.5 %), its regional
thickness being the mesh's geometry.

Why not the cortex too (the T-score problem of issue 11, ``docs/adapted_density_t_score.py``):
patterned the same way inside the cortex (range [1.6, 2.0] g/cm3), the adapted field is
nearly binary there -- about 59 % of the cortical volume sits at the pore-free bound 2.0 and
33 % at 1.6 (anatomical 4 mm femur; the shell is one or two elements thick, so the law
cannot resolve a pattern across it). ``bone_with_t_score`` lowers cortical density by
scaling its *porosity* (x 1/s), so pore-free cells keep all their bone at any T-score:
reaching FN T = -2.5 then needs s = 0.30 instead of 0.47 and empties the trochanteric
region, and the total-hip T-score falls to -2.73, below the neck's (-1.55 with uniform
compartments, -1.84 with the cancellous pattern only). ``patterned=("trabecular",
"cortical")`` restores the cortical pattern (for that comparison).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np

from femur.core.mpi import MPI
import dolfinx  # noqa: E402

from femur.core.datafiles import DATA_DIR  # noqa: E402
from femur.core.errors import InputError  # noqa: E402
from femur.geometry.density import T_SCORE_BASE_G_CM3, validate_density  # noqa: E402

#: the command that regenerates the stored fields
REGENERATE = "python -m femur.calibration.habitual_density --write"
#: stored fields per bone family, by the mesh size (mm) of the mesh they were adapted on;
#: the first is the one sampled onto meshes of other topologies
REFERENCES = {
    "parametric-femur": {3.0: "adapted_density_parametric_femur_3mm.npz"},
    "anatomical-femur": {3.0: "adapted_density_anatomical_femur_3mm.npz",
                         4.0: "adapted_density_anatomical_femur_4mm.npz"},
}
#: compartment density ranges (g/cm3) kept by :func:`patterned_density`
COMPARTMENT_RANGES = {"cortical": (1.6, 2.0), "trabecular": (0.01, 0.95)}
#: compartments that take the adapted pattern by default (module docstring: why not the cortex)
PATTERNED_COMPARTMENTS = ("trabecular",)
#: point landmarks used to align another shape with the reference
POINT_LANDMARKS = ("head_center", "neck_base", "neck_center", "distal_center", "trochanter_point")
FORMAT_VERSION = 1


# ----------------------------------------------------------------------------- mesh keys
def _gather_cells(bone):
    """(original cell index, sorted input node indices, midpoint, compartment value) of
    every owned cell, gathered and ordered by original index on every rank."""
    mesh = bone.mesh
    n = bone.num_owned_cells
    orig = np.asarray(mesh.topology.original_cell_index[:n], dtype=np.int64)
    nodes = np.asarray(mesh.geometry.input_global_indices, dtype=np.int64)[mesh.geometry.dofmaps[0][:n]]
    nodes = np.sort(nodes, axis=1)
    mid = bone.cell_midpoints()[:n]
    comp = np.zeros(n, dtype=np.int32)
    if bone.cell_tags is not None:
        ct = bone.cell_tags
        sel = ct.indices < n
        comp[ct.indices[sel]] = ct.values[sel]
    parts = bone.comm.allgather((orig, nodes, mid, comp))
    orig = np.concatenate([p[0] for p in parts])
    order = np.argsort(orig, kind="stable")
    return (orig[order], np.concatenate([p[1] for p in parts])[order],
            np.concatenate([p[2] for p in parts])[order], np.concatenate([p[3] for p in parts])[order])


def mesh_signature(bone) -> dict:
    """SHA-256 keys of a bone's mesh, independent of the MPI partition (collective):
    ``topology`` (cells -> input nodes: equal for a morph of the same mesh) and
    ``geometry`` (node coordinates rounded to 1e-6 mm)."""
    orig, nodes, _, _ = _gather_cells(bone)
    top = hashlib.sha256(np.ascontiguousarray(orig).tobytes() + np.ascontiguousarray(nodes).tobytes())
    mesh = bone.mesh
    n_nodes = mesh.geometry.index_map().size_local
    gi = np.asarray(mesh.geometry.input_global_indices[:n_nodes], dtype=np.int64)
    x = np.round(mesh.geometry.x[:n_nodes], 6)
    parts = bone.comm.allgather((gi, x))
    gi = np.concatenate([p[0] for p in parts])
    x = np.concatenate([p[1] for p in parts])
    order = np.argsort(gi, kind="stable")
    geo = hashlib.sha256(np.ascontiguousarray(gi[order]).tobytes() + np.ascontiguousarray(x[order]).tobytes())
    return {"topology": top.hexdigest(), "geometry": geo.hexdigest(), "cells": int(len(orig)),
            "nodes": int(len(gi))}


# ----------------------------------------------------------------------------- storage
@dataclass(frozen=True)
class ReferenceField:
    """A stored adapted field on its reference mesh (arrays in original cell order)."""

    density_g_cm3: np.ndarray
    midpoints_mm: np.ndarray
    compartment: np.ndarray
    cell_ids: dict
    landmarks: dict
    signature: dict
    provenance: dict
    path: str


def save_reference(bone, density_g_cm3, path, provenance: dict) -> dict:
    """Write the owned cells' adapted densities of ``bone`` to ``path`` (rank 0 writes;
    collective).  Returns the mesh signature stored with it."""
    sig = mesh_signature(bone)
    n = bone.num_owned_cells
    rho_loc = np.asarray(density_g_cm3, float)[:n]
    orig_loc = np.asarray(bone.mesh.topology.original_cell_index[:n], dtype=np.int64)
    parts = bone.comm.gather((orig_loc, rho_loc), root=0)
    _, _, mid, comp = _gather_cells(bone)
    if bone.comm.rank == 0:
        orig = np.concatenate([p[0] for p in parts])
        rho = np.concatenate([p[1] for p in parts])[np.argsort(orig, kind="stable")]
        lms = {k: np.asarray(v, float).tolist() for k, v in bone.landmarks.items()}
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        meta = {"format_version": FORMAT_VERSION, "signature": sig, "cell_ids": dict(bone.cell_ids),
                "landmarks": lms, "bone": {"name": bone.name, "kind": bone.kind, "source": bone.source,
                                           "parameters": _jsonable(bone.parameters)},
                "provenance": provenance}
        with open(path, "wb") as fh:
            np.savez_compressed(fh, density_g_cm3=rho.astype(np.float32),
                                midpoints_mm=mid.astype(np.float32), compartment=comp,
                                meta=np.array(json.dumps(meta)))
    bone.comm.barrier()
    load_reference.cache_clear()
    return sig


def _jsonable(obj):
    return json.loads(json.dumps(obj, default=lambda o: np.asarray(o).tolist() if hasattr(o, "__len__") else str(o)))


def reference_path(family: str = "parametric-femur", mesh_size_mm: float | None = None) -> Path:
    """File of a stored field: ``family`` in :data:`REFERENCES`, ``mesh_size_mm`` one of its
    sizes (default: its first)."""
    if family not in REFERENCES:
        raise InputError(f"unknown adapted-density reference family '{family}'; known: {sorted(REFERENCES)}")
    files = REFERENCES[family]
    if mesh_size_mm is None:
        return DATA_DIR / next(iter(files.values()))
    for size, name in files.items():
        if abs(size - float(mesh_size_mm)) < 1e-9:
            return DATA_DIR / name
    raise InputError(f"adapted-density family '{family}' has no stored field for a {mesh_size_mm:g} mm mesh "
                     f"(stored: {', '.join(f'{s:g} mm' for s in files)})")


@lru_cache(maxsize=8)
def load_reference(path_or_family: str = "parametric-femur") -> ReferenceField:
    """Read a stored field: a file path, or a family of :data:`REFERENCES` (its first file)."""
    path = reference_path(path_or_family) if path_or_family in REFERENCES else Path(path_or_family)
    if not path.exists():
        raise InputError(f"adapted-density reference file {path} not found; generate it with "
                         f"`{REGENERATE}`")
    try:
        with np.load(path, allow_pickle=False) as z:
            meta = json.loads(str(z["meta"]))
            ref = ReferenceField(np.asarray(z["density_g_cm3"], float), np.asarray(z["midpoints_mm"], float),
                                 np.asarray(z["compartment"], np.int32), meta["cell_ids"],
                                 {k: np.asarray(v, float) for k, v in meta["landmarks"].items()},
                                 meta["signature"], meta["provenance"], str(path))
    except (OSError, KeyError, ValueError) as exc:
        raise InputError(f"adapted-density reference file {path} is unreadable or lacks a field: {exc}") from None
    if len(ref.density_g_cm3) != ref.signature["cells"]:
        raise InputError(f"adapted-density reference {path}: {len(ref.density_g_cm3)} values for "
                         f"{ref.signature['cells']} cells")
    return ref


def family_of(bone) -> str:
    """The reference family of a built-in femur (from ``bone.source``)."""
    src = str(getattr(bone, "source", ""))
    if bone.kind == "femur" and src.startswith("parametric"):
        return "parametric-femur"
    if bone.kind == "femur" and src.startswith("anatomical"):
        return "anatomical-femur"
    raise InputError(f"no stored adapted-density reference for bone '{bone.name}' (kind {bone.kind}, "
                     f"source {src!r}); pass reference= a file written by femur.calibration.habitual_density")


def _candidates(bone, reference) -> list[str]:
    if reference is not None and reference not in REFERENCES:
        return [str(reference)]
    family = reference or family_of(bone)
    paths = [str(DATA_DIR / name) for name in REFERENCES[family].values()]
    present = [p for p in paths if Path(p).exists()]
    if not present:
        raise InputError(f"no stored adapted-density field of family '{family}' in {DATA_DIR} (expected "
                         f"{', '.join(Path(p).name for p in paths)}); generate them with "
                         f"`{REGENERATE}`")
    return present


# ----------------------------------------------------------------------------- mapping
def similarity_transform(src: np.ndarray, dst: np.ndarray):
    """(scale c, rotation Rm, translation t) minimising |c Rm src + t - dst| (Umeyama 1991)."""
    mu_s, mu_d = src.mean(axis=0), dst.mean(axis=0)
    xs, xd = src - mu_s, dst - mu_d
    cov = xd.T @ xs / len(src)
    U, S, Vt = np.linalg.svd(cov)
    D = np.eye(3)
    if np.linalg.det(U) * np.linalg.det(Vt) < 0:
        D[2, 2] = -1.0
    Rm = U @ D @ Vt
    var_s = (xs ** 2).sum() / len(src)
    c = float(np.trace(np.diag(S) @ D) / var_s) if var_s > 0 else 1.0
    return c, Rm, mu_d - c * Rm @ mu_s


def _alignment(bone, ref: ReferenceField):
    keys = [k for k in POINT_LANDMARKS if k in bone.landmarks and k in ref.landmarks]
    if len(keys) < 3:
        return None, keys
    src = np.array([np.asarray(bone.landmarks[k], float).reshape(3) for k in keys])
    dst = np.array([ref.landmarks[k].reshape(3) for k in keys])
    if np.allclose(src, dst, atol=1e-6):
        return None, keys
    return similarity_transform(src, dst), keys


def adapted_density(bone, reference: str | None = None, k_nearest: int = 4) -> tuple[np.ndarray, dict]:
    """The stored adapted density on ``bone`` (per local cell, owned + ghost, g/cm3) and a
    record of how it was mapped (``method``: "cell index" or "sampled"); collective.

    ``reference``: a file, or a family of :data:`REFERENCES` (default: the bone's); among a
    family's files the one whose mesh topology matches is taken cell by cell, else the
    family's first file is sampled."""
    refs = [load_reference(p) for p in _candidates(bone, reference)]
    sig = mesh_signature(bone)
    n_loc = bone.num_local_cells
    for ref in refs:
        if sig["topology"] == ref.signature["topology"]:
            orig = np.asarray(bone.mesh.topology.original_cell_index[:n_loc], dtype=np.int64)
            return ref.density_g_cm3[orig].copy(), {"method": "cell index", "reference": ref.path,
                                                     "signature": sig["topology"]}
    ref = refs[0]
    from scipy.spatial import cKDTree

    x = bone.cell_midpoints()
    tr, keys = _alignment(bone, ref)
    if tr is not None:
        c, Rm, t = tr
        x = c * x @ Rm.T + t
    comp = np.zeros(n_loc, dtype=np.int32)
    if bone.cell_tags is not None:
        comp[bone.cell_tags.indices] = bone.cell_tags.values
    out = np.full(n_loc, np.nan)
    names = {v: k for k, v in bone.cell_ids.items()}
    for value in np.unique(comp):
        name = names.get(int(value))
        ref_value = ref.cell_ids.get(name) if name is not None else None
        sel_ref = ref.compartment == ref_value if ref_value is not None else np.ones(len(ref.compartment), bool)
        if not sel_ref.any():
            sel_ref = np.ones(len(ref.compartment), bool)
        tree = cKDTree(ref.midpoints_mm[sel_ref])
        m = comp == value
        k = min(k_nearest, int(sel_ref.sum()))
        dist, idx = tree.query(x[m], k=k)
        dist, idx = dist.reshape(len(idx), -1), idx.reshape(len(idx), -1)
        w = 1.0 / np.maximum(dist, 1e-9)
        out[m] = (w * ref.density_g_cm3[sel_ref][idx]).sum(axis=1) / w.sum(axis=1)
    return out, {"method": "sampled", "reference": ref.path, "k_nearest": k_nearest,
                 "aligned_on": keys if tr is not None else [], "signature": sig["topology"]}


# ----------------------------------------------------------------------------- compartments
def patterned_density(bone, adapted: np.ndarray, base_g_cm3: dict | None = None,
                      ranges: dict | None = None, patterned=PATTERNED_COMPARTMENTS) -> np.ndarray:
    """Compartment densities with the adapted field's pattern inside the compartments named
    in ``patterned`` (default the cancellous one) and the base density elsewhere (see the
    module docstring); per local cell, g/cm3; collective."""
    base = dict(T_SCORE_BASE_G_CM3["vertebra" if bone.kind == "vertebra" else "femur"])
    base.update(base_g_cm3 or {})
    ranges = {**COMPARTMENT_RANGES, **(ranges or {})}
    unknown = set(patterned) - set(COMPARTMENT_RANGES)
    if unknown:
        raise InputError(f"patterned compartments must be among {sorted(COMPARTMENT_RANGES)}, got {sorted(unknown)}")
    adapted = np.asarray(adapted, float)
    if adapted.shape != (bone.num_local_cells,) or not np.all(np.isfinite(adapted)) or np.any(adapted <= 0):
        raise InputError(f"adapted density must be {bone.num_local_cells} finite positive values "
                         f"(g/cm3), got shape {adapted.shape}")
    n = bone.num_owned_cells
    vol = bone.cell_volumes()
    out = adapted.copy()
    for cname in bone.cell_ids:
        kind = "cortical" if "cortical" in cname.lower() else "trabecular" if "trabecular" in cname.lower() else None
        if kind is None:
            continue
        m = bone.compartment_mask(cname)
        target = float(base[kind])
        if kind not in patterned:
            out[m] = target
            continue
        lo, hi = ranges[kind]
        if not lo <= target <= hi:
            raise InputError(f"base density {target} g/cm3 of '{cname}' lies outside its range [{lo}, {hi}]")
        w = vol[:n] * m[:n]
        s = bone.comm.allreduce(np.array([np.sum(w * adapted[:n]), np.sum(w)]), op=MPI.SUM)
        if s[1] <= 0:
            continue
        pattern = adapted[m] / (s[0] / s[1])
        out[m] = _fit_mean(bone, m, pattern, target, lo, hi, vol)
    return out


def _fit_mean(bone, mask, pattern, target, lo, hi, vol) -> np.ndarray:
    """clip(target * a * pattern, lo, hi) with a (bisection) so that the owned cells'
    volume-weighted mean equals target."""
    n = bone.num_owned_cells
    own = mask.copy()
    own[n:] = False
    w = vol[own]
    p_own = pattern[own[mask]]
    wsum = bone.comm.allreduce(float(w.sum()), op=MPI.SUM)

    def mean(a):
        return bone.comm.allreduce(float(np.dot(w, np.clip(target * a * p_own, lo, hi))), op=MPI.SUM) / wsum

    a_lo, a_hi = 0.0, 1.0
    while mean(a_hi) < target and a_hi < 1e6:
        a_hi *= 2.0
    for _ in range(80):
        mid = 0.5 * (a_lo + a_hi)
        if mean(mid) < target:
            a_lo = mid
        else:
            a_hi = mid
    return np.clip(target * 0.5 * (a_lo + a_hi) * pattern, lo, hi)


def bone_with_adapted_density(bone, reference: str | None = None, base_g_cm3: dict | None = None,
                              patterned=PATTERNED_COMPARTMENTS):
    """A copy of ``bone`` whose density is the adapted field as a pattern within the
    ``patterned`` compartments (young-adult compartment means by default);
    ``bone.parameters["density"]`` records the reference, the mapping and the ranges.
    Follow with ``bone_with_t_score``."""
    adapted, how = adapted_density(bone, reference)
    rho = patterned_density(bone, adapted, base_g_cm3, patterned=patterned)
    validate_density(rho, f"adapted density of bone '{bone.name}'", comm=bone.comm)
    V = dolfinx.fem.functionspace(bone.mesh, ("DG", 0))
    f = dolfinx.fem.Function(V, name="density_g_cm3")
    f.x.array[:] = rho
    f.x.scatter_forward()
    new = dataclasses.replace(bone, density=f, parameters=dict(bone.parameters or {}))
    new.parameters["density"] = {
        "source": "habitual-loading adaptation (pattern within the " + ", ".join(patterned) + " compartment)",
        "patterned": list(patterned), "mapping": how,
        "ranges_g_cm3": {k: COMPARTMENT_RANGES[k] for k in patterned}}
    return new


__all__ = ["mesh_signature", "save_reference", "load_reference", "adapted_density", "patterned_density",
           "bone_with_adapted_density", "ReferenceField", "similarity_transform", "REFERENCES", "reference_path",
           "family_of", "COMPARTMENT_RANGES", "PATTERNED_COMPARTMENTS"]
