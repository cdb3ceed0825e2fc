"""Off-screen pictures of bones and fields (pyvista, optional import).

Rendering never drives a simulation: these functions read a Bone and per-cell
arrays and write PNG files. Under MPI the owned cells of every rank are gathered
to rank 0, which renders; other ranks return None.
Set ``PYVISTA_OFF_SCREEN=true`` on machines without a display (pyvista then
renders through EGL/OSMesa).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from femur._mpi import MPI  # noqa: F401
import dolfinx  # noqa: E402
import dolfinx.plot  # noqa: E402


def _pyvista():
    os.environ.setdefault("PYVISTA_OFF_SCREEN", "true")
    try:
        import pyvista as pv
    except ImportError as exc:  # pragma: no cover - pyvista is a dependency
        raise ImportError("femur.viz needs pyvista: pip install pyvista") from exc
    pv.OFF_SCREEN = True
    return pv


def gather_grid(mesh, cell_data: dict[str, np.ndarray] | None = None):
    """Gather the owned cells of `mesh` (and per-cell arrays over local cells) to rank 0.

    Returns a pyvista.UnstructuredGrid on rank 0, None elsewhere.
    """
    pv = _pyvista()
    tdim = mesh.topology.dim
    n_owned = mesh.topology.index_map(tdim).size_local
    owned = np.arange(n_owned, dtype=np.int32)
    topology, cell_types, x = dolfinx.plot.vtk_mesh(mesh, tdim, owned)
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
    """Render one panel per cell field side by side into a PNG (rank 0 writes).

    `clip_normal` (e.g. "y") cuts the bone through its centre to show the inside.
    """
    pv = _pyvista()
    grid = gather_grid(mesh, fields)
    if grid is None:
        return None
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    names = list(fields)
    plotter = pv.Plotter(off_screen=True, shape=(1, len(names)), window_size=(520 * len(names), 620))
    for i, name in enumerate(names):
        plotter.subplot(0, i)
        shown = grid.clip(normal=clip_normal, origin=grid.center) if clip_normal else grid
        plotter.add_mesh(
            shown,
            scalars=name,
            cmap=(cmaps or {}).get(name, "viridis"),
            clim=(clims or {}).get(name),
            show_edges=False,
            scalar_bar_args={"title": (titles or {}).get(name, name), "vertical": False},
        )
        plotter.add_text((titles or {}).get(name, name), font_size=10)
        getattr(plotter, f"view_{view}")()
    plotter.link_views()
    plotter.screenshot(str(path))
    plotter.close()
    return path
