"""MPI batch runs: identical results for any rank count and group size.

``test_identical_for_any_rank_count`` launches ``mpiexec -n 1`` and ``mpiexec -n 2``
(with group sizes 1 and 2) from a serial test and compares the output files byte for
byte.  ``test_group_communicator`` runs inside ``mpiexec -n 2 pytest --with-mpi``.
The evaluator is the closed-form test double of ``tests/test_study.py``.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from mpi4py import MPI

from femur.study import run_study_cli

TESTS_DIR = Path(__file__).resolve().parent
FILES = ("results.csv", "summary.json", "summary.txt")


def _mpiexec() -> str | None:
    cand = Path(sys.executable).parent / "mpiexec"
    return str(cand) if cand.exists() else shutil.which("mpiexec")


def _launch(n: int, out: Path, group_size: int = 1) -> None:
    script = (
        "import sys; sys.path.insert(0, %r)\n"
        "from femur.study import run_study_cli\n"
        "run_study_cli('frame', patients=3, out=%r, group_size=%d,\n"
        "              evaluator='test_study:synthetic_evaluator', json_output=True)\n"
    ) % (str(TESTS_DIR), str(out), group_size)
    env = dict(os.environ, MPLBACKEND="Agg", OMP_NUM_THREADS="1")
    proc = subprocess.run(
        [_mpiexec(), "-n", str(n), sys.executable, "-c", script], env=env, capture_output=True, timeout=300
    )
    assert proc.returncode == 0, proc.stderr.decode()[-3000:]
    # --json prints exactly one JSON object (from rank 0 only)
    summary = json.loads(proc.stdout.decode())
    assert [a["arm"] for a in summary["arms"]] == ["placebo", "romosozumab"]


@pytest.mark.serial
@pytest.mark.skipif(_mpiexec() is None, reason="no mpiexec")
def test_identical_for_any_rank_count(tmp_path):
    runs = {"n1": (1, 1), "n2": (2, 1), "n2g2": (2, 2)}
    for name, (n, g) in runs.items():
        _launch(n, tmp_path / name, g)
    for name in ("n2", "n2g2"):
        for f in FILES:
            assert (tmp_path / name / f).read_bytes() == (tmp_path / "n1" / f).read_bytes(), (name, f)
    # the case files differ only in the recorded group size (the evaluator's extra key)
    for p in (tmp_path / "n1" / "cases").glob("*.json"):
        a = json.loads(p.read_text())
        b = json.loads((tmp_path / "n2g2" / "cases" / p.name).read_text())
        assert a["record"] == b["record"]
        for va, vb in zip(a["result"]["visits"], b["result"]["visits"]):
            assert va["extra"]["group_size"] == 1 and vb["extra"]["group_size"] == 2
            va.pop("extra"), vb.pop("extra")
        assert a["result"] == b["result"]


@pytest.mark.mpi(min_size=2)
def test_group_communicator(mpi_tmp_path):
    comm = MPI.COMM_WORLD
    seen = []

    def evaluator(record, comm):
        seen.append(comm.size)
        # a collective inside the case: must see exactly the group's ranks
        total = comm.allreduce(1)
        assert total == comm.size
        from test_study import synthetic_evaluator

        return synthetic_evaluator(record, comm)

    sys.path.insert(0, str(TESTS_DIR))
    try:
        s1 = run_study_cli("frame", patients=2, out=mpi_tmp_path / "g1", evaluator=evaluator, json_output=True)
        s2 = run_study_cli(
            "frame", patients=2, out=mpi_tmp_path / "g2", group_size=comm.size, evaluator=evaluator, json_output=True
        )
    finally:
        sys.path.remove(str(TESTS_DIR))
    assert set(seen) <= {1, comm.size}
    assert comm.size in seen
    ok = True
    if comm.rank == 0:
        ok = s1 == s2 and all(
            (mpi_tmp_path / "g1" / f).read_bytes() == (mpi_tmp_path / "g2" / f).read_bytes() for f in FILES
        )
    assert comm.bcast(ok, root=0)
