"""Specific bone surface S_v(f) (Martin 1984 polynomial, remodeling.md section 3).

S_v(f) = 32.2 f - 93.9 f^2 + 134 f^3 - 101 f^4 + 28.8 f^5  [mm^-1], f = BV/TV,
clamped to >= 0 (the polynomial gives 0.1 at f = 1 and would go negative
just beyond). Coefficients as in the public code quoted in remodeling.md
(some sources give 32.3 for the first).
"""

from __future__ import annotations

import numpy as np

from femur.remodeling.parameters import TissueParameters

_COEFFS = TissueParameters().sv_coefficients


def specific_surface_per_mm(f, coefficients=_COEFFS) -> np.ndarray:
    """Martin's specific surface (bone surface per tissue volume, mm^-1)."""
    f = np.clip(np.asarray(f, dtype=float), 0.0, 1.0)
    out = np.zeros_like(f)
    for c in reversed(coefficients):  # Horner
        out = out * f + c
    return np.maximum(out, 0.0)
