"""Systemic (no FE) driver: DXA-site BMD, markers and drug level over time.

Each DXA site is represented by the elements of the built-in bones that its DXA
projection sees (`femur.workflows.site_template`: the default femur and vertebra at the
patient's DXA-equivalent T-scores, binned by starting density and weighted by their
share of the site's BMC), so this driver and the FE-coupled path
(`femur.workflows.simulation.Simulation`) describe the same bones; without the mechanostat they
agree to the binning error (tested). The markers come from every bone element of both
bones, weighted by volume, as in the FE path. Areal BMD % change = mineral-mass % change
of the site's elements (fixed projected area). The compartment courses
(``femur.outcomes.compartments``) use the same site elements: a bin's weight is its
baseline apparent density times its volume inside the ROI's prism, so its volume is the
weight over the density. The result is a
:class:`femur.workflows.timecourse.TimeCourse` (driver "systemic").
"""

from __future__ import annotations

import numpy as np

from femur.core.errors import InputError
from femur.core.units import DAYS_PER_MONTH
from femur.outcomes.compartments import BASELINE_KEYS, COMPARTMENT_KEYS, changes_from_sums, roi_sums
from femur.remodeling.model import RemodelingModel
from femur.remodeling.parameters import ModelParameters
from femur.remodeling.patient import Patient
from femur.remodeling.switching import switch_compartments, switching_parameters
from femur.treatments.regimen import as_sequence, parse_treatment
from femur.workflows.site_template import MARKER_GROUPS, SITE_BONES, site_set
from femur.workflows.timecourse import SITE_KEY_OF, TimeCourse

#: the systemic driver's DXA sites, in order, with their result keys
SITES = tuple(SITE_KEY_OF)


def site_elements(site: str, patient: Patient, template=None):
    """(apparent density g/cm3, weight, is_cortical) of the binned elements of a DXA site
    (weight: share of the site's BMC) or of a marker group ("femur", "vertebra": volume),
    at the patient's femoral-neck (femur) or spine (vertebra) T-score."""
    bone = SITE_BONES.get(site, site)
    t = patient.fn_t_score if bone == "femur" else patient.ls_t_score
    s = site_set(site, patient.sex, t, table=template)
    return s.rho, s.weight, s.cortical


def simulate_sites(
    treatment="romosozumab",
    months: float = 12,
    patient: Patient | None = None,
    sites=SITES,
    params: ModelParameters | None = None,
    aging: bool = True,
    step_days: float = 1.0,
    exposure=None,
    template: dict | None = None,
    switching=None,
) -> TimeCourse:
    """Systemic-only simulation of DXA-site BMD, markers and serum drug level.

    ``treatment``: a drug name, a spec "drug:months,drug:months", a Regimen or a
    TreatmentSequence (a bare drug name: ``femur.treatments.parse_treatment``, i.e. the
    whole simulation unless the label fixes the course). After the last course the patient
    continues untreated (placebo) until ``months``. The vertebra is at the patient's
    ``ls_t_score`` (default: the femoral-neck one, as in the FE-coupled simulation).
    ``template``: a site table other than the stored one
    (`femur.calibration.site_template.table_from_bones`). ``switching``: compartment
    switching (``femur.remodeling.switching``; None: its defaults, True/False, or a
    ``SwitchingParameters``), checked after every step; the density bins have no
    neighbours, so only trabecularisation (and its reversal) can happen here. The
    compartment courses follow the current tags.
    """
    try:
        months = float(months)
    except (TypeError, ValueError):
        raise InputError(f"simulate: months must be a number, got {months!r}") from None
    if not np.isfinite(months) or months <= 0:
        raise InputError(f"simulate: months must be > 0, got {months}")
    seq = parse_treatment(treatment, months) if isinstance(treatment, str) else as_sequence(treatment)
    patient = patient or Patient()
    sites = tuple(sites)
    if not sites:
        raise InputError("simulate: give at least one site")
    unknown = [x for x in sites if x not in SITE_KEY_OF]
    if unknown:
        raise InputError(f"simulate: unknown site {unknown[0]!r}; known: {', '.join(SITE_KEY_OF)}")
    rhos, ws, vs, cs, tags = [], [], [], [], []
    for i, group in enumerate(sites + MARKER_GROUPS):
        rho, w, c = site_elements(group, patient, template)
        is_site = i < len(sites)
        rhos.append(rho)
        ws.append(w if is_site else np.zeros_like(w))   # DXA (BMC-share) weight
        vs.append(np.zeros_like(w) if is_site else w)   # volume: marker aggregates only
        cs.append(c)
        tags.append(np.full(rho.size, i if is_site else -1))
    rho0, dxa_w, vol, cort, tag = map(np.concatenate, (rhos, ws, vs, cs, tags))
    t_end = months * DAYS_PER_MONTH
    model = RemodelingModel(seq, patient, params, aging=aging, max_step_days=step_days,
                            horizon_days=t_end + 1.0, exposure=exposure)
    state = model.initial_state(density_g_cm3=rho0, volume=vol, compartment=cort.astype(int))
    sw = switching_parameters(switching)
    m0 = state.f0 * state.alpha0
    n_steps = int(np.ceil(t_end / step_days - 1e-9))
    dt = t_end / n_steps
    masks = [tag == i for i in range(len(sites))]
    tmasks = [(tag == i) & ~cort for i in range(len(sites))]
    cmasks = [(tag == i) & cort for i in range(len(sites))]

    def mineral_rel(mask, s):
        w = dxa_w[mask]
        return 100.0 * (np.sum(w * s.f[mask] * s.alpha[mask] / m0[mask]) / np.sum(w) - 1.0)

    # compartment courses: the site elements' BV/TV and mineral at every step
    site_el = tag >= 0
    snap_f, snap_alpha, snap_pore, snap_cort = [], [], [], []
    switched = {"to_trabecular": np.zeros(tag.size, bool), "to_cortical": np.zeros(tag.size, bool)}

    rec = {k: [] for k in ("t_days", "p1np_pct", "ctx_pct", "serum_sclerostin_total_pct",
                           "serum_sclerostin_free_pct")}
    site_rec = {s: [] for s in sites}
    tr_rec = {s: [] for s in sites}
    co_rec = {s: [] for s in sites}

    def record(s):
        rec["t_days"].append(s.t_day)
        mk = model.markers(s)
        rec["p1np_pct"].append(mk["p1np_pct"])
        rec["ctx_pct"].append(mk["ctx_pct"])
        for k, v in model.serum_sclerostin(s).items():
            rec[k].append(v)
        for i, site in enumerate(sites):
            site_rec[site].append(mineral_rel(masks[i], s))
            tr_rec[site].append(mineral_rel(tmasks[i], s) if tmasks[i].any() else 0.0)
            co_rec[site].append(mineral_rel(cmasks[i], s) if cmasks[i].any() else 0.0)
        snap_f.append(s.f[site_el].copy())
        snap_alpha.append(s.alpha[site_el].copy())
        snap_pore.append(s.pore[site_el].copy())
        snap_cort.append(s.compartment[site_el] == 1)

    record(state)
    s = state.copy()
    for i in range(n_steps):
        s.t_day = i * dt
        model.step(s, dt)
        s.t_day = (i + 1) * dt
        to_trab, to_cort = switch_compartments(s, sw, cort)
        switched["to_trabecular"] |= to_trab
        switched["to_cortical"] |= to_cort
        record(s)
    daily = {k: np.asarray(v) for k, v in rec.items()}
    for site in sites:
        daily[f"{SITE_KEY_OF[site]}_bmd_pct"] = np.asarray(site_rec[site])
    daily["serum_ug_per_ml"] = model.serum_ug_ml(daily["t_days"])
    month_grid = np.arange(0, int(np.floor(months + 1e-9)) + 1, dtype=float)
    if month_grid[-1] < months - 1e-9:
        month_grid = np.append(month_grid, months)
    tm = month_grid * DAYS_PER_MONTH

    def sample(y):
        return np.interp(tm, daily["t_days"], np.asarray(y))

    compartments, compartment_baseline = _compartment_courses(
        tm, daily["t_days"], np.asarray(snap_f), np.asarray(snap_alpha), np.asarray(snap_pore), state.f0[site_el],
        state.alpha0[site_el], rho0[site_el], dxa_w[site_el], np.asarray(snap_cort), cort[site_el],
        {SITE_KEY_OF[site]: tag[site_el] == i for i, site in enumerate(sites)})
    switches = _switch_summary(switched, s.compartment == 1, cort, tag, dxa_w, sites) if sw.enabled else None
    vbmd = {}
    for site in sites:
        key = SITE_KEY_OF[site]
        vbmd[f"{key}_vbmd_trabecular_pct"] = sample(tr_rec[site])
        vbmd[f"{key}_vbmd_cortical_pct"] = sample(co_rec[site])
    return TimeCourse(
        driver="systemic",
        treatment=seq.label(),
        regimen=seq.describe(t_end),
        patient=patient.to_dict(),
        months=month_grid,
        bmd_pct={SITE_KEY_OF[site]: sample(site_rec[site]) for site in sites},
        vbmd=vbmd,
        p1np_pct=sample(daily["p1np_pct"]),
        ctx_pct=sample(daily["ctx_pct"]),
        drug_serum_ug_per_ml=sample(daily["serum_ug_per_ml"]),
        compartments=compartments,
        compartment_baseline=compartment_baseline,
        sclerostin_pct={k: sample(daily[k]) for k in ("serum_sclerostin_total_pct",
                                                      "serum_sclerostin_free_pct")},
        daily=daily,
        run={"step_days": float(step_days),
             **({"compartment_switches": switches} if switches is not None else {})},
    )


def _switch_summary(switched, cort_now, cort0, tag, weight, sites) -> dict:
    """Elements (density bins) that switched compartment during the run, per DXA site:
    counts and their share of the site's baseline BMC (weight), ever switched and switched
    at the end."""
    out = {}
    for i, site in enumerate(sites):
        m = tag == i
        w = weight[m].sum()
        rec = {}
        for key, ever, now in (("to_trabecular", switched["to_trabecular"], cort0 & ~cort_now),
                               ("to_cortical", switched["to_cortical"], ~cort0 & cort_now)):
            rec[key] = {"ever": int(np.count_nonzero(ever & m)), "now": int(np.count_nonzero(now & m)),
                        "bmc_share_now": float(weight[now & m].sum() / w) if w > 0 else 0.0}
        out[SITE_KEY_OF[site]] = rec
    return out


def _compartment_courses(tm, t_days, f_hist, alpha_hist, pore_hist, f0, alpha0, rho0, weight, cort_hist,
                         cortical0, site_masks):
    """Compartment courses (``femur.outcomes.compartments``) at the times ``tm`` from the
    site elements' BV/TV, mineral and intracortical-porosity histories (rows: the steps at
    ``t_days``, linearly interpolated between them; the compartment tags of the nearer
    step), and their baseline values (baseline tags ``cortical0``)."""
    volume = weight / rho0  # volume inside the ROI prism
    idx = np.clip(np.searchsorted(t_days, tm, side="right") - 1, 0, len(t_days) - 2)
    a = np.clip((tm - t_days[idx]) / (t_days[idx + 1] - t_days[idx]), 0.0, 1.0)[:, None]
    f_at = (1 - a) * f_hist[idx] + a * f_hist[idx + 1]
    al_at = (1 - a) * alpha_hist[idx] + a * alpha_hist[idx + 1]
    po_at = (1 - a) * pore_hist[idx] + a * pore_hist[idx + 1]
    c_at = np.where(a >= 0.5, cort_hist[idx + 1], cort_hist[idx])
    courses, baseline = {}, {}
    for j in range(len(tm)):
        ratio = f_at[j] * al_at[j] / (f0 * alpha0)
        sums = {key: roi_sums(volume * m, rho0, c_at[j], ratio, f_at[j], f0, pore=po_at[j], alpha=al_at[j],
                              alpha0=alpha0, cortical0=cortical0)
                for key, m in site_masks.items()}
        vals = changes_from_sums(sums)
        for k in COMPARTMENT_KEYS:
            if k in vals:
                courses.setdefault(k, []).append(vals[k])
        if j == 0:
            baseline = {k: vals[k] for k in BASELINE_KEYS if k in vals}
    return {k: np.asarray(v) for k, v in courses.items()}, baseline


__all__ = ["SITES", "simulate_sites", "site_elements"]
