"""Pictures of an adapted femur density field (rank 0 draws; pyvista off-screen and
matplotlib).  They read arrays; they never drive the adaptation.

* :func:`coronal_slice_figure` -- panels of per-cell fields on the "mid-coronal" plane of
  the neck: the plane through the head centre that holds the shaft axis and the neck
  axis (the plane a hip radiograph or a QCT reformat along the neck shows);
* :func:`convergence_figure` -- the largest density change per iteration (the
  steady-state residual) and the share of bone at equilibrium, per scheme.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from femur.core.mpi import MPI  # noqa: F401
from femur.exports.pictures import gather_grid, pyvista_offscreen
from femur.outcomes.density_pattern import neck_frame


def slice_plane(bone):
    """(origin, normal, up) of the neck's mid-coronal plane (bone frame, mm)."""
    f = neck_frame(bone)
    s, n = f["s"], f["n"]
    e = n - (n @ s) * s
    e /= np.linalg.norm(e)
    normal = np.cross(s, e)
    return f["C"], normal / np.linalg.norm(normal), s


def coronal_slice_figure(bone, fields: dict, path, titles: dict | None = None,
                         cmaps: dict | None = None, clims: dict | None = None, units: dict | None = None,
                         window_px: tuple = (560, 760)):
    """One panel per cell field on the mid-coronal slice; returns the path on rank 0."""
    pv = pyvista_offscreen()
    grid = gather_grid(bone.mesh, fields)
    if grid is None:
        return None
    origin, normal, up = slice_plane(bone)
    sl = grid.slice(normal=normal, origin=origin)
    names = list(fields)
    plotter = pv.Plotter(off_screen=True, shape=(1, len(names)),
                         window_size=(window_px[0] * len(names), window_px[1]))
    bounds = np.array(sl.bounds).reshape(3, 2)
    centre = bounds.mean(axis=1)
    size = float(np.ptp(bounds, axis=1).max())
    for i, name in enumerate(names):
        plotter.subplot(0, i)
        plotter.add_mesh(sl, scalars=name, cmap=(cmaps or {}).get(name, "gray"),
                         clim=(clims or {}).get(name), show_edges=False,
                         # pyvista shares one bar between meshes of the same bar title:
                         # keep the titles distinct
                         scalar_bar_args={"title": (units or {}).get(name, name) + " " * i, "vertical": False,
                                          "position_x": 0.15, "position_y": 0.03, "width": 0.7,
                                          "n_labels": 3, "fmt": "%.3g"})
        plotter.add_text((titles or {}).get(name, name), font_size=10)
        plotter.camera_position = [tuple(centre - 3.0 * size * normal), tuple(centre), tuple(up)]
        plotter.enable_parallel_projection()
        plotter.camera.parallel_scale = 0.55 * size
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    plotter.screenshot(str(path))
    plotter.close()
    return path


def convergence_figure(histories: dict, path, tol_g_cm3: float | None = None):
    """Residual (largest density change per iteration, log scale) and the share of bone at
    equilibrium vs iteration, one line per run (``histories``: label -> history dict)."""
    os.environ.setdefault("MPLBACKEND", "Agg")
    import matplotlib.pyplot as plt

    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 3.8))
    for label, h in histories.items():
        it = np.arange(1, len(h["max_change_g_cm3"]) + 1)
        ax1.semilogy(it, h["max_change_g_cm3"], label=label)
        ax2.plot(it, h["lazy_or_bound_fraction"], label=label)
    if tol_g_cm3:
        ax1.axhline(tol_g_cm3, color="k", ls="--", lw=0.8, label=f"tolerance {tol_g_cm3:g}")
    ax1.set_xlabel("iteration")
    ax1.set_ylabel("max |density change| (g/cm3)")
    ax1.set_title("steady-state residual")
    ax2.set_xlabel("iteration")
    ax2.set_ylabel("share at equilibrium")
    ax2.set_title("lazy zone or at a bound")
    ax2.set_ylim(0, 1)
    for ax in (ax1, ax2):
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


__all__ = ["coronal_slice_figure", "convergence_figure", "slice_plane"]
