"""Body-size variation of the built-in bones: the population geometry of the cohorts.

The virtual cohorts (``femur.study.cohort``) sample the parametric femur and vertebra from
these distributions (women; men are scaled by :data:`MALE_SIZE_FACTOR`), and a man's
default bones (:func:`male_geometry`) are the builders' defaults scaled the same way. All
values are ASSUMPTIONS of plausible population values (see ``femur.study.cohort``).

The parameter names are those of ``ProximalFemur`` and ``Vertebra``
(``ProximalFemur(**params)``).
"""

from __future__ import annotations

import dataclasses

from femur.core.sex import normalise_sex
from femur.geometry.femur_model import ProximalFemur
from femur.geometry.vertebra import Vertebra

#: femur parameter: (mean, sd, scales_with_body_size), women
FEMUR_GEOMETRY_F = {
    "head_radius_mm": (22.0, 1.3, True),
    "neck_length_mm": (48.0, 4.0, True),
    "neck_diameter_mm": (29.0, 2.2, True),
    "neck_shaft_angle_deg": (128.0, 5.0, False),
    "anteversion_deg": (12.0, 7.0, False),
    "shaft_diameter_mm": (27.0, 2.0, True),
}
#: vertebra parameter: (mean, sd, scales_with_body_size), women
VERTEBRA_GEOMETRY_F = {
    "semi_axis_lateral_mm": (20.0, 1.4, True),
    "semi_axis_ap_mm": (15.0, 1.1, True),
    "height_mm": (25.0, 1.7, True),
}
#: men's lengths relative to women's
MALE_SIZE_FACTOR = 1.10
#: reference body height per sex (m): lengths scale with 0.5 x the relative deviation
REFERENCE_HEIGHT_M = {"female": 1.58, "male": 1.74}

_BUILDERS = {"femur": (ProximalFemur, FEMUR_GEOMETRY_F), "vertebra": (Vertebra, VERTEBRA_GEOMETRY_F)}


def body_size_factor(sex: str, height_m: float) -> float:
    """Length scale of a patient's bones: male factor x (1 + 0.5 x relative height deviation)."""
    sex = normalise_sex(sex)
    base = MALE_SIZE_FACTOR if sex == "male" else 1.0
    return base * (1.0 + 0.5 * (height_m / REFERENCE_HEIGHT_M[sex] - 1.0))


def male_geometry(kind: str) -> dict:
    """The built-in bone scaled to a man's size: the builder's default lengths that the
    cohort model scales with body size, times :data:`MALE_SIZE_FACTOR`."""
    builder, table = _BUILDERS[kind]
    defaults = {f.name: f.default for f in dataclasses.fields(builder)}
    return {name: float(defaults[name]) * MALE_SIZE_FACTOR
            for name, (_, _, scales) in table.items() if scales and name in defaults}


__all__ = ["FEMUR_GEOMETRY_F", "MALE_SIZE_FACTOR", "REFERENCE_HEIGHT_M", "VERTEBRA_GEOMETRY_F",
           "body_size_factor", "male_geometry"]
