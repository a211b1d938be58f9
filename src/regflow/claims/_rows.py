"""What a check produces: a `Row` per measured figure (with the `Trace` its figure draws) and the
`Report` that collects them."""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np

#: Trace kinds the report knows how to draw.
TRACE_KINDS = ("line", "drift", "loglog", "points")


@dataclasses.dataclass(frozen=True, eq=False)
class Trace:
    """What a row measured, for its figure.

    ``x`` (n,) and ``y`` (n,) or (curves, n) are drawn according to ``kind``: ``"line"`` (values
    against time), ``"drift"`` (the change of a conserved quantity relative to its start, against
    time), ``"loglog"`` (an error against a step size), ``"points"`` (a figure per sample point,
    against the point's index).  ``reference`` is what the row compares against, drawn with it:
    ``(x, y, label)`` (a law, a prediction, a bound) or a number (a level)."""

    x: Any
    y: Any
    xlabel: str = "t"
    ylabel: str = ""
    kind: str = "line"
    reference: Any = None

    def __post_init__(self):
        if self.kind not in TRACE_KINDS:
            raise ValueError(f"Trace kind must be one of {TRACE_KINDS}, got {self.kind!r}")
        object.__setattr__(self, "x", np.asarray(self.x, dtype=float))
        object.__setattr__(self, "y", np.asarray(self.y, dtype=float))


@dataclasses.dataclass(frozen=True, eq=False)
class Row:
    """One measured figure of one claim.

    ``identity`` is the declared reason a row is true by construction (or empty).
    ``verdict`` is filled by falsification (`check(..., falsify=True)`): ``"falsified by <name>"``,
    ``"identity: <reason>"`` (declared true by construction), or ``"vacuous"`` (passes on every
    perturbation).  ``params`` and ``seed`` are the entry's parameters and seed; ``versions`` the
    library versions of the run."""

    entry: str
    claim: str
    check: str
    source: str
    measured: float
    tolerance: str
    passed: bool
    note: str = ""
    trace: Trace | None = None
    identity: str = ""
    verdict: str = ""
    params: dict = dataclasses.field(default_factory=dict)
    seed: int | None = None
    versions: dict = dataclasses.field(default_factory=dict)

    @property
    def key(self) -> tuple[str, str, str]:
        """What identifies the row across perturbed runs of the same entry."""
        return (self.entry, self.claim, self.check.split(" (")[0])


def _cell(text) -> str:
    """A markdown table cell: pipes escaped, line breaks folded."""
    text = str(text).replace("\\", "\\\\").replace("|", "\\|").replace("\n", " ")
    return text.replace("*", "\\*").replace("_", "\\_")


@dataclasses.dataclass(frozen=True)
class Report:
    """Rows of `check`: one per measured figure of each claim.  ``runs`` holds, per entry, the
    method checked and the runs its claims shared (``{"method": Method, "flow": Trajectory,
    "map": Trajectory}``, the runs that were made), so a report's figures can draw them without
    building and integrating again (a rebuilt method compiles anew)."""

    rows: tuple[Row, ...]
    runs: dict = dataclasses.field(default_factory=dict, compare=False, repr=False)

    @property
    def passed(self) -> bool:
        return all(r.passed for r in self.rows)

    @property
    def failed(self) -> tuple[Row, ...]:
        return tuple(r for r in self.rows if not r.passed)

    @property
    def vacuous(self) -> tuple[Row, ...]:
        """Rows that passed on every perturbation without being declared identities."""
        return tuple(r for r in self.rows if r.verdict == "vacuous")

    def __add__(self, other: "Report") -> "Report":
        return Report(self.rows + other.rows, {**self.runs, **other.runs})

    def _falsified(self) -> bool:
        return any(r.verdict for r in self.rows)

    def summary(self) -> str:
        """``"N passed, M failed"``, and after falsification the verdict counts."""
        text = f"{sum(r.passed for r in self.rows)} passed, {len(self.failed)} failed"
        if self._falsified():
            falsified = sum(r.verdict.startswith("falsified") for r in self.rows)
            identity = sum(r.verdict.startswith("identity") for r in self.rows)
            text += f"; falsified {falsified}, declared identities {identity}, vacuous {len(self.vacuous)}"
        return text

    def _cells(self, r: Row) -> list[str]:
        cells = [r.entry, r.claim, r.check, f"{r.measured:.3g}", r.tolerance, "PASS" if r.passed else "FAIL"]
        if self._falsified():
            cells.append(r.verdict)
        return cells

    def _head(self) -> list[str]:
        head = ["entry", "claim", "check", "measured", "tolerance", "ok"]
        return head + (["falsification"] if self._falsified() else []) + ["source"]

    def table(self) -> str:
        """A plain-text table, one row per figure."""
        head = self._head()
        body = [self._cells(r) + [r.source + (f"  [{r.note}]" if r.note else "")] for r in self.rows]
        widths = [max(len(str(x)) for x in col) for col in zip(head, *body)]
        line = lambda cells: "  ".join(str(c).ljust(w) for c, w in zip(cells, widths)).rstrip()  # noqa: E731
        return "\n".join([line(head), line("-" * w for w in widths), *map(line, body), self.summary()])

    def to_markdown(self) -> str:
        """A markdown table (cells escaped, so every row renders with all its columns)."""
        head = self._head()
        lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
        for r in self.rows:
            cells = [*self._cells(r), r.source + (f" ({r.note})" if r.note else "")]
            cells = list(map(_cell, cells))
            cells[5] = "PASS" if r.passed else "**FAIL**"
            lines.append("| " + " | ".join(cells) + " |")
        return "\n".join(lines)

    def __str__(self):
        return self.table()
