"""The increment loop of a displacement-controlled pushover: adaptive steps, cut-backs after
a failed Newton solve, the post-peak stop and the increment budget.

It drives a ``femur.mechanics.nonlinear.PlasticitySolver``-like object (``predict``,
``set_dirichlet_scale``, ``newton``, ``restore``, ``commit``, ``force``, ``kappa``) and
records the load-displacement curve; ``femur.mechanics.pushover.solve_pushover`` builds
the solver and reads the results.
"""

from __future__ import annotations

import warnings

import numpy as np

from femur.core.log import progress_enabled
from femur.core.progress import ProgressBar

#: step control: halve the next step where the curve's slope changed by more than this
#: fraction of the elastic stiffness in the last step, double it below BEND_GROW
BEND_SHRINK = 0.25
BEND_GROW = 0.08
STEP_GROWTH = 1.5
#: a hard Newton solve (>= 8 iterations) halves the next step, but not below the first step /
#: MIN_STEP_DIVISOR: with softening the clipped tangent makes Newton linear-rate at any step,
#: and halving without a floor shrank the steps of the 4 mm femur fall to 1e-4 mm (thousands
#: of increments on a plateau). Cut-backs after a failed step may still go below it.
MIN_STEP_DIVISOR = 16
#: default budget of converged increments: a run that needs more stops, keeps its curve and
#: says so (``converged=False``)
MAX_INCREMENTS = 300


def next_step(step: float, newton_iterations: int, bend: float, step_min: float, step_max: float) -> float:
    """The next displacement step after a converged one: half as large where the curve bent
    (``bend``: slope change / elastic stiffness > BEND_SHRINK) or Newton needed >= 8
    iterations, but not below ``step_min`` (a step already below it, after cut-backs, is
    kept); 1.5x (up to ``step_max``) where the curve is straight and Newton easy."""
    if newton_iterations >= 8 or bend > BEND_SHRINK:
        return max(0.5 * step, min(step, step_min))
    if newton_iterations <= 4 and bend < BEND_GROW:
        return min(STEP_GROWTH * step, step_max)
    return step


class IncrementLoop:
    """The increment loop (adaptive steps, cut-backs, post-peak stop)."""

    def __init__(self, ps, dmax, increments, max_cutbacks, drop, rtol, max_it, on_increment,
                 progress, comm, name, max_increments=MAX_INCREMENTS):
        self.ps, self.dmax, self.n0, self.max_increments = ps, dmax, increments, max_increments
        self.max_cutbacks, self.drop, self.rtol, self.max_it = max_cutbacks, drop, rtol, max_it
        self.on_increment, self.comm, self.name = on_increment, comm, name
        self.progress = progress_enabled() if progress is None else bool(progress)
        self.curve = [[0.0, 0.0]]
        self.increments = self.cutbacks = self.newton_its = self.linear_its = 0
        self.converged, self.stopped_reason = True, ""
        self.kappa_peak = None

    def _record(self, d, f):
        self.curve.append([float(d), float(f)])
        if self.on_increment is not None:  # e.g. written at once: interrupted runs keep it
            self.on_increment(np.asarray(self.curve))

    def _stop_unconverged(self, reason: str) -> None:
        """End the run before its end displacement (curve kept), with a warning on rank 0."""
        self.converged, self.stopped_reason = False, reason
        if self.comm.rank == 0:
            warnings.warn(f"pushover '{self.name}' stopped: {reason}", stacklevel=4)

    def execute(self, d_y, k0):
        ps = self.ps
        d = min(d_y, self.dmax)
        ps.start_from_elastic(d)
        self._record(d, d * k0)
        self.kappa_peak = ps.kappa.copy()
        peak = d * k0
        bar = ProgressBar(self.dmax, self.progress, f"pushover {self.name}", unit="mm",
                          comm=self.comm)
        bar.update(d)
        span = self.dmax - d
        step = span / self.n0
        step_max = span / 3.0
        step_min = step / MIN_STEP_DIVISOR
        prev_step = d
        k_prev = k0  # slope of the last curve segment (N/mm)
        consecutive = 0
        end = self.dmax * (1 - 1e-12)  # reached within round-off
        while d < end:
            step = min(step, self.dmax - d)
            if self.dmax - d - step < 0.05 * step:  # no sliver at the end
                step = self.dmax - d
            ps.predict(step / prev_step)
            ps.set_dirichlet_scale(d + step)
            info = ps.newton(rtol=self.rtol, max_it=self.max_it)
            self.newton_its += info.iterations
            self.linear_its += info.linear_iterations
            if not info.converged:
                ps.restore()
                self.cutbacks += 1
                consecutive += 1
                if consecutive > self.max_cutbacks:
                    self._stop_unconverged(
                        f"increment {self.increments + 1}: no convergence toward {d + step:.5g} mm "
                        f"after {consecutive - 1} cut-backs (last step {step:.3g} mm); load reached "
                        f"{self.curve[-1][1]:.6g} N at {d:.5g} mm; last failure: {info.reason}")
                    break
                step *= 0.5
                continue
            consecutive = 0
            ps.commit()
            f_old = self.curve[-1][1]
            d += step
            self.increments += 1
            self._record(d, ps.force)
            bar.update(step)
            if ps.force > peak:
                peak = ps.force
                self.kappa_peak = ps.kappa.copy()
            prev_step = step
            # next step: smaller where the curve bends (slope change relative to the
            # elastic stiffness) or Newton struggled, larger where it is straight and easy
            k_inc = (ps.force - f_old) / step
            bend = abs(k_inc - k_prev) / k0
            k_prev = k_inc
            step = next_step(step, info.iterations, bend, step_min, step_max)
            if self.drop is not None and ps.force < (1.0 - self.drop) * peak:
                self.stopped_reason = f"post-peak drop of {self.drop:.0%} at {d:.5g} mm"
                break
            if self.increments >= self.max_increments and d < end:
                self._stop_unconverged(f"increment budget of {self.max_increments} used up at {d:.5g} mm "
                                       f"(load {ps.force:.6g} N); the curve so far is kept: "
                                       f"raise max_increments to go on")
                break
        else:
            self.stopped_reason = f"reached max_displacement_mm = {self.dmax:.5g} mm"
        bar.close()


__all__ = ["BEND_GROW", "BEND_SHRINK", "IncrementLoop", "MAX_INCREMENTS", "MIN_STEP_DIVISOR", "STEP_GROWTH",
           "next_step"]
