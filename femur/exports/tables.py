"""Tables: a tidy list of row dicts written as CSV (and Parquet where pyarrow is installed).

CSV floats are written with ``repr`` (exact round trip); missing values are empty cells.
"""

from __future__ import annotations

import csv
import io
from pathlib import Path

from femur.core.datafiles import atomic_write_text


def csv_text(rows: list[dict], columns) -> str:
    """The CSV text of ``rows`` (one line per row, ``columns`` in order)."""
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(columns)
    for r in rows:
        w.writerow(["" if r[c] is None else (repr(r[c]) if isinstance(r[c], float) else r[c]) for c in columns])
    return buf.getvalue()


class TableFiles:
    """``<stem>.csv`` (atomic) and, if pyarrow is importable, ``<stem>.parquet``."""

    def __init__(self, folder, stem: str = "results"):
        self.folder = Path(folder)
        self.stem = stem

    def write(self, rows: list[dict], columns) -> dict[str, Path]:
        self.folder.mkdir(parents=True, exist_ok=True)
        paths = {"table": self.folder / f"{self.stem}.csv"}
        atomic_write_text(paths["table"], csv_text(rows, columns))
        try:
            import pyarrow as pa  # optional dependency
            import pyarrow.parquet as pq
        except ImportError:
            return paths
        cols = {c: [r[c] for r in rows] for c in columns}
        paths["parquet"] = self.folder / f"{self.stem}.parquet"
        pq.write_table(pa.table(cols), paths["parquet"])
        return paths


__all__ = ["TableFiles", "csv_text"]
