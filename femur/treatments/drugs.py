"""The drugs femur knows and their label regimens: the one drug table.

Sources: US prescribing information -- Evenity (romosozumab 210 mg SC once monthly for 12
doses), Prolia (denosumab 60 mg SC every 6 months), Fosamax (alendronate 70 mg orally once
weekly), Forteo (teriparatide 20 ug SC once daily); clinical-targets.md lists the same
regimens. ``label_course_months`` is the course the label fixes (romosozumab: 12 monthly
doses); ``None`` means the label sets no end, so a bare drug name runs for the whole
simulation or study (see ``femur.treatments.regimen.parse_treatment``).
"""

from __future__ import annotations

from dataclasses import dataclass

from femur.core.errors import InputError
from femur.core.units import DAYS_PER_MONTH


@dataclass(frozen=True)
class Drug:
    """A drug's label regimen: dose (in ``unit``), dosing interval (days), route."""

    name: str
    dose: float
    unit: str  # "mg" or "ug"
    interval_days: float
    route: str  # "sc", "oral", "iv" or "none"
    label_course_months: float | None = None
    label: str = ""

    @property
    def dose_mg(self) -> float:
        return self.dose if self.unit == "mg" else self.dose / 1000.0


#: Label regimens of every drug the remodeling engine models.
DRUGS: dict[str, Drug] = {
    d.name: d for d in (
        Drug("romosozumab", 210.0, "mg", DAYS_PER_MONTH, "sc", label_course_months=12.0,
             label="US Evenity label: 210 mg SC once monthly for 12 doses"),
        Drug("denosumab", 60.0, "mg", 6 * DAYS_PER_MONTH, "sc",
             label="US Prolia label: 60 mg SC every 6 months"),
        Drug("alendronate", 70.0, "mg", 7.0, "oral",
             label="US Fosamax label: 70 mg orally once weekly"),
        Drug("teriparatide", 20.0, "ug", 1.0, "sc",
             label="US Forteo label: 20 ug SC once daily"),
        Drug("placebo", 0.0, "mg", DAYS_PER_MONTH, "none",
             label="no drug; age/menopause-driven loss continues"),
    )
}
KNOWN_DRUGS = tuple(DRUGS)
ROUTES = ("sc", "oral", "iv", "none")


def get_drug(name, what: str = "treatment") -> Drug:
    """The :class:`Drug` called ``name`` (case-insensitive); InputError naming the known ones."""
    key = name.strip().lower() if isinstance(name, str) else None
    if key not in DRUGS:
        raise InputError(f"{what}: unknown drug {name!r}; known drugs are {', '.join(KNOWN_DRUGS)}")
    return DRUGS[key]


__all__ = ["DRUGS", "Drug", "KNOWN_DRUGS", "ROUTES", "get_drug"]
