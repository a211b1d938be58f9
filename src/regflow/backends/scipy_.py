"""scipy backend: `solve_ivp` on a jitted vector field (and its Jacobian for implicit methods).

With progress on (`regflow._progress`) one bar runs over paths x time span: each field call
moves it to the time reached (``|t - t0|`` into the current path's span)."""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
from scipy.integrate import solve_ivp

from .._progress import progress_bar
from . import _common
from ._common import DIVERGENCE_BOUND

METHODS = {"dopri5": "RK45", "rk45": "RK45", "rk23": "RK23", "bosh3": "RK23", "dop853": "DOP853",
           "dopri8": "DOP853", "radau": "Radau", "bdf": "BDF", "lsoda": "LSODA"}
IMPLICIT = ("Radau", "BDF", "LSODA")


@functools.lru_cache(maxsize=256)
def _compiled(vector_field):
    f = jax.jit(lambda t, y, args: vector_field(t, y, args))
    jac = jax.jit(jax.jacfwd(lambda t, y, args: vector_field(t, y, args), argnums=1))
    return f, jac


#: Accepted steps of one solve, as for diffrax: a solve that needs more stops as failed.
MAX_STEPS = _common.MAX_STEPS
#: A solve also stops after this many accepted steps in a row that advanced time by less than
#: `STALL_RTOL` of the time span (LSODA can take accepted steps that no longer move) ...
STALL_LIMIT, STALL_RTOL = 1000, 1e-13
#: ... and after this many field evaluations since the last accepted step (LSODA can retry one
#: step forever).  It has diverged if a value of the field or the state was not finite, else failed.
EVALS_PER_STEP_LIMIT = 10_000
#: A solve stopped inside a step is redone up to its last accepted time less these fractions
#: of the time it had covered, the first that gets there (ending right at a stall can stall again).
REDO_BACKOFF = (0.0, 1e-9, 1e-6, 1e-3)
#: A progress bar appears only once a solve has run this many seconds.
PROGRESS_DELAY = 1.0


@functools.lru_cache(maxsize=256)
def _compiled_event(g):
    return jax.jit(g)


class _UserEvent:
    """The run's `regflow.Event` as solve_ivp calls it: ``g(y) = q(y, args) - level``."""

    def __init__(self, event):
        g, self.params, self.direction, self.terminal = event
        self.g = _compiled_event(g)

    def __call__(self, t, y):
        return float(self.g(jnp.asarray(y), self.params))


class _Stuck(Exception):
    """The solve cannot go on inside a step (`EVALS_PER_STEP_LIMIT`, or a non-finite Jacobian)."""


class _Field:
    """The jitted field as scipy calls it, and the terminal event that watches the solve.

    The event is called once per accepted step (and while locating its own root): it ends the
    solve, keeping every save made so far, when the state passes `DIVERGENCE_BOUND` or is not
    finite, or the steps stall or exceed `MAX_STEPS`; ``stop`` then says why."""

    def __init__(self, f, jac, args, t0, span, tick=None):
        # span = t_end - t0 < 0 for a backward run: "later" means smaller t (``sign``)
        self.f, self.jac, self.args, self.span, self.sign = f, jac, args, abs(span), 1.0 if span >= 0 else -1.0
        self.nonfinite, self.since, self.accepted, self.stalls, self.steps = False, 0, t0, 0, 0
        self.stop = None  # None (the bound, or not stopped), "diverged" or "stuck"
        self.t0, self.tick = t0, tick  # tick(|t - t0|): the progress bar, or None

    def __call__(self, t, y):
        if self.tick is not None:
            self.tick(abs(t - self.t0))
        return self.evaluate(t, y)

    def evaluate(self, t, y):
        out = np.asarray(self.f(t, jnp.asarray(y), self.args))
        self.since += 1
        if not np.isfinite(out).all():
            self.nonfinite = True
        if self.since > EVALS_PER_STEP_LIMIT:
            raise _Stuck()
        return out

    def jacobian(self, t, y):
        out = np.asarray(self.jac(t, jnp.asarray(y), self.args))
        if not np.isfinite(out).all():  # implicit methods would fail inside LU with a numpy error
            self.nonfinite = True
            raise _Stuck()
        return out

    def event(self, t, y):
        if self.stop is not None:  # locating the stop: the step that triggered it
            return 1.0 if self.sign * (t - self.stop_t) < 0 else -1.0
        if not np.isfinite(y).all():  # LSODA steps on through NaN
            self.nonfinite, self.stop, self.stop_t = True, "diverged", t
            return -1.0
        self.stalls = self.stalls + 1 if self.sign * (t - self.accepted) <= STALL_RTOL * self.span else 0
        self.steps += 1
        if self.stalls > STALL_LIMIT or self.steps > MAX_STEPS:
            self.stop, self.stop_t = "stuck", t
            return -1.0
        self.accepted, self.since = (max if self.sign > 0 else min)(t, self.accepted), 0
        return DIVERGENCE_BOUND - np.max(np.abs(y))

    event.terminal = True


class _Ticker:
    """Moves the bar to ``base + elapsed`` (never back: rejected steps retry earlier times)."""

    def __init__(self, bar, span):
        self.bar, self.span, self.base = bar, span, 0.0

    def __call__(self, elapsed):
        n = self.base + min(elapsed, self.span)
        if n > self.bar.n:
            self.bar.update(n - self.bar.n)

    def next_path(self, p):
        self.base = p * self.span
        self(0.0)


def _solve_one(problem, f, jac, y0, t1, ts, tick=None):
    """One path up to ``t1`` (saving at ``ts``): ``(sol, stop time (inf if it reached t1 or
    stopped at the run's terminal event), whether the field or the state was non-finite)``.

    A solve stuck inside a step (`_Stuck`, or an implicit step's linear algebra meeting NaN) is
    redone up to its last accepted step (or a little earlier, `REDO_BACKOFF`); ``sol`` is None
    if it stops at the start."""
    method = METHODS[problem.method]
    user = [] if problem.event is None else [_UserEvent(problem.event)]

    def run(field, t_end, t_eval):
        options = {"jac": field.jacobian} if method in IMPLICIT else {}
        if problem.dt is not None:
            options["first_step"] = min(problem.dt, abs(t_end - problem.t0))
        with np.errstate(all="ignore"):
            return solve_ivp(field, (problem.t0, t_end), y0, method=method, t_eval=t_eval, rtol=problem.rtol,
                             atol=problem.atol, events=[field.event, *user], **options)

    field = _Field(f, jac, problem.args, problem.t0, problem.t1 - problem.t0, tick)
    try:  # (sol.stuck: the event ended a solve that stalled or spent its steps)
        sol = run(field, t1, ts)
        sol.stuck = field.stop == "stuck"
        if sol.status == 1 and len(sol.t_events[0]):
            return sol, float(sol.t_events[0][0]), field.nonfinite
        if sol.status == 1:  # the run's own terminal event
            return sol, np.inf, field.nonfinite
        return sol, (np.inf if sol.status == 0 else field.accepted), field.nonfinite
    except _Stuck:
        pass
    except ValueError as err:  # an implicit step's LU meeting NaN, or a stop the event cannot place
        if field.stop is None and "infs or NaNs" not in str(err):
            raise
        field.nonfinite = field.nonfinite or field.stop is None
    for back in REDO_BACKOFF:
        end = field.accepted - back * (field.accepted - problem.t0)
        if field.sign * (end - problem.t0) <= 0:
            break
        try:
            sol = run(_Field(f, jac, problem.args, problem.t0, end - problem.t0, tick), end,
                      None if ts is None else ts[field.sign * (ts - end) <= 0])
        except (_Stuck, ValueError):
            continue
        sol.status, sol.stuck = -1, True
        return sol, field.accepted, field.nonfinite
    return None, problem.t0, field.nonfinite


def solve(problem):
    """Returns saved times, states ``(paths, n, dim)``, each path's divergence time, whether it
    was a solver failure, and the function/Jacobian evaluation counts.  Paths whose field is not
    finite at the start are not solved: they diverge there.  The progress bar (if on) is closed
    on every exit."""
    span = abs(problem.t1 - problem.t0)
    with progress_bar(len(problem.y0) * span, "time", problem.progress, unit="t", delay=PROGRESS_DELAY,
                      bar_format="{l_bar}{bar}| {n:.3g}/{total:.3g} [{elapsed}<{remaining}]") as bar:
        return _solve(problem, _Ticker(bar, span) if not bar.disable else None)


def _solve(problem, ticker):
    f, jac = _compiled(problem.system.vector_field)
    args, ts = problem.args, problem.ts
    t_out, ys, div_t, failed = None, [], [], []
    event_t, event_y = [], []
    stats = {"num_steps": 0, "nfev": 0, "njev": 0}
    for p, y0 in enumerate(problem.y0):
        if ticker is not None:
            ticker.next_path(p)
        with np.errstate(all="ignore"):
            start_finite = np.isfinite(np.asarray(f(problem.t0, jnp.asarray(y0), args))).all()
        sol, stop, nonfinite = _solve_one(problem, f, jac, y0, problem.t1, ts, ticker) if start_finite else (
            None, problem.t0, True)
        if sol is None:  # stopped before its first accepted step
            t_path = np.array([problem.t0]) if ts is None else ts
            y_path = np.full((len(t_path), len(y0)), np.nan)
            y_path[t_path == problem.t0] = y0
            t_out = t_path if ts is None else ts
            div_t.append(stop)
            failed.append(not nonfinite)
            ys.append(y_path)
            event_t.append(np.zeros(0))
            event_y.append(np.zeros((0, len(y0))))
            continue
        if problem.event is not None:
            event_t.append(np.asarray(sol.t_events[1]))
            event_y.append(np.asarray(sol.y_events[1]).reshape(-1, len(y0)))
        stats["nfev"] += int(sol.nfev)
        stats["njev"] += int(sol.njev)
        stats["num_steps"] += len(sol.t) - 1 if ts is None else 0
        t_path, y_path = sol.t, sol.y.T
        if ts is None:
            t_out = t_path
        else:  # pad the saves a stopped run did not reach
            t_out = ts
            y_path = np.vstack([y_path, np.full((len(ts) - len(y_path), y_path.shape[1]), np.nan)])
        div_t.append(stop)
        failed.append(bool(np.isfinite(stop) and not nonfinite and (sol.status != 1 or sol.stuck)))
        ys.append(y_path)
    if ticker is not None:
        ticker.next_path(len(problem.y0))
    if ts is not None:
        del stats["num_steps"]  # scipy does not report the steps it took between saves
    events = None if problem.event is None else (event_t, event_y)
    return t_out, np.stack(ys), np.array(div_t), np.array(failed), stats, events

