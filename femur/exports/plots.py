"""PNG plots (matplotlib, Agg): a patient's time course and a study's arm summaries.

These functions only draw what they are given (a time course, or the arm means a study
computed); they never run a simulation.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from femur.core.units import DAYS_PER_MONTH

_SITES = (("ls", "lumbar spine"), ("th", "total hip"), ("fn", "femoral neck"))


def _pyplot():
    import matplotlib  # heavy optional import: only when a plot is drawn

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig, path, fit_labels: bool = False) -> Path:
    """Write ``fig`` (PNG) and close it; ``fit_labels``: grow the picture to hold long tick
    labels that the layout alone would clip."""
    plt = _pyplot()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(path, dpi=110, **({"bbox_inches": "tight"} if fit_labels else {}))
    plt.close(fig)
    return path


def plot_timecourse(tc, path) -> Path:
    """BMD change per DXA site, markers with the serum drug level and, for the FE driver,
    the FE strength changes and the compartment courses (cortical / trabecular mineral,
    neck cortical thickness, hip cortical porosity) of a
    ``femur.workflows.timecourse.TimeCourse``."""
    plt = _pyplot()
    strength = bool(len(tc.strength_months))
    comp = getattr(tc, "compartments", {}) or {}
    n = 2 + strength + bool(comp)
    fig, axes = plt.subplots(1, n, figsize=(5.25 * n, 4.2))
    if tc.daily:  # systemic driver: daily traces
        x = np.asarray(tc.daily["t_days"]) / DAYS_PER_MONTH
        bmd = {k: tc.daily[f"{k}_bmd_pct"] for k, _ in _SITES if f"{k}_bmd_pct" in tc.daily}
        p1np, ctx, serum, style = tc.daily["p1np_pct"], tc.daily["ctx_pct"], tc.daily["serum_ug_per_ml"], {}
    else:
        x = tc.months
        bmd = tc.bmd_pct
        p1np, ctx, serum, style = tc.p1np_pct, tc.ctx_pct, tc.drug_serum_ug_per_ml, {"marker": "o", "ms": 3}
    ax = axes[0]
    for key, label in _SITES:
        if key in bmd:
            ax.plot(x, bmd[key], label=label, **style)
    ax.axhline(0, color="0.6", lw=0.8)
    ax.set(xlabel="month", ylabel="areal BMD change (%)", title="DXA-equivalent BMD")
    ax.legend()
    ax = axes[1]
    ax.plot(x, p1np, label="P1NP", **style)
    ax.plot(x, ctx, label="CTX", **style)
    ax.axhline(0, color="0.6", lw=0.8)
    ax.set(xlabel="month", ylabel="change from baseline (%)", title="turnover markers")
    ax2 = ax.twinx()
    ax2.plot(x, serum, color="0.5", ls="--", label="serum")
    ax2.set_ylabel("drug serum level (ug/mL)")
    ax.legend(loc="upper right")
    if strength:
        ax = axes[2]
        for key, vals in tc.strength_pct.items():
            ax.plot(tc.strength_months, vals, marker="s", label=key.replace("_pct", "").replace("_", " "))
        ax.axhline(0, color="0.6", lw=0.8)
        ax.set(xlabel="month", ylabel="change from baseline (%)", title="FE strength")
        ax.legend(fontsize=8)
    if comp:
        ax = axes[-1]
        for key, vals in comp.items():
            ls = "--" if "trabecular" in key else ("-." if ("porosity" in key or "thickness" in key) else "-")
            ax.plot(tc.months, vals, ls=ls, label=key.replace("_pct", "").replace("_", " "))
        ax.axhline(0, color="0.6", lw=0.8)
        ax.set(xlabel="month", ylabel="change from baseline (%)", title="compartments")
        ax.legend(fontsize=7)
    p = tc.patient
    fig.suptitle(f"{tc.treatment}: {p['sex']}, {p['age_years']:g} y, FN T-score {p['fn_t_score']:g}")
    return _save(fig, path)


def plot_arm_trajectories(panels, arms, visit_months, path) -> Path:
    """One panel per endpoint: each arm's mean course with a 95 % CI band, visits marked.

    ``panels``: [(key, title)]; ``arms``: {arm: {key: (x, mean, low, high)}} (arrays; an arm
    without a key is left out of that panel)."""
    plt = _pyplot()
    fig, axes = plt.subplots(1, len(panels), figsize=(4 * len(panels), 3.4))
    for ax, (key, title) in zip(np.atleast_1d(axes), panels):
        for arm, courses in arms.items():
            if key not in courses:
                continue
            x, mean, lo, hi = courses[key]
            line, = ax.plot(x, mean, label=arm)
            at = [i for i, m in enumerate(x) if m in visit_months]
            if len(at) < len(x):  # a finer course than the visits: mark the visits
                ax.plot([x[i] for i in at], np.asarray(mean)[at], "o", color=line.get_color())
            else:
                line.set_marker("o")
            ax.fill_between(x, lo, hi, alpha=0.25, color=line.get_color())
        ax.axhline(0.0, color="0.6", lw=0.8)
        ax.set_title(title)
        ax.set_xlabel("month")
        ax.set_ylabel("% change from baseline")
    np.atleast_1d(axes)[0].legend(fontsize=8)
    return _save(fig, path)


def plot_arm_histograms(panels, arms, path) -> Path:
    """Distributions over patients, one panel per quantity, arms overlaid.

    ``panels``: [(key, title)]; ``arms``: {arm: {key: values}}."""
    plt = _pyplot()
    fig, axes = plt.subplots(1, len(panels), figsize=(4.5 * len(panels), 3.4))
    for ax, (key, title) in zip(np.atleast_1d(axes), panels):
        everything = [x for vals in arms.values() for x in vals.get(key, [])]
        if not everything:
            continue
        edges = np.histogram_bin_edges(everything, bins=min(30, max(8, len(everything) // 2)))
        for name, vals in arms.items():
            if vals.get(key):
                ax.hist(vals[key], bins=edges, alpha=0.55, label=name)
        ax.set_title(title)
        ax.set_xlabel("% change from baseline")
        ax.set_ylabel("patients")
    np.atleast_1d(axes)[0].legend(fontsize=8)
    return _save(fig, path)


def plot_cumulative_incidence(panels, arms, path, note: str = "") -> Path:
    """Cumulative fracture incidence per arm (%), monthly, with a 95 % band.

    ``panels``: [(key, title)]; ``arms``: {arm: {key: (months, mean, low, high)}} with
    fractions (plotted in %); ``note``: a line under the panels (e.g. how the band was made)."""
    plt = _pyplot()
    fig, axes = plt.subplots(1, len(panels), figsize=(4.6 * len(panels), 3.6))
    for ax, (key, title) in zip(np.atleast_1d(axes), panels):
        for arm, curves in arms.items():
            if key not in curves:
                continue
            x, mean, lo, hi = curves[key]
            line, = ax.step(x, 100 * np.asarray(mean), where="post", label=arm)
            if lo is not None and hi is not None:
                ax.fill_between(x, 100 * np.asarray(lo), 100 * np.asarray(hi), step="post", alpha=0.2,
                                color=line.get_color())
        ax.set_title(title)
        ax.set_xlabel("month")
        ax.set_ylabel("cumulative incidence (%)")
        ax.set_ylim(bottom=0.0)
    np.atleast_1d(axes)[0].legend(fontsize=8)
    if note:
        fig.text(0.01, 0.005, note, fontsize=7, color="0.3")
    return _save(fig, path)


__all__ = ["plot_arm_histograms", "plot_arm_trajectories", "plot_cumulative_incidence", "plot_timecourse"]
