"""BCT-style fragile / low / normal bone-strength classes.

Thresholds of VirtuOst (Keaveny et al., Osteoporos Int 2020, Table 1; fracture-risk note
section 2, confirmed). They were set for VirtuOst by correspondence to BMD and are NOT
recalibrated for this engine (see :data:`BCT_NOTE`).
"""

from __future__ import annotations

from femur.core.errors import InputError
from femur.core.sex import normalise_sex

#: (fragile upper bound, normal lower bound) in N, per (sex, site)
BCT_THRESHOLDS_N = {
    ("F", "hip"): (3000.0, 4000.0),
    ("F", "spine"): (4500.0, 6000.0),
    ("M", "hip"): (3500.0, 5000.0),
    ("M", "spine"): (6500.0, 8500.0),
}
BCT_NOTE = (
    "BCT classes use the VirtuOst thresholds of Keaveny et al. 2020 (Table 1); they were "
    "set for VirtuOst and are NOT recalibrated for this engine, so classes are indicative only."
)


def bct_class(strength_n: float, site: str, sex: str = "F") -> str:
    """'fragile', 'low' or 'normal' bone strength (VirtuOst thresholds; see BCT_NOTE)."""
    sex_key = "F" if normalise_sex(sex, "bct_class: sex") == "female" else "M"
    key = (sex_key, str(site).lower())
    if key not in BCT_THRESHOLDS_N:
        raise InputError(f"bct_class: site must be 'hip' or 'spine' and sex 'F' or 'M', got {site!r}, {sex!r}")
    fragile_max, normal_min = BCT_THRESHOLDS_N[key]
    s = float(strength_n)
    if s <= fragile_max:
        return "fragile"
    if s < normal_min:
        return "low"
    return "normal"


__all__ = ["BCT_NOTE", "BCT_THRESHOLDS_N", "bct_class"]
