"""One virtual patient under a treatment: FE-coupled remodeling of a femur and a vertebra.

The path of the data (DESIGN.md): bone models (femur + vertebra at the patient's
DXA-equivalent T-scores) -> treatment (PK) -> remodeling (per-element bone-cell model,
`femur.remodeling.RemodelingModel`) -> mechanics (linear elasticity, re-solved every
``fe_interval_days``) -> outcomes (DXA-equivalent BMD, vBMD, markers, strength).

This module is the time loop only; each bone's solvers, state and measurements are a
:class:`femur.workflows.tracks.BoneTrack`, the result a
:class:`femur.workflows.timecourse.TimeCourse`, and the files are written by the export
objects the run is given (``femur.exports.fields``). Coupling (operator splitting):

* every ``fe_interval_days`` the habitual load case of each bone is re-solved with the
  current densities (stance for the femur, axial compression for the vertebra) and gives
  the mechanostat stimulus (``BoneTrack.stimulus``);
* between FE solves the cell/density model advances with the stimulus held fixed (daily
  implicit steps); the element moduli follow the density through the bone's material
  law, and the FE operators are reassembled in place (same sparsity, GAMG interpolation
  reused, warm start);
* DXA-equivalent areal BMD follows the mineral mass (``BoneTrack.dxa_density``);
* markers (P1NP, CTX) are the turnover-weighted aggregate fluxes of all owned elements of
  both bones;
* strength at ``strength_months`` from the ``strength_model``
  (``femur.mechanics.strength``): "linear" (default; fracture load, Schileo strain
  criterion; femur in the neck ROI, stance and sideways fall; vertebra compression) or
  "nonlinear" (the peak of a pushover of each strength case, P2; with its 0.2 %-offset
  yield load).

Adaptive habitual solves (issue 13, an option, off by default): with ``fe_adaptive_tol``
a bone's habitual solve on the ``fe_interval_days`` grid is skipped (its stimulus held)
while the RMS relative change of its moduli since its last solve (volume-weighted over
the remodeling cells, ``BoneTrack.modulus_change``) is at most ``fe_adaptive_tol``; the
grid's solves are never moved or added, only skipped, so a run does at most the fixed
interval's solves.

A Simulation works on copies of the bones it is given: the caller's Bone objects are
never changed. Units: days, months (365.25/12 days), mm, N, MPa, g/cm3, mg/cm3.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from femur.core.errors import InputError
from femur.core.log import get_logger, progress_enabled
from femur.core.mpi import MPI
from femur.core.progress import ProgressBar
from femur.core.units import DAYS_PER_MONTH
from femur.exports.fields import simulation_exports
from femur.mechanics.strength import (
    AUTO,
    DEFAULT_STRENGTH_MODEL,
    QUANTITY_ORDER,
    check_strength_model,
    describe_strength_model,
    pct_name,
    quantity_name,
    resolve_strength_model,
)
from femur.outcomes.compartments import BASELINE_KEYS, COMPARTMENT_KEYS, changes_from_sums
from femur.remodeling.model import RemodelingModel, markers_from_sums
from femur.remodeling.wnt import sclerostin_pct_from_sums
from femur.remodeling.parameters import ModelParameters, scale_for_patient
from femur.remodeling.patient import Patient
from femur.remodeling.switching import switching_parameters
from femur.treatments.regimen import as_sequence, parse_treatment
from femur.workflows.bones import KIND_OF, bone_name, describe_geometry, patient_bone
from femur.workflows.timecourse import SITE_KEYS, TimeCourse
from femur.workflows.scans import CTScan, is_ct_bone, scan_bone, scan_patient
from femur.workflows.tracks import HABITUAL_RTOL, BoneTrack, RunStats

log = get_logger(__name__)

DEFAULT_FE_INTERVAL_DAYS = 14.0
#: strength months by default: these within the run, and always the last month
DEFAULT_STRENGTH_MONTHS = (0, 6, 12, 24)
BONES = ("femur", "vertebra")


def _check_rtol(v, name: str) -> float:
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not (np.isfinite(v) and 0 < v < 1):
        raise InputError(f"simulate: {name} must be a relative Krylov tolerance in (0, 1), got {v!r}")
    return float(v)


def _strength_rtols(v) -> dict:
    """``strength_rtol`` as {bone kind: rtol}: None (every bone the solver configuration's),
    one number for both bones, or a dict by bone kind (a bone not named keeps the
    configuration's)."""
    if v is None:
        return {}
    if isinstance(v, dict):
        unknown = set(v) - set(BONES)
        if unknown:
            raise InputError(f"simulate: strength_rtol names unknown bones {sorted(unknown)}; expected "
                             f"keys from {BONES}")
        return {k: _check_rtol(x, f"strength_rtol['{k}']") for k, x in v.items() if x is not None}
    r = _check_rtol(v, "strength_rtol")
    return dict.fromkeys(BONES, r)


def default_strength_months(months: float) -> list[float]:
    """0, 6, 12, 24 within the run, plus its final month."""
    return sorted({float(m) for m in DEFAULT_STRENGTH_MONTHS if m <= months} | {float(months)})


class Simulation:
    """FE-coupled remodeling of one patient's femur and vertebra under a treatment.

    ``treatment``: a drug, a spec "drug:months,...", a Regimen or a TreatmentSequence; a
    bare drug runs for the whole simulation unless its label fixes the course
    (``femur.treatments.parse_treatment``). ``femur_bone`` / ``vertebra_bone``: bones to
    use instead of the built-in ones (copied; the caller's objects are not changed).
    ``femur_model``: the built-in femur, ``"femur"`` (anatomical, default) or
    ``"parametric-femur"``; ``femur_params``: its shape (``FemurShape`` fields for the
    anatomical femur, ``ProximalFemur`` fields for the parametric one).
    ``exports``: export objects (``femur.exports.fields``) the run writes to.
    ``habitual_rtol``: the Krylov rtol of the habitual (stimulus) solves;
    ``strength_rtol``: that of the linear strength solves, one number or {bone kind: rtol}
    (None: the solver configuration's, 1e-10 for gamg; ``femur.study.evaluator`` sets
    looser ones for trials, issue 13).
    ``cell_step_days``: the longest step of the cell model (days; 1 by default, 2 in trials:
    ``femur.study.evaluator.TrialSolves``, the step the cell model's calibration fits with).
    ``baseline_strength``: {bone kind: {strength case: quantities}} at month 0 computed
    before on the same baseline bone with the same strength settings (``baseline_by_case``
    of such a run): those cases are not solved at month 0, except each bone's habitual
    case (``BoneTrack.strength``). The caller vouches that bone and settings are the same.
    ``switching``: compartment switching (``femur.remodeling.switching``; None: its
    defaults, True/False, or ``SwitchingParameters``), checked after every cell-model
    advance (each FE interval and visit); the run's ``compartment_switches`` counts the
    elements that switched.
    ``strength_model_settled``: the caller has settled a named ``strength_model`` for these
    bones (a study, when its file was read: ``femur.study.spec``), so it runs as named
    without being resolved again ("auto" is still resolved).
    """

    def __init__(self, treatment="romosozumab", months: float = 12, patient: Patient | None = None,
                 femur_bone=None, vertebra_bone=None,
                 fe_interval_days: float = DEFAULT_FE_INTERVAL_DAYS,
                 strength_months=None, mesh_size_mm: float | None = None,
                 femur_params: dict | None = None, vertebra_params: dict | None = None,
                 femur_model: str = "femur",
                 order: int = 1, solver: str = "gamg", params: ModelParameters | None = None,
                 aging: bool = True, turnover_multiplier: float = 1.0,
                 drug_response_multiplier: float = 1.0, bones=BONES, comm=MPI.COMM_WORLD,
                 progress: bool = True, exports=(), strength_model: str = DEFAULT_STRENGTH_MODEL,
                 fe_adaptive_tol: float | None = None, habitual_rtol: float = HABITUAL_RTOL,
                 strength_rtol=None, baseline_strength: dict | None = None, switching=None,
                 cell_step_days: float = 1.0, strength_model_settled: bool = False):
        if not (np.isfinite(months) and months > 0):
            raise InputError(f"simulate: months must be > 0, got {months}")
        if not (np.isfinite(fe_interval_days) and 0 < fe_interval_days <= 366):
            raise InputError(f"simulate: fe_interval_days must be in (0, 366] days, got {fe_interval_days}")
        if fe_adaptive_tol is not None and not (np.isfinite(fe_adaptive_tol) and 0 <= fe_adaptive_tol < 1):
            raise InputError(f"simulate: fe_adaptive_tol must be a relative modulus change in [0, 1), "
                             f"got {fe_adaptive_tol}")
        self.fe_adaptive_tol = None if fe_adaptive_tol is None else float(fe_adaptive_tol)
        #: compartment switching (femur.remodeling.switching; None: its defaults)
        self.switching = switching_parameters(switching)
        self.habitual_rtol = _check_rtol(habitual_rtol, "habitual_rtol")
        self.strength_rtol = _strength_rtols(strength_rtol)
        #: {bone kind: {strength case: quantities}} at month 0, given (a patient's other arm
        #: computed them on the same baseline bone with the same settings) and as run
        self.baseline_strength = dict(baseline_strength or {})
        self.baseline_by_case: dict = {}
        #: set True to keep each bone's strength solvers open at the end of run():
        #: {bone kind: BoneTrack.hand_over()} in ``handed_solvers`` (femur.study.evaluator
        #: hands them to the patient's next arm, BoneTrack.adopt)
        self.hand_over_solvers, self.handed_solvers = False, {}
        for name, v in (("turnover_multiplier", turnover_multiplier),
                        ("drug_response_multiplier", drug_response_multiplier)):
            if not (np.isfinite(v) and v > 0):
                raise InputError(f"simulate: {name} must be > 0, got {v}")
        unknown = set(bones) - set(BONES)
        if unknown or not bones:
            raise InputError(f"simulate: bones must be a subset of {BONES}, got {bones}")
        self.femur_model = bone_name(femur_model)
        if KIND_OF[self.femur_model] != "femur":
            raise InputError(f"simulate: femur_model must be a femur ('femur' or 'parametric-femur'), "
                             f"got '{femur_model}'")
        self.comm = comm
        self.months = float(months)
        self.patient = patient or Patient()
        self.fe_interval_days = float(fe_interval_days)
        if strength_months is None:
            strength_months = default_strength_months(self.months)
        self.strength_months = sorted({float(m) for m in strength_months if 0 <= m <= months} | {0.0})
        self.order, self.solver = int(order), solver
        #: the strength model that runs, and why ("auto": the one that meets the surrogate's
        #: accuracy target for these bones; femur.mechanics.strength.resolve_strength_model)
        if strength_model_settled and strength_model != AUTO:
            # the caller settled the model for these bones (a study, when its file was read,
            # and its summary says why): taken as named
            self.strength_model, self.strength_model_reason = check_strength_model(strength_model), "as given"
        else:
            self.strength_model, self.strength_model_reason = resolve_strength_model(
                strength_model, [k for k in BONES if k in bones], "simulate: strength_model", mesh_size_mm,
                builtin=(femur_bone is None and vertebra_bone is None and bone_name(femur_model) == "femur"))
        if self.strength_model_reason.startswith("as given, though"):
            log.warning("strength model: %s", describe_strength_model(self.strength_model, self.strength_model_reason))
        elif strength_model != self.strength_model:
            log.info("strength model: %s", describe_strength_model(self.strength_model, self.strength_model_reason))
        self.progress = progress
        self.exports = list(exports)
        self.params = scale_for_patient(params or ModelParameters(), turnover_multiplier,
                                        drug_response_multiplier)
        self.sequence = (parse_treatment(treatment, self.months) if isinstance(treatment, str)
                         else as_sequence(treatment))
        if not (np.isfinite(cell_step_days) and 0 < cell_step_days <= 7):
            raise InputError(f"simulate: cell_step_days must be in (0, 7] days, got {cell_step_days}")
        self.cell_step_days = float(cell_step_days)
        self.model = RemodelingModel(self.sequence, self.patient, params=self.params, aging=aging,
                                     max_step_days=self.cell_step_days)
        self.treatment = self.sequence.label()
        self.stats = RunStats()
        t0 = time.perf_counter()
        given = {"femur": femur_bone, "vertebra": vertebra_bone}
        geometry = {"femur": femur_params, "vertebra": vertebra_params}
        self.tracks: dict[str, BoneTrack] = {}
        for kind in BONES:
            if kind not in bones:
                continue
            bone = given[kind]
            if bone is None:
                log.info("building the %s of the patient ...", kind)
                model = self.femur_model if kind == "femur" else kind
                bone = patient_bone(model, self.patient, mesh_size_mm, geometry[kind], comm)
            elif bone.density is None:
                raise InputError(f"simulate: bone '{bone.name}' has no density field")
            else:
                bone = bone.copy()
            self.tracks[kind] = BoneTrack(kind, bone, self.model, self.stats, self.order, self.solver,
                                          self.strength_model, habitual_rtol=self.habitual_rtol,
                                          strength_rtol=self.strength_rtol.get(kind),
                                          switching=self.switching)
            if self.strength_model == "hybrid":
                log.info("hybrid strength model, %s: %s", kind, ", ".join(
                    f"{p} {m}" for p, m in self.tracks[kind].strength_methods().items()))
        self.stats.timings["build_s"] = time.perf_counter() - t0

    # ------------------------------------------------------------------ time loop
    def _markers_and_drug(self, t_day) -> dict:
        sums = sum(self.model.marker_sums(t.state) for t in self.tracks.values())
        rec = markers_from_sums(self.comm.allreduce(sums, op=MPI.SUM))
        rec["drug_serum_ug_per_ml"] = float(self.model.serum_ug_ml(np.array([t_day]))[0])
        scl = sum(self.model.sclerostin_sums(t.state) for t in self.tracks.values())
        rec.update(sclerostin_pct_from_sums(self.comm.allreduce(scl, op=MPI.SUM)))
        return rec

    def _measure(self, t_day) -> dict:
        t0 = time.perf_counter()
        rec, sums = {}, {}
        for track in self.tracks.values():
            rec.update(track.measure(self.comm))
            sums.update(track.compartment_sums(self.comm))
        rec.update(changes_from_sums(sums))
        rec.update(self._markers_and_drug(t_day))
        self.stats.timings["dxa_s"] += time.perf_counter() - t0
        return rec

    def run(self, out: str | Path | None = None) -> TimeCourse:
        """Run the simulation; ``out``: also write the default exports there
        (``femur.exports.fields.simulation_exports``)."""
        exports = self.exports + (simulation_exports(out) if out else [])
        end_day = self.months * DAYS_PER_MONTH
        month_days = [m * DAYS_PER_MONTH for m in range(int(np.floor(self.months + 1e-9)) + 1)]
        if month_days[-1] < end_day - 1e-6:
            month_days.append(end_day)
        fe_days = list(np.arange(self.fe_interval_days, end_day, self.fe_interval_days))
        strength_days = {round(m * DAYS_PER_MONTH, 6) for m in self.strength_months}
        events = sorted(set(round(d, 6) for d in month_days + fe_days + list(strength_days)))
        visits, strengths = [], {}
        stimulus = {k: np.zeros(t.bone.num_local_cells) for k, t in self.tracks.items()}
        for e in exports:
            e.start(self)
        bar = ProgressBar(len(events), self.progress and progress_enabled(), f"simulate {self.treatment} "
                          f"{self.months:g} mo", comm=self.comm)
        t_prev = 0.0
        for t in events:
            if t > t_prev:
                t0 = time.perf_counter()
                for k, track in self.tracks.items():
                    track.state = self.model.advance(track.state, t_prev, t, stimulus=stimulus[k])
                    track.switch_compartments()
                self.stats.timings["cells_s"] += time.perf_counter() - t0
                for track in self.tracks.values():
                    track.update_density()
            if any(abs(t - d) < 1e-6 for d in fe_days):
                for k, track in self.tracks.items():
                    if self.fe_adaptive_tol is not None and track.modulus_change() <= self.fe_adaptive_tol:
                        self.stats.fe_skipped += 1  # the moduli have hardly moved: stimulus held
                        continue
                    stimulus[k] = track.stimulus()
            if round(t, 6) in strength_days:
                m = round(t / DAYS_PER_MONTH, 6)
                strengths[m] = {}
                for k, track in self.tracks.items():
                    by_case = track.strength(self.baseline_strength.get(k) if t == 0 else None)
                    if t == 0:
                        self.baseline_by_case[k] = by_case
                    for q in by_case.values():
                        strengths[m].update(q)
            if any(abs(t - d) < 1e-6 for d in month_days):
                rec = {"month": round(t / DAYS_PER_MONTH, 6)}
                rec.update(self._measure(t))
                visits.append(rec)
                for e in exports:
                    e.write(self, rec["month"])
            t_prev = t
            bar.update(1)
        bar.close()
        result = self._result(visits, strengths)
        for e in exports:
            e.finish(self, result)
        for k, track in self.tracks.items():
            if self.hand_over_solvers:
                self.handed_solvers[k] = track.hand_over()
            track.close()
        return result

    def _result(self, visits: list, strengths: dict) -> TimeCourse:
        months = np.array([v["month"] for v in visits])
        base = visits[0]

        def course(key):
            return visit_course(visits, key)

        bmd_pct, abmd = {}, {}
        for key in SITE_KEYS:
            k = f"{key}_abmd_g_cm2"
            if k in base:
                abmd[key] = course(k)
                bmd_pct[key] = np.array([100.0 * (v[k] / base[k] - 1.0) for v in visits])
        vbmd = {}
        for k in base:
            if "_vbmd_" in k:
                vbmd[k] = course(k)
                vbmd[k.replace("_mg_cm3", "_pct")] = np.array([100.0 * (v[k] / base[k] - 1.0) for v in visits])
        compartments = {k: course(k) for k in COMPARTMENT_KEYS if k in base}
        compartment_baseline = {k: base[k] for k in BASELINE_KEYS if k in base}
        sm = sorted(strengths)
        strength, strength_pct = {}, {}
        for prefix, kind in QUANTITY_ORDER:
            name = quantity_name(prefix, kind)
            if sm and name in strengths[sm[0]]:
                vals = [strengths[m][name] for m in sm]
                if any(v is None for v in vals):  # e.g. an offset yield the curve never reached
                    vals = [np.nan if v is None else v for v in vals]
                strength[name] = np.array(vals, dtype=float)
                strength_pct[pct_name(name)] = np.array([100.0 * (x / vals[0] - 1.0) for x in vals])
        return TimeCourse(
            driver="fe", treatment=self.treatment, regimen=self.sequence.describe(self.months * DAYS_PER_MONTH),
            patient=self.patient.to_dict(), months=months, bmd_pct=bmd_pct,
            p1np_pct=course("p1np_pct"), ctx_pct=course("ctx_pct"),
            drug_serum_ug_per_ml=course("drug_serum_ug_per_ml"), abmd_g_cm2=abmd, vbmd=vbmd,
            sclerostin_pct={k: course(k) for k in ("serum_sclerostin_total_pct", "serum_sclerostin_free_pct")},
            compartments=compartments, compartment_baseline=compartment_baseline,
            strength_months=np.array(sm, dtype=float), strength=strength, strength_pct=strength_pct,
            run={"fe_interval_days": self.fe_interval_days, "fe_solves": self.stats.fe_solves,
                 **({"fe_adaptive_tol": self.fe_adaptive_tol, "fe_skipped": self.stats.fe_skipped}
                    if self.fe_adaptive_tol is not None else {}),
                 **({"shared_strength_cases": self.stats.shared_strength} if self.stats.shared_strength else {}),
                 **({"compartment_switches": {k: t.switch_counts(self.comm) for k, t in self.tracks.items()}}
                    if self.switching.enabled else {}),
                 "strength_model": self.strength_model, "strength_model_reason": self.strength_model_reason,
                 "strength_methods": {k: t.strength_methods() for k, t in self.tracks.items()},
                 "habitual_rtol": self.habitual_rtol, "strength_rtol": dict(self.strength_rtol),
                 "cell_step_days": self.cell_step_days,
                 "dofs": {k: t.dofs for k, t in self.tracks.items()},
                 "geometry": {k: describe_geometry(t.bone) for k, t in self.tracks.items()},
                 "timings_s": self.stats.summary()},
            geometry={k: g for k, t in self.tracks.items() if (g := t.geometry()) is not None},
            comm=self.comm,
        )


def visit_course(visits: list, key: str) -> np.ndarray:
    """The values of ``key`` over the visit records, NaN where a visit lacks it: a measure
    can stop being defined during a run (the hip ROI's cortical porosity once compartment
    switching has turned every cortical cell in it trabecular)."""
    return np.array([v.get(key, np.nan) for v in visits], dtype=float)


def simulate(bone=None, regimen="romosozumab", months: float = 12, patient=None, out=None,
             **kwargs) -> TimeCourse:
    """FE-coupled simulation of one patient; ``bone`` may be a femur or vertebra Bone (only
    that bone is simulated, on a copy), a :class:`femur.workflows.scans.CTScan` (its
    vertebra is built first) or None (the built-in femur and vertebra).

    A CT bone without a ``patient``: the default patient (a 71-year-old woman) with the
    spine T-score measured on the scan (``femur.workflows.scans.scan_patient``)."""
    if isinstance(bone, CTScan):
        bone = scan_bone(bone, kwargs.get("comm", MPI.COMM_WORLD))
    if is_ct_bone(bone) and patient is None:
        patient = scan_patient(bone)
    if bone is not None:
        kind = bone.kind
        if kind not in BONES:
            raise InputError(f"simulate: bone kind must be 'femur' or 'vertebra', got '{kind}'")
        kwargs.setdefault("bones", (kind,))
        kwargs[f"{kind}_bone"] = bone
    return Simulation(regimen, months, patient, **kwargs).run(out)


__all__ = ["DEFAULT_FE_INTERVAL_DAYS", "DEFAULT_STRENGTH_MONTHS", "Simulation", "default_strength_months",
           "simulate", "visit_course"]
