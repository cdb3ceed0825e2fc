"""The anatomical proximal femur: a real adult female femur, meshed, tagged, morphable.

Built from the shipped reference meshes in ``meshes/`` (fast; no gmsh at run time):

====================================  =============  ====================================
file                                  mesh_size_mm   use
====================================  =============  ====================================
``anatomical_femur_default.msh``      3.0            default FE size (about 38k P1 DOF)
``anatomical_femur_trial.msh``        4.0            cohort/trial size
====================================  =============  ====================================

Each ``.msh`` has a ``.json`` of the same stem with its reference landmarks, region
parameters, cortical thicknesses and provenance (written by
``meshes/make_anatomical_femur.py``, which regenerates both from the Visible Human female
right femur surface, ``shared/data/visible-human-femur/FemurR.obj``, zlib licence).  The
meshes are ALTERED versions of that surface: cut, scaled to mm, mirrored to a left femur,
remeshed, given a cortical shell (see ``meshes/README.md``).

Frame and tags are those of ``ProximalFemur`` (so every load case, DXA site, material and
density routine works unchanged): z = shaft axis (proximal), x = medial, y = anterior,
distal cut z = 0; cells "cortical" 1 / "trabecular" 2; facets "head_load" 11, "distal"
12, "trochanter" 13, "head_surface" 14, plus "endocortical" 15 (interior facets between
the cortex and the marrow/trabecular core) and "abductor" 16 (around the top of the
greater trochanter, for abductor muscle forces in habitual-load cases).  ROIs and
landmarks: `anatomical_regions`.

Shape variation: ``AnatomicalFemur(shape=FemurShape(...))`` morphs the reference nodes
(`femur.geometry.morph`) before the mesh is distributed; topology, cell order, tags and
ROIs are kept (the head load patch is re-split around the stance direction of the
morphed head), landmarks are recomputed.  Per-cell reference data (e.g. an adapted
density stored per cell of the shipped mesh) follow through
:func:`reference_cell_index`.
"""

from __future__ import annotations

import functools
import json
import os
import pathlib
import time
from dataclasses import dataclass

import numpy as np

from femur.core.mpi import MPI
import dolfinx  # noqa: E402
from dolfinx.io.gmsh import cell_perm_array, ufl_mesh  # noqa: E402

from femur.core.errors import InputError, MeshError  # noqa: E402
from femur.core.sex import normalise_sex  # noqa: E402
from femur.geometry import anatomical_regions as regions  # noqa: E402
from femur.geometry.cortex_sex import cortex_for_sex, thickened_points  # noqa: E402
from femur.geometry._gmsh_util import log_build  # noqa: E402
from femur.geometry.bone import Bone  # noqa: E402
from femur.geometry.mesh_io import distribute_tags, read_mesh_arrays  # noqa: E402
from femur.geometry.morph import (  # noqa: E402
    FemurShape,
    MorphedROI,
    ShapeMorph,
    edge_inverse,
    morphed_anatomy,
    morphed_landmarks,
)

CELL_IDS = {"cortical": 1, "trabecular": 2}
FACET_IDS = {"head_load": 11, "distal": 12, "trochanter": 13, "head_surface": 14, "endocortical": 15,
             "abductor": 16}
#: shipped meshes: mesh_size_mm -> file name (in :func:`mesh_dir`)
SHIPPED = {3.0: "anatomical_femur_default.msh", 4.0: "anatomical_femur_trial.msh"}
DEFAULT_MESH_SIZE_MM = 3.0
TRIAL_MESH_SIZE_MM = 4.0


def mesh_dir() -> pathlib.Path:
    """Folder of the shipped meshes (``FEMUR_MESH_DIR`` overrides the repository's meshes/)."""
    env = os.environ.get("FEMUR_MESH_DIR")
    return pathlib.Path(env) if env else pathlib.Path(__file__).resolve().parents[2] / "meshes"


@functools.lru_cache(maxsize=4)
def _read_cached(path: str, mtime_ns: int, size: int):
    return read_mesh_arrays(path)


def _check_elements(morph: ShapeMorph, payload: dict) -> dict:
    """The morph's element check on a cached mesh payload; the reference edge inverses are
    kept in the payload for the next shape (a cohort checks one per patient)."""
    if "edge_inverse" not in payload:
        payload["edge_inverse"] = edge_inverse(payload["points"], payload["cells"])
    return morph.check_elements(payload["points"], payload["cells"], payload["edge_inverse"])


@functools.lru_cache(maxsize=8)
def _sha256(path: str) -> str:
    import hashlib

    return hashlib.sha256(pathlib.Path(path).read_bytes()).hexdigest()


def read_reference(msh_path) -> dict:
    """The reference dictionary stored next to a mesh (same stem, ``.json``)."""
    path = pathlib.Path(msh_path).with_suffix(".json")
    if not path.is_file():
        raise InputError(f"{path}: reference data of the anatomical femur mesh {msh_path} not found")
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise InputError(f"{path}: cannot read the anatomical femur reference ({exc})") from None


@dataclass
class AnatomicalFemur:
    """Anatomical proximal femur from a shipped (or generated) reference mesh.

    ``mesh_size_mm`` picks a shipped mesh (3.0 default, 4.0 trial); ``mesh_file`` uses a
    mesh made by ``meshes/make_anatomical_femur.py --mesh-size H --out DIR`` instead (its
    ``.json`` must sit next to it).  ``shape`` morphs it (`femur.geometry.morph.FemurShape`).
    ``sex="male"`` moves the endosteal surface to men's cortical thickness pattern first
    (`femur.geometry.cortex_sex`; same cells and tags).
    """

    mesh_size_mm: float = DEFAULT_MESH_SIZE_MM
    shape: FemurShape | None = None
    mesh_file: str | None = None
    name: str = "femur"
    #: the patient's sex: a man's femur gets men's cortical thickness pattern
    #: (`femur.geometry.cortex_sex`; a woman's is the shipped mesh as it is)
    sex: str = "female"

    def mesh_path(self) -> pathlib.Path:
        if self.mesh_file is not None:
            p = pathlib.Path(self.mesh_file)
            if not p.is_file():
                raise InputError(f"AnatomicalFemur.mesh_file {p} not found")
            return p
        h = float(self.mesh_size_mm)
        match = [f for s, f in SHIPPED.items() if abs(s - h) < 1e-9]
        if not match:
            raise InputError(
                f"AnatomicalFemur.mesh_size_mm={h!r}: no shipped anatomical femur mesh of that size "
                f"(shipped: {', '.join(f'{s:g} mm' for s in SHIPPED)}); make one with "
                f"`python meshes/make_anatomical_femur.py --mesh-size {h:g} --out DIR` and pass "
                "mesh_file=DIR/anatomical_femur.msh"
            )
        p = mesh_dir() / match[0]
        if not p.is_file():
            raise InputError(
                f"{p}: shipped anatomical femur mesh missing (set FEMUR_MESH_DIR to the folder "
                "holding it, or regenerate it with meshes/make_anatomical_femur.py)"
            )
        return p

    def reference(self) -> dict:
        return read_reference(self.mesh_path())

    def _morph(self, ref: dict) -> ShapeMorph | None:
        if self.shape is None or self.shape.is_identity:
            return None
        return ShapeMorph(ref, self.shape)

    @staticmethod
    def _rois(ref: dict, morph: ShapeMorph | None) -> dict:
        base = regions.regions(ref)
        return base if morph is None else {k: MorphedROI(morph, f) for k, f in base.items()}

    @staticmethod
    def _landmarks(ref: dict, morph: ShapeMorph | None) -> dict:
        lm = regions.landmarks(ref)
        return lm if morph is None else morphed_landmarks(morph, lm, ref)

    @staticmethod
    def _anatomy(ref: dict, morph: ShapeMorph | None, lm: dict) -> dict:
        return dict(ref["anatomy"]) if morph is None else morphed_anatomy(morph, lm, ref)

    def rois(self, ref: dict | None = None) -> dict:
        ref = ref or self.reference()
        return self._rois(ref, self._morph(ref))

    def landmarks(self, ref: dict | None = None) -> dict:
        ref = ref or self.reference()
        return self._landmarks(ref, self._morph(ref))

    def anatomy(self, ref: dict | None = None) -> dict:
        """The scalar anatomy (mm, degrees: head radius, neck length and width, neck-shaft
        angle, anteversion, offset, ...) of this femur, as its built bone records it in
        ``parameters["anatomy"]``, without building the mesh."""
        ref = ref or self.reference()
        morph = self._morph(ref)
        return self._anatomy(ref, morph, self._landmarks(ref, morph))

    # ------------------------------------------------------------------ build
    def build(self, comm=MPI.COMM_WORLD) -> Bone:
        """Read the reference mesh on rank 0, morph it (``shape``), distribute; a `Bone`."""
        t0 = time.perf_counter()
        payload, error, check = None, None, None
        ref, cortex, base = None, None, None
        if comm.rank == 0:
            try:
                path = self.mesh_path()
                ref = read_reference(path)
                st = path.stat()
                payload = _read_cached(str(path.resolve()), st.st_mtime_ns, st.st_size)
                if payload["cell_type"] != "tetra":
                    raise MeshError(f"{path}: the anatomical femur needs tetrahedra")
                cortex = cortex_for_sex(self.sex, ref)
                base = payload["points"] if cortex is None else thickened_points(
                    f"{path.resolve()}:{st.st_mtime_ns}:{st.st_size}", payload, ref, cortex)
                morph = self._morph(ref)
                if morph is not None:
                    check = _check_elements(morph, payload)
            except (InputError, MeshError) as exc:
                error = exc
            except Exception as exc:  # noqa: BLE001  -- reported on every rank below
                error = MeshError(f"AnatomicalFemur: could not read the reference mesh ({type(exc).__name__}: {exc})")
        error, ref, check, cortex, path_s = comm.bcast(
            (error, ref, check, cortex, str(self.mesh_path()) if error is None and comm.rank == 0 else None),
            root=0)
        if error is not None:
            raise error
        morph = self._morph(ref)
        if comm.rank == 0:
            x = base if morph is None else morph(base)
            cells, cvals = payload["cells"], payload["cell_values"]
            facets, fvals = payload["facets"], payload["facet_values"]
        else:
            x = np.zeros((0, 3))
            cells = np.zeros((0, 4), dtype=np.int64)
            cvals = np.zeros(0, dtype=np.int32)
            facets = np.zeros((0, 3), dtype=np.int64)
            fvals = np.zeros(0, dtype=np.int32)
        domain = ufl_mesh(4, 3, np.float64)
        perm = cell_perm_array(dolfinx.mesh.CellType.tetrahedron, 4)
        mesh = dolfinx.mesh.create_mesh(comm, np.ascontiguousarray(cells[:, perm]), domain, x)
        cell_tags = distribute_tags(mesh, 3, cells, cvals, "cell_tags")
        facet_tags = distribute_tags(mesh, 2, facets, fvals, "facet_tags")
        lm = self._landmarks(ref, morph)  # the morph made above, once
        rois = self._rois(ref, morph)
        anatomy = self._anatomy(ref, morph, lm)
        if morph is not None:
            facet_tags = _resplit_head(mesh, facet_tags, lm, ref)
        params = {
            "model": "AnatomicalFemur",
            "mesh_file": pathlib.Path(path_s).name,
            "mesh_size_mm": float(self.mesh_size_mm) if self.mesh_file is None else ref.get("mesh", {}).get("mesh_size_mm"),
            "shape": None if self.shape is None else self.shape.to_dict(),
            "anatomy": anatomy,
            "cortex": dict(ref.get("cortex", {})) if cortex is None else dict(cortex),
            "mesh_sha256": _sha256(path_s) if comm.rank == 0 else None,
            "mirrored_from": ref.get("side_of_source"),
            "source": dict(ref.get("source", {})),
        }  # fmt: skip
        params["mesh_sha256"] = comm.bcast(params["mesh_sha256"], root=0)
        if cortex is not None:
            params["cortex_sex"] = normalise_sex(self.sex)
        if check is not None:
            params["morph_check"] = check
        bone = Bone(
            name=self.name, kind="femur", mesh=mesh, cell_tags=cell_tags, facet_tags=facet_tags,
            cell_ids=dict(CELL_IDS), facet_ids=dict(FACET_IDS), rois=rois, landmarks=lm,
            parameters=params, source="anatomical:" + str(ref.get("source", {}).get("name", "reference")),
        )  # fmt: skip
        log_build(comm, "AnatomicalFemur", mesh, time.perf_counter() - t0)
        return bone


def _resplit_head(mesh, facet_tags, lm, ref) -> "dolfinx.mesh.MeshTags":
    """Re-split the head facets (11 + 14) into the stance load patch and the rest around
    the morphed head centre (same rule as the reference, `classify_outer_facets`)."""
    vals = facet_tags.values.copy()
    idx = facet_tags.indices
    head = np.isin(vals, (FACET_IDS["head_load"], FACET_IDS["head_surface"]))
    if head.any():
        mid = dolfinx.mesh.compute_midpoints(mesh, 2, idx[head].astype(np.int32))
        d = mid - lm["head_center"]
        d /= np.linalg.norm(d, axis=1)[:, None]
        g = np.radians(float(ref.get("stance_angle_deg", 8.0)))
        stance = np.array([np.sin(g), 0.0, np.cos(g)])
        cosmax = np.cos(np.radians(float(ref.get("head_patch_half_angle_deg", 30.0))))
        vals[head] = np.where(d @ stance >= cosmax, FACET_IDS["head_load"], FACET_IDS["head_surface"])
    tags = dolfinx.mesh.meshtags(mesh, 2, idx, vals.astype(np.int32))
    tags.name = facet_tags.name
    return tags


# ----------------------------------------------------------------------------- helpers
def check_shape(shape: FemurShape) -> dict:
    """The element check of a morph to ``shape`` on every shipped mesh (this process only;
    each mesh is read once per process): {mesh_size_mm: check}. Raises the ``MeshError``
    (inverted or over-stretched elements) or ``InputError`` (impossible targets) that
    :meth:`AnatomicalFemur.build` would raise -- a cohort rejects such a shape before any
    mesh is built."""
    out = {}
    for size in sorted(SHIPPED):
        path = AnatomicalFemur(mesh_size_mm=size).mesh_path()
        st = path.stat()
        payload = _read_cached(str(path.resolve()), st.st_mtime_ns, st.st_size)
        morph = ShapeMorph(read_reference(path), shape)
        out[size] = _check_elements(morph, payload)
    return out


def reference_cell_index(bone: Bone) -> np.ndarray:
    """For every local cell (owned + ghost) of an anatomical femur, its index in the
    reference mesh file (the order of the tetrahedra in the shipped ``.msh``): per-cell
    reference data ``values`` (e.g. an adapted density) map to the bone as
    ``values[reference_cell_index(bone)]`` for any MPI partition and any morph."""
    idx = np.asarray(bone.mesh.topology.original_cell_index, dtype=np.int64)
    n = bone.num_local_cells
    if idx.shape[0] < n:
        raise MeshError(f"bone '{bone.name}': original cell indices missing for ghost cells")
    return idx[:n]


def to_reference_order(bone: Bone, values: np.ndarray) -> np.ndarray:
    """A per-cell array of ``bone`` (local cells, owned + ghost) as one array over the cells
    of the reference mesh, identical on every rank (collective).  Store it (e.g. an adapted
    density) and map it back onto any partition or morph of the same reference mesh with
    ``stored[reference_cell_index(bone)]``."""
    n_ref = bone.mesh.topology.index_map(bone.mesh.topology.dim).size_global
    v = np.asarray(values, dtype=float)
    if v.shape[0] != bone.num_local_cells:
        raise InputError(f"to_reference_order: expected {bone.num_local_cells} per-cell values, got {v.shape[0]}")
    out = np.zeros(n_ref)
    seen = np.zeros(n_ref)
    idx = reference_cell_index(bone)[: bone.num_owned_cells]
    out[idx] = v[: bone.num_owned_cells]
    seen[idx] = 1.0
    bone.comm.Allreduce(MPI.IN_PLACE, out, op=MPI.SUM)
    bone.comm.Allreduce(MPI.IN_PLACE, seen, op=MPI.SUM)
    if not np.all(seen == 1.0):
        raise MeshError(f"bone '{bone.name}': the cells do not map one-to-one onto the reference mesh")
    return out


def cortex_surface_cells(bone: Bone) -> dict:
    """Masks over local cells: cortical cells touching the endocortical surface (facet tag
    "endocortical") and cortical cells touching the periosteal surface (exterior facets
    other than the distal cut)."""
    mesh = bone.mesh
    tdim = mesh.topology.dim
    mesh.topology.create_connectivity(tdim - 1, tdim)
    f2c = mesh.topology.connectivity(tdim - 1, tdim)
    ft = bone.facet_tags
    cort = bone.compartment_mask("cortical")
    out = {}
    endo = ft.indices[ft.values == bone.facet_ids["endocortical"]]
    ext = dolfinx.mesh.exterior_facet_indices(mesh.topology)
    distal = ft.indices[ft.values == bone.facet_ids["distal"]]
    peri = np.setdiff1d(ext, distal)
    for key, facets in (("endocortical", endo), ("periosteal", peri)):
        mask = np.zeros(bone.num_local_cells, dtype=bool)
        for f in facets:
            cells = f2c.links(int(f))
            mask[cells[cells < len(mask)]] = True
        out[key] = mask & cort
    return out


__all__ = ["AnatomicalFemur", "FemurShape", "check_shape", "reference_cell_index", "to_reference_order", "cortex_surface_cells",
           "read_reference", "mesh_dir", "SHIPPED", "CELL_IDS", "FACET_IDS"]
