"""Pharmacokinetics of the drugs, vectorised in time.

Each drug's model and source:

* romosozumab: two-compartment SC, first-order absorption, linear + parallel
  Michaelis-Menten elimination (Eudy 2015, remodeling.md 2.1), MM Vmax refitted
  to the US label (calibration target #5), see pk_parameters.RomosozumabPK.
* denosumab: one-compartment SC, first-order absorption, linear + MM clearance
  (Martínez-Reina & Pivonka 2019 code, remodeling.md 2.2), per kg body mass.
* alendronate: oral; absorbed fraction to bone given as an uptake *input*; the
  bone reservoir itself is per element in the cell model (uptake and release
  by resorption). Plasma level only reported (one-compartment, t1/2 ~2 h).
* teriparatide: SC pulse (Martonova 2023 ka/ke/V/F); the cell model uses the
  daily-averaged exposure normalised to 20 ug/day (stated approximation).
* placebo: nothing.

The nonlinear ODEs are integrated with scipy's LSODA (stiff-safe) between
doses. Everything is stored on a regular grid together with cumulative
integrals, so the cell model can ask for the exact mean exposure over any step.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import numpy as np
from scipy.integrate import solve_ivp

from femur.core.errors import InputError, SolverError

from femur.treatments.pk_parameters import (
    AlendronatePK,
    DenosumabPK,
    PKParameters,
    RomosozumabPK,
    TeriparatidePK,
)
from femur.treatments.regimen import TreatmentSequence, as_sequence

GRID_DAYS = 0.25


def _piecewise_ode(rhs, n, dose_times, dose_vectors, t_grid, rtol=1e-7, atol=1e-9):
    """Integrate y' = rhs(t, y) on t_grid (LSODA) with bolus doses added at dose_times."""
    t_grid = np.asarray(t_grid, float)
    dose_times = np.asarray(dose_times, float)
    out = np.zeros((n, t_grid.size))
    y = np.zeros(n)
    t_lo, t_hi = t_grid[0], t_grid[-1]
    for tdose, dv in zip(dose_times, dose_vectors):
        if tdose <= t_lo:
            y = y + dv
    inner = np.unique(dose_times[(dose_times > t_lo) & (dose_times < t_hi)])
    bounds = np.concatenate([[t_lo], inner, [t_hi]])
    for j, (a, b) in enumerate(zip(bounds[:-1], bounds[1:])):
        last = j == len(bounds) - 2
        mask = (t_grid >= a) & ((t_grid <= b) if last else (t_grid < b))
        if np.any(y != 0.0):
            te = np.unique(np.concatenate([t_grid[mask], [b]]))
            sol = solve_ivp(rhs, (a, b), y, method="LSODA", t_eval=te, rtol=rtol, atol=atol)
            if not sol.success:  # pragma: no cover - LSODA is robust here
                raise SolverError(f"PK integration failed: {sol.message}")
            out[:, mask] = sol.y[:, : mask.sum()]
            y = sol.y[:, -1].copy()
        if not last:
            for tdose, dv in zip(dose_times, dose_vectors):
                if tdose == b:
                    y = y + dv
    return out


def romosozumab_concentration_ug_ml(dose_times, dose_mg, t_grid, pk: RomosozumabPK | None = None):
    """Serum romosozumab (ug/mL) on t_grid (days) for SC doses (mg) at dose_times."""
    pk = pk or RomosozumabPK()
    if len(dose_times) == 0:
        return np.zeros_like(t_grid, dtype=float)
    nmol_per_mg = 1.0 / (pk.mw_kda * 1e-3)  # 1 mg / (149 kg/mol ... ) = 6.711 nmol

    def rhs(t, y):
        depot, ac, ap = y
        c = ac / pk.vc_l  # nM
        absorb = pk.ka_per_day * depot
        elim = pk.cl_l_per_day * c + pk.vmax_nm_per_day * ac / (pk.km_nm + max(c, 0.0))
        dist = pk.q_l_per_day * c - pk.q_l_per_day * ap / pk.vp_l
        return [-absorb, absorb - elim - dist, dist]

    doses = [np.array([pk.bioavailability * d * nmol_per_mg, 0.0, 0.0]) for d in dose_mg]
    y = _piecewise_ode(rhs, 3, dose_times, doses, t_grid)
    c_nm = np.maximum(y[1] / pk.vc_l, 0.0)
    return c_nm * pk.mw_kda * 1e-3  # nM * kg/mol * 1e-3 = mg/L = ug/mL


def denosumab_concentration_ng_ml(
    dose_times, dose_mg, t_grid, body_mass_kg: float, pk: DenosumabPK | None = None
):
    """Serum denosumab (ng/mL) on t_grid (days) for SC doses (mg) at dose_times."""
    pk = pk or DenosumabPK()
    if len(dose_times) == 0:
        return np.zeros_like(t_grid, dtype=float)
    vc_ml = pk.vc_ml_per_kg * body_mass_kg
    vmax = pk.vmax_ng_per_kg_day * body_mass_kg  # ng/day

    def rhs(t, y):
        depot, a = y  # ng
        c = max(a / vc_ml, 0.0)
        absorb = pk.ka_per_day * depot
        return [-absorb, absorb - vmax * c / (pk.km_ng_ml + c) - pk.kel_per_day * a]

    doses = [np.array([pk.bioavailability * d * 1e6, 0.0]) for d in dose_mg]
    y = _piecewise_ode(rhs, 2, dose_times, doses, t_grid)
    return np.maximum(y[1] / vc_ml, 0.0)


def _cumulative_daily_input(dose_times, amounts, t_grid, spread_days=1.0):
    """Cumulative input U(t) for amounts delivered uniformly over [t_i, t_i + spread)."""
    u = np.zeros_like(t_grid, dtype=float)
    for t0, a in zip(dose_times, amounts):
        u += a * np.clip((t_grid - t0) / spread_days, 0.0, 1.0)
    return u


def _cumulative(t, y):
    out = np.zeros_like(y, dtype=float)
    out[1:] = np.cumsum(0.5 * (y[1:] + y[:-1]) * np.diff(t))
    return out


@dataclass
class Exposure:
    """Drug exposure on a regular grid, with cumulative integrals.

    Fields (arrays on ``t_days``):
      romo_ug_ml, dmab_ng_ml: serum concentrations;
      aln_bone_mg_cum: cumulative alendronate delivered to bone (mg);
      pth_cum: cumulative normalised teriparatide exposure (1 per day at 20 ug/d);
      serum_ug_ml: the serum level reported for the drug(s) (ug/mL).
    """

    t_days: np.ndarray
    romo_ug_ml: np.ndarray
    dmab_ng_ml: np.ndarray
    aln_bone_mg_cum: np.ndarray
    pth_cum: np.ndarray
    serum_ug_ml: np.ndarray
    #: romosozumab at the bone (effect site), ug/mL; None: the serum level
    romo_site_ug_ml: np.ndarray | None = None

    def __post_init__(self):
        if self.romo_site_ug_ml is None:
            self.romo_site_ug_ml = self.romo_ug_ml
        self._romo_cum = _cumulative(self.t_days, self.romo_ug_ml)
        self._romo_site_cum = _cumulative(self.t_days, self.romo_site_ug_ml)
        self._dmab_cum = _cumulative(self.t_days, self.dmab_ng_ml)

    @property
    def t_end(self):
        return float(self.t_days[-1])

    def _interp(self, y, t):
        return np.interp(t, self.t_days, y)

    def mean(self, t0: float, t1: float) -> dict:
        """Mean exposures over [t0, t1] (days); t0, t1 may be arrays (one interval each)."""
        dt = t1 - t0
        if np.any(np.asarray(dt) <= 0):
            raise InputError(f"mean exposure needs t1 > t0, got [{t0}, {t1}]")
        i = self._interp
        return {
            "romo_ug_ml": (i(self._romo_cum, t1) - i(self._romo_cum, t0)) / dt,
            "romo_site_ug_ml": (i(self._romo_site_cum, t1) - i(self._romo_site_cum, t0)) / dt,
            "dmab_ng_ml": (i(self._dmab_cum, t1) - i(self._dmab_cum, t0)) / dt,
            "aln_bone_mg_per_day": (i(self.aln_bone_mg_cum, t1) - i(self.aln_bone_mg_cum, t0)) / dt,
            "pth": (i(self.pth_cum, t1) - i(self.pth_cum, t0)) / dt,
        }

    def serum_at(self, t) -> np.ndarray:
        return self._interp(self.serum_ug_ml, t)


def compute_exposure(
    treatment, t_end_days: float, body_mass_kg: float = 65.0, pk: PKParameters | None = None,
    grid_days: float = GRID_DAYS,
) -> Exposure:
    """Exposure of a treatment (sequence, regimen or spec) on [0, t_end_days]."""
    seq: TreatmentSequence = as_sequence(treatment)
    p = pk or PKParameters()
    n = int(np.ceil(t_end_days / grid_days)) + 1
    t = np.arange(n) * grid_days
    tr, dr = seq.doses("romosozumab", t[-1])
    romo = romosozumab_concentration_ug_ml(tr, dr, t, p.romosozumab)
    td, dd = seq.doses("denosumab", t[-1])
    dmab = denosumab_concentration_ng_ml(td, dd, t, body_mass_kg, p.denosumab)
    # alendronate: absorbed dose reaching bone, delivered over the dosing day
    aln_pk: AlendronatePK = p.alendronate
    ta, da = seq.doses("alendronate", t[-1])
    aln_amount = da * aln_pk.oral_bioavailability * aln_pk.fraction_to_bone
    aln_cum = _cumulative_daily_input(ta, aln_amount, t)
    # reported plasma alendronate: absorbed dose, one compartment (ug/mL)
    k_aln = np.log(2) / (aln_pk.plasma_half_life_h / 24.0)
    aln_plasma = np.zeros_like(t)
    for t0, d in zip(ta, da * aln_pk.oral_bioavailability):
        m = t >= t0
        aln_plasma[m] += d * 1e3 / (aln_pk.volume_l * 1e3) * np.exp(-k_aln * (t[m] - t0))
    # teriparatide: daily-averaged exposure, normalised to the 20 ug dose
    tp: TeriparatidePK = p.teriparatide
    tt, dt_ = seq.doses("teriparatide", t[-1])
    pth_cum = _cumulative_daily_input(tt, dt_ * 1000.0 / tp.reference_dose_ug, t)
    # reported serum teriparatide: daily mean = F*D/(V*ke*24h) (ug/mL)
    pth_daily_rate = np.gradient(pth_cum, t) if t.size > 1 else np.zeros_like(t)
    pth_serum = (
        pth_daily_rate * tp.reference_dose_ug * tp.bioavailability
        / (tp.volume_l * 1e3 * tp.ke_per_h * 24.0)
    )
    serum = romo + dmab * 1e-3 + aln_plasma + pth_serum
    return Exposure(t, romo, dmab, aln_cum, pth_cum, serum,
                    romo_site_ug_ml=effect_site(t, romo, p.romosozumab.effect_site_days))


def effect_site(t, c, tau_days: float) -> np.ndarray:
    """First-order effect-site level dc_e/dt = (c - c_e) / tau on a regular grid (exact for
    a piecewise-linear c up to the step's mean; tau <= 0: c itself)."""
    if tau_days <= 0 or t.size < 2:
        return np.asarray(c, float).copy()
    c = np.asarray(c, float)
    e = np.exp(-(t[1] - t[0]) / tau_days)
    # c_e[i] = e c_e[i-1] + (1 - e) (c[i-1] + c[i]) / 2, c_e[0] = c[0]; a running recursion
    # (scipy.signal.lfilter does the same, but importing scipy.signal costs every process a second)
    drive = (1.0 - e) * 0.5 * (c[1:] + c[:-1])
    return np.fromiter(itertools.accumulate(drive.tolist(), lambda prev, d: e * prev + d, initial=float(c[0])),
                       dtype=float, count=c.size)
