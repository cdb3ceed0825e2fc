"""Logging for femur: one logger tree (``femur.*``), rank-0 filtered under MPI.

Library code logs with ``log = get_logger(__name__)`` and never prints; the command line
calls :func:`configure` once (``--quiet``: warnings only, default: progress messages,
``--verbose``: debug detail). Under MPI only world rank 0 emits records unless
``FEMUR_LOG_ALL_RANKS=1`` is set (then every line carries its rank). Results that a user
asked for (tables, ``--json``) are written to stdout by the command line, not logged.

Without :func:`configure` (femur used as a library) nothing below WARNING is shown,
as for any Python library; call ``femur.core.log.configure()`` to see the progress.
"""

from __future__ import annotations

import logging
import os
import sys

from femur.core.mpi import MPI

ROOT = "femur"
QUIET, NORMAL, VERBOSE = logging.WARNING, logging.INFO, logging.DEBUG


def get_logger(name: str = ROOT) -> logging.Logger:
    """The logger of a femur module (pass ``__name__``)."""
    return logging.getLogger(name if name.startswith(ROOT) else f"{ROOT}.{name}")


def _world_rank() -> int:
    return MPI.COMM_WORLD.rank


class RankFilter(logging.Filter):
    """Pass records of world rank 0 only (or of every rank, tagged, when ``all_ranks``)."""

    def __init__(self, all_ranks: bool = False):
        super().__init__()
        self.rank = _world_rank()
        self.all_ranks = all_ranks

    def filter(self, record: logging.LogRecord) -> bool:
        record.rank = self.rank
        return self.all_ranks or self.rank == 0


_handler: logging.Handler | None = None


class _StderrHandler(logging.StreamHandler):
    """A stream handler that writes to whatever ``sys.stderr`` is at the time of each record
    (so a replaced stderr -- a test's capture, a notebook -- is honoured)."""

    def __init__(self):
        super().__init__(sys.stderr)

    @property
    def stream(self):
        return sys.stderr

    @stream.setter
    def stream(self, value):
        pass


def configure(level: int = NORMAL, stream=None, all_ranks: bool | None = None) -> logging.Logger:
    """Send femur's log records to ``stream`` (default stderr) at ``level``, rank 0 only.

    Idempotent: a second call replaces the first one's handler and level.
    """
    global _handler
    logger = logging.getLogger(ROOT)
    if _handler is not None:
        logger.removeHandler(_handler)
    if all_ranks is None:
        all_ranks = os.environ.get("FEMUR_LOG_ALL_RANKS", "") not in ("", "0")
    handler = logging.StreamHandler(stream) if stream is not None else _StderrHandler()
    fmt = "[femur r%(rank)d] %(message)s" if all_ranks else "[femur] %(message)s"
    handler.setFormatter(logging.Formatter(fmt))
    handler.addFilter(RankFilter(all_ranks))
    logger.addHandler(handler)
    logger.setLevel(level)
    logger.propagate = False
    _handler = handler
    return logger


def verbosity(quiet: bool = False, verbose: bool = False) -> int:
    """The logging level for the command line's ``--quiet`` / ``--verbose`` flags."""
    return QUIET if quiet else (VERBOSE if verbose else NORMAL)


def is_enabled(level: int = NORMAL) -> bool:
    """True when femur records at ``level`` are shown."""
    return logging.getLogger(ROOT).isEnabledFor(level)


def progress_enabled() -> bool:
    """Progress bars are shown unless the command line asked for quiet output
    (:func:`configure` above the NORMAL level); a library user sees them by default."""
    return _handler is None or is_enabled(NORMAL)


__all__ = ["QUIET", "NORMAL", "VERBOSE", "RankFilter", "configure", "get_logger", "is_enabled",
           "progress_enabled", "verbosity"]
