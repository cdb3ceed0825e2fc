"""MPI batch runner: rank groups, atomic case files, resume, progress.

* ``COMM_WORLD`` is split into groups of ``group_size`` consecutive ranks
  (``comm.Split(color=rank // group_size)``); the evaluator of a case gets its group's
  communicator, so a case can itself run in parallel.
* The pending cases are dealt round-robin over the groups in case order.  Each case is
  self-contained and seeded, so the results do not depend on the number of ranks or
  groups.
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
) -> list[dict] | None:
    """Run every record not yet finished; return the case data (record + result) of all
    cases in case order on world rank 0 (``None`` on the other ranks).

    Collective over ``comm`` (default ``COMM_WORLD``). A case that failed with a femur
    error is returned as ``{"record": ..., "error": "<type>: <message>"}`` (module
    docstring); any other failure raises :class:`SolverError` on every rank once every case
    has run; the finished cases are kept for ``resume``. With
    ``fields`` an evaluator that accepts ``fields_dir=`` writes each case's fields to
    ``out/fields/<case_id>/``.
    """
    comm = comm or MPI.COMM_WORLD
    gs = int(group_size)
    if gs < 1 or comm.size % gs != 0:
        raise InputError(
            f"--group-size {group_size}: must be >= 1 and divide the number of MPI ranks ({comm.size})"
        )
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
    try:
        for idx in pending[color::n_groups]:
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
            bar.update()
    finally:
        group.Free()
    comm.barrier()
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


__all__ = ["CASES_DIR", "FAILED_DIR", "FIELDS_DIR", "MANIFEST", "case_fields_dir", "run_cases"]
