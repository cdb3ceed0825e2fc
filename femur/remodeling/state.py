"""State of the bone-cell + density model (``femur.remodeling.model``) and the functions of
a state alone: the mechanical stimulus, the modulus ratio and the markers from summed fluxes.

Split out of ``femur.remodeling.model`` (issue 15), which re-exports these names.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields

import numpy as np

from femur.remodeling.mineral import HERNANDEZ_ASH_EXPONENT, HERNANDEZ_BVTV_EXPONENT, ash_fraction
from femur.remodeling.parameters import TissueParameters


@dataclass
class RemodelingState:
    """State of all (local) elements at time ``t_day``."""

    t_day: float
    f: np.ndarray  # bone volume fraction (BV/TV) [-]
    alpha: np.ndarray  # mineral content relative to full mineralisation [-]
    P: np.ndarray
    B: np.ndarray
    Cp: np.ndarray
    C: np.ndarray
    A: np.ndarray
    Q: np.ndarray  # bone-lining cells / quiescent-surface osteoprogenitors (1 at baseline)
    M: np.ndarray
    Y: np.ndarray  # osteocytes per element volume, normalised to 1 at baseline
    sost_total: np.ndarray  # total (free + antibody-bound) sclerostin, 1 at baseline
    sost_free: np.ndarray  # free sclerostin, 1 at baseline
    dkk1: np.ndarray  # DKK1, 1 at baseline
    V1: np.ndarray  # canal cavities in resorption/reversal (cortical elements; 1 at baseline)
    V2: np.ndarray  # canal cavities being refilled (cortical elements; 1 at baseline)
    pore: np.ndarray  # intracortical porosity change since baseline (tissue fraction)
    O: np.ndarray  # primary-phase mineral still to be deposited (per tissue volume, x f alpha)
    volume: np.ndarray  # element volume (any consistent unit, mm3 from the FE mesh)
    f0: np.ndarray
    alpha0: np.ndarray
    formation0: float  # baseline formation per surface (1 - delta(0))
    compartment: np.ndarray | None = None
    formation: np.ndarray = field(default=None)  # last F per surface
    resorption: np.ndarray = field(default=None)  # last R per surface

    @property
    def n_elements(self) -> int:
        return int(self.f.size)

    def copy(self) -> RemodelingState:
        kw = {}
        for fl in fields(self):
            v = getattr(self, fl.name)
            kw[fl.name] = v.copy() if isinstance(v, np.ndarray) else v
        return RemodelingState(**kw)

    def take(self, index) -> RemodelingState:
        """Subset of elements (e.g. to test partition independence)."""
        kw = {}
        for fl in fields(self):
            v = getattr(self, fl.name)
            kw[fl.name] = v[index] if isinstance(v, np.ndarray) else v
        return RemodelingState(**kw)


def stimulus_from_sed(psi, psi_ref, floor=1e-30) -> np.ndarray:
    """M = (psi - psi_ref) / psi_ref, element-wise (psi: strain energy density, any unit)."""
    psi = np.asarray(psi, float)
    psi_ref = np.asarray(psi_ref, float)
    return (psi - psi_ref) / np.maximum(psi_ref, floor)


def modulus_ratio(state: RemodelingState, tissue=None, f_exponent: float = HERNANDEZ_BVTV_EXPONENT,
                  ash_exponent: float = HERNANDEZ_ASH_EXPONENT):
    """E / E_baseline per element with the Hernandez 2001 form E ~ f^2.58 ash^2.74 (ash
    fraction from alpha, :func:`ash_fraction`; default tissue composition if ``tissue`` is
    None)."""
    tissue = TissueParameters() if tissue is None else tissue
    ash = ash_fraction(state.alpha, tissue) / ash_fraction(state.alpha0, tissue)
    return (state.f / state.f0) ** f_exponent * ash**ash_exponent


def uniform_stress_stimulus(state: RemodelingState) -> np.ndarray:
    """Mechanostat stimulus without FE: each element keeps its baseline stress, so its
    strain energy density scales as 1/E and M = E0/E - 1. A cheap stand-in for the FE
    stimulus (stress redistribution between elements is ignored)."""
    return 1.0 / modulus_ratio(state) - 1.0


def _cortical_mask(compartment, n):
    """Cortical elements (compartment 1, the cortical tag of the bones), or None."""
    if compartment is None:
        return None
    return np.asarray(compartment).ravel() == 1


def markers_from_sums(sums) -> dict:
    """P1NP and CTX (% change from baseline) from summed marker fluxes
    ``[formation, resorption, baseline formation, baseline resorption]``
    (:meth:`RemodelingModel.marker_sums`, summed over elements, bones and ranks)."""
    return {
        "p1np_pct": 100.0 * (sums[0] / sums[2] - 1.0),
        "ctx_pct": 100.0 * (sums[1] / sums[3] - 1.0),
    }


__all__ = ["RemodelingState", "markers_from_sums", "modulus_ratio", "stimulus_from_sed",
           "uniform_stress_stimulus"]
