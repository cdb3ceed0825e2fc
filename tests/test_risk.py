"""Fracture-risk models: analytic checks of the impact model, the Monte Carlo fall model,
the vertebral hazard and its calibration, and the BCT-style classes."""

import math

import numpy as np
import pytest

from femur.outcomes import risk
from femur.core.errors import InputError

G = 9.81


def test_impact_velocity_and_force_analytic():
    v = risk.impact_velocity_m_s(1.60)
    assert v == pytest.approx(math.sqrt(2 * G * 0.554 * 1.60), rel=1e-12)
    # energy-transfer factor scales the kinetic energy
    assert risk.impact_velocity_m_s(1.60, 0.25) == pytest.approx(0.5 * v, rel=1e-12)
    f = risk.hip_impact_force_n(65.0, 1.60)
    expected = math.sqrt(2 * G * 0.554 * 1.60) * math.sqrt(47_000.0 * 65.0 * 7 / 20)
    assert f == pytest.approx(expected, rel=1e-12)
    assert f == pytest.approx(4312.25, abs=0.01)
    # mid ARF0 energy transfer gives the consensus impact velocity (3.4 m/s) and a force in
    # the 3.1-4.6 kN range derived in the science note
    assert risk.impact_velocity_m_s(1.60, 0.65) == pytest.approx(3.4, abs=0.05)
    f_mid = risk.hip_impact_force_n(65.0, 1.60, energy_transfer=0.65)
    assert 3100 < f_mid < 4600


def test_soft_tissue_and_attenuation():
    f = risk.hip_impact_force_n(65.0, 1.60)
    assert risk.hip_impact_force_n(65.0, 1.60, 30.0) == pytest.approx(f, rel=1e-12)
    assert risk.hip_impact_force_n(65.0, 1.60, 40.0) == pytest.approx(f - 710.0, rel=1e-12)
    assert risk.hip_impact_force_n(65.0, 1.60, 20.0) == pytest.approx(f + 710.0, rel=1e-12)
    assert risk.hip_impact_force_n(65.0, 1.60, attenuation=0.5) == pytest.approx(0.5 * f, rel=1e-12)
    # never negative
    assert risk.hip_impact_force_n(40.0, 1.45, 200.0) == 0.0
    # force grows with sqrt(mass)
    assert risk.hip_impact_force_n(4 * 65.0, 1.60) == pytest.approx(2 * f, rel=1e-12)


def test_factor_of_risk():
    assert risk.factor_of_risk(4000.0, 2500.0) == pytest.approx(1.6)
    np.testing.assert_allclose(risk.factor_of_risk(np.array([1000.0, 3000.0]), 2000.0), [0.5, 1.5])
    with pytest.raises(InputError, match="strength_n"):
        risk.factor_of_risk(1000.0, 0.0)
    assert risk.factor_of_risk_by_direction(3000.0, {0: 2500.0, 30: 2000.0}) == {0.0: 1.2, 30.0: 1.5}
    with pytest.raises(InputError, match="body_mass_kg"):
        risk.hip_impact_force_n(-1.0, 1.6)


def test_per_fall_probability_limits_and_monotonic():
    model = risk.FallModel(n_samples=2000)
    falls = model.sample(np.random.Generator(np.random.PCG64(3)))
    forces = risk.fall_forces_n(65.0, 1.60, falls)
    assert risk.per_fall_fracture_probability(forces.min() * 0.999, forces, falls) == 1.0
    assert risk.per_fall_fracture_probability(forces.max() * 1.001, forces, falls) == 0.0
    ps = [risk.per_fall_fracture_probability(s, forces, falls) for s in (2000, 2500, 3000, 3500, 4000)]
    assert all(a >= b for a, b in zip(ps, ps[1:]))
    assert ps[0] > ps[-1]
    # exact empirical fraction
    assert ps[2] == pytest.approx(np.mean(forces >= 3000.0), abs=0)


def test_strength_by_direction():
    model = risk.FallModel(n_samples=2000)
    falls = model.sample(np.random.Generator(np.random.PCG64(5)))
    forces = risk.fall_forces_n(65.0, 1.60, falls)
    flat = {a: 3000.0 for a in model.directions_deg}
    assert risk.per_fall_fracture_probability(flat, forces, falls) == risk.per_fall_fracture_probability(
        3000.0, forces, falls
    )
    weaker = {**flat, 30.0: 2500.0}  # posterolateral weaker
    assert risk.per_fall_fracture_probability(weaker, forces, falls) > risk.per_fall_fracture_probability(
        3000.0, forces, falls
    )


def test_hip_probability_deterministic_and_poisson_in_time():
    a = risk.hip_fracture_probability(65.0, 1.60, 3000.0, [1.0, 10.0], seed=11)
    b = risk.hip_fracture_probability(65.0, 1.60, 3000.0, [1.0, 10.0], seed=11)
    assert a == b
    p1, p10 = a
    # constant hazard: 1 - P(10) = (1 - P(1))**10
    assert 1 - p10 == pytest.approx((1 - p1) ** 10, rel=1e-12)
    # rate = falls/yr * p_hip * p_fx, bounded by falls/yr * p_hip
    assert p1 <= 1 - math.exp(-0.65 * 0.25) + 1e-15
    assert risk.hip_fracture_probability(65.0, 1.60, 3500.0, seed=11) < p1
    # no falls -> no fracture
    none = risk.FallModel(falls_per_year=0.0)
    assert risk.hip_fracture_probability(65.0, 1.60, 1000.0, seed=1, model=none) == 0.0
    # every hip impact fractures (very weak bone) -> P = 1 - exp(-lambda p_hip T)
    weak = risk.hip_fracture_probability(65.0, 1.60, 10.0, 2.0, seed=1)
    assert weak == pytest.approx(1 - math.exp(-0.65 * 0.25 * 2.0), rel=1e-12)


def test_fall_model_validation():
    with pytest.raises(InputError, match="p_hip_impact"):
        risk.FallModel(p_hip_impact=1.5)
    with pytest.raises(InputError, match="falls_per_year"):
        risk.FallModel(falls_per_year=-1.0)
    with pytest.raises(InputError, match="direction_weights"):
        risk.FallModel(direction_weights=(1.0,))
    with pytest.raises(InputError, match="attenuation"):
        risk.FallModel(attenuation_range=(0.0, 1.0))


def test_cumulative_probability_analytic():
    # constant hazard
    assert risk.cumulative_probability([0, 1], [0.1, 0.1], 1.0) == pytest.approx(1 - math.exp(-0.1), rel=1e-12)
    # linear hazard 0 -> 0.2 over a year: integral 0.1
    assert risk.cumulative_probability([0, 1], [0.0, 0.2], 1.0) == pytest.approx(1 - math.exp(-0.1), rel=1e-12)
    # held constant after the last time: 0.1 + 0.2 * 1
    assert risk.cumulative_probability([0, 1], [0.0, 0.2], 2.0) == pytest.approx(1 - math.exp(-0.3), rel=1e-12)
    # partial interval: h(t) = 0.2 t, integral to 0.5 = 0.025
    assert risk.cumulative_probability([0, 1], [0.0, 0.2], 0.5) == pytest.approx(1 - math.exp(-0.025), rel=1e-12)
    assert risk.cumulative_probability([0, 1], [0.1, 0.1], 0.0) == 0.0
    with pytest.raises(InputError):
        risk.cumulative_probability([0, 0], [0.1, 0.1], 1.0)


def test_vertebral_loads_and_phi():
    loads = risk.vertebral_activity_loads_n(65.0)
    bw = 65.0 * G
    assert loads["standing"] == pytest.approx(0.6 * bw)
    assert loads["bending_forward"] == pytest.approx(2.3 * bw)
    assert loads["bending_forward_lifting_10kg"] == pytest.approx(2.3 * bw + 8 * 10 * G)
    assert risk.vertebral_factor_of_risk(65.0, 4500.0) == pytest.approx((2.3 * bw + 80 * G) / 4500.0)
    with pytest.raises(InputError, match="unknown spine activity"):
        risk.vertebral_factor_of_risk(65.0, 4500.0, activity="jumping")


def test_beta_from_gradient_of_risk():
    assert risk.SPINE_HAZARD_BETA == pytest.approx(math.log(2.8) / 0.25, rel=1e-12)


def test_vertebral_calibration_exact():
    beta = risk.SPINE_HAZARD_BETA
    # one patient with constant Phi: closed form
    phi = 0.5
    h0 = risk.calibrate_vertebral_h0([([0.0, 1.0], [phi, phi])])
    assert h0 == pytest.approx(-math.log1p(-0.018) / phi**beta, rel=1e-10)
    # several patients with varying Phi: the mean 12-month probability hits the target
    traj = [([0.0, 0.5, 1.0], [0.4, 0.42, 0.45]), ([0.0, 0.5, 1.0], [0.6, 0.61, 0.62]), ([0.0, 1.0], [0.3, 0.3])]
    h0 = risk.calibrate_vertebral_h0(traj)
    model = risk.VertebralRiskModel(h0)
    ps = [risk.cumulative_probability(t, model.hazard_per_year(np.array(p)), 1.0) for t, p in traj]
    assert np.mean(ps) == pytest.approx(0.018, rel=1e-9)
    # treatment effect only through strength: 20 % stronger bone -> hazard x 1.2**-beta
    assert model.hazard_per_year(phi / 1.2) / model.hazard_per_year(phi) == pytest.approx(1.2**-beta, rel=1e-12)
    with pytest.raises(InputError, match="calibrate"):
        risk.VertebralRiskModel().hazard_per_year(0.5)
    with pytest.raises(InputError):
        risk.calibrate_vertebral_h0([], 0.018)


@pytest.mark.parametrize(
    "strength,site,sex,expected",
    [
        (2999.0, "hip", "F", "fragile"),
        (3000.0, "hip", "F", "fragile"),
        (3500.0, "hip", "F", "low"),
        (4000.0, "hip", "F", "normal"),
        (4500.0, "spine", "F", "fragile"),
        (5999.0, "spine", "F", "low"),
        (6000.0, "spine", "F", "normal"),
        (3500.0, "hip", "M", "fragile"),
        (4999.0, "hip", "M", "low"),
        (8500.0, "spine", "M", "normal"),
        (8000.0, "spine", "M", "low"),
    ],
)
def test_bct_classes(strength, site, sex, expected):
    assert risk.bct_class(strength, site, sex) == expected


def test_bct_bad_site_and_note():
    with pytest.raises(InputError, match="site"):
        risk.bct_class(3000.0, "wrist")
    assert "NOT recalibrated" in risk.BCT_NOTE
