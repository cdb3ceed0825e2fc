"""Regenerate the stored habitual-loading density fields (reference data under femur/data/).

    python -m femur.calibration.habitual_density                       # parametric femur, 3 mm, print only
    python -m femur.calibration.habitual_density --write --bone anatomical --mesh-size 3
    python -m femur.calibration.habitual_density --write --bone anatomical --mesh-size 4
    python -m femur.calibration.habitual_density --write --bone parametric --figures docs/figures

Runs the Carter/Beaupre adaptation (``femur.workflows.habitual_adaptation``) to steady state
on a reference femur and stores the per-cell field with its mesh signature and provenance
(``femur.geometry.adapted_density``: ``adapted_density_<bone>_femur_<size>mm.npz``).
Nothing in it is fitted to a clinical target: the law's constants are published
(UNCONFIRMED, see the workflow module) and the reference stimulus is set to conserve the
young-adult bone mass (recorded as an output). Takes minutes to tens of minutes per mesh.
"""

from __future__ import annotations

import argparse
import datetime
import json
import subprocess
import sys
from pathlib import Path

import numpy as np

from femur.core.errors import InputError
from femur.core.log import configure, get_logger
from femur.core.mpi import MPI
from femur.core.version import __version__
from femur.exports.adaptation_figures import convergence_figure, coronal_slice_figure
from femur.geometry.adapted_density import reference_path, save_reference
from femur.geometry.anatomical import DEFAULT_MESH_SIZE_MM, AnatomicalFemur
from femur.geometry.femur_model import ProximalFemur
from femur.mechanics.muscle_loads import CARTER_SOURCE
from femur.outcomes.density_pattern import checkerboard_measures, pattern_report, roi_masks
from femur.workflows.habitual_adaptation import AdaptationLaw, AdaptationSettings, adapt_density

log = get_logger(__name__)

#: mesh of the stored parametric reference field: the default 3 mm mesh (a 2 mm run was
#: still at a 0.05 g/cm3 residual after 260 iterations); sampled onto other meshes
REFERENCE_MESH_MM = 3.0
BONES = ("parametric", "anatomical")


def build_reference_bone(kind: str, mesh_size_mm: float | None, comm=MPI.COMM_WORLD):
    """The femur a stored field belongs to: the parametric femur (default 3 mm) or a shipped
    anatomical femur mesh (default 3 mm)."""
    if kind == "parametric":
        return ProximalFemur(mesh_size_mm=mesh_size_mm or REFERENCE_MESH_MM).build(comm)
    if kind == "anatomical":
        return AnatomicalFemur(mesh_size_mm=mesh_size_mm or DEFAULT_MESH_SIZE_MM).build(comm)
    raise InputError(f"--bone must be one of {BONES}, got {kind!r}")


def _provenance(bone, result, report, extra, argv) -> dict:
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True,
                                cwd=str(Path(__file__).resolve().parents[2]), timeout=10).stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        commit = None
    prov = result.provenance()
    prov.update({
        "command": "python -m femur.calibration.habitual_density " + " ".join(argv),
        "femur_version": __version__, "git_commit": commit, "mpi_ranks": bone.comm.size,
        "created_utc": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "loads_source": CARTER_SOURCE,
        "history": {k: [float(v) for v in vals] for k, vals in result.history.items()},
        "psi_ref_final_mpa_day": float(result.history["psi_ref_mpa_day"][-1]),
        "pattern": report, **extra})
    return prov


def _share_at(bone, rho, value, tol=1e-3) -> float:
    """Volume share of the bone within ``tol`` g/cm3 of ``value`` (collective)."""
    n = bone.num_owned_cells
    vol = bone.cell_volumes()[:n]
    s = bone.comm.allreduce(np.array([np.sum(vol * (np.abs(rho[:n] - value) <= tol)), np.sum(vol)]), op=MPI.SUM)
    return float(s[0] / s[1])


def _figures(bone, res, el, folder, tol, stem):
    masks = roi_masks(bone)
    labels = np.zeros(bone.num_local_cells)
    for i, k in enumerate(("compressive", "tensile", "wards"), start=1):
        labels[masks[k]] = i
    panels = {"adapted": res.density_g_cm3}
    titles = {"adapted": "adapted apparent density (node based)"}
    hists = {"node-based": res.history}
    if el is not None:
        panels["element"] = el.density_g_cm3
        titles["element"] = "raw element update (checkerboard)"
        hists["raw element"] = el.history
    panels["rois"] = labels
    titles["rois"] = "ROIs: 1 compressive, 2 tensile, 3 Ward's"
    coronal_slice_figure(bone, panels, Path(folder) / f"{stem}_coronal.png", titles=titles,
                         cmaps={"rois": "viridis"}, units={"adapted": "g/cm3", "element": "g/cm3 ", "rois": "ROI"},
                         clims={"adapted": (0.0, 2.0), "element": (0.0, 2.0), "rois": (0.0, 3.0)})
    if bone.comm.rank == 0:
        convergence_figure(hists, Path(folder) / f"{stem}_convergence.png", tol)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m femur.calibration.habitual_density",
                                 description="Adapt a femur's density to habitual loading (stored as reference data)")
    ap.add_argument("--write", action="store_true", help="store the field in femur/data/ (reference data)")
    ap.add_argument("--out", default=None, help="write the .npz here instead")
    ap.add_argument("--bone", default="parametric", choices=BONES)
    ap.add_argument("--mesh-size", type=float, default=None,
                    help=f"mesh size (mm); parametric default {REFERENCE_MESH_MM}, anatomical: a shipped size (3, 4)")
    ap.add_argument("--max-iter", type=int, default=600)
    ap.add_argument("--tol", type=float, default=AdaptationSettings.tol_g_cm3, help="steady-state tolerance (g/cm3)")
    ap.add_argument("--element-iterations", type=int, default=60,
                    help="iterations of the raw element scheme for the checkerboard comparison (0: skip)")
    ap.add_argument("--figures", default=None, help="folder for the slice and convergence pictures")
    ap.add_argument("--law", default=AdaptationLaw.modulus_law, help="density-modulus law (femur.mechanics.materials)")
    ap.add_argument("--reference", default=AdaptationSettings.reference, choices=("mass", "fixed"),
                    help="psi*: conserve the young-adult mass (default) or the law's 50 MPa/day")
    args = ap.parse_args(argv)
    configure()

    comm = MPI.COMM_WORLD
    bone = build_reference_bone(args.bone, args.mesh_size, comm)
    mesh_mm = float(args.mesh_size or bone.parameters.get("mesh_size_mm"))
    law = AdaptationLaw(modulus_law=args.law)
    res = adapt_density(bone, law=law, settings=AdaptationSettings(max_iter=args.max_iter, tol_g_cm3=args.tol,
                                                                   reference=args.reference))
    report = pattern_report(bone, res.density_g_cm3)
    report["checkerboard"] = checkerboard_measures(bone, res.density_g_cm3)
    extra, el = {"mesh_size_mm": mesh_mm, "bone_kind": args.bone}, None
    if args.element_iterations > 0:
        el = adapt_density(bone, law=law, settings=AdaptationSettings(
            scheme="element", max_iter=args.element_iterations, tol_g_cm3=args.tol, reference=args.reference))
        extra["element_scheme"] = {"iterations": el.iterations, "converged": el.converged,
                                   "final_max_change_g_cm3": float(el.history["max_change_g_cm3"][-1]),
                                   "checkerboard": checkerboard_measures(bone, el.density_g_cm3),
                                   "pattern": pattern_report(bone, el.density_g_cm3)}
    report_json = json.dumps({"iterations": res.iterations, "converged": res.converged,
                            "seconds": round(res.seconds, 1), "law": str(args.law), "reference": args.reference,
                            "psi_ref_final_mpa_day": res.history["psi_ref_mpa_day"][-1],
                            "mean_density_g_cm3": res.history["mean_density_g_cm3"][-1],
                            "share_at_upper_bound": _share_at(bone, res.density_g_cm3, law.rho_max_g_cm3),
                            "pattern": report, **extra}, indent=1)
    if comm.rank == 0:
        print(report_json)
    if args.figures:
        _figures(bone, res, el, args.figures, args.tol, f"adapted_density_{args.bone}_{mesh_mm:g}mm")
    if args.write or args.out:
        family = f"{args.bone}-femur"
        path = Path(args.out) if args.out else reference_path(family, mesh_mm)
        save_reference(bone, res.density_g_cm3, path, _provenance(bone, res, report, extra,
                                                                        sys.argv[1:] if argv is None else argv))
        log.info("wrote %s", path)
    return 0 if res.converged else 1


__all__ = ["BONES", "REFERENCE_MESH_MM", "build_reference_bone", "main"]


if __name__ == "__main__":
    sys.exit(main())
