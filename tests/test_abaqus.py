"""Abaqus/CalculiX .inp export: structure (own tiny parser) and, when `ccx` is installed,
a cross-check of CalculiX's displacements and reactions against the dolfinx solve."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

import femur  # noqa: F401
from femur.core.mpi import MPI

from femur.mechanics import AxialCompression, SidewaysFall, SingleLegStance, export_inp, solve
from femur.mechanics.verification import prism_bone, rod_femur_bone

COMM = MPI.COMM_WORLD


def parse_inp(path):
    """Minimal Abaqus input reader: nodes, elements, elsets, materials, sections, BCs, loads."""
    d = {"nodes": {}, "elements": {}, "etype": None, "elsets": {}, "materials": {},
         "sections": {}, "boundary": [], "cload": [], "keywords": [], "header": []}
    kw, opts, cur = None, {}, None
    for raw in Path(path).read_text().splitlines():
        line = raw.strip()
        if not line:
            continue
        if line.startswith("**"):
            d["header"].append(line)
            continue
        if line.startswith("*"):
            parts = [p.strip() for p in line[1:].split(",")]
            kw = parts[0].upper()
            opts = dict((p.split("=") + [""])[:2] for p in parts[1:])
            opts = {k.upper(): v for k, v in opts.items()}
            d["keywords"].append(kw)
            if kw == "ELEMENT":
                d["etype"] = opts["TYPE"]
            elif kw == "ELSET":
                cur = d["elsets"].setdefault(opts["ELSET"], [])
            elif kw == "MATERIAL":
                cur = opts["NAME"]
            elif kw == "SOLID SECTION":
                d["sections"][opts["ELSET"]] = opts["MATERIAL"]
            continue
        vals = [v.strip() for v in line.split(",") if v.strip()]
        if kw == "NODE":
            d["nodes"][int(vals[0])] = np.array([float(v) for v in vals[1:4]])
        elif kw == "ELEMENT":
            d["elements"][int(vals[0])] = [int(v) for v in vals[1:]]
        elif kw == "ELSET":
            cur.extend(int(v) for v in vals)
        elif kw == "ELASTIC":
            d["materials"][cur] = (float(vals[0]), float(vals[1]))
        elif kw == "BOUNDARY":
            d["boundary"].append((int(vals[0]), int(vals[1]), int(vals[2]), float(vals[3])))
        elif kw == "CLOAD":
            d["cload"].append((int(vals[0]), int(vals[1]), float(vals[2])))
        elif kw == "NODE PRINT":
            d["node_print"] = (opts.get("NSET"), vals)
    return d


def _export(bone, lc, name, tmp, **kw):
    path = Path(tmp) / f"{name}.inp"
    info = export_inp(bone, lc, path, **kw)
    return path, info, (parse_inp(path) if COMM.rank == 0 else None)


def _tet_volumes(d):
    ids = sorted(d["elements"])
    X = np.array([[d["nodes"][n] for n in d["elements"][i][:4]] for i in ids])
    return np.einsum("ij,ij->i", np.cross(X[:, 1] - X[:, 0], X[:, 2] - X[:, 0]), X[:, 3] - X[:, 0]) / 6


def test_inp_stance_structure(mpi_tmp_path, check):
    bone = rod_femur_bone(COMM)
    x = bone.cell_midpoints()
    E = 500.0 * np.exp(x[:, 2] / 30.0)  # 500 .. 3700 MPa
    lc = SingleLegStance(load_n=1000.0)
    path, info, d = _export(bone, lc, "rod_stance", mpi_tmp_path, material=E, bins=16)
    n_nodes = bone.mesh.geometry.index_map().size_global
    n_cells = bone.mesh.topology.index_map(3).size_global
    ok = True
    if COMM.rank == 0:
        F = sum(np.eye(3)[c - 1] * v for _, c, v in d["cload"])
        elsets = [v for k, v in d["elsets"].items() if k.startswith("EM")]
        all_el = np.sort(np.concatenate(elsets))
        distal_nodes = {n for n, p in d["nodes"].items() if abs(p[2]) < 1e-12}
        bc_nodes = {b[0] for b in d["boundary"]}
        vols = _tet_volumes(d)
        ok = (d["etype"] == "C3D4" and len(d["nodes"]) == n_nodes and len(d["elements"]) == n_cells
              and np.allclose(F, 1000.0 * lc.direction(bone), atol=1e-9)
              and np.array_equal(all_el, np.arange(1, n_cells + 1))
              and len(d["materials"]) == info.num_materials <= 16
              and bc_nodes == distal_nodes and len(d["boundary"]) == 3 * len(distal_nodes)
              and all(v == 0.0 for *_, v in d["boundary"])
              and np.all(vols > 0) and abs(vols.sum() - 12 * 12 * 60) < 1e-8
              and d["node_print"] == ("NALL", ["U", "RF"])
              and d["keywords"][-1] == "END STEP" and "STATIC" in d["keywords"])
    check(ok, "stance .inp structure")
    # 16 log bins over a factor ~7.4: bin half-width in log space bounds the error
    ratio = COMM.allreduce(E.max(), op=MPI.MAX) / COMM.allreduce(E.min(), op=MPI.MIN)
    bound = np.sqrt(ratio ** (1 / 16)) - 1
    check(0 < info.max_binning_error <= bound * 1.0001, f"binning error {info.max_binning_error} vs {bound}")


def test_inp_fall_rotated_frame_and_p2(mpi_tmp_path, check):
    bone = rod_femur_bone(COMM)
    lc = SidewaysFall(load_n=800.0)
    path, info, d = _export(bone, lc, "rod_fall", mpi_tmp_path, material=2000.0, order=2)
    ok = True
    if COMM.rank == 0:
        F = sum(np.eye(3)[c - 1] * v for _, c, v in d["cload"])
        comps = {}
        for n, c, _, _ in d["boundary"]:
            comps.setdefault(n, set()).add(c)
        vols = _tet_volumes(d)
        # C3D10 edge nodes lie at the midpoints of the Abaqus corner pairs
        el = d["elements"][1]
        X = np.array([d["nodes"][n] for n in el])
        pairs = [(0, 1), (1, 2), (2, 0), (0, 3), (1, 3), (2, 3)]
        mids = all(np.allclose(X[4 + k], (X[a] + X[b]) / 2) for k, (a, b) in enumerate(pairs))
        ok = (d["etype"] == "C3D10" and all(len(v) == 10 for v in d["elements"].values())
              and np.allclose(F, [800.0, 0, 0], atol=1e-9)  # load along solve axis 1 = d
              and any("solve frame" in h for h in d["header"])
              and {frozenset(v) for v in comps.values()} <= {frozenset({1}), frozenset({2, 3}), frozenset({1, 2, 3})}
              and np.all(vols > 0) and mids and len(d["materials"]) == 1)
    check(ok, "fall P2 .inp structure")
    check(np.allclose(info.frame[0], lc.fall_direction(bone)), "frame row 0 = fall direction")


def _read_dat(path):
    U, RF, cur = {}, {}, None
    for line in Path(path).read_text().splitlines():
        if "displacements" in line:
            cur = U
            continue
        if "forces" in line:
            cur = RF
            continue
        s = line.split()
        if cur is not None and len(s) == 4:
            try:
                cur[int(s[0])] = np.array([float(v) for v in s[1:]])
            except ValueError:
                pass
    return U, RF


@pytest.mark.skipif(shutil.which("ccx") is None, reason="CalculiX (ccx) not installed")
@pytest.mark.parametrize(
    "case",
    [("prism", "tetrahedron", 1), ("prism", "tetrahedron", 2), ("prism", "hexahedron", 1),
     ("fall", "tetrahedron", 1)],
    ids=["C3D4", "C3D10", "C3D8", "fall-C3D4"],
)
def test_calculix_matches_dolfinx(case, mpi_tmp_path, check):
    """CalculiX solves the exported model; its nodal displacements agree with dolfinx to the
    precision of the .dat print (~1e-6 relative) and its reactions give the same force."""
    kind, cell, order = case
    if kind == "prism":
        bone = prism_bone(COMM, n=(3, 3, 6), cell=cell)
        lc = AxialCompression(displacement_mm=0.2)
    else:
        bone = rod_femur_bone(COMM, n=(2, 2, 8), cell=cell)
        lc = SidewaysFall(load_n=1000.0)
    x = bone.cell_midpoints()
    E = 600.0 + 30.0 * x[:, 2] + 10.0 * x[:, 0]
    job = f"ccx_{kind}_{cell}_{order}"
    path, info, d = _export(bone, lc, job, mpi_tmp_path, material=E, order=order, bins=None)
    m = solve(bone, lc, material=E, order=order, options={"ksp_rtol": 1e-12})
    res = None
    if COMM.rank == 0:
        p = subprocess.run(["ccx", "-i", job], cwd=path.parent, capture_output=True, text=True,
                           timeout=300)
        res = _read_dat(path.with_suffix(".dat")) if p.returncode == 0 else (None, p.stdout[-2000:])
    U, RF = COMM.bcast(res, root=0)
    check(U is not None, f"ccx failed: {RF}")
    V = m.u.function_space
    n_own = V.dofmap.index_map.size_local
    gid = V.dofmap.index_map.local_to_global(np.arange(n_own, dtype=np.int32)) + 1
    Uc = np.array([U[int(i)] for i in gid]) @ info.frame  # back to the bone frame
    ud = m.u.x.array.reshape(-1, 3)[:n_own]
    umax = m.max_displacement_mm
    err = COMM.allreduce(float(np.abs(Uc - ud).max()) if n_own else 0.0, op=MPI.MAX)
    check(err < 2e-6 * umax, f"max |u_ccx - u_dolfinx| = {err} (max |u| {umax})")
    # ccx prints the nodal internal forces; on the constrained nodes they are the reactions
    bc_nodes = COMM.bcast(sorted({b[0] for b in d["boundary"]}) if COMM.rank == 0 else None, root=0)
    Rtot = sum(RF[n] for n in bc_nodes) @ info.frame
    if kind == "prism":
        # reaction of the superior platen (solve axis 3 = bone axis), summed over owned nodes
        top = np.isclose(V.tabulate_dof_coordinates()[:n_own, 2], 20.0)
        R_sup = -COMM.allreduce(float(sum(RF[int(i)][2] for i in gid[top] if int(i) in RF)), op=MPI.SUM)
        check(abs(R_sup / m.applied_load_n - 1) < 1e-5, f"ccx reaction {R_sup} vs {m.applied_load_n}")
    else:
        check(np.allclose(Rtot, -1000.0 * lc.fall_direction(bone), atol=1e-2), f"ccx reactions {Rtot}")
