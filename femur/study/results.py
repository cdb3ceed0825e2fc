"""Study results: tidy table, trial-paper summary, plots.

The rows and the arm summary are computed together from the case files; the fracture risk
(per-case incidences, curves, relative risks with CIs, NNT) is ``femur.study.risk_summary``;
drawing and file formats are in femur.exports.

Everything here runs on one rank from the case files, so a resumed run gives the same
bytes as an uninterrupted one.

Failed cases (``femur.study.runner``: a scan that could not be read or simulated) are left
out of the table and the arm means; the summary's ``failed_cases`` and the printed table
say which case failed and why.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np

from femur.core.datafiles import atomic_write_text
from femur.core.version import __version__
from femur.exports.plots import plot_arm_histograms, plot_arm_trajectories, plot_cumulative_incidence
from femur.exports.tables import TableFiles, csv_text
from femur.mechanics.strength import describe_strength_model
from femur.outcomes import risk
from femur.outcomes.risk import FRACTURE_DEFINITIONS
from femur.outcomes.compartments import COMPARTMENT_HEADS, COMPARTMENT_KEYS
from femur.study.cases import ABS_KEYS, PCT_KEYS
from femur.study.risk_summary import StudyRisk, check_reference
from femur.study.spec import StudySpec

TABLE_COLUMNS = (
    "study",
    "arm",
    "patient_id",
    "patient_index",
    "case_id",
    "month",
    "age_years",
    "body_mass_kg",
    "height_m",
    "th_t_score",
    "fn_t_score",
    "ls_t_score",
    *PCT_KEYS,
    *ABS_KEYS,
    "prevalent_vertebral_fractures",
    "hip_phi",
    "hip_p_fx_per_impact",
    "p_vertebral_fx_cum",
    "p_hip_fx_cum",
    "p_vertebral_fx_1y",
    "p_vertebral_fx_10y",
    "p_hip_fx_1y",
    "p_hip_fx_10y",
    "hip_bct_class",
    "spine_bct_class",
)

SUMMARY_PCT = PCT_KEYS  # the evaluator result keys (femur.study.cases)



#: the largest number needed to treat a summary prints as a number: beyond it the risk
#: difference is too small for the number to mean anything
NNT_PRINT_LIMIT = 100_000


def format_nnt(v) -> str:
    """A number needed to treat for a summary table: "-" when there is none, ">100000"
    (or "<-100000", a number needed to harm) when the risk difference is next to nothing."""
    if v is None:
        return "-"
    if abs(v) > NNT_PRINT_LIMIT:
        return f"{'>' if v > 0 else '<-'}{NNT_PRINT_LIMIT}"
    return f"{v:.0f}"


class StudyResults:
    """Results of a finished study (built from the case files)."""

    def __init__(self, spec: StudySpec, cases: list[dict]):
        self.spec = spec
        self.failed = [c for c in cases if "error" in c]
        self.cases = [c for c in cases if "error" not in c]
        self.risk = StudyRisk(spec, self.cases)
        self.rows = self._rows()
        self._row_index = {(r["case_id"], r["month"]): r for r in self.rows}
        self.summary = self._summary()

    # ----------------------------------------------------------------- tidy table
    def _rows(self) -> list[dict]:
        rows = []
        arm_order = {a.name: i for i, a in enumerate(self.spec.arms)}
        order = sorted(
            range(len(self.cases)),
            key=lambda k: (arm_order[self.cases[k]["record"]["arm"]], self.cases[k]["record"]["patient"]["index"]),
        )
        for k in order:
            case = self.cases[k]
            rec, visits = case["record"], case["result"]["visits"]
            p = rec["patient"]
            for v in visits:
                row = {
                    "study": rec["study"],
                    "arm": rec["arm"],
                    "patient_id": p["patient_id"],
                    "patient_index": p["index"],
                    "case_id": rec["case_id"],
                    "month": v["month"],
                    "age_years": p["age_years"],
                    "body_mass_kg": p["body_mass_kg"],
                    "height_m": p["height_m"],
                    "th_t_score": p["th_t_score"],
                    "fn_t_score": p["fn_t_score"],
                    "ls_t_score": p["ls_t_score"],
                }
                measured = (case["result"].get("extra") or {}).get("t_scores") or {}
                for key, value in measured.items():  # scans: measured when the case ran
                    if row.get(key) is None:
                        row[key] = value
                for key in PCT_KEYS + ABS_KEYS:
                    row[key] = v.get(key)
                row["prevalent_vertebral_fractures"] = p.get("prevalent_vertebral_fractures")
                row.update(self.risk.case_values(k, v["month"]))
                sex = p.get("sex", "female")
                fs, vs = v.get("femoral_fall_strength_n"), v.get("vertebral_strength_n")
                row["hip_bct_class"] = risk.bct_class(fs, "hip", sex) if fs else None
                row["spine_bct_class"] = risk.bct_class(vs, "spine", sex) if vs else None
                rows.append(row)
        return rows

    def table_csv(self) -> str:
        return csv_text(self.rows, TABLE_COLUMNS)

    def table(self) -> list[dict]:
        """The tidy table as a list of row dicts (one per patient, arm and visit)."""
        return [dict(r) for r in self.rows]

    # ----------------------------------------------------------------- summary
    def _summary(self) -> dict:
        spec = self.spec
        last = spec.visit_months[-1]
        arms = []
        arm_cases = {}  # arm -> case indices (patient order)
        for arm in spec.arms:
            idx = [k for k, c in enumerate(self.cases) if c["record"]["arm"] == arm.name]
            idx.sort(key=lambda k: self.cases[k]["record"]["patient"]["index"])
            entry = {"arm": arm.name, "regimen": arm.regimen_text, "n": len(idx)}
            for key in SUMMARY_PCT:
                vals = [self._visit(k, last).get(key) for k in idx]
                mean, lo, hi, sd = _mean_ci(vals)
                entry[f"{key}_mean"] = mean
                entry[f"{key}_ci95"] = [lo, hi] if lo is not None else None
                entry[f"{key}_sd"] = sd
            # marker peak / nadir of the arm-mean time course: monthly where the evaluator
            # gives monthly values (the P1NP peak falls between visits), else at the visits
            monthly = self._monthly_means(idx, ("p1np_pct", "ctx_pct"))
            if monthly is not None:
                entry["monthly"] = monthly
                p1, ct = monthly["p1np_pct_mean"], monthly["ctx_pct_mean"]
                entry["marker_resolution"] = "monthly"
            else:
                p1 = [_mean_ci([self._visit(k, m).get("p1np_pct") for k in idx])[0] for m in spec.visit_months]
                ct = [_mean_ci([self._visit(k, m).get("ctx_pct") for k in idx])[0] for m in spec.visit_months]
                entry["marker_resolution"] = "visits"
            p1 = [x for x in p1 if x is not None]
            ct = [x for x in ct if x is not None]
            entry["p1np_pct_peak_mean"] = max(p1) if p1 else None
            entry["ctx_pct_nadir_mean"] = min(ct) if ct else None
            entry["compartments"] = self._compartments_by_visit(idx)
            arm_cases[arm.name] = idx
            hip1 = [self._row(k, last)["p_hip_fx_1y"] for k in idx]
            hip10 = [self._row(k, last)["p_hip_fx_10y"] for k in idx]
            entry["hip_fracture_1y_mean"] = _mean_ci(hip1)[0]
            entry["hip_fracture_10y_mean"] = _mean_ci(hip10)[0]
            entry["vertebral_fracture_1y_mean"] = _mean_ci([self._row(k, last)["p_vertebral_fx_1y"] for k in idx])[0]
            entry["vertebral_fracture_10y_mean"] = _mean_ci([self._row(k, last)["p_vertebral_fx_10y"] for k in idx])[0]
            for site in ("hip", "spine"):
                classes = [self._row(k, last)[f"{site}_bct_class"] for k in idx]
                entry[f"{site}_bct_classes"] = {c: classes.count(c) for c in ("fragile", "low", "normal")}
            arms.append(entry)

        # incidences, curves, relative risk, ARR and NNT against the reference arm
        ref = check_reference(spec, list(arm_cases))
        risks = self.risk.arm_summaries(arm_cases, ref, spec.seed)
        for entry in arms:
            entry.update(risks[entry["arm"]])
        failed = {}
        if self.failed:
            failed["failed_cases"] = [{
                "case_id": c["record"]["case_id"], "arm": c["record"]["arm"],
                "patient_id": c["record"]["patient"]["patient_id"],
                "scan": (c["record"]["patient"].get("scan") or {}).get("image"),
                "error": c["error"]} for c in self.failed]
        status = self.risk.params.status
        return {
            "study": spec.name,
            "femur_version": __version__,
            "n_patients": spec.cohort.size,
            "duration_months": spec.duration_months,
            "visit_months": list(spec.visit_months),
            "last_visit_month": last,
            "placebo_arm": next((a.name for a in spec.arms if a.is_placebo), None),
            "reference_arm": ref,
            "strength_model": spec.model.strength_model,
            "strength_model_reason": spec.model.strength_model_reason,
            "arms": arms,
            "risk": self.risk.description(),
            "notes": [
                "Fracture incidences are expected values (mean over virtual patients of each "
                "patient's probability of at least one new fracture by the study end), not counted events.",
                "Relative risks, absolute risk reductions and numbers needed to treat are against "
                f"the reference arm ({ref}); 95 % CIs: paired bootstrap over patients x parameter "
                f"sets drawn from the calibration's covariance ({spec.risk.parameter_draws} resamples).",
                "The risk parameters are fitted to non-romosozumab trials (clinical-targets.md rows "
                "8, 10-15); romosozumab fracture outcomes are predictions.",
                *([f"Risk parameters status: {status}"] if status else []),
            ],
            **failed,
        }

    def _monthly_means(self, idx, keys, with_ci: bool = False):
        """Arm-mean monthly time courses up to the last visit, or None where any case of
        the arm has none (evaluators other than femur.study.evaluator.run_case)."""
        series = [(self.cases[k]["result"].get("extra") or {}).get("monthly") for k in idx]
        if not series or any(not isinstance(m, dict) or "month" not in m for m in series):
            return None
        months = series[0]["month"]
        if any(m["month"] != months for m in series):
            return None
        keep = [i for i, m in enumerate(months) if m <= self.spec.visit_months[-1] + 1e-9]
        out = {"month": [months[i] for i in keep]}
        for key in keys:
            if any(key not in m for m in series):
                return None
            stats = [_mean_ci([m[key][i] for m in series]) for i in keep]
            out[f"{key}_mean"] = [st[0] for st in stats]
            if with_ci:
                out[f"{key}_ci95"] = [[st[1], st[2]] if st[1] is not None else None for st in stats]
        return out

    def _compartments_by_visit(self, idx) -> dict:
        """Arm-mean compartment courses (``femur.outcomes.compartments``, % change) at each
        visit (the evaluator's visit extras); a course no case of the arm has (a scan without a femur, case files written
        before these courses existed) is left out."""
        months = list(self.spec.visit_months)
        out = {"month": months}
        for key in COMPARTMENT_KEYS:
            means = [_mean_ci([(self._visit(k, m).get("extra") or {}).get(key) for k in idx])[0]
                     for m in months]
            if any(x is not None for x in means):
                out[f"{key}_mean"] = means
        return out

    def _visit(self, k: int, month: float) -> dict:
        for v in self.cases[k]["result"]["visits"]:
            if v["month"] == month:
                return v
        return {}

    def _row(self, k: int, month: float) -> dict:
        return self._row_index.get((self.cases[k]["record"]["case_id"], month), {})

    def summary_json(self) -> str:
        return json.dumps(_clean(self.summary), indent=1, sort_keys=False, allow_nan=False)

    # ----------------------------------------------------------------- printed table
    def format_table(self) -> str:
        s = self.summary
        lines = [
            f"{s['study']}: {s['n_patients']} virtual patients per arm, month {s['last_visit_month']:g}"
            " (mean % change from baseline, 95% CI)",
        ]
        if s.get("strength_model"):
            lines.append("strength model: " + describe_strength_model(
                s["strength_model"], s.get("strength_model_reason", "as given")))
        cols = [
            ("LS BMD %", "ls_bmd_pct"),
            ("TH BMD %", "th_bmd_pct"),
            ("FN BMD %", "fn_bmd_pct"),
            ("vert. strength %", "vertebral_strength_pct"),
            ("fem. fall strength %", "femoral_fall_strength_pct"),
            ("P1NP %", "p1np_pct"),
            ("CTX %", "ctx_pct"),
        ]
        width = max(12, max(len(a["arm"]) for a in s["arms"]) + 2)
        header = "arm".ljust(width) + "".join(f"{c[0]:>24}" for c in cols)
        lines.append(header)
        for a in s["arms"]:
            cells = []
            for _, key in cols:
                m, ci = a[f"{key}_mean"], a[f"{key}_ci95"]
                if m is None:
                    cells.append(f"{'-':>24}")
                elif ci:
                    cells.append(f"{m:>8.1f} ({ci[0]:.1f}, {ci[1]:.1f})".rjust(24))
                else:
                    cells.append(f"{m:>24.1f}")
            lines.append(a["arm"].ljust(width) + "".join(cells))
        comp = [k for k in COMPARTMENT_KEYS if any(f"{k}_mean" in a.get("compartments", {}) for a in s["arms"])]
        if comp:
            lines.append("")
            lines.append(f"compartments at month {s['last_visit_month']:g} (arm mean % change; "
                         "femur.outcomes.compartments)")
            lines.append("arm".ljust(width) + "".join(f"{COMPARTMENT_HEADS[k]:>14}" for k in comp))
            for a in s["arms"]:
                c = a.get("compartments", {})
                vals = [(c.get(f"{k}_mean") or [None])[-1] for k in comp]
                lines.append(a["arm"].ljust(width) + "".join(f"{'-':>14}" if x is None else f"{x:>14.2f}"
                                                             for x in vals))
        lines.append("")
        ref = s.get("reference_arm")
        lines.append(f"fracture risk by month {s['duration_months']:g} (expected incidence; RR, NNT vs "
                     f"{ref or 'no reference arm'}; 95 % CI: cohort x calibration uncertainty)")
        definition = (s.get("risk") or {}).get("vertebral_fracture_definition")
        if definition:
            lines.append(f"new vertebral fractures counted by {definition} reading: "
                         f"{FRACTURE_DEFINITIONS.get(definition, '?')} ([risk] vertebral_fracture_definition)")
        lines.append(
            "arm".ljust(width)
            + f"{'P1NP peak %':>12}{'vert. fx % (95% CI)':>24}{'RR vert (95% CI)':>22}{'NNT vert':>10}"
            + f"{'hip fx % (95% CI)':>24}{'RR hip (95% CI)':>22}{'NNT hip':>10}"
        )

        def pct(a, kind):
            x, ci = a[f"{kind}_fracture_incidence"], a.get(f"{kind}_fracture_incidence_ci95")
            if x is None:
                return "-"
            return f"{100 * x:.2f}" + (f" ({100 * ci[0]:.2f}, {100 * ci[1]:.2f})" if ci else "")

        def rr(a, kind):
            v, ci = a[f"relative_risk_{kind}"], a[f"relative_risk_{kind}_ci95"]
            if v is None:
                return "-"
            return f"{v:.2f}" + (f" ({ci[0]:.2f}, {ci[1]:.2f})" if ci else "")

        def nnt(a, kind):
            return format_nnt(a[f"number_needed_to_treat_{kind}"])

        for a in s["arms"]:
            peak = a["p1np_pct_peak_mean"]
            lines.append(
                a["arm"].ljust(width)
                + f"{(f'{peak:.0f}' if peak is not None else '-'):>12}"
                + f"{pct(a, 'vertebral'):>24}{rr(a, 'vertebral'):>22}{nnt(a, 'vertebral'):>10}"
                + f"{pct(a, 'hip'):>24}{rr(a, 'hip'):>22}{nnt(a, 'hip'):>10}"
            )
        r = s["risk"]
        per_fall = [a.get("hip_fractures_per_fall_baseline") for a in s["arms"]]
        if per_fall and per_fall[0] is not None:
            a0 = s["arms"][0]
            eff = a0.get("hip_risk_effective_women")
            carried = (f"; {eff:.1f} effective women of {a0['n']} carry it" if eff is not None and a0.get("n") else "")
            lines.append(
                f"hip fractures per fall at baseline (arm {a0['arm']!r}): {100 * per_fall[0]:.2f} % "
                f"(filmed falls in long-term care: 1.3 %, clinical-targets.md row 15){carried}"
            )
        lines.append(f"risk parameters: {r['parameters_file']}" + (f" -- {r['parameters_status']}"
                                                                      if r["parameters_status"] else ""))
        if r["fixed_overridden_by_the_study"]:
            lines.append(f"fall-model inputs changed by the study (sensitivity): {r['fixed_overridden_by_the_study']}")
        for note in r["notes"]:
            lines.append(f"note: {note}")
        lines.append(r["bct_note"])
        if s.get("failed_cases"):
            lines.append(f"failed cases, left out of the means ({len(s['failed_cases'])}):")
            lines += [f"  {f['case_id']}" + (f" (scan {f['scan']})" if f.get("scan") else "")
                      + f": {f['error']}" for f in s["failed_cases"]]
        return "\n".join(lines)

    # ----------------------------------------------------------------- files
    def write(self, out, plots: bool = True) -> dict:
        """Write results.csv (+ .parquet if pyarrow), summary.json, summary.txt and the
        plots to ``out``; return {kind: path}."""
        out = Path(out)
        out.mkdir(parents=True, exist_ok=True)
        paths = TableFiles(out, "results").write(self.rows, TABLE_COLUMNS)
        paths.update(summary=out / "summary.json", text=out / "summary.txt")
        atomic_write_text(paths["summary"], self.summary_json() + "\n")
        atomic_write_text(paths["text"], self.format_table() + "\n")
        if plots:
            paths.update(self.plot(out / "plots"))
        return paths

    def arm_courses(self, keys) -> dict:
        """{arm: {key: (months, mean, low, high)}}: each arm's mean course with its 95 % CI,
        monthly where the evaluator gave monthly values, else at the visits."""
        months = list(self.spec.visit_months)
        arms = {}
        for arm in self.spec.arms:
            idx = [k for k, c in enumerate(self.cases) if c["record"]["arm"] == arm.name]
            courses = {}
            for key in keys:
                monthly = self._monthly_means(idx, (key,), with_ci=True)
                if monthly is not None:
                    mean = np.array(monthly[f"{key}_mean"])
                    ci = monthly[f"{key}_ci95"]
                    lo = np.array([c[0] if c else m for c, m in zip(ci, mean)])
                    hi = np.array([c[1] if c else m for c, m in zip(ci, mean)])
                    courses[key] = (monthly["month"], mean, lo, hi)
                    continue
                stats = [_mean_ci([r[key] for r in self.rows if r["arm"] == arm.name and r["month"] == m])
                         for m in months]
                if any(st[0] is None for st in stats):
                    continue
                mean = np.array([st[0] for st in stats])
                lo = np.array([st[1] if st[1] is not None else st[0] for st in stats])
                hi = np.array([st[2] if st[2] is not None else st[0] for st in stats])
                courses[key] = (months, mean, lo, hi)
            arms[arm.name] = courses
        return arms

    def plot(self, folder) -> dict:
        """BMD and marker trajectories per arm with 95 % CI bands; strength-change
        distributions at the last visit (PNG)."""
        folder = Path(folder)
        panels = [("ls_bmd_pct", "Lumbar spine BMD"), ("th_bmd_pct", "Total hip BMD"),
                  ("fn_bmd_pct", "Femoral neck BMD"), ("p1np_pct", "P1NP"), ("ctx_pct", "CTX")]
        months = list(self.spec.visit_months)
        courses = self.arm_courses([k for k, _ in panels])
        # a study on scans has no femur: only the panels some arm has values for
        panels = [(k, t) for k, t in panels if any(k in c for c in courses.values())] or panels
        traj = plot_arm_trajectories(panels, courses, months, folder / "trajectories.png")
        last = months[-1]
        hist_panels = [("vertebral_strength_pct", f"Vertebral strength, month {last:g}"),
                       ("femoral_fall_strength_pct", f"Femoral fall strength, month {last:g}")]
        values = {arm.name: {key: [r[key] for r in self.rows if r["arm"] == arm.name
                                   and r["month"] == last and r[key] is not None]
                             for key, _ in hist_panels} for arm in self.spec.arms}
        hist_panels = [(k, t) for k, t in hist_panels if any(v[k] for v in values.values())] or hist_panels
        dist = plot_arm_histograms(hist_panels, values, folder / "strength_change.png")
        paths = {"plot_trajectories": traj, "plot_strength": dist}
        curves = {}
        for a in self.summary["arms"]:
            c = a["cumulative_incidence"]
            curves[a["arm"]] = {}
            for kind in ("vertebral", "hip"):
                if kind in c:
                    band = c.get(f"{kind}_ci95")
                    lo = None if band is None else [x[0] for x in band]
                    hi = None if band is None else [x[1] for x in band]
                    curves[a["arm"]][kind] = (c["month"], c[kind], lo, hi)
        inc_panels = [(k, t) for k, t in (("vertebral", "New vertebral fracture"), ("hip", "Hip fracture"))
                      if any(k in c for c in curves.values())]
        if inc_panels:
            paths["plot_incidence"] = plot_cumulative_incidence(
                inc_panels, curves, folder / "cumulative_incidence.png",
                note="bands: 95 % over virtual patients x calibrated risk parameters")
        return paths


def _mean_ci(values):
    """(mean, low, high, sd) with a t-based 95 % CI; Nones ignored (all None -> Nones)."""
    x = np.array([v for v in values if v is not None], dtype=float)
    if x.size == 0:
        return None, None, None, None
    mean = float(x.mean())
    if x.size < 2:
        return mean, None, None, None
    from scipy.stats import t as student_t

    sd = float(x.std(ddof=1))
    half = float(student_t.ppf(0.975, x.size - 1)) * sd / math.sqrt(x.size)
    return mean, mean - half, mean + half, sd


def _clean(obj):
    if isinstance(obj, dict):
        return {k: _clean(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_clean(v) for v in obj]
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, np.generic):
        return _clean(obj.item())
    return obj


__all__ = ["NNT_PRINT_LIMIT", "StudyResults", "TABLE_COLUMNS", "format_nnt"]
