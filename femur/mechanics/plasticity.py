"""Small-strain elasto-plasticity at quadrature points: yield criteria, softening, return map.

Pure numpy, vectorised over all points (no loop over points); the FE driver
(``femur.mechanics.nonlinear``) evaluates the total strain at the quadrature points,
calls :meth:`Criterion.return_map` and assembles the returned stress and tangent.

Notation and units
------------------
Tensors are stored in **Mandel** notation, ``[11, 22, 33, sqrt2*23, sqrt2*13, sqrt2*12]``,
so that ``sigma:eps`` is the dot product of the 6-vectors and a 4th-order tensor is a
symmetric 6x6 matrix.  Stress in MPa, strain dimensionless.  Isotropic elasticity with
bulk modulus ``K`` and shear modulus ``mu`` per point.  ``p = tr(sigma)/3``,
``s = dev(sigma)``, ``q = sqrt(3/2)|s|`` (von Mises stress).

Criteria (associative flow, so the algorithmic tangent is symmetric and CG applies)
---------------------------------------------------------------------------------
* :class:`VonMises` -- equal tensile and compressive yield ``sigma_c``: ``f = q - sigma_c``.
  The Bonelab spine benchmark uses Mohr-Coulomb with zero friction angle (= Tresca) for
  its equal tension/compression yield (biomechanics.md 2.4); von Mises is used here
  instead (smooth, closed-form return and tangent).  Both give ``sigma_c`` in uniaxial
  tension and compression; in pure shear von Mises yields at ``sigma_c/sqrt3`` and
  Tresca at ``sigma_c/2`` (15 % lower).
* :class:`DruckerPrager` -- asymmetric: the cone ``f = (q + alpha*I1)/(1 - alpha) - sigma_c``
  with ``alpha = (sigma_c - sigma_t)/(sigma_c + sigma_t)`` per point passes exactly through
  uniaxial compression at ``sigma_c`` and uniaxial tension at ``sigma_t`` (bone: tension
  weaker, ``sigma_t <= sigma_c``).  ``alpha = 0`` is von Mises.  The cone's apex lies in
  hydrostatic tension at ``p_apex = sigma_c (1 - alpha)/(3 alpha)`` (for the femur yield
  strains 0.73 %/1.04 %: 1.4 sigma_c).

Hardening variable and softening
--------------------------------
``kappa`` is the work-conjugate equivalent plastic strain (``sigma:d eps_p = sigma_c
d kappa``); in uniaxial compression it equals the axial plastic strain.  The current
compressive yield ``sigma_c(kappa)`` is perfectly plastic by default; :class:`Softening`
makes it piecewise linear: constant up to ``plateau_strain``, then falling with slope
``-modulus_fraction * E`` to ``residual_fraction * sigma_c0``, then constant again
(Keyak 2005's shape: plateau, linear softening, residual; biomechanics.md 2.4).  The
tensile yield scales with it (``alpha`` is constant).

Return mapping (backward Euler, closed form per linear segment of sigma_c(kappa))
---------------------------------------------------------------------------------
Trial ``sigma_tr = C:(eps - eps_p_n)``.  If ``f_tr > 0``:

* cone (smooth part): the flow direction keeps the trial deviator's direction
  ``N = s_tr/|s_tr|``; with ``beta = 1/(1 - alpha)`` and ``D = beta^2 (3 mu + 9 K alpha^2)``
  the consistency condition is linear in ``dlam`` on each segment
  (``sigma_c = a_j + H_j kappa``): ``dlam = (seq_tr - a_j - H_j kappa_n)/(D + H_j)``.
  Segments are tried in order from the one holding ``kappa_n``; since
  ``seq_tr - D dlam - sigma_c(kappa_n + dlam)`` decreases monotonically (needs
  ``D + H_j > 0``: softening slope flatter than ~3 mu, checked), the first segment whose
  end is not passed holds the unique root.  Then ``q = q_tr - 3 mu beta dlam``,
  ``p = p_tr - 3 K alpha beta dlam``.
* apex: if the cone return gives ``q < 0`` (trial beyond the apex, alpha > 0 only) the
  stress returns to the apex ``sigma = p I``, ``p = sigma_c(kappa)/(3 alpha beta)``, with
  ``dlam = (p_tr - p)/(3 alpha beta K)`` from the plastic work (linear per segment as
  well).  The deviatoric trial stress is removed entirely.

Algorithmic (consistent) tangent, cone:
``C = K 1x1 + 2 mu theta P_dev + (6 mu^2 beta dlam/q_tr) NxN - m x m/(D + H)``,
``theta = 1 - 3 mu beta dlam/q_tr``, ``m = sqrt6 mu beta N + 3 K alpha beta 1``
(for alpha = 0 this is the classical radial-return tangent).  Apex:
``C = K c^2 H/(K + c^2 H) 1x1`` with ``c = 1/(3 alpha beta)``, zero for perfect
plasticity; a floor ``1e-6 K 1x1`` (with the clipped tangent) keeps the element matrix
from vanishing.  With
softening (``H < 0``) the exact tangent can be indefinite, which CG cannot take: by
default (``clip_softening_tangent``) the tangent uses ``max(H, 0)`` -- a quasi-Newton
step in softening points whose stress update is still exact.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from femur.core.errors import InputError

SQ2 = np.sqrt(2.0)
SQ6 = np.sqrt(6.0)
SQ32 = np.sqrt(1.5)
ONE = np.array([1.0, 1.0, 1.0, 0.0, 0.0, 0.0])
I6 = np.eye(6)
P_DEV = I6 - np.outer(ONE, ONE) / 3.0
#: relative tolerance on the trial yield function below which a point stays elastic
YIELD_TOL = 1e-12
#: apex tangent floor (fraction of K)
APEX_TANGENT_FLOOR = 1e-6


# ----------------------------------------------------------------------------- Mandel helpers
def to_mandel(t: np.ndarray) -> np.ndarray:
    """(..., 3, 3) symmetric tensors -> (..., 6) Mandel vectors."""
    t = np.asarray(t, dtype=float)
    return np.stack([t[..., 0, 0], t[..., 1, 1], t[..., 2, 2], SQ2 * t[..., 1, 2],
                     SQ2 * t[..., 0, 2], SQ2 * t[..., 0, 1]], axis=-1)


def from_mandel(v: np.ndarray) -> np.ndarray:
    """(..., 6) Mandel vectors -> (..., 3, 3) symmetric tensors."""
    v = np.asarray(v, dtype=float)
    out = np.empty(v.shape[:-1] + (3, 3))
    out[..., 0, 0], out[..., 1, 1], out[..., 2, 2] = v[..., 0], v[..., 1], v[..., 2]
    out[..., 1, 2] = out[..., 2, 1] = v[..., 3] / SQ2
    out[..., 0, 2] = out[..., 2, 0] = v[..., 4] / SQ2
    out[..., 0, 1] = out[..., 1, 0] = v[..., 5] / SQ2
    return out


def bulk_shear(E, nu):
    """(K, mu) in MPa from Young's modulus E (MPa) and Poisson ratio nu."""
    E = np.asarray(E, dtype=float)
    nu = np.asarray(nu, dtype=float)
    return E / (3.0 * (1.0 - 2.0 * nu)), E / (2.0 * (1.0 + nu))


def elastic_tangent(K, mu) -> np.ndarray:
    """(n, 6, 6) isotropic elasticity tensors (Mandel)."""
    K = np.atleast_1d(np.asarray(K, dtype=float))
    mu = np.atleast_1d(np.asarray(mu, dtype=float))
    return K[:, None, None] * np.outer(ONE, ONE) + 2.0 * mu[:, None, None] * P_DEV


def invariants(sig: np.ndarray):
    """(p, q, s) of Mandel stresses (n, 6): mean stress, von Mises stress, deviator."""
    p = sig[:, :3].sum(axis=1) / 3.0
    s = sig - p[:, None] * ONE
    q = SQ32 * np.linalg.norm(s, axis=1)
    return p, q, s


# ----------------------------------------------------------------------------- softening
@dataclass(frozen=True)
class Softening:
    """Post-yield softening of the compressive yield stress sigma_c(kappa).

    ``plateau_strain``: equivalent plastic strain of the perfectly plastic range before
    softening; ``modulus_fraction``: softening slope as a fraction of the point's Young's
    modulus (slope = -modulus_fraction * E); ``residual_fraction``: residual stress as a
    fraction of the initial yield stress.  Keyak 2005's femur law (biomechanics.md 2.4,
    ash density, UNCONFIRMED): slope -2080 rho^1.45 vs E = 14900 rho^1.86 (fraction
    ~0.2 at rho_ash 0.4), residual 43.1 rho^1.81 vs yield 102 rho^1.80 (~0.42).
    """

    modulus_fraction: float = 0.05
    residual_fraction: float = 0.4
    plateau_strain: float = 0.0

    def __post_init__(self):
        if not (np.isfinite(self.modulus_fraction) and self.modulus_fraction > 0):
            raise InputError(f"Softening.modulus_fraction must be > 0, got {self.modulus_fraction}")
        if not (0.0 <= self.residual_fraction < 1.0):
            raise InputError(
                f"Softening.residual_fraction must lie in [0, 1), got {self.residual_fraction}")
        if not (np.isfinite(self.plateau_strain) and self.plateau_strain >= 0):
            raise InputError(f"Softening.plateau_strain must be >= 0, got {self.plateau_strain}")


@dataclass
class PointMaterial:
    """Material data at every quadrature point (arrays of length n).

    ``sigma_c``/``sigma_t``: initial compressive/tensile yield stress (MPa, positive;
    ``inf`` = elastic); ``softening``: None (perfectly plastic) or a Softening.
    """

    K: np.ndarray
    mu: np.ndarray
    sigma_c: np.ndarray
    sigma_t: np.ndarray
    E: np.ndarray
    softening: Softening | None = None

    def __post_init__(self):
        n = len(self.K)
        for name in ("mu", "sigma_c", "sigma_t", "E"):
            if len(getattr(self, name)) != n:
                raise InputError(f"PointMaterial.{name} has {len(getattr(self, name))} values, expected {n}")
        if np.any(~(self.sigma_c > 0)) or np.any(~(self.sigma_t > 0)):
            raise InputError("yield stresses must be > 0 MPa at every point (inf for elastic points)")
        # breakpoints of sigma_c(kappa): [0, k1, k2, inf], values and slopes per segment
        big = np.full(n, np.inf)
        if self.softening is None:
            self.k1, self.k2 = big, big
            self.H1 = np.zeros(n)
            self.sigma_res = self.sigma_c.copy()
        else:
            sft = self.softening
            self.H1 = -sft.modulus_fraction * self.E
            self.sigma_res = sft.residual_fraction * self.sigma_c
            self.k1 = np.full(n, sft.plateau_strain)
            with np.errstate(invalid="ignore"):
                self.k2 = self.k1 + (self.sigma_res - self.sigma_c) / self.H1
            fin = np.isfinite(self.sigma_c)
            self.k1 = np.where(fin, self.k1, np.inf)
            self.k2 = np.where(fin, self.k2, np.inf)

    def segment_lines(self):
        """For segments 0, 1, 2: (lower breakpoint, upper breakpoint, a_j, H_j) arrays with
        sigma_c(kappa) = a_j + H_j kappa on the segment."""
        z = np.zeros_like(self.K)
        with np.errstate(invalid="ignore"):
            a1 = np.where(np.isfinite(self.k1), self.sigma_c - self.H1 * self.k1, self.sigma_c)
        return [(z, self.k1, self.sigma_c, z),
                (self.k1, self.k2, a1, np.where(np.isfinite(self.k1), self.H1, 0.0)),
                (self.k2, np.full_like(self.K, np.inf), self.sigma_res, z)]

    def yield_stress(self, kappa) -> np.ndarray:
        """Current compressive yield sigma_c(kappa) (MPa)."""
        out = self.sigma_c.copy()
        if self.softening is not None:
            soft = self.sigma_c + self.H1 * (kappa - self.k1)
            out = np.where(kappa > self.k1, np.maximum(soft, self.sigma_res), out)
        return out


@dataclass
class ReturnResult:
    sigma: np.ndarray  # (n, 6) Mandel stress
    eps_p: np.ndarray  # (n, 6) Mandel plastic strain
    kappa: np.ndarray  # (n,) equivalent plastic strain
    plastic: np.ndarray  # (n,) bool: returned to the yield surface in this step
    apex: np.ndarray  # (n,) bool: returned to the cone's apex
    tangent_plastic: np.ndarray | None  # (n_plastic, 6, 6) algorithmic tangent of plastic points
    K: np.ndarray = None
    mu: np.ndarray = None

    @property
    def tangent(self) -> np.ndarray | None:
        """(n, 6, 6) algorithmic tangent (elastic tensor at elastic points)."""
        if self.tangent_plastic is None:
            return None
        C = elastic_tangent(self.K, self.mu)
        C[self.plastic] = self.tangent_plastic
        return C


# ----------------------------------------------------------------------------- criteria
class Criterion:
    """Base class: equivalent stress and return map of a pressure-dependent J2 cone."""

    name = "criterion"

    def alpha(self, mat: PointMaterial) -> np.ndarray:  # pragma: no cover - overridden
        raise NotImplementedError

    def describe(self) -> str:
        return self.name

    def equivalent_stress(self, sigma: np.ndarray, mat: PointMaterial) -> np.ndarray:
        """sigma_eq with f = sigma_eq - sigma_c (= the compressive yield stress at yield);
        positively homogeneous of degree 1 in sigma."""
        a = self.alpha(mat)
        p, q, _ = invariants(sigma)
        return (q + 3.0 * a * p) / (1.0 - a)

    def yield_ratio(self, sigma: np.ndarray, mat: PointMaterial) -> np.ndarray:
        """sigma_eq / sigma_c0: the elastic load factor at which each point yields is its
        inverse (0 where the point cannot yield)."""
        with np.errstate(divide="ignore", invalid="ignore"):
            r = self.equivalent_stress(sigma, mat) / mat.sigma_c
        return np.where(np.isfinite(r) & (r > 0), r, 0.0)

    def return_map(self, eps, eps_p_n, kappa_n, mat: PointMaterial, tangent: bool = True,
                   clip_softening_tangent: bool = True) -> ReturnResult:
        """Backward-Euler return map from the committed state (eps_p_n, kappa_n) for the
        total strains ``eps`` (n, 6); see the module docstring."""
        a = self.alpha(mat)
        return _cone_return(np.asarray(eps, float), np.asarray(eps_p_n, float),
                            np.asarray(kappa_n, float), mat, a, tangent, clip_softening_tangent)


class VonMises(Criterion):
    """von Mises (J2): equal tension and compression yield ``sigma_c`` (sigma_t ignored)."""

    name = "von_mises"

    def alpha(self, mat):
        return np.zeros_like(mat.K)


class DruckerPrager(Criterion):
    """Drucker-Prager cone through uniaxial tension ``sigma_t`` and compression ``sigma_c``."""

    name = "drucker_prager"

    def alpha(self, mat):
        sc, st = mat.sigma_c, mat.sigma_t
        if np.any(st > sc * (1 + 1e-12)):
            raise InputError(
                "drucker_prager: tensile yield exceeds compressive yield at some points; "
                "the cone fitted here needs sigma_t <= sigma_c (bone is weaker in tension)")
        with np.errstate(invalid="ignore"):
            a = (sc - st) / (sc + st)
        return np.where(np.isfinite(a), np.clip(a, 0.0, None), 0.0)


CRITERIA = {"von_mises": VonMises, "drucker_prager": DruckerPrager}


def get_criterion(name) -> Criterion:
    if isinstance(name, Criterion):
        return name
    if name not in CRITERIA:
        raise InputError(f"unknown yield criterion {name!r}; expected one of {sorted(CRITERIA)}")
    return CRITERIA[name]()


# ----------------------------------------------------------------------------- return map
def _solve_segments(mat, kappa_n, rhs0, D, where):
    """Root dlam of ``rhs0 - D dlam - sigma_c(kappa_n + dlam) = 0`` for points ``where``:
    walk the linear segments of sigma_c from the one holding kappa_n.  Returns (dlam, H)
    with H the slope of the segment holding the root (full-length arrays, 0 elsewhere)."""
    n = len(kappa_n)
    dlam = np.zeros(n)
    H = np.zeros(n)
    todo = where.copy()
    for lo, hi, a_j, H_j in mat.segment_lines():
        sel = todo & (kappa_n < hi)
        if not sel.any():
            continue
        if np.any(D[sel] + H_j[sel] <= 0):
            raise InputError(
                "softening slope steeper than the elastic return stiffness (D + H <= 0): "
                "reduce Softening.modulus_fraction")
        with np.errstate(invalid="ignore"):
            d = (rhs0[sel] - a_j[sel] - H_j[sel] * kappa_n[sel]) / (D[sel] + H_j[sel])
        ok = kappa_n[sel] + d <= hi[sel] * (1 + 1e-14)
        idx = np.flatnonzero(sel)[ok]
        dlam[idx] = d[ok]
        H[idx] = H_j[sel][ok]
        todo[idx] = False
    if todo.any():  # cannot happen: the last segment is unbounded
        raise RuntimeError("return map: no segment holds the root")
    return dlam, H


def _cone_return(eps, eps_p_n, kappa_n, mat, alpha, want_tangent, clip):
    n = eps.shape[0]
    K, mu = mat.K, mat.mu
    ee = eps - eps_p_n
    tr = ee[:, :3].sum(axis=1)
    p_tr = K * tr
    s_tr = 2.0 * mu[:, None] * (ee - (tr / 3.0)[:, None] * ONE)
    snorm = np.linalg.norm(s_tr, axis=1)
    q_tr = SQ32 * snorm
    beta = 1.0 / (1.0 - alpha)
    seq_tr = beta * (q_tr + 3.0 * alpha * p_tr)
    sc_n = mat.yield_stress(kappa_n)
    f_tr = seq_tr - sc_n
    plastic = f_tr > YIELD_TOL * np.where(np.isfinite(sc_n), sc_n, 1.0)
    plastic &= np.isfinite(sc_n)

    sigma = s_tr + p_tr[:, None] * ONE
    kappa = kappa_n.copy()
    apex = np.zeros(n, dtype=bool)
    dlam = np.zeros(n)
    H = np.zeros(n)
    D = beta**2 * (3.0 * mu + 9.0 * K * alpha**2)
    if plastic.any():
        dl, Hc = _solve_segments(mat, kappa_n, seq_tr, D, plastic)
        q_new = q_tr - 3.0 * mu * beta * dl
        apex = plastic & (q_new < 0) & (alpha > 0)
        cone = plastic & ~apex
        dlam[cone], H[cone] = dl[cone], Hc[cone]
        # cone: deviator scaled, mean stress reduced
        with np.errstate(invalid="ignore", divide="ignore"):
            fac = np.where(cone, 1.0 - 3.0 * mu * beta * dlam / np.where(q_tr > 0, q_tr, 1.0), 1.0)
        p_new = np.where(cone, p_tr - 3.0 * K * alpha * beta * dlam, p_tr)
        if apex.any():
            # apex: p = c sigma_c(kappa), c = 1/(3 alpha beta); dlam = (p_tr - p)/(3 alpha beta K)
            # => in sigma_c(kappa_n + dlam) form: rhs0 - D' dlam - sigma_c = 0 with
            #    rhs0 = p_tr/c, D' = K/c^2 (c^2 = 1/(3 alpha beta)^2)
            c = np.where(apex, 1.0 / (3.0 * np.where(alpha > 0, alpha, 1.0) * beta), 1.0)
            dla, Ha = _solve_segments(mat, kappa_n, p_tr / c, K / c**2, apex)
            dlam[apex], H[apex] = dla[apex], Ha[apex]
            p_new = np.where(apex, p_tr - K * dlam / c, p_new)
            fac = np.where(apex, 0.0, fac)
        sigma = fac[:, None] * s_tr + p_new[:, None] * ONE
        kappa = kappa_n + dlam
    # plastic strain from the elastic strain implied by the stress
    p_s = sigma[:, :3].sum(axis=1) / 3.0
    s_s = sigma - p_s[:, None] * ONE
    eps_e = s_s / (2.0 * mu[:, None]) + (p_s / (3.0 * K))[:, None] * ONE
    eps_p = eps - eps_e
    eps_p[~plastic] = eps_p_n[~plastic]

    Cp = None
    pidx = np.flatnonzero(plastic)
    if want_tangent:
        # tangent of the plastic points only (elastic points: C_el)
        Cp = np.empty((len(pidx), 6, 6))
        Ht = np.maximum(H, 0.0) if clip else H
        cone_p = ~apex[pidx]
        if cone_p.any():
            i = pidx[cone_p]
            Nh = s_tr[i] / snorm[i][:, None]
            b, m_, k_, a_ = beta[i], mu[i], K[i], alpha[i]
            g = 6.0 * m_**2 * b * dlam[i] / q_tr[i]
            theta = 1.0 - 0.5 * g / m_  # = 1 - 3 mu beta dlam / q_tr
            mvec = (SQ6 * m_ * b)[:, None] * Nh + (3.0 * k_ * a_ * b)[:, None] * ONE
            c = Cp[cone_p]
            c[:] = (2.0 * m_ * theta)[:, None, None] * P_DEV
            c += k_[:, None, None] * np.outer(ONE, ONE)
            c += g[:, None, None] * (Nh[:, :, None] * Nh[:, None, :])
            c -= (mvec[:, :, None] * mvec[:, None, :]) / (D[i] + Ht[i])[:, None, None]
            Cp[cone_p] = c
        if (~cone_p).any():
            i = pidx[~cone_p]
            c2 = 1.0 / (3.0 * alpha[i] * beta[i]) ** 2
            Kap = K[i] * c2 * Ht[i] / (K[i] + c2 * Ht[i])
            if clip:
                Kap = np.maximum(Kap, APEX_TANGENT_FLOOR * K[i])
            Cp[~cone_p] = Kap[:, None, None] * np.outer(ONE, ONE)
    return ReturnResult(sigma, eps_p, kappa, plastic, apex, Cp, K, mu)


__all__ = [
    "Softening", "PointMaterial", "ReturnResult", "Criterion", "VonMises", "DruckerPrager",
    "CRITERIA", "get_criterion", "to_mandel", "from_mandel", "bulk_shear", "elastic_tangent",
    "invariants",
]
