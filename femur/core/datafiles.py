"""Package data files: fitted parameters with their provenance, atomic writes.

A fitted value never lives in Python source. Each calibration command writes one JSON file
under ``femur/data/`` (see :data:`DATA_DIR`)::

    {"values": {...name: number...},
     "provenance": {"targets": ..., "seeds": ..., "femur_version": ..., "date": ...,
                    "command": ..., "notes": ...}}

and the code reads it with :func:`read_fitted` (cached). ``FEMUR_DATA_DIR`` points the
readers at another folder (e.g. a test's fresh fit) without touching the installed files.
"""

from __future__ import annotations

import datetime as _dt
import json
import os
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from femur.core.errors import InputError
from femur.core.version import __version__

#: the installed data folder (femur/data)
DATA_DIR = Path(__file__).resolve().parents[1] / "data"


def data_dir() -> Path:
    """The folder the data files are read from: ``$FEMUR_DATA_DIR`` or :data:`DATA_DIR`."""
    env = os.environ.get("FEMUR_DATA_DIR")
    return Path(env) if env else DATA_DIR


def data_path(name: str) -> Path:
    """Path of data file ``name`` (e.g. ``"cell_model.json"``)."""
    return data_dir() / name


@dataclass(frozen=True)
class Fitted:
    """Fitted values read from a data file, with where they came from."""

    values: dict
    provenance: dict
    path: str


@lru_cache(maxsize=32)
def _read(path: str) -> Fitted:
    p = Path(path)
    try:
        doc = json.loads(p.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise InputError(f"fitted-parameter file {p} is missing (reinstall femur or rerun its "
                         "calibration command)") from None
    except (OSError, ValueError) as exc:
        raise InputError(f"fitted-parameter file {p} is unreadable: {exc}") from None
    if not isinstance(doc, dict) or not isinstance(doc.get("values"), dict):
        raise InputError(f"fitted-parameter file {p}: expected a JSON object with 'values' and "
                         "'provenance'")
    return Fitted(dict(doc["values"]), dict(doc.get("provenance") or {}), str(p))


def read_fitted(name: str) -> Fitted:
    """The fitted values and provenance stored in data file ``name`` (cached)."""
    return _read(str(data_path(name)))


def read_fitted_file(path) -> Fitted:
    """The fitted values and provenance of a data file given by its path (e.g. a fit
    written outside the package), with the same checks and errors as :func:`read_fitted`."""
    return _read(str(Path(path)))


def write_fitted(name: str, values: dict, *, targets, command: str, seeds=None,
                 notes: str | None = None, path: str | Path | None = None,
                 extra: dict | None = None) -> Path:
    """Write ``values`` with their provenance to data file ``name`` (or ``path``), atomically.

    ``targets``: the calibration targets the values were fitted to (the rows of
    clinical-targets.md); ``command``: the command line that reran the fit; ``extra``: more
    provenance entries (e.g. a covariance, the fixed inputs, a report table).
    """
    p = Path(path) if path is not None else data_path(name)
    doc = {
        "values": values,
        "provenance": {
            "targets": targets,
            "seeds": seeds,
            "femur_version": __version__,
            "date": _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "command": command,
            "notes": notes,
            **(extra or {}),
        },
    }
    p.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(p, json.dumps(doc, indent=2) + "\n")
    _read.cache_clear()
    return p


def atomic_write_text(path, text: str) -> None:
    """Write ``text`` to ``path`` atomically (temporary file in the same folder, fsync,
    ``os.replace``): readers see the old file or the new one, never half a file."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    with open(tmp, "w", encoding="utf-8") as fh:
        fh.write(text)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


__all__ = ["DATA_DIR", "Fitted", "atomic_write_text", "data_dir", "data_path", "read_fitted",
           "read_fitted_file", "write_fitted"]
