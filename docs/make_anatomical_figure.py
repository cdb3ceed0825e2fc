"""Figure of the anatomical femur (docs/figures/anatomical_femur.png), serial, off-screen.

    PYVISTA_OFF_SCREEN=true .venv/bin/python docs/make_anatomical_figure.py

Panels: (a) the outer surface with the load/support facet regions (anterior view);
(b) a section in the plane of the neck and shaft axes, cortical shell vs trabecular core;
(c) the same section coloured by ROI; (d) the reference femur and a morphed one
(`FemurShape`), frontal view.
"""

from __future__ import annotations

import os
import pathlib
import sys

os.environ.setdefault("PYVISTA_OFF_SCREEN", "true")

import numpy as np  # noqa: E402

import femur  # noqa: E402,F401
from femur.core.mpi import MPI  # noqa: E402
import dolfinx  # noqa: E402
import dolfinx.plot  # noqa: E402
import pyvista as pv  # noqa: E402

from femur.geometry.anatomical import AnatomicalFemur, FemurShape  # noqa: E402

OUT = pathlib.Path(__file__).resolve().parent / "figures" / "anatomical_femur.png"
MORPH = FemurShape(scale=0.93, head_radius_mm=21.0, neck_length_mm=50.0, neck_width_mm=30.0,
                   neck_shaft_angle_deg=130.0, anteversion_deg=20.0)
ROI_ORDER = ("shaft", "intertrochanteric", "lesser_trochanter", "greater_trochanter", "neck", "head")


def grid_of(bone) -> pv.UnstructuredGrid:
    cells, types, x = dolfinx.plot.vtk_mesh(bone.mesh, 3)
    g = pv.UnstructuredGrid(cells, types, x)
    n = bone.num_local_cells
    comp = np.zeros(n)
    comp[bone.compartment_mask("cortical")] = 1
    g.cell_data["cortical"] = comp
    roi = np.zeros(n)
    for k, name in enumerate(ROI_ORDER, start=1):
        roi[bone.roi_mask(name)] = k
    g.cell_data["roi"] = roi
    return g


def facet_surface(bone) -> pv.PolyData:
    mesh = bone.mesh
    mesh.topology.create_connectivity(2, 3)
    ext = dolfinx.mesh.exterior_facet_indices(mesh.topology)
    g = dolfinx.mesh.entities_to_geometry(mesh, 2, ext)
    surf = pv.PolyData.from_regular_faces(mesh.geometry.x, g)
    tag = np.zeros(len(ext))
    ft = bone.facet_tags
    lookup = dict(zip(ft.indices.tolist(), ft.values.tolist()))
    names = {11: 1, 14: 2, 13: 3, 12: 4, 16: 5}
    for i, f in enumerate(ext):
        tag[i] = names.get(lookup.get(int(f), 0), 0)
    surf.cell_data["region"] = tag
    return surf


def labels(p, items) -> None:
    """Coloured labels stacked in the lower left of the current subplot."""
    for k, (text, color) in enumerate(reversed(items)):
        p.add_text(text, position=(12, 16 + 21 * k), color=color, font_size=10)


def main() -> int:
    if MPI.COMM_WORLD.size > 1:
        print("run serially", file=sys.stderr)
        return 2
    bone = AnatomicalFemur().build()
    morphed = AnatomicalFemur(shape=MORPH).build()
    C = bone.landmarks["head_center"]
    n = bone.landmarks["neck_axis"]
    normal = np.cross([0.0, 0.0, 1.0], n)
    normal /= np.linalg.norm(normal)  # perpendicular to the plane of the neck and shaft axes
    g = grid_of(bone)
    if normal[1] < 0:
        normal = -normal  # toward anterior
    half = g.clip(normal=normal, origin=C, crinkle=True)  # keeps the posterior half
    cam_dir = normal
    centre = np.array([10.0, 0.0, 75.0])
    cam = [tuple(centre + 420 * np.array([0.0, 1.0, 0.0])), tuple(centre), (0, 0, 1)]
    cam_sec = [tuple(centre + 420 * cam_dir), tuple(centre), (0, 0, 1)]
    p = pv.Plotter(shape=(1, 4), window_size=(2000, 760), border=False)
    p.subplot(0, 0)
    cmap = ["#e8dcc4", "#d62728", "#9ecae1", "#ff7f0e", "#7f7f7f", "#2ca02c"]
    p.add_mesh(facet_surface(bone), scalars="region", cmap=cmap, clim=[-0.5, 5.5], show_scalar_bar=False)
    p.add_text("(a) facet regions (anterior view)", font_size=11)
    labels(p, [("head_load", cmap[1]), ("head_surface", cmap[2]), ("trochanter", cmap[3]),
               ("abductor", cmap[5]), ("distal", cmap[4])])
    p.camera_position = cam
    p.subplot(0, 1)
    p.add_mesh(half, scalars="cortical", cmap=["#f2e6c9", "#8c510a"], show_edges=True, edge_color="#555555",
               line_width=0.3, show_scalar_bar=False)
    p.add_text("(b) section through the neck axis:\ncortical shell (dark), trabecular core", font_size=11)
    p.camera_position = cam_sec
    p.subplot(0, 2)
    colors = ["#eeeeee", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2"]
    p.add_mesh(half, scalars="roi", cmap=colors, clim=[-0.5, 6.5], show_scalar_bar=False)
    p.add_text("(c) ROIs on the same section", font_size=11)
    labels(p, [(name, colors[k]) for k, name in enumerate(ROI_ORDER, start=1)] + [("no ROI", "#aaaaaa")])
    p.camera_position = cam_sec
    p.subplot(0, 3)
    p.add_mesh(facet_surface(bone), color="#bbbbbb", opacity=0.35)
    p.add_mesh(facet_surface(morphed), color="#3182bd", opacity=0.7)
    a = morphed.parameters["anatomy"]
    p.add_text(f"(d) reference (grey) and a morph (blue):\nNSA {a['neck_shaft_angle_deg']:.0f}, "
               f"anteversion {a['anteversion_deg']:.0f} deg, head {2 * a['head_radius_mm']:.0f} mm, "
               f"scale {MORPH.scale}", font_size=11)
    p.camera_position = cam
    OUT.parent.mkdir(parents=True, exist_ok=True)
    p.screenshot(str(OUT))
    print(f"wrote {OUT}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
