"""Dosing regimens and treatment sequences.

A :class:`Regimen` is one course of one drug: dose, interval, start, duration,
route. A :class:`TreatmentSequence` is a list of non-overlapping courses
(e.g. 12 months romosozumab then 12 months denosumab); it can be discontinued
at any day. ``parse_treatment("romosozumab:12,denosumab:12")`` builds one from
the CLI spec (months).

Times are in days from the start of the simulation; 1 month = 365.25/12 days.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import numpy as np

from femur.core.errors import InputError, check_number
from femur.core.units import DAYS_PER_MONTH
from femur.treatments.drugs import KNOWN_DRUGS, ROUTES, get_drug

def _check_drug(drug) -> str:
    return get_drug(drug).name


def _finite(name, value, *, positive=False, nonneg=False):
    return check_number(value, f"treatment: {name}", positive=positive, nonneg=nonneg)


@dataclass(frozen=True)
class Regimen:
    """One course of one drug.

    drug: one of KNOWN_DRUGS; dose in ``dose_unit`` ("mg" or "ug");
    interval_days between doses; first dose at start_day; doses are given at
    start_day + k*interval_days for all such times < start_day + duration_days.
    """

    drug: str
    dose: float | None = None
    interval_days: float | None = None
    start_day: float = 0.0
    duration_days: float = 12 * DAYS_PER_MONTH
    route: str | None = None
    dose_unit: str | None = None

    def __post_init__(self):
        d = get_drug(self.drug)
        drug = d.name
        object.__setattr__(self, "drug", drug)
        dose = d.dose if self.dose is None else _finite("dose", self.dose)
        if dose < 0:
            raise InputError(f"treatment: {drug} dose must be >= 0, got {dose}")
        object.__setattr__(self, "dose", dose)
        unit = d.unit if self.dose_unit is None else str(self.dose_unit).lower()
        if unit not in ("mg", "ug"):
            raise InputError(f"treatment: dose_unit must be 'mg' or 'ug', got {unit!r}")
        object.__setattr__(self, "dose_unit", unit)
        iv = d.interval_days if self.interval_days is None else self.interval_days
        object.__setattr__(self, "interval_days", _finite("interval_days", iv, positive=True))
        object.__setattr__(self, "start_day", _finite("start_day", self.start_day, nonneg=True))
        object.__setattr__(
            self, "duration_days", _finite("duration_days", self.duration_days, positive=True)
        )
        route = d.route if self.route is None else str(self.route).lower()
        if route not in ROUTES:
            raise InputError(f"treatment: route must be one of {ROUTES}, got {route!r}")
        object.__setattr__(self, "route", route)

    # -- convenience constructors -------------------------------------------------------
    @classmethod
    def default(cls, drug: str, months: float = 12.0, start_month: float = 0.0) -> Regimen:
        """The label regimen of ``drug`` for ``months`` months from ``start_month``."""
        months = _finite("months", months)
        if months <= 0:
            raise InputError(f"treatment: months must be > 0, got {months}")
        return cls(drug, start_day=start_month * DAYS_PER_MONTH, duration_days=months * DAYS_PER_MONTH)

    @staticmethod
    def sequence(courses) -> TreatmentSequence:
        """Concatenate courses back to back: each course's start_day is taken relative
        to the end of the previous one (so the default 0 means 'right after')."""
        out, t = [], 0.0
        for c in courses:
            if not isinstance(c, Regimen):
                raise InputError(f"treatment: sequence items must be Regimen, got {type(c).__name__}")
            c2 = replace(c, start_day=t + c.start_day)
            out.append(c2)
            t = c2.end_day
        return TreatmentSequence(tuple(out))

    @property
    def end_day(self) -> float:
        return self.start_day + self.duration_days

    @property
    def dose_mg(self) -> float:
        return self.dose if self.dose_unit == "mg" else self.dose / 1000.0

    def dose_times(self, until_day: float = np.inf) -> np.ndarray:
        if self.drug == "placebo" or self.dose == 0:
            return np.zeros(0)
        end = min(self.end_day, until_day)
        n = int(np.ceil((end - self.start_day) / self.interval_days - 1e-9))
        if n <= 0:
            return np.zeros(0)
        return self.start_day + self.interval_days * np.arange(n)

    def discontinue(self, at_day: float) -> Regimen:
        at_day = _finite("at_day", at_day)
        if at_day <= self.start_day:
            raise InputError(
                f"treatment: cannot discontinue {self.drug} at day {at_day} before it starts "
                f"(day {self.start_day})"
            )
        return replace(self, duration_days=min(self.duration_days, at_day - self.start_day))

    def __str__(self):
        return (
            f"{self.drug} {self.dose:g} {self.dose_unit} {self.route} every {self.interval_days:g} d, "
            f"days {self.start_day:g}-{self.end_day:g}"
        )

    def describe(self, until_day: float = np.inf) -> dict:
        """Plain record of the course (months from the start; ``doses``: the doses given
        before ``until_day``, e.g. within a simulation that ends there)."""
        return {
            "drug": self.drug, "dose": self.dose, "dose_unit": self.dose_unit, "route": self.route,
            "interval_days": self.interval_days,
            "start_month": self.start_day / DAYS_PER_MONTH, "end_month": self.end_day / DAYS_PER_MONTH,
            "doses": int(self.dose_times(until_day).size),
        }


@dataclass(frozen=True)
class TreatmentSequence:
    """Ordered, non-overlapping courses."""

    courses: tuple

    def __post_init__(self):
        cs = tuple(self.courses)
        if not cs:
            raise InputError("treatment: a sequence needs at least one course")
        for c in cs:
            if not isinstance(c, Regimen):
                raise InputError(f"treatment: sequence items must be Regimen, got {type(c).__name__}")
        cs = tuple(sorted(cs, key=lambda c: c.start_day))
        for a, b in zip(cs[:-1], cs[1:]):
            if b.start_day < a.end_day - 1e-9:
                raise InputError(
                    f"treatment: overlapping courses: {a.drug} (days {a.start_day:g}-{a.end_day:g}) "
                    f"and {b.drug} (starts day {b.start_day:g})"
                )
        object.__setattr__(self, "courses", cs)

    @property
    def end_day(self) -> float:
        return max(c.end_day for c in self.courses)

    @property
    def drugs(self) -> tuple:
        return tuple(dict.fromkeys(c.drug for c in self.courses))

    def doses(self, drug: str, until_day: float = np.inf):
        """(times_days, dose_mg) of all doses of ``drug``."""
        ts, ds = [], []
        for c in self.courses:
            if c.drug == drug:
                t = c.dose_times(until_day)
                ts.append(t)
                ds.append(np.full(t.shape, c.dose_mg))
        if not ts:
            return np.zeros(0), np.zeros(0)
        return np.concatenate(ts), np.concatenate(ds)

    def drug_at(self, day: float) -> str:
        for c in self.courses:
            if c.start_day <= day < c.end_day:
                return c.drug
        return "none"

    def discontinue(self, at_day: float) -> TreatmentSequence:
        """Stop all treatment at ``at_day`` (later courses dropped, the current one cut)."""
        at_day = _finite("at_day", at_day, nonneg=True)
        kept = [c.discontinue(at_day) if c.end_day > at_day else c for c in self.courses if c.start_day < at_day]
        if not kept:
            return TreatmentSequence((Regimen("placebo", start_day=0.0, duration_days=max(at_day, 1.0)),))
        return TreatmentSequence(tuple(kept))

    def label(self) -> str:
        return ",".join(f"{c.drug}:{c.duration_days / DAYS_PER_MONTH:g}" for c in self.courses)

    def describe(self, until_day: float = np.inf) -> list[dict]:
        """The courses as plain records (for tables and JSON: the regimen actually simulated)."""
        return [c.describe(until_day) for c in self.courses]

    def summary(self, until_day: float = np.inf) -> str:
        """One line per course: drug, dose, interval, months and the doses given."""
        out = []
        for d in self.describe(until_day):
            if d["drug"] == "placebo" or d["doses"] == 0 and d["dose"] == 0:
                out.append(f"{d['drug']} months {d['start_month']:g}-{d['end_month']:g}")
                continue
            out.append(f"{d['drug']} {d['dose']:g} {d['dose_unit']} {d['route']} every "
                       f"{d['interval_days']:.4g} d, months {d['start_month']:g}-{d['end_month']:g} "
                       f"({d['doses']} doses)")
        return "; ".join(out)

    def __iter__(self):
        return iter(self.courses)


def as_sequence(treatment) -> TreatmentSequence:
    """Accept a TreatmentSequence, a Regimen, a list of Regimens or a spec string."""
    if isinstance(treatment, TreatmentSequence):
        return treatment
    if isinstance(treatment, Regimen):
        return TreatmentSequence((treatment,))
    if isinstance(treatment, str):
        return parse_treatment(treatment)
    if isinstance(treatment, (list, tuple)):
        return Regimen.sequence(list(treatment))
    raise InputError(f"treatment: cannot interpret {treatment!r} as a regimen")


def course_months(drug: str, months_left: float | None) -> float | None:
    """Length (months) of a course given without a duration (a bare drug name, or the last
    item of a sequence): the label's fixed course where the label fixes one (romosozumab:
    12 monthly doses), otherwise all ``months_left`` of the simulation. ``None`` when
    neither is known."""
    label = get_drug(drug).label_course_months
    if label is not None:
        return float(label)
    return months_left


def parse_treatment(spec: str, months: float | None = None) -> TreatmentSequence:
    """Parse ``"drug"`` or ``"drug:months,drug:months,..."`` into a sequence.

    A course given without ``:months`` (a bare drug name, or the last item of a sequence)
    runs for the rest of the simulation (``months``), unless the drug's label fixes the
    course (romosozumab: 12 monthly doses; :func:`course_months`); without ``months`` a
    bare drug with no label course runs 12 months. Courses follow each other back to back
    with label doses. Off-treatment follow-up after a sequence is simulated as no drug
    (placebo) by the simulators.
    """
    if months is not None:
        months = _finite("months", months)
        if months <= 0:
            raise InputError(f"treatment: months must be > 0, got {months}")
    if not isinstance(spec, str) or not spec.strip():
        raise InputError(
            f"treatment: empty treatment spec {spec!r}; expected e.g. 'romosozumab' or "
            f"'romosozumab:12,denosumab:12' (known drugs: {', '.join(KNOWN_DRUGS)})"
        )
    items = [s.strip() for s in spec.split(",")]
    courses, used = [], 0.0
    for i, item in enumerate(items):
        if not item:
            raise InputError(f"treatment: empty item in spec {spec!r} (expected drug:months)")
        parts = item.split(":")
        if len(parts) > 2:
            raise InputError(f"treatment: ill-formed item {item!r} in {spec!r} (expected drug:months)")
        drug = _check_drug(parts[0])
        if len(parts) == 2:
            try:
                m = float(parts[1])
            except ValueError:
                raise InputError(
                    f"treatment: months in {item!r} must be a number (expected drug:months)"
                ) from None
            if not math.isfinite(m) or m <= 0:
                raise InputError(f"treatment: months in {item!r} must be > 0, got {parts[1]}")
        else:
            if len(items) > 1 and i < len(items) - 1:
                raise InputError(
                    f"treatment: item {item!r} in sequence {spec!r} needs a duration (drug:months)"
                )
            m = course_months(drug, None if months is None else months - used)
            if m is None and len(items) == 1:
                m = 12.0
            if m is None or m <= 0:
                raise InputError(f"treatment: no months left for {item!r} in {spec!r}")
        courses.append(Regimen(drug, duration_days=m * DAYS_PER_MONTH))
        used += m
    return Regimen.sequence(courses)
