"""A study's patients from CT scans of vertebrae: scan tables and manifest CSV files ->
:class:`femur.study.spec.ScanEntry`.

A study file's ``[cohort] scans`` is a list of tables, or the path of a manifest CSV, or a
folder holding ``manifest.csv`` (layout in ``femur.study.spec``). Every entry is checked
here (columns, numbers, sex, age, body size, calibration given once); relative paths are
taken from the study file's (tables) or the manifest's (CSV) folder. A file that does not
exist is *not* an error here: that scan's cases fail when they are run, with a message
naming the manifest row and the file, and the study goes on (``femur.study.runner``); a
warning lists such rows when the study is loaded.
"""

from __future__ import annotations

import csv
from pathlib import Path

from femur.core.errors import InputError
from femur.core.log import get_logger
from femur.remodeling.patient import Patient
from femur.study.spec import _NAME_RE, SCAN_KEYS, ScanEntry
from femur.workflows.scans import DEFAULT_VOXEL_COARSEN, CTScan

log = get_logger(__name__)

MANIFEST_NAME = "manifest.csv"
_REQUIRED = ("image", "labels", "sex", "age_years")
_TRUE = {"true", "yes", "1", "y"}
_FALSE = {"false", "no", "0", "n", ""}


def _labels(value, where: str, key: str):
    """[5, 6], "5;6", "5 6" or "5,6" -> (5, 6); None/"" -> None."""
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    if isinstance(value, str):
        parts = [p for p in value.replace(";", " ").replace(",", " ").split() if p]
    elif isinstance(value, (list, tuple)):
        parts = list(value)
    else:
        raise InputError(f"{where}: {key}: expected label integers like [5, 6] or \"5;6\", got {value!r}")
    if any(isinstance(p, bool) or (isinstance(p, float) and not p.is_integer()) for p in parts):
        raise InputError(f"{where}: {key}: label values must be integers, got {value!r}")
    try:
        return tuple(int(p) for p in parts)
    except (TypeError, ValueError):
        raise InputError(f"{where}: {key}: expected label integers like [5, 6] or \"5;6\", got {value!r}") from None


def _number(value, where: str, key: str, required: bool = False):
    if value is None or (isinstance(value, str) and not value.strip()):
        if required:
            raise InputError(f"{where}: {key}: missing (required)")
        return None
    if isinstance(value, bool):
        raise InputError(f"{where}: {key}: expected a number, got {value!r}")
    try:
        return float(value)
    except (TypeError, ValueError):
        raise InputError(f"{where}: {key}: expected a number, got {value!r}") from None


def _flag(value, where: str, key: str) -> bool:
    if isinstance(value, bool):
        return value
    if value is None:
        return False
    text = str(value).strip().lower()
    if text in _TRUE:
        return True
    if text in _FALSE:
        return False
    raise InputError(f"{where}: {key}: expected true or false, got {value!r}")


def _path(value, base: Path, where: str, key: str, required: bool = True):
    if value is None or (isinstance(value, str) and not value.strip()):
        if required:
            raise InputError(f"{where}: {key}: missing (required)")
        return None
    if not isinstance(value, str):
        raise InputError(f"{where}: {key}: expected a file path, got {value!r}")
    p = Path(value.strip()).expanduser()
    return str((base / p).resolve() if not p.is_absolute() else p)


def scan_entry(row: dict, base: Path, where: str, default_coarsen: int = DEFAULT_VOXEL_COARSEN,
               default_id: str | None = None) -> ScanEntry:
    """One scan table or manifest row -> ScanEntry (InputError naming ``where`` and the key)."""
    unknown = sorted(set(row) - set(SCAN_KEYS))
    if unknown:
        raise InputError(f"{where}: unknown column(s)/key(s) {unknown}; allowed: {list(SCAN_KEYS)}")
    for key in _REQUIRED:
        if row.get(key) is None or (isinstance(row.get(key), str) and not row[key].strip()):
            raise InputError(f"{where}: {key}: missing (required: {', '.join(_REQUIRED)})")
    image = _path(row.get("image"), base, where, "image")
    labels = _path(row.get("labels"), base, where, "labels")
    calibration = _path(row.get("calibration"), base, where, "calibration", required=False)
    sid = str(row.get("id") or "").strip() or default_id or Path(image).name.split(".")[0]
    if not _NAME_RE.match(sid):
        raise InputError(f"{where}: id: use letters, digits, '_', '-', '.', got {sid!r}")
    coarsen = _number(row.get("voxel_coarsen"), where, "voxel_coarsen")
    coarsen = default_coarsen if coarsen is None else coarsen
    if coarsen < 1 or not float(coarsen).is_integer():
        raise InputError(f"{where}: voxel_coarsen: expected an integer >= 1, got {coarsen:g}")
    age = _number(row.get("age_years"), where, "age_years", required=True)
    mass = _number(row.get("body_mass_kg"), where, "body_mass_kg")
    height = _number(row.get("height_m"), where, "height_m")
    try:
        patient = Patient(sex=str(row.get("sex")).strip(), age_years=age, body_mass_kg=mass, height_m=height)
        scan = CTScan(image, labels, calibration=calibration,
                      calibrated_mg_cm3=_flag(row.get("calibrated_mg_cm3"), where, "calibrated_mg_cm3"),
                      layers=_labels(row.get("layers"), where, "layers"),
                      bone_labels=_labels(row.get("bone_labels"), where, "bone_labels"),
                      voxel_coarsen=int(coarsen), name=sid, where=where)
    except InputError as exc:
        msg = str(exc)
        raise InputError(msg if msg.startswith(where) else f"{where}: {msg}") from None
    if scan.layers is not None and len(scan.layers) != 2:
        raise InputError(f"{where}: layers: name two loading-layer labels (e.g. 5;6), got {list(scan.layers)}")
    return ScanEntry(sid, scan.to_dict(), patient.sex, patient.age_years, mass, height, where)


def read_manifest(path, default_coarsen: int = DEFAULT_VOXEL_COARSEN) -> tuple[ScanEntry, ...]:
    """The scans of a manifest CSV (or of a folder's manifest.csv)."""
    path = Path(path)
    if path.is_dir():
        path = path / MANIFEST_NAME
        if not path.exists():
            raise InputError(f"{path.parent}: scan folder without {MANIFEST_NAME} (columns: "
                             f"{', '.join(SCAN_KEYS)})")
    if not path.exists():
        raise InputError(f"{path}: scan manifest not found")
    try:
        with open(path, newline="", encoding="utf-8-sig") as fh:
            reader = csv.DictReader(fh)
            header = [h.strip() for h in (reader.fieldnames or [])]
            if not header:
                raise InputError(f"{path}: empty manifest; expected a header row with {', '.join(SCAN_KEYS)}")
            missing = [k for k in _REQUIRED if k not in header]
            if missing:
                raise InputError(f"{path}: the header lacks column(s) {missing}; columns: {list(SCAN_KEYS)}")
            rows = []
            for row in reader:
                clean = {(k or "").strip(): (v.strip() if isinstance(v, str) else v) for k, v in row.items()}
                if None in row or "" in clean:
                    raise InputError(f"{path} row {reader.line_num}: more cells than header columns")
                if all(v in (None, "") for v in clean.values()):
                    continue
                rows.append((reader.line_num, clean))
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise InputError(f"{path}: cannot read the scan manifest ({exc})") from None
    if not rows:
        raise InputError(f"{path}: the manifest lists no scan")
    entries = tuple(scan_entry({k: v for k, v in row.items() if v not in (None, "")}, path.parent,
                               f"{path} row {line}", default_coarsen) for line, row in rows)
    return _unique(entries, str(path))


def parse_scans(value, src: str, default_coarsen: int = DEFAULT_VOXEL_COARSEN) -> tuple[ScanEntry, ...]:
    """``[cohort] scans`` of a study file: a list of tables or a manifest path/folder
    (relative to the study file's folder)."""
    base = Path(src).parent if src not in ("<dict>", "") else Path.cwd()
    if isinstance(value, str):
        p = Path(value).expanduser()
        entries = read_manifest(p if p.is_absolute() else base / p, default_coarsen)
    elif isinstance(value, list) and value and all(isinstance(v, dict) for v in value):
        entries = tuple(scan_entry(v, base, f"{src}: cohort.scans[{i}]", default_coarsen)
                        for i, v in enumerate(value))
        entries = _unique(entries, src)
    else:
        raise InputError(f"{src}: cohort.scans: expected a manifest CSV path, a folder holding "
                         f"{MANIFEST_NAME}, or a list of [[cohort.scans]] tables, got {value!r}")
    absent = [f"{e.where} ({k} {e.scan[k]})" for e in entries for k in ("image", "labels", "calibration")
              if e.scan.get(k) and not Path(e.scan[k]).exists()]
    if absent:
        log.warning("%s: %d file(s) not found; those scans' cases will fail: %s", src, len(absent),
                    "; ".join(absent))
    return entries


def _unique(entries, where: str):
    seen = {}
    for e in entries:
        if e.id in seen:
            raise InputError(f"{e.where}: id {e.id!r} is used twice (also {seen[e.id]}); give each "
                             "scan its own id")
        seen[e.id] = e.where
    return entries


__all__ = ["MANIFEST_NAME", "parse_scans", "read_manifest", "scan_entry"]
