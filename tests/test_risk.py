"""Fracture-risk model: exact checks of the hip impact model and its quadrature, the
negative-binomial incidence, the spine hazard (design, turnover smoothing, trapezoid
integral), the monthly courses (log-strength interpolation), the parameter draws and the
BCT classes."""

import math

import numpy as np
import pytest
from scipy.stats import norm

from femur.core.errors import InputError
from femur.outcomes import risk
from femur.outcomes.risk import hip, spine
from femur.outcomes.risk.parameters import FITTED_PARAMETERS, RiskParameters

# no MPI, mesh or FE here: the one-process half covers these (CI time)
pytestmark = pytest.mark.serial


def _fixed(**kw):
    f = risk.default_fixed()
    f["reference_vertebral_strength_n"] = 5000.0
    f.update(kw)
    return f


# ------------------------------------------------------------------------------ hip
def test_impact_force_spring_mass():
    f = hip.fixed_inputs()
    m_eff = 65.0 * 7.0 / 20.0
    assert hip.impact_force_n(2.14, 65.0, 30e3) == pytest.approx(2.14 * math.sqrt(30e3 * m_eff), rel=1e-12)
    # soft tissue: 71 N per mm away from the 30 mm reference, floored at 0
    base = hip.impact_force_n(2.0, 65.0, 30e3)
    assert hip.impact_force_n(2.0, 65.0, 30e3, 40.0) == pytest.approx(base - 710.0, rel=1e-12)
    assert hip.impact_force_n(2.0, 65.0, 30e3, 20.0) == pytest.approx(base + 710.0, rel=1e-12)
    assert hip.impact_force_n(0.5, 40.0, 25e3, 80.0) == 0.0
    # force at the mean velocity and mid-range in-vivo stiffness
    k_mid = 0.5 * (f["pelvis_stiffness_min_n_m"] + f["pelvis_stiffness_max_n_m"])
    assert hip.mean_impact_force_n(65.0) == pytest.approx(2.14 * math.sqrt(k_mid * m_eff), rel=1e-12)
    with pytest.raises(InputError, match="body_mass_kg"):
        hip.impact_force_n(2.0, -1.0, 30e3)
    with pytest.raises(InputError, match="soft_tissue_mm"):
        hip.impact_force_n(2.0, 65.0, 30e3, -3.0)


def test_velocity_distribution_truncated_normal():
    mu, sd = 2.14, 0.63
    z0 = norm.cdf(mu / sd)
    assert hip.velocity_exceedance(0.0, mu, sd) == pytest.approx(1.0, abs=1e-15)
    assert hip.velocity_exceedance(-1.0, mu, sd) == pytest.approx(1.0, abs=1e-15)
    for v in (1.0, 2.14, 3.5):
        assert hip.velocity_exceedance(v, mu, sd) == pytest.approx(norm.sf(v, mu, sd) / z0, rel=1e-12)
    with pytest.raises(InputError):
        hip.velocity_exceedance(1.0, mu, 0.0)


def test_per_impact_probability_exact_with_one_stiffness():
    """Degenerate stiffness range and equal directions: the quadrature is exact,
    P = P(V >= s S / sqrt(k m_eff)) with V the truncated-normal velocity."""
    f = hip.fixed_inputs()
    f.update(pelvis_stiffness_min_n_m=30e3, pelvis_stiffness_max_n_m=30e3)
    s = np.array([2000.0, 2000.0, 2000.0])
    m_eff = 65.0 * f["effective_mass_fraction"]
    for scale in (1.0, 0.6):
        p = hip.fracture_probability_per_impact(s, 65.0, None, math.log(scale), f)
        v_star = scale * 2000.0 / math.sqrt(30e3 * m_eff)
        assert p == pytest.approx(hip.velocity_exceedance(v_star, 2.14, 0.63), rel=1e-12)
    # direction weights: the mean over directions
    s3 = np.array([1800.0, 2000.0, 2600.0])
    each = [hip.fracture_probability_per_impact(np.full(3, x), 65.0, None, 0.0, f) for x in s3]
    assert hip.fracture_probability_per_impact(s3, 65.0, None, 0.0, f) == pytest.approx(np.mean(each), rel=1e-12)
    w = dict(f, fall_direction_weight_lateral=1.0, fall_direction_weight_posterolateral=0.0,
             fall_direction_weight_anterolateral=0.0)
    assert hip.fracture_probability_per_impact(s3, 65.0, None, 0.0, w) == pytest.approx(each[0], rel=1e-12)
    # by direction: each direction's weighted share, the weakest direction the largest
    parts = hip.fracture_probability_per_impact(s3, 65.0, None, 0.0, f, by_direction=True)
    assert parts.shape == (3,) and parts == pytest.approx(np.array(each) / 3.0, rel=1e-12)
    assert parts[0] > parts[1] > parts[2]
    parts_w = hip.fracture_probability_per_impact(s3, 65.0, None, 0.0, w, by_direction=True)
    assert parts_w == pytest.approx([each[0], 0.0, 0.0], rel=1e-12, abs=1e-300)


def test_per_impact_probability_quadrature_and_monotonic():
    """Uniform stiffness: 8-point Gauss-Legendre against a fine trapezoid average."""
    f = hip.fixed_inputs()
    s = np.array([[1500.0, 1500.0, 1500.0]])
    p = float(hip.fracture_probability_per_impact(s, np.array([65.0]), np.array([30.0]), 0.0, f)[0])
    ks = np.linspace(f["pelvis_stiffness_min_n_m"], f["pelvis_stiffness_max_n_m"], 20001)
    ref = np.mean(hip.velocity_exceedance(1500.0 / np.sqrt(ks * 65.0 * 0.35), 2.14, 0.63))
    assert p == pytest.approx(ref, rel=1e-6)
    # weaker bone, a lower strength scale or thinner soft tissue: more fractures
    grid = [float(hip.fracture_probability_per_impact(np.full((1, 3), x), np.array([65.0]), None, 0.0, f)[0])
            for x in (1000.0, 1500.0, 2000.0, 3000.0)]
    assert all(a > b for a, b in zip(grid, grid[1:]))
    assert hip.fracture_probability_per_impact(s, np.array([65.0]), None, -0.3, f)[0] > p
    assert hip.fracture_probability_per_impact(s, np.array([65.0]), np.array([20.0]), 0.0, f)[0] > p
    with pytest.raises(InputError, match="directions"):
        hip.fracture_probability_per_impact(np.ones((2, 2)), 65.0)
    with pytest.raises(InputError, match="> 0 N"):
        hip.fracture_probability_per_impact(np.array([1.0, 0.0, 1.0]), 65.0)


def test_negative_binomial_incidence():
    q = np.array([0.0, 0.01, 0.3])
    # shape k: 1 - (1 + q/k)^-k; Poisson limit for large k; below Poisson for finite k
    assert hip.nb_incidence(q, 1.0) == pytest.approx(1 - 1 / (1 + q), rel=1e-12)
    assert hip.nb_incidence(q, 1e9) == pytest.approx(-np.expm1(-q), rel=1e-6)
    assert np.all(hip.nb_incidence(q[1:], 2.0) < -np.expm1(-q[1:]))
    with pytest.raises(InputError):
        hip.nb_incidence(q, 0.0)


# ------------------------------------------------------------------------------ courses
def _inputs(arm="placebo", strengths=None, ctx=None, n_prev=0, duration=12.0, visits=(0.0, 6.0, 12.0)):
    return {
        "case_id": f"p00000-{arm}", "study": "t", "arm": arm, "patient_index": 0, "duration_months": duration,
        "sex": "female", "age_years": 70.0, "prevalent_vertebral_fractures": n_prev, "body_mass_kg": 65.0,
        "soft_tissue_mm": 30.0, "visit_months": list(visits),
        "strength_n": strengths or {"vertebral": [5000.0, 5000.0, 5000.0], "lateral": [3000.0] * 3,
                                    "posterolateral": [2500.0] * 3, "anterolateral": [2700.0] * 3},
        "ctx": ctx, "strength_model": "linear",
    }


def test_course_log_interpolation_and_notes():
    d = _inputs(strengths={"vertebral": [4000.0, 9000.0, 9000.0], "lateral": [3000.0, 3000.0, 3000.0]},
                ctx={"month": [0.0, 12.0], "ctx_pct": [0.0, -50.0], "at_visits": True})
    c = risk.RiskCourse.from_inputs(d)
    assert list(c.months) == list(range(13))
    # geometric mean half way between the visits (linear in log strength)
    assert c.vertebral_strength_n[3] == pytest.approx(math.sqrt(4000.0 * 9000.0), rel=1e-12)
    assert c.vertebral_strength_n[12] == pytest.approx(9000.0)
    # missing directions: the lateral strength, said so
    assert c.fall_strength_n[:, 1] == pytest.approx(np.full(13, 3000.0), rel=1e-12)
    assert any("posterolateral" in n for n in c.notes)
    assert c.ctx_ratio[6] == pytest.approx(0.75) and any("visits only" in n for n in c.notes)
    none = risk.RiskCourse.from_inputs(dict(_inputs(), prevalent_vertebral_fractures=None))
    assert none.prevalent_vertebral_fractures == 0 and np.all(none.ctx_ratio == 1.0)
    assert list(risk.month_grid(21.5))[-2:] == [21.0, 21.5]


def test_case_inputs_reads_the_strength_model_names():
    record = {"case_id": "p1-a", "study": "s", "arm": "a", "duration_months": 6.0,
              "patient": {"index": 1, "age_years": 70.0, "body_mass_kg": 60.0, "prevalent_vertebral_fractures": 2}}
    visits = [{"month": m, "vertebral_strength_n": 5000.0 + m, "femoral_fall_strength_n": 3000.0,
               "ctx_pct": -10.0 * m, "extra": {"femoral_fall_posterolateral_strength_n": 2500.0}} for m in (0.0, 6.0)]
    d = risk.case_inputs(record, {"visits": visits})
    assert d["strength_n"]["vertebral"] == [5000.0, 5006.0]
    assert d["strength_n"]["posterolateral"] == [2500.0, 2500.0] and "anterolateral" not in d["strength_n"]
    assert d["ctx"]["at_visits"] and d["prevalent_vertebral_fractures"] == 2
    # every strength model writes its strength under <prefix>_strength_n (the pushover peak
    # for "nonlinear"): the same names are read; an unknown model is one clear error
    assert risk.case_inputs(record, {"visits": visits}, "nonlinear")["strength_n"] == d["strength_n"]
    with pytest.raises(InputError, match="strength model 'bogus'"):
        risk.case_inputs(record, {"visits": visits}, "bogus")


def test_surrogate_strengths_from_the_stored_linear_quantities():
    """A linear-model case keeps each strength's linear quantities; the surrogate's
    strengths follow from them by its power law, and a case without them is one clear
    error naming it."""
    from femur.mechanics.surrogate import SurrogateFit

    record = {"case_id": "p1-a", "study": "s", "arm": "a", "duration_months": 6.0,
              "patient": {"index": 1, "age_years": 70.0, "body_mass_kg": 60.0}}
    visits = [{"month": m, "vertebral_strength_n": 5000.0 + m, "vertebral_stiffness_n_per_mm": 20000.0 + m,
               "vertebral_surrogate_0p2pct_load_n": 4000.0, "femoral_fall_strength_n": 3000.0,
               "extra": {"femoral_fall_stiffness_n_per_mm": 1500.0 + 25.0 * m}} for m in (0.0, 6.0)]
    d = risk.case_inputs(record, {"visits": visits})
    assert d["strength_features"]["vertebral"] == {"load": [5000.0, 5006.0], "stiffness": [20000.0, 20006.0],
                                                   "strain_load": [4000.0, 4000.0]}
    assert d["strength_features"]["lateral"] == {"load": [3000.0, 3000.0], "stiffness": [1500.0, 1650.0]}
    fits = {"vertebral": SurrogateFit("vertebral", ("load", "stiffness"), (np.log(2.0), 0.5, 0.25)),
            "femoral_fall": SurrogateFit("femoral_fall", ("stiffness",), (np.log(3.0), 1.0))}
    sur = risk.with_surrogate_strengths(d, fits)
    assert sur["strength_model"] == "surrogate" and d["strength_model"] == "linear"
    assert sur["strength_n"]["vertebral"] == pytest.approx(
        [2.0 * 5000.0 ** 0.5 * 20000.0 ** 0.25, 2.0 * 5006.0 ** 0.5 * 20006.0 ** 0.25], rel=1e-12)
    assert sur["strength_n"]["lateral"] == pytest.approx([4500.0, 4950.0], rel=1e-12)
    with pytest.raises(InputError, match="p1-a.*no fit for femoral_fall"):
        risk.with_surrogate_strengths(d, {"vertebral": fits["vertebral"]})
    old = {k: v for k, v in d.items() if k != "strength_features"}
    with pytest.raises(InputError, match="p1-a.*no stored linear quantities of vertebral"):
        risk.with_surrogate_strengths(old, fits)
    with pytest.raises(InputError, match="from a linear-model case"):
        risk.with_surrogate_strengths(sur, fits)
    # a change part takes month 6 from month 0's level and the stiffness ratio
    changing = {**fits, "femoral_fall": SurrogateFit("femoral_fall", ("stiffness",), (np.log(3.0), 1.0),
                                                     change_features=("stiffness",), change_coef=(0.5,))}
    assert risk.with_surrogate_strengths(d, changing)["strength_n"]["lateral"] == pytest.approx(
        [4500.0, 4500.0 * 1.1 ** 0.5], rel=1e-12)
    with pytest.raises(InputError, match="p1-a.*month-0 visit first"):
        risk.with_surrogate_strengths({**d, "visit_months": [6.0, 12.0]}, fits)
    # other strength models keep no features (their strength is not the linear load)
    assert "strength_features" not in risk.case_inputs(record, {"visits": visits}, "nonlinear")


# ------------------------------------------------------------------------------ spine
def test_turnover_index_smoothing():
    months = np.arange(7.0)
    r = np.array([[1.0, 0.2, 0.2, 0.2, 0.2, 0.2, 0.2]])
    u = spine.turnover_index(r, months, 3.0, 0.05)
    a = 1 - math.exp(-1 / 3)
    expect = [1.0]
    for k in range(1, 7):
        expect.append(expect[-1] + a * (r[0, k] - expect[-1]))
    assert np.exp(u[0]) == pytest.approx(expect, rel=1e-12)
    # floor
    assert spine.turnover_index(np.array([[1.0, 0.0]]), np.arange(2.0), 0.0, 0.05)[0, 1] == pytest.approx(math.log(0.05))


def test_spine_hazard_terms_and_integral():
    values = {**_fixed(), **{k: v[0] for k, v in FITTED_PARAMETERS.items()}}
    values.update(spine_log_h0=math.log(0.02), spine_within_gradient=-6.0, spine_between_gradient=-2.0,
                  spine_turnover_gradient=0.5, spine_prevalent_any=1.0, spine_prevalent_count=1.2)
    flat = risk.RiskCourse.from_inputs(_inputs())
    strong = risk.RiskCourse.from_inputs(_inputs(strengths={"vertebral": [5000.0, 5500.0, 5500.0]},
                                                 ctx={"month": [0.0, 12.0], "ctx_pct": [0.0, 0.0]}))
    two = risk.RiskCourse.from_inputs(_inputs(n_prev=2))
    b = risk.CourseBatch.of([flat, strong, two])
    lh = risk.spine_log_hazard(b, values)
    age = 70.0 + b.months / 12.0
    base = math.log(0.02) + 0.0269 * (age - 70.0)  # reference strength 5000 N, no change
    assert lh[0] == pytest.approx(base, abs=1e-12)
    # within-person: +10 % strength -> hazard x 1.1**-6
    assert lh[1, 12] - lh[0, 12] == pytest.approx(-6.0 * math.log(1.1), rel=1e-12)
    # prevalent: 2 fractures -> exp(1.0) * 2**1.2
    assert lh[2] - lh[0] == pytest.approx(np.full(13, 1.0 + 1.2 * math.log(2)), rel=1e-12)
    # between-person: a baseline 10 % below the reference
    weak = risk.CourseBatch.of([risk.RiskCourse.from_inputs(_inputs(strengths={"vertebral": [4500.0] * 3}))])
    assert risk.spine_log_hazard(weak, values)[0, 0] - lh[0, 0] == pytest.approx(-2.0 * math.log(0.9), rel=1e-12)
    # trapezoid integral: exact for a constant hazard
    inc = risk.spine_incidence(risk.CourseBatch.of([flat]), dict(values, spine_age_per_year=0.0))
    assert inc[0, 12] == pytest.approx(1 - math.exp(-0.02), rel=1e-12)
    assert inc[0, 6] == pytest.approx(1 - math.exp(-0.01), rel=1e-12)


def test_fracture_definition_scales_the_hazard_and_nothing_else():
    """A morphometric count (FIT) multiplies every woman's hazard by exp(a) at every month;
    the semiquantitative count (the default) is the reference. A bootstrap subset keeps it,
    and an unknown definition is refused by name."""
    values = {**_fixed(), **{k: v[0] for k, v in FITTED_PARAMETERS.items()}}
    values.update(spine_log_h0=math.log(0.02), spine_morphometric_ascertainment=-0.47)
    cases = [risk.RiskCourse.from_inputs(_inputs()),
             risk.RiskCourse.from_inputs(_inputs(strengths={"vertebral": [5000.0, 5600.0, 5400.0]}, n_prev=3))]
    sq = risk.CourseBatch.of(cases)
    mq = risk.CourseBatch.of(cases, "morphometric")
    assert sq.fracture_definition == "semiquantitative" == risk.DEFAULT_FRACTURE_DEFINITION
    d = risk.spine_log_hazard(mq, values) - risk.spine_log_hazard(sq, values)
    assert np.allclose(d, -0.47, rtol=0, atol=1e-12)
    assert mq.subset([1, 1]).fracture_definition == "morphometric"
    with pytest.raises(InputError, match="vertebral fracture definition 'radiographic'"):
        risk.CourseBatch.of(cases, "radiographic")


def test_a_parameter_file_without_the_ascertainment_term_is_refused_clearly():
    values = {k: v[0] for k, v in FITTED_PARAMETERS.items() if k != "spine_morphometric_ascertainment"}
    with pytest.raises(InputError, match="spine_morphometric_ascertainment.*earlier version"):
        RiskParameters(values, _fixed(), source="old.json")


def test_hip_incidence_and_per_fall():
    values = {**_fixed(), **{k: v[0] for k, v in FITTED_PARAMETERS.items()}, "hip_log_strength_scale": -0.5}
    b = risk.CourseBatch.of([risk.RiskCourse.from_inputs(_inputs())])
    p = risk.hip_per_impact(b, values)
    assert np.allclose(p, p[0, 0]) and 0 < p[0, 0] < 1
    rate = 0.8 * 0.4 * p[0, 0]
    inc = risk.hip_incidence(b, values)
    assert inc[0, 12] == pytest.approx(1 - 1 / (1 + rate), rel=1e-12)  # shape 1: geometric zero class
    assert risk.hip_fractures_per_fall(b, values) == pytest.approx(0.4 * p[0, 0], rel=1e-12)


# ------------------------------------------------------------------------------ parameters
def test_parameter_draws_follow_the_covariance():
    values = {k: v[0] for k, v in FITTED_PARAMETERS.items()}
    names = ("spine_log_h0", "hip_log_strength_scale")
    cov = np.array([[0.04, 0.01], [0.01, 0.09]])
    p = RiskParameters(values, _fixed(), names, cov, "test", "<test>")
    d = p.draws(20000, 3)
    x = np.array([[v[k] for k in names] for v in d])
    assert x.mean(axis=0) == pytest.approx([values[k] for k in names], abs=0.01)
    assert np.cov(x.T) == pytest.approx(cov, abs=0.004)
    assert d[0]["spine_within_gradient"] == values["spine_within_gradient"]  # not in the covariance: fixed
    assert p.draws(5, 3) == p.draws(5, 3)
    with pytest.raises(InputError, match="covariance shape"):
        RiskParameters(values, _fixed(), names, np.eye(3))
    with pytest.raises(InputError, match="missing"):
        RiskParameters({"spine_log_h0": 0.0}, _fixed())
    with pytest.raises(InputError, match="fracture-risk parameter file"):
        risk.load_parameters("/nonexistent/fracture_risk.json")


# ------------------------------------------------------------------------------ BCT
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
