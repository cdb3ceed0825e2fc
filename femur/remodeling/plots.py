"""PNG time-course plots of a :class:`SiteResults` (BMD, markers, drug level)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from femur.remodeling.parameters import DAYS_PER_MONTH


def plot_site_results(results, path) -> Path:
    """Three stacked panels: DXA BMD % change per site, P1NP/CTX %, serum drug level."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    d = results.daily
    tm = d["t_days"] / DAYS_PER_MONTH
    fig, ax = plt.subplots(3, 1, figsize=(7, 9), sharex=True)
    labels = {"ls": "lumbar spine", "th": "total hip", "fn": "femoral neck"}
    for key, lab in labels.items():
        if f"{key}_bmd_pct" in d:
            ax[0].plot(tm, d[f"{key}_bmd_pct"], label=lab)
    ax[0].axhline(0, color="0.6", lw=0.8)
    ax[0].set_ylabel("areal BMD change (%)")
    ax[0].legend(loc="best", fontsize=8)
    ax[1].plot(tm, d["p1np_pct"], label="P1NP")
    ax[1].plot(tm, d["ctx_pct"], label="CTX")
    ax[1].axhline(0, color="0.6", lw=0.8)
    ax[1].set_ylabel("marker change (%)")
    ax[1].legend(loc="best", fontsize=8)
    serum = np.asarray(d["serum_ug_per_ml"])
    ax[2].plot(tm, serum, color="k")
    ax[2].set_ylabel("serum drug (ug/mL)")
    ax[2].set_xlabel("month")
    fig.suptitle(f"{results.treatment} ({results.patient.sex}, {results.patient.age:g} y)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
