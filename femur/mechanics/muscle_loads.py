"""Habitual (daily) femur load cases: hip joint force on the head plus the abductor force
on the greater trochanter, with daily cycle counts (mm, N, MPa).

These are the load cases of the density-adaptation workflow
(``femur.workflows.habitual_adaptation``).  Each :class:`HipMuscleLoadCase` is an ordinary load case
of the mechanics stage (``prepare(bone) -> PreparedLoad``; ``apply(solver) -> LoadInfo``),
so ``femur.mechanics.solve(bone, case)`` runs it on its own;
:class:`DailyLoadSet` installs several of them into *one* ElasticitySolver with the same
boundary conditions, switching between them by changing constants only (one matrix, one
AMG hierarchy, three right-hand sides).

Load set (:data:`CARTER_DAILY_LOADS`)
-------------------------------------
Carter, Orr & Fyhrie, J Biomech 1989;22:231 (loads) and Beaupré, Orr & Carter, J Orthop
Res 1990;8:662 (the same loads in the first time-dependent adaptation simulation):

==========  =============  ==================  ==============  =================  ======
case        joint force N  angle (deg)         abductor N      angle (deg)        cycles
==========  =============  ==================  ==============  =================  ======
stance      2317           24 (lateral)        703             28 (medial)        6000/d
abduction   1158           -15 (medial)        351             -8 (lateral)       2000/d
adduction   1548           56 (lateral)        468             35 (medial)        2000/d
==========  =============  ==================  ==============  =================  ======

UNCONFIRMED: the magnitudes, angles and cycle counts are the table these papers are
widely quoted with (2-D plane model of a proximal femur); they are not in
``shared/science`` and were not checked against the papers here.  The cycle counts
6000 / 2000 / 2000 per day are the ones named in the project issue.

Directions (landmark based, so they work on the parametric and on an anatomical femur):
``s`` = landmark "shaft_axis" (proximal), ``l`` = landmark "lateral" made perpendicular
to ``s``; the frontal plane is span(s, l).  ASSUMPTION: the papers' angles are taken
from the femoral shaft axis (the 2-D model's vertical) in the frontal plane, positive
toward lateral for the joint force and toward medial for the abductor force:

* joint force on the head (acetabulum pushing the head down):
  ``d_J = -cos(a) s + sin(a) l``  (a = 24 deg: inferolateral; the stance case of
  ``SingleLegStance`` uses the same convention at 8 deg);
* abductor force on the trochanter (pulling toward the iliac wing):
  ``d_A = cos(b) s - sin(b) l``  (b = 28 deg: superomedial).

Boundary conditions (documented choices)
----------------------------------------
* "distal" facets fully fixed (as ``SingleLegStance``).
* Joint force: traction ``F_J * w(n) / W * d_J`` on the head facets ("head_load" +
  "head_surface"), with the contact weight ``w(n) = max(0, (-n.d_J - cos c) / (1 - cos c))``
  (n the outward facet normal, c = ``contact_half_angle_deg`` = 45 deg): the acetabular
  contact is centred where the head faces the force and tapers to zero at c, so the
  patch follows the force direction of each case; ``W = int w ds`` makes the resultant
  exactly ``F_J d_J``.
* Abductor force: uniform traction ``F_A d_A / A`` on the abductor insertion patch:
  the facet tag "abductor" where the bone has one (the anatomical femur: around the top
  of the greater trochanter, where gluteus medius and minimus insert), else "trochanter"
  (the parametric femur's lateral greater-trochanter patch); resultant exactly ``F_A d_A``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from femur.core.mpi import MPI
import dolfinx  # noqa: E402
import ufl  # noqa: E402
from petsc4py import PETSc  # noqa: E402

from femur.core.errors import InputError  # noqa: E402
from femur.mechanics.loadcases import (  # noqa: E402
    LoadInfo,
    PreparedLoad,
    _femur_axes,
    _unit,
    facet_area,
    tagged_facets,
)

#: source line recorded with every adapted field
CARTER_SOURCE = ("Carter, Orr & Fyhrie, J Biomech 1989;22:231; Beaupre, Orr & Carter, "
                 "J Orthop Res 1990;8:662 (load table as widely quoted; UNCONFIRMED)")


def frontal_direction(bone, angle_deg: float, toward: str) -> np.ndarray:
    """Unit vector in the frontal plane at ``angle_deg`` from the shaft axis.

    toward="distal_lateral": ``-cos s + sin l`` (joint force; positive angle = lateral);
    toward="proximal_medial": ``cos s - sin l`` (abductor; positive angle = medial).
    """
    s, lat, _ = _femur_axes(bone)
    a = np.deg2rad(float(angle_deg))
    if toward == "distal_lateral":
        return _unit(-np.cos(a) * s + np.sin(a) * lat)
    if toward == "proximal_medial":
        return _unit(np.cos(a) * s - np.sin(a) * lat)
    raise InputError(f"toward must be 'distal_lateral' or 'proximal_medial', got {toward!r}")


def _head_facets(bone, names) -> np.ndarray:
    present = [n for n in names if n in bone.facet_ids]
    if not present:
        tagged_facets(bone, names[0])  # raises the InputError naming the bone's tags
    return np.unique(np.concatenate([tagged_facets(bone, n) for n in present])).astype(np.int32)


def _contact_weight(n, d, cos_c):
    """UFL contact weight on the head: 1 where the surface faces -d, 0 beyond the cap."""
    return ufl.max_value(0.0, (-ufl.dot(n, d) - cos_c) / (1.0 - cos_c))


def _contact_integral(mesh, facets, d: np.ndarray, cos_c: float) -> float:
    """W = int_head w ds (mm2), collective."""
    fdim = mesh.topology.dim - 1
    tags = dolfinx.mesh.meshtags(mesh, fdim, facets, np.ones(len(facets), dtype=np.int32))
    ds = ufl.Measure("ds", domain=mesh, subdomain_data=tags)
    dc = dolfinx.fem.Constant(mesh, np.asarray(d, dtype=PETSc.ScalarType))
    w = _contact_weight(ufl.FacetNormal(mesh), dc, cos_c)
    val = dolfinx.fem.assemble_scalar(dolfinx.fem.form(w * ds(1)))
    return float(mesh.comm.allreduce(val, op=MPI.SUM))


@dataclass
class HipMuscleLoadCase:
    """Hip joint force on the head + abductor force on the greater trochanter; distal
    end fixed; force controlled.  Angles in degrees (see the module docstring)."""

    name: str = "stance"
    joint_force_n: float = 2317.0
    joint_angle_deg: float = 24.0
    abductor_force_n: float = 703.0
    abductor_angle_deg: float = 28.0
    cycles_per_day: float = 6000.0
    contact_half_angle_deg: float = 45.0
    head_facets: tuple = ("head_load", "head_surface")
    #: candidate facet tags for the abductor insertion, the first the bone has is used:
    #: "abductor" (top of the greater trochanter, anatomical femur), else "trochanter"
    muscle_facets: tuple = ("abductor", "trochanter")
    fixed_facet: str = "distal"

    def validate(self) -> None:
        for attr in ("joint_force_n", "cycles_per_day"):
            v = getattr(self, attr)
            if not (np.isfinite(v) and v > 0):
                raise InputError(f"HipMuscleLoadCase '{self.name}': {attr} must be > 0, got {v}")
        if not (np.isfinite(self.abductor_force_n) and self.abductor_force_n >= 0):
            raise InputError(f"HipMuscleLoadCase '{self.name}': abductor_force_n must be >= 0 N, "
                             f"got {self.abductor_force_n}")
        for attr in ("joint_angle_deg", "abductor_angle_deg"):
            v = getattr(self, attr)
            if not (np.isfinite(v) and -90.0 < v < 90.0):
                raise InputError(f"HipMuscleLoadCase '{self.name}': {attr} must lie in (-90, 90) "
                                 f"degrees from the shaft axis, got {v}")
        if not (5.0 <= self.contact_half_angle_deg <= 89.0):
            raise InputError(f"HipMuscleLoadCase '{self.name}': contact_half_angle_deg must lie in "
                             f"[5, 89], got {self.contact_half_angle_deg}")

    def muscle_facet(self, bone) -> str:
        """The abductor patch's facet tag on ``bone`` (first of ``muscle_facets`` it has)."""
        names = (self.muscle_facets,) if isinstance(self.muscle_facets, str) else tuple(self.muscle_facets)
        for name in names:
            if name in (bone.facet_ids or {}):
                return name
        return names[0]

    def joint_direction(self, bone) -> np.ndarray:
        return frontal_direction(bone, self.joint_angle_deg, "distal_lateral")

    def abductor_direction(self, bone) -> np.ndarray:
        return frontal_direction(bone, self.abductor_angle_deg, "proximal_medial")

    def resultant_n(self, bone) -> np.ndarray:
        """Total external force (N, bone frame) applied by this case."""
        return (self.joint_force_n * self.joint_direction(bone)
                + self.abductor_force_n * self.abductor_direction(bone))

    def describe(self) -> dict:
        return {"name": self.name, "joint_force_n": self.joint_force_n,
                "joint_angle_deg": self.joint_angle_deg, "abductor_force_n": self.abductor_force_n,
                "abductor_angle_deg": self.abductor_angle_deg, "cycles_per_day": self.cycles_per_day,
                "contact_half_angle_deg": self.contact_half_angle_deg,
                "muscle_facets": [str(m) for m in np.atleast_1d(self.muscle_facets)]}

    # ---------------------------------------------------------------- set-up pieces
    def _geometry(self, bone):
        """(head facets, trochanter facets, fixed facets, contact integral, trochanter area)."""
        self.validate()
        head = _head_facets(bone, self.head_facets)
        troch = tagged_facets(bone, self.muscle_facet(bone))
        fixed = tagged_facets(bone, self.fixed_facet)
        cos_c = float(np.cos(np.deg2rad(self.contact_half_angle_deg)))
        W = _contact_integral(bone.mesh, head, self.joint_direction(bone), cos_c)
        if not W > 0:
            raise InputError(
                f"HipMuscleLoadCase '{self.name}': no head facet of bone '{bone.name}' faces the "
                f"joint force within contact_half_angle_deg={self.contact_half_angle_deg}")
        area = facet_area(bone.mesh, troch)
        if self.abductor_force_n > 0 and not area > 0:
            raise InputError(f"facet tag '{self.muscle_facet(bone)}' of bone '{bone.name}' is empty")
        return head, troch, fixed, W, area

    def prepare(self, bone) -> PreparedLoad:
        head, troch, fixed, W, area = self._geometry(bone)
        dJ, dA = self.joint_direction(bone), self.abductor_direction(bone)
        cos_c = float(np.cos(np.deg2rad(self.contact_half_angle_deg)))
        mesh = bone.mesh

        def apply(solver):
            dc = dolfinx.fem.Constant(mesh, np.asarray(dJ, dtype=PETSc.ScalarType))
            w = _contact_weight(ufl.FacetNormal(mesh), dc, cos_c)
            solver.add_dirichlet(facets=fixed, value=0.0)
            solver.add_traction(head, (self.joint_force_n / W) * w * dc)
            if self.abductor_force_n > 0:
                solver.add_traction(troch, self.abductor_force_n * dA / area)
            return LoadInfo(self.name, "force", head, dJ, load_n=self.joint_force_n,
                            support_facets={self.fixed_facet: fixed}, patch_area_mm2=W)

        return PreparedLoad(None, apply)


#: The daily load set (see the module docstring for the source and its status).
CARTER_DAILY_LOADS = (
    HipMuscleLoadCase("stance", 2317.0, 24.0, 703.0, 28.0, 6000.0),
    HipMuscleLoadCase("abduction", 1158.0, -15.0, 351.0, -8.0, 2000.0),
    HipMuscleLoadCase("adduction", 1548.0, 56.0, 468.0, 35.0, 2000.0),
)


@dataclass
class DailyLoadSet:
    """Several :class:`HipMuscleLoadCase` on one ElasticitySolver (same support, same
    matrix).  ``apply(solver)`` installs the supports and two tractions whose directions
    and magnitudes are dolfinx Constants; ``select(i)`` switches to case ``i`` (the next
    ``solver.solve()`` reassembles only the right-hand side).  All cases must share the
    facet tags and the fixed facet."""

    cases: tuple = CARTER_DAILY_LOADS
    _state: dict = field(default_factory=dict, repr=False)

    def __post_init__(self):
        self.cases = tuple(self.cases)
        if not self.cases:
            raise InputError("DailyLoadSet needs at least one load case")
        keys = {(tuple(c.head_facets), tuple(np.atleast_1d(c.muscle_facets)), c.fixed_facet,
                 c.contact_half_angle_deg) for c in self.cases}
        if len(keys) != 1:
            raise InputError("DailyLoadSet: all cases must use the same facet tags and contact angle")
        names = [c.name for c in self.cases]
        if len(set(names)) != len(names):
            raise InputError(f"DailyLoadSet: load-case names must be unique, got {names}")

    @property
    def names(self) -> list[str]:
        return [c.name for c in self.cases]

    @property
    def cycles_per_day(self) -> np.ndarray:
        return np.array([c.cycles_per_day for c in self.cases], dtype=float)

    def apply(self, solver, bone):
        """Install the supports and the switchable tractions; returns the fixed facets."""
        first = self.cases[0]
        head, troch, fixed, _, area = first._geometry(bone)
        per_case = []
        for c in self.cases:
            _, _, _, W, _ = c._geometry(bone)
            per_case.append((c.joint_direction(bone), c.joint_force_n / W,
                             c.abductor_force_n * c.abductor_direction(bone) / area if area > 0
                             else np.zeros(3)))
        mesh = bone.mesh
        cos_c = float(np.cos(np.deg2rad(first.contact_half_angle_deg)))
        dJ = dolfinx.fem.Constant(mesh, np.zeros(3, dtype=PETSc.ScalarType))
        scale = dolfinx.fem.Constant(mesh, PETSc.ScalarType(0.0))
        tA = dolfinx.fem.Constant(mesh, np.zeros(3, dtype=PETSc.ScalarType))
        w = _contact_weight(ufl.FacetNormal(mesh), dJ, cos_c)
        solver.add_dirichlet(facets=fixed, value=0.0)
        solver.add_traction(head, scale * w * dJ)
        solver.add_traction(troch, tA)
        self._state = {"dJ": dJ, "scale": scale, "tA": tA, "per_case": per_case,
                       "fixed": fixed, "head": head, "troch": troch}
        self.select(0)
        return fixed

    def select(self, i: int) -> HipMuscleLoadCase:
        if not self._state:
            raise InputError("DailyLoadSet.select: call apply(solver, bone) first")
        d, sc, ta = self._state["per_case"][int(i)]
        self._state["dJ"].value[:] = d
        self._state["scale"].value = sc
        self._state["tA"].value[:] = ta
        return self.cases[int(i)]


__all__ = ["HipMuscleLoadCase", "DailyLoadSet", "CARTER_DAILY_LOADS", "CARTER_SOURCE",
           "frontal_direction"]
