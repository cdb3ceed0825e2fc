"""Treatments: dosing regimens, sequences and drug pharmacokinetics."""

from femur.treatments.pk import Exposure, compute_exposure
from femur.treatments.regimen import (
    DRUGS,
    KNOWN_DRUGS,
    Regimen,
    TreatmentSequence,
    as_sequence,
    parse_treatment,
)

__all__ = [
    "DRUGS",
    "KNOWN_DRUGS",
    "Exposure",
    "Regimen",
    "TreatmentSequence",
    "as_sequence",
    "compute_exposure",
    "parse_treatment",
]
