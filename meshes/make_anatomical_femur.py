"""Regenerate the anatomical femur reference meshes from the Visible Human femur surface.

    .venv/bin/python meshes/make_anatomical_femur.py            # both shipped meshes
    .venv/bin/python meshes/make_anatomical_femur.py --mesh-size 2.0 --out /tmp/femur2

Input: ``FemurR.obj`` (Visible Human female right femur, Bone Mesh Female Toolkit v1.0,
(c) 2017 Manish Sreenivasa and Daniel Gonzalez Alvarado, Heidelberg University, zlib
licence), by default ``../shared/data/visible-human-femur/FemurR.obj`` next to this
repository (``--obj`` or ``FEMUR_VH_FEMUR_OBJ`` to point elsewhere).

Output per mesh size: ``<name>.msh`` (gmsh MSH 4.1, ASCII, physical groups with names, a
``$Comments`` section marking the file as an ALTERED version of the original and naming
its origin and licence) and ``<name>.json`` (reference landmarks, region parameters,
cortical thicknesses, measured anatomy, mesh statistics, provenance).  The shipped sizes
(no ``--mesh-size``) are 3.0 mm (``anatomical_femur_default``) and 4.0 mm
(``anatomical_femur_trial``).  Steps: ``femur/geometry/anatomical_build.py``.  gmsh
meshing is single threaded with fixed options, so a rerun with the same gmsh version
writes the same files.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import pathlib
import sys
import time

import femur  # noqa: F401  (MPI before dolfinx)
from femur.geometry import anatomical_build as B
from femur.geometry.anatomical import SHIPPED
from femur.geometry._gmsh_util import gmsh_model

HERE = pathlib.Path(__file__).resolve().parent
DEFAULT_OBJ = HERE.parent.parent / "shared" / "data" / "visible-human-femur" / "FemurR.obj"
SURFACE_SIZE_RATIO = 0.85  # periosteal/endosteal triangle size / mesh_size_mm

SOURCE = {
    "name": "Visible Human female right femur (FemurR.obj)",
    "toolkit": "Bone Mesh Female Toolkit v1.0",
    "copyright": "Copyright (c) 2017 Manish Sreenivasa and Daniel Gonzalez Alvarado, Heidelberg University",
    "licence": "zlib (meshes/LICENSE.visible-human-femur)",
    "reference": "Sreenivasa M., Gonzalez-Alvarado D., High-resolution computer meshes of the lower "
                 "body bones of an adult human female derived from CT images",
    "altered": "ALTERED: scaled from m to mm, mirrored to a left femur, moved into the femur frame, "
               "cut 2.5 head diameters below the head centre, remeshed, given a cortical shell of "
               "variable thickness and filled with tetrahedra by the femur project "
               "(meshes/make_anatomical_femur.py); not the original surface",
}


def comments(ref: dict, h: float) -> str:
    a = ref["anatomy"]
    lines = [
        "ALTERED VERSION -- not the original mesh.",
        f"Derived from: {SOURCE['name']}, {SOURCE['toolkit']}.",
        SOURCE["copyright"] + ". Licensed under the zlib licence (see LICENSE.visible-human-femur).",
        "Reference: " + SOURCE["reference"] + ".",
        "Changes: " + SOURCE["altered"] + ".",
        f"Units mm. Frame: z shaft axis (proximal), x medial, y anterior; distal cut z = 0. mesh_size_mm {h:g}.",
        f"Head diameter {a['head_diameter_mm']:.1f} mm, neck-shaft angle {a['neck_shaft_angle_deg']:.1f} deg, "
        f"anteversion {a['anteversion_deg']:.1f} deg.",
        "Physical groups: cortical 1, trabecular 2, head_load 11, distal 12, trochanter 13, "
        "head_surface 14, endocortical 15, abductor 16.",
    ]
    return "$Comments\n" + "\n".join(lines) + "\n$EndComments\n"


def make(obj: pathlib.Path, h: float, out: pathlib.Path, name: str, cut: float) -> dict:
    import gmsh

    t0 = time.perf_counter()
    surf = B.read_surface(obj, units="m")
    src = dict(SOURCE, obj_sha256=hashlib.sha256(obj.read_bytes()).hexdigest(), obj_file=obj.name)
    whole, ref = B.build_reference(surf, cut_head_diameters=cut, source=src)
    B.check_reference(ref)
    prox = B.cut_proximal(whole)
    hs = SURFACE_SIZE_RATIO * h
    outer = B.remesh(prox, hs)
    layers = B.layers(outer, ref)
    opts = {"Mesh.MeshSizeMax": h, "Mesh.Algorithm3D": 1, "Mesh.Optimize": 1,
            "Mesh.MshFileVersion": 4.1, "Mesh.Binary": 0}
    msh = out / f"{name}.msh"
    with gmsh_model("anatomical-femur", opts) as model:
        stats = B.mesh_volume(model, layers, ref)
        gmsh.write(str(msh))
    text = msh.read_text()
    i = text.index("$EndMeshFormat\n") + len("$EndMeshFormat\n")
    msh.write_text(text[:i] + comments(ref, h) + text[i:])
    ref["mesh"] = dict(stats, mesh_size_mm=h, surface_size_mm=hs, p1_dofs=3 * stats["nodes"],
                       tetrahedra=stats["cortical_tets"] + stats["trabecular_tets"],
                       proximal_volume_mm3=float(prox.volume()), gmsh=gmsh.__version__,
                       file=msh.name)
    (out / f"{name}.json").write_text(json.dumps(ref, indent=1) + "\n")
    return dict(ref["mesh"], seconds=round(time.perf_counter() - t0, 1))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--obj", default=os.environ.get("FEMUR_VH_FEMUR_OBJ", str(DEFAULT_OBJ)))
    ap.add_argument("--mesh-size", type=float, default=None, help="mm (default: the shipped sizes)")
    ap.add_argument("--out", default=str(HERE))
    ap.add_argument("--name", default="anatomical_femur")
    ap.add_argument("--cut-head-diameters", type=float, default=2.5)
    args = ap.parse_args(argv)
    obj = pathlib.Path(args.obj)
    if not obj.is_file():
        print(f"error: {obj} not found (pass --obj or set FEMUR_VH_FEMUR_OBJ)", file=sys.stderr)
        return 2
    out = pathlib.Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    jobs = ([(args.mesh_size, args.name)] if args.mesh_size is not None
            else [(h, pathlib.Path(f).stem) for h, f in SHIPPED.items()])
    summary = {}
    for h, name in jobs:
        summary[name] = make(obj, float(h), out, name, args.cut_head_diameters)
        print(f"wrote {out / name}.msh: {json.dumps(summary[name])}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
