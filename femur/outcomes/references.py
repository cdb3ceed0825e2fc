"""DXA T-scores: the young-adult reference means and SDs (g/cm2) per site and sex.

T-score = (aBMD - young-adult mean) / young-adult SD. Sources are carried in each
:class:`Reference` (clinical-targets.md, T-score reference).
"""

from __future__ import annotations

from dataclasses import dataclass

from femur.core.errors import InputError
from femur.core.sex import SEXES, normalise_sex


@dataclass(frozen=True)
class Reference:
    site: str
    sex: str
    mean_g_cm2: float
    sd_g_cm2: float
    source: str


_LOOKER = ("NHANES III non-Hispanic white women 20-29 y (Looker et al., Osteoporos Int 1998;8:468); "
           "values as used by FRAX/WHO, UNCONFIRMED against the paper's table "
           "(clinical-targets.md, T-score reference)")
_SPINE = ("engine choice: young-female L1-L4 reference mean 1.047 g/cm2, SD 0.110 (a Hologic-type "
          "manufacturer reference as commonly quoted; UNCONFIRMED), inside the range 1.0-1.05 / "
          "~0.11 of clinical-targets.md; applied to one projected vertebral body")
_MALE = ("; men are scored against the same young white-female reference (ISCD-style uniform "
         "female reference; UNCONFIRMED)")

#: Young-adult references, g/cm2.
REFERENCES: dict[tuple[str, str], Reference] = {}
for _sex in SEXES:
    _suffix = "" if _sex == "female" else _MALE
    REFERENCES[("femoral_neck", _sex)] = Reference("femoral_neck", _sex, 0.858, 0.120, _LOOKER + _suffix)
    REFERENCES[("total_hip", _sex)] = Reference("total_hip", _sex, 0.942, 0.122, _LOOKER + _suffix)
    REFERENCES[("spine", _sex)] = Reference("spine", _sex, 1.047, 0.110, _SPINE + _suffix)


def reference(site: str, sex: str = "female") -> Reference:
    """The young-adult reference of a DXA site for a sex (any spelling of ``normalise_sex``)."""
    s = normalise_sex(sex)
    if (site, s) not in REFERENCES:
        raise InputError(
            f"no T-score reference for site {site!r}, sex {sex!r}; sites "
            f"{sorted({k[0] for k in REFERENCES})}, sex 'female' or 'male'"
        )
    return REFERENCES[(site, s)]


def t_score(bmd_g_cm2: float, site: str = "femoral_neck", sex: str = "female") -> float:
    """DXA-equivalent T-score = (aBMD - young-adult mean) / young-adult SD."""
    ref = reference(site, sex)
    return (float(bmd_g_cm2) - ref.mean_g_cm2) / ref.sd_g_cm2


def bmd_from_t_score(t: float, site: str = "femoral_neck", sex: str = "female") -> float:
    """Areal BMD (g/cm2) of a DXA-equivalent T-score."""
    ref = reference(site, sex)
    return ref.mean_g_cm2 + float(t) * ref.sd_g_cm2



__all__ = ["REFERENCES", "Reference", "bmd_from_t_score", "reference", "t_score"]
