"""Named PETSc solver configurations (``solvers/*.toml``) and options-prefix hygiene.

A configuration file holds::

    name = "gamg"
    description = "..."
    near_nullspace = true        # attach the 6 rigid-body modes to the matrix
    requires = ["mumps"]         # PETSc external packages that must be present
    [options]                    # PETSc options, *without* prefix
    ksp_type = "cg"
    ...
    [serial_setup_options]       # optional: global (unprefixed) options, present only
    matptap_via = "rap"          # while a one-rank KSP is set up (see below)

Every solver instance gets a unique options prefix; the options are written under that
prefix, read once by ``KSP.setFromOptions`` and then deleted again, so a batch of 1000
solves leaves the global PETSc options database as it found it.

``serial_setup_options`` exist because some objects that the preconditioner creates read
their options without any prefix: GAMG's Galerkin products ``P^T A P`` (``MatPtAP``) take
their algorithm from the global ``-matptap_via``.  These options are written unprefixed
only around ``KSP.setUp`` of a one-rank solver (the values can be specific to sequential
matrices, e.g. ``rap`` exists for SeqAIJ only) and any previous global value is restored.
"""

from __future__ import annotations

import itertools
import os
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

from femur.core.mpi import MPI  # noqa: F401  (MPI before petsc4py)
from femur.core.errors import InputError

DEFAULT_SOLVER = "gamg"

_prefix_counter = itertools.count()


@dataclass(frozen=True)
class SolverConfig:
    """A named PETSc configuration."""

    name: str
    options: dict = field(default_factory=dict)
    near_nullspace: bool = True
    requires: tuple[str, ...] = ()
    description: str = ""
    path: str | None = None
    serial_setup_options: dict = field(default_factory=dict)
    #: options merged over ``options`` for one retry when a solve fails (e.g. a Chebyshev
    #: smoother whose eigenvalue estimate makes the preconditioner indefinite)
    fallback: dict = field(default_factory=dict)

    def with_options(self, extra: dict | None) -> "SolverConfig":
        """A copy with ``extra`` PETSc options (unprefixed) merged over ``options``."""
        if not extra:
            return self
        opts = dict(self.options)
        opts.update(extra)
        return SolverConfig(self.name, opts, self.near_nullspace, self.requires,
                            self.description, self.path, dict(self.serial_setup_options),
                            dict(self.fallback))

    @property
    def is_direct(self) -> bool:
        return str(self.options.get("ksp_type", "")) == "preonly"


def solver_dirs() -> list[Path]:
    """Folders searched for ``<name>.toml``: $FEMUR_SOLVERS_DIR, then the repository's solvers/."""
    dirs = []
    env = os.environ.get("FEMUR_SOLVERS_DIR")
    if env:
        dirs.append(Path(env))
    dirs.append(Path(__file__).resolve().parents[2] / "solvers")
    return dirs


def available_solvers() -> list[str]:
    names = set()
    for d in solver_dirs():
        if d.is_dir():
            names.update(p.stem for p in d.glob("*.toml"))
    return sorted(names)


def _has_package(name: str) -> bool:
    from petsc4py import PETSc

    return bool(PETSc.Sys.hasExternalPackage(name))


def load_solver_config(name_or_path: "str | Path | SolverConfig" = DEFAULT_SOLVER,
                       check_available: bool = True) -> SolverConfig:
    """Load a named configuration (``"gamg"``, ``"mumps"``, ``"hypre"``) or a TOML file path.

    Raises InputError for an unknown name, an unreadable file, or a configuration that
    needs a PETSc external package this build lacks (e.g. "this PETSc build has no hypre").
    """
    if isinstance(name_or_path, SolverConfig):
        cfg = name_or_path
    else:
        p = Path(name_or_path)
        if p.suffix == ".toml" or p.is_file():
            path = p
        else:
            path = None
            for d in solver_dirs():
                cand = d / f"{name_or_path}.toml"
                if cand.is_file():
                    path = cand
                    break
            if path is None:
                raise InputError(
                    f"unknown solver configuration '{name_or_path}': expected one of "
                    f"{available_solvers()} (searched {[str(d) for d in solver_dirs()]}) "
                    "or a path to a .toml file"
                )
        try:
            with open(path, "rb") as fh:
                data = tomllib.load(fh)
        except FileNotFoundError:
            raise InputError(f"solver configuration file '{path}' does not exist") from None
        except tomllib.TOMLDecodeError as exc:
            raise InputError(f"solver configuration file '{path}' is not valid TOML: {exc}") from None
        opts = data.get("options", {})
        if not isinstance(opts, dict):
            raise InputError(f"solver configuration '{path}': [options] must be a table")
        sopts = data.get("serial_setup_options", {})
        if not isinstance(sopts, dict):
            raise InputError(f"solver configuration '{path}': [serial_setup_options] must be a table")
        fb = data.get("fallback", {})
        if not isinstance(fb, dict):
            raise InputError(f"solver configuration '{path}': [fallback] must be a table")
        cfg = SolverConfig(
            fallback=dict(fb),
            name=str(data.get("name", path.stem)),
            options=dict(opts),
            near_nullspace=bool(data.get("near_nullspace", True)),
            requires=tuple(data.get("requires", ())),
            description=str(data.get("description", "")),
            path=str(path),
            serial_setup_options=dict(sopts),
        )
    if check_available:
        for pkg in cfg.requires:
            if not _has_package(pkg):
                usable = [n for n in available_solvers() if n != cfg.name]
                raise InputError(
                    f"solver configuration '{cfg.name}' needs the PETSc external package "
                    f"'{pkg}', but this PETSc build has no {pkg}; choose another solver "
                    f"(e.g. {usable})"
                )
    return cfg


def unique_prefix(stem: str = "femur_elast") -> str:
    """A PETSc options prefix that no other live solver uses (``stem_<n>_``)."""
    return f"{stem}_{next(_prefix_counter)}_"


def _petsc_value(v) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    return str(v)


class PrefixedOptions:
    """Write ``options`` under ``prefix`` into the PETSc database; ``clear()`` removes them."""

    def __init__(self, prefix: str, options: dict):
        from petsc4py import PETSc

        self.prefix = prefix
        self._db = PETSc.Options()
        self._keys = []
        for k, v in options.items():
            key = f"{prefix}{k}"
            self._db.setValue(key, _petsc_value(v))
            self._keys.append(key)

    def clear(self) -> None:
        for key in self._keys:
            if self._db.hasName(key):
                self._db.delValue(key)
        self._keys = []


class GlobalOptions:
    """Write unprefixed ``options`` into the PETSc database for a short while; ``clear()``
    deletes them again and restores any value that was there before."""

    def __init__(self, options: dict):
        from petsc4py import PETSc

        self._db = PETSc.Options()
        self._saved = {}
        for k, v in options.items():
            self._saved[k] = self._db.getString(k) if self._db.hasName(k) else None
            self._db.setValue(k, _petsc_value(v))

    def clear(self) -> None:
        for k, old in self._saved.items():
            if old is None:
                if self._db.hasName(k):
                    self._db.delValue(k)
            else:
                self._db.setValue(k, old)
        self._saved = {}
