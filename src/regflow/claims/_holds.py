"""`Holds`: a figure computed by a function of the method lies in an interval (the escape hatch)."""

from __future__ import annotations

import dataclasses
from typing import Callable

import numpy as np

from ._base import Claim
from ._context import label
from ._rows import Trace


@dataclasses.dataclass(frozen=True)
class Holds(Claim):
    """A figure computed by ``measure(method)`` lies in ``[lo, hi]``: the escape hatch for
    statements no other claim type expresses (say what is measured in ``what``).  ``measure``
    returns a number, or ``(number, Trace)`` to draw what it measured; otherwise the figure
    shows the number against its interval."""

    measure: Callable = None
    lo: float = -np.inf
    hi: float = np.inf
    what: str = "measured figure"

    def rows(self, ctx):
        result = self.measure(ctx.method)
        value, trace = result if isinstance(result, tuple) else (result, None)
        value = float(value)
        if trace is None:
            bounds = [b for b in (self.lo, self.hi) if np.isfinite(b)]
            reference = bounds[0] if len(bounds) == 1 else ([0.0, 0.0], bounds, "interval") if bounds else None
            trace = Trace([0.0], [value], "", self.what, "points", reference)
        title = f"Holds({self.name or label(self.measure, None)})"
        return [self._row(ctx, title, self.what, value, f"in [{self.lo:g}, {self.hi:g}]",
                          self.lo <= value <= self.hi, trace)]
