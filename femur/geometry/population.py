"""Body-size and shape variation of the built-in bones: the population geometry of the cohorts.

The virtual cohorts (``femur.study.cohort``) sample the bones from these distributions
(women; men's lengths are scaled by :data:`MALE_SIZE_FACTOR`), and a man's default bones
(:func:`male_geometry`) are the builders' defaults scaled the same way. All values are
ASSUMPTIONS of plausible population values, UNCONFIRMED against a primary source (no
anthropometric source is in ``shared/science/``); the parameters are drawn independently
(their correlations are issue 12):

* anatomical femur (:data:`ANATOMICAL_SHAPE_F`, ``FemurShape`` fields; the cohort morphs
  the reference femur to them): head radius 22.0 +- 1.3 mm, neck length (head centre to
  the point of the neck axis closest to the shaft axis) 48 +- 4 mm, neck-shaft angle
  128 +- 5 deg, anteversion 12 +- 7 deg -- the parametric femur's values, whose
  definitions are the same; neck width (superior-inferior, narrowest section): the
  reference femur's own 33.7 mm with the parametric table's relative SD (2.2 / 29 = 7.6 %),
  because the parametric value (29 mm) is the diameter of a circular section, another
  measure; overall scale = the body-size factor (:func:`body_size_factor`), lengths
  scale with it. The reference (a Visible Human woman) has head radius 23.8 mm, neck
  length 56.7 mm, neck-shaft angle 120.8 deg, anteversion 12.7 deg: a cohort woman's
  femur is on average a morph of it toward a shorter, more valgus neck and a smaller head;
* parametric femur (:data:`FEMUR_GEOMETRY_F`, ``ProximalFemur`` fields) and vertebra
  (:data:`VERTEBRA_GEOMETRY_F`, ``Vertebra`` fields) as before issue 11.
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
#: anatomical femur shape (FemurShape field): (mean, sd, scales_with_body_size), women;
#: neck width: (None = the reference femur's value, relative sd, scales)
ANATOMICAL_SHAPE_F = {
    "head_radius_mm": (22.0, 1.3, True),
    "neck_length_mm": (48.0, 4.0, True),
    "neck_width_mm": (None, 2.2 / 29.0, True),
    "neck_shaft_angle_deg": (128.0, 5.0, False),
    "anteversion_deg": (12.0, 7.0, False),
}
#: sampled angles are kept inside these ranges (deg) before the morph check
ANGLE_RANGES_DEG = {"neck_shaft_angle_deg": (110.0, 145.0), "anteversion_deg": (-10.0, 35.0)}
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

_BUILDERS = {"parametric-femur": (ProximalFemur, FEMUR_GEOMETRY_F), "vertebra": (Vertebra, VERTEBRA_GEOMETRY_F)}


def body_size_factor(sex: str, height_m: float) -> float:
    """Length scale of a patient's bones: male factor x (1 + 0.5 x relative height deviation)."""
    sex = normalise_sex(sex)
    base = MALE_SIZE_FACTOR if sex == "male" else 1.0
    return base * (1.0 + 0.5 * (height_m / REFERENCE_HEIGHT_M[sex] - 1.0))


def male_geometry(kind: str) -> dict:
    """The built-in bone scaled to a man's size: for the anatomical femur (``"femur"``) the
    overall scale :data:`MALE_SIZE_FACTOR` (``FemurShape(scale=...)``); for the parametric
    bones (``"parametric-femur"``, ``"vertebra"``) the builder's default lengths that the
    cohort model scales with body size, times :data:`MALE_SIZE_FACTOR`."""
    if kind == "femur":
        return {"scale": MALE_SIZE_FACTOR}
    builder, table = _BUILDERS[kind]
    defaults = {f.name: f.default for f in dataclasses.fields(builder)}
    return {name: float(defaults[name]) * MALE_SIZE_FACTOR
            for name, (_, _, scales) in table.items() if scales and name in defaults}


__all__ = ["ANATOMICAL_SHAPE_F", "ANGLE_RANGES_DEG", "FEMUR_GEOMETRY_F", "MALE_SIZE_FACTOR",
           "REFERENCE_HEIGHT_M", "VERTEBRA_GEOMETRY_F", "body_size_factor", "male_geometry"]
