"""Treatments: the drug table, dosing regimens and sequences, drug pharmacokinetics.

Imports nothing above the foundations (``femur.core``): ``from femur.treatments import
Regimen`` works on its own and does not load DOLFINx.
"""

from femur.treatments.drugs import DRUGS, KNOWN_DRUGS, Drug, get_drug
from femur.treatments.pk import Exposure, compute_exposure
from femur.treatments.pk_parameters import PKParameters
from femur.treatments.regimen import (
    Regimen,
    TreatmentSequence,
    as_sequence,
    course_months,
    parse_treatment,
)

__all__ = [
    "DRUGS",
    "KNOWN_DRUGS",
    "Drug",
    "Exposure",
    "PKParameters",
    "Regimen",
    "TreatmentSequence",
    "as_sequence",
    "compute_exposure",
    "course_months",
    "get_drug",
    "parse_treatment",
]
