"""Density -> elastic modulus laws and per-region material models.

Every law is a small frozen dataclass that knows

* ``name``            registry key (see :data:`LAWS`),
* ``formula``         human-readable formula in the law's *native* density,
* ``density_kind``    which density the published formula takes: ``"apparent"``
                      (wet apparent, g/cm3), ``"ash"`` (g/cm3) or ``"qct"``
                      (K2HPO4/HA-equivalent QCT density, g/cm3 = mg/cm3 / 1000),
* ``source``          paper + section of ``shared/science/biomechanics.md`` + status tag,
* ``validity``        where the fit was made / caveats.

All laws take the Bone's **apparent** density in g/cm3 through ``modulus_mpa(rho_app)``
and convert it to their native density with :mod:`femur.core.units` (ash = 0.6 * apparent,
Schileo 2008; QCT = ash with the identity QCT -> ash calibration, see ``femur.core.units``).
``modulus_native_mpa(rho)`` evaluates the formula on the native density directly (for
unit tests against published numbers).

Units: modulus in MPa, density in g/cm3.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Mapping

import numpy as np

from femur.core.mpi import MPI  # noqa: F401  (import order: MPI before dolfinx)
import dolfinx  # noqa: E402

from femur.core import units  # noqa: E402
from femur.core.errors import DensityError, InputError  # noqa: E402
from femur.geometry.density import validate_density  # noqa: E402

_KINDS = ("apparent", "ash", "qct", "none")


def _to_native(rho_app_g_cm3, kind: str) -> np.ndarray:
    rho = np.asarray(rho_app_g_cm3, dtype=float)
    if kind == "apparent":
        return rho
    if kind == "ash":
        return units.apparent_to_ash_g_cm3(rho)
    if kind == "qct":
        return units.apparent_to_qct_g_cm3(rho)
    if kind == "none":
        return rho
    raise InputError(f"unknown density kind '{kind}'; expected one of {_KINDS}")


class DensityModulusLaw:
    """Base class: ``modulus_mpa(rho_app_g_cm3) -> ndarray`` (MPa)."""

    name: str
    density_kind: str
    source: str
    validity: str

    @property
    def formula(self) -> str:  # pragma: no cover - overridden
        raise NotImplementedError

    def modulus_native_mpa(self, rho_native_g_cm3) -> np.ndarray:  # pragma: no cover
        raise NotImplementedError

    def modulus_mpa(self, rho_app_g_cm3) -> np.ndarray:
        """Modulus (MPa) from *apparent* density (g/cm3), converted to the law's density."""
        return self.modulus_native_mpa(_to_native(rho_app_g_cm3, self.density_kind))

    def describe(self) -> str:
        return f"{self.name}: {self.formula} [{self.density_kind} density, g/cm3] -- {self.source}"

    @property
    def symbol(self) -> str:
        """The density symbol of the law's formula."""
        return {"apparent": "rho_app", "ash": "rho_ash", "qct": "rho_qct", "none": "rho"}[self.density_kind]


@dataclass(frozen=True)
class PowerLaw(DensityModulusLaw):
    """E = a * rho^b (MPa), rho in the law's native density (g/cm3); rho < 0 -> 0."""

    name: str
    a_mpa: float
    b: float
    density_kind: str
    source: str
    validity: str = ""

    @property
    def formula(self) -> str:
        return f"E = {self.a_mpa:g} * {self.symbol}^{self.b:g}"

    def modulus_native_mpa(self, rho_native_g_cm3) -> np.ndarray:
        rho = np.maximum(np.asarray(rho_native_g_cm3, dtype=float), 0.0)
        return self.a_mpa * rho**self.b


@dataclass(frozen=True)
class LinearLaw(DensityModulusLaw):
    """E = intercept + slope * rho (MPa); may be <= 0 at low density (floored by the model)."""

    name: str
    intercept_mpa: float
    slope_mpa: float
    density_kind: str
    source: str
    validity: str = ""

    def modulus_native_mpa(self, rho_native_g_cm3) -> np.ndarray:
        return self.intercept_mpa + self.slope_mpa * np.asarray(rho_native_g_cm3, dtype=float)

    @property
    def formula(self) -> str:
        return f"E = {self.intercept_mpa:g} + {self.slope_mpa:g} * {self.symbol}"


@dataclass(frozen=True)
class PiecewisePowerLaw(DensityModulusLaw):
    """E = a_k * rho^b_k (MPa) on consecutive density intervals: ``pieces`` is a tuple of
    (upper bound g/cm3 or inf, a_mpa, b); rho < 0 -> 0."""

    name: str
    pieces: tuple
    density_kind: str
    source: str
    validity: str = ""

    @property
    def formula(self) -> str:
        sym = {"apparent": "rho_app", "ash": "rho_ash", "qct": "rho_qct"}[self.density_kind]
        parts, lo = [], 0.0
        for hi, a, b in self.pieces:
            parts.append(f"{a:g} * {sym}^{b:g} ({lo:g} < {sym} <= {hi:g})")
            lo = hi
        return "E = " + "; ".join(parts)

    def modulus_native_mpa(self, rho_native_g_cm3) -> np.ndarray:
        rho = np.maximum(np.asarray(rho_native_g_cm3, dtype=float), 0.0)
        out = np.zeros_like(rho)
        lo = -np.inf
        for hi, a, b in self.pieces:
            m = (rho > lo) & (rho <= hi)
            out[m] = a * rho[m] ** b
            lo = hi
        return out


@dataclass(frozen=True)
class ConstantLaw(DensityModulusLaw):
    """Density-independent modulus (non-bone materials: PMMA, compliant layers)."""

    name: str
    modulus_value_mpa: float
    source: str
    validity: str = ""
    density_kind: str = "none"

    @property
    def formula(self) -> str:
        return f"E = {self.modulus_value_mpa:g} MPa (constant)"

    def modulus_native_mpa(self, rho_native_g_cm3) -> np.ndarray:
        return np.full(np.shape(rho_native_g_cm3), float(self.modulus_value_mpa))


_BM = "shared/science/biomechanics.md"


def _morgan(site: str, label: str, a_mpa: float, b: float, fit: str, status: str, validity: str):
    """Morgan, Bayraktar & Keaveny, J Biomech 2003;36:897 site law (coefficients from the
    Keaveny/Morgan/Yeh handbook chapter, Table 9.4), biomechanics.md section 1.2."""
    return PowerLaw(f"morgan2003_{site}", a_mpa, b, "apparent",
                    f"Morgan 2003 J Biomech 36:897, {label} ({fit}); {_BM} 1.2; {status}", validity)


# --- Morgan 2003 site laws (status confirmed, pooled UNCONFIRMED) ------------------------------------
MORGAN2003_FEMORAL_NECK = _morgan("femoral_neck", "femoral neck", 6850.0, 1.49, "n=27, r2=0.85", "confirmed",
                                  "on-axis trabecular cores, elderly donors (67+-15 y); default for the "
                                  "whole femur (1.6 rec. 2)")
MORGAN2003_VERTEBRA = _morgan("vertebra", "vertebra T10-L5", 4730.0, 1.56, "n=61, r2=0.73", "confirmed",
                              "on-axis trabecular cores; default for vertebrae (section 6 rec. 2)")
MORGAN2003_TROCHANTER = _morgan("trochanter", "greater trochanter", 15010.0, 2.18, "n=23, r2=0.82",
                                "confirmed", "on-axis trabecular cores from the greater trochanter")
MORGAN2003_TIBIA = _morgan("tibia", "proximal tibia", 15490.0, 1.93, "n=31, r2=0.84", "confirmed",
                           "on-axis trabecular cores from the proximal tibia")
MORGAN2003_POOLED = _morgan("pooled", "pooled sites", 8920.0, 1.83, "n=142", "UNCONFIRMED",
                            "pooled fit across sites; coefficients not verified against the paper")
# --- Vertebral QCT-FE laws, biomechanics.md section 1.3 (density = calibrated K2HPO4 QCT, g/cm3) ---
KOPPERDAHL2002 = PowerLaw("kopperdahl2002", 2980.0, 1.05, "qct", (
    f"Kopperdahl, J Orthop Res 2002 (vertebral trabecular), pipeline form; {_BM} 1.3; UNCONFIRMED"),
    "QCT density K2HPO4-equivalent (mg/cm3 / 1000); vertebral trabecular bone")
CRAWFORD2003 = LinearLaw("crawford2003", -34.7, 3230.0, "qct", (
    f"Crawford, Bone 2003 (voxel FE of vertebral bodies), pipeline form; {_BM} 1.3; origin UNCONFIRMED"),
    "QCT density K2HPO4-equivalent; E <= 0 for rho_qct <= 0.0107 g/cm3 -> floored by MaterialModel")
# --- Other laws (sensitivity cases), biomechanics.md section 1.4 -----------------------------------
KOPPERDAHL_KEAVENY1998 = LinearLaw("kopperdahl_keaveny1998", -80.0, 2100.0, "apparent",
                                   f"Kopperdahl & Keaveny, J Biomech 1998; {_BM} 1.4; UNCONFIRMED",
                                   "vertebral trabecular bone; E <= 0 below rho_app 0.038 g/cm3 -> floored")
KEYAK1994 = PowerLaw("keyak1994", 33900.0, 2.20, "ash", f"Keyak, J Biomed Mater Res 1994; {_BM} 1.4; UNCONFIRMED",
                     "proximal femur, ash density")
KEYAK_FALKINSTEIN = PowerLaw("keyak_falkinstein", 14900.0, 1.86, "ash",
                             f"Keyak (Falkinstein 2003 / 2005 nonlinear FE); {_BM} 1.4; UNCONFIRMED",
                             "proximal femur, ash density")
# --- Law of the Carter/Beaupre adaptation model (remodeling.md section 3; UNCONFIRMED there) ------
BEAUPRE1990 = PiecewisePowerLaw(
    "beaupre1990", ((1.2, 2014.0, 2.5), (np.inf, 1763.0, 3.2)), "apparent",
    "Beaupre, Orr & Carter, J Orthop Res 1990;8:651 (with their daily-stress-stimulus "
    "adaptation law); shared/science/remodeling.md 3; UNCONFIRMED",
    "used by femur.workflows.habitual_adaptation (the modulus law the adaptation constants came with); "
    "3177 vs 3161 MPa at the 1.2 g/cm3 joint (0.5 % step)",
)
# --- Constant-modulus materials: vertebral loading layers, Yang, J Biomech 2012, section 3 ---------
PMMA = ConstantLaw("pmma", 2500.0, f"Yang, J Biomech 2012 (PMMA endplate layer, 2500 MPa); {_BM} 3; confirmed",
                   "non-bone endplate potting layer")
COMPLIANT_LAYER = ConstantLaw("compliant_layer", 8.0,
                              f"Yang, J Biomech 2012 (disc-like compliant layer, 8 MPa); {_BM} 3; confirmed",
                              "non-bone disc-like loading layer")

#: All laws by name.
LAWS: dict[str, DensityModulusLaw] = {
    law.name: law
    for law in (
        MORGAN2003_FEMORAL_NECK, MORGAN2003_VERTEBRA, MORGAN2003_TROCHANTER, MORGAN2003_TIBIA,
        MORGAN2003_POOLED, KOPPERDAHL2002, CRAWFORD2003, KOPPERDAHL_KEAVENY1998, KEYAK1994,
        KEYAK_FALKINSTEIN, BEAUPRE1990, PMMA, COMPLIANT_LAYER,
    )
}


def get_law(name) -> DensityModulusLaw:
    """Law by registry name (a law object is returned unchanged)."""
    if isinstance(name, DensityModulusLaw):
        return name
    if not isinstance(name, str) or name not in LAWS:
        raise InputError(
            f"unknown density-modulus law {name!r}; available laws: {', '.join(sorted(LAWS))}"
        )
    return LAWS[name]


def constant_law(modulus_mpa: float, name: str | None = None, source: str = "user") -> ConstantLaw:
    """A constant-modulus material (MPa)."""
    if not np.isfinite(modulus_mpa) or modulus_mpa <= 0:
        raise InputError(f"constant modulus_mpa must be a positive finite number, got {modulus_mpa}")
    return ConstantLaw(name or f"constant_{modulus_mpa:g}_mpa", float(modulus_mpa), source)


def regional_laws(bone, roi_laws: Mapping, compartment_laws: Mapping, owner: str):
    """(cell mask, law) pairs in the order they apply over a default law: ROI laws first,
    compartment laws last (they win). A region the bone lacks is an InputError naming
    ``owner``'s table (shared by the modulus and the yield models)."""
    for laws, table, known, mask_of, what in (
            (roi_laws, "roi_laws", bone.rois, bone.roi_mask, ("ROI", "ROIs")),
            (compartment_laws, "compartment_laws", bone.cell_ids, bone.compartment_mask,
             ("compartment", "compartments"))):
        for region, law in laws.items():
            if region not in known:
                raise InputError(
                    f"{owner} {table} names {what[0]} '{region}', but bone '{bone.name}' "
                    f"has {what[1]} {sorted(known)}"
                )
            yield mask_of(region), law


# ---------------------------------------------------------------------------------------------------
@dataclass
class MaterialModel:
    """Isotropic heterogeneous material: which density-modulus law applies where.

    Precedence, from lowest to highest: ``default_law`` everywhere, then ``roi_laws``
    (geometric ROIs, in dict order; cells whose midpoint lies in the ROI), then
    ``compartment_laws`` (cell-tag compartments, e.g. constant-modulus loading layers).
    Laws may be given as objects or registry names. Every modulus is floored at
    ``floor_mpa`` (MPa) so that no element is void or negative (Crawford's linear law is
    <= 0 at low density; biomechanics.md 1.3 / section 6 "Floor E > 0").
    """

    default_law: DensityModulusLaw | str = "morgan2003_femoral_neck"
    compartment_laws: Mapping[str, DensityModulusLaw | str] = field(default_factory=dict)
    roi_laws: Mapping[str, DensityModulusLaw | str] = field(default_factory=dict)
    floor_mpa: float = 1.0
    poisson_ratio: float = 0.3  # isotropic, biomechanics.md 1.6 (Mechanical Finder 2017, Zysset 1999)

    def __post_init__(self):
        self.default_law = get_law(self.default_law)
        self.compartment_laws = {k: get_law(v) for k, v in dict(self.compartment_laws).items()}
        self.roi_laws = {k: get_law(v) for k, v in dict(self.roi_laws).items()}
        if not np.isfinite(self.floor_mpa) or self.floor_mpa <= 0:
            raise InputError(f"MaterialModel floor_mpa must be > 0 MPa, got {self.floor_mpa}")
        if not (-1.0 < self.poisson_ratio < 0.5):
            raise InputError(
                f"MaterialModel poisson_ratio must lie in (-1, 0.5), got {self.poisson_ratio}"
            )

    # ------------------------------------------------------------------
    @property
    def non_bone_compartments(self) -> tuple[str, ...]:
        """Compartments given a constant (non-bone) modulus, e.g. loading layers."""
        return tuple(k for k, v in self.compartment_laws.items() if isinstance(v, ConstantLaw))

    def law_names(self) -> dict:
        return {
            "default": self.default_law.name,
            "compartments": {k: v.name for k, v in self.compartment_laws.items()},
            "rois": {k: v.name for k, v in self.roi_laws.items()},
            "floor_mpa": self.floor_mpa,
            "poisson_ratio": self.poisson_ratio,
        }

    def modulus_array(self, bone, density_g_cm3=None) -> np.ndarray:
        """Modulus (MPa) of every local cell (owned + ghost) of ``bone``, from the bone's
        density field or from ``density_g_cm3`` (apparent, one value per local cell) if
        given."""
        if density_g_cm3 is None and bone.density is None:
            raise DensityError(
                f"bone '{bone.name}' has no density field: call femur.geometry.density.assign_density(bone, ...) "
                "or femur.bone_with_t_score(bone, ...) before computing moduli"
            )
        rho = np.asarray(bone.density.x.array if density_g_cm3 is None else density_g_cm3, dtype=float)
        n = bone.num_local_cells
        if rho.shape[0] != n:
            raise DensityError(
                f"bone '{bone.name}' density has {rho.shape[0]} values but the mesh has {n} local "
                "cells; the density must be a DG0 function on bone.mesh"
            )
        validate_density(rho, f"density of bone '{bone.name}'", comm=bone.comm)
        E = self.default_law.modulus_mpa(rho)
        for mask, law in regional_laws(bone, self.roi_laws, self.compartment_laws, "MaterialModel"):
            E[mask] = law.modulus_mpa(rho[mask])
        return np.maximum(E, self.floor_mpa)

    def modulus_field(self, bone) -> "dolfinx.fem.Function":
        """DG0 Function of the modulus (MPa) on ``bone.mesh``; ghost values scattered from owners."""
        E = self.modulus_array(bone)
        V = dolfinx.fem.functionspace(bone.mesh, ("DG", 0))
        f = dolfinx.fem.Function(V, name="modulus_mpa")
        f.x.array[: E.shape[0]] = E
        f.x.scatter_forward()
        return f


def mineral_modulus_factor(ash_fraction, ash_fraction0, exponent: float = 2.74) -> np.ndarray:
    """Modulus factor of a change in tissue mineralisation at fixed bone volume:
    ``(ash / ash0)^2.74``, the ash-fraction exponent of Hernandez et al. 2001 (Bone 29:74,
    E = 84.37 GPa BV/TV^2.58 ash^2.74; the form Martínez-Reina & Pivonka 2019 use for
    remodelled bone, remodeling.md 1.5). The remodelled FE material multiplies the site's
    density-modulus law, evaluated at the bone-volume density (baseline mineral), by it."""
    a = np.asarray(ash_fraction, dtype=float)
    a0 = np.asarray(ash_fraction0, dtype=float)
    if np.any(a < 0) or np.any(a0 <= 0):
        raise InputError("mineral_modulus_factor: ash fractions must be >= 0 (baseline > 0)")
    return (a / a0) ** float(exponent)


def default_material(bone, floor_mpa: float = 1.0) -> MaterialModel:
    """Per-kind default material (biomechanics.md section 6, rec. 2).

    * femur: Morgan 2003 femoral-neck law everywhere;
    * parametric vertebra: Morgan 2003 vertebral law; loading-layer compartments
      ("layer_*") get constant moduli -- the compliant 8 MPa layer or PMMA 2500 MPa
      (Yang 2012), as recorded in ``bone.parameters["layers"]`` (default compliant);
    * CT vertebra (``bone.source`` starting with "ct"): Kopperdahl 2002 on the QCT density;
    * anything else: Morgan femoral-neck law.
    """
    comp: dict[str, DensityModulusLaw] = {}
    if bone.kind == "vertebra":
        is_ct = str(getattr(bone, "source", "")).lower().startswith("ct")
        default = KOPPERDAHL2002 if is_ct else MORGAN2003_VERTEBRA
        layer_names = [n for n in bone.cell_ids if n.startswith("layer")]
        if layer_names:
            comp.update({n: _layer_law(bone, n) for n in layer_names})
    else:
        default = MORGAN2003_FEMORAL_NECK
    for n in bone.cell_ids:  # CT label conventions for explicit cement compartments
        if "pmma" in n.lower() or "cement" in n.lower():
            comp[n] = PMMA
    return MaterialModel(default_law=default, compartment_laws=comp, floor_mpa=floor_mpa)


def _layer_law(bone, name: str) -> ConstantLaw:
    spec = bone.parameters.get("layers") if isinstance(bone.parameters, dict) else None
    value = None
    if isinstance(spec, dict):
        value = spec.get(name, spec.get("material", spec.get("kind")))
        if value is None and "modulus_mpa" in spec:
            value = spec["modulus_mpa"]
    elif spec is not None:
        value = spec
    if value is None:
        return COMPLIANT_LAYER
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return constant_law(float(value), name=f"{name}_{float(value):g}_mpa",
                            source="bone.parameters['layers']")
    key = str(value).lower()
    if key in ("pmma", "cement", "stiff"):
        return PMMA
    if key in ("compliant", "disc", "soft", "compliant_layer"):
        return COMPLIANT_LAYER
    raise InputError(
        f"bone '{bone.name}' parameters['layers'] = {spec!r}: expected 'compliant' (8 MPa), "
        "'pmma' (2500 MPa) or a modulus in MPa"
    )


__all__ = [
    "DensityModulusLaw", "PowerLaw", "LinearLaw", "PiecewisePowerLaw", "ConstantLaw", "LAWS", "get_law", "constant_law",
    "MaterialModel", "default_material", "regional_laws",
    "MORGAN2003_FEMORAL_NECK", "MORGAN2003_VERTEBRA", "MORGAN2003_TROCHANTER", "MORGAN2003_POOLED",
    "KOPPERDAHL2002", "CRAWFORD2003", "KEYAK1994", "KEYAK_FALKINSTEIN", "BEAUPRE1990", "PMMA",
    "COMPLIANT_LAYER",
]
