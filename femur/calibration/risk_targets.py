"""The fracture-risk calibration targets (clinical-targets.md rows 8 and 10-15) and the
checks, as data for ``femur.calibration.risk``.

Only the rows under "Calibration targets" are fitted; the checks ("Checks, not targets")
are printed beside them. Romosozumab fracture results (FRAME, ARCH, BRIDGE) are never
here: they are predictions.

A fitted incidence is a binomial observation: ``events`` women with at least one new
fracture among ``n`` (the published proportion times the arm size where only the
proportion is published). Where the arm size is not in the notes it is an ASSUMPTION,
stated with the target. FREEDOM's cumulative incidences at months 12, 24 and 36 come from
the same women, so they enter as the first interval and then the conditional intervals
(new fractures in months 12-24 among the women without one by month 12, ...): a product of
binomials that does not count the same women three times.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Target:
    """One number of the targets table: the model's arm incidence at ``month`` (or in
    ``(since_month, month]`` given none before), optionally in a subgroup of prevalent
    vertebral fracture counts."""

    key: str
    row: str
    study: str
    arm: str
    kind: str  # "vertebral", "hip", "hip_per_fall"
    month: float
    value: float  # proportion
    n: float  # women (falls for hip_per_fall) the proportion is of
    role: str  # "fit" (in the likelihood) or "check" (reported only)
    label: str
    since_month: float | None = None
    since_value: float | None = None
    prevalent: tuple | None = None  # counts (0..3) of the subgroup
    note: str = ""
    #: the study evaluated instead when the courses have no case of ``study`` (courses
    #: stored before ``study`` was a calibration study)
    fallback_study: str | None = None

    @property
    def events(self) -> float:
        if self.since_month is None:
            return self.value * self.n
        return (self.value - self.since_value) * self.n

    @property
    def at_risk(self) -> float:
        return self.n if self.since_month is None else (1.0 - self.since_value) * self.n

    @property
    def conditional_value(self) -> float:
        if self.since_month is None:
            return self.value
        return (self.value - self.since_value) / (1.0 - self.since_value)


@dataclass(frozen=True)
class RatioTarget:
    """A published relative risk (arm / reference arm) with its 95 % CI: reported."""

    key: str
    row: str
    study: str
    arm: str
    reference: str
    kind: str
    month: float
    value: float
    ci95: tuple
    label: str


#: arm sizes where the notes give only a total (ASSUMPTION: equal arms)
FRAME_PLACEBO_N = 7180 / 2  # row 9: 7,180 women, two arms
FREEDOM_N = 3700  # row 10: "about 3,700 per arm"
FPT_N = 1637 / 3  # row 12: 1,637 women; FPT had three arms (placebo, 20 and 40 ug; R4)
FIT1_N = 2027 / 2  # row 13: 2,027 women, two arms
#: FPT prevalent-count shares of the virtual cohort (femur/data/studies/fpt.toml)
FPT_COUNT_SHARES = {1: 0.45, 2: 0.25, 3: 0.30}

#: The hip cohort. The hip targets (row 11's FREEDOM placebo hip incidence, row 15's hip
#: fractures per fall) rest on the tail of the fall-strength distribution: in FREEDOM's 100
#: paired placebo women, 1 woman carried 44 % and 5 carried 88 % of the summed per-fall risk
#: (an effective number of 3.7 women, the report's concentration check, session 13). So the
#: two hip targets are evaluated on a larger placebo-only cohort of OTHER women drawn from
#: the same FREEDOM study file (inclusion, regimen, visits) with its own seed. The paired
#: FREEDOM arms keep the relative risks and the denosumab hip check.
HIP_COHORT = "freedom_hip"
HIP_COHORT_BASE = "freedom"
HIP_COHORT_SEED = 2010  # FREEDOM's study seed is 2009: independent women
DEFAULT_HIP_PATIENTS = 500


def _freedom(arm: str, values) -> list[Target]:
    out, prev = [], None
    for month, v in zip((12.0, 24.0, 36.0), values):
        out.append(Target(
            f"freedom_{arm}_vertebral_m{month:g}", "10", "freedom", arm, "vertebral", month, v, FREEDOM_N,
            "fit", f"FREEDOM {arm}, new vertebral fx, M{month:g}",
            since_month=None if prev is None else prev[0], since_value=None if prev is None else prev[1],
            note="n about 3,700 per arm (row 10)"))
        prev = (month, v)
    return out


TARGETS: tuple[Target, ...] = (
    Target("frame_placebo_vertebral_m12", "8", "frame", "placebo", "vertebral", 12.0, 0.018, FRAME_PLACEBO_N,
           "fit", "FRAME placebo, new vertebral fx, M12", note="n = 7,180 / 2 (ASSUMPTION: equal arms)"),
    *_freedom("placebo", (0.022, 0.050, 0.072)),
    *_freedom("denosumab", (0.009, 0.014, 0.023)),
    *(Target(f"fpt_placebo_vertebral_prev{c}", "12", "fpt", "placebo", "vertebral", 21.0, v, FPT_N * FPT_COUNT_SHARES[c],
             "fit", f"FPT placebo, {c if c < 3 else '>= 3'} prevalent fx, new vertebral fx, M21", prevalent=(c,),
             note="Gallagher 2005 (S); subgroup n = FPT arm x the cohort's count share (ASSUMPTION)")
      for c, v in ((1, 0.07), (2, 0.16), (3, 0.23))),
    Target("fpt_placebo_vertebral", "12", "fpt", "placebo", "vertebral", 21.0, 0.14, FPT_N, "check",
           "FPT placebo, new vertebral fx, M21 (all; fitted through the count subgroups)",
           note="median observation 21 months"),
    Target("fpt_teriparatide_vertebral", "12", "fpt", "teriparatide", "vertebral", 21.0, 0.05, FPT_N, "fit",
           "FPT teriparatide 20 ug, new vertebral fx, M21", note="n = 1,637 / 3 (ASSUMPTION)"),
    Target("fit1_placebo_vertebral", "13", "fit1", "placebo", "vertebral", 36.0, 0.150, FIT1_N, "fit",
           "FIT-1 placebo, new vertebral fx, M36", note="n = 2,027 / 2 (ASSUMPTION)"),
    Target("fit1_alendronate_vertebral", "13", "fit1", "alendronate", "vertebral", 36.0, 0.080, FIT1_N, "fit",
           "FIT-1 alendronate, new vertebral fx, M36", note="n = 2,027 / 2 (ASSUMPTION)"),
    Target("fit2_placebo_vertebral", "14", "fit2", "placebo", "vertebral", 50.0, 78 / 2218, 2218, "fit",
           "FIT-2 placebo, new vertebral fx, 4.2 y", note="78/2218 (S)"),
    Target("fit2_alendronate_vertebral", "14", "fit2", "alendronate", "vertebral", 50.0, 43 / 2214, 2214, "fit",
           "FIT-2 alendronate, new vertebral fx, 4.2 y", note="43/2214 (S)"),
    Target("freedom_placebo_hip_m36", "11", HIP_COHORT, "placebo", "hip", 36.0, 0.012, FREEDOM_N, "fit",
           "FREEDOM placebo, hip fx, M36", note="n about 3,700 per arm (row 10); evaluated on the hip cohort",
           fallback_study=HIP_COHORT_BASE),
    Target("freedom_denosumab_hip_m36", "11", "freedom", "denosumab", "hip", 36.0, 0.007, FREEDOM_N, "check",
           "FREEDOM denosumab, hip fx, M36 (prediction of the hip model)"),
    Target("hips_per_fall", "15", HIP_COHORT, "placebo", "hip_per_fall", 0.0, 30 / 2377, 2377, "fit",
           "hip fractures per fall (all falls, baseline)",
           note="30 of 2,377 filmed falls in long-term care (Yang 2020); evaluated on the FREEDOM-like hip "
                "cohort at baseline (a community cohort: population mismatch, see the report)",
           fallback_study=HIP_COHORT_BASE),
)

RATIOS: tuple[RatioTarget, ...] = (
    RatioTarget("freedom_rr_m12", "10", "freedom", "denosumab", "placebo", "vertebral", 12.0, 0.39, (0.26, 0.58),
                "FREEDOM RR new vertebral fx, M12"),
    RatioTarget("freedom_rr_m24", "10", "freedom", "denosumab", "placebo", "vertebral", 24.0, 0.29, (0.21, 0.39),
                "FREEDOM RR new vertebral fx, M24"),
    RatioTarget("freedom_rr_m36", "10", "freedom", "denosumab", "placebo", "vertebral", 36.0, 0.32, (0.26, 0.41),
                "FREEDOM RR new vertebral fx, M36"),
    RatioTarget("freedom_hr_hip", "11", "freedom", "denosumab", "placebo", "hip", 36.0, 0.60, (0.37, 0.97),
                "FREEDOM HR hip fx, M36 (hip: a prediction)"),
    RatioTarget("fpt_rr", "12", "fpt", "teriparatide", "placebo", "vertebral", 21.0, 0.35, (0.22, 0.55),
                "FPT RR new vertebral fx"),
    RatioTarget("fit1_rr", "13", "fit1", "alendronate", "placebo", "vertebral", 36.0, 0.53, (0.41, 0.68),
                "FIT-1 RR new vertebral fx"),
    RatioTarget("fit1_rh_hip", "13", "fit1", "alendronate", "placebo", "hip", 36.0, 0.49, (0.23, 0.99),
                "FIT-1 RH hip fx (hip: a prediction)"),
    RatioTarget("fit2_rr", "14", "fit2", "alendronate", "placebo", "vertebral", 50.0, 0.56, (0.39, 0.80),
                "FIT-2 RR new vertebral fx"),
)

#: the studies the calibration simulates and the arms it needs (FRAME: placebo only; its
#: romosozumab arm would be a prediction and is not run here)
CALIBRATION_STUDIES = {"frame": ("placebo",), "freedom": None, "fpt": None, "fit1": None, "fit2": None}

#: a check cohort for the SOF hip incidence (clinical-targets.md, "Checks, not targets":
#: about 4.9 hip fractures per 1,000 woman-years in white women >= 65, SOF, Cummings
#: NEJM 1995): community women aged 65 and over with no BMD criterion, untreated, 12 months.
#: Its age distribution (mean 73, SD 6 years, 65-99) is an ASSUMPTION (not in the notes).
SOF_CHECK = {
    "study": {"name": "sof_check", "duration_months": 12, "visit_months": [0, 12], "seed": 1995,
              "description": "SOF-like check cohort: women >= 65, no BMD criterion, untreated"},
    "cohort": {"size": 8, "sex": "female", "age_mean": 73.0, "age_sd": 6.0,
               "inclusion": {"age": [65, 99]}},
    "arms": [{"name": "placebo", "regimen": "placebo"}],
    "model": {"mesh_size_mm": 4.0, "order": 1, "solver": "gamg", "fe_interval_days": 30},
}
SOF_HIP_PER_1000_WOMAN_YEARS = 4.9

#: between-person gradients of the notes (checks; fracture-risk note section 2): odds or
#: hazard ratio per SD decrease of FE strength, women
BETWEEN_PERSON_CHECKS = {
    "vertebral": (2.8, (1.8, 4.3), "Kopperdahl 2014 (AGES), spine OR per SD of FE strength"),
    "hip": (4.2, (2.6, 6.9), "Kopperdahl 2014 (AGES), hip OR per SD of FE strength"),
}

__all__ = ["BETWEEN_PERSON_CHECKS", "CALIBRATION_STUDIES", "DEFAULT_HIP_PATIENTS", "HIP_COHORT", "HIP_COHORT_BASE",
           "HIP_COHORT_SEED", "RATIOS", "SOF_CHECK", "SOF_HIP_PER_1000_WOMAN_YEARS",
           "TARGETS", "RatioTarget", "Target"]
