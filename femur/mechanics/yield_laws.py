"""Density -> yield-stress laws and per-region yield models (like the modulus laws).

A yield law gives, per cell, the compressive and tensile yield stresses (MPa, positive
magnitudes) from the Bone's **apparent** density (g/cm3) and the cell's Young's modulus
(MPa): ``yield_mpa(rho_app_g_cm3, modulus_mpa) -> (sigma_c, sigma_t)``.  Density-based
laws convert to their native density as the modulus laws do (``femur.mechanics.materials``:
QCT = ash = 0.6 x apparent, identity QCT -> ash calibration, biomechanics.md 1.1).

Laws (biomechanics.md sections 1.3, 1.5, 2.1, 2.4):

* ``kopperdahl2002_yield`` -- sigma_yc = 37.4 rho_QCT^1.39 (rho_QCT = calibrated
  K2HPO4-equivalent QCT density in g/cm3, i.e. mg/cm3 / 1000 -- *not* apparent density);
  vertebral trabecular bone; the Bonelab spine benchmark applies it to all bone labels.
  Tensile yield: the same value (the benchmark's equal tension/compression yield) unless
  a ``tension_ratio`` is given.  Pipeline form, UNCONFIRMED vs the paper.
* ``keyak2005_yield`` -- sigma_y = 102 rho_ash^1.80 (femur, ash density; UNCONFIRMED).
* ``femur_yield_strain`` -- yield *strains* times the cell modulus: compression 1.04 %,
  tension 0.73 % (Schileo 2014's femur limits, the same as the linear criterion in
  ``failure.py``; from Bayraktar 2004 cortical tissue yield strains, UNCONFIRMED).
  Consistent with whatever modulus law is used (yield strain is nearly density-independent
  within a site: Morgan 2004).
* ``trabecular_yield_strain`` -- Bayraktar 2004 trabecular tissue 1.01 % c / 0.62 % t
  (UNCONFIRMED); ``vertebral_yield_strain`` -- Kopperdahl 1998 vertebral trabecular
  0.84 % c / 0.78 % t (UNCONFIRMED).
* ``pmma_yield`` -- 70 MPa in tension and compression (PMMA loading disks of the VerSe L2
  benchmark; data README / Walle 2025).
* ``elastic`` -- no yield (compliant disc-like layers).

A :class:`YieldModel` selects laws per region with the precedence of
``femur.mechanics.materials.MaterialModel``: default law, then ROI laws, then compartment laws.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Mapping

import numpy as np

from femur.core.errors import DensityError, InputError
from femur.mechanics.materials import PowerLaw, regional_laws

_BM = "shared/science/biomechanics.md"


class YieldLaw:
    """Base class: ``yield_mpa(rho_app_g_cm3, modulus_mpa) -> (sigma_c, sigma_t)`` in MPa."""

    name: str
    source: str
    validity: str = ""

    @property
    def formula(self) -> str:  # pragma: no cover - overridden
        raise NotImplementedError

    def yield_mpa(self, rho_app_g_cm3, modulus_mpa):  # pragma: no cover - overridden
        raise NotImplementedError

    def describe(self) -> str:
        return f"{self.name}: {self.formula} -- {self.source}"


@dataclass(frozen=True)
class PowerYieldLaw(YieldLaw):
    """sigma_c = a rho^b (MPa, rho in the law's native density, g/cm3, evaluated as the
    modulus laws' :class:`~femur.mechanics.materials.PowerLaw`); sigma_t = tension_ratio
    sigma_c.  Build one with :func:`power_yield`."""

    power: PowerLaw
    tension_ratio: float = 1.0

    @property
    def name(self) -> str:
        return self.power.name

    @property
    def source(self) -> str:
        return self.power.source

    @property
    def formula(self) -> str:
        t = "" if self.tension_ratio == 1.0 else f", sigma_t = {self.tension_ratio:g} sigma_c"
        return f"sigma_c = {self.power.a_mpa:g} * {self.power.symbol}^{self.power.b:g} MPa{t}"

    def yield_native_mpa(self, rho_native_g_cm3) -> np.ndarray:
        return self.power.modulus_native_mpa(rho_native_g_cm3)

    def yield_mpa(self, rho_app_g_cm3, modulus_mpa=None):
        sc = self.power.modulus_mpa(np.maximum(np.asarray(rho_app_g_cm3, dtype=float), 0.0))
        return sc, self.tension_ratio * sc

    def with_tension_ratio(self, ratio: float) -> "PowerYieldLaw":
        if not (0 < ratio <= 1):
            raise InputError(f"tension_ratio must lie in (0, 1], got {ratio}")
        p = self.power
        return power_yield(f"{p.name}_t{ratio:g}", p.a_mpa, p.b, p.density_kind, p.source,
                           float(ratio), p.validity)


def power_yield(name: str, a_mpa: float, b: float, density_kind: str, source: str,
                tension_ratio: float = 1.0, validity: str = "") -> PowerYieldLaw:
    """sigma_c = a_mpa * rho^b with rho the ``density_kind`` density ("apparent", "ash",
    "qct"; g/cm3); sigma_t = tension_ratio * sigma_c."""
    if density_kind not in ("apparent", "ash", "qct"):
        raise InputError(f"unknown density kind {density_kind!r}; expected 'apparent', 'ash' or 'qct'")
    if not (0 < tension_ratio <= 1):
        raise InputError(f"tension_ratio must lie in (0, 1], got {tension_ratio}")
    return PowerYieldLaw(PowerLaw(name, float(a_mpa), float(b), density_kind, source, validity),
                         float(tension_ratio))


@dataclass(frozen=True)
class YieldStrainLaw(YieldLaw):
    """sigma_c = eps_c E, sigma_t = eps_t E with the cell's modulus E (MPa);
    ``strains`` = (eps_c, eps_t), positive."""

    name: str
    strains: tuple
    source: str
    validity: str = ""

    def yield_mpa(self, rho_app_g_cm3, modulus_mpa):
        if modulus_mpa is None:
            raise InputError(f"yield law '{self.name}' needs the cell moduli (MPa)")
        E = np.asarray(modulus_mpa, dtype=float)
        return tuple(float(e) * E for e in self.strains)

    @property
    def formula(self) -> str:
        c, t = self.strains
        return f"sigma_c = {c:g} E, sigma_t = {t:g} E (yield strains x cell modulus)"


@dataclass(frozen=True)
class ConstantYield(YieldLaw):
    """Density-independent yield (non-bone materials): ``sigma_mpa`` = (compression,
    tension) in MPa; ``inf`` = never yields."""

    name: str
    sigma_mpa: tuple
    source: str = "user"

    def yield_mpa(self, rho_app_g_cm3, modulus_mpa=None):
        shape = np.shape(rho_app_g_cm3)
        return tuple(np.full(shape, float(s)) for s in self.sigma_mpa)

    @property
    def formula(self) -> str:
        c, t = self.sigma_mpa
        if not np.isfinite(c):
            return "elastic (no yield)"
        return f"sigma_c = {c:g} MPa, sigma_t = {t:g} MPa (constant)"


KOPPERDAHL2002_YIELD = power_yield(
    "kopperdahl2002_yield", 37.4, 1.39, "qct",
    f"Kopperdahl, J Orthop Res 2002 (vertebral trabecular compressive yield), pipeline form; "
    f"{_BM} 1.3 and 2.4 (Bonelab benchmark: all bone labels); UNCONFIRMED",
    validity="calibrated QCT density (K2HPO4, g/cm3); equal tensile yield by default",
)
KEYAK2005_YIELD = power_yield(
    "keyak2005_yield", 102.0, 1.80, "ash",
    f"Keyak 2005 nonlinear femur FE (ameliesas/NonlinearRoutine); {_BM} 1.5 and 2.4; UNCONFIRMED",
    validity="proximal femur, ash density; pairs with E = 14900 rho_ash^1.86 (keyak_falkinstein)",
)
FEMUR_YIELD_STRAIN = YieldStrainLaw(
    "femur_yield_strain", (0.0104, 0.0073),
    f"Schileo, J Biomech 2014 femur limits eps_c 1.04 %, eps_t 0.73 % (Bayraktar 2004 cortical "
    f"tissue); {_BM} 2.1; limits confirmed as used, origin UNCONFIRMED",
    validity="whole femur; yield stress follows the modulus law in use",
)
TRABECULAR_YIELD_STRAIN = YieldStrainLaw(
    "trabecular_yield_strain", (0.0101, 0.0062),
    f"Bayraktar 2004 trabecular tissue yield strains; {_BM} 2.1; UNCONFIRMED",
)
VERTEBRAL_YIELD_STRAIN = YieldStrainLaw(
    "vertebral_yield_strain", (0.0084, 0.0078),
    f"Kopperdahl 1998 vertebral trabecular apparent yield strains; {_BM} 2.1; UNCONFIRMED",
)
PMMA_YIELD = ConstantYield(
    "pmma_yield", (70.0, 70.0),
    f"PMMA loading disks, yield 70 MPa (VerSe L2 data README; Walle 2025 benchmark, {_BM} 2.4)",
)
ELASTIC = ConstantYield("elastic", (np.inf, np.inf), "no yield (e.g. compliant 8 MPa layers)")

YIELD_LAWS: dict[str, YieldLaw] = {
    law.name: law for law in (
        KOPPERDAHL2002_YIELD, KEYAK2005_YIELD, FEMUR_YIELD_STRAIN, TRABECULAR_YIELD_STRAIN,
        VERTEBRAL_YIELD_STRAIN, PMMA_YIELD, ELASTIC)
}


def get_yield_law(name) -> YieldLaw:
    if isinstance(name, YieldLaw):
        return name
    if not isinstance(name, str) or name not in YIELD_LAWS:
        raise InputError(f"unknown yield law {name!r}; available: {', '.join(sorted(YIELD_LAWS))}")
    return YIELD_LAWS[name]


def constant_yield(sigma_mpa: float, name: str | None = None, source: str = "user") -> ConstantYield:
    """Equal tension/compression constant yield stress (MPa)."""
    if not (sigma_mpa > 0):
        raise InputError(f"constant yield stress must be > 0 MPa, got {sigma_mpa}")
    return ConstantYield(name or f"yield_{sigma_mpa:g}_mpa", (float(sigma_mpa),) * 2, source)


@dataclass
class YieldModel:
    """Which yield law applies where (precedence as femur.mechanics.materials.MaterialModel:
    ``default_law``, then ``roi_laws``, then ``compartment_laws``).

    ``equal_tension_compression``: force sigma_t = sigma_c everywhere (the benchmark's
    equal tension/compression yield).
    """

    default_law: YieldLaw | str = "femur_yield_strain"
    compartment_laws: Mapping[str, YieldLaw | str] = field(default_factory=dict)
    roi_laws: Mapping[str, YieldLaw | str] = field(default_factory=dict)
    equal_tension_compression: bool = False

    def __post_init__(self):
        self.default_law = get_yield_law(self.default_law)
        self.compartment_laws = {k: get_yield_law(v) for k, v in dict(self.compartment_laws).items()}
        self.roi_laws = {k: get_yield_law(v) for k, v in dict(self.roi_laws).items()}

    def law_names(self) -> dict:
        return {"default": self.default_law.name,
                "compartments": {k: v.name for k, v in self.compartment_laws.items()},
                "rois": {k: v.name for k, v in self.roi_laws.items()},
                "equal_tension_compression": self.equal_tension_compression}

    def yield_arrays(self, bone, modulus_mpa) -> tuple[np.ndarray, np.ndarray]:
        """(sigma_c, sigma_t) in MPa for every local cell (owned + ghost) of ``bone``."""
        if bone.density is None:
            raise DensityError(f"bone '{bone.name}' has no density field: assign one before "
                               "computing yield stresses")
        rho = np.asarray(bone.density.x.array, dtype=float)
        E = np.broadcast_to(np.asarray(modulus_mpa, dtype=float), rho.shape)
        if rho.shape[0] != bone.num_local_cells:
            raise DensityError(f"bone '{bone.name}' density has {rho.shape[0]} values, expected "
                               f"{bone.num_local_cells} (one per local cell)")
        sc, st = (np.array(x, dtype=float) for x in self.default_law.yield_mpa(rho, E))
        for m, law in regional_laws(bone, self.roi_laws, self.compartment_laws, "YieldModel"):
            sc[m], st[m] = law.yield_mpa(rho[m], E[m])
        if self.equal_tension_compression:
            st = sc.copy()
        # a zero-density cell would have zero yield: floor at a tiny positive value so that
        # the return map stays defined (such a point yields at once and carries no load)
        sc, st = np.maximum(sc, 1e-6), np.maximum(st, 1e-6)
        if np.any(np.isnan(sc)) or np.any(np.isnan(st)):
            raise InputError(f"yield stresses of bone '{bone.name}' contain NaN")
        return sc, st


def default_yield_model(bone, material=None) -> YieldModel:
    """Per-kind default (biomechanics.md 2.1-2.4):

    * femur: yield strains 1.04 % c / 0.73 % t times the cell modulus (asymmetric);
    * vertebra: Kopperdahl 2002 yield on the QCT density for every bone compartment
      (the Bonelab protocol), equal tension/compression;
    * loading layers / cement: PMMA 70 MPa when the material model gives them the PMMA
      modulus (or their name says pmma/cement), else elastic (compliant 8 MPa layers).
    """
    comp = {}
    law_of = getattr(material, "compartment_laws", {}) or {}
    for n in bone.cell_ids:
        low = n.lower()
        mod_law = law_of.get(n)
        is_layer = low.startswith("layer") or "pmma" in low or "cement" in low
        if not is_layer and mod_law is None:
            continue
        mod_name = getattr(mod_law, "name", "")
        if "pmma" in low or "cement" in low or mod_name == "pmma":
            comp[n] = PMMA_YIELD
        elif is_layer or getattr(mod_law, "density_kind", "") == "none":
            comp[n] = ELASTIC
    if bone.kind == "vertebra":
        return YieldModel(KOPPERDAHL2002_YIELD, comp, equal_tension_compression=True)
    return YieldModel(FEMUR_YIELD_STRAIN, comp)


__all__ = [
    "YieldLaw", "PowerYieldLaw", "power_yield", "YieldStrainLaw", "ConstantYield", "YIELD_LAWS", "get_yield_law",
    "constant_yield", "YieldModel", "default_yield_model", "KOPPERDAHL2002_YIELD",
    "KEYAK2005_YIELD", "FEMUR_YIELD_STRAIN", "TRABECULAR_YIELD_STRAIN", "VERTEBRAL_YIELD_STRAIN",
    "PMMA_YIELD", "ELASTIC",
]
