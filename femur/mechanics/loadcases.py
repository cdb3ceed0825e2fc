"""Load cases on the Bone conventions (mm, N).

Femur frame (ProximalFemur): z = shaft axis (proximal), x = medial, y = anterior.
Vertebra frame: z = cranio-caudal axis (superior +z); landmark "axis".

Each load case ``prepare(bone)`` returns a ``PreparedLoad`` with an optional solve frame
(a rotation, see elasticity.py) and ``apply(solver)`` that adds the boundary conditions
and loads to an ElasticitySolver and returns a ``LoadInfo`` used for stiffness and
fracture load.

Boundary conditions (documented choices)
----------------------------------------
SingleLegStance (Cristofolini, J Biomech 2007; biomechanics.md section 3): uniform
    traction on the "head_load" facets, resultant ``load_n`` at ``angle_deg`` (8 deg) to
    the shaft axis in the frontal plane, pointing distally and medial->lateral; "distal"
    facets fully fixed.  Force controlled.
SidewaysFall (Courtney-type set-up: shaft 10 deg adduction, 15 deg internal rotation;
    several directions: Keyak, Bone 2013; biomechanics.md section 3): fall direction d
    (unit, from the bone toward the ground) built from the angles; uniform traction
    ``load_n * d`` on the head facets ("head_surface" + "head_load") whose outward normal
    lies within ``head_cap_deg`` of -d (the acetabular contact);
    the support ("ground") is the plane normal to d touching the bone: boundary facets
    facing d within ``support_depth_mm`` of it get u.d = 0 (frictionless support); the
    "distal" facets get zero displacement perpendicular to d (free to slide along d).
    The direction constraints are imposed exactly in a rotated solve frame.
AxialCompression (Yang, J Biomech 2012 layers; Walle, GigaScience 2025 surrogate):
    displacement controlled along landmark "axis".  ends="frictionless" (default): the
    "inferior" facets have zero axial displacement, the "superior" facets prescribed
    axial displacement -delta, in-plane motion free except a pin at the inferior node
    nearest the face centre (both in-plane components) and one in-plane component at the
    inferior node farthest from it (removes the in-plane rotation).  These minimal
    constraints do not disturb a uniaxial state, so a homogeneous prism is exact.
    ends="bonded": both faces fully constrained in-plane (platens glued).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from femur.core.mpi import MPI
import dolfinx  # noqa: E402
import ufl  # noqa: E402

from femur.core.errors import InputError  # noqa: E402


# ----------------------------------------------------------------------------- helpers
def _unit(v, what="vector"):
    v = np.asarray(v, dtype=float).reshape(3)
    n = np.linalg.norm(v)
    if not np.isfinite(n) or n == 0:
        raise InputError(f"{what} must be a non-zero 3-vector, got {v}")
    return v / n


def tagged_facets(bone, name: str) -> np.ndarray:
    """Local facet indices of the facet tag ``name`` (InputError if the bone lacks it)."""
    if bone.facet_tags is None or name not in bone.facet_ids:
        raise InputError(
            f"bone '{bone.name}' has no facet tag '{name}' (needed by this load case); "
            f"its facet tags are {sorted(bone.facet_ids)}"
        )
    ft = bone.facet_tags
    return np.sort(ft.indices[ft.values == bone.facet_ids[name]]).astype(np.int32)


def facet_geometry(mesh, facets):
    """Midpoints (n, 3) and outward unit normals (n, 3) of local boundary facets."""
    tdim = mesh.topology.dim
    fdim = tdim - 1
    facets = np.asarray(facets, dtype=np.int32)
    if facets.size == 0:
        return np.zeros((0, 3)), np.zeros((0, 3))
    mesh.topology.create_connectivity(fdim, tdim)
    f2c = mesh.topology.connectivity(fdim, tdim)
    mid = dolfinx.mesh.compute_midpoints(mesh, fdim, facets)
    g = dolfinx.mesh.entities_to_geometry(mesh, fdim, facets)
    x = mesh.geometry.x
    n = np.cross(x[g[:, 1]] - x[g[:, 0]], x[g[:, 2]] - x[g[:, 0]])
    n /= np.linalg.norm(n, axis=1)[:, None]
    cells = f2c.array[f2c.offsets[facets]].astype(np.int32)
    cmid = dolfinx.mesh.compute_midpoints(mesh, tdim, cells)
    flip = np.einsum("ij,ij->i", n, mid - cmid) < 0
    n[flip] *= -1
    return mid, n


def facet_area(mesh, facets) -> float:
    """Global area (mm2) of local boundary facets (collective)."""
    fdim = mesh.topology.dim - 1
    facets = np.unique(np.asarray(facets, dtype=np.int32))
    tags = dolfinx.mesh.meshtags(mesh, fdim, facets, np.ones(len(facets), dtype=np.int32))
    ds = ufl.Measure("ds", domain=mesh, subdomain_data=tags)
    one = dolfinx.fem.Constant(mesh, 1.0)
    a = dolfinx.fem.assemble_scalar(dolfinx.fem.form(one * ds(1)))
    return float(mesh.comm.allreduce(a, op=MPI.SUM))


def facet_mean(mesh, facets, expr) -> float:
    """Area-weighted mean of a continuous scalar UFL expression over facets (collective).
    Exterior facets are integrated with ds, interior ones (e.g. an endplate under a
    loading layer) with dS."""
    fdim = mesh.topology.dim - 1
    mesh.topology.create_connectivity(fdim, mesh.topology.dim)
    facets = np.unique(np.asarray(facets, dtype=np.int32))
    ext = np.intersect1d(facets, dolfinx.mesh.exterior_facet_indices(mesh.topology))
    vals = np.where(np.isin(facets, ext), 1, 2).astype(np.int32)
    tags = dolfinx.mesh.meshtags(mesh, fdim, facets, vals)
    ds = ufl.Measure("ds", domain=mesh, subdomain_data=tags)
    dS = ufl.Measure("dS", domain=mesh, subdomain_data=tags)
    one = dolfinx.fem.Constant(mesh, 1.0)
    num = expr * ds(1) + expr("+") * dS(2)
    den = one * ds(1) + one("+") * dS(2)
    num = mesh.comm.allreduce(dolfinx.fem.assemble_scalar(dolfinx.fem.form(num)), op=MPI.SUM)
    den = mesh.comm.allreduce(dolfinx.fem.assemble_scalar(dolfinx.fem.form(den)), op=MPI.SUM)
    return float(num / den)


def _global_count(comm, n) -> int:
    return int(comm.allreduce(int(n), op=MPI.SUM))


def _global_best_point(comm, pts: np.ndarray, key: np.ndarray) -> np.ndarray:
    """The point with the smallest ``key`` over all ranks; ties broken by (x, y, z),
    so the choice does not depend on the partition."""
    if len(pts):
        idx = np.lexsort((pts[:, 2], pts[:, 1], pts[:, 0], key))[0]
        cand = (float(key[idx]), *map(float, pts[idx]))
    else:
        cand = (np.inf, np.inf, np.inf, np.inf)
    allc = comm.allgather(cand)
    best = min(allc)
    if not np.isfinite(best[0]):
        raise InputError("no candidate point found on any rank")
    return np.array(best[1:])


def _facet_nodes_coords(mesh, facets) -> np.ndarray:
    """Coordinates of the geometry nodes of local facets (unique rows)."""
    if len(facets) == 0:
        return np.zeros((0, 3))
    g = dolfinx.mesh.entities_to_geometry(mesh, mesh.topology.dim - 1, np.asarray(facets, np.int32))
    return mesh.geometry.x[np.unique(g.ravel())]


def _nodes_at(V, point, tol):
    """Local node indices of V whose coordinates coincide with ``point``."""
    x = V.tabulate_dof_coordinates()
    return np.flatnonzero(np.linalg.norm(x - point, axis=1) <= tol).astype(np.int32)


def _femur_axes(bone):
    """(shaft s, lateral l, anterior a) unit vectors in bone coordinates."""
    lm = bone.landmarks
    s = _unit(lm.get("shaft_axis", (0.0, 0.0, 1.0)), "landmark shaft_axis")
    lat = np.asarray(lm.get("lateral", (-1.0, 0.0, 0.0)), dtype=float)
    lat = _unit(lat - (lat @ s) * s, "landmark lateral")
    ant = np.asarray(lm.get("anterior", np.cross(lat, s)), dtype=float)
    ant = _unit(ant - (ant @ s) * s - (ant @ lat) * lat, "landmark anterior")
    return s, lat, ant


@dataclass
class LoadInfo:
    """What a prepared load case applied (bone frame)."""

    name: str
    control: str  # "force" | "displacement"
    load_facets: np.ndarray  # head patch (force) or prescribed face (displacement)
    direction: np.ndarray  # unit load direction (force) / compression direction (-axis)
    load_n: float | None = None  # force magnitude (force control)
    displacement_mm: float | None = None  # prescribed displacement (displacement control)
    support_facets: dict = field(default_factory=dict)
    height_mm: float | None = None
    gauge_facets: tuple | None = None  # (superior, inferior) faces of the bone proper
    patch_area_mm2: float | None = None


@dataclass
class PreparedLoad:
    frame: np.ndarray | None
    _apply: object

    def apply(self, solver) -> LoadInfo:
        return self._apply(solver)


# ----------------------------------------------------------------------------- cases
@dataclass
class SingleLegStance:
    """Single-leg stance: head load at ``angle_deg`` to the shaft axis (frontal plane),
    distal end fixed.  8 deg: most critical head-neck case (Cristofolini, J Biomech 2007;
    biomechanics.md section 3).  ``load_n`` is a reference load (linear analysis)."""

    angle_deg: float = 8.0
    load_n: float = 1000.0
    load_facet: str = "head_load"
    fixed_facet: str = "distal"

    name = "stance"

    def direction(self, bone) -> np.ndarray:
        s, lat, _ = _femur_axes(bone)
        a = np.deg2rad(self.angle_deg)
        return _unit(-np.cos(a) * s + np.sin(a) * lat)

    def prepare(self, bone) -> PreparedLoad:
        if not self.load_n > 0:
            raise InputError(f"SingleLegStance.load_n must be > 0 N, got {self.load_n}")
        load = tagged_facets(bone, self.load_facet)
        fixed = tagged_facets(bone, self.fixed_facet)
        d = self.direction(bone)
        area = facet_area(bone.mesh, load)
        if area <= 0:
            raise InputError(f"facet tag '{self.load_facet}' of bone '{bone.name}' is empty")

        def apply(solver):
            solver.add_dirichlet(facets=fixed, value=0.0)
            solver.add_traction(load, self.load_n * d / area)
            return LoadInfo(self.name, "force", load, d, load_n=self.load_n,
                            support_facets={self.fixed_facet: fixed}, patch_area_mm2=area)

        return PreparedLoad(None, apply)


#: extra rotation (deg) of the fall direction about the shaft axis, toward posterior
FALL_DIRECTIONS = {"lateral": 0.0, "posterolateral": 45.0, "anterolateral": -45.0}


@dataclass
class SidewaysFall:
    """Sideways fall on the greater trochanter (see module docstring for the BCs).

    adduction_deg = 10, internal_rotation_deg = 15: Courtney-type configuration
    (biomechanics.md section 3, UNCONFIRMED angles).  ``direction``: "lateral",
    "posterolateral" (+45 deg about the shaft toward posterior), "anterolateral" (-45 deg),
    or a number of degrees.
    """

    adduction_deg: float = 10.0
    internal_rotation_deg: float = 15.0
    direction: str | float = "lateral"
    load_n: float = 1000.0
    support_depth_mm: float = 3.0
    head_cap_deg: float = 45.0
    head_facets: tuple = ("head_surface", "head_load")
    distal_facet: str = "distal"

    @property
    def name(self) -> str:
        d = self.direction
        return f"fall_{d}" if isinstance(d, str) else f"fall_{float(d):g}deg"

    def fall_direction(self, bone) -> np.ndarray:
        """Unit vector d from the bone toward the ground (bone coordinates)."""
        if isinstance(self.direction, str):
            if self.direction not in FALL_DIRECTIONS:
                raise InputError(
                    f"SidewaysFall.direction '{self.direction}' unknown; expected one of "
                    f"{sorted(FALL_DIRECTIONS)} or an angle in degrees"
                )
            phi = FALL_DIRECTIONS[self.direction]
        else:
            phi = float(self.direction)
        s, lat, ant = _femur_axes(bone)
        al = np.deg2rad(self.adduction_deg)
        th = np.deg2rad(self.internal_rotation_deg + phi)
        # lateral fall without rotations: d = lateral; adduction tilts d toward proximal,
        # internal rotation (anterior surface toward medial) turns d toward posterior.
        return _unit(np.cos(al) * (np.cos(th) * lat - np.sin(th) * ant) + np.sin(al) * s)

    def prepare(self, bone) -> PreparedLoad:
        if not self.load_n > 0:
            raise InputError(f"SidewaysFall.load_n must be > 0 N, got {self.load_n}")
        mesh, comm = bone.mesh, bone.comm
        d = self.fall_direction(bone)
        s, _, _ = _femur_axes(bone)
        distal = tagged_facets(bone, self.distal_facet)
        names = [n for n in self.head_facets if n in bone.facet_ids]
        if not names:
            tagged_facets(bone, self.head_facets[0])  # raises a clear InputError
        head_all = np.unique(np.concatenate([tagged_facets(bone, n) for n in names]))
        head_name = "+".join(names)
        _, nh = facet_geometry(mesh, head_all)
        head = head_all[nh @ (-d) >= np.cos(np.deg2rad(self.head_cap_deg))]
        if _global_count(comm, len(head)) == 0:
            raise InputError(
                f"SidewaysFall: no '{head_name}' facet of bone '{bone.name}' faces the "
                f"acetabulum (-d) within head_cap_deg={self.head_cap_deg}"
            )
        ext = dolfinx.mesh.exterior_facet_indices(mesh.topology)
        ext = np.setdiff1d(ext, np.concatenate([head_all, distal])).astype(np.int32)
        mid, n = facet_geometry(mesh, ext)
        xn = _facet_nodes_coords(mesh, ext)
        smax = comm.allreduce(float((xn @ d).max()) if len(xn) else -np.inf, op=MPI.MAX)
        sup = ext[(mid @ d >= smax - self.support_depth_mm) & (n @ d > 0.0)]
        if _global_count(comm, len(sup)) == 0:
            raise InputError(
                f"SidewaysFall: no support facets within support_depth_mm="
                f"{self.support_depth_mm} of the ground plane for bone '{bone.name}'"
            )
        p1 = _unit(s - (s @ d) * d, "shaft axis perpendicular to the fall direction")
        Q = np.vstack([d, p1, np.cross(d, p1)])
        area = facet_area(mesh, head)

        def apply(solver):
            solver.add_dirichlet(facets=sup, value=0.0, component=0)
            solver.add_dirichlet(facets=distal, value=0.0, component=1)
            solver.add_dirichlet(facets=distal, value=0.0, component=2)
            solver.add_traction(head, np.array([self.load_n / area, 0.0, 0.0]))
            return LoadInfo(self.name, "force", head, d, load_n=self.load_n,
                            support_facets={"trochanter_support": sup, self.distal_facet: distal},
                            patch_area_mm2=area)

        return PreparedLoad(Q, apply)


@dataclass
class AxialCompression:
    """Displacement-controlled axial compression between "superior" and "inferior" facets.

    Give ``displacement_mm`` or ``strain`` (apparent, = displacement / height; default
    1%).  Loading layers (8 MPa disc-like / 2500 MPa PMMA, Yang 2012) are compartments of
    the bone whose moduli come from the material model.
    """

    displacement_mm: float | None = None
    strain: float | None = None
    ends: str = "frictionless"  # "frictionless" | "bonded"
    superior_facet: str = "superior"
    inferior_facet: str = "inferior"

    name = "compression"

    def axis(self, bone) -> np.ndarray:
        return _unit(bone.landmarks.get("axis", (0.0, 0.0, 1.0)), "landmark axis")

    def height_mm(self, bone) -> float:
        """Landmark "height", else the axial distance between the two loaded faces."""
        if "height" in bone.landmarks:
            return float(np.ravel(bone.landmarks["height"])[0])
        a, comm = self.axis(bone), bone.comm
        out = []
        for name in (self.superior_facet, self.inferior_facet):
            z = _facet_nodes_coords(bone.mesh, tagged_facets(bone, name)) @ a
            lo = comm.allreduce(float(z.min()) if len(z) else np.inf, op=MPI.MIN)
            hi = comm.allreduce(float(z.max()) if len(z) else -np.inf, op=MPI.MAX)
            out.append(0.5 * (lo + hi))
        return float(out[0] - out[1])

    def prepare(self, bone) -> PreparedLoad:
        if self.ends not in ("frictionless", "bonded"):
            raise InputError(f"AxialCompression.ends must be 'frictionless' or 'bonded', got {self.ends!r}")
        mesh, comm = bone.mesh, bone.comm
        a = self.axis(bone)
        sup = tagged_facets(bone, self.superior_facet)
        inf = tagged_facets(bone, self.inferior_facet)
        h = self.height_mm(bone)
        if not h > 0:
            raise InputError(f"AxialCompression: bone '{bone.name}' has non-positive height {h} mm")
        if self.displacement_mm is not None:
            delta = float(self.displacement_mm)
        else:
            delta = float(self.strain if self.strain is not None else 0.01) * h
        if not delta > 0:
            raise InputError(f"AxialCompression: displacement must be > 0 mm (compression), got {delta}")
        # partition-independent choice of the two pin nodes on the inferior face
        k = int(np.argmin(np.abs(a)))
        t1 = _unit(np.cross(a, np.eye(3)[k]))
        t2 = np.cross(a, t1)
        xn = _facet_nodes_coords(mesh, inf)
        if _global_count(comm, len(xn)) == 0:
            raise InputError(f"facet tag '{self.inferior_facet}' of bone '{bone.name}' is empty")
        c = []
        for t in (t1, t2):
            z = xn @ t
            lo = comm.allreduce(float(z.min()) if len(z) else np.inf, op=MPI.MIN)
            hi = comm.allreduce(float(z.max()) if len(z) else -np.inf, op=MPI.MAX)
            c.append(0.5 * (lo + hi))
        inplane = np.column_stack([xn @ t1, xn @ t2]) if len(xn) else np.zeros((0, 2))
        p1 = _global_best_point(comm, xn, np.linalg.norm(inplane - np.array(c), axis=1))
        p2 = _global_best_point(comm, xn, -np.linalg.norm((xn - p1) - np.outer((xn - p1) @ a, a), axis=1))
        e1 = p2 - p1
        e1 = _unit(e1 - (e1 @ a) * a, "in-plane pin direction")
        Q = np.vstack([e1, np.cross(a, e1), a])
        # faces of the bone proper for the apparent strain (endplates under loading layers)
        if "endplate_superior" in bone.facet_ids and "endplate_inferior" in bone.facet_ids:
            gauge = (tagged_facets(bone, "endplate_superior"), tagged_facets(bone, "endplate_inferior"))
        else:
            gauge = (sup, inf)
        size = comm.allreduce(float(np.ptp(xn, axis=0).max()) if len(xn) else 0.0, op=MPI.MAX)
        tol = 1e-9 * max(size, 1.0)

        def apply(solver):
            if self.ends == "bonded":
                solver.add_dirichlet(facets=inf, value=0.0)
                solver.add_dirichlet(facets=sup, value=(0.0, 0.0, -delta))
            else:
                solver.add_dirichlet(facets=inf, value=0.0, component=2)
                solver.add_dirichlet(facets=sup, value=-delta, component=2)
                n1 = _nodes_at(solver.V, p1, tol)
                n2 = _nodes_at(solver.V, p2, tol)
                if _global_count(comm, len(n1)) == 0 or _global_count(comm, len(n2)) == 0:
                    raise InputError("AxialCompression: pin nodes not found among the DOF nodes")
                solver.add_dirichlet(nodes=n1, value=0.0, component=0)
                solver.add_dirichlet(nodes=n1, value=0.0, component=1)
                solver.add_dirichlet(nodes=n2, value=0.0, component=1)
            return LoadInfo(self.name, "displacement", sup, -a, displacement_mm=delta,
                            support_facets={self.inferior_facet: inf}, height_mm=h,
                            gauge_facets=gauge)

        return PreparedLoad(Q, apply)
