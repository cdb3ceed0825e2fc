"""Systemic (no FE) driver: DXA-site BMD, markers and drug level over time.

Each DXA site is represented by the elements of the built-in bones that its DXA
projection sees (`femur.remodeling.sites`: the default femur and vertebra at the
patient's DXA-equivalent T-scores, binned by starting density and weighted by their
share of the site's BMC), so this driver and the FE-coupled path
(`femur.simulation.Simulation`) describe the same bones; without the mechanostat they
agree to the binning error (tested). The markers come from every bone element of both
bones, weighted by volume, as in the FE path. Areal BMD % change = mineral-mass % change
of the site's elements (fixed projected area).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

import numpy as np

from femur.errors import InputError
from femur.remodeling.model import RemodelingModel
from femur.remodeling.parameters import DAYS_PER_MONTH, ModelParameters
from femur.remodeling.patient import Patient
from femur.remodeling.sites import MARKER_GROUPS, SITE_BONES, site_set
from femur.treatments.regimen import Regimen, TreatmentSequence, as_sequence

SITE_KEYS = {"lumbar_spine": "ls", "total_hip": "th", "femoral_neck": "fn"}


def site_elements(site: str, patient: Patient, ls_t_score: float | None = None, template=None):
    """(apparent density g/cm3, weight, is_cortical) of the binned elements of a DXA site
    (weight: share of the site's BMC) or of a marker group ("femur", "vertebra": volume)."""
    bone = SITE_BONES.get(site, site)
    t = patient.fn_t_score if (bone == "femur" or ls_t_score is None) else float(ls_t_score)
    s = site_set(site, patient.sex, t, table=template)
    return s.rho, s.weight, s.cortical


@dataclass
class SiteResults:
    """Time courses of a systemic simulation (all % are change from baseline)."""

    treatment: str
    patient: Patient
    months: np.ndarray
    bmd_pct: dict  # site -> array over months
    vbmd_trabecular_pct: dict
    vbmd_cortical_pct: dict
    p1np_pct: np.ndarray
    ctx_pct: np.ndarray
    drug_serum_ug_per_ml: np.ndarray
    daily: dict = field(default_factory=dict)  # fine-resolution traces (t_days, p1np, ctx, ...)

    @property
    def ls_bmd_pct(self):
        return self.bmd_pct["lumbar_spine"]

    @property
    def th_bmd_pct(self):
        return self.bmd_pct["total_hip"]

    @property
    def fn_bmd_pct(self):
        return self.bmd_pct["femoral_neck"]

    def at_month(self, key: str, month: float) -> float:
        """Value of a daily trace (e.g. 'ls_bmd_pct', 'p1np_pct') at a month (interpolated)."""
        t = self.daily["t_days"]
        return float(np.interp(month * DAYS_PER_MONTH, t, self.daily[key]))

    def to_dict(self) -> dict:
        d = {
            "treatment": self.treatment,
            "patient": {
                "sex": self.patient.sex, "age": self.patient.age,
                "years_since_menopause": self.patient.years_since_menopause,
                "body_mass_kg": self.patient.body_mass_kg, "height_m": self.patient.height_m,
                "fn_t_score": self.patient.fn_t_score,
            },
            "months": [float(m) for m in self.months],
            "p1np_pct": self.p1np_pct.tolist(),
            "ctx_pct": self.ctx_pct.tolist(),
            "drug_serum_ug_per_ml": self.drug_serum_ug_per_ml.tolist(),
        }
        for site, key in SITE_KEYS.items():
            if site in self.bmd_pct:
                d[f"{key}_bmd_pct"] = self.bmd_pct[site].tolist()
                d[f"{key}_vbmd_trabecular_pct"] = self.vbmd_trabecular_pct[site].tolist()
                d[f"{key}_vbmd_cortical_pct"] = self.vbmd_cortical_pct[site].tolist()
        return d

    def to_json(self, **kw) -> str:
        return json.dumps(self.to_dict(), **kw)

    def table(self) -> str:
        cols = [("month", self.months)]
        for site, key in SITE_KEYS.items():
            if site in self.bmd_pct:
                cols.append((f"{key.upper()} %", self.bmd_pct[site]))
        cols += [("P1NP %", self.p1np_pct), ("CTX %", self.ctx_pct), ("serum ug/mL", self.drug_serum_ug_per_ml)]
        head = " ".join(f"{n:>11s}" for n, _ in cols)
        rows = [head]
        for i in range(self.months.size):
            rows.append(" ".join(
                f"{v[i]:11.0f}" if n == "month" else (f"{v[i]:11.3g}" if "serum" in n else f"{v[i]:11.2f}")
                for n, v in cols
            ))
        return "\n".join(rows)

    def plot(self, path):
        from femur.remodeling.plots import plot_site_results  # noqa: PLC0415

        return plot_site_results(self, path)


def simulate_sites(
    treatment="romosozumab",
    months: float = 12,
    patient: Patient | None = None,
    sites=("lumbar_spine", "total_hip", "femoral_neck"),
    params: ModelParameters | None = None,
    aging: bool = True,
    step_days: float = 1.0,
    exposure=None,
    ls_t_score: float | None = None,
    template: dict | None = None,
) -> SiteResults:
    """Systemic-only simulation of DXA-site BMD, markers and serum drug level.

    ``treatment``: a drug name, a spec "drug:months,drug:months", a Regimen or a
    TreatmentSequence. A bare drug name runs for ``months``. After the last course
    the patient continues untreated (placebo) until ``months``. ``ls_t_score``: the
    vertebra's DXA-equivalent spine T-score (default: the patient's femoral-neck one, as in
    `femur.simulation.Simulation`). ``template``: a site table other than the stored one
    (`femur.remodeling.sites.table_from_bones`).
    """
    try:
        months = float(months)
    except (TypeError, ValueError):
        raise InputError(f"simulate: months must be a number, got {months!r}") from None
    if not np.isfinite(months) or months <= 0:
        raise InputError(f"simulate: months must be > 0, got {months}")
    if isinstance(treatment, str) and ":" not in treatment:
        seq = as_sequence(Regimen.default(treatment, months))
    else:
        seq = as_sequence(treatment)
    patient = patient or Patient()
    sites = tuple(sites)
    if not sites:
        raise InputError("simulate: give at least one site")
    unknown = [x for x in sites if x not in SITE_KEYS]
    if unknown:
        raise InputError(f"simulate: unknown site {unknown[0]!r}; known: {', '.join(SITE_KEYS)}")
    rhos, ws, vs, cs, tags = [], [], [], [], []
    for i, group in enumerate(sites + MARKER_GROUPS):
        rho, w, c = site_elements(group, patient, ls_t_score, template)
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
    m0 = state.f0 * state.alpha0
    n_steps = int(np.ceil(t_end / step_days - 1e-9))
    dt = t_end / n_steps
    masks = [tag == i for i in range(len(sites))]
    tmasks = [(tag == i) & ~cort for i in range(len(sites))]
    cmasks = [(tag == i) & cort for i in range(len(sites))]

    def mineral_rel(mask, s):
        w = dxa_w[mask]
        return 100.0 * (np.sum(w * s.f[mask] * s.alpha[mask] / m0[mask]) / np.sum(w) - 1.0)

    rec = {k: [] for k in ("t_days", "p1np_pct", "ctx_pct")}
    site_rec = {s: [] for s in sites}
    tr_rec = {s: [] for s in sites}
    co_rec = {s: [] for s in sites}

    def record(s):
        rec["t_days"].append(s.t_day)
        mk = model.markers(s)
        rec["p1np_pct"].append(mk["p1np_pct"])
        rec["ctx_pct"].append(mk["ctx_pct"])
        for i, site in enumerate(sites):
            site_rec[site].append(mineral_rel(masks[i], s))
            tr_rec[site].append(mineral_rel(tmasks[i], s) if tmasks[i].any() else 0.0)
            co_rec[site].append(mineral_rel(cmasks[i], s) if cmasks[i].any() else 0.0)

    record(state)
    s = state.copy()
    for i in range(n_steps):
        s.t_day = i * dt
        model.step(s, dt)
        s.t_day = (i + 1) * dt
        record(s)
    daily = {k: np.asarray(v) for k, v in rec.items()}
    for site in sites:
        key = SITE_KEYS.get(site, site)
        daily[f"{key}_bmd_pct"] = np.asarray(site_rec[site])
    daily["serum_ug_per_ml"] = model.serum_ug_ml(daily["t_days"])
    month_grid = np.arange(0, int(np.floor(months + 1e-9)) + 1, dtype=float)
    if month_grid[-1] < months - 1e-9:
        month_grid = np.append(month_grid, months)
    tm = month_grid * DAYS_PER_MONTH

    def sample(y):
        return np.interp(tm, daily["t_days"], np.asarray(y))

    return SiteResults(
        treatment=seq.label() if isinstance(seq, TreatmentSequence) else str(treatment),
        patient=patient,
        months=month_grid,
        bmd_pct={site: sample(site_rec[site]) for site in sites},
        vbmd_trabecular_pct={site: sample(tr_rec[site]) for site in sites},
        vbmd_cortical_pct={site: sample(co_rec[site]) for site in sites},
        p1np_pct=sample(daily["p1np_pct"]),
        ctx_pct=sample(daily["ctx_pct"]),
        drug_serum_ug_per_ml=sample(daily["serum_ug_per_ml"]),
        daily=daily,
    )
