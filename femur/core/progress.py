"""A progress bar for long loops: tqdm on world rank 0, nothing elsewhere."""

from __future__ import annotations


class ProgressBar:
    """``tqdm`` bar shown when ``enabled`` on rank 0 of ``comm`` (all ranks may call it)."""

    def __init__(self, total: int, enabled: bool, desc: str, unit: str = "step", comm=None,
                 initial: int = 0):
        self._bar = None
        rank = 0 if comm is None else comm.rank
        if enabled and rank == 0:
            from tqdm import tqdm

            # a continuous quantity (e.g. mm of displacement): show it with 3 digits, not as
            # a count with every float digit and a rate in s/mm
            fmt = (None if float(total).is_integer() else
                   "{desc}: {percentage:3.0f}%|{bar}| {n:.3g}/{total:.3g} " + unit + " [{elapsed}<{remaining}]")
            self._bar = tqdm(total=total, initial=initial, desc=desc, unit=unit, leave=False,
                             bar_format=fmt)

    @property
    def n(self) -> int:
        return self._bar.n if self._bar else 0

    def update(self, n: int = 1) -> None:
        if self._bar:
            self._bar.update(n)

    def set_postfix(self, **values) -> None:
        """Show ``key=value`` pairs after the bar (e.g. a residual)."""
        if self._bar:
            self._bar.set_postfix(**values)

    def close(self) -> None:
        if self._bar:
            self._bar.close()


__all__ = ["ProgressBar"]
