"""Files and pictures of a nonlinear pushover (``femur strength --model nonlinear --out``).

Given a finished pushover (``femur.mechanics.pushover_result.PushoverSolution``), the
folder gets, per load case (``<stem>`` = ``<bone>_<case>`` or the case name):

* ``<stem>_load_displacement.csv`` -- the curve (displacement_mm, force_n); also written
  after every converged increment while the pushover runs (:class:`CurveFile`), so that
  an interrupted or failed run keeps its partial curve;
* ``<stem>_load_displacement.png`` -- the curve with the peak, the 0.2 %-offset line and
  yield point, and the first yield (:func:`plot_pushover`);
* ``<stem>_pushover.json`` -- the summary (strength read-offs, counters, timings, curve);
* ``<stem>_plastic_strain.xdmf`` -- DG0 cell fields for ParaView: equivalent plastic
  strain and yielded volume fraction at the peak load and at the end;
* ``<stem>_yielded.png`` -- where the bone had yielded at the peak load, cut through its
  centre normal to y (the frontal plane of the femur, the coronal plane of an LPS CT).

These functions draw and write what they are given; they never run a computation.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from femur.core.mpi import MPI
import dolfinx  # noqa: E402
import dolfinx.io  # noqa: E402

from femur.exports.plots import _pyplot  # noqa: E402
from femur.exports.pictures import render_cell_fields  # noqa: E402

CURVE_HEADER = "displacement_mm,force_n"


def _write_curve(path: Path, curve) -> None:
    np.savetxt(path, np.asarray(curve, dtype=float).reshape(-1, 2), delimiter=",",
               header=CURVE_HEADER, comments="")


class CurveFile:
    """Writes the curve so far after every converged increment (rank 0 of ``comm``):
    ``callback(curve)`` for ``femur.mechanics.pushover.solve_pushover(on_increment=...)``."""

    def __init__(self, folder, stem: str, comm):
        self.path = Path(folder) / f"{stem}_load_displacement.csv"
        self.comm = comm

    def __call__(self, curve) -> None:
        if self.comm.rank == 0:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            _write_curve(self.path, curve)


def plot_pushover(result, path=None, ax=None):
    """Load-displacement curve with the peak, the 0.2 % offset line and yield point and the
    first yield; saved to ``path`` (PNG, rank 0) if given. Returns the matplotlib figure."""
    plt = _pyplot()
    c = result.curve
    fig = None
    if ax is None:
        fig, ax = plt.subplots(figsize=(6, 4.2))
    ax.plot(c[:, 0], c[:, 1], "o-", ms=3, lw=1.5, label="pushover")
    off = result.offset_strain * result.gauge_length_mm
    dd = np.array([off, c[:, 0].max()])
    ax.plot(dd, result.linear_stiffness_n_per_mm * (dd - off), "--", color="0.5", lw=1,
            label=f"{result.offset_strain:.1%} offset (gauge {result.gauge_length_mm:.0f} mm)")
    ax.plot(result.displacement_at_peak_mm, result.nonlinear_strength_n, "v", color="C3", ms=8,
            label=f"peak {result.nonlinear_strength_n:.0f} N")
    if result.yield_load_n is not None:
        ax.plot(result.yield_displacement_mm, result.yield_load_n, "s", color="C2", ms=6,
                label=f"offset yield {result.yield_load_n:.0f} N")
    ax.plot(result.first_yield_displacement_mm, result.first_yield_load_n, "x", color="k",
            label=f"first yield {result.first_yield_load_n:.0f} N")
    ax.set_ylim(0, 1.15 * max(result.nonlinear_strength_n, 1e-9))
    ax.set_xlim(0, c[:, 0].max() * 1.02)
    ax.set_xlabel("displacement along the load (mm)")
    ax.set_ylabel("reaction force (N)")
    title = f"{result.bone_name}: {result.load_case} ({result.criterion})"
    if not result.converged:
        title += " -- stopped early"
    ax.set_title(title, fontsize=10)
    ax.legend(fontsize=8, loc="lower right")
    ax.grid(alpha=0.3)
    if fig is not None:
        fig.tight_layout()
        if path is not None and result.bone.comm.rank == 0:
            Path(path).parent.mkdir(parents=True, exist_ok=True)
            fig.savefig(path, dpi=120)
    return fig if fig is not None else ax.figure


def _dg0(bone, values, name):
    V = dolfinx.fem.functionspace(bone.mesh, ("DG", 0))
    f = dolfinx.fem.Function(V, name=name)
    n = bone.num_owned_cells
    f.x.array[V.dofmap.list[:n, 0]] = values
    f.x.scatter_forward()
    return f


def _local(bone, owned_values):
    """Owned-cell values padded to all local cells (ghost values unused by the renderer)."""
    a = np.zeros(bone.num_local_cells)
    a[: bone.num_owned_cells] = owned_values
    return a


def write_pushover(result, folder, stem: str | None = None, picture: bool = True) -> dict:
    """Write CSV, PNG, JSON, XDMF and the yielded-region picture of ``result`` into
    ``folder`` (collective). Returns {kind: path}."""
    bone = result.bone
    comm = bone.comm
    out = Path(folder)
    if comm.rank == 0:
        out.mkdir(parents=True, exist_ok=True)
    comm.barrier()
    stem = stem or result.load_case
    paths = {"csv": out / f"{stem}_load_displacement.csv",
             "curve_png": out / f"{stem}_load_displacement.png",
             "json": out / f"{stem}_pushover.json",
             "xdmf": out / f"{stem}_plastic_strain.xdmf"}
    if picture:
        paths["yielded_png"] = out / f"{stem}_yielded.png"
    if comm.rank == 0:
        _write_curve(paths["csv"], result.curve)
        paths["json"].write_text(json.dumps(result.summary(), indent=2, default=float) + "\n")
    fig = plot_pushover(result, paths["curve_png"])
    _pyplot().close(fig)
    flds = result.fields()
    funcs = [_dg0(bone, v, k) for k, v in flds.items()]
    with dolfinx.io.XDMFFile(comm, str(paths["xdmf"]), "w") as xf:
        xf.write_mesh(bone.mesh)
        for f in funcs:
            xf.write_function(f)
    if picture:
        top = max(float(comm.allreduce(float(flds["plastic_strain_at_peak"].max(initial=0.0)),
                                       op=MPI.MAX)), 1e-12)
        render_cell_fields(
            bone.mesh,
            {"yielded_at_peak": _local(bone, flds["yielded_at_peak"]),
             "plastic_strain_at_peak": _local(bone, flds["plastic_strain_at_peak"])},
            paths["yielded_png"],
            titles={"yielded_at_peak": f"yielded at peak ({result.nonlinear_strength_n:.0f} N)",
                    "plastic_strain_at_peak": "equivalent plastic strain at peak"},
            cmaps={"yielded_at_peak": "Reds", "plastic_strain_at_peak": "magma_r"},
            clims={"yielded_at_peak": (0.0, 1.0), "plastic_strain_at_peak": (0.0, top)},
            clip_normal="y")
    return {k: str(v) for k, v in paths.items()}


__all__ = ["CURVE_HEADER", "CurveFile", "plot_pushover", "write_pushover"]
