"""The calibration's least-squares machinery (femur.calibration.lsq): finite-difference
steps, the parallel Jacobian, checkpoints, a bounded fit. Cheap: toy residuals."""

from __future__ import annotations

import json
import multiprocessing

import numpy as np
import pytest

from femur.calibration import lsq
from femur.core.errors import InputError

pytestmark = pytest.mark.serial

A = np.linspace(0.5, 2.0, 6)


def toy(x, scale=1.0):
    return scale * np.concatenate([np.sin(A * x), [np.sum(x**2)]])


def test_fd_steps_stay_inside_the_bounds():
    lo, hi = np.log([1e-3, 1.0, 0.5]), np.log([10.0, 2.0, 1.5])
    x = np.array([np.log(9.999), 0.0, np.log(0.5)])
    h = lsq.fd_steps(x, lo, hi, 1e-3)
    assert np.all(x + h <= hi) and np.all(x + h >= lo) and np.all(h != 0)
    assert h[0] < 0 and h[1] > 0  # reversed at the upper bound; log 1 = 0 still steps


@pytest.mark.filterwarnings("ignore:This process .* is multi-threaded:DeprecationWarning")
def test_jacobian_serial_and_parallel_agree_with_the_derivative():
    n = A.size
    lo, hi = np.full(n, -3.0), np.full(n, 3.0)
    x = np.linspace(-1.0, 1.0, n)
    exact = np.vstack([np.diag(A * np.cos(A * x)), 2 * x])
    j_serial = lsq.jacobian(lsq.Objective(toy, (1.0,)), lo, hi, 1e-6)(x)
    np.testing.assert_allclose(j_serial, exact, atol=1e-5)
    lsq._WORKER.update(fn=toy, args=(1.0,))
    with multiprocessing.get_context("fork").Pool(2) as pool:
        j_par = lsq.jacobian(lsq.Objective(toy, (1.0,)), lo, hi, 1e-6, pool)(x)
    np.testing.assert_array_equal(j_par, j_serial)


def test_fit_reaches_the_minimum_and_reports_bounds(tmp_path):
    names = [f"p{i}" for i in range(A.size)]
    lo, hi = np.full(A.size, -1.0), np.full(A.size, 1.0)
    lo[0] = 0.2  # the unconstrained minimum (x = 0) lies below this bound
    x, info = lsq.fit(toy, np.full(A.size, 0.5), lo, hi, args=(1.0,), names=names,
                      checkpoint=tmp_path / "ck.json", ftol=1e-12, xtol=1e-12)
    assert info["status"] > 0 and info["at_bound"] == {"p0": "lower"}
    np.testing.assert_allclose(x[1:], 0.0, atol=1e-5)
    assert x[0] == pytest.approx(0.2)
    best = lsq.read_checkpoint(tmp_path / "ck.json", names)
    np.testing.assert_allclose(np.log(list(best.values())), x, atol=1e-6)


def test_checkpoint_keeps_the_best_point(tmp_path):
    names = ["a", "b"]
    path = tmp_path / "ck.json"
    obj = lsq.Objective(lambda x: np.asarray(x), (), names, checkpoint=path)
    obj(np.full(2, 0.5))
    obj(np.full(2, 0.1))  # better: written
    obj(np.full(2, 0.9))  # worse: not written
    doc = json.loads(path.read_text())
    assert doc["cost"] == pytest.approx(0.01) and doc["evaluations"] == 2
    np.testing.assert_allclose(list(lsq.read_checkpoint(path, names).values()), np.exp(0.1))
    path.write_text(json.dumps({"values": {"a": 1.0}}))
    with pytest.raises(InputError, match="missing parameters"):
        lsq.read_checkpoint(path, names)
