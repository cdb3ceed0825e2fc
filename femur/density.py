"""Apparent-density fields (g/cm3) on a Bone: validation, assignment, age and T-score models.

``Bone.density`` is a DG0 dolfinx Function of *wet apparent* density in g/cm3 (one value per
cell). Ash density = 0.6 * apparent (Schileo 2008, biomechanics.md 1.1; ``femur.units``).

* :func:`validate_density` -- rejects negative, NaN/inf, > 2.3 g/cm3 values and values that
  look like Hounsfield units or mg/cm3, saying which unit and how to convert.
* :func:`assign_density` -- per-compartment values (cortical / trabecular / layers) or an
  explicit per-cell array or a function of position.
* :func:`density_for_age` -- typical cortical and trabecular apparent densities for a woman or
  a man of a given age (a documented, partly assumed model, see its docstring).
* :func:`bone_with_t_score` -- changes a bone's density with one latent bone-mass variable
  (cancellous BV/TV x s, cortical porosity x 1/s, or x (2 - s) above s = 1) so that its DXA-equivalent T-score
  (``femur.dxa``) hits a target, e.g. -2.5 at the femoral neck.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Callable, Mapping

import numpy as np

from femur._mpi import MPI
import dolfinx  # noqa: E402

from femur.errors import DensityError, InputError  # noqa: E402

#: Physical ceiling for wet apparent density (g/cm3): fully mineralised cortical bone is
#: about 1.9-2.0 g/cm3; 2.3 is the validation limit asked for in the engine spec (issue 2).
MAX_APPARENT_G_CM3 = 2.3

#: Nominal densities (g/cm3) of non-bone compartments. Only recorded for completeness (their
#: modulus comes from constant laws in femur.materials, and DXA ignores them).
#: PMMA 1.18 g/cm3 is the usual handbook value for poly(methyl methacrylate) (ASSUMPTION);
#: the compliant (disc-like) layer is given water density 1.0 (ASSUMPTION).
NOMINAL_NONBONE_G_CM3 = {"pmma": 1.18, "compliant": 1.0}


#: Words that mark a compartment as non-bone (same list as femur.mechanics.problem).
NON_BONE_WORDS = ("layer", "pmma", "cement", "filler", "platen", "pad")


def is_bone_compartment(name: str) -> bool:
    """True for bone tissue compartments; False for loading layers, cement, platens, fillers."""
    n = name.lower()
    return not any(w in n for w in NON_BONE_WORDS)


# ------------------------------------------------------------------------------ validation
def validate_density(values, name: str = "density", comm=None) -> np.ndarray:
    """Check that ``values`` are apparent densities in g/cm3; return them as a float array.

    Raises :class:`femur.errors.DensityError` when any value is NaN or infinite, negative,
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
            "femur.units.qct_to_apparent_g_cm3(femur.units.mg_cm3_to_g_cm3(rho_qct))"
        )
    if vmax > 10.0:
        raise DensityError(
            f"{name}: values up to {vmax:g} look like mg/cm3 (QCT mineral density) or "
            "uncalibrated HU, not apparent density in g/cm3 (valid range 0-2.3). If they are "
            "mg/cm3 divide by 1000 and convert QCT -> apparent with "
            "femur.units.qct_to_apparent_g_cm3(femur.units.mg_cm3_to_g_cm3(values)); if HU, "
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
#: Age at the final menstrual period (ASSUMPTION: typical ~51 y).
MENOPAUSE_AGE_Y = 51.0


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
    sex = _check_sex(sex)
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
    sex = _check_sex(sex)
    f = bone_fraction_of_peak(age_y, sex, menopause_age_y)
    peak = PEAK_APPARENT_G_CM3[site]
    return DensityProfile(float(age_y), sex, site, f, peak["cortical"] * f, peak["trabecular"] * f)


def _check_sex(sex: str) -> str:
    s = str(sex).lower()
    aliases = {"f": "female", "woman": "female", "women": "female", "m": "male", "man": "male",
               "men": "male"}
    s = aliases.get(s, s)
    if s not in ("female", "male"):
        raise InputError(f"sex must be 'female' or 'male', got {sex!r}")
    return s


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
      comes from constant laws in ``femur.materials``).
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


# ------------------------------------------------------------------------------ T-score
#: Ceiling kept while changing densities (g/cm3): no apparent density above 2.0 (about fully
#: mineralised wet cortical bone; ASSUMPTION). It is also the pore-free density R of the
#: cortical porosity rule below (porosity = 1 - rho / R).
T_SCORE_MAX_G_CM3 = 2.0

#: Cells whose starting apparent density is at least this (g/cm3; BV/TV ~0.5 at a tissue
#: density ~1.95) follow the cortical (porosity) rule of :func:`bone_with_t_score`, the
#: others the cancellous (BV/TV) rule -- the same split as the calibrated site model
#: (``femur.remodeling.simulate.site_elements``: compartments with BV/TV >= 0.5 are cortex).
CORTICAL_RULE_MIN_G_CM3 = 1.0

#: Young-adult compartment densities (g/cm3) that :func:`bone_with_t_score` starts from when
#: the bone has no density yet (a T-score is a loss relative to young adults).
#: * femur: :data:`PEAK_APPARENT_G_CM3` (cortex 1.85 ~ BV/TV 0.95, porosity ~5 %;
#:   femoral-neck cancellous 0.35 ~ BV/TV 0.18; ASSUMPTIONS, see above);
#: * vertebra: cancellous 0.30 (PEAK_APPARENT_G_CM3); the parametric vertebra's 1 mm
#:   "cortical" shell and endplates are a *partial-volume* layer (real side shell ~0.4 mm,
#:   endplates ~0.6-1 mm, plus the dense peripheral cancellous rim), so its young effective
#:   density is 1.5 g/cm3 (BV/TV ~0.77; ASSUMPTION). With the posterior-element allowance of
#:   ``femur.dxa`` the spine T-score -2.5 then gives shell BV/TV ~0.45 and body cancellous
#:   ~0.07, inside the calibrated site model's lumbar ranges (shell 0.40-0.80, body
#:   cancellous 0.06-0.14). SENSITIVITY: a purely geometric partial-volume estimate (~1.2)
#:   gives shell ~0.35 / cancellous ~0.09 and a ~2 points larger FE romosozumab LS gain.
T_SCORE_BASE_G_CM3 = {
    "femur": dict(PEAK_APPARENT_G_CM3["femur"]),
    "vertebra": {"cortical": 1.5, "trabecular": PEAK_APPARENT_G_CM3["vertebra"]["trabecular"]},
}


def _latent_density(base: np.ndarray, cortical: np.ndarray, s: float, hi: float) -> np.ndarray:
    """Densities at the latent bone-mass variable ``s`` (1 = the starting densities).

    cancellous cells: rho = s * rho0 (BV/TV x s);
    cortical cells:   porosity phi = 1 - rho / R (R = ``hi``, pore-free), phi0 at s = 1:
                      phi = phi0 * (2 - s) for s >= 1 (the site model's rule),
                      phi = phi0 / s       for s < 1 (same value and slope at s = 1; the
                      cortex too vanishes as s -> 0, so every T-score is reachable with
                      s > 0 and cancellous bone is not driven to zero alone);
    both clipped to [0, hi].
    """
    s = float(s)
    if s <= 0.0:
        return np.zeros_like(base)
    phi0 = np.clip(1.0 - base / hi, 0.0, 1.0)
    phi = np.minimum(phi0 * (2.0 - s) if s >= 1.0 else phi0 / s, 1.0)
    out = np.where(cortical, hi * (1.0 - phi), s * base)
    return np.clip(out, 0.0, hi)


def bone_with_t_score(
    bone,
    t_score: float = -2.5,
    site: str | None = None,
    sex: str = "female",
    tol: float = 1e-4,
    max_iter: int = 60,
    pixel_mm: float | None = None,
):
    """A copy of ``bone`` whose DXA-equivalent T-score at ``site`` equals ``t_score``.

    Bone loss/gain is one latent variable ``s`` applied to every bone cell (loading layers
    are untouched), with compartment-appropriate rules -- the T-score scaling of the
    calibrated site model (``femur.remodeling.simulate``) made continuous:

    * cancellous cells (starting density < :data:`CORTICAL_RULE_MIN_G_CM3`): BV/TV x s;
    * cortical cells (>= that): porosity x (2 - s) for s >= 1 and x 1/s below (same value
      and slope at s = 1), the pore-free density being :data:`T_SCORE_MAX_G_CM3` (so dense
      cortex stays dense: at s = 0.55 a young cortex of BV/TV 0.95 keeps ~0.89 while
      cancellous bone loses 45 %; as s -> 0 both vanish, so any T-score is reachable
      without emptying the cancellous compartment first);

    all densities capped at :data:`T_SCORE_MAX_G_CM3`. aBMD is non-decreasing and piecewise
    linear in ``s``; ``s`` is found by secant steps safeguarded by bisection. Heterogeneity
    within a compartment is kept. Without a density field the bone starts from the
    young-adult densities :data:`T_SCORE_BASE_G_CM3` (femur: cortex 1.85, cancellous 0.35
    g/cm3), so ``s`` is the fraction of young cancellous bone left.

    ``site`` defaults to "femoral_neck" for a femur and "spine" for a vertebra (spine
    reference: see ``femur.dxa.REFERENCES``; the parametric vertebral body gets the
    posterior-element allowance of ``femur.dxa``). The achieved aBMD, T-score, ``s``
    ("density_scale"), the rule and the resulting BV/TV ranges per compartment (BV/TV =
    rho / 1.95 g/cm3, an approximate tissue density) are recorded in
    ``bone.parameters["t_score"]``. The input bone is not changed (the returned bone shares
    its mesh and tags).
    """
    from femur import dxa

    if not np.isfinite(t_score) or not (-8.0 <= t_score <= 4.0):
        raise InputError(f"t_score must be a finite number between -8 and 4, got {t_score}")
    if site is None:
        site = "spine" if bone.kind == "vertebra" else "femoral_neck"
    ref = dxa.reference(site, sex)
    target_bmd = ref.mean_g_cm2 + t_score * ref.sd_g_cm2

    new = dataclasses.replace(bone, parameters=dict(bone.parameters or {}))
    start = "given density field"
    if new.density is None:
        base_tab = T_SCORE_BASE_G_CM3["vertebra" if new.kind == "vertebra" else "femur"]
        assign_density(new, cortical_g_cm3=base_tab["cortical"],
                       trabecular_g_cm3=base_tab["trabecular"])
        start = f"young-adult densities {base_tab} g/cm3"
    base = np.array(new.density.x.array, dtype=float)
    bone_mask = np.zeros(base.shape[0], dtype=bool)
    if new.cell_ids and new.cell_tags is not None:
        for cname in new.cell_ids:
            if is_bone_compartment(cname):
                bone_mask |= new.compartment_mask(cname)
    else:
        bone_mask[:] = True
    hi = T_SCORE_MAX_G_CM3
    cortical = base >= CORTICAL_RULE_MIN_G_CM3
    base_b, cort_b = base[bone_mask], cortical[bone_mask]

    V = new.density.function_space
    work = dolfinx.fem.Function(V, name="density_g_cm3")
    new.density = work
    prep = dxa.prepare(new, site, pixel_mm=pixel_mm)

    def bmd_at(s: float) -> float:
        arr = base.copy()
        arr[bone_mask] = _latent_density(base_b, cort_b, s, hi)
        work.x.array[:] = arr
        work.x.scatter_forward()
        return dxa.areal_bmd(new, site, prepared=prep)

    # s = 0: no bone left
    s_lo = 0.0
    g_lo = bmd_at(s_lo) - target_bmd
    b0, b1 = bmd_at(0.0), bmd_at(1.0)
    if b1 <= 0:
        raise DensityError(f"bone '{bone.name}' has zero areal BMD at {site}; cannot scale it")
    # bracket: g(s) = bmd(s) - target is nondecreasing in s
    s_hi = 2.0
    g_hi = bmd_at(s_hi) - target_bmd
    while g_hi < 0 and s_hi < 1e4:
        s_lo, g_lo = s_hi, g_hi
        s_hi = 2.0 * s_hi
        g_hi = bmd_at(s_hi) - target_bmd
    if g_hi < 0:
        raise DensityError(
            f"cannot reach T-score {t_score} at {site} for bone '{bone.name}': even at the "
            f"density ceiling {hi} g/cm3 the aBMD is {g_hi + target_bmd:.3f} g/cm2 < "
            f"{target_bmd:.3f}; the bone is too thin for this T-score"
        )
    # affine guess from s = 0 and s = 1, refined by the safeguarded secant steps
    s = (target_bmd - b0) / (b1 - b0) if b1 > b0 else 0.5 * (s_lo + s_hi)
    if not (s_lo < s < s_hi):
        s = 0.5 * (s_lo + s_hi)
    tol_bmd = tol * ref.sd_g_cm2
    g = bmd_at(s) - target_bmd
    it = 0
    while abs(g) > tol_bmd and it < max_iter:
        it += 1
        if g > 0:
            s_hi, g_hi = s, g
        else:
            s_lo, g_lo = s, g
        s_new = s_lo - g_lo * (s_hi - s_lo) / (g_hi - g_lo) if g_hi != g_lo else 0.5 * (s_lo + s_hi)
        if not (s_lo < s_new < s_hi) or it % 3 == 0:
            s_new = 0.5 * (s_lo + s_hi)
        s = s_new
        g = bmd_at(s) - target_bmd
    achieved_bmd = g + target_bmd
    achieved_t = dxa.t_score(achieved_bmd, site, sex)
    if abs(achieved_t - t_score) > max(10 * tol, 1e-3):
        raise DensityError(
            f"bone_with_t_score did not converge for bone '{bone.name}': T = {achieved_t:.4f} "
            f"vs target {t_score} after {it} iterations"
        )
    bvtv = _compartment_bv_tv(new)
    new.parameters["t_score"] = {
        "site": site,
        "sex": sex,
        "target": float(t_score),
        "achieved": float(achieved_t),
        "areal_bmd_g_cm2": float(achieved_bmd),
        "density_scale": float(s),
        "rule": ("latent bone-mass variable s: cancellous BV/TV x s, cortical porosity x (2 - s) "
                 f"for s >= 1, x 1/s below (cells >= {CORTICAL_RULE_MIN_G_CM3} g/cm3; pore-free "
                 f"{hi} g/cm3)"),
        "start": start,
        "bv_tv": bvtv,
        "reference": ref.source,
        "note": "DXA-equivalent T-score of the FE model's projection (femur.dxa), not a scan",
    }
    new.parameters["density"] = dict(new.parameters.get("density", {}), scaled_by=float(s),
                                     t_score_rule="latent s (cancellous x s, porosity x (2 - s) / x 1/s)")
    return new


#: Approximate wet tissue density (g/cm3) used only to *report* BV/TV = rho_app / 1.95
#: (Martínez-Reina 2019 composition gives ~1.9-2.0; femur.remodeling computes its own).
REPORT_TISSUE_G_CM3 = 1.95


def _compartment_bv_tv(bone) -> dict:
    """{compartment: [min, volume-weighted mean, max] BV/TV} over owned bone cells."""
    out = {}
    if not bone.cell_ids or bone.cell_tags is None:
        return out
    rho = bone.density.x.array
    n = bone.num_owned_cells
    vol = bone.cell_volumes()[:n]
    comm = bone.comm
    for cname in bone.cell_ids:
        if not is_bone_compartment(cname):
            continue
        m = bone.compartment_mask(cname)[:n]
        r = rho[:n][m] / REPORT_TISSUE_G_CM3
        lo = comm.allreduce(float(r.min()) if r.size else np.inf, op=MPI.MIN)
        hi = comm.allreduce(float(r.max()) if r.size else -np.inf, op=MPI.MAX)
        sw = comm.allreduce(np.array([float(np.sum(r * vol[m])), float(np.sum(vol[m]))]), op=MPI.SUM)
        if sw[1] > 0:
            out[cname] = [lo, float(sw[0] / sw[1]), hi]
    return out


__all__ = [
    "validate_density", "assign_density", "density_for_age", "bone_fraction_of_peak",
    "bone_with_t_score", "DensityProfile", "is_bone_compartment", "MAX_APPARENT_G_CM3",
]
