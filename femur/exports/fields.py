"""Export objects: each owns its file names and format, and is handed to a run.

A remodeling run (``femur.workflows.simulation.Simulation``) is given a list of exports
and calls, on every rank::

    export.start(run)           before the first visit
    export.write(run, month)    at every monthly visit
    export.finish(run, result)  after the last one (``result``: the TimeCourse)

where ``run`` has ``.comm`` and ``.tracks`` ({bone name: track}); a track has ``.bone``
(the run's own Bone, whose ``density`` Function holds the current apparent density,
g/cm3) and ``.rho0`` (the baseline density per local cell). Exports only read; they never
change the run.

* :class:`DensitySeries` -- density and its % change per bone over time, one VTX (ADIOS2)
  folder per bone for ParaView (``<bone>_density.bp``, time = month);
* :class:`DensityChangeMaps` -- PNG of the final density and its % change per bone;
* :class:`CaseFields` -- the final density fields per bone as VTK ``.vtu`` files
  (``<bone>_fields.vtu``; what the study figures read back);
* :class:`TimeCourseFiles` -- ``simulation.json`` and ``timecourse.png`` of the result;
* :class:`StrengthFields` -- one solved load case (``femur strength --out``): XDMF fields,
  VTX displacement and a PNG.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from femur.core.mpi import MPI
import dolfinx  # noqa: E402
import dolfinx.io  # noqa: E402

from femur.exports.pictures import render_cell_fields, save_cell_fields  # noqa: E402


def _folder(path, comm) -> Path:
    """Create ``path`` on rank 0 and wait for it on every rank."""
    path = Path(path)
    if comm.rank == 0:
        path.mkdir(parents=True, exist_ok=True)
    comm.barrier()
    return path


class FinalExport:
    """An export that writes once, when the run has finished (no-op ``start`` and ``write``)."""

    def __init__(self, folder):
        self.folder = Path(folder)

    def start(self, run) -> None:
        pass

    def write(self, run, month: float) -> None:
        pass

    def finish(self, run, result) -> None:  # pragma: no cover - overridden
        raise NotImplementedError


def density_change_pct(track) -> np.ndarray:
    """Per-cell % change of a track's density from its baseline (0 where the baseline is 0:
    CT elements with no bone, layers without density)."""
    rho, rho0 = track.bone.density.x.array, track.rho0
    ratio = np.divide(rho, rho0, out=np.ones_like(rho0, dtype=float), where=rho0 > 0)
    return 100.0 * (ratio - 1.0)


class DensitySeries:
    """Density (g/cm3) and density change (%) per bone over time, one VTX (ADIOS2 BP4)
    folder per bone for ParaView (``<bone>_density.bp``, time = month)."""

    def __init__(self, folder):
        self.folder = Path(folder)
        self.writers, self.change = {}, {}

    def start(self, run) -> None:
        self.folder = _folder(self.folder, run.comm)
        for name, track in run.tracks.items():
            rho = track.bone.density
            rho.name = "density_g_cm3"
            ch = dolfinx.fem.Function(rho.function_space, name="density_change_pct")
            self.change[name] = ch
            self.writers[name] = dolfinx.io.VTXWriter(run.comm, str(self.folder / f"{name}_density.bp"),
                                                      [rho, ch], engine="BP4")

    def write(self, run, month: float) -> None:
        for name, track in run.tracks.items():
            self.change[name].x.array[:] = density_change_pct(track)
            self.writers[name].write(float(month))

    def finish(self, run, result) -> None:
        for w in self.writers.values():
            w.close()
        self.writers = {}


class DensityChangeMaps(FinalExport):
    """PNG per bone of the final density and its % change (``<bone>_density_change.png``)."""

    def finish(self, run, result) -> None:
        for name, track in run.tracks.items():
            change = density_change_pct(track)
            lim = float(track.bone.comm.allreduce(np.abs(change).max(), op=MPI.MAX)) or 1.0
            render_cell_fields(
                track.bone.mesh, {"density_g_cm3": track.bone.density.x.array, "density_change_pct": change},
                self.folder / f"{name}_density_change.png",
                titles={"density_g_cm3": "density (g/cm3)", "density_change_pct": "density change (%)"},
                cmaps={"density_g_cm3": "bone", "density_change_pct": "RdBu"},
                clims={"density_change_pct": (-lim, lim)}, clip_normal="-y",
            )


class CaseFields(FinalExport):
    """The final density (g/cm3) and density change (%) per bone, owned cells gathered to
    rank 0 and written as a VTK unstructured grid (``<bone>_fields.vtu``, ParaView and
    pyvista read it). The study writes these per case when asked, and its figures read them."""

    def finish(self, run, result) -> None:
        for name, track in run.tracks.items():
            save_cell_fields(track.bone.mesh, {"density_g_cm3": track.bone.density.x.array,
                                               "density_change_pct": density_change_pct(track)},
                             self.folder / f"{name}_fields.vtu")


class TimeCourseFiles(FinalExport):
    """``simulation.json`` and ``timecourse.png`` of the run's TimeCourse (rank 0 of the
    run's communicator writes)."""

    def finish(self, run, result) -> None:
        result.save(self.folder)


def simulation_exports(folder) -> list:
    """The default exports of `femur simulate --out DIR`: time course, VTX series, PNG maps."""
    return [TimeCourseFiles(folder), DensitySeries(folder), DensityChangeMaps(folder)]


class StrengthFields:
    """Fields of one solved load case for ParaView and a picture (``femur strength --out``):
    ``<bone>_<case>.xdmf`` (density, modulus, max/min principal strain, risk factor at the
    fracture load), ``<bone>_<case>_displacement.bp`` (VTX, where ADIOS2 is available) and
    ``<bone>_<case>.png``."""

    def __init__(self, folder):
        self.folder = Path(folder)

    def write(self, bone, fracture, material) -> Path:
        """Write the files of one fracture-load result (collective)."""
        comm = bone.comm
        out = _folder(self.folder, comm)
        mech = fracture.mechanics
        stem = f"{bone.name}_{mech.load_case}"
        pr = mech.principal_strains  # (cells, pts, 3)
        e1 = pr[..., 0].max(axis=1)
        e3 = pr[..., 2].min(axis=1)
        rf = (np.maximum(e1 / fracture.eps_tension, -e3 / fracture.eps_compression)
              * fracture.fracture_load_n / fracture.applied_load_n)
        V0 = dolfinx.fem.functionspace(bone.mesh, ("DG", 0))
        fields = {}
        for name, arr in (("max_principal_strain", e1), ("min_principal_strain", e3),
                          ("risk_factor_at_fracture_load", rf)):
            f = dolfinx.fem.Function(V0, name=name)
            f.x.array[:] = arr
            fields[name] = f
        E = material.modulus_field(bone)
        E.name = "modulus_mpa"
        rho = dolfinx.fem.Function(bone.density.function_space, name="density_g_cm3")
        rho.x.array[:] = bone.density.x.array
        with dolfinx.io.XDMFFile(comm, str(out / f"{stem}.xdmf"), "w") as xdmf:
            xdmf.write_mesh(bone.mesh)
            for f in (rho, E, *fields.values()):
                xdmf.write_function(f)
        # displacement on its own (P1/P2 Lagrange) with VTX when ADIOS2 is available
        if dolfinx.io.has_adios2:
            u = mech.u
            u.name = "displacement_mm"
            with dolfinx.io.VTXWriter(comm, str(out / f"{stem}_displacement.bp"), [u], engine="BP4") as vtx:
                vtx.write(0.0)
        render_cell_fields(
            bone.mesh,
            {"density_g_cm3": rho.x.array, "max_principal_strain": e1 * 100, "min_principal_strain": e3 * 100},
            out / f"{stem}.png",
            titles={"density_g_cm3": "density (g/cm3)", "max_principal_strain": "max principal strain (%)",
                    "min_principal_strain": "min principal strain (%)"},
            cmaps={"density_g_cm3": "bone", "max_principal_strain": "Reds", "min_principal_strain": "Blues_r"},
            clip_normal="-y",
        )
        return out / f"{stem}.xdmf"


__all__ = ["CaseFields", "FinalExport", "DensityChangeMaps", "DensitySeries", "StrengthFields", "TimeCourseFiles",
           "density_change_pct", "simulation_exports"]
