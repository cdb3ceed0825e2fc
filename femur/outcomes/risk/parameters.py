"""The fracture-risk parameters: which are fitted, their calibrated values and covariance,
the fixed inputs they were fitted with, and where they are stored.

The calibrated values live in ``femur/data/fracture_risk.json`` (written by
``python -m femur.calibration.risk --write``; never in source code)::

    {"values": {fitted name: value},
     "provenance": {"targets": ..., "seeds": ..., "femur_version": ..., "date": ...,
                    "command": ..., "notes": ..., "status": ..., "git_commit": ...,
                    "fixed": {name: value}, "fixed_sources": {name: source},
                    "covariance": {"names": [...], "matrix": [[...]], ...},
                    "cohorts": ..., "report": [...]}}

A study reads them through :func:`load_parameters` (``[risk] parameters`` = "default" or
a path) and draws parameter sets from the covariance for its confidence intervals.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from femur.core.datafiles import read_fitted
from femur.core.errors import InputError
from femur.outcomes.risk import hip, spine

#: the data file of the calibrated parameters (femur/data/)
PARAMETER_FILE = "fracture_risk.json"

#: every fitted parameter: (initial value, (low, high) bounds, meaning, targets)
FITTED_PARAMETERS = {
    "spine_log_h0": (np.log(0.01), (-12.0, 2.0),
                     "ln yearly hazard of a new vertebral fracture at the reference (age 70, no "
                     "prevalent fracture, reference baseline strength, no change)", "rows 8, 10, 12-14"),
    "spine_within_gradient": (-5.0, (-60.0, 20.0),
                              "per unit ln of her strength relative to her own baseline",
                              "rows 10, 12-14 (treatment arms)"),
    "spine_between_gradient": (-2.0, (-20.0, 10.0),
                               "per unit ln of her baseline strength relative to the reference",
                               "rows 8, 10, 12-14 (placebo arms of different T-score windows)"),
    "spine_turnover_gradient": (0.3, (-3.0, 5.0),
                                "per unit ln of her smoothed CTX ratio", "rows 10, 12-14"),
    "spine_prevalent_any": (1.5, (-3.0, 6.0), "one or more prevalent vertebral fractures",
                            "rows 12-14 (FPT, FIT-1 vs FIT-2)"),
    "spine_prevalent_count": (1.0, (-3.0, 5.0), "per unit ln of the prevalent fracture count",
                              "row 12 (FPT placebo by count)"),
    "spine_morphometric_ascertainment": (0.0, (-4.0, 4.0),
                                         "a trial that counts new fractures by quantitative morphometry "
                                         "(20 % and 4 mm) rather than semiquantitative grading",
                                         "rows 13, 14 (FIT) against rows 8, 10, 12 (FRAME, FREEDOM, FPT)"),
    "hip_log_strength_scale": (np.log(0.6), (-4.0, 2.0),
                               "ln of the factor on the fall strength at which a hip impact breaks "
                               "the femur", "rows 11 (FREEDOM placebo hip), 15 (hips per fall)"),
}
SPINE_FITTED = spine.FITTED
HIP_FITTED = ("hip_log_strength_scale",)


def default_fixed() -> dict:
    """The fixed inputs a new calibration uses (hip and spine modules), without the
    reference strength (set by the calibration)."""
    return {**spine.FIXED, **hip.fixed_inputs()}


def fixed_sources() -> dict:
    return {**spine.FIXED_SOURCES, **hip.FIXED_SOURCES}


@dataclass(frozen=True)
class RiskParameters:
    """Fitted values, their covariance and the fixed inputs they belong with."""

    values: dict
    fixed: dict
    covariance_names: tuple = ()
    covariance: np.ndarray = field(default_factory=lambda: np.zeros((0, 0)))
    status: str = ""
    source: str = ""
    provenance: dict = field(default_factory=dict)

    def __post_init__(self):
        missing = [k for k in FITTED_PARAMETERS if k not in self.values]
        if missing:
            raise InputError(f"fracture-risk parameters {self.source or ''}: missing {missing} (a file "
                             "written by an earlier version of the risk model: rerun python -m "
                             "femur.calibration.risk --refit-only --write, or use \"default\")")
        need = set(default_fixed()) | {"reference_vertebral_strength_n"}
        missing = sorted(need - set(self.fixed))
        if missing:
            raise InputError(f"fracture-risk parameters {self.source or ''}: fixed inputs missing {missing}")
        c = np.asarray(self.covariance, dtype=float)
        if c.shape != (len(self.covariance_names),) * 2:
            raise InputError(f"fracture-risk parameters {self.source}: covariance shape {c.shape} does "
                             f"not match its {len(self.covariance_names)} names")
        object.__setattr__(self, "covariance", c)

    def all_values(self) -> dict:
        """Fitted values and fixed inputs in one dict (what the model functions take)."""
        return {**self.fixed, **self.values}

    def with_fixed(self, **overrides) -> RiskParameters:
        """A copy with some fixed inputs changed (a sensitivity analysis; the fitted values
        stay those of the calibration)."""
        return RiskParameters(dict(self.values), {**self.fixed, **overrides}, self.covariance_names,
                              self.covariance, self.status, self.source, self.provenance)

    def draws(self, n: int, seed) -> list[dict]:
        """``n`` parameter sets (all values) drawn from the normal approximation of the
        calibration (mean: the fitted values, covariance: the stored one)."""
        names = list(self.covariance_names)
        rng = np.random.Generator(np.random.PCG64(seed))
        out = []
        if not names:
            return [self.all_values() for _ in range(n)]
        mean = np.array([self.values[k] for k in names])
        # eigen-decomposition: tolerant of a covariance that is positive SEMI-definite
        w, v = np.linalg.eigh(0.5 * (self.covariance + self.covariance.T))
        root = v * np.sqrt(np.clip(w, 0.0, None))
        z = rng.standard_normal((n, len(names)))
        for row in mean + z @ root.T:
            vals = self.all_values()
            vals.update(dict(zip(names, (float(x) for x in row))))
            out.append(vals)
        return out

    def summary_lines(self) -> list[str]:
        """One line per fitted parameter: value +- SE."""
        se = dict(zip(self.covariance_names, np.sqrt(np.clip(np.diag(self.covariance), 0, None))))
        return [f"{k} = {v:.4g}" + (f" +- {se[k]:.2g}" if k in se else "") for k, v in self.values.items()]


def parameters_from_document(doc: dict, source: str) -> RiskParameters:
    prov = dict(doc.get("provenance") or {})
    cov = prov.get("covariance") or {}
    return RiskParameters(
        {k: float(v) for k, v in doc["values"].items()},
        {k: float(v) for k, v in (prov.get("fixed") or {}).items()},
        tuple(cov.get("names", ())), np.asarray(cov.get("matrix", np.zeros((0, 0))), dtype=float),
        str(prov.get("status", "")), source, prov,
    )


def load_parameters(which: str = "default") -> RiskParameters:
    """The calibrated parameters: ``"default"`` (femur/data/fracture_risk.json) or a path."""
    if which == "default":
        fit = read_fitted(PARAMETER_FILE)
        return parameters_from_document({"values": fit.values, "provenance": fit.provenance}, fit.path)
    path = Path(which)
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise InputError(f"fracture-risk parameter file {path} is missing") from None
    except (OSError, ValueError) as exc:
        raise InputError(f"fracture-risk parameter file {path} is unreadable: {exc}") from None
    if not isinstance(doc, dict) or not isinstance(doc.get("values"), dict):
        raise InputError(f"fracture-risk parameter file {path}: expected 'values' and 'provenance'")
    return parameters_from_document(doc, str(path))


__all__ = ["FITTED_PARAMETERS", "HIP_FITTED", "PARAMETER_FILE", "RiskParameters", "SPINE_FITTED",
           "default_fixed", "fixed_sources", "load_parameters", "parameters_from_document"]
