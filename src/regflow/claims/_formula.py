r"""Claims about formulas at points: `Formula` (a paper's formula against the system, from
autodiff or a closed form) and `Refuted` (a printed formula differs from the correct one)."""

from __future__ import annotations

import dataclasses
from typing import Any, Callable

import numpy as np

from .._analysis import lie_derivative
from .._catalogue import batch_of
from ._base import Claim
from ._context import TINY, label, pointwise
from ._points import REFUTATION
from ._rows import Trace

FORMULA_TOL = 1e-9


def _relative(got, want):
    return np.max(np.abs(got - want), axis=-1) / np.maximum(1.0, np.max(np.abs(want), axis=-1) + TINY)


@dataclasses.dataclass(frozen=True)
class Formula(Claim):
    r"""A paper's formula ``formula(y, args)`` holds at points ``at`` (default: the method's
    sample points), against the method's own system:

    * ``rate_of=q``: it is :math:`dq/dt` along the flow, the Lie derivative (Ito generator for
      an SDE) from autodiff, e.g. the printed :math:`dL/dt`;
    * ``field=True``: it is the flow's vector field (drift), e.g. a printed ODE;
    * ``step=True``: it is the map's step, e.g. a printed update rule;
    * ``equals=ref``: it equals ``ref(y, args)`` (a closed form; the row then measures the
      system only if ``ref`` reads ``args``).

    Measured as the worst error relative to :math:`\max(1, |\text{reference}|)`.  With
    ``printed`` (the formula as printed, when it is wrong), a second row shows it refuted."""

    formula: Callable = None
    rate_of: Callable | None = None
    field: bool = False
    step: bool = False
    equals: Callable | None = None
    at: Any = None
    tol: float = FORMULA_TOL
    printed: Callable | None = None

    def __post_init__(self):
        super().__post_init__()
        given = sum([self.rate_of is not None, self.field, self.step, self.equals is not None])
        if given != 1:
            raise ValueError("Formula compares with exactly one of rate_of=q, field=True, step=True or equals=ref")

    def _reference(self, method):
        if self.rate_of is not None:
            lq = lie_derivative(method.flow, self.rate_of)
            return lambda y, args: lq(y, args), method.flow.args, f"d{label(self.rate_of, None)}/dt (autodiff)"
        if self.field:
            return lambda y, args: method.flow.drift(0.0, y, args), method.flow.args, "the flow's field"
        if self.step:
            if method.map is None or method.map.stochastic:
                raise ValueError("Formula(step=True) needs a deterministic map on the method")
            return lambda y, args: method.map.step(0, y, args), method.map.args, "the map's step"
        args = method.flow.args
        return self.equals, args, label(self.equals, None)

    def rows(self, ctx):
        method = ctx.method
        reference, args, what = self._reference(method)
        points = method.points if self.at is None else batch_of(self.at, "at")
        want = pointwise(lambda y: reference(y, args), points)
        got = pointwise(lambda y: self.formula(y, args), points)
        title = f"Formula({label(self.formula, self.name)})"
        errs = _relative(got, want)
        worst = float(np.max(errs))
        index = np.arange(len(errs))
        rows = [self._row(ctx, title, f"error against {what} at {len(errs)} points", worst, f"< {self.tol:g}",
                          worst < self.tol, Trace(index, got[:, 0], "sample point", label(self.formula, self.name),
                                                  "points", (index, want[:, 0], what)))]
        if self.printed is not None:
            printed = pointwise(lambda y: self.printed(y, args), points)
            gap = float(np.max(_relative(printed, want)))
            rows.append(self._row(ctx, title, f"printed formula refuted (its error against {what})", gap,
                                  f"> {self.tol:g}", gap > self.tol,
                                  Trace(index, printed[:, 0], "sample point", "printed", "points",
                                        (index, want[:, 0], what)), identity=REFUTATION))
        return rows


@dataclasses.dataclass(frozen=True)
class Refuted(Claim):
    r"""A printed formula differs from the correct one: ``printed(y, args)`` against
    ``correct(y, args)`` at points ``at`` (default: the method's sample points), the gap
    relative to :math:`\max(1, |\text{correct}|)` above ``tol``.  Algebra on formulas, so its
    row is an identity by construction; give the evidence in ``erratum``."""

    printed: Callable = None
    correct: Callable = None
    at: Any = None
    tol: float = FORMULA_TOL

    def rows(self, ctx):
        method = ctx.method
        points = method.points if self.at is None else batch_of(self.at, "at")
        args = method.flow.args
        want = pointwise(lambda y: self.correct(y, args), points)
        got = pointwise(lambda y: self.printed(y, args), points)
        gap = float(np.max(_relative(got, want)))
        index = np.arange(len(want))
        title = f"Refuted({label(self.printed, self.name)})"
        return [self._row(ctx, title, f"printed vs correct at {len(want)} points (gap)", gap, f"> {self.tol:g}",
                          gap > self.tol, Trace(index, got[:, 0], "sample point", "printed", "points",
                                                (index, want[:, 0], label(self.correct, None))),
                          identity=self.identity or REFUTATION)]
