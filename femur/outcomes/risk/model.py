"""Fracture incidence of a batch of cases for one set of risk parameters.

``values`` is a dict of every parameter (fitted values and fixed inputs:
:meth:`femur.outcomes.risk.parameters.RiskParameters.all_values` or one of its
:meth:`draws`). All functions are vectorised over cases x months and deterministic.
"""

from __future__ import annotations

import numpy as np

from femur.core.errors import InputError
from femur.outcomes.risk import hip, spine
from femur.outcomes.risk.courses import CourseBatch


def _need(batch: CourseBatch, what: str):
    arr = batch.vertebral_strength_n if what == "vertebral" else batch.fall_strength_n
    if arr is None:
        raise InputError(f"the cases have no {what} strength course: no {what} fracture risk")
    return arr


def spine_log_hazard(batch: CourseBatch, values: dict) -> np.ndarray:
    """ln yearly hazard of a new vertebral fracture (cases x months)."""
    _need(batch, "vertebral")
    x, offset = spine.design(batch, values)
    theta = np.array([values[k] for k in spine.FITTED])
    return x @ theta + offset


def spine_incidence(batch: CourseBatch, values: dict) -> np.ndarray:
    """Cumulative probability of at least one new vertebral fracture (cases x months)."""
    return -np.expm1(-spine.cumulative_hazard(spine_log_hazard(batch, values), batch.months))


def hip_per_impact(batch: CourseBatch, values: dict, by_direction: bool = False) -> np.ndarray:
    """Probability that a hip impact breaks the femur (cases x months; with
    ``by_direction``, cases x months x fall directions, each direction's share)."""
    fall = _need(batch, "hip")
    stt = None if batch.soft_tissue_mm is None else batch.soft_tissue_mm[:, None]
    return hip.fracture_probability_per_impact(fall, batch.body_mass_kg[:, None], stt,
                                               values["hip_log_strength_scale"], values, by_direction)


def hip_rate_per_year(batch: CourseBatch, values: dict, per_impact=None) -> np.ndarray:
    """Expected hip fractures per year of the average-falling woman (cases x months)."""
    p = hip_per_impact(batch, values) if per_impact is None else per_impact
    return values["falls_per_year"] * values["hip_impact_share"] * p


def hip_incidence(batch: CourseBatch, values: dict, per_impact=None) -> np.ndarray:
    """Cumulative probability of at least one hip fracture (cases x months), gamma-
    distributed personal fall rate (negative-binomial falls)."""
    q = hip_rate_per_year(batch, values, per_impact)
    dt_years = np.diff(batch.months) / 12.0
    expected = np.zeros_like(q)
    expected[:, 1:] = np.cumsum(0.5 * (q[:, 1:] + q[:, :-1]) * dt_years, axis=1)
    return hip.nb_incidence(expected, values["fall_rate_shape"])


def hip_fractures_per_fall(batch: CourseBatch, values: dict, month_index: int = 0) -> float:
    """Share of ALL falls that break a hip at one month (hip impact share x mean per-impact
    probability; personal fall rates are independent of strength, so the mean over women
    is the mean over falls)."""
    p = hip_per_impact(batch, values)[:, month_index]
    return float(values["hip_impact_share"] * np.mean(p))


def risk_concentration(risk_per_woman) -> dict:
    """How many women carry a cohort's summed risk: the effective number
    ``(sum p)^2 / sum p^2`` (n when every woman has the same risk, 1 when one has it all)
    and the shares of the 1, 3 and 5 women of highest risk."""
    p = np.asarray(risk_per_woman, dtype=float).ravel()
    if p.size == 0 or np.any(~np.isfinite(p)) or np.any(p < 0) or p.sum() <= 0:
        raise ValueError("risk concentration needs finite, non-negative risks with a positive sum")
    top = np.sort(p)[::-1]
    return {"n_women": int(p.size), "effective_women": float(p.sum() ** 2 / np.sum(p * p)),
            "top_shares": {k: float(top[:k].sum() / p.sum()) for k in (1, 3, 5) if k <= p.size}}


__all__ = ["hip_fractures_per_fall", "hip_incidence", "hip_per_impact", "hip_rate_per_year",
           "risk_concentration", "spine_incidence", "spine_log_hazard"]
