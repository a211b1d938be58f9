"""Progress bars, one switch for all of regflow.

A bar is shown only where someone watches: by default when stderr is a terminal, and
never when the environment variable ``REGFLOW_PROGRESS`` is ``"0"`` (set it in CI or batch
jobs).  ``enabled=True`` or ``False`` overrides both.
"""

from __future__ import annotations

import os
import sys

from tqdm import tqdm

#: Environment variable that turns the default bars off when set to ``"0"``.
ENV_VAR = "REGFLOW_PROGRESS"


def progress_enabled(enabled: bool | None = None) -> bool:
    """Whether a bar is shown: ``enabled`` if it is a bool, else stderr is a TTY and
    ``REGFLOW_PROGRESS`` is not ``"0"``."""
    if enabled is not None and not isinstance(enabled, bool):
        raise TypeError(f"progress must be True, False or None (automatic), got {enabled!r}")
    if enabled is not None:
        return enabled
    if os.environ.get(ENV_VAR, "").strip() == "0":
        return False
    stream = sys.stderr
    try:
        return stream is not None and stream.isatty()
    except (AttributeError, ValueError):  # replaced or closed stream
        return False


def progress_bar(total: int, desc: str, enabled: bool | None = None, **options) -> tqdm:
    """A tqdm bar over ``total`` units, disabled (a silent no-op) unless `progress_enabled`.

    ``options`` go to ``tqdm`` (e.g. ``unit="chunk"``, ``initial=3``).  Use it as a context
    manager so it is closed on errors.

    Example
    -------
    >>> with progress_bar(3, "work", enabled=False, unit="chunk") as bar:
    ...     for _ in range(3):
    ...         bar.update()
    """
    return tqdm(total=total, desc=desc, disable=not progress_enabled(enabled), file=sys.stderr,
                dynamic_ncols=True, **options)
