"""Compartment courses of a remodeling run: where the bone gained or lost, cortex vs
trabecular bone, at the hip and the spine (issue 15).

Both drivers (the FE-coupled simulation and the systemic DXA-site driver) measure these
on the same cells with the same weights: the cells of a DXA region of interest, each
counted by the volume ``v_e`` of the cell inside the prism over the ROI (the exact ray
chords of `femur.outcomes.dxa`; the systemic driver's site templates store ``rho0_e v_e``,
`femur.workflows.site_template`). ``rho0_e`` is the cell's baseline apparent density,
``f_e`` its bone volume fraction (BV/TV), ``r_e = (f alpha)_e / (f0 alpha0)_e`` its
mineral-mass ratio to baseline (the quantity DXA follows), "cortical" the cells tagged
cortical. The tags are those of the visit: with compartment switching
(``femur.remodeling.switching``) a cortical cell that trabecularises counts as trabecular
from then on, and a trabecular cell that corticalises as cortical, as an imaging
segmentation at the visit would count them; the baseline sums use the baseline (mesh)
tags. Without a switch everything is as with fixed tags. All values are % change from
month 0:

``hip_cortical_bmc_pct`` / ``hip_trabecular_bmc_pct``
    mineral content of the cortical / trabecular cells in the total-hip ROI,
    ``100 (sum_c rho0 v r / sum_c0 rho0 v - 1)`` (c: cortical now, c0: at baseline).
    Weighted by their baseline shares of the ROI's mineral they add up exactly to the
    total-hip aBMD change (fixed projected area),
    so ``cortical share x cortical % / total %`` is the cortical share of a change.
``spine_cortical_bmc_pct`` / ``spine_trabecular_bmc_pct``
    the same in the lumbar-spine ROI (vertebral shell vs centrum).
``neck_cortical_thickness_pct``
    mean cortical thickness in the femoral-neck DXA box: the cortical bone volume (pores
    excluded) ``sum_c v f`` over the periosteal area of the section. The periosteal surface
    does not move in today's model, so its % change is that of the cortical bone volume in
    the box: ``100 (sum_c v f / sum_c0 v f0 - 1)``; a porosity-free ("effective") thickness,
    as cortical bone mapping measures thickness from mass (Poole 2015, clinical-targets
    row 21).
``hip_cortical_porosity_pct``
    relative change of the intracortical porosity of the cortical cells in the total-hip
    ROI: ``100 (sum_c v (1 - f0 + dpore) / sum_c0 v (1 - f0) x sum_c0 v / sum_c v - 1)``
    (the last factor, the cortical volumes' ratio, is 1 while no cell switched), ``dpore`` the porosity
    opened (or closed) by remodelling of the canals (the cell model's ``pore``; bone gained or
    lost on the endocortical and periosteal surfaces changes thickness, not porosity). Without
    ``dpore`` every change of BV/TV counts as porosity, ``dpore = f0 - f``. HR-pQCT reports
    porosity changes the same way (clinical-targets row 19).
``hip_cortical_tmd_pct`` / ``spine_trabecular_tmd_pct``
    tissue mineral density (mean degree of mineralisation of the bone, mineral per bone
    volume) of the hip's cortical and the spine's trabecular cells,
    ``100 ((sum v f alpha / sum v f) / (sum v f0 alpha0 / sum v f0) - 1)`` (row 20: biopsy
    mean degree of mineralisation, compact and cancellous).

The baseline quantities (:data:`BASELINE_KEYS`) come with them: the cortical share of the
ROI's mineral at the hip and the spine, and the cortical porosity at the hip (fractions).

Everything is a sum over cells, computed on each rank and summed over ranks
(:func:`roi_sums` then :func:`changes_from_sums`), so results do not depend on the
partition. Cells that do not remodel (held CT cells) keep ``r = 1`` in the mineral sums,
as in DXA, and are left out of the bone-volume sums (their BV/TV is not modelled).
"""

from __future__ import annotations

import numpy as np

#: the DXA ROI each measure lives in: site key (femur.workflows.timecourse) -> measures
SITE_MEASURES = {
    "th": ("hip_cortical_bmc_pct", "hip_trabecular_bmc_pct", "hip_cortical_porosity_pct",
           "hip_cortical_tmd_pct"),
    "ls": ("spine_cortical_bmc_pct", "spine_trabecular_bmc_pct", "spine_trabecular_tmd_pct"),
    "fn": ("neck_cortical_thickness_pct",),
}
#: every compartment course, in table order
COMPARTMENT_KEYS = ("hip_cortical_bmc_pct", "hip_trabecular_bmc_pct", "spine_cortical_bmc_pct",
                    "spine_trabecular_bmc_pct", "neck_cortical_thickness_pct",
                    "hip_cortical_porosity_pct", "hip_cortical_tmd_pct", "spine_trabecular_tmd_pct")
#: short column heads of the printed tables
COMPARTMENT_HEADS = {"hip_cortical_bmc_pct": "hip Ct BMC%", "hip_trabecular_bmc_pct": "hip Tb BMC%",
                     "spine_cortical_bmc_pct": "LS Ct BMC%", "spine_trabecular_bmc_pct": "LS Tb BMC%",
                     "neck_cortical_thickness_pct": "neck Ct.Th%",
                     "hip_cortical_porosity_pct": "hip Ct.Po%", "hip_cortical_tmd_pct": "hip Ct.TMD%",
                     "spine_trabecular_tmd_pct": "LS Tb.TMD%"}
#: baseline values (fractions) that go with the courses
BASELINE_KEYS = ("hip_cortical_bmc_share", "spine_cortical_bmc_share", "hip_cortical_porosity")

#: layout of :func:`roi_sums`
_N_SUMS = 16


def roi_sums(volume, rho0, cortical, mineral_ratio, f, f0, modelled=None, pore=None, alpha=None,
             alpha0=None, cortical0=None) -> np.ndarray:
    """The 16 local sums of one ROI (sum them over ranks before :func:`changes_from_sums`):

    ``[sum_c w r, sum_c0 w, sum_t w r, sum_t0 w, sum_c v f, sum_c0 v f0, sum_c v (1-f0+dpore),
    sum_c0 v (1-f0), sum_c v f a, sum_c0 v f0 a0, sum_t v f a, sum_t0 v f0 a0, sum_t v f,
    sum_t0 v f0, sum_c v, sum_c0 v]`` with ``w = rho0 v`` (mineral weight), ``c`` / ``t`` the
    cells cortical / trabecular *now* (``cortical``) and ``c0`` / ``t0`` at baseline
    (``cortical0``, default ``cortical``: compartment switching, ``femur.remodeling.
    switching``, moves a cell's bone from one compartment's sums to the other's, as an
    imaging segmentation at the visit would); ``v``: each cell's volume inside the ROI's
    prism (0 outside; in the BV/TV sums only the ``modelled`` cells, default all);
    ``pore``: intracortical porosity change ``dpore`` (default ``f0 - f``); ``alpha`` /
    ``alpha0``: mineral content now and at baseline (default 1: the tissue-mineral sums then
    follow BV/TV only).
    """
    v = np.asarray(volume, dtype=float)
    c = np.asarray(cortical, dtype=bool)
    c0 = c if cortical0 is None else np.asarray(cortical0, dtype=bool)
    w = v * np.asarray(rho0, dtype=float)
    r = np.asarray(mineral_ratio, dtype=float)
    mod = np.ones(v.shape, bool) if modelled is None else np.asarray(modelled, dtype=bool)
    vb, vt = v * c * mod, v * ~c * mod
    vb0, vt0 = v * c0 * mod, v * ~c0 * mod
    f = np.asarray(f, dtype=float)
    f0 = np.asarray(f0, dtype=float)
    dpore = f0 - f if pore is None else np.asarray(pore, dtype=float)
    a = 1.0 if alpha is None else np.asarray(alpha, dtype=float)
    a0 = 1.0 if alpha0 is None else np.asarray(alpha0, dtype=float)
    return np.array([np.sum(w * c * r), np.sum(w * c0), np.sum(w * ~c * r), np.sum(w * ~c0),
                     np.sum(vb * f), np.sum(vb0 * f0), np.sum(vb * (1.0 - f0 + dpore)), np.sum(vb0 * (1.0 - f0)),
                     np.sum(vb * f * a), np.sum(vb0 * f0 * a0), np.sum(vt * f * a), np.sum(vt0 * f0 * a0),
                     np.sum(vt * f), np.sum(vt0 * f0), np.sum(vb), np.sum(vb0)])


def _tmd_pct(fa, fa0, fv, fv0):
    """Tissue mineral density % change from the sums of f alpha and f, now and at baseline."""
    if min(fa0, fv, fv0) <= 0:
        return None
    return 100.0 * ((fa / fv) / (fa0 / fv0) - 1.0)


def _pct(now: float, base: float):
    return 100.0 * (now / base - 1.0) if base > 0 else None


def changes_from_sums(site_sums: dict) -> dict:
    """Compartment % changes and baseline shares from the (rank-summed) :func:`roi_sums`
    of each site key ("th", "ls", "fn"); a measure whose ROI or compartment is empty (a
    bone without a cortex tag, a run without a femur) is left out."""
    out = {}
    for site, sums in site_sums.items():
        s = np.asarray(sums, dtype=float)
        if s.shape != (_N_SUMS,):
            raise ValueError(f"compartment sums of site {site!r} must have {_N_SUMS} values")
        cort_bmc, trab_bmc = _pct(s[0], s[1]), _pct(s[2], s[3])
        bone_vol = _pct(s[4], s[5])
        # porosity of the cortex now over that of the cortex at baseline: the pore volumes'
        # ratio, times the cortical volumes' once a cell has switched
        pores = _pct(s[6], s[7])
        if pores is not None and s[14] != s[15]:
            pores = _pct(s[6] * s[15], s[7] * s[14]) if s[14] > 0 else None
        share = s[1] / (s[1] + s[3]) if s[1] + s[3] > 0 else None
        if site == "th":
            vals = {"hip_cortical_bmc_pct": cort_bmc, "hip_trabecular_bmc_pct": trab_bmc,
                    "hip_cortical_porosity_pct": pores, "hip_cortical_bmc_share": share,
                    "hip_cortical_porosity": s[7] / (s[7] + s[5]) if s[7] + s[5] > 0 else None,
                    "hip_cortical_tmd_pct": _tmd_pct(s[8], s[9], s[4], s[5])}
        elif site == "ls":
            vals = {"spine_cortical_bmc_pct": cort_bmc, "spine_trabecular_bmc_pct": trab_bmc,
                    "spine_cortical_bmc_share": share,
                    "spine_trabecular_tmd_pct": _tmd_pct(s[10], s[11], s[12], s[13])}
        elif site == "fn":
            vals = {"neck_cortical_thickness_pct": bone_vol}
        else:
            raise ValueError(f"unknown compartment site {site!r}; known: {', '.join(SITE_MEASURES)}")
        out.update({k: float(x) for k, x in vals.items() if x is not None})
    return out


def cortical_share_of_change(total_pct: float, cortical_pct: float, cortical_share: float):
    """Share of a site's mineral change carried by its cortex: ``share x cortical % /
    total %`` (None when the total change is zero)."""
    if total_pct == 0:
        return None
    return float(cortical_share * cortical_pct / total_pct)


__all__ = ["BASELINE_KEYS", "COMPARTMENT_HEADS", "COMPARTMENT_KEYS", "SITE_MEASURES", "changes_from_sums",
           "cortical_share_of_change", "roi_sums"]
