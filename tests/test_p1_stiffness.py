"""The stored P1 stiffness map (femur.mechanics.p1_stiffness) against DOLFINx's assembly."""

from __future__ import annotations

import numpy as np
import pytest

import femur  # noqa: F401
from femur.core.mpi import MPI
import dolfinx  # noqa: E402

from femur.mechanics import SidewaysFall, SingleLegStance  # noqa: E402
from femur.mechanics.problem import make_solver  # noqa: E402
from femur.mechanics.p1_stiffness import P1Stiffness  # noqa: E402
from femur.mechanics.verification import prism_bone, rod_femur_bone  # noqa: E402

COMM = MPI.COMM_WORLD


def _modulus(bone, seed=0):
    """A rough heterogeneous modulus (MPa) per local cell, from the cell midpoints (the same
    field on every partition)."""
    x = bone.cell_midpoints()
    return 500.0 + 4000.0 * (0.5 + 0.5 * np.sin(0.7 * x[:, 0] + 1.3 * x[:, 1] + 0.4 * x[:, 2] + seed))


def _reassembled(bone, case, fast, E1):
    """The matrix values (CSR) and displacement after a modulus update and a solve."""
    es, *_ = make_solver(bone, case, _modulus(bone), fast_assembly=fast)
    es.solve(rtol=1e-12)
    es.update_modulus(E1)
    es.solve(rtol=1e-12)
    _, _, vals = es.A.getValuesCSR()
    used = bool(es._fast)
    u = es.u.x.array.copy()
    es.close()
    return vals, u, used


@pytest.mark.serial
@pytest.mark.parametrize("case", [SingleLegStance(), SidewaysFall(direction="posterolateral")],
                         ids=["stance", "fall"])
def test_fast_reassembly_is_dolfinx_assembly(case, check):
    """Bone frame (stance) and a rotated solve frame with component constraints (fall):
    the reassembled matrix with its Dirichlet rows and columns equals DOLFINx's."""
    if COMM.size > 1:
        pytest.skip("serial only")
    bone = rod_femur_bone(COMM)
    E1 = _modulus(bone, seed=1.0)
    a0, u0, used0 = _reassembled(bone, case, False, E1)
    a1, u1, used1 = _reassembled(bone, case, True, E1)
    check(not used0 and used1, f"fast path used: reference {used0}, fast {used1}")
    check(np.abs(a1 - a0).max() <= 1e-12 * np.abs(a0).max(), f"matrix {np.abs(a1 - a0).max():.3e}")
    check(np.abs(u1 - u0).max() <= 1e-9 * np.abs(u0).max(), f"displacement {np.abs(u1 - u0).max():.3e}")


@pytest.mark.serial
def test_operator_is_linear_in_the_modulus(check):
    """values(E) is linear in E and a frame rotates every 3x3 node block (Q K_ab Q^T)."""
    if COMM.size > 1:
        pytest.skip("serial only")
    bone = prism_bone(COMM, n=(2, 2, 3))
    V = dolfinx.fem.functionspace(bone.mesh, ("Lagrange", 1, (3,)))
    V0 = dolfinx.fem.functionspace(bone.mesh, ("DG", 0))
    op = P1Stiffness(V, np.asarray(V0.dofmap.list)[:, 0], 0.3)
    rng = np.random.default_rng(3)
    Ea, Eb = rng.uniform(100, 2000, (2, V0.dofmap.index_map.size_local))
    va, vb, vab = op.values(Ea), op.values(Eb), op.values(2.0 * Ea + Eb)
    check(np.allclose(vab, 2.0 * va + vb, rtol=0, atol=1e-12 * np.abs(vab).max()), "linearity")
    Q = np.linalg.qr(rng.standard_normal((3, 3)))[0]
    rot = op.values(Ea, Q)
    K = np.zeros((op.size, op.size))
    rows = np.repeat(np.arange(op.size), np.diff(op.rowptr))
    K[rows, op.colind] = va
    T = np.kron(np.eye(op.size // 3), Q)
    check(np.allclose(rot, (T @ K @ T.T)[rows, op.colind], atol=1e-12 * np.abs(va).max()), "frame rotation")
    # a symmetric matrix whose rigid-body translations are in its kernel
    check(np.allclose(K, K.T, atol=1e-12 * np.abs(K).max()), "symmetry")
    check(np.abs(K @ np.tile([1.0, 0.0, 0.0], op.size // 3)).max() < 1e-10 * np.abs(K).max(), "translation")


def test_fast_assembly_needs_one_rank(check):
    """On more than one rank the solver keeps DOLFINx's assembly (and on one rank the
    same solve agrees with it)."""
    bone = rod_femur_bone(COMM)
    E1 = _modulus(bone, seed=2.0)
    case = SidewaysFall(direction="lateral")
    es, *_ = make_solver(bone, case, _modulus(bone), fast_assembly=True)
    es.solve(rtol=1e-12)
    es.update_modulus(E1)
    es.solve(rtol=1e-12)
    check(bool(es._fast) == (COMM.size == 1), f"fast path on {COMM.size} ranks: {es._fast is not False}")
    es.close()
