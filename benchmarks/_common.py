"""Shared helpers for benchmark scripts: peak memory, MPI launching, JSON output."""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
#: the strength surrogate's committed samples (python -m femur.calibration.strength_surrogate --work)
SURROGATE_SAMPLES = RESULTS / "strength_surrogate_samples"


def samples_arguments(doc: str, argv=None):
    """``--json`` and ``--work DIR`` (default :data:`SURROGATE_SAMPLES`) of the scripts
    that read the surrogate's samples; ``doc`` is the script's docstring."""
    import argparse

    ap = argparse.ArgumentParser(description=doc.split("\n")[0])
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--work", default=str(SURROGATE_SAMPLES))
    return ap.parse_args(argv)


def sample_rows(work, prefix: str = "*") -> list[dict]:
    """Every sample row of load case ``prefix`` (default all) in the samples folder ``work``."""
    return [r for f in sorted(Path(work).glob(f"patient_*_{prefix}.json")) for r in json.loads(f.read_text())]


def peak_rss_mb() -> float:
    """Peak resident set size of this process in MB (Linux ru_maxrss is in KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def current_rss_mb() -> float:
    with open("/proc/self/statm") as f:
        pages = int(f.read().split()[1])
    return pages * os.sysconf("SC_PAGE_SIZE") / 2**20


def mpiexec() -> str:
    """$FEMUR_MPIEXEC, else the mpiexec beside this Python (the venv's mpich), else PATH's."""
    if os.environ.get("FEMUR_MPIEXEC"):
        return os.environ["FEMUR_MPIEXEC"]
    cand = Path(sys.executable).with_name("mpiexec")
    return str(cand) if cand.exists() else "mpiexec"


def run_worker(script: Path, ranks: int, args: list[str], timeout: float = 1800) -> dict:
    """Run `script --worker args` on `ranks` MPI ranks; return the JSON its rank 0 prints last."""
    cmd = [mpiexec(), "-n", str(ranks), sys.executable, str(script), "--worker", *args]
    env = dict(os.environ, OMP_NUM_THREADS="1", PYVISTA_OFF_SCREEN="true", MPLBACKEND="Agg")
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env)
    if proc.returncode != 0:
        raise RuntimeError(f"worker failed ({' '.join(cmd)}):\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("{")]
    return json.loads(lines[-1])


def write_results(name: str, data: dict) -> Path:
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"{name}.json"
    path.write_text(json.dumps(data, indent=2) + "\n")
    return path


def finish(name: str, out: dict, as_json: bool) -> int:
    """Write the results JSON and print it (``--json``) or the target checks."""
    path = write_results(name, out)
    if as_json:
        print(json.dumps(out, indent=2))
    else:
        for k, v in out.get("checks", {}).items():
            print(f"{k}: {v['value']:.3g} (target {v['target']}) {'OK' if v['ok'] else 'MISSED'}")
        print(f"written {path}")
    return 0


def worst_visit_difference(ref_visits, visits) -> float:
    """Largest absolute difference (percentage points) of the BMD and strength changes of
    two runs' visit records (lists of dicts, visit by visit); 0 when there is none."""
    return max((abs(a[k] - b[k]) for a, b in zip(ref_visits, visits) for k in a
                if (k.endswith("bmd_pct") or k.endswith("strength_pct")) and a[k] is not None), default=0.0)
