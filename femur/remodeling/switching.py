"""Compartment switching: cortex that becomes porous turns trabecular, and trabecular bone
next to the cortex that fills in turns cortical (issue 15).

The compartment tag of an element (``RemodelingState.compartment``: 1 cortical, any
other value trabecular; a switched element gets 2) drives the cell model's equations: cortical elements carry endocortical and
canal surface on top of Martin's S_v(f), refill their canal cavities after a lag (``V1``,
``V2``), track their intracortical porosity change (``pore``) and have their own focal
balance. The mesh gives the tags at baseline; with switching they follow the bone:

* **trabecularisation** (Zebaze et al., Lancet 2010, clinical-targets row 16: with age the
  cortex next to the marrow is eroded from within until it looks trabecular): a cortical
  element whose BV/TV falls below ``trabecularise_below_bvtv`` becomes trabecular;
* **corticalisation** (endocortical formation, e.g. romosozumab's modelling-based formation
  on the endocortex, row 17, which the model turns into cortical thickening): a trabecular
  element next to the cortex whose BV/TV rises above ``corticalise_above_bvtv`` becomes
  cortical.

The thresholds are ASSUMPTIONS (no source in ``shared/science/`` gives one): cortical bone
is conventionally the bone of porosity below ~30 % (BV/TV > 0.7) and cancellous bone above
it; the band 0.6-0.7 between the two thresholds is the hysteresis that keeps an element
near one threshold from switching back and forth. A switch needs a *crossing during the
run*: an element whose baseline BV/TV already lies beyond a threshold (a thin partial-volume
shell such as the vertebral cortex, BV/TV ~0.46) keeps its baseline tag until it crosses it
from the other side. The thresholds are not fitted.

What happens to each state variable when an element switches:

* ``f`` (BV/TV), ``alpha`` and ``O`` (mineral, primary mineral in flight), ``Y``
  (osteocytes), the cell populations ``P``, ``B``, ``Q``, ``M``, ``Cp``, ``C`` (per unit of
  bone surface, normalised) and the bisphosphonate reservoir ``A``: carried over unchanged
  -- the bone and its cells do not change at the moment it is reclassified; only the
  equations they enter do (the turnover per volume k_e gains or loses the cortical surface,
  the focal balance its cortical deficit);
* ``V1``, ``V2`` (canal cavities in resorption and refilling): cortex -> trabecular: reset
  to 1 (trabecular elements carry no canal lag; the cavities in flight are refilled by the
  element's osteoblasts from the next step); trabecular -> cortex: set to the current
  resorption ``C`` (the steady state of the cavity stages, so the canals refill at the rate
  they are being opened: no jump in the remodelling space);
* ``pore`` (intracortical porosity change since baseline): cortex -> trabecular: 0 (a
  trabecular element has none); trabecular -> cortex: ``f0 - f``, so that the element's
  cortical porosity ``1 - f0 + pore`` is its porosity now, ``1 - f``.

The compartment courses (``femur.outcomes.compartments``) follow the current tags. The FE
material law, the marker weights at baseline and the vBMD-by-compartment series keep the
baseline tags (see the report of issue 15).

Vectorised over elements; the caller gives which elements may switch (``eligible``: the
remodelling cells) and which trabecular elements lie next to the cortex (``near_cortex``:
from the mesh, `femur.workflows.tracks`; the systemic driver's density bins have no
neighbours, so there only trabecularised cortex can turn back).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from femur.core.errors import InputError

CORTICAL, TRABECULAR = 1, 2


@dataclass(frozen=True)
class SwitchingParameters:
    """Thresholds of compartment switching (module docstring; ASSUMPTIONS, not fitted)."""

    #: switching on or off (the model option; default decided by issue 15's comparison)
    enabled: bool = True
    #: a cortical element whose BV/TV falls below this turns trabecular
    trabecularise_below_bvtv: float = 0.60
    #: a trabecular element next to the cortex whose BV/TV rises above this turns cortical
    corticalise_above_bvtv: float = 0.70

    def __post_init__(self):
        lo, hi = self.trabecularise_below_bvtv, self.corticalise_above_bvtv
        if not (0.0 < lo < hi < 1.0):
            raise InputError(f"compartment switching: need 0 < trabecularise_below_bvtv ({lo}) < "
                             f"corticalise_above_bvtv ({hi}) < 1")


def switching_parameters(value) -> SwitchingParameters:
    """A :class:`SwitchingParameters` from None (defaults), a bool (on/off) or itself."""
    if value is None:
        return SwitchingParameters()
    if isinstance(value, SwitchingParameters):
        return value
    if isinstance(value, bool):
        return SwitchingParameters(enabled=value)
    raise InputError(f"compartment switching must be True/False or SwitchingParameters, got {value!r}")


def decide_switches(state, params: SwitchingParameters, cortical0, eligible=None,
                    near_cortex=None) -> tuple[np.ndarray, np.ndarray]:
    """Which elements of ``state`` switch now: masks (to trabecular, to cortical) (module
    docstring). ``cortical0``: baseline cortical tags (bool per element); ``eligible``:
    elements that may switch (default all); ``near_cortex``: trabecular elements next to
    the cortex (default none)."""
    n = state.n_elements
    none = np.zeros(n, dtype=bool)
    if not params.enabled or state.compartment is None:
        return none, none
    cort = state.compartment == CORTICAL
    tag0 = np.asarray(cortical0, dtype=bool)
    ok = np.ones(n, dtype=bool) if eligible is None else np.asarray(eligible, dtype=bool)
    near = none if near_cortex is None else np.asarray(near_cortex, dtype=bool)
    lo, hi = params.trabecularise_below_bvtv, params.corticalise_above_bvtv
    f, f0 = state.f, state.f0
    to_trab = ok & cort & (f < lo) & ((f0 >= lo) | ~tag0)
    to_cort = ok & ~cort & (f > hi) & (near | tag0) & ((f0 <= hi) | tag0)
    return to_trab, to_cort


def apply_switches(state, to_trab, to_cort) -> None:
    """Retag the elements of the masks and carry their state over (module docstring), in place."""
    to_trab = np.asarray(to_trab, dtype=bool)
    to_cort = np.asarray(to_cort, dtype=bool)
    if to_trab.any():
        state.compartment[to_trab] = TRABECULAR
        state.V1[to_trab] = 1.0
        state.V2[to_trab] = 1.0
        state.pore[to_trab] = 0.0
    if to_cort.any():
        state.compartment[to_cort] = CORTICAL
        state.V1[to_cort] = state.C[to_cort]
        state.V2[to_cort] = state.C[to_cort]
        state.pore[to_cort] = state.f0[to_cort] - state.f[to_cort]


def switch_compartments(state, params: SwitchingParameters, cortical0, eligible=None,
                        near_cortex=None) -> tuple[np.ndarray, np.ndarray]:
    """:func:`decide_switches` then :func:`apply_switches` (in place); returns the masks."""
    to_trab, to_cort = decide_switches(state, params, cortical0, eligible, near_cortex)
    apply_switches(state, to_trab, to_cort)
    return to_trab, to_cort


__all__ = ["CORTICAL", "TRABECULAR", "SwitchingParameters", "apply_switches", "decide_switches",
           "switch_compartments", "switching_parameters"]
