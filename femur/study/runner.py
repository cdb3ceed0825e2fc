"""MPI batch runner: rank groups, atomic case files, resume, progress.

* ``COMM_WORLD`` is split into groups of ``group_size`` consecutive ranks
  (``comm.Split(color=rank // group_size)``); the evaluator of a case gets its group's
  communicator, so a case can itself run in parallel.
* Dynamic scheduling (default, issue 13): the pending cases are grouped into work units,
  the cases of one patient (all its arms, in case order; records without a patient are
  units of one), and the groups take the units in order from a shared work queue as they
  become free: group rank 0 claims the next unclaimed unit by creating
  ``out/.claims/<unit>`` exclusively (``O_CREAT | O_EXCL``: exactly one group wins each
  unit) and tells its group. Cheap and dear cases thus spread over the groups without a
  static deal's idle tail, and a patient's arms run on one group, which builds the
  patient's bones once (``femur.study.evaluator.bone_cache``). ``schedule="static"``
  deals the pending cases round-robin in case order instead (as before issue 13). Each
  case is self-contained and seeded, so the results do not depend on the schedule, the
  number of ranks or groups.
* After the run world rank 0 writes ``out/schedule.json``: per rank its group, cases,
  busy seconds (evaluating and writing its cases) and idle seconds (the rest of the run's
  wall time: waiting for work or for the other groups at the end), and logs the idle time.
* Group rank 0 writes each finished case to ``out/cases/<case_id>.json`` atomically
  (temporary file in the same folder, fsync, ``os.replace``): a killed run loses at most
  the cases in flight, never leaves a half-written case file.
* ``resume=True`` skips the cases whose file exists and whose stored record equals the
  current one.  The final table is always built from the case files, so a resumed run is
  bit-identical to an uninterrupted one.
* A case whose evaluator raises a femur error (:class:`femur.core.errors.FemurError`: bad
  input such as a scan that cannot be read or simulated, or a solve that did not converge)
  is reported and the study goes on: group rank 0 writes ``out/failed/<case_id>.json``
  (the record and the error), the results and the summary say which case failed and why.
  Any other exception (a bug), and a result the evaluator returns in a wrong format, still
  stop the study once every case has run, as before. Failed cases have no case file, so a
  resumed run tries them again.
* World rank 0 prints a progress line after each case it finishes (counting the case
  and failure files of all groups).

The same code runs under any MPI launcher (``mpiexec``, ``srun``, ``aprun``), as long as
``out`` is on a file system that all ranks see.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import time
from pathlib import Path

import femur.core.errors as errors
from femur.core.datafiles import atomic_write_text
from femur.core.errors import FemurError, InputError, SolverError
from femur.core.log import get_logger, progress_enabled
from femur.core.mpi import MPI
from femur.core.progress import ProgressBar
from femur.study.cases import call_evaluator, canonical_json, normalise_result, takes_fields_dir

CASES_DIR = "cases"
FAILED_DIR = "failed"
FIELDS_DIR = "fields"
MANIFEST = "study.json"
CLAIMS_DIR = ".claims"
SCHEDULE = "schedule.json"
SCHEDULES = ("dynamic", "static")

log = get_logger(__name__)


def _collective(comm, fn, share=True):
    """Run ``fn`` on rank 0 and broadcast its value (if ``share``), or its error, to
    every rank."""
    value, error = None, None
    if comm.rank == 0:
        try:
            value = fn()
        except FemurError as exc:
            error = (type(exc).__name__, str(exc))
        except OSError as exc:
            error = ("InputError", f"{exc.filename or ''}: {exc.strerror or exc}")
    sent = comm.bcast((value if share else None, error), root=0)
    if comm.rank != 0:
        value, error = sent
    else:
        error = sent[1]
    if error is not None:
        raise getattr(errors, error[0], FemurError)(error[1])
    return value


def _read_case_file(path: Path):
    try:
        with open(path, encoding="utf-8") as fh:
            return json.load(fh)
    except (OSError, ValueError):
        return None


def case_fields_dir(out: Path, case_id: str) -> Path:
    """Where a case's fields are written when the study is run with fields."""
    return Path(out) / FIELDS_DIR / case_id


def _prepare(out: Path, manifest: dict, records: list[dict], resume: bool,
             fields: bool = False) -> list[int]:
    """Rank 0: check/create the output folder; return the indices of pending cases (with
    ``fields``, also the finished cases whose fields were not written)."""
    cases_dir = out / CASES_DIR
    cases_dir.mkdir(parents=True, exist_ok=True)
    for stale in cases_dir.glob(".*.tmp-*"):  # leftovers of a killed run
        stale.unlink(missing_ok=True)
    shutil.rmtree(out / CLAIMS_DIR, ignore_errors=True)  # the work queue of an earlier run
    # failed cases have no case file: they run again, and fail again or not
    for stale in (out / FAILED_DIR).glob("*.json"):
        stale.unlink(missing_ok=True)
    man_path = out / MANIFEST
    text = canonical_json(manifest)
    if man_path.exists():
        old = _read_case_file(man_path)
        if old is not None and canonical_json(old) != text:
            if resume:
                raise InputError(
                    f"{man_path}: this output folder holds a different study (or other "
                    "--patients/--months/--seed, or another femur version); resume needs "
                    "the same study, or choose another --out"
                )
    existing = {p.stem for p in cases_dir.glob("*.json")}
    if existing and not resume:
        raise InputError(
            f"{cases_dir}: holds {len(existing)} finished case(s) from an earlier run; "
            "use --resume to continue it, or choose another --out"
        )
    atomic_write_text(man_path, text)
    pending = []
    for r in records:
        cid = r["case_id"]
        if cid not in existing:
            pending.append(r["case_index"])
            continue
        data = _read_case_file(cases_dir / f"{cid}.json")
        if data is None or "record" not in data or "result" not in data:
            log.warning("%s: unreadable (truncated or not a case file); computing case %s again",
                        cases_dir / f"{cid}.json", cid)
            pending.append(r["case_index"])
            continue
        if canonical_json(data["record"]) != canonical_json(r):
            raise InputError(
                f"{cases_dir / (cid + '.json')}: was computed for a different case record "
                "(study file or femur version changed?); use another --out"
            )
        if fields and not any(case_fields_dir(out, cid).glob("*")):
            log.info("case %s has no fields in %s; computing it again to write them", cid,
                     case_fields_dir(out, cid))
            pending.append(r["case_index"])
    return pending


def work_units(records: list[dict], pending: list[int]) -> list[list[int]]:
    """The pending case indices grouped into work units: the cases of one patient
    (``record["patient"]["patient_id"]``), in case order; a record without one is a unit of
    its own. Units are ordered by their first case."""
    units: dict = {}
    for idx in pending:
        p = records[idx].get("patient")
        pid = p.get("patient_id") if isinstance(p, dict) else None
        key = ("patient", pid) if pid is not None else ("case", idx)
        units.setdefault(key, []).append(idx)
    return list(units.values())


class _WorkQueue:
    """The shared work queue of the rank groups (module docstring): group rank 0 claims
    units with exclusive file creation and broadcasts each to its group."""

    def __init__(self, claims_dir: Path, n_units: int, group):
        self.dir, self.n, self.group, self.next = claims_dir, n_units, group, 0

    def _claim(self) -> int:
        while self.next < self.n:
            u = self.next
            self.next += 1
            try:
                fd = os.open(self.dir / f"{u}", os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError:
                continue
            os.close(fd)
            return u
        return -1

    def __iter__(self):
        while True:
            u, err = None, None
            if self.group.rank == 0:
                try:
                    u = self._claim()
                except OSError as exc:  # every rank of the group stops with the same error
                    err = f"{self.dir}: cannot claim work ({exc}); the output folder must be writable by every rank"
            u, err = self.group.bcast((u, err), root=0)
            if err is not None:
                raise InputError(err)
            if u < 0:
                return
            yield u


class _Progress:
    """Progress from world rank 0: a tqdm bar on a terminal, else a log line at most every
    ``interval_s`` seconds (and at the start and the end).  It counts the case files of
    all groups, so it shows the whole run."""

    def __init__(self, comm, total: int, done0: int, cases_dir: Path, label: str, enabled: bool,
                 interval_s: float = 10.0):
        self.enabled = enabled and comm.rank == 0 and progress_enabled()
        self.total, self.done0, self.dir, self.label = total, done0, cases_dir, label
        self.t0 = self.last = time.perf_counter()
        self.interval_s = interval_s
        self.bar = None
        self.printed = -1
        if not self.enabled:
            return
        if sys.stderr.isatty():
            self.bar = ProgressBar(total, True, f"[femur] {label}", unit="case", initial=done0)
            return
        self._line(done0)

    def _line(self, done: int) -> None:
        now = time.perf_counter()
        self.last, self.printed = now, done
        elapsed = now - self.t0
        new = done - self.done0
        eta = ""
        if 0 < new and done < self.total:
            eta = f", ETA {elapsed / new * (self.total - done):.0f} s"
        log.info("%s: %d/%d cases done, %.0f s elapsed%s", self.label, done, self.total, elapsed, eta)

    def update(self, final: bool = False) -> None:
        if not self.enabled:
            return
        try:
            done = sum(1 for _ in self.dir.glob("*.json"))
            done = min(done + sum(1 for _ in (self.dir.parent / FAILED_DIR).glob("*.json")), self.total)
        except OSError:
            return
        if self.bar is not None:
            self.bar.update(done - self.bar.n)
            if final:
                self.bar.close()
        elif done != self.printed and (
            final or done == self.total or time.perf_counter() - self.last >= self.interval_s
        ):
            self._line(done)


def _schedule_report(comm, out: Path, group: int, cases: int, busy_s: float, wall_s: float,
                     schedule: str) -> None:
    """Gather every rank's cases, busy and idle seconds; world rank 0 writes
    ``out/schedule.json``, logs the idle time and removes the work queue's claims."""
    rows = comm.gather({"rank": comm.rank, "group": group, "cases": cases, "busy_s": busy_s,
                        "idle_s": max(wall_s - busy_s, 0.0), "wall_s": wall_s}, root=0)
    if comm.rank != 0:
        return
    shutil.rmtree(out / CLAIMS_DIR, ignore_errors=True)
    wall = max(r["wall_s"] for r in rows)
    idle = [r["idle_s"] for r in rows]
    data = {"schedule": schedule, "ranks": comm.size, "wall_s": wall, "ranks_detail": rows,
            "idle_s_max": max(idle), "idle_s_mean": sum(idle) / len(idle),
            "idle_fraction": sum(idle) / (wall * len(rows)) if wall > 0 else 0.0}
    try:
        atomic_write_text(out / SCHEDULE, json.dumps(data, indent=1, sort_keys=True))
    except OSError as exc:  # a diagnostic only: never fail a finished run for it
        log.warning("%s: could not write the schedule report (%s)", out / SCHEDULE, exc)
    if comm.size > 1:
        log.info("schedule %s: idle time per rank %s s (%.1f %% of %d x %.0f s)", schedule,
                 ", ".join(f"{x:.1f}" for x in idle), 100.0 * data["idle_fraction"], comm.size, wall)


def run_cases(
    records: list[dict],
    evaluator,
    out,
    *,
    manifest: dict | None = None,
    comm=None,
    group_size: int = 1,
    resume: bool = False,
    progress: bool = True,
    label: str = "study",
    fields: bool = False,
    schedule: str = "dynamic",
) -> list[dict] | None:
    """Run every record not yet finished; return the case data (record + result) of all
    cases in case order on world rank 0 (``None`` on the other ranks).

    Collective over ``comm`` (default ``COMM_WORLD``). A case that failed with a femur
    error is returned as ``{"record": ..., "error": "<type>: <message>"}`` (module
    docstring); any other failure raises :class:`SolverError` on every rank once every case
    has run; the finished cases are kept for ``resume``. With
    ``fields`` an evaluator that accepts ``fields_dir=`` writes each case's fields to
    ``out/fields/<case_id>/``. ``schedule``: "dynamic" (a work queue of patients, default)
    or "static" (round-robin deal of the cases); module docstring.
    """
    comm = comm or MPI.COMM_WORLD
    gs = int(group_size)
    if gs < 1 or comm.size % gs != 0:
        raise InputError(
            f"--group-size {group_size}: must be >= 1 and divide the number of MPI ranks ({comm.size})"
        )
    if schedule not in SCHEDULES:
        raise InputError(f"schedule must be one of {', '.join(SCHEDULES)}, got {schedule!r}")
    out = Path(comm.bcast(str(Path(out).resolve()) if comm.rank == 0 else None, root=0))
    manifest = manifest or {}
    fields = bool(fields) and takes_fields_dir(evaluator)
    pending = _collective(comm, lambda: _prepare(out, manifest, records, resume, fields))
    cases_dir = out / CASES_DIR

    n_groups = comm.size // gs
    color = comm.rank // gs
    group = comm.Split(color, comm.rank)
    failures: list[str] = []
    failed_dir = out / FAILED_DIR
    bar = _Progress(comm, len(records), len(records) - len(pending), cases_dir, label, progress)
    if schedule == "dynamic":
        units = work_units(records, pending)
        claims = out / CLAIMS_DIR
        _collective(comm, lambda: claims.mkdir(parents=True, exist_ok=True), share=False)
        mine = (idx for u in _WorkQueue(claims, len(units), group) for idx in units[u])
    else:
        mine = iter(pending[color::n_groups])
    t_start = time.perf_counter()
    busy, n_mine = 0.0, 0
    try:
        for idx in mine:
            t_case = time.perf_counter()
            n_mine += 1
            record = records[idx]
            cid = record["case_id"]
            err = None
            try:
                fdir = case_fields_dir(out, cid) if fields else None
                raw = call_evaluator(evaluator, record, group, fdir)
            except Exception as exc:  # one bad case must not stop the batch
                err = (f"{type(exc).__name__}: {exc}", isinstance(exc, FemurError))
            if err is None:
                try:
                    # the result of group rank 0 is the one kept (others may return None)
                    result = normalise_result(record, raw) if group.rank == 0 else None
                except Exception as exc:  # a malformed result: the evaluator's fault, it stops
                    err = (f"{type(exc).__name__}: {exc}", False)
            errs = [e for e in group.allgather(err) if e]
            if errs and all(reported for _, reported in errs):
                # bad input (or no convergence): reported in the results, the study goes on
                if group.rank == 0:
                    log.warning("case %s failed: %s", cid, errs[0][0])
                    failed_dir.mkdir(parents=True, exist_ok=True)
                    atomic_write_text(failed_dir / f"{cid}.json", json.dumps(
                        {"record": record, "error": errs[0][0]}, sort_keys=True, indent=1))
            elif errs:
                failures.append(f"{cid}: " + next(m for m, reported in errs if not reported))
            elif group.rank == 0:
                atomic_write_text(
                    cases_dir / f"{cid}.json",
                    json.dumps({"record": record, "result": result}, sort_keys=True, indent=1),
                )
            busy += time.perf_counter() - t_case
            bar.update()
    finally:
        group.Free()
    comm.barrier()
    _schedule_report(comm, out, color, n_mine, busy, time.perf_counter() - t_start, schedule)
    bar.update(final=True)
    all_failures = [f for fl in comm.allgather(failures) for f in fl]
    if all_failures:
        shown = "; ".join(all_failures[:5])
        more = f" (and {len(all_failures) - 5} more)" if len(all_failures) > 5 else ""
        raise SolverError(
            f"{len(all_failures)} case(s) failed: {shown}{more}. Finished cases are kept in "
            f"{cases_dir}; fix the cause and rerun with --resume"
        )

    def _load():
        data = []
        for r in records:
            d = _read_case_file(cases_dir / f"{r['case_id']}.json")
            if d is None:
                d = _read_case_file(failed_dir / f"{r['case_id']}.json")
            if d is None:
                raise SolverError(f"{cases_dir / (r['case_id'] + '.json')}: missing or unreadable after the run")
            data.append(d)
        return data

    data = _collective(comm, _load, share=False)
    return data if comm.rank == 0 else None


__all__ = ["CASES_DIR", "CLAIMS_DIR", "FAILED_DIR", "FIELDS_DIR", "MANIFEST", "SCHEDULE", "SCHEDULES",
           "case_fields_dir", "run_cases", "work_units"]
