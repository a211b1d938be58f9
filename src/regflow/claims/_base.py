"""`Claim`, the base of every claim type, and the rules a new claim type follows.

Rules for a new claim type (a frozen dataclass subclassing `Claim`):

1. Its fields are the claim's data (quantities ``q(y, args)``, predictions, tolerances); it holds
   no results.  Defaults for tolerances are named module constants.
2. ``rows(ctx)`` measures the claim on ``ctx.method`` and returns one `Row` per figure, made with
   ``self._row(ctx, ...)`` (which records the source, the erratum grade, the entry's parameters,
   seed and library versions).  Runs come from the `Context` (``ctx.flow()``, ``ctx.map()``,
   ``ctx.memo(key, compute)``), so claims of one entry share them; the claim must measure the
   system in ``ctx.method`` (``flow``, ``map``, ``y0``, ``args``), never a copy of it held
   elsewhere, or falsification (which swaps in perturbed systems) cannot reach it.
3. Every row carries a `Trace` for its figure where there is one to draw.
4. A row that is true by construction (algebra on a printed formula, an identity kept as a
   worked check) is declared with ``identity="why"``; falsification then reports it as such
   instead of as vacuous.
5. Raising is allowed: `check` turns an exception into a failed row that shows the reason.
"""

from __future__ import annotations

import abc
import dataclasses

from .._versions import versions
from ._context import Context
from ._rows import Row

#: How a printed formula that is not the one checked relates to it.
GRADES = ("erratum", "convention", "reading")


@dataclasses.dataclass(frozen=True)
class Claim(abc.ABC):
    """A checkable statement.

    ``source`` cites the paper and equation.  ``erratum`` records what the paper printed when
    that is not what is checked, graded by ``grade``: ``"erratum"`` (the printed formula is
    wrong), ``"convention"`` (it is right in another convention, e.g. of the learning rate or
    the penalty), ``"reading"`` (it is right under another reading of an ambiguous statement).
    ``identity`` (a reason) declares the claim's rows true by construction."""

    source: str = dataclasses.field(default="", kw_only=True)
    erratum: str | None = dataclasses.field(default=None, kw_only=True)
    grade: str | None = dataclasses.field(default=None, kw_only=True)
    name: str | None = dataclasses.field(default=None, kw_only=True)
    identity: str | None = dataclasses.field(default=None, kw_only=True)

    def __post_init__(self):
        if self.grade is not None and self.grade not in GRADES:
            raise ValueError(f"grade must be one of {GRADES}, got {self.grade!r}")
        if self.grade is not None and self.erratum is None:
            raise ValueError("grade grades a printed formula: give it with erratum='what was printed, and the evidence'")

    @abc.abstractmethod
    def rows(self, ctx: Context) -> list[Row]:
        """Measure the claim on ``ctx.method``: one `Row` per figure."""

    @property
    def note(self) -> str:
        """The erratum with its grade, as shown next to the source."""
        if not self.erratum:
            return ""
        return f"{self.grade or 'erratum'}: {self.erratum}"

    def _row(self, ctx: Context, claim, check, measured, tolerance, passed, trace=None, note=None,
             identity=None) -> Row:
        """A row of this claim; ``identity`` declares this one row true by construction."""
        note = self.note if note is None else note
        return Row(ctx.entry, claim, check, self.source, float(measured), tolerance, bool(passed), note, trace,
                   identity=identity or self.identity or "", params=ctx.params, seed=ctx.method.seed,
                   versions=versions())
