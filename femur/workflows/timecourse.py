"""One result type for a patient's course over time, from either driver.

Both the FE-coupled simulation (``femur.workflows.simulation``) and the systemic DXA-site
driver (``femur.workflows.systemic``) return a :class:`TimeCourse`. Every quantity is an
explicit field; the ``*_pct`` values are % change from month 0. Site keys: ``"ls"``
lumbar spine, ``"th"`` total hip, ``"fn"`` femoral neck. Strength quantity names are
those of ``femur.mechanics.strength`` (e.g. ``femoral_fall_strength_n`` and
``femoral_fall_strength_pct``), the same names the study and the risk model use.
Compartment courses (``hip_cortical_bmc_pct``, ..., ``hip_cortical_porosity_pct``) and their
definitions: ``femur.outcomes.compartments``; both drivers measure them on the same cells.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from femur.core.datafiles import atomic_write_text
from femur.core.errors import InputError
from femur.core.units import DAYS_PER_MONTH
from femur.exports.plots import plot_timecourse
from femur.mechanics.strength import describe_strength_model
from femur.outcomes.compartments import COMPARTMENT_HEADS, COMPARTMENT_KEYS

#: DXA site keys in table order, and their names
SITE_KEYS = ("ls", "th", "fn")
SITE_NAMES = {"ls": "lumbar spine", "th": "total hip", "fn": "femoral neck"}
#: the systemic driver's DXA site names -> site keys
SITE_KEY_OF = {"lumbar_spine": "ls", "total_hip": "th", "femoral_neck": "fn"}


def json_floats(values) -> list:
    """JSON-ready floats; a value that is not defined (NaN) becomes None (null)."""
    return [float(x) if np.isfinite(x) else None for x in np.asarray(values, dtype=float).ravel()]


@dataclass
class TimeCourse:
    """A patient's BMD, markers, drug level and (FE driver) strength over time."""

    driver: str  # "fe" (FE-coupled) or "systemic" (DXA sites, no FE)
    treatment: str  # label of the regimen simulated, e.g. "romosozumab:12,denosumab:12"
    regimen: list  # the courses simulated (drug, dose, interval, months, doses given)
    patient: dict  # femur.remodeling.Patient.to_dict()
    months: np.ndarray  # visit months (every whole month and the end)
    bmd_pct: dict  # site key -> DXA-equivalent areal BMD % change over months
    p1np_pct: np.ndarray
    ctx_pct: np.ndarray
    drug_serum_ug_per_ml: np.ndarray
    abmd_g_cm2: dict = field(default_factory=dict)  # site key -> areal BMD (FE driver)
    vbmd: dict = field(default_factory=dict)  # vBMD (mg/cm3) and its % change, by name
    strength_months: np.ndarray = field(default_factory=lambda: np.zeros(0))
    strength: dict = field(default_factory=dict)  # quantity -> N or N/mm over strength months
    strength_pct: dict = field(default_factory=dict)  # quantity_pct -> % change
    #: compartment courses (femur.outcomes.compartments: cortical / trabecular BMC at the hip
    #: and spine, neck cortical thickness, hip cortical porosity), % change over months
    compartments: dict = field(default_factory=dict)
    #: their baseline values (fractions): cortical shares of the hip / spine mineral, hip
    #: cortical porosity
    compartment_baseline: dict = field(default_factory=dict)
    #: serum sclerostin, total (free + romosozumab-bound) and free, % change over months
    #: (systemic driver; femur.remodeling.wnt)
    sclerostin_pct: dict = field(default_factory=dict)
    daily: dict = field(default_factory=dict)  # fine traces of the systemic driver (t_days, ...)
    run: dict = field(default_factory=dict)  # fe_interval_days, fe_solves, dofs, timings
    geometry: dict = field(default_factory=dict)  # bone -> the CT scan it came from (CT runs only)
    comm: object = field(default=None, repr=False, compare=False)  # the run's communicator

    # ------------------------------------------------------------------ site accessors
    @property
    def ls_bmd_pct(self) -> np.ndarray | None:
        return self.bmd_pct.get("ls")

    @property
    def th_bmd_pct(self) -> np.ndarray | None:
        return self.bmd_pct.get("th")

    @property
    def fn_bmd_pct(self) -> np.ndarray | None:
        return self.bmd_pct.get("fn")

    @property
    def series(self) -> dict:
        """Every monthly series by its result name (``ls_bmd_pct``, ``p1np_pct``, ...)."""
        out = {}
        for key in SITE_KEYS:
            if key in self.bmd_pct:
                out[f"{key}_bmd_pct"] = self.bmd_pct[key]
            if key in self.abmd_g_cm2:
                out[f"{key}_abmd_g_cm2"] = self.abmd_g_cm2[key]
        out.update(self.vbmd)
        out.update(self.compartments)
        out.update(self.sclerostin_pct)
        out.update(p1np_pct=self.p1np_pct, ctx_pct=self.ctx_pct,
                   drug_serum_ug_per_ml=self.drug_serum_ug_per_ml)
        return out

    def at_month(self, key: str, month: float) -> float:
        """A series (``ls_bmd_pct``, ``p1np_pct``, ...) or strength quantity
        (``vertebral_strength_n`` / ``_pct``) at ``month``, linearly interpolated (the
        systemic driver's daily traces where it has them)."""
        if key in self.daily:
            return float(np.interp(month * DAYS_PER_MONTH, self.daily["t_days"], self.daily[key]))
        series = self.series
        if key in series:
            return float(np.interp(month, self.months, series[key]))
        for table in (self.strength_pct, self.strength):
            if key in table:
                return float(np.interp(month, self.strength_months, table[key]))
        raise InputError(f"time course has no quantity {key!r}; it has {sorted(series)} and "
                         f"{sorted(self.strength) + sorted(self.strength_pct)}")

    # ------------------------------------------------------------------ output
    def to_dict(self) -> dict:
        """JSON-ready record (lists of floats), the `femur simulate --json` contract."""
        d = {"treatment": self.treatment, "regimen": self.regimen, "patient": self.patient,
             "driver": self.driver, "months": json_floats(self.months)}
        d.update({k: json_floats(v) for k, v in self.series.items()})
        if self.driver == "fe":
            d["strength_months"] = json_floats(self.strength_months)
            d.update({k: json_floats(v) for k, v in self.strength_pct.items()})
            d.update({k: json_floats(v) for k, v in self.strength.items()})
        if self.compartment_baseline:
            d["compartment_baseline"] = {k: float(v) for k, v in self.compartment_baseline.items()}
        d.update(self.run)
        if self.geometry:
            d["geometry"] = self.geometry
        return d

    def to_json(self, **kw) -> str:
        return json.dumps(self.to_dict(), **kw)

    def regimen_text(self) -> str:
        """The regimen actually simulated, one clause per course."""
        parts = []
        for c in self.regimen:
            months = f"months {c['start_month']:g}-{c['end_month']:g}"
            if c["drug"] == "placebo" or c["dose"] == 0:
                parts.append(f"{c['drug']} {months}")
            else:
                parts.append(f"{c['drug']} {c['dose']:g} {c['dose_unit']} {c['route']} every "
                             f"{c['interval_days']:.4g} d, {months} ({c['doses']} doses)")
        return "; ".join(parts)

    def table(self) -> str:
        """Monthly BMD, markers and drug level; strength changes at the strength months."""
        cols = [("month", None, "{:>5.0f}")]
        series = self.series
        for key, head in (("ls_bmd_pct", "LS BMD%"), ("th_bmd_pct", "TH BMD%"), ("fn_bmd_pct", "FN BMD%"),
                          ("p1np_pct", "P1NP%"), ("ctx_pct", "CTX%"), ("drug_serum_ug_per_ml", "serum ug/mL")):
            if key in series:
                cols.append((head, key, "{:>%d.2f}" % max(len(head), 7)))
        lines = [f"regimen: {self.regimen_text()}"]
        for bone, g in self.geometry.items():
            lines.append(f"{bone}: CT scan {g.get('image')} ({g.get('cells')} {g.get('cell_type')} "
                         f"elements of {g.get('element_size_mm'):g} mm)")
        lines.append("  ".join(f"{h:>{max(len(h), 5 if k is None else 7)}}" for h, k, _ in cols))
        for i, m in enumerate(self.months):
            lines.append("  ".join(fmt.format(m if k is None else series[k][i]) for _, k, fmt in cols))
        if len(self.strength_months):
            lines.append("")
            if self.run.get("strength_model"):
                lines.append("strength (% change), model " + describe_strength_model(
                    self.run["strength_model"], self.run.get("strength_model_reason", "as given")))
            heads = ["month"] + [k.replace("_pct", " %") for k in self.strength_pct]
            lines.append("  ".join(f"{h:>12}" for h in heads))
            for i, m in enumerate(self.strength_months):
                lines.append("  ".join([f"{m:>12.0f}"] + [f"{self.strength_pct[k][i]:>12.2f}"
                                                          for k in self.strength_pct]))
        comp = [k for k in COMPARTMENT_KEYS if k in self.compartments]
        if comp:
            lines.append("")
            lines.append("compartments (% change; femur.outcomes.compartments)")
            lines.append("  ".join([f"{'month':>5}"] + [f"{COMPARTMENT_HEADS[k]:>12}" for k in comp]))
            for i, m in enumerate(self.months):
                lines.append("  ".join([f"{m:>5.0f}"] + [f"{self.compartments[k][i]:>12.2f}" for k in comp]))
        return "\n".join(lines)

    def plot(self, path) -> Path:
        """PNG of the BMD, marker/drug and (FE) strength courses."""
        return plot_timecourse(self, path)

    def save(self, out) -> Path:
        """``out/simulation.json`` and ``out/timecourse.png``, written by rank 0 of the run's
        communicator (every rank may call; returns the folder)."""
        out = Path(out)
        if self.comm is not None and self.comm.rank != 0:
            return out
        out.mkdir(parents=True, exist_ok=True)
        atomic_write_text(out / "simulation.json", json.dumps(self.to_dict(), indent=2) + "\n")
        self.plot(out / "timecourse.png")
        return out


__all__ = ["SITE_KEYS", "SITE_KEY_OF", "SITE_NAMES", "TimeCourse", "json_floats"]
