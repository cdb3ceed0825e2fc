"""Treatment-driven bone remodeling: normalised bone-cell model + per-element density.

Public API: :class:`RemodelingModel` (FE-coupled use: initial_state / advance /
density_g_cm3 / markers), :class:`Patient`, :func:`simulate_sites` (systemic DXA-site
driver) and :class:`SiteResults`, :func:`stimulus_from_sed`, :func:`specific_surface_per_mm`.
"""

from femur.remodeling.model import (
    RemodelingModel,
    RemodelingState,
    modulus_ratio,
    stimulus_from_sed,
    tissue_density_g_cm3,
    uniform_stress_stimulus,
)
from femur.remodeling.parameters import ModelParameters
from femur.remodeling.patient import Patient
from femur.remodeling.simulate import SITE_KEYS, SiteResults, simulate_sites
from femur.remodeling.surface import specific_surface_per_mm

__all__ = [
    "SITE_KEYS",
    "ModelParameters",
    "Patient",
    "RemodelingModel",
    "RemodelingState",
    "SiteResults",
    "simulate_sites",
    "specific_surface_per_mm",
    "stimulus_from_sed",
    "tissue_density_g_cm3",
    "uniform_stress_stimulus",
    "modulus_ratio",
]
