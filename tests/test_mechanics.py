"""Mechanics: solver configurations, options hygiene, errors, load cases, fracture load."""

from __future__ import annotations

import numpy as np
import pytest

import femur  # noqa: F401
from femur.core.mpi import MPI
import dolfinx  # noqa: E402
from petsc4py import PETSc  # noqa: E402

from femur.core.errors import InputError, SolverError  # noqa: E402
from femur.mechanics import (  # noqa: E402
    AxialCompression,
    ElasticitySolver,
    SidewaysFall,
    SingleLegStance,
    fracture_load,
    load_solver_config,
    solve,
)
from femur.mechanics.loadcases import facet_mean  # noqa: E402
from femur.mechanics.verification import prism_bone, rod_femur_bone  # noqa: E402

COMM = MPI.COMM_WORLD


# --------------------------------------------------------------------------- configs
def test_solver_configs():
    g = load_solver_config("gamg")
    assert g.options["pc_type"] == "gamg" and g.options["ksp_type"] == "cg"
    assert g.options["ksp_rtol"] == 1e-10 and g.near_nullspace
    m = load_solver_config("mumps")
    assert m.is_direct and m.options["pc_factor_mat_solver_type"] == "mumps"
    with pytest.raises(InputError, match="unknown solver configuration 'nosuch'"):
        load_solver_config("nosuch")


def test_hypre_config_exists_and_is_checked():
    if PETSc.Sys.hasExternalPackage("hypre"):
        assert load_solver_config("hypre").options["pc_type"] == "hypre"
    else:
        with pytest.raises(InputError, match="this PETSc build has no hypre"):
            load_solver_config("hypre")
    # the file itself is there and parses
    cfg = load_solver_config("hypre", check_available=False)
    assert cfg.requires == ("hypre",)


def test_options_do_not_leak_and_prefixes_unique():
    bone = prism_bone(COMM, n=(2, 2, 3))
    before = set(PETSc.Options().getAll())
    prefixes = set()
    for k in range(12):
        with ElasticitySolver(bone, 1000.0 + k, 0.3, solver="gamg" if k % 2 else "mumps") as s:
            s.add_dirichlet(facets=bone.facet_tags.find(22), value=0.0)
            s.add_traction(bone.facet_tags.find(21), [0, 0, -1.0])
            s.solve()
            prefixes.add(s.prefix)
    after = set(PETSc.Options().getAll())
    assert len(prefixes) == 12
    assert after == before, f"leaked PETSc options: {sorted(after - before)}"


def test_serial_setup_options_restore_a_global_value():
    """gamg's unprefixed set-up option (-matptap_via, one rank only) is removed again after
    the set-up, and a value the user had set globally is restored, on any rank count."""
    from femur.mechanics.solvers import load_solver_config

    assert load_solver_config("gamg").serial_setup_options == {"matptap_via": "rap"}
    db = PETSc.Options()
    db.setValue("matptap_via", "scalable")
    try:
        bone = prism_bone(COMM, n=(2, 2, 3))
        with ElasticitySolver(bone, 1000.0, 0.3, solver="gamg") as s:
            s.add_dirichlet(facets=bone.facet_tags.find(22), value=0.0)
            s.add_traction(bone.facet_tags.find(21), [0, 0, -1.0])
            assert s.solve().reason.startswith("CONVERGED")
        assert db.getString("matptap_via") == "scalable"
    finally:
        db.delValue("matptap_via")


def test_non_convergence_raises_with_reason(check):
    bone = prism_bone(COMM, n=(3, 3, 6))
    with pytest.raises(SolverError, match=r"DIVERGED_MAX_IT after 2 iterations"):
        solve(bone, AxialCompression(displacement_mm=0.1), material=1000.0,
              options={"ksp_max_it": 2})


def test_singular_problem_raises():
    """No boundary conditions: a direct solve of the singular matrix must not return garbage."""
    bone = prism_bone(COMM, n=(2, 2, 2))
    s = ElasticitySolver(bone, 1000.0, 0.3, solver="mumps")
    s.add_traction(bone.facet_tags.find(21), [0, 0, -1.0])
    with pytest.raises(SolverError):
        s.solve()
    s.close()


def test_bad_inputs():
    bone = prism_bone(COMM, n=(2, 2, 2))
    with pytest.raises(InputError, match="order"):
        ElasticitySolver(bone, 1000.0, 0.3, order=3)
    with pytest.raises(InputError, match="modulus_mpa must be finite and > 0"):
        ElasticitySolver(bone, -5.0, 0.3)
    with pytest.raises(InputError, match="poisson_ratio"):
        ElasticitySolver(bone, 100.0, 0.5)
    with pytest.raises(InputError, match="no facet tag 'head_load'"):
        solve(bone, SingleLegStance(), material=1000.0)
    with pytest.raises(InputError, match="criterion"):
        fracture_load(bone, AxialCompression(), material=1000.0, criterion="vonmises")
    with pytest.raises(InputError, match="direction"):
        SidewaysFall(direction="upward").fall_direction(bone)


# --------------------------------------------------------------------------- reuse
@pytest.mark.parametrize("scaled", [False, True])
def test_update_modulus_reuses_and_scales(scaled, check):
    """Force control, homogeneous E: doubling E halves the displacement exactly; the matrix
    is reassembled in place (same Mat object), warm start and preconditioner reuse work.
    The scaled warm start (alpha = b.x / x.Ax = 1/2 here) is then the exact solution: CG
    has nothing left to do; the plain warm start needs iterations."""
    bone = rod_femur_bone(COMM)
    lc = SingleLegStance(load_n=1000.0)
    from femur.mechanics.problem import make_solver

    for reuse in (False, True):
        s, load, _, _ = make_solver(bone, lc, material=2000.0)
        s.reuse_preconditioner = reuse
        s.scaled_warm_start = scaled
        s.config = s.config.with_options({"ksp_rtol": 1e-10})
        s.solve()
        u1 = s.u.x.array.copy()
        A = s.A
        s.update_modulus(4000.0)
        info = s.solve()
        check(s.A is A, "matrix object kept")
        check(np.allclose(s.u.x.array, u1 / 2, rtol=0, atol=1e-8 * np.abs(u1).max()), "u halves")
        check(info.reason.startswith("CONVERGED") and (info.iterations <= 1 if scaled else info.iterations > 0),
              f"{info.reason} after {info.iterations} iterations")
        s.close()


def test_per_solve_rtol_is_used_once_and_restored(check):
    """solve(rtol=...) (the remodeling's habitual stimulus solves) loosens one solve only."""
    from femur.mechanics.problem import make_solver

    bone = rod_femur_bone(COMM)
    lc = SingleLegStance(load_n=1000.0)
    tight, _, _, _ = make_solver(bone, lc, material=2000.0)
    n_tight = tight.solve().iterations
    loose, _, _, _ = make_solver(bone, lc, material=2000.0)
    info = loose.solve(rtol=1e-4)
    check(info.iterations < n_tight, f"rtol 1e-4: {info.iterations} vs {n_tight} iterations")
    check(loose.ksp.getTolerances()[0] == tight.ksp.getTolerances()[0], "rtol not restored")
    err = np.abs(loose.u.x.array - tight.u.x.array).max() / np.abs(tight.u.x.array).max()
    check(err < 1e-2, f"loose solution off by {err:.2e}")
    with pytest.raises(InputError, match="rtol"):
        loose.solve(rtol=0.0)
    tight.close()
    loose.close()


# --------------------------------------------------------------------------- load cases
def test_stance_equilibrium_and_direction(check):
    bone = rod_femur_bone(COMM)
    lc = SingleLegStance(angle_deg=8.0, load_n=1000.0)
    d = lc.direction(bone)
    # 8 deg to the shaft axis, distal and lateral (-x), in the frontal (x-z) plane
    check(np.isclose(np.degrees(np.arccos(-d[2])), 8.0) and d[0] < 0 and d[1] == 0, str(d))
    m = solve(bone, lc, material=5000.0, options={"ksp_rtol": 1e-10})
    R = m.reactions_n["distal"]
    check(np.allclose(R, -1000.0 * d, rtol=0, atol=1e-5), f"distal reaction {R}")
    check(m.stiffness_n_per_mm > 0 and m.max_displacement_mm > m.load_displacement_mm * 0.99, "K")


@pytest.mark.parametrize("direction", ["lateral", "posterolateral", 20.0])
def test_fall_equilibrium_and_supports(direction, check):
    bone = rod_femur_bone(COMM)
    lc = SidewaysFall(direction=direction, load_n=1000.0)
    d = lc.fall_direction(bone)
    m = solve(bone, lc, material=5000.0, options={"ksp_rtol": 1e-10})
    Rs = m.reactions_n["trochanter_support"]
    Rd = m.reactions_n["distal"]
    check(np.allclose(Rs, -1000.0 * d, atol=1e-5), f"support reaction {Rs} vs {-1000 * d}")
    check(np.allclose(Rd, 0.0, atol=1e-5), f"distal reaction {Rd} (free along d, no net force)")
    # constraints hold in the bone frame: u.d = 0 on the support, u perp d = 0 distally
    import ufl

    dv = dolfinx.fem.Constant(bone.mesh, d)
    sup = m.load.support_facets["trochanter_support"]
    check(abs(facet_mean(bone.mesh, sup, ufl.dot(m.u, dv))) < 1e-12, "u.d on support")
    dist = m.load.support_facets["distal"]
    uperp = m.u - ufl.dot(m.u, dv) * dv
    check(facet_mean(bone.mesh, dist, ufl.dot(uperp, uperp)) < 1e-24, "u perp d at distal")
    check(m.stiffness_n_per_mm > 0, "K > 0")


def test_fall_direction_angles(check):
    bone = rod_femur_bone(COMM)
    s = np.array([0, 0, 1.0])
    lat = SidewaysFall(adduction_deg=0, internal_rotation_deg=0).fall_direction(bone)
    check(np.allclose(lat, [-1, 0, 0]), f"pure lateral fall {lat}")
    d = SidewaysFall().fall_direction(bone)
    check(np.isclose(np.degrees(np.arcsin(d @ s)), 10.0), "10 deg adduction")
    # internal rotation: ground direction turns toward posterior (-y) in the bone frame
    check(np.isclose(np.degrees(np.arctan2(-d[1], -d[0])), 15.0), "15 deg internal rotation")
    pl = SidewaysFall(direction="posterolateral").fall_direction(bone)
    check(np.isclose(np.degrees(np.arctan2(-pl[1], -pl[0])), 60.0), "posterolateral +45 deg")


def test_compression_bonded_vs_frictionless(check):
    bone = prism_bone(COMM, n=(3, 3, 6))
    kf = solve(bone, AxialCompression(displacement_mm=0.1), material=1000.0).stiffness_n_per_mm
    kb = solve(bone, AxialCompression(displacement_mm=0.1, ends="bonded"), material=1000.0).stiffness_n_per_mm
    check(abs(kf / 5000 - 1) < 1e-6, f"frictionless {kf}")
    check(kb > kf * 1.01, f"bonded ends stiffer: {kb} vs {kf}")
    # strain input: 1 % of 20 mm = 0.2 mm -> same stiffness
    ks = solve(bone, AxialCompression(strain=0.01), material=1000.0)
    check(abs(ks.load.displacement_mm - 0.2) < 1e-12 and abs(ks.stiffness_n_per_mm / kf - 1) < 1e-6, "strain")


# --------------------------------------------------------------------------- fracture load
def test_fracture_load_linear_scaling_and_region(check):
    bone = rod_femur_bone(COMM)
    E = 2000.0 + 100.0 * bone.cell_midpoints()[:, 2]
    f1 = fracture_load(bone, SingleLegStance(load_n=1000.0), material=E)
    f2 = fracture_load(bone, SingleLegStance(load_n=3000.0), material=E)
    check(abs(f1.fracture_load_n / f2.fracture_load_n - 1) < 1e-6, "independent of the reference load")
    check(abs(f1.max_rf * f1.fracture_load_n / 1000.0 - 1) < 1e-12, "load = applied / max RF")
    neck = fracture_load(bone, SingleLegStance(), material=E, region="neck", result=f1.mechanics)
    check(neck.fracture_load_n >= f1.fracture_load_n * (1 - 1e-12), "ROI cannot be weaker")
    check(neck.failure_site["coordinates_mm"][2] >= 40.0, "site inside the neck ROI (z >= 40)")
    cv = fracture_load(bone, SingleLegStance(), material=E, criterion="critical_volume",
                       critical_volume_mm3=20.0, result=f1.mechanics)
    check(cv.fracture_load_n >= f1.fracture_load_n, "critical volume needs more load")
    check(cv.failure_site["mode"] in ("tension", "compression"), "mode")
    cv0 = fracture_load(bone, SingleLegStance(), material=E, criterion="critical_volume",
                        critical_volume_mm3=0.0, result=f1.mechanics)
    check(abs(cv0.fracture_load_n / f1.fracture_load_n - 1) < 1e-12, "V_crit = 0 is the first point")
    with pytest.raises(InputError, match="less than critical_volume"):
        fracture_load(bone, SingleLegStance(), material=E, criterion="critical_volume",
                      critical_volume_mm3=1e9, result=f1.mechanics)


def test_layers_excluded_from_criterion(check):
    """A soft 'layer_superior' compartment strains far more than the bone but must not set
    the failure load; the endplate-gauged 0.2 % surrogate ignores the layer's compliance."""
    from femur.mechanics.verification import _tags

    bone = prism_bone(COMM, n=(3, 3, 10))
    mid = bone.cell_midpoints()
    layer = mid[:, 2] > 16.0
    bone.cell_tags = _tags(bone.mesh, 3, {2: np.flatnonzero(~layer), 3: np.flatnonzero(layer)})
    bone.cell_ids = {"trabecular": 2, "layer_superior": 3}
    E = np.where(layer, 8.0, 1000.0)
    # nu = 0: layers in series stay uniaxial, so the bone strain is exactly F / (E A)
    fr = fracture_load(bone, AxialCompression(displacement_mm=0.2), material=E, nu=0.0)
    check(fr.failure_site["compartment"] == "trabecular", str(fr.failure_site))
    # series springs: the bone part (16 mm) carries the same force; its strain is F/(E A)
    F = fr.applied_load_n
    eps_bone = F / (1000.0 * 100.0)
    check(abs(fr.fracture_load_n / (F * 0.0104 / eps_bone) - 1) < 1e-6, "criterion on bone only")
    # gauge: without endplate tags the loaded faces are used (= K * 0.002 * height)
    check(abs(fr.strain_surrogate_load_n / (fr.stiffness_n_per_mm * 0.002 * 20.0) - 1) < 1e-9, "surrogate")


def test_hexahedral_bone_fall_and_stance(check):
    bone = rod_femur_bone(COMM, cell="hexahedron")
    for lc in (SingleLegStance(), SidewaysFall()):
        f = fracture_load(bone, lc, material=3000.0)
        check(np.isfinite(f.fracture_load_n) and f.fracture_load_n > 0, lc.name)


@pytest.mark.slow  # ~12 s serial, ~30 s on 2 busy ranks
def test_parametric_femur_and_vertebra_cases(check):
    """Built-in bones (coarse): equilibrium of stance and fall, positive loads and sites."""
    gm = pytest.importorskip("femur.geometry.femur_model")
    vt = pytest.importorskip("femur.geometry.vertebra")
    from femur.geometry.density import assign_density

    bone = gm.ProximalFemur(mesh_size_mm=5.0).build(COMM)
    assign_density(bone)
    for lc in (SingleLegStance(), SidewaysFall(), SidewaysFall(direction="posterolateral")):
        f = fracture_load(bone, lc, options={"ksp_rtol": 1e-10})
        m = f.mechanics
        R = sum(m.reactions_n.values())
        d = lc.direction(bone) if isinstance(lc, SingleLegStance) else lc.fall_direction(bone)
        check(np.allclose(R, -lc.load_n * d, atol=1e-4 * lc.load_n), f"{lc.name}: reaction {R}")
        check(100.0 < f.fracture_load_n < 1e5, f"{lc.name}: {f.fracture_load_n}")
    neck = fracture_load(bone, SidewaysFall(), region="neck")
    check(bone.rois["neck"](np.array(neck.failure_site["coordinates_mm"])[:, None])[0], "neck site")
    v = vt.Vertebra(layers="pmma").build(COMM)
    assign_density(v)
    f = fracture_load(v, AxialCompression())
    check(f.failure_site["compartment"] in ("cortical", "trabecular"), str(f.failure_site))
    check(f.strain_surrogate_load_n > 0 and f.fracture_load_n > 0, "vertebra loads")


def test_fallback_options_rescue_a_failed_solve(check):
    """A configuration's [fallback] options are applied once when the fast options fail."""
    from femur.mechanics.solvers import SolverConfig

    base = load_solver_config("gamg")
    cfg = SolverConfig("gamg-test", dict(base.options, ksp_max_it=2), base.near_nullspace,
                       fallback={"ksp_max_it": 1000})
    bone = prism_bone(COMM, n=(3, 3, 6))
    ref = solve(bone, AxialCompression(), material=1000.0, solver="gamg")
    from femur.mechanics.problem import make_solver

    es, load, E, nu = make_solver(bone, AxialCompression(), 1000.0, solver=cfg)
    try:
        info = es.solve()
        check(es.fallback_used and info.reason.startswith("CONVERGED"), f"{info}")
        R = es.reaction_force(load.load_facets) @ load.direction
        check(abs(R / ref.applied_load_n - 1) < 1e-8, f"{R} vs {ref.applied_load_n}")
    finally:
        es.close()
