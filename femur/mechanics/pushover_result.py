"""What a nonlinear pushover computed: curve, strength read-offs, yielded volumes, state.

Pure data and read-offs (no files, no pictures): the curve CSV/PNG, the plastic-strain
fields for ParaView and the yielded-region picture are written by
``femur.exports.pushover``; ``femur.pushover`` returns the
:class:`femur.workflows.pushover.PushoverResult` that adds ``.plot()`` and ``.write()``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from femur.core.mpi import MPI


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
class PushoverSolution:
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
    platens: str | None = None  # femur cases: "rotating" or "fixed" cup and support
    #: slope of the last curve segment / initial stiffness: ~0 on a plateau or past the
    #: peak (< 0), clearly > 0 where the curve still rises at the end displacement
    end_slope_fraction: float | None = None

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
                "yielded_volume_final_mm3", "converged", "stopped_reason", "platens",
                "end_slope_fraction", "timings",
                "load_displacement")
        return {k: getattr(self, k) for k in keys}

    def fields(self) -> dict:
        """Per owned cell: equivalent plastic strain and yielded fraction, at peak and end."""
        kp, fp = cell_fields(self.kappa_peak, self.nq, self.qweights)
        kf, ff = cell_fields(self.kappa_final, self.nq, self.qweights)
        return {"plastic_strain_at_peak": kp, "yielded_at_peak": fp,
                "plastic_strain_final": kf, "yielded_final": ff}


__all__ = ["PushoverSolution", "offset_yield", "yielded_volumes", "cell_fields"]
