#!/usr/bin/env python
"""Print the README's benchmark tables (Markdown) from benchmarks/results/*.json.

    python benchmarks/tables.py
"""

from __future__ import annotations

import json
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"


def _load(name):
    p = RESULTS / f"{name}.json"
    return json.loads(p.read_text()) if p.exists() else None


def fe_table(d) -> str:
    rows = ["| ranks | mesh (mm) | DOFs | assembly (s) | AMG setup (s) | solve (s) | CG its | DOF/s/core | peak MB/rank | solve KB/DOF |",
            "|---|---|---|---|---|---|---|---|---|---|"]
    for r in sorted(d["runs"], key=lambda x: (x["ranks"], x["dofs"])):
        rows.append(f"| {r['ranks']} | {r['mesh_size_mm']} | {r['dofs']:,} | {r['assembly_s']:.2f} | {r['setup_s']:.2f} | "
                    f"{r['solve_s']:.2f} | {r['iterations']} | {r['dofs'] / (r['total_s'] * r['ranks']):,.0f} | "
                    f"{r['peak_rss_mb_per_rank']:.0f} | {r['solve_added_mb_total'] * 1024 / r['dofs']:.2f} |")
    return "\n".join(rows) + "\n\n" + checks(d)


def checks(d) -> str:
    out = []
    for k, v in d.get("checks", {}).items():
        out.append(f"- {k}: {v['value']:.3g} (target {v['target']}): {'met' if v['ok'] else 'MISSED'}")
    return "\n".join(out)


def ct_table(docs) -> str:
    rows = ["| model | ranks | DOFs | stiffness (N/mm) | linear fracture load (N) | 0.2 % surrogate (N) | build (s) | solve (s) | peak MB (all ranks) |",
            "|---|---|---|---|---|---|---|---|---|"]
    for d in docs:
        for r in d["cases"]:
            if "error" in r:
                continue
            rows.append(f"| {r['case']} | {r['ranks']} | {r['dofs']:,} | {r['stiffness_n_per_mm']:,.0f} | "
                        f"{r['fracture_load_n']:,.0f} | {r['surrogate_0p2pct_load_n']:,.0f} | {r['build_s']:.1f} | "
                        f"{r['solve_s']:.1f} | {r['peak_rss_mb']:.0f} |")
    return "\n".join(rows)


def remodeling_table(d) -> str:
    rows = ["| ranks | DOFs (femur, vertebra) | wall (s) | cells (s) | assembly (s) | AMG setup (s) | solve (s) | FE solves | re-solve / fresh |",
            "|---|---|---|---|---|---|---|---|---|"]
    for r in d["runs"]:
        ratio = ", ".join(f"{k} {v:.2f}" for k, v in r["resolve_over_fresh"].items())
        rows.append(f"| {r['ranks']} | {r['dofs']['femur']:,}, {r['dofs']['vertebra']:,} | {r['wall_s']:.1f} | "
                    f"{r['cells_s']:.2f} | {r['assembly_s']:.1f} | {r['amg_setup_s']:.1f} | {r['solve_s']:.1f} | "
                    f"{r['fe_solves']} | {ratio} |")
    return "\n".join(rows) + "\n\n" + checks(d)


def trial_table(d) -> str:
    rows = ["| ranks | patients x arms x months | wall (s) | s per case per core | idle per rank (s) | peak MB/rank |",
            "|---|---|---|---|---|---|"]
    for r in d["runs"]:
        idle = ", ".join(f"{x:.1f}" for x in r["idle_s_per_rank"]) if "idle_s_per_rank" in r else "-"
        rows.append(f"| {r['ranks']} | {r['patients']} x 2 x {r['months']:g} | {r['wall_s']:.1f} | "
                    f"{r['s_per_case']:.2f} | {idle} | {r['peak_rss_mb_per_rank']:.0f} |")
    out = "\n".join(rows) + "\n\n" + checks(d)
    last = d["runs"][-1]
    if "time_per_case_s" in last:
        t = last["time_per_case_s"]
        names = (("build_s", "building the bones + solvers"), ("fe_s", "habitual FE solves"),
                 ("strength_s", "strength solves"), ("dxa_s", "DXA"), ("cells_s", "cell model"))
        busy = last["busy_s_per_case"]
        rows = [f"Where a case's time goes ({last['ranks']} ranks, {last['schedule']} schedule; busy "
                f"{busy:.2f} s per case, {t['fe_solves']:.0f} FE solves per case):", "",
                "| part | s per case | share |", "|---|---|---|"]
        for k, label in names:
            rows.append(f"| {label} | {t[k]:.2f} | {100 * t[k] / busy:.0f} % |")
        rows += ["", "(The case's baseline habitual solve is counted in both the building and the "
                 "habitual solves; shares are of the busy time per case.)"]
        out += "\n\n" + "\n".join(rows)
    if d.get("projection"):
        p = d["projection"]
        out += (f"\n\nProjected full FRAME ({p['cases']:,} cases x {p['months']:g} months) on {p['ranks']} ranks: "
                f"{p['wall_s'] / 60:.1f} min ({p['busy_s_per_case']:.2f} s per case from {p['from_cases']} cases "
                f"on {p['from_ranks']} ranks).")
    arms = d["runs"][0]["summary"]["arms"]
    last = d["runs"][0]["summary"].get("last_visit_month")
    rows = [f"Summary at month {last:g} (mean % change from baseline; incidences over the study):", "",
            "| arm | n | LS BMD | TH BMD | FN BMD | vertebral strength | femoral fall strength | vertebral fx | hip fx | RR vertebral | RR hip |",
            "|---|---|---|---|---|---|---|---|---|---|---|"]
    for a in arms:
        rr = [("-" if a.get(k) is None else f"{a[k]:.2f}") for k in ("relative_risk_vertebral", "relative_risk_hip")]
        rows.append(f"| {a['arm']} | {a['n']} | {a['ls_bmd_pct_mean']:+.1f} | {a['th_bmd_pct_mean']:+.1f} | "
                    f"{a['fn_bmd_pct_mean']:+.1f} | {a['vertebral_strength_pct_mean']:+.1f} | "
                    f"{a['femoral_fall_strength_pct_mean']:+.1f} | {100 * a['vertebral_fracture_incidence']:.1f} % | "
                    f"{100 * a['hip_fracture_incidence']:.1f} % | {rr[0]} | {rr[1]} |")
    return out + "\n\n" + "\n".join(rows)


def scaling_table(d) -> str:
    rows = ["| scaling | ranks | DOFs | assembly (s) | AMG setup (s) | solve (s) | CG its | DOF/s/core | speedup | efficiency | peak MB/rank |",
            "|---|---|---|---|---|---|---|---|---|---|---|"]
    for kind in ("strong", "weak"):
        for r in d[kind]:
            sp = f"{r['speedup']:.2f}" if "speedup" in r else "-"
            rows.append(f"| {kind} | {r['ranks']} | {r['dofs']:,} | {r['assembly_s']:.2f} | {r['setup_s']:.2f} | "
                        f"{r['solve_s']:.2f} | {r['iterations']} | {r['dofs_per_s_per_core']:,.0f} | {sp} | "
                        f"{r['efficiency']:.2f} | {r['peak_rss_mb_per_rank']:.0f} |")
    return "\n".join(rows) + "\n\n" + checks(d)


def ct_treatment_table(d) -> str:
    rows = ["| ranks | cells | DOFs | FE solves | wall (s) | FE assembly (s) | FE solve (s) | strength (s) | "
            "LS BMD % | strength % |", "|---|---|---|---|---|---|---|---|---|---|"]
    for n, r in sorted(d["runs"].items(), key=lambda kv: int(kv[0])):
        fe = r["timings_s"]["fe_breakdown"]
        rows.append(f"| {n} | {r['cells']:,} | {r['dofs']:,} | {r['fe_solves']} | {r['wall_s']:.1f} | "
                    f"{fe['assembly_s']:.1f} | {fe['solve_s']:.1f} | {r['timings_s']['strength_s']:.1f} | "
                    f"{r['ls_bmd_pct']:+.2f} | {r['vertebral_strength_pct']:+.2f} |")
    ratio = f"\n- serial / 2-rank wall time: {d['serial_over_2_ranks']:.2f}" if "serial_over_2_ranks" in d else ""
    return "\n".join(rows) + "\n\n" + checks(d) + ratio


def main():
    for title, name, fn in (("FE solve (benchmarks/fe_solve.py)", "fe_solve", fe_table),
                            ("Remodeling (benchmarks/remodeling.py)", "remodeling", remodeling_table),
                            ("Remodeling, quick (benchmarks/remodeling.py --quick)", "remodeling_quick", remodeling_table),
                            ("Virtual trial (benchmarks/trial.py)", "trial", trial_table),
                            ("Virtual trial, quick (benchmarks/trial.py --quick)", "trial_quick", trial_table),
                            ("MPI scaling, 1-16 ranks (benchmarks/scaling.py)", "scaling", scaling_table)):
        d = _load(name)
        if d:
            print(f"### {title}\n\n{fn(d)}\n")
    docs = [d for d in (_load("ct_model_np1"), _load("ct_model_np2")) if d]
    if docs:
        print(f"### VerSe L2 CT model (benchmarks/ct_model.py)\n\n{ct_table(docs)}\n")
    d = _load("ct_treatment")
    if d:
        print(f"### VerSe L2, {d['months']:g} months of {d['treatment']} (benchmarks/ct_treatment.py)\n\n"
              f"{ct_treatment_table(d)}\n")


if __name__ == "__main__":
    main()
