"""Bone tissue composition and mineral (Martínez-Reina & Pivonka 2019, remodeling.md 1.5):
tissue density and ash fraction at a mineral content alpha (relative to the plateau of
mature bone), and the Hernandez 2001 exponents of the mineral-aware modulus."""

from __future__ import annotations

import numpy as np


def tissue_density_g_cm3(alpha, tissue) -> np.ndarray:
    """Tissue (material) density at mineral content alpha (Martínez-Reina 2019 composition):
    rho_t = rho_m v_m + rho_o v_o + rho_w (1 - v_o - v_m), v_m = v_m,full * alpha."""
    vm = tissue.v_mineral_full * np.asarray(alpha, float)
    return (
        tissue.rho_mineral_g_cm3 * vm
        + tissue.rho_organic_g_cm3 * tissue.v_organic
        + tissue.rho_water_g_cm3 * (1.0 - tissue.v_organic - vm)
    )


def ash_fraction(alpha, tissue) -> np.ndarray:
    """Ash (mineral mass) fraction of the bone tissue at mineral content alpha:
    rho_m v_m / (rho_m v_m + rho_o v_o), v_m = v_m,plateau alpha (Martínez-Reina & Pivonka
    2019, remodeling.md 1.5; 0.75 at the plateau, 0.67 at alpha = 0.68)."""
    m = tissue.rho_mineral_g_cm3 * tissue.v_mineral_full * np.asarray(alpha, float)
    return m / (m + tissue.rho_organic_g_cm3 * tissue.v_organic)


#: exponents of the Hernandez 2001 form E = 84.37 GPa f^2.58 alpha_ash^2.74 (Hernandez et al.,
#: Bone 2001; as used by Martínez-Reina & Pivonka 2019, remodeling.md 1.5 and 7)
HERNANDEZ_BVTV_EXPONENT = 2.58
HERNANDEZ_ASH_EXPONENT = 2.74


__all__ = ["HERNANDEZ_ASH_EXPONENT", "HERNANDEZ_BVTV_EXPONENT", "ash_fraction", "tissue_density_g_cm3"]
