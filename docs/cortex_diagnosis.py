"""Where today's remodeling model puts bone gain and loss: cortex vs trabecular bone, per
drug, next to the compartment calibration rows 16-21 (issue 15, the diagnosis).

Nothing here is fitted or tuned: it runs the calibrated model as it stands and prints its
compartment courses (``femur.outcomes.compartments``) beside the targets of
``../shared/science/clinical-targets.md`` rows 16-21, and says which rows the model's
calibration used (from the provenance of ``femur/data/cell_model.json``): a row the
calibration did not use is a prediction.

Runs, all on the default patient (a 71-year-old woman, femoral-neck T-score -2.5):

* 12 months of romosozumab, denosumab, alendronate, teriparatide and placebo, on the
  systemic DXA-site driver (the calibration path) and, with ``--fe``, on the FE-coupled
  default femur and vertebra (mechanostat on; FE every 30 days);
* placebo and denosumab for 36 months (row 21: denosumab's hip cortex vs placebo);
* alendronate and placebo for 36 months: mean degree of mineralisation (row 20);
* placebo from age 65 for 15 years (row 16: age-related loss by compartment).

    .venv/bin/python docs/cortex_diagnosis.py [--fe] [--markdown docs/cortex-diagnosis.md] [--json FILE]

(systemic only: a few seconds; ``--fe``: about 1-2 minutes serial)
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from femur.core.units import DAYS_PER_MONTH
from femur.outcomes.compartments import COMPARTMENT_KEYS, cortical_share_of_change
from femur.remodeling.model import RemodelingModel
from femur.remodeling.patient import Patient
from femur.workflows.systemic import site_elements, simulate_sites

DRUGS = ("romosozumab", "denosumab", "alendronate", "teriparatide", "placebo")
PATIENT = Patient()

#: calibration rows 16-21, in words (clinical-targets.md; the model was not fitted to them)
ROWS = {
    16: "age-related loss, women 50-80 y (distal radius): 68 % of the mineral lost is cortical, "
        "84 % of it after 65; superolateral neck cortex thins 6.4 %/decade; lifetime cortical "
        "vBMD -25 %, trabecular -55 % (central sites)",
    17: "romosozumab month 2: modelling-based formation cancellous 18.0 vs 3.8 %, endocortical "
        "36.7 vs 3.0 %, periosteal 5.0 vs 2.0 % of bone surface (vs placebo)",
    18: "month 6 mineralising surface, teriparatide cancellous / endocortical / intracortical / "
        "periosteal 4.44 / 19.06 / 17.49 / 0.71 %",
    19: "cortical porosity at 12 months: teriparatide +20.9 % (radius), +5.6 % (tibia); "
        "denosumab unchanged",
    20: "alendronate mean degree of mineralisation vs placebo: +7.3 % (2 y) to +11.4 % (3 y) "
        "cancellous, +9.3 % to +11.6 % compact",
    21: "denosumab hip cortical mass surface density +5.4 % vs placebo over 3 years (1/3 density, "
        "2/3 thickness), visible by 12 months",
}


def last(tc, key):
    return float(tc.series[key][-1])


def drug_row(tc) -> dict:
    """The 12-month compartment numbers of one run."""
    row = {k: last(tc, k) for k in COMPARTMENT_KEYS if k in tc.series}
    row.update(th_bmd_pct=last(tc, "th_bmd_pct"), ls_bmd_pct=last(tc, "ls_bmd_pct"))
    row["th_ls_ratio"] = row["th_bmd_pct"] / row["ls_bmd_pct"] if row["ls_bmd_pct"] else None
    b = tc.compartment_baseline
    row["hip_cortical_share_of_change"] = cortical_share_of_change(
        row["th_bmd_pct"], row["hip_cortical_bmc_pct"], b["hip_cortical_bmc_share"])
    row["spine_cortical_share_of_change"] = cortical_share_of_change(
        row["ls_bmd_pct"], row["spine_cortical_bmc_pct"], b["spine_cortical_bmc_share"])
    if "compartment_switches" in tc.run:  # femur.remodeling.switching
        row["compartment_switches"] = tc.run["compartment_switches"]
    return row


def mineralisation_course(treatment: str, months: float, patient: Patient = PATIENT) -> dict:
    """Mean degree of mineralisation (mineral per bone volume, relative to full) of the
    total-hip and lumbar-spine cells, cortical and trabecular, at ``months``: the bone-volume
    weighted mean of alpha (what backscatter imaging of a biopsy measures, row 20)."""
    out = {}
    for site, key in (("total_hip", "hip"), ("lumbar_spine", "spine")):
        rho, w, cort = site_elements(site, patient)
        model = RemodelingModel(treatment, patient)
        s = model.initial_state(density_g_cm3=rho, compartment=cort.astype(int))
        vol = w / rho  # volume inside the ROI prism
        s = model.advance(s, 0.0, months * DAYS_PER_MONTH)
        for name, m in (("cortical", cort), ("trabecular", ~cort)):
            dmb0 = np.sum(vol[m] * s.f0[m] * s.alpha0[m]) / np.sum(vol[m] * s.f0[m])
            dmb = np.sum(vol[m] * s.f[m] * s.alpha[m]) / np.sum(vol[m] * s.f[m])
            out[f"{key}_{name}_dmb"] = float(dmb)
            out[f"{key}_{name}_dmb_baseline"] = float(dmb0)
    return out


def systemic_results() -> dict:
    res = {"patient": PATIENT.to_dict(), "drugs_12m": {}}
    for drug in DRUGS:
        res["drugs_12m"][drug] = drug_row(simulate_sites(drug, 12, PATIENT))
    # row 21: denosumab vs placebo at the hip cortex, 12 and 36 months
    dmab, pbo = simulate_sites("denosumab", 36, PATIENT), simulate_sites("placebo", 36, PATIENT)
    res["row21"] = {f"m{m}": {k: float(np.interp(m, dmab.months, dmab.series[k]) - np.interp(m, pbo.months, pbo.series[k]))
                              for k in ("hip_cortical_bmc_pct", "neck_cortical_thickness_pct",
                                        "hip_cortical_porosity_pct", "th_bmd_pct")}
                    for m in (12, 36)}
    # row 20: mineralisation on alendronate vs placebo
    res["row20"] = {}
    for m in (24, 36):
        a, p = mineralisation_course("alendronate", m), mineralisation_course("placebo", m)
        res["row20"][f"m{m}"] = {k: 100.0 * (a[k] / p[k] - 1.0) for k in a if not k.endswith("_baseline")}
    res["row20"]["baseline_dmb"] = {k: v for k, v in mineralisation_course("placebo", 1).items()
                                    if k.endswith("_baseline")}
    # row 16: age-related loss, placebo from age 65 for 15 years
    old = Patient(age_years=65.0)
    tc = simulate_sites("placebo", 180, old)
    b = tc.compartment_baseline
    res["row16"] = {}
    for years in (10, 15):
        th = float(np.interp(12 * years, tc.months, tc.series["th_bmd_pct"]))
        cort = float(np.interp(12 * years, tc.months, tc.series["hip_cortical_bmc_pct"]))
        trab = float(np.interp(12 * years, tc.months, tc.series["hip_trabecular_bmc_pct"]))
        res["row16"][f"age65_plus_{years}y"] = {
            "th_bmd_pct": th, "hip_cortical_bmc_pct": cort, "hip_trabecular_bmc_pct": trab,
            "hip_cortical_share_of_loss": cortical_share_of_change(th, cort, b["hip_cortical_bmc_share"]),
            "neck_cortical_thickness_pct": float(np.interp(12 * years, tc.months,
                                                           tc.series["neck_cortical_thickness_pct"])),
            "hip_cortical_porosity_pct": float(np.interp(12 * years, tc.months,
                                                         tc.series["hip_cortical_porosity_pct"])),
        }
    res["baseline"] = dict(tc.compartment_baseline)
    return res


def fe_results() -> dict:
    from femur.workflows.simulation import Simulation

    out = {}
    for drug in DRUGS:
        tc = Simulation(drug, 12, PATIENT, fe_interval_days=30, strength_months=(0, 12), progress=False).run()
        row = drug_row(tc)
        row.update({k: float(v[-1]) for k, v in tc.strength_pct.items()})
        out[drug] = row
    return out


def _fmt(x, nd=2):
    return "-" if x is None else f"{x:.{nd}f}"


def markdown(res: dict) -> str:
    lines = ["# The cortex in today's remodeling model (issue 15 diagnosis)", "",
             "Written by `.venv/bin/python docs/cortex_diagnosis.py"
             + (" --fe" if "fe_12m" in res else "") + " --markdown docs/cortex-diagnosis.md`"
             " (femur " + res["version"] + "). Default patient: a 71-year-old woman, femoral-neck "
             "T-score -2.5. Definitions of the compartment courses: `femur.outcomes.compartments` "
             "(hip = total-hip ROI, spine = lumbar-spine ROI, cortical = the mesh's cortical cells, "
             "neck Ct.Th = cortical bone volume in the femoral-neck box over its fixed periosteal area, "
             "hip Ct.Po = relative change of the intracortical porosity of the hip cortical cells (canal "
             "remodelling only; endocortical and periosteal gains change thickness), Ct.TMD / Tb.TMD = tissue "
             "mineral density of the hip cortical / spine trabecular bone). The cell model's "
             f"calibration used {res['calibration_targets']} (femur/data/cell_model.json); every "
             "other number is a prediction.", ""]
    base = res["baseline"]
    lines.append(f"Baseline: cortical share of the total-hip mineral {100 * base['hip_cortical_bmc_share']:.0f} %, "
                 f"of the lumbar-spine mineral {100 * base['spine_cortical_bmc_share']:.0f} %; hip cortical "
                 f"porosity {100 * base['hip_cortical_porosity']:.1f} % (systemic driver's site templates).")
    lines.append("")
    tables = [("systemic DXA-site driver (calibration path, no mechanostat)", res["drugs_12m"])]
    if "fe_12m" in res:
        tables.append(("FE-coupled default femur and vertebra (mechanostat on, FE every 30 days)", res["fe_12m"]))
    heads = ["drug", "hip Ct BMC %", "hip Tb BMC %", "LS Ct BMC %", "LS Tb BMC %", "TH %", "LS %", "TH/LS",
             "hip Ct share of change %", "neck Ct.Th %", "hip Ct.Po %", "hip Ct.TMD %", "LS Tb.TMD %"]
    keys = ["hip_cortical_bmc_pct", "hip_trabecular_bmc_pct", "spine_cortical_bmc_pct",
            "spine_trabecular_bmc_pct", "th_bmd_pct", "ls_bmd_pct", "th_ls_ratio",
            "hip_cortical_share_of_change", "neck_cortical_thickness_pct", "hip_cortical_porosity_pct",
            "hip_cortical_tmd_pct", "spine_trabecular_tmd_pct"]
    for title, tab in tables:
        lines += [f"## 12 months, {title}", "", "| " + " | ".join(heads) + " |",
                  "|" + "|".join(["---"] + ["---:"] * (len(heads) - 1)) + "|"]
        for drug, row in tab.items():
            vals = [100 * row[k] if k.endswith("share_of_change") and row.get(k) is not None else row.get(k)
                    for k in keys]
            lines.append("| " + " | ".join([drug] + [_fmt(x, 0 if k.endswith("share_of_change") else 2)
                                                     for k, x in zip(keys, vals)]) + " |")
        if tab and "femoral_fall_strength_pct" in next(iter(tab.values())):
            lines += ["", "FE strength at month 12 (%): " + "; ".join(
                f"{d} fall {r['femoral_fall_strength_pct']:.1f}, vertebral {r['vertebral_strength_pct']:.1f}"
                for d, r in tab.items())]
        lines.append("")
    r16, r20, r21 = res["row16"], res["row20"], res["row21"]
    s12 = res["drugs_12m"]
    lines += ["## Next to the calibration rows 16-21", "", "| row | target | model |", "|---|---|---|"]
    a10, a15 = r16["age65_plus_10y"], r16["age65_plus_15y"]
    pbo = s12["placebo"]
    lines.append(
        f"| 16 | {ROWS[16]} | placebo, 71 y, 12 months: cortical share of the hip BMC loss "
        f"{_fmt(100 * pbo['hip_cortical_share_of_change'], 0)} % (hip Ct {_fmt(pbo['hip_cortical_bmc_pct'])} %, "
        f"Tb {_fmt(pbo['hip_trabecular_bmc_pct'])} %); from 65 to 75 y: share {_fmt(100 * a10['hip_cortical_share_of_loss'], 0)} %, "
        f"hip Ct {_fmt(a10['hip_cortical_bmc_pct'])} %, Tb {_fmt(a10['hip_trabecular_bmc_pct'])} %, neck cortical "
        f"thickness {_fmt(a10['neck_cortical_thickness_pct'])} % per decade (whole neck box, not superolateral); "
        f"65 to 80 y: share {_fmt(100 * a15['hip_cortical_share_of_loss'], 0)} % |")
    lines.append(f"| 17 | {ROWS[17]} | used as fixed ratios, not fitted: modelling formation per surface "
                 "endocortical 2.37 and periosteal 0.21 times cancellous (intracortical 1.0, an assumption); every "
                 "cortical element carries the same surface mix (40 % endocortical, 60 % canal, periosteal 10 % "
                 "extra), not resolved per element; eroded surfaces not separated by surface |")
    lines.append(f"| 18 | {ROWS[18]} | not represented quantitatively: mineralising surface per surface is not an "
                 "output; teriparatide raises canal activation (porosity, row 19) and osteoblast-driven "
                 "formation on the endocortical share |")
    lines.append(
        f"| 19 | {ROWS[19]} | hip cortical porosity at 12 months: teriparatide "
        f"{_fmt(s12['teriparatide']['hip_cortical_porosity_pct'])} %, denosumab "
        f"{_fmt(s12['denosumab']['hip_cortical_porosity_pct'])} %, romosozumab "
        f"{_fmt(s12['romosozumab']['hip_cortical_porosity_pct'])} %, placebo "
        f"{_fmt(s12['placebo']['hip_cortical_porosity_pct'])} % (hip, not radius or tibia) |")
    m24, m36 = r20["m24"], r20["m36"]
    lines.append(
        f"| 20 | {ROWS[20]} | alendronate vs placebo, mean mineral per bone volume: 2 y trabecular "
        f"hip {_fmt(m24['hip_trabecular_dmb'])} % / spine {_fmt(m24['spine_trabecular_dmb'])} %, cortical hip "
        f"{_fmt(m24['hip_cortical_dmb'])} % / spine {_fmt(m24['spine_cortical_dmb'])} %; 3 y trabecular hip "
        f"{_fmt(m36['hip_trabecular_dmb'])} % / spine {_fmt(m36['spine_trabecular_dmb'])} %, cortical hip "
        f"{_fmt(m36['hip_cortical_dmb'])} % / spine {_fmt(m36['spine_cortical_dmb'])} % (baseline mineral "
        f"relative to full: cortical {_fmt(r20['baseline_dmb']['hip_cortical_dmb_baseline'], 3)}, trabecular "
        f"{_fmt(r20['baseline_dmb']['hip_trabecular_dmb_baseline'], 3)}) |")
    lines.append(
        f"| 21 | {ROWS[21]} | denosumab minus placebo, hip cortical BMC: {_fmt(r21['m12']['hip_cortical_bmc_pct'])} "
        f"points at 12 months, {_fmt(r21['m36']['hip_cortical_bmc_pct'])} at 36 months (TH "
        f"{_fmt(r21['m36']['th_bmd_pct'])}; neck Ct.Th {_fmt(r21['m36']['neck_cortical_thickness_pct'])}) |")
    lines.append("")
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    from femur.core.version import __version__

    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--fe", action="store_true", help="also run the FE-coupled default bones (12 months x 5 drugs)")
    ap.add_argument("--markdown", default=None, help="write the tables to this markdown file")
    ap.add_argument("--json", default=None, help="write the numbers to this JSON file")
    args = ap.parse_args(argv)
    from femur.core.datafiles import read_fitted
    from femur.remodeling.parameters import CELL_FIT_FILE

    res = systemic_results()
    res["version"] = __version__
    res["calibration_targets"] = read_fitted(CELL_FIT_FILE).provenance["targets"]["source"]
    if args.fe:
        res["fe_12m"] = fe_results()
    text = markdown(res)
    print(text)
    if args.markdown:
        Path(args.markdown).write_text(text)
    if args.json:
        Path(args.json).write_text(json.dumps(res, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
