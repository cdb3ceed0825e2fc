"""Regenerate the reference meshes in this folder (serial; a few seconds).

    .venv/bin/python meshes/make_reference.py

Writes ``femur_default.msh`` and ``vertebra_default.msh`` (gmsh MSH 4.1, ASCII) from the
default parameters of `femur.geometry.ProximalFemur` and `Vertebra`, with their physical
groups (cell compartments and facet regions, with names).  Mesh generation is
deterministic, so rerunning with the same gmsh version rewrites identical files.
"""

from __future__ import annotations

import json
import pathlib
import sys

import femur  # noqa: F401  (MPI before dolfinx)
from femur.geometry.femur_model import ProximalFemur
from femur.geometry.vertebra import Vertebra

HERE = pathlib.Path(__file__).resolve().parent


def main() -> int:
    import gmsh

    summary = {"gmsh": gmsh.__version__}
    for name, model in (("femur_default", ProximalFemur()), ("vertebra_default", Vertebra())):
        path = HERE / f"{name}.msh"
        model.write_msh(path)
        summary[name] = {"file": path.name, "bytes": path.stat().st_size}
        print(f"wrote {path} ({path.stat().st_size / 1e6:.2f} MB)")
    print(json.dumps(summary, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
