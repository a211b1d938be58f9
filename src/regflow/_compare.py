r"""Flow versus map: the error of a discrete method against its flow at matched times, and
the order :math:`p` of agreement, :math:`\max_k |y_k - y(k\,dt)| \approx C\,dt^p`."""

from __future__ import annotations

import dataclasses
from typing import Callable

import numpy as np
from jax.flatten_util import ravel_pytree

from . import _validate
from ._integrate import integrate, iterate
from ._system import ODE, SDE, Map

#: Tolerances of the reference flow solve (far below any map's error).
REFERENCE_RTOL, REFERENCE_ATOL = 1e-11, 1e-13


def map_error(map_, flow, y0, t1, *, observable=None) -> float:
    """Largest distance between ``map_`` iterates and the ``flow`` at times ``k * map_.dt <= t1``.

    ``y0`` is one state (a vector or a pytree); distances are Euclidean in its flat view.
    With ``observable`` (a quantity ``q(y, args)``), compares ``q`` instead of the state."""
    if not isinstance(map_, Map):
        raise TypeError(f"map_ must be an rf.Map, got {type(map_).__name__}")
    return _errors([map_], _check_flow(flow), y0, _validate.positive_number(t1, "t1"), _check_observable(observable))[0]


def _check_flow(flow):
    if not isinstance(flow, (ODE, SDE)):
        raise TypeError(f"flow must be an rf.ODE (or SDE), got {type(flow).__name__}")
    return flow


def _check_observable(observable):
    return None if observable is None else _validate.check_callable(observable, "observable", _validate.QUANTITY)


def _errors(maps, flow, y0, t1, observable):
    """Errors of several maps against one reference solve of the flow on their times.

    When every map's step count is a multiple of the smallest, all are compared on the coarsest
    map's times, so every run saves as many states and they share one compiled program."""
    counts = [max(1, round(t1 / map_.dt)) for map_ in maps]
    coarse = min(counts)
    common = all(n % coarse == 0 for n in counts)
    project = _projection(maps)
    if project is not None and observable is None:
        observable = _Projected(project)
    runs = []
    for map_, n in zip(maps, counts):
        lift = getattr(map_.step, "lift", None)
        run = iterate(map_, y0 if lift is None else lift(y0), n, every=n // coarse if common else 1)
        if not run.ok:
            raise ValueError(f"the map with dt={map_.dt:g} diverged ({run.status}); choose smaller steps or a shorter t1")
        runs.append(run)
    times = np.unique(np.concatenate([run.t[1:] for run in runs]))
    reference = integrate(flow, y0, times[-1], ts=times, rtol=REFERENCE_RTOL, atol=REFERENCE_ATOL)
    if not reference.ok:
        raise ValueError(f"the flow's reference solve stopped before t1 ({reference.status}); a flow that is not "
                         f"smooth along the run (a sign-like field at a zero gradient) needs a shorter t1 or a smoother field")
    errors = []
    if observable is not None:
        q_ref = reference.evaluate(observable, args=flow.args)
    for run in runs:
        at = np.searchsorted(times, run.t[1:])
        if observable is None:
            errors.append(float(np.max(np.linalg.norm(run.flat[1:] - reference.flat[at], axis=-1))))
        else:
            gap = run.evaluate(observable)[1:] - q_ref[at]
            errors.append(float(np.max(np.linalg.norm(gap, axis=-1) if isinstance(observable, _Projected)
                                        else np.abs(gap))))
    return errors


def _projection(maps):
    """The maps' ``step.project``, when their state carries more than the flow's (an optimizer
    with its moments, `rf.from_optax`): such a step also has ``lift(y0)``, the map's start from
    the flow's, and the two are compared on ``project`` of their states."""
    projects = {getattr(map_.step, "project", None) for map_ in maps}
    if len(projects) > 1:
        raise ValueError("the maps compare different parts of their states (step.project); compare one kind of map")
    return projects.pop()


@dataclasses.dataclass(frozen=True)
class _Projected:
    """The flat view of ``project(y)``, as a quantity ``q(y, args)``."""

    project: Callable

    def __call__(self, y, args):
        return ravel_pytree(self.project(y))[0]


@dataclasses.dataclass(frozen=True)
class Agreement:
    """Errors of a family of maps against a flow and the fitted order."""

    steps: np.ndarray
    errors: np.ndarray
    order: float


def agreement_order(map_at, flow, y0, t1, steps, *, observable=None) -> Agreement:
    r"""Fit :math:`\log e = p \log dt + c` over maps ``map_at(dt)`` for each ``dt`` in ``steps``.
    Errors are the largest distance at the times of the coarsest map (when the step counts are
    multiples of each other; else at each map's own times).

    ``flow`` is a system, solved once on the union of all the maps' times, or a function
    ``dt -> system`` for flows that depend on the step size (modified equations).

    Example
    -------
    >>> gd = lambda lr: rf.gradient_descent(loss, lr=lr)           # doctest: +SKIP
    >>> rf.agreement_order(gd, rf.gradient_flow(loss), w0, 1.0, [0.04, 0.02, 0.01]).order  # doctest: +SKIP
    1.0
    """
    steps = _validate.times(steps, "steps", "[0.04, 0.02, 0.01]")
    if steps.size < 2 or not np.all(np.isfinite(steps)) or np.any(steps <= 0):
        raise ValueError("steps must hold at least two positive step sizes, e.g. [0.04, 0.02, 0.01]")
    if not callable(map_at):
        raise TypeError(f"map_at must be a function dt -> rf.Map, e.g. lambda h: rf.gradient_descent(loss, lr=h); got "
                        f"{type(map_at).__name__}")
    if not (isinstance(flow, (ODE, SDE)) or callable(flow)):
        raise TypeError(f"flow must be an rf.ODE or a function dt -> rf.ODE, got {type(flow).__name__}")
    t1 = _validate.positive_number(t1, "t1")
    observable = _check_observable(observable)
    if isinstance(flow, (ODE, SDE)):
        errors = np.array(_errors([map_at(h) for h in steps], flow, y0, t1, observable))
    else:  # a flow that depends on the step size, e.g. a modified flow
        errors = np.array([_errors([map_at(h)], flow(h), y0, t1, observable)[0] for h in steps])
    order = float(np.polyfit(np.log(steps), np.log(errors), 1)[0])
    return Agreement(steps=steps, errors=errors, order=order)
