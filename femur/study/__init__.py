"""Virtual trials: study files, cohorts, case records, MPI batch runs, results.

Ten lines from Python::

    from femur.study import Study
    study = Study.load("frame", patients=4)          # built-in FRAME-like study
    results = study.run(evaluator=my_case_evaluator, out="results/frame")
    print(results.format_table())
    results.summary["arms"]

From the shell (wired in ``femur/cli.py``)::

    mpiexec -n 4 femur run frame --group-size 2 --out results/frame
    femur run frame --resume --out results/frame      # continue a killed run

An evaluator is ``evaluator(record, comm) -> {"visits": [...]}``; see
:mod:`femur.study.cases` for the result format.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from femur.core.errors import InputError
from femur.core.log import get_logger
from femur.core.mpi import MPI
from femur.core.version import __version__
from femur.study.cases import DEFAULT_EVALUATOR, make_records, resolve_evaluator
from femur.study.cohort import generate_cohort, sample_patient
from femur.study.figures import density_change_figures
from femur.study.parse import load_study, parse_study
from femur.study.results import TABLE_COLUMNS, StudyResults
from femur.study.runner import run_cases
from femur.study.spec import StudySpec, builtin_studies

log = get_logger(__name__)


@dataclass
class Study:
    """A study recipe plus the operations that expand and run it."""

    spec: StudySpec

    @classmethod
    def load(cls, study, patients=None, months=None, seed=None, strength_model=None) -> Study:
        """From a TOML path, a built-in name, a dict or a StudySpec, with overrides."""
        return cls(load_study(study).with_overrides(patients=patients, months=months, seed=seed,
                                                    strength_model=strength_model))

    from_toml = load

    @property
    def name(self) -> str:
        return self.spec.name

    def cohort(self) -> list[dict]:
        return generate_cohort(self.spec.cohort, self.spec.seed)

    def cases(self) -> list[dict]:
        """One fully materialised record per patient x arm."""
        return make_records(self.spec, self.cohort())

    def manifest(self) -> dict:
        """What the case files of an output folder were computed for. The risk settings are
        left out: the risk is computed from the case files, so a folder can be resumed (or
        its results rebuilt) with other risk settings."""
        study = self.spec.to_dict()
        study.pop("risk", None)
        study["model"].pop("strength_model_reason", None)  # the model itself is compared
        return {"femur_version": __version__, "study": study}

    def run(
        self,
        evaluator=None,
        out=None,
        *,
        comm=None,
        group_size: int = 1,
        resume: bool = False,
        progress: bool = True,
        plots: bool = True,
        fields: bool = False,
        schedule: str = "dynamic",
    ) -> StudyResults | None:
        """Run every case (collective over ``comm``), write the results to ``out`` and
        return :class:`StudyResults` on rank 0 (``None`` on other ranks).

        ``out`` defaults to ``results/<study name>``. ``fields``: the evaluator also writes
        each case's fields (``out/fields/<case_id>/``), which :meth:`figures` reads.
        ``schedule``: how the cases are spread over the rank groups, "dynamic" (a work
        queue of patients) or "static" (``femur.study.runner``); the results are the same.
        """
        comm = comm or MPI.COMM_WORLD
        fn = resolve_evaluator(evaluator, self.spec)
        out = Path(out) if out is not None else Path("results") / self.spec.name
        records = self.cases()
        data = run_cases(
            records,
            fn,
            out,
            manifest=self.manifest(),
            comm=comm,
            group_size=group_size,
            resume=resume,
            progress=progress,
            label=self.spec.name,
            fields=fields,
            schedule=schedule,
        )
        error = None
        results = None
        if comm.rank == 0:
            try:
                results = StudyResults(self.spec, data)
                results.write(out, plots=plots)
            except Exception as exc:  # share the failure so no rank hangs
                error = exc
        failed = comm.bcast(None if error is None else f"{type(error).__name__}: {error}", root=0)
        if error is not None:
            raise error
        if failed is not None:
            raise InputError(f"study {self.spec.name}: writing the results failed on rank 0: {failed}")
        return results

    def figures(self, out=None, patient_index: int = 0, comm=None) -> list[Path] | None:
        """Density-change pictures of one patient, arms side by side, drawn from the case
        fields in ``out`` (a study run with ``fields=True``); rank 0 draws and returns the
        paths, the error (if any) is raised on every rank."""
        comm = comm or MPI.COMM_WORLD
        out = Path(out) if out is not None else Path("results") / self.spec.name
        paths, error = None, None
        if comm.rank == 0:
            try:
                paths = density_change_figures(self, out, patient_index)
            except InputError as exc:
                error = str(exc)
        error = comm.bcast(error, root=0)
        if error is not None:
            raise InputError(error)
        return paths


def list_builtin_studies() -> str:
    """One line per built-in study: its name and description."""
    lines = []
    for name in builtin_studies():
        spec = load_study(name)
        lines.append(f"{name:<10} {spec.description or spec.name}")
    return "\n".join(lines)


def run_study_cli(
    study,
    patients=None,
    months=None,
    seed=None,
    group_size=1,
    resume=False,
    out=None,
    evaluator=None,
    json_output=False,
    figures=False,
    strength_model=None,
) -> dict | None:
    """``femur run STUDY [--patients N] [--months M] [--seed S] [--strength-model MODEL]
    [--group-size G] [--resume] [--json] [--figures] [--out DIR]``.

    Returns the summary dict on rank 0 (``None`` elsewhere); prints the trial-paper table
    (or, with ``json_output``, one JSON object) from rank 0. ``figures``: also write the
    case fields and draw patient 0's density change, arms side by side.
    """
    s = Study.load(study, patients=patients, months=months, seed=seed, strength_model=strength_model)
    target = Path(out) if out is not None else Path("results") / s.spec.name
    results = s.run(evaluator=evaluator, out=target, group_size=group_size, resume=resume,
                    progress=not json_output, fields=figures)
    paths = s.figures(target) if figures else None
    if MPI.COMM_WORLD.rank != 0:
        return None
    if json_output:
        print(results.summary_json(), flush=True)
    else:
        print(results.format_table(), flush=True)
        print(f"results: {target}/ (results.csv, summary.json, plots/)", flush=True)
        if paths:
            print("figures: " + ", ".join(str(p) for p in paths), flush=True)
    return json.loads(results.summary_json())


__all__ = [
    "DEFAULT_EVALUATOR",
    "Study",
    "StudyResults",
    "StudySpec",
    "TABLE_COLUMNS",
    "builtin_studies",
    "generate_cohort",
    "list_builtin_studies",
    "load_study",
    "make_records",
    "parse_study",
    "run_study_cli",
    "sample_patient",
]
