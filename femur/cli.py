"""The `femur` command line.

    femur strength [--bone femur|parametric-femur|vertebra|all] [--model linear|nonlinear]
                   [--mesh-size MM] [--order 1|2] [--solver NAME] [--law NAME] [--t-score T]
                   [--json] [--out DIR] [--export-inp DIR]
    femur strength --ct IMAGE [--labels LABELS] [--layers L1,L2] ...
    femur simulate [--treatment SPEC] [--months M] [--bone ...] [--json] [--out DIR] ...
    femur simulate --ct IMAGE --labels LABELS [--layers L1,L2] [--calibration FILE |
                   --calibrated-mg-cm3] [--sex S] [--age Y] --treatment SPEC --months M ...
    femur run STUDY [--patients N] [--months M] [--figures] [--out DIR] ...
    femur run --list

Every command takes ``--quiet`` (warnings only) and ``--verbose`` (debug detail); progress
goes to stderr through logging (rank 0 only under MPI), the tables and ``--json`` records
asked for go to stdout (rank 0). Errors from bad input are printed as one clear line (no
traceback) and exit with status 2.
"""

from __future__ import annotations

import argparse
import json
import sys

from femur.core.errors import FemurError
from femur.core.log import configure, get_logger, verbosity
from femur.core.mpi import MPI
from femur.core.version import __version__
from femur.mechanics.strength import DEFAULT_STRENGTH_MODEL, STRENGTH_MODEL_CHOICES, check_strength_model
from femur.study import list_builtin_studies, run_study_cli
from femur.remodeling.patient import Patient
from femur.workflows.scans import CTScan, scan_bone, scan_patient
from femur.workflows.simulation import DEFAULT_FE_INTERVAL_DAYS, DEFAULT_STRENGTH_MONTHS, Simulation
from femur.workflows.bones import KIND_OF
from femur.workflows.strength import builtin_strength, ct_strength, strength_bones

log = get_logger("femur.cli")


def _command(sub, name: str, help: str, description: str) -> argparse.ArgumentParser:
    """A subcommand with the options every command takes (``--quiet``, ``--verbose``)."""
    p = sub.add_parser(name, help=help, description=description)
    g = p.add_argument_group("output")
    g.add_argument("--quiet", "-q", action="store_true", help="print warnings and errors only")
    g.add_argument("--verbose", "-v", action="store_true", help="print debug detail too")
    return p


BONE_HELP = ("which built-in bone(s): femur (default femur: the anatomical femur, a Visible Human "
             "female femur with its habitual-loading density pattern), parametric-femur (the "
             "parametric sphere-and-cylinder femur, uniform compartments), vertebra, or all (default: "
             "femur and vertebra); a comma-separated list also works, e.g. parametric-femur,vertebra")


def _add_strength(sub):
    p = _command(sub, "strength", "stiffness and fracture load of the built-in femur/vertebra, or of a CT scan",
                 "Stiffness and fracture load of the built-in osteoporotic femur (stance, sideways "
                 "fall) and vertebra (axial compression), or of a calibrated CT scan.")
    p.add_argument("--bone", default="all", metavar="BONE", help=BONE_HELP)
    p.add_argument("--model", choices=["linear", "nonlinear"], default="nonlinear",
                   help="nonlinear (default): the linear solve plus the material-nonlinear pushover "
                   "(peak load, 0.2%% offset yield load, load-displacement curve; P2, mesh-converged; "
                   "the anatomical femur on its 4 mm trial mesh unless --mesh-size is given), minutes "
                   "per load case; linear: the first-element fracture load (Schileo strain limits) "
                   "alone, seconds")
    p.add_argument("--mesh-size", type=float, default=None, metavar="MM",
                   help="characteristic element size in mm (default: each bone's default; the anatomical "
                   "femur ships 3 mm (default) and 4 mm meshes: a size picks the nearest, coarser than 4 "
                   "takes 4)")
    p.add_argument("--order", type=int, choices=[1, 2], default=None,
                   help="Lagrange element order (default: 1 for the linear solve, 2 for the "
                   "pushover, which locks with 1)")
    p.add_argument("--solver", default="gamg", help="named solver configuration in solvers/ (gamg, mumps, hypre)")
    p.add_argument("--law", default=None, help="density-modulus law name (default: per bone, see docs)")
    p.add_argument("--t-score", type=float, default=-2.5,
                   help="DXA-equivalent T-score the built-in bones are given (femoral neck for the femur)")
    p.add_argument("--age", type=float, default=None, help="age in years (sets densities; overrides --t-score)")
    p.add_argument("--fall-directions", default="lateral,posterolateral",
                   help="comma-separated sideways-fall directions (lateral, posterolateral, "
                   "anterolateral, or degrees about the shaft axis)")
    p.add_argument("--layers", default=None, metavar="KIND|L1,L2",
                   help="built-in vertebra: loading layers none, compliant (8 MPa) or pmma (2500 MPa); "
                   "with --ct: the label values of the two loading layers, e.g. 5,6")
    p.add_argument("--criterion", choices=["principal_strain", "critical_volume"], default="principal_strain")
    p.add_argument("--critical-volume", type=float, default=None, metavar="MM3",
                   help="tissue volume (mm3) that must reach the strain limit with --criterion "
                   "critical_volume (default 1 mm3)")
    p.add_argument("--json", action="store_true", help="print machine-readable records")
    p.add_argument("--out", default=None, metavar="DIR",
                   help="write fields (VTX/XDMF) and PNG pictures here; with --model nonlinear also "
                   "each load-displacement curve (CSV, PNG) and the plastic strain field (XDMF)")
    p.add_argument("--export-inp", default=None, metavar="DIR", help="write <bone>_<load_case>.inp for CalculiX/Abaqus")
    ct = p.add_argument_group("CT scan input")
    ct.add_argument("--ct", default=None, metavar="IMAGE", help="CT image (NIfTI, NRRD, VTK image, DICOM folder)")
    ct.add_argument("--labels", default=None, metavar="LABELS", help="label image on the same grid")
    ct.add_argument("--calibration", default=None, metavar="FILE", help="phantom/phantomless calibration record")
    ct.add_argument("--calibrated-mg-cm3", action="store_true", help="the image is already in mg/cm3")
    ct.add_argument("--mesh", choices=["voxel", "tet"], default="voxel")
    ct.add_argument("--voxel-coarsen", type=int, default=1, metavar="K")
    p.set_defaults(func=_cmd_strength)


def _format_table(records: list[dict]) -> str:
    cols = [
        ("bone", "bone", "{}"),
        ("load case", "load_case", "{}"),
        ("DOFs", "dofs", "{:d}"),
        ("stiffness N/mm", "stiffness_n_per_mm", "{:.0f}"),
        ("fracture load N", "fracture_load_n", "{:.0f}"),
        ("0.2% surrogate N", "surrogate_0p2pct_load_n", "{:.0f}"),
        ("failure site", "failure_site", "{}"),
    ]
    if any("nonlinear_strength_n" in r for r in records):
        cols[3:] = [
            ("stiffness N/mm", "stiffness_n_per_mm", "{:.0f}"),
            ("linear fracture load N", "fracture_load_n", "{:.0f}"),
            ("nonlinear DOFs", "nonlinear_dofs", "{:d}"),
            ("nonlinear strength N", "nonlinear_strength_n", "{:.0f}"),
            ("at mm", "displacement_at_peak_mm", "{:.2f}"),
            ("0.2% offset yield N", "yield_load_n", "{:.0f}"),
            ("increments", "increments", "{:d}"),
            ("Newton", "newton_iterations", "{:d}"),
        ]
    rows = []
    for r in records:
        row = []
        for _, key, fmt in cols:
            v = r.get(key)
            row.append("-" if v is None else fmt.format(v))
        rows.append(row)
    widths = [max(len(h), *(len(row[i]) for row in rows)) if rows else len(h) for i, (h, _, _) in enumerate(cols)]
    lines = ["  ".join(h.ljust(w) for (h, _, _), w in zip(cols, widths))]
    lines.append("  ".join("-" * w for w in widths))
    lines += ["  ".join(c.ljust(w) for c, w in zip(row, widths)) for row in rows]
    lines += [f"geometry: {g}" for g in dict.fromkeys(r["geometry"] for r in records if r.get("geometry"))]
    return "\n".join(lines)


def _builtin_layers(text):
    if text is None:
        return "none"
    if text not in ("none", "compliant", "pmma"):
        raise FemurError(f"--layers: for the built-in vertebra give none, compliant or pmma, got '{text}' "
                         "(label values like 5,6 are for --ct models)")
    return text


def _fall_directions(text: str) -> list:
    out = []
    for item in (t.strip() for t in text.split(",") if t.strip()):
        try:
            out.append(float(item))
        except ValueError:
            out.append(item)
    if not out:
        raise FemurError("--fall-directions: give at least one direction, e.g. lateral,posterolateral")
    return out


def _label_list(text, option: str):
    """'5,6' -> (5, 6); None -> None."""
    if text is None:
        return None
    try:
        return tuple(int(v) for v in text.split(",") if v.strip())
    except ValueError:
        raise FemurError(f"{option}: expected label integers like 5,6, got '{text}'") from None


def _cmd_strength(args) -> int:
    if args.ct:
        layers = _label_list(args.layers, "--layers")
        records = ct_strength(
            image=args.ct, labels=args.labels, layers=layers, calibration=args.calibration,
            calibrated_mg_cm3=args.calibrated_mg_cm3, law=args.law or "kopperdahl2002",
            mesh=args.mesh, voxel_coarsen=args.voxel_coarsen, order=args.order,
            solver=args.solver, criterion=args.criterion, out=args.out, export_inp=args.export_inp,
            model=args.model,
        )
    else:
        records = builtin_strength(
            bone=args.bone, mesh_size_mm=args.mesh_size, order=args.order, solver=args.solver,
            law=args.law, t_score=args.t_score, age=args.age, criterion=args.criterion,
            out=args.out, export_inp=args.export_inp, layers=_builtin_layers(args.layers),
            critical_volume_mm3=args.critical_volume, fall_directions=_fall_directions(args.fall_directions),
            model=args.model,
        )
    _report(args, lambda: json.dumps(records, indent=2), lambda: _format_table(records),
            "fields and pictures")
    return 0


def _report(args, as_json, as_table, written: str) -> None:
    """Rank 0 prints the JSON (``--json``) or the table, and where ``--out`` files went."""
    if MPI.COMM_WORLD.rank != 0:
        return
    if args.json:
        print(as_json())
        return
    print(as_table())
    if args.out:
        print(f"{written} written to {args.out}")


def _add_simulate(sub):
    p = _command(sub, "simulate", "one patient under a treatment: FE-coupled remodeling of the femur and vertebra",
                 "Treatment-driven remodeling of one virtual patient's femur and vertebra, with BMD, "
                 "markers and FE strength over time.")
    p.add_argument("--treatment", default="romosozumab", metavar="SPEC",
                   help="a drug (romosozumab, placebo, denosumab, alendronate, teriparatide) or a "
                   "sequence drug:months,drug:months, e.g. romosozumab:12,denosumab:12. A drug "
                   "without :months runs for the whole simulation, unless its label fixes the "
                   "course: romosozumab is 12 monthly doses, then no drug. The table and the "
                   "JSON echo the regimen simulated")
    p.add_argument("--months", type=float, default=12.0)
    p.add_argument("--sex", choices=["female", "male"], default=None,
                   help="the patient's sex (default female)")
    p.add_argument("--age", type=float, default=None, help="age in years (default 71)")
    p.add_argument("--t-score", type=float, default=None,
                   help="femoral-neck T-score (default -2.5 women, -1.5 men; with --ct: the "
                   "spine T-score measured on the scan)")
    p.add_argument("--body-mass", type=float, default=None, metavar="KG",
                   help="body mass in kg (default 65 women, 80 men)")
    p.add_argument("--height", type=float, default=None, metavar="M",
                   help="height in m (default 1.60 women, 1.75 men)")
    p.add_argument("--fe-interval-days", type=float, default=DEFAULT_FE_INTERVAL_DAYS,
                   help="simulated days between FE re-solves (mechanostat stimulus)")
    p.add_argument("--strength-months", default=None,
                   help="comma-separated months at which FE strength is computed (default: "
                   f"{', '.join(f'{m:g}' for m in DEFAULT_STRENGTH_MONTHS)} within the run, and "
                   "always the last month)")
    p.add_argument("--mesh-size", type=float, default=None, metavar="MM")
    p.add_argument("--strength-model", choices=STRENGTH_MODEL_CHOICES, default=DEFAULT_STRENGTH_MODEL,
                   help="what gives the strength at the strength months: linear (first-element "
                   "fracture load), nonlinear (pushover peak, P2; 15-40x the linear solve per load "
                   "case), surrogate (fitted predictor of the pushover peak; needs `python -m "
                   "femur.calibration.strength_surrogate --write`), hybrid (the surrogate for the "
                   "load cases whose fit meets its accuracy target, the pushover for the others) or "
                   "auto (default: the surrogate where its fit meets its accuracy target for every "
                   "load case of the bones, hybrid where some fits miss it, linear while a case has "
                   "no validated fit; the run prints and records which ran)")
    p.add_argument("--bone", default="all", metavar="BONE", help=BONE_HELP)
    p.add_argument("--json", action="store_true")
    p.add_argument("--out", default=None, metavar="DIR",
                   help="write simulation.json, timecourse.png, density VTX time series (ParaView) and change maps")
    ct = p.add_argument_group(
        "CT scan of a vertebra instead of the built-in bones",
        "The scan gives the bone (its densities are the cell model's baseline, its spine "
        "T-score is measured on it); --sex, --age, --body-mass and --height give the patient.")
    ct.add_argument("--ct", default=None, metavar="IMAGE", help="CT image (NIfTI, NRRD, VTK image, DICOM folder)")
    ct.add_argument("--labels", default=None, metavar="LABELS", help="label image on the same grid")
    ct.add_argument("--layers", default=None, metavar="L1,L2",
                    help="label values of the two loading layers (e.g. 5,6); without, the bone's own "
                    "end faces are loaded")
    ct.add_argument("--bone-labels", default=None, metavar="L1,L2,...",
                    help="label values that are bone (default: every label that is not a layer); "
                    "other labels are non-bone and do not remodel")
    ct.add_argument("--calibration", default=None, metavar="FILE", help="phantom/phantomless calibration record")
    ct.add_argument("--calibrated-mg-cm3", action="store_true", help="the image is already in mg/cm3")
    ct.add_argument("--mesh", choices=["voxel", "tet"], default="voxel")
    ct.add_argument("--voxel-coarsen", type=int, default=1, metavar="K",
                    help="one element per KxKxK voxels (default 1)")
    p.set_defaults(func=_cmd_simulate)


def _cmd_simulate(args) -> int:
    strength_months = None
    if args.strength_months is not None:
        try:
            strength_months = [float(x) for x in args.strength_months.split(",") if x.strip()]
        except ValueError:
            raise FemurError(f"--strength-months: expected numbers like 0,6,12, got '{args.strength_months}'")
    check_strength_model(args.strength_model, "--strength-model")
    sex = args.sex or "female"
    age = 71.0 if args.age is None else args.age
    if args.ct:
        sim = _ct_simulation(args, sex, age, strength_months)
    else:
        for option in ("labels", "layers", "bone_labels", "calibration", "calibrated_mg_cm3"):
            if getattr(args, option) not in (None, False):
                raise FemurError(f"--{option.replace('_', '-')} is for a CT scan: give --ct IMAGE too")
        patient = Patient(sex=sex, age_years=age, fn_t_score=args.t_score,
                          body_mass_kg=args.body_mass, height_m=args.height)
        names = strength_bones(args.bone)
        femurs = [n for n in names if KIND_OF[n] == "femur"]
        if len(femurs) > 1:
            raise FemurError("--bone: simulate one femur at a time (femur or parametric-femur)")
        bones = tuple(KIND_OF[n] for n in names)
        sim = Simulation(args.treatment, args.months, patient, fe_interval_days=args.fe_interval_days,
                         strength_months=strength_months, mesh_size_mm=args.mesh_size, bones=bones,
                         femur_model=femurs[0] if femurs else "femur",
                         strength_model=args.strength_model, progress=not args.json)
    res = sim.run(out=args.out)
    _report(args, lambda: json.dumps(res.to_dict()), res.table,
            "results (simulation.json, timecourse.png, <bone>_density.bp VTX for ParaView, change maps)")
    return 0


def _ct_simulation(args, sex: str, age: float, strength_months) -> Simulation:
    """`femur simulate --ct`: the scan's vertebra and its patient (defaults stated)."""
    if str(args.bone).strip().lower() not in ("all", "vertebra"):
        raise FemurError(f"--ct: a scan is a vertebra; --bone {args.bone} does not apply")
    if args.labels is None:
        raise FemurError("--ct: give the label image with --labels LABELS")
    if args.mesh_size is not None:
        raise FemurError("--mesh-size is for the built-in bones; a scan's mesh is set by --voxel-coarsen")
    scan = CTScan(args.ct, args.labels, calibration=args.calibration,
                  calibrated_mg_cm3=args.calibrated_mg_cm3, layers=_label_list(args.layers, "--layers"),
                  bone_labels=_label_list(args.bone_labels, "--bone-labels"),
                  voxel_coarsen=args.voxel_coarsen, mesh=args.mesh, where="--ct")
    defaults = [f"{name} {value} (default; {option})" for name, value, option, given in (
        ("sex", sex, "--sex", args.sex), ("age", f"{age:g} years", "--age", args.age),
        ("body mass", "65 kg" if sex == "female" else "80 kg", "--body-mass", args.body_mass),
        ("height", "1.60 m" if sex == "female" else "1.75 m", "--height", args.height)) if given is None]
    if defaults:
        log.info("patient of the scan: %s", "; ".join(defaults))
    bone = scan_bone(scan)
    patient = scan_patient(bone, sex=sex, age_years=age, body_mass_kg=args.body_mass,
                           height_m=args.height, fn_t_score=args.t_score)
    return Simulation(args.treatment, args.months, patient, vertebra_bone=bone, bones=("vertebra",),
                      fe_interval_days=args.fe_interval_days, strength_months=strength_months,
                      strength_model=args.strength_model, progress=not args.json)


def _add_run(sub):
    p = _command(sub, "run", "a virtual trial from a TOML study file or a built-in study (femur run --list)",
                 "Run a virtual trial: a cohort, several arms, FE-coupled remodeling per patient and "
                 "arm, fracture risk, and a summary like a trial paper. Under `mpiexec -n N` the "
                 "cases are spread over rank groups.")
    p.add_argument("study", nargs="?", default=None,
                   help="a TOML study file or a built-in study name (see --list)")
    p.add_argument("--list", action="store_true", help="list the built-in studies, one line each, and exit")
    p.add_argument("--patients", type=int, default=None)
    p.add_argument("--months", type=float, default=None)
    p.add_argument("--seed", type=int, default=None)
    p.add_argument("--strength-model", choices=STRENGTH_MODEL_CHOICES, default=None,
                   help="override the study file's [model] strength_model (linear, nonlinear, "
                   "surrogate, hybrid or auto: as `femur simulate`'s, but the surrogate where hybrid "
                   "would only anchor load cases that the risk parameters were fitted on at the "
                   "surrogate's level; the summary prints which ran and why)")
    p.add_argument("--group-size", type=int, default=1, help="MPI ranks per case")
    p.add_argument("--resume", action="store_true", help="skip cases already finished in --out")
    p.add_argument("--json", action="store_true")
    p.add_argument("--out", default=None, metavar="DIR")
    p.add_argument("--figures", action="store_true",
                   help="also write every case's density fields (OUT/fields/) and draw the density "
                   "change of a representative patient, each arm side by side")
    p.set_defaults(func=_cmd_run)


def _cmd_run(args) -> int:
    if args.list:
        if MPI.COMM_WORLD.rank == 0:
            print(list_builtin_studies())
        return 0
    if args.study is None:
        raise FemurError("femur run: give a study (a TOML file or a built-in name); "
                         "`femur run --list` lists the built-in ones")
    run_study_cli(args.study, patients=args.patients, months=args.months, seed=args.seed,
                  group_size=args.group_size, resume=args.resume, out=args.out,
                  json_output=args.json, figures=args.figures, strength_model=args.strength_model)
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="femur", description=__doc__.split("\n")[0])
    parser.add_argument("--version", action="version", version=f"femur {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    _add_strength(sub)
    _add_simulate(sub)
    _add_run(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    configure(verbosity(args.quiet, args.verbose))
    try:
        return int(args.func(args) or 0)
    except FemurError as exc:
        if MPI.COMM_WORLD.rank == 0:
            print(f"femur: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
