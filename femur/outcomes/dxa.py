"""DXA-equivalent areal BMD and T-scores of a finite-element bone.

One cohesive thing (hence over 450 lines): the exact ray projection and the ROIs defined on
it share the pixel lattice, the frames and the MPI reductions.

This is *not* a DXA scanner: it is a documented projection of the FE model's mineral, and
its numbers are reported as "DXA-equivalent" (clinical-targets.md, T-score reference).

Projection
----------
Mineral density is ash density, rho_ash = 0.6 * rho_app (Schileo 2008; biomechanics.md 1.1).
The bone is projected along the antero-posterior direction (femur: ``landmarks["anterior"]``;
vertebra: ``landmarks["anterior"]`` if present, else +y) onto a plane pixel lattice (default
0.5 mm pixels). At the **centre of every pixel** the ray integral of the ash density,

    aBMD_pixel = sum over tetrahedra T of rho_ash(T) * |ray ∩ T|   (g/cm3 * cm = g/cm2),

is computed *exactly* for the piecewise-constant density: each ray is clipped against every
tetrahedron whose projected bounding box contains the pixel centre, through the tet's
barycentric coordinates (hexahedral voxels are split into six tetrahedra first). A pixel is
"covered" when the ray meets any bone (chord > 0); loading layers, PMMA and other non-bone
compartments are ignored. For a region of interest (ROI, a set of pixels)

    BMC  = sum_{pixels in ROI} aBMD_pixel * pixel_area         (g)
    area = (number of covered pixels in ROI) * pixel_area      (cm2)
    aBMD = BMC / area                                           (g/cm2)

i.e. midpoint quadrature of the mineral in the prism over the ROI. For a uniform slab it
is exact (aBMD = rho_ash * thickness); in general the only error is the pixel
discretisation of the silhouette (O(pixel) at the outline). Only owned cells contribute on
each rank and the image is summed over ranks (MPI_SUM), so results agree across partitions
to round-off. The lattice is anchored to landmarks, not to the partition.

The ray geometry does not depend on the density: :func:`project` stores it as a sparse
operator (pixels x local cells, entries the chords in cm), and an image of any density field
is one sparse product and one MPI_SUM. :func:`prepare` and :func:`prepare_all` keep their
projections with the bone (``Bone.cached``; shared by its copies, e.g. the T-score
targeting and every run of the same patient's bone), so a bone is projected once.

ROIs
----
* ``"femoral_neck"`` -- DXA-style neck box: in the projected frame with the neck axis
  (``landmarks["neck_axis"]``) as abscissa, the width of the neck (the run of covered
  pixels across the axis) is measured for every row between the head (one head radius from
  ``head_center``) and the projected shaft axis; the box of ``neck_box_mm`` (10 mm along the
  neck axis; ASSUMPTION, DXA boxes are ~10-15 mm) is centred on the narrowest rows (moved laterally if
  it would reach the head) and holds, row by row, the covered run crossing the neck axis (so
  no trochanter or shaft bone inside the box is counted).
* ``"total_hip"`` -- all covered pixels lateral to the head-side edge of the neck box (head
  excluded) and above a line perpendicular to the shaft axis 10 mm below the lowest point
  of the lesser trochanter ROI (ASSUMPTION: DXA-like distal boundary).
* ``"spine"`` -- the AP projection of the vertebra inside the projected extent of its body
  (compartments not named "posterior*"); for the parametric vertebra that is all of it.
* ``"whole"`` -- every covered pixel (any bone, e.g. test blocks).

Posterior elements (spine): a PA spine scan projects the posterior elements onto the
vertebral body; they hold about half of the L3 BMC (51.4 +/- 4.2 %, women 52.8 +/- 3.9 %;
Lee et al., J Bone Miner Res 2009;24:1398, QCT-DXA in 294 females and 280 males aged
6-25 y). The parametric vertebral body (``bone.parameters["model"] == "Vertebra"``) has no
posterior elements, so its "spine" BMC is divided by (1 - :data:`POSTERIOR_BMC_FRACTION`)
(area unchanged: the arch projects inside the body's outline). ASSUMPTION: the young
women's fraction is used at every age and T-score, and the allowance follows the body's
mineral (its % changes equal the body's). Other bones (CT vertebrae, test blocks) are
measured as projected.

T-scores: ``femur.outcomes.references`` (young-adult means and SDs); volumetric BMD:
``femur.outcomes.vbmd``.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

import numpy as np
import scipy.sparse

from femur.core.mpi import MPI
import dolfinx  # noqa: E402

from femur.core import units  # noqa: E402
from femur.core.errors import DensityError, InputError  # noqa: E402
from femur.geometry.compartments import owned_bone_cells  # noqa: E402
from femur.outcomes.references import t_score  # noqa: E402

#: Default DXA pixel size (mm).
DEFAULT_PIXEL_MM = 0.5
#: Width of the femoral-neck box along the neck axis (mm). ASSUMPTION: DXA neck boxes are
#: ~10-15 mm wide; 10 mm keeps the box inside the short neck of the parametric femur (between
#: the head and the trochanteric flare) and matches its FE "neck" ROI width.
NECK_BOX_MM = 10.0
#: Distance of the total-hip distal boundary below the lesser trochanter (mm). ASSUMPTION.
TOTAL_HIP_BELOW_LESSER_TROCHANTER_MM = 10.0
# generic sub-pixel offset of the lattice centres (fraction of a pixel) so that pixel centres
# never fall exactly on the faces of structured meshes (a ray inside a shared face would be
# counted twice).
_EPS = (1.37e-6, 2.91e-6)


SITES = ("femoral_neck", "total_hip", "spine", "whole")

#: Share of the PA spine BMC in the posterior elements, women (Lee et al., JBMR 2009;24:1398:
#: 52.8 +/- 3.9 % of L3 BMC); used for the parametric vertebral body only (module docstring).
POSTERIOR_BMC_FRACTION = 0.528


def _posterior_allowance(bone) -> float:
    """Fraction of the spine BMC to add for missing posterior elements (0: none)."""
    model = (bone.parameters or {}).get("model")
    has_posterior = any(str(k).lower().startswith("posterior") for k in (bone.cell_ids or {}))
    return POSTERIOR_BMC_FRACTION if model == "Vertebra" and not has_posterior else 0.0


# ------------------------------------------------------------------------------ geometry
def _unit(v, what: str) -> np.ndarray:
    v = np.asarray(v, dtype=float).ravel()
    n = np.linalg.norm(v)
    if v.shape != (3,) or not np.isfinite(n) or n == 0:
        raise InputError(f"landmark {what} must be a non-zero 3-vector, got {v}")
    return v / n


def _landmark(bone, key: str) -> np.ndarray:
    if key not in bone.landmarks:
        raise InputError(
            f"bone '{bone.name}' has no landmark '{key}' needed for the DXA projection; it has "
            f"{sorted(bone.landmarks)}"
        )
    return np.asarray(bone.landmarks[key], dtype=float).ravel()


_HEX_TETS = np.array([[0, 1, 3, 7], [0, 1, 5, 7], [0, 2, 3, 7], [0, 2, 6, 7], [0, 4, 5, 7],
                      [0, 4, 6, 7]])  # Kuhn split of a lexicographic (DOLFINx) hexahedron


def _cell_tets(bone, cells: np.ndarray):
    """Tetrahedra (k, 4, 3) covering ``cells`` and the local cell index of each tet."""
    mesh = bone.mesh
    x = mesh.geometry.x
    dm = mesh.geometry.dofmaps[0]
    ct = mesh.topology.cell_type
    if ct == dolfinx.mesh.CellType.tetrahedron:
        verts = x[dm[cells][:, :4]]
        return verts, cells
    if ct == dolfinx.mesh.CellType.hexahedron:
        nodes = dm[cells][:, :8]
        verts = x[nodes[:, _HEX_TETS]].reshape(-1, 4, 3)
        return verts, np.repeat(cells, 6)
    raise InputError(f"DXA projection supports tetrahedral and hexahedral meshes, not {ct.name}")


@dataclass
class Frame:
    """Projection frame: rays along ``direction``; pixel centres origin + a*e1 + b*e2 (mm)."""

    origin: np.ndarray
    direction: np.ndarray
    e1: np.ndarray
    e2: np.ndarray

    @classmethod
    def from_axes(cls, origin, direction, e1_hint):
        d = _unit(direction, "projection direction")
        e1 = np.asarray(e1_hint, dtype=float) - np.dot(e1_hint, d) * d
        n1 = np.linalg.norm(e1)
        if n1 < 1e-8:
            raise InputError("projection frame: the in-plane axis is parallel to the projection direction")
        e1 = e1 / n1
        e2 = np.cross(d, e1)
        return cls(np.asarray(origin, dtype=float).ravel(), d, e1, e2)

    def to_plane(self, pts: np.ndarray) -> np.ndarray:
        """(n, 3) points (mm) -> (n, 2) plane coordinates (a, b) in mm."""
        q = np.asarray(pts, dtype=float) - self.origin
        return np.stack([q @ self.e1, q @ self.e2], axis=-1)


@dataclass
class Projection:
    """Density-independent part of a projection: per (pixel, tet) chord lengths."""

    frame: Frame
    pixel_mm: float
    i0: int
    j0: int
    shape: tuple[int, int]
    pix: np.ndarray        # flat pixel index of each (pixel, tet) pair
    cell: np.ndarray       # local cell index of each pair
    chord_mm: np.ndarray   # chord length of the ray in the tet (mm)
    covered: np.ndarray    # (ni, nj) bool, any bone along the ray (global)
    roi: np.ndarray | None = None   # (ni, nj) bool ROI mask
    info: dict = field(default_factory=dict)
    #: the projection operator: (pixels, local cells) sparse matrix of chords (cm), so that
    #: the local part of the image is ``operator @ rho_ash`` (g/cm2); built from pix, cell
    #: and chord_mm when not given
    operator: object = field(default=None, repr=False)

    def __post_init__(self):
        if self.operator is None:
            n_cells = int(self.cell.max()) + 1 if self.cell.size else 0
            self.operator = scipy.sparse.csr_matrix(
                (self.chord_mm * 0.1, (self.pix, self.cell)),
                shape=(self.shape[0] * self.shape[1], n_cells))

    def centers(self):
        """Plane coordinates (a, b) (mm) of the pixel centres, each (ni, nj)."""
        h = self.pixel_mm
        a = (np.arange(self.shape[0]) + self.i0 + 0.5 + _EPS[0]) * h
        b = (np.arange(self.shape[1]) + self.j0 + 0.5 + _EPS[1]) * h
        return np.meshgrid(a, b, indexing="ij")

    def points(self):
        """3D coordinates (mm) of the pixel centres on the projection plane, (ni, nj, 3)."""
        A, B = self.centers()
        f = self.frame
        return f.origin + A[..., None] * f.e1 + B[..., None] * f.e2

    def image(self, bone, density_g_cm3=None) -> np.ndarray:
        """Projected ash-density image aBMD_pixel (g/cm2), (ni, nj), identical on all ranks.

        ``density_g_cm3``: per-cell apparent densities to project instead of ``bone.density``
        (e.g. a remodeling run's mineral-proportional field), same length and cell order."""
        if density_g_cm3 is None:
            if bone.density is None:
                raise DensityError(
                    f"bone '{bone.name}' has no density field: assign one with "
                    "femur.geometry.density.assign_density before measuring BMD"
                )
            density_g_cm3 = bone.density.x.array
        rho_ash = np.asarray(units.apparent_to_ash_g_cm3(density_g_cm3), dtype=np.float64)
        # g/cm3 * cm -> g/cm2, summed over the (pixel, tet) pairs of this rank's cells
        img = np.ascontiguousarray(self.operator @ rho_ash[: self.operator.shape[1]], dtype=np.float64)
        bone.comm.Allreduce(MPI.IN_PLACE, img, op=MPI.SUM)
        return img.reshape(self.shape)


def _chords(k: np.ndarray, a: np.ndarray, b: np.ndarray, cols) -> np.ndarray:
    """Chord (mm) of the ray through plane point (a, b) in tet ``k``, for each candidate
    pair: the ray x(t) = origin + a e1 + b e2 + t d is inside the tet while every
    barycentric coordinate lambda_m = alpha_m + t beta_m >= 0, i.e. for t between the
    largest entry time (beta_m > 0) and the smallest exit time (beta_m < 0); a ray parallel
    to a face (beta_m = 0) outside it (alpha_m < 0) misses the tet.

    ``cols[m]`` = (c0, c1, c2, beta) of coordinate m per tet, alpha_m = c0 + a c1 + b c2.
    Evaluated one coordinate at a time on flat arrays (a (pairs, 4) array reduced along its
    short axis cost about 3x as much; issue 13): the same floating-point operations as the
    row-wise form, so the same chords bit for bit."""
    tmin = np.full(k.size, -np.inf)
    tmax = np.full(k.size, np.inf)
    miss = np.zeros(k.size, dtype=bool)
    for c0, c1, c2, beta in cols:
        bet = beta[k]
        alpha = c0[k] + a * c1[k] + b * c2[k]
        with np.errstate(divide="ignore", invalid="ignore"):
            tb = -alpha / bet
        np.maximum(tmin, tb, out=tmin, where=bet > 0)
        np.minimum(tmax, tb, out=tmax, where=bet < 0)
        miss |= (bet == 0) & (alpha < 0)
    return np.where(miss, 0.0, tmax - tmin)


def project(bone, frame: Frame, pixel_mm: float = DEFAULT_PIXEL_MM, cells=None,
            chunk_pairs: int = 1_000_000) -> Projection:
    """Clip the rays through all pixel centres against the bone's tetrahedra (collective)."""
    if not (np.isfinite(pixel_mm) and pixel_mm > 0):
        raise InputError(f"pixel_mm must be > 0, got {pixel_mm}")
    comm = bone.comm
    h = float(pixel_mm)
    if cells is None:
        cells = owned_bone_cells(bone)
    verts, tet_cell = _cell_tets(bone, cells)
    ab = frame.to_plane(verts.reshape(-1, 3)).reshape(-1, 4, 2) if verts.size else np.zeros((0, 4, 2))
    lo = ab.min(axis=1) if ab.size else np.zeros((0, 2))
    hi = ab.max(axis=1) if ab.size else np.zeros((0, 2))
    gmin = np.array([comm.allreduce(float(lo[:, k].min()) if lo.size else np.inf, op=MPI.MIN)
                     for k in range(2)])
    gmax = np.array([comm.allreduce(float(hi[:, k].max()) if hi.size else -np.inf, op=MPI.MAX)
                     for k in range(2)])
    if not np.all(np.isfinite(gmin)):
        raise InputError(f"bone '{bone.name}' has no bone cells to project")
    eps = np.array(_EPS)
    I0 = np.ceil((gmin / h - 0.5 - eps)).astype(int)
    I1 = np.floor((gmax / h - 0.5 - eps)).astype(int)
    shape = (int(max(I1[0] - I0[0] + 1, 0)), int(max(I1[1] - I0[1] + 1, 0)))

    # per-tet barycentric maps: lambda_{1..3}(x) = Minv (x - X0)
    X0 = verts[:, 0, :]
    M = np.stack([verts[:, 1] - X0, verts[:, 2] - X0, verts[:, 3] - X0], axis=2)
    det = np.linalg.det(M) if len(M) else np.zeros(0)
    scale = np.abs(M).max(axis=(1, 2)) ** 3 if len(M) else np.zeros(0)
    good = np.abs(det) > 1e-12 * scale
    verts, tet_cell, M, X0, lo, hi = verts[good], tet_cell[good], M[good], X0[good], lo[good], hi[good]
    Minv = np.linalg.inv(M) if len(M) else np.zeros((0, 3, 3))
    c0 = -np.einsum("kij,kj->ki", Minv, X0 - frame.origin)
    c1 = Minv @ frame.e1
    c2 = Minv @ frame.e2
    beta = Minv @ frame.direction
    # append lambda_0 = 1 - sum
    c0 = np.concatenate([c0, 1.0 - c0.sum(axis=1, keepdims=True)], axis=1)
    c1 = np.concatenate([c1, -c1.sum(axis=1, keepdims=True)], axis=1)
    c2 = np.concatenate([c2, -c2.sum(axis=1, keepdims=True)], axis=1)
    beta = np.concatenate([beta, -beta.sum(axis=1, keepdims=True)], axis=1)

    # one contiguous array per barycentric coordinate (_chords gathers them column-wise)
    cols = [tuple(np.ascontiguousarray(c[:, m]) for c in (c0, c1, c2, beta)) for m in range(4)]
    ia0 = np.ceil(lo[:, 0] / h - 0.5 - eps[0]).astype(np.int64)
    ia1 = np.floor(hi[:, 0] / h - 0.5 - eps[0]).astype(np.int64)
    jb0 = np.ceil(lo[:, 1] / h - 0.5 - eps[1]).astype(np.int64)
    jb1 = np.floor(hi[:, 1] / h - 0.5 - eps[1]).astype(np.int64)
    na = np.maximum(ia1 - ia0 + 1, 0)
    nb = np.maximum(jb1 - jb0 + 1, 0)
    counts = na * nb
    pix_l, cell_l, chord_l = [], [], []
    start = 0
    ntet = len(counts)
    csum = np.cumsum(counts)
    while start < ntet:
        base = csum[start - 1] if start > 0 else 0
        stop = int(np.searchsorted(csum, base + chunk_pairs, side="right"))
        stop = max(stop, start + 1)
        sl = slice(start, stop)
        cnt = counts[sl]
        tot = int(cnt.sum())
        if tot:
            k = np.repeat(np.arange(start, stop), cnt)
            offs = np.repeat(np.cumsum(cnt) - cnt, cnt)
            loc = np.arange(tot) - offs
            i = ia0[k] + loc // nb[k]
            j = jb0[k] + loc % nb[k]
            a = (i + 0.5 + eps[0]) * h
            b = (j + 0.5 + eps[1]) * h
            chord = _chords(k, a, b, cols)
            keep = chord > 0
            flat = (i[keep] - I0[0]) * shape[1] + (j[keep] - I0[1])
            pix_l.append(flat.astype(np.int64))
            cell_l.append(tet_cell[k[keep]])
            chord_l.append(chord[keep])
        start = stop
    pix = np.concatenate(pix_l) if pix_l else np.zeros(0, dtype=np.int64)
    cell = np.concatenate(cell_l) if cell_l else np.zeros(0, dtype=np.int32)
    chord = np.concatenate(chord_l) if chord_l else np.zeros(0)
    thick = np.bincount(pix, weights=chord, minlength=shape[0] * shape[1]).astype(np.float64)
    comm.Allreduce(MPI.IN_PLACE, thick, op=MPI.SUM)
    covered = (thick > 1e-9 * h).reshape(shape)
    return Projection(frame, h, int(I0[0]), int(I0[1]), shape, pix, cell, chord, covered)


# ------------------------------------------------------------------------------ ROIs
def _ap_direction(bone) -> np.ndarray:
    if "anterior" in bone.landmarks:
        return _unit(bone.landmarks["anterior"], "'anterior'")
    if bone.kind == "femur":
        raise InputError(f"femur '{bone.name}' needs landmark 'anterior' for the DXA projection")
    return np.array([0.0, 1.0, 0.0])


def _runs_through(covered: np.ndarray, j0: int) -> tuple[np.ndarray, np.ndarray]:
    """Per row, [left, right] (inclusive) of the covered run containing column j0 (-1 if none)."""
    ni, nj = covered.shape
    left = np.full(ni, -1)
    right = np.full(ni, -1)
    if not (0 <= j0 < nj):
        return left, right
    on = covered[:, j0]
    r = covered[:, j0:]
    first_gap_r = np.where((~r).any(axis=1), (~r).argmax(axis=1), r.shape[1])
    lpart = covered[:, : j0 + 1][:, ::-1]
    first_gap_l = np.where((~lpart).any(axis=1), (~lpart).argmax(axis=1), lpart.shape[1])
    right[on] = (j0 + first_gap_r - 1)[on]
    left[on] = (j0 - first_gap_l + 1)[on]
    return left, right


def _prepare_hip(bone, pixel_mm, neck_box_mm, below_lt_mm):
    head = _landmark(bone, "head_center")
    radius = float(np.ravel(_landmark(bone, "head_radius"))[0])
    d = _ap_direction(bone)
    neck_axis = _unit(_landmark(bone, "neck_axis"), "'neck_axis'")
    shaft = _unit(_landmark(bone, "shaft_axis"), "'shaft_axis'")
    frame = Frame.from_axes(head, d, neck_axis)  # e1 = projected neck axis, toward the head
    proj = project(bone, frame, pixel_mm)
    h = proj.pixel_mm
    A, B = proj.centers()
    a_rows = A[:, 0]
    # neck axis line in the plane: through the projected neck centre (or the head centre)
    nc = bone.landmarks.get("neck_center", head)
    b_axis = float(frame.to_plane(np.asarray(nc, dtype=float)[None, :])[0, 1])
    j_axis = int(np.argmin(np.abs(B[0] - b_axis)))
    left, right = _runs_through(proj.covered, j_axis)
    width = np.where(left >= 0, (right - left + 1) * h, np.inf)
    # projected shaft axis in the plane; where the neck axis line meets it
    sh2 = np.array([shaft @ frame.e1, shaft @ frame.e2])
    sh2 /= np.linalg.norm(sh2)
    dist2 = frame.to_plane(_landmark(bone, "distal_center")[None, :])[0]
    # solve (s, b_axis) = dist2 + t * sh2 for the neck-axis abscissa a
    if abs(sh2[1]) < 1e-8:
        raise InputError(f"femur '{bone.name}': projected shaft axis is parallel to the neck axis")
    t = (b_axis - dist2[1]) / sh2[1]
    a_shaft = dist2[0] + t * sh2[0]  # negative: the shaft lies distal-lateral of the head
    s_rows = -a_rows  # distance from the head centre toward the neck base (mm)
    s_lo, s_hi = radius, -a_shaft
    window = (s_rows >= s_lo) & (s_rows <= s_hi) & np.isfinite(width)
    if not window.any():
        raise InputError(
            f"femur '{bone.name}': no neck found between the head (s = {s_lo:.1f} mm) and the "
            f"shaft axis (s = {s_hi:.1f} mm) in the DXA projection"
        )
    wmin = width[window].min()
    cand = np.flatnonzero(window & (width <= wmin + h * (1 + 1e-9)))
    s_narrow = float(np.median(s_rows[cand]))
    s_start = max(s_narrow - 0.5 * neck_box_mm, s_lo)
    s_end = s_start + neck_box_mm
    rows = (s_rows >= s_start) & (s_rows < s_end)
    J = np.arange(proj.shape[1])[None, :]
    neck_roi = rows[:, None] & (J >= left[:, None]) & (J <= right[:, None]) & proj.covered
    # total hip: head side of the neck box excluded; distal cut below the lesser trochanter
    pts = proj.points()
    z_rel = (pts - head) @ shaft  # height along the shaft axis relative to the head centre
    z_cut = None
    if "lesser_trochanter" in bone.rois:
        cells = owned_bone_cells(bone)
        mask = bone.roi_mask("lesser_trochanter")[cells]
        sel = cells[mask]
        x = bone.mesh.geometry.x
        dm = bone.mesh.geometry.dofmaps[0]
        zl = ((x[dm[sel]].reshape(-1, 3) - head) @ shaft).min() if sel.size else np.inf
        zl = bone.comm.allreduce(float(zl), op=MPI.MIN)
        if np.isfinite(zl):
            z_cut = zl - below_lt_mm
    if z_cut is None:  # ASSUMPTION fallback: four head radii below the head centre
        z_cut = -4.0 * radius
    th_roi = proj.covered & (-A >= s_start) & (z_rel >= z_cut)
    info = {
        "neck_width_mm": float(wmin),
        "neck_box_s_mm": (float(s_start), float(s_end)),
        "s_narrowest_mm": s_narrow,
        "total_hip_cut_mm_below_head_center": float(-z_cut),
        "pixel_mm": h,
    }
    return proj, neck_roi, th_roi, info


def prepare(bone, site: str, pixel_mm: float | None = None, neck_box_mm: float = NECK_BOX_MM,
            below_lesser_trochanter_mm: float = TOTAL_HIP_BELOW_LESSER_TROCHANTER_MM) -> Projection:
    """Geometry of the DXA measurement at ``site`` (collective); reuse it while density changes."""
    if site not in SITES:
        raise InputError(f"unknown DXA site {site!r}; expected one of {SITES}")
    h = DEFAULT_PIXEL_MM if pixel_mm is None else float(pixel_mm)
    if site in ("femoral_neck", "total_hip"):
        if bone.kind != "femur":
            raise InputError(f"DXA site {site!r} needs a femur; bone '{bone.name}' is a {bone.kind}")
        proj, neck_roi, th_roi, info = _hip_cached(bone, h, neck_box_mm, below_lesser_trochanter_mm)
        return dataclasses.replace(proj, roi=neck_roi if site == "femoral_neck" else th_roi,
                                   info=dict(info, site=site))
    key = ("dxa", site, h, tuple(sorted(bone.cell_ids.items())))
    proj = bone.cached(key, lambda: _prepare_other(bone, site, h), _landmark_deps(bone))
    info = dict(proj.info)
    if site == "spine":  # depends on the bone's description, not on its geometry
        info["posterior_bmc_fraction"] = _posterior_allowance(bone)
    return dataclasses.replace(proj, info=info)


def _landmark_deps(bone) -> tuple:
    """The objects a cached projection depends on besides the mesh: the landmark arrays
    (compared by identity; a bone given new landmarks is projected again)."""
    return tuple(bone.landmarks.get(k) for k in sorted(bone.landmarks))


def _hip_cached(bone, h, neck_box_mm, below_lt_mm):
    """:func:`_prepare_hip`, once per bone geometry and settings (``Bone.cached``)."""
    deps = (*_landmark_deps(bone), bone.rois.get("lesser_trochanter"))
    return bone.cached(("dxa_hip", float(h), float(neck_box_mm), float(below_lt_mm)),
                       lambda: _prepare_hip(bone, h, neck_box_mm, below_lt_mm), deps)


def _prepare_other(bone, site: str, h: float) -> Projection:
    """The projection of the spine or the whole bone (prepare)."""
    d = _ap_direction(bone)
    axis = bone.landmarks.get("axis", bone.landmarks.get("shaft_axis", np.array([0.0, 0.0, 1.0])))
    axis = _unit(axis, "'axis'")
    origin = bone.landmarks.get("superior_center", np.zeros(3))
    # e1 lateral-ish (perpendicular to the axis in the plane), e2 = cranio-caudal
    e1_hint = np.cross(axis, d)
    frame = Frame.from_axes(origin, d, e1_hint)
    proj = project(bone, frame, h)
    roi = proj.covered.copy()
    if site == "spine":
        body = owned_bone_cells(bone, exclude_prefix="posterior")
        verts, _ = _cell_tets(bone, body)
        ab = frame.to_plane(verts.reshape(-1, 3)) if verts.size else np.zeros((0, 2))
        comm = bone.comm
        lo = [comm.allreduce(float(ab[:, k].min()) if ab.size else np.inf, op=MPI.MIN) for k in range(2)]
        hi = [comm.allreduce(float(ab[:, k].max()) if ab.size else -np.inf, op=MPI.MAX) for k in range(2)]
        A, B = proj.centers()
        roi &= (A >= lo[0]) & (A <= hi[0]) & (B >= lo[1]) & (B <= hi[1])
    proj.roi = roi
    proj.info = {"site": site, "pixel_mm": h}
    return proj


def measure(bone, site: str, prepared: Projection | None = None, density_g_cm3=None,
            **kwargs) -> dict:
    """aBMD (g/cm2), BMC (g), projected area (cm2) and DXA-equivalent T-score at ``site``
    (of ``bone.density``, or of the per-cell ``density_g_cm3`` given)."""
    proj = prepared if prepared is not None else prepare(bone, site, **kwargs)
    img = proj.image(bone, density_g_cm3)
    roi = proj.roi & proj.covered
    pa_cm2 = (proj.pixel_mm * 0.1) ** 2
    area = float(np.count_nonzero(roi)) * pa_cm2
    if area == 0:
        raise InputError(f"DXA region {site!r} of bone '{bone.name}' is empty")
    bmc = float(img[roi].sum()) * pa_cm2
    # parametric vertebral body: add the posterior elements' share (module docstring)
    bmc /= 1.0 - float(proj.info.get("posterior_bmc_fraction", 0.0))
    out = {"site": site, "areal_bmd_g_cm2": bmc / area, "bmc_g": bmc, "area_cm2": area}
    if site != "whole":
        out["t_score"] = t_score(out["areal_bmd_g_cm2"], site)
    out.update({k: v for k, v in proj.info.items() if k != "site"})
    return out


def prepare_all(bone, pixel_mm: float | None = None, neck_box_mm: float = NECK_BOX_MM,
                below_lesser_trochanter_mm: float = TOTAL_HIP_BELOW_LESSER_TROCHANTER_MM
                ) -> dict[str, Projection]:
    """Prepared projections of every DXA site of the bone (femur: "femoral_neck" and
    "total_hip" from one projection; vertebra: "spine"). Reuse them while density changes."""
    if bone.kind == "femur":
        h = DEFAULT_PIXEL_MM if pixel_mm is None else float(pixel_mm)
        proj, neck_roi, th_roi, info = _hip_cached(bone, h, neck_box_mm, below_lesser_trochanter_mm)
        fn = dataclasses.replace(proj, roi=neck_roi, info=dict(info, site="femoral_neck"))
        th = dataclasses.replace(proj, roi=th_roi, info=dict(info, site="total_hip"))
        return {"femoral_neck": fn, "total_hip": th}
    if bone.kind == "vertebra":
        return {"spine": prepare(bone, "spine", pixel_mm=pixel_mm)}
    return {"whole": prepare(bone, "whole", pixel_mm=pixel_mm)}


def report(bone, sex: str = "female", prepared: dict | None = None, **kwargs) -> dict:
    """DXA-equivalent aBMD (g/cm2), BMC, area and T-score at every site of the bone."""
    preps = prepared if prepared is not None else prepare_all(bone, **kwargs)
    out = {}
    for site, proj in preps.items():
        m = measure(bone, site, prepared=proj)
        if site != "whole":
            m["t_score"] = t_score(m["areal_bmd_g_cm2"], site, sex)
        out[site] = m
    return out


def areal_bmd(bone, region: str = "femoral_neck", prepared: Projection | None = None,
              density_g_cm3=None, **kwargs) -> float:
    """DXA-equivalent areal BMD (g/cm2) of ``region`` ("femoral_neck", "total_hip", "spine",
    "whole"); see the module docstring for the projection and the ROI definitions.
    ``density_g_cm3``: project these per-cell apparent densities instead of ``bone.density``."""
    return measure(bone, region, prepared=prepared, density_g_cm3=density_g_cm3,
                   **kwargs)["areal_bmd_g_cm2"]


def dxa_image(bone, pixel_mm: float = DEFAULT_PIXEL_MM):
    """DXA-equivalent AP image of the bone: (image g/cm2 (ni, nj), extent (a0, a1, b0, b1) mm, Frame).

    Rows follow the in-plane axis perpendicular to the long axis (femur: shaft axis;
    vertebra: cranio-caudal axis), columns follow the long axis.
    """
    d = _ap_direction(bone)
    axis = bone.landmarks.get("shaft_axis", bone.landmarks.get("axis", np.array([0.0, 0.0, 1.0])))
    axis = _unit(axis, "long axis")
    frame = Frame.from_axes(np.zeros(3), d, np.cross(axis, d))
    proj = project(bone, frame, pixel_mm)
    img = proj.image(bone)
    A, B = proj.centers()
    h = proj.pixel_mm
    extent = (float(A.min() - h / 2), float(A.max() + h / 2), float(B.min() - h / 2),
              float(B.max() + h / 2)) if img.size else (0.0, 0.0, 0.0, 0.0)
    return img, extent, frame


__all__ = ["areal_bmd", "report", "prepare_all", "measure", "prepare", "project", "Frame", "Projection",
           "dxa_image", "SITES", "POSTERIOR_BMC_FRACTION"]

