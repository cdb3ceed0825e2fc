"""Hip fracture risk: falls, hip impacts, impact force and fall strength.

Science notes: ``shared/science/clinical-targets.md`` row 15 (falls and hip impacts) and
``shared/science/fracture-risk-and-performance.md`` section 1 (impact model). Units: N, kg,
m/s, N/m, mm, years.

Model (per woman, at each month of her fall-strength course)

* Falls: a negative-binomial count, i.e. a Poisson count whose yearly rate is the
  woman's own, gamma distributed with mean ``falls_per_year`` and shape ``k``
  (variance ``mu + mu**2 / k``). A share ``hip_impact_share`` of falls lands on the hip.
* Impact force of a hip impact: a single-DOF spring-mass ``F = v * sqrt(k_p * m_eff)``
  (note section 1; within about 3 % of measured peaks), less a soft-tissue attenuation
  ``71 N/mm * (soft tissue - 30 mm)``, floored at 0. ``v`` is the MEASURED vertical pelvis
  impact velocity of real falls, not a standing-height drop.
* A hip impact in direction ``d`` (lateral, posterolateral, anterolateral) breaks the
  femur when ``F >= s * S_d`` with ``S_d`` the engine's fall strength in that direction
  (the quantity of the study's strength model, ``femur.mechanics.strength``) and ``s`` the
  ONE free parameter of the hip model (``hip_log_strength_scale = ln s``): it absorbs the
  bias of the strength model (today the linear first-failure load) and of the force
  model. It is fitted to hip fractures per fall (row 15) and the FREEDOM placebo hip
  incidence (row 11) only (``femur.calibration.risk``).
* The per-impact fracture probability ``p_fx`` integrates over the velocity (normal,
  truncated at 0: closed form), the pelvis stiffness (uniform: Gauss-Legendre) and the
  direction (weights): deterministic, smooth in ``s``, no Monte Carlo noise.
* Her expected hip-fracture rate is ``q(t) = falls_per_year * hip_impact_share * p_fx(t)``
  and, with the gamma-distributed fall rate, the probability of at least one hip fracture
  by ``T`` is ``1 - (1 + Q(T) / k)**(-k)`` with ``Q(T) = integral_0^T q dt`` (the
  negative-binomial zero class; Poisson when ``k -> inf``). No mortality, no competing risk.
"""

from __future__ import annotations

import math

import numpy as np
from scipy.special import ndtr

from femur.core.errors import InputError

# ---------------------------------------------------------------------------------------
# Fixed inputs, each with its source (row = clinical-targets.md; note = fracture-risk-and-
# performance.md). A calibration records the values it used in its parameter file.
# ---------------------------------------------------------------------------------------
#: Falls per year. Row 15: community-dwelling older adults fall about 0.7-1.0 times a
#: year (BMC Geriatr 2023); MOBILIZE Boston about 0.8 (Kelsey, JAGS 2010). We take 0.8,
#: the one value measured in a named cohort, inside the range.
FALLS_PER_YEAR = 0.8
#: Negative-binomial shape of the yearly fall count (gamma-distributed personal fall
#: rate). ASSUMPTION: 1.0 (variance = mean + mean**2); not in the notes.
FALL_RATE_SHAPE = 1.0
#: Share of falls with a hip/pelvis impact: 40 % of 520 filmed falls (Yang et al.,
#: Osteoporos Int 2016; row 15).
HIP_IMPACT_SHARE = 0.40
#: Vertical pelvis impact velocity in real falls, 2.14 +- 0.63 m/s (25 filmed falls, mean
#: age 80; Choi et al., J Biomech 2015, row 15): normal, truncated at 0.
IMPACT_VELOCITY_M_S = (2.14, 0.63)
#: In-vivo pelvis secant stiffness 24.6-35.6 kN/m (Choi, J Biomech 2023; note section 1,
#: confirmed). Uniform over the range (ASSUMPTION on the shape). Measured with the
#: subjects' own soft tissue in place.
PELVIS_STIFFNESS_N_M = (24.6e3, 35.6e3)
#: Effective mass at hip impact, 7/20 of body mass (van den Kroonenberg 1995/96; note
#: section 1: UNCONFIRMED). For 63-94 kg it lies inside the confirmed 22-33 kg consensus
#: range (Robinovitch, Osteoporos Int 2009).
EFFECTIVE_MASS_FRACTION = 7.0 / 20.0
#: Soft-tissue attenuation about 71 N per mm of trochanteric soft tissue (note section 1:
#: UNCONFIRMED). The stiffness above was measured in vivo, soft tissue included, so the
#: attenuation applies only relative to a reference thickness (ASSUMPTION: 30 mm, the
#: mean of the cohort sampler).
SOFT_TISSUE_N_PER_MM = 71.0
SOFT_TISSUE_REFERENCE_MM = 30.0
#: Fall directions and their shares. ASSUMPTION: equal shares of lateral, posterolateral
#: and anterolateral impacts (the notes give no split; several directions as recommended
#: by Viceconti, Curr Osteoporos Rep 2018, note section 3).
FALL_DIRECTIONS = ("lateral", "posterolateral", "anterolateral")
FALL_DIRECTION_WEIGHTS = (1.0 / 3.0, 1.0 / 3.0, 1.0 / 3.0)
#: Gauss-Legendre points over the stiffness range
STIFFNESS_POINTS = 8


def fixed_inputs() -> dict:
    """The fixed inputs of the hip model (recorded in a calibration's parameter file)."""
    return {
        "falls_per_year": FALLS_PER_YEAR,
        "fall_rate_shape": FALL_RATE_SHAPE,
        "hip_impact_share": HIP_IMPACT_SHARE,
        "impact_velocity_mean_m_s": IMPACT_VELOCITY_M_S[0],
        "impact_velocity_sd_m_s": IMPACT_VELOCITY_M_S[1],
        "pelvis_stiffness_min_n_m": PELVIS_STIFFNESS_N_M[0],
        "pelvis_stiffness_max_n_m": PELVIS_STIFFNESS_N_M[1],
        "effective_mass_fraction": EFFECTIVE_MASS_FRACTION,
        "soft_tissue_n_per_mm": SOFT_TISSUE_N_PER_MM,
        "soft_tissue_reference_mm": SOFT_TISSUE_REFERENCE_MM,
        "fall_direction_weight_lateral": FALL_DIRECTION_WEIGHTS[0],
        "fall_direction_weight_posterolateral": FALL_DIRECTION_WEIGHTS[1],
        "fall_direction_weight_anterolateral": FALL_DIRECTION_WEIGHTS[2],
    }


FIXED_SOURCES = {
    "falls_per_year": "row 15: 0.7-1.0 falls/year; MOBILIZE Boston 0.8 (Kelsey, JAGS 2010)",
    "fall_rate_shape": "ASSUMPTION (negative-binomial shape; not in the notes)",
    "hip_impact_share": "row 15: 40 % of 520 filmed falls (Yang, Osteoporos Int 2016)",
    "impact_velocity_mean_m_s": "row 15: 2.14 +- 0.63 m/s (Choi, J Biomech 2015)",
    "impact_velocity_sd_m_s": "row 15: 2.14 +- 0.63 m/s (Choi, J Biomech 2015)",
    "pelvis_stiffness_min_n_m": "note s.1: in-vivo secant stiffness 24.6-35.6 kN/m (Choi, J Biomech 2023)",
    "pelvis_stiffness_max_n_m": "note s.1: in-vivo secant stiffness 24.6-35.6 kN/m (Choi, J Biomech 2023)",
    "effective_mass_fraction": "note s.1: 7/20 body mass (van den Kroonenberg; UNCONFIRMED)",
    "soft_tissue_n_per_mm": "note s.1: 71 N/mm (UNCONFIRMED)",
    "soft_tissue_reference_mm": "ASSUMPTION (cohort mean soft tissue)",
    "fall_direction_weight_lateral": "ASSUMPTION (equal shares)",
    "fall_direction_weight_posterolateral": "ASSUMPTION (equal shares)",
    "fall_direction_weight_anterolateral": "ASSUMPTION (equal shares)",
}


def _stiffness_nodes(lo: float, hi: float, n: int = STIFFNESS_POINTS):
    """Gauss-Legendre nodes over [lo, hi] and weights of the MEAN over the range (sum 1)."""
    x, w = np.polynomial.legendre.leggauss(n)
    return 0.5 * (hi - lo) * x + 0.5 * (hi + lo), 0.5 * w


def velocity_exceedance(v, mean: float, sd: float):
    """``P(V >= v)`` for ``V ~ normal(mean, sd)`` truncated to ``V > 0``."""
    if not sd > 0:
        raise InputError(f"impact velocity SD must be > 0 m/s, got {sd!r}")
    v = np.asarray(v, dtype=float)
    tail = ndtr(-(np.maximum(v, 0.0) - mean) / sd)
    return tail / ndtr(mean / sd)


def impact_force_n(velocity_m_s, body_mass_kg, stiffness_n_m, soft_tissue_mm=None,
                   fixed: dict | None = None):
    """Peak hip impact force ``v sqrt(k m_eff) - 71 N/mm (soft tissue - 30 mm)``, >= 0 (N)."""
    f = fixed or fixed_inputs()
    m = _positive("body_mass_kg", body_mass_kg) * f["effective_mass_fraction"]
    k = _positive("stiffness_n_m", stiffness_n_m)
    force = np.asarray(velocity_m_s, dtype=float) * np.sqrt(k * m)
    force = force - _attenuation_n(soft_tissue_mm, f)
    out = np.maximum(force, 0.0)
    return float(out) if np.ndim(out) == 0 else out


def _attenuation_n(soft_tissue_mm, f: dict):
    if soft_tissue_mm is None:
        return 0.0
    stt = np.asarray(soft_tissue_mm, dtype=float)
    if not np.all(np.isfinite(stt)) or np.any(stt < 0):
        raise InputError(f"soft_tissue_mm must be >= 0 mm, got {soft_tissue_mm!r}")
    return f["soft_tissue_n_per_mm"] * (stt - f["soft_tissue_reference_mm"])


def _positive(name, value) -> np.ndarray:
    arr = np.asarray(value, dtype=float)
    if not np.all(np.isfinite(arr)) or np.any(arr <= 0):
        raise InputError(f"{name} must be a positive finite number, got {value!r}")
    return arr


def mean_impact_force_n(body_mass_kg, soft_tissue_mm=None, fixed: dict | None = None):
    """The force of a hip impact at the mean velocity and mid-range stiffness (N): for the
    factor of risk ``Phi = F / S`` the tables print."""
    f = fixed or fixed_inputs()
    k = 0.5 * (f["pelvis_stiffness_min_n_m"] + f["pelvis_stiffness_max_n_m"])
    return impact_force_n(f["impact_velocity_mean_m_s"], body_mass_kg, k, soft_tissue_mm, f)


def fracture_probability_per_impact(strength_n, body_mass_kg, soft_tissue_mm=None,
                                    log_strength_scale: float = 0.0, fixed: dict | None = None,
                                    by_direction: bool = False):
    """Probability that a hip impact breaks the femur, ``P(F >= s * S_d)``.

    ``strength_n``: fall strengths (N) with the directions on the LAST axis (length 3:
    lateral, posterolateral, anterolateral); any leading shape (cases x months).
    ``body_mass_kg`` and ``soft_tissue_mm`` broadcast against the leading shape (e.g.
    one value per case as ``(n_cases, 1)``). ``log_strength_scale`` is ``ln s``.
    ``by_direction``: keep the last axis, each direction's share of the probability
    (its fall weight times its own probability; the three add up to the total).
    """
    f = fixed or fixed_inputs()
    s = np.asarray(strength_n, dtype=float)
    if s.shape[-1] != len(FALL_DIRECTIONS):
        raise InputError(f"fall strengths need {len(FALL_DIRECTIONS)} directions on the last axis "
                         f"({', '.join(FALL_DIRECTIONS)}), got shape {s.shape}")
    if np.any(~np.isfinite(s)) or np.any(s <= 0):
        raise InputError("fall strengths must be finite and > 0 N")
    w_dir = np.array([f[f"fall_direction_weight_{d}"] for d in FALL_DIRECTIONS])
    w_dir = w_dir / w_dir.sum()
    m_eff = _positive("body_mass_kg", body_mass_kg) * f["effective_mass_fraction"]
    att = _attenuation_n(soft_tissue_mm, f)
    k_nodes, k_w = _stiffness_nodes(f["pelvis_stiffness_min_n_m"], f["pelvis_stiffness_max_n_m"])
    scale = math.exp(float(log_strength_scale))
    # threshold force per direction, then the velocity that reaches it per stiffness node
    threshold = scale * s + np.asarray(att, dtype=float)[..., None]  # (..., 3)
    out = np.zeros(s.shape if by_direction else s.shape[:-1])
    for kj, wj in zip(k_nodes, k_w):
        v_star = threshold / np.sqrt(kj * np.asarray(m_eff)[..., None])
        p = velocity_exceedance(v_star, f["impact_velocity_mean_m_s"], f["impact_velocity_sd_m_s"])
        out = out + wj * (p * w_dir if by_direction else p @ w_dir)
    return out


def nb_incidence(expected_hip_fractures, shape: float):
    """``1 - (1 + Q / k)**(-k)``: probability of at least one hip fracture when the personal
    fall rate is gamma distributed (shape ``k``) and ``Q`` is the expected count."""
    q = np.asarray(expected_hip_fractures, dtype=float)
    if not shape > 0:
        raise InputError(f"fall-rate shape must be > 0, got {shape!r}")
    return -np.expm1(-shape * np.log1p(q / shape))


__all__ = [
    "EFFECTIVE_MASS_FRACTION",
    "FALLS_PER_YEAR",
    "FALL_DIRECTIONS",
    "FALL_DIRECTION_WEIGHTS",
    "FALL_RATE_SHAPE",
    "FIXED_SOURCES",
    "HIP_IMPACT_SHARE",
    "IMPACT_VELOCITY_M_S",
    "PELVIS_STIFFNESS_N_M",
    "SOFT_TISSUE_N_PER_MM",
    "SOFT_TISSUE_REFERENCE_MM",
    "fixed_inputs",
    "fracture_probability_per_impact",
    "impact_force_n",
    "mean_impact_force_n",
    "nb_incidence",
    "velocity_exceedance",
]
