"""Every parameter of the drug + bone-cell + density engine, in one place.

Each constant carries its source (paper, and the section of
``shared/science/remodeling.md`` that quotes it), or says that it is an
ASSUMPTION, or names the calibration target (``clinical-targets.md`` table,
rows 1-7) that fixed it. Fitted values live between the ``BEGIN FITTED`` and
``END FITTED`` markers; ``python -m femur.remodeling.calibrate --write``
rewrites that block.

Units: days, mm, ug/mL (romosozumab), ng/mL (denosumab), g/cm3 (density).
Cell populations are normalised to 1 at each element's baseline (Jörg 2022 style).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace

DAYS_PER_YEAR = 365.25
DAYS_PER_MONTH = DAYS_PER_YEAR / 12.0

# --------------------------------------------------------------------------------------
# Pharmacokinetics
# --------------------------------------------------------------------------------------

#: romosozumab molecular mass, kDa (IgG2 ~149 kDa, US Evenity label section 11).
#: 1 nmol = 0.149 mg, so mg -> nmol is x / 0.149 (the Eudy code's /0.145 corresponds to 145 kDa).
ROMOSOZUMAB_MW_KDA = 149.0


@dataclass(frozen=True)
class RomosozumabPK:
    """Two-compartment SC PK with parallel Michaelis-Menten elimination.

    Eudy et al. 2015, CPT PSP 4:527 (OpenBoneMin cabone2.cpp), remodeling.md 2.1.
    Amounts in nmol, volumes in L, time in days, C = A_central / Vc in nM,
    C[ug/mL] = C[nM] * MW[kDa] * 1e-3.
    """

    ka_per_day: float = 0.187  # Eudy 2015 (remodeling.md 2.1)
    bioavailability: float = 0.904  # Eudy 2015
    vc_l: float = 2.9  # Eudy 2015
    vp_l: float = 3.29  # Eudy 2015
    cl_l_per_day: float = 0.254  # Eudy 2015
    q_l_per_day: float = 0.467  # Eudy 2015
    # MM elimination rate = vmax * A_c / (km + C) [nmol/d], i.e. vmax in nM/d.
    # Eudy 2015 code value is 5.87; with it a single 210 mg dose gives Cmax 20.2 ug/mL
    # and monthly troughs 4.6 ug/mL, below the label's 8-13. Refitted (together with
    # cl) to calibration target #5 (US Evenity label 12.3: Cmax 22.2 ug/mL near day 5,
    # troughs 8-13 ug/mL from M3): see calibrate.fit_romosozumab_pk().
    vmax_nm_per_day: float = 2.471  # FITTED to target #5 (Eudy value 5.87)
    km_nm: float = 0.453  # Eudy 2015
    mw_kda: float = ROMOSOZUMAB_MW_KDA


@dataclass(frozen=True)
class DenosumabPK:
    """One-compartment SC PK with Michaelis-Menten (target-mediated) + linear clearance.

    Martínez-Reina & Pivonka 2019 code (remodeling.md 2.2): per kg body mass.
    Concentration in ng/mL.
    """

    ka_per_day: float = 0.17  # Martínez-Reina 2019
    bioavailability: float = 1.0  # Martínez-Reina 2019 (F = 1)
    vc_ml_per_kg: float = 77.9  # Martínez-Reina 2019
    vmax_ng_per_kg_day: float = 2672.0  # Martínez-Reina 2019
    km_ng_ml: float = 411.0  # Martínez-Reina 2019
    kel_per_day: float = 0.0115  # Martínez-Reina 2019


@dataclass(frozen=True)
class AlendronatePK:
    """Oral bisphosphonate: the absorbed dose goes to bone within hours.

    Oral bioavailability ~0.6 % and ~50 % of the absorbed dose retained in bone
    (Fosamax label, clinical pharmacology; UNCONFIRMED here, not in the science notes).
    Plasma is treated as instantaneous (t1/2 hours vs daily steps); the bone
    reservoir is per element in the cell model (uptake ~ local resorption,
    release ~ local resorption), Calvo-Gallego 2022 idea (remodeling.md 2.3).
    Exposure is expressed in "mg absorbed into bone"; 70 mg/wk ~ 0.21 mg/wk.
    """

    oral_bioavailability: float = 0.006  # Fosamax label (UNCONFIRMED)
    fraction_to_bone: float = 0.5  # Fosamax label (UNCONFIRMED)
    plasma_half_life_h: float = 2.0  # ASSUMPTION, only for the reported serum level
    volume_l: float = 28.0  # ASSUMPTION (~0.4 L/kg), only for the reported serum level


@dataclass(frozen=True)
class TeriparatidePK:
    """SC teriparatide, Martonova 2023 (remodeling.md 2.4): ka 4.38/h, ke 0.693/h,
    V 110 L, F 0.95. The pulse lasts hours; the cell model uses the
    DAILY-AVERAGED exposure (intermittent PTH = anabolic), normalised to the
    20 ug/day dose: E_pth = daily AUC / AUC(20 ug)."""

    ka_per_h: float = 4.38  # Martonova 2023
    ke_per_h: float = 0.693  # Martonova 2023
    volume_l: float = 110.0  # Martonova 2023
    bioavailability: float = 0.95  # Martonova 2023
    reference_dose_ug: float = 20.0  # label dose, normalisation of E_pth


# --------------------------------------------------------------------------------------
# Tissue, surface, mineralisation
# --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class TissueParameters:
    # Martin 1984 specific-surface polynomial, mm^-1 (remodeling.md section 3 table).
    sv_coefficients: tuple = (0.0, 32.2, -93.9, 134.0, -101.0, 28.8)
    # Baseline bone formation rate per unit bone surface, mm/day: BFR/BS ~ 10 um/yr,
    # the order of iliac-crest histomorphometry in postmenopausal women (ASSUMPTION,
    # UNCONFIRMED source; gives ~25 %/yr trabecular and ~2-3 %/yr cortical turnover
    # with Martin's S_v, the textbook figures quoted in remodeling.md section 4).
    bfr_bs_mm_per_day: float = 0.010 / DAYS_PER_YEAR
    # Bone volume fraction bounds (remodeling.md section 3, "Design").
    f_min: float = 0.01
    f_max: float = 0.99
    # Tissue composition, Martínez-Reina & Pivonka 2019 (remodeling.md 1.5):
    # mineral 3.2 g/cm3, organic 1.1 g/cm3, organic volume 3/7, mineral volume
    # 0.442 when fully mineralised; water fills the rest. Tissue density
    # rho_t(alpha) = 1.043 + 0.972 alpha g/cm3 (alpha = mineral / full mineral),
    # 2.0 g/cm3 at alpha = 1 and ~1.9 at alpha = 0.9.
    rho_mineral_g_cm3: float = 3.2
    rho_organic_g_cm3: float = 1.1
    rho_water_g_cm3: float = 1.0
    v_organic: float = 3.0 / 7.0
    v_mineral_full: float = 0.442
    # New bone reaches this fraction of full mineral quickly (primary mineralisation),
    # ASSUMPTION in the range quoted by Boivin & Meunier (50-70 %, UNCONFIRMED).
    alpha_primary: float = 0.6


# --------------------------------------------------------------------------------------
# Bone-cell model (normalised, Jörg 2022 spirit; remodeling.md 1.8 and 7)
# --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class CellParameters:
    # --- fixed ---
    # OC precursor pool residence time, days, and fraction leaving by differentiation
    # at baseline (rest: apoptosis/other fates): ASSUMPTION (variable pool, needed
    # for the denosumab-stop rebound, Martínez-Reina 2022, remodeling.md 1.5).
    tau_cp_days: float = 30.0
    cp_diff_fraction: float = 0.5
    # Active osteoclast life time, days: ASSUMPTION (CTX falls ~85 % within days of
    # RANKL blockade, Prolia label quoted in clinical-targets R2).
    tau_c_days: float = 4.0
    # Alendronate bone surface reservoir: released by resorption, time constant at
    # baseline resorption (days): ASSUMPTION.
    bp_release_days: float = 180.0
    # Mechanostat (remodeling.md 1.4/1.6): M = (psi - psi_ref)/psi_ref, lazy zone
    # half-width (ASSUMPTION within Huiskes' s = 0.35-0.75, UNCONFIRMED, taken lower),
    # anabolic gain lambda = 0.5 capped at 2x (Lerebours 2016), catabolic RANKL gain
    # ASSUMPTION 1.0 capped at 2x.
    lazy_zone: float = 0.25
    mech_anabolic_gain: float = 0.5
    mech_anabolic_cap: float = 1.0
    mech_catabolic_gain: float = 1.0
    mech_catabolic_cap: float = 1.0
    # Post-menopausal driver shape: Martínez-Reina 2019 PMO RANKL source
    # xi^2/(xi^2 + (t/tau)^2), xi = 65, tau = 30 d (half at ~5.3 y), remodeling.md 1.5.
    pmo_xi: float = 65.0
    pmo_tau_days: float = 30.0
    # Men: no menopause step; their focal-balance deficit is this fraction of the
    # women's basal one (ASSUMPTION, not calibrated: male hip loss ~half the female).
    male_deficit_ratio: float = 0.6
    # Teriparatide (daily-averaged exposure E_pth = 1 at 20 ug/d) raises RANKL
    # signalling by this fraction (ASSUMPTION, "anabolic window": the OB-lineage effect,
    # fitted below, dominates the resorptive one).
    pth_rankl_gain: float = 0.3
    # Denosumab-RANKL sequestration: r / (1 + C_dmab / K). Martínez-Reina & Pivonka 2019
    # (remodeling.md 2.2) add chi*K_A,den*C to the RANKL binding denominator with
    # K_A,den = 0.333 /pM, chi = 0.012 -> 0.004 /pM; 1 ng/mL of a 149 kDa IgG = 6.71 pM,
    # so K = 1 / (0.004 * 6.71) = 37.3 ng/mL.
    dmab_k_ng_ml: float = 37.3
    # Sclerostin production per osteocyte: free sclerostin ~ Y^sigma (Y = osteocytes per
    # element volume, which follows the bone laid down and resorbed). sigma = 1: production
    # proportional to osteocyte number (ASSUMPTION; Jörg 2022 and remodeling.md section 7
    # make osteocytes the sclerostin source, so new bone raises sclerostin, a negative
    # feedback on romosozumab's anabolic window).
    osteocyte_sost_exponent: float = 1.0

    # --- fitted: these class defaults are only start values; the calibrated values are
    # in FITTED below and are what default_cell_parameters() / ModelParameters() use ---
    tau_p_days: float = 60.0
    tau_b_days: float = 15.0
    wnt_diff_gain: float = 3.0
    tau_q_days: float = 90.0
    modelling_gain: float = 0.5
    sost_rankl_exponent: float = 0.3
    coupling_exponent: float = 0.5
    k_mineral_per_day: float = 1.0 / 1000.0
    romo_k_ug_ml: float = 1.0
    bp_potency: float = 1.0
    pth_ob_potency: float = 1.0
    deficit_basal: float = 0.05
    pmo_amplitude: float = 1.0

    def as_dict(self):
        return asdict(self)

    def with_(self, **kw):
        return replace(self, **kw)


#: Names of the fitted cell-model parameters, and the calibration targets that fix them.
FITTED_TARGETS = {
    "tau_p_days": "row 6 denosumab TH (formation lag behind resorption: refill)",
    "tau_b_days": "row 4 P1NP peak timing; row 6 refill",
    "wnt_diff_gain": "row 4 P1NP peak +145 %, CTX nadir; rows 1-3 romosozumab BMD",
    "tau_q_days": "row 4 waning of P1NP under continued romosozumab (back to placebo by M9)",
    "modelling_gain": "row 4 P1NP peak; rows 1-3 romosozumab BMD",
    "sost_rankl_exponent": "row 4 CTX nadir -55 % and M12 -25 %",
    "coupling_exponent": "row 4 P1NP -15 % at M12; row 6 denosumab TH M24/M36",
    "k_mineral_per_day": "row 6 denosumab TH 3.2/4.4/5.0; row 2-3 alendronate",
    "romo_k_ug_ml": "rows 1-3 romosozumab BMD (potency)",
    "bp_potency": "rows 2-3 alendronate TH/LS (potency)",
    "pth_ob_potency": "row 3 teriparatide LS +7.1 % (potency)",
    "deficit_basal": "row 6-7 placebo/natural loss (TH ~ -0.5 %/yr at 71-72 y)",
    "pmo_amplitude": "row 7 early postmenopause proximal femur -1.35..-1.41 %/yr",
}

# BEGIN FITTED
FITTED = {
    'tau_p_days': 135,  # row 6 denosumab TH (formation lag behind resorption: refill)
    'tau_b_days': 10,  # row 4 P1NP peak timing; row 6 refill
    'wnt_diff_gain': 12.0841,  # row 4 P1NP peak +145 %, CTX nadir; rows 1-3 romosozumab BMD
    'tau_q_days': 400,  # row 4 waning of P1NP under continued romosozumab (back to placebo by M9)
    'modelling_gain': 0.530995,  # row 4 P1NP peak; rows 1-3 romosozumab BMD
    'sost_rankl_exponent': 0.54385,  # row 4 CTX nadir -55 % and M12 -25 %
    'coupling_exponent': 1.5,  # row 4 P1NP -15 % at M12; row 6 denosumab TH M24/M36
    'k_mineral_per_day': 0.00111312,  # row 6 denosumab TH 3.2/4.4/5.0; row 2-3 alendronate
    'romo_k_ug_ml': 3.04011,  # rows 1-3 romosozumab BMD (potency)
    'bp_potency': 1.19852,  # rows 2-3 alendronate TH/LS (potency)
    'pth_ob_potency': 0.480061,  # row 3 teriparatide LS +7.1 % (potency)
    'deficit_basal': 0.0568838,  # row 6-7 placebo/natural loss (TH ~ -0.5 %/yr at 71-72 y)
    'pmo_amplitude': 2.37608,  # row 7 early postmenopause proximal femur -1.35..-1.41 %/yr
}
# END FITTED


def default_cell_parameters() -> CellParameters:
    return CellParameters(**FITTED)


@dataclass(frozen=True)
class ModelParameters:
    cells: CellParameters = field(default_factory=default_cell_parameters)
    tissue: TissueParameters = field(default_factory=TissueParameters)
    romosozumab: RomosozumabPK = field(default_factory=RomosozumabPK)
    denosumab: DenosumabPK = field(default_factory=DenosumabPK)
    alendronate: AlendronatePK = field(default_factory=AlendronatePK)
    teriparatide: TeriparatidePK = field(default_factory=TeriparatidePK)
