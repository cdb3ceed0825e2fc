"""Closed triangle surfaces: reading (Wavefront OBJ), checks, plane sections and clipping.

Used to derive the anatomical femur from a surface scan (``femur.geometry.landmarks``,
``femur.geometry.anatomical_build``).  Everything is plain numpy on one process; a surface
here has ``vertices`` (n, 3) float and ``faces`` (m, 3) int, oriented so that the face
normals (right-hand rule) point out of the enclosed solid.

* :func:`read_obj` -- a small, strict OBJ reader (``v`` and ``f`` records; polygons are
  fan-triangulated; texture/normal indices and other records are ignored).  Errors name the
  file and line.  Unreferenced vertices are dropped.
* :func:`check_closed` -- every edge shared by exactly two faces, consistently oriented,
  positive enclosed volume (else an ``InputError`` naming the surface).
* :func:`plane_section` -- the closed loops where a plane cuts the surface, chained through
  the mesh edges they cross; each loop carries its area and centroid (Green's formula in
  the plane).
* :func:`clip_above` -- the part of the surface on the positive side of a plane, with
  exact intersection vertices on the cut (shared between neighbouring faces), plus the
  boundary loops of the cut.
"""

from __future__ import annotations

import pathlib
from dataclasses import dataclass

import numpy as np

from femur.core.errors import InputError


@dataclass
class TriSurface:
    vertices: np.ndarray  # (n, 3) float
    faces: np.ndarray  # (m, 3) int, outward orientation
    name: str = "surface"

    def copy(self) -> "TriSurface":
        return TriSurface(self.vertices.copy(), self.faces.copy(), self.name)

    @property
    def triangles(self) -> np.ndarray:
        """Vertex coordinates of every face, (m, 3, 3)."""
        return self.vertices[self.faces]

    def face_normals(self, unit: bool = True) -> np.ndarray:
        T = self.triangles
        n = np.cross(T[:, 1] - T[:, 0], T[:, 2] - T[:, 0])
        if unit:
            n /= np.maximum(np.linalg.norm(n, axis=1), 1e-300)[:, None]
        return n

    def face_areas(self) -> np.ndarray:
        return 0.5 * np.linalg.norm(self.face_normals(unit=False), axis=1)

    def volume(self) -> float:
        """Enclosed volume (divergence theorem); positive for outward faces."""
        T = self.triangles
        return float(np.einsum("ij,ij->i", T[:, 0], np.cross(T[:, 1], T[:, 2])).sum() / 6.0)

    def vertex_normals(self) -> np.ndarray:
        """Area-weighted unit vertex normals."""
        n = self.face_normals(unit=False)
        vn = np.zeros_like(self.vertices)
        for k in range(3):
            np.add.at(vn, self.faces[:, k], n)
        return vn / np.maximum(np.linalg.norm(vn, axis=1), 1e-300)[:, None]

    def transformed(self, Q: np.ndarray, origin: np.ndarray, scale: float = 1.0) -> "TriSurface":
        """Surface with vertices ``scale * Q (x - origin)``; faces re-oriented if det Q < 0."""
        v = scale * (self.vertices - origin) @ np.asarray(Q, float).T
        f = self.faces.copy()
        if np.linalg.det(Q) < 0:
            f = f[:, [0, 2, 1]]
        return TriSurface(v, f, self.name)

    def edges(self) -> np.ndarray:
        """Directed edges (3m, 2) in face order."""
        f = self.faces
        return np.concatenate([f[:, [0, 1]], f[:, [1, 2]], f[:, [2, 0]]])


# ----------------------------------------------------------------------------- reading
def read_obj(path, name: str | None = None) -> TriSurface:
    """Read the triangles of a Wavefront OBJ file (vertex positions and faces only)."""
    path = pathlib.Path(path)
    if not path.is_file():
        raise InputError(f"{path}: surface file not found")
    verts: list[list[float]] = []
    faces: list[list[int]] = []
    try:
        text = path.read_text(errors="strict")
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"{path}: cannot read the OBJ file ({exc})") from None
    for lineno, line in enumerate(text.splitlines(), start=1):
        parts = line.split()
        if not parts or parts[0].startswith("#"):
            continue
        key = parts[0]
        if key == "v":
            try:
                xyz = [float(a) for a in parts[1:4]]
            except ValueError:
                raise InputError(f"{path}:{lineno}: bad vertex record {line.strip()!r}") from None
            if len(xyz) != 3:
                raise InputError(f"{path}:{lineno}: a vertex needs 3 coordinates, got {line.strip()!r}")
            verts.append(xyz)
        elif key == "f":
            try:
                idx = [int(a.split("/")[0]) for a in parts[1:]]
            except ValueError:
                raise InputError(f"{path}:{lineno}: bad face record {line.strip()!r}") from None
            if len(idx) < 3:
                raise InputError(f"{path}:{lineno}: a face needs at least 3 vertices")
            # OBJ indices are 1-based; negative ones count back from the last vertex so far
            idx = [i - 1 if i > 0 else len(verts) + i for i in idx]
            if min(idx) < 0 or max(idx) >= len(verts):
                raise InputError(f"{path}:{lineno}: face refers to a vertex that is not defined yet")
            for k in range(1, len(idx) - 1):  # fan triangulation of polygons
                faces.append([idx[0], idx[k], idx[k + 1]])
    if not faces:
        raise InputError(f"{path}: no faces found (an OBJ triangle surface is needed)")
    V = np.asarray(verts, dtype=float)
    F = np.asarray(faces, dtype=np.int64)
    if not np.all(np.isfinite(V)):
        raise InputError(f"{path}: non-finite vertex coordinates")
    used = np.unique(F)
    remap = np.full(len(V), -1, dtype=np.int64)
    remap[used] = np.arange(len(used))
    return TriSurface(V[used], remap[F], name or path.name)


def check_closed(surf: TriSurface) -> None:
    """InputError unless ``surf`` is a closed, consistently (outward) oriented 2-manifold."""
    f = surf.faces
    if len(np.unique(np.sort(f, axis=1), axis=0)) != len(f) or np.any(
        (f[:, 0] == f[:, 1]) | (f[:, 1] == f[:, 2]) | (f[:, 2] == f[:, 0])
    ):
        raise InputError(f"{surf.name}: duplicate or degenerate faces")
    e = surf.edges()
    und = np.sort(e, axis=1)
    _, inv, cnt = np.unique(und, axis=0, return_inverse=True, return_counts=True)
    if np.any(cnt != 2):
        raise InputError(
            f"{surf.name}: not a closed 2-manifold ({int(np.sum(cnt == 1))} open and "
            f"{int(np.sum(cnt > 2))} non-manifold edges)"
        )
    # consistent orientation: every undirected edge is used once in each direction
    fwd = (e[:, 0] < e[:, 1]).astype(np.int64)
    s = np.bincount(inv.ravel(), weights=fwd, minlength=len(cnt))
    if np.any(s != 1):
        raise InputError(f"{surf.name}: faces are not consistently oriented")
    if surf.volume() <= 0:
        raise InputError(f"{surf.name}: faces point inward (negative enclosed volume)")


# ----------------------------------------------------------------------------- sections
@dataclass
class Loop:
    points: np.ndarray  # (k, 3) ordered loop points (not repeated at the end)
    area: float  # signed area in the plane (positive: counter-clockwise seen from +normal)
    centroid: np.ndarray  # (3,)


def _plane_frame(normal):
    n = np.asarray(normal, float)
    n = n / np.linalg.norm(n)
    k = int(np.argmin(np.abs(n)))
    e1 = np.cross(n, np.eye(3)[k])
    e1 /= np.linalg.norm(e1)
    return n, e1, np.cross(n, e1)


def _crossing(surf: TriSurface, point, normal, eps: float = 1e-9):
    """Signed distances of the vertices to the plane, nudged off zero."""
    n = np.asarray(normal, float) / np.linalg.norm(normal)
    d = (surf.vertices - np.asarray(point, float)) @ n
    scale = max(float(np.ptp(surf.vertices)), 1.0)
    d = np.where(np.abs(d) < eps * scale, eps * scale, d)  # no vertex exactly on the plane
    return d


def plane_section(surf: TriSurface, point, normal) -> list[Loop]:
    """Closed loops where the plane through ``point`` with ``normal`` cuts ``surf``.

    A loop's points are the intersections of the plane with mesh edges, chained face by
    face; its area is positive and its centroid is the area centroid of the enclosed
    region of the plane (holes, if any, are separate loops with negative area).
    """
    d = _crossing(surf, point, normal)
    f = surf.faces
    sd = np.sign(d[f])
    cut = ~((sd == sd[:, :1]).all(axis=1))
    fc = f[cut]
    if len(fc) == 0:
        return []
    # each cut face has exactly two crossing edges; the segment runs from the edge where the
    # face goes from + to - (in face order) to the edge where it goes from - to +, which
    # orients the loops counter-clockwise about +normal for outward faces
    seg_from, seg_to = [], []
    for fi in fc:
        a = []
        for k in range(3):
            i, j = fi[k], fi[(k + 1) % 3]
            if (d[i] > 0) != (d[j] > 0):
                a.append((i, j))
        (i0, j0), (i1, j1) = a
        if d[i0] > 0:  # + -> - first
            seg_from.append((min(i0, j0), max(i0, j0)))
            seg_to.append((min(i1, j1), max(i1, j1)))
        else:
            seg_from.append((min(i1, j1), max(i1, j1)))
            seg_to.append((min(i0, j0), max(i0, j0)))
    # walk: a face's segment starts on one crossing edge and ends on the other, where the
    # next face's segment starts
    start_of = dict(zip(seg_from, seg_to))
    V = surf.vertices

    def point_on(edge):
        i, j = edge
        t = d[i] / (d[i] - d[j])
        return V[i] + t * (V[j] - V[i])

    n, e1, e2 = _plane_frame(normal)
    loops = []
    for chain in _closed_chains(start_of, f"{surf.name}: a plane section does not close (surface not closed?)"):
        P = np.array([point_on(c) for c in chain])
        q = np.stack([(P - point) @ e1, (P - point) @ e2], axis=1)
        qn = np.roll(q, -1, axis=0)
        cross = q[:, 0] * qn[:, 1] - qn[:, 0] * q[:, 1]
        area = 0.5 * cross.sum()
        if abs(area) > 0:
            cx = ((q[:, 0] + qn[:, 0]) * cross).sum() / (6 * area)
            cy = ((q[:, 1] + qn[:, 1]) * cross).sum() / (6 * area)
        else:
            cx, cy = q.mean(axis=0)
        c = np.asarray(point, float) + cx * e1 + cy * e2
        loops.append(Loop(P, float(area), c))
    return loops


def loop_containing(loops: list[Loop], point, normal) -> Loop | None:
    """The outer loop (positive area) whose polygon contains ``point`` (projected on the
    plane), or None."""
    n, e1, e2 = _plane_frame(normal)
    p = np.asarray(point, float)
    best = None
    for lp in loops:
        if lp.area <= 0:
            continue
        q = np.stack([(lp.points - p) @ e1, (lp.points - p) @ e2], axis=1)
        qn = np.roll(q, -1, axis=0)
        # winding number of the origin
        ang = np.arctan2(q[:, 0] * qn[:, 1] - q[:, 1] * qn[:, 0], (q * qn).sum(axis=1)).sum()
        if abs(ang) > np.pi:
            if best is None or lp.area < best.area:
                best = lp
    return best


def caliper_widths(loop: Loop, normal, n_dirs: int = 180):
    """Widths of the loop's projection on ``n_dirs`` in-plane directions over 180 deg:
    (directions (n_dirs, 3), widths (n_dirs,))."""
    n, e1, e2 = _plane_frame(normal)
    th = np.linspace(0, np.pi, n_dirs, endpoint=False)
    dirs = np.cos(th)[:, None] * e1 + np.sin(th)[:, None] * e2
    proj = loop.points @ dirs.T
    return dirs, proj.max(axis=0) - proj.min(axis=0)


# ----------------------------------------------------------------------------- clipping
def clip_above(surf: TriSurface, point, normal):
    """Keep the part of ``surf`` where (x - point).normal > 0.

    Returns ``(clipped, boundary_loops)``: an open TriSurface (faces split exactly on the
    plane; intersection vertices shared by neighbouring faces) and the list of boundary
    loops as arrays of vertex indices of ``clipped``, ordered so that the cap that closes
    the solid (normal ``-normal``) is counter-clockwise seen from below.
    """
    d = _crossing(surf, point, normal)
    V, F = surf.vertices, surf.faces
    keep_v = d > 0
    new_vertices = [V]
    edge_vertex: dict[tuple[int, int], int] = {}
    nv = len(V)

    def cut_vertex(i, j):
        nonlocal nv
        key = (min(i, j), max(i, j))
        if key not in edge_vertex:
            t = d[i] / (d[i] - d[j])
            new_vertices.append((V[i] + t * (V[j] - V[i]))[None, :])
            edge_vertex[key] = nv
            nv += 1
        return edge_vertex[key]

    out = []
    bnd_edges = []  # directed boundary edges (a, b) of the kept part, in face order
    inside = keep_v[F]
    for fi, ins in zip(F, inside):
        k = int(ins.sum())
        if k == 3:
            out.append(fi)
        elif k == 0:
            continue
        else:
            # rotate so that the lone vertex (kept if k == 1, dropped if k == 2) is first
            lone = int(np.flatnonzero(ins == (k == 1))[0])
            a, b, c = fi[lone], fi[(lone + 1) % 3], fi[(lone + 2) % 3]
            ab, ca = cut_vertex(a, b), cut_vertex(c, a)
            if k == 1:  # a kept
                out.append([a, ab, ca])
                bnd_edges.append((ab, ca))
            else:  # a dropped, b and c kept
                out.append([ab, b, c])
                out.append([ab, c, ca])
                bnd_edges.append((ca, ab))
    Vn = np.concatenate(new_vertices)
    Fn = np.asarray(out, dtype=np.int64)
    used = np.unique(Fn)
    remap = np.full(len(Vn), -1, dtype=np.int64)
    remap[used] = np.arange(len(used))
    clipped = TriSurface(Vn[used], remap[Fn], surf.name)
    # chain boundary edges into loops; the kept part's boundary runs (a -> b); the cap
    # closing it must run b -> a, i.e. the reversed loop
    nxt = {remap[a]: remap[b] for a, b in bnd_edges}
    loops = [np.asarray(loop[::-1], dtype=np.int64)
             for loop in _closed_chains(nxt, f"{surf.name}: the cut boundary does not close")]
    return clipped, loops


def _closed_chains(successor: dict, error: str) -> list[list]:
    """Split a successor map (item -> next item) into closed chains, each starting at its
    first item in the map's order; ``InputError(error)`` if a chain does not close."""
    chains, seen = [], set()
    for first in successor:
        if first in seen:
            continue
        chain = [first]
        seen.add(first)
        item = successor[first]
        while item != first:
            if item in seen or item not in successor:
                raise InputError(error)
            chain.append(item)
            seen.add(item)
            item = successor[item]
        chains.append(chain)
    return chains
