"""Pharmacokinetic parameters of each drug, with their sources (remodeling.md section 2).

The one fitted PK value (romosozumab's Michaelis-Menten Vmax, calibration target row 5)
is read from ``femur/data/romosozumab_pk.json``, written by
``python -m femur.calibration.remodeling --write``.

Units: days, L, nmol/nM (romosozumab), ng and ng/mL (denosumab), mg (alendronate),
hours (teriparatide, Martonova 2023).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from femur.core.datafiles import read_fitted

#: data file of the fitted PK values
PK_FIT_FILE = "romosozumab_pk.json"


def fitted_pk(name: str) -> float:
    """A fitted PK value from :data:`PK_FIT_FILE`."""
    return float(read_fitted(PK_FIT_FILE).values[name])


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
    # troughs 8-13 ug/mL from M3): femur.calibration.remodeling.fit_romosozumab_pk(),
    # stored in femur/data/romosozumab_pk.json (Eudy value 5.87).
    vmax_nm_per_day: float = field(default_factory=lambda: fitted_pk("vmax_nm_per_day"))  # FITTED, row 5
    km_nm: float = 0.453  # Eudy 2015
    mw_kda: float = ROMOSOZUMAB_MW_KDA
    # Bone (effect-site) antibody level: first-order equilibration with serum, time constant
    # in days (ASSUMPTION: t1/2 4.8 d, the delay of Eudy 2015's "translation" compartment,
    # remodeling.md 2.1; an IgG reaches the bone's extracellular fluid over days). 0: none.
    effect_site_days: float = 4.8 / 0.6931


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


@dataclass(frozen=True)
class PKParameters:
    """The PK parameters of every drug (what ``compute_exposure`` needs)."""

    romosozumab: RomosozumabPK = field(default_factory=RomosozumabPK)
    denosumab: DenosumabPK = field(default_factory=DenosumabPK)
    alendronate: AlendronatePK = field(default_factory=AlendronatePK)
    teriparatide: TeriparatidePK = field(default_factory=TeriparatidePK)


__all__ = ["AlendronatePK", "DenosumabPK", "PKParameters", "ROMOSOZUMAB_MW_KDA", "RomosozumabPK",
           "TeriparatidePK", "fitted_pk"]
