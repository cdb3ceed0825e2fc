"""Calibration of the remodeling engine to clinical-targets.md rows 1-7 and the compartment
rows 16, 19, 20 and 21 ONLY (rows 17 and 18 enter as fixed surface ratios,
``femur.remodeling.parameters.CellParameters``).

    python -m femur.calibration.remodeling            # fit, print target vs model
    python -m femur.calibration.remodeling --write    # ... and store the fitted values
    python -m femur.calibration.remodeling --check    # only print target vs model

Two independent fits:
1. romosozumab PK (row 5): Michaelis-Menten Vmax of the Eudy 2015 model so that a
   single 210 mg dose gives Cmax 22.2 ug/mL and monthly troughs sit mid 8-13 ug/mL;
2. the 19 shared cell/drug parameters of ``parameters.FITTED_TARGETS`` by weighted
   least squares (scipy) over the BMD, marker and natural-loss targets (rows 1-4, 6, 7)
   and the compartment targets (rows 16, 19, 20, 21: the cortical share of age-related hip
   loss, denosumab's hip cortex, cortical porosity on denosumab and teriparatide, and
   alendronate's tissue mineralisation; femur.outcomes.compartments). The model's only
   cortical-porosity and compact-mineral courses are those of the hip cortex: they stand
   in for the radius/tibia (row 19) and iliac (row 20) measurements. Teriparatide's hip
   BMD is not a target (a prediction).

``--write`` stores them, with their provenance (targets, version, date, command), in
``femur/data/romosozumab_pk.json`` and ``femur/data/cell_model.json``, which the
engine reads (no source file is rewritten).

Marker targets (row 4) are placebo-relative, so the model is compared as
romosozumab relative to its own placebo run. Trial populations (row 9) set the
patients' ages. Runtime: ~1 min for ``--check``; the fit takes ~1.5 s per evaluation of all
scenarios (2-day steps; the report uses 1-day steps), 20 evaluations per iteration with the
19 parameters: the issue-15 Wnt refit ran 40 iterations (``--max-nfev 40``) in ~25 min on a
loaded machine from the result of an exploratory run, and stopped at that limit.
"""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import replace

import numpy as np
from scipy.optimize import least_squares

from femur.calibration import lsq
from femur.core.datafiles import write_fitted
from femur.core.log import configure, get_logger
from femur.core.units import DAYS_PER_MONTH
from femur.remodeling.parameters import (
    CELL_FIT_FILE,
    FITTED_TARGETS,
    CellParameters,
    ModelParameters,
    default_cell_parameters,
)
from femur.remodeling.patient import Patient
from femur.treatments.pk import compute_exposure, romosozumab_concentration_ug_ml
from femur.treatments.pk_parameters import PK_FIT_FILE, RomosozumabPK
from femur.treatments.regimen import Regimen, as_sequence, parse_treatment
from femur.workflows.systemic import simulate_sites

log = get_logger(__name__)

# ----------------------------------------------------------------------------------------
# Targets: (key, value, sigma, source). Sigma = weight of the residual (not a tolerance).
# ----------------------------------------------------------------------------------------
_TARGET_TABLE = """
frame_romo_ls_m12             13.1    0.6   row 1 FRAME romosozumab LS M12
frame_romo_th_m12                6    0.5   row 1 FRAME romosozumab TH M12
arch_romo_th_m12               6.2    0.5   row 2 ARCH romosozumab TH M12
arch_aln_th_m12                2.8    0.5   row 2 ARCH alendronate TH M12
ph2_romo_ls_m12               11.3    0.6   row 3 phase 2 romosozumab LS M12
ph2_tptd_ls_m12                7.1    0.6   row 3 phase 2 teriparatide LS M12
ph2_aln_ls_m12                 4.1    0.6   row 3 phase 2 alendronate LS M12
ph2_pbo_ls_m12                -0.1    0.5   row 3 phase 2 placebo LS M12
romo_p1np_peak                 145     25   row 4 P1NP peak vs placebo (max before M1.5)
romo_p1np_d21                  145     25   row 4 P1NP ~+145 % vs placebo near week 2-M1 (day 21)
romo_p1np_falls_d21_d60          0     10   row 4 peak by ~M1: hinge on P1NP(d60) - P1NP(d21) + 10
romo_p1np_m9                     0     10   row 4 P1NP back to placebo by M9
romo_p1np_m12                  -15     10   row 4 P1NP ~15 % below placebo at M12
romo_ctx_nadir                 -55     10   row 4 CTX nadir vs placebo
romo_ctx_m12                   -25     10   row 4 CTX at M12 vs placebo
romo_ctx_m15_above0              0     10   row 4 CTX above baseline within 3 mo of stopping (hinge)
freedom_dmab_th_m12            3.2    0.4   row 6 FREEDOM denosumab TH M12
freedom_dmab_th_m24            4.4    0.4   row 6 FREEDOM denosumab TH M24
freedom_dmab_th_m36              5    0.4   row 6 FREEDOM denosumab TH M36
freedom_pbo_th_m12               0    0.4   row 6 FREEDOM placebo TH M12
freedom_pbo_th_m24            -0.7    0.4   row 6 FREEDOM placebo TH M24
freedom_pbo_th_m36            -1.4    0.4   row 6 FREEDOM placebo TH M36
natural_fn_per_yr               -1    0.6   row 7 Melton 2000 FN -1.0 %/yr (71 y)
early_pmo_th_per_yr          -1.38    0.4   row 7 early postmenopause proximal femur
early_pmo_ls_per_yr           -1.4    0.4   row 7 early postmenopause spine
freedom_pbo_hip_ct_share_m36  0.68   0.08   row 16 cortical share of age-related mineral loss (68 %), FREEDOM placebo hip M36
freedom_dmab_hip_ct_vs_pbo_m36  5.4   1.0   row 21 denosumab hip cortex +5.4 % vs placebo over 3 y
freedom_dmab_hip_ct_po_m12       0    3.0   row 19 denosumab cortical porosity unchanged at 12 months
ph2_tptd_hip_ct_po_m12         5.6    5.0   row 19 teriparatide cortical porosity +5.6 % (tibia; radius +20.9) at 12 months
boivin_aln_ct_tmd_vs_pbo_m24   9.3    3.0   row 20 alendronate compact mineralisation +9.3 % vs placebo at 2 y
boivin_aln_tb_tmd_vs_pbo_m24   7.3    3.0   row 20 alendronate cancellous mineralisation +7.3 % vs placebo at 2 y
"""
#: (key, value, sigma, source) of every calibration target
TARGETS = [(k, float(v), float(sd), src) for k, v, sd, src in
           (line.split(None, 3) for line in _TARGET_TABLE.strip().splitlines())]

#: Trial populations (row 9 and the phase 2 row); ages are the trials' means.
FRAME_PATIENT = Patient(age_years=70.9)
ARCH_PATIENT = Patient(age_years=74.3, fn_t_score=-2.90)  # row 9: ARCH baseline FN T-score -2.90
PHASE2_PATIENT = Patient(age_years=67.0)  # 55-85 y; mean ~67 (ASSUMPTION: mean not in the notes)
FREEDOM_PATIENT = Patient(age_years=72.3)  # FREEDOM mean age (~72, ASSUMPTION: not in the notes)
EARLY_PMO_PATIENT = Patient(age_years=53.0, years_since_menopause=2.0)
BOIVIN_PATIENT = Patient(age_years=68.0)  # Boivin 2000 (FIT biopsies): ASSUMPTION, mean age not in the notes

# (name, treatment spec, months, patient, sites)
SCENARIOS = [
    ("frame_romo", "romosozumab:12", 15, FRAME_PATIENT, ("lumbar_spine", "total_hip")),
    ("frame_pbo", "placebo", 15, FRAME_PATIENT, ("femoral_neck",)),
    ("arch_romo", "romosozumab", 12, ARCH_PATIENT, ("total_hip",)),
    ("arch_aln", "alendronate", 12, ARCH_PATIENT, ("total_hip",)),
    ("ph2_romo", "romosozumab", 12, PHASE2_PATIENT, ("lumbar_spine",)),
    ("ph2_tptd", "teriparatide", 12, PHASE2_PATIENT, ("lumbar_spine", "total_hip")),
    ("ph2_aln", "alendronate", 12, PHASE2_PATIENT, ("lumbar_spine",)),
    ("ph2_pbo", "placebo", 12, PHASE2_PATIENT, ("lumbar_spine",)),
    ("freedom_dmab", "denosumab", 36, FREEDOM_PATIENT, ("total_hip",)),
    ("freedom_pbo", "placebo", 36, FREEDOM_PATIENT, ("total_hip",)),
    ("early_pmo", "placebo", 12, EARLY_PMO_PATIENT, ("lumbar_spine", "total_hip")),
    ("boivin_aln", "alendronate", 24, BOIVIN_PATIENT, ("lumbar_spine", "total_hip")),
    ("boivin_pbo", "placebo", 24, BOIVIN_PATIENT, ("lumbar_spine", "total_hip")),
]

FIT_NAMES = tuple(FITTED_TARGETS)
BOUNDS = {
    "tau_p_days": (5.0, 400.0),
    "tau_b_days": (10.0, 60.0),  # prior: active OB life weeks to ~2 months
    "wnt_diff_gain": (0.2, 50.0),
    "tau_q_days": (5.0, 400.0),
    "modelling_gain": (1e-3, 20.0),
    "sost_rankl_exponent": (0.02, 3.0),
    # DKK1 induction per unit Wnt activation, and its share of the baseline Wnt inhibition
    "dkk1_induction": (0.01, 30.0),
    "dkk1_share": (0.02, 0.9),
    "coupling_exponent": (0.5, 1.5),  # prior: recruitment ~ proportional to resorption
    # secondary mineralisation: no faster than Martinez-Reina's per-packet 0.007/d
    # and no slower than ~5 years (secondary mineralisation lasts years, remodeling.md 1.5)
    "k_mineral_per_day": (5e-4, 7e-3),
    # bone-tissue free-sclerostin binding constant of the serum level (Eudy 2015 serum Km:
    # 0.453 nM = 0.068 ug/mL)
    "romo_k_ug_ml": (1e-4, 50.0),
    "bp_potency": (1e-4, 1e3),
    "pth_ob_potency": (0.01, 20.0),
    "deficit_basal": (1e-4, 0.5),
    "pmo_amplitude": (1e-3, 20.0),
    # endocortical + canal surface of cortical elements, mm^-1 per bone volume: up to a few
    # times the trabecular S_v peak (4.1 mm^-1)
    "cortical_surface_per_mm": (1e-3, 20.0),
    "cortical_deficit_ratio": (0.1, 20.0),
    # canal cavity resorption-to-refill lag: a cortical remodelling period of weeks to
    # ~10 months (resorption ~1 month, reversal, formation ~3 months; prior, UNCONFIRMED)
    "cortical_refill_days": (20.0, 300.0),
    "pth_rankl_gain": (0.01, 5.0),
}

_EXPOSURE_CACHE: dict = {}


def _exposure(spec, months, patient, params):
    key = (spec, months, patient.body_mass_kg)
    if key not in _EXPOSURE_CACHE:
        seq = parse_treatment(spec, months)
        _EXPOSURE_CACHE[key] = compute_exposure(seq, months * DAYS_PER_MONTH + 1.0, patient.body_mass_kg,
                                                params.pk)
    return _EXPOSURE_CACHE[key]


def run_scenarios(params: ModelParameters, step_days: float = 1.0) -> dict:
    out = {}
    for name, spec, months, patient, sites in SCENARIOS:
        out[name] = simulate_sites(
            spec, months, patient=patient, sites=sites, params=params, step_days=step_days,
            exposure=_exposure(spec, months, patient, params),
        )
    run_scenarios.last = out
    return out


def _rel(a, b):
    """Placebo-relative % change: 100 ((1 + a/100) / (1 + b/100) - 1)."""
    return 100.0 * ((1.0 + np.asarray(a) / 100.0) / (1.0 + np.asarray(b) / 100.0) - 1.0)


def model_values(res: dict) -> dict:
    v = {}
    fr, fp = res["frame_romo"], res["frame_pbo"]
    v["frame_romo_ls_m12"] = fr.at_month("ls_bmd_pct", 12)
    v["frame_romo_th_m12"] = fr.at_month("th_bmd_pct", 12)
    v["arch_romo_th_m12"] = res["arch_romo"].at_month("th_bmd_pct", 12)
    v["arch_aln_th_m12"] = res["arch_aln"].at_month("th_bmd_pct", 12)
    for k in ("romo", "tptd", "aln", "pbo"):
        v[f"ph2_{k}_ls_m12"] = res[f"ph2_{k}"].at_month("ls_bmd_pct", 12)
    t = fr.daily["t_days"]
    p1 = _rel(fr.daily["p1np_pct"], fp.daily["p1np_pct"])
    ctx = _rel(fr.daily["ctx_pct"], fp.daily["ctx_pct"])
    def at(y, m):
        return float(np.interp(m * DAYS_PER_MONTH, t, y))

    # smooth surrogates of "peak ~+145 % near week 2-M1" (argmax is not differentiable)
    p21, p60 = float(np.interp(21.0, t, p1)), float(np.interp(60.0, t, p1))
    v["romo_p1np_d21"] = p21
    v["romo_p1np_peak"] = float(np.max(p1[t <= 1.5 * DAYS_PER_MONTH]))
    v["romo_p1np_falls_d21_d60"] = max(p60 - p21 + 10.0, 0.0)

    v["romo_p1np_m9"] = at(p1, 9)
    v["romo_p1np_m12"] = at(p1, 12)
    v["romo_ctx_nadir"] = float(np.min(ctx[t <= 12 * DAYS_PER_MONTH]))
    v["romo_ctx_m12"] = at(ctx, 12)
    v["romo_ctx_m15_above0"] = min(at(ctx, 15), 0.0)  # hinge: 0 once above baseline
    for m in (12, 24, 36):
        v[f"freedom_dmab_th_m{m}"] = res["freedom_dmab"].at_month("th_bmd_pct", m)
        v[f"freedom_pbo_th_m{m}"] = res["freedom_pbo"].at_month("th_bmd_pct", m)
    v["natural_fn_per_yr"] = fp.at_month("fn_bmd_pct", 12)
    v["early_pmo_th_per_yr"] = res["early_pmo"].at_month("th_bmd_pct", 12)
    v["early_pmo_ls_per_yr"] = res["early_pmo"].at_month("ls_bmd_pct", 12)
    fp36, fd = res["freedom_pbo"], res["freedom_dmab"]
    share = fp36.compartment_baseline["hip_cortical_bmc_share"]
    th, ct = fp36.at_month("th_bmd_pct", 36), fp36.at_month("hip_cortical_bmc_pct", 36)
    v["freedom_pbo_hip_ct_share_m36"] = share * ct / th if th < 0 else 0.0
    v["freedom_dmab_hip_ct_vs_pbo_m36"] = fd.at_month("hip_cortical_bmc_pct", 36) - ct
    v["freedom_dmab_hip_ct_po_m12"] = fd.at_month("hip_cortical_porosity_pct", 12)
    v["ph2_tptd_hip_ct_po_m12"] = res["ph2_tptd"].at_month("hip_cortical_porosity_pct", 12)
    ba, bp = res["boivin_aln"], res["boivin_pbo"]
    v["boivin_aln_ct_tmd_vs_pbo_m24"] = float(_rel(ba.at_month("hip_cortical_tmd_pct", 24),
                                                   bp.at_month("hip_cortical_tmd_pct", 24)))
    v["boivin_aln_tb_tmd_vs_pbo_m24"] = float(_rel(ba.at_month("spine_trabecular_tmd_pct", 24),
                                                   bp.at_month("spine_trabecular_tmd_pct", 24)))
    return v


def _params_from_x(x, base: ModelParameters) -> ModelParameters:
    kw = {n: float(np.exp(xi)) for n, xi in zip(FIT_NAMES, x)}
    return replace(base, cells=replace(base.cells, **kw))


def residuals(x, base: ModelParameters, step_days=1.0):
    v = model_values(run_scenarios(_params_from_x(x, base), step_days))
    return np.array([(v[k] - val) / sd for k, val, sd, _ in TARGETS])


def fit_cells(base: ModelParameters | None = None, start: CellParameters | dict | None = None,
              max_nfev: int = 200, step_days: float = 2.0, verbose: int = 0, jobs: int = 1,
              checkpoint=None, ftol: float = 1e-8, xtol: float = 1e-8) -> tuple[dict, dict]:
    """Weighted least squares of the shared parameters (log space, bounded; scipy's trust
    region reflective with a forward-difference Jacobian, relative step 1e-3, its columns
    computed by ``jobs`` processes: ``femur.calibration.lsq``). Returns (fitted values, optimiser report: status,
    message, iterations, evaluations, cost, parameters at a bound)."""
    base = base or ModelParameters()
    start = start or base.cells
    get = start.get if isinstance(start, dict) else (lambda n: getattr(start, n))
    x0 = np.log([get(n) for n in FIT_NAMES])
    lo = np.log([BOUNDS[n][0] for n in FIT_NAMES])
    hi = np.log([BOUNDS[n][1] for n in FIT_NAMES])
    x, info = lsq.fit(residuals, x0, lo, hi, args=(base, step_days), names=FIT_NAMES, jobs=jobs,
                      checkpoint=checkpoint, rel_step=1e-3, max_nfev=max_nfev, ftol=ftol, xtol=xtol,
                      verbose=verbose)
    return {n: float(np.exp(xi)) for n, xi in zip(FIT_NAMES, x)}, info


# ----------------------------------------------------------------------------------------
def romosozumab_pk_metrics(pk: RomosozumabPK | None = None) -> dict:
    t = np.arange(0, 121, 0.25)
    c = romosozumab_concentration_ug_ml([0.0], [210.0], t, pk)
    i = int(np.argmax(c))
    j, k = np.searchsorted(t, 14.0), np.searchsorted(t, 28.0)
    seq = as_sequence(Regimen.default("romosozumab", 12))
    tr, dr = seq.doses("romosozumab")
    t2 = np.arange(0, 12 * DAYS_PER_MONTH + 0.01, 0.25)
    c2 = romosozumab_concentration_ug_ml(tr, dr, t2, pk)
    troughs = [float(np.interp(m * DAYS_PER_MONTH - 1e-6, t2, c2)) for m in (3, 6, 9, 11)]
    return {
        "cmax_ug_ml": float(c[i]), "tmax_day": float(t[i]),
        "half_life_day": float(14.0 * np.log(2) / np.log(c[j] / c[k])),
        "auc_ug_day_ml": float(np.trapezoid(c, t)), "troughs_ug_ml": troughs,
    }


def fit_romosozumab_pk(pk: RomosozumabPK | None = None) -> float:
    """Refit the MM Vmax to label Cmax 22.2 ug/mL and troughs ~10.5 ug/mL (row 5)."""
    pk = pk or RomosozumabPK()

    def res(x):
        m = romosozumab_pk_metrics(replace(pk, vmax_nm_per_day=float(np.exp(x[0]))))
        return [(m["cmax_ug_ml"] - 22.2) / 2.0, (np.mean(m["troughs_ug_ml"]) - 10.5) / 1.0]

    sol = least_squares(res, [np.log(5.87)], diff_step=1e-3)
    return float(np.exp(sol.x[0]))


def report(params: ModelParameters, step_days: float = 1.0, file=sys.stdout):
    v = model_values(run_scenarios(params, step_days))
    print(f"{'target':<24s} {'value':>8s} {'model':>8s}  source", file=file)
    for k, val, _, src in TARGETS:
        print(f"{k:<24s} {val:8.2f} {v[k]:8.2f}  {src}", file=file)
    fr, fp = run_scenarios.last["frame_romo"], run_scenarios.last["frame_pbo"]
    t = fr.daily["t_days"]
    p1 = _rel(fr.daily["p1np_pct"], fp.daily["p1np_pct"])
    i = int(np.argmax(p1))
    print(f"(P1NP peak {p1[i]:.0f} % vs placebo at day {t[i]:.0f}: label +145 % near week 2-M1)", file=file)
    m = romosozumab_pk_metrics(params.pk.romosozumab)
    print(
        f"romosozumab PK: Cmax {m['cmax_ug_ml']:.1f} ug/mL (22.2) at day {m['tmax_day']:.1f} (~5); "
        f"t1/2 {m['half_life_day']:.1f} d (12.8); troughs M3-M11 "
        + ", ".join(f"{x:.1f}" for x in m["troughs_ug_ml"]) + " (8-13); "
        f"AUC {m['auc_ug_day_ml']:.0f} (label 389, context only)", file=file,
    )
    return v


def predictions(params: ModelParameters | None = None, file=sys.stdout) -> dict:
    """Uncalibrated outputs (predictions), printed for the record; NOT fitted to."""
    p = params or ModelParameters()
    out = {}
    r = simulate_sites("romosozumab:12", 24, patient=FRAME_PATIENT, params=p)
    out["FRAME romo FN M12"] = r.fn_bmd_pct[12]
    out["FRAME romo LS/TH/FN M6"] = (r.ls_bmd_pct[6], r.th_bmd_pct[6], r.fn_bmd_pct[6])
    out["romo stop -> M24 LS/TH"] = (r.ls_bmd_pct[24], r.th_bmd_pct[24])
    a = simulate_sites("romosozumab:12,alendronate:12", 24, patient=ARCH_PATIENT, params=p)
    b = simulate_sites("alendronate", 24, patient=ARCH_PATIENT, params=p)
    out["ARCH romo->ALN M24 LS/TH/FN"] = (a.ls_bmd_pct[24], a.th_bmd_pct[24], a.fn_bmd_pct[24])
    out["ARCH ALN->ALN M24 LS/TH/FN"] = (b.ls_bmd_pct[24], b.th_bmd_pct[24], b.fn_bmd_pct[24])
    out["ARCH ALN M12 LS/FN"] = (b.ls_bmd_pct[12], b.fn_bmd_pct[12])
    d = simulate_sites("denosumab", 36, patient=FREEDOM_PATIENT, params=p)
    out["FREEDOM dmab LS M12/24/36"] = tuple(d.ls_bmd_pct[[12, 24, 36]])
    out["FREEDOM dmab FN M12/24/36"] = tuple(d.fn_bmd_pct[[12, 24, 36]])
    out["dmab CTX M1/M6, P1NP M6/M12"] = (d.ctx_pct[1], d.ctx_pct[6], d.p1np_pct[6], d.p1np_pct[12])
    # denosumab's CTX over its 6-month dosing interval (days after the first dose; R2: about
    # -85 % by day 3, maximal by M1, suppression maintained), and over the 6th interval
    td, ctx = d.daily["t_days"], d.daily["ctx_pct"]
    days = (3, 10, 30, 91, 152, 182)
    out["dmab CTX d3/d10/d30/d91/d152/d182"] = tuple(float(np.interp(x, td, ctx)) for x in days)
    t5 = 5 * 182.625
    out["dmab CTX 6th interval, same days"] = tuple(float(np.interp(t5 + x, td, ctx)) for x in days)
    s = simulate_sites("romosozumab:12,denosumab:12", 24, patient=FRAME_PATIENT, params=p)
    out["romo->dmab M24 LS/TH/FN"] = (s.ls_bmd_pct[24], s.th_bmd_pct[24], s.fn_bmd_pct[24])
    s2 = simulate_sites("denosumab:12,romosozumab:12", 24, patient=FRAME_PATIENT, params=p)
    out["dmab->romo M24 LS/TH"] = (s2.ls_bmd_pct[24], s2.th_bmd_pct[24])
    dc = simulate_sites("denosumab:24,placebo:12", 36, patient=FREEDOM_PATIENT, params=p)
    out["dmab 24 mo then stop: TH M24/M30/M36"] = tuple(dc.th_bmd_pct[[24, 30, 36]])
    out["dmab 24 mo then stop: LS M24/M36"] = tuple(dc.ls_bmd_pct[[24, 36]])
    out["dmab stop: CTX peak after stop"] = float(np.max(dc.ctx_pct[24:]))
    t = simulate_sites("teriparatide", 24, patient=PHASE2_PATIENT, params=p)
    out["TPTD LS/TH M12, M24"] = (t.ls_bmd_pct[12], t.th_bmd_pct[12], t.ls_bmd_pct[24], t.th_bmd_pct[24])
    out["TPTD P1NP M1/M6/M12, CTX M6/M12"] = (t.p1np_pct[1], t.p1np_pct[6], t.p1np_pct[12], t.ctx_pct[6], t.ctx_pct[12])
    out["TPTD P1NP M1/M3/M6/M12/M18/M24"] = tuple(float(t.p1np_pct[m]) for m in (1, 3, 6, 12, 18, 24))
    out["romo serum sclerostin total M1/M6/M12/M18"] = tuple(
        float(r.series["serum_sclerostin_total_pct"][m]) for m in (1, 6, 12, 18))
    out["romo serum sclerostin free M1/M6/M12/M18"] = tuple(
        float(r.series["serum_sclerostin_free_pct"][m]) for m in (1, 6, 12, 18))
    out["placebo serum sclerostin total M12 (age rise - osteocyte loss)"] = float(
        simulate_sites("placebo", 12, patient=FRAME_PATIENT, params=p).series["serum_sclerostin_total_pct"][12])
    man = Patient(sex="male", age_years=71)
    mp = simulate_sites("placebo", 12, patient=man, params=p)
    mr = simulate_sites("romosozumab", 12, patient=man, params=p)
    out["men 71y placebo LS/TH M12"] = (mp.ls_bmd_pct[12], mp.th_bmd_pct[12])
    out["men 71y romo LS/TH/FN M12"] = (mr.ls_bmd_pct[12], mr.th_bmd_pct[12], mr.fn_bmd_pct[12])
    for k, v in out.items():
        vs = ", ".join(f"{x:+.2f}" for x in (v if isinstance(v, tuple) else (v,)))
        print(f"  {k:<38s} {vs}", file=file)
    return out


COMMAND = "python -m femur.calibration.remodeling --write"


def store_fit(cells: dict, vmax_nm_per_day: float, info: dict | None = None, command: str = COMMAND) -> list:
    """Write the fitted values with their provenance to femur/data (``--write``)."""
    return [
        write_fitted(CELL_FIT_FILE, cells, command=command, targets={
            "source": "shared/science/clinical-targets.md, calibration targets rows 1-4, 6, 7, 16, 19, 20, 21 "
                      "(rows 17 and 18 as fixed surface ratios of the cell parameters)",
            "weighted_targets": [{"key": k, "value": v, "sigma": sd, "source": src}
                                 for k, v, sd, src in TARGETS],
            "per_parameter": dict(FITTED_TARGETS)},
            notes="Weighted least squares on the systemic driver (femur.workflows.systemic) with "
                  "the built-in bones' DXA-site templates.",
            extra={"optimiser": info} if info else None),
        write_fitted(PK_FIT_FILE, {"vmax_nm_per_day": vmax_nm_per_day}, command=command, targets={
            "source": "shared/science/clinical-targets.md, calibration target row 5 (US Evenity "
                      "label 12.3: Cmax 22.2 ug/mL near day 5, monthly troughs 8-13 ug/mL from M3)",
            "per_parameter": {"vmax_nm_per_day": "row 5 Cmax 22.2 ug/mL and mean trough ~10.5 ug/mL"}},
            notes="Michaelis-Menten Vmax of the Eudy 2015 two-compartment model "
                  "(femur.calibration.remodeling.fit_romosozumab_pk)."),
    ]


def main(argv=None):
    ap = argparse.ArgumentParser(prog="python -m femur.calibration.remodeling",
                                 description=__doc__.split("\n")[0])
    ap.add_argument("--write", action="store_true",
                    help="store the fit in femur/data/cell_model.json and romosozumab_pk.json")
    ap.add_argument("--check", action="store_true", help="only print target vs model")
    ap.add_argument("--predict", action="store_true", help="also print uncalibrated predictions")
    ap.add_argument("--max-nfev", type=int, default=150,
                    help="iterations of the optimiser (scipy's count: Jacobian evaluations excluded)")
    ap.add_argument("--jobs", type=int, default=1, help="processes for the Jacobian's columns")
    ap.add_argument("--ftol", type=float, default=1e-8, help="relative cost change to stop at")
    ap.add_argument("--xtol", type=float, default=1e-8, help="relative step size to stop at")
    ap.add_argument("--checkpoint", default="remodeling_fit_checkpoint.json",
                    help="file the best point so far is written to during the fit")
    ap.add_argument("--resume", metavar="CHECKPOINT",
                    help="start from a checkpoint file instead of the stored values")
    args = ap.parse_args(argv)
    configure()
    base = ModelParameters()
    if args.check:
        report(base)
        if args.predict:
            print("PREDICTIONS (not calibrated):")
            predictions(base)
        return 0
    t0 = time.perf_counter()
    vmax = float(f"{fit_romosozumab_pk(base.pk.romosozumab):.4g}")
    print(f"romosozumab PK: fitted Vmax = {vmax:.4g} nM/day (Eudy 2015: 5.87)")
    # the cell fit sees the refitted PK (the exposure it is driven by)
    base = replace(base, pk=replace(base.pk, romosozumab=replace(base.pk.romosozumab, vmax_nm_per_day=vmax)))
    # warm start: the stored values (or a checkpoint of an interrupted fit)
    start = lsq.read_checkpoint(args.resume, FIT_NAMES) if args.resume else default_cell_parameters()
    print(f"best point so far written to {args.checkpoint} (resume with --resume {args.checkpoint})")
    fitted, info = fit_cells(base, start=start, max_nfev=args.max_nfev, verbose=2, jobs=args.jobs,
                             checkpoint=args.checkpoint, ftol=args.ftol, xtol=args.xtol)
    params = replace(base, cells=replace(base.cells, **fitted))
    print(f"fit done in {time.perf_counter() - t0:.0f} s: status {info['status']} ({info['message']}); "
          f"{info['nfev']} iterations, {info['evaluations']} evaluations, cost {info['cost']:.4f}, "
          f"first-order optimality {info['optimality']:.3g}")
    for k, v in fitted.items():
        bound = f" AT {info['at_bound'][k].upper()} BOUND" if k in info["at_bound"] else ""
        print(f"  {k:<22s} = {v:.5g}{bound}   ({FITTED_TARGETS[k]})")
    report(params)
    if args.write:
        argv_used = sys.argv[1:] if argv is None else list(argv)
        command = " ".join(["python -m femur.calibration.remodeling"] + argv_used)
        for path in store_fit({k: float(f"{v:.6g}") for k, v in fitted.items()}, vmax, info, command):
            print(f"written to {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
