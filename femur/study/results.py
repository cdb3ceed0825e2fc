"""Study results: risk post-processing, tidy table, trial-paper summary, plots.

One cohesive thing (hence about 500 lines): the per-case risk, the rows and the arm summary
are computed together from the case files; drawing and file formats are in femur.exports.

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
from femur.exports.plots import plot_arm_histograms, plot_arm_trajectories
from femur.exports.tables import TableFiles, csv_text
from femur.outcomes import risk
from femur.study.cases import ABS_KEYS, DIRECTION_KEY, PCT_KEYS
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
    "vertebral_phi",
    "hip_phi",
    "hip_p_fx_per_fall",
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
N_BOOTSTRAP = 2000


def _fall_model(spec: StudySpec) -> risk.FallModel:
    return risk.FallModel(
        falls_per_year=spec.risk.falls_per_year,
        p_hip_impact=spec.risk.p_hip_impact,
        n_samples=spec.risk.mc_samples,
    )


def _strength_arg(visit: dict):
    d = visit.get(DIRECTION_KEY)
    if d:
        return {float(a): s for a, s in d.items()}
    return visit["femoral_fall_strength_n"]


class StudyResults:
    """Results of a finished study (built from the case files)."""

    def __init__(self, spec: StudySpec, cases: list[dict]):
        self.spec = spec
        self.failed = [c for c in cases if "error" in c]
        self.cases = [c for c in cases if "error" not in c]
        self.fall_model = _fall_model(spec)
        self._compute_risk()
        self.rows = self._rows()
        self._row_index = {(r["case_id"], r["month"]): r for r in self.rows}
        self.summary = self._summary()

    # ----------------------------------------------------------------- risk per case
    def _compute_risk(self) -> None:
        spec = self.spec
        self.per_case = []
        for case in self.cases:
            rec, visits = case["record"], case["result"]["visits"]
            p = rec["patient"]
            t = np.array([v["month"] for v in visits]) / 12.0
            info = {"times_years": t}
            if all(v.get("vertebral_strength_n") for v in visits):
                info["vertebral_phi"] = np.array(
                    [risk.vertebral_factor_of_risk(p["body_mass_kg"], v["vertebral_strength_n"]) for v in visits]
                )
            if all(v.get("femoral_fall_strength_n") for v in visits):
                rng = np.random.Generator(np.random.PCG64(np.random.SeedSequence(p["risk_seed"])))
                falls = self.fall_model.sample(rng)
                forces = risk.fall_forces_n(
                    p["body_mass_kg"], p["height_m"], falls, p.get("trochanteric_soft_tissue_mm")
                )
                peak = risk.hip_impact_force_n(
                    p["body_mass_kg"], p["height_m"], p.get("trochanteric_soft_tissue_mm")
                )
                info["hip_phi"] = np.array([peak / v["femoral_fall_strength_n"] for v in visits])
                info["hip_p_fx"] = np.array(
                    [risk.per_fall_fracture_probability(_strength_arg(v), forces, falls) for v in visits]
                )
                info["hip_hazard"] = self.fall_model.falls_per_year * self.fall_model.p_hip_impact * info["hip_p_fx"]
            self.per_case.append(info)

        # vertebral baseline hazard: given, or calibrated on the placebo arm (target #8)
        placebo = [a.name for a in spec.arms if a.is_placebo]
        self.placebo_arm = placebo[0] if placebo else None
        self.vertebral_model = None
        if spec.risk.vertebral_h0_per_year is not None:
            self.vertebral_model = risk.VertebralRiskModel(
                spec.risk.vertebral_h0_per_year, provenance=spec.risk.vertebral_h0_provenance
            )
        elif self.placebo_arm is not None:
            traj = [
                (info["times_years"], info["vertebral_phi"])
                for case, info in zip(self.cases, self.per_case)
                if case["record"]["arm"] == self.placebo_arm and "vertebral_phi" in info
            ]
            if traj:
                h0 = risk.calibrate_vertebral_h0(traj)
                self.vertebral_model = risk.VertebralRiskModel(
                    h0,
                    provenance=(
                        f"calibrated on arm {self.placebo_arm!r} ({len(traj)} patients) to "
                        "FRAME placebo new vertebral fracture incidence 1.8 % in 12 months "
                        "(clinical-targets.md target #8)"
                    ),
                )
        for info in self.per_case:
            if self.vertebral_model is not None and "vertebral_phi" in info:
                info["vertebral_hazard"] = self.vertebral_model.hazard_per_year(info["vertebral_phi"])

    # ----------------------------------------------------------------- tidy table
    def _rows(self) -> list[dict]:
        rows = []
        arm_order = {a.name: i for i, a in enumerate(self.spec.arms)}
        order = sorted(
            range(len(self.cases)),
            key=lambda k: (arm_order[self.cases[k]["record"]["arm"]], self.cases[k]["record"]["patient"]["index"]),
        )
        for k in order:
            case, info = self.cases[k], self.per_case[k]
            rec, visits = case["record"], case["result"]["visits"]
            p = rec["patient"]
            t = info["times_years"]
            for i, v in enumerate(visits):
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
                row["vertebral_phi"] = float(info["vertebral_phi"][i]) if "vertebral_phi" in info else None
                row["hip_phi"] = float(info["hip_phi"][i]) if "hip_phi" in info else None
                row["hip_p_fx_per_fall"] = float(info["hip_p_fx"][i]) if "hip_p_fx" in info else None
                for site in ("vertebral", "hip"):
                    h = info.get(f"{site}_hazard")
                    row[f"p_{site}_fx_cum"] = None if h is None else risk.cumulative_probability(t, h, t[i])
                    row[f"p_{site}_fx_1y"] = None if h is None else risk.probability_over(h[i], 1.0)
                    row[f"p_{site}_fx_10y"] = None if h is None else risk.probability_over(h[i], 10.0)
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
    def _study_incidence(self, info, kind):
        if f"{kind}_hazard" not in info:
            return None
        return risk.cumulative_probability(
            info["times_years"], info[f"{kind}_hazard"], self.spec.duration_months / 12.0
        )

    def _summary(self) -> dict:
        spec = self.spec
        last = spec.visit_months[-1]
        arms = []
        inc = {}  # arm -> kind -> array over patients (patient order)
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
            inc[arm.name] = {}
            for kind in ("vertebral", "hip"):
                vals = [self._study_incidence(self.per_case[k], kind) for k in idx]
                if vals and all(v is not None for v in vals):
                    arr = np.array(vals)
                    inc[arm.name][kind] = arr
                    entry[f"{kind}_fracture_incidence"] = float(arr.mean())
                    entry[f"{kind}_fractures_expected"] = float(arr.sum())
                else:
                    entry[f"{kind}_fracture_incidence"] = None
                    entry[f"{kind}_fractures_expected"] = None
            # share of ALL falls that break the hip at the first visit (hip impact x fracture
            # given impact): a check on the fall model against the ~1 % of falls in older
            # white women (science note, section 1), not a calibration target
            pf = [self._row(k, spec.visit_months[0]).get("hip_p_fx_per_fall") for k in idx]
            pf_mean = _mean_ci(pf)[0]
            entry["hip_fractures_per_fall_baseline"] = (
                None if pf_mean is None else pf_mean * self.fall_model.p_hip_impact)
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

        # relative risk vs placebo: ratio of mean incidences, paired bootstrap CI
        rng = np.random.Generator(np.random.PCG64(np.random.SeedSequence(entropy=spec.seed, spawn_key=(2**31 - 1,))))
        ref = self.placebo_arm
        for entry in arms:
            for kind in ("vertebral", "hip"):
                entry[f"relative_risk_{kind}"] = None
                entry[f"relative_risk_{kind}_ci95"] = None
                if ref is None or entry["arm"] == ref:
                    continue
                a, b = inc[entry["arm"]].get(kind), inc[ref].get(kind)
                if a is None or b is None or b.mean() <= 0:
                    continue
                entry[f"relative_risk_{kind}"] = float(a.mean() / b.mean())
                if len(a) == len(b) and len(a) > 1:
                    pick = rng.integers(0, len(a), size=(N_BOOTSTRAP, len(a)))
                    num, den = a[pick].mean(axis=1), b[pick].mean(axis=1)
                    ok = den > 0
                    rr = num[ok] / den[ok]
                    if rr.size:
                        entry[f"relative_risk_{kind}_ci95"] = [
                            float(np.percentile(rr, 2.5)),
                            float(np.percentile(rr, 97.5)),
                        ]

        vm = self.vertebral_model
        failed = {}
        if self.failed:
            failed["failed_cases"] = [{
                "case_id": c["record"]["case_id"], "arm": c["record"]["arm"],
                "patient_id": c["record"]["patient"]["patient_id"],
                "scan": (c["record"]["patient"].get("scan") or {}).get("image"),
                "error": c["error"]} for c in self.failed]
        return {
            "study": spec.name,
            "femur_version": __version__,
            "n_patients": spec.cohort.size,
            "duration_months": spec.duration_months,
            "visit_months": list(spec.visit_months),
            "last_visit_month": last,
            "placebo_arm": ref,
            "arms": arms,
            "risk": {
                "vertebral_h0_per_year": vm.h0_per_year if vm else None,
                "vertebral_h0_provenance": vm.provenance if vm else None,
                "vertebral_beta": vm.beta if vm else risk.SPINE_HAZARD_BETA,
                "vertebral_activity": risk.SPINE_GOVERNING_ACTIVITY,
                "fall_model": self.fall_model.to_dict(),
                "bct_note": risk.BCT_NOTE,
            },
            "notes": [
                "Fracture incidences are expected values (mean over virtual patients of each "
                "patient's probability over the study), not counted events.",
                "Relative risks: ratio of mean incidences vs the placebo arm; 95 % CI from a "
                f"paired bootstrap over patients ({N_BOOTSTRAP} resamples).",
                "Only the vertebral baseline hazard is calibrated (clinical-targets.md #8); "
                "every other number is a model prediction.",
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
        lines.append("")
        lines.append(
            "arm".ljust(width)
            + f"{'P1NP peak %':>14}{'vert. fx %':>12}{'RR vert (95% CI)':>24}{'hip fx %':>12}{'RR hip (95% CI)':>24}"
        )
        for a in s["arms"]:
            def pct(x):
                return f"{100 * x:.2f}" if x is not None else "-"

            def rr(key):
                v, ci = a[f"relative_risk_{key}"], a[f"relative_risk_{key}_ci95"]
                if v is None:
                    return "-"
                return f"{v:.2f}" + (f" ({ci[0]:.2f}, {ci[1]:.2f})" if ci else "")

            peak = a["p1np_pct_peak_mean"]
            lines.append(
                a["arm"].ljust(width)
                + f"{(f'{peak:.0f}' if peak is not None else '-'):>14}"
                + f"{pct(a['vertebral_fracture_incidence']):>12}{rr('vertebral'):>24}"
                + f"{pct(a['hip_fracture_incidence']):>12}{rr('hip'):>24}"
            )
        r = s["risk"]
        if r["vertebral_h0_per_year"] is not None:
            lines.append(
                f"vertebral baseline hazard h0 = {r['vertebral_h0_per_year']:.4g}/year ({r['vertebral_h0_provenance']})"
            )
        per_fall = [a.get("hip_fractures_per_fall_baseline") for a in s["arms"]]
        if per_fall and per_fall[0] is not None:
            lines.append(
                f"hip fractures per fall at baseline (arm {s['arms'][0]['arm']!r}): {100 * per_fall[0]:.1f} % "
                "(about 1 % of falls break a hip in older white women; the fall model's inputs "
                "are partly assumptions, see femur/outcomes/risk.py)"
            )
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
        return {"plot_trajectories": traj, "plot_strength": dist}


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


__all__ = ["StudyResults", "TABLE_COLUMNS"]
