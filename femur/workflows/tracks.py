"""One bone through a coupled remodeling run: its FE solvers, remodeling state and DXA sites.

One cohesive thing (hence about 500 lines): the solvers (made at first use, handed on to a
later run of the same bone), the remodeling state and the DXA and compartment measures all
work on the track's one copy of the bone and its moduli.

A :class:`BoneTrack` owns the run's copy of the bone. The remodeling state (BV/TV ``f``
and mineral content ``alpha`` per cell) is the one owner of how the bone has changed;
everything else is derived from it and the baseline density ``rho0``:

* the FE density (``bone.density``, the input of the yield laws and of a pushover) is
  ``rho0 * rho_model / rho_model0`` on remodeling cells; every other cell keeps its
  baseline density;
* the FE modulus of a remodeling cell is mineral-aware: the site's density-modulus law at
  the bone-volume density ``rho0 f / f0`` (baseline mineral: what the law was measured on)
  times ``(ash / ash0)^2.74`` (Hernandez 2001, ``femur.mechanics.materials.
  mineral_modulus_factor``), so a mineral gain stiffens the bone with the Hernandez weight
  rather than through the apparent density only. The nonlinear pushover of a track
  (:meth:`BoneTrack.pushover`) takes the same moduli; its yield laws read ``bone.density``;
* the DXA-equivalent density is ``rho0 * m / m0`` (m = f alpha, the mineral mass), computed
  when BMD is measured, so mineralisation counts as it does in DXA;
* the mechanostat stimulus is M = (psi - psi_ref) / psi_ref, psi the strain energy
  density under the *same habitual force* (a displacement-controlled solve is rescaled to
  its baseline reaction force), psi_ref the cell's own baseline.

Which cells remodel (``BoneTrack.remodels``): the cells of bone compartments whose baseline
apparent density lies in the range the cell model can represent, BV/TV in
[f_min, f_max] = [0.01, 0.99] at its baseline mineralisation, i.e. about 0.018 to 1.99
g/cm3 (:func:`remodeling_density_range`). Everything else is held at its baseline density
and gets no stimulus, no turnover and no weight in the markers: loading layers and other
non-bone compartments (``femur.geometry.compartments``), and, on CT bones, elements with
no bone (calibrated density floored at 0, or below the lower end of the range: the
remodeling floor, 0.018 g/cm3) or denser than fully dense bone at baseline mineralisation
(the capped posterior cortex of clinical CT). The built-in bones lie inside the range
everywhere, so every bone cell of theirs remodels.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np

from femur.core import units
from femur.core.errors import DensityError, InputError
from femur.core.log import get_logger
from femur.core.mpi import MPI
import dolfinx  # noqa: E402
from femur.geometry.compartments import cells_next_to, non_bone_mask, where_cells
from femur.geometry.density import MAX_APPARENT_G_CM3
from femur.mechanics.materials import mineral_modulus_factor
from femur.mechanics.problem import cell_strain_energy_density, make_solver, postprocess
from femur.mechanics.pushover import solve_pushover
from femur.mechanics.strength import (
    anchored_quantities,
    check_strength_model,
    material_for,
    pushover_quantities,
    region_for,
    split_cases,
    strength_cases,
    strength_quantities,
    surrogate_quantities,
)
from femur.mechanics.surrogate import fits_for
from femur.mechanics.yield_laws import default_yield_model
from femur.outcomes import dxa
from femur.outcomes.compartments import roi_sums
from femur.remodeling.model import ash_fraction, stimulus_from_sed, tissue_density_g_cm3
from femur.remodeling.switching import apply_switches, decide_switches, switching_parameters
from femur.workflows.scans import is_ct_bone, scan_summary

log = get_logger(__name__)

#: Relative tolerance of the habitual (mechanostat stimulus) solves. The stimulus is a
#: strain-energy ratio entering through a lazy zone of +-25 %, so 1e-8 is far below what
#: could change it; the strength solves keep the configuration's 1e-10 (rank-invariant
#: fracture loads, solvers/gamg.toml).
HABITUAL_RTOL = 1.0e-8

#: DXA sites measured on each bone: site key -> femur.outcomes.dxa site name
DXA_SITES = {"femur": {"fn": "femoral_neck", "th": "total_hip"}, "vertebra": {"ls": "spine"}}


#: a bone whose bone cells are mostly outside the cell model's range is refused: more than
#: this fraction held means wrong units or a wrong calibration, not a few empty voxels
MAX_HELD_FRACTION = 0.5

#: (load case, terms) whose extrapolation this process has warned about (once each)
_WARNED_EXTRAPOLATION: set = set()


def remodeling_density_range(model) -> tuple[float, float]:
    """(lowest, highest) baseline apparent density (g/cm3) the cell model represents: BV/TV
    f_min and f_max at their baseline mineralisation (about 0.018 and 1.99 g/cm3 with the
    fitted parameters). The lower end is the remodeling floor: an element below it holds no
    bone the model can turn over."""
    t = model.params.tissue
    f = np.array([t.f_min, t.f_max])
    rho = f * tissue_density_g_cm3(model.baseline_alpha(f), t)
    return float(rho[0]), float(rho[1])


def _check_bone_density(bone, rho, is_bone) -> None:
    """Refuse impossible densities on bone cells, saying how many and where (collective)."""
    for bad, what in ((~np.isfinite(rho), "are NaN or infinite"),
                      (np.isfinite(rho) & (rho < 0), "are negative"),
                      (np.isfinite(rho) & (rho > MAX_APPARENT_G_CM3),
                       f"exceed {MAX_APPARENT_G_CM3} g/cm3 (fully dense bone is ~2 g/cm3)")):
        bad = bad & is_bone
        n = bone.comm.allreduce(int(np.count_nonzero(bad[: bone.num_owned_cells])), op=MPI.SUM)
        if n:
            raise DensityError(
                f"bone '{bone.name}': apparent densities of {where_cells(bone, bad)} {what}; "
                "expected wet apparent density in [0, 2.3] g/cm3 (check the units and the "
                "calibration of the density field)")


@dataclass
class RunStats:
    """Wall times and FE solve counts of a run (all bones)."""

    timings: dict = field(default_factory=lambda: {"build_s": 0.0, "cells_s": 0.0, "fe_s": 0.0,
                                                   "strength_s": 0.0, "dxa_s": 0.0})
    #: FE cost over all solves
    fe_breakdown: dict = field(default_factory=lambda: {"assembly_s": 0.0, "setup_s": 0.0,
                                                        "solve_s": 0.0, "iterations": 0})
    #: per bone: the first (fresh: set-up + solve) habitual solve vs the later re-solves
    #: (in-place reassembly, reused AMG, warm start)
    fe_fresh_s: dict = field(default_factory=dict)
    fe_resolve_s: dict = field(default_factory=dict)
    fe_solves: int = 0
    #: habitual solves skipped by the adaptive interval (Simulation fe_adaptive_tol)
    fe_skipped: int = 0
    #: baseline strength cases taken from a patient's other arm (BoneTrack.strength known)
    shared_strength: int = 0

    def account(self, info) -> None:
        self.fe_solves += 1
        for k in ("assembly_s", "setup_s", "solve_s"):
            self.fe_breakdown[k] += getattr(info, k)
        self.fe_breakdown["iterations"] += int(info.iterations)

    def summary(self) -> dict:
        return dict(self.timings, fe_breakdown=dict(self.fe_breakdown), fe_fresh_s=dict(self.fe_fresh_s),
                    fe_resolve_mean_s={k: float(np.mean(v)) for k, v in self.fe_resolve_s.items()})


class BoneTrack:
    """A bone's FE solvers (habitual load first, then the strength cases), remodeling state
    and DXA projections during a coupled run. ``bone`` must be the run's own copy.

    ``strength_model``: "linear" (the strength cases' linear solves, first-element
    fracture load), "nonlinear" (a pushover per strength case at the strength months,
    with the pushover's default element order; femur.mechanics.strength), "surrogate"
    (the linear solves, with each case's strength predicted from them by the fitted
    surrogate, femur.mechanics.surrogate) or "hybrid" (the surrogate for the cases whose
    fit meets its accuracy target, anchored on a month-0 pushover for those that meet it
    only so, the pushover at every strength visit for the others)."""

    def __init__(self, name: str, bone, model, stats: RunStats, order: int = 1, solver: str = "gamg",
                 strength_model: str = "linear", habitual_rtol: float = HABITUAL_RTOL,
                 strength_rtol: float | None = None, switching=None):
        self.name, self.bone, self.model, self.stats = name, bone, model, stats
        #: Krylov rtol of the habitual solves and of the linear strength solves (None: the
        #: solver configuration's, 1e-10 for gamg)
        self.habitual_rtol, self.strength_rtol = float(habitual_rtol), strength_rtol
        self.strength_model = check_strength_model(strength_model)
        split = split_cases(self.strength_model, strength_cases(bone.kind))
        fitted = split.predicted + split.anchored
        #: the surrogate fits of the cases it predicts or anchors
        self.surrogate = fits_for(fitted, f"strength_model {self.strength_model!r}") if fitted else {}
        #: the strength cases solved by the nonlinear pushover at every strength visit, and
        #: those whose surrogate is anchored on a pushover at the first one
        self.pushed, self.anchored = tuple(split.pushed), tuple(split.anchored)
        #: the bone's scalar anatomy (a fit's geometry terms read it)
        self.anatomy = dict((bone.parameters or {}).get("anatomy") or {})
        for prefix, fit in self.surrogate.items():
            outside = fit.outside_range(self.anatomy)
            if outside and (prefix, tuple(outside)) not in _WARNED_EXTRAPOLATION:
                _WARNED_EXTRAPOLATION.add((prefix, tuple(outside)))
                log.warning("strength surrogate %s: this femur's %s lies outside the training women's range; "
                            "its strength is extrapolated", prefix, ", ".join(outside))
        #: {strength case: quantities} of the first state evaluated (the run's month 0): the
        #: surrogate's change part takes a later state's change from it
        self._reference: dict = {}
        self.solver_name = solver
        self.material = material_for(bone)
        n = bone.num_local_cells
        self.rho0 = np.array(bone.density.x.array, dtype=float)
        self.bone_mask = ~non_bone_mask(bone)
        _check_bone_density(bone, self.rho0, self.bone_mask)
        lo, hi = remodeling_density_range(model)
        self.remodels = self.bone_mask & (self.rho0 >= lo) & (self.rho0 <= hi)
        self.held = self._held_cells(lo, hi)
        comp = np.where(bone.compartment_mask("cortical"), 1, 2) if "cortical" in bone.cell_ids else None
        owned = np.zeros(n, dtype=bool)
        owned[: bone.num_owned_cells] = True
        # remodeling runs on the remodeling cells only; the others (loading layers, empty or
        # over-dense CT elements) keep their baseline density (placeholder state 0.5 g/cm3)
        vol = bone.cell_volumes() * owned  # ghosts weigh nothing in the aggregates
        self.state = model.initial_state(density_g_cm3=np.where(self.remodels, self.rho0, 0.5),
                                         volume=vol * self.remodels, compartment=comp)
        #: compartment switching (femur.remodeling.switching): parameters, baseline tags and
        #: the owned remodelling cells that switched at some point (counts: switch_counts)
        self.switching = switching_parameters(switching)
        self.cortical0 = None if comp is None else comp == 1
        self._switched = {"to_trabecular": np.zeros(n, bool), "to_cortical": np.zeros(n, bool)}
        #: (the cortical tags, the cells next to them) of the last switching check: the
        #: neighbour search runs again only when some rank's tags have changed
        self._near_cache = None
        self.rho_model0 = model.density_g_cm3(self.state)
        self.order = order
        #: the strength cases (habitual first) and the solvers made so far: the habitual one
        #: here, the others at their first solve (:meth:`solver`)
        self.cases = strength_cases(bone.kind)
        self.habitual = next(iter(self.cases))
        self.solvers = {}
        #: each strength solver's first solution (solve frame, bone frame), handed on with it
        #: (:meth:`hand_over`); the modulus of the last update_density (None: baseline)
        self._first, self._E_now = {}, None
        self.solver(self.habitual)
        self.sed_ref, self.force_ref = np.zeros(n), None
        self.sed_ref, self.force_ref = self.habitual_sed()
        self._E_solved = np.array(self.solvers[self.habitual][0].E.x.array, dtype=float)
        self._E0 = self._E_solved.copy()  # the baseline moduli (a made solver's)
        self._weights = vol * self.remodels
        self.dxa_sites = {k: (site, dxa.prepare(bone, site)) for k, site in DXA_SITES[bone.kind].items()}
        self.roi_volume = {k: self._prism_volumes(prep) for k, (_, prep) in self.dxa_sites.items()}

    def _held_cells(self, lo: float, hi: float) -> dict:
        """Count (and log) the bone cells held at their baseline density; refuse a bone
        whose bone cells are mostly outside the range (collective)."""
        bone, comm, no = self.bone, self.bone.comm, self.bone.num_owned_cells
        below = self.bone_mask & (self.rho0 < lo)
        above = self.bone_mask & (self.rho0 > hi)
        n_bone, n_below, n_above = (comm.allreduce(int(np.count_nonzero(m[:no])), op=MPI.SUM)
                                    for m in (self.bone_mask, below, above))
        held = {"remodeling_floor_g_cm3": lo, "remodeling_ceiling_g_cm3": hi,
                "bone_cells": n_bone, "below_floor_cells": n_below, "above_ceiling_cells": n_above}
        if n_below + n_above == 0:
            return held
        held["below_floor"] = where_cells(bone, below) if n_below else "none"
        held["above_ceiling"] = where_cells(bone, above) if n_above else "none"
        if n_below + n_above > MAX_HELD_FRACTION * max(n_bone, 1):
            raise InputError(
                f"bone '{bone.name}': {n_below + n_above} of {n_bone} bone elements have baseline "
                f"densities outside the range the cell model represents ({lo:.4f}-{hi:.3f} g/cm3 "
                f"apparent): below it {held['below_floor']}; above it {held['above_ceiling']}. "
                "Check the image units (mg/cm3 expected with calibrated_mg_cm3) and the calibration")
        # a scan's held cells are news to its user; a built-in bone's (the sparsest medullary
        # cells at low T-scores) are the same in every case of a study: debug level
        (log.info if self.is_ct else log.debug)(
            "%s: %d of %d bone elements do not remodel (held at their baseline density): "
            "below the remodeling floor %.4f g/cm3: %s; above %.3f g/cm3: %s", bone.name,
            n_below + n_above, n_bone, lo, held["below_floor"], hi, held["above_ceiling"])
        return held

    def solver(self, prefix: str):
        """(ElasticitySolver, LoadInfo, nu) of strength case ``prefix``, made at its first
        use with the moduli the track has now (the same matrix as a solver made with the
        track and updated since)."""
        hit = self.solvers.get(prefix)
        if hit is not None:
            return hit
        es, info, _, nu = make_solver(self.bone, self.cases[prefix], self.material, order=self.order,
                                      solver=self.solver_name)
        # the moduli change by well under 1 % per FE step: keep the whole AMG
        # preconditioner (CG still converges to the configured rtol; the solver
        # rebuilds it by itself if a reused one fails)
        es.reuse_preconditioner = True
        if self._E_now is not None:
            es.update_modulus(self._E_now)
        self.solvers[prefix] = (es, info, nu)
        return self.solvers[prefix]

    def hand_over(self) -> dict:
        """The linear strength solvers other than the habitual one, each with its first
        solution, for a later run of the same baseline bone (``femur.study.evaluator``: a
        patient's other arms); they leave this track (:meth:`close` does not close them).
        Only solvers still on the preconditioner of their first solve qualify (no rebuild
        after a failed reuse, no fallback): with it and the first solution as the initial
        guess, :meth:`adopt` gives the later run the solver state it would have had after
        solving the same month-0 case itself."""
        out = {}
        for prefix, (es, info, nu) in list(self.solvers.items()):
            if prefix == self.habitual or prefix not in self._first or es.rebuilds or es.fallback_used:
                continue
            out[prefix] = (es, info, nu, self._first[prefix])
            del self.solvers[prefix]
        return out

    def adopt(self, given: dict) -> dict:
        """Take the solvers of :meth:`hand_over` from an earlier run of this very baseline
        bone (same mesh; the caller vouches for the same load cases and solver settings),
        set back to the baseline moduli and their first solution. Returns those not taken
        (another mesh, a case this track does not have or has already made)."""
        left = {}
        for prefix, item in given.items():
            es, info, nu, (u_frame, u_bone) = item
            if prefix == self.habitual or prefix in self.solvers or prefix not in self.cases \
                    or es.mesh is not self.bone.mesh or es.order != self.order:
                left[prefix] = item
                continue
            es.set_solution(u_frame, u_bone)
            es.update_modulus(self._E_now if self._E_now is not None else self._E0)
            self.solvers[prefix] = (es, info, nu)
            self._first[prefix] = (u_frame, u_bone)
        return left

    @property
    def dofs(self) -> int:
        return int(next(iter(self.solvers.values()))[0].dofs)

    # ------------------------------------------------------------------ mechanics
    def habitual_sed(self):
        """SED per cell under the habitual force, and this solve's force (N). A
        displacement-controlled solve is rescaled to the bone's baseline force
        (``force_ref``; unscaled while that is not yet known)."""
        es, info, nu = self.solvers[self.habitual]
        t0 = time.perf_counter()
        es.solve(rtol=self.habitual_rtol)
        self.stats.account(es.last)
        if self.name not in self.stats.fe_fresh_s:
            self.stats.fe_fresh_s[self.name] = es.last.total_s
        else:
            self.stats.fe_resolve_s.setdefault(self.name, []).append(es.last.total_s)
        if info.control == "force":
            force = float(info.load_n)
        else:
            force = abs(float(es.reaction_force(info.load_facets) @ info.direction))
        sed = cell_strain_energy_density(es.u, es.E.x.array, nu, es.order)
        self.stats.timings["fe_s"] += time.perf_counter() - t0
        if info.control != "force" and self.force_ref is not None:
            sed = sed * (self.force_ref / force) ** 2
        return sed, force

    def modulus_change(self) -> float:
        """RMS relative change of the moduli since the last habitual solve, weighted by the
        volume of the owned remodeling cells (collective; the same on every partition to
        round-off)."""
        E = self.solvers[self.habitual][0].E.x.array
        rel = np.where(self._weights > 0, E / np.where(self._E_solved > 0, self._E_solved, 1.0) - 1.0, 0.0)
        s = self.bone.comm.allreduce(np.array([np.sum(self._weights * rel * rel), np.sum(self._weights)]),
                                     op=MPI.SUM)
        return float(np.sqrt(s[0] / s[1])) if s[1] > 0 else 0.0

    def stimulus(self) -> np.ndarray:
        """Mechanostat stimulus per cell from a fresh habitual solve (0 off bone)."""
        self._E_solved = np.array(self.solvers[self.habitual][0].E.x.array, dtype=float)
        sed, _ = self.habitual_sed()
        M = stimulus_from_sed(sed, self.sed_ref)
        return np.where(self.remodels & (self.sed_ref > 0), M, 0.0)

    def strength_methods(self) -> dict:
        """{strength case: how the run computes its strength}: "surrogate", "anchored" (a
        month-0 pushover, then the fit's predicted change), "pushover" or "linear"."""
        return {p: ("pushover" if p in self.pushed else "anchored" if p in self.anchored
                    else "surrogate" if p in self.surrogate else "linear") for p in self.cases}

    def strength(self, known: dict | None = None) -> dict:
        """Every strength quantity of this bone (femur.mechanics.strength names) from the
        run's strength model, by strength case: {prefix: {quantity: value}}.

        ``known``: {prefix: quantities} of cases already computed on this very state (the
        baseline strength a patient's other arm computed, ``femur.study.evaluator``): those
        cases are not solved. The habitual case is always solved (its solver's warm start
        feeds the stimulus solves, which must not depend on what was shared)."""
        t0 = time.perf_counter()
        out = {}
        known = known or {}
        for prefix in self.cases:
            if prefix in known and prefix != self.habitual:
                out[prefix] = dict(known[prefix])
                self.stats.shared_strength += 1
                continue
            if prefix in self.pushed:
                out[prefix] = pushover_quantities(prefix, self.pushover(prefix))
                continue
            es, info, nu = self.solver(prefix)
            es.solve(rtol=self.strength_rtol)
            self.stats.account(es.last)
            if prefix not in self._first:
                self._first[prefix] = es.solution_arrays()
            res = postprocess(self.bone, es, info, es.last, es.E.x.array, nu, reactions=False)
            q = strength_quantities(prefix, res, self.material, region_for(self.bone.kind))
            # the first state this track evaluates (the run's month 0) is the reference of
            # the surrogate's change part (and of an anchored case's pushover)
            ref = self._reference.get(prefix)
            if prefix in self.anchored:
                q = anchored_quantities(prefix, q, self.surrogate[prefix], ref,
                                        self.pushover(prefix) if ref is None else None, self.anatomy)
            elif prefix in self.surrogate:
                q = surrogate_quantities(prefix, q, self.surrogate[prefix], self.anatomy, ref)
            out[prefix] = q
        for prefix, q in out.items():
            self._reference.setdefault(prefix, q)
        self.stats.timings["strength_s"] += time.perf_counter() - t0
        return out

    # ------------------------------------------------------------------ compartments
    def switch_compartments(self) -> None:
        """Compartment switching of the remodelling cells (``femur.remodeling.switching``):
        owned cells decide (a trabecular cell is next to the cortex when it shares a facet
        with a cell that is cortical now), ghosts take their owner's decision, so the result
        does not depend on the partition (collective)."""
        if not self.switching.enabled or self.cortical0 is None:
            return
        bone, s = self.bone, self.state
        no, n = bone.num_owned_cells, bone.num_local_cells
        owned = np.arange(n) < no
        near = self._cells_next_to_cortex(s.compartment == 1)
        to_trab, to_cort = decide_switches(s, self.switching, self.cortical0, self.remodels & owned, near)
        if n > no:  # ghosts: the owners' decisions
            code = dolfinx.la.vector(bone.mesh.topology.index_map(bone.mesh.topology.dim), 1)
            code.array[:] = 0.0
            code.array[:no] = np.where(to_trab[:no], 1.0, np.where(to_cort[:no], 2.0, 0.0))
            code.scatter_forward()
            to_trab, to_cort = code.array[:n] == 1.0, code.array[:n] == 2.0
        apply_switches(s, to_trab, to_cort)
        self._switched["to_trabecular"] |= to_trab & owned
        self._switched["to_cortical"] |= to_cort & owned

    def _cells_next_to_cortex(self, cortical) -> np.ndarray:
        """``cells_next_to(bone, cortical)``, reused while no rank's tags have changed since
        the last call (the tags change rarely; the search is a facet scatter; collective)."""
        c = self._near_cache
        same = c is not None and np.array_equal(c[0], cortical)
        if not self.bone.comm.allreduce(same, op=MPI.LAND):
            self._near_cache = c = (cortical.copy(), cells_next_to(self.bone, cortical))
        return c[1]

    def switch_counts(self, comm) -> dict:
        """Owned cells that switched compartment during the run (ever) and that differ from
        their baseline tag now, with their share of the bone volume (collective)."""
        if self.cortical0 is None:
            return {}
        no = self.bone.num_owned_cells
        cort = self.state.compartment[:no] == 1
        c0 = self.cortical0[:no]
        w = self.bone.cell_volumes()[:no]
        loc = np.array([np.count_nonzero(self._switched["to_trabecular"][:no]),
                        np.count_nonzero(c0 & ~cort), np.sum(w * (c0 & ~cort)),
                        np.count_nonzero(self._switched["to_cortical"][:no]),
                        np.count_nonzero(~c0 & cort), np.sum(w * (~c0 & cort)), np.sum(w)], dtype=float)
        t = comm.allreduce(loc, op=MPI.SUM)
        return {"to_trabecular": {"ever": int(t[0]), "now": int(t[1]), "volume_share_now": float(t[2] / t[6])},
                "to_cortical": {"ever": int(t[3]), "now": int(t[4]), "volume_share_now": float(t[5] / t[6])}}

    # ------------------------------------------------------------------ density
    def update_density(self) -> None:
        """FE density and moduli from the remodeling state (in place, operators reassembled)."""
        s = self.state
        rm_rho = self.model.density_g_cm3(s)
        ratio = np.where(self.remodels, rm_rho / self.rho_model0, 1.0)
        self.bone.density.x.array[:] = self.rho0 * ratio
        E = self._E_now = self.modulus()
        for es, _, _ in self.solvers.values():
            es.update_modulus(E)

    def modulus(self) -> np.ndarray:
        """FE modulus (MPa) of every local cell from the remodeling state: the material law
        at the bone-volume density times the mineral factor (module docstring); at baseline
        it is the material law at the bone's own density."""
        s = self.state
        tis = self.model.params.tissue
        rho_volume = self.rho0 * np.where(self.remodels, s.f / s.f0, 1.0)
        mineral = np.where(self.remodels, mineral_modulus_factor(ash_fraction(s.alpha, tis),
                                                                 ash_fraction(s.alpha0, tis)), 1.0)
        return self.material.modulus_array(self.bone, density_g_cm3=rho_volume) * mineral

    def pushover(self, prefix: str, **kwargs):
        """The nonlinear pushover of strength case ``prefix`` on the bone as remodelled: the
        same mineral-aware moduli as the linear solves (:meth:`modulus`), the yield model of
        the bone's material (yield from the FE density), the pushover's defaults otherwise
        (``kwargs`` go to ``femur.mechanics.pushover.solve_pushover``)."""
        kwargs.setdefault("progress", False)
        kwargs.setdefault("solver", self.solver_name)
        return solve_pushover(self.bone, strength_cases(self.bone.kind)[prefix], self.modulus(),
                              yield_model=default_yield_model(self.bone, self.material),
                              nu=self.material.poisson_ratio, **kwargs)

    def dxa_density(self) -> np.ndarray:
        """DXA-equivalent density: baseline density times each cell's mineral-mass ratio."""
        s = self.state
        return self.rho0 * np.where(self.remodels, (s.f * s.alpha) / (s.f0 * s.alpha0), 1.0)

    @property
    def is_ct(self) -> bool:
        return is_ct_bone(self.bone)

    def geometry(self) -> dict | None:
        """The scan of a CT bone and which of its cells are held (None for other bones)."""
        if not self.is_ct:
            return None
        return dict(scan_summary(self.bone), held_cells=dict(self.held))

    def _prism_volumes(self, prep) -> np.ndarray:
        """Volume (mm3) of each local cell inside the prism over a DXA ROI (0 outside; ghosts
        0): the ray chords through the ROI's pixels times the pixel area."""
        inside = (prep.roi & prep.covered).ravel()[prep.pix]
        n = self.bone.num_local_cells
        chord = np.bincount(prep.cell[inside], weights=prep.chord_mm[inside], minlength=n)[:n]
        return chord * prep.pixel_mm**2

    def compartment_sums(self, comm) -> dict:
        """Rank-summed ``femur.outcomes.compartments.roi_sums`` of each of this bone's DXA
        ROIs (collective; {} for a bone without a "cortical" compartment)."""
        if "cortical" not in (self.bone.cell_ids or {}):
            return {}
        s = self.state
        cort0 = self.bone.compartment_mask("cortical")
        cort = cort0 if s.compartment is None else s.compartment == 1  # the tags now (switching)
        ratio = np.where(self.remodels, (s.f * s.alpha) / (s.f0 * s.alpha0), 1.0)
        keys = sorted(self.roi_volume)
        local = [roi_sums(self.roi_volume[k], self.rho0 * self.bone_mask, cort, ratio, s.f, s.f0,
                          modelled=self.remodels, pore=s.pore, alpha=s.alpha, alpha0=s.alpha0,
                          cortical0=cort0) for k in keys]
        n = local[0].size
        total = comm.allreduce(np.concatenate(local), op=MPI.SUM)
        return {k: total[n * i: n * (i + 1)] for i, k in enumerate(keys)}

    def measure(self, comm) -> dict:
        """Areal BMD at this bone's DXA sites and vBMD per compartment (mg/cm3).

        vBMD: built-in bones, the cell model's mineral density over the remodeling cells; CT
        bones, the QCT-equivalent (ash) density of the DXA-equivalent field over every cell
        of the compartment, so that month 0 is the scan's own calibrated vBMD."""
        rec = {}
        rho = self.dxa_density()
        for key, (site, prep) in self.dxa_sites.items():
            rec[f"{key}_abmd_g_cm2"] = dxa.areal_bmd(self.bone, site, prepared=prep, density_g_cm3=rho)
        if self.is_ct:
            mineral = 1000.0 * units.apparent_to_ash_g_cm3(rho)
            w = self.bone.cell_volumes() * (np.arange(rho.size) < self.bone.num_owned_cells)
        else:
            mineral = self.model.mineral_density_mg_cm3(self.state)
            w = self.state.volume
        for comp in ("cortical", "trabecular"):
            if comp not in self.bone.cell_ids:
                continue
            mask = self.bone.compartment_mask(comp)
            s = comm.allreduce(np.array([np.sum(w * mask * mineral), np.sum(w * mask)]), op=MPI.SUM)
            rec[f"{self.name}_vbmd_{comp}_mg_cm3"] = float(s[0] / s[1])
        return rec

    def close(self) -> None:
        for es, _, _ in self.solvers.values():
            es.close()


__all__ = ["DXA_SITES", "HABITUAL_RTOL", "MAX_HELD_FRACTION", "BoneTrack", "RunStats",
           "remodeling_density_range"]
