"""Results-unchanged check (issue 13): a speed-up must not move a study's answers.

Two runs of the same study (say, with and without an optimisation) agree when

* their printed summaries (``StudyResults.format_table``, the trial-paper table) are the
  same text, i.e. the same to the printed precision, and
* every case's areal BMD and strength % changes agree within ``tol_pp`` percentage points
  (default 0.05, issue 13) at every visit, and the absolute strengths within ``tol_pp``
  per cent.

:func:`compare_results` says which quantity differs most and whether the runs agree; the
trial benchmark and the tests use it.
"""

from __future__ import annotations

import math

#: the per-case tolerance of issue 13 (percentage points)
TOLERANCE_PP = 0.05


def _checked_keys(visit: dict) -> list[str]:
    """The BMD and strength quantities of a visit row (% changes and absolute strengths)."""
    return [k for k in visit if k.endswith("_bmd_pct") or "strength" in k]


def compare_results(a, b, tol_pp: float = TOLERANCE_PP) -> dict:
    """Compare two :class:`femur.study.results.StudyResults` of the same study (module
    docstring). Returns ``{"ok", "same_printed_summary", "cases", "max_diff": {key: worst},
    "worst": (key, case_id, month, diff)}``; % keys in percentage points, absolute
    strengths in per cent of the first run's value."""
    cases_a = {c["record"]["case_id"]: c for c in a.cases}
    cases_b = {c["record"]["case_id"]: c for c in b.cases}
    max_diff: dict = {}
    worst = (None, None, None, 0.0)
    missing = sorted(set(cases_a) ^ set(cases_b))
    for cid in sorted(set(cases_a) & set(cases_b)):
        for va, vb in zip(cases_a[cid]["result"]["visits"], cases_b[cid]["result"]["visits"]):
            for k in _checked_keys(va):
                x, y = va.get(k), vb.get(k)
                if x is None and y is None:
                    continue
                if x is None or y is None:
                    d = math.inf
                elif k.endswith("_pct"):
                    d = abs(x - y)
                else:
                    d = 100.0 * abs(x - y) / abs(x) if x else math.inf
                max_diff[k] = max(max_diff.get(k, 0.0), d)
                if d > worst[3]:
                    worst = (k, cid, va["month"], d)
    same_text = a.format_table() == b.format_table()
    ok = same_text and not missing and all(d <= tol_pp for d in max_diff.values())
    return {"ok": ok, "same_printed_summary": same_text, "cases": len(cases_a), "missing_cases": missing,
            "tolerance_pp": tol_pp, "max_diff": max_diff, "worst": list(worst)}


__all__ = ["TOLERANCE_PP", "compare_results"]
