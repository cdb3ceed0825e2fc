"""Safe, quiet and deterministic use of the gmsh API.

gmsh keeps global state (one library per process).  ``gmsh_model()`` opens a fresh,
uniquely named model and leaves gmsh as it found it:

* if gmsh was not initialised, it is initialised without reading the user's gmshrc
  (options from config files would make meshes depend on the machine) and without
  installing gmsh's SIGINT handler, and finalised afterwards;
* if it was already initialised (by the user or another library), only our model is
  removed afterwards, the previous current model is restored and every option we touched
  is set back to its previous value.

Terminal output is off while the model is open; meshing is single threaded, so the
mesh is the same on every run.
"""

from __future__ import annotations

import itertools
import logging
from contextlib import contextmanager

from femur.core.mpi import MPI  # noqa: F401  (MPI before dolfinx)
from femur.core.errors import MeshError

_counter = itertools.count()

# Options that make meshes reproducible and quiet.  Set inside every session.
_BASE_OPTIONS: dict[str, float] = {
    "General.Terminal": 0,
    "General.Verbosity": 0,
    "General.NumThreads": 1,
    "Geometry.OCCParallel": 0,
    "Mesh.MaxNumThreads1D": 1,
    "Mesh.MaxNumThreads2D": 1,
    "Mesh.MaxNumThreads3D": 1,
    "Mesh.RandomSeed": 1,
    "Mesh.ElementOrder": 1,
    "Mesh.SaveAll": 0,
}


@contextmanager
def gmsh_model(name: str = "femur", options: dict[str, float] | None = None):
    """Context manager yielding ``gmsh.model`` set to a new, empty model.

    ``options`` are extra numeric gmsh options for this session (restored on exit).
    """
    import gmsh  # lazy: reading meshes and solving need no gmsh

    was_initialised = bool(gmsh.isInitialized())
    if not was_initialised:
        gmsh.initialize(readConfigFiles=False, interruptible=False)
    previous_model = None
    saved: dict[str, float] = {}
    opts = dict(_BASE_OPTIONS)
    opts.update(options or {})
    model_name = f"{name}-{next(_counter)}"
    try:
        if was_initialised:
            try:
                previous_model = gmsh.model.getCurrent()
            except Exception:  # no current model
                previous_model = None
        for key, value in opts.items():
            try:
                saved[key] = gmsh.option.getNumber(key)
            except Exception:  # option unknown to this gmsh version
                continue
            gmsh.option.setNumber(key, value)
        gmsh.model.add(model_name)
        yield gmsh.model
    finally:
        try:
            gmsh.model.setCurrent(model_name)
            gmsh.model.remove()
        except Exception:
            pass
        if was_initialised:
            for key, value in saved.items():
                try:
                    gmsh.option.setNumber(key, value)
                except Exception:
                    pass
            if previous_model:
                try:
                    gmsh.model.setCurrent(previous_model)
                except Exception:
                    pass
        else:
            gmsh.finalize()



def mesh_on_rank0(comm, builder, name: str, options: dict[str, float] | None = None):
    """Run ``builder(gmsh.model)`` on rank 0 of ``comm`` and distribute the mesh.

    ``builder`` creates the geometry, meshes it and adds physical groups; whatever it
    returns (picklable) is broadcast to all ranks.  Returns ``(MeshData, info)``.
    An exception on rank 0 is re-raised on every rank (no rank is left waiting).
    """
    from dolfinx.io.gmsh import model_to_mesh  # DOLFINx only when a mesh is built (gmsh_model: lazy gmsh)

    if comm.rank == 0:
        with gmsh_model(name, options) as model:
            error, info = None, None
            try:
                info = builder(model)
            except Exception as exc:  # noqa: BLE001  -- reported collectively below
                error = exc
            comm.bcast((None if error is None else error, info), root=0)
            if error is not None:
                raise error
            data = model_to_mesh(model, comm, 0, gdim=3)
    else:
        error, info = comm.bcast(None, root=0)
        if error is not None:
            if isinstance(error, Exception):
                raise error
            raise MeshError(str(error))
        data = model_to_mesh(None, comm, 0, gdim=3)
    return data, info


def log_build(comm, what: str, mesh, seconds: float) -> None:
    """Log the size of a freshly built mesh (rank 0 only)."""
    if comm.rank == 0:
        n = mesh.topology.index_map(0).size_global
        logging.getLogger("femur.geometry").info(
            "%s: %d nodes (%d P1 DOFs), %d cells, built in %.2f s",
            what, n, 3 * n, mesh.topology.index_map(mesh.topology.dim).size_global, seconds,
        )
