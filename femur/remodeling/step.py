"""The time step of the bone-cell + density model (``femur.remodeling.model``, whose
docstring holds the equations): one linearly implicit (Patankar-type) step per call,
vectorised over elements.

Split out of the model class for speed (issue 15: the cell model under 10 % of a trial
case). What does not change from step to step is computed once:

* :class:`StepPlan`, per element, once per set of compartment tags: the coefficients that
  make one formula serve cortical and trabecular elements alike (no ``np.where`` in the
  step), the turnover's cortical-surface term, the focal-balance deficit ratio;
* :func:`step_scalars`, per advance, for all its steps at once: the mean drug exposures,
  the ageing drivers and the sclerostin age factor (``Exposure.mean`` on arrays of step
  bounds: the same numbers as step by step);
* work of absent pathways is skipped where the skip is exact (no teriparatide, denosumab,
  romosozumab or mechanical stimulus: their factors are exactly 1; no alendronate in the
  advance and an empty bisphosphonate reservoir: it stays empty);
* fewer array operations: about 120 element-wise operations and two powers per step
  (``np.power``: on this machine's numpy 2.5 about 7x faster than ``exp(a log x)``);
  divisions by scalars are multiplications by their reciprocal, and the canal stages'
  rates are computed once per step length (:func:`canal_rates`).

Advancing the elements in cache-sized blocks was tried and was slower (numpy's cost per
element grows on small arrays); the step is bound by its ~120 passes over the arrays.

The arithmetic is the model's, reordered (scalar factors multiplied together before they
meet an array): results agree with the plain transcription of the equations to round-off
(tests/test_remodeling_step.py: 1e-9 relative over a year of every drug).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from femur.core.units import DAYS_PER_YEAR
from femur.remodeling.wnt import wnt_activation, wnt_inhibition


@dataclass(frozen=True)
class StepPlan:
    """Per-element coefficients of the step that depend only on the compartment tags."""

    comp: np.ndarray | None  # the tags the plan was built for (a copy; None: no tags)
    n: int  # number of elements
    any_cortical: bool
    sv_scale: float | np.ndarray  # BFR/BS x the trabecular S_v factor (1 on cortex)
    k_cortical: float | np.ndarray  # BFR/BS x cortical surface per bone volume (0 trabecular)
    deficit: float | np.ndarray  # focal-balance deficit ratio (1 trabecular)
    cort: np.ndarray | None  # 1.0 cortical, 0.0 trabecular
    w_b: float | np.ndarray  # remodelling-osteoblast weight in F (1 trabecular, e cortical)
    w_m: float | np.ndarray  # modelling-osteoblast weight in F outside the canals
    w_v: float | np.ndarray  # canal weight (0 trabecular, 1 - e cortical)
    clip_f: bool  # S_v needs f clipped to [0, 1] (only if f_min/f_max lie outside)
    clamp_sv: bool  # S_v needs clamping at 0 (only if the polynomial has a root in range)
    #: per step length dt: the canal stages' rate and reciprocal (see :func:`canal_rates`)
    canal: dict = field(default_factory=dict, compare=False, repr=False)

    def matches(self, comp, n: int) -> bool:
        """Whether the plan was built for these tags."""
        if comp is None or self.comp is None:
            return comp is None and self.comp is None and self.n == n
        return self.n == n and np.array_equal(self.comp, comp)


def build_plan(model, comp, n: int) -> StepPlan:
    """The :class:`StepPlan` of ``model`` (a ``RemodelingModel``) for tags ``comp``."""
    c, tis = model.params.cells, model.params.tissue
    bfr = tis.bfr_bs_mm_per_day
    g = float(getattr(model.patient, "trabecular_sv_factor", 1.0))
    lo, hi = tis.f_min, tis.f_max
    poly = np.asarray(tis.sv_coefficients, float)[::-1]  # highest power first
    roots = np.roots(poly) if np.any(poly[:-1]) else np.array([])
    real = roots[np.abs(roots.imag) < 1e-12].real
    clamp = bool(np.any((real >= lo) & (real <= hi)) or np.polyval(poly, lo) < 0)
    clip = not (0.0 <= lo and hi <= 1.0)
    comp_c = None if comp is None else np.asarray(comp).ravel().copy()
    if comp_c is None or not np.any(comp_c == 1):
        return StepPlan(comp_c, n, False, bfr * g, 0.0, 1.0, None, 1.0, 1.0, 0.0, clip, clamp)
    cort = (comp_c == 1).astype(float)
    trab = 1.0 - cort
    e = c.endocortical_share
    w_m_cort = e * c.modelling_ratio_endocortical + c.periosteal_share * c.modelling_ratio_periosteal
    return StepPlan(
        comp_c, n, True,
        bfr * g if g == 1.0 else bfr * (cort + g * trab),
        (bfr * c.cortical_surface_per_mm) * cort,
        cort * c.cortical_deficit_ratio + trab,
        cort,
        cort * e + trab,
        cort * w_m_cort + trab,
        cort * (1.0 - e),
        clip, clamp,
    )


def step_scalars(model, t0s: np.ndarray, dt: float) -> dict:
    """Per-step scalars for steps [t0s[i], t0s[i] + dt]: mean exposures, drivers, the
    sclerostin age factor (arrays over the steps)."""
    c = model.params.cells
    ex = model.exposure.mean(t0s, t0s + dt)
    mid = t0s + 0.5 * dt
    d_rel, delta = model.patient.drivers(mid, c, model.aging)
    out = {k: np.broadcast_to(np.asarray(v, float), t0s.shape) for k, v in ex.items()}
    out["d_rel"] = np.broadcast_to(np.asarray(d_rel, float), t0s.shape)
    out["delta"] = np.broadcast_to(np.asarray(delta, float), t0s.shape)
    if model.aging:
        rate = c.sost_age_rise_female_per_year if model.patient.is_female else c.sost_age_rise_male_per_year
        out["age"] = np.exp(rate * mid / DAYS_PER_YEAR)
    else:
        out["age"] = np.ones_like(t0s)
    return out


def canal_rates(plan: StepPlan, dt: float, refill_days: float) -> tuple:
    """(h_v, 1 / (1 + h_v)) of the canal stages for a step of ``dt`` days: h_v = dt / (T/2)
    on cortical elements, 0 on trabecular ones (cached on the plan per step length)."""
    key = (float(dt), float(refill_days))
    out = plan.canal.get(key)
    if out is None:
        hv = (dt / (0.5 * refill_days)) * plan.cort
        out = plan.canal[key] = (hv, 1.0 / (1.0 + hv))
    return out


def turnover(plan: StepPlan, f, coefficients) -> np.ndarray:
    """Turnover per tissue volume k_e (1/day) of the plan's elements at BV/TV ``f``
    (``RemodelingModel.turnover_per_day``)."""
    x = np.clip(f, 0.0, 1.0) if plan.clip_f else f
    sv = coefficients[-1] * x
    for a in coefficients[-2:0:-1]:  # Horner
        sv = (sv + a) * x
    if coefficients[0] != 0.0:
        sv = sv + coefficients[0]
    if plan.clamp_sv:
        sv = np.maximum(sv, 0.0)
    k = plan.sv_scale * sv
    return k + plan.k_cortical * f if plan.any_cortical else k


def step(model, s, dt: float, mech, plan: StepPlan, sc: dict, i: int, skip_bp: bool) -> None:
    """Advance state ``s`` (in place) by one step of ``dt`` days; ``sc``: the
    :func:`step_scalars` of the advance, ``i`` this step's index in them; ``skip_bp``: the
    bisphosphonate reservoir is empty and stays so."""
    c, tis = model.params.cells, model.params.tissue
    mp, mm = mech
    has_mech = not (np.isscalar(mp) and mp == 0.0 and np.isscalar(mm) and mm == 0.0)
    e_pth = float(sc["pth"][i])
    age = float(sc["age"][i])
    # Wnt inhibitors made by the osteocytes (femur.remodeling.wnt: sclerostin_step and
    # dkk1_step, with the age factor folded into their scalar coefficients); production Y^sigma
    sig = c.osteocyte_sost_exponent
    prod = s.Y if sig == 1.0 else (np.ones_like(s.Y) if sig == 0.0 else np.power(s.Y, sig))
    romo = float(sc["romo_site_ug_ml"][i])
    phi = 1.0 / (1.0 + romo / c.romo_k_ug_ml)
    k_out, k_b = c.sost_clearance_per_day, c.sost_bound_clearance_per_day
    inv = 1.0 / (1.0 + dt * (k_out * phi + k_b * (1.0 - phi)))  # scalars: multiply, not divide
    total = s.sost_total * inv + prod * (dt * k_out * age * inv)
    free = phi * total
    s.sost_total, s.sost_free = total, free
    chi, gw = c.dkk1_share, c.wnt_diff_gain
    wnt = wnt_activation(wnt_inhibition(free, s.dkk1, chi), gw)
    wp = np.maximum(wnt, 0.0)
    h = dt / c.dkk1_days
    if c.dkk1_induction == 0.0:
        s.dkk1 = s.dkk1 * (1.0 / (1.0 + h)) + prod * (h * age / (1.0 + h))
    else:
        s.dkk1 = (s.dkk1 + (h * age) * prod * (1.0 + c.dkk1_induction * wp)) / (1.0 + h)
    # RANKL signalling: scalar factors first
    r_scale = float(sc["d_rel"][i]) * (1.0 + c.pth_rankl_gain * e_pth) / (1.0 + float(sc["dmab_ng_ml"][i]) / c.dmab_k_ng_ml)
    g_r = c.sost_rankl_exponent
    r = r_scale * (free if g_r == 1.0 else np.power(free, g_r))
    if has_mech:
        r = r * (1.0 + mm)
    msc = 1.0 + c.wnt_msc_gain * wnt
    eta_w = 1.0 / (1.0 + c.wnt_survival_gain * wnt)
    mat = 1.0 + c.wnt_matrix_gain * wnt
    ce = c.coupling_exponent
    src = (s.C if ce == 1.0 else np.power(s.C, ce)) * msc
    if has_mech:
        src = src * (1.0 + mp) / (1.0 + mm)
    d_pth = 1.0 + c.pth_ob_potency * e_pth
    gd = c.wnt_differentiation_gain
    diff = 1.0 + (wnt if gd == 1.0 else gd * wnt)
    if d_pth != 1.0:
        diff = d_pth * diff
    # remodelling osteoblast lineage
    hp = dt / c.tau_p_days
    s.P = (s.P + hp * src) / (1.0 + hp * diff)
    hb = dt / c.tau_b_days
    s.B = (s.B + (hb * diff) * s.P) / (1.0 + (hb / d_pth) * eta_w)
    # lining cells -> modelling osteoblasts
    hq = dt / c.tau_q_days
    s.Q = (s.Q + hq * msc) / ((1.0 + hq) + hq * wp)
    s.M = (s.M + ((hb * c.modelling_gain) * wp) * s.Q) / (1.0 + hb * eta_w)
    # osteoclast lineage
    hcp = dt / c.tau_cp_days
    cpf = c.cp_diff_fraction
    s.Cp = (s.Cp + hcp) / ((1.0 + hcp * (1.0 - cpf)) + (hcp * cpf) * r)
    hc = dt / c.tau_c_days
    if skip_bp:
        s.C = (s.C + (hc * r) * s.Cp) * (1.0 / (1.0 + hc))
    else:
        s.C = (s.C + (hc * r) * s.Cp) / ((1.0 + hc) + (hc * c.bp_potency) * s.A)
        s.A = (s.A + (dt * float(sc["aln_bone_mg_per_day"][i])) * s.C) / (1.0 + (dt / c.bp_release_days) * s.C)
    # fluxes, density
    R = s.C
    dtk = dt * turnover(plan, s.f, tis.sv_coefficients)
    delta = float(sc["delta"][i])
    keep = 1.0 - delta * plan.deficit
    b_keep = s.B * keep
    if not plan.any_cortical:
        F = mat * (b_keep + s.M)
    else:
        # canal cavities: resorbed -> reversal -> refilled (two stages of T/2 each)
        hv, inv_hv1 = canal_rates(plan, dt, c.cortical_refill_days)  # hv 0 on trabecular elements
        s.V1 = (s.V1 + hv * R) * inv_hv1
        s.V2 = (s.V2 + hv * s.V1) * inv_hv1
        r_ic = c.modelling_ratio_intracortical
        f_ic = mat * (s.V2 * keep + (s.M if r_ic == 1.0 else r_ic * s.M))
        F = mat * (plan.w_b * b_keep + plan.w_m * s.M) + plan.w_v * f_ic
        s.pore = s.pore - (plan.w_v * dtk) * (f_ic - R)
    formed = dtk * F
    resorbed = dtk * R
    f_new = np.clip(s.f + (formed - resorbed), tis.f_min, tis.f_max)
    s.Y = (s.Y + formed / s.f0) / (1.0 + resorbed / s.f)
    s.alpha, s.O = model.mineral_step(s.f, f_new, s.alpha, s.O, formed, resorbed, dt)
    s.f = f_new
    s.formation = F
    s.resorption = R

