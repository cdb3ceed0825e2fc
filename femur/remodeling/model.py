"""Normalised bone-cell + per-element density model (Jörg 2022 spirit, remodeling.md 1.8, 7).

Per element e (all arrays of length n_elements, no Python loop over elements),
cell densities are per unit bone surface and normalised to 1 at baseline. Two
formation channels (Chavassieux 2019 FRAME biopsies, clinical-targets R2: romosozumab's
early formation is largely modelling-based, on quiescent surfaces, while
remodelling-based formation is not raised):

  remodelling (BMU) formation, coupled to resorption:
    P   osteoblast precursors        dP/dt  = [src m_W - d P] / tau_P
    B   active osteoblasts           dB/dt  = [d P - eta_B B] / tau_B
  modelling formation on quiescent surfaces, switched on by Wnt:
    Q   bone-lining cells / quiescent-surface osteoprogenitors, refilled by MSC commitment
        (a sclerostin antibody turns lining cells into active osteoblasts: Kim et al., JBMR
        2017, 32:892)        dQ/dt  = [m_W - Q - w+ Q] / tau_Q   (depletable)
    M   modelling osteoblasts        dM/dt  = [g_mod w+ Q - eta_W M] / tau_B   (0 at baseline)
  osteocytes (the sclerostin and DKK1 source), buried in the matrix that OBs lay down:
    Y   osteocyte number per element volume, 1 at baseline
        dY/dt = k_e (F / f0 - R Y / f)   formation buries osteocytes at the baseline density
                                          per bone volume; resorption removes them with the bone
  Wnt inhibitors (``femur.remodeling.wnt``): total sclerostin T (free s, antibody-bound
    T - s), made by the osteocytes and bound by romosozumab; DKK1 D, made by the osteocytes,
    induced by Wnt, not bound by the antibody. w = Wnt activation above baseline.
  osteoclasts:
    Cp  osteoclast precursor pool    dCp/dt = [1 - Cp((1-phi) + phi r)] / tau_Cp  (variable pool)
    C   active osteoclasts           dC/dt  = [r Cp - (1 + beta_bp A) C] / tau_C
    A   bisphosphonate surface reservoir  dA/dt = u_aln(t) C - A C / tau_bp

Wnt on the whole osteoblast lineage (Jörg 2022 spirit; remodeling.md 1.8, 7), remodelling
and modelling osteoblasts alike:
    m_W   = 1 + g_msc w                 MSC commitment refilling P and Q
    d     = d_pth (1 + g_diff w)        pre-osteoblast -> osteoblast differentiation (g_diff = 1)
    eta_B = eta_W / d_pth, eta_W = 1 / (1 + g_surv w)   osteoblast apoptosis (survival)
    mat   = 1 + g_mat w                 matrix per osteoblast (multiplies every formation flux)
    w+    = max(w, 0)                   lining-cell activation into modelling osteoblasts
Signals:
    r   = D_rel(t) s^g (1 + rho_pth E_pth)(1 + kappa M-) / (1 + C_dmab / K_dmab)
          (RANKL/OPG signalling: free sclerostin s raises osteocytic RANKL (Wijenayaka et
          al., PLoS One 2011; Jörg 2022's f_up(s) on OC differentiation) and, through Wnt,
          lowers OPG; so the antibody lowers RANKL and raises OPG; denosumab sequesters
          RANKL. DKK1 is left out of this arm: with I^g instead of s^g an exploratory fit
          ended at a higher cost, 17.1 against 15.1)
    src = C^c (1 + lambda M+) / (1 + kappa M-)      pre-OB recruitment coupled to resorption
                                                    (TGF-beta release), mechanostat M+; disuse
                                                    (M-) recruits fewer. Without it a coupling
                                                    exponent c > 1 turns the catabolic arm
                                                    anabolic at steady state
    d_pth = 1 + beta_pth E_pth                      intermittent PTH: more differentiation,
                                                    longer OB life (Jörg 2022; daily-averaged)
Romosozumab's formation wanes with the antibody still present because (i) the precursor
and lining-cell pools deplete faster than MSC commitment refills them, (ii) the bone it
adds buries new osteocytes, which make more sclerostin and DKK1, and (iii) Wnt induces
DKK1, which the antibody does not bind.

Fluxes per unit surface: formation F = mat (B (1 - delta(t)) + M), resorption R = C; per tissue
volume they are scaled by the specific surface (Martin): k_e = BFR/BS * S_v(f_e):

    df_e/dt = k_e (F - R)                                         bone volume fraction
    dO_e/dt = k_e alpha_p F - O_e / tau_prim                      primary mineral still due
    dm_e/dt = O_e / tau_prim - k_e alpha_e R + k_min f_e (1 - alpha_e)   mineral (m = f alpha)

Mineralisation has two phases (row 20): new bone takes up alpha_p of the plateau mineral in
days (primary, time constant tau_prim), then approaches the plateau over years (secondary,
k_min). alpha = 1 is the plateau of mature bone, v_m = 0.442 (Martínez-Reina 2019), below
full mineralisation (v_m = 4/7; parameters.TissueParameters).

Cortical elements (``compartment == 1``: the mesh's cortical cells) have their own
remodelling surfaces: besides Martin's pore surface S_v(f) (which vanishes as f -> 1) they carry
endocortical and intracortical (canal) surface, ``cortical_surface_per_mm`` per bone volume
(times f_e per tissue volume; fitted to rows 16 and 21); and their BMUs refill less (focal-balance deficit
``cortical_deficit_ratio`` x delta(t): the postmenopausal loss is endocortical and
intracortical, Zebaze 2010, row 16). Their remodelling surface is split (``endocortical_share``
e, the rest canal surface; plus a periosteal surface ``periosteal_share`` p that only models),
each surface with its own formation law (issue 15, rows 17-19):

    k_e  = BFR/BS * (S_v(f_e) + cortical_surface_per_mm * f_e)
    endocortical  F_en = mat (B (1 - delta_c) + r_en M)      (like trabecular surfaces)
    canals        F_ic = mat (V2 (1 - delta_c) + r_ic M)     (cavities refilled after a lag)
                  dV1/dt = (C - V1) / (T/2),  dV2/dt = (V1 - V2) / (T/2)
    periosteum    r_po M
    F = e F_en + (1 - e) F_ic + p r_po M,   R = C,   delta_c = cortical_deficit_ratio delta(t)

V1, V2 (1 at baseline) are the canal cavities in their resorption/reversal and formation
stages, T = ``cortical_refill_days``: the canals' remodelling space k (1 - e) T. A rise in
activation (teriparatide) opens cavities before they refill, so porosity rises while it
lasts; denosumab stops resorption and the open cavities refill (porosity falls by at most
the remodelling space); romosozumab's modelling formation (r M, row 17 surface ratios)
fills canals and thickens the cortex from the endocortex. The intracortical porosity change
is tracked separately (``pore``, tissue fraction: d pore/dt = -k (1 - e)(F_ic - R)), so
porosity and (endocortical) thickness can be told apart. The mesh fixes the tags at
baseline; the drivers may switch them during a run (``femur.remodeling.switching``:
trabecularisation of a porous cortex, corticalisation by endocortical formation).

alpha_e = mineral relative to full mineralisation; the baseline alpha_e0 is the
steady state of that balance, so high-turnover (trabecular) bone is less
mineralised. Spine > hip emerges from the S_v(f_e) of each element; there is no
site exponent anywhere.

The mechanical stimulus M_e = (psi_e - psi_ref,e)/psi_ref,e (strain energy density vs
the element's own baseline) enters through M+ = max(M - w, 0), M- = max(-M - w, 0)
(lazy zone w). ``stimulus=None`` means M = 0 (neutral).

Integration: the cell equations are advanced with a linearly implicit (Patankar-type)
step, positive and unconditionally stable for any dt; drug exposures enter as their
exact mean over each step; density/mineral rates are ~1e-4/day, so an explicit update
is stable. Default step 1 day. The step itself is ``femur.remodeling.step`` (coefficients
that change only with the compartment tags, and the exposures of a whole advance, computed
once; tested against a plain transcription of these equations).

Row 19 (denosumab leaves cortical porosity about unchanged at 12 months) is a known miss:
the canals' remodelling space k (1 - e) T refills while no cavity opens, and the same space
gives teriparatide's rise, so the two responses scale together (issue 15, cortex3 report:
gating the canal reversal by the osteoblast precursor pool, which resorption recruits,
halved the fall before the refit but fitted the markers and row 21 worse, and was not kept).

(The state, the equations and their outputs are one cohesive thing; tissue composition and
mineral laws are in ``femur.remodeling.mineral``, the step in ``femur.remodeling.step``.)
"""

from __future__ import annotations

import copy as _copy

import numpy as np

from femur.core.errors import InputError
from femur.core.mpi import MPI
from femur.core.units import DAYS_PER_YEAR
from femur.remodeling.mineral import (  # noqa: F401  (re-exported: femur.remodeling.model's public names)
    HERNANDEZ_ASH_EXPONENT,
    HERNANDEZ_BVTV_EXPONENT,
    ash_fraction,
    tissue_density_g_cm3,
)
from femur.remodeling.parameters import ModelParameters
from femur.remodeling.patient import Patient
from femur.remodeling.state import (  # noqa: F401  (re-exported: femur.remodeling.model's public names)
    RemodelingState,
    _cortical_mask,
    markers_from_sums,
    modulus_ratio,
    stimulus_from_sed,
    uniform_stress_stimulus,
)
from femur.remodeling.step import StepPlan, build_plan, step_scalars
from femur.remodeling.step import step as _step
from femur.remodeling.surface import specific_surface_per_mm
from femur.remodeling.wnt import sclerostin_pct_from_sums, sclerostin_sums
from femur.treatments.pk import Exposure, compute_exposure
from femur.treatments.regimen import as_sequence


class RemodelingModel:
    """Drug + bone-cell + density engine for one patient and one treatment.

    Typical FE-coupled use::

        model = RemodelingModel("romosozumab:12,denosumab:12", Patient())
        state = model.initial_state(density_g_cm3=rho, volume=cell_volumes)
        for t0, t1 in intervals:                      # e.g. every 14 days
            M = stimulus_from_sed(psi, psi_ref)       # from the FE solution
            state = model.advance(state, t0, t1, stimulus=M)
            rho = model.density_g_cm3(state)          # -> material law -> FE
            mk = model.markers(state, comm=MPI.COMM_WORLD)
    """

    def __init__(
        self,
        treatment="placebo",
        patient: Patient | None = None,
        params: ModelParameters | None = None,
        aging: bool = True,
        max_step_days: float = 1.0,
        horizon_days: float | None = None,
        exposure: Exposure | None = None,
    ):
        self.sequence = as_sequence(treatment)
        self.patient = patient or Patient()
        self.params = params or ModelParameters()
        self.aging = bool(aging)
        if not max_step_days > 0:
            raise InputError(f"remodeling: max_step_days must be > 0, got {max_step_days}")
        self.max_step_days = float(max_step_days)
        h = horizon_days or (self.sequence.end_day + 730.0)
        if exposure is not None:  # precomputed (e.g. cached during calibration)
            self._exposure = exposure
        else:
            self._exposure = compute_exposure(
                self.sequence, h, self.patient.body_mass_kg, self.params.pk
            )

    # ---------------------------------------------------------------------------------
    @property
    def exposure(self) -> Exposure:
        return self._exposure

    def _ensure_horizon(self, t1):
        if t1 > self._exposure.t_end:
            self._exposure = compute_exposure(
                self.sequence, max(t1, 2 * self._exposure.t_end), self.patient.body_mass_kg,
                self.params.pk,
            )

    def serum_ug_ml(self, t_days):
        t_days = np.asarray(t_days, float)
        self._ensure_horizon(float(np.max(t_days)) if t_days.size else 0.0)
        return self._exposure.serum_at(t_days)

    # ---------------------------------------------------------------------------------
    def turnover_per_day(self, f, cortical=None) -> np.ndarray:
        """Bone turnover per tissue volume k_e (1/day): BFR/BS x (S_v(f) + the cortical
        elements' endocortical and canal surface, module docstring)."""
        sv = specific_surface_per_mm(f)
        g = getattr(self.patient, "trabecular_sv_factor", 1.0)  # sex-specific trabecular thickness (1 for women)
        if g != 1.0:
            sv = sv * (g if cortical is None else np.where(cortical, 1.0, g))
        if cortical is not None:
            # the endocortical and canal surface comes with the element's cortical bone: per
            # tissue volume it scales with BV/TV (a partial-volume CT voxel of a thin shell
            # carries a fraction of it)
            sv = sv + np.where(cortical, self.params.cells.cortical_surface_per_mm * np.asarray(f, float), 0.0)
        return self.params.tissue.bfr_bs_mm_per_day * sv

    def _sost_age_factor(self, t_day: float) -> float:
        """Sclerostin production per osteocyte relative to day 0 (rises with age)."""
        c = self.params.cells
        rate = c.sost_age_rise_female_per_year if self.patient.is_female else c.sost_age_rise_male_per_year
        return float(np.exp(rate * t_day / DAYS_PER_YEAR))

    def deficit_ratio(self, cortical=None):
        """Focal-balance deficit of each element relative to delta(t) (1 trabecular)."""
        if cortical is None:
            return 1.0
        return np.where(cortical, self.params.cells.cortical_deficit_ratio, 1.0)

    def baseline_alpha(self, f, cortical=None) -> np.ndarray:
        """Steady-state mineral content: k (alpha_p - a) + k_min f (1 - a) = 0."""
        tis, c = self.params.tissue, self.params.cells
        k = self.turnover_per_day(f, cortical)
        km = c.k_mineral_per_day * f
        return (k * tis.alpha_primary + km) / np.maximum(k + km, 1e-300)

    def initial_state(
        self,
        density_g_cm3=None,
        *,
        f0=None,
        volume=None,
        compartment=None,
        t_day: float = 0.0,
    ) -> RemodelingState:
        """Baseline (steady) state from apparent density (g/cm3) or bone volume fraction.

        f0 = rho_app / rho_tissue(alpha0(f0)) (fixed point; rho_tissue ~1.9-2.0 g/cm3,
        Martínez-Reina 2019 composition), clipped to [f_min, f_max].
        """
        tis = self.params.tissue
        if (density_g_cm3 is None) == (f0 is None):
            raise InputError("remodeling: give exactly one of density_g_cm3 or f0")
        if f0 is not None:
            f = np.array(f0, dtype=float, copy=True).ravel()
            if f.size == 0 or not np.all(np.isfinite(f)) or np.any(f <= 0) or np.any(f > 1):
                raise InputError("remodeling: f0 (bone volume fraction) must be finite and in (0, 1]")
        else:
            rho = np.array(density_g_cm3, dtype=float).ravel()
            cort_rho = _cortical_mask(compartment, rho.size)
            if rho.size == 0 or not np.all(np.isfinite(rho)) or np.any(rho <= 0) or np.any(rho > 2.5):
                raise InputError(
                    "remodeling: density_g_cm3 (apparent density) must be finite and in (0, 2.5] g/cm3"
                )
            f = rho / 1.95
            for _ in range(8):
                f = np.clip(rho / tissue_density_g_cm3(self.baseline_alpha(f, cort_rho), tis), tis.f_min,
                            tis.f_max)
        f = np.clip(f, tis.f_min, tis.f_max)
        n = f.size
        vol = np.ones(n) if volume is None else np.array(volume, dtype=float).ravel()
        if vol.shape != (n,) or np.any(~np.isfinite(vol)) or np.any(vol < 0):
            raise InputError(f"remodeling: volume must be {n} finite non-negative values")
        comp = None if compartment is None else np.asarray(compartment).ravel().copy()
        if comp is not None and comp.shape != (n,):
            raise InputError(f"remodeling: compartment must have {n} values")
        cort = _cortical_mask(comp, n)
        alpha0 = self.baseline_alpha(f, cort)
        _, delta = self.patient.drivers(t_day, self.params.cells, self.aging)
        one = np.ones(n)
        form0 = one * (1.0 - float(delta) * self.deficit_ratio(cort))
        # primary mineral in flight at steady state: k alpha_p F0 tau_prim
        o0 = self.turnover_per_day(f, cort) * tis.alpha_primary * form0 * tis.primary_mineral_days
        return RemodelingState(
            t_day=float(t_day), f=f.copy(), alpha=alpha0.copy(),
            P=one.copy(), B=one.copy(), Cp=one.copy(), C=one.copy(),
            A=np.zeros(n), Q=one.copy(), M=np.zeros(n), Y=one.copy(),
            sost_total=one.copy(), sost_free=one.copy(), dkk1=one.copy(),
            V1=one.copy(), V2=one.copy(), pore=np.zeros(n), O=o0,
            volume=vol, f0=f.copy(), alpha0=alpha0.copy(),
            formation0=float(1.0 - delta), compartment=comp,
            formation=form0, resorption=one.copy(),
        )

    # ---------------------------------------------------------------------------------
    def _mech(self, stimulus, n):
        c = self.params.cells
        if stimulus is None:
            return 0.0, 0.0
        m = np.asarray(stimulus, dtype=float).ravel()
        if m.shape != (n,):
            raise InputError(f"remodeling: stimulus must have one value per element ({n}), got {m.shape}")
        if not np.all(np.isfinite(m)):
            raise InputError("remodeling: stimulus has non-finite values")
        mp = np.minimum(np.maximum(m - c.lazy_zone, 0.0) * c.mech_anabolic_gain, c.mech_anabolic_cap)
        mm = np.minimum(np.maximum(-m - c.lazy_zone, 0.0) * c.mech_catabolic_gain, c.mech_catabolic_cap)
        return mp, mm

    def _plan(self, comp, n) -> StepPlan:
        """The step's per-element coefficients for these compartment tags (cached)."""
        plans = self.__dict__.setdefault("_step_plans", {})  # one per bone (element count)
        plan = plans.get(n)
        if plan is None or not plan.matches(comp, n):
            if len(plans) > 8:
                plans.clear()
            plan = plans[n] = build_plan(self, comp, n)
        return plan

    def step(self, s: RemodelingState, dt: float, mech=(0.0, 0.0)) -> RemodelingState:
        """One linearly implicit step of length dt (days), in place; returns s
        (``femur.remodeling.step``)."""
        t0 = s.t_day
        sc = step_scalars(self, np.array([t0]), dt)
        skip_bp = sc["aln_bone_mg_per_day"][0] == 0.0 and not s.A.any()
        _step(self, s, dt, mech, self._plan(s.compartment, s.n_elements), sc, 0, skip_bp)
        s.t_day = t0 + dt
        return s

    def mineral_step(self, f, f_new, alpha, O, formed, resorbed, dt):
        """Two-phase mineralisation over one step (module docstring): ``formed`` /
        ``resorbed`` bone volume per tissue volume in the step, ``O`` the primary mineral in
        flight. Primary uptake is implicit (any dt), secondary explicit (k_min dt << 1).
        Returns (alpha_new, O_new) for the new bone volume fraction ``f_new``."""
        tis, c = self.params.tissue, self.params.cells
        hp = dt / tis.primary_mineral_days
        o_new = (O + tis.alpha_primary * formed) * (1.0 / (1.0 + hp))
        kd = dt * c.k_mineral_per_day
        # f alpha + hp O - alpha resorbed + kd f (1 - alpha)
        m_new = f * (alpha * (1.0 - kd) + kd) + hp * o_new - alpha * resorbed
        return np.clip(m_new / f_new, 0.0, 1.0), o_new

    def packet_mineral(self, t_days, dt: float = 0.25) -> np.ndarray:
        """Mineral content (relative to the plateau) of one packet of new bone laid down at
        day 0, at the times ``t_days``, from :meth:`mineral_step` (row 20: ~0.67 by day 18,
        a plateau at 1 reached over years)."""
        t_days = np.asarray(t_days, dtype=float)
        n = int(np.ceil(max(float(np.max(t_days)), dt) / dt))
        eps = 1e-12  # no bone before the packet
        alpha, O = np.zeros(1), np.zeros(1)
        alpha, O = self.mineral_step(np.array([eps]), np.array([1.0 + eps]), alpha, O, 1.0, 0.0, 0.0)
        t, out = [0.0], [float(alpha[0])]
        f = np.array([1.0 + eps])
        for i in range(n):
            alpha, O = self.mineral_step(f, f, alpha, O, 0.0, 0.0, dt)
            t.append((i + 1) * dt)
            out.append(float(alpha[0]))
        return np.interp(t_days, t, out)

    def advance(self, state: RemodelingState, t0: float, t1: float, stimulus=None) -> RemodelingState:
        """Advance from t0 to t1 (days) with the mechanical stimulus held fixed.

        Returns a new state; ``state`` is not modified.
        """
        if abs(state.t_day - t0) > 1e-6:
            raise InputError(f"remodeling: state is at day {state.t_day}, not at t0 = {t0}")
        if not t1 > t0:
            raise InputError(f"remodeling: t1 ({t1}) must be after t0 ({t0})")
        self._ensure_horizon(t1)
        # a new state object over the same arrays: a step never writes into an array, it
        # binds new ones (femur.remodeling.step), so ``state`` keeps its values without the
        # cost of copying every array at every advance. Arrays no step rebinds (the
        # compartment tags, f0, alpha0, ...) stay shared: whoever keeps ``state`` and then
        # retags the returned one in place (compartment switching) sees the tags change in both
        s = _copy.copy(state)
        mech = self._mech(stimulus, s.n_elements)
        n = int(np.ceil((t1 - t0) / self.max_step_days - 1e-9))
        dt = (t1 - t0) / n
        t0s = t0 + np.arange(n) * dt
        sc = step_scalars(self, t0s, dt)  # exposures and drivers of every step at once
        plan = self._plan(s.compartment, s.n_elements)
        # an empty bisphosphonate reservoir stays empty while no alendronate arrives
        skip_bp = not np.any(sc["aln_bone_mg_per_day"]) and not s.A.any()
        for i in range(n):
            s.t_day = float(t0s[i])
            _step(self, s, dt, mech, plan, sc, i, skip_bp)
        s.t_day = float(t1)
        return s

    # ---------------------------------------------------------------------------------
    def density_g_cm3(self, state: RemodelingState) -> np.ndarray:
        """Apparent density f * rho_tissue(alpha) (g/cm3), for the FE material law."""
        return state.f * tissue_density_g_cm3(state.alpha, self.params.tissue)

    def mineral_density_mg_cm3(self, state: RemodelingState) -> np.ndarray:
        """Mineral (hydroxyapatite) mass per tissue volume, mg/cm3 (vBMD-like)."""
        t = self.params.tissue
        return 1000.0 * state.f * t.rho_mineral_g_cm3 * t.v_mineral_full * state.alpha

    def marker_sums(self, state: RemodelingState) -> np.ndarray:
        """Local sums [formation, resorption, baseline formation, baseline resorption],
        turnover-weighted (volume x S_v); sum them over ranks for whole-skeleton markers."""
        cort = _cortical_mask(state.compartment, state.n_elements)
        w = state.volume * self.turnover_per_day(state.f, cort)
        w0 = state.volume * self.turnover_per_day(state.f0, cort)
        delta0 = 1.0 - state.formation0
        return np.array([
            np.sum(w * state.formation), np.sum(w * state.resorption),
            np.sum(w0 * (1.0 - delta0 * self.deficit_ratio(cort))), np.sum(w0),
        ])

    def markers(self, state: RemodelingState, comm=None) -> dict:
        """P1NP and CTX, % change from baseline, from aggregate fluxes (remodeling.md 5).

        P1NP ~ total formation, CTX ~ total resorption (exponent 1; Jörg 2022 form with
        q = 1). With ``comm`` the sums are reduced over ranks (rank-independent result).
        """
        sums = self.marker_sums(state)
        if comm is not None and comm.size > 1:
            sums = comm.allreduce(sums, op=MPI.SUM)
        return markers_from_sums(sums)

    def sclerostin_sums(self, state: RemodelingState) -> np.ndarray:
        """Local sums [total, free, baseline] of sclerostin (femur.remodeling.wnt); sum them
        over bones and ranks, then :func:`femur.remodeling.wnt.sclerostin_pct_from_sums`."""
        return sclerostin_sums(state.volume, state.f0, state.sost_total, state.sost_free)

    def serum_sclerostin(self, state: RemodelingState, comm=None) -> dict:
        """Serum total and free sclerostin, % change from baseline (osteocyte-weighted)."""
        sums = self.sclerostin_sums(state)
        if comm is not None and comm.size > 1:
            sums = comm.allreduce(sums, op=MPI.SUM)
        return sclerostin_pct_from_sums(sums)

    def bmd_change_pct(self, state: RemodelingState, mask=None, comm=None) -> float:
        """Mineral-mass % change of (masked) elements: DXA areal BMD ~ mineral mass in the
        projected region (fixed projected area)."""
        w = state.volume if mask is None else state.volume * np.asarray(mask, bool)
        sums = np.array([np.sum(w * state.f * state.alpha), np.sum(w * state.f0 * state.alpha0)])
        if comm is not None and comm.size > 1:
            sums = comm.allreduce(sums, op=MPI.SUM)
        return float(100.0 * (sums[0] / sums[1] - 1.0))
