"""Treatment-driven bone remodeling: the normalised bone-cell model and its parameters.

Public API: :class:`RemodelingModel` (initial_state / advance / density_g_cm3 / markers),
:class:`Patient`, :class:`ModelParameters`, :func:`stimulus_from_sed`,
:func:`specific_surface_per_mm`. The drivers that run the model over time live one stage
up: ``femur.workflows.systemic.simulate_sites`` (DXA sites, no FE) and
``femur.workflows.simulation.Simulation`` (FE-coupled).
"""

from femur.remodeling.model import (
    RemodelingModel,
    RemodelingState,
    markers_from_sums,
    ash_fraction,
    modulus_ratio,
    stimulus_from_sed,
    tissue_density_g_cm3,
    uniform_stress_stimulus,
)
from femur.remodeling.parameters import ModelParameters, scale_for_patient
from femur.remodeling.patient import Patient
from femur.remodeling.surface import specific_surface_per_mm

__all__ = [
    "ModelParameters",
    "Patient",
    "RemodelingModel",
    "RemodelingState",
    "markers_from_sums",
    "ash_fraction",
    "modulus_ratio",
    "scale_for_patient",
    "specific_surface_per_mm",
    "stimulus_from_sed",
    "tissue_density_g_cm3",
    "uniform_stress_stimulus",
]
