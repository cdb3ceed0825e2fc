"""``femur.pushover``: the nonlinear pushover of a bone, with its plot and files.

:func:`pushover` runs ``femur.mechanics.pushover.solve_pushover`` (material-nonlinear,
displacement-controlled; see that module for the boundary conditions, increments and
read-offs) and returns a :class:`PushoverResult`: the same fields
(``nonlinear_strength_n``, ``yield_load_n``, ``displacement_at_peak_mm``, ``increments``,
``newton_iterations``, ``load_displacement``, yielded volumes, ...) plus ``.plot()`` and
``.write(folder)`` (``femur.exports.pushover``). With ``out=`` the curve is written after
every converged increment and everything else at the end.
"""

from __future__ import annotations

import dataclasses

from femur.exports.pushover import CurveFile, plot_pushover, write_pushover
from femur.mechanics.pushover import solve_pushover
from femur.mechanics.pushover_result import PushoverSolution


@dataclasses.dataclass
class PushoverResult(PushoverSolution):
    """Load-displacement curve and strength of a pushover (N, mm), with a plot and files."""

    def plot(self, path=None, ax=None):
        """The curve with the peak, the 0.2 %-offset line and yield point and the first
        yield (matplotlib figure; saved as PNG to ``path`` on rank 0 if given)."""
        return plot_pushover(self, path, ax)

    def write(self, folder, stem: str | None = None, picture: bool = True) -> dict:
        """Curve CSV/PNG, summary JSON, plastic-strain XDMF and the yielded-region
        picture (collective); see ``femur.exports.pushover``."""
        return write_pushover(self, folder, stem, picture)

    @classmethod
    def from_solution(cls, sol: PushoverSolution) -> "PushoverResult":
        return cls(**{f.name: getattr(sol, f.name) for f in dataclasses.fields(PushoverSolution)})


def pushover(bone, load_case, material=None, out=None, stem: str | None = None,
             picture: bool = True, **kwargs) -> PushoverResult:
    """Material-nonlinear, displacement-controlled pushover of ``bone`` under ``load_case``
    (``SingleLegStance``, ``SidewaysFall`` or ``AxialCompression``).

    ``material``: a MaterialModel or modulus (default: the bone's default material);
    ``out``: folder for the curve CSV (written after every increment) and, at the end,
    the curve PNG, the summary JSON, the plastic-strain XDMF and, with ``picture``, the
    yielded-region PNG (file names start with ``stem``, default the load-case name).
    Every other keyword goes to ``femur.mechanics.pushover.solve_pushover`` (yield model,
    criterion, softening, end displacement, order, Newton and increment settings)."""
    if out is not None:
        name = stem or getattr(load_case, "name", "pushover")
        kwargs.setdefault("on_increment", CurveFile(out, name, bone.comm))
    res = PushoverResult.from_solution(solve_pushover(bone, load_case, material, **kwargs))
    if out is not None:
        res.write(out, stem, picture)
    return res


__all__ = ["PushoverResult", "pushover"]
