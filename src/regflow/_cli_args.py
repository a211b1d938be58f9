"""What ``regflow``'s flags accept: typed readers for argparse and for ``--set``, ``--y0``, limits.

A reader raises `argparse.ArgumentTypeError` (argparse then names the flag and exits with the
usage status) or `UsageError` (a message naming the flag and the fix).
"""

from __future__ import annotations

import argparse
import inspect
import json
import math

import numpy as np

from ._tree import is_number_list

#: Words ``--set`` reads as a bool parameter's True and False.
TRUE_WORDS = ("1", "true", "yes", "on")
FALSE_WORDS = ("0", "false", "no", "off")
#: Seeds are 64-bit integers (``regflow._noise.root_key``).
SEED_RANGE = (-(2**63), 2**63)


class UsageError(Exception):
    """The command line asks for something that cannot be done: ``regflow`` exits with status 2."""


def positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r} (e.g. 100)") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {value} (e.g. 100)")
    return value


def positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive number, got {text!r} (e.g. 2.5)") from None
    if not (math.isfinite(value) and value > 0):
        raise argparse.ArgumentTypeError(f"must be a positive finite number, got {text!r} (e.g. 2.5)")
    return value


def seed(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer seed, got {text!r} (e.g. 0)") from None
    if not SEED_RANGE[0] <= value < SEED_RANGE[1]:
        raise argparse.ArgumentTypeError(f"must fit in 64 bits (-2**63 <= seed < 2**63), got {value}")
    return value


def limits(text: str) -> tuple[float, float]:
    """``"lo,hi"`` -> ``(lo, hi)`` with ``lo < hi``, both finite."""
    parts = text.split(",")
    try:
        lo, hi = (float(p) for p in parts)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected two numbers LO,HI, got {text!r} (e.g. -2,2)") from None
    if not (math.isfinite(lo) and math.isfinite(hi) and lo < hi):
        raise argparse.ArgumentTypeError(f"expected finite LO < HI, got {text!r} (e.g. -2,2)")
    return lo, hi


def state(text: str):
    """A start: numbers separated by commas (``0.3,1.6``) or JSON (``[0.3, 1.6]``,
    ``{"W1": [[1, 0]], "b": [0.5]}``) -> an array or a pytree of float64 arrays."""
    example = '0.3,1.6 or [0.3, 1.6] or {"W": [[1, 0], [0, 1]]}'
    text = text.strip()
    try:
        value = json.loads(text) if text[:1] in "[{" else [float(p) for p in text.split(",")]
    except ValueError as error:
        raise argparse.ArgumentTypeError(f"expected numbers separated by commas or JSON, e.g. {example}; "
                                         f"could not read {text!r} ({error})") from None
    try:
        return _arrays(value)
    except (TypeError, ValueError) as error:
        raise argparse.ArgumentTypeError(f"{error}; e.g. {example}") from None


def _arrays(value):
    if isinstance(value, dict):
        if not value:
            raise ValueError("an empty dict is not a state")
        return {str(k): _arrays(v) for k, v in value.items()}
    if is_number_list(value) or isinstance(value, (int, float)) and not isinstance(value, bool):
        try:
            array = np.asarray(value, dtype=np.float64)
        except ValueError:
            raise ValueError(f"the lists {value!r} are ragged; a leaf must be a rectangular array") from None
        if not np.all(np.isfinite(array)):
            raise ValueError(f"a start must be finite, got {value!r}")
        return array
    if isinstance(value, list) and value:
        return [_arrays(v) for v in value]
    raise ValueError(f"a state holds numbers, lists of numbers and dicts of them, not {value!r}")


def parameters(label: str, defaults: dict, pairs) -> dict:
    """``--set`` strings ``k=v`` -> the parameters they change, each read as the type of its
    default (an int, float, bool or str; a parameter without a default reads JSON, else text)."""
    listing = ", ".join(f"{k}={_shown(v)}" for k, v in defaults.items()) or "none"
    params = {}
    for pair in pairs or ():
        key, eq, text = pair.partition("=")
        key = key.strip()
        if not eq or not key:
            raise UsageError(f"--set takes KEY=VALUE, e.g. --set lr=0.1; got {pair!r}")
        if key not in defaults:
            raise UsageError(f"--set {pair}: {label} has no parameter {key!r}; its parameters: {listing}")
        if key in params:
            raise UsageError(f"--set {key} is given twice; give each parameter once")
        params[key] = _typed(key, defaults[key], text)
    return params


def _typed(key, default, text):
    kind = type(default)
    if kind is bool:
        if text.lower() in TRUE_WORDS + FALSE_WORDS:
            return text.lower() in TRUE_WORDS
        raise UsageError(f"--set {key}: expected a bool ({'/'.join(TRUE_WORDS)} or {'/'.join(FALSE_WORDS)}), "
                         f"got {text!r}")
    if kind in (int, float):
        try:
            value = kind(text)
        except ValueError:
            raise UsageError(f"--set {key}: expected {'an int' if kind is int else 'a float'} like its default "
                             f"{default!r}, got {text!r}") from None
        if kind is float and not math.isfinite(value):
            raise UsageError(f"--set {key}: expected a finite float, got {text!r}")
        return value
    if kind is str:
        return text
    try:
        return json.loads(text)
    except ValueError:
        return text


def _shown(default):
    return "(required)" if default is inspect.Parameter.empty else repr(default)
