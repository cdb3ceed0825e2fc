"""Virtual patient: sex, age, menopause, body size, and the sex-hormone/age driver.

Driver of untreated loss (remodeling.md 1.5 and 7, "placebo = estrogen decline + PMO RANKL"):

* women: turnover driver D(t) = 1 + A_pmo * L(ysm(t)), with the Martínez-Reina 2019
  post-menopausal shape L(y) = xi^2 / (xi^2 + (y*365.25/tau)^2) (xi = 65, tau = 30 d:
  half-way after ~5.3 years); focal-balance deficit delta(t) = delta_0 * D(t)
  (each BMU refills a little less than it resorbed, more so early after menopause);
* men: no menopause step, D = 1; delta = male_deficit_ratio * delta_0 (ASSUMPTION).

A_pmo and delta_0 are fitted to calibration target #7 (natural loss rates).

Trabecular surface per bone volume by sex (issue 15): :attr:`Patient.trabecular_sv_factor`
scales the trabecular elements' specific surface S_v(f) (at the same BV/TV, S_v = f BS/BV
and BS/BV ~ 2/Tb.Th for plate-like trabeculae, so the factor is Tb.Th_women / Tb.Th_sex).
Khosla et al., JBMR 2006, 21:124 (HR-pQCT, ultradistal radius, 324 women and 278 men,
21-97 y) [abstract]: young men's Tb.Th is 28 % above young women's; from 20 to 90 y Tb.Th
falls 24 % in men and 18 % in women. Linear in age, at 70-90 y men's Tb.Th is then
1.28 x (1 - 0.24 a) / (1 - 0.18 a) = 1.22-1.19 x women's (a = 0.71-1; D, derived):
:data:`MALE_TRABECULAR_THICKNESS_RATIO` = 1.2, one value for the trial ages. The radius
stands in for the hip and spine (transfer UNCONFIRMED). Women 1 (the calibration is
untouched); men's value is a prediction input, not fitted.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from femur.core.errors import InputError, check_number
from femur.core.sex import MENOPAUSE_AGE_Y, normalise_sex
from femur.core.units import DAYS_PER_YEAR
from femur.remodeling.parameters import CellParameters



#: men's trabecular thickness relative to women's at 70-90 y (Khosla 2006, module docstring; D)
MALE_TRABECULAR_THICKNESS_RATIO = 1.2


#: The patient fields, named the same in every stage: this dataclass, the cohort's patient
#: dicts (``femur.study.cohort``), case records and results tables.
PATIENT_FIELDS = ("sex", "age_years", "years_since_menopause", "body_mass_kg", "height_m",
                  "fn_t_score", "ls_t_score")


@dataclass(frozen=True)
class Patient:
    """A virtual patient. Defaults: a 71-year-old postmenopausal woman with femoral-neck
    T-score -2.5 (issue 3; FRAME mean age 70.9, clinical-targets row 9).

    ``sex`` is "female" or "male" (short forms like "F" are accepted and normalised);
    ``ls_t_score`` is the spine's DXA-equivalent T-score (default: ``fn_t_score``)."""

    sex: str = "female"
    age_years: float = 71.0
    years_since_menopause: float | None = None
    body_mass_kg: float | None = None
    height_m: float | None = None
    fn_t_score: float | None = None
    ls_t_score: float | None = None

    def __post_init__(self):
        sex = normalise_sex(self.sex, "patient: sex")
        object.__setattr__(self, "sex", sex)
        age = _num("age_years", self.age_years)
        if not 18 <= age <= 110:
            raise InputError(f"patient: age_years must be between 18 and 110 years, got {age}")
        object.__setattr__(self, "age_years", age)
        ysm = self.years_since_menopause
        if sex == "male":
            if ysm not in (None, 0, 0.0):
                raise InputError("patient: years_since_menopause is only for women (sex='female')")
            ysm = None
        else:
            ysm = max(age - MENOPAUSE_AGE_Y, 0.0) if ysm is None else _num("years_since_menopause", ysm)
            if ysm < 0 or ysm > age:
                raise InputError(f"patient: years_since_menopause must be in [0, age], got {ysm}")
        object.__setattr__(self, "years_since_menopause", ysm)
        # defaults: ASSUMPTION, typical elderly Western adults
        bm = (65.0 if sex == "female" else 80.0) if self.body_mass_kg is None else self.body_mass_kg
        bm = _num("body_mass_kg", bm)
        if not 25 <= bm <= 250:
            raise InputError(f"patient: body_mass_kg must be in [25, 250], got {bm}")
        object.__setattr__(self, "body_mass_kg", bm)
        h = (1.60 if sex == "female" else 1.75) if self.height_m is None else self.height_m
        h = _num("height_m", h)
        if not 1.0 <= h <= 2.3:
            raise InputError(f"patient: height_m must be in [1.0, 2.3] (metres), got {h}")
        object.__setattr__(self, "height_m", h)
        # default T-scores: -2.5 women (issue 3); -1.5 men (ASSUMPTION)
        t = (-2.5 if sex == "female" else -1.5) if self.fn_t_score is None else self.fn_t_score
        t = _num("fn_t_score", t)
        if not -6 <= t <= 4:
            raise InputError(f"patient: fn_t_score must be in [-6, 4], got {t}")
        object.__setattr__(self, "fn_t_score", t)
        ls = t if self.ls_t_score is None else _num("ls_t_score", self.ls_t_score)
        if not -6 <= ls <= 4:
            raise InputError(f"patient: ls_t_score must be in [-6, 4], got {ls}")
        object.__setattr__(self, "ls_t_score", ls)

    @classmethod
    def from_record(cls, record: dict) -> "Patient":
        """The Patient of a cohort patient dict / case record (extra keys are ignored)."""
        return cls(**{k: record[k] for k in PATIENT_FIELDS if k in record})

    def to_dict(self) -> dict:
        return {k: getattr(self, k) for k in PATIENT_FIELDS}

    @property
    def is_female(self) -> bool:
        return self.sex == "female"

    @property
    def trabecular_sv_factor(self) -> float:
        """Scale of the trabecular specific surface S_v(f) for this patient's sex: Tb.Th of
        women over Tb.Th of the sex (1 for women, 1/1.2 for men; module docstring)."""
        return 1.0 if self.is_female else 1.0 / MALE_TRABECULAR_THICKNESS_RATIO

    # ---- driver of untreated loss ------------------------------------------------------
    def turnover_driver(self, t_days, cells: CellParameters) -> np.ndarray:
        """Absolute turnover driver D(t) (1 for men; 1 + A*L(ysm) for women)."""
        t_days = np.asarray(t_days, dtype=float)
        if not self.is_female:
            return np.ones_like(t_days)
        ysm_days = (self.years_since_menopause * DAYS_PER_YEAR) + t_days
        x = ysm_days / cells.pmo_tau_days
        lor = cells.pmo_xi**2 / (cells.pmo_xi**2 + x**2)
        return 1.0 + cells.pmo_amplitude * lor

    def drivers(self, t_days, cells: CellParameters, aging: bool = True):
        """(D_rel(t), delta(t)): turnover relative to day 0 and focal-balance deficit."""
        t_days = np.asarray(t_days, dtype=float)
        if not aging:
            return np.ones_like(t_days), np.zeros_like(t_days)
        d = self.turnover_driver(t_days, cells)
        d0 = self.turnover_driver(0.0, cells)
        ratio = 1.0 if self.is_female else cells.male_deficit_ratio
        return d / d0, cells.deficit_basal * ratio * d


def _num(name, v):
    return check_number(v, f"patient: {name}")
