"""Apparent-density fields (g/cm3) on a Bone: validation, assignment and the age model.

``Bone.density`` is a DG0 dolfinx Function of *wet apparent* density in g/cm3 (one value per
cell). Ash density = 0.6 * apparent (Schileo 2008, biomechanics.md 1.1; ``femur.core.units``).

* :func:`validate_density` -- rejects negative, NaN/inf, > 2.3 g/cm3 values and values that
  look like Hounsfield units or mg/cm3, saying which unit and how to convert.
* :func:`assign_density` -- per-compartment values (cortical / trabecular / layers) or an
  explicit per-cell array or a function of position.
* :func:`density_for_age` -- typical cortical and trabecular apparent densities for a woman or
  a man of a given age (a documented, partly assumed model, see its docstring).

A bone at a chosen DXA-equivalent T-score needs the DXA projection (an outcome), so it is
built one stage up: ``femur.workflows.t_score.bone_with_t_score``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Mapping

import numpy as np

from femur.core.mpi import MPI
import dolfinx  # noqa: E402

from femur.core.errors import DensityError, InputError  # noqa: E402
from femur.core.sex import MENOPAUSE_AGE_Y, normalise_sex  # noqa: E402

#: Physical ceiling for wet apparent density (g/cm3): fully mineralised cortical bone is
#: about 1.9-2.0 g/cm3; 2.3 is the validation limit asked for in the engine spec (issue 2).
MAX_APPARENT_G_CM3 = 2.3

#: Nominal densities (g/cm3) of non-bone compartments. Only recorded for completeness (their
#: modulus comes from constant laws in femur.mechanics.materials, and DXA ignores them).
#: PMMA 1.18 g/cm3 is the usual handbook value for poly(methyl methacrylate) (ASSUMPTION);
#: the compliant (disc-like) layer is given water density 1.0 (ASSUMPTION).
NOMINAL_NONBONE_G_CM3 = {"pmma": 1.18, "compliant": 1.0}


# ------------------------------------------------------------------------------ validation
def validate_density(values, name: str = "density", comm=None) -> np.ndarray:
    """Check that ``values`` are apparent densities in g/cm3; return them as a float array.

    Raises :class:`femur.core.errors.DensityError` when any value is NaN or infinite, negative,
    or above 2.3 g/cm3, and says when the values look like Hounsfield units (HU: air/fat
    below -100, cortical bone up to ~3000) or mg/cm3 (QCT calibrated mineral density,
    trabecular ~50-300, cortical up to ~1500), with the conversion to use.

    With ``comm`` the statistics are reduced over all ranks first, so every rank raises
    the same error together (no MPI hang).
    """
    arr = np.asarray(values, dtype=float).ravel()
    finite = np.isfinite(arr)
    n_bad = int(np.count_nonzero(~finite))
    fa = arr[finite]
    vmin = float(fa.min()) if fa.size else np.inf
    vmax = float(fa.max()) if fa.size else -np.inf
    n_neg = int(np.count_nonzero(fa < 0))
    n_high = int(np.count_nonzero(fa > MAX_APPARENT_G_CM3))
    n_hu_low = int(np.count_nonzero(fa < -100.0))
    n_tot = int(arr.size)
    if comm is not None:
        n_bad, n_neg, n_high, n_hu_low, n_tot = (
            int(comm.allreduce(v, op=MPI.SUM)) for v in (n_bad, n_neg, n_high, n_hu_low, n_tot)
        )
        vmin = comm.allreduce(vmin, op=MPI.MIN)
        vmax = comm.allreduce(vmax, op=MPI.MAX)

    if n_bad:
        raise DensityError(
            f"{name}: {n_bad} of {n_tot} values are NaN or infinite; every element needs a "
            "finite apparent density in g/cm3"
        )
    if n_tot == 0:
        return arr
    if n_hu_low or vmax > 2300.0:
        raise DensityError(
            f"{name}: values from {vmin:g} to {vmax:g} look like Hounsfield units (HU), not "
            "apparent density in g/cm3 (valid range 0-2.3). Calibrate HU to QCT density with a "
            "phantom fit rho_qct = a + b*HU (mg/cm3), then convert with "
            "femur.core.units.qct_to_apparent_g_cm3(femur.core.units.mg_cm3_to_g_cm3(rho_qct))"
        )
    if vmax > 10.0:
        raise DensityError(
            f"{name}: values up to {vmax:g} look like mg/cm3 (QCT mineral density) or "
            "uncalibrated HU, not apparent density in g/cm3 (valid range 0-2.3). If they are "
            "mg/cm3 divide by 1000 and convert QCT -> apparent with "
            "femur.core.units.qct_to_apparent_g_cm3(femur.core.units.mg_cm3_to_g_cm3(values)); if HU, "
            "calibrate with a phantom first"
        )
    if n_high:
        raise DensityError(
            f"{name}: {n_high} of {n_tot} values exceed {MAX_APPARENT_G_CM3} g/cm3 (max "
            f"{vmax:g}); wet apparent density of fully mineralised cortical bone is ~1.9-2.0 "
            "g/cm3. Check the units (ash vs apparent: apparent = ash / 0.6) and the calibration"
        )
    if n_neg:
        raise DensityError(
            f"{name}: {n_neg} of {n_tot} values are negative (min {vmin:g} g/cm3); density must "
            "be >= 0. Floor calibrated QCT values at 0 before converting (biomechanics.md 6.1)"
        )
    return arr


# ------------------------------------------------------------------------------ age model
#: Young-adult (peak, age 20-30) wet apparent densities, g/cm3. ASSUMPTIONS, not calibrated:
#: cortical ~1.85 (wet cortical bone is ~1.8-2.0 g/cm3); trabecular femoral neck 0.35 and
#: vertebral 0.30 (vertebral QCT trabecular vBMD of young women ~180 mg/cm3 -> /0.6 ~ 0.30;
#: UNCONFIRMED). The same values are used for men (men's higher aBMD is mostly bone size).
PEAK_APPARENT_G_CM3 = {
    "femur": {"cortical": 1.85, "trabecular": 0.35},
    "vertebra": {"cortical": 1.85, "trabecular": 0.30},
}

#: Young-adult compartment densities (g/cm3) that ``femur.workflows.t_score.bone_with_t_score``
#: starts from when the bone has no density yet (a T-score is a loss relative to young adults).
#: * femur: :data:`PEAK_APPARENT_G_CM3` (cortex 1.85 ~ BV/TV 0.95, porosity ~5 %;
#:   femoral-neck cancellous 0.35 ~ BV/TV 0.18; ASSUMPTIONS, see above);
#: * vertebra: cancellous 0.30 (PEAK_APPARENT_G_CM3); the parametric vertebra's 1 mm
#:   "cortical" shell and endplates are a *partial-volume* layer (real side shell ~0.4 mm,
#:   endplates ~0.6-1 mm, plus the dense peripheral cancellous rim), so its young effective
#:   density is 1.5 g/cm3 (BV/TV ~0.77; ASSUMPTION). With the posterior-element allowance of
#:   ``femur.outcomes.dxa`` the spine T-score -2.5 then gives shell BV/TV ~0.45 and body cancellous
#:   ~0.07, inside the calibrated site model's lumbar ranges (shell 0.40-0.80, body
#:   cancellous 0.06-0.14). SENSITIVITY: a purely geometric partial-volume estimate (~1.2)
#:   gives shell ~0.35 / cancellous ~0.09 and a ~2 points larger FE romosozumab LS gain.
T_SCORE_BASE_G_CM3 = {
    "femur": dict(PEAK_APPARENT_G_CM3["femur"]),
    "vertebra": {"cortical": 1.5, "trabecular": PEAK_APPARENT_G_CM3["vertebra"]["trabecular"]},
}


def young_adult_mean_density(bone) -> float:
    """Volume-weighted mean of the young-adult compartment densities of ``bone``
    (:data:`T_SCORE_BASE_G_CM3`: femur cortex 1.85, cancellous 0.35 g/cm3) -- the bone mass
    the compartment model starts from (collective). Bones without cortical/trabecular tags:
    the mean of the two."""
    base = T_SCORE_BASE_G_CM3["vertebra" if bone.kind == "vertebra" else "femur"]
    if not {"cortical", "trabecular"} <= set(bone.cell_ids or {}):
        return 0.5 * (base["cortical"] + base["trabecular"])
    n = bone.num_owned_cells
    vol = bone.cell_volumes()[:n]
    vc = float(np.sum(vol[bone.compartment_mask("cortical")[:n]]))
    vt = float(np.sum(vol[bone.compartment_mask("trabecular")[:n]]))
    vc, vt = bone.comm.allreduce(np.array([vc, vt]), op=MPI.SUM)
    return float((vc * base["cortical"] + vt * base["trabecular"]) / (vc + vt))


#: Women: relative loss rates of bone mineral (per year), applied to both compartments.
#: * pre-menopause (30 y to menopause - 5 y): 0.3 %/yr -- ASSUMPTION (slow premenopausal loss);
#: * 10 years spanning the final menses: -10.7 % in total (SWAN hip-structure abstract;
#:   clinical-targets.md row 7, C);
#: * afterwards: 0.4 %/yr (OSTPRE, Moilanen 2022 JBMR 37:173: FN -10.1 % over 25 y;
#:   clinical-targets.md row 7, D).
#: Men: 0.4 %/yr from age 30 (ASSUMPTION: no menopausal phase; same late rate as women).
PREMENOPAUSE_LOSS_PER_YR = 0.003
MENOPAUSE_TRANSITION_LOSS = 0.107
POSTMENOPAUSE_LOSS_PER_YR = 0.004
MALE_LOSS_PER_YR = 0.004


@dataclass(frozen=True)
class DensityProfile:
    """Typical apparent densities (g/cm3) of one bone for an age/sex (see density_for_age)."""

    age_y: float
    sex: str
    site: str
    fraction_of_peak: float
    cortical_g_cm3: float
    trabecular_g_cm3: float


def bone_fraction_of_peak(age_y: float, sex: str = "female",
                          menopause_age_y: float = MENOPAUSE_AGE_Y) -> float:
    """Fraction of young-adult bone mineral left at ``age_y`` (1.0 up to 30 y)."""
    age = float(age_y)
    if not np.isfinite(age) or age < 0 or age > 120:
        raise InputError(f"age_y must be between 0 and 120 years, got {age_y}")
    sex = normalise_sex(sex)
    if age <= 30.0:
        return 1.0
    if sex == "male":
        return (1.0 - MALE_LOSS_PER_YR) ** (age - 30.0)
    if not (35.0 <= float(menopause_age_y) <= 65.0):
        raise InputError(f"menopause_age_y must lie between 35 and 65 years, got {menopause_age_y}")
    t0 = menopause_age_y - 5.0
    t1 = menopause_age_y + 5.0
    f = (1.0 - PREMENOPAUSE_LOSS_PER_YR) ** (min(age, t0) - 30.0)
    if age > t0:
        # spread the transition loss evenly (geometric) over its 10 years
        rate = 1.0 - (1.0 - MENOPAUSE_TRANSITION_LOSS) ** (1.0 / (t1 - t0))
        f *= (1.0 - rate) ** (min(age, t1) - t0)
    if age > t1:
        f *= (1.0 - POSTMENOPAUSE_LOSS_PER_YR) ** (age - t1)
    return float(f)


def density_for_age(age_y: float = 70.0, sex: str = "female", site: str = "femur",
                    menopause_age_y: float = MENOPAUSE_AGE_Y) -> DensityProfile:
    """Typical cortical and trabecular apparent densities (g/cm3) at an age.

    Peak young-adult values (:data:`PEAK_APPARENT_G_CM3`, assumed) times the fraction of
    peak bone mineral left (:func:`bone_fraction_of_peak`: premenopausal 0.3 %/yr assumed,
    -10.7 % over the 10 years around menopause (SWAN), 0.4 %/yr afterwards (OSTPRE);
    men 0.4 %/yr from 30 y, assumed). The same relative loss is applied to cortical and
    trabecular bone and the geometry is not changed, so the model expresses all areal-BMD
    loss as a density change (ASSUMPTION: in reality trabecular vBMD falls faster and the
    cortex thins). For a bone at a chosen T-score use :func:`bone_with_t_score`.
    """
    if site not in PEAK_APPARENT_G_CM3:
        raise InputError(f"site must be one of {sorted(PEAK_APPARENT_G_CM3)}, got {site!r}")
    sex = normalise_sex(sex)
    f = bone_fraction_of_peak(age_y, sex, menopause_age_y)
    peak = PEAK_APPARENT_G_CM3[site]
    return DensityProfile(float(age_y), sex, site, f, peak["cortical"] * f, peak["trabecular"] * f)


# ------------------------------------------------------------------------------ assignment
def _nominal_for(name: str) -> float | None:
    n = name.lower()
    if "cortical" in n:
        return None  # filled by the caller
    if n.startswith("layer") or "filler" in n:
        return NOMINAL_NONBONE_G_CM3["compliant"]
    if "pmma" in n or "cement" in n:
        return NOMINAL_NONBONE_G_CM3["pmma"]
    return None


def assign_density(
    bone,
    cortical_g_cm3: float | None = None,
    trabecular_g_cm3: float | None = None,
    values: Mapping[str, float] | np.ndarray | Callable | None = None,
    age_y: float | None = None,
    sex: str = "female",
):
    """Fill ``bone.density`` (DG0, apparent g/cm3) and return the bone.

    * Compartments whose name contains "cortical" get ``cortical_g_cm3``, those containing
      "trabecular" get ``trabecular_g_cm3`` (so CT labels like "posterior_cortical" work).
      Unset values come from :func:`density_for_age` (``age_y``, default 70 y, ``sex``).
    * Non-bone compartments ("layer_*", PMMA/cement) get a nominal density (their modulus
      comes from constant laws in ``femur.mechanics.materials``).
    * ``values`` may be a mapping {compartment: g/cm3} (overrides the above), a per-cell
      array (length ``bone.num_local_cells``, owned + ghost) or a function ``f(x)`` of cell
      midpoints x (mm, shape (3, n)) returning g/cm3.

    Every value is checked with :func:`validate_density`.
    """
    site = "vertebra" if bone.kind == "vertebra" else "femur"
    if cortical_g_cm3 is None or trabecular_g_cm3 is None:
        prof = density_for_age(70.0 if age_y is None else age_y, sex, site)
        cortical_g_cm3 = prof.cortical_g_cm3 if cortical_g_cm3 is None else cortical_g_cm3
        trabecular_g_cm3 = prof.trabecular_g_cm3 if trabecular_g_cm3 is None else trabecular_g_cm3
    validate_density([cortical_g_cm3], "cortical_g_cm3")
    validate_density([trabecular_g_cm3], "trabecular_g_cm3")
    n = bone.num_local_cells
    comm = bone.comm
    record: dict = {"cortical_g_cm3": float(cortical_g_cm3),
                    "trabecular_g_cm3": float(trabecular_g_cm3)}

    if values is not None and not isinstance(values, Mapping):
        if callable(values):
            rho = np.asarray(values(bone.cell_midpoints().T), dtype=float).ravel()
            source = "function of position"
        else:
            rho = np.asarray(values, dtype=float).ravel()
            source = "per-cell array"
        bad = rho.shape[0] != n
        if comm.allreduce(bad, op=MPI.LOR):
            raise DensityError(
                f"assign_density values: expected {n} per-cell values (owned + ghost cells of "
                f"bone '{bone.name}'), got {rho.shape[0]}"
            )
        validate_density(rho, f"density of bone '{bone.name}' ({source})", comm=comm)
        record = {"source": source}
    else:
        overrides = dict(values or {})
        for k in overrides:
            if k not in bone.cell_ids:
                raise InputError(
                    f"assign_density values names compartment '{k}', but bone '{bone.name}' "
                    f"has compartments {sorted(bone.cell_ids)}"
                )
        if not bone.cell_ids or bone.cell_tags is None:
            raise InputError(
                f"bone '{bone.name}' has no cell compartments (cell_tags/cell_ids): pass a "
                "per-cell array or a function of position as values="
            )
        rho = np.full(n, np.nan)
        per_comp = {}
        for cname in bone.cell_ids:
            if cname in overrides:
                v = float(overrides[cname])
            elif "cortical" in cname.lower():
                v = float(cortical_g_cm3)
            elif "trabecular" in cname.lower():
                v = float(trabecular_g_cm3)
            else:
                v = _nominal_for(cname)
                layers_kind = str((bone.parameters or {}).get("layers", "")).lower()
                if cname.lower().startswith("layer") and layers_kind in ("pmma", "cement"):
                    v = NOMINAL_NONBONE_G_CM3["pmma"]
                if v is None:
                    raise InputError(
                        f"bone '{bone.name}' compartment '{cname}' is neither cortical, "
                        "trabecular nor a known non-bone layer: give its density with "
                        f"values={{'{cname}': <g/cm3>}}"
                    )
            validate_density([v], f"density of compartment '{cname}'")
            rho[bone.compartment_mask(cname)] = v
            per_comp[cname] = v
        record["compartments"] = per_comp
        # cells without a tag: owned ones are an error (ghost tags may be absent; the
        # scatter below fills ghosts from their owners)
        n_owned = bone.num_owned_cells
        missing = int(np.count_nonzero(np.isnan(rho[:n_owned])))
        missing = comm.allreduce(missing, op=MPI.SUM)
        if missing:
            raise InputError(
                f"bone '{bone.name}': {missing} cells carry no compartment tag from "
                f"{sorted(bone.cell_ids)}; every cell needs a tag (or pass a per-cell array)"
            )
        rho[np.isnan(rho)] = 0.0

    V = dolfinx.fem.functionspace(bone.mesh, ("DG", 0))
    f = dolfinx.fem.Function(V, name="density_g_cm3")
    f.x.array[:n] = rho
    f.x.scatter_forward()
    bone.density = f
    bone.parameters = dict(bone.parameters or {})
    bone.parameters["density"] = record
    return bone


__all__ = [
    "validate_density", "assign_density", "density_for_age", "bone_fraction_of_peak",
    "DensityProfile", "MAX_APPARENT_G_CM3", "PEAK_APPARENT_G_CM3", "T_SCORE_BASE_G_CM3",
    "young_adult_mean_density",
]
