"""Fracture risk: a calibrated spine hazard and a fall model for the hip.

* :mod:`~femur.outcomes.risk.spine` -- new vertebral fracture: per-woman hazard from her
  monthly strength course (within- and between-person gradients), turnover (CTX),
  prevalent fractures, age and how the trial counts a new fracture, integrated monthly;
* :mod:`~femur.outcomes.risk.hip` -- hip fracture: negative-binomial falls, measured
  impact velocities, spring-mass impact force, fall strength in three directions and one
  fitted strength scale;
* :mod:`~femur.outcomes.risk.courses` -- a case's monthly inputs (strength interpolated in
  log strength between FE visits, CTX, patient attributes);
* :mod:`~femur.outcomes.risk.model` -- incidences of a batch of cases for one parameter set;
* :mod:`~femur.outcomes.risk.parameters` -- the calibrated parameters, their covariance
  and provenance (``femur/data/fracture_risk.json``, written by
  ``python -m femur.calibration.risk``);
* :mod:`~femur.outcomes.risk.bct` -- BCT-style strength classes (VirtuOst thresholds).

Science notes: ``shared/science/fracture-risk-and-performance.md`` and the calibration
targets rows 8-15 of ``shared/science/clinical-targets.md``.
"""

from femur.outcomes.risk.bct import BCT_NOTE, BCT_THRESHOLDS_N, bct_class
from femur.outcomes.risk.courses import (
    RISK_PREFIXES,
    CourseBatch,
    RiskCourse,
    case_inputs,
    month_grid,
    with_surrogate_strengths,
)
from femur.outcomes.risk.model import (
    hip_fractures_per_fall,
    hip_incidence,
    hip_per_impact,
    hip_rate_per_year,
    risk_concentration,
    spine_incidence,
    spine_log_hazard,
)
from femur.outcomes.risk.parameters import (
    FITTED_PARAMETERS,
    PARAMETER_FILE,
    RiskParameters,
    default_fixed,
    fixed_sources,
    load_parameters,
)
from femur.outcomes.risk.spine import DEFAULT_FRACTURE_DEFINITION, FRACTURE_DEFINITIONS

__all__ = [
    "BCT_NOTE",
    "BCT_THRESHOLDS_N",
    "DEFAULT_FRACTURE_DEFINITION",
    "FRACTURE_DEFINITIONS",
    "FITTED_PARAMETERS",
    "PARAMETER_FILE",
    "RISK_PREFIXES",
    "CourseBatch",
    "RiskCourse",
    "RiskParameters",
    "bct_class",
    "case_inputs",
    "with_surrogate_strengths",
    "default_fixed",
    "fixed_sources",
    "hip_fractures_per_fall",
    "hip_incidence",
    "hip_per_impact",
    "hip_rate_per_year",
    "load_parameters",
    "month_grid",
    "risk_concentration",
    "spine_incidence",
    "spine_log_hazard",
]
