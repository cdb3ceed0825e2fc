"""A study's fracture risk: per-case incidences, arm curves, relative risks with
confidence intervals, number needed to treat.

Everything is computed on one rank from the case files with the calibrated risk parameters
(``[risk] parameters``, ``femur.outcomes.risk.parameters``); the engine's strengths enter
through the study's strength model (``[model] strength_model``).

Uncertainty. A 95 % interval here reflects BOTH the virtual cohort (patients resampled with
replacement, the same patients in every arm: a paired bootstrap) and the calibration
(each resample uses a parameter set drawn from the calibration's normal approximation, its
stored covariance). ``[risk] parameter_draws`` resamples; the cohort-only interval (the
fitted parameters, patients resampled) is reported beside it.
"""

from __future__ import annotations

import numpy as np

from femur.core.errors import InputError
from femur.core.log import get_logger
from femur.mechanics.strength import strength_scale
from femur.outcomes import risk
from femur.outcomes.risk import spine
from femur.study.spec import StudySpec

log = get_logger(__name__)


def _interp(months, curve, month):
    return float(np.interp(month, months, curve))


class StudyRisk:
    """Fracture risk of a finished study's cases (``cases``: record + result dicts)."""

    def __init__(self, spec: StudySpec, cases: list[dict]):
        self.spec = spec
        params = risk.load_parameters(spec.risk.parameters)
        overrides = {k: v for k, v in (("falls_per_year", spec.risk.falls_per_year),
                                       ("hip_impact_share", spec.risk.hip_impact_share)) if v is not None}
        self.overrides = overrides
        self.params = params.with_fixed(**overrides) if overrides else params
        self.values = self.params.all_values()
        self.months = risk.month_grid(spec.duration_months)
        self.courses = [risk.RiskCourse.from_inputs(
            risk.case_inputs(c["record"], c["result"], spec.model.strength_model), self.months) for c in cases]
        notes = {n for c in self.courses for n in c.notes}
        calibrated_on = (params.provenance.get("engine") or {}).get("strength_model")
        ran = spec.model.strength_model
        if calibrated_on and strength_scale(calibrated_on) != strength_scale(ran):
            # the risk parameters scale absolute strengths (between-woman gradient, fall
            # strength scale): strengths of another scale shift every risk
            msg = (f"the fracture-risk parameters ({params.source}) were calibrated on the "
                   f"'{calibrated_on}' strength model ({strength_scale(calibrated_on)}s), and this study ran "
                   f"'{ran}' ({strength_scale(ran)}s): its absolute risks are off by the two scales' ratio "
                   f"(set [model] strength_model = \"{calibrated_on}\", or recalibrate: python -m "
                   "femur.calibration.risk)")
            log.warning("%s", msg)
            notes.add(msg)
        self.notes = sorted(notes)
        self.batch = (risk.CourseBatch.of(self.courses, spec.risk.vertebral_fracture_definition)
                      if self.courses else None)
        b = self.batch
        self.has_spine = b is not None and b.vertebral_strength_n is not None
        self.has_hip = b is not None and b.fall_strength_n is not None
        if self.has_spine:
            self._x, self._offset = spine.design(b, self.values)
            self.spine_hazard = np.exp(risk.spine_log_hazard(b, self.values))
            self.spine = risk.spine_incidence(b, self.values)
        if self.has_hip:
            self.hip_p = risk.hip_per_impact(b, self.values)
            self.hip_rate = risk.hip_rate_per_year(b, self.values, self.hip_p)
            self.hip = risk.hip_incidence(b, self.values, self.hip_p)
            stt = None if b.soft_tissue_mm is None else b.soft_tissue_mm
            self.mean_force = risk.hip.mean_impact_force_n(b.body_mass_kg, stt, self.values)

    # ------------------------------------------------------------------ per case
    def case_values(self, k: int, month: float) -> dict:
        """Risk columns of case ``k`` at ``month`` (the study table)."""
        out = dict.fromkeys(("p_vertebral_fx_cum", "p_vertebral_fx_1y", "p_vertebral_fx_10y", "p_hip_fx_cum",
                             "p_hip_fx_1y", "p_hip_fx_10y", "hip_p_fx_per_impact", "hip_phi"))
        m = self.months
        if self.has_spine:
            h = _interp(m, self.spine_hazard[k], month)
            out.update(p_vertebral_fx_cum=_interp(m, self.spine[k], month),
                       p_vertebral_fx_1y=float(-np.expm1(-h)), p_vertebral_fx_10y=float(-np.expm1(-10 * h)))
        if self.has_hip:
            q = _interp(m, self.hip_rate[k], month)
            shape = self.values["fall_rate_shape"]
            out.update(p_hip_fx_cum=_interp(m, self.hip[k], month),
                       p_hip_fx_1y=float(risk.hip.nb_incidence(q, shape)),
                       p_hip_fx_10y=float(risk.hip.nb_incidence(10 * q, shape)),
                       hip_p_fx_per_impact=_interp(m, self.hip_p[k], month),
                       hip_phi=float(self.mean_force[k] / _interp(m, self.batch.fall_strength_n[k, :, 0], month)))
        return out

    # ------------------------------------------------------------------ arms
    def _incidences(self, values: dict) -> dict:
        """{kind: (cases x months)} for one parameter set."""
        out = {}
        if self.has_spine:
            theta = np.array([values[k] for k in spine.FITTED])
            lh = self._x @ theta + self._offset
            out["vertebral"] = -np.expm1(-spine.cumulative_hazard(lh, self.months))
        if self.has_hip:
            out["hip"] = risk.hip_incidence(self.batch, values)
        return out

    def arm_summaries(self, arm_cases: dict, reference: str | None, seed: int) -> dict:
        """Per arm: incidence curves and end values with 95 % CIs, expected fractures, hip
        fractures per fall at baseline and the effective number of women it rests on
        (``(sum p)^2 / sum p^2`` of their per-impact risks); against ``reference``: relative risk, absolute risk
        reduction, number needed to treat (each with a 95 % CI). ``arm_cases``: {arm:
        [case index, ...]} (patient order)."""
        kinds = [k for k, ok in (("vertebral", self.has_spine), ("hip", self.has_hip)) if ok]
        point = {"vertebral": getattr(self, "spine", None), "hip": getattr(self, "hip", None)}
        out = {arm: {} for arm in arm_cases}
        for arm, idx in arm_cases.items():
            e = out[arm]
            for kind in ("vertebral", "hip"):
                if kind not in kinds or not idx:
                    e[f"{kind}_fracture_incidence"] = e[f"{kind}_fractures_expected"] = None
                    continue
                inc = point[kind][idx]
                e[f"{kind}_fracture_incidence"] = float(inc[:, -1].mean())
                e[f"{kind}_fractures_expected"] = float(inc[:, -1].sum())
            e["hip_fractures_per_fall_baseline"] = (
                float(self.values["hip_impact_share"] * self.hip_p[idx, 0].mean()) if self.has_hip and idx else None)
            # on how many women that share rests: a few weak femurs can carry most of it
            base = self.hip_p[idx, 0] if self.has_hip and idx else np.zeros(0)
            e["hip_risk_effective_women"] = (risk.risk_concentration(base)["effective_women"]
                                             if base.size and np.all(np.isfinite(base)) and base.sum() > 0 else None)
        draws = int(self.spec.risk.parameter_draws)
        bands = self._resample(arm_cases, kinds, reference, seed, draws) if draws > 1 and kinds else {}
        for arm, idx in arm_cases.items():
            e = out[arm]
            curves = {"month": [float(x) for x in self.months]}
            for kind in kinds:
                if not idx:
                    continue
                mean = point[kind][idx].mean(axis=0)
                curves[kind] = [float(x) for x in mean]
                band = bands.get((arm, kind))
                curves[f"{kind}_ci95"] = None if band is None else [[float(a), float(b)] for a, b in band["curve"].T]
                e[f"{kind}_fracture_incidence_ci95"] = None if band is None else band["end"]
            e["cumulative_incidence"] = curves
            for kind in ("vertebral", "hip"):
                for key in ("relative_risk", "absolute_risk_reduction", "number_needed_to_treat"):
                    e[f"{key}_{kind}"] = e[f"{key}_{kind}_ci95"] = None
                e[f"relative_risk_{kind}_ci95_cohort_only"] = None
                if kind not in kinds or reference is None or arm == reference or not idx or not arm_cases[reference]:
                    continue
                a = point[kind][idx][:, -1].mean()
                r = point[kind][arm_cases[reference]][:, -1].mean()
                if r > 0:
                    e[f"relative_risk_{kind}"] = float(a / r)
                arr = float(r - a)
                e[f"absolute_risk_reduction_{kind}"] = arr
                e[f"number_needed_to_treat_{kind}"] = float(1.0 / arr) if arr > 0 else None
                band = bands.get((arm, kind, "vs"))
                if band:
                    e[f"relative_risk_{kind}_ci95"] = band["rr"]
                    e[f"relative_risk_{kind}_ci95_cohort_only"] = band["rr_cohort"]
                    e[f"absolute_risk_reduction_{kind}_ci95"] = band["arr"]
                    lo, hi = band["arr"]
                    # an NNT interval exists only where the ARR interval excludes 0
                    e[f"number_needed_to_treat_{kind}_ci95"] = [1.0 / hi, 1.0 / lo] if lo > 0 else None
        return out

    def _resample(self, arm_cases, kinds, reference, seed, draws) -> dict:
        """Paired bootstrap over patients x parameter draws (module docstring)."""
        root = np.random.SeedSequence(entropy=int(seed), spawn_key=(2**31 - 2,))
        s_boot, s_par = root.spawn(2)
        rng = np.random.Generator(np.random.PCG64(s_boot))
        patient_of = {k: c.patient_index for k, c in enumerate(self.courses)}
        patients = sorted({patient_of[k] for idx in arm_cases.values() for k in idx})
        col = {p: i for i, p in enumerate(patients)}
        # arm x patient -> case (or -1 where that patient's case failed)
        table = {arm: np.full(len(patients), -1) for arm in arm_cases}
        for arm, idx in arm_cases.items():
            for k in idx:
                table[arm][col[patient_of[k]]] = k
        picks = rng.integers(0, len(patients), size=(draws, len(patients)))
        param_sets = self.params.draws(draws, s_par)
        curves = {(arm, kind): [] for arm in arm_cases for kind in kinds}
        ends_cohort = {(arm, kind): [] for arm in arm_cases for kind in kinds}
        base = {kind: inc for kind, inc in self._incidences(self.values).items()}
        for b in range(draws):
            inc = self._incidences(param_sets[b])
            for arm in arm_cases:
                cases = table[arm][picks[b]]
                cases = cases[cases >= 0]
                if cases.size == 0:
                    continue
                for kind in kinds:
                    curves[(arm, kind)].append(inc[kind][cases].mean(axis=0))
                    ends_cohort[(arm, kind)].append(base[kind][cases, -1].mean())
        out = {}
        for (arm, kind), cs in curves.items():
            if not cs:
                continue
            c = np.array(cs)
            band = np.percentile(c, [2.5, 97.5], axis=0)
            out[(arm, kind)] = {"curve": band, "end": [float(band[0, -1]), float(band[1, -1])], "ends": c[:, -1]}
        if reference is None:
            return out
        for arm in arm_cases:
            for kind in kinds:
                a, r = out.get((arm, kind)), out.get((reference, kind))
                if arm == reference or a is None or r is None or len(a["ends"]) != len(r["ends"]):
                    continue
                ok = r["ends"] > 0
                rr = a["ends"][ok] / r["ends"][ok]
                arr = r["ends"] - a["ends"]
                ca, cr = np.array(ends_cohort[(arm, kind)]), np.array(ends_cohort[(reference, kind)])
                okc = cr > 0
                pct = lambda x: [float(np.percentile(x, 2.5)), float(np.percentile(x, 97.5))]  # noqa: E731
                out[(arm, kind, "vs")] = {"rr": pct(rr) if rr.size else None, "arr": pct(arr),
                                          "rr_cohort": pct(ca[okc] / cr[okc]) if okc.any() else None}
        return out

    # ------------------------------------------------------------------ description
    def description(self) -> dict:
        """What the risk numbers rest on (the summary's ``risk`` block)."""
        p = self.params
        return {
            "parameters_file": p.source,
            "parameters_status": p.status,
            "values": dict(p.values),
            "standard_errors": dict(zip(p.covariance_names,
                                        (float(x) for x in np.sqrt(np.clip(np.diag(p.covariance), 0, None))))),
            "fixed": dict(p.fixed),
            "fixed_overridden_by_the_study": dict(self.overrides),
            "strength_model": self.spec.model.strength_model,
            "reference_arm": self.spec.risk.reference_arm,
            "vertebral_fracture_definition": self.spec.risk.vertebral_fracture_definition,
            "parameter_draws": int(self.spec.risk.parameter_draws),
            "notes": list(self.notes),
            "bct_note": risk.BCT_NOTE,
        }


def check_reference(spec: StudySpec, arm_names) -> str | None:
    ref = spec.risk.reference_arm
    if ref is not None and ref not in arm_names:
        raise InputError(f"study {spec.name}: reference arm {ref!r} is not one of {list(arm_names)}")
    return ref


__all__ = ["StudyRisk", "check_reference"]
