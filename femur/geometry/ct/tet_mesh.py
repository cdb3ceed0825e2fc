"""Smooth tetrahedral meshes of a segmented volume, through gmsh.

Pipeline (rank 0):

1. union mask of all meshed labels (bone + loading layers), resampled to the target
   element size ``size_mm`` (linear interpolation of the 0/1 mask) and lightly smoothed
   (Gaussian, sigma 0.5 target voxel) so the iso-surface has no voxel staircase;
2. iso-surface at 0.5 with VTK's contour filter (pyvista), largest connected piece kept,
   transformed to world coordinates with the image affine;
3. gmsh fills the closed triangulated surface with tetrahedra (the surface triangles are
   kept; ``Mesh.MeshSizeMax`` = ``size_mm`` inside).

Only the union is meshed: gmsh gets one closed surface.  Labels (trabecular, cortical,
posterior elements, layers) are mapped afterwards per element, by the voxel containing
the element centroid (nearest labelled voxel if that one is background), so region
interfaces are jagged at the element scale.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from femur.core.errors import InputError, MeshError


def union_surface(mask: np.ndarray, affine: np.ndarray, size_mm: float):
    """Closed triangulated iso-surface (points (n,3) world mm, triangles (m,3))."""
    import pyvista as pv

    spacing = np.linalg.norm(affine[:3, :3], axis=0)
    zoom = spacing / float(size_mm)
    m = np.pad(mask.astype(float), 2)
    if np.allclose(zoom, 1.0):
        mz = m
    else:
        mz = ndimage.zoom(m, zoom, order=1, mode="nearest", grid_mode=True)
    mz = ndimage.gaussian_filter(mz, 0.5)
    grid = pv.ImageData(dimensions=mz.shape)
    grid.point_data["m"] = mz.ravel(order="F")
    surf = grid.contour([0.5], scalars="m", method="flying_edges")
    if surf.n_cells == 0:
        raise InputError("the label mask is empty: no surface to mesh")
    surf = surf.triangulate().clean().connectivity("largest").clean()
    # zoomed index -> original (padded) index -> world
    f = np.array(mz.shape, float) / np.array(m.shape, float)  # grid_mode zoom factor
    idx = (np.asarray(surf.points, float) + 0.5) / f - 0.5 - 2.0
    pts = idx @ affine[:3, :3].T + affine[:3, 3]
    tri = np.asarray(surf.faces).reshape(-1, 4)[:, 1:]
    return pts, tri


def tet_mesh_arrays(mask: np.ndarray, affine: np.ndarray, size_mm: float,
                    verbose: bool = False):
    """Tetrahedral mesh of the region ``mask`` (on rank 0): nodes (N,3) mm, tets (M,4)."""
    import gmsh

    pts, tri = union_surface(mask, affine, size_mm)
    initialized_here = not gmsh.isInitialized()
    if initialized_here:
        gmsh.initialize(interruptible=False)
    try:
        gmsh.option.setNumber("General.Terminal", 1 if verbose else 0)
        gmsh.model.add("ct_union")
        s = gmsh.model.addDiscreteEntity(2)
        node_tags = np.arange(1, len(pts) + 1)
        gmsh.model.mesh.addNodes(2, s, node_tags, pts.ravel())
        gmsh.model.mesh.addElementsByType(s, 2, [], (tri + 1).ravel())
        loop = gmsh.model.geo.addSurfaceLoop([s])
        gmsh.model.geo.addVolume([loop])
        gmsh.model.geo.synchronize()
        gmsh.option.setNumber("Mesh.MeshSizeMax", float(size_mm))
        gmsh.option.setNumber("Mesh.MeshSizeMin", 0.2 * float(size_mm))
        gmsh.option.setNumber("Mesh.Algorithm3D", 10)  # HXT (parallel Delaunay)
        gmsh.option.setNumber("Mesh.Optimize", 1)
        gmsh.model.mesh.generate(3)
        tags, coords, _ = gmsh.model.mesh.getNodes()
        etypes, _, enodes = gmsh.model.mesh.getElements(3)
        if 4 not in list(etypes):
            raise MeshError("gmsh produced no tetrahedra for the segmented surface")
        tets = np.asarray(enodes[list(etypes).index(4)], dtype=np.int64).reshape(-1, 4)
    except MeshError:
        raise
    except Exception as exc:
        raise MeshError(f"gmsh could not mesh the segmented surface ({exc})") from None
    finally:
        gmsh.model.remove()
        if initialized_here:
            gmsh.finalize()
    tags = np.asarray(tags, dtype=np.int64)
    coords = np.asarray(coords).reshape(-1, 3)
    used = np.unique(tets)
    lookup = np.full(tags.max() + 1, -1, dtype=np.int64)
    lookup[tags] = np.arange(len(tags))
    keep = lookup[used]
    remap = np.full(tags.max() + 1, -1, dtype=np.int64)
    remap[used] = np.arange(len(used))
    nodes = coords[keep]
    cells = remap[tets]
    # positive orientation for dolfinx
    x = nodes[cells]
    vol = np.einsum("ij,ij->i", np.cross(x[:, 1] - x[:, 0], x[:, 2] - x[:, 0]), x[:, 3] - x[:, 0])
    neg = vol < 0
    cells[neg] = cells[neg][:, [1, 0, 2, 3]]
    return nodes, cells
