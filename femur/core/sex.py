"""The patient's sex, spelt one way everywhere: ``"female"`` or ``"male"``.

Study files, cohort records, the command line and the T-score references all pass what
they are given through :func:`normalise_sex`, which also accepts the common short forms
(``"F"``, ``"M"``, ``"woman"``, ``"men"``...).
"""

from __future__ import annotations

from femur.core.errors import InputError

SEXES = ("female", "male")

#: Mean age at the final menstrual period (years; ASSUMPTION: typical ~51 y), shared by the
#: density age model (``femur.geometry.density``) and the patient's loss driver
#: (``femur.remodeling.patient``).
MENOPAUSE_AGE_Y = 51.0

_ALIASES = {
    "f": "female", "female": "female", "w": "female", "woman": "female", "women": "female",
    "m": "male", "male": "male", "man": "male", "men": "male",
}


def normalise_sex(value, what: str = "sex") -> str:
    """``"female"`` or ``"male"`` from any accepted spelling; InputError otherwise."""
    key = str(value).strip().lower()
    if key not in _ALIASES:
        raise InputError(f"{what} must be 'female' or 'male' (or 'F'/'M'), got {value!r}")
    return _ALIASES[key]


__all__ = ["MENOPAUSE_AGE_Y", "SEXES", "normalise_sex"]
