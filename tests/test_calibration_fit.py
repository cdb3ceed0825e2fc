"""The calibration's fit machinery (femur.calibration.remodeling): finite-difference steps,
the parallel Jacobian, checkpoints. Cheap: a toy residual stands in for the scenarios."""

from __future__ import annotations

import json

import numpy as np
import pytest

from femur.calibration import remodeling as cal
from femur.core.errors import InputError

pytestmark = pytest.mark.serial


def test_fd_steps_stay_inside_the_bounds():
    lo, hi = np.log([1e-3, 1.0, 0.5]), np.log([10.0, 2.0, 1.5])
    x = np.array([np.log(9.999), 0.0, np.log(0.5)])
    h = cal._fd_steps(x, lo, hi, 1e-3)
    assert np.all(x + h <= hi) and np.all(x + h >= lo) and np.all(h != 0)
    assert h[0] < 0 and h[1] > 0  # reversed at the upper bound; log 1 = 0 still steps


@pytest.mark.filterwarnings("ignore:This process .* is multi-threaded:DeprecationWarning")
def test_jacobian_serial_and_parallel_agree_with_the_derivative(monkeypatch):
    n = len(cal.FIT_NAMES)
    a = np.linspace(0.5, 2.0, n)

    def toy(x, base, step_days=1.0):
        return np.concatenate([np.sin(a * x), [np.sum(x**2)]])

    monkeypatch.setattr(cal, "residuals", toy)
    lo, hi = np.full(n, -3.0), np.full(n, 3.0)
    x = np.linspace(-1.0, 1.0, n)
    exact = np.vstack([np.diag(a * np.cos(a * x)), 2 * x])
    obj = cal._Objective(None, 1.0)
    j_serial = cal._jacobian(obj, lo, hi, 1e-6, None)(x)
    np.testing.assert_allclose(j_serial, exact, atol=1e-5)
    import multiprocessing
    cal._WORKER.update(base=None, step_days=1.0)
    with multiprocessing.get_context("fork").Pool(2) as pool:
        j_par = cal._jacobian(cal._Objective(None, 1.0), lo, hi, 1e-6, pool)(x)
    np.testing.assert_array_equal(j_par, j_serial)


def test_checkpoint_keeps_the_best_point_and_resumes(tmp_path, monkeypatch):
    n = len(cal.FIT_NAMES)
    monkeypatch.setattr(cal, "residuals", lambda x, base, step_days=1.0: np.asarray(x))
    path = tmp_path / "ck.json"
    obj = cal._Objective(None, 1.0, checkpoint=path)
    obj(np.full(n, 0.5))
    obj(np.full(n, 0.1))  # better: written
    obj(np.full(n, 0.9))  # worse: not written
    doc = json.loads(path.read_text())
    assert doc["cost"] == pytest.approx(0.5 * n * 0.01) and doc["evaluations"] == 2
    values = cal.read_checkpoint(path)
    assert list(values) == list(cal.FIT_NAMES)
    np.testing.assert_allclose(list(values.values()), np.exp(0.1))
    path.write_text(json.dumps({"values": {"tau_p_days": 1.0}}))
    with pytest.raises(InputError, match="missing parameters"):
        cal.read_checkpoint(path)
