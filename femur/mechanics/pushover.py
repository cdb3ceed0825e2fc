"""Displacement-controlled nonlinear pushover: load case -> load-displacement curve -> strength.

``solve_pushover(bone, load_case, ...)`` returns a
:class:`~femur.mechanics.pushover_result.PushoverSolution` (pure data; ``femur.pushover``
wraps it with plotting and files).

Displacement control of the load cases (choices)
------------------------------------------------
The linear load cases' geometry is reused (``load_case.prepare(bone)``); what was a
pressure on a patch becomes the motion of a rigid platen on the same facets along the
same direction d (the solve frame's first axis):

* SingleLegStance: a rigid cup on the "head_load" patch moves along the load direction d
  (8 deg to the shaft, distally); distal end fixed as in the linear case.
* SidewaysFall: a rigid cup on the head cap (head facets facing the acetabulum within
  head_cap_deg) moves along the fall direction d; the trochanter contact (the facets
  within ``support_depth_mm`` of the ground plane, as in the linear case) rests on a
  rigid pad that does not move along d; distal end held across d, free along it, as in
  the linear case.
* AxialCompression: already displacement controlled (superior face moved along -axis,
  inferior face held; ``ends`` frictionless or bonded).

``platens="rotating"`` (default): the cup and the pad are free to tilt about the two axes
across d through the centroid of their patch and to slide across d (frictionless), so the
load passes through the patch centroid as with the linear cases' uniform pressure
(``femur.mechanics.platens``: penalty, within ~1e-4 of the kinematic constraint).  This
is the cadaver protocols' set-up: the head loaded through a cup on a low-friction joint,
the greater trochanter on a pad (Courtney-type fall, biomechanics.md section 3; the
Dragomir-Daescu group's FE: a head force and zero displacement at the trochanter contact,
not a clamped head).  ``platens="fixed"`` (phase 1): the loaded facets get a uniform
displacement along d and the trochanter facets u.d = 0, so neither the head nor the
trochanter can turn: the neck is loaded like a beam clamped at both ends, which is stiffer
and stronger (measured on the built-in femur at T -2.5, P2 6 mm: fall 10,009 -> 6,437 N,
initial stiffness 8,551 -> 2,255 N/mm; benchmarks/results/nonlinear_bcs.json).  The load
is the **reaction force along d**: the force work-conjugate to the prescribed motion (the
platen's force, or the internal forces on the constrained DOFs weighted by their
reference displacement per mm).

Read-off (what ``nonlinear_strength_n`` means)
----------------------------------------------
* ``nonlinear_strength_n``: the peak of the curve up to the end displacement.  With
  perfect plasticity the curve of a whole bone keeps rising slowly after the knee (the
  yielded zone spreads; a Drucker-Prager material also gains strength under confinement),
  so on such a curve the peak is the load *at the end displacement* and depends on that
  choice: ``end_slope_fraction`` (slope of the last segment / initial stiffness) says how
  much (about 0 on a plateau, < 0 past a peak).  The end displacement is therefore a
  fixed, documented part of the definition, as in the reference tools (BCT reads the
  strength at a fixed deformation);
* ``yield_load_n``: 0.2 %-offset yield, the curve's intersection with the line of the
  initial (elastic) stiffness shifted by ``0.002 x gauge_length_mm``: independent of
  the end displacement once the curve has crossed the line.  Gauge length per case:
  vertebra -- the distance between the loaded faces (the displacement is applied over it;
  with loading layers this includes them, as the model height of the Bonelab protocol);
  stance -- the distance along d between the head patch and the distal cut
  (area-weighted centroids); fall -- the distance along d between the head cap and the
  trochanter support.
* Default end of the pushover: vertebra 2 % of the loaded height (Bonelab protocol,
  biomechanics.md 2.4); femur 4 mm of head displacement (Keyak 2005 loads to 4 mm; BCT
  reads the hip at about 4 mm, UNCONFIRMED).  It stops earlier after a post-peak drop of
  ``post_peak_drop`` (default 20 %) of the peak.

Increments: the elastic step gives the first-yield displacement (the first point reaching
its yield stress) exactly, so the curve jumps there; the first plastic step is the rest of
the range / ``increments``; each next step is halved where the curve bends (its slope
changed by more than 25 % of the elastic stiffness in the last step) or Newton needed >= 8
iterations, x1.5 (up to a third of the range) where the curve is straight (< 8 %) and
Newton easy (<= 4 iterations), and halved on non-convergence (at most ``max_cutbacks``
times in a row); each step starts from an extrapolation of the last two converged states.
The increments thus cluster at the knee of the curve (which the 0.2 %-offset read-off
needs) and stay few on the plateau.
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass

import numpy as np

from femur.core.mpi import MPI
import dolfinx  # noqa: E402
import ufl  # noqa: E402

from femur.core.errors import InputError  # noqa: E402
from femur.mechanics.loadcases import (  # noqa: E402
    AxialCompression,
    SidewaysFall,
    SingleLegStance,
    facet_mean,
    tagged_facets,
)
from femur.mechanics.materials import default_material  # noqa: E402
from femur.mechanics.nonlinear import PlasticitySolver  # noqa: E402
from femur.mechanics.problem import resolve_material  # noqa: E402
from femur.mechanics.pushover_result import PushoverSolution, offset_yield, yielded_volumes  # noqa: E402
from femur.mechanics.stepping import MAX_INCREMENTS, IncrementLoop  # noqa: E402
from femur.mechanics.yield_laws import YieldModel, default_yield_model  # noqa: E402

#: default element order on tetrahedra: P1 tetrahedra lock under the nearly isochoric
#: plastic flow (the strength changed 12 % from h 6 to 3 mm on the femur, 9 % on the
#: vertebra); P2 changed 2.0 % and 1.1 % (benchmarks/results/nonlinear_convergence.json).
#: Voxel (hexahedral) CT meshes keep trilinear elements, the element of the Bonelab
#: protocol (biomechanics.md 2.4).
DEFAULT_ORDER = 2


def default_order(mesh) -> int:
    """DEFAULT_ORDER on simplices, 1 on hexahedral (voxel) meshes."""
    simplex = mesh.topology.cell_type in (dolfinx.mesh.CellType.tetrahedron,
                                          dolfinx.mesh.CellType.triangle)
    return DEFAULT_ORDER if simplex else 1


def default_preconditioner(order: int) -> str:
    """P2: the p-multigrid with a GAMG P1 coarse level ("pmg", femur.mechanics.pmg); P1: GAMG."""
    return "pmg" if order == 2 else "gamg"


#: default end of a femur pushover (mm of head displacement): Keyak 2005 (biomechanics.md 2.4)
FEMUR_MAX_DISPLACEMENT_MM = 4.0
#: default end of a vertebral pushover: 2 % apparent strain (Bonelab protocol, biomechanics.md 2.4)
VERTEBRA_MAX_STRAIN = 0.02
OFFSET_STRAIN = 0.002
#: Krylov tolerance of every Newton correction in reproducible mode (measured 1 vs 2 ranks on
#: the verification rod and prism: 1e-6 -> curves agree to 2e-9, 1e-7 -> 1e-10, 1e-3 -> 9e-6)
REPRODUCIBLE_KSP_RTOL = 1e-6
#: Krylov tolerance of the closing correction of an inexact Newton solve ("inexact_final")
FINAL_KSP_RTOL = 1e-10
#: how the Newton corrections are solved: every one to REPRODUCIBLE_KSP_RTOL ("fixed"),
#: Eisenstat-Walker forcing ("inexact"), or Eisenstat-Walker and one closing correction to
#: FINAL_KSP_RTOL once the Newton tolerance is met ("inexact_final")
NEWTON_KRYLOV = ("fixed", "inexact", "inexact_final")
#: production default (``reproducible=False``): inexact Newton.  Measured on the parametric
#: femur (6 mm, P2, fall, 1 rank): strength 5e-9 and 0.2 %-offset yield 1.5e-8 from the
#: reproducible ("fixed") run, half the CG iterations (805 vs 1675) and 0.6x the CPU time.
#: 1 vs 2 ranks: 1.5e-9 (strength) and 5e-9 (curve) on that femur, but ~1e-5 measured
#: earlier at P1 (phase 2): not guaranteed, so the rank-invariance tests use
#: ``reproducible=True`` (benchmarks/README.md)
DEFAULT_NEWTON_KRYLOV = "inexact"
#: relative tolerance defining the displacement at peak on a flat (perfectly plastic) plateau
PEAK_RTOL = 1e-6


class _Recorder:
    """Stands in for a solver to record what a prepared load case applies."""

    def __init__(self):
        self.dirichlet, self.tractions = [], []

    def add_dirichlet(self, facets=None, value=0.0, component=None, nodes=None):
        self.dirichlet.append(dict(facets=facets, value=value, component=component, nodes=nodes))

    def add_traction(self, facets, traction):
        self.tractions.append((np.asarray(facets, np.int32), np.asarray(traction, dtype=float)))


@dataclass
class DisplacementControl:
    """A load case turned displacement controlled (reference: 1 mm along ``direction``)."""

    name: str
    frame: np.ndarray | None
    apply: object  # callable(solver): adds the Dirichlet conditions for 1 mm
    direction: np.ndarray  # bone frame, unit: the prescribed motion of the loaded facets
    gauge_length_mm: float
    default_max_displacement_mm: float
    load_facets: np.ndarray
    support_facets: dict


def _frame_with_first_axis(d):
    d = np.asarray(d, float) / np.linalg.norm(d)
    k = int(np.argmin(np.abs(d)))
    e1 = np.cross(d, np.eye(3)[k])
    e1 /= np.linalg.norm(e1)
    return np.vstack([d, e1, np.cross(d, e1)])


def _centroid_along(mesh, facets, d) -> float:
    x = ufl.SpatialCoordinate(mesh)
    dc = dolfinx.fem.Constant(mesh, np.asarray(d, dtype=float))
    return facet_mean(mesh, facets, ufl.dot(x, dc))


def _face_distance(bone, lc: AxialCompression) -> float:
    """Distance (mm) between the loaded faces along the axis (loaded height)."""
    if "loaded_height" in bone.landmarks:
        return float(np.ravel(bone.landmarks["loaded_height"])[0])
    a = lc.axis(bone)
    zs = [_centroid_along(bone.mesh, tagged_facets(bone, n), a)
          for n in (lc.superior_facet, lc.inferior_facet)]
    return float(zs[0] - zs[1])


PLATENS = ("rotating", "fixed")


def displacement_control(bone, load_case, platens: str = "rotating") -> DisplacementControl:
    """The displacement-controlled form of a load case (see the module docstring);
    ``platens`` chooses the femur cases' cup and support ("rotating" or "fixed")."""
    if platens not in PLATENS:
        raise InputError(f"platens must be one of {PLATENS}, got {platens!r}")
    if isinstance(load_case, AxialCompression):
        lc = dataclasses.replace(load_case, displacement_mm=1.0, strain=None)
        prepared = lc.prepare(bone)
        h = _face_distance(bone, lc)
        sup = tagged_facets(bone, lc.superior_facet)
        inf = tagged_facets(bone, lc.inferior_facet)
        return DisplacementControl(lc.name, prepared.frame, prepared.apply, -lc.axis(bone), h,
                                   VERTEBRA_MAX_STRAIN * h, sup, {lc.inferior_facet: inf})
    if not isinstance(load_case, (SingleLegStance, SidewaysFall)):
        raise InputError(
            f"pushover: load case {type(load_case).__name__} is not supported; use "
            "SingleLegStance, SidewaysFall or AxialCompression")
    prepared = load_case.prepare(bone)
    rec = _Recorder()
    info = prepared.apply(rec)
    if len(rec.tractions) != 1:
        raise InputError(f"pushover: load case '{info.name}' applies {len(rec.tractions)} "
                         "tractions; expected one loaded patch")
    facets, t = rec.tractions[0]
    Q = prepared.frame
    if Q is None:
        if any(d["component"] is not None for d in rec.dirichlet):
            raise InputError(f"pushover: load case '{info.name}' has component constraints "
                             "in the bone frame; cannot rotate it to the load direction")
        Q = _frame_with_first_axis(info.direction)
        t_solve = Q @ t
    else:
        t_solve = t
    c = int(np.argmax(np.abs(t_solve)))
    if np.linalg.norm(np.delete(t_solve, c)) > 1e-9 * abs(t_solve[c]):
        raise InputError(f"pushover: the load of '{info.name}' is not along a solve-frame axis")
    sign = float(np.sign(t_solve[c]))
    direction = Q.T @ (sign * np.eye(3)[c])
    mesh = bone.mesh
    supports = info.support_facets
    if isinstance(load_case, SingleLegStance):
        ref = supports[load_case.fixed_facet]
    else:
        ref = supports["trochanter_support"]
    gauge = abs(_centroid_along(mesh, facets, direction) - _centroid_along(mesh, ref, direction))
    dirichlet = list(rec.dirichlet)
    trochanter = supports.get("trochanter_support")

    def is_trochanter(d):
        return (trochanter is not None and d["component"] == 0 and d["facets"] is not None
                and np.array_equal(d["facets"], trochanter))

    def apply(solver):
        if platens == "fixed":
            solver.add_dirichlet(facets=facets, value=sign * 1.0, component=c)
            for d in dirichlet:
                solver.add_dirichlet(**d)
            return
        if c != 0:  # pragma: no cover - the femur cases load along the frame's first axis
            raise InputError(f"pushover: '{info.name}' is not loaded along the solve frame's first axis")
        solver.add_platen(facets, value=sign * 1.0, rotating=True, name="cup")
        for d in dirichlet:
            if is_trochanter(d):
                solver.add_platen(d["facets"], value=0.0, rotating=True, name="trochanter_pad")
            else:
                solver.add_dirichlet(**d)

    return DisplacementControl(info.name, Q, apply, direction, gauge, FEMUR_MAX_DISPLACEMENT_MM,
                               facets, supports)


def _criterion_default(bone) -> str:
    return "von_mises" if bone.kind == "vertebra" else "drucker_prager"


def solve_pushover(bone, load_case, material=None, yield_model: YieldModel | None = None,
             criterion: str | None = None, softening=None, max_displacement_mm: float | None = None,
             max_strain: float | None = None, increments: int = 12, max_cutbacks: int = 6,
             post_peak_drop: float | None = 0.2, order: int | None = None, solver="gamg",
             options: dict | None = None, nu: float | None = None, newton_rtol: float = 1e-6,
             newton_max_it: int = 25, pc_refresh: str = "increment", newton_krylov: str | None = None,
             reproducible: bool = False, max_increments: int = MAX_INCREMENTS,
             platens: str = "rotating", preconditioner: str | None = None, on_increment=None,
             progress: bool | None = None) -> PushoverSolution:
    """Material-nonlinear, displacement-controlled pushover of ``bone`` under ``load_case``.

    material: MaterialModel (default ``femur.mechanics.materials.default_material(bone)``) or modulus;
    yield_model: YieldModel (default ``default_yield_model(bone, material)``);
    criterion: "von_mises" | "drucker_prager" (default: vertebra von Mises, as the
    benchmark's equal tension/compression yield; femur Drucker-Prager, asymmetric);
    softening: None (perfectly plastic) or ``plasticity.Softening``;
    max_displacement_mm / max_strain (x gauge length): end of the pushover (defaults in
    the module docstring); on_increment: callable(curve) called after every converged
    increment with the curve so far (e.g. to write it, ``femur.exports.pushover.CurveFile``);
    progress: a progress bar on rank 0 (default: as the log level allows);
    newton_rtol: relative residual (free DOFs / reaction forces) that ends an increment;
    1e-6 is below the ~1e-5 to which the perfectly plastic solution is determined at all
    (nonlinear.py); pc_refresh: "increment" rebuilds GAMG from the tangent at the start of
    each increment (measured 19 % fewer CG iterations than keeping the elastic one);
    reproducible: every Newton correction solved to a relative Krylov tolerance of 1e-6, so
    that 1 and 2 MPI ranks give the same curve to ~1e-9 (the verification tests use it);
    False (default) uses ``newton_krylov`` (default DEFAULT_NEWTON_KRYLOV, inexact Newton:
    looser early solves, about half the CG iterations, the same strength to ~1e-8 on one
    rank) and ranks then agree only to ~1e-5 (see nonlinear.py);
    preconditioner: "pmg" (default for P2: p-multigrid with a GAMG P1 coarse level,
    femur.mechanics.pmg, ~2.4x fewer CG iterations) or "gamg" (default for P1).
    Returns a PushoverSolution; a step that does not converge after ``max_cutbacks``
    halvings stops the run with ``converged=False`` and ``stopped_reason`` (partial curve kept).
    """
    t_start = time.perf_counter()
    comm = bone.comm
    order = default_order(bone.mesh) if order is None else int(order)
    if increments < 1 or max_cutbacks < 0:
        raise InputError(f"increments must be >= 1 and max_cutbacks >= 0, got {increments}, {max_cutbacks}")
    if max_increments < increments:
        raise InputError(f"max_increments must be >= increments ({increments}), got {max_increments}")
    if post_peak_drop is not None and not (0 < post_peak_drop < 1):
        raise InputError(f"post_peak_drop must lie in (0, 1) or be None, got {post_peak_drop}")
    if reproducible:
        if newton_krylov not in (None, "fixed"):
            raise InputError(f"reproducible=True solves every correction to a fixed tolerance; "
                             f"it cannot be combined with newton_krylov={newton_krylov!r}")
        newton_krylov = "fixed"
    elif newton_krylov is None:
        newton_krylov = DEFAULT_NEWTON_KRYLOV
    if newton_krylov not in NEWTON_KRYLOV:
        raise InputError(f"newton_krylov must be one of {NEWTON_KRYLOV}, got {newton_krylov!r}")
    if material is None:
        material = default_material(bone)
    E, nu = resolve_material(bone, material, nu)
    E_cells = np.asarray(E.x.array if hasattr(E, "x") else np.broadcast_to(E, (bone.num_local_cells,)),
                         dtype=float)
    ym = yield_model if yield_model is not None else default_yield_model(bone, material)
    sig_c, sig_t = ym.yield_arrays(bone, E_cells)
    crit = criterion or _criterion_default(bone)
    dc = displacement_control(bone, load_case, platens)
    if max_displacement_mm is not None and max_strain is not None:
        raise InputError("give max_displacement_mm or max_strain, not both")
    dmax = (float(max_displacement_mm) if max_displacement_mm is not None else
            float(max_strain) * dc.gauge_length_mm if max_strain is not None else
            dc.default_max_displacement_mm)
    if not (np.isfinite(dmax) and dmax > 0):
        raise InputError(f"max_displacement_mm must be > 0 mm, got {dmax}")

    ps = PlasticitySolver(bone, E, nu, sig_c, sig_t, criterion=crit, softening=softening,
                          order=order, solver=solver, options=options, frame=dc.frame,
                          pc_refresh=pc_refresh, preconditioner=preconditioner or default_preconditioner(order),
                          ksp_rtol=REPRODUCIBLE_KSP_RTOL if newton_krylov == "fixed" else None,
                          ksp_rtol_final=FINAL_KSP_RTOL if newton_krylov == "inexact_final" else None)
    try:
        dc.apply(ps)
        t0 = time.perf_counter()
        el = ps.solve()
        t_el = time.perf_counter() - t0
        ps.setup_plastic()
        k0 = ps.elastic_force  # N per mm
        if not k0 > 0:
            raise InputError(f"pushover '{dc.name}': the elastic reaction is {k0} N/mm; "
                             "the prescribed displacement does not load the bone")
        d_y = ps.first_yield_scale()
        run = IncrementLoop(ps, dmax, increments, max_cutbacks, post_peak_drop, newton_rtol,
                            newton_max_it, on_increment, progress, comm, dc.name, max_increments)
        run.execute(d_y, k0)
        t_total = time.perf_counter() - t_start
        curve = np.asarray(run.curve)
        end_slope = (float((curve[-1, 1] - curve[-2, 1]) / (curve[-1, 0] - curve[-2, 0]) / k0)
                     if len(curve) > 2 and curve[-1, 0] > curve[-2, 0] else None)
        # peak: the maximum load; its displacement is the first point within PEAK_RTOL of it
        # (on a plateau the maximum is otherwise picked by round-off)
        fmax = float(curve[:, 1].max())
        peak_i = int(np.flatnonzero(curve[:, 1] >= fmax - PEAK_RTOL * abs(fmax))[0])
        y = offset_yield(curve, k0, OFFSET_STRAIN * dc.gauge_length_mm)
        vols = yielded_volumes(bone, ps, run.kappa_peak)
        vols_final = yielded_volumes(bone, ps, ps.kappa)
        res = PushoverSolution(
            bone=bone, bone_name=bone.name, load_case=dc.name, criterion=ps.criterion.name,
            yield_model=ym.law_names(), material=getattr(material, "law_names", lambda: str(material))(),
            softening=dataclasses.asdict(softening) if softening is not None else None,
            order=order, dofs=ps.dofs, cells=int(comm.allreduce(bone.num_owned_cells, op=MPI.SUM)),
            load_displacement=[[float(a), float(b)] for a, b in curve],
            nonlinear_strength_n=fmax,
            displacement_at_peak_mm=float(curve[peak_i, 0]),
            yield_load_n=y[1], yield_displacement_mm=y[0],
            first_yield_load_n=float(min(d_y, dmax) * k0), first_yield_displacement_mm=float(min(d_y, dmax)),
            linear_stiffness_n_per_mm=float(k0), gauge_length_mm=float(dc.gauge_length_mm),
            offset_strain=OFFSET_STRAIN, max_displacement_mm=dmax,
            direction=[float(v) for v in dc.direction],
            increments=run.increments, cutbacks=run.cutbacks, newton_iterations=run.newton_its,
            linear_iterations=run.linear_its + int(el.iterations), pc_setups=ps.pc_setups + 1,
            yielded_volume_mm3=vols, yielded_volume_final_mm3=vols_final,
            converged=run.converged, stopped_reason=run.stopped_reason,
            timings={"total_s": t_total, "elastic_step_s": t_el,
                     "elastic_solve_s": el.total_s,
                     **{f"{k}_s": v for k, v in ps.timers.items()}},
            kappa_peak=run.kappa_peak, kappa_final=ps.kappa.copy(), nq=ps.nq,
            qweights=np.asarray(ps.qweights),
            platens=None if isinstance(load_case, AxialCompression) else platens,
            end_slope_fraction=end_slope,
        )
    finally:
        ps.close()
    return res
