"""A plane section of per-cell fields, drawn as images: e.g. the mid-sagittal slice of a CT
vertebra's density change under two treatments, side by side.

:func:`cell_slice` (collective) picks the owned cells whose midpoint lies within half an
element of a plane, gathers them to rank 0 and rasterises them on a pixel grid of the
element size in the plane (for a voxel mesh cut along its voxel planes this is exactly one
pixel per element); :func:`plot_slices` (serial) draws such images with shared colour
scales. Only reads what it is given.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from femur.core.errors import InputError
from femur.core.mpi import MPI
from femur.exports.plots import _pyplot, _save


@dataclass
class Slice:
    """Images (ni, nj) of cell fields in a plane: row i along ``v`` (e.g. superior), column
    j along ``u`` (e.g. anterior); ``extent`` (u0, u1, v0, v1) in mm; NaN = no cell."""

    images: dict
    extent: tuple
    pixel_mm: float


def _unit(v) -> np.ndarray:
    v = np.asarray(v, dtype=float).ravel()
    n = np.linalg.norm(v)
    if v.shape != (3,) or not np.isfinite(n) or n == 0:
        raise InputError(f"slice direction must be a non-zero 3-vector, got {v}")
    return v / n


def _centre(bone, mask) -> np.ndarray | None:
    """Volume centre (mm) of the local cells of ``mask`` over all ranks (None if empty)."""
    own = np.arange(bone.num_local_cells) < bone.num_owned_cells
    vol = bone.cell_volumes() * (mask & own)
    s = bone.comm.allreduce(np.concatenate([(vol[:, None] * bone.cell_midpoints()).sum(axis=0),
                                            [vol.sum()]]), op=MPI.SUM)
    return s[:3] / s[3] if s[3] > 0 else None


def vertebra_sagittal_frame(bone) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(origin, normal, u, v) of a vertebra's mid-sagittal plane (collective): v the
    cranio-caudal axis (``landmarks["axis"]``); u anterior: from the centre of the posterior
    elements (compartments "posterior*") to the centre of the vertebral body ("trabecular"
    and "cortical"), made normal to v -- read from the anatomy, since a scan's header
    cannot always be trusted to say which way is anterior (world +y, RAS, without posterior
    elements); normal = u x v (left-right); origin the volume centre of the body."""
    v = _unit(bone.landmarks.get("axis", (0.0, 0.0, 1.0)))
    n_local = bone.num_local_cells
    body = np.zeros(n_local, dtype=bool)
    post = np.zeros(n_local, dtype=bool)
    for name in bone.cell_ids:
        if name in ("trabecular", "cortical"):
            body |= bone.compartment_mask(name)
        elif name.lower().startswith("posterior"):
            post |= bone.compartment_mask(name)
    origin = _centre(bone, body)
    if origin is None:
        origin = _centre(bone, np.ones(n_local, dtype=bool))
    back = _centre(bone, post)
    ap = np.array([0.0, 1.0, 0.0]) if back is None else origin - back
    u = _unit(ap - (ap @ v) * v)
    return origin, np.cross(u, v), u, v


def cell_slice(bone, fields: dict, origin, normal, u, v, pixel_mm: float | None = None) -> Slice | None:
    """The cells within half a pixel of the plane (``origin``, ``normal``), rasterised on a
    ``pixel_mm`` grid (default: the element size, ``bone.parameters["element_size_mm"]`` or
    the cube root of the median cell volume); collective, the Slice on rank 0 (None
    elsewhere). Where two cells fall in one pixel, the one nearer the plane wins."""
    origin, normal, u, v = (np.asarray(a, dtype=float).ravel() for a in (origin, normal, u, v))
    n_owned = bone.num_owned_cells
    if pixel_mm is None:
        pixel_mm = (bone.parameters or {}).get("element_size_mm")
    if pixel_mm is None:
        vol = bone.cell_volumes()[:n_owned]
        med = bone.comm.allgather(float(np.median(vol)) if vol.size else np.nan)
        pixel_mm = float(np.nanmedian(med)) ** (1.0 / 3.0)
    h = float(pixel_mm)
    mid = bone.cell_midpoints()[:n_owned] - origin
    d = mid @ normal
    near = np.abs(d) <= 0.5 * h + 1e-9 * h
    local = (mid[near] @ u, mid[near] @ v, np.abs(d[near]),
             {k: np.asarray(f, dtype=float)[:n_owned][near] for k, f in fields.items()})
    parts = bone.comm.gather(local, root=0)
    if bone.comm.rank != 0:
        return None
    a = np.concatenate([p[0] for p in parts])
    b = np.concatenate([p[1] for p in parts])
    dist = np.concatenate([p[2] for p in parts])
    if a.size == 0:
        raise InputError(f"bone '{bone.name}': no cell within {0.5 * h:g} mm of the slice plane")
    j = np.floor(a / h + 0.5).astype(int)
    i = np.floor(b / h + 0.5).astype(int)
    j0, i0 = j.min(), i.min()
    shape = (i.max() - i0 + 1, j.max() - j0 + 1)
    order = np.argsort(-dist, kind="stable")  # nearest written last: it wins
    images = {}
    for k in fields:
        vals = np.concatenate([p[3][k] for p in parts])
        img = np.full(shape, np.nan)
        img[i[order] - i0, j[order] - j0] = vals[order]
        images[k] = img
    extent = ((j0 - 0.5) * h, (j.max() + 0.5) * h, (i0 - 0.5) * h, (i.max() + 0.5) * h)
    return Slice(images, extent, h)


def plot_slices(panels: list, path, suptitle: str | None = None, u_label: str = "anterior (mm)",
                v_label: str = "superior (mm)") -> Path:
    """Draw slice images side by side (serial). ``panels``: [(title, image, extent, style)]
    with style a dict of ``cmap``, ``vmin``, ``vmax``, ``label`` (colour-bar title),
    ``extend`` (colour-bar arrows for values beyond the limits) and optionally
    ``background`` (an image drawn first in light grey where finite, e.g. the loading
    layers)."""
    plt = _pyplot()
    e = panels[0][2]
    aspect = (e[3] - e[2]) / max(e[1] - e[0], 1e-9)  # height / width of the first image
    fig, axes = plt.subplots(1, len(panels), figsize=(4.2 * len(panels), 1.9 + 4.0 * aspect),
                             squeeze=False)
    for ax, (title, img, extent, style) in zip(axes[0], panels):
        bg = style.get("background")
        if bg is not None:
            ax.imshow(np.where(np.isfinite(bg), 0.85, np.nan), origin="lower", extent=extent,
                      cmap="gray", vmin=0, vmax=1, interpolation="nearest")
        im = ax.imshow(img, origin="lower", extent=extent, cmap=style.get("cmap", "viridis"),
                       vmin=style.get("vmin"), vmax=style.get("vmax"), interpolation="nearest")
        ax.set_title(title, fontsize=10)
        ax.set_xlabel(u_label)
        ax.set_ylabel(v_label)
        ax.set_aspect("equal")
        cb = fig.colorbar(im, ax=ax, orientation="horizontal", fraction=0.05, pad=0.22,
                          extend=style.get("extend", "neither"))
        cb.set_label(style.get("label", ""))
    if suptitle:
        fig.suptitle(suptitle, fontsize=9)
    return _save(fig, path)


__all__ = ["Slice", "cell_slice", "plot_slices", "vertebra_sagittal_frame"]
