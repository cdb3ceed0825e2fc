"""MPI-safe pytest helpers.

* every test ends with gc.collect() and a barrier, so PETSc objects are freed
  collectively and one rank never runs ahead;
* ``mpi_tmp_path`` is rank 0's tmp_path broadcast to all ranks;
* ``assert_all_ranks(cond, msg)`` agrees on a verdict across ranks before
  asserting, so one failing rank cannot hang the others.
"""

from __future__ import annotations

import gc
import os

os.environ.setdefault("PYVISTA_OFF_SCREEN", "true")
os.environ.setdefault("MPLBACKEND", "Agg")

import pytest  # noqa: E402

import femur  # noqa: E402,F401  (MPI before dolfinx)
from mpi4py import MPI  # noqa: E402


@pytest.fixture(autouse=True)
def _mpi_cleanup():
    yield
    gc.collect()
    MPI.COMM_WORLD.barrier()


@pytest.fixture
def comm():
    return MPI.COMM_WORLD


@pytest.fixture
def mpi_tmp_path(tmp_path):
    import pathlib

    path = MPI.COMM_WORLD.bcast(str(tmp_path) if MPI.COMM_WORLD.rank == 0 else None, root=0)
    return pathlib.Path(path)


def all_ranks(cond: bool, comm=MPI.COMM_WORLD) -> bool:
    """True only if `cond` holds on every rank (collective)."""
    return bool(comm.allreduce(bool(cond), op=MPI.LAND))


def assert_all_ranks(cond: bool, msg: str = "", comm=MPI.COMM_WORLD) -> None:
    ok = all_ranks(cond, comm)
    assert ok, f"failed on at least one rank: {msg}"


@pytest.fixture
def check():
    return assert_all_ranks


def pytest_collection_modifyitems(config, items):
    """Tests marked ``serial`` run on one rank only: under ``mpiexec -n N`` (N > 1) they are
    skipped, whether or not the run deselects them with ``-m "not serial"``. Tests marked
    ``partition`` compare a run on all ranks with a one-rank (COMM_SELF) run of the same
    model: on one rank both are the same run, so they are skipped there."""
    if MPI.COMM_WORLD.size == 1:
        marker, reason = "partition", ("partition test: on one rank both runs are the same run; "
                                       "it runs under mpiexec -n 2")
    else:
        marker, reason = "serial", f"serial test: runs on one MPI rank, not {MPI.COMM_WORLD.size}"
    skip = pytest.mark.skip(reason=reason)
    for item in items:
        if item.get_closest_marker(marker) is not None:
            item.add_marker(skip)


@pytest.fixture
def without_surrogate_fit(tmp_path, monkeypatch):
    """The package's data files without the strength surrogate's fit (``FEMUR_DATA_DIR``
    points to a copy of this process's own), for tests of what a run does before it is fitted."""
    import shutil

    from femur.core.datafiles import DATA_DIR
    from femur.mechanics.surrogate import DATA_FILE

    d = tmp_path / "data_without_surrogate"
    shutil.copytree(DATA_DIR, d, ignore=shutil.ignore_patterns(DATA_FILE))
    monkeypatch.setenv("FEMUR_DATA_DIR", str(d))
    return d
