"""Verification against exact / analytic answers (biomechanics.md section 4, T1-T6).

Every test runs serially and under `mpiexec -n 2`.
"""

from __future__ import annotations

import numpy as np
import pytest

import femur  # noqa: F401  (MPI before dolfinx)
from femur.core.mpi import MPI
import dolfinx  # noqa: E402
import ufl  # noqa: E402

from femur.mechanics import AxialCompression, ElasticitySolver, fracture_load, solve  # noqa: E402
from femur.mechanics.elasticity import lame_parameters  # noqa: E402
from femur.mechanics.loadcases import facet_mean  # noqa: E402
from femur.mechanics.problem import cell_strains, strain_field  # noqa: E402
from femur.mechanics.verification import (  # noqa: E402
    macneal_harder_mesh,
    prism_bone,
    tube_mesh,
)

COMM = MPI.COMM_WORLD
TIGHT = {"ksp_rtol": 1e-12}


def _gsum(x):
    return COMM.allreduce(float(x), op=MPI.SUM)


def _owned(mesh):
    return mesh.topology.index_map(3).size_local


def _boundary(mesh, pred):
    mesh.topology.create_connectivity(2, 3)
    return dolfinx.mesh.locate_entities_boundary(mesh, 2, pred)


# --------------------------------------------------------------------------- T1 patch
@pytest.mark.parametrize("cell", ["tetrahedron", "hexahedron"])
@pytest.mark.parametrize("order", [1, 2])
def test_T1_patch_test_exact(cell, order, check):
    """MacNeal-Harder patch (E=1e6, nu=0.25), linear displacement on the boundary ->
    strains 1e-3 / shear 1e-3, stresses 2000 / 400 everywhere, to round-off."""
    mesh = macneal_harder_mesh(COMM, cell)

    def exact(x):
        return 1e-3 * np.vstack([(2 * x[0] + x[1] + x[2]) / 2, (x[0] + 2 * x[1] + x[2]) / 2,
                                 (x[0] + x[1] + 2 * x[2]) / 2])

    s = ElasticitySolver(mesh, 1.0e6, 0.25, order=order, solver="mumps")
    s.add_dirichlet(facets=_boundary(mesh, lambda x: np.full(x.shape[1], True)), value=exact)
    s.solve()
    # nodal values (interior nodes included) equal the linear field
    ue = exact(s.V.tabulate_dof_coordinates().T).T
    err_u = np.abs(s.u.x.array.reshape(-1, 3) - ue).max()
    eps = cell_strains(strain_field(s.u, order))[: _owned(mesh)]
    e_exact = 1e-3 * np.array([[1, 0.5, 0.5], [0.5, 1, 0.5], [0.5, 0.5, 1]])
    err_e = np.abs(eps - e_exact).max()
    lmbda, mu = lame_parameters(1.0e6, 0.25)
    sig = 2 * mu * eps + lmbda * np.trace(eps, axis1=-2, axis2=-1)[..., None, None] * np.eye(3)
    s_exact = np.array([[2000, 400, 400], [400, 2000, 400], [400, 400, 2000]])
    err_s = np.abs(sig - s_exact).max()
    s.close()
    check(err_u < 1e-14, f"nodal displacement error {err_u}")
    check(err_e < 1e-13, f"strain error {err_e} (strains 1e-3)")
    check(err_s < 1e-6, f"stress error {err_s} MPa (stresses 2000/400)")


# --------------------------------------------------------------------------- T2 prism
@pytest.mark.parametrize("cell", ["tetrahedron", "hexahedron"])
@pytest.mark.parametrize("order", [1, 2])
def test_T2_prism_stiffness_and_criterion(cell, order, check):
    """10x10x20 mm, E=1000 MPa, nu=0.3, frictionless ends, 0.2 mm -> F=1000 N,
    K=EA/L=5000 N/mm, eps_z=-0.01, eps_lat=+0.003, linear failure load 1040 N (compression)."""
    bone = prism_bone(COMM, cell=cell, n=(3, 3, 6))
    lc = AxialCompression(displacement_mm=0.2)
    fr = fracture_load(bone, lc, material=1000.0, order=order, options=TIGHT)
    m = fr.mechanics
    pr = m.principal_strains[: bone.num_owned_cells].reshape(-1, 3)
    check(abs(m.stiffness_n_per_mm / 5000.0 - 1) < 1e-9, f"K = {m.stiffness_n_per_mm}")
    check(abs(m.applied_load_n / 1000.0 - 1) < 1e-9, f"F = {m.applied_load_n}")
    check(np.allclose(pr[:, 2], -0.01, rtol=1e-8, atol=0), "eps_z = -0.01")
    check(np.allclose(pr[:, :2], 0.003, rtol=1e-7, atol=0), "eps_lat = +0.003")
    check(abs(fr.fracture_load_n / 1040.0 - 1) < 1e-8, f"failure load {fr.fracture_load_n}")
    check(fr.mode == "compression", fr.mode)
    # 0.2 % surrogate: F = K * 0.002 * height = 5000 * 0.002 * 20 = 200 N
    check(abs(fr.strain_surrogate_load_n / 200.0 - 1) < 1e-8, f"{fr.strain_surrogate_load_n}")
    # uniform field: the critical-volume variant gives the same load
    cv = fracture_load(bone, lc, material=1000.0, criterion="critical_volume",
                       critical_volume_mm3=5.0, result=m)
    check(abs(cv.fracture_load_n / 1040.0 - 1) < 1e-8, f"critical volume {cv.fracture_load_n}")


# --------------------------------------------------------------------------- T3 graded bar
def _graded_bar_u(nz, cell, E0=1000.0, L=20.0, F=100.0):
    bone = prism_bone(COMM, size=(2.0, 2.0, L), n=(1, 1, nz), cell=cell)
    z = bone.cell_midpoints()[:, 2]
    E = E0 * (1 + z / L)  # DG0: cell-midpoint value of E0 (1 + x/L)
    m = solve(bone, AxialCompression(displacement_mm=0.01), material=E, nu=0.0, options=TIGHT)
    return F / m.stiffness_n_per_mm, E0, L, F, 4.0


def test_T3_graded_bar_hex_exact_and_converges(check):
    """nu=0, E=E0(1+x/L): u(L) = F L ln2/(A E0).  With a DG0 modulus on a layered hex mesh
    the FE answer is *exactly* the midpoint rule F/A sum h/E(z_k) (uniform strain per layer),
    whose error is bounded by F h^2 / (12 A E0 L) (second derivative of 1/E) and falls as h^2."""
    errs = []
    for nz in (5, 10, 20):
        u, E0, L, F, A = _graded_bar_u(nz, "hexahedron")
        h = L / nz
        zk = (np.arange(nz) + 0.5) * h
        u_mid = F / A * np.sum(h / (E0 * (1 + zk / L)))
        u_exact = F * L * np.log(2) / (A * E0)
        bound = F * h**2 / (12 * A * E0 * L)
        check(abs(u / u_mid - 1) < 1e-9, f"nz={nz}: FE {u} vs midpoint sum {u_mid}")
        check(abs(u - u_exact) <= bound, f"nz={nz}: |{u} - {u_exact}| > bound {bound}")
        errs.append(abs(u - u_exact))
    rates = np.log2(np.array(errs[:-1]) / np.array(errs[1:]))
    check(np.all(np.abs(rates - 2) < 0.05), f"convergence rates {rates}")


def test_T3_graded_bar_tets(check):
    """Tetrahedra: cells of one layer have different midpoints, so the FE answer is not
    the 1D sum; it still converges to F L ln2/(A E0) (observed error < 0.2 % at nz=10)."""
    errs = []
    for nz in (5, 10):
        u, E0, L, F, A = _graded_bar_u(nz, "tetrahedron")
        errs.append(abs(u / (F * L * np.log(2) / (A * E0)) - 1))
    check(errs[1] < errs[0] and errs[1] < 2e-3, f"relative errors {errs}")


# --------------------------------------------------------------------------- T4 hollow cylinder
def _tube_bone(cell, Ri=3.0, Ro=5.0, L=200.0, n=(2, 16, 40)):
    from femur.geometry.bone import Bone
    from femur.mechanics.verification import _box_tags

    mesh = tube_mesh(COMM, Ri, Ro, L, *n, cell=cell)
    bone = _box_tags(mesh, L, "tube")
    assert isinstance(bone, Bone)
    # section properties of the meshed (polygonal) section, exact for the mesh
    x = ufl.SpatialCoordinate(mesh)
    A = _gsum(dolfinx.fem.assemble_scalar(dolfinx.fem.form(1.0 * ufl.dx(domain=mesh)))) / L
    Iy = _gsum(dolfinx.fem.assemble_scalar(dolfinx.fem.form(x[0] ** 2 * ufl.dx(domain=mesh)))) / L
    return bone, A, Iy, L


@pytest.mark.parametrize("order", [1, 2])
def test_T4_hollow_cylinder_axial(order, check):
    """Axial: K = EA/L (frictionless ends), exact for P1 and P2."""
    bone, A, _, L = _tube_bone("tetrahedron", n=(1, 12, 10))
    E = 1000.0
    m = solve(bone, AxialCompression(displacement_mm=0.1), material=E, order=order, options=TIGHT)
    check(abs(m.stiffness_n_per_mm / (E * A / L) - 1) < 1e-8, f"{m.stiffness_n_per_mm} vs {E * A / L}")
    # the polygonal section is within 1 % of the circular one (12 segments: 4.5 %-> use A)
    check(abs(A / (np.pi * (25 - 9)) - 1) < 0.05, f"A = {A}")


@pytest.mark.parametrize("cell", ["tetrahedron", "hexahedron"])
def test_T4_hollow_cylinder_cantilever_p2(cell, check):
    """Clamped tube, L/D = 20, end shear load: P2 deflection within 1 % of Euler-Bernoulli
    F L^3 / (3 E I) (I of the meshed section; Timoshenko shear adds ~0.3 % at L/D = 20;
    observed -0.28 % tets, -0.17 % hexes)."""
    bone, A, Iy, L = _tube_bone(cell, n=(1, 16, 30))
    E, nu, F = 1000.0, 0.3, 1.0
    mesh = bone.mesh
    top = bone.facet_tags.find(21)
    bot = bone.facet_tags.find(22)
    # direct solver: GAMG needs ~120 iterations on this slender P2 tube
    s = ElasticitySolver(mesh, E, nu, order=2, solver="mumps")
    s.add_dirichlet(facets=bot, value=0.0)
    s.add_traction(top, [F / A, 0.0, 0.0])
    info = s.solve()
    delta = facet_mean(mesh, top, s.u[0])
    s.close()
    eb = F * L**3 / (3 * E * Iy)
    check(abs(delta / eb - 1) < 0.01, f"{cell}: deflection {delta} vs EB {eb} ({info.dofs} DOFs)")


# --------------------------------------------------------------------------- T5 Lame tube
def test_T5_lame_tube_plane_strain(check):
    """Quarter tube a=10, b=20 mm, E=210 GPa, nu=0.3, p=100 MPa, plane strain (w=0 on both
    faces of a 1 mm slice, symmetry planes): u_r(a) = 9.08 um within 0.2 %, sigma_theta(a)
    = 166.7 MPa within 3 % (stress at the bore from the P2 strain, DG1 vertex values;
    coarse meshes overshoot, see biomechanics.md T5), sigma_theta(b) = 66.7 MPa within 3 %."""
    a, b, E, nu, p = 10.0, 20.0, 210e3, 0.3, 100.0
    mesh = tube_mesh(COMM, a, b, 1.0, 10, 24, 1, theta_max=np.pi / 2, cell="tetrahedron", grading=1.15)
    inner = _boundary(mesh, lambda x: np.isclose(np.hypot(x[0], x[1]), a))
    faces = _boundary(mesh, lambda x: np.isclose(x[2], 0) | np.isclose(x[2], 1.0))
    xsym = _boundary(mesh, lambda x: np.isclose(x[0], 0))  # u_x = 0
    ysym = _boundary(mesh, lambda x: np.isclose(x[1], 0))  # u_y = 0
    s = ElasticitySolver(mesh, E, nu, order=2, solver="mumps")
    s.add_dirichlet(facets=faces, value=0.0, component=2)
    s.add_dirichlet(facets=xsym, value=0.0, component=0)
    s.add_dirichlet(facets=ysym, value=0.0, component=1)
    s.add_traction(inner, -p * ufl.FacetNormal(mesh))
    s.solve()
    X = s.V.tabulate_dof_coordinates()
    n_own = s.V.dofmap.index_map.size_local
    r = np.hypot(X[:n_own, 0], X[:n_own, 1])
    U = s.u.x.array.reshape(-1, 3)[:n_own]
    ur = (U[:, 0] * X[:n_own, 0] + U[:, 1] * X[:n_own, 1]) / r
    at_a = np.isclose(r, a)
    ur_a = _gsum(ur[at_a].sum()) / _gsum(at_a.sum())
    # stresses at DG1 nodes (cell vertices) on the bore and the outer surface
    eps = strain_field(s.u, 2)
    W = eps.function_space
    Xw = W.tabulate_dof_coordinates()
    e = eps.x.array.reshape(-1, 3, 3)
    lmbda, mu = lame_parameters(E, nu)
    sig = 2 * mu * e + lmbda * np.trace(e, axis1=1, axis2=2)[:, None, None] * np.eye(3)
    rw = np.hypot(Xw[:, 0], Xw[:, 1])
    et = np.column_stack([-Xw[:, 1] / rw, Xw[:, 0] / rw, 0 * rw])
    st = np.einsum("ni,nij,nj->n", et, sig, et)
    nw = W.dofmap.index_map.size_local
    s.close()

    def mean_at(R):
        m = np.isclose(rw[:nw], R)
        return _gsum(st[:nw][m].sum()) / _gsum(m.sum())

    ur_exact = p * a**2 * a / (E * (b**2 - a**2)) * ((1 - nu - 2 * nu**2) + b**2 * (1 + nu) / a**2)
    check(abs(ur_exact * 1e3 - 9.08) < 0.005, f"analytic u_r(a) {ur_exact * 1e3} um")
    check(abs(ur_a / ur_exact - 1) < 2e-3, f"u_r(a) = {ur_a * 1e3:.4f} um vs {ur_exact * 1e3:.4f}")
    sa, sb = mean_at(a), mean_at(b)
    check(abs(sa / 166.667 - 1) < 0.03, f"sigma_theta(a) = {sa} MPa")
    check(abs(sb / 66.667 - 1) < 0.03, f"sigma_theta(b) = {sb} MPa")


# --------------------------------------------------------------------------- T6 MMS
def _mms_errors(n, order):
    mesh = dolfinx.mesh.create_unit_cube(COMM, n, n, n)
    x = ufl.SpatialCoordinate(mesh)
    rho = 0.4 + 0.3 * x[0] * x[1] + 0.2 * ufl.sin(2 * x[2])  # manufactured density, g/cm3
    E = 6850.0 * rho**1.49  # Morgan 2003 femoral-neck power law (biomechanics.md 1.2)
    nu = 0.3

    def u_ufl(x):
        return 0.01 * ufl.as_vector([ufl.sin(1.3 * x[0] + 0.4 * x[1]) * ufl.cos(0.7 * x[2]),
                                     ufl.cos(0.9 * x[0]) * ufl.sin(1.1 * x[1] + 0.3 * x[2]),
                                     ufl.sin(0.5 * x[0] + 0.8 * x[1] + 1.2 * x[2])])

    def u_np(x):
        return 0.01 * np.vstack([np.sin(1.3 * x[0] + 0.4 * x[1]) * np.cos(0.7 * x[2]),
                                 np.cos(0.9 * x[0]) * np.sin(1.1 * x[1] + 0.3 * x[2]),
                                 np.sin(0.5 * x[0] + 0.8 * x[1] + 1.2 * x[2])])

    from femur.mechanics.elasticity import stress

    ue = u_ufl(x)
    f = -ufl.div(stress(ue, E, nu))
    s = ElasticitySolver(mesh, E, nu, order=order, solver="mumps")
    s.add_dirichlet(facets=_boundary(mesh, lambda x: np.full(x.shape[1], True)), value=u_np)
    s.set_body_force(f)
    s.solve()
    dx = ufl.dx(metadata={"quadrature_degree": 2 * order + 4})
    e = s.u - ue
    l2 = np.sqrt(_gsum(dolfinx.fem.assemble_scalar(dolfinx.fem.form(ufl.inner(e, e) * dx))))
    h1 = np.sqrt(_gsum(dolfinx.fem.assemble_scalar(dolfinx.fem.form(ufl.inner(ufl.grad(e), ufl.grad(e)) * dx))))
    s.close()
    return l2, h1


@pytest.mark.parametrize("order,ns", [(1, (6, 12)), (2, (3, 6))])
def test_T6_mms_heterogeneous_rates(order, ns, check):
    """Manufactured solution with E = 6850 rho(x)^1.49: L2 rate ~ p+1, H1 rate ~ p."""
    (l2a, h1a), (l2b, h1b) = (_mms_errors(n, order) for n in ns)
    r_l2 = np.log2(l2a / l2b)
    r_h1 = np.log2(h1a / h1b)
    check(abs(r_l2 - (order + 1)) < 0.25, f"P{order}: L2 rate {r_l2} ({l2a}, {l2b})")
    check(abs(r_h1 - order) < 0.2, f"P{order}: H1 rate {r_h1} ({h1a}, {h1b})")
