r"""Events: stop (or record) a flow where a quantity crosses a level.

An event watches :math:`g(y) = q(y, \text{args}) - \text{level}` along the solve and fires where
:math:`g` changes sign between two steps; its time is found by a root finder on the solver's
own interpolant (diffrax: ``dfx.Event`` with an ``optimistix`` Newton solve; scipy:
``solve_ivp(events=...)``).  ``direction=+1`` fires only when :math:`g` goes from negative to
positive in the order of integration (``-1`` positive to negative, ``0`` either).  A terminal
event ends the run there: ``traj.status`` reads ``"event at t=..."`` and the last saved state is
the state at the event.  A non-terminal event (scipy only) records every crossing and the run
goes on to ``t1``.  SDE backends have no events (a Brownian path crosses a level infinitely
often near its first crossing).

Example
-------
>>> import regflow as rf, jax.numpy as jnp
>>> decay = rf.ODE(lambda t, y, a: -y)
>>> traj = rf.integrate(decay, jnp.ones(1), 5.0, event=rf.Event(lambda y, a: y[0], level=0.5))
>>> round(float(traj.events.t[0]), 6), traj.status      # log 2
(0.693147, 'event at t=0.693147')
"""

from __future__ import annotations

import dataclasses
import functools
import math
from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np

from . import _validate
from ._compiled import bind_quantity, split
from ._tree import flat_value

#: Accuracy of the event time found by diffrax's root finder (Newton on the dense interpolant).
ROOT_RTOL, ROOT_ATOL = 1e-12, 1e-12
DIRECTIONS = (-1, 0, 1)


@dataclasses.dataclass(frozen=True)
class Event:
    r"""Where :math:`q(y, \text{args})` crosses ``level``: a terminal event stops the run there.

    Parameters
    ----------
    quantity : scalar quantity ``q(y, args)`` (the one convention; ``args`` are the system's).
    level : the level crossed (e.g. ``1e-6`` for a loss, ``2 / lr`` for the sharpness).
    direction : ``+1`` upward crossings only, ``-1`` downward only, ``0`` both (in the order
        of integration).
    terminal : stop at the first crossing (every backend with events); ``False`` records
        every crossing and runs on to ``t1`` (``backend="scipy"``).
    """

    quantity: Callable
    level: float = 0.0
    direction: int = 0
    terminal: bool = True


@dataclasses.dataclass(frozen=True, eq=False)
class EventLog:
    """The crossings of a run's event: ``t`` their times ``(k,)`` (an ensemble:
    ``(paths, k)``, NaN where a path had fewer), ``flat`` the states there ``(k, dim)`` /
    ``(paths, k, dim)``, ``y`` those states in the state's structure; ``terminal`` whether the
    run stopped at its first one."""

    t: np.ndarray
    flat: np.ndarray
    terminal: bool
    structure: Any = None

    @property
    def y(self):
        if self.structure is None or self.structure.trivial:
            return self.flat
        return self.structure.unravel(self.flat)

    @property
    def count(self):
        """Crossings per path: an int, or ``(paths,)`` ints for an ensemble."""
        n = np.sum(np.isfinite(self.t), axis=-1)
        return int(n) if np.ndim(n) == 0 else n

    def __repr__(self):
        return f"EventLog(t={np.array2string(np.asarray(self.t), precision=6)}, terminal={self.terminal})"


def check_event(event, structure, args, system, backend) -> Event | None:
    """``event`` as a validated `Event` (a plain callable ``q(y, args)`` is ``Event(q)``), or None."""
    if event is None:
        return None
    from ._system import SDE

    if not isinstance(event, Event):
        if not callable(event):
            raise TypeError(f"event must be an rf.Event or a quantity q(y, args) whose zero crossing is the event, got "
                            f"{type(event).__name__}")
        event = Event(event)
    if isinstance(system, SDE):
        raise ValueError("event= needs an ODE: the SDE backends ('jax', 'diffrax', 'sdeint') have no events; record "
                         "the quantity with save= and find the first crossing on the saved grid")
    level = _validate.finite_number(event.level, "event level", "0.0")
    if event.direction not in DIRECTIONS or isinstance(event.direction, bool):
        raise ValueError(f"event direction must be -1, 0 or +1, got {event.direction!r}")
    terminal = _validate.flag(event.terminal, "event terminal")
    if not terminal and backend != "scipy":
        raise ValueError("a non-terminal event (terminal=False: record every crossing) needs backend='scipy'; "
                         "diffrax's events stop the solve")
    out = _validate.check_quantity(event.quantity, structure, args, "event")
    leaves = jax.tree_util.tree_leaves(out)
    if len(leaves) != 1 or math.prod(leaves[0].shape) != 1:
        shapes = [tuple(leaf.shape) for leaf in leaves]
        raise ValueError(f"event quantity q(y, args) must return one number, got shapes {shapes}; return a scalar "
                         f"(e.g. loss(y, args), or jnp.max(...) of an array)")
    return dataclasses.replace(event, level=level, terminal=terminal)


def bound(event, structure):
    """``(g, params)``: ``g(y_flat, params) = q(y, args) - level`` as a scalar, static on the
    quantity's structure (the cache key of compiled programs), with ``params = ((dynamic,
    args), level)``; apply ``g`` as ``g(y, (params_of_q, level))``."""
    from ._tree import FlatQuantity

    q = event.quantity if structure.trivial else FlatQuantity(event.quantity, structure)
    dynamic, static = split((q,))
    return _level_fn(bind_quantity(static)), dynamic


@functools.lru_cache(maxsize=512)
def _level_fn(q):
    """``g(y, (q_params, level)) = q(y, q_params) - level`` (one per bound quantity, so cached
    programs keyed on it hit)."""

    def g(y, params):
        return jnp.reshape(q(y, params[0]), ()) - params[1]

    return g


def log(times, states, terminal, structure) -> EventLog:
    """An `EventLog` from per-path lists of crossing times and flat states."""
    k = max((len(t) for t in times), default=0)
    dim = structure.size
    t = np.full((len(times), k), np.nan)
    y = np.full((len(times), k, dim), np.nan)
    for p, (tp, yp) in enumerate(zip(times, states)):
        t[p, :len(tp)] = tp
        if len(tp):
            y[p, :len(tp)] = np.reshape(yp, (len(tp), dim))
    return EventLog(t, y, terminal, structure)


# ----------------------------------------------------------------------------- runs


def bound_event(event, structure, args):
    """``(g, params, direction, terminal)`` of a checked `Event` (`regflow._events.bound`)."""
    if event is None:
        return None
    g, dynamic = bound(event, structure)
    return g, ((dynamic, args), np.float64(event.level)), event.direction, event.terminal


def end_at_event(problem, solution):
    """A single path with ``ts`` that stopped at its terminal event ends at the event: the
    saves it did not reach are dropped and the event's time and state appended."""
    if problem.event is None or not problem.event[3] or problem.ensemble or problem.ts is None:
        return solution
    times, states = solution.events
    if not len(times[0]) or np.isfinite(solution.stop_t[0]):
        return solution
    t_event, y_event = float(times[0][0]), np.asarray(states[0][0])
    sign = np.sign(problem.t1 - problem.t0)
    keep = sign * (np.asarray(solution.t) - t_event) < 0
    ys = np.asarray(solution.ys)[:, keep]
    if problem.save is not None:  # the backend saved values: the quantity at the event state
        q, params = problem.save
        y_event = np.asarray(flat_value(q(jnp.asarray(y_event), params)))
    return solution._replace(t=np.append(np.asarray(solution.t)[keep], t_event),
                             ys=np.concatenate([ys, y_event[None, None, :]], axis=1))


def run_log(problem, solution):
    """``(EventLog or None, per path: stopped at its terminal event)``."""
    if problem.event is None:
        return None, np.zeros(len(solution.stop_t), bool)
    times, states = solution.events
    terminal = problem.event[3]
    record = log(times, states, terminal, problem.structure)
    hit = (np.asarray([len(t) > 0 for t in times]) & ~np.isfinite(np.asarray(solution.stop_t)) if terminal
           else np.zeros(len(times), bool))
    if not problem.ensemble:
        record = dataclasses.replace(record, t=record.t[0], flat=record.flat[0])
    return record, hit
