"""The `Bone`: the object every stage of femur passes along.

Units: lengths in mm, density in g/cm3 (apparent, wet), modulus in MPa, force in N.

Contract (shared by geometry, materials, mechanics, remodeling, CT and study code):

* ``mesh``        dolfinx tetrahedral (or hexahedral, CT voxel) mesh, coordinates in mm,
                  distributed over ``mesh.comm``.
* ``cell_tags``   MeshTags on cells: *compartments* (one integer per cell), named by
                  ``cell_ids`` -- e.g. {"cortical": 1, "trabecular": 2} for the parametric
                  bones, or CT labels {"trabecular": 1, "cortical": 2, ..., "pmma_top": 5}.
* ``facet_tags``  MeshTags on boundary facets, named by ``facet_ids`` -- e.g. femur:
                  "head_load", "distal", "trochanter"; vertebra: "superior", "inferior".
* ``rois``        regions of interest that may overlap compartments, as geometric
                  predicates on points (mm): ``roi(x) -> bool array`` with x shape (3, n).
                  E.g. femur "neck", "head", "shaft", "greater_trochanter"; vertebra
                  "centrum". Predicates make ROIs independent of the MPI partition.
* ``landmarks``   named points and unit vectors in mm, e.g. "head_center", "shaft_axis"
                  (unit, pointing proximally), "neck_axis" (unit, from neck base to head),
                  "trochanter_point", "distal_center", "superior_center", "inferior_center",
                  "axis" (vertebra cranio-caudal unit vector).
* ``density``     DG0 dolfinx Function of apparent density (g/cm3) or None until assigned.
* ``parameters``  the parameters that generated the bone (for case records).
* ``derived``     data computed from the geometry alone (ROI masks, DXA projections), kept
                  by :meth:`Bone.cached` and shared by the bone's copies: each entry is
                  checked against the objects it was computed from (mesh, cell tags, ...),
                  so a copy with another mesh computes its own.
"""

from __future__ import annotations

import copy as _copy
import dataclasses
from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from femur.core.mpi import MPI  # noqa: F401  (import order: MPI before dolfinx)
import dolfinx  # noqa: E402

from femur.geometry._cellgeom import cell_volumes  # noqa: E402

ROI = Callable[[np.ndarray], np.ndarray]


@dataclass
class Bone:
    name: str
    kind: str  # "femur" | "vertebra" | "generic"
    mesh: "dolfinx.mesh.Mesh"
    cell_tags: "dolfinx.mesh.MeshTags | None" = None
    facet_tags: "dolfinx.mesh.MeshTags | None" = None
    cell_ids: dict[str, int] = field(default_factory=dict)
    facet_ids: dict[str, int] = field(default_factory=dict)
    rois: dict[str, ROI] = field(default_factory=dict)
    landmarks: dict[str, np.ndarray] = field(default_factory=dict)
    parameters: dict = field(default_factory=dict)
    source: str = "parametric"
    density: "dolfinx.fem.Function | None" = None
    derived: dict = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def from_mesh_data(cls, data, **kw) -> "Bone":
        """A Bone on a DOLFINx ``MeshData`` (mesh, cell and facet tags); ``kw``: the rest."""
        return cls(mesh=data.mesh, cell_tags=data.cell_tags, facet_tags=data.facet_tags, **kw)

    # ------------------------------------------------------------------ helpers
    def cached(self, key, build: Callable, depends=()):
        """``build()`` once per geometry: the value stored under ``key`` is reused while the
        bone (or a copy of it) still has the same mesh, cell tags and ``depends`` objects
        (compared by identity), else computed again. Only for data that does not depend on
        the density. Collective when ``build`` is: every rank of a bone sees the same
        history, so all ranks hit or miss together."""
        deps = (self.mesh, self.cell_tags, *depends)
        hit = self.derived.get(key)
        if hit is not None and len(hit[0]) == len(deps) and all(a is b for a, b in zip(hit[0], deps)):
            return hit[1]
        value = build()
        self.derived[key] = (deps, value)
        return value

    def copy(self) -> "Bone":
        """A copy that shares the (immutable) mesh, tags, ROIs and landmarks but owns its
        density Function and parameters: changing the copy's density leaves this bone as
        it is (a simulation works on a copy of the bones it is given)."""
        density = None
        if self.density is not None:
            density = dolfinx.fem.Function(self.density.function_space, name=self.density.name)
            density.x.array[:] = self.density.x.array
        return dataclasses.replace(self, density=density, parameters=_copy.deepcopy(self.parameters))

    @property
    def comm(self):
        return self.mesh.comm

    @property
    def num_local_cells(self) -> int:
        """Owned + ghost cells on this rank (the length of DG0 arrays)."""
        im = self.mesh.topology.index_map(self.mesh.topology.dim)
        return im.size_local + im.num_ghosts

    @property
    def num_owned_cells(self) -> int:
        return self.mesh.topology.index_map(self.mesh.topology.dim).size_local

    def cell_midpoints(self) -> np.ndarray:
        """Midpoints (mm) of all local cells (owned + ghost), shape (n, 3): computed once
        per geometry (:meth:`cached`), a copy each call."""
        def build():
            tdim = self.mesh.topology.dim
            cells = np.arange(self.num_local_cells, dtype=np.int32)
            return dolfinx.mesh.compute_midpoints(self.mesh, tdim, cells)

        return self.cached("cell_midpoints", build).copy()

    def cell_volumes(self) -> np.ndarray:
        """Volumes (mm3) of all local cells (owned + ghost): computed once per geometry
        (:meth:`cached`; a DG0 form is compiled and assembled for them, a few ms that the
        strength criterion paid at every strength solve), a copy each call."""
        return self.cached("cell_volumes", lambda: cell_volumes(self.mesh)).copy()

    def compartment_mask(self, name: str) -> np.ndarray:
        """Boolean mask over local cells for a compartment in ``cell_ids``."""
        if name not in self.cell_ids:
            raise KeyError(
                f"bone '{self.name}' has no compartment '{name}'; it has {sorted(self.cell_ids)}"
            )
        mask = np.zeros(self.num_local_cells, dtype=bool)
        if self.cell_tags is not None:
            sel = self.cell_tags.indices[self.cell_tags.values == self.cell_ids[name]]
            mask[sel] = True
        return mask

    def roi_mask(self, name: str) -> np.ndarray:
        """Boolean mask over local cells whose midpoint lies in ROI ``name``.

        Compartment names are accepted too, so callers can ask for either.
        """
        if name in self.rois:
            pred = self.rois[name]
            mask = self.cached(("roi_mask", name),
                               lambda: np.asarray(pred(self.cell_midpoints().T), dtype=bool), (pred,))
            return mask.copy()
        if name in self.cell_ids:
            return self.compartment_mask(name)
        raise KeyError(
            f"bone '{self.name}' has no region '{name}'; ROIs {sorted(self.rois)}, "
            f"compartments {sorted(self.cell_ids)}"
        )
