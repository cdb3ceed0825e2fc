"""The calibration commands' pictures: what they are handed is what the fits computed."""

from __future__ import annotations

import numpy as np
import pytest

import femur.calibration.strength_surrogate as ss
from femur.exports.calibration_figures import risk_calibration_figure, surrogate_fit_figure

pytestmark = pytest.mark.serial


def _rows(n_patients: int, split: str, start: int, rng) -> list[dict]:
    rows = []
    for p in range(start, start + n_patients):
        base = rng.uniform(2000.0, 6000.0)
        for state, gain in (("baseline", 1.0), ("romosozumab", 1.15), ("denosumab", 1.05)):
            load = base * gain * rng.uniform(0.98, 1.02)
            rows.append({"patient": p, "split": split, "state": state, "prefix": "vertebral", "load": load,
                         "stiffness": 5.0 * load, "strain_load": 0.8 * load,
                         "nonlinear_strength_n": 0.9 * load, "converged": True})
    return rows


def test_surrogate_figure_gets_the_fit_it_reports(tmp_path, monkeypatch):
    """The panels carry each split's computed and predicted strengths and the test patients'
    percent changes, as the report's metrics count them; the PNG is written."""
    rng = np.random.default_rng(3)
    rows = _rows(6, "train", 0, rng) + _rows(4, "test", 6, rng)
    values, report = ss.fit(rows, ["vertebral"])
    seen = {}

    def capture(cases, path, title=""):
        seen.update(cases)
        return surrogate_fit_figure(cases, path, title)

    monkeypatch.setattr(ss, "surrogate_fit_figure", capture)
    path = ss.figure(rows, values, report, tmp_path / "fit.png", "synthetic")
    assert path.stat().st_size > 10_000
    panel = seen["vertebral"]
    assert len(panel["train"][0]) == 18 and len(panel["test"][0]) == 12
    true, pred = panel["change"]
    assert len(true) == report["vertebral"]["test"]["n_changes"] == 8
    assert np.mean(np.abs(np.asarray(pred) - true)) == pytest.approx(report["vertebral"]["test"]["change_mae_pp"])
    assert "test R2" in panel["label"]


def test_risk_figure_draws_incidences_and_ratios(tmp_path):
    rows = [{"label": "placebo M12", "row": 10, "role": "fit", "published": 0.022, "ci95": [0.018, 0.027],
             "model": 0.021, "inside_ci": True},
            {"label": "RR M12", "row": 10, "role": "ratio", "published": 0.39, "ci95": [0.26, 0.58],
             "model": 0.7, "inside_ci": False},
            {"label": "hip fx odds ratio per SD", "row": "check", "role": "check", "published": 4.2,
             "ci95": [2.6, 6.9], "model": float("nan"), "inside_ci": False}]
    path = risk_calibration_figure(rows, tmp_path / "cal.png", "synthetic")
    assert path.stat().st_size > 10_000


def test_risk_figure_keeps_the_treated_arms_a_ratio_carries(tmp_path, monkeypatch):
    """A treated arm's incidence that its fitted ratio carries is a check, drawn among the
    incidences under its own tag; other checks (the hip odds ratio) stay out of that panel."""
    import femur.exports.calibration_figures as cf

    drawn = []
    monkeypatch.setattr(cf, "_short", lambda row: drawn.append(row["label"]) or row["label"])
    rows = [{"label": "placebo M12", "row": 10, "role": "fit", "published": 0.022, "ci95": [0.018, 0.027],
             "model": 0.021, "inside_ci": True},
            {"label": "denosumab M12", "row": 10, "role": "check", "carried_by_ratio": True, "published": 0.009,
             "ci95": [0.006, 0.013], "model": 0.010, "inside_ci": True},
            {"label": "denosumab hip M36", "row": 11, "role": "check", "published": 0.007, "ci95": [0.005, 0.010],
             "model": 0.013, "inside_ci": False}]
    risk_calibration_figure(rows, tmp_path / "cal.png", "synthetic")
    assert "denosumab M12" in drawn and "denosumab hip M36" not in drawn
    monkeypatch.undo()
    assert cf._short(rows[1]) == "row 10 (check; its RR fitted): denosumab M12"
