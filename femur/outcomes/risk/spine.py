"""New vertebral fracture: a per-woman hazard integrated monthly over her own course.

Yearly hazard of woman ``i`` at month ``t`` (log-linear)::

    ln h_i(t) = spine_log_h0
              + spine_within_gradient   * ln(S_i(t) / S_i(0))          her strength course
              + spine_between_gradient  * ln(S_i(0) / S_ref)           her baseline strength
              + spine_turnover_gradient * ln(max(R_i(t), r_min))       turnover (CTX)
              + spine_prevalent_any     * [n_i >= 1]                   prevalent fractures
              + spine_prevalent_count   * ln(max(n_i, 1))              ... and their number
              + spine_morphometric_ascertainment * [trial counts by morphometry]
              + spine_age_per_year      * (age_i(t) - 70)

* ``S`` is her vertebral strength (the study's strength model), monthly, interpolated in
  log strength between the FE visits (``femur.outcomes.risk.courses``).
* The WITHIN-person gradient (her response to a change of her own strength) and the
  BETWEEN-person gradient (women of different baseline strength) are separate
  parameters: a between-person gradient (e.g. Kopperdahl 2014: OR 2.8 per SD) is not the
  within-person effect of a treatment (clinical-targets.md, "Known limits"). Both are
  FITTED to the trial targets (rows 8, 10, 12-14); the published between-person gradients
  are CHECKS only (``femur.calibration.risk`` prints the model's OR per SD beside them).
* ``R_i(t)`` is her CTX relative to baseline, smoothed over the remodelling period by an
  exponential moving average (time constant ``turnover_time_constant_months``, ASSUMPTION
  3 months: resorption cavities stay open for weeks to months; it also evens out the
  saw-tooth of six-monthly denosumab), floored at ``ctx_ratio_floor`` (ASSUMPTION 0.05).
  It carries the part of an antiresorptive's benefit that its strength gain alone does
  not (fewer open resorption cavities, less stress concentration): FITTED.
* ``n_i`` is her prevalent vertebral fracture count (0, 1, 2, 3 = ">= 3"): the any/none
  factor is fixed by the FPT and FIT-1 versus FIT-2 contrast, the count factor by the FPT
  placebo incidence by count (row 12): both FITTED.
* How a trial counts a new vertebral fracture: ``"semiquantitative"`` (Genant's visual grading,
  a new fracture of grade 1 or more: FPT, per its follow-up report, and the reference) or
  ``"morphometric"`` (quantitative morphometry, a vertebral height lost by at least 20 % and
  4 mm: FIT-1, Black 1996, and FIT-2). The two definitions count different fractures (mild
  deformities pass one and not the other), so the same women show different incidences; a
  drug-level hazard model over 21 trials carries such a fracture-ascertainment term
  (Eudy-Byrne 2017, fracture-risk note section 2). ``spine_morphometric_ascertainment`` is
  the ln hazard ratio of the morphometric count against the semiquantitative one: FITTED, fixed by
  the FIT trials (rows 13, 14) against FREEDOM, FPT and FRAME (rows 8, 10, 12). A study
  names its definition in ``[risk] vertebral_fracture_definition`` (default
  semiquantitative, as FRAME and the modern trials).
* The age factor is NOT fitted (the trial targets do not separate it): 0.0269 per year,
  the years-since-menopause coefficient of Eudy-Byrne et al. 2017 (fracture-risk note,
  section 2, "Drug-level hazard model"), applied per year of age.

The cumulative incidence by month ``T`` is ``1 - exp(-integral_0^T h dt)`` (trapezoid rule
on the monthly grid; a woman with at least one new morphometric fracture).
"""

from __future__ import annotations

import numpy as np

#: fixed inputs of the spine hazard and their sources; the reference strength is set by
#: the calibration (median baseline vertebral strength of its cohorts) and stored with it
FIXED = {
    "spine_age_per_year": 0.0269,
    "reference_age_years": 70.0,
    "turnover_time_constant_months": 3.0,
    "ctx_ratio_floor": 0.05,
}
FIXED_SOURCES = {
    "spine_age_per_year": "fracture-risk note s.2: Eudy-Byrne 2017 (years since menopause "
                          "coefficient 0.0269/y, used per year of age)",
    "reference_age_years": "convention (the age of the baseline hazard)",
    "turnover_time_constant_months": "ASSUMPTION (order of the remodelling period)",
    "ctx_ratio_floor": "ASSUMPTION (keeps ln CTX finite under full suppression)",
    "reference_vertebral_strength_n": "convention: median baseline vertebral strength of the "
                                      "calibration cohorts (set by the calibration)",
}

#: the fitted spine parameters, in the order of the design matrix
FITTED = ("spine_log_h0", "spine_within_gradient", "spine_between_gradient",
          "spine_turnover_gradient", "spine_prevalent_any", "spine_prevalent_count",
          "spine_morphometric_ascertainment")

#: how a trial counts a new vertebral fracture (``[risk] vertebral_fracture_definition``)
FRACTURE_DEFINITIONS = {
    "semiquantitative": "Genant grading, a new fracture of grade >= 1, as FREEDOM, FPT, FRAME and ARCH read",
    "morphometric": "quantitative morphometry, a vertebral height lost by >= 20 % and >= 4 mm, as FIT read",
}
DEFAULT_FRACTURE_DEFINITION = "semiquantitative"


def turnover_index(ctx_ratio: np.ndarray, months: np.ndarray, tau_months: float, floor: float) -> np.ndarray:
    """``ln max(R, floor)`` with ``R`` the CTX ratio smoothed by an exponential moving average
    of time constant ``tau_months`` (cases x months; the first month is the baseline)."""
    r = np.asarray(ctx_ratio, dtype=float)
    out = np.empty_like(r)
    out[..., 0] = r[..., 0]
    dt = np.diff(np.asarray(months, dtype=float))
    for k in range(1, r.shape[-1]):
        a = 1.0 - np.exp(-dt[k - 1] / tau_months) if tau_months > 0 else 1.0
        out[..., k] = out[..., k - 1] + a * (r[..., k] - out[..., k - 1])
    return np.log(np.maximum(out, floor))


def design(batch, fixed: dict) -> tuple[np.ndarray, np.ndarray]:
    """(X, offset): ``ln h = X @ theta + offset`` with ``theta`` the :data:`FITTED`
    parameters in order; X is (cases, months, 7), offset (cases, months)."""
    s = batch.vertebral_strength_n
    ln_s = np.log(s)
    n, m = s.shape
    x = np.empty((n, m, len(FITTED)))
    x[..., 0] = 1.0
    x[..., 1] = ln_s - ln_s[:, :1]
    x[..., 2] = (ln_s[:, 0] - np.log(fixed["reference_vertebral_strength_n"]))[:, None]
    x[..., 3] = turnover_index(batch.ctx_ratio, batch.months, fixed["turnover_time_constant_months"],
                               fixed["ctx_ratio_floor"])
    prev = np.asarray(batch.prevalent)
    x[..., 4] = (prev >= 1).astype(float)[:, None]
    x[..., 5] = np.log(np.maximum(prev, 1)).astype(float)[:, None]
    x[..., 6] = 1.0 if batch.fracture_definition == "morphometric" else 0.0
    age = batch.age_years[:, None] + batch.months[None, :] / 12.0
    offset = fixed["spine_age_per_year"] * (age - fixed["reference_age_years"])
    return x, offset


def cumulative_hazard(log_hazard: np.ndarray, months: np.ndarray) -> np.ndarray:
    """``integral_0^t h`` (h per year) at every grid month by the trapezoid rule (cases x months)."""
    h = np.exp(log_hazard)
    dt_years = np.diff(np.asarray(months, dtype=float)) / 12.0
    inc = 0.5 * (h[..., 1:] + h[..., :-1]) * dt_years
    out = np.zeros_like(h)
    out[..., 1:] = np.cumsum(inc, axis=-1)
    return out


__all__ = ["DEFAULT_FRACTURE_DEFINITION", "FITTED", "FIXED", "FIXED_SOURCES", "FRACTURE_DEFINITIONS",
           "cumulative_hazard", "design", "turnover_index"]
