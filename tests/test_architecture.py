"""The package layout: imports run one way along the stages, without cycles, and every
module imports on its own in a fresh interpreter (ARCHITECTURE.md).

Stages, in order: core -> geometry -> treatments -> remodeling -> mechanics -> outcomes ->
exports -> workflows -> study -> calibration -> cli, with the public facades (``femur``
itself and ``femur.ct``) on top. A module may import its own stage and earlier ones,
never a later one -- anywhere in the file, function bodies included (no late imports to
dodge a cycle).
"""

from __future__ import annotations

import ast
import functools
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "femur"
STAGES = ("core", "geometry", "treatments", "remodeling", "mechanics", "outcomes", "exports",
          "workflows", "study", "calibration", "cli")
FACADES = ("femur", "femur.ct")

pytestmark = pytest.mark.serial


@functools.cache
def _modules() -> dict[str, Path]:
    out = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts)] = path
    return out


def _stage(module: str) -> int:
    if module in FACADES:
        return len(STAGES)
    name = module.split(".")[1]
    if name not in STAGES:
        raise AssertionError(f"module {module} is in no stage; add its folder to STAGES "
                             "(and to ARCHITECTURE.md)")
    return STAGES.index(name)


def _femur_imports(path: Path) -> list[tuple[int, str]]:
    """(line, module) of every import of a femur module anywhere in the file."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found += [(node.lineno, a.name) for a in node.names if a.name.split(".")[0] == "femur"]
        elif isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == "femur":
            assert node.level == 0, f"{path}:{node.lineno}: use absolute imports"
            # "from femur.outcomes import dxa" imports the module femur.outcomes.dxa
            mods = _modules()
            for a in node.names:
                sub = f"{node.module}.{a.name}"
                found.append((node.lineno, sub if sub in mods else node.module))
    return found


def _graph() -> dict[str, set[str]]:
    mods = _modules()
    graph = {}
    for name, path in mods.items():
        deps = set()
        ancestors = {".".join(name.split(".")[:k]) for k in range(1, name.count(".") + 1)}
        for _, target in _femur_imports(path):
            # importing a.b.c also runs the package a.b's __init__ (already running when the
            # importer is inside that package)
            parts = target.split(".")
            deps |= ({".".join(parts[:k]) for k in range(2, len(parts) + 1)} & set(mods)) - ancestors
        graph[name] = deps - {name}
    return graph


def test_every_module_belongs_to_a_stage():
    for name in _modules():
        if name not in FACADES:
            _stage(name)


def test_imports_run_one_way_along_the_stages():
    bad = []
    for name, path in _modules().items():
        for line, target in _femur_imports(path):
            if target == "femur" and name not in FACADES:
                bad.append(f"{path}:{line}: imports the package facade 'femur'; import the module "
                           "that defines the name instead")
            elif target != "femur" and _stage(target) > _stage(name):
                bad.append(f"{path}:{line}: {name} ({STAGES[_stage(name)] if name not in FACADES else 'facade'}) "
                           f"imports {target}, a later stage")
    assert not bad, "\n".join(bad)


def test_no_import_cycles():
    graph = _graph()
    state, stack, cycles = {}, [], []

    def visit(n):
        state[n] = 1
        stack.append(n)
        for m in sorted(graph.get(n, ())):
            if state.get(m) == 1:
                cycles.append(stack[stack.index(m):] + [m])
            elif m not in state:
                visit(m)
        stack.pop()
        state[n] = 2

    for n in sorted(graph):
        if n not in state:
            visit(n)
    assert not cycles, "import cycles:\n" + "\n".join(" -> ".join(c) for c in cycles)


def test_the_stage_test_sees_a_backward_import(tmp_path):
    """The checker itself: a stage module importing a later stage is reported."""
    fake = tmp_path / "mod.py"
    fake.write_text("def f():\n    from femur.study import Study\n")
    assert [t for _, t in _femur_imports(fake)] == ["femur.study"]
    assert _stage("femur.study") > _stage("femur.treatments.regimen")


#: The child of a fork starts with these third-party packages loaded (they take most of an
#: interpreter's start) and with no femur module: what the test is about, a femur module that
#: works only after another femur module was imported, shows the same as in a bare interpreter.
_PRELOAD = ("mpi4py.MPI", "numpy", "scipy.sparse", "scipy.integrate", "scipy.optimize", "scipy.ndimage",
            "scipy.spatial", "scipy.special", "dolfinx", "dolfinx.fem.petsc", "dolfinx.io.gmsh", "ufl", "basix")

_FORK_IMPORTER = r"""
import importlib, json, os, sys, traceback
for name in json.loads(sys.argv[1]):
    importlib.import_module(name)
assert not [m for m in sys.modules if m.split(".")[0] == "femur"], "femur loaded before the fork"
modules, folder, workers = json.loads(sys.argv[2]), sys.argv[3], int(sys.argv[4])
running, codes = {}, {}
def reap():
    pid, status = os.wait()
    codes[running.pop(pid)] = os.waitstatus_to_exitcode(status)
for i, module in enumerate(modules):
    while len(running) >= workers:
        reap()
    pid = os.fork()
    if pid == 0:  # the child: its output goes to its own file; it exits without MPI/PETSc teardown
        fd = os.open(os.path.join(folder, str(i)), os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
        os.dup2(fd, 1)
        os.dup2(fd, 2)
        code = 0
        try:
            importlib.import_module(module)
        except BaseException:
            traceback.print_exc()
            code = 1
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
    running[pid] = module
while running:
    reap()
print(json.dumps(codes))
"""


def _import_each_alone(modules: list[str], folder: Path, workers: int = 2) -> list[tuple[str, int, str]]:
    """(module, exit code, its output's tail) of importing each module in a fresh process: a
    fork of one interpreter that loaded only ``_PRELOAD``, ``workers`` at a time."""
    env = dict(os.environ, PYTHONWARNINGS="ignore")
    proc = subprocess.run([sys.executable, "-c", _FORK_IMPORTER, json.dumps(_PRELOAD), json.dumps(modules),
                           str(folder), str(workers)], capture_output=True, text=True, env=env, timeout=600)
    assert proc.returncode == 0, f"the forking importer failed:\n{proc.stderr[-3000:]}"
    codes = json.loads(proc.stdout.strip().splitlines()[-1])
    return [(m, codes[m], (folder / str(i)).read_text()[-2000:]) for i, m in enumerate(modules)]


def test_every_module_imports_alone_in_a_fresh_interpreter(tmp_path):
    """Each femur module imported in a fresh process with no other femur module loaded (a fork
    of an interpreter that loaded only the third-party stack, two at a time), so an
    import-order bug -- a module that works only after another one was imported -- fails here."""
    results = _import_each_alone(sorted(_modules()), tmp_path)
    failed = [f"{m}:\n{err}" for m, rc, err in results if rc != 0]
    assert not failed, "\n\n".join(failed)


def test_the_fresh_import_check_sees_an_import_order_bug(tmp_path, monkeypatch):
    """The checker itself: a module that needs another one imported first fails alone, and a
    sound one passes."""
    pkg = tmp_path / "pkg_order_bug"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "a.py").write_text("import sys\nVALUE = sys.modules['pkg_order_bug.b'].VALUE\n")
    (pkg / "b.py").write_text("VALUE = 1\n")
    out = tmp_path / "out"
    out.mkdir()
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(tmp_path), os.environ.get("PYTHONPATH", "")]))
    results = {m: rc for m, rc, _ in _import_each_alone(["pkg_order_bug.a", "pkg_order_bug.b"], out)}
    assert results == {"pkg_order_bug.a": 1, "pkg_order_bug.b": 0}


def test_treatments_import_without_dolfinx():
    """The README promise: `from femur.treatments import Regimen` works on its own and the
    pure stages (treatments, remodeling) do not load DOLFINx."""
    code = ("import sys\nfrom femur.treatments import Regimen\nimport femur.remodeling\n"
            "assert Regimen('romosozumab').dose_mg == 210.0\n"
            "assert 'dolfinx' not in sys.modules, 'dolfinx was imported'\n")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr


def test_no_module_prints():
    """Output goes through logging (rank-0 filter); only the command-line entry points print
    the tables and JSON a user asked for."""
    allowed = {"femur.cli", "femur.study", "femur.calibration.remodeling", "femur.calibration.risk",
               "femur.calibration.site_template", "femur.calibration.habitual_density",
               "femur.calibration.strength_surrogate"}
    bad = []
    for name, path in _modules().items():
        if name in allowed:
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Call) and getattr(node.func, "id", None) == "print":
                bad.append(f"{path}:{node.lineno}")
    assert not bad, "print() outside the command-line entry points: " + ", ".join(bad)


def test_femur_modules_are_imported_at_the_top():
    """No femur import inside a function or class body (a late import would hide a cycle)."""
    bad = []
    for name, path in _modules().items():
        tree = ast.parse(path.read_text())
        top = {id(n) for n in tree.body}
        for node in ast.walk(tree):
            if id(node) in top or not isinstance(node, (ast.Import, ast.ImportFrom)):
                continue
            mods = [a.name for a in node.names] if isinstance(node, ast.Import) else [node.module or ""]
            if any(m.split(".")[0] == "femur" for m in mods):
                bad.append(f"{path}:{node.lineno}")
    assert not bad, "late femur imports: " + ", ".join(bad)


def test_mpi_bootstrap_comes_before_dolfinx():
    """Every module that imports DOLFINx, PETSc, UFL or basix at its top imports
    femur.core.mpi (mpi4py) first, as the dolfinx-solver-real wheel requires."""
    heavy = {"dolfinx", "petsc4py", "ufl", "basix"}
    bad = []
    for name, path in _modules().items():
        seen_mpi = name in ("femur.core.mpi",)
        for node in ast.parse(path.read_text()).body:
            if isinstance(node, ast.Import):
                mods = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                mods = [node.module or ""]
            else:
                continue
            if any(m == "femur.core.mpi" or m == "femur" for m in mods):
                seen_mpi = True
            elif any(m.split(".")[0] in heavy for m in mods) and not seen_mpi:
                bad.append(f"{path}:{node.lineno}")
                break
    assert not bad, "DOLFINx/PETSc imported before femur.core.mpi: " + ", ".join(bad)
