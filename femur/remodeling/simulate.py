"""Systemic (no FE) driver: DXA-site BMD, markers and drug level over time.

Each DXA site is represented by a fixed set of elements whose bone volume
fractions follow the site's composition (below). The compositions are stated
ASSUMPTIONS from typical elderly-female anatomy; they were written down before
calibration and are the same for every drug and scenario (no per-site or
per-drug factor). Areal BMD % change = mineral-mass % change of the site's
elements (fixed projected area).

Compartment entries: (name, relative tissue volume, BV/TV low, BV/TV high). BV/TV
is spread uniformly between low and high (16 elements per compartment).

* lumbar spine (L1-L4, PA DXA): vertebral-body cancellous bone BV/TV 0.06-0.14
  (elderly osteoporotic vertebral BV/TV ~0.08-0.12, UNCONFIRMED), posterior-element
  cancellous bone 0.20-0.35, cortical shells/endplates/posterior cortex 0.40-0.80
  (0.3-0.5 mm shells seen by ~1 mm elements: partial volume); volumes 0.55 / 0.25 / 0.20.
  NOTE: first written with vertebral cancellous 0.07-0.15 and shell 0.60-0.85; revised
  once after the first uncalibrated run (emergent LS/TH ratio 1.35 -> 1.5) on the
  partial-volume argument; not changed during or after the fit.
* total hip: cancellous 0.10-0.22, cortex 0.78-0.94 (porosity 6-22 %); volumes 0.62 / 0.23.
* femoral neck: cancellous 0.10-0.20, cortex 0.80-0.95; volumes 0.55 / 0.30.

T-score scaling (ASSUMPTION): cancellous BV/TV x (1 + 0.1 (T + 2.5)), cortical
porosity x (1 - 0.1 (T + 2.5)), T = the patient's femoral-neck T-score.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

import numpy as np

from femur.errors import InputError
from femur.remodeling.model import RemodelingModel
from femur.remodeling.parameters import DAYS_PER_MONTH, ModelParameters
from femur.remodeling.patient import Patient
from femur.treatments.regimen import Regimen, TreatmentSequence, as_sequence

SITE_COMPOSITIONS = {
    "lumbar_spine": [
        ("vertebral_body_cancellous", 0.55, 0.06, 0.14),
        ("posterior_cancellous", 0.25, 0.20, 0.35),
        ("cortical_shell", 0.20, 0.40, 0.80),
    ],
    "total_hip": [
        ("cancellous", 0.62, 0.10, 0.22),
        ("cortex", 0.23, 0.78, 0.94),
    ],
    "femoral_neck": [
        ("cancellous", 0.55, 0.10, 0.20),
        ("cortex", 0.30, 0.80, 0.95),
    ],
}
SITE_KEYS = {"lumbar_spine": "ls", "total_hip": "th", "femoral_neck": "fn"}
ELEMENTS_PER_COMPARTMENT = 16


def site_elements(site: str, patient: Patient):
    """(f, volume, is_cortical) arrays of the representative elements of a DXA site."""
    if site not in SITE_COMPOSITIONS:
        raise InputError(f"simulate: unknown site {site!r}; known: {', '.join(SITE_COMPOSITIONS)}")
    scale = 1.0 + 0.1 * (patient.fn_t_score + 2.5)
    fs, vs, cort = [], [], []
    n = ELEMENTS_PER_COMPARTMENT
    for name, vol, lo, hi in SITE_COMPOSITIONS[site]:
        q = (np.arange(n) + 0.5) / n
        f = lo + (hi - lo) * q
        is_cort = lo >= 0.5
        if is_cort:
            f = 1.0 - (1.0 - f) * max(1.0 - 0.1 * (patient.fn_t_score + 2.5), 0.2)
        else:
            f = f * scale
        fs.append(np.clip(f, 0.02, 0.98))
        vs.append(np.full(n, vol / n))
        cort.append(np.full(n, is_cort))
    return np.concatenate(fs), np.concatenate(vs), np.concatenate(cort)


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
) -> SiteResults:
    """Systemic-only simulation of DXA-site BMD, markers and serum drug level.

    ``treatment``: a drug name, a spec "drug:months,drug:months", a Regimen or a
    TreatmentSequence. A bare drug name runs for ``months``. After the last course
    the patient continues untreated (placebo) until ``months``.
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
    fs, vs, cs, tags = [], [], [], []
    for i, site in enumerate(sites):
        f, v, c = site_elements(site, patient)
        fs.append(f)
        vs.append(v)
        cs.append(c)
        tags.append(np.full(f.size, i))
    f0, vol, cort, tag = map(np.concatenate, (fs, vs, cs, tags))
    t_end = months * DAYS_PER_MONTH
    model = RemodelingModel(seq, patient, params, aging=aging, max_step_days=step_days,
                            horizon_days=t_end + 1.0, exposure=exposure)
    state = model.initial_state(f0=f0, volume=vol, compartment=cort.astype(int))
    n_steps = int(np.ceil(t_end / step_days - 1e-9))
    dt = t_end / n_steps
    masks = [tag == i for i in range(len(sites))]
    tmasks = [(tag == i) & ~cort for i in range(len(sites))]
    cmasks = [(tag == i) & cort for i in range(len(sites))]

    def mineral_rel(mask, s):
        return 100.0 * (np.sum(vol[mask] * s.f[mask] * s.alpha[mask]) /
                        np.sum(vol[mask] * s.f0[mask] * s.alpha0[mask]) - 1.0)

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
