"""Every parameter of the bone-cell + density engine (the drugs' PK parameters are in
``femur.treatments.pk_parameters``; :class:`ModelParameters` bundles both).

Each constant carries its source (paper, and the section of
``shared/science/remodeling.md`` that quotes it), or says that it is an
ASSUMPTION, or names the calibration target (``clinical-targets.md`` table,
rows 1-7, 16-21) that fixed it. Fitted values are read from ``femur/data/cell_model.json``
(values + provenance), which ``python -m femur.calibration.remodeling --write`` writes.

Units: days, mm, ug/mL (romosozumab), ng/mL (denosumab), g/cm3 (density).
Cell populations are normalised to 1 at each element's baseline (Jörg 2022 style).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace

from femur.core.datafiles import read_fitted
from femur.core.errors import InputError
from femur.core.units import DAYS_PER_YEAR
from femur.treatments.pk_parameters import PKParameters

#: data file of the fitted cell-model values
CELL_FIT_FILE = "cell_model.json"

# --------------------------------------------------------------------------------------
# Tissue, surface, mineralisation
# --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class TissueParameters:
    """Bone tissue: specific surface, turnover per surface, BV/TV bounds, composition."""

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
    # Two-phase mineralisation of new bone (clinical-targets row 20; remodeling.md 1.5).
    # alpha = mineral relative to the plateau of mature bone, v_m = 0.442 (Martínez-Reina &
    # Pivonka 2019), which lies below full mineralisation (v_m = 1 - v_organic = 4/7: water
    # stays in mature bone), i.e. alpha = 1 is the plateau, not a solid-mineral matrix.
    # Primary phase: a new packet takes up alpha_primary of the plateau with time constant
    # primary_mineral_days; row 20 (rabbit FTIR, shape only): ~67 % of interstitial mineral
    # by day 18 -> 0.68 with a 5-day time constant (the secondary phase adds <1 % by then).
    # Secondary phase: first order toward the plateau at k_mineral_per_day (fitted: human
    # secondary mineralisation takes years; rabbit plateaus by ~day 350, row 20).
    alpha_primary: float = 0.68
    primary_mineral_days: float = 5.0


# --------------------------------------------------------------------------------------
# Bone-cell model (normalised, Jörg 2022 spirit; remodeling.md 1.8 and 7)
# --------------------------------------------------------------------------------------


#: Names of the fitted cell-model parameters, and the calibration targets that fix them.
FITTED_TARGETS = {
    "tau_p_days": "row 6 denosumab TH (formation lag behind resorption: refill)",
    "tau_b_days": "row 4 P1NP peak timing; row 6 refill",
    "wnt_diff_gain": "row 4 P1NP peak +145 %, CTX nadir; rows 1-3 romosozumab BMD",
    "tau_q_days": "row 4 waning of P1NP under continued romosozumab (lining-cell depletion, back to "
                  "placebo by M9)",
    "modelling_gain": "row 4 P1NP peak; rows 1-3 romosozumab BMD",
    "sost_rankl_exponent": "row 4 CTX nadir -55 % and M12 -25 %",
    "dkk1_share": "row 4 P1NP back to placebo by M9 (the antibody-free part of the Wnt inhibition)",
    "dkk1_induction": "row 4 P1NP back to placebo by M9 and -15 % at M12 (DKK1 feedback)",
    "coupling_exponent": "row 4 P1NP -15 % at M12; row 6 denosumab TH M24/M36",
    "k_mineral_per_day": "row 6 denosumab TH 3.2/4.4/5.0; row 2-3 alendronate",
    "romo_k_ug_ml": "rows 1-3 romosozumab BMD (potency)",
    "bp_potency": "rows 2-3 alendronate TH/LS (potency)",
    "pth_ob_potency": "row 3 teriparatide LS +7.1 % (potency)",
    "deficit_basal": "row 6-7 placebo/natural loss (TH ~ -0.5 %/yr at 71-72 y)",
    "pmo_amplitude": "row 7 early postmenopause proximal femur -1.35..-1.41 %/yr",
    "cortical_surface_per_mm": "row 21 denosumab hip cortex +5.4 % vs placebo (3 y); row 16 cortical "
                                "share of age-related loss",
    "cortical_deficit_ratio": "row 16 age-related loss 68 % cortical; row 19 denosumab porosity unchanged",
    "cortical_refill_days": "row 19 cortical porosity (teriparatide up, denosumab unchanged); row 21 "
                            "denosumab hip cortex",
    "pth_rankl_gain": "row 19 teriparatide cortical porosity +5.6 % (tibia); row 3 teriparatide LS",
}


@dataclass(frozen=True)
class CellParameters:
    """Rates, gains and drug potencies of the normalised bone-cell model."""

    # --- fitted to the calibration targets (FITTED_TARGETS): no defaults here; the calibrated
    # values are in femur/data/cell_model.json (python -m femur.calibration.remodeling
    # --write) and default_cell_parameters() / ModelParameters() read them ---
    tau_p_days: float
    tau_b_days: float
    wnt_diff_gain: float
    tau_q_days: float
    modelling_gain: float
    # RANKL signalling x s^g (s = free sclerostin, femur.remodeling.wnt): sclerostin
    # promotes osteoclastogenesis (osteocytic RANKL; Jörg 2022's f_up(s/s_C*) on OC
    # differentiation) and, by inhibiting canonical Wnt in the osteoblast lineage, lowers OPG
    # (remodeling.md 7: Wnt raises OPG, lowers RANKL). DKK1's share of that is not modelled
    # (ASSUMPTION): the RANKL/OPG arm follows the free sclerostin only
    sost_rankl_exponent: float
    # DKK1 induction per unit Wnt activation, and DKK1's share of the baseline LRP5/6
    # inhibition (the rest is sclerostin's) (femur.remodeling.wnt)
    dkk1_induction: float
    dkk1_share: float
    coupling_exponent: float
    k_mineral_per_day: float
    romo_k_ug_ml: float
    bp_potency: float
    pth_ob_potency: float
    deficit_basal: float
    pmo_amplitude: float
    # cortical elements: endocortical and intracortical (canal) remodelling surface per bone
    # volume (mm^-1; x BV/TV per tissue volume) added to Martin's S_v, and focal-balance
    # deficit relative to trabecular BMUs
    cortical_surface_per_mm: float
    cortical_deficit_ratio: float
    # mean lag (days) from the resorption of an intracortical cavity to its refilling (the
    # remodelling space of the canals: resorption + reversal + formation periods)
    cortical_refill_days: float
    # Teriparatide (daily-averaged exposure E_pth = 1 at 20 ug/d) raises RANKL signalling by
    # this fraction ("anabolic window": the OB-lineage effect, pth_ob_potency, dominates on
    # trabecular and endocortical surfaces; in the canals it raises activation and so the
    # remodelling space, row 19)
    pth_rankl_gain: float

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
    # Cortical surfaces (issue 15). The remodelling surface of a cortical element
    # (Martin's S_v(f) + cortical_surface_per_mm) is split into endocortical and
    # intracortical (canal) surface; endocortical_share is the endocortical part
    # (ASSUMPTION: endocortical surface per cortical volume ~ 1/Ct.Th ~ 1 mm^-1 against a
    # canal surface of ~1.5 mm^-1 at the neck; no element-level adjacency is used, so every
    # cortical element carries the same mix). Endocortical surfaces remodel like trabecular
    # ones (osteoblast-driven formation); canal surfaces refill their cavities after
    # cortical_refill_days, so activation opens porosity (remodelling space).
    endocortical_share: float = 0.4
    # Periosteal surface per cortical remodelling surface (ASSUMPTION): it only models
    # (no remodelling), with the periosteal modelling ratio below.
    periosteal_share: float = 0.1
    # Modelling-based formation per surface relative to cancellous, clinical-targets row 17
    # (Eriksen 2022, romosozumab minus placebo, % of surface at month 2):
    # endocortical (36.7-3.0)/(18.0-3.8) = 2.37, periosteal (5.0-2.0)/(18.0-3.8) = 0.21;
    # intracortical: no data, 1.0 (ASSUMPTION).
    modelling_ratio_endocortical: float = 2.37
    modelling_ratio_periosteal: float = 0.21
    modelling_ratio_intracortical: float = 1.0
    # Denosumab-RANKL sequestration: r / (1 + C_dmab / K). Martínez-Reina & Pivonka 2019
    # (remodeling.md 2.2) add chi*K_A,den*C to the RANKL binding denominator with
    # K_A,den = 0.333 /pM, chi = 0.012 -> 0.004 /pM; 1 ng/mL of a 149 kDa IgG = 6.71 pM,
    # so K = 1 / (0.004 * 6.71) = 37.3 ng/mL.
    dmab_k_ng_ml: float = 37.3
    # Sclerostin production per osteocyte: production ~ Y^sigma (Y = osteocytes per
    # element volume, which follows the bone laid down and resorbed). sigma = 1: production
    # proportional to osteocyte number (ASSUMPTION; Jörg 2022 and remodeling.md section 7
    # make osteocytes the sclerostin source, so new bone raises sclerostin, a negative
    # feedback on romosozumab's anabolic window).
    osteocyte_sost_exponent: float = 1.0
    # Sclerostin production per osteocyte rises with age (serum sclerostin rises 2.4-fold in
    # women and 4.6-fold in men over adult life, Mödder JBMR 2011, clinical-targets "Context"
    # paragraph; adult life taken as 60 years, ASSUMPTION): exponential rate per year,
    # relative to the simulation's day 0 (with ``aging``). Context, not a calibration target.
    sost_age_rise_female_per_year: float = 0.01459  # ln(2.4) / 60
    sost_age_rise_male_per_year: float = 0.02543  # ln(4.6) / 60
    # Sclerostin clearance, 1/day: free form k_out = 25, antibody-bound form k0 = 0.197
    # (Eudy 2015, remodeling.md 2.1; its S0 = 0.149 nM baseline is the normalisation 1).
    sost_clearance_per_day: float = 25.0
    sost_bound_clearance_per_day: float = 0.197
    # DKK1 expression time constant, days (ASSUMPTION: no calibration row fixes it apart
    # from dkk1_induction and dkk1_share; femur.remodeling.wnt).
    dkk1_days: float = 30.0
    # Wnt activation w acts on the whole osteoblast lineage (Jörg 2022 spirit, remodeling.md
    # 1.8 and 7), on remodelling AND modelling osteoblasts. w multiplies pre-osteoblast
    # differentiation as (1 + w) (its size is set by the fitted wnt_diff_gain); the other
    # effects scale with these gains (ASSUMPTIONS, not separately identifiable from the
    # marker and BMD rows: Wnt/beta-catenin raises MSC commitment to the osteoblast lineage,
    # osteoblast survival via Bcl-2/survivin, and matrix synthesis per osteoblast; the
    # calibration rows fix only their sum through the P1NP and BMD courses):
    wnt_differentiation_gain: float = 1.0  # pre-OB differentiation x (1 + g w); 1 defines w
    wnt_msc_gain: float = 0.5  # MSC commitment refilling the precursor and lining-cell pools
    wnt_survival_gain: float = 0.5  # osteoblast apoptosis / (1 + g w)
    wnt_matrix_gain: float = 0.3  # matrix per osteoblast x (1 + g w)

    def as_dict(self):
        return asdict(self)

    def with_(self, **kw):
        return replace(self, **kw)




def fitted_cell_values() -> dict:
    """The calibrated cell-model values (femur/data/cell_model.json)."""
    values = read_fitted(CELL_FIT_FILE).values
    unknown = set(values) - set(FITTED_TARGETS)
    missing = set(FITTED_TARGETS) - set(values)
    if unknown or missing:
        raise InputError(f"{CELL_FIT_FILE}: unknown cell parameters {sorted(unknown)}, missing "
                         f"{sorted(missing)}; expected {sorted(FITTED_TARGETS)}")
    return dict(values)


def default_cell_parameters(**overrides) -> CellParameters:
    """Cell parameters with the calibrated values (femur/data/cell_model.json)."""
    return CellParameters(**{**fitted_cell_values(), **overrides})


@dataclass(frozen=True)
class ModelParameters:
    cells: CellParameters = field(default_factory=default_cell_parameters)
    tissue: TissueParameters = field(default_factory=TissueParameters)
    pk: PKParameters = field(default_factory=PKParameters)


def scale_for_patient(params: ModelParameters, turnover: float = 1.0,
                      response: float = 1.0) -> ModelParameters:
    """Per-patient variability: ``turnover`` scales the bone formation rate per surface
    (BFR/BS); ``response`` scales every drug's potency (romosozumab and denosumab
    half-effect concentrations / response; bisphosphonate and PTH potencies x response).
    1.0 / 1.0 returns ``params`` itself."""
    if turnover == 1.0 and response == 1.0:
        return params
    tis = replace(params.tissue, bfr_bs_mm_per_day=params.tissue.bfr_bs_mm_per_day * turnover)
    c = params.cells
    cells = replace(
        c, romo_k_ug_ml=c.romo_k_ug_ml / response, dmab_k_ng_ml=c.dmab_k_ng_ml / response,
        bp_potency=c.bp_potency * response, pth_ob_potency=c.pth_ob_potency * response,
    )
    return replace(params, tissue=tis, cells=cells)
