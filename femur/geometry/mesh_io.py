"""Read user meshes (.msh, .vtu, .vtk, .inp, .xdmf) into a `Bone`, and write a `Bone`'s mesh.

One cohesive thing (hence about 770 lines): every reader feeds the same checks (cell types,
orientation, tags) and the same distribution of cells and tags over MPI ranks.

* ``.msh`` files are read with the gmsh API (physical groups and their names are kept;
  a gmsh session the caller already opened is left alone, unlike
  ``dolfinx.io.gmsh.read_from_msh``, which finalises gmsh); XDMF files written by
  ``dolfinx.io.XDMFFile`` (mesh + meshtags grids) with dolfinx; the other formats
  (.vtu, .vtk, .inp, single-grid .xdmf) with meshio.  Reading and checking happen on rank 0 of ``comm``; the
  mesh is then distributed with ``dolfinx.mesh.create_mesh`` and the tags with
  ``distribute_entity_data``, so any error is raised on every rank with the same message.
* Cell tags come from gmsh physical groups, from integer cell data ("gmsh:physical",
  "medit:ref", "cell_tags", ...) or from element sets (Abaqus ``*ELSET``); facet tags from
  tagged triangles (quadrilaterals for hexahedral meshes) in the same file.
* Checks (each a `MeshError` naming the file): missing file, unknown extension, unreadable
  or empty file, no volume cells, mixed or unsupported cell types (hexahedra only with
  ``allow_hex=True``), non-finite coordinates, zero-volume cells, inverted cells
  (refused unless ``fix_orientation=True``, which renumbers them), tagged facets that are
  not faces of the mesh, and required tags that are missing or empty.
* Quadratic cells (tetra10, hexahedron20/27) are read as their linear corner cells.

Coordinates are taken to be in mm.
"""

from __future__ import annotations

import os
import pathlib

import numpy as np

from femur.core.mpi import MPI
import dolfinx  # noqa: E402
from dolfinx.io.gmsh import cell_perm_array, ufl_mesh  # noqa: E402
from dolfinx.io.utils import distribute_entity_data  # noqa: E402

from femur.core.errors import MeshError  # noqa: E402
from femur.geometry._cellgeom import cell_volumes  # noqa: E402
from femur.geometry._gmsh_util import gmsh_model  # noqa: E402
from femur.geometry.bone import Bone  # noqa: E402

SUPPORTED = (".msh", ".vtu", ".vtk", ".inp", ".xdmf")

# meshio cell type -> (linear type, number of corner nodes, dimension)
_VOLUME_TYPES = {**{t: ("tetra", 4) for t in ("tetra", "tetra4", "tetra10")},
                 **{t: ("hexahedron", 8) for t in ("hexahedron", "hexahedron20", "hexahedron27")}}
_OTHER_VOLUME_TYPES = {"wedge", "wedge15", "pyramid", "pyramid13", "tetra20", "hexahedron24"}
_FACET_TYPES = {**{t: ("triangle", 3) for t in ("triangle", "triangle6")},
                **{t: ("quad", 4) for t in ("quad", "quad8", "quad9")}}
# gmsh element type -> meshio-like name
_GMSH_TYPES = {
    4: "tetra",
    11: "tetra10",
    5: "hexahedron",
    17: "hexahedron20",
    12: "hexahedron27",
    6: "wedge",
    7: "pyramid",
    2: "triangle",
    9: "triangle6",
    3: "quad",
    16: "quad8",
    10: "quad9",
}
# integer cell-data keys that hold region tags, in order of preference
_TAG_KEYS = (
    "gmsh:physical",
    "medit:ref",
    "cell_tags",
    "CellEntityIds",
    "tags",
    "tag",
    "region",
    "regions",
    "material",
    "MaterialIds",
    "flac3d:zone",
)
_GMSH_CELL_TYPE = {"tetra": 4, "hexahedron": 5}
_DOLFINX_CELL_TYPE = {
    "tetra": dolfinx.mesh.CellType.tetrahedron,
    "hexahedron": dolfinx.mesh.CellType.hexahedron,
}


# --------------------------------------------------------------------------- public API
def load_mesh(
    path,
    comm=MPI.COMM_WORLD,
    *,
    cell_regions: dict[str, int] | None = None,
    facet_regions: dict[str, int] | None = None,
    kind: str = "generic",
    name: str | None = None,
    required_cells=(),
    required_facets=(),
    allow_hex: bool = False,
    fix_orientation: bool = False,
    tag_key: str | None = None,
    rois: dict | None = None,
    landmarks: dict | None = None,
) -> Bone:
    """Read a volume mesh (mm) with its region tags into a distributed `Bone`.

    Parameters
    ----------
    cell_regions, facet_regions
        Names for the integer tags, ``{"cortical": 1, ...}``.  Names stored in the file
        (gmsh physical names, Abaqus element-set names) are used too; for element sets,
        ``cell_regions`` chooses the sets and their ids.
    required_cells, required_facets
        Region names that must exist and be non-empty (e.g. ``["distal"]``).
    allow_hex
        Accept hexahedral meshes (CT voxel meshes); tetrahedra are required otherwise.
    fix_orientation
        Renumber inverted cells instead of refusing the file.
    tag_key
        Name of the integer cell-data array holding the tags (default: the first of
        "gmsh:physical", "medit:ref", "cell_tags", ... found in the file).
    """
    path = pathlib.Path(path)
    grids = None
    if path.suffix.lower() == ".xdmf":
        grids = comm.bcast(_xdmf_grids(path) if comm.rank == 0 else None, root=0)
    if grids and len(grids) > 1:  # written by dolfinx.io.XDMFFile: mesh + meshtags grids
        return _load_dolfinx_xdmf(
            path, comm, grids, cell_regions=cell_regions, facet_regions=facet_regions,
            kind=kind, name=name, required_cells=required_cells,
            required_facets=required_facets, allow_hex=allow_hex, rois=rois, landmarks=landmarks,
        )  # fmt: skip
    payload, error = None, None
    if comm.rank == 0:
        try:
            payload = _read_rank0(
                path,
                cell_regions=cell_regions,
                facet_regions=facet_regions,
                allow_hex=allow_hex,
                fix_orientation=fix_orientation,
                tag_key=tag_key,
            )
        except MeshError as exc:
            error = str(exc)
        except Exception as exc:  # noqa: BLE001  -- any reader failure becomes a MeshError
            error = f"{path}: could not read the mesh ({type(exc).__name__}: {exc})"
        except SystemExit as exc:  # meshio calls sys.exit on some malformed files
            error = f"{path}: could not read the mesh (the reader gave up: {exc})"
        meta = None if error else {k: payload[k] for k in ("cell_type", "cell_ids", "facet_ids")}
        comm.bcast((error, meta), root=0)
    else:
        error, meta = comm.bcast(None, root=0)
    if error:
        raise MeshError(error)

    cell_type = meta["cell_type"]
    nc = 4 if cell_type == "tetra" else 8
    nf = 3 if cell_type == "tetra" else 4
    if comm.rank == 0:
        x, cells = payload["points"], payload["cells"]
        cvals = payload["cell_values"]
        facets, fvals = payload["facets"], payload["facet_values"]
    else:
        x = np.zeros((0, 3), dtype=np.float64)
        cells = np.zeros((0, nc), dtype=np.int64)
        cvals = np.zeros(0, dtype=np.int32)
        facets = np.zeros((0, nf), dtype=np.int64)
        fvals = np.zeros(0, dtype=np.int32)

    domain = ufl_mesh(_GMSH_CELL_TYPE[cell_type], 3, np.float64)
    perm = cell_perm_array(_DOLFINX_CELL_TYPE[cell_type], nc)
    mesh = dolfinx.mesh.create_mesh(comm, np.ascontiguousarray(cells[:, perm]), domain, x)
    tdim = mesh.topology.dim
    cell_tags = _make_tags(mesh, tdim, cells, cvals, "cell_tags")
    facet_tags = None
    if comm.allreduce(len(fvals), op=MPI.SUM) > 0:
        facet_tags = _make_tags(mesh, tdim - 1, facets, fvals, "facet_tags")

    cell_ids, facet_ids = meta["cell_ids"], meta["facet_ids"]
    _check_required(path, mesh, cell_tags, cell_ids, required_cells, "cell", tdim)
    _check_required(path, mesh, facet_tags, facet_ids, required_facets, "facet", tdim - 1)
    return Bone(
        name=name or path.stem,
        kind=kind,
        mesh=mesh,
        cell_tags=cell_tags,
        facet_tags=facet_tags,
        cell_ids=dict(cell_ids),
        facet_ids=dict(facet_ids),
        rois=dict(rois or {}),
        landmarks=dict(landmarks or {}),
        parameters={"path": str(path), "allow_hex": allow_hex, "fix_orientation": fix_orientation},
        source=f"file:{path}",
    )


def save_mesh(bone: Bone, path, *, comm=None) -> None:
    """Write ``bone``'s mesh with its cell and facet tags (collective; rank 0 writes).

    Formats by extension: .msh (gmsh 2.2 ASCII, physical names kept), .vtu, .xdmf
    (uncompressed), .inp (Abaqus; tags as element sets).  Cells keep dolfinx's node
    order except that negatively oriented tetrahedra are renumbered, so the file passes
    `load_mesh`'s checks.  Read it back with ``load_mesh(path, cell_regions=bone.cell_ids,
    facet_regions=bone.facet_ids)`` (only .msh and .inp store the names).
    """
    import meshio

    path = pathlib.Path(path)
    comm = comm or bone.mesh.comm
    ext = path.suffix.lower()
    if ext not in (".msh", ".vtu", ".xdmf", ".inp"):
        raise MeshError(f"{path}: cannot write '{ext}' meshes; use .msh, .vtu, .xdmf or .inp")
    gathered = _gather(bone, comm)
    if comm.rank != 0:
        comm.barrier()
        return
    x, cells, cvals, facets, fvals, ctype = gathered
    if ctype == "tetra":
        vol = _tet_volumes(x, cells)
        neg = vol < 0
        cells[neg] = cells[neg][:, [0, 2, 1, 3]]
    ftype = "triangle" if ctype == "tetra" else "quad"
    blocks = [(ctype, cells)]
    if len(facets):
        blocks.append((ftype, facets))
    cell_names = {v: k for k, v in bone.cell_ids.items()}
    facet_names = {v: k for k, v in bone.facet_ids.items()}
    try:
        if ext == ".inp":
            sets = {}
            empty = np.zeros(0, dtype=np.int64)
            for v in np.unique(cvals[cvals != 0]):
                idx = np.flatnonzero(cvals == v)
                sets[_set_name(cell_names.get(int(v), f"tag_{v}"))] = [idx, empty][: len(blocks)]
            for v in np.unique(fvals):
                idx = np.flatnonzero(fvals == v)
                sets[_set_name(facet_names.get(int(v), f"facet_tag_{v}"))] = [empty, idx]
            meshio.write(path, meshio.Mesh(x, blocks, cell_sets=sets), file_format="abaqus")
        elif ext == ".msh":
            field_data = {n: np.array([v, 3]) for n, v in bone.cell_ids.items()}
            field_data.update({n: np.array([v, 2]) for n, v in bone.facet_ids.items()})
            vals = [cvals, fvals][: len(blocks)]
            mesh = meshio.Mesh(
                x,
                blocks,
                cell_data={"gmsh:physical": vals, "gmsh:geometrical": vals},
                field_data=field_data,
            )
            meshio.write(path, mesh, file_format="gmsh22", binary=False)
        else:
            vals = [cvals, fvals][: len(blocks)]
            mesh = meshio.Mesh(x, blocks, cell_data={"cell_tags": vals})
            if ext == ".xdmf":
                meshio.write(path, mesh, file_format="xdmf", compression=None)
            else:
                meshio.write(path, mesh, file_format="vtu")
    finally:
        comm.barrier()


# ----------------------------------------------------------------------------- reading
def _xdmf_grids(path) -> list[str] | None:
    """Names of the top-level grids of an XDMF file (None if it cannot be parsed)."""
    import xml.etree.ElementTree as ET

    try:
        root = ET.parse(path).getroot()
    except Exception:  # noqa: BLE001  -- missing/empty/broken: the normal path reports it
        return None
    domain = root.find("Domain")
    if domain is None:
        return None
    return [g.get("Name", "") for g in domain.findall("Grid")]


def _load_dolfinx_xdmf(path, comm, grids, *, cell_regions, facet_regions, kind, name,
                       required_cells, required_facets, allow_hex, rois, landmarks) -> Bone:
    """Read a mesh and its meshtags written by ``dolfinx.io.XDMFFile`` (collective)."""
    mesh_name = "mesh" if "mesh" in grids else grids[0]
    try:
        with dolfinx.io.XDMFFile(comm, str(path), "r") as f:
            mesh = f.read_mesh(name=mesh_name)
            tdim = mesh.topology.dim
            mesh.topology.create_connectivity(tdim - 1, tdim)
            tags = {}
            for g in grids:
                if g != mesh_name:
                    tags[g] = f.read_meshtags(mesh, name=g)
    except Exception as exc:  # noqa: BLE001
        raise MeshError(f"{path}: could not read the DOLFINx XDMF file ({exc})") from None
    ct = mesh.topology.cell_type
    if ct == dolfinx.mesh.CellType.hexahedron and not allow_hex:
        raise MeshError(
            f"{path}: the mesh has hexahedral cells where tetrahedra are needed "
            "(pass allow_hex=True to accept a voxel/hexahedral mesh)"
        )
    if ct not in (dolfinx.mesh.CellType.tetrahedron, dolfinx.mesh.CellType.hexahedron):
        raise MeshError(f"{path}: {ct.name} cells are not supported; tetrahedra are needed")
    vol = cell_volumes(mesh)[: mesh.topology.index_map(tdim).size_local]
    scale = comm.allreduce(float(np.abs(vol).max()) if len(vol) else 0.0, op=MPI.MAX)
    n_zero = comm.allreduce(int(np.sum(np.abs(vol) <= 1e-10 * scale)), op=MPI.SUM)
    if n_zero:
        raise MeshError(f"{path}: {n_zero} zero-volume (degenerate) cells")
    cell_tags = next((t for t in tags.values() if t.dim == tdim), None)
    facet_tags = next((t for t in tags.values() if t.dim == tdim - 1), None)

    def names(t, given, prefix):
        present = set()
        if t is not None:
            present = set(np.unique(t.values).tolist())
        present = {int(v) for v in comm.allreduce(present, op=MPI.BOR)} if comm.size > 1 else present
        if given:
            return {k: int(v) for k, v in given.items()}
        return {f"{prefix}{v}": int(v) for v in sorted(present)}

    cell_ids = names(cell_tags, cell_regions, "tag_")
    facet_ids = names(facet_tags, facet_regions, "facet_tag_")
    _check_required(path, mesh, cell_tags, cell_ids, required_cells, "cell", tdim)
    _check_required(path, mesh, facet_tags, facet_ids, required_facets, "facet", tdim - 1)
    return Bone(
        name=name or path.stem, kind=kind, mesh=mesh, cell_tags=cell_tags, facet_tags=facet_tags,
        cell_ids=cell_ids, facet_ids=facet_ids, rois=dict(rois or {}),
        landmarks=dict(landmarks or {}),
        parameters={"path": str(path), "allow_hex": allow_hex, "format": "dolfinx-xdmf"},
        source=f"file:{path}",
    )  # fmt: skip


def read_mesh_arrays(path, *, allow_hex: bool = False, fix_orientation: bool = False) -> dict:
    """Read and check a mesh file in this process only (no MPI distribution): a dict with
    ``points`` (mm), ``cells``, ``cell_type``, ``cell_values``, ``facets``,
    ``facet_values`` and the region names, as :func:`load_mesh` reads it on rank 0.  For a
    builder that changes the nodes (e.g. a morph) before it distributes the mesh itself
    (with ``dolfinx.mesh.create_mesh`` and :func:`distribute_tags`)."""
    return _read_rank0(pathlib.Path(path), cell_regions=None, facet_regions=None, allow_hex=allow_hex,
                       fix_orientation=fix_orientation, tag_key=None)


def distribute_tags(mesh, dim: int, entities, values, name: str):
    """MeshTags of dimension ``dim`` on a distributed ``mesh`` from entities given by their
    input node indices (rows of ``entities``, the ``cells``/``facets`` of
    :func:`read_mesh_arrays`; collective, empty arrays on the other ranks); value 0 means
    untagged."""
    return _make_tags(mesh, dim, entities, values, name)


def _read_rank0(path, *, cell_regions, facet_regions, allow_hex, fix_orientation, tag_key):
    ext = path.suffix.lower()
    if ext not in SUPPORTED:
        raise MeshError(
            f"{path}: unknown mesh file extension '{ext}'; supported: {', '.join(SUPPORTED)}"
        )
    if not path.exists():
        raise MeshError(f"{path}: mesh file not found")
    if path.is_dir():
        raise MeshError(f"{path}: is a directory, expected a mesh file")
    if os.path.getsize(path) == 0:
        raise MeshError(f"{path}: the mesh file is empty (0 bytes)")
    if ext == ".msh":
        raw = _read_gmsh(path)
    else:
        raw = _read_meshio(path, tag_key)
    return _assemble(path, raw, cell_regions, facet_regions, allow_hex, fix_orientation)


def _read_gmsh(path):
    """Nodes, element blocks and physical groups from a .msh file via the gmsh API."""
    import gmsh  # heavy optional import: only for .msh files

    with gmsh_model("load-mesh") as model:
        try:
            gmsh.merge(str(path))
        except Exception as exc:
            raise MeshError(f"{path}: gmsh could not read the file ({exc})") from None
        node_tags, coords, _ = model.mesh.getNodes()
        node_tags = np.asarray(node_tags, dtype=np.int64)
        if len(node_tags) == 0:
            raise MeshError(f"{path}: the mesh has no nodes")
        points = np.asarray(coords, dtype=np.float64).reshape(-1, 3)
        lookup = np.full(int(node_tags.max()) + 1, -1, dtype=np.int64)
        lookup[node_tags] = np.arange(len(node_tags))
        # element tag -> physical tag, per dimension
        phys_of: dict[int, dict[int, int]] = {2: {}, 3: {}}
        names: dict[int, dict[str, int]] = {2: {}, 3: {}}
        for dim, ptag in model.getPhysicalGroups():
            if dim not in (2, 3):
                continue
            pname = model.getPhysicalName(dim, ptag)
            if pname:
                names[dim][pname] = int(ptag)
            for ent in model.getEntitiesForPhysicalGroup(dim, ptag):
                _, etags, _ = model.mesh.getElements(dim, int(ent))
                for et in etags:
                    for e in np.asarray(et, dtype=np.int64):
                        phys_of[dim].setdefault(int(e), int(ptag))
        blocks = []
        for dim in (3, 2):
            etypes, etags, entags = model.mesh.getElements(dim)
            for et, tags, nodes in zip(etypes, etags, entags):
                tname = _GMSH_TYPES.get(int(et), f"gmsh-element-type-{int(et)}")
                _, _, _, nn, _, _ = model.mesh.getElementProperties(int(et))
                conn = lookup[np.asarray(nodes, dtype=np.int64).reshape(-1, nn)]
                tags = np.asarray(tags, dtype=np.int64)
                vals = np.array([phys_of[dim].get(int(t), 0) for t in tags], dtype=np.int64)
                blocks.append((tname, conn, vals))
    return {
        "points": points,
        "blocks": blocks,
        "cell_names": names[3],
        "facet_names": names[2],
        "cell_sets": {},
    }


def _read_meshio(path, tag_key):
    import meshio

    fmt = {".inp": "abaqus", ".xdmf": "xdmf", ".vtu": "vtu", ".vtk": "vtk"}[path.suffix.lower()]
    import contextlib
    import io

    chatter = io.StringIO()  # meshio prints its errors before exiting; keep them for the message
    try:
        with contextlib.redirect_stdout(chatter), contextlib.redirect_stderr(chatter):
            mesh = meshio.read(path, file_format=fmt)
    except SystemExit:
        said = " ".join(chatter.getvalue().split())
        raise MeshError(f"{path}: meshio could not read the file ({said or 'it gave up'})") from None
    except Exception as exc:  # noqa: BLE001
        raise MeshError(f"{path}: meshio could not read the file ({type(exc).__name__}: {exc})") from None
    points = np.asarray(mesh.points, dtype=np.float64)
    if points.ndim != 2 or len(points) == 0:
        raise MeshError(f"{path}: the mesh has no points")
    if points.shape[1] < 3:
        points = np.hstack([points, np.zeros((len(points), 3 - points.shape[1]))])
    keys = [tag_key] if tag_key else list(_TAG_KEYS)
    if tag_key and tag_key not in mesh.cell_data:
        raise MeshError(
            f"{path}: no cell data '{tag_key}'; the file has {sorted(mesh.cell_data)}"
        )
    key = next((k for k in keys if k in mesh.cell_data), None)
    if key is None:  # any integer cell data
        key = next(
            (
                k
                for k, arrs in mesh.cell_data.items()
                if all(np.issubdtype(np.asarray(a).dtype, np.integer) for a in arrs)
            ),
            None,
        )
    blocks = []
    for i, block in enumerate(mesh.cells):
        conn = np.asarray(block.data, dtype=np.int64)
        if key is not None:
            vals = np.asarray(mesh.cell_data[key][i]).reshape(len(conn), -1)[:, 0]
            if not np.all(np.isfinite(vals)) or not np.all(vals == np.round(vals)):
                raise MeshError(f"{path}: cell data '{key}' holds non-integer tags")
            vals = vals.astype(np.int64)
        else:
            vals = np.zeros(len(conn), dtype=np.int64)
        blocks.append((block.type, conn, vals))
    names = {}
    for fname, fd in (mesh.field_data or {}).items():
        fd = np.asarray(fd).ravel()
        if len(fd) >= 2:
            names.setdefault(int(fd[1]), {})[str(fname)] = int(fd[0])
    sets = {
        str(k): [np.asarray(a, dtype=np.int64) for a in v] for k, v in (mesh.cell_sets or {}).items()
    }
    return {
        "points": points,
        "blocks": blocks,
        "cell_names": names.get(3, {}),
        "facet_names": names.get(2, {}),
        "cell_sets": sets,
    }


def _apply_sets(blocks, block_ids, sets, regions, path, what):
    """Turn element sets into integer tags on the given blocks; returns (values, names)."""
    n = [len(blocks[i][1]) for i in block_ids]
    members = {}
    for sname, arrs in sets.items():
        idx = [np.asarray(arrs[i], dtype=np.int64) if i < len(arrs) else np.zeros(0, np.int64) for i in block_ids]
        if sum(len(a) for a in idx):
            members[sname] = idx
    if not members:
        return None, {}
    if regions:
        lower = {k.lower(): k for k in members}
        chosen = {}
        for rname, rid in regions.items():
            key = rname if rname in members else lower.get(rname.lower())
            if key is not None:
                chosen[rname] = (key, int(rid))
    else:
        total = sum(n)
        # a set covering every cell (e.g. "EALL") is not a region when others exist
        cand = {k: v for k, v in members.items() if sum(len(a) for a in v) < total} or members
        chosen = {k: (k, i + 1) for i, k in enumerate(sorted(cand))}
    vals = [np.zeros(m, dtype=np.int64) for m in n]
    # larger sets first, so smaller (more specific) sets win where sets overlap
    order = sorted(chosen.items(), key=lambda kv: -sum(len(a) for a in members[kv[1][0]]))
    for _, (sname, rid) in order:
        for j, a in enumerate(members[sname]):
            if len(a) and (a.min() < 0 or a.max() >= n[j]):
                raise MeshError(f"{path}: {what} set '{sname}' refers to missing elements")
            vals[j][a] = rid
    return vals, {rname: rid for rname, (_, rid) in chosen.items()}


def _assemble(path, raw, cell_regions, facet_regions, allow_hex, fix_orientation):
    points, blocks = raw["points"], raw["blocks"]
    vol_ids = [i for i, b in enumerate(blocks) if b[0] in _VOLUME_TYPES or b[0] in _OTHER_VOLUME_TYPES]
    vol_ids = [i for i in vol_ids if len(blocks[i][1])]
    if not vol_ids:
        kinds = sorted({b[0] for b in blocks if len(b[1])})
        raise MeshError(
            f"{path}: the mesh has no volume cells (tetrahedra"
            f"{' or hexahedra' if allow_hex else ''} needed); found "
            f"{', '.join(kinds) if kinds else 'no cells at all'}"
        )
    types = sorted({blocks[i][0] for i in vol_ids})
    lin = sorted({_VOLUME_TYPES[t][0] if t in _VOLUME_TYPES else t for t in types})
    if len(lin) > 1:
        raise MeshError(f"{path}: mixed volume cell types {types}; one cell type is needed")
    ctype = lin[0]
    if ctype not in ("tetra", "hexahedron"):
        raise MeshError(f"{path}: {ctype} cells are not supported; tetrahedra are needed")
    if ctype == "hexahedron" and not allow_hex:
        raise MeshError(
            f"{path}: the mesh has hexahedral cells where tetrahedra are needed "
            "(pass allow_hex=True to accept a voxel/hexahedral mesh)"
        )
    nc = _VOLUME_TYPES[types[0]][1]
    cells = np.concatenate([blocks[i][1][:, :nc] for i in vol_ids])
    cvals = np.concatenate([blocks[i][2] for i in vol_ids])
    ftype = "triangle" if ctype == "tetra" else "quad"
    fac_ids = [i for i, b in enumerate(blocks) if b[0] in _FACET_TYPES and _FACET_TYPES[b[0]][0] == ftype and len(b[1])]
    nf = 3 if ctype == "tetra" else 4

    # tags from element sets (Abaqus) when there is no integer cell data
    cell_names = dict(raw["cell_names"])
    facet_names = dict(raw["facet_names"])
    if raw["cell_sets"]:
        if not np.any(cvals):
            vals, names = _apply_sets(blocks, vol_ids, raw["cell_sets"], cell_regions, path, "element")
            if vals is not None:
                cvals = np.concatenate(vals)
                cell_names = names
        if fac_ids and not np.any(np.concatenate([blocks[i][2] for i in fac_ids])):
            vals, names = _apply_sets(blocks, fac_ids, raw["cell_sets"], facet_regions, path, "facet")
            if vals is not None:
                for j, i in enumerate(fac_ids):
                    blocks[i] = (blocks[i][0], blocks[i][1], vals[j])
                facet_names = names
    if cell_regions:
        cell_names.update({k: int(v) for k, v in cell_regions.items()})
    if facet_regions:
        facet_names.update({k: int(v) for k, v in facet_regions.items()})

    # geometry checks
    if not np.all(np.isfinite(points)):
        raise MeshError(f"{path}: the mesh has non-finite (NaN/inf) node coordinates")
    if cells.min() < 0 or cells.max() >= len(points):
        raise MeshError(f"{path}: cells refer to nodes that do not exist")
    cells = _check_orientation(path, points, cells, ctype, fix_orientation)

    # facets: keep tagged ones, check they are faces of the mesh
    if fac_ids:
        facets = np.concatenate([blocks[i][1][:, :nf] for i in fac_ids])
        fvals = np.concatenate([blocks[i][2] for i in fac_ids])
        keep = fvals != 0
        facets, fvals = facets[keep], fvals[keep]
        if len(facets):
            bad = ~_facets_are_faces(facets, cells, ctype, len(points))
            if np.any(bad):
                raise MeshError(
                    f"{path}: {int(bad.sum())} tagged {ftype} facets (tags "
                    f"{sorted(set(fvals[bad].tolist()))}) are not faces of any volume cell"
                )
    else:
        facets = np.zeros((0, nf), dtype=np.int64)
        fvals = np.zeros(0, dtype=np.int64)

    # drop unreferenced nodes (e.g. mid-edge nodes of quadratic cells)
    used = np.zeros(len(points), dtype=bool)
    used[cells.ravel()] = True
    if not used.all():
        new = np.full(len(points), -1, dtype=np.int64)
        new[used] = np.arange(int(used.sum()))
        points = points[used]
        cells = new[cells]
        facets = new[facets]

    present_c = set(np.unique(cvals).tolist()) - {0}
    present_f = set(np.unique(fvals).tolist())
    if not cell_names:
        cell_names = {f"tag_{v}": int(v) for v in sorted(present_c)}
    if not facet_names:
        facet_names = {f"facet_tag_{v}": int(v) for v in sorted(present_f)}
    cell_names = {k: v for k, v in cell_names.items() if v in present_c or (cell_regions and k in cell_regions)}
    facet_names = {k: v for k, v in facet_names.items() if v in present_f or (facet_regions and k in facet_regions)}
    return {
        "points": np.ascontiguousarray(points, dtype=np.float64),
        "cells": np.ascontiguousarray(cells, dtype=np.int64),
        "cell_values": cvals.astype(np.int32),
        "facets": np.ascontiguousarray(facets, dtype=np.int64),
        "facet_values": fvals.astype(np.int32),
        "cell_type": ctype,
        "cell_ids": cell_names,
        "facet_ids": facet_names,
    }


def _tet_volumes(x, cells):
    a = x[cells[:, 1]] - x[cells[:, 0]]
    b = x[cells[:, 2]] - x[cells[:, 0]]
    c = x[cells[:, 3]] - x[cells[:, 0]]
    return np.einsum("ij,ij->i", a, np.cross(b, c)) / 6.0


# corner -> its three neighbours along the edges, in VTK hexahedron numbering, ordered
# so that (n1 - c, n2 - c, n3 - c) is right-handed for a positively oriented cell
_HEX_CORNERS = [
    (0, 1, 3, 4),
    (1, 2, 0, 5),
    (2, 3, 1, 6),
    (3, 0, 2, 7),
    (4, 7, 5, 0),
    (5, 4, 6, 1),
    (6, 5, 7, 2),
    (7, 6, 4, 3),
]


def _hex_corner_jacobians(x, cells):
    dets = []
    for c, i, j, k in _HEX_CORNERS:
        a = x[cells[:, i]] - x[cells[:, c]]
        b = x[cells[:, j]] - x[cells[:, c]]
        d = x[cells[:, k]] - x[cells[:, c]]
        dets.append(np.einsum("ij,ij->i", a, np.cross(b, d)))
    return np.stack(dets, axis=1)


def _check_orientation(path, x, cells, ctype, fix):
    span = float(np.max(np.ptp(x, axis=0))) or 1.0
    if ctype == "tetra":
        vol = _tet_volumes(x, cells)
        scale = np.median(np.abs(vol)) if len(vol) else 1.0
        _reject(np.abs(vol) <= 1e-10 * max(scale, 1e-30 * span**3), lambda n, i: (
            f"{path}: {n} zero-volume (degenerate) tetrahedra, first is cell {i} with nodes "
            f"{cells[i].tolist()}"))
        neg = vol < 0
        if np.any(neg):
            if not fix:
                _reject(neg, lambda n, i: (
                    f"{path}: {n} of {len(cells)} tetrahedra are inverted (negative signed volume), "
                    f"first is cell {i}; pass fix_orientation=True to renumber them"))
            cells = cells.copy()
            cells[neg] = cells[neg][:, [0, 2, 1, 3]]
        return cells
    dets = _hex_corner_jacobians(x, cells)
    scale = np.median(np.abs(dets)) if len(dets) else 1.0
    _reject(np.any(np.abs(dets) <= 1e-10 * max(scale, 1e-30 * span**3), axis=1), lambda n, i: (
        f"{path}: {n} degenerate (zero-volume corner) hexahedra, first is cell {i}"))
    allneg = np.all(dets < 0, axis=1)
    _reject(~allneg & np.any(dets < 0, axis=1), lambda n, i: (
        f"{path}: {n} tangled (self-inverted) hexahedra, first is cell {i}"))
    if np.any(allneg):
        if not fix:
            _reject(allneg, lambda n, i: (
                f"{path}: {n} of {len(cells)} hexahedra are inverted, first is cell {i}; pass "
                "fix_orientation=True to renumber them"))
        cells = cells.copy()
        cells[allneg] = cells[allneg][:, [0, 3, 2, 1, 4, 7, 6, 5]]
    return cells


def _reject(bad: np.ndarray, message) -> None:
    """MeshError ``message(count, first index)`` if any cell is ``bad``."""
    if np.any(bad):
        raise MeshError(message(int(bad.sum()), int(np.flatnonzero(bad)[0])))


def _face_keys(faces, n_nodes):
    f = np.sort(faces, axis=1)
    if f.shape[1] == 3 and n_nodes < 2_000_000:
        return f[:, 0] * n_nodes * n_nodes + f[:, 1] * n_nodes + f[:, 2]
    return np.array([hash(tuple(r)) for r in f.tolist()], dtype=np.int64)


def _facets_are_faces(facets, cells, ctype, n_nodes):
    if ctype == "tetra":
        local = [(1, 2, 3), (0, 2, 3), (0, 1, 3), (0, 1, 2)]
    else:
        local = [(0, 1, 2, 3), (4, 5, 6, 7), (0, 1, 5, 4), (1, 2, 6, 5), (2, 3, 7, 6), (3, 0, 4, 7)]
    faces = np.concatenate([cells[:, list(lf)] for lf in local])
    return np.isin(_face_keys(facets, n_nodes), _face_keys(faces, n_nodes))


# -------------------------------------------------------------------------- distributing
def _make_tags(mesh, dim, entities, values, name):
    local_entities, local_values = distribute_entity_data(
        mesh, dim, np.asarray(entities, dtype=np.int64), np.asarray(values, dtype=np.int32)
    )
    mesh.topology.create_connectivity(dim, mesh.topology.dim)
    adj = dolfinx.graph.adjacencylist(local_entities)
    tags = dolfinx.mesh.meshtags_from_entities(mesh, dim, adj, local_values.astype(np.int32, copy=False))
    tags.name = name
    if len(tags.values):
        keep = tags.values != 0
        if not keep.all():
            tags = dolfinx.mesh.meshtags(mesh, dim, tags.indices[keep], tags.values[keep])
            tags.name = name
    return tags


def _check_required(path, mesh, tags, ids, required, what, dim):
    required = [required] if isinstance(required, str) else list(required or [])
    if not required:
        return
    missing = [r for r in required if r not in ids]
    if missing:
        raise MeshError(
            f"{path}: required {what} region(s) {missing} not found; the file has {sorted(ids)}"
        )
    mesh.topology.create_entities(dim)
    n_owned = mesh.topology.index_map(dim).size_local
    for r in required:
        local = 0
        if tags is not None:
            local = int(np.sum((tags.values == ids[r]) & (tags.indices < n_owned)))
        if mesh.comm.allreduce(local, op=MPI.SUM) == 0:
            raise MeshError(f"{path}: required {what} region '{r}' (tag {ids[r]}) is empty")


def _set_name(name: str) -> str:
    return "".join(c if c.isalnum() or c in "_-" else "_" for c in name)


# ----------------------------------------------------------------------------- gathering
def _gather(bone: Bone, comm):
    """Gather owned nodes, cells and tags to rank 0 (global node numbering)."""
    mesh = bone.mesh
    tdim = mesh.topology.dim
    ctype = "tetra" if mesh.topology.cell_type == dolfinx.mesh.CellType.tetrahedron else "hexahedron"
    if mesh.geometry.cmaps[0].degree != 1:
        raise MeshError("save_mesh: only linear (degree 1) mesh geometry can be written")
    gmap = mesh.geometry.index_map()
    n_own_nodes = gmap.size_local
    glob = gmap.local_to_global(np.arange(gmap.size_local + gmap.num_ghosts, dtype=np.int32))
    n_cells = mesh.topology.index_map(tdim).size_local
    dofmap = mesh.geometry.dofmaps[0][:n_cells]
    cells = glob[dofmap]
    cvals = np.zeros(n_cells, dtype=np.int32)
    if bone.cell_tags is not None:
        sel = bone.cell_tags.indices < n_cells
        cvals[bone.cell_tags.indices[sel]] = bone.cell_tags.values[sel]
    facets = np.zeros((0, 3 if ctype == "tetra" else 4), dtype=np.int64)
    fvals = np.zeros(0, dtype=np.int32)
    if bone.facet_tags is not None and bone.facet_tags.dim == tdim - 1:
        n_f = mesh.topology.index_map(tdim - 1).size_local
        sel = bone.facet_tags.indices < n_f
        idx = bone.facet_tags.indices[sel]
        fvals = bone.facet_tags.values[sel]
        if len(idx):
            facets = glob[dolfinx.mesh.entities_to_geometry(mesh, tdim - 1, idx)]
    nodes = (glob[:n_own_nodes], mesh.geometry.x[:n_own_nodes].copy())
    parts = comm.gather((nodes, cells, cvals, facets, fvals), root=0)
    if comm.rank != 0:
        return None
    n_total = gmap.size_global
    x = np.zeros((n_total, 3))
    for (gi, xi), *_ in parts:
        x[gi] = xi
    cells = np.concatenate([p[1] for p in parts]).astype(np.int64)
    cvals = np.concatenate([p[2] for p in parts])
    facets = np.concatenate([p[3] for p in parts]).astype(np.int64)
    fvals = np.concatenate([p[4] for p in parts])
    if ctype == "hexahedron":  # dolfinx -> VTK/gmsh node order
        perm = cell_perm_array(dolfinx.mesh.CellType.hexahedron, 8)
        vtk = np.empty_like(cells)
        vtk[:, perm] = cells
        cells = vtk
        if len(facets):  # dolfinx quad (lexicographic) -> cyclic
            facets = facets[:, [0, 1, 3, 2]]
    return x, cells, cvals, facets, fvals, ctype
