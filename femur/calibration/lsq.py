"""Bounded least squares for the calibration commands, in log-parameter space: scipy's
trust-region reflective with a forward-difference Jacobian whose columns can be computed in
parallel processes, and a checkpoint file of the best point so far, so that an interrupted
fit loses nothing (``femur.calibration.remodeling --jobs / --checkpoint / --resume``).

The residual function is the caller's, ``fn(x, *args) -> residual vector`` with x the log
parameters; the worker processes are forked, so they inherit it.
"""

from __future__ import annotations

import json
import multiprocessing
import time
from pathlib import Path

import numpy as np
from scipy.optimize import least_squares

from femur.core.datafiles import atomic_write_text
from femur.core.errors import InputError


class Objective:
    """Residuals with a memory: the last evaluation (the forward-difference Jacobian reuses
    it), the best point so far, and a checkpoint file rewritten at every improvement."""

    def __init__(self, fn, args=(), names=(), checkpoint=None):
        self.fn, self.args, self.names, self.checkpoint = fn, tuple(args), tuple(names), checkpoint
        self.last_x = self.last_r = None
        self.best_cost, self.best_x, self.n = np.inf, None, 0
        self.t0 = time.perf_counter()

    def __call__(self, x):
        r = np.asarray(self.fn(x, *self.args), dtype=float)
        self.record(x, r)
        return r

    def record(self, x, r):
        self.n += 1
        self.last_x, self.last_r = np.array(x, copy=True), r
        cost = 0.5 * float(r @ r)
        if cost < self.best_cost:
            self.best_cost, self.best_x = cost, np.array(x, copy=True)
            if self.checkpoint:
                write_checkpoint(self.checkpoint, self.names, x, cost, self.n, time.perf_counter() - self.t0)


def write_checkpoint(path, names, x, cost, n_eval, seconds):
    """Best point of a running fit (parameter values exp(x), cost, evaluations), written
    atomically."""
    atomic_write_text(path, json.dumps({"values": {n: float(np.exp(v)) for n, v in zip(names, x)},
                                        "cost": cost, "evaluations": n_eval, "seconds": round(seconds, 1)},
                                       indent=1))


def read_checkpoint(path, names) -> dict:
    """Parameter values of a checkpoint written by :func:`write_checkpoint`."""
    try:
        values = json.loads(Path(path).read_text())["values"]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise InputError(f"calibration checkpoint {path}: unreadable ({exc})") from None
    missing = set(names) - set(values)
    if missing:
        raise InputError(f"calibration checkpoint {path}: missing parameters {sorted(missing)}")
    return {n: float(values[n]) for n in names}


_WORKER = {}


def _worker_residuals(x):
    return np.asarray(_WORKER["fn"](x, *_WORKER["args"]), dtype=float)


def fd_steps(x, lo, hi, rel_step):
    """Forward-difference steps: ``rel_step * max(1, |x|)`` with the sign of x (a parameter
    near 1, log 0, still gets a full step), reversed where the step would leave the bounds."""
    h = rel_step * np.where(x >= 0, 1.0, -1.0) * np.maximum(1.0, np.abs(x))
    h = np.where((x + h > hi) | (x + h < lo), -h, h)
    return (x + h) - x


def jacobian(obj: Objective, lo, hi, rel_step, pool=None):
    """Forward-difference Jacobian of ``obj``'s residuals, its columns evaluated in ``pool``
    or serially."""
    def jac(x, *_):
        if obj.last_x is None or not np.array_equal(obj.last_x, x):
            obj(x)
        f0 = obj.last_r
        h = fd_steps(np.asarray(x, float), lo, hi, rel_step)
        xs = list(x + np.diag(h))  # row i: x with its i-th entry stepped
        if pool is not None:
            rs = pool.map(_worker_residuals, xs)
        else:
            rs = [np.asarray(obj.fn(xi, *obj.args), dtype=float) for xi in xs]
        obj.n += len(xs)
        return np.column_stack([(r - f0) / hi_ for r, hi_ in zip(rs, h)])
    return jac


def fit(fn, x0, lo, hi, *, args=(), names=(), jobs: int = 1, checkpoint=None, rel_step: float = 1e-3,
        max_nfev: int = 200, ftol: float = 1e-8, xtol: float = 1e-8, verbose: int = 0):
    """Minimise 0.5 |fn(x, *args)|^2 over lo <= x <= hi from x0 (clipped just inside).
    Returns (x, report: status, message, iterations, Jacobians, evaluations, cost,
    first-order optimality, ``names`` at a bound)."""
    x0 = np.clip(np.asarray(x0, float), lo + 1e-6, hi - 1e-6)
    obj = Objective(fn, args, names, checkpoint)
    pool = None
    if jobs > 1:
        _WORKER.update(fn=fn, args=tuple(args))
        pool = multiprocessing.get_context("fork").Pool(jobs)
    try:
        sol = least_squares(obj, x0, jac=jacobian(obj, lo, hi, rel_step, pool), bounds=(lo, hi),
                            x_scale=1.0, max_nfev=max_nfev, ftol=ftol, xtol=xtol, verbose=verbose)
    finally:
        if pool is not None:
            pool.close()
            pool.join()
    at_bound = {n: ("lower" if m < 0 else "upper") for n, m in zip(names, sol.active_mask) if m != 0}
    info = {"status": int(sol.status), "message": str(sol.message), "nfev": int(sol.nfev),
            "njev": int(sol.njev), "evaluations": obj.n, "cost": float(sol.cost),
            "optimality": float(sol.optimality), "at_bound": at_bound}
    return sol.x, info


__all__ = ["Objective", "fd_steps", "fit", "jacobian", "read_checkpoint", "write_checkpoint"]
