"""Apparent density of a femur from habitual loading: strain-energy-based adaptation to
steady state (Carter/Beaupré daily stress stimulus), node based so that no checkerboard
forms.

Law (Beaupré, Orr & Carter, J Orthop Res 1990;8:651 and 662; remodeling.md section 3;
constants UNCONFIRMED there):

* per load case i (``femur.mechanics.muscle_loads``: stance, abduction, adduction with
  n_i = 6000 / 2000 / 2000 cycles per day) the element's effective (apparent) stress
  ``sigma_i = sqrt(2 E U_i)``, U_i the strain energy density;
* daily stress stimulus ``psi = (sum_i n_i sigma_i^m)^(1/m)``, m = 4;
* tissue-level stimulus ``psi_t = (rho_t / rho)^2 psi``, rho_t = 2.0 g/cm3;
* reference ``psi* = 50 MPa/day`` with a lazy zone ``psi* +- w``, w = 12.5 MPa/day;
  bone is added where ``psi_t > psi* + w`` and removed where ``psi_t < psi* - w``;
* modulus from a density-modulus law of ``femur.mechanics.materials``: by default the law these
  constants came with, ``beaupre1990`` (E = 2014 rho^2.5 MPa up to 1.2 g/cm3, 1763 rho^3.2
  above; UNCONFIRMED), Poisson 0.3.  The strength models keep their own law (Morgan 2003
  femoral neck); only the *pattern* of the adapted field is used
  (``femur.geometry.adapted_density``).
  With the Morgan femoral-neck law (exponent 1.49 < 2) the tissue stimulus falls with
  density even under fixed strain, so the field stays close to uniform inside the proximal
  femur (anatomical 4 mm femur: compressive-group/Ward's ratio 1.38, steady after 12
  iterations; ``--law morgan2003_femoral_neck``) -- Beaupré's exponents (> 2) let load
  paths concentrate bone (2.27 on the same mesh), as in their and Jacobs' simulations;
* density bounds 0.01 <= rho <= 2.0 g/cm3.

Reference stimulus (a documented choice): the published psi* = 50 MPa/day belongs to
their 2-D plate model.  On this 3-D femur, loaded only by the hip and abductor forces
(the other muscles that reduce shaft bending are missing), it asks for far more bone than
a femur has (anatomical 4 mm femur, ``--reference fixed``: mean density 1.31 g/cm3, a
quarter of the volume at the 2.0 g/cm3 bound, a dense shaft cortex ~7 mm thick).  By default (``reference="mass"``)
psi* is therefore set at every iteration so that the bone's volume-weighted mean density
stays at its starting value, the young-adult mean of the compartment model (cortex 1.85,
cancellous 0.35 g/cm3, ``young_adult_mean_density``): the law redistributes that bone
mass, keeping the lazy zone's relative half-width w / psi* = 0.25.  psi* is then an
output (recorded), not a fitted parameter.

A state is *steady* when every point is in the lazy zone or at a bound that the stimulus
pushes against.  Beaupré's rate law ``d rho/dt = k c (psi_t - psi* -+ w) S_v rho_t``
(outside the lazy zone) has exactly these steady states: k, c and the specific surface
S_v > 0 set only its time scale.  We want the steady state, not the time course, so we
integrate in pseudo-time with a damped fixed-point step on ln(rho):

    rho <- clip(rho * (psi_t / psi_e)^gain, rho_min, rho_max),
    psi_e = clip(psi_t, psi* - w, psi* + w)

which has the same sign and the same zero set as the rate law (inside the lazy zone
psi_e = psi_t: no change).  Base gain 0.4 < 1/2: where the bone is locally load
controlled psi_t ~ rho^-2, so gain 1/2 would jump straight to the lazy zone and larger
gains overshoot.  Where the stimulus barely changes with density (strain controlled,
psi_t ~ rho^(b-2) with b ~ 2.5) points creep slowly toward a bound; so each point's gain
grows by x1.5 per iteration while it keeps moving the same way (up to 10 x the base
gain) and falls back to the base gain when it turns -- a step-size control in pseudo
time that leaves the fixed points unchanged and cut the iterations ~3x (4 mm femur: 415
-> 117, same field pattern).  Each step is capped at a factor ``max_step_factor`` = 1.5.

Checkerboards (remodeling.md section 3): with element-wise densities on linear elements
the iteration drifts to alternating stiff/soft elements (Jacobs et al. 1995; Weinans
1992).  ``scheme="node"`` (default) keeps the density at the mesh vertices (P1): the
element stimulus is averaged to the vertices (volume weighted, lumped P1 mass), the
vertex densities are updated, and an element's density is the mean of its four vertex
densities (the P1 interpolant at the centroid).  ``scheme="element"`` is the raw element
update, kept to show the difference (``checkerboard_measures``).

Steady-state criterion (documented): the largest change of any element density in one
iteration is below ``tol_g_cm3`` (default 5e-3 g/cm3, 0.25 % of the density range).

FE reuse: one ElasticitySolver carries all load cases (same supports, so one matrix):
``DailyLoadSet.select`` switches the load constants, ``update_modulus`` reassembles the
matrix in place, GAMG keeps its interpolation (``solvers/gamg.toml``) and each case is
warm-started from its own previous displacement.  The stimulus solves use rtol 1e-6
(the field after 60 iterations differed by 4e-7 g/cm3 from rtol 1e-8 on the 4 mm femur).
Keeping the whole AMG hierarchy between iterations was tried and dropped: the set-up
is ~10 % of an iteration here, the three CG solves the rest.

The command that runs it on the reference femurs and stores the result (see
``femur.geometry.adapted_density``) is ``femur.calibration.habitual_density``::

    python -m femur.calibration.habitual_density --write --bone anatomical --mesh-size 3

(The numerical helpers live in ``femur.workflows.adaptation_support`` and
``femur.geometry.node_average``, ROIs and measures in ``femur.outcomes.density_pattern``,
pictures in ``femur.exports.adaptation_figures``, the stored-field mapping in
``femur.geometry.adapted_density``.)
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field

import numpy as np

from femur.core.mpi import MPI

from femur.core.errors import InputError  # noqa: E402
from femur.core.progress import ProgressBar  # noqa: E402
from femur.geometry.density import young_adult_mean_density  # noqa: E402
from femur.geometry.node_average import NodeAverager  # noqa: E402
from femur.mechanics.elasticity import ElasticitySolver  # noqa: E402
from femur.mechanics.materials import get_law  # noqa: E402
from femur.mechanics.muscle_loads import DailyLoadSet  # noqa: E402
from femur.workflows.adaptation_support import mass_reference, sed_expression  # noqa: E402

BEAUPRE_SOURCE = ("Beaupre, Orr & Carter, J Orthop Res 1990;8:651/662 (daily stress stimulus, "
                  "lazy zone; constants as quoted in shared/science/remodeling.md section 3, "
                  "UNCONFIRMED)")


#: GAMG smoother for the adaptation's solves: the moduli span ~1e6 (0.01-2.0 g/cm3 through
#: E ~ rho^2.5..3.2), and the default Chebyshev/Jacobi smoother's eigenvalue bounds then
#: failed (DIVERGED_INDEFINITE_PC at iteration 29 of the 7 mm femur on 2 ranks);
#: Richardson with SSOR (the configuration's own fallback smoother) converged in every case.
ADAPTATION_SOLVER_OPTIONS = {"mg_levels_ksp_type": "richardson", "mg_levels_pc_type": "sor"}


@dataclass(frozen=True)
class AdaptationLaw:
    """Carter/Beaupré daily-stress-stimulus law and the density bounds (see module doc)."""

    exponent_m: float = 4.0
    psi_ref_mpa_day: float = 50.0
    lazy_half_width_mpa_day: float = 12.5
    rho_tissue_g_cm3: float = 2.0
    rho_min_g_cm3: float = 0.01
    rho_max_g_cm3: float = 2.0
    modulus_law: object = "beaupre1990"  # a femur.mechanics.materials law or its name
    poisson_ratio: float = 0.3
    source: str = BEAUPRE_SOURCE

    def validate(self) -> None:
        if not (self.exponent_m >= 1):
            raise InputError(f"AdaptationLaw.exponent_m must be >= 1, got {self.exponent_m}")
        if not (self.psi_ref_mpa_day > 0 and 0 <= self.lazy_half_width_mpa_day < self.psi_ref_mpa_day):
            raise InputError("AdaptationLaw: need psi_ref_mpa_day > 0 and 0 <= lazy_half_width_mpa_day "
                             f"< psi_ref_mpa_day, got {self.psi_ref_mpa_day}, {self.lazy_half_width_mpa_day}")
        if not (0 < self.rho_min_g_cm3 < self.rho_max_g_cm3 <= 2.3):
            raise InputError("AdaptationLaw: need 0 < rho_min_g_cm3 < rho_max_g_cm3 <= 2.3 g/cm3, got "
                             f"{self.rho_min_g_cm3}, {self.rho_max_g_cm3}")
        if not self.rho_tissue_g_cm3 > 0:
            raise InputError(f"AdaptationLaw.rho_tissue_g_cm3 must be > 0, got {self.rho_tissue_g_cm3}")

    def modulus_mpa(self, rho) -> np.ndarray:
        return np.maximum(get_law(self.modulus_law).modulus_mpa(rho), 1e-3)

    def tissue_stimulus(self, sigma_eff_mpa: np.ndarray, cycles: np.ndarray, rho) -> np.ndarray:
        """psi_t (MPa/day) from effective stresses (cases, cells), cycles/day and density."""
        m = self.exponent_m
        psi = (np.asarray(cycles, float)[:, None] * np.asarray(sigma_eff_mpa) ** m).sum(axis=0) ** (1.0 / m)
        return (self.rho_tissue_g_cm3 / np.asarray(rho, float)) ** 2 * psi

    def target(self, psi_t, psi_ref: float | None = None) -> np.ndarray:
        """The lazy-zone edge an element moves toward (psi_t itself inside the zone).
        ``psi_ref`` overrides psi* (the lazy zone keeps its relative half-width w / psi*)."""
        ref = self.psi_ref_mpa_day if psi_ref is None else float(psi_ref)
        half = ref * self.lazy_half_width_mpa_day / self.psi_ref_mpa_day
        return np.clip(psi_t, ref - half, ref + half)


@dataclass(frozen=True)
class AdaptationSettings:
    """Iteration controls (pseudo-time; see the module docstring)."""

    scheme: str = "node"  # "node" | "element"
    #: uniform start (g/cm3); None: the bone's young-adult mean density
    #: (:func:`young_adult_mean_density`), which is also the conserved mean with reference="mass"
    rho_start_g_cm3: float | None = None
    gain: float = 0.4
    max_step_factor: float = 1.5
    tol_g_cm3: float = 5e-3
    acceleration: float = 1.5
    max_gain_boost: float = 10.0
    max_iter: int = 200
    min_iter: int = 3
    rtol: float = 1e-6
    #: "mass": psi* is set at every iteration so that the volume-weighted mean density stays
    #: at rho_start (the bone mass is redistributed; see the module docstring); "fixed": the
    #: law's psi_ref_mpa_day
    reference: str = "mass"

    def validate(self) -> None:
        if self.reference not in ("mass", "fixed"):
            raise InputError(f"AdaptationSettings.reference must be 'mass' or 'fixed', got {self.reference!r}")
        if self.scheme not in ("node", "element"):
            raise InputError(f"AdaptationSettings.scheme must be 'node' or 'element', got {self.scheme!r}")
        if not (0 < self.gain <= 1):
            raise InputError(f"AdaptationSettings.gain must lie in (0, 1], got {self.gain}")
        if not (self.acceleration >= 1 and self.max_gain_boost >= 1):
            raise InputError("AdaptationSettings: acceleration and max_gain_boost must be >= 1")
        if not (self.max_step_factor > 1):
            raise InputError(f"AdaptationSettings.max_step_factor must be > 1, got {self.max_step_factor}")
        if not (self.tol_g_cm3 > 0 and self.max_iter >= 1):
            raise InputError("AdaptationSettings: need tol_g_cm3 > 0 and max_iter >= 1")


@dataclass
class AdaptationResult:
    """Adapted density per local cell (owned + ghost, g/cm3) and the iteration record."""

    density_g_cm3: np.ndarray
    stimulus_mpa_day: np.ndarray  # tissue stimulus psi_t per cell at the last iteration
    converged: bool
    iterations: int
    history: dict  # per iteration: max_change_g_cm3, mean_density, lazy_or_bound_fraction, ...
    law: AdaptationLaw
    settings: AdaptationSettings
    loads: list
    seconds: float
    solver_stats: dict = field(default_factory=dict)

    def provenance(self) -> dict:
        return {"law": asdict(self.law), "settings": asdict(self.settings), "loads": self.loads,
                "iterations": self.iterations, "converged": self.converged,
                "final_max_change_g_cm3": float(self.history["max_change_g_cm3"][-1]),
                "seconds": self.seconds, "solver": self.solver_stats}


def adapt_density(bone, loads=None, law: AdaptationLaw | None = None,
                  settings: AdaptationSettings | None = None, solver: str = "gamg",
                  progress: bool = True, callback=None,
                  solver_options: dict | None = None) -> AdaptationResult:
    """Iterate the daily-stress-stimulus law to steady state on ``bone`` (collective).

    loads: a ``DailyLoadSet`` (default: the Carter/Beaupré stance, abduction, adduction).
    The bone's own density is not used or changed: the adaptation starts from the uniform
    ``settings.rho_start_g_cm3``.  ``callback(k, rho_cells)`` is called after each iteration.
    """
    law = law or AdaptationLaw()
    settings = settings or AdaptationSettings()
    law.validate()
    settings.validate()
    loads = loads if loads is not None else DailyLoadSet()
    rho_start = (young_adult_mean_density(bone) if settings.rho_start_g_cm3 is None
                 else float(settings.rho_start_g_cm3))
    if not (law.rho_min_g_cm3 <= rho_start <= law.rho_max_g_cm3):
        raise InputError(f"rho_start_g_cm3 = {rho_start} lies outside the bounds "
                         f"[{law.rho_min_g_cm3}, {law.rho_max_g_cm3}] g/cm3")
    comm = bone.comm
    t0 = time.perf_counter()
    n_cells, n_owned = bone.num_local_cells, bone.num_owned_cells
    avg = NodeAverager(bone.mesh)
    vol = bone.cell_volumes()[:n_owned]
    rho_nodes = np.full(avg.mass.size, rho_start)
    rho = np.full(n_cells, rho_start)
    cycles = loads.cycles_per_day
    opts = dict(ADAPTATION_SOLVER_OPTIONS if solver == "gamg" else {}, **(solver_options or {}))
    es = ElasticitySolver(bone, law.modulus_mpa(rho), law.poisson_ratio, order=1, solver=solver,
                          options=opts)
    loads.apply(es, bone)
    U, sed_expr = sed_expression(es)
    saved_u = [None] * len(loads.cases)
    hist = {k: [] for k in ("max_change_g_cm3", "mean_density_g_cm3", "lazy_or_bound_fraction",
                            "ksp_iterations", "seconds", "psi_ref_mpa_day")}
    stats = {"solves": 0, "ksp_iterations": 0, "rebuilds": 0, "fe_s": 0.0,
             "assembly_s": 0.0, "setup_s": 0.0, "solve_s": 0.0, "update_s": 0.0}
    bar = ProgressBar(settings.max_iter, progress, f"adapt density ({settings.scheme})", unit="it", comm=comm)
    converged = False
    psi_t = np.zeros(n_cells)
    psi_ref = law.psi_ref_mpa_day
    target_mean = rho_start

    def step_state(psi, ref):
        """The updated state (vertex or cell densities) for the stimulus ``psi``."""
        base = rho_nodes if settings.scheme == "node" else rho
        step = np.clip((psi / law.target(psi, ref)) ** gains,
                       1.0 / settings.max_step_factor, settings.max_step_factor)
        return np.clip(base * step, law.rho_min_g_cm3, law.rho_max_g_cm3)

    # per-entry step gain: grows by ``acceleration`` while an entry keeps moving the same
    # way (up to max_gain_boost x gain), back to ``gain`` when it turns (pseudo-time step
    # control; the fixed points are unchanged)
    gains = np.full(rho_nodes.size if settings.scheme == "node" else n_cells, settings.gain)
    last_dir = np.zeros_like(gains)
    k = 0
    try:
        for k in range(1, settings.max_iter + 1):
            ti = time.perf_counter()
            E = law.modulus_mpa(rho)
            es.update_modulus(E)
            sig = np.empty((len(loads.cases), n_cells))
            its = 0
            for i in range(len(loads.cases)):
                loads.select(i)
                if saved_u[i] is not None:
                    es.u.x.array[:] = saved_u[i]
                es.solve(rtol=settings.rtol)
                its += es.last.iterations
                for key in ("assembly_s", "setup_s", "solve_s"):
                    stats[key] += getattr(es.last, key)
                saved_u[i] = es.u.x.array.copy()
                U.interpolate(sed_expr)
                sig[i] = np.sqrt(2.0 * E * np.maximum(U.x.array, 0.0))
            stats["solves"] += len(loads.cases)
            stats["ksp_iterations"] += its
            t_fe = time.perf_counter()
            stats["fe_s"] += t_fe - ti
            psi_t = law.tissue_stimulus(sig, cycles, rho)
            if settings.scheme == "node":
                psi_u, base, w_eq, n_eq = avg.to_nodes(psi_t), rho_nodes, avg.mass, avg.n_owned_nodes
            else:
                psi_u, base, w_eq, n_eq = psi_t, rho, np.pad(vol, (0, n_cells - n_owned)), n_owned
            if settings.reference == "mass":
                psi_ref = mass_reference(step_state, psi_u, w_eq[:n_eq], target_mean, comm, psi_ref)
            state = step_state(psi_u, psi_ref)
            direction = np.sign(state - base)
            same = (direction == last_dir) & (direction != 0)
            gains = np.where(same, np.minimum(gains * settings.acceleration,
                                              settings.gain * settings.max_gain_boost), settings.gain)
            last_dir = direction
            if settings.scheme == "node":
                rho_nodes = state
                new = avg.to_cells(state)
            else:
                new = state
            change = comm.allreduce(float(np.abs(new - rho)[:n_owned].max(initial=0.0)), op=MPI.MAX)
            # share at equilibrium (lumped nodal mass or cell volume): in the lazy zone, or at a
            # bound that the stimulus pushes against
            pt, tg, b = psi_u[:n_eq], law.target(psi_u[:n_eq], psi_ref), base[:n_eq]
            ok = (pt == tg) | ((pt > tg) & (b >= law.rho_max_g_cm3 - 1e-9)) \
                | ((pt < tg) & (b <= law.rho_min_g_cm3 + 1e-9))
            sums = comm.allreduce(np.array([np.sum(w_eq[:n_eq] * ok), np.sum(w_eq[:n_eq]),
                                            np.sum(vol * new[:n_owned]), np.sum(vol)]), op=MPI.SUM)
            stats["update_s"] += time.perf_counter() - t_fe
            rho = new
            hist["max_change_g_cm3"].append(change)
            hist["psi_ref_mpa_day"].append(float(psi_ref))
            hist["mean_density_g_cm3"].append(float(sums[2] / sums[3]))
            hist["lazy_or_bound_fraction"].append(float(sums[0] / sums[1]))
            hist["ksp_iterations"].append(its)
            hist["seconds"].append(time.perf_counter() - ti)
            if callback is not None:
                callback(k, rho)
            bar.update(1)
            bar.set_postfix(change=f"{change:.2e}", mean=f"{sums[2] / sums[3]:.3f}")
            if k >= settings.min_iter and change < settings.tol_g_cm3:
                converged = True
                break
    finally:
        bar.close()
        stats["rebuilds"] = es.rebuilds
        es.close()
    return AdaptationResult(
        density_g_cm3=rho, stimulus_mpa_day=psi_t, converged=converged, iterations=k,
        history=hist, law=law, settings=settings, loads=[c.describe() for c in loads.cases],
        seconds=time.perf_counter() - t0, solver_stats=stats)


__all__ = ["ADAPTATION_SOLVER_OPTIONS", "AdaptationLaw", "AdaptationResult", "AdaptationSettings",
           "adapt_density"]
