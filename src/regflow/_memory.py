r"""Memory a run needs, estimated before anything is allocated.

A run's memory is dominated by what it saves, ``paths x saved times x width`` float64 numbers
(``width`` the state's dimension, or that of ``save=q``), which exists on the device and again on
the host, plus a few copies of every path's state while it is solved and the noise drawn ahead.
A request whose estimate exceeds `limit` is refused with the argument to change and by how much,
instead of failing inside XLA or numpy (an abort, or ``MemoryError: Unable to allocate 72.8 TiB``).
"""

from __future__ import annotations

import functools
import math
import os

#: A run may use at most this fraction of the machine's physical memory.
MEMORY_FRACTION = 0.5
#: Assumed physical memory where the operating system does not say (``os.sysconf``).
FALLBACK_PHYSICAL_BYTES = 8 * 10**9
#: Bytes per saved number and per state entry (float64).
BYTES = 8
#: Copies of the saved output alive at once: the device's and the host's.
OUTPUT_COPIES = 2
#: Copies of each path's state while it is solved: the state, its update and the scheme's
#: intermediates (fixed-step schemes) or the stages, error estimate and interpolation data of
#: an adaptive Runge-Kutta step.
FIXED_STATE_COPIES = 8
ADAPTIVE_STATE_COPIES = 32


@functools.lru_cache(maxsize=1)
def physical_bytes() -> int:
    """The machine's physical memory in bytes."""
    try:
        return int(os.sysconf("SC_PAGE_SIZE")) * int(os.sysconf("SC_PHYS_PAGES"))
    except (AttributeError, ValueError, OSError):
        return FALLBACK_PHYSICAL_BYTES


def limit() -> int:
    """Most bytes one run may need: `MEMORY_FRACTION` of `physical_bytes`."""
    return int(MEMORY_FRACTION * physical_bytes())


def human(n: float) -> str:
    """``2.4 TB``: bytes in decimal units."""
    for unit in ("B", "kB", "MB", "GB", "TB", "PB", "EB"):
        if n < 1000 or unit == "EB":
            return f"{n:.3g} {unit}"
        n /= 1000
    return f"{n:.3g} EB"  # pragma: no cover


def count(n: int) -> str:
    """``10**8`` for exact powers of ten, else the digits (``12_500``)."""
    if n >= 10**4 and 10 ** round(math.log10(n)) == n:
        return f"10**{round(math.log10(n))}"
    return f"{n:_}" if n >= 10**4 else str(n)


#: Bytes per saved time besides the values: its time and its step index.
PER_SAVE = 2 * BYTES


def check_run(paths: int, saves: int, width: int, dim: int, *, adaptive: bool, what: str, saves_hint,
              noise_per_path: int = 0, grid: int = 0, grid_hint: str | None = None):
    """Refuse (``ValueError``) a run that needs more than `limit` bytes, naming what to change:

    the saved output (``paths x saves x width``, `OUTPUT_COPIES`), each path's working state
    (``dim`` numbers, `ADAPTIVE_STATE_COPIES` or `FIXED_STATE_COPIES`) and noise
    (``noise_per_path`` bytes), and ``grid`` bytes that grow with the number of steps.
    ``saves_hint(n)`` says how to save at most ``n`` times; ``grid_hint`` how to shrink ``grid``."""
    per_path = BYTES * dim * (ADAPTIVE_STATE_COPIES if adaptive else FIXED_STATE_COPIES) + noise_per_path
    per_save = OUTPUT_COPIES * BYTES * paths * width + PER_SAVE
    need = paths * per_path + saves * per_save + grid
    cap = limit()
    if need <= cap:
        return
    fixes = []
    room = cap - grid - saves * PER_SAVE
    if paths > 1 and room > 0:
        fixes.append(f"reduce paths to at most {count(most(room, per_path + saves * OUTPUT_COPIES * BYTES * width))}"
                     f" (run the rest in batches, e.g. with rf.sweep)")
    room = cap - grid - paths * per_path
    if room > per_save:
        fixes.append(saves_hint(most(room, per_save)))
        if width > 1:
            fixes.append(f"keep a smaller quantity than the {width} numbers of each state with save=q")
    if grid_hint and grid > cap / 4:
        fixes.append(grid_hint)
    if not fixes:
        fixes.append("ask for less: fewer paths, fewer saved times, a smaller state")
    raise ValueError(f"{what} needs about {human(need)}, more than the limit of {human(cap)} "
                     f"({MEMORY_FRACTION:.0%} of this machine's {human(physical_bytes())}); " + "; or ".join(fixes))


def most(cap_bytes: int, per_unit: float, floor: int = 0) -> int:
    """How many units of ``per_unit`` bytes fit in ``cap_bytes`` (at least ``floor``)."""
    return max(floor, int(cap_bytes // max(per_unit, 1)))
