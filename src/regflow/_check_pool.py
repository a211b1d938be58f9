"""Many catalogue entries checked side by side in worker processes (``regflow check all``).

Checking an entry is mostly tracing and compiling its programs, which runs on one core, so
entries are spread over ``jobs`` processes (started with ``spawn``: JAX does not survive a
fork).  Each worker checks its entry by name and, for a report, draws the entry's figures
itself (the method and runs stay in the worker; only rows and markdown come back), so the
result is the one a serial check gives, in catalogue order.
"""

from __future__ import annotations

import multiprocessing
import os
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ProcessPoolExecutor

from .claims import Report

#: Worker processes at most by default (one per core beyond this gains little: each holds
#: its own JAX runtime, ~0.5 GB).
MAX_DEFAULT_JOBS = 4


def default_jobs(entries: int) -> int:
    """Processes for ``entries`` entries: one per core, at most `MAX_DEFAULT_JOBS` and ``entries``."""
    return max(1, min(os.cpu_count() or 1, MAX_DEFAULT_JOBS, entries))


def _checked(name, falsify, directory):
    from .claims import check

    report = check(name, falsify=falsify)
    if directory is None:
        return report, None
    from ._report import entry_section

    return report, entry_section(name, report, directory)


def check_entry(name: str, falsify: bool = False, directory: str | None = None):
    """``(report, section)`` of catalogue entry ``name``: its rows (without the method and runs,
    which stay in this process) and, with a report ``directory``, its section of the report
    (`regflow._report.entry_section`, figures saved there), else None."""
    report, section = _checked(name, falsify, directory)
    return Report(report.rows), section


def check_entries(names: list[str], *, falsify: bool = False, directory: str | None = None, jobs: int = 1,
                  on_start: Callable[[str], None] | None = None) -> Iterator[tuple[str, Report, list | None]]:
    """``(name, report, section)`` per entry of ``names``, in their order, as `check_entry` gives
    them, from ``jobs`` worker processes (``jobs=1``: in this process, the method and runs kept
    on the report).  ``on_start(name)`` is called as the caller starts waiting for each entry.
    An entry's exception is raised when its turn comes; stopping the iteration cancels the
    entries not started."""
    if jobs <= 1:
        for name in names:
            if on_start:
                on_start(name)
            yield (name, *_checked(name, falsify, directory))
        return
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=jobs, mp_context=context) as pool:
        futures: dict[str, Future] = {}
        try:
            for name in names:
                futures[name] = pool.submit(check_entry, name, falsify, directory)
            for name in names:
                if on_start:
                    on_start(name)
                report, section = futures[name].result()
                yield name, report, section
        finally:
            for future in futures.values():
                future.cancel()


__all__ = ["check_entries", "check_entry", "default_jobs"]
