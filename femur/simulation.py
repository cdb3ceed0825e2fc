"""One virtual patient under a treatment: FE-coupled remodeling of a femur and a vertebra.

The path of the data (DESIGN.md): bone models (femur + vertebra at the patient's
DXA-equivalent T-scores) -> treatment (PK) -> remodeling (per-element bone-cell model,
`femur.remodeling.RemodelingModel`) -> mechanics (linear elasticity, re-solved every
``fe_interval_days``) -> outcomes (DXA-equivalent BMD, vBMD, markers, strength).

Coupling (operator splitting):

* every ``fe_interval_days`` the habitual load case of each bone is re-solved with the
  current densities (stance for the femur, axial compression for the vertebra) and the
  mechanostat stimulus of each element is M = (psi - psi_ref) / psi_ref, psi the strain
  energy density under the *same habitual force* (the vertebra's displacement-controlled
  solve is rescaled to its baseline reaction force), psi_ref the element's own baseline;
* between FE solves the cell/density model advances with M held fixed (daily implicit
  steps); the element moduli follow the density through the bone's material law, and the
  FE operators are reassembled in place (same sparsity, GAMG interpolation reused,
  warm start);
* DXA-equivalent areal BMD follows the mineral mass: the projected field is the baseline
  apparent density times each element's mineral-mass ratio m/m0 (m = BV/TV x mineral
  fraction), so mineralisation counts as it does in DXA;
* markers (P1NP, CTX) are the turnover-weighted aggregate fluxes of all owned elements of
  both bones;
* strength (fracture load, Schileo strain criterion; femur in the neck ROI, stance and
  sideways fall; vertebra compression) at ``strength_months``.

Units: days, months (365.25/12 days), mm, N, MPa, g/cm3, mg/cm3.
"""

from __future__ import annotations

import dataclasses
import json
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from femur._mpi import MPI, rank0_print
from femur.errors import InputError

DAYS_PER_MONTH = 365.25 / 12.0
DEFAULT_FE_INTERVAL_DAYS = 14.0
DEFAULT_STRENGTH_MONTHS = (0, 6, 12, 24)
#: Relative tolerance of the habitual (mechanostat stimulus) solves. The stimulus is a
#: strain-energy ratio entering through a lazy zone of +-25 %, so 1e-8 is far below what
#: could change it; the strength solves keep the configuration's 1e-10 (rank-invariant
#: fracture loads, solvers/gamg.toml).
HABITUAL_RTOL = 1.0e-8


def _remodeling():
    import femur.remodeling as rm  # noqa: F401  (import before treatments: import cycle)

    return rm


# ------------------------------------------------------------------------------- helpers
def cell_sed(u, modulus, nu: float, order: int) -> np.ndarray:
    """Strain energy density (MPa = mJ/mm3) per local cell, averaged over its evaluation points."""
    from femur.mechanics.problem import cell_strains, strain_field

    eps = cell_strains(strain_field(u, order))  # (cells, pts, 3, 3)
    tr = np.trace(eps, axis1=-2, axis2=-1)
    ee = np.einsum("...ij,...ij->...", eps, eps)
    E = np.asarray(modulus, float)[:, None]
    lam = E * nu / ((1 + nu) * (1 - 2 * nu))
    mu = E / (2 * (1 + nu))
    return (0.5 * lam * tr**2 + mu * ee).mean(axis=1)


@dataclass
class _BoneTrack:
    """One bone through time: mesh, material, remodeling state, FE solvers, DXA projections."""

    name: str
    bone: object
    material: object
    state: object
    rho0: np.ndarray
    m0: np.ndarray
    owned: np.ndarray
    solvers: dict
    loads: dict
    habitual: str
    sed_ref: np.ndarray
    force_ref: float | None
    dxa_bone: object
    dxa_sites: dict
    bone_mask: np.ndarray = None  # bone (not loading-layer) cells
    rho_model0: np.ndarray = None  # the cell model's baseline apparent density


class Simulation:
    """FE-coupled remodeling of one patient's femur and vertebra under a treatment."""

    def __init__(self, treatment="romosozumab", months: float = 12, patient=None,
                 femur_bone=None, vertebra_bone=None, ls_t_score: float | None = None,
                 fe_interval_days: float = DEFAULT_FE_INTERVAL_DAYS,
                 strength_months=DEFAULT_STRENGTH_MONTHS, mesh_size_mm: float | None = None,
                 femur_params: dict | None = None, vertebra_params: dict | None = None,
                 order: int = 1, solver: str = "gamg", params=None, aging: bool = True,
                 turnover_multiplier: float = 1.0, drug_response_multiplier: float = 1.0,
                 bones=("femur", "vertebra"), comm=MPI.COMM_WORLD, progress: bool = True):
        rm = _remodeling()
        if not (np.isfinite(months) and months > 0):
            raise InputError(f"simulate: months must be > 0, got {months}")
        if not (np.isfinite(fe_interval_days) and 0 < fe_interval_days <= 366):
            raise InputError(f"simulate: fe_interval_days must be in (0, 366] days, got {fe_interval_days}")
        for name, v in (("turnover_multiplier", turnover_multiplier),
                        ("drug_response_multiplier", drug_response_multiplier)):
            if not (np.isfinite(v) and v > 0):
                raise InputError(f"simulate: {name} must be > 0, got {v}")
        unknown = set(bones) - {"femur", "vertebra"}
        if unknown or not bones:
            raise InputError(f"simulate: bones must be a subset of ('femur', 'vertebra'), got {bones}")
        self.comm = comm
        self.months = float(months)
        self.patient = patient or rm.Patient()
        self.ls_t_score = self.patient.fn_t_score if ls_t_score is None else float(ls_t_score)
        self.fe_interval_days = float(fe_interval_days)
        self.strength_months = sorted({float(m) for m in strength_months if 0 <= m <= months} | {0.0})
        self.order, self.solver = int(order), solver
        self.progress = progress
        self.params = _scaled_parameters(params or rm.ModelParameters(), turnover_multiplier,
                                         drug_response_multiplier)
        self.model = rm.RemodelingModel(treatment, self.patient, params=self.params, aging=aging)
        self.treatment = treatment if isinstance(treatment, str) else getattr(treatment, "label", str(treatment))
        self.timings = {"build_s": 0.0, "cells_s": 0.0, "fe_s": 0.0, "strength_s": 0.0, "dxa_s": 0.0}
        #: FE cost split over all solves, and per bone: the first (fresh: set-up + solve) habitual
        #: solve vs the mean of the later re-solves (in-place reassembly, reused AMG, warm start)
        self.fe_breakdown = {"assembly_s": 0.0, "setup_s": 0.0, "solve_s": 0.0, "iterations": 0}
        self.fe_fresh_s: dict[str, float] = {}
        self.fe_resolve_s: dict[str, list] = {}
        self.fe_solves = 0
        t0 = time.perf_counter()
        self.tracks: dict[str, _BoneTrack] = {}
        if "femur" in bones:
            b = femur_bone or self._build("femur", mesh_size_mm, femur_params, self.patient.fn_t_score)
            self.tracks["femur"] = self._track("femur", b)
        if "vertebra" in bones:
            b = vertebra_bone or self._build("vertebra", mesh_size_mm, vertebra_params, self.ls_t_score)
            self.tracks["vertebra"] = self._track("vertebra", b)
        self.timings["build_s"] = time.perf_counter() - t0

    # --------------------------------------------------------------------------- set-up
    def _build(self, kind, mesh_size_mm, geometry, t_score):
        from femur.pipeline import build_bone

        if geometry is None and self.patient.sex == "male":
            geometry = male_geometry(kind)
        return build_bone(kind, mesh_size_mm=mesh_size_mm, t_score=t_score,
                          sex=self.patient.sex, comm=self.comm, **(geometry or {}))

    def _track(self, name, bone) -> _BoneTrack:
        from femur import dxa
        from femur.mechanics import AxialCompression, SidewaysFall, SingleLegStance
        from femur.mechanics.problem import make_solver
        from femur.pipeline import material_for

        if bone.density is None:
            raise InputError(f"simulate: bone '{bone.name}' has no density field")
        material = material_for(bone)
        n = bone.num_local_cells
        owned = np.zeros(n, dtype=bool)
        owned[: bone.num_owned_cells] = True
        rho0 = np.array(bone.density.x.array, dtype=float)
        bone_mask = _bone_mask(bone)
        comp = np.where(bone.compartment_mask("cortical"), 1, 2) if "cortical" in bone.cell_ids else None
        # remodeling runs on bone cells only; loading layers keep their constant moduli
        vol = bone.cell_volumes() * owned  # ghosts weigh nothing in the aggregates
        state = self.model.initial_state(density_g_cm3=np.where(bone_mask, rho0, 0.5),
                                         volume=vol * bone_mask, compartment=comp)
        m0 = state.f * state.alpha
        if name == "femur":
            loads = {"stance": SingleLegStance(), "fall": SidewaysFall(direction="lateral")}
            habitual = "stance"
            sites = {"fn": "femoral_neck", "th": "total_hip"}
        else:
            loads = {"compression": AxialCompression()}
            habitual = "compression"
            sites = {"ls": "spine"}
        solvers = {}
        for key, case in loads.items():
            es, info, _, nu = make_solver(bone, case, material, order=self.order, solver=self.solver)
            # the moduli change by well under 1 % per FE step: keep the whole AMG
            # preconditioner (CG still converges to the configured rtol; the solver
            # rebuilds it by itself if a reused one fails)
            es.reuse_preconditioner = True
            solvers[key] = (es, info, nu)
        track = _BoneTrack(name=name, bone=bone, material=material, state=state, rho0=rho0, m0=m0,
                           owned=owned, solvers=solvers, loads=loads, habitual=habitual,
                           sed_ref=np.zeros(n), force_ref=None, dxa_bone=None, dxa_sites={},
                           bone_mask=bone_mask, rho_model0=self.model.density_g_cm3(state))
        sed, force = self._habitual_sed(track)
        track.sed_ref, track.force_ref = sed, force
        # DXA on a mineral-proportional copy of the density (same mesh and tags)
        V = bone.density.function_space
        import dolfinx

        dfield = dolfinx.fem.Function(V, name="dxa_density_g_cm3")
        dfield.x.array[:] = rho0
        track.dxa_bone = dataclasses.replace(bone, density=dfield)
        track.dxa_sites = {k: (site, dxa.prepare(track.dxa_bone, site)) for k, site in sites.items()}
        return track

    def _habitual_sed(self, track):
        """SED per cell under the habitual force, and this solve's force (N). A
        displacement-controlled solve is rescaled to the bone's baseline force
        (``track.force_ref``; unscaled while that is not yet known)."""
        es, info, nu = track.solvers[track.habitual]
        t0 = time.perf_counter()
        es.solve(rtol=HABITUAL_RTOL)
        self._account(es.last)
        if track.name not in self.fe_fresh_s:
            self.fe_fresh_s[track.name] = es.last.total_s
        else:
            self.fe_resolve_s.setdefault(track.name, []).append(es.last.total_s)
        if info.control == "force":
            force = float(info.load_n)
        else:
            force = abs(float(es.reaction_force(info.load_facets) @ info.direction))
        sed = cell_sed(es.u, es.E.x.array, nu, es.order)
        self.timings["fe_s"] += time.perf_counter() - t0
        if info.control != "force" and track.force_ref is not None:
            sed = sed * (track.force_ref / force) ** 2
        return sed, force

    # --------------------------------------------------------------------------- time loop
    def _account(self, info):
        self.fe_solves += 1
        for k in ("assembly_s", "setup_s", "solve_s"):
            self.fe_breakdown[k] += getattr(info, k)
        self.fe_breakdown["iterations"] += int(info.iterations)

    def _update_density(self, track):
        rm_rho = self.model.density_g_cm3(track.state)
        ratio = np.where(track.bone_mask, rm_rho / track.rho_model0, 1.0)
        rho = track.rho0 * ratio
        track.bone.density.x.array[:] = rho
        E = track.material.modulus_array(track.bone)
        for es, _, _ in track.solvers.values():
            es.update_modulus(E)
        m = track.state.f * track.state.alpha
        track.dxa_bone.density.x.array[:] = track.rho0 * np.where(track.bone_mask, m / track.m0, 1.0)

    def _strength(self, track) -> dict:
        from femur.mechanics.failure import evaluate_criterion
        from femur.mechanics.problem import postprocess

        t0 = time.perf_counter()
        out = {}
        for key, (es, info, nu) in track.solvers.items():
            es.solve()
            self._account(es.last)
            res = postprocess(track.bone, es, info, es.last, es.E.x.array, nu)
            region = "neck" if track.name == "femur" else None
            load, site, _, _ = evaluate_criterion(res, "principal_strain", region, 0.0,
                                                  material=track.material)
            out[key] = float(load)
            out[f"{key}_stiffness"] = float(res.stiffness_n_per_mm)
            if res.apparent_strain:
                from femur.mechanics.failure import SURROGATE_STRAIN

                out[f"{key}_surrogate"] = float(res.applied_load_n * SURROGATE_STRAIN / res.apparent_strain)
        self.timings["strength_s"] += time.perf_counter() - t0
        return out

    def _measure(self, t_day) -> dict:
        from femur import dxa

        t0 = time.perf_counter()
        rec = {}
        for track in self.tracks.values():
            for key, (site, prep) in track.dxa_sites.items():
                rec[f"{key}_abmd_g_cm2"] = dxa.areal_bmd(track.dxa_bone, site, prepared=prep)
            mineral = self.model.mineral_density_mg_cm3(track.state)
            w = track.state.volume
            for comp in ("cortical", "trabecular"):
                mask = track.bone.compartment_mask(comp) if comp in track.bone.cell_ids else None
                if mask is None:
                    continue
                s = self.comm.allreduce(np.array([np.sum(w * mask * mineral), np.sum(w * mask)]), op=MPI.SUM)
                rec[f"{track.name}_vbmd_{comp}_mg_cm3"] = float(s[0] / s[1])
        states = [t.state for t in self.tracks.values()]
        sums = sum(self.model.marker_sums(s) for s in states)
        sums = self.comm.allreduce(sums, op=MPI.SUM)
        rec["p1np_pct"] = 100.0 * (sums[0] / sums[2] - 1.0)
        rec["ctx_pct"] = 100.0 * (sums[1] / sums[3] - 1.0)
        rec["drug_serum_ug_per_ml"] = float(self.model.serum_ug_ml(np.array([t_day]))[0])
        self.timings["dxa_s"] += time.perf_counter() - t0
        return rec

    def run(self, out: str | Path | None = None) -> "SimulationResult":
        end_day = self.months * DAYS_PER_MONTH
        month_days = [m * DAYS_PER_MONTH for m in range(int(np.floor(self.months + 1e-9)) + 1)]
        if month_days[-1] < end_day - 1e-6:
            month_days.append(end_day)
        fe_days = list(np.arange(self.fe_interval_days, end_day, self.fe_interval_days))
        strength_days = {round(m * DAYS_PER_MONTH, 6) for m in self.strength_months}
        events = sorted(set(round(d, 6) for d in month_days + fe_days + list(strength_days)))
        visits, strengths = [], {}
        stimulus = {k: np.zeros(t.bone.num_local_cells) for k, t in self.tracks.items()}
        writer = _FieldWriter(out, self.tracks, self.comm) if out else None
        bar = _Bar(len(events), self.progress and self.comm.rank == 0,
                   f"simulate {self.treatment} {self.months:g} mo")
        t_prev = 0.0
        for t in events:
            if t > t_prev:
                t0 = time.perf_counter()
                for k, track in self.tracks.items():
                    track.state = self.model.advance(track.state, t_prev, t, stimulus=stimulus[k])
                self.timings["cells_s"] += time.perf_counter() - t0
                for track in self.tracks.values():
                    self._update_density(track)
            is_fe = any(abs(t - d) < 1e-6 for d in fe_days)
            if is_fe:
                for k, track in self.tracks.items():
                    sed, _ = self._habitual_sed(track)
                    stimulus[k] = self._stimulus(track, sed)
            if round(t, 6) in strength_days:
                m = t / DAYS_PER_MONTH
                strengths[round(m, 6)] = {k: self._strength(tr) for k, tr in self.tracks.items()}
            if any(abs(t - d) < 1e-6 for d in month_days):
                rec = {"month": round(t / DAYS_PER_MONTH, 6)}
                rec.update(self._measure(t))
                visits.append(rec)
                if writer:
                    writer.write(rec["month"])
            t_prev = t
            bar.update(1)
        bar.close()
        if writer:
            writer.close()
        result = SimulationResult.from_run(self, visits, strengths)
        for track in self.tracks.values():
            for es, _, _ in track.solvers.values():
                es.close()
        if out:
            result.save(out)
            if writer:
                writer.pictures(Path(out))
        return result

    def _stimulus(self, track, sed) -> np.ndarray:
        from femur.remodeling import stimulus_from_sed

        M = stimulus_from_sed(sed, track.sed_ref)
        return np.where(track.bone_mask & (track.sed_ref > 0), M, 0.0)


def male_geometry(kind: str) -> dict:
    """The built-in bone scaled to a man's size: the builder's default lengths that the
    cohort model scales with body size, times its male size factor (femur.study.cohort)."""
    from femur.study.cohort import FEMUR_GEOMETRY_F, MALE_SIZE_FACTOR, VERTEBRA_GEOMETRY_F

    if kind == "femur":
        from femur.geometry.femur_model import ProximalFemur as Builder

        table = FEMUR_GEOMETRY_F
    else:
        from femur.geometry.vertebra import Vertebra as Builder

        table = VERTEBRA_GEOMETRY_F
    defaults = {f.name: f.default for f in dataclasses.fields(Builder)}
    return {name: float(defaults[name]) * MALE_SIZE_FACTOR
            for name, (_, _, scales) in table.items() if scales and name in defaults}


def _bone_mask(bone) -> np.ndarray:
    from femur.mechanics.problem import non_bone_mask

    return ~non_bone_mask(bone)


def _scaled_parameters(params, turnover: float, response: float):
    """Per-patient variability: turnover scales the bone formation rate per surface
    (BFR/BS); drug response scales every drug's potency (romosozumab and denosumab
    half-effect concentrations / response; bisphosphonate and PTH potencies x response)."""
    if turnover == 1.0 and response == 1.0:
        return params
    tis = dataclasses.replace(params.tissue, bfr_bs_mm_per_day=params.tissue.bfr_bs_mm_per_day * turnover)
    c = params.cells
    cells = dataclasses.replace(
        c, romo_k_ug_ml=c.romo_k_ug_ml / response, dmab_k_ng_ml=c.dmab_k_ng_ml / response,
        bp_potency=c.bp_potency * response, pth_ob_potency=c.pth_ob_potency * response,
    )
    return dataclasses.replace(params, tissue=tis, cells=cells)


class _Bar:
    def __init__(self, total, enabled, desc):
        self._bar = None
        if enabled:
            from tqdm import tqdm

            self._bar = tqdm(total=total, desc=desc, unit="step", leave=False)

    def update(self, n):
        if self._bar:
            self._bar.update(n)

    def close(self):
        if self._bar:
            self._bar.close()


class _FieldWriter:
    """Density (g/cm3) and density change (%) per bone over time, one VTX (ADIOS2 BP4)
    folder per bone for ParaView (`<bone>_density.bp`, time = month)."""

    def __init__(self, out, tracks, comm):
        import dolfinx
        import dolfinx.io

        self.out = Path(out)
        if comm.rank == 0:
            self.out.mkdir(parents=True, exist_ok=True)
        comm.barrier()
        self.tracks = tracks
        self.writers, self.change = {}, {}
        for k, tr in tracks.items():
            rho = tr.bone.density
            rho.name = "density_g_cm3"
            ch = dolfinx.fem.Function(rho.function_space, name="density_change_pct")
            self.change[k] = ch
            self.writers[k] = dolfinx.io.VTXWriter(comm, str(self.out / f"{k}_density.bp"), [rho, ch],
                                                   engine="BP4")

    def write(self, month):
        for k, tr in self.tracks.items():
            self.change[k].x.array[:] = 100.0 * (tr.bone.density.x.array / tr.rho0 - 1.0)
            self.writers[k].write(float(month))

    def close(self):
        for w in self.writers.values():
            w.close()

    def pictures(self, out: Path):
        from femur.viz import render_cell_fields

        for k, tr in self.tracks.items():
            change = 100.0 * (tr.bone.density.x.array / tr.rho0 - 1.0)
            lim = float(tr.bone.comm.allreduce(np.abs(change).max(), op=MPI.MAX)) or 1.0
            render_cell_fields(
                tr.bone.mesh, {"density_g_cm3": tr.bone.density.x.array, "density_change_pct": change},
                out / f"{k}_density_change.png",
                titles={"density_g_cm3": "density (g/cm3)", "density_change_pct": "density change (%)"},
                cmaps={"density_g_cm3": "bone", "density_change_pct": "RdBu"},
                clims={"density_change_pct": (-lim, lim)}, clip_normal="-y",
            )


# ------------------------------------------------------------------------------- results
@dataclass
class SimulationResult:
    """Time courses of one patient (all *_pct are % change from month 0)."""

    treatment: str
    patient: dict
    months: list
    series: dict  # key -> list over months
    strength_months: list
    strength: dict  # key -> list over strength months (N)
    strength_pct: dict
    fe_interval_days: float
    fe_solves: int
    timings: dict
    dofs: dict

    @classmethod
    def from_run(cls, sim: Simulation, visits: list, strengths: dict) -> "SimulationResult":
        months = [v["month"] for v in visits]
        base = visits[0]
        series = {}
        for key, site in (("ls", "ls"), ("th", "th"), ("fn", "fn")):
            k = f"{site}_abmd_g_cm2"
            if k in base:
                series[f"{key}_bmd_pct"] = [100.0 * (v[k] / base[k] - 1.0) for v in visits]
                series[f"{key}_abmd_g_cm2"] = [v[k] for v in visits]
        for k in base:
            if "_vbmd_" in k:
                series[k] = [v[k] for v in visits]
                series[k.replace("_mg_cm3", "_pct")] = [100.0 * (v[k] / base[k] - 1.0) for v in visits]
        for k in ("p1np_pct", "ctx_pct", "drug_serum_ug_per_ml"):
            series[k] = [v[k] for v in visits]
        sm = sorted(strengths)
        names = {("vertebra", "compression"): "vertebral_strength_n",
                 ("vertebra", "compression_surrogate"): "vertebral_surrogate_0p2pct_load_n",
                 ("femur", "fall"): "femoral_fall_strength_n", ("femur", "stance"): "femoral_stance_strength_n",
                 ("vertebra", "compression_stiffness"): "vertebral_stiffness_n_per_mm",
                 ("femur", "fall_stiffness"): "femoral_fall_stiffness_n_per_mm",
                 ("femur", "stance_stiffness"): "femoral_stance_stiffness_n_per_mm"}
        strength, strength_pct = {}, {}
        for (bone, key), name in names.items():
            if sm and bone in strengths[sm[0]] and key in strengths[sm[0]][bone]:
                vals = [strengths[m][bone][key] for m in sm]
                strength[name] = vals
                stem = name.rsplit("_n", 1)[0] if name.endswith("_n") else name.rsplit("_n_per_mm", 1)[0]
                strength_pct[f"{stem}_pct"] = [100.0 * (x / vals[0] - 1.0) for x in vals]
        dofs = {k: int(next(iter(t.solvers.values()))[0].dofs) for k, t in sim.tracks.items()}
        p = sim.patient
        return cls(
            treatment=str(sim.treatment),
            patient={"sex": p.sex, "age": p.age, "years_since_menopause": p.years_since_menopause,
                     "body_mass_kg": p.body_mass_kg, "height_m": p.height_m, "fn_t_score": p.fn_t_score},
            months=months, series=series, strength_months=sm, strength=strength,
            strength_pct=strength_pct, fe_interval_days=sim.fe_interval_days,
            fe_solves=sim.fe_solves, dofs=dofs,
            timings=dict(sim.timings, fe_breakdown=dict(sim.fe_breakdown), fe_fresh_s=dict(sim.fe_fresh_s),
                         fe_resolve_mean_s={k: float(np.mean(v)) for k, v in sim.fe_resolve_s.items()}),
        )

    def __getattr__(self, name):
        d = self.__dict__
        if name in d.get("series", {}):
            return d["series"][name]
        if name in d.get("strength_pct", {}):
            return d["strength_pct"][name]
        if name in d.get("strength", {}):
            return d["strength"][name]
        raise AttributeError(name)

    def at_month(self, key: str, month: float) -> float:
        if key in self.series:
            return float(np.interp(month, self.months, self.series[key]))
        src = self.strength_pct if key in self.strength_pct else self.strength
        return float(np.interp(month, self.strength_months, src[key]))

    def to_dict(self) -> dict:
        d = {"treatment": self.treatment, "patient": self.patient, "months": self.months}
        d.update(self.series)
        d["strength_months"] = self.strength_months
        d.update(self.strength_pct)
        d.update(self.strength)
        d.update({"fe_interval_days": self.fe_interval_days, "fe_solves": self.fe_solves,
                  "dofs": self.dofs, "timings_s": self.timings})
        return d

    def table(self) -> str:
        cols = [("month", "months", "{:>5.0f}")]
        for key, head in (("ls_bmd_pct", "LS BMD%"), ("th_bmd_pct", "TH BMD%"), ("fn_bmd_pct", "FN BMD%"),
                          ("p1np_pct", "P1NP%"), ("ctx_pct", "CTX%"), ("drug_serum_ug_per_ml", "serum ug/mL")):
            if key in self.series:
                cols.append((head, key, "{:>%d.2f}" % max(len(head), 7)))
        lines = ["  ".join(f"{h:>{max(len(h), 5 if k == 'months' else 7)}}" for h, k, _ in cols)]
        for i, m in enumerate(self.months):
            row = []
            for h, k, fmt in cols:
                v = m if k == "months" else self.series[k][i]
                row.append(fmt.format(v))
            lines.append("  ".join(row))
        if self.strength_months:
            lines.append("")
            heads = ["month"] + [k.replace("_pct", " %") for k in self.strength_pct]
            lines.append("  ".join(f"{h:>12}" for h in heads))
            for i, m in enumerate(self.strength_months):
                lines.append("  ".join([f"{m:>12.0f}"] + [f"{self.strength_pct[k][i]:>12.2f}"
                                                          for k in self.strength_pct]))
        return "\n".join(lines)

    def save(self, out) -> None:
        out = Path(out)
        if MPI.COMM_WORLD.rank != 0:
            return
        out.mkdir(parents=True, exist_ok=True)
        (out / "simulation.json").write_text(json.dumps(self.to_dict(), indent=2) + "\n")
        self.plot(out / "timecourse.png")

    def plot(self, path) -> Path:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, axes = plt.subplots(1, 3, figsize=(15, 4.2))
        ax = axes[0]
        for key, label in (("ls_bmd_pct", "lumbar spine"), ("th_bmd_pct", "total hip"),
                           ("fn_bmd_pct", "femoral neck")):
            if key in self.series:
                ax.plot(self.months, self.series[key], marker="o", ms=3, label=label)
        ax.axhline(0, color="0.6", lw=0.8)
        ax.set(xlabel="month", ylabel="areal BMD change (%)", title="DXA-equivalent BMD")
        ax.legend()
        ax = axes[1]
        ax.plot(self.months, self.series["p1np_pct"], marker="o", ms=3, label="P1NP")
        ax.plot(self.months, self.series["ctx_pct"], marker="o", ms=3, label="CTX")
        ax.axhline(0, color="0.6", lw=0.8)
        ax.set(xlabel="month", ylabel="change from baseline (%)", title="turnover markers")
        ax2 = ax.twinx()
        ax2.plot(self.months, self.series["drug_serum_ug_per_ml"], color="0.5", ls="--", label="serum")
        ax2.set_ylabel("drug serum level (ug/mL)")
        ax.legend(loc="upper right")
        ax = axes[2]
        for key, vals in self.strength_pct.items():
            ax.plot(self.strength_months, vals, marker="s", label=key.replace("_pct", "").replace("_", " "))
        ax.axhline(0, color="0.6", lw=0.8)
        ax.set(xlabel="month", ylabel="change from baseline (%)", title="FE strength")
        ax.legend(fontsize=8)
        fig.suptitle(f"{self.treatment}: {self.patient['sex']}, {self.patient['age']:g} y, "
                     f"FN T-score {self.patient['fn_t_score']:g}")
        fig.tight_layout()
        path = Path(path)
        fig.savefig(path, dpi=110)
        plt.close(fig)
        return path


def simulate(bone=None, regimen="romosozumab", months: float = 12, patient=None, out=None,
             **kwargs) -> SimulationResult:
    """FE-coupled simulation of one patient; ``bone`` may be a femur or vertebra Bone (only
    that bone is simulated) or None (the built-in femur and vertebra)."""
    if bone is not None:
        kind = bone.kind
        if kind not in ("femur", "vertebra"):
            raise InputError(f"simulate: bone kind must be 'femur' or 'vertebra', got '{kind}'")
        kwargs.setdefault("bones", (kind,))
        kwargs[f"{kind}_bone"] = bone
    return Simulation(regimen, months, patient, **kwargs).run(out)


def simulation_for_record(record: dict, comm=MPI.COMM_WORLD, progress: bool = False) -> Simulation:
    """The Simulation of one study case record (patient x arm, femur.study.cases)."""
    rm = _remodeling()
    from femur.study.cases import record_treatment

    p = record["patient"]
    model = record.get("model", {})
    patient = rm.Patient(sex=p["sex"], age=p["age_years"], body_mass_kg=p["body_mass_kg"],
                         height_m=p["height_m"], fn_t_score=p["t_score_fn"])
    visits = [float(v) for v in record["visit_months"]]
    return Simulation(
        record_treatment(record), max(float(record["duration_months"]), max(visits)), patient,
        ls_t_score=p.get("t_score_ls"), femur_params=p.get("femur_params"),
        vertebra_params=p.get("vertebra_params"), mesh_size_mm=model.get("mesh_size_mm"),
        order=int(model.get("order", 1)), solver=model.get("solver", "gamg"),
        fe_interval_days=float(model.get("fe_interval_days", DEFAULT_FE_INTERVAL_DAYS)),
        strength_months=visits, turnover_multiplier=p.get("turnover_multiplier", 1.0),
        drug_response_multiplier=p.get("drug_response_multiplier", 1.0), comm=comm, progress=progress,
    )


def run_case(record: dict, comm=MPI.COMM_WORLD) -> dict:
    """Study evaluator (femur.study): one patient x arm case record -> visit results."""
    visits = [float(v) for v in record["visit_months"]]
    sim = simulation_for_record(record, comm)
    res = sim.run()
    out = []
    for m in visits:
        v = {"month": m}
        for key in ("ls_bmd_pct", "th_bmd_pct", "fn_bmd_pct", "p1np_pct", "ctx_pct"):
            v[key] = res.at_month(key, m)
        for key in ("vertebral_strength", "femoral_fall_strength", "femoral_stance_strength"):
            v[f"{key}_pct"] = res.at_month(f"{key}_pct", m)
            v[f"{key}_n"] = res.at_month(f"{key}_n", m)
        out.append(v)
    # monthly time courses (the markers peak within the first months, between visits)
    monthly = {"month": [float(m) for m in res.months]}
    for key in ("ls_bmd_pct", "th_bmd_pct", "fn_bmd_pct", "p1np_pct", "ctx_pct"):
        monthly[key] = [float(x) for x in res.series[key]]
    return {"visits": out, "monthly": monthly, "fe_solves": res.fe_solves, "dofs": res.dofs}
