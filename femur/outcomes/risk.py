"""Fracture risk: hip (sideways fall) and spine (daily activities).

One cohesive thing (hence about 490 lines, most of them sourced constants): the fall model,
the vertebral hazard and the BCT classes share the factor-of-risk definitions.

Science note: ``shared/science/fracture-risk-and-performance.md`` (sections 1 and 2).
Units: N, kg, m (body height), mm (soft tissue), years.

Hip
    A single-DOF spring-mass impact model (note section 1, "Hip impact force"):
    ``F = v * sqrt(k * m_eff)`` with ``v = sqrt(eta * 2 g h)``, ``h`` the centre-of-mass
    height (0.554 x body height, ARF0: Bhattacharya et al. 2019 Table 2) and ``eta`` the
    fraction of the potential energy that reaches the hip (ARF0 energy-transfer factor;
    ``eta = 1`` gives the classic worst-case "peak" force).  The factor of risk is
    ``Phi = F / S`` with ``S`` the femoral sideways-fall strength for the fall direction
    (Keaveny & Bouxsein 2008).  Falls are stochastic, ARF0-like: a yearly fall rate, a
    probability that a fall lands on the hip, and distributions of fall direction,
    energy transfer, pelvis stiffness and impact attenuation.  The per-fall fracture
    probability ``p_fx = P(Phi >= 1)`` comes from a seeded Monte Carlo over those fall
    variables, and ``P(T) = 1 - exp(-lambda * p_hip * p_fx * T)`` (derived in the note,
    section 1, "From falls to probability"; no mortality, no competing risks).

Spine
    ``Phi_vert = L / S_vert`` with ``L`` the L3 compressive load of a daily activity
    (trunk-model idea of Bouxsein et al., JBMR 2006; the load multipliers below are this
    project's ASSUMPTIONS, the note marks the paper's magnitudes UNCONFIRMED) and a hazard
    ``h = h0 * Phi_vert**beta`` per year.  ``beta`` is fixed from the published gradient
    of risk (Kopperdahl et al., JBMR 2014: spine OR 2.8 per SD decrease in FE strength,
    women) and an assumed between-subject coefficient of variation of strength; ``h0`` is
    the ONE parameter calibrated, only to the FRAME placebo new-vertebral-fracture
    incidence of about 1.8 % over 12 months (clinical-targets.md, calibration target #8).
    A treatment changes the risk only through the simulated strength change.

Classes
    BCT-style fragile / low / normal strength classes with the VirtuOst thresholds of
    Keaveny et al., Osteoporos Int 2020, Table 1.  These thresholds belong to VirtuOst and
    are NOT recalibrated for this engine (see :data:`BCT_NOTE`).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field

import numpy as np

from femur.core.datafiles import read_fitted
from femur.core.errors import InputError
from femur.core.sex import normalise_sex

# ---------------------------------------------------------------------------------------
# Constants (each with its source; note = shared/science/fracture-risk-and-performance.md)
# ---------------------------------------------------------------------------------------
G_M_S2 = 9.81  # standard gravity

# ARF0, Bhattacharya et al., Biomech Model Mechanobiol 2019, Table 2 (note section 1):
# centre-of-mass height / body height.
COM_HEIGHT_FRACTION = 0.554

# Effective mass of the body at hip impact: 7/20 of body mass (van den Kroonenberg et al.
# 1995/96; note section 1 tags it UNCONFIRMED).  For 63-94 kg it lies inside the
# confirmed 22-33 kg range of Robinovitch et al., Osteoporos Int 2009 (consensus).
EFFECTIVE_MASS_FRACTION = 7.0 / 20.0

# Pelvis (impact) stiffness: 39-55 kN/m, Robinovitch et al., Osteoporos Int 2009 (note
# section 1, confirmed).  The deterministic reference uses the midpoint.
PELVIS_STIFFNESS_RANGE_N_M = (39.0e3, 55.0e3)
PELVIS_STIFFNESS_N_M = 0.5 * (PELVIS_STIFFNESS_RANGE_N_M[0] + PELVIS_STIFFNESS_RANGE_N_M[1])

# Soft-tissue attenuation: about 71 N per mm of trochanteric soft tissue (van den
# Kroonenberg / Robinovitch line of work; note section 1, UNCONFIRMED).  The stiffness
# above was measured in vivo, soft tissue included, so we apply the attenuation only
# RELATIVE to a reference thickness (ASSUMPTION: 30 mm, the mean of our cohort sampler),
# never on top of it.
SOFT_TISSUE_ATTENUATION_N_PER_MM = 71.0
SOFT_TISSUE_REFERENCE_MM = 30.0

# ARF0 energy-transfer factor range 0.5-0.8 (Bhattacharya 2019 Table 2; note section 1).
# Check, not tuning: at the midpoint 0.65 a 1.60 m woman hits the ground at 3.36 m/s,
# next to the 3.4 m/s consensus impact velocity (Robinovitch 2009).
ENERGY_TRANSFER_RANGE = (0.5, 0.8)

# Yearly fall rate 0.65 (ARF0 input "n = 0.65", Gillespie 2012; note section 1 says
# "probably annual fall rate, UNCONFIRMED"); > 1/3 of adults >= 65 fall each year (CDC).
FALLS_PER_YEAR = 0.65

# Probability that a fall lands on the hip: ASSUMPTION 0.25 (order of the share of
# sideways falls in older adults; not in the science note).  Young adults hit the hip in
# 98 % of SIDEWAYS falls (note section 1, J Biomech 2007), so this is the share of falls
# that go sideways.  It scales all hip probabilities linearly.
P_HIP_IMPACT = 0.25

# Impact attenuation (fraction of the force removed by floor, landing configuration,
# muscle state).  ASSUMPTION: uniform on [-0.2, 0.4].  The upper end is the measured
# "knee on the mat" reduction 1 - 2.9/4.6 = 0.37 (Lim & Choi, Osteoporos Int 2020, note
# section 1); the negative end stands for tensed muscles raising the force (ARF0's muscle
# term is negative, Laing & Robinovitch 2008/2009).
ATTENUATION_RANGE = (-0.2, 0.4)

# Fall directions (degrees from a pure lateral impact; + = posterolateral): ASSUMPTION,
# uniform over -30..+30 in 15-degree steps (several directions as recommended by
# Viceconti, Curr Osteoporos Rep 2018; note section 3).
FALL_DIRECTIONS_DEG = (-30.0, -15.0, 0.0, 15.0, 30.0)

# --- spine ------------------------------------------------------------------------------
# L3 compressive load of daily activities, load = a * body weight + c * lifted weight.
# ASSUMPTIONS in the spirit of the trunk model of Bouxsein et al., JBMR 2006 (standing,
# bending forward, bending forward lifting 10 kg); the paper's magnitudes are
# UNCONFIRMED in the note.  c = 8 is a hand-to-spine over erector-spinae lever-arm ratio
# (about 0.40 m / 0.05 m).
SPINE_ACTIVITIES = {
    "standing": {"bw_multiple": 0.6, "lifted_kg": 0.0, "lever_ratio": 0.0},
    "bending_forward": {"bw_multiple": 2.3, "lifted_kg": 0.0, "lever_ratio": 0.0},
    "bending_forward_lifting_10kg": {"bw_multiple": 2.3, "lifted_kg": 10.0, "lever_ratio": 8.0},
}
# The activity whose factor of risk drives the hazard (the heaviest one, as in Bouxsein
# 2006's highest-load task).
SPINE_GOVERNING_ACTIVITY = "bending_forward_lifting_10kg"

# Gradient of risk: Kopperdahl et al., JBMR 2014 (AGES-Reykjavik, women): spine fracture
# OR 2.8 per SD decrease of FE vertebral strength (note section 2, confirmed).  To turn
# "per SD" into a power of Phi we ASSUME a between-subject coefficient of variation of
# vertebral strength of 0.25:  beta = ln(2.8) / 0.25 = 4.12.
SPINE_OR_PER_SD = 2.8
SPINE_STRENGTH_CV = 0.25
SPINE_HAZARD_BETA = math.log(SPINE_OR_PER_SD) / SPINE_STRENGTH_CV

# Calibration target #8 (clinical-targets.md): FRAME placebo new vertebral fracture
# incidence about 1.8 % over 12 months.
FRAME_PLACEBO_VERTEBRAL_INCIDENCE_12M = 0.018

# The vertebral baseline hazard h0 (1/year) used by every study that does not give its own:
# calibrated ONCE to target #8 on the placebo arm of the built-in FRAME-like cohort (FRAME
# inclusion, 50 women, seed 2016, default mesh and model) by
#     mpiexec -n 2 python -m femur.calibration.risk --patients 50 --write
# and then frozen, so that other cohorts' placebo incidences (older, weaker, men) come out
# of their simulated strengths instead of being forced to 1.8 %.  Rerun the command after
# changing the bones, the material law, the remodeling parameters or the load model.  The
# value and its provenance live in femur/data/vertebral_h0.json (:func:`default_vertebral_h0`).
VERTEBRAL_H0_FILE = "vertebral_h0.json"


def default_vertebral_h0() -> tuple[float, str]:
    """(h0 per year, provenance text) of the frozen calibration (femur/data/vertebral_h0.json)."""
    fit = read_fitted(VERTEBRAL_H0_FILE)
    return float(fit.values["vertebral_h0_per_year"]), str(fit.provenance.get("notes", fit.path))


# --- BCT classes ------------------------------------------------------------------------
# Keaveny et al., Osteoporos Int 2020, Table 1 (VirtuOst; note section 2, confirmed):
# (fragile upper bound, normal lower bound) in N.
BCT_THRESHOLDS_N = {
    ("F", "hip"): (3000.0, 4000.0),
    ("F", "spine"): (4500.0, 6000.0),
    ("M", "hip"): (3500.0, 5000.0),
    ("M", "spine"): (6500.0, 8500.0),
}
BCT_NOTE = (
    "BCT classes use the VirtuOst thresholds of Keaveny et al. 2020 (Table 1); they were "
    "set for VirtuOst and are NOT recalibrated for this engine, so classes are indicative only."
)



def _positive(name: str, value) -> np.ndarray:
    arr = np.asarray(value, dtype=float)
    if not np.all(np.isfinite(arr)) or np.any(arr <= 0):
        raise InputError(f"{name} must be a positive finite number, got {value!r}")
    return arr


# ---------------------------------------------------------------------------------------
# Hip impact
# ---------------------------------------------------------------------------------------
def impact_velocity_m_s(height_m, energy_transfer=1.0):
    """Hip impact velocity ``sqrt(eta * 2 g * 0.554 * height)`` (m/s)."""
    h = _positive("height_m", height_m)
    eta = np.asarray(energy_transfer, dtype=float)
    return np.sqrt(eta * 2.0 * G_M_S2 * COM_HEIGHT_FRACTION * h)


def effective_mass_kg(body_mass_kg):
    """Effective mass at hip impact, 7/20 of body mass (kg)."""
    return EFFECTIVE_MASS_FRACTION * _positive("body_mass_kg", body_mass_kg)


def hip_impact_force_n(
    body_mass_kg,
    height_m,
    soft_tissue_mm=None,
    *,
    stiffness_n_m=PELVIS_STIFFNESS_N_M,
    energy_transfer=1.0,
    attenuation=0.0,
):
    """Peak hip impact force of a sideways fall (N), vectorised over fall variables.

    ``F = v * sqrt(k * m_eff) - 71 N/mm * (soft_tissue_mm - 30 mm)``, then times
    ``(1 - attenuation)``, floored at 0.  With the defaults (``energy_transfer = 1``,
    no attenuation, no soft-tissue correction) this is the worst-case peak force.
    """
    v = impact_velocity_m_s(height_m, energy_transfer)
    k = _positive("stiffness_n_m", stiffness_n_m)
    force = v * np.sqrt(k * effective_mass_kg(body_mass_kg))
    if soft_tissue_mm is not None:
        stt = np.asarray(soft_tissue_mm, dtype=float)
        if not np.all(np.isfinite(stt)) or np.any(stt < 0):
            raise InputError(f"soft_tissue_mm must be >= 0, got {soft_tissue_mm!r}")
        force = force - SOFT_TISSUE_ATTENUATION_N_PER_MM * (stt - SOFT_TISSUE_REFERENCE_MM)
    force = force * (1.0 - np.asarray(attenuation, dtype=float))
    force = np.maximum(force, 0.0)
    return float(force) if np.ndim(force) == 0 else force


def factor_of_risk(load_n, strength_n):
    """Factor of risk ``Phi = load / strength`` (Keaveny & Bouxsein 2008)."""
    s = _positive("strength_n", strength_n)
    phi = np.asarray(load_n, dtype=float) / s
    return float(phi) if np.ndim(phi) == 0 else phi


def factor_of_risk_by_direction(load_n: float, strength_by_direction_n: Mapping) -> dict:
    """``{angle_deg: load / strength(angle)}`` for each fall direction given."""
    if not isinstance(strength_by_direction_n, Mapping) or not strength_by_direction_n:
        raise InputError("strength_by_direction_n must be a non-empty {angle_deg: strength_n} mapping")
    return {float(a): factor_of_risk(load_n, s) for a, s in strength_by_direction_n.items()}


def _strength_by_direction(strength_n, directions_deg: np.ndarray) -> np.ndarray:
    """Strength for each sampled direction.

    ``strength_n`` is a scalar (direction-independent: an ASSUMPTION when the FE model
    gives one lateral fall strength only) or a mapping {angle_deg: strength_n}, linearly
    interpolated in angle and held constant beyond the end points.
    """
    if isinstance(strength_n, Mapping):
        if not strength_n:
            raise InputError("strength_n by direction is empty")
        angles = np.array([float(a) for a in strength_n], dtype=float)
        values = _positive("strength_n", [strength_n[a] for a in strength_n])
        order = np.argsort(angles)
        return np.interp(directions_deg, angles[order], values[order])
    s = float(_positive("strength_n", strength_n))
    return np.full(directions_deg.shape, s)


@dataclass(frozen=True)
class FallModel:
    """ARF0-like stochastic fall model (all numbers: see the module constants)."""

    falls_per_year: float = FALLS_PER_YEAR
    p_hip_impact: float = P_HIP_IMPACT
    directions_deg: tuple = FALL_DIRECTIONS_DEG
    direction_weights: tuple | None = None  # None: uniform
    energy_transfer_range: tuple = ENERGY_TRANSFER_RANGE
    stiffness_range_n_m: tuple = PELVIS_STIFFNESS_RANGE_N_M
    attenuation_range: tuple = ATTENUATION_RANGE
    n_samples: int = 4000

    def __post_init__(self):
        if not (self.falls_per_year >= 0 and math.isfinite(self.falls_per_year)):
            raise InputError(f"falls_per_year must be >= 0, got {self.falls_per_year!r}")
        if not 0.0 <= self.p_hip_impact <= 1.0:
            raise InputError(f"p_hip_impact must be in [0, 1], got {self.p_hip_impact!r}")
        if int(self.n_samples) < 1:
            raise InputError(f"n_samples must be >= 1, got {self.n_samples!r}")
        if len(self.directions_deg) == 0:
            raise InputError("directions_deg must not be empty")
        if self.direction_weights is not None and (
            len(self.direction_weights) != len(self.directions_deg)
            or any(w < 0 for w in self.direction_weights)
            or sum(self.direction_weights) <= 0
        ):
            raise InputError("direction_weights must be non-negative, one per direction")
        for name in ("energy_transfer_range", "stiffness_range_n_m", "attenuation_range"):
            lo, hi = getattr(self, name)
            if not lo <= hi:
                raise InputError(f"FallModel.{name} must be (low, high) with low <= high")
        if self.energy_transfer_range[0] < 0 or self.stiffness_range_n_m[0] <= 0:
            raise InputError("energy transfer must be >= 0 and stiffness > 0")
        if self.attenuation_range[1] >= 1.0:
            raise InputError("attenuation must stay below 1 (a fraction of the force)")

    def to_dict(self) -> dict:
        return {k: (list(v) if isinstance(v, tuple) else v) for k, v in asdict(self).items()}

    def sample(self, rng: np.random.Generator) -> dict:
        """Draw ``n_samples`` falls (common random numbers: reuse for every visit/arm)."""
        n = int(self.n_samples)
        dirs = np.asarray(self.directions_deg, dtype=float)
        w = None
        if self.direction_weights is not None:
            w = np.asarray(self.direction_weights, dtype=float)
            w = w / w.sum()
        return {
            "direction_deg": rng.choice(dirs, size=n, p=w),
            "energy_transfer": rng.uniform(*self.energy_transfer_range, size=n),
            "stiffness_n_m": rng.uniform(*self.stiffness_range_n_m, size=n),
            "attenuation": rng.uniform(*self.attenuation_range, size=n),
        }


def fall_forces_n(body_mass_kg: float, height_m: float, falls: dict, soft_tissue_mm=None):
    """Impact force of each sampled fall (N)."""
    return hip_impact_force_n(
        body_mass_kg,
        height_m,
        soft_tissue_mm,
        stiffness_n_m=falls["stiffness_n_m"],
        energy_transfer=falls["energy_transfer"],
        attenuation=falls["attenuation"],
    )


def per_fall_fracture_probability(strength_n, forces_n: np.ndarray, falls: dict) -> float:
    """Fraction of sampled hip impacts with ``Phi = F / S(direction) >= 1``."""
    s = _strength_by_direction(strength_n, np.asarray(falls["direction_deg"], dtype=float))
    return float(np.mean(np.asarray(forces_n) >= s))


def probability_over(yearly_hazard, years) -> float:
    """``P(T) = 1 - exp(-h T)`` for a constant yearly hazard."""
    return float(-np.expm1(-float(yearly_hazard) * float(years)))


def hip_fracture_probability(
    body_mass_kg: float,
    height_m: float,
    strength_n,
    years=1.0,
    *,
    seed=0,
    soft_tissue_mm=None,
    model: FallModel | None = None,
):
    """Hip fracture probability over ``years`` (scalar or sequence) at constant strength.

    ``P(T) = 1 - exp(-falls_per_year * p_hip_impact * p_fx * T)`` with ``p_fx`` from a
    Monte Carlo over ``model`` seeded by ``seed`` (an int or a numpy SeedSequence):
    the same seed gives the same answer.
    """
    model = model or FallModel()
    rng = np.random.Generator(np.random.PCG64(seed))
    falls = model.sample(rng)
    forces = fall_forces_n(body_mass_kg, height_m, falls, soft_tissue_mm)
    p_fx = per_fall_fracture_probability(strength_n, forces, falls)
    rate = model.falls_per_year * model.p_hip_impact * p_fx
    if np.ndim(years) == 0:
        return probability_over(rate, years)
    return [probability_over(rate, t) for t in years]


def hazard_integral(times_years, hazards_per_year, horizon_years) -> float:
    """``integral_0^T h dt`` with ``h`` piecewise linear between the given times and held
    constant after the last one (exact trapezoid rule)."""
    t = np.asarray(times_years, dtype=float)
    h = np.asarray(hazards_per_year, dtype=float)
    horizon = float(horizon_years)
    if t.size == 0 or t.size != h.size:
        raise InputError("times and hazards must be non-empty and of equal length")
    if np.any(np.diff(t) <= 0):
        raise InputError("times must increase strictly")
    if horizon <= t[0]:
        return 0.0
    inside = t < horizon
    tt = np.append(t[inside], horizon)
    hh = np.append(h[inside], np.interp(horizon, t, h))
    return float(np.sum(0.5 * (hh[1:] + hh[:-1]) * np.diff(tt)))


def cumulative_probability(times_years, hazards_per_year, horizon_years) -> float:
    """``1 - exp(-integral_0^T h dt)`` (see :func:`hazard_integral`)."""
    return float(-np.expm1(-hazard_integral(times_years, hazards_per_year, horizon_years)))


# ---------------------------------------------------------------------------------------
# Spine
# ---------------------------------------------------------------------------------------
def vertebral_activity_loads_n(body_mass_kg: float) -> dict:
    """L3 compressive load (N) of each daily activity in :data:`SPINE_ACTIVITIES`."""
    bw = float(_positive("body_mass_kg", body_mass_kg)) * G_M_S2
    return {
        name: a["bw_multiple"] * bw + a["lever_ratio"] * a["lifted_kg"] * G_M_S2
        for name, a in SPINE_ACTIVITIES.items()
    }


def vertebral_factor_of_risk(body_mass_kg: float, strength_n, activity: str = SPINE_GOVERNING_ACTIVITY):
    """``Phi_vert = activity load / vertebral strength``."""
    loads = vertebral_activity_loads_n(body_mass_kg)
    if activity not in loads:
        raise InputError(f"unknown spine activity {activity!r}; known: {sorted(loads)}")
    return factor_of_risk(loads[activity], strength_n)


@dataclass
class VertebralRiskModel:
    """Yearly hazard of a new vertebral fracture ``h = h0 * Phi**beta``.

    ``h0_per_year`` is the single calibrated parameter (see
    :func:`calibrate_vertebral_h0`); ``beta`` is fixed from Kopperdahl 2014 and an assumed
    strength CV (module constants).
    """

    h0_per_year: float | None = None
    beta: float = SPINE_HAZARD_BETA
    activity: str = SPINE_GOVERNING_ACTIVITY
    provenance: str = field(default="uncalibrated")

    def hazard_per_year(self, phi):
        if self.h0_per_year is None:
            raise InputError("VertebralRiskModel.h0_per_year is not set: calibrate it first")
        return self.h0_per_year * np.asarray(phi, dtype=float) ** self.beta

    def probability(self, phi, years) -> float:
        return probability_over(self.hazard_per_year(phi), years)


def calibrate_vertebral_h0(
    phi_trajectories,
    target_incidence: float = FRAME_PLACEBO_VERTEBRAL_INCIDENCE_12M,
    horizon_years: float = 1.0,
    beta: float = SPINE_HAZARD_BETA,
) -> float:
    """Solve for ``h0`` such that the mean over patients of
    ``1 - exp(-h0 * integral_0^T Phi(t)**beta dt)`` equals ``target_incidence``.

    ``phi_trajectories`` is a list of ``(times_years, phi_values)`` pairs (the placebo
    arm).  Calibration input: clinical-targets.md target #8 only.
    """
    from scipy.optimize import brentq

    if not 0.0 < target_incidence < 1.0:
        raise InputError(f"target_incidence must be in (0, 1), got {target_incidence!r}")
    if len(phi_trajectories) == 0:
        raise InputError("calibrate_vertebral_h0 needs at least one placebo trajectory")
    exposures = [
        hazard_integral(times, np.asarray(phis, dtype=float) ** beta, horizon_years)
        for times, phis in phi_trajectories
    ]
    a = np.asarray(exposures)

    def mean_p(h0):
        return float(np.mean(-np.expm1(-h0 * a))) - target_incidence

    hi = 1.0
    while mean_p(hi) < 0:
        hi *= 10.0
        if hi > 1e12:
            raise InputError("cannot reach the target incidence (all factors of risk zero?)")
    return float(brentq(mean_p, 0.0, hi, xtol=1e-15, rtol=1e-14, maxiter=500))


# ---------------------------------------------------------------------------------------
# BCT-style classes
# ---------------------------------------------------------------------------------------
def bct_class(strength_n: float, site: str, sex: str = "F") -> str:
    """'fragile', 'low' or 'normal' bone strength (VirtuOst thresholds; see BCT_NOTE)."""
    sex_key = "F" if normalise_sex(sex, "bct_class: sex") == "female" else "M"
    key = (sex_key, str(site).lower())
    if key not in BCT_THRESHOLDS_N:
        raise InputError(f"bct_class: site must be 'hip' or 'spine' and sex 'F' or 'M', got {site!r}, {sex!r}")
    fragile_max, normal_min = BCT_THRESHOLDS_N[key]
    s = float(strength_n)
    if s <= fragile_max:
        return "fragile"
    if s < normal_min:
        return "low"
    return "normal"


__all__ = [
    "BCT_NOTE",
    "default_vertebral_h0",
    "BCT_THRESHOLDS_N",
    "FallModel",
    "VertebralRiskModel",
    "bct_class",
    "calibrate_vertebral_h0",
    "cumulative_probability",
    "effective_mass_kg",
    "factor_of_risk",
    "factor_of_risk_by_direction",
    "fall_forces_n",
    "hazard_integral",
    "hip_fracture_probability",
    "hip_impact_force_n",
    "impact_velocity_m_s",
    "per_fall_fracture_probability",
    "probability_over",
    "vertebral_activity_loads_n",
    "vertebral_factor_of_risk",
]
