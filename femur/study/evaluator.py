"""The study's case evaluator: one patient x arm case record -> FE-coupled simulation ->
visit results (the format of ``femur.study.cases``).

``run_case(record, comm, fields_dir=None)`` is the default evaluator of every study
(``femur.study.cases.DEFAULT_EVALUATOR``). With ``fields_dir`` it also writes the case's
final density fields there (``femur.exports.fields.CaseFields``), which the study figures
read instead of re-running patients.

A patient from a CT scan (``record["patient"]["scan"]``, ``femur.study.cohort.scan_patient``)
runs its scanned vertebra alone (``femur.workflows.scans``): the visits hold None for the
femur's quantities, and the result's extra ``t_scores`` / ``geometry`` give the spine
T-score measured on the scan and the scan's description (held cells included).

Build once per patient (issue 13): every arm of a patient starts from the same baseline
bones, so :data:`bone_cache` keeps the built-in bones of the last patient a rank group ran
(key: the patient record and the model's femur and mesh size, i.e. everything the bones
are built from) and hands each case its own copy (``Simulation`` copies given bones: the
density it changes is the copy's; mesh, tags, ROI masks and DXA projections are shared).
A cached bone is the same object a fresh build returns, so results do not change;
``bone_cache.enabled = False`` builds every case's bones from scratch.

Baseline strength once per patient: the month-0 strength of a patient's bones does not
depend on the arm, so the first case of a patient leaves its month-0 strength cases in the
cache entry of its bones (keyed also by :func:`strength_settings`) and the patient's later
cases take them instead of solving them again (``Simulation(baseline_strength=)``). Each
bone's habitual case (femur stance, vertebral compression) is still solved at month 0: its
solver's warm start feeds the stimulus solves, so BMD and the habitual case's strength stay
bit for bit those of a case without the cache.

Strength solvers once per patient (issue 13, phase 4): the other cases' solvers (the
femur's three falls) are handed from a patient's case to her next one
(``BoneTrack.hand_over`` / ``adopt``, kept in the cache entry next to the month-0
strengths): each keeps the AMG hierarchy of its month-0 solve and is set back to the
baseline moduli and its month-0 solution, which is the state the later case's own month-0
solve would have left. So its later visits warm-start on a reused preconditioner instead
of starting cold on a fresh one, and give the results of a case without the cache bit for
bit (``tests/test_throughput.py``); a case no longer builds, compiles or verifies those
solvers again. Only solvers still on their first preconditioner are handed over (none
rebuilt after a failed reuse, no fallback); the cache closes those of an earlier patient
when it builds a new patient's bones.

Trial tolerances (issue 13): a study's cases solve the habitual (stimulus) problems to a
Krylov rtol of 1e-4 instead of the 1e-8 of ``femur.workflows.tracks.HABITUAL_RTOL``, and
the femur's linear strength cases to 1e-6 instead of the solver configuration's 1e-10
(:data:`trial_solves`). Measured on a 12-month FRAME case (anatomical femur, default
trial mesh), against the tight tolerances: per-visit BMD changes within 7e-8 percentage
points, femur strength changes within 2e-5 points, with about 45 % fewer CG iterations.
Looser ones were measured in phase 3 and not kept (``python benchmarks/case_cpu.py``, 2
FRAME patients x 2 arms x 12 months): a habitual rtol of 1e-3 saved only 5 % of the CG
iterations and moved a visit by 6.2e-4 points (1e-4: 6e-5); a femur strength rtol of 1e-5
moved strength changes by up to 4.8e-4 points and made the 1-month small study of
``tests/test_throughput.py`` print a hip NNT (about 1.1 million, 1/ARR of a tiny ARR) 7
units off, where issue 13 asks for the same printed summary. The vertebra keeps 1e-10 for
its strength: its displacement-controlled fracture load is about 100x more sensitive to
the Krylov error (3.5e-3 points at 1e-6), and its solves are cheap (2,000 DOFs, about
0.02 s of a case's CPU time at 1e-10; 1e-8 saved 33 of 460 strength CG iterations per
case, about 5 ms). Why (measured on the default vertebra and femur at 4 mm, cold solves
against rtol 1e-10): the first-failure load is applied load / peak risk factor, and its
error is the peak's: at rtol 1e-6 1.5e-5 relative on the vertebra, 2.4e-8 on the lateral
fall (1e-4: 6.4e-4 vs 1.8e-6), while the applied load (from the strain energy) is good to
1e-9. The vertebra's peak cell lies 2 mm from the displaced endplate, and the residual is
measured against a right-hand side made mostly of the lifted prescribed displacement, so
one rtol leaves a larger local strain error there than under the femur's traction load
(the fall's peak is 38 mm from any loaded or supported facet). The 1e-10 default exists
for 1e-8 agreement of fracture loads across MPI partitions (solvers/gamg.toml), which a
single case's visit-to-visit change does not need. ``trial_solves.enabled = False`` restores the tight tolerances, the configuration's
GAMG options and the fixed interval (the benchmark's reference run).

Trial GAMG options (issue 13, phase 3): a study whose record names the default "gamg"
solver runs it with :data:`TRIAL_GAMG_OPTIONS` on top of solvers/gamg.toml: plain
aggregation (``pc_gamg_agg_nsmooths 0``) and a coarse grid of up to 3,000 rows. The
smoothed prolongator of gamg.toml was tuned on the 1.25 mm femur (344k DOFs), where plain
aggregation needs 2-3x the iterations; on the 4 mm trial mesh (about 20k DOFs) the
Galerkin products of the smoothed hierarchy dominate: plain aggregation sets up about 3x
faster for about 10-20 % more iterations, and a case's FE solves (one fresh set-up per
load case, then reused hierarchies and warm starts) cost about 20 % less CPU time
(``benchmarks/README.md``, phase 3). The fall cases cannot borrow one another's (or the
stance's) hierarchy: CG on a fall preconditioned by another case's AMG, rotated into its
frame, did not converge in 300 iterations (the Dirichlet rows differ), so each load case
keeps its own.

Adaptive habitual interval by default (issue 13): a study whose file does not set
``[model] fe_adaptive_tol`` runs with 0.01 (``femur.workflows.simulation``: a habitual
solve of the ``fe_interval_days`` grid is skipped while the RMS relative modulus change
since the bone's last solve is at most 1 %); ``fe_adaptive_tol = 0`` keeps every solve of
the grid. Cohort check (``python benchmarks/adaptive_fe.py --patients 10 --tols
0.005,0.01``: 10 FRAME patients, both arms, 12 months, trial mesh): every visit's BMD and
strength change within 4.1e-5 percentage points of the fixed interval; placebo cases
skipped 21 of their 26 habitual solves, romosozumab cases 2 (their moduli keep moving).

Cell step (issues 13 and 15): a study's cases advance the cell model in steps of at most
2 days (:attr:`TrialSolves.cell_step_days`; ``femur simulate`` keeps 1 day). That is the
step with which ``python -m femur.calibration.remodeling`` fits the cell parameters, and it
halves the cell model's cost: measured with ``python benchmarks/cell_model.py --step-days 2``
(2 FRAME patients x 2 arms x 12 months) the cell model fell from 13.4 % to 7.7 % of a case,
and every visit's BMD and strength change moved by at most 0.059 percentage points, the
markers by at most 0.9 points, against 1-day steps. That is a change of the model's time
discretisation, not of a solver, so the results-unchanged check keeps the same step on
both sides; ``tests/test_throughput.py`` bounds the 1- vs 2-day difference.
"""

from __future__ import annotations

import gc
import time
from collections import OrderedDict
from dataclasses import dataclass, field

from femur.core.mpi import MPI
from femur.exports.fields import CaseFields
from femur.outcomes.compartments import COMPARTMENT_KEYS
from femur.remodeling.patient import Patient
from femur.study.cases import ABS_KEYS, STRENGTH_PREFIXES, canonical_json, record_treatment
from femur.mechanics.solvers import load_solver_config
from femur.mechanics.strength import DEFAULT_STRENGTH_MODEL, pct_name, quantity_name
from femur.mechanics.surrogate import GEOMETRY_FEATURES
from femur.workflows.scans import CTScan, scan_bone, scan_patient
from femur.workflows.bones import patient_bone
from femur.workflows.simulation import DEFAULT_FE_INTERVAL_DAYS, Simulation
from femur.workflows.timecourse import json_floats


#: the cache entry's slots for month-0 strengths and handed-over strength solvers (bone
#: kinds are the other slots)
_BASELINE = "_baseline_strength"
_SOLVERS = "_strength_solvers"


def _close_solvers(by_settings: dict | None, comm=None) -> None:
    """Close handed-over strength solvers ({settings: {kind: {prefix: (es, ...)}}}); with
    ``comm``, only those on the same processes (a close is collective on the solver's
    communicator; others are dropped)."""
    for by_kind in (by_settings or {}).values():
        for solvers in by_kind.values():
            for es, *_ in solvers.values():
                if comm is None or MPI.Comm.Compare(es.comm, comm) in (MPI.IDENT, MPI.CONGRUENT):
                    es.close()


class BoneCache:
    """The built-in bones of the last ``max_patients`` patients (in memory, per rank group).
    One by default: a rank group runs a patient's arms one after another (the runner's work
    units), and a cached femur at the trial mesh also holds its P1 stiffness map (about
    57 MB, ``femur.mechanics.p1_stiffness``), so an older patient's bones only cost memory.

    ``get(record, kind, comm)`` returns the baseline bone (``"femur"`` or ``"vertebra"``) of
    the record's patient, built on ``comm`` on a miss; the caller must not change it
    (``Simulation`` works on a copy). A bone is reused only on a communicator with the same
    processes in the same order (MPI ``IDENT`` or ``CONGRUENT``)."""

    def __init__(self, max_patients: int = 1, enabled: bool = True, share_strength: bool = True):
        self.max_patients, self.enabled = int(max_patients), enabled
        #: hand a patient's month-0 strength to her later arms (False: every case solves it)
        self.share_strength = share_strength
        self._store: OrderedDict = OrderedDict()
        self.hits = self.misses = self.baseline_hits = self.solver_hits = 0

    @staticmethod
    def key(record: dict) -> str:
        model = record.get("model", {})
        return canonical_json({"patient": record["patient"], "femur": model.get("femur", "parametric-femur"),
                               "mesh_size_mm": model.get("mesh_size_mm")})

    def get(self, record: dict, kind: str, comm, build):
        """The cached bone ``kind`` of the record's patient, or ``build()`` (then kept)."""
        if not self.enabled:
            return build()
        key = self.key(record)
        bones = self._store.get(key)
        bone = bones.get(kind) if bones is not None else None
        hit = bone is not None and MPI.Comm.Compare(bone.comm, comm) in (MPI.IDENT, MPI.CONGRUENT)
        # the ranks of comm may have run different cases before (other groups): a build is
        # collective, so every rank builds unless every rank has the bone
        if comm.allreduce(int(hit), op=MPI.MIN):
            self._store.move_to_end(key)
            self.hits += 1
            return bone
        self.misses += 1
        if key not in self._store:  # a new patient: make room before building (memory)
            for old in self._store.values():
                _close_solvers(old.pop(_SOLVERS, None), comm)
            while self._store and len(self._store) >= self.max_patients:
                self._store.popitem(last=False)
            # the dropped bones and solvers hold reference cycles (UFL expressions on their
            # Functions): collect them now, not at some later allocation (about 0.05 s per
            # patient; the 100-patient trial's peak was 960 MB per rank without it)
            gc.collect()
        bone = build()
        entry = self._store.setdefault(key, {})
        entry[kind] = bone
        entry.pop(_BASELINE, None)  # strengths and solvers of the bone this one replaces
        _close_solvers(entry.pop(_SOLVERS, None), comm)
        self._store.move_to_end(key)
        return bone

    def baseline_strength(self, record: dict, settings: str, comm) -> dict | None:
        """The month-0 strength ({bone kind: {strength case: quantities}}) that an earlier
        case of the record's patient computed on the cached bones with the strength
        ``settings``, if every rank of ``comm`` has it (the solves it replaces are
        collective); else None."""
        if not (self.enabled and self.share_strength):
            return None
        entry = self._store.get(self.key(record)) or {}
        got = entry.get(_BASELINE, {}).get(settings)
        if comm.allreduce(int(got is not None), op=MPI.MIN):
            self.baseline_hits += 1
            return got
        return None

    def keep_baseline_strength(self, record: dict, settings: str, by_kind: dict) -> None:
        """Keep a case's month-0 strength for the patient's other cases (the bones it ran
        on must be this cache's: :meth:`get` drops it when a bone is rebuilt)."""
        entry = self._store.get(self.key(record))
        if self.enabled and entry is not None and by_kind:
            entry.setdefault(_BASELINE, {})[settings] = by_kind

    def take_solvers(self, record: dict, settings: str, kind: str, comm) -> dict:
        """The strength solvers of bone ``kind`` that an earlier case of the record's
        patient handed over with the strength ``settings`` (``BoneTrack.hand_over``), if
        every rank of ``comm`` has them; they leave the cache (the case owns them now)."""
        if not (self.enabled and self.share_strength):
            return {}
        entry = self._store.get(self.key(record)) or {}
        got = entry.get(_SOLVERS, {}).get(settings, {}).get(kind)
        if not comm.allreduce(int(bool(got)), op=MPI.MIN):
            return {}
        del entry[_SOLVERS][settings][kind]
        self.solver_hits += 1
        return got

    def keep_solvers(self, record: dict, settings: str, by_kind: dict, comm) -> None:
        """Keep a finished case's handed-over strength solvers ({kind: {prefix: ...}}) for
        the patient's next case; closed here if the patient's bones are no longer cached."""
        entry = self._store.get(self.key(record))
        if not (self.enabled and self.share_strength) or entry is None:
            _close_solvers({settings: by_kind}, comm)
            return
        slot = entry.setdefault(_SOLVERS, {}).setdefault(settings, {})
        for kind, solvers in by_kind.items():
            _close_solvers({settings: {kind: slot.pop(kind, {})}}, comm)
            slot[kind] = solvers

    def clear(self) -> None:
        for entry in self._store.values():
            _close_solvers(entry.get(_SOLVERS))
        self._store.clear()
        self.hits = self.misses = self.baseline_hits = self.solver_hits = 0


#: the evaluator's per-patient bone cache (module docstring)
bone_cache = BoneCache()


#: the study's GAMG options on top of solvers/gamg.toml (module docstring)
TRIAL_GAMG_OPTIONS = {"pc_gamg_agg_nsmooths": 0, "pc_gamg_coarse_eq_limit": 3000}


@dataclass
class TrialSolves:
    """How a study's cases solve (module docstring): the Krylov tolerances of the habitual
    solves and of the linear strength solves per bone kind (a kind not named: the solver
    configuration's), and the default adaptive habitual interval."""

    habitual_rtol: float = 1.0e-4
    strength_rtol: dict = field(default_factory=lambda: {"femur": 1.0e-6})
    #: GAMG options of a study's solves when its record names the default "gamg"
    #: configuration (module docstring: plain aggregation, coarse grid up to 3,000 rows)
    gamg_options: dict = field(default_factory=lambda: dict(TRIAL_GAMG_OPTIONS))
    #: the adaptive habitual interval of a study whose file does not set
    #: ``[model] fe_adaptive_tol`` (0 there: every solve of the fixed grid)
    fe_adaptive_tol: float | None = 0.01
    #: the cell model's step in a study's cases (module docstring, "Cell step"): a model
    #: setting, kept when ``enabled`` is False (the reference of the unchanged check)
    cell_step_days: float = 2.0
    enabled: bool = True

    def kwargs(self, model: dict) -> dict:
        """Simulation keyword arguments for a record's ``model`` (when disabled: the
        Simulation defaults and the record's own ``fe_adaptive_tol``)."""
        tol = model.get("fe_adaptive_tol", self.fe_adaptive_tol if self.enabled else None)
        tol = tol or None  # 0: the fixed grid
        if not self.enabled:
            return {"fe_adaptive_tol": tol, "cell_step_days": self.cell_step_days}
        out = {"habitual_rtol": self.habitual_rtol, "strength_rtol": dict(self.strength_rtol),
               "fe_adaptive_tol": tol, "cell_step_days": self.cell_step_days}
        if self.gamg_options and model.get("solver", "gamg") == "gamg":
            out["solver"] = load_solver_config("gamg").with_options(self.gamg_options)
        return out


#: how the evaluator's cases solve (module docstring)
trial_solves = TrialSolves()


#: the monthly courses a case keeps (the markers peak within the first months, between
#: visits), with the compartment courses (femur.outcomes.compartments) where the run has them
MONTHLY_KEYS = ("ls_bmd_pct", "th_bmd_pct", "fn_bmd_pct", "p1np_pct", "ctx_pct", *COMPARTMENT_KEYS)


def strength_settings(sim: Simulation) -> str:
    """What a bone's month-0 strength depends on besides the bone (the Simulation's
    strength model, element order, solver and strength tolerances): the key under which
    the bone cache keeps it."""
    return canonical_json({"strength_model": sim.strength_model, "order": sim.order, "solver": str(sim.solver),
                           "strength_rtol": sim.strength_rtol})


def simulation_for_record(record: dict, comm=MPI.COMM_WORLD, progress: bool = False,
                          exports=()) -> Simulation:
    """The Simulation of one study case record (patient x arm, femur.study.cases)."""
    p = record["patient"]
    model = record.get("model", {})
    visits = [float(v) for v in record["visit_months"]]
    # what every case's Simulation takes from the record, scan or built-in bones
    common = dict(
        order=int(model.get("order", 1)), solver=model.get("solver", "gamg"),
        fe_interval_days=float(model.get("fe_interval_days", DEFAULT_FE_INTERVAL_DAYS)),
        strength_months=visits, turnover_multiplier=p.get("turnover_multiplier", 1.0),
        drug_response_multiplier=p.get("drug_response_multiplier", 1.0), comm=comm,
        progress=progress, exports=exports,
        strength_model=model.get("strength_model", DEFAULT_STRENGTH_MODEL),
        # settled for the case's bones when the study was read (femur.study.spec)
        strength_model_settled=True,
    )
    common.update(trial_solves.kwargs(model))
    treatment = record_treatment(record)
    months = max(float(record["duration_months"]), max(visits))
    if p.get("scan"):
        bone = scan_bone(CTScan.from_dict(p["scan"], where=p.get("scan_where", "")), comm)
        patient = scan_patient(bone, sex=p["sex"], age_years=p["age_years"],
                               body_mass_kg=p.get("body_mass_kg"), height_m=p.get("height_m"))
        return Simulation(treatment, months, patient, vertebra_bone=bone, bones=("vertebra",), **common)
    # records written before issue 11 have no model.femur: they ran the parametric femur
    femur_model = model.get("femur", "parametric-femur")
    femur_params = p.get("femur_shape") if femur_model == "femur" else p.get("femur_params")
    patient = Patient.from_record(p)
    t0 = time.perf_counter()
    built = {kind: bone_cache.get(record, kind, comm, lambda m=m, g=g: patient_bone(
                 m, patient, model.get("mesh_size_mm"), g, comm))
             for kind, m, g in (("femur", femur_model, femur_params),
                                ("vertebra", "vertebra", p.get("vertebra_params")))}
    build_s = time.perf_counter() - t0
    sim = Simulation(treatment, months, patient, femur_model=femur_model, femur_bone=built["femur"],
                     vertebra_bone=built["vertebra"], **common)
    settings = strength_settings(sim)
    sim.baseline_strength = bone_cache.baseline_strength(record, settings, comm) or {}
    if sim.strength_model != "nonlinear":  # the linear solvers of the patient's earlier arm
        sim.hand_over_solvers = bone_cache.enabled and bone_cache.share_strength
        for kind, track in sim.tracks.items():
            left = track.adopt(bone_cache.take_solvers(record, settings, kind, comm))
            if left:
                bone_cache.keep_solvers(record, settings, {kind: left}, comm)
    sim.stats.timings["build_s"] += build_s  # the bones (or their cache look-up), then the tracks
    return sim


def run_case(record: dict, comm=MPI.COMM_WORLD, fields_dir=None) -> dict:
    """Study evaluator: one patient x arm case record -> visit results (+ monthly courses);
    with ``fields_dir``, the case's final density fields are written there too."""
    visits = [float(v) for v in record["visit_months"]]
    exports = [CaseFields(fields_dir)] if fields_dir is not None else []
    sim = simulation_for_record(record, comm, exports=exports)
    res = sim.run()
    if not record["patient"].get("scan"):  # a patient's other arms start from these bones
        bone_cache.keep_baseline_strength(record, strength_settings(sim), sim.baseline_by_case)
        if sim.handed_solvers:
            bone_cache.keep_solvers(record, strength_settings(sim), sim.handed_solvers, comm)
    series = res.series
    known = set(series) | set(res.strength) | set(res.strength_pct)

    def at(key, m):  # None for a quantity this run does not have (a scan has no femur) or
        # that is not defined at this visit (a cortex that switched away entirely)
        return json_floats([res.at_month(key, m)])[0] if key in known else None

    out = []
    for m in visits:
        v = {"month": m}
        for key in MONTHLY_KEYS:
            v[key] = at(key, m)
        for name in ABS_KEYS:
            v[pct_name(name)] = at(pct_name(name), m)
            v[name] = at(name, m)
        for prefix in STRENGTH_PREFIXES:  # kept in the case file where the run has them:
            # the pushover's yield load (nonlinear model), the stiffness and the 0.2 %-strain
            # load (the strength surrogate's features, femur.outcomes.risk.courses)
            for kind in ("yield", "stiffness", "surrogate"):
                name = quantity_name(prefix, kind)
                if name in known:
                    v[name] = at(name, m)
        out.append(v)
    monthly = {"month": [float(m) for m in res.months]}
    for key in MONTHLY_KEYS:
        if key in series:
            monthly[key] = json_floats(series[key])  # None: undefined
    result = {"visits": out, "monthly": monthly, "fe_solves": res.run["fe_solves"], "dofs": res.run["dofs"],
              **({"fe_skipped": res.run["fe_skipped"]} if "fe_skipped" in res.run else {}),
              "strength_model": res.run["strength_model"],
              "timings_s": res.run.get("timings_s", {})}
    femur_track = sim.tracks.get("femur")
    if femur_track is not None and femur_track.anatomy:  # the strength surrogate's geometry terms
        result["femur_anatomy"] = {k: float(femur_track.anatomy[k]) for k in GEOMETRY_FEATURES
                                   if femur_track.anatomy.get(k) is not None}
    if res.geometry:
        result["geometry"] = res.geometry
        result["t_scores"] = {"ls_t_score": sim.patient.ls_t_score}
    return result


__all__ = ["MONTHLY_KEYS", "BoneCache", "TrialSolves", "bone_cache", "run_case", "simulation_for_record",
           "strength_settings", "trial_solves"]
