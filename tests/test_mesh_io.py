"""User meshes: round trips through .msh/.vtu/.xdmf/.inp and every bad-input error."""

from __future__ import annotations

import pathlib

import numpy as np
import pytest

import femur  # noqa: F401
from mpi4py import MPI

from femur.core.errors import MeshError
from femur.geometry.mesh_io import load_mesh, save_mesh
from femur.geometry.vertebra import Vertebra

ROOT = pathlib.Path(__file__).resolve().parents[1]
COMM = MPI.COMM_WORLD


def summary(bone) -> dict:
    """Global cell count, volume and per-tag counts (owned entities only)."""
    out = {"cells": bone.mesh.topology.index_map(3).size_global}
    v = bone.cell_volumes()[: bone.num_owned_cells]
    out["volume"] = round(COMM.allreduce(float(v.sum())), 6)
    for what, tags, ids, dim in (
        ("cell", bone.cell_tags, bone.cell_ids, 3),
        ("facet", bone.facet_tags, bone.facet_ids, 2),
    ):
        bone.mesh.topology.create_entities(dim)
        n = bone.mesh.topology.index_map(dim).size_local
        for k, i in ids.items():
            local = 0 if tags is None else int(np.sum((tags.values == i) & (tags.indices < n)))
            out[f"{what}:{k}"] = COMM.allreduce(local)
    return out


@pytest.fixture(scope="module")
def small_vertebra():
    return Vertebra(layers="compliant", mesh_size_mm=4.0).build(COMM)


def on_root(fn):
    """Run ``fn`` on rank 0 only (writing test files), then synchronise."""
    if COMM.rank == 0:
        fn()
    COMM.barrier()


def write_meshio(path, points, cells, cell_data=None, **kw):
    import meshio

    def _w():
        meshio.write(path, meshio.Mesh(np.asarray(points, float), cells, cell_data=cell_data or {}), **kw)

    on_root(_w)


UNIT_TET = np.array([[0, 0, 0], [1, 0, 0], [0, 1, 0], [0, 0, 1]], dtype=float)
# two positively oriented tets sharing face (1, 2, 3); volumes 1/6 and 1/3
TWO_TETS_PTS = np.vstack([UNIT_TET, [[1, 1, 1]]])
TWO_TETS = np.array([[0, 1, 2, 3], [1, 4, 2, 3]])


# --------------------------------------------------------------------------- round trips
@pytest.mark.parametrize("ext", [".msh", ".vtu", ".xdmf", ".inp"])
def test_round_trip_preserves_cells_and_tags(small_vertebra, mpi_tmp_path, ext, check):
    ref = summary(small_vertebra)
    path = mpi_tmp_path / f"vertebra{ext}"
    save_mesh(small_vertebra, path)
    b = load_mesh(
        path,
        cell_regions=small_vertebra.cell_ids,
        facet_regions=small_vertebra.facet_ids,
        kind="vertebra",
        required_cells=["cortical", "trabecular"],
        required_facets=["superior", "inferior", "endplate_superior"],
    )
    got = summary(b)
    check(got == ref, f"{ext}: {got} != {ref}")
    check(b.kind == "vertebra" and b.source.startswith("file:"), "kind/source")


def test_dolfinx_xdmf_with_meshtags(small_vertebra, mpi_tmp_path, check):
    """An XDMF written by dolfinx.io.XDMFFile (mesh + meshtags grids) is read by dolfinx."""
    import dolfinx

    b = small_vertebra
    path = mpi_tmp_path / "dolfinx.xdmf"
    b.mesh.topology.create_connectivity(2, 3)
    b.cell_tags.name, b.facet_tags.name = "cells", "facets"
    with dolfinx.io.XDMFFile(COMM, str(path), "w") as f:
        f.write_mesh(b.mesh)
        f.write_meshtags(b.cell_tags, b.mesh.geometry)
        f.write_meshtags(b.facet_tags, b.mesh.geometry)
    got = load_mesh(path, cell_regions=b.cell_ids, facet_regions=b.facet_ids, required_facets=["superior"])
    check(summary(got) == summary(b), f"{summary(got)} != {summary(b)}")
    plain = load_mesh(path)
    check(plain.cell_ids == {"tag_1": 1, "tag_2": 2, "tag_3": 3, "tag_4": 4}, f"{plain.cell_ids}")


@pytest.mark.parametrize("ext", [".msh", ".inp"])
def test_round_trip_keeps_names(small_vertebra, mpi_tmp_path, ext, check):
    path = mpi_tmp_path / f"named{ext}"
    save_mesh(small_vertebra, path)
    b = load_mesh(path)
    check(set(b.cell_ids) == set(small_vertebra.cell_ids), f"cell names {b.cell_ids}")
    check(set(b.facet_ids) == set(small_vertebra.facet_ids), f"facet names {b.facet_ids}")
    ref, got = summary(small_vertebra), summary(b)
    for k in small_vertebra.cell_ids:
        check(got[f"cell:{k}"] == ref[f"cell:{k}"], f"{ext} {k}")


def test_unnamed_tags_get_generic_names(small_vertebra, mpi_tmp_path, check):
    path = mpi_tmp_path / "plain.vtu"
    save_mesh(small_vertebra, path)
    b = load_mesh(path)
    check(b.cell_ids == {"tag_1": 1, "tag_2": 2, "tag_3": 3, "tag_4": 4}, f"{b.cell_ids}")
    check("facet_tag_21" in b.facet_ids, f"{b.facet_ids}")


@pytest.mark.parametrize("name, kind, facets", [
    ("femur_default.msh", "femur", ["head_load", "distal", "trochanter", "head_surface"]),
    ("vertebra_default.msh", "vertebra", ["superior", "inferior"]),
])  # fmt: skip
def test_reference_meshes_load(name, kind, facets, check):
    b = load_mesh(ROOT / "meshes" / name, kind=kind, required_cells=["cortical", "trabecular"], required_facets=facets)
    s = summary(b)
    check(s["cells"] > 10_000, f"{name}: {s['cells']} cells")
    check(b.cell_ids == {"cortical": 1, "trabecular": 2}, f"{b.cell_ids}")


def test_reference_femur_matches_the_model(check):
    """The stored femur is the default ProximalFemur: same CAD volume, ROIs attach."""
    from femur.geometry.femur_model import ProximalFemur

    p = ProximalFemur()
    b = load_mesh(ROOT / "meshes" / "femur_default.msh", kind="femur", rois=p.rois(), landmarks=p.landmarks())
    vol = summary(b)["volume"]
    cad = p.cad_volumes()["total"]
    check(abs(vol / cad - 1) < 0.02, f"reference femur volume {vol} vs CAD {cad}")
    n_neck = COMM.allreduce(int(b.roi_mask("neck")[: b.num_owned_cells].sum()))
    check(n_neck > 100, f"neck ROI has {n_neck} cells")
    check(np.allclose(b.landmarks["neck_axis"], p.landmarks()["neck_axis"]), "landmarks")


def test_meshio_gmsh_physical_and_quadratic(mpi_tmp_path, check):
    """A tetra10 .vtu with gmsh:physical data loads as its 4-node corner mesh."""
    import meshio

    path = mpi_tmp_path / "quad.vtu"

    def _w():
        pts = np.vstack([TWO_TETS_PTS, np.random.default_rng(0).random((12, 3)) * 0.01 + 0.3])
        conn = np.hstack([TWO_TETS, np.arange(5, 17).reshape(2, 6)])
        m = meshio.Mesh(pts, [("tetra10", conn)], cell_data={"gmsh:physical": [np.array([7, 8])]})
        meshio.write(path, m)

    on_root(_w)
    b = load_mesh(path, cell_regions={"a": 7, "b": 8}, required_cells=["a", "b"])
    check(b.mesh.geometry.index_map().size_global == 5, "mid-edge nodes not dropped")
    check(abs(summary(b)["volume"] - 0.5) < 1e-6, "volume of two unit tets")


def test_hexahedra_only_when_allowed(mpi_tmp_path, check):
    path = mpi_tmp_path / "hex.vtu"
    # a 2 x 1 x 1 block of unit cubes, VTK node order
    pts = np.array(
        [[0, 0, 0], [1, 0, 0], [1, 1, 0], [0, 1, 0], [0, 0, 1], [1, 0, 1], [1, 1, 1], [0, 1, 1],
         [2, 0, 0], [2, 1, 0], [2, 0, 1], [2, 1, 1]], dtype=float,
    )  # fmt: skip
    hexes = np.array([[0, 1, 2, 3, 4, 5, 6, 7], [1, 8, 9, 2, 5, 10, 11, 6]])
    write_meshio(path, pts, [("hexahedron", hexes)], {"cell_tags": [np.array([1, 2])]})
    with pytest.raises(MeshError, match=r"hex.vtu.*hexahedral"):
        load_mesh(path)
    b = load_mesh(path, allow_hex=True, cell_regions={"left": 1, "right": 2})
    s = summary(b)
    check(s["cells"] == 2 and s["cell:left"] == 1 and abs(s["volume"] - 2.0) < 1e-12, f"{s}")
    # inverted hexahedron (mirror numbering)
    path2 = mpi_tmp_path / "hex_inv.vtu"
    bad = hexes.copy()
    bad[1] = bad[1][[0, 3, 2, 1, 4, 7, 6, 5]]
    write_meshio(path2, pts, [("hexahedron", bad)])
    with pytest.raises(MeshError, match="hex_inv.vtu.*inverted"):
        load_mesh(path2, allow_hex=True)
    b = load_mesh(path2, allow_hex=True, fix_orientation=True)
    check(abs(summary(b)["volume"] - 2.0) < 1e-12, "fixed hex volume")


# ------------------------------------------------------------------------------- errors
def test_missing_file(mpi_tmp_path):
    with pytest.raises(MeshError, match=r"nothere\.vtu.*not found"):
        load_mesh(mpi_tmp_path / "nothere.vtu")


def test_unknown_extension(mpi_tmp_path):
    path = mpi_tmp_path / "bone.stl"
    on_root(lambda: path.write_text("solid x\nendsolid x\n"))
    with pytest.raises(MeshError, match=r"bone\.stl.*unknown mesh file extension"):
        load_mesh(path)


@pytest.mark.parametrize("ext", [".msh", ".vtu", ".inp", ".xdmf"])
def test_empty_file(mpi_tmp_path, ext):
    path = mpi_tmp_path / f"empty{ext}"
    on_root(lambda: path.write_bytes(b""))
    with pytest.raises(MeshError, match=rf"empty\{ext}.*empty"):
        load_mesh(path)


@pytest.mark.parametrize("ext", [".msh", ".vtu", ".inp", ".xdmf"])
def test_garbage_file(mpi_tmp_path, ext, capfd):
    path = mpi_tmp_path / f"garbage{ext}"
    on_root(lambda: path.write_text("this is not a mesh\n1 2 3\n"))
    with pytest.raises(MeshError, match=rf"garbage\{ext}"):
        load_mesh(path)
    out, err = capfd.readouterr()
    assert "Traceback" not in out + err and "rror" not in out + err  # no reader chatter


def test_no_volume_cells(mpi_tmp_path):
    path = mpi_tmp_path / "surface.vtu"
    write_meshio(path, UNIT_TET, [("triangle", np.array([[0, 1, 2], [0, 1, 3]]))])
    with pytest.raises(MeshError, match=r"surface\.vtu.*no volume cells.*triangle"):
        load_mesh(path)


def test_mixed_and_unsupported_cells(mpi_tmp_path):
    path = mpi_tmp_path / "wedge.vtu"
    pts = np.array([[0, 0, 0], [1, 0, 0], [0, 1, 0], [0, 0, 1], [1, 0, 1], [0, 1, 1]], float)
    write_meshio(path, pts, [("wedge", np.array([[0, 1, 2, 3, 4, 5]]))])
    with pytest.raises(MeshError, match=r"wedge\.vtu.*wedge cells are not supported"):
        load_mesh(path)
    path2 = mpi_tmp_path / "mixed.vtu"
    write_meshio(path2, pts, [("wedge", np.array([[0, 1, 2, 3, 4, 5]])), ("tetra", np.array([[0, 1, 2, 3]]))])
    with pytest.raises(MeshError, match=r"mixed\.vtu.*mixed volume cell types"):
        load_mesh(path2)


def test_inverted_tetrahedron_refused_or_fixed(mpi_tmp_path, check):
    path = mpi_tmp_path / "inverted.vtu"
    cells = TWO_TETS.copy()
    cells[1] = cells[1][[0, 2, 1, 3]]
    write_meshio(path, TWO_TETS_PTS, [("tetra", cells)])
    with pytest.raises(MeshError, match=r"inverted\.vtu.*1 of 2 tetrahedra are inverted.*cell 1"):
        load_mesh(path)
    b = load_mesh(path, fix_orientation=True)
    check(abs(summary(b)["volume"] - 0.5) < 1e-6, "volume after fixing")


def test_zero_volume_tetrahedron(mpi_tmp_path):
    path = mpi_tmp_path / "flat.vtu"
    pts = np.vstack([TWO_TETS_PTS, [[0.5, 0.5, 0.0]]])  # node 5 coplanar with 0, 1, 2
    cells = np.vstack([TWO_TETS, [[0, 1, 2, 5]]])
    write_meshio(path, pts, [("tetra", cells)])
    with pytest.raises(MeshError, match=r"flat\.vtu.*zero-volume.*cell 2"):
        load_mesh(path)


def test_nan_coordinates(mpi_tmp_path):
    path = mpi_tmp_path / "nan.vtu"
    pts = TWO_TETS_PTS.copy()
    pts[4, 0] = np.nan
    write_meshio(path, pts, [("tetra", TWO_TETS)])
    with pytest.raises(MeshError, match=r"nan\.vtu.*non-finite"):
        load_mesh(path)


def test_missing_and_empty_required_tags(small_vertebra, mpi_tmp_path):
    path = mpi_tmp_path / "v.msh"
    save_mesh(small_vertebra, path)
    with pytest.raises(MeshError, match=r"v\.msh.*required facet region.*\['distal'\] not found"):
        load_mesh(path, required_facets=["distal"])
    with pytest.raises(MeshError, match=r"v\.msh.*required cell region.*\['bone'\] not found"):
        load_mesh(path, required_cells=["bone"])
    # a name mapped to a tag value that no facet carries
    with pytest.raises(MeshError, match=r"v\.msh.*required facet region 'distal' \(tag 99\) is empty"):
        load_mesh(path, facet_regions={"distal": 99}, required_facets=["distal"])


def test_tagged_facets_must_be_faces(mpi_tmp_path):
    path = mpi_tmp_path / "badfacet.vtu"
    write_meshio(
        path,
        TWO_TETS_PTS,
        [("tetra", TWO_TETS), ("triangle", np.array([[0, 1, 4]]))],  # 0-1-4 is no face
        {"cell_tags": [np.array([1, 1]), np.array([5])]},
    )
    with pytest.raises(MeshError, match=r"badfacet\.vtu.*1 tagged triangle facets.*not faces"):
        load_mesh(path)


def test_xdmf_write_uses_no_compression(small_vertebra, mpi_tmp_path, check):
    path = mpi_tmp_path / "v.xdmf"
    save_mesh(small_vertebra, path)
    ok = True
    if COMM.rank == 0:
        h5 = path.with_suffix(".h5")
        import h5py  # meshio's XDMF writer needs it

        with h5py.File(h5) as f:
            ok = all(f[k].compression is None for k in f)
    check(ok, "compressed datasets in the XDMF's HDF5 file")


def test_save_rejects_unknown_format(small_vertebra, mpi_tmp_path):
    with pytest.raises(MeshError, match="cannot write"):
        save_mesh(small_vertebra, mpi_tmp_path / "v.obj")
