"""A bone at a chosen DXA-equivalent T-score: one latent bone-mass variable.

:func:`bone_with_t_score` changes a bone's density with one latent bone-mass variable
(cancellous BV/TV x s, cortical porosity x 1/s, or x (2 - s) above s = 1) so that its
DXA-equivalent T-score (``femur.outcomes.dxa``) hits a target, e.g. -2.5 at the femoral
neck. It composes geometry (the density field) with an outcome (the DXA projection),
hence it lives in the workflow stage.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from femur.core.mpi import MPI
import dolfinx  # noqa: E402

from femur.core.errors import DensityError, InputError  # noqa: E402
from femur.core.sex import normalise_sex  # noqa: E402
from femur.geometry.compartments import is_bone_compartment  # noqa: E402
from femur.geometry.density import T_SCORE_BASE_G_CM3, assign_density  # noqa: E402
from femur.outcomes import dxa  # noqa: E402
from femur.outcomes.references import reference, t_score as t_score_of  # noqa: E402


#: Ceiling kept while changing densities (g/cm3): no apparent density above 2.0 (about fully
#: mineralised wet cortical bone; ASSUMPTION). It is also the pore-free density R of the
#: cortical porosity rule below (porosity = 1 - rho / R).
T_SCORE_MAX_G_CM3 = 2.0

#: Cells whose starting apparent density is at least this (g/cm3; BV/TV ~0.5 at a tissue
#: density ~1.95) follow the cortical (porosity) rule of :func:`bone_with_t_score`, the
#: others the cancellous (BV/TV) rule -- the same split as the calibrated site model
#: (``femur.workflows.systemic.site_elements``: compartments with BV/TV >= 0.5 are cortex).
CORTICAL_RULE_MIN_G_CM3 = 1.0

def _latent_density(base: np.ndarray, cortical: np.ndarray, s: float, hi: float) -> np.ndarray:
    """Densities at the latent bone-mass variable ``s`` (1 = the starting densities).

    cancellous cells: rho = s * rho0 (BV/TV x s);
    cortical cells:   porosity phi = 1 - rho / R (R = ``hi``, pore-free), phi0 at s = 1:
                      phi = phi0 * (2 - s) for s >= 1 (the site model's rule),
                      phi = phi0 / s       for s < 1 (same value and slope at s = 1; the
                      cortex too vanishes as s -> 0, so every T-score is reachable with
                      s > 0 and cancellous bone is not driven to zero alone);
    both clipped to [0, hi].
    """
    s = float(s)
    if s <= 0.0:
        return np.zeros_like(base)
    phi0 = np.clip(1.0 - base / hi, 0.0, 1.0)
    phi = np.minimum(phi0 * (2.0 - s) if s >= 1.0 else phi0 / s, 1.0)
    out = np.where(cortical, hi * (1.0 - phi), s * base)
    return np.clip(out, 0.0, hi)


def bone_with_t_score(
    bone,
    t_score: float = -2.5,
    site: str | None = None,
    sex: str = "female",
    tol: float = 1e-4,
    max_iter: int = 60,
    pixel_mm: float | None = None,
):
    """A copy of ``bone`` whose DXA-equivalent T-score at ``site`` equals ``t_score``.

    Bone loss/gain is one latent variable ``s`` applied to every bone cell (loading layers
    are untouched), with compartment-appropriate rules -- the T-score scaling of the
    calibrated site model (``femur.workflows.systemic``) made continuous:

    * cancellous cells (starting density < :data:`CORTICAL_RULE_MIN_G_CM3`): BV/TV x s;
    * cortical cells (>= that): porosity x (2 - s) for s >= 1 and x 1/s below (same value
      and slope at s = 1), the pore-free density being :data:`T_SCORE_MAX_G_CM3` (so dense
      cortex stays dense: at s = 0.55 a young cortex of BV/TV 0.95 keeps ~0.89 while
      cancellous bone loses 45 %; as s -> 0 both vanish, so any T-score is reachable
      without emptying the cancellous compartment first);

    all densities capped at :data:`T_SCORE_MAX_G_CM3`. aBMD is non-decreasing and piecewise
    linear in ``s``; ``s`` is found by secant steps safeguarded by bisection. Heterogeneity
    within a compartment is kept. Without a density field the bone starts from the
    young-adult densities :data:`T_SCORE_BASE_G_CM3` (femur: cortex 1.85, cancellous 0.35
    g/cm3), so ``s`` is the fraction of young cancellous bone left.

    ``site`` defaults to "femoral_neck" for a femur and "spine" for a vertebra (spine
    reference: see ``femur.outcomes.references.REFERENCES``; the parametric vertebral body gets the
    posterior-element allowance of ``femur.outcomes.dxa``). The achieved aBMD, T-score, ``s``
    ("density_scale"), the rule and the resulting BV/TV ranges per compartment (BV/TV =
    rho / 1.95 g/cm3, an approximate tissue density) are recorded in
    ``bone.parameters["t_score"]``. The input bone is not changed (the returned bone shares
    its mesh and tags).
    """
    if not np.isfinite(t_score) or not (-8.0 <= t_score <= 4.0):
        raise InputError(f"t_score must be a finite number between -8 and 4, got {t_score}")
    if site is None:
        site = "spine" if bone.kind == "vertebra" else "femoral_neck"
    sex = normalise_sex(sex)
    ref = reference(site, sex)
    target_bmd = ref.mean_g_cm2 + t_score * ref.sd_g_cm2

    new = dataclasses.replace(bone, parameters=dict(bone.parameters or {}))
    start = "given density field"
    if new.density is None:
        base_tab = T_SCORE_BASE_G_CM3["vertebra" if new.kind == "vertebra" else "femur"]
        assign_density(new, cortical_g_cm3=base_tab["cortical"],
                       trabecular_g_cm3=base_tab["trabecular"])
        start = f"young-adult densities {base_tab} g/cm3"
    base = np.array(new.density.x.array, dtype=float)
    bone_mask = np.zeros(base.shape[0], dtype=bool)
    if new.cell_ids and new.cell_tags is not None:
        for cname in new.cell_ids:
            if is_bone_compartment(cname):
                bone_mask |= new.compartment_mask(cname)
    else:
        bone_mask[:] = True
    hi = T_SCORE_MAX_G_CM3
    cortical = base >= CORTICAL_RULE_MIN_G_CM3
    base_b, cort_b = base[bone_mask], cortical[bone_mask]

    V = new.density.function_space
    work = dolfinx.fem.Function(V, name="density_g_cm3")
    new.density = work
    prep = dxa.prepare(new, site, pixel_mm=pixel_mm)

    def bmd_at(s: float) -> float:
        arr = base.copy()
        arr[bone_mask] = _latent_density(base_b, cort_b, s, hi)
        work.x.array[:] = arr
        work.x.scatter_forward()
        return dxa.areal_bmd(new, site, prepared=prep)

    # s = 0: no bone left
    s_lo = 0.0
    g_lo = bmd_at(s_lo) - target_bmd
    b0, b1 = bmd_at(0.0), bmd_at(1.0)
    if b1 <= 0:
        raise DensityError(f"bone '{bone.name}' has zero areal BMD at {site}; cannot scale it")
    # bracket: g(s) = bmd(s) - target is nondecreasing in s
    s_hi = 2.0
    g_hi = bmd_at(s_hi) - target_bmd
    while g_hi < 0 and s_hi < 1e4:
        s_lo, g_lo = s_hi, g_hi
        s_hi = 2.0 * s_hi
        g_hi = bmd_at(s_hi) - target_bmd
    if g_hi < 0:
        raise DensityError(
            f"cannot reach T-score {t_score} at {site} for bone '{bone.name}': even at the "
            f"density ceiling {hi} g/cm3 the aBMD is {g_hi + target_bmd:.3f} g/cm2 < "
            f"{target_bmd:.3f}; the bone is too thin for this T-score"
        )
    # affine guess from s = 0 and s = 1, refined by the safeguarded secant steps
    s = (target_bmd - b0) / (b1 - b0) if b1 > b0 else 0.5 * (s_lo + s_hi)
    if not (s_lo < s < s_hi):
        s = 0.5 * (s_lo + s_hi)
    tol_bmd = tol * ref.sd_g_cm2
    g = bmd_at(s) - target_bmd
    it = 0
    while abs(g) > tol_bmd and it < max_iter:
        it += 1
        if g > 0:
            s_hi, g_hi = s, g
        else:
            s_lo, g_lo = s, g
        s_new = s_lo - g_lo * (s_hi - s_lo) / (g_hi - g_lo) if g_hi != g_lo else 0.5 * (s_lo + s_hi)
        if not (s_lo < s_new < s_hi) or it % 3 == 0:
            s_new = 0.5 * (s_lo + s_hi)
        s = s_new
        g = bmd_at(s) - target_bmd
    achieved_bmd = g + target_bmd
    achieved_t = t_score_of(achieved_bmd, site, sex)
    if abs(achieved_t - t_score) > max(10 * tol, 1e-3):
        raise DensityError(
            f"bone_with_t_score did not converge for bone '{bone.name}': T = {achieved_t:.4f} "
            f"vs target {t_score} after {it} iterations"
        )
    bvtv = _compartment_bv_tv(new)
    new.parameters["t_score"] = {
        "site": site,
        "sex": sex,
        "target": float(t_score),
        "achieved": float(achieved_t),
        "areal_bmd_g_cm2": float(achieved_bmd),
        "density_scale": float(s),
        "rule": ("latent bone-mass variable s: cancellous BV/TV x s, cortical porosity x (2 - s) "
                 f"for s >= 1, x 1/s below (cells >= {CORTICAL_RULE_MIN_G_CM3} g/cm3; pore-free "
                 f"{hi} g/cm3)"),
        "start": start,
        "bv_tv": bvtv,
        "reference": ref.source,
        "note": "DXA-equivalent T-score of the FE model's projection (femur.outcomes.dxa), not a scan",
    }
    new.parameters["density"] = dict(new.parameters.get("density", {}), scaled_by=float(s),
                                     t_score_rule="latent s (cancellous x s, porosity x (2 - s) / x 1/s)")
    return new


#: Approximate wet tissue density (g/cm3) used only to *report* BV/TV = rho_app / 1.95
#: (Martínez-Reina 2019 composition gives ~1.9-2.0; femur.remodeling computes its own).
REPORT_TISSUE_G_CM3 = 1.95


def _compartment_bv_tv(bone) -> dict:
    """{compartment: [min, volume-weighted mean, max] BV/TV} over owned bone cells."""
    out = {}
    if not bone.cell_ids or bone.cell_tags is None:
        return out
    rho = bone.density.x.array
    n = bone.num_owned_cells
    vol = bone.cell_volumes()[:n]
    comm = bone.comm
    for cname in bone.cell_ids:
        if not is_bone_compartment(cname):
            continue
        m = bone.compartment_mask(cname)[:n]
        r = rho[:n][m] / REPORT_TISSUE_G_CM3
        lo = comm.allreduce(float(r.min()) if r.size else np.inf, op=MPI.MIN)
        hi = comm.allreduce(float(r.max()) if r.size else -np.inf, op=MPI.MAX)
        sw = comm.allreduce(np.array([float(np.sum(r * vol[m])), float(np.sum(vol[m]))]), op=MPI.SUM)
        if sw[1] > 0:
            out[cname] = [lo, float(sw[0] / sw[1]), hi]
    return out


__all__ = ["bone_with_t_score", "T_SCORE_BASE_G_CM3", "T_SCORE_MAX_G_CM3", "CORTICAL_RULE_MIN_G_CM3"]
