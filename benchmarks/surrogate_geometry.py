#!/usr/bin/env python
"""Diagnostic for the strength surrogate (issue 10): how much of the lateral-fall pushover
strength that the linear quantities miss is the femur's shape?

Session 7's fit (``python -m femur.calibration.strength_surrogate``) predicted the pushover peak
from linear-FE quantities only; for the lateral fall its test R^2 missed the target while its
percent-change error met it, and its errors were whole-patient offsets (all four bone states
of a woman off by the same ~13 %). The fit command now chooses anatomy terms itself (by
cross-validation on the training patients). This refits ``log F = c0 + c1 log load + c2 log stiffness
+ sum_k g_k x_k`` on the TRAINING patients with each femur-shape parameter ``x_k`` of the
virtual patient (``femur.study.cohort.sample_patient``: regenerated from the cohort seed, no
FE) and reports R^2 on the test patients. It reads the committed samples only (seconds).

This is a diagnostic, not a fit: it looks at test R^2 for every feature set, so it must not be
used to choose the surrogate's features (the fit command chooses them by cross-validation on
the training patients).

    python benchmarks/surrogate_geometry.py [--json] [--work DIR] [--case femoral_fall]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

import femur  # noqa: F401  (MPI before dolfinx)
from femur.calibration import strength_surrogate as ss
from femur.study.cohort import sample_patient

from _common import finish

HERE = Path(__file__).resolve().parent


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--work", default=str(HERE / "results" / "strength_surrogate_samples"))
    ap.add_argument("--case", default="femoral_fall")
    a = ap.parse_args(argv)
    rows = []
    for f in sorted(Path(a.work).glob(f"patient_*_{a.case}.json")):
        rows.extend(json.loads(f.read_text()))
    rows = ss._usable(rows, a.case, ("load", "stiffness"))
    settings = ss.Settings()
    shape = {p: sample_patient(p, settings.seed, ss.cohort())["femur_shape"] for p in {r["patient"] for r in rows}}
    keys = sorted(k for k, v in next(iter(shape.values())).items() if isinstance(v, (int, float)))

    def design(rs, geo):
        x = [[1.0, np.log(r["load"]), np.log(r["stiffness"])] + [float(shape[r["patient"]][k]) for k in geo]
             for r in rs]
        return np.array(x), np.array([r["nonlinear_strength_n"] for r in rs])

    train = [r for r in rows if r["split"] == "train"]
    test = [r for r in rows if r["split"] == "test"]
    out = {"benchmark": "surrogate_geometry", "case": a.case, "train_samples": len(train),
           "test_samples": len(test), "features": {}}
    for geo in [[]] + [[k] for k in keys] + [keys]:
        x, y = design(train, geo)
        coef = np.linalg.lstsq(x, np.log(y), rcond=None)[0]
        xt, _ = design(test, geo)
        m = ss.metrics(test, np.exp(xt @ coef))  # the fit report's own test metrics
        name = "load+stiffness" + "".join(f"+{k}" for k in geo)
        out["features"][name] = {"test_r2": m["r2"], "test_mae_n": m["mae_n"], "test_change_mae_pp": m["change_mae_pp"]}
        if not a.json:
            print(f"{name:<90} test R2 {m['r2']:.3f}  MAE {m['mae_n']:.0f} N  "
                  f"change error {m['change_mae_pp']:.2f} pp")
    return finish("surrogate_geometry", out, a.json)


if __name__ == "__main__":
    raise SystemExit(main())
