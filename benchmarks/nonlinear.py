#!/usr/bin/env python
"""Nonlinear pushover benchmark: cost against the linear solve, femur boundary conditions,
VerSe L2, mesh convergence.

Modes (each writes JSON into benchmarks/results/):

* default -- cost: a built-in femur (``--bone``, default the parametric femur: the
  anatomical femur's coarsest shipped mesh is 147k DOF at P2; FN T-score -2.5) in a
  sideways fall at about 50k DOF (``--order``, default the pushover's: P2 at 6 mm, 57,789
  DOF; P1 at 2.6 mm), on 1 and 2 MPI ranks (``--ranks``).  Per run: the linear solve of the same model
  (``femur.mechanics.solve``: assembly, AMG set-up, CG, post-processing) and one pushover
  per *variant* (``--variants``, default: only the defaults; ``all``: the defaults and the
  Newton/preconditioner variants of :data:`VARIANTS`), wall and process-CPU seconds, their
  ratio, increments, Newton and CG iterations, preconditioner set-ups and the strength
  read-offs; per variant the 1-vs-2-rank agreement of the curve.  Targets (issue 10):
  pushover <= 10x the linear solve, < 60 s on 2 ranks, ranks agree to 1e-8.  Forms are
  compiled first on a coarse femur so that JIT time counts in neither.
  -> nonlinear.json (``--quick``: 7 mm, 1 rank -> nonlinear_quick.json)
* ``--trial`` -- what a trial visit costs: the trial-mesh (4 mm) P2 femur of a default
  ``Patient`` in a lateral sideways fall (146,748 DOF) and its vertebra in compression
  (81,345 DOF), default pushover settings (``--variants`` to compare), with the P1 and P2
  linear solves of the same bone and the pushover's time split (elastic step, return
  map, residual, tangent, linear solves).  -> nonlinear_trial.json
* ``--bcs`` -- the femur boundary conditions: sideways fall (lateral) and stance of the
  built-in femur at FN T-score -2.5 (``--bc-size`` mm, ``--order``), with the cup and
  pad free to tilt ("rotating", the default) and with the phase-1 ones (uniform
  displacement of the head cap, flat support: "fixed"), in N and body weights (65 kg,
  the default woman) next to the cadaver data of biomechanics.md 2.3.
  -> nonlinear_bcs.json
* ``--verse`` -- the Bonelab protocol on the VerSe L2 vertebra
  (shared/data/verse004-L2; biomechanics.md 2.4): Kopperdahl 2002 modulus (2980 rho^1.05)
  and yield (37.4 rho^1.39, equal in tension and compression, von Mises) on every bone
  label, PMMA disks 2500 MPa / 70 MPa, nu 0.3, one disk held, the other displaced by 2 %
  of the model height; trilinear voxel meshes (``--verse-coarsen``, default 2,1).  Reports
  the linear stiffness and the nonlinear strength.  -> nonlinear_verse.json
* ``--convergence`` -- nonlinear strength of the built-in (anatomical) femur (sideways
  fall, FN T-score -2.5) and vertebra (compression, PMMA layers) from mesh h to h/2, P1
  and P2 (``--conv-sizes``, default femur 4,3,2 mm: the shipped trial and default meshes
  and a 2 mm mesh made once by meshes/make_anatomical_femur.py into ``--mesh-cache``;
  ``--conv-vsizes``, vertebra 4,2 mm), with the relative changes (h -> h/2 for P1 and P2,
  P1 -> P2 at h/2) against the 5 % target.  Every femur carries the cancellous pattern of
  the same stored adaptation (3 mm), so only the discretisation changes.  Each finished
  case is written at once; ``--resume`` keeps them.  Plot: docs/figures/nonlinear_convergence.png.
  -> nonlinear_convergence.json

    python benchmarks/nonlinear.py [--json] [--quick] [--ranks 1,2] [--size MM] [--order 2]
                                   [--variants all|NAME,NAME]
    python benchmarks/nonlinear.py --trial [--ranks 1] [--variants default,reproducible]
    python benchmarks/nonlinear.py --bcs [--bc-size 6] [--order 2] [--ranks 2]
    python benchmarks/nonlinear.py --verse [--verse-coarsen 2,1] [--ranks 2]
    python benchmarks/nonlinear.py --convergence [--conv-sizes 4,3,2] [--conv-vsizes 4,2] [--ranks 2] [--resume]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import RESULTS as RESULTS_DIR, finish, peak_rss_mb, run_worker, write_results  # noqa: E402

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "verse004-L2"
IMAGE = DATA / "sub-verse004_0000_vertebra_21_im.nii.gz"
LABELS = DATA / "sub-verse004_0000_vertebra_21_seg.nii.gz"

#: pushover variants of the cost study: name -> keyword arguments of femur.pushover
VARIANTS = {
    "default": {},
    "reproducible": {"reproducible": True},
    "gamg": {"preconditioner": "gamg"},
    "gamg_reproducible": {"preconditioner": "gamg", "reproducible": True},
    "inexact_final": {"newton_krylov": "inexact_final"},
    "pc_never": {"pc_refresh": "never"},
    "pc_always": {"pc_refresh": "always"},
    "increments_6": {"increments": 6},
    "fixed_platens": {"platens": "fixed"},
}
#: the stored adaptation whose cancellous pattern every femur of the convergence study carries
CONVERGENCE_REFERENCE_MM = 3.0
#: body weight of the default woman (remodeling.patient: 65 kg) in N
BODY_WEIGHT_N = 65.0 * 9.81


def _timed(fn):
    t0, c0 = time.perf_counter(), time.process_time()
    out = fn()
    return out, time.perf_counter() - t0, time.process_time() - c0


def _summary(r) -> dict:
    keys = ("dofs", "cells", "order", "linear_stiffness_n_per_mm", "nonlinear_strength_n",
            "displacement_at_peak_mm", "yield_load_n", "first_yield_load_n", "gauge_length_mm",
            "max_displacement_mm", "end_slope_fraction", "increments", "cutbacks",
            "newton_iterations", "linear_iterations", "pc_setups", "converged", "stopped_reason",
            "timings", "yielded_volume_mm3", "load_displacement", "criterion", "yield_model",
            "platens")
    return {k: getattr(r, k) for k in keys}


def worker_cost(size_mm: float, order: int | None, variants: list, bone_kind: str = "parametric-femur") -> dict:
    from femur.core.mpi import MPI
    from femur.mechanics import SidewaysFall, solve
    from femur.mechanics.strength import material_for
    from femur.workflows.bones import build_bone
    from femur.workflows.pushover import pushover

    comm = MPI.COMM_WORLD
    lin_order = order or 2
    warm = build_bone("parametric-femur", mesh_size_mm=7.0, t_score=-2.5, comm=comm)
    solve(warm, SidewaysFall(), material_for(warm), order=lin_order)
    for plat in ("rotating", "fixed"):
        pushover(warm, SidewaysFall(), material_for(warm), max_displacement_mm=0.5, order=order,
                 platens=plat, progress=False)
    bone = build_bone(bone_kind, mesh_size_mm=size_mm, t_score=-2.5, comm=comm)
    mat = material_for(bone)
    comm.barrier()
    lin, t_lin, c_lin = _timed(lambda: solve(bone, SidewaysFall(), mat, order=lin_order))
    c_lin = comm.allreduce(c_lin) / comm.size
    out = {"bone": bone_kind, "mesh_size_mm": size_mm, "order": lin_order, "ranks": comm.size, "dofs": lin.dofs,
           "linear_s": t_lin, "linear_cpu_s": c_lin, "linear_iterations": lin.iterations,
           "variants": {}}
    for name in variants:
        comm.barrier()
        res, t_nl, c_nl = _timed(lambda: pushover(bone, SidewaysFall(), mat, order=order,
                                                  progress=False, **VARIANTS[name]))
        c_nl = comm.allreduce(c_nl) / comm.size
        out["variants"][name] = {"kwargs": VARIANTS[name], "pushover_s": t_nl, "pushover_cpu_s": c_nl,
                                 "ratio_wall": t_nl / t_lin, "ratio_cpu": c_nl / c_lin,
                                 "pushover": _summary(res)}
    out["peak_rss_mb_per_rank"] = max(comm.allgather(peak_rss_mb()))
    return out


def worker_trial(kind: str, variant: str) -> dict:
    """One pushover of a default Patient's trial-mesh bone (what a trial visit costs):
    femur sideways fall (lateral) or vertebra compression, default order (P2), with the
    linear solves (P1 and the pushover's order) of the same bone for scale."""
    from femur.core.mpi import MPI
    from femur.mechanics import AxialCompression, SidewaysFall, solve
    from femur.mechanics.strength import material_for
    from femur.remodeling import Patient
    from femur.workflows.bones import patient_bone
    from femur.workflows.pushover import pushover

    comm = MPI.COMM_WORLD
    if kind == "femur":
        bone, lc = patient_bone("femur", Patient(), 4.0, comm=comm), SidewaysFall(direction="lateral")
    else:
        bone, lc = patient_bone("vertebra", Patient(), comm=comm), AxialCompression()
    mat = material_for(bone)
    solve(bone, lc, mat, order=1)  # JIT
    solve(bone, lc, mat, order=2)
    pushover(bone, lc, mat, max_displacement_mm=0.01, progress=False, **VARIANTS[variant])
    comm.barrier()
    lin1, t1, _ = _timed(lambda: solve(bone, lc, mat, order=1))
    lin2, t2, c2 = _timed(lambda: solve(bone, lc, mat, order=2))
    comm.barrier()
    res, t_nl, c_nl = _timed(lambda: pushover(bone, lc, mat, progress=False, **VARIANTS[variant]))
    return {"kind": kind, "variant": variant, "ranks": comm.size, "cells": res.cells,
            "linear_p1_s": t1, "linear_p1_dofs": lin1.dofs, "linear_p2_s": t2,
            "linear_p2_iterations": lin2.iterations, "pushover_s": t_nl,
            "pushover_cpu_s": comm.allreduce(c_nl) / comm.size, "ratio_to_linear_p2": t_nl / t2,
            "ratio_to_linear_p1": t_nl / t1, "pushover": _summary(res),
            "peak_rss_mb_per_rank": max(comm.allgather(peak_rss_mb()))}


def _trial(a, run) -> int:
    ranks = [int(r) for r in (a.ranks or "1").split(",")]
    variants = [v.strip() for v in (a.variants or "default").split(",") if v.strip()]
    cases = []
    for kind in ("femur", "vertebra"):
        for v in variants:
            for r in ranks:
                c = run("trial", r, kind=kind, variant=v)
                p = c["pushover"]
                cases.append(c)
                print(f"trial {kind:8s} {v:18s} ranks={r} P{p['order']} {p['dofs']} DOF: pushover "
                      f"{c['pushover_s']:.1f} s (linear P2 {c['linear_p2_s']:.2f} s, P1 {c['linear_p1_s']:.2f} s), "
                      f"{p['increments']} increments, {p['newton_iterations']} Newton, "
                      f"{p['linear_iterations']} CG; strength {p['nonlinear_strength_n']:.1f} N; "
                      f"{ {k: round(x, 1) for k, x in p['timings'].items()} }", flush=True)
    return finish("nonlinear_trial", {"benchmark": "nonlinear_trial", "cases": cases}, a.json)


#: boundary-condition / post-yield variants of ``--bcs``: name -> keyword arguments of femur.pushover
BC_VARIANTS = {
    "rotating": {"platens": "rotating"},
    "fixed": {"platens": "fixed"},
    # Keyak 2005's femur law softens after yield (biomechanics.md 2.4): slope about 0.2 E,
    # residual about 0.42 of the yield stress (plasticity.Softening docstring); a sensitivity
    # case, not tuned to the cadaver data
    "rotating_softening": {"platens": "rotating", "softening": {"modulus_fraction": 0.2, "residual_fraction": 0.42}},
}


def worker_bcs(size_mm: float, order: int | None, variants: list | None = None) -> dict:
    from femur.core.mpi import MPI
    from femur.mechanics import SidewaysFall, SingleLegStance
    from femur.mechanics.plasticity import Softening
    from femur.mechanics.strength import material_for
    from femur.workflows.bones import build_bone
    from femur.workflows.pushover import pushover

    comm = MPI.COMM_WORLD
    bone = build_bone("femur", mesh_size_mm=size_mm, t_score=-2.5, comm=comm)
    mat = material_for(bone)
    cases = []
    for lc in (SidewaysFall(), SingleLegStance()):
        for name in variants or ("rotating", "fixed"):
            kw = dict(BC_VARIANTS[name])
            if "softening" in kw:
                kw["softening"] = Softening(**kw["softening"])
            res, t, _ = _timed(lambda: pushover(bone, lc, mat, order=order, progress=False, **kw))
            cases.append({"load_case": lc.name, "platens": kw["platens"], "variant": name, "pushover_s": t,
                          "pushover": _summary(res)})
    return {"mesh_size_mm": size_mm, "ranks": comm.size,
            "t_score": (bone.parameters.get("t_score") or {}).get("achieved"), "cases": cases}


def worker_verse(coarsen: int) -> dict:
    from femur.core.mpi import MPI
    from femur.ct import bone_from_ct
    from femur.mechanics import AxialCompression, YieldModel, solve
    from femur.mechanics.materials import MaterialModel
    from femur.workflows.pushover import pushover

    comm = MPI.COMM_WORLD
    bone, t_build, _ = _timed(lambda: bone_from_ct(
        IMAGE, LABELS, calibrated_mg_cm3=True, layers=(5, 6), mesh="voxel",
        voxel_coarsen=coarsen, layer_material="pmma", comm=comm))
    layers = ("layer_superior", "layer_inferior")
    mat = MaterialModel("kopperdahl2002", compartment_laws={n: "pmma" for n in layers},
                        poisson_ratio=0.3)
    ym = YieldModel("kopperdahl2002_yield", compartment_laws={n: "pmma_yield" for n in layers},
                    equal_tension_compression=True)
    model_height = float(bone.landmarks["loaded_height"][0])
    lin, t_lin, c_lin = _timed(lambda: solve(bone, AxialCompression(strain=0.02), mat))
    res, t_nl, c_nl = _timed(lambda: pushover(bone, AxialCompression(), mat, yield_model=ym,
                                              criterion="von_mises", max_strain=0.02,
                                              progress=False))
    return {"voxel_mm": float(bone.parameters["element_size_mm"]), "ranks": comm.size,
            "model_height_mm": model_height, "bone_height_mm": float(bone.landmarks["height"][0]),
            "build_s": t_build, "linear_s": t_lin, "linear_stiffness_n_per_mm": lin.stiffness_n_per_mm,
            "pushover_s": t_nl, "ratio_wall": t_nl / t_lin, "ratio_cpu": c_nl / c_lin,
            "pushover": _summary(res),
            "peak_rss_mb_per_rank": max(comm.allgather(peak_rss_mb()))}


def _convergence_femur(size_mm: float, mesh_file: str | None, comm):
    """The built-in (anatomical) femur at FN T-score -2.5 on the shipped mesh of ``size_mm``
    or on ``mesh_file`` (a generated one), every size with the cancellous pattern of the
    SAME stored field (the 3 mm adaptation, sampled onto the other meshes), so that the
    study changes only the discretisation, not the density field."""
    from femur.geometry.adapted_density import bone_with_adapted_density, reference_path
    from femur.geometry.anatomical import AnatomicalFemur
    from femur.workflows.t_score import bone_with_t_score

    geo = (AnatomicalFemur(mesh_file=mesh_file) if mesh_file else AnatomicalFemur(mesh_size_mm=size_mm)).build(comm)
    ref = str(reference_path("anatomical-femur", CONVERGENCE_REFERENCE_MM))
    return bone_with_t_score(bone_with_adapted_density(geo, reference=ref), t_score=-2.5, sex="female")


def worker_convergence(kind: str, size_mm: float, order: int, mesh_file: str | None = None) -> dict:
    from femur.core.mpi import MPI
    from femur.mechanics import AxialCompression, SidewaysFall
    from femur.mechanics.strength import material_for
    from femur.workflows.bones import build_bone
    from femur.workflows.pushover import pushover

    comm = MPI.COMM_WORLD
    if kind == "femur":
        bone = _convergence_femur(size_mm, mesh_file, comm)
        lc = SidewaysFall()
    else:
        bone = build_bone("vertebra", mesh_size_mm=size_mm, t_score=-2.5, layers="pmma", comm=comm)
        lc = AxialCompression()
    res, t_nl, _ = _timed(lambda: pushover(bone, lc, material_for(bone), order=order, progress=False))
    return {"kind": kind, "mesh_size_mm": size_mm, "order": order, "ranks": comm.size,
            "mesh_file": mesh_file, "t_score": (bone.parameters.get("t_score") or {}).get("achieved"),
            "density": {k: v for k, v in (bone.parameters.get("density") or {}).items() if k != "mapping"},
            "pushover_s": t_nl, "pushover": _summary(res), "peak_rss_mb": peak_rss_mb()}


def femur_mesh_file(size_mm: float, cache: Path) -> str | None:
    """None for a shipped anatomical-femur size; otherwise the path of a mesh of that size
    made once with meshes/make_anatomical_femur.py into ``cache``."""
    from femur.geometry.anatomical import SHIPPED

    if any(abs(s - size_mm) < 1e-9 for s in SHIPPED):
        return None
    out = cache / f"anatomical_femur_{size_mm:g}mm"
    msh = out / "anatomical_femur.msh"
    if not msh.is_file():
        print(f"making the {size_mm:g} mm anatomical femur mesh in {out} ...", flush=True)
        make = Path(__file__).resolve().parents[1] / "meshes" / "make_anatomical_femur.py"
        subprocess.run([sys.executable, str(make), "--mesh-size", f"{size_mm:g}", "--out", str(out)],
                       check=True)
    return str(msh)


def _rel(a, b):
    return None if a is None or b is None else abs(a / b - 1)


def curve_agreement(a: dict, b: dict) -> float | None:
    """Largest relative difference of two curves (per column, relative to its largest
    value); None if they have different numbers of points."""
    ca, cb = np.asarray(a["load_displacement"]), np.asarray(b["load_displacement"])
    if ca.shape != cb.shape:
        return None
    return float((np.abs(ca - cb).max(axis=0) / np.abs(cb).max(axis=0)).max())


def _cost(a, run) -> int:
    ranks = [1] if a.quick and a.ranks is None else [int(r) for r in (a.ranks or "1,2").split(",")]
    size = a.size if a.size is not None else (7.0 if a.quick else (2.6 if a.order == 1 else 6.0))
    variants = (list(VARIANTS) if a.variants == "all" else
                [v.strip() for v in (a.variants or "default").split(",") if v.strip()])
    unknown = set(variants) - set(VARIANTS)
    if unknown:
        raise SystemExit(f"--variants: unknown {sorted(unknown)}; known {sorted(VARIANTS)}")
    runs = [run("cost", r, size_mm=size, order=a.order, variants=variants, bone_kind=a.bone) for r in ranks]
    checks, table = {}, {}
    by_ranks = {r["ranks"]: r for r in runs}
    for name in variants:
        row = {}
        for r in runs:
            v = r["variants"][name]
            p = v["pushover"]
            row[f"ratio_{r['ranks']}_ranks"] = v["ratio_wall"]
            row[f"cpu_ratio_{r['ranks']}_ranks"] = v["ratio_cpu"]
            row[f"seconds_{r['ranks']}_ranks"] = v["pushover_s"]
            row.update(increments=p["increments"], newton=p["newton_iterations"],
                       cg=p["linear_iterations"], strength_n=p["nonlinear_strength_n"],
                       yield_n=p["yield_load_n"])
            print(f"{name:14s} ranks={r['ranks']} dofs={r['dofs']} linear {r['linear_s']:.2f} s, "
                  f"pushover {v['pushover_s']:.1f} s = {v['ratio_wall']:.1f}x (cpu {v['ratio_cpu']:.1f}x), "
                  f"{p['increments']} increments, {p['newton_iterations']} Newton, "
                  f"{p['linear_iterations']} CG; strength {p['nonlinear_strength_n']:.1f} N", flush=True)
        if 1 in by_ranks and 2 in by_ranks:
            p1 = by_ranks[1]["variants"][name]["pushover"]
            p2 = by_ranks[2]["variants"][name]["pushover"]
            row["rank_agreement_curve"] = curve_agreement(p2, p1)
            row["rank_agreement_strength"] = _rel(p2["nonlinear_strength_n"], p1["nonlinear_strength_n"])
            print(f"{name:14s} 1 vs 2 ranks: curve {row['rank_agreement_curve']}, strength "
                  f"{row['rank_agreement_strength']:.2e}", flush=True)
        table[name] = row
    d = table.get("default", {})
    if "ratio_2_ranks" in d:
        checks["ratio_2_ranks"] = {"value": d["ratio_2_ranks"], "target": "<= 10", "ok": d["ratio_2_ranks"] <= 10}
        checks["seconds_2_ranks"] = {"value": d["seconds_2_ranks"], "target": "< 60",
                                     "ok": d["seconds_2_ranks"] < 60}
    if d.get("rank_agreement_strength") is not None:
        v = d["rank_agreement_strength"]
        checks["strength_1_vs_2_ranks"] = {"value": v, "target": "<= 1e-8", "ok": v <= 1e-8}
    out = {"benchmark": "nonlinear", "quick": a.quick, "bone": a.bone, "mesh_size_mm": size, "order": a.order,
           "variants": table, "runs": runs, "checks": checks}
    return finish("nonlinear_quick" if a.quick else "nonlinear", out, a.json)


def _bcs(a, run) -> int:
    ranks = int((a.ranks or "2").split(",")[0])
    variants = [v.strip() for v in a.bc_variants.split(",") if v.strip()]
    unknown = set(variants) - set(BC_VARIANTS)
    if unknown:
        raise SystemExit(f"--bc-variants: unknown {sorted(unknown)}; known {sorted(BC_VARIANTS)}")
    r = run("bcs", ranks, size_mm=a.bc_size, order=a.order, variants=variants)
    table = {}
    for c in r["cases"]:
        p = c["pushover"]
        key = f"{c['load_case']}_{c.get('variant', c['platens'])}"
        table[key] = {"strength_n": p["nonlinear_strength_n"], "yield_load_n": p["yield_load_n"],
                      "strength_bw": p["nonlinear_strength_n"] / BODY_WEIGHT_N,
                      "yield_bw": None if p["yield_load_n"] is None else p["yield_load_n"] / BODY_WEIGHT_N,
                      "stiffness_n_per_mm": p["linear_stiffness_n_per_mm"],
                      "first_yield_n": p["first_yield_load_n"], "end_slope_fraction": p["end_slope_fraction"],
                      "dofs": p["dofs"], "order": p["order"], "seconds": c["pushover_s"]}
        print(f"{key:22s} P{p['order']} {p['dofs']} DOF: peak {p['nonlinear_strength_n']:.0f} N "
              f"({table[key]['strength_bw']:.1f} BW), 0.2% yield {p['yield_load_n'] or float('nan'):.0f} N, "
              f"K {p['linear_stiffness_n_per_mm']:.0f} N/mm, end slope {p['end_slope_fraction']:.2f} K, "
              f"{c['pushover_s']:.0f} s", flush=True)
    out = {"benchmark": "nonlinear_bcs", "mesh_size_mm": a.bc_size, "order": a.order,
           "body_weight_n": BODY_WEIGHT_N,
           "cadaver_side_impact_n": "3951 +- 1659 (Eckstein 2004; biomechanics.md 2.3)",
           "table": table, "run": r}
    return finish("nonlinear_bcs", out, a.json)


def _convergence(a, run) -> int:
    """Mesh/order convergence of the nonlinear strength (module doc); every finished case is
    written at once (``nonlinear_convergence.json``, ``"complete": false`` until the end),
    and ``--resume`` keeps the finished ones of an interrupted study."""
    ranks = int((a.ranks or "2").split(",")[0])
    sizes = {"femur": [float(s) for s in (a.conv_sizes or "4,3,2").split(",")],
             "vertebra": [float(s) for s in a.conv_vsizes.split(",")]}
    for kind, hs in sizes.items():
        if not any(abs(h - 2 * min(hs)) < 1e-9 for h in hs):
            raise SystemExit(f"--conv-{'v' if kind == 'vertebra' else ''}sizes: twice the finest size must be "
                             f"among the sizes (h ... h/2; others are reported too), got {hs}")
    cache = Path(a.mesh_cache)
    path = RESULTS_DIR / "nonlinear_convergence.json"
    done = []
    if a.resume and path.is_file():
        old = json.loads(path.read_text())
        done = [c for c in old.get("cases", []) if c.get("ranks") == ranks]
    out = {"benchmark": "nonlinear_convergence", "ranks": ranks, "complete": False,
           "femur": "anatomical (built-in), sideways fall, FN T-score -2.5, cancellous pattern of the "
                    f"{CONVERGENCE_REFERENCE_MM:g} mm adaptation on every mesh",
           "vertebra": "built-in, compression between PMMA layers, spine T-score -2.5",
           "sizes_mm": sizes, "cases": list(done), "checks": {}}
    strengths = {}
    for kind, hs in sizes.items():
        for order in (1, 2):
            for h in hs:
                prev = [c for c in done if c["kind"] == kind and c["order"] == order
                        and abs(c["mesh_size_mm"] - h) < 1e-9]
                if prev:
                    c = prev[0]
                else:
                    mesh_file = femur_mesh_file(h, cache) if kind == "femur" else None
                    c = run("convergence", ranks, kind=kind, size_mm=h, order=order, mesh_file=mesh_file)
                    out["cases"].append(c)
                    write_results("nonlinear_convergence", out)
                p = c["pushover"]
                strengths[(kind, order, h)] = p["nonlinear_strength_n"]
                print(f"{kind} {h:g} mm P{order} ({p['dofs']} DOF): {p['nonlinear_strength_n']:.0f} N at "
                      f"{p['displacement_at_peak_mm']:.2f} mm, 0.2% yield {p['yield_load_n'] or float('nan'):.0f} N, "
                      f"{p['increments']} increments, {p['newton_iterations']} Newton, "
                      f"{c['pushover_s']:.1f} s{' (kept)' if prev else ''}", flush=True)
        h2 = min(hs)
        h = 2 * h2
        for name, x, y in (("P1_h_to_h/2", strengths[(kind, 1, h)], strengths[(kind, 1, h2)]),
                           ("P2_h_to_h/2", strengths[(kind, 2, h)], strengths[(kind, 2, h2)]),
                           ("P1_to_P2_at_h/2", strengths[(kind, 1, h2)], strengths[(kind, 2, h2)])):
            v = _rel(x, y)
            out["checks"][f"{kind}_{name}"] = {"value": v, "target": "<= 0.05", "ok": v <= 0.05}
    out["complete"] = True
    figure = Path(a.figure)
    plot_convergence(out, figure)
    out["figure"] = str(figure)
    print(f"figure: {figure}")
    return finish("nonlinear_convergence", out, a.json)


def plot_convergence(out: dict, figure: Path) -> None:
    """Strength against DOF per bone and element order (log DOF axis)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    for ax, kind in zip(axes, ("femur", "vertebra")):
        for order, mk in ((1, "o--"), (2, "s-")):
            cs = sorted((c for c in out["cases"] if c["kind"] == kind and c["order"] == order),
                        key=lambda c: c["pushover"]["dofs"])
            if not cs:
                continue
            x = [c["pushover"]["dofs"] for c in cs]
            y = [c["pushover"]["nonlinear_strength_n"] for c in cs]
            ax.plot(x, y, mk, label=f"P{order}")
            for c, xi, yi in zip(cs, x, y):
                ax.annotate(f"{c['mesh_size_mm']:g} mm", (xi, yi), textcoords="offset points", xytext=(4, 4),
                            fontsize=8)
        fine = [c["pushover"]["nonlinear_strength_n"] for c in out["cases"]
                if c["kind"] == kind and c["order"] == 2
                and abs(c["mesh_size_mm"] - min(out["sizes_mm"][kind])) < 1e-9]
        if fine:
            ax.axhspan(0.95 * fine[0], 1.05 * fine[0], color="0.9", label="finest P2 ± 5 %")
        ax.set_xscale("log")
        ax.set_xlabel("degrees of freedom")
        ax.set_ylabel("nonlinear strength (N)")
        ax.set_title("anatomical femur, sideways fall" if kind == "femur" else "vertebra, compression")
        ax.legend()
    fig.tight_layout()
    figure.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(figure, dpi=120)
    plt.close(fig)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--quick", action="store_true", help="7 mm femur, 1 rank")
    ap.add_argument("--ranks", default=None, help="comma-separated rank counts (default 1,2)")
    ap.add_argument("--size", type=float, default=None,
                    help="femur mesh size (mm); default 6 (P2) / 2.6 (P1), ~50k DOF")
    ap.add_argument("--order", type=int, default=None, help="element order (default: the pushover's)")
    ap.add_argument("--bone", default="parametric-femur",
                    help="bone of the cost runs (default parametric-femur: the anatomical femur's "
                         "coarsest shipped mesh, 4 mm, is 147k DOF at P2)")
    ap.add_argument("--trial", action="store_true",
                    help="the trial-mesh P2 femur fall and vertebra of a default Patient")
    ap.add_argument("--variants", default=None,
                    help=f"pushover variants of the cost runs: all, or names from {', '.join(VARIANTS)}")
    ap.add_argument("--bcs", action="store_true")
    ap.add_argument("--bc-size", type=float, default=6.0)
    ap.add_argument("--bc-variants", default="rotating,fixed",
                    help=f"comma-separated --bcs variants ({', '.join(BC_VARIANTS)})")
    ap.add_argument("--verse", action="store_true")
    ap.add_argument("--verse-coarsen", default="2,1")
    ap.add_argument("--convergence", action="store_true")
    ap.add_argument("--conv-sizes", default=None,
                    help="femur sizes h,...,h/2 (mm, default 4,3,2: the trial, default and a generated 2 mm "
                         "anatomical mesh); vertebra uses --conv-vsizes")
    ap.add_argument("--conv-vsizes", default="4,2")
    ap.add_argument("--resume", action="store_true", help="keep the finished cases of an interrupted --convergence")
    ap.add_argument("--mesh-cache", default=str(Path(tempfile.gettempdir()) / "femur-benchmark-meshes"),
                    help="where --convergence keeps the anatomical femur meshes it makes (non-shipped sizes)")
    ap.add_argument("--figure", default=str(Path(__file__).resolve().parents[1] / "docs" / "figures"
                                            / "nonlinear_convergence.png"))
    ap.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--args", default="{}", help=argparse.SUPPRESS)
    a = ap.parse_args(argv)

    if a.worker:
        kw = json.loads(a.args)
        fn = {"cost": worker_cost, "trial": worker_trial, "bcs": worker_bcs, "verse": worker_verse,
              "convergence": worker_convergence}[a.worker]
        res = fn(**kw)
        from femur.core.mpi import MPI

        if MPI.COMM_WORLD.rank == 0:
            print(json.dumps(res, default=float), flush=True)
        return 0

    script = Path(__file__)

    def run(mode, ranks, **kw):
        return run_worker(script, ranks, [mode, "--args", json.dumps(kw)], timeout=14400)

    if a.bcs:
        return _bcs(a, run)

    if a.trial:
        return _trial(a, run)

    if a.verse:
        ranks = [int(r) for r in (a.ranks or "2").split(",")]
        cases = [run("verse", r, coarsen=int(c)) for c in a.verse_coarsen.split(",") for r in ranks]
        for c in cases:
            p = c["pushover"]
            print(f"VerSe L2 voxel {c['voxel_mm']:g} mm ({p['dofs']} DOF, {c['ranks']} ranks): "
                  f"stiffness {c['linear_stiffness_n_per_mm']:.0f} N/mm, nonlinear strength "
                  f"{p['nonlinear_strength_n']:.0f} N, 0.2% offset yield {p['yield_load_n']:.0f} N, "
                  f"pushover {c['pushover_s']:.1f} s ({c['ratio_wall']:.1f}x linear)", flush=True)
        return finish("nonlinear_verse", {"benchmark": "nonlinear_verse", "cases": cases}, a.json)

    if a.convergence:
        return _convergence(a, run)

    return _cost(a, run)


if __name__ == "__main__":
    sys.exit(main())
