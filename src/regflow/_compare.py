r"""Flow versus map: the error of a discrete method against its flow at matched times, and
the order :math:`p` of agreement, :math:`\max_k |y_k - y(k\,dt)| \approx C\,dt^p`."""

from __future__ import annotations

import dataclasses

import numpy as np

from ._integrate import integrate, iterate

#: Tolerances of the reference flow solve (far below any map's error).
REFERENCE_RTOL, REFERENCE_ATOL = 1e-11, 1e-13


def map_error(map_, flow, y0, t1, *, observable=None) -> float:
    """Largest distance between ``map_`` iterates and the ``flow`` at times ``k * map_.dt <= t1``.

    With ``observable`` (a quantity ``q(y, args)``), compares ``q`` instead of the state."""
    steps = max(1, round(t1 / map_.dt))
    discrete = iterate(map_, y0, steps)
    if not discrete.ok:
        raise ValueError(f"the map diverged ({discrete.status}); choose smaller step sizes or a shorter t1")
    continuous = integrate(flow, y0, discrete.t[-1], ts=discrete.t[1:], rtol=REFERENCE_RTOL, atol=REFERENCE_ATOL)
    a, b = discrete.y[1:], continuous.y
    if observable is not None:
        a, b = discrete.evaluate(observable)[1:], continuous.evaluate(observable)
        return float(np.max(np.abs(a - b)))
    return float(np.max(np.linalg.norm(a - b, axis=-1)))


@dataclasses.dataclass(frozen=True)
class Agreement:
    """Errors of a family of maps against a flow and the fitted order."""

    steps: np.ndarray
    errors: np.ndarray
    order: float


def agreement_order(map_at, flow, y0, t1, steps, *, observable=None) -> Agreement:
    r"""Fit :math:`\log e = p \log dt + c` over maps ``map_at(dt)`` for each ``dt`` in ``steps``.

    Example
    -------
    >>> gd = lambda lr: rf.gradient_descent(loss, lr=lr)           # doctest: +SKIP
    >>> rf.agreement_order(gd, rf.gradient_flow(loss), w0, 1.0, [0.04, 0.02, 0.01]).order  # doctest: +SKIP
    1.0
    """
    steps = np.asarray(steps, dtype=float)
    if steps.size < 2 or np.any(steps <= 0):
        raise ValueError("steps must hold at least two positive step sizes, e.g. [0.04, 0.02, 0.01]")
    errors = np.array([map_error(map_at(h), flow, y0, t1, observable=observable) for h in steps])
    order = float(np.polyfit(np.log(steps), np.log(errors), 1)[0])
    return Agreement(steps=steps, errors=errors, order=order)
