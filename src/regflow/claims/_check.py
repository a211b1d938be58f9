"""`check`: run a method's claims into a `Report`, and with ``falsify=True`` rerun them on
perturbed systems to see which rows can fail."""

from __future__ import annotations

import dataclasses

from .._catalogue import Entry, Method, catalogue, get_entry
from .._progress import progress_bar
from .._versions import versions
from ._context import Context
from ._perturb import perturbations
from ._rows import Report, Row

#: How many perturbation names a verdict lists.
SHOWN_PERTURBATIONS = 2


def check(target, *, falsify: bool = False, progress: bool | None = False, **params) -> Report:
    """Run the declared claims of a catalogue entry (name, `Entry`), a `Method`, or ``"all"``.

    ``params`` change an entry's parameters.  With ``falsify=True`` every claim is rerun on
    perturbed versions of the method (`rf.Perturbation`: the entry's own and the generic ones
    of `regflow.claims`) and each row gets a verdict: ``"falsified by ..."`` (some perturbation
    makes it fail), ``"identity: ..."`` (declared true by construction) or ``"vacuous"``
    (passes whatever the system).  ``progress`` shows a bar over entries (None: when stderr
    is a terminal).

    Example
    -------
    >>> report = rf.check("scalar_net.gradient_flow")   # doctest: +SKIP
    >>> report.passed                                     # doctest: +SKIP
    True
    """
    if isinstance(target, str) and target == "all":
        if params:
            raise ValueError(f"check('all') takes no entry parameters, got {sorted(params)}")
        report = Report(())
        with progress_bar(len(catalogue()), "check", enabled=progress, unit="entry") as bar:
            for entry in catalogue().values():
                bar.set_postfix_str(entry.name)
                report += check(entry, falsify=falsify)
                bar.update()
        return report
    if isinstance(target, str):
        target = get_entry(target)
    if isinstance(target, Entry):
        full = {**target.params, **params}
        return check_method(target.build(**params), name=target.name, params=full, falsify=falsify)
    if isinstance(target, Method):
        if params:
            raise ValueError(f"a Method has no parameters to change, got {sorted(params)}; build it with them")
        return check_method(target, falsify=falsify)
    raise TypeError(f"check takes a catalogue name, an Entry or an rf.Method, got {type(target).__name__}")


def _claim_rows(ctx: Context) -> list[list[Row]]:
    """Rows of each claim of ``ctx.method`` (a claim that raises gets one failed row with the reason)."""
    out = []
    for claim in ctx.method.claims:
        try:
            out.append(list(claim.rows(ctx)))
        except Exception as error:  # a claim that cannot be evaluated fails, with the reason
            out.append([Row(ctx.entry, type(claim).__name__, f"error: {error}", claim.source, float("nan"), "-",
                            False, params=ctx.params, seed=ctx.method.seed, versions=versions())])
    return out


def check_method(method: Method, *, name: str = "method", params: dict | None = None,
                 falsify: bool = False) -> Report:
    """`check` of one method (``name`` and ``params`` label its rows)."""
    ctx = Context(name, method, params)
    base = _claim_rows(ctx)
    if falsify:
        base = _falsify(method, name, params, base)
    return Report(tuple(row for rows in base for row in rows), {name: {**ctx.shared_runs(), "method": method}})


def _falsify(method, name, params, base):
    """Verdicts for ``base`` (rows per claim) from reruns on every perturbation."""
    caught: dict[tuple[int, int], list[str]] = {}
    for perturbation in perturbations(method):
        try:
            wrong = perturbation.apply(method)
        except Exception:  # a perturbation that does not apply to this method tests nothing
            continue
        for i, rows in enumerate(_claim_rows(Context(name, wrong, params))):
            if any(row.check.startswith("error:") for row in rows):
                continue  # the claim could not be measured (e.g. the perturbed flow diverged): no evidence
            if len(rows) != len(base[i]):  # a different outcome (e.g. no equilibria found): all its rows
                rows = [rows[0]] * len(base[i]) if not all(row.passed for row in rows) else []
            for j, row in enumerate(rows):
                if not row.passed:
                    caught.setdefault((i, j), []).append(perturbation.name)
    judged = []
    for i, rows in enumerate(base):
        out = []
        for j, row in enumerate(rows):
            if row.identity:
                verdict = f"identity: {row.identity}"
            elif (i, j) in caught:
                names = caught[(i, j)]
                more = f" (+{len(names) - SHOWN_PERTURBATIONS})" if len(names) > SHOWN_PERTURBATIONS else ""
                verdict = "falsified by " + ", ".join(names[:SHOWN_PERTURBATIONS]) + more
            else:
                verdict = "vacuous"
            out.append(dataclasses.replace(row, verdict=verdict))
        judged.append(out)
    return judged
