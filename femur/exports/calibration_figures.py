"""Pictures of the calibration commands' results (matplotlib, Agg). They draw what a fit
hands them; they never fit or simulate.

* :func:`surrogate_fit_figure` -- the strength surrogate against the nonlinear pushover, one
  column per load case: predicted against computed strength (training and test patients),
  and predicted against computed percent change on treatment (test patients);
* :func:`risk_calibration_figure` -- each fracture-risk target with its published 95 % CI
  and the calibrated model's value (a forest plot): incidences in one panel, relative risks
  in the other (log axis), the between-person checks with them.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from femur.exports.plots import _pyplot, _save


def surrogate_fit_figure(cases: dict, path, title: str = "") -> Path:
    """``cases``: {load case: {"train": (computed N, predicted N), "test": (computed N,
    predicted N), "change": (computed %, predicted %) of the test patients, "label": text}}.
    The dashed line is equality."""
    plt = _pyplot()
    n = max(len(cases), 1)
    fig, axes = plt.subplots(2, n, figsize=(3.9 * n, 7.2), squeeze=False)
    for j, (prefix, c) in enumerate(cases.items()):
        ax = axes[0, j]
        for split, style in (("train", dict(marker="o", alpha=0.35, color="0.45")),
                             ("test", dict(marker="s", alpha=0.8, color="tab:blue"))):
            x, y = (np.asarray(v, dtype=float) for v in c.get(split, ((), ())))
            if x.size:
                ax.scatter(x, y, s=14, label=f"{split} ({x.size})", **style)
        _equality(ax)
        ax.set_title(prefix, fontsize=10)
        ax.set_xlabel("pushover peak load (N)")
        ax.set_ylabel("surrogate (N)")
        ax.legend(fontsize=7, loc="upper left")
        if c.get("label"):
            # below the legend: the points lie along the diagonal, the upper left is empty
            ax.text(0.03, 0.84, c["label"], transform=ax.transAxes, ha="left", va="top", fontsize=7)
        ax = axes[1, j]
        x, y = (np.asarray(v, dtype=float) for v in c.get("change", ((), ())))
        if x.size:
            ax.scatter(x, y, s=14, marker="s", alpha=0.8, color="tab:orange")
        _equality(ax)
        ax.set_xlabel("pushover change on treatment (%)")
        ax.set_ylabel("surrogate change (%)")
        ax.set_title("test patients, 12 months", fontsize=9)
    if title:
        fig.suptitle(title, fontsize=10)
    return _save(fig, path)


def _equality(ax) -> None:
    lo = min(ax.get_xlim()[0], ax.get_ylim()[0])
    hi = max(ax.get_xlim()[1], ax.get_ylim()[1])
    ax.plot([lo, hi], [lo, hi], "--", color="0.3", lw=0.8)
    ax.set_xlim(lo, hi)
    ax.set_ylim(lo, hi)


def risk_calibration_figure(rows: list[dict], path, title: str = "") -> Path:
    """``rows``: the calibration report's rows (femur.calibration.risk_report.report_rows):
    "label", "role" (fit / ratio / check / ...), "published", "ci95" ([low, high] or None),
    "model", and for ratios "model_ci95" (the model's own interval, drawn under its dot).
    Incidences (fractions) are drawn in %, ratios as they are; a treated arm's incidence that
    its fitted ratio carries ("carried_by_ratio") is drawn as a check among the incidences."""
    plt = _pyplot()
    # incidences: the fitted ones, and the treated arms' that a fitted ratio carries (checks)
    incid = [r for r in rows if (r["role"] not in ("ratio", "check") or r.get("carried_by_ratio"))
             and r.get("model") is not None]
    ratios = [r for r in rows if r["role"] == "ratio" or (r["role"] == "check" and "odds ratio" in r["label"])]
    panels = [(incid, 100.0, "cumulative incidence (%)"), (ratios, 1.0, "relative risk / odds ratio")]
    heights = [max(len(p[0]), 1) for p in panels]
    fig, axes = plt.subplots(2, 1, figsize=(9.5, 0.32 * sum(heights) + 2.2),
                             gridspec_kw={"height_ratios": heights}, squeeze=False)
    for ax, (items, scale, xlabel) in zip(axes[:, 0], panels):
        for i, r in enumerate(items):
            y = len(items) - 1 - i
            ci = r.get("ci95")
            if ci is not None:
                ax.plot([scale * ci[0], scale * ci[1]], [y, y], color="0.55", lw=2.5, solid_capstyle="butt")
            ax.plot(scale * r["published"], y, "|", color="black", ms=12)
            model = r.get("model")
            spread = r.get("model_ci95")
            if spread is not None and np.all(np.isfinite(spread)):
                ax.plot([scale * spread[0], scale * spread[1]], [y - 0.22, y - 0.22], color="tab:blue", lw=1.2)
            if model is not None and np.isfinite(model):
                inside = r.get("inside_ci")
                colour = "tab:green" if inside else ("tab:red" if inside is False else "tab:blue")
                ax.plot(scale * model, y, "o", color=colour, ms=6)
        ax.set_yticks(range(len(items)))
        ax.set_yticklabels([_short(r) for r in reversed(items)], fontsize=7)
        ax.set_xlabel(xlabel)
        ax.grid(axis="x", color="0.9")
        if scale == 1.0:  # ratios: a log axis, so that 0.5 and 2 sit alike around 1
            ax.set_xscale("log")
            ticks = [0.1, 0.2, 0.5, 1.0, 2.0, 5.0, 10.0, 20.0]
            ax.set_xticks(ticks, [f"{t:g}" for t in ticks])
            ax.minorticks_off()
            ax.axvline(1.0, color="0.3", lw=0.8)
    axes[0, 0].plot([], [], "|", color="black", ms=10, label="published")
    axes[0, 0].plot([], [], color="0.55", lw=2.5, label="published 95 % CI")
    axes[0, 0].plot([], [], "o", color="tab:green", label="model, inside the CI")
    axes[0, 0].plot([], [], "o", color="tab:red", label="model, outside the CI")
    if any(r.get("model_ci95") is not None for r in ratios):
        axes[0, 0].plot([], [], color="tab:blue", lw=1.2, label="model 95 % (calibration uncertainty)")
    axes[0, 0].legend(fontsize=7, loc="lower right")
    if title:
        fig.suptitle(title, fontsize=9)
    return _save(fig, path, fit_labels=True)


def _short(row: dict) -> str:
    label = str(row["label"])
    tag = f"row {row['row']}: " if row.get("row") not in (None, "check") else "check: "
    if row.get("carried_by_ratio"):
        tag = f"row {row['row']} (check; its RR fitted): "
    return tag + (label if len(label) <= 64 else label[:61] + "...")


__all__ = ["risk_calibration_figure", "surrogate_fit_figure"]
