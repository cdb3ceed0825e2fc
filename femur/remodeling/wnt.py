"""Wnt inhibitors of the osteoblast lineage: sclerostin and DKK1, both osteocyte-derived.

Per element e (arrays, no loop over elements), normalised to 1 at baseline:

sclerostin (SOST), made by osteocytes and bound by romosozumab (Eudy 2015 total-sclerostin
model, remodeling.md 2.1, in the spirit of Jörg 2022, remodeling.md 1.8)::

    p      = Y^sigma a(t)                     production: the element's osteocytes (Y, the
                                              osteocytes per element volume, follows the bone
                                              laid down and resorbed), so new bone that buries
                                              osteoblasts as osteocytes raises sclerostin;
                                              a(t): production per osteocyte rising with age
                                              (Mödder 2011; 1 at day 0, CellParameters)
    phi    = 1 / (1 + C_bone / K_romo)        free fraction (quasi-equilibrium binding);
                                              C_bone: the antibody at the bone, lagging the
                                              serum level (femur.treatments.pk.effect_site)
    dT/dt  = k_out (p - phi T) - k_0 (1 - phi) T
    s      = phi T                            free sclerostin

T is total (free + antibody-bound) sclerostin. The free form clears fast (k_out = 25/day)
and the bound form slowly (k_0 = 0.197/day), both Eudy 2015 (remodeling.md 2.1), so under the
antibody the total rises (the bound complex accumulates) while the free form falls: the
bound reservoir partly refills the free form, and the binding constant K_romo (fitted: the
bone-tissue potency of the serum level) sets how far the free form falls.

DKK1 (a second LRP5/6 inhibitor, also osteocyte-derived, NOT bound by the antibody; and a
Wnt/beta-catenin target gene, so Wnt activation induces it: Niida 2004, Oncogene; in rats a
sclerostin antibody raised bone Dkk1 expression, Florio 2016, Nat Commun 7:11505; sizes
UNCONFIRMED)::

    dD/dt  = [p (1 + g_dkk w+) - D] / tau_dkk

The inhibition seen by LRP5/6 is I = (1 - chi) s + chi D (chi = DKK1's share of the baseline
inhibition), and the Wnt activation above baseline is

    w = (1 + a_W) / (1 + a_W I) - 1          (0 at I = 1, up to a_W as I -> 0, down to -1
                                              as I grows: more osteocytes or more DKK1 mean
                                              less Wnt than at baseline)

``femur.remodeling.model`` applies w to the whole osteoblast lineage (MSC commitment,
pre-osteoblast differentiation, osteoblast survival, matrix per osteoblast, lining-cell
activation) and to RANKL/OPG. Feedback that wanes romosozumab's formation with the antibody
still present: new osteocytes raise p (hence T, s and D), and w induces DKK1, which the
antibody does not bind.

Serum sclerostin: each element's level weighted by its baseline osteocyte number
(volume x BV/TV), summed over elements, bones and ranks (:func:`sclerostin_sums`).
"""

from __future__ import annotations

import numpy as np


def free_fraction(romo_ug_ml: float, k_ug_ml: float) -> float:
    """Free (unbound) fraction of sclerostin at serum romosozumab ``romo_ug_ml``."""
    return 1.0 / (1.0 + romo_ug_ml / k_ug_ml)


def sclerostin_step(total, production, phi, dt, k_out, k_bound):
    """Linearly implicit step of the total sclerostin (any dt, stays positive); returns
    (total, free)."""
    t_new = (total + dt * k_out * production) / (1.0 + dt * (k_out * phi + k_bound * (1.0 - phi)))
    return t_new, phi * t_new


def dkk1_step(dkk1, production, wnt_plus, dt, tau_days, induction):
    """Linearly implicit step of DKK1: relaxes to p (1 + g w+) with time constant tau."""
    h = dt / tau_days
    if induction == 0.0:
        return (dkk1 + h * production) / (1.0 + h)
    return (dkk1 + h * production * (1.0 + induction * wnt_plus)) / (1.0 + h)


def wnt_inhibition(free_sost, dkk1, dkk1_share):
    """Lumped LRP5/6 inhibition I = (1 - chi) s + chi D (1 at baseline)."""
    return (1.0 - dkk1_share) * free_sost + dkk1_share * dkk1


def wnt_activation(inhibition, gain):
    """Wnt activation above baseline w in (-1, gain] at inhibition I:
    (1 + a) / (1 + a I) - 1 = a (1 - I) / (1 + a I)."""
    return gain * (1.0 - inhibition) / (1.0 + gain * inhibition)


def sclerostin_sums(volume, f0, total, free) -> np.ndarray:
    """Local sums [total, free, baseline] of sclerostin weighted by baseline osteocyte number
    (volume x f0); sum over ranks/bones, then :func:`sclerostin_pct_from_sums`."""
    w = np.asarray(volume, float) * np.asarray(f0, float)
    return np.array([np.sum(w * total), np.sum(w * free), np.sum(w)])


def sclerostin_pct_from_sums(sums) -> dict:
    """Serum total and free sclerostin, % change from baseline."""
    base = sums[2] if sums[2] > 0 else 1.0
    return {
        "serum_sclerostin_total_pct": 100.0 * (sums[0] / base - 1.0) if sums[2] > 0 else 0.0,
        "serum_sclerostin_free_pct": 100.0 * (sums[1] / base - 1.0) if sums[2] > 0 else 0.0,
    }


__all__ = ["dkk1_step", "free_fraction", "sclerostin_pct_from_sums", "sclerostin_step",
           "sclerostin_sums", "wnt_activation"]
