r"""Claims about where runs end: `AtHorizon` (a value at the horizon against a prediction) and
`SameLimit` (the limit does not depend on the start)."""

from __future__ import annotations

import dataclasses
from typing import Any, Callable

import jax
import numpy as np

from .._catalogue import repeat_starts
from ._base import Claim
from ._context import TINY, flat_values, label
from ._rows import Trace

HORIZON_TOL = 1e-6
LIMIT_TOL = 1e-6


def _ends(traj, q, t):
    """``q`` at saved time ``t`` (default: the last) of every run, ``(runs, entries)``, and that time."""
    i = -1 if t is None else int(np.argmin(np.abs(traj.t - t)))
    values = flat_values(traj.evaluate(q), traj.flat.ndim - 1)  # (runs, n, entries)
    return values[:, i], float(traj.t[i])


def _starts_of_runs(method, traj):
    """The start of each run (SDE flows and stochastic maps repeat each start ``paths`` times)."""
    starts = method.y0
    if traj.paths != method.n_starts:
        starts = repeat_starts(starts, traj.paths // method.n_starts)
    return [jax.tree_util.tree_map(lambda leaf: leaf[i], starts) for i in range(traj.paths)]


def _scale(values, absolute):
    return 1.0 if absolute else np.maximum(1.0, np.abs(values))


@dataclasses.dataclass(frozen=True)
class AtHorizon(Claim):
    r"""``q`` at the end of the runs (the flow at ``t1``, the map after its steps; ``t``: the
    saved time nearest ``t``) equals ``predict``: a number, or ``predict(y0, args)`` of each
    run's start (a closed-form solution, a predicted limit).  Measured as the largest error
    relative to :math:`\max(1, |\text{prediction}|)` (``absolute=True``: the error itself).
    ``mean=True`` compares the mean over the runs of each start (an SDE's expectation).  With
    ``printed``, a second row shows that the paper's printed prediction is refuted."""

    q: Callable = None
    predict: Any = None
    on: str = "flow"
    t: float | None = None
    tol: float = HORIZON_TOL
    absolute: bool = False
    mean: bool = False
    printed: Any = None

    def _predictions(self, formula, starts, args, shape):
        if callable(formula):
            return np.stack([np.ravel(np.asarray(formula(y0, args), dtype=float)) for y0 in starts])
        return np.broadcast_to(np.ravel(np.asarray(formula, dtype=float)), shape)

    def rows(self, ctx):
        method = ctx.method
        title = f"AtHorizon({label(self.q, self.name)}, {self.on})"
        traj = ctx.run(self.on)
        got, when = _ends(traj, self.q, self.t)
        starts = _starts_of_runs(method, traj)
        system = method.flow if self.on == "flow" else method.map
        if self.mean:
            per = traj.paths // method.n_starts
            got = got.reshape(method.n_starts, per, -1).mean(axis=1)
            starts = starts[::per]
        want = self._predictions(self.predict, starts, system.args, got.shape)
        err = np.abs(got - want) / _scale(want, self.absolute)
        worst = float(np.max(err))
        what = "mean " if self.mean else ""
        index = np.arange(len(got))
        rows = [self._row(ctx, title, f"{what}error at t={when:.4g} over {len(got)} runs", worst, f"< {self.tol:g}",
                          worst < self.tol, Trace(index, got[:, 0], "run", f"{label(self.q, self.name)}(t={when:.3g})",
                                                  "points", (index, want[:, 0], "predicted")))]
        if self.printed is not None:
            printed = self._predictions(self.printed, starts, system.args, got.shape)
            gap = float(np.max(np.abs(got - printed) / _scale(printed, self.absolute)))
            from ._points import REFUTATION

            rows.append(self._row(ctx, title, "printed prediction refuted (its error)", gap, f"> {self.tol:g}",
                                  gap > self.tol, Trace(index, got[:, 0], "run", label(self.q, self.name), "points",
                                                        (index, printed[:, 0], "printed")), identity=REFUTATION))
        return rows


@dataclasses.dataclass(frozen=True)
class SameLimit(Claim):
    r"""The runs from every start end at the same value of ``q`` (a limit independent of the
    start): the spread :math:`\max_i |q_i - \bar q|` relative to :math:`\max(1, |\bar q|)`;
    with ``limit`` (a number) also equal to it."""

    q: Callable = None
    on: str = "flow"
    tol: float = LIMIT_TOL
    limit: Any = None

    def rows(self, ctx):
        title = f"SameLimit({label(self.q, self.name)}, {self.on})"
        traj = ctx.run(self.on)
        got, when = _ends(traj, self.q, None)
        centre = got.mean(axis=0)
        spread = float(np.max(np.abs(got - centre) / np.maximum(1.0, np.abs(centre))))
        index = np.arange(len(got))
        rows = [self._row(ctx, title, f"spread over {len(got)} starts at t={when:.4g}", spread, f"< {self.tol:g}",
                          spread < self.tol, Trace(index, got[:, 0], "start", label(self.q, self.name), "points",
                                                   float(centre[0])))]
        if self.limit is not None:
            want = np.ravel(np.asarray(self.limit, dtype=float))
            err = float(np.max(np.abs(centre - want) / np.maximum(1.0, np.abs(want) + TINY)))
            rows.append(self._row(ctx, title, "error of the common limit", err, f"< {self.tol:g}", err < self.tol,
                                  Trace(index, got[:, 0], "start", label(self.q, self.name), "points", float(want[0]))))
        return rows
