"""HU -> equivalent mineral density (mg/cm3), and unit plausibility checks.

Three ways in (biomechanics.md section 1.1):

* :class:`PhantomCalibration` -- linear fit rho_QCT = a + b * HU to the mean HU of phantom
  rods of known density (K2HPO4 or hydroxyapatite), one fit per scan (Knowles, J Exp Orthop
  2016). Fits with R^2 < 0.95 are refused.
* :class:`InternalCalibration` -- phantomless calibration from internal references (air,
  adipose, blood, skeletal muscle, cortical bone), as in the record files of the Bonelab
  ``ogo`` tools (Michalski et al., Med Eng Phys 2020; Lee, Bone 2017 found internal
  references equivalent to a phantom).  See the class docstring for what it computes.
* images already calibrated in mg/cm3 (``calibrated_mg_cm3=True``), used as they are.

Unit checks (:func:`check_image_units`) catch HU images passed as density and the reverse.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from femur.core.errors import InputError

#: minimum coefficient of determination accepted for a calibration fit (issue 5)
MIN_R_SQUARED = 0.95


def _linfit(x, y):
    x = np.asarray(x, dtype=float)
    y = np.asarray(y, dtype=float)
    slope, intercept = np.polyfit(x, y, 1)
    pred = intercept + slope * x
    ss_res = float(np.sum((y - pred) ** 2))
    ss_tot = float(np.sum((y - y.mean()) ** 2))
    r2 = 1.0 - ss_res / ss_tot if ss_tot > 0 else 0.0
    return float(slope), float(intercept), r2


@dataclass
class PhantomCalibration:
    """rho_QCT (mg/cm3) = intercept_mg_cm3 + slope_mg_cm3_per_hu * HU."""

    slope_mg_cm3_per_hu: float
    intercept_mg_cm3: float
    r_squared: float = 1.0
    source: str = "<parameters>"
    rod_density_mg_cm3: tuple = ()
    rod_hu: tuple = ()

    kind = "phantom"

    @classmethod
    def fit(cls, rod_density_mg_cm3, rod_hu, source: str = "<phantom rods>",
            min_r_squared: float = MIN_R_SQUARED) -> "PhantomCalibration":
        """Least-squares line through (mean HU, rod density) pairs; refuses R^2 < 0.95."""
        rho = np.asarray(rod_density_mg_cm3, dtype=float).ravel()
        hu = np.asarray(rod_hu, dtype=float).ravel()
        if rho.size != hu.size:
            raise InputError(
                f"{source}: {rho.size} rod densities but {hu.size} HU means; expected pairs"
            )
        if rho.size < 2 or np.ptp(hu) <= 0:
            raise InputError(
                f"{source}: a phantom fit needs >= 2 rods with different HU, got HU {hu.tolist()}"
            )
        if not (np.all(np.isfinite(rho)) and np.all(np.isfinite(hu))):
            raise InputError(f"{source}: rod densities and HU must be finite numbers")
        slope, intercept, r2 = _linfit(hu, rho)
        if rho.size > 2 and r2 < min_r_squared:
            raise InputError(
                f"{source}: phantom calibration fit rho = {intercept:.4g} + {slope:.4g}*HU has "
                f"R^2 = {r2:.4f} < {min_r_squared}; expected a linear HU-density relation "
                "(check the rod densities and their HU means)"
            )
        if slope <= 0:
            raise InputError(
                f"{source}: phantom calibration slope {slope:.4g} mg/cm3 per HU is not positive; "
                "denser rods must have higher HU"
            )
        return cls(slope, intercept, r2, source, tuple(rho), tuple(hu))

    def to_mg_cm3(self, hu) -> np.ndarray:
        return self.intercept_mg_cm3 + self.slope_mg_cm3_per_hu * np.asarray(hu, dtype=float)

    def describe(self) -> str:
        return (f"phantom fit rho_QCT = {self.intercept_mg_cm3:.4g} + "
                f"{self.slope_mg_cm3_per_hu:.5g}*HU mg/cm3 (R^2 {self.r_squared:.4f}, {self.source})")


@dataclass
class InternalCalibration:
    """Phantomless (internal) calibration, as recorded by the Bonelab ``ogo`` tools.

    What the method does (Michalski et al., Med Eng Phys 2020):

    1. The mean HU of five reference tissues (air, adipose, blood, skeletal muscle,
       cortical bone) is sampled in the scan.
    2. The scan's effective X-ray energy is the energy at which the tabulated mass
       attenuation coefficients mu/rho (NIST / ICRU 46) of those tissues correlate best
       with their HU ("Max R^2", "Energy [keV]" in the record).
    3. Two lines are fitted across the references:
       mu/rho (cm2/g) = ``hu_to_mass_atten_intercept`` + ``hu_to_mass_atten_slope`` * HU
       and the physical (Archimedean) density
       rho_m (g/cm3) = ``hu_to_density_intercept`` + ``hu_to_density_slope`` * HU,
       where each reference's density is rho_i = (1 + HU_i/1000) * (mu/rho)_water / (mu/rho)_i.
    4. Each voxel is split into two materials, K2HPO4 and triglyceride (fat), whose mixture
       has the voxel's mass attenuation: the K2HPO4 mass fraction is
       w = (mu/rho - (mu/rho)_trig) / ((mu/rho)_K2HPO4 - (mu/rho)_trig), and the
       equivalent mineral density is rho_K2HPO4 = 1000 * w * rho_m (mg/cm3).

    The result is quadratic in HU.  The record prints the coefficients with 6 decimals and
    the mass attenuations with 3, so a re-computation agrees to about 1-3 %.
    """

    hu_to_mass_atten_slope: float
    hu_to_mass_atten_intercept: float
    hu_to_density_slope: float
    hu_to_density_intercept: float
    k2hpo4_mass_atten_cm2_g: float
    triglyceride_mass_atten_cm2_g: float
    r_squared: float
    energy_kev: float = float("nan")
    reference_hu: dict = field(default_factory=dict)
    reference_mass_atten_cm2_g: dict = field(default_factory=dict)
    water_mass_atten_cm2_g: float = float("nan")
    source: str = "<parameters>"

    kind = "internal"

    def to_mg_cm3(self, hu) -> np.ndarray:
        hu = np.asarray(hu, dtype=float)
        mu_rho = self.hu_to_mass_atten_intercept + self.hu_to_mass_atten_slope * hu
        rho_m = self.hu_to_density_intercept + self.hu_to_density_slope * hu
        w = (mu_rho - self.triglyceride_mass_atten_cm2_g) / (
            self.k2hpo4_mass_atten_cm2_g - self.triglyceride_mass_atten_cm2_g
        )
        return 1000.0 * w * rho_m

    def refit_from_references(self) -> dict:
        """Recompute both reference lines from the tabulated HU and mu/rho (a consistency
        check of the record; returns slopes, intercepts and R^2 of the mu/rho fit)."""
        names = [n for n in self.reference_hu if n in self.reference_mass_atten_cm2_g]
        hu = np.array([self.reference_hu[n] for n in names])
        mu = np.array([self.reference_mass_atten_cm2_g[n] for n in names])
        s1, i1, r2 = _linfit(hu, mu)
        out = {"mass_atten_slope": s1, "mass_atten_intercept": i1, "r_squared": r2}
        if np.isfinite(self.water_mass_atten_cm2_g):
            rho = (1.0 + hu / 1000.0) * self.water_mass_atten_cm2_g / mu
            s2, i2, _ = _linfit(hu, rho)
            out.update(density_slope=s2, density_intercept=i2)
        return out

    def describe(self) -> str:
        return (f"internal (phantomless) calibration, effective energy {self.energy_kev:g} keV, "
                f"R^2 {self.r_squared:.4f} ({self.source})")


# ------------------------------------------------------------------ file parsing
_FLOAT = r"[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?"


def _named_values(text: str, block_re: str, row_re: str) -> dict:
    """{name: first number} of the rows matching ``row_re`` in the block ``block_re`` finds."""
    out = {}
    block = re.search(block_re, text, re.DOTALL)
    for line in block.group(1).splitlines() if block else ():
        m = re.match(row_re, line)
        if m:
            out[m.group(1).strip()] = float(m.group(2))
    return out


def _parse_internal_record(text: str, source: str) -> InternalCalibration:
    def value(label):
        m = re.search(rf"^\s*{re.escape(label)}\s*:?\s+({_FLOAT})\s*$", text, re.MULTILINE)
        if m is None:
            raise InputError(
                f"{source}: internal calibration record lacks the '{label}' line; expected "
                "the ogo internal-calibration record format"
            )
        return float(m.group(1))

    ref_hu = _named_values(text, r"Density \[HU\]:.*?\n(.*?)\n\s*-{5,}",
                           rf"^\s*([A-Za-z][A-Za-z ]*?)\s+({_FLOAT})\s+({_FLOAT})\s+(\d+)")
    mass = _named_values(text, r"Mass Attenuation \[cm2/g\]:\s*\n(.*?)\n\s*\n",
                         rf"^\s*([A-Za-z][A-Za-z ]*?)\s+({_FLOAT})\s*$")
    # the second block lists K2HPO4, CHA, Triglyceride and Water
    k2 = value("K2HPO4")
    trig = value("Triglyceride")
    water = value("Water")
    fit_flag = re.search(r"^\s*Fit:\s*(\w+)", text, re.MULTILINE)
    if fit_flag and fit_flag.group(1).lower() != "true":
        raise InputError(f"{source}: the calibration record says the fit failed (Fit: {fit_flag.group(1)})")
    energy = value("Energy [keV]")
    r2 = value("Max R^2")
    cal = InternalCalibration(
        hu_to_mass_atten_slope=value("HU-u/p Slope"),
        hu_to_mass_atten_intercept=value("HU-u/p Y-Intercept"),
        hu_to_density_slope=value("HU-Material Density Slope"),
        hu_to_density_intercept=value("HU-Material Density Y-Intercept"),
        k2hpo4_mass_atten_cm2_g=k2,
        triglyceride_mass_atten_cm2_g=trig,
        r_squared=r2,
        energy_kev=energy,
        reference_hu=ref_hu,
        reference_mass_atten_cm2_g=mass,
        water_mass_atten_cm2_g=water,
        source=source,
    )
    if r2 < MIN_R_SQUARED:
        raise InputError(
            f"{source}: internal calibration fit R^2 = {r2:.4f} < {MIN_R_SQUARED}; expected "
            "reference tissues on one HU-attenuation line (re-sample the references)"
        )
    if k2 <= trig:
        raise InputError(f"{source}: K2HPO4 mass attenuation {k2} must exceed triglyceride {trig}")
    return cal


def _parse_rod_table(text: str, source: str) -> PhantomCalibration:
    """CSV-like rod table: lines 'density_mg_cm3, mean_hu' (header and # comments allowed)."""
    rho, hu = [], []
    for line in text.splitlines():
        line = line.split("#")[0].strip()
        if not line:
            continue
        parts = [p for p in re.split(r"[,;\s]+", line) if p]
        try:
            vals = [float(p) for p in parts]
        except ValueError:
            continue  # header
        if len(vals) != 2:
            raise InputError(f"{source}: rod line {line!r} must hold 'density_mg_cm3, mean_hu'")
        rho.append(vals[0])
        hu.append(vals[1])
    if not rho:
        raise InputError(f"{source}: no rod rows 'density_mg_cm3, mean_hu' found")
    return PhantomCalibration.fit(rho, hu, source=source)


def load_calibration(path) -> PhantomCalibration | InternalCalibration:
    """Read a calibration file.

    * ``*.txt`` internal calibration records (ogo format, as in verse004-L2);
    * ``*.json`` with {"rod_density_mg_cm3": [...], "rod_hu": [...]} or
      {"slope_mg_cm3_per_hu": b, "intercept_mg_cm3": a};
    * ``*.csv`` / other text: rows 'density_mg_cm3, mean_hu'.
    """
    path = Path(path)
    if not path.exists():
        raise InputError(f"{path}: calibration file not found")
    text = path.read_text(errors="replace")
    src = str(path)
    if path.suffix.lower() == ".json":
        try:
            d = json.loads(text)
        except json.JSONDecodeError as exc:
            raise InputError(f"{src}: invalid JSON ({exc})") from None
        if "rod_density_mg_cm3" in d and "rod_hu" in d:
            return PhantomCalibration.fit(d["rod_density_mg_cm3"], d["rod_hu"], source=src)
        if "slope_mg_cm3_per_hu" in d and "intercept_mg_cm3" in d:
            return PhantomCalibration(float(d["slope_mg_cm3_per_hu"]), float(d["intercept_mg_cm3"]),
                                      float(d.get("r_squared", 1.0)), src)
        raise InputError(
            f"{src}: expected keys rod_density_mg_cm3 + rod_hu, or slope_mg_cm3_per_hu + "
            "intercept_mg_cm3"
        )
    if "HU-Material Density Slope" in text or "Internal calibration" in text:
        return _parse_internal_record(text, src)
    return _parse_rod_table(text, src)


# ------------------------------------------------------------------ unit checks
#: HU of air is -1000 by definition (and -1024/-3024 pad values lie below it).  A calibrated
#: density image maps air to about -50 mg/cm3 (internal calibration, verse004 record) or
#: to a + b*(-1000) ~ -600..-850 mg/cm3 (phantom fits with b ~ 0.6-0.85): so >= 0.1 % of
#: voxels at or below -900 mean HU.
HU_AIR_THRESHOLD = -900.0
#: a cropped/masked calibrated image has nothing below about -300 mg/cm3 (fat ~ -100)
MIN_DENSITY_IMAGE_VALUE = -300.0
#: K2HPO4/HA-equivalent density of cortical bone is about 1000-1300 mg/cm3 (the cortical
#: reference of verse004 maps to ~1230 mg/cm3); bone-label values above 2500 are not densities.
MAX_PLAUSIBLE_DENSITY_MG_CM3 = 2500.0
#: the densest 1 % of a bone label's voxels is cortical bone, hundreds of mg/cm3; below 10
#: the image is in g/cm3 (cortical ~1-1.3) or otherwise mis-scaled
MIN_PLAUSIBLE_BONE_P99_MG_CM3 = 10.0


def check_image_units(values: np.ndarray, expected: str, path: str,
                      bone_values: np.ndarray | None = None) -> None:
    """Refuse an image whose value range contradicts ``expected`` ("HU" or "mg/cm3").

    Density expected: >= 0.1 % of the voxels (or any bone voxel) at or below -900 (air is
    -1000 HU), or a bone-label median above 2500, means HU; a bone-label 99th percentile
    below 10 mg/cm3 means g/cm3 (or another wrong scale).  HU expected: an image with
    nothing below -300 (no air, as a cropped or masked density image) whose values are
    mostly fractional (clinical HU are integers; bone voxels, zero fill ignored) looks like
    an already calibrated density image.  These are heuristics: pass ``check_units=False``
    to skip them.
    """
    v = np.asarray(values, dtype=float).ravel()
    b = v if bone_values is None else np.asarray(bone_values, dtype=float).ravel()
    if expected == "mg/cm3":
        frac_air = float(np.mean(v <= HU_AIR_THRESHOLD)) if v.size else 0.0
        if frac_air >= 1e-3 or (b.size and b.min() <= HU_AIR_THRESHOLD):
            raise InputError(
                f"{path}: expected a density image in mg/cm3 but {100 * frac_air:.2f}% of the "
                f"voxels are at or below {HU_AIR_THRESHOLD:g} (min {v.min():.0f}): this looks like "
                "HU (air = -1000 HU). Give a calibration (phantom or internal) instead of "
                "calibrated_mg_cm3=True (or check_units=False)"
            )
        if b.size and np.median(b) > MAX_PLAUSIBLE_DENSITY_MG_CM3:
            raise InputError(
                f"{path}: expected mg/cm3 but the bone median is {np.median(b):.0f} > "
                f"{MAX_PLAUSIBLE_DENSITY_MG_CM3:g}: not a plausible mineral density"
            )
        if b.size and np.percentile(b, 99) < MIN_PLAUSIBLE_BONE_P99_MG_CM3:
            raise InputError(
                f"{path}: expected mg/cm3 but the densest 1 % of the bone voxels is below "
                f"{np.percentile(b, 99):.3g} (< {MIN_PLAUSIBLE_BONE_P99_MG_CM3:g} mg/cm3; cortical "
                "bone is hundreds of mg/cm3): the image looks like g/cm3 or is mis-scaled. "
                "Multiply g/cm3 by 1000 (or check_units=False)"
            )
    elif expected == "HU":
        if v.size and v.min() > MIN_DENSITY_IMAGE_VALUE:
            w = b[b != 0] if np.any(b != 0) else v  # ignore the zero fill of masked images
            frac_nonint = float(np.mean(np.abs(w - np.round(w)) > 1e-6))
            if frac_nonint > 0.5:
                raise InputError(
                    f"{path}: expected HU but the image has no air (min {v.min():.1f}) and "
                    f"{100 * frac_nonint:.0f}% fractional values: this looks like an already "
                    "calibrated density image (mg/cm3); pass calibrated_mg_cm3=True instead of "
                    "a calibration (or check_units=False if it really is HU)"
                )
    else:
        raise InputError(f"{path}: expected units must be 'HU' or 'mg/cm3', got {expected!r}")
