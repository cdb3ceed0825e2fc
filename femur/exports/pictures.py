"""Off-screen pictures of bones and fields (pyvista, imported only when a picture is made).

Rendering never drives a simulation: these functions read a mesh and per-cell arrays (or
grids written earlier) and write PNG or VTK files. Under MPI the owned cells of every rank
are gathered to rank 0, which renders or writes; other ranks return None.

Headless machines: without an X display the render window is created off screen through
EGL or OSMesa, whichever library is installed (``VTK_DEFAULT_OPENGL_WINDOW``), so VTK does
not try (and fail, with a "bad X server connection" warning) to reach an X server first.
"""

from __future__ import annotations

import ctypes.util
import os
import sys
from pathlib import Path

import numpy as np

from femur.core.mpi import MPI  # noqa: F401  (MPI before dolfinx)
import dolfinx  # noqa: E402
import dolfinx.plot  # noqa: E402


def _headless() -> bool:
    return sys.platform.startswith("linux") and not os.environ.get("DISPLAY") \
        and not os.environ.get("WAYLAND_DISPLAY")


def offscreen_window() -> str | None:
    """The VTK render window to use without a display: EGL where libEGL is installed, else
    OSMesa where libOSMesa is, else None (VTK's default)."""
    for lib, window in (("EGL", "vtkEGLRenderWindow"), ("OSMesa", "vtkOSOpenGLRenderWindow")):
        if ctypes.util.find_library(lib):
            return window
    return None


def pyvista_offscreen():
    """The pyvista module set up for off-screen rendering (EGL/OSMesa without a display)."""
    os.environ.setdefault("PYVISTA_OFF_SCREEN", "true")
    window = offscreen_window() if _headless() else None
    if window:
        # no X server: open VTK's off-screen window directly instead of probing X first
        os.environ.setdefault("VTK_DEFAULT_OPENGL_WINDOW", window)
    try:
        import pyvista as pv  # heavy optional import: only when a picture is made
    except ImportError as exc:  # pragma: no cover - pyvista is a dependency
        raise ImportError("femur.exports.pictures needs pyvista: pip install pyvista") from exc
    pv.OFF_SCREEN = True
    return pv


#: VTK Lagrange cell types of DOLFINx's degree-1 cells -> the linear VTK types with the same
#: corner order. VTK's clip filter mishandles Lagrange hexahedra (the clipped cells carry
#: garbage data), so degree-1 cells are handed over as linear cells.
_LINEAR_VTK = {(71, 4): 10, (72, 8): 12}  # tetrahedron, hexahedron


def _linear_cell_types(topology: np.ndarray, cell_types: np.ndarray) -> np.ndarray:
    """``cell_types`` with degree-1 Lagrange cells as linear ones (``topology``: VTK's flat
    [n, v0, ..., n, ...] array of one cell type)."""
    if len(cell_types) == 0:
        return cell_types
    npc = int(topology[0])
    out = np.asarray(cell_types).copy()
    for (lagrange, nodes), linear in _LINEAR_VTK.items():
        if npc == nodes:
            out[out == lagrange] = linear
    return out


def gather_grid(mesh, cell_data: dict[str, np.ndarray] | None = None):
    """Gather the owned cells of `mesh` (and per-cell arrays over local cells) to rank 0.

    Returns a pyvista.UnstructuredGrid on rank 0, None elsewhere.
    """
    pv = pyvista_offscreen()
    tdim = mesh.topology.dim
    n_owned = mesh.topology.index_map(tdim).size_local
    owned = np.arange(n_owned, dtype=np.int32)
    topology, cell_types, x = dolfinx.plot.vtk_mesh(mesh, tdim, owned)
    cell_types = _linear_cell_types(topology, cell_types)
    data = {k: np.asarray(v)[:n_owned] for k, v in (cell_data or {}).items()}
    parts = mesh.comm.gather((topology, cell_types, x, data), root=0)
    if mesh.comm.rank != 0:
        return None
    grids = []
    for top, ct, xx, dd in parts:
        if len(ct) == 0:
            continue
        g = pv.UnstructuredGrid(top, ct, xx)
        for k, v in dd.items():
            g.cell_data[k] = v
        grids.append(g)
    grid = grids[0] if len(grids) == 1 else pv.merge(grids, merge_points=False)
    return grid


def save_cell_fields(mesh, fields: dict[str, np.ndarray], path) -> Path | None:
    """Write the owned cells of ``mesh`` with per-cell ``fields`` to a VTK file (``.vtu``),
    gathered on rank 0 (collective; rank 0 returns the path)."""
    grid = gather_grid(mesh, fields)
    if grid is None:
        return None
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    grid.save(str(path))
    return path


def read_grid(path):
    """A grid written by :func:`save_cell_fields` (pyvista.UnstructuredGrid)."""
    return pyvista_offscreen().read(str(path))


def render_cell_fields(
    mesh,
    fields: dict[str, np.ndarray],
    path: str | Path,
    titles: dict[str, str] | None = None,
    cmaps: dict[str, str] | None = None,
    clims: dict[str, tuple[float, float]] | None = None,
    view: str = "xz",
    clip_normal: str | None = None,
) -> Path | None:
    """Render one panel per cell field side by side into a PNG (collective; rank 0 writes).

    `clip_normal` (e.g. "y") cuts the bone through its centre to show the inside.
    """
    grid = gather_grid(mesh, fields)
    if grid is None:
        return None
    return render_grids({name: (grid, name) for name in fields}, path, titles, cmaps, clims, view,
                        clip_normal)


def render_grids(panels: dict, path, titles=None, cmaps=None, clims=None, view: str = "xz",
                 clip_normal: str | None = None) -> Path:
    """Render ``panels`` ({panel: (grid, cell-array name)}) side by side into a PNG (serial).

    Each panel's title is its colour bar's title (one title per panel, under the bone)."""
    pv = pyvista_offscreen()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    names = list(panels)
    plotter = pv.Plotter(off_screen=True, shape=(1, len(names)), window_size=(520 * len(names), 620))
    for i, name in enumerate(names):
        grid, scalars = panels[name]
        plotter.subplot(0, i)
        shown = grid.clip(normal=clip_normal, origin=grid.center) if clip_normal else grid
        title = (titles or {}).get(name, name)
        plotter.add_mesh(
            shown,
            scalars=scalars,
            cmap=(cmaps or {}).get(name, "viridis"),
            clim=(clims or {}).get(name),
            show_edges=False,
            scalar_bar_args={"title": title, "vertical": False, "position_x": 0.15,
                             "position_y": 0.07, "width": 0.7, "height": 0.06,
                             "title_font_size": 14, "label_font_size": 11, "fmt": "%.3g",
                             "n_labels": 5},
        )
        # labels under the bar, the title above it: they never overlap
        plotter.scalar_bars[title].SetTextPositionToPrecedeScalarBar()
        getattr(plotter, f"view_{view}")()
    plotter.link_views()
    plotter.screenshot(str(path))
    plotter.close()
    return path


__all__ = ["gather_grid", "pyvista_offscreen", "read_grid", "render_cell_fields", "render_grids",
           "save_cell_fields"]
