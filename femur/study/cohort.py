"""Virtual cohorts: reproducible virtual patients from a seed.

Patient ``i`` draws everything from ``numpy.random.SeedSequence(entropy=seed,
spawn_key=(i, k))`` streams (``k`` = one stream per group of variables), so patient
``i`` is the same whatever the cohort size, the rank count or the order of sampling.
Inclusion criteria are applied by rejection sampling inside the patient's own stream.

Distributions (means, SDs) -- all are ASSUMPTIONS of plausible population values for
older postmenopausal women unless a source is named; none is tuned to trial outcomes:

* age: normal(age_mean, age_sd) years truncated to the inclusion range; the default
  70.9 +- 7 is the FRAME mean age (clinical-targets.md row 9, Geusens 2019) with an
  assumed SD; a trial's study file gives its own mean (femur/data/studies/).
* prevalent vertebral fractures: a count 0, 1, 2 or 3 (3 stands for ">= 3") drawn from
  the study's shares (``[cohort] prevalent_vertebral_fractures``) by a low-discrepancy
  sequence of its own (:func:`prevalent_fracture_count`), independent of age and T-scores
  (ASSUMPTION: the trials give the shares, not the joint distribution). The fracture-risk
  model reads it (``femur.outcomes.risk``).
* body mass: normal(65, 11) kg in [40, 120]; height: normal(1.58, 0.065) m in
  [1.40, 1.85]: centred on the ARF0 cohort, about 63-65 kg and 1.58 m (Bhattacharya
  2019; fracture-risk note section 1).  Men: normal(80, 12) kg, normal(1.74, 0.07) m.
* trochanteric soft tissue: 30 mm + 2 mm per kg/m2 of BMI above 25, SD 8 mm, in
  [5, 80] mm (ASSUMPTION: no source yet; the hip risk of the thinnest women rests on it,
  see the README's "Fracture risk").
* T-scores before inclusion (total hip, femoral neck, lumbar spine): trivariate normal,
  means (-1.5, -1.9, -1.6), SD 1.0, correlations TH-FN 0.9, TH-LS 0.6, FN-LS 0.55, as in
  a screened older population; then the study's inclusion ranges by rejection.
* anatomical femur shape (``femur_shape``, the default femur; ``FemurShape`` fields,
  ``femur.geometry.population.ANATOMICAL_SHAPE_F``, UNCONFIRMED): overall scale = the
  body-size factor (men x 1.10, 0.5 x the relative height deviation); head radius
  22.0 +- 1.3 mm, neck length 48 +- 4 mm, neck width the reference's 33.7 mm +- 7.6 %
  (lengths times the scale), neck-shaft angle 128 +- 5 deg in [110, 145], anteversion
  12 +- 7 deg in [-10, 35], drawn independently; a draw outside the angle ranges or whose
  morph of the reference femur inverts or over-stretches an element of a shipped mesh
  (``femur.geometry.anatomical.check_shape``) is rejected and drawn again in the
  patient's own stream (the count is recorded).
* parametric femur geometry (``femur_params``, used with ``model.femur =
  "parametric-femur"``; women; men x 1.10 for lengths): head radius 22.0 +- 1.3 mm, neck
  length (head centre to shaft axis, along the neck axis) 48 +- 4 mm, neck diameter
  29 +- 2.2 mm, neck-shaft angle 128 +- 5 deg, anteversion 12 +- 7 deg, shaft diameter
  27 +- 2 mm; lengths also scale with body height (0.5 x relative height deviation).
* vertebra (L1-like body, women; men x 1.10): endplate semi-axes 20 +- 1.4 mm (lateral)
  and 15 +- 1.1 mm (antero-posterior), body height 25 +- 1.7 mm (centred on the
  defaults of ``femur.geometry.vertebra.Vertebra``).  Cortical thicknesses are not
  sampled: the builders use effective, mesh-resolvable values.
* turnover multiplier and drug-response multiplier: log-normal, median 1, sigma 0.25
  and 0.20.

The femur and vertebra parameter dicts use the field names of
``femur.geometry.morph.FemurShape`` (``femur_shape``),
``femur.geometry.femur_model.ProximalFemur`` (``femur_params``) and
``femur.geometry.vertebra.Vertebra`` (``vertebra_params``); their distributions live in
``femur.geometry.population``.

Patients from CT scans (``[cohort] scans``, :func:`scan_patient`) are not sampled: the
scan gives the bone and the study file the sex, age and (optionally) body size; nothing
else varies (turnover and drug-response multipliers 1). Their T-scores are measured on the
scan when the case runs (``femur.workflows.scans.scan_patient``), so the patient dict
holds None for them.

A patient dict uses the field names of ``femur.remodeling.patient.Patient`` (``sex`` is
"female" or "male", ``age_years``, ``fn_t_score``, ``th_t_score``, ``ls_t_score``,
``body_mass_kg``, ``height_m``) plus the cohort's own (ids, seeds, geometry, multipliers).
"""

from __future__ import annotations

import numpy as np

from femur.core.errors import InputError, MeshError
from femur.geometry.anatomical import AnatomicalFemur, check_shape, read_reference
from femur.geometry.morph import FemurShape
from femur.geometry.population import (
    ANATOMICAL_SHAPE_F,
    ANGLE_RANGES_DEG,
    FEMUR_GEOMETRY_F,
    VERTEBRA_GEOMETRY_F,
    body_size_factor,
)
from femur.remodeling.patient import Patient
from femur.study.spec import CohortSpec

MAX_REJECTION_TRIES = 200_000
#: draws of an anatomical femur shape before the cohort gives up (a clear error)
MAX_SHAPE_TRIES = 200

# Stream ids (second spawn_key entry) -- never renumber: it would change every cohort.
_STREAM_DEMOGRAPHICS = 0
_STREAM_T_SCORES = 1
_STREAM_GEOMETRY = 2
_STREAM_RESPONSE = 3
_STREAM_CASE = 4
_STREAM_RISK = 5
_STREAM_FEMUR_SHAPE = 6
_STREAM_FRACTURES = 7

T_SCORE_MEANS = {"th": -1.5, "fn": -1.9, "ls": -1.6}
T_SCORE_SD = 1.0
T_SCORE_CORR = np.array(
    [
        [1.0, 0.9, 0.6],  # th
        [0.9, 1.0, 0.55],  # fn
        [0.6, 0.55, 1.0],  # ls
    ]
)



def _stream(seed: int, index: int, stream: int) -> np.random.Generator:
    ss = np.random.SeedSequence(entropy=int(seed), spawn_key=(int(index), stream))
    return np.random.Generator(np.random.PCG64(ss))


def derived_seed(seed: int, index: int, stream: int) -> int:
    """A 63-bit integer seed for patient ``index`` (JSON friendly)."""
    ss = np.random.SeedSequence(entropy=int(seed), spawn_key=(int(index), stream))
    return int(ss.generate_state(1, dtype=np.uint64)[0]) >> 1


def _truncnorm(rng, mean, sd, lo, hi, what):
    for _ in range(MAX_REJECTION_TRIES):
        x = rng.normal(mean, sd)
        if lo <= x <= hi:
            return float(x)
    raise InputError(f"cohort: cannot sample {what} within [{lo}, {hi}] (inclusion too narrow?)")


def _reference_neck_width_mm() -> float:
    return float(read_reference(AnatomicalFemur().mesh_path())["anatomy"]["neck_width_mm"])


def sample_femur_shape(rng: np.random.Generator, size: float) -> tuple[dict, int]:
    """An anatomical femur shape (``FemurShape`` fields) for body-size factor ``size``, and
    the number of rejected draws (module docstring)."""
    ref_width = None
    for tries in range(MAX_SHAPE_TRIES):
        shape = {"scale": float(size)}
        for name, (mean, sd, scales) in ANATOMICAL_SHAPE_F.items():
            f = size if scales else 1.0
            z = rng.standard_normal()
            if mean is None:  # relative sd around the reference femur's value
                ref_width = _reference_neck_width_mm() if ref_width is None else ref_width
                shape[name] = float(ref_width * f * (1.0 + sd * z))
            else:
                shape[name] = float((mean + sd * z) * f)
        if any(not lo <= shape[k] <= hi for k, (lo, hi) in ANGLE_RANGES_DEG.items()):
            continue
        try:
            check_shape(FemurShape(**shape))
        except (InputError, MeshError):
            continue
        return shape, tries
    raise InputError(f"cohort: no plausible anatomical femur shape in {MAX_SHAPE_TRIES} draws "
                     f"(body-size factor {size:.3f})")


def _included(t: dict, inclusion) -> bool:
    if not inclusion.t_score:
        return True
    hits = [lo <= t[site] <= hi for site, (lo, hi) in inclusion.t_score.items()]
    return any(hits) if inclusion.t_score_rule == "any" else all(hits)


def scan_patient(index: int, seed: int, cohort: CohortSpec) -> dict:
    """Patient ``index`` of a cohort of CT scans (a plain dict; ``scan`` says how to read
    the scan, ``scan_where`` where it was listed)."""
    if not 0 <= index < len(cohort.scans):
        raise InputError(f"scan patient index must be in [0, {len(cohort.scans)}), got {index}")
    e = cohort.scans[index]
    p = Patient(sex=e.sex, age_years=e.age_years, body_mass_kg=e.body_mass_kg, height_m=e.height_m)
    return {
        "index": int(index),
        "patient_id": e.id,
        "seed": {"entropy": int(seed), "spawn_key": [int(index)]},
        "sex": p.sex,
        "age_years": p.age_years,
        "body_mass_kg": p.body_mass_kg,
        "height_m": p.height_m,
        "bmi_kg_m2": float(p.body_mass_kg / p.height_m**2),
        "th_t_score": None,
        "fn_t_score": None,
        "ls_t_score": None,
        "turnover_multiplier": 1.0,
        "drug_response_multiplier": 1.0,
        "scan": dict(e.scan),
        "scan_where": e.where,
        "case_seed": derived_seed(seed, index, _STREAM_CASE),
        "risk_seed": derived_seed(seed, index, _STREAM_RISK),
    }


def sample_patient(index: int, seed: int, cohort: CohortSpec) -> dict:
    """Virtual patient ``index`` of the cohort with study seed ``seed`` (a plain dict);
    patient ``index`` of the scans for a cohort of CT scans."""
    if index < 0:
        raise InputError(f"patient index must be >= 0, got {index}")
    if cohort.scans:
        return scan_patient(index, seed, cohort)
    sex = cohort.sex
    inc = cohort.inclusion

    rng = _stream(seed, index, _STREAM_DEMOGRAPHICS)
    age = _truncnorm(rng, cohort.age_mean, cohort.age_sd, inc.age[0], inc.age[1], "age")
    if sex == "female":
        mass = _truncnorm(rng, 65.0, 11.0, 40.0, 120.0, "body mass")
        height = _truncnorm(rng, 1.58, 0.065, 1.40, 1.85, "height")
    else:
        mass = _truncnorm(rng, 80.0, 12.0, 50.0, 140.0, "body mass")
        height = _truncnorm(rng, 1.74, 0.07, 1.55, 2.00, "height")
    bmi = mass / height**2
    stt = float(np.clip(30.0 + 2.0 * (bmi - 25.0) + rng.normal(0.0, 8.0), 5.0, 80.0))

    rng = _stream(seed, index, _STREAM_T_SCORES)
    cov = T_SCORE_CORR * T_SCORE_SD**2
    means = np.array([T_SCORE_MEANS[s] for s in ("th", "fn", "ls")])
    chol = np.linalg.cholesky(cov)
    for _ in range(MAX_REJECTION_TRIES):
        z = means + chol @ rng.standard_normal(3)
        t = {"th": float(z[0]), "fn": float(z[1]), "ls": float(z[2])}
        if _included(t, inc):
            break
    else:
        raise InputError(
            f"cohort: no patient meets the T-score inclusion {inc.t_score} "
            f"(rule {inc.t_score_rule!r}) in {MAX_REJECTION_TRIES} draws"
        )

    # Anatomy. Issue 12 asks for correlated anatomy (head, neck width and length, neck-shaft
    # angle, anteversion, scaled with body size, implausible combinations rejected): that
    # sampler belongs to femur.geometry.population (issue 11 makes the anatomical femur the
    # default and samples its shape per patient); draw it here from this same stream.
    rng = _stream(seed, index, _STREAM_GEOMETRY)
    size = body_size_factor(sex, height)
    femur = {}
    for name, (mean, sd, scales) in FEMUR_GEOMETRY_F.items():
        f = size if scales else 1.0
        femur[name] = float(mean * f + sd * f * rng.standard_normal())
    femur["neck_shaft_angle_deg"] = float(np.clip(femur["neck_shaft_angle_deg"], 110.0, 145.0))
    femur["anteversion_deg"] = float(np.clip(femur["anteversion_deg"], -10.0, 35.0))
    for name in ("head_radius_mm", "neck_length_mm", "neck_diameter_mm", "shaft_diameter_mm"):
        femur[name] = float(max(femur[name], 0.5 * FEMUR_GEOMETRY_F[name][0]))
    # the builder needs the neck narrower than 1.25 x the shaft (ProximalFemur.validate):
    # keep sampled necks inside that anatomical bound (1.2 x, a 4 % margin)
    femur["neck_diameter_mm"] = float(min(femur["neck_diameter_mm"], 1.2 * femur["shaft_diameter_mm"]))
    vert = {}
    for name, (mean, sd, scales) in VERTEBRA_GEOMETRY_F.items():
        f = size if scales else 1.0
        vert[name] = float(max(mean * f + sd * f * rng.standard_normal(), 0.5 * mean))

    shape, rejected = sample_femur_shape(_stream(seed, index, _STREAM_FEMUR_SHAPE), size)

    rng = _stream(seed, index, _STREAM_RESPONSE)
    turnover = float(np.exp(rng.normal(0.0, 0.25)))
    response = float(np.exp(rng.normal(0.0, 0.20)))

    prevalent = prevalent_fracture_count(seed, index, cohort.prevalent_vertebral_fractures)

    return {
        "index": int(index),
        "patient_id": f"p{index:05d}",
        "seed": {"entropy": int(seed), "spawn_key": [int(index)]},
        "sex": sex,
        "age_years": age,
        "body_mass_kg": mass,
        "height_m": height,
        "bmi_kg_m2": float(bmi),
        "trochanteric_soft_tissue_mm": stt,
        "th_t_score": t["th"],
        "fn_t_score": t["fn"],
        "ls_t_score": t["ls"],
        "turnover_multiplier": turnover,
        "drug_response_multiplier": response,
        "femur_shape": shape,
        "femur_shape_rejected_draws": int(rejected),
        "prevalent_vertebral_fractures": prevalent,
        "femur_params": femur,
        "vertebra_params": vert,
        "case_seed": derived_seed(seed, index, _STREAM_CASE),
        "risk_seed": derived_seed(seed, index, _STREAM_RISK),
    }


#: golden-ratio step of the low-discrepancy sequence of the prevalent-fracture draws
_GOLDEN = 0.6180339887498949


def prevalent_fracture_count(seed: int, index: int, shares) -> int:
    """Patient ``index``'s prevalent vertebral fracture count (0, 1, 2 or 3 = ">= 3") from
    ``shares``. The uniform number behind it is ``frac(u0 + index * 0.618...)`` (a golden-
    ratio sequence with a start ``u0`` drawn from the study seed): it depends on the
    patient's index only, not on the cohort size, and any first ``n`` patients match the
    shares closely (within about 1/n), so that even a small virtual cohort has each count
    subgroup a trial's targets are given for."""
    p = np.asarray(shares, dtype=float)
    u0 = _stream(seed, 0, _STREAM_FRACTURES).uniform()
    u = (u0 + index * _GOLDEN) % 1.0
    return int(min(np.searchsorted(np.cumsum(p) / p.sum(), u, side="right"), len(p) - 1))


def generate_cohort(cohort: CohortSpec, seed: int, size: int | None = None) -> list[dict]:
    """Patients ``0 .. size-1`` (default ``cohort.size``)."""
    n = cohort.size if size is None else int(size)
    if n < 1:
        raise InputError(f"cohort size must be >= 1, got {n}")
    return [sample_patient(i, seed, cohort) for i in range(n)]


__all__ = ["derived_seed", "generate_cohort", "prevalent_fracture_count", "sample_femur_shape",
           "sample_patient", "scan_patient"]
