"""The `femur strength` command: JSON contract, table, outputs, clear errors."""

import json
from pathlib import Path

import numpy as np
import pytest

from femur.cli import main

REQUIRED = {"bone", "load_case", "dofs", "stiffness_n_per_mm", "fracture_load_n", "failure_site",
            "max_displacement_mm", "applied_load_n"}


def test_strength_vertebra_json(capsys, check):
    rc = main(["strength", "--model", "linear", "--bone", "vertebra", "--mesh-size", "3", "--json"])
    out = capsys.readouterr().out
    from mpi4py import MPI

    if MPI.COMM_WORLD.rank == 0:
        records = json.loads(out)
        assert rc == 0 and len(records) == 1
        r = records[0]
        assert REQUIRED <= set(r)
        assert r["bone"] == "vertebra" and r["load_case"] == "compression"
        # linear: the criterion load and the 0.2 % surrogate are positive and finite
        assert 0 < r["fracture_load_n"] < 1e6
        assert 0 < r["surrogate_0p2pct_load_n"] < 1e6
        # displacement control: stiffness = reaction / displacement
        assert r["stiffness_n_per_mm"] == pytest.approx(
            r["applied_load_n"] / r["max_displacement_mm"], rel=0.5)
        # the bone was given the requested DXA-equivalent T-score
        assert r["t_score"] == pytest.approx(-2.5, abs=0.01)


@pytest.mark.serial
def test_strength_femur_table_and_outputs(capsys, tmp_path):
    rc = main(["strength", "--model", "linear", "--bone", "femur", "--mesh-size", "4", "--out", str(tmp_path)])
    out = capsys.readouterr().out
    assert rc == 0
    assert "stance" in out and "fall_lateral" in out and "fracture load N" in out
    for case in ("stance", "fall_lateral"):
        assert (tmp_path / f"femur_{case}.xdmf").exists()
        png = tmp_path / f"femur_{case}.png"
        assert png.exists() and png.stat().st_size > 10_000


@pytest.mark.serial  # nothing rank-specific; rank invariance has its own tests (CI time)
def test_strength_records_the_femur_geometry(capsys, check):
    """`--bone femur` is the anatomical femur, `--bone parametric-femur` the parametric one;
    each record names its geometry; `--help` says which femur is the default."""
    from mpi4py import MPI

    rc = main(["strength", "--model", "linear", "--bone", "femur,parametric-femur", "--mesh-size", "4", "--json",
               "--fall-directions", "lateral"])
    out = capsys.readouterr().out
    # the JSON is printed on rank 0; every rank checks it (check is collective)
    records = MPI.COMM_WORLD.bcast(json.loads(out) if MPI.COMM_WORLD.rank == 0 else None, root=0)
    check(rc == 0 and len(records) == 4, f"rc {rc}, {len(records)} records")
    geometry = [r["geometry"] for r in records]
    check(geometry[0] == "anatomical femur (Visible Human female, altered), 4.0 mm mesh", geometry[0])
    check(geometry[2].startswith("parametric femur"), geometry[2])
    check(all(abs(r["t_score"] + 2.5) < 0.01 for r in records), "T-score")
    with pytest.raises(SystemExit):
        main(["strength", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    check("default femur: the anatomical femur" in text and "parametric-femur" in text, "help text")


def test_strength_unknown_bone_or_mesh_size_is_one_clear_line(capsys):
    from mpi4py import MPI

    for args, words in ((["--bone", "tibia"], ("tibia", "parametric-femur")),
                        (["--bone", "femur", "--mesh-size", "2"], ("3, 4 mm", "make_anatomical_femur"))):
        rc = main(["strength", *args])
        err = capsys.readouterr().err
        assert rc == 2
        if MPI.COMM_WORLD.rank == 0:
            assert all(w in err for w in words) and "Traceback" not in err, err


def test_strength_bad_input_is_one_clear_line(capsys):
    rc = main(["strength", "--ct", "/nonexistent/scan.nii.gz", "--calibrated-mg-cm3"])
    err = capsys.readouterr().err
    from mpi4py import MPI

    assert rc == 2
    if MPI.COMM_WORLD.rank == 0:
        assert "/nonexistent/scan.nii.gz" in err and "Traceback" not in err


@pytest.mark.parametrize("layers", ["none", "pmma"])
@pytest.mark.partition
def test_strength_records_rank_invariant(layers):
    """Stiffness and fracture load of the built-in vertebra: the same on any rank count.

    Each rank also solves the same model alone on COMM_SELF; the distributed solve
    (1 or 2 ranks) must agree to 1e-8 relative (the CG tolerance is tightened to 1e-12
    here so the comparison tests partitioning, not the solver tolerance)."""
    from mpi4py import MPI

    from femur.mechanics import AxialCompression, fracture_load
    from femur.mechanics.strength import material_for
    from femur.workflows.bones import build_bone

    opts = {"ksp_rtol": 1e-12}
    vals = []
    for comm in (MPI.COMM_WORLD, MPI.COMM_SELF):
        bone = build_bone("vertebra", mesh_size_mm=4.0, t_score=-2.5, layers=layers, comm=comm)
        fr = fracture_load(bone, AxialCompression(), material=material_for(bone), options=opts)
        vals.append((fr.stiffness_n_per_mm, fr.fracture_load_n, fr.strain_surrogate_load_n))
    (k_w, f_w, s_w), (k_s, f_s, s_s) = vals
    assert np.isclose(s_w, s_s, rtol=1e-8, atol=0)
    assert np.isclose(k_w, k_s, rtol=1e-8, atol=0)
    assert np.isclose(f_w, f_s, rtol=1e-8, atol=0)


def test_critical_volume_load_is_not_below_first_failure(capsys):
    """Requiring 50 mm3 of tissue at the strain limit can only raise the linear fracture load."""
    from mpi4py import MPI

    loads = []
    for extra in ([], ["--criterion", "critical_volume", "--critical-volume", "50"]):
        assert main(["strength", "--model", "linear", "--bone", "vertebra", "--mesh-size", "3", "--json", *extra]) == 0
        out = capsys.readouterr().out
        if MPI.COMM_WORLD.rank == 0:
            loads.append(json.loads(out)[0]["fracture_load_n"])
    if MPI.COMM_WORLD.rank == 0:
        assert loads[1] > loads[0] * 1.001


@pytest.mark.serial
def test_quiet_and_verbose(capsys):
    """Progress goes to stderr through logging; --quiet silences it; stdout keeps the table."""
    assert main(["strength", "--model", "linear", "--bone", "vertebra", "--mesh-size", "5"]) == 0
    cap = capsys.readouterr()
    assert "[femur] building the vertebra model" in cap.err and "fracture load N" in cap.out
    assert main(["strength", "--model", "linear", "--bone", "vertebra", "--mesh-size", "5", "--quiet", "--json"]) == 0
    cap = capsys.readouterr()
    assert cap.err == "" and json.loads(cap.out)[0]["bone"] == "vertebra"


@pytest.mark.serial
def test_pictures_on_a_headless_machine_print_no_x_warning(tmp_path, capfd):
    import os

    import dolfinx
    from mpi4py import MPI

    from femur.exports.pictures import offscreen_window, render_cell_fields

    if os.environ.get("DISPLAY") or offscreen_window() is None:
        pytest.skip("not a headless machine with EGL or OSMesa")
    mesh = dolfinx.mesh.create_box(MPI.COMM_SELF, [[0, 0, 0], [10, 10, 20]], [2, 2, 4])
    n = mesh.topology.index_map(3).size_local
    path = render_cell_fields(mesh, {"a": np.arange(n, dtype=float)}, tmp_path / "p.png",
                              titles={"a": "density (g/cm3)"})
    assert path.stat().st_size > 1000
    assert "bad X server" not in capfd.readouterr().err


NONLINEAR = {"nonlinear_strength_n", "yield_load_n", "displacement_at_peak_mm", "increments",
             "newton_iterations", "load_displacement"}


def test_strength_nonlinear_json_and_files(capsys, mpi_tmp_path):
    """`--model nonlinear`: the records add the pushover's fields (issue 10 contract) and
    --out gets each curve (CSV, PNG) and the plastic strain field (XDMF)."""
    from mpi4py import MPI

    rc = main(["strength", "--bone", "vertebra", "--mesh-size", "6", "--model", "nonlinear",
               "--order", "1", "--json", "--out", str(mpi_tmp_path)])
    out = capsys.readouterr().out
    assert rc == 0
    if MPI.COMM_WORLD.rank == 0:
        r = json.loads(out)[0]
        assert REQUIRED | NONLINEAR <= set(r)
        curve = np.asarray(r["load_displacement"])
        assert curve.shape[1] == 2 and curve[0].tolist() == [0.0, 0.0]
        assert r["nonlinear_strength_n"] == pytest.approx(curve[:, 1].max())
        assert 0 < r["yield_load_n"] <= r["nonlinear_strength_n"]
        assert r["newton_iterations"] >= r["increments"] > 0 and r["converged"]
        stem = mpi_tmp_path / "vertebra_compression"
        for suffix in ("_load_displacement.csv", "_load_displacement.png", "_plastic_strain.xdmf",
                       "_pushover.json"):
            assert Path(f"{stem}{suffix}").exists(), suffix
        csv = np.loadtxt(f"{stem}_load_displacement.csv", delimiter=",", skiprows=1)
        assert np.allclose(csv, curve)


def test_strength_model_surrogate_is_refused_clearly(capsys, without_surrogate_fit):
    from mpi4py import MPI

    rc = main(["simulate", "--bone", "vertebra", "--strength-model", "surrogate", "--months", "1"])
    err = capsys.readouterr().err
    assert rc == 2
    if MPI.COMM_WORLD.rank == 0:
        assert "not fitted" in err and "strength_surrogate" in err and "Traceback" not in err


def test_run_list_and_missing_study(capsys):
    """`femur run --list`: one line per built-in trial; `femur run` without a study: one
    clear error line."""
    from mpi4py import MPI

    assert main(["run", "--list"]) == 0
    out = capsys.readouterr().out
    if MPI.COMM_WORLD.rank == 0:
        lines = out.strip().splitlines()
        names = [ln.split()[0] for ln in lines]
        assert names == sorted(["arch", "bridge", "fit1", "fit2", "fpt", "frame", "freedom"])
        assert all(len(ln.split(None, 1)) == 2 for ln in lines)  # name + description
    assert main(["run"]) == 2
    err = capsys.readouterr().err
    if MPI.COMM_WORLD.rank == 0:
        assert "femur run --list" in err and "Traceback" not in err


def test_strength_defaults_to_the_nonlinear_model_on_the_trial_mesh_femur(monkeypatch, check):
    """`femur strength` without --model runs the pushover (issue 10: the default once it met
    the cost target); the anatomical femur's pushover then takes the 4 mm trial mesh (the
    convergence study), an explicit --mesh-size and the linear model keep their mesh."""
    import femur.workflows.strength as ws

    seen = []

    class Stop(Exception):
        pass

    def fake_build_bone(name, mesh_size_mm=None, **kw):
        seen.append((name, mesh_size_mm))
        raise Stop

    monkeypatch.setattr(ws, "build_bone", fake_build_bone)
    cases = ((["--bone", "femur"], ("femur", ws.NONLINEAR_FEMUR_MESH_MM)),
             (["--bone", "femur", "--model", "linear"], ("femur", None)),
             (["--bone", "femur", "--mesh-size", "3"], ("femur", 3.0)),
             (["--bone", "vertebra"], ("vertebra", None)))
    for args, want in cases:
        seen.clear()
        with pytest.raises(Stop):
            main(["strength", *args])
        check(seen == [want], f"femur strength {' '.join(args)}: built {seen}, expected {want}")
