"""Result of a nonlinear pushover: curve, strength read-offs, yielded volumes, outputs.

Files written by :meth:`PushoverResult.write` (``out`` folder, name = load case):
``<case>_load_displacement.csv`` (displacement_mm, force_n), ``<case>_load_displacement.png``,
``<case>_pushover.json`` (the summary), ``<case>_plastic_strain.xdmf`` (DG0 cell fields for
ParaView: equivalent plastic strain and yielded fraction at the peak and at the end) and
``<case>_yielded.png`` (where the bone had yielded at the peak load, cut through its
centre normal to y: the frontal plane of the femur, the coronal plane of an LPS CT).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from femur._mpi import MPI
import dolfinx  # noqa: E402


def offset_yield(curve: np.ndarray, k0: float, offset_mm: float):
    """(displacement_mm, load_n) where the curve crosses F = k0 (d - offset_mm); the curve
    between its points is the monotone cubic (PCHIP) interpolant of the points after the
    first yield, so that a coarse plateau does not cut the knee; (None, None) if the curve
    stays above the line."""
    d, f = curve[:, 0], curve[:, 1]
    g = f - k0 * (d - offset_mm)
    idx = np.flatnonzero(g <= 0)
    if idx.size == 0 or idx[0] == 0:
        return None, None
    i = int(idx[0])
    t = g[i - 1] / (g[i - 1] - g[i])
    d_lin = float(d[i - 1] + t * (d[i] - d[i - 1]))
    if len(d) >= 4 and i >= 2:
        from scipy.interpolate import PchipInterpolator
        from scipy.optimize import brentq

        # points from the first yield on (the elastic segment is straight by construction)
        p = PchipInterpolator(d[1:], f[1:])
        try:
            x = brentq(lambda s: float(p(s)) - k0 * (s - offset_mm), d[i - 1], d[i], xtol=1e-12)
            return float(x), float(p(x))
        except ValueError:  # pragma: no cover - no sign change of the interpolant
            pass
    return d_lin, float(f[i - 1] + t * (f[i] - f[i - 1]))


def cell_fields(kappa: np.ndarray, nq: int, weights: np.ndarray):
    """(weighted mean equivalent plastic strain, yielded volume fraction) per owned cell."""
    k = np.asarray(kappa).reshape(-1, nq)
    w = np.asarray(weights) / np.sum(weights)
    return k @ w, (k > 0).astype(float) @ w


def yielded_volumes(bone, ps, kappa) -> dict:
    """Yielded volume (mm3) in total, per compartment and per ROI (owned cells, summed
    over ranks); a cell counts with the quadrature-weighted fraction of its yielded points."""
    comm = bone.comm
    n = bone.num_owned_cells
    _, frac = cell_fields(kappa, ps.nq, ps.qweights)
    vol = bone.cell_volumes()[:n] * frac
    out = {"total": float(comm.allreduce(float(vol.sum()), op=MPI.SUM)),
           "by_compartment": {}, "by_roi": {}}
    for name in bone.cell_ids:
        m = bone.compartment_mask(name)[:n]
        out["by_compartment"][name] = float(comm.allreduce(float(vol[m].sum()), op=MPI.SUM))
    for name in bone.rois:
        m = bone.roi_mask(name)[:n]
        out["by_roi"][name] = float(comm.allreduce(float(vol[m].sum()), op=MPI.SUM))
    return out


@dataclass
class PushoverResult:
    """Load-displacement curve and strength of a displacement-controlled pushover (N, mm)."""

    bone: object = field(repr=False)
    bone_name: str
    load_case: str
    criterion: str
    yield_model: dict
    material: object
    softening: dict | None
    order: int
    dofs: int
    cells: int
    load_displacement: list  # [[mm, N], ...], starting at [0, 0]
    nonlinear_strength_n: float  # peak load
    displacement_at_peak_mm: float
    yield_load_n: float | None  # 0.2 %-offset yield load (None if not reached)
    yield_displacement_mm: float | None
    first_yield_load_n: float  # load when the first point reaches its yield stress
    first_yield_displacement_mm: float
    linear_stiffness_n_per_mm: float
    gauge_length_mm: float
    offset_strain: float
    max_displacement_mm: float
    direction: list  # prescribed motion of the loaded facets (bone frame, unit)
    increments: int
    cutbacks: int
    newton_iterations: int
    linear_iterations: int
    pc_setups: int
    yielded_volume_mm3: dict  # at the peak load
    yielded_volume_final_mm3: dict
    converged: bool
    stopped_reason: str
    timings: dict
    kappa_peak: np.ndarray = field(repr=False, default=None)
    kappa_final: np.ndarray = field(repr=False, default=None)
    nq: int = 1
    qweights: np.ndarray = field(repr=False, default=None)

    @property
    def curve(self) -> np.ndarray:
        return np.asarray(self.load_displacement, dtype=float)

    def summary(self) -> dict:
        keys = ("bone_name", "load_case", "criterion", "yield_model", "material", "softening",
                "order", "dofs", "cells", "nonlinear_strength_n", "displacement_at_peak_mm",
                "yield_load_n", "yield_displacement_mm", "first_yield_load_n",
                "first_yield_displacement_mm", "linear_stiffness_n_per_mm", "gauge_length_mm",
                "offset_strain", "max_displacement_mm", "direction", "increments", "cutbacks",
                "newton_iterations", "linear_iterations", "pc_setups", "yielded_volume_mm3",
                "yielded_volume_final_mm3", "converged", "stopped_reason", "timings",
                "load_displacement")
        return {k: getattr(self, k) for k in keys}

    # ------------------------------------------------------------------ outputs
    def plot(self, path=None, ax=None):
        """Load-displacement curve with the peak, the 0.2 % offset line and yield point;
        saved to ``path`` (PNG) if given (rank 0).  Returns the matplotlib figure."""
        import matplotlib

        matplotlib.use("Agg", force=False)
        import matplotlib.pyplot as plt

        c = self.curve
        fig = None
        if ax is None:
            fig, ax = plt.subplots(figsize=(6, 4.2))
        ax.plot(c[:, 0], c[:, 1], "o-", ms=3, lw=1.5, label="pushover")
        off = self.offset_strain * self.gauge_length_mm
        dd = np.array([off, c[:, 0].max()])
        ax.plot(dd, self.linear_stiffness_n_per_mm * (dd - off), "--", color="0.5", lw=1,
                label=f"{self.offset_strain:.1%} offset (gauge {self.gauge_length_mm:.0f} mm)")
        ax.plot(self.displacement_at_peak_mm, self.nonlinear_strength_n, "v", color="C3",
                ms=8, label=f"peak {self.nonlinear_strength_n:.0f} N")
        if self.yield_load_n is not None:
            ax.plot(self.yield_displacement_mm, self.yield_load_n, "s", color="C2", ms=6,
                    label=f"offset yield {self.yield_load_n:.0f} N")
        ax.plot(self.first_yield_displacement_mm, self.first_yield_load_n, "x", color="k",
                label=f"first yield {self.first_yield_load_n:.0f} N")
        ax.set_ylim(0, 1.15 * max(self.nonlinear_strength_n, 1e-9))
        ax.set_xlim(0, c[:, 0].max() * 1.02)
        ax.set_xlabel("displacement along the load (mm)")
        ax.set_ylabel("reaction force (N)")
        title = f"{self.bone_name}: {self.load_case} ({self.criterion})"
        if not self.converged:
            title += " -- stopped early"
        ax.set_title(title, fontsize=10)
        ax.legend(fontsize=8, loc="lower right")
        ax.grid(alpha=0.3)
        if fig is not None:
            fig.tight_layout()
            if path is not None and self.bone.comm.rank == 0:
                fig.savefig(path, dpi=120)
        return fig if fig is not None else ax.figure

    def _dg0(self, values, name):
        V = dolfinx.fem.functionspace(self.bone.mesh, ("DG", 0))
        f = dolfinx.fem.Function(V, name=name)
        n = self.bone.num_owned_cells
        f.x.array[V.dofmap.list[:n, 0]] = values
        f.x.scatter_forward()
        return f

    def fields(self) -> dict:
        """Per owned cell: equivalent plastic strain and yielded fraction, at peak and end."""
        kp, fp = cell_fields(self.kappa_peak, self.nq, self.qweights)
        kf, ff = cell_fields(self.kappa_final, self.nq, self.qweights)
        return {"plastic_strain_at_peak": kp, "yielded_at_peak": fp,
                "plastic_strain_final": kf, "yielded_final": ff}

    def write(self, out) -> dict:
        """Write CSV, PNG, JSON, XDMF and the yielded-region picture into ``out`` (collective)."""
        import matplotlib.pyplot as plt

        out = Path(out)
        comm = self.bone.comm
        if comm.rank == 0:
            out.mkdir(parents=True, exist_ok=True)
        comm.barrier()
        stem = f"{self.load_case}"
        paths = {"csv": out / f"{stem}_load_displacement.csv",
                 "curve_png": out / f"{stem}_load_displacement.png",
                 "json": out / f"{stem}_pushover.json",
                 "xdmf": out / f"{stem}_plastic_strain.xdmf",
                 "yielded_png": out / f"{stem}_yielded.png"}
        if comm.rank == 0:
            np.savetxt(paths["csv"], self.curve, delimiter=",", header="displacement_mm,force_n",
                       comments="")
            paths["json"].write_text(json.dumps(self.summary(), indent=2, default=float) + "\n")
        fig = self.plot(paths["curve_png"])
        plt.close(fig)
        flds = self.fields()
        funcs = [self._dg0(v, k) for k, v in flds.items()]
        with dolfinx.io.XDMFFile(comm, str(paths["xdmf"]), "w") as xf:
            xf.write_mesh(self.bone.mesh)
            for f in funcs:
                xf.write_function(f)
        try:
            from femur.viz import render_cell_fields

            top = max(float(comm.allreduce(float(flds["plastic_strain_at_peak"].max(initial=0.0)),
                                           op=MPI.MAX)), 1e-12)
            render_cell_fields(
                self.bone.mesh,
                {"yielded_at_peak": _local(self.bone, flds["yielded_at_peak"]),
                 "plastic_strain_at_peak": _local(self.bone, flds["plastic_strain_at_peak"])},
                paths["yielded_png"],
                titles={"yielded_at_peak": f"yielded at peak ({self.nonlinear_strength_n:.0f} N)",
                        "plastic_strain_at_peak": "equivalent plastic strain at peak"},
                cmaps={"yielded_at_peak": "Reds", "plastic_strain_at_peak": "magma_r"},
                clims={"yielded_at_peak": (0.0, 1.0), "plastic_strain_at_peak": (0.0, top)},
                clip_normal="y")
        except ImportError:  # pragma: no cover - pyvista is a dependency
            paths.pop("yielded_png")
        return {k: str(v) for k, v in paths.items()}


def _local(bone, owned_values):
    """Owned-cell values padded to all local cells (ghost values unused by the renderer)."""
    a = np.zeros(bone.num_local_cells)
    a[: bone.num_owned_cells] = owned_values
    return a


__all__ = ["PushoverResult", "offset_yield", "yielded_volumes", "cell_fields"]
