"""One bone through a coupled remodeling run: its FE solvers, remodeling state and DXA sites.

A :class:`BoneTrack` owns the run's copy of the bone. The remodeling state (BV/TV ``f``
and mineral content ``alpha`` per cell) is the one owner of how the bone has changed;
everything else is derived from it and the baseline density ``rho0``:

* the FE density (``bone.density``, the input of the material law) is
  ``rho0 * rho_model / rho_model0`` on bone cells (loading layers keep theirs);
* the DXA-equivalent density is ``rho0 * m / m0`` (m = f alpha, the mineral mass), computed
  when BMD is measured, so mineralisation counts as it does in DXA;
* the mechanostat stimulus is M = (psi - psi_ref) / psi_ref, psi the strain energy
  density under the *same habitual force* (a displacement-controlled solve is rescaled to
  its baseline reaction force), psi_ref the cell's own baseline.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np

from femur.core.mpi import MPI
from femur.geometry.compartments import non_bone_mask
from femur.mechanics.problem import cell_strain_energy_density, make_solver, postprocess
from femur.mechanics.strength import material_for, region_for, strength_cases, strength_quantities
from femur.outcomes import dxa
from femur.remodeling.model import stimulus_from_sed

#: Relative tolerance of the habitual (mechanostat stimulus) solves. The stimulus is a
#: strain-energy ratio entering through a lazy zone of +-25 %, so 1e-8 is far below what
#: could change it; the strength solves keep the configuration's 1e-10 (rank-invariant
#: fracture loads, solvers/gamg.toml).
HABITUAL_RTOL = 1.0e-8

#: DXA sites measured on each bone: site key -> femur.outcomes.dxa site name
DXA_SITES = {"femur": {"fn": "femoral_neck", "th": "total_hip"}, "vertebra": {"ls": "spine"}}


@dataclass
class RunStats:
    """Wall times and FE solve counts of a run (all bones)."""

    timings: dict = field(default_factory=lambda: {"build_s": 0.0, "cells_s": 0.0, "fe_s": 0.0,
                                                   "strength_s": 0.0, "dxa_s": 0.0})
    #: FE cost over all solves
    fe_breakdown: dict = field(default_factory=lambda: {"assembly_s": 0.0, "setup_s": 0.0,
                                                        "solve_s": 0.0, "iterations": 0})
    #: per bone: the first (fresh: set-up + solve) habitual solve vs the later re-solves
    #: (in-place reassembly, reused AMG, warm start)
    fe_fresh_s: dict = field(default_factory=dict)
    fe_resolve_s: dict = field(default_factory=dict)
    fe_solves: int = 0

    def account(self, info) -> None:
        self.fe_solves += 1
        for k in ("assembly_s", "setup_s", "solve_s"):
            self.fe_breakdown[k] += getattr(info, k)
        self.fe_breakdown["iterations"] += int(info.iterations)

    def summary(self) -> dict:
        return dict(self.timings, fe_breakdown=dict(self.fe_breakdown), fe_fresh_s=dict(self.fe_fresh_s),
                    fe_resolve_mean_s={k: float(np.mean(v)) for k, v in self.fe_resolve_s.items()})


class BoneTrack:
    """A bone's FE solvers (habitual load first, then the strength cases), remodeling state
    and DXA projections during a coupled run. ``bone`` must be the run's own copy."""

    def __init__(self, name: str, bone, model, stats: RunStats, order: int = 1, solver: str = "gamg"):
        self.name, self.bone, self.model, self.stats = name, bone, model, stats
        self.material = material_for(bone)
        n = bone.num_local_cells
        self.rho0 = np.array(bone.density.x.array, dtype=float)
        self.bone_mask = ~non_bone_mask(bone)
        comp = np.where(bone.compartment_mask("cortical"), 1, 2) if "cortical" in bone.cell_ids else None
        owned = np.zeros(n, dtype=bool)
        owned[: bone.num_owned_cells] = True
        # remodeling runs on bone cells only; loading layers keep their constant moduli
        vol = bone.cell_volumes() * owned  # ghosts weigh nothing in the aggregates
        self.state = model.initial_state(density_g_cm3=np.where(self.bone_mask, self.rho0, 0.5),
                                         volume=vol * self.bone_mask, compartment=comp)
        self.rho_model0 = model.density_g_cm3(self.state)
        self.solvers = {}
        for prefix, case in strength_cases(bone.kind).items():
            es, info, _, nu = make_solver(bone, case, self.material, order=order, solver=solver)
            # the moduli change by well under 1 % per FE step: keep the whole AMG
            # preconditioner (CG still converges to the configured rtol; the solver
            # rebuilds it by itself if a reused one fails)
            es.reuse_preconditioner = True
            self.solvers[prefix] = (es, info, nu)
        self.habitual = next(iter(self.solvers))
        self.sed_ref, self.force_ref = np.zeros(n), None
        self.sed_ref, self.force_ref = self.habitual_sed()
        self.dxa_sites = {k: (site, dxa.prepare(bone, site)) for k, site in DXA_SITES[bone.kind].items()}

    @property
    def dofs(self) -> int:
        return int(next(iter(self.solvers.values()))[0].dofs)

    # ------------------------------------------------------------------ mechanics
    def habitual_sed(self):
        """SED per cell under the habitual force, and this solve's force (N). A
        displacement-controlled solve is rescaled to the bone's baseline force
        (``force_ref``; unscaled while that is not yet known)."""
        es, info, nu = self.solvers[self.habitual]
        t0 = time.perf_counter()
        es.solve(rtol=HABITUAL_RTOL)
        self.stats.account(es.last)
        if self.name not in self.stats.fe_fresh_s:
            self.stats.fe_fresh_s[self.name] = es.last.total_s
        else:
            self.stats.fe_resolve_s.setdefault(self.name, []).append(es.last.total_s)
        if info.control == "force":
            force = float(info.load_n)
        else:
            force = abs(float(es.reaction_force(info.load_facets) @ info.direction))
        sed = cell_strain_energy_density(es.u, es.E.x.array, nu, es.order)
        self.stats.timings["fe_s"] += time.perf_counter() - t0
        if info.control != "force" and self.force_ref is not None:
            sed = sed * (self.force_ref / force) ** 2
        return sed, force

    def stimulus(self) -> np.ndarray:
        """Mechanostat stimulus per cell from a fresh habitual solve (0 off bone)."""
        sed, _ = self.habitual_sed()
        M = stimulus_from_sed(sed, self.sed_ref)
        return np.where(self.bone_mask & (self.sed_ref > 0), M, 0.0)

    def strength(self) -> dict:
        """Every strength quantity of this bone (femur.mechanics.strength names)."""
        t0 = time.perf_counter()
        out = {}
        for prefix, (es, info, nu) in self.solvers.items():
            es.solve()
            self.stats.account(es.last)
            res = postprocess(self.bone, es, info, es.last, es.E.x.array, nu)
            out.update(strength_quantities(prefix, res, self.material, region_for(self.bone.kind)))
        self.stats.timings["strength_s"] += time.perf_counter() - t0
        return out

    # ------------------------------------------------------------------ density
    def update_density(self) -> None:
        """FE density and moduli from the remodeling state (in place, operators reassembled)."""
        rm_rho = self.model.density_g_cm3(self.state)
        ratio = np.where(self.bone_mask, rm_rho / self.rho_model0, 1.0)
        self.bone.density.x.array[:] = self.rho0 * ratio
        E = self.material.modulus_array(self.bone)
        for es, _, _ in self.solvers.values():
            es.update_modulus(E)

    def dxa_density(self) -> np.ndarray:
        """DXA-equivalent density: baseline density times each cell's mineral-mass ratio."""
        s = self.state
        return self.rho0 * np.where(self.bone_mask, (s.f * s.alpha) / (s.f0 * s.alpha0), 1.0)

    def measure(self, comm) -> dict:
        """Areal BMD at this bone's DXA sites and vBMD per compartment (mg/cm3)."""
        rec = {}
        rho = self.dxa_density()
        for key, (site, prep) in self.dxa_sites.items():
            rec[f"{key}_abmd_g_cm2"] = dxa.areal_bmd(self.bone, site, prepared=prep, density_g_cm3=rho)
        mineral = self.model.mineral_density_mg_cm3(self.state)
        w = self.state.volume
        for comp in ("cortical", "trabecular"):
            if comp not in self.bone.cell_ids:
                continue
            mask = self.bone.compartment_mask(comp)
            s = comm.allreduce(np.array([np.sum(w * mask * mineral), np.sum(w * mask)]), op=MPI.SUM)
            rec[f"{self.name}_vbmd_{comp}_mg_cm3"] = float(s[0] / s[1])
        return rec

    def close(self) -> None:
        for es, _, _ in self.solvers.values():
            es.close()


__all__ = ["DXA_SITES", "HABITUAL_RTOL", "BoneTrack", "RunStats"]
