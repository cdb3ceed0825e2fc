"""Generate the anatomical proximal femur mesh from a whole-femur surface (offline step).

Run through ``meshes/make_anatomical_femur.py``; building a `Bone` at run time reads the
shipped mesh instead (`femur.geometry.anatomical`).  Steps:

1. read the surface (OBJ, metres -> mm), check it is closed and outward oriented;
2. landmarks and femur frame (`femur.geometry.landmarks.analyse_femur`); move the bone
   into the frame of ``ProximalFemur`` (z shaft axis proximal, x medial, y anterior; a
   right femur is *mirrored* to a left one), origin on the shaft axis at the cut;
3. region landmarks in that frame (lesser/greater trochanter from the surface's radius
   profiles around the shaft axis, neck junction and base from the neck section scan);
4. cut perpendicular to the shaft axis ``cut_head_diameters`` head diameters below the
   head centre (z = 0), close the cut with a planar cap, and remesh the closed surface
   with gmsh (classify + reparametrise + uniform size ``surface_size_mm``);
5. endosteal surface: every periosteal vertex moved inward along a smoothed normal by the
   local cortical thickness t(x) (`anatomical_regions.cortical_thickness_mm`); on the cut
   the normals are kept in the plane, so the endosteal ring lies in z = 0 too.  Checked:
   no endosteal triangle flips and every endosteal vertex stays at least 0.6 t from the
   periosteal surface (else a `MeshError`);
6. the distal face = a strip between the two rings (cortex) + the cap mapped into the
   endosteal ring (a harmonic/Tutte map, checked for flips) (marrow);
7. gmsh volume mesh of the two nested closed surfaces (the periosteal and endosteal
   triangles are kept as they are, so the cortex/marrow interface is conformal), tags:
   cells cortical 1 / trabecular 2; facets head_load 11, distal 12, trochanter 13,
   head_surface 14 (as ``ProximalFemur``), endocortical 15 (the interior interface) and
   abductor 16 (around the top of the greater trochanter, for abductor muscle loads).
"""

from __future__ import annotations

import numpy as np

from femur.core.errors import InputError, MeshError
from femur.geometry import anatomical_regions as regions
from femur.geometry.landmarks import analyse_femur
from femur.geometry.trisurf import TriSurface, check_closed, clip_above, read_obj
from femur.geometry.trisurf_remesh import remesh, sample_surface

CELL_IDS = {"cortical": 1, "trabecular": 2}
FACET_IDS = {"head_load": 11, "distal": 12, "trochanter": 13, "head_surface": 14, "endocortical": 15,
             "abductor": 16}
NECK_BASE_AREA_RATIO = 1.3


def _unit(v):
    v = np.asarray(v, float)
    return v / np.linalg.norm(v)


# ----------------------------------------------------------------------------- surface
def read_surface(path, units: str = "m") -> TriSurface:
    """A closed whole-femur surface from an OBJ file, in mm (``units`` of the file)."""
    scale = {"m": 1000.0, "cm": 10.0, "mm": 1.0}
    if units not in scale:
        raise InputError(f"surface units must be one of {sorted(scale)}, got {units!r}")
    surf = read_obj(path)
    surf.vertices = surf.vertices * scale[units]
    check_closed(surf)
    ext = float(np.ptp(surf.vertices, axis=0).max())
    if not 200.0 < ext < 700.0:
        raise InputError(
            f"{path}: the bone is {ext:.0f} mm long with units={units!r}; a femur is 300-550 mm "
            "(wrong units?)"
        )
    return surf


# ----------------------------------------------------------------------------- reference
def _radius_profile(P, phi_c, half_width_deg, z_edges):
    """Max distance from the shaft axis per z bin, in the azimuth sector phi_c +- half."""
    az = np.degrees(np.arctan2(P[:, 1], P[:, 0]))
    dphi = (az - phi_c + 180.0) % 360.0 - 180.0
    sel = np.abs(dphi) <= half_width_deg
    r = np.hypot(P[sel, 0], P[sel, 1])
    idx = np.digitize(P[sel, 2], z_edges) - 1
    out = np.full(len(z_edges) - 1, np.nan)
    for b in np.unique(idx):
        if 0 <= b < len(out):
            out[b] = r[idx == b].max()
    return out


def build_reference(surf_mm: TriSurface, cut_head_diameters: float = 2.5, source: dict | None = None):
    """Landmarks of the whole femur and the reference dictionary in the femur frame.

    Returns ``(whole, ref)``: the whole bone moved into the femur frame (mirrored if it is
    a right femur) and the JSON-able reference (`anatomical_regions` reads it)."""
    if not 1.5 <= cut_head_diameters <= 4.0:
        raise InputError(f"cut_head_diameters must lie in [1.5, 4], got {cut_head_diameters}")
    an = analyse_femur(surf_mm)
    R = an.head_radius_mm
    z_in = an.shaft_axis
    cut_mm = cut_head_diameters * 2.0 * R
    origin = an.shaft_point + ((an.head_center - an.shaft_point) @ z_in - cut_mm) * z_in
    Q = an.frame
    whole = surf_mm.transformed(Q, origin)

    def pt(p):
        return Q @ (np.asarray(p, float) - origin)

    C, n = pt(an.head_center), Q @ an.neck_axis
    P0 = pt(an.neck_base)
    # neck junction and base from the section scan (areas along s)
    s_arr = np.array([s for s, _ in an.sections])
    a_arr = np.array([a for _, a in an.sections])
    k = int(np.argmin(a_arr))
    beyond = np.flatnonzero((s_arr > s_arr[k]) & (a_arr > NECK_BASE_AREA_RATIO * a_arr[k]))
    if len(beyond) == 0:
        raise InputError("anatomical femur: the neck does not widen toward its base in the section scan")
    s_base = float(s_arr[beyond[0]])
    w = an.neck_width_mm
    s_j = float(np.sqrt(max(R**2 - (0.5 * w) ** 2, 1.0)))
    e_si = _unit(np.array([0, 0, 1.0]) - n[2] * n)
    # radius profiles around the shaft axis (dense surface samples)
    P = sample_surface(whole, 1.0)
    P = P[(P[:, 2] > 0.0) & (P[:, 2] < C[2] + R)]
    # lesser trochanter: the most prominent posteromedial point below the neck
    zmax_lt = P0[2] - 0.25 * R
    az = np.degrees(np.arctan2(P[:, 1], P[:, 0]))
    cand = (P[:, 2] > 15.0) & (P[:, 2] < zmax_lt) & (az > -100.0) & (az < 20.0)
    if not cand.any():
        raise InputError("anatomical femur: no lesser trochanter candidates below the neck")
    rr = np.hypot(P[:, 0], P[:, 1])
    i_lt = np.flatnonzero(cand)[np.argmax(rr[cand])]
    lt_tip = P[i_lt]
    phi_lt = float(az[i_lt])
    edges = np.arange(0.0, C[2] + R, 1.0)
    zc = 0.5 * (edges[1:] + edges[:-1])
    prof = _radius_profile(P, phi_lt, 20.0, edges)
    z_base = max(5.0, lt_tip[2] - 35.0)
    r_base = float(np.nanmax(prof[(zc >= z_base - 3) & (zc <= z_base + 3)]))
    r_tip = float(np.hypot(lt_tip[0], lt_tip[1]))
    thr = r_base + 0.25 * (r_tip - r_base)
    i0 = int(np.argmin(np.abs(zc - lt_tip[2])))
    # the bump: above the threshold and falling away from the tip (a rise means that the
    # neck above, or the shaft flare below, has taken over)
    def inside(k, prev):
        return not np.isnan(prof[k]) and prof[k] > thr and prof[k] <= prof[prev] + 0.5

    lo = i0
    while lo > 0 and inside(lo - 1, lo):
        lo -= 1
    hi = i0
    while hi < len(prof) - 1 and inside(hi + 1, hi):
        hi += 1
    lt_bottom, lt_top = float(edges[lo]), float(edges[hi + 1])
    band = np.abs(P[:, 2] - lt_tip[2]) <= 3.0
    dphi = (az - phi_lt + 180.0) % 360.0 - 180.0
    thr_t = r_base + 0.5 * (r_tip - r_base)
    on = band & (rr > thr_t) & (np.abs(dphi) < 90.0)
    half_arc = 0.5 * float(np.ptp(np.radians(dphi[on]))) * thr_t if on.any() else 10.0
    e_r = np.array([np.cos(np.radians(phi_lt)), np.sin(np.radians(phi_lt)), 0.0])
    e_t = np.array([-e_r[1], e_r[0], 0.0])
    lt_axes = np.vstack([e_r, e_t, [0.0, 0.0, 1.0]])
    r_in = r_base - 4.0  # include the cortex under the bump
    lt_center = 0.5 * (r_tip + r_in) * e_r + np.array([0, 0, 0.5 * (lt_bottom + lt_top)])
    lt_semi = np.array([0.5 * (r_tip - r_in), max(half_arc, 6.0), 0.5 * (lt_top - lt_bottom)])
    # greater trochanter: lateral outline leaves the shaft's; its most lateral point
    prof_l = _radius_profile(P, 180.0, 30.0, edges)
    base_l = float(np.nanmedian(prof_l[(zc >= 10.0) & (zc <= 30.0)]))
    up = np.flatnonzero((zc > lt_bottom) & (prof_l > base_l + 3.0))
    if len(up) == 0:
        raise InputError("anatomical femur: the greater trochanter was not found on the lateral outline")
    gt_bottom = float(edges[up[0]])
    sel = P[:, 2] >= gt_bottom
    trochanter_point = P[sel][np.argmin(P[sel, 0])]
    # top of the greater trochanter: the most proximal point lateral of the shaft axis and
    # beyond the neck base (abductor insertion, approximately)
    s_pts = (C - P) @ n
    sel = (P[:, 0] < 0.0) & (s_pts >= s_base)
    gt_top = P[sel][np.argmax(P[sel, 2])]
    ref = {
        "format": 1,
        "frame": "z = shaft axis (proximal), x = medial, y = anterior; mm; distal cut z = 0",
        "mirrored": bool(an.mirrored),
        "side_of_source": "right" if an.mirrored else "left",
        "cut_head_diameters": float(cut_head_diameters),
        "cut_below_head_center_mm": float(cut_mm),
        "head_center": C.tolist(),
        "head_radius_mm": float(R),
        "neck_axis": n.tolist(),
        "neck_base": P0.tolist(),
        "neck_e_si": e_si.tolist(),
        "neck_section_center": pt(an.neck_center).tolist(),
        "s_junction_mm": s_j,
        "s_neck_base_mm": s_base,
        "neck_roi_s_mm": [s_j + regions.NECK_ROI_GAP_MM, s_j + regions.NECK_ROI_GAP_MM + regions.NECK_ROI_WIDTH_MM],
        "neck_roi_radius_mm": 0.75 * w,
        "lt_tip": lt_tip.tolist(),
        "lt_bottom_z_mm": lt_bottom,
        "lt_top_z_mm": lt_top,
        "lt_center": lt_center.tolist(),
        "lt_axes": lt_axes.tolist(),
        "lt_semi_mm": lt_semi.tolist(),
        "gt_bottom_z_mm": gt_bottom,
        "trochanter_point": trochanter_point.tolist(),
        "gt_top": gt_top.tolist(),
        "shaft_top_z_mm": lt_bottom - regions.SHAFT_BELOW_LT_MM,
        "head_tolerance_mm": max(1.0, 4.0 * an.head_fit_rms_mm),
        "stance_angle_deg": 8.0,
        "head_patch_half_angle_deg": 30.0,
        "trochanter_patch_radius_mm": 15.0,
        "abductor_patch_radius_mm": 12.0,
        "anatomy": an.scalars(),
        "cortex": dict(regions.CORTEX_DEFAULTS),
        "source": dict(source or {}),
    }  # fmt: skip
    return whole, ref


# ----------------------------------------------------------------------------- cut + remesh
def _cap_fan(surf: TriSurface, loop: np.ndarray) -> TriSurface:
    P = surf.vertices[loop]
    c = P.mean(axis=0)
    c[2] = 0.0
    nv = len(surf.vertices)
    F = np.column_stack([loop, np.roll(loop, -1), np.full(len(loop), nv)])
    V = np.vstack([surf.vertices, c])
    T = V[F]
    nz = np.cross(T[:, 1] - T[:, 0], T[:, 2] - T[:, 0])[:, 2]
    if np.any(nz >= 0):
        raise MeshError("anatomical femur: the shaft section at the cut is not star-shaped")
    return TriSurface(V, np.vstack([surf.faces, F]), surf.name)


def cut_proximal(whole: TriSurface) -> TriSurface:
    """The part above z = 0, closed with a planar cap (a closed surface)."""
    clipped, loops = clip_above(whole, [0.0, 0.0, 0.0], [0.0, 0.0, 1.0])
    if len(loops) != 1:
        raise MeshError(f"anatomical femur: the cut plane meets the bone in {len(loops)} loops, expected 1")
    closed = _cap_fan(clipped, loops[0])
    closed.vertices[np.abs(closed.vertices[:, 2]) < 1e-9, 2] = 0.0
    check_closed(closed)
    return closed


# ----------------------------------------------------------------------------- layers
def _neighbours(F, nv):
    from scipy.sparse import coo_matrix

    e = np.concatenate([F[:, [0, 1]], F[:, [1, 2]], F[:, [2, 0]]])
    A = coo_matrix((np.ones(len(e)), (e[:, 0], e[:, 1])), shape=(nv, nv)).tocsr()
    A = ((A + A.T) > 0).astype(float)
    return A


def layers(outer: TriSurface, ref: dict, smooth_iterations: int = 3) -> dict:
    """Periosteal, endosteal and distal-face triangles sharing one vertex array.

    Returns a dict with ``vertices`` (all points) and face arrays ``periosteal`` (outer
    lateral surface), ``endosteal`` (inner surface, same connectivity, shifted indices),
    ``distal_cortex`` (strip between the rings), ``distal_marrow`` (inner cap), and the
    per-vertex cortical thickness ``thickness`` (of the periosteal vertices)."""
    V, F = outer.vertices, outer.faces
    on_cap = np.all(V[F][:, :, 2] == 0.0, axis=1)
    lat, cap = F[~on_cap], F[on_cap]
    nv = len(V)
    ring = np.unique(cap)
    ring = ring[np.isin(ring, np.unique(lat))]
    # smoothed normals of the lateral surface; in-plane on the ring
    sub = TriSurface(V, lat)
    nrm = sub.vertex_normals()
    A = _neighbours(lat, nv)
    deg = np.maximum(np.asarray(A.sum(axis=1)).ravel(), 1)
    for _ in range(smooth_iterations):
        nrm = nrm + (A @ nrm) / deg[:, None]
        nrm /= np.maximum(np.linalg.norm(nrm, axis=1), 1e-12)[:, None]
    nrm[ring, 2] = 0.0
    nrm[ring] /= np.linalg.norm(nrm[ring], axis=1)[:, None]
    t = regions.cortical_thickness_mm(V, ref)
    inner = V - t[:, None] * nrm
    inner[ring, 2] = 0.0
    # checks: no flipped endosteal triangle, endosteal vertices well inside
    n_out = TriSurface(V, lat).face_normals()
    n_in = TriSurface(inner, lat).face_normals()
    flipped = int(np.sum(np.einsum("ij,ij->i", n_out, n_in) < 0.2))
    if flipped:
        raise MeshError(f"anatomical femur: {flipped} endosteal triangles flip (cortex too thick for "
                        "the local curvature); lower the thickness or refine the surface")
    from scipy.spatial import cKDTree

    dense = sample_surface(TriSurface(V, lat), 0.3)
    d, _ = cKDTree(dense).query(inner[np.unique(lat)])
    ratio = d / t[np.unique(lat)]
    if ratio.min() < 0.6:
        worst = np.unique(lat)[int(np.argmin(ratio))]
        raise MeshError(f"anatomical femur: the endosteal surface comes within {ratio.min():.2f} t of "
                        f"the periosteal surface (self-overlap) near {np.round(V[worst], 1).tolist()} mm "
                        f"(t = {t[worst]:.2f} mm); use a finer surface size")
    # inner cap: Tutte map of the cap triangulation into the endosteal ring
    cap_v = np.unique(cap)
    interior = cap_v[~np.isin(cap_v, ring)]
    from scipy.sparse.linalg import spsolve

    Ac = _neighbours(cap, nv)
    disp = np.zeros((nv, 3))
    disp[ring] = inner[ring] - V[ring]
    if len(interior):
        L = Ac[interior][:, interior]
        dg = np.asarray(Ac[interior].sum(axis=1)).ravel()
        from scipy.sparse import diags

        K = diags(dg) - L
        rhs = Ac[interior][:, ring] @ disp[ring]
        sol = np.column_stack([spsolve(K.tocsc(), rhs[:, k]) for k in range(2)])
        disp[interior, :2] = sol
    cap_pts = V + disp
    # vertex numbering: 0..nv-1 periosteal (outer), nv..2nv-1 endosteal (inner and the
    # mapped cap interior)
    allv = np.vstack([V, inner])
    allv[nv + interior] = cap_pts[interior]
    endo = lat + nv
    marrow = cap + nv  # every cap vertex is a ring or an interior vertex
    nz = np.cross(allv[marrow][:, 1] - allv[marrow][:, 0], allv[marrow][:, 2] - allv[marrow][:, 0])[:, 2]
    if np.any(nz >= 0):
        raise MeshError("anatomical femur: the marrow cap folds over (endosteal ring not star-shaped)")
    # strip: directed ring edges of the cap (a -> b), quads (a, b, b', a')
    e = np.concatenate([cap[:, [0, 1]], cap[:, [1, 2]], cap[:, [2, 0]]])
    both = np.isin(e, ring).all(axis=1)
    eb = e[both]
    keys = {tuple(x) for x in eb.tolist()}
    bnd = np.array([x for x in eb.tolist() if (x[1], x[0]) not in keys])
    strip = np.vstack([
        np.column_stack([bnd[:, 0], bnd[:, 1], bnd[:, 1] + nv]),
        np.column_stack([bnd[:, 0], bnd[:, 1] + nv, bnd[:, 0] + nv]),
    ])  # fmt: skip
    return {"vertices": allv, "periosteal": lat, "endosteal": endo, "distal_cortex": strip,
            "distal_marrow": marrow, "thickness": t, "n_outer": nv}


def _compact(L: dict) -> dict:
    """Drop unused vertices (the periosteal cap interior) and renumber the face arrays."""
    keys = ("periosteal", "endosteal", "distal_cortex", "distal_marrow")
    used = np.unique(np.concatenate([L[k].ravel() for k in keys]))
    remap = np.full(len(L["vertices"]), -1, dtype=np.int64)
    remap[used] = np.arange(len(used))
    out = dict(L)
    out["vertices"] = L["vertices"][used]
    for k in keys:
        out[k] = remap[L[k]]
    return out


def mesh_volume(model, L: dict, ref: dict) -> dict:
    """Fill the layered surfaces with tetrahedra in the gmsh ``model`` (current session;
    the caller sets the element size, ``Mesh.MeshSizeMax``), add the physical groups;
    returns mesh statistics."""
    L = _compact(L)
    X = L["vertices"]
    peri = L["periosteal"]
    kind = regions.classify_outer_facets(X[peri], ref)
    if np.any(kind == 12):
        raise MeshError("anatomical femur: periosteal facets lie in the cut plane")
    names = {0: None, 11: "head_load", 13: "trochanter", 14: "head_surface", 16: "abductor"}
    nodes_outer = np.unique(np.concatenate([peri.ravel(), L["distal_cortex"].ravel()]))
    nodes_inner = np.setdiff1d(np.arange(len(X)), nodes_outer)
    surf_of = {}
    first = None
    for val, name in names.items():
        tri = peri[kind == val]
        if len(tri) == 0:
            if name:
                raise MeshError(f"anatomical femur: facet region '{name}' came out empty")
            continue
        ent = model.addDiscreteEntity(2)
        if first is None:
            first = ent
            model.mesh.addNodes(2, ent, nodes_outer + 1, X[nodes_outer].ravel())
        model.mesh.addElementsByType(ent, 2, [], (tri + 1).ravel())
        surf_of.setdefault(name or "periosteal", []).append(ent)
    endo = model.addDiscreteEntity(2)
    model.mesh.addNodes(2, endo, nodes_inner + 1, X[nodes_inner].ravel())
    model.mesh.addElementsByType(endo, 2, [], (L["endosteal"] + 1).ravel())
    d_c = model.addDiscreteEntity(2)
    model.mesh.addElementsByType(d_c, 2, [], (L["distal_cortex"] + 1).ravel())
    d_m = model.addDiscreteEntity(2)
    model.mesh.addElementsByType(d_m, 2, [], (L["distal_marrow"] + 1).ravel())
    outer_loop = [e for v in surf_of.values() for e in v] + [d_c, endo]
    l_c = model.geo.addSurfaceLoop(outer_loop)
    l_t = model.geo.addSurfaceLoop([endo, d_m])
    v_c = model.geo.addVolume([l_c])  # periosteal + distal strip + endosteal: one closed shell
    v_t = model.geo.addVolume([l_t])
    model.geo.synchronize()
    model.addPhysicalGroup(3, [v_c], CELL_IDS["cortical"], name="cortical")
    model.addPhysicalGroup(3, [v_t], CELL_IDS["trabecular"], name="trabecular")
    for name in ("head_load", "trochanter", "head_surface", "abductor"):
        model.addPhysicalGroup(2, surf_of[name], FACET_IDS[name], name=name)
    model.addPhysicalGroup(2, [d_c, d_m], FACET_IDS["distal"], name="distal")
    model.addPhysicalGroup(2, [endo], FACET_IDS["endocortical"], name="endocortical")
    n_surface_nodes = len(X)
    model.mesh.generate(3)
    tags, _, _ = model.mesh.getNodes()
    stats = {"surface_nodes": int(n_surface_nodes), "nodes": int(len(tags))}
    for name, v in (("cortical", v_c), ("trabecular", v_t)):
        et, el, _ = model.mesh.getElements(3, v)
        stats[f"{name}_tets"] = int(sum(len(e) for e in el))
    if stats["cortical_tets"] == 0 or stats["trabecular_tets"] == 0:
        raise MeshError("anatomical femur: gmsh produced no tetrahedra (surface loop not closed?)")
    return stats


def check_reference(ref: dict) -> None:
    """Sanity checks of the reference (raises MeshError with the failing quantity)."""
    if not 0 < ref["lt_bottom_z_mm"] < ref["lt_tip"][2] < ref["neck_base"][2]:
        raise MeshError("anatomical femur: lesser trochanter not between the cut and the neck base")
    if not ref["s_junction_mm"] < ref["neck_roi_s_mm"][1] < ref["s_neck_base_mm"] + 5.0:
        raise MeshError("anatomical femur: the neck ROI reaches beyond the neck base")


__all__ = ["read_surface", "build_reference", "cut_proximal", "remesh", "layers", "mesh_volume",
           "check_reference", "CELL_IDS", "FACET_IDS"]
