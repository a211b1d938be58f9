"""diffrax backend: `diffeqsolve`, jitted once per system structure, vmapped over paths.

SDEs are driven by `SharedBrownianPath`, which returns regflow's seeded increments
(`regflow._noise`) on the step grid, so diffrax sees the same noise as the other backends.

With progress on (`regflow._progress`) a solve shows diffrax's `TqdmProgressMeter` (percent of
the time span, the slowest path of an ensemble); progress is part of each compiled program's
key, and a program without it has no host callback.
"""

from __future__ import annotations

import functools
import math

import diffrax as dfx
import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optimistix as optx

from .. import _noise
from .._progress import progress_enabled
from .._tree import flat_value
from .._events import ROOT_ATOL, ROOT_RTOL
from ._common import DIVERGENCE_BOUND, MAX_STEPS, diffusion_matrix, noise_dim, nonfinite_near, start_ok

ODE_SOLVERS = {"dopri5": dfx.Dopri5, "tsit5": dfx.Tsit5, "dop853": dfx.Dopri8, "dopri8": dfx.Dopri8,
               "bosh3": dfx.Bosh3, "kvaerno5": dfx.Kvaerno5, "euler": dfx.Euler, "heun": dfx.Heun}
FIXED_STEP = ("euler", "heun")
SDE_SOLVERS = {"euler": dfx.Euler, "milstein": dfx.ItoMilstein, "heun": dfx.Heun}
#: Without ``ts`` a single path saves the steps it takes into buffers of this many numbers
#: (steps x dim), solving on from the last step when one fills: memory grows with the steps
#: actually taken, never ``MAX_STEPS x dim``.
STEP_BUFFER_ELEMENTS = 2**22
#: Bounds on the steps per buffer.
STEP_BUFFER_STEPS = (16, 4096)
#: With progress on, the bar is refreshed every this many solver steps (a host callback each).
PROGRESS_REFRESH_STEPS = 20


def _meter(progress):
    """``diffeqsolve``'s ``progress_meter`` option: none (diffrax's default) unless ``progress``."""
    return {"progress_meter": dfx.TqdmProgressMeter(refresh_steps=PROGRESS_REFRESH_STEPS)} if progress else {}


class SharedBrownianPath(dfx.AbstractBrownianPath):
    """Brownian path whose increment over grid step ``k`` is `regflow._noise.increment`."""

    key: jax.Array
    grid_t0: jax.Array
    h: jax.Array
    m: int = eqx.field(static=True)
    levy_area: type = eqx.field(static=True, default=dfx.BrownianIncrement)

    @property
    def t0(self):
        return -jnp.inf

    @property
    def t1(self):
        return jnp.inf

    def evaluate(self, t0, t1=None, left=True, use_levy=False):
        k = jnp.round((t0 - self.grid_t0) / self.h).astype(jnp.int64)
        w = _noise.increment(self.key, k, self.h, self.m)
        return dfx.BrownianIncrement(dt=self.h, W=w) if use_levy else w


def _diverged(t, y, args, **kwargs):
    return ~jnp.all(jnp.isfinite(y)) | (jnp.max(jnp.abs(y)) > DIVERGENCE_BOUND)


_EVENT = dfx.Event(_diverged)


def _events(user, params):
    """The divergence event, and the run's own (``user``: ``(g, direction)`` of
    `regflow._events.bound`, applied to ``params``) with a root finder for its time."""
    if user is None:
        return _EVENT
    g, direction = user

    def crossing(t, y, args, **kwargs):
        return g(y, params)

    return dfx.Event((_diverged, crossing), root_finder=optx.Newton(rtol=ROOT_RTOL, atol=ROOT_ATOL),
                     direction=(None, {1: True, -1: False, 0: None}[direction]))
#: Adaptive steps may not shrink below this fraction of the time span: a solve whose steps
#: would (a field that is not finite ahead, a discontinuity it cannot pass) stops at once
#: (``dt_min_reached``) instead of spending its whole step budget on rejected steps.
DTMIN_RTOL = 1e-14
#: Spans beyond this count as this long for ``dtmin``: a flow run to t1 = 1e40 in geometrically
#: growing steps (log-time growth) must still take its first, small steps.
DTMIN_SPAN = 1e4
#: Outcome codes of a path: reached t1; diverged (the state left the finite numbers or
#: passed the bound); the solver failed; the field was not finite at the start (not solved);
#: stopped at the run's terminal event.
OK, DIVERGED, FAILED, BAD_START, EVENT = 0, 1, 2, 3, 4


def _error_norm(x):
    """The controller's RMS error norm, infinite (reject, shrink) where the error is not finite:
    an infinite field otherwise gives a NaN step size that the solver retries until its budget ends."""
    norm = optx.rms_norm(x)
    return jnp.where(jnp.isfinite(norm), norm, jnp.inf)


def _controller(fixed, rtol, atol, span):
    if fixed:
        return dfx.ConstantStepSize()
    dtmin = DTMIN_RTOL * jnp.minimum(jnp.abs(span), DTMIN_SPAN)  # |span|: a backward run's span is negative
    return dfx.PIDController(rtol=rtol, atol=atol, dtmin=dtmin, force_dtmin=False, norm=_error_norm)


def _stats(sol):
    return jnp.stack([sol.stats["num_steps"], sol.stats["num_accepted_steps"], sol.stats["num_rejected_steps"]])


def _saveat(save, ts):
    """The values at ``ts`` (states, or ``save(y, save_params)``; args are ``(params,
    save_params)``) and, separately, the time and state where the solve ended."""
    fn = (lambda t, y, args: y) if save is None else (lambda t, y, args: flat_value(save(y, args[1])))
    return dfx.SaveAt(subs=(dfx.SubSaveAt(ts=ts, fn=fn), dfx.SubSaveAt(t1=True)))


def _ended(sol, user=False):
    """``(saved times, saved values, end time, end state, outcome, stats)`` of one solve."""
    (ts, t_end), (ys, y_end) = sol.ts, sol.ys
    return ts, ys, t_end[0], y_end[0], _outcome(sol, user), _stats(sol)


def _guarded(batch, fields, save):
    """``batch(y0s, args, t0, ...)`` run only on the paths whose fields are finite at the start.

    The others are given the start of a path that is (or, if none is, nothing is solved), so a
    vmapped adaptive solve never spins on a NaN first step; their values are the start's and
    their outcome `BAD_START`."""

    def run(y0s, args, t0, *rest):
        ok = jax.vmap(lambda y: start_ok(fields, t0, y, args[0]))(y0s)
        safe = jnp.where(ok[:, None], y0s, y0s[jnp.argmax(ok)])
        shapes = jax.eval_shape(batch, safe, args, t0, *rest)
        blank = lambda: jax.tree_util.tree_map(lambda s: jnp.zeros(s.shape, s.dtype), shapes)  # noqa: E731
        ts, ys, t_end, y_end, outcome, stats = jax.lax.cond(jnp.any(ok), lambda: batch(safe, args, t0, *rest), blank)
        start = y0s if save is None else jax.vmap(lambda y: flat_value(save(y, args[1])))(y0s)
        ys = jnp.where(ok[:, None, None], ys, start[:, None, :].astype(ys.dtype))
        saves = rest[1] if len(rest) > 1 else None
        if saves is not None:
            ts = jnp.where(ok[:, None], ts, saves[None, :])
        return (ts, ys, jnp.where(ok, t_end, t0), jnp.where(ok[:, None], y_end, y0s),
                jnp.where(ok, outcome, BAD_START), stats)

    return run


@functools.lru_cache(maxsize=256)
def _ode_program(vector_field, method, fixed, max_steps, ensemble, save=None, user=None, progress=False):
    """All paths (vmapped over an ensemble; one path as a batch of one), saving at ``ts`` the
    states or ``save``'s values; ``args`` is ``(params, save_params, event_params)``; ``user``
    the run's terminal event (`_events`); ``progress`` a bar (`_meter`)."""
    term = dfx.ODETerm(lambda t, y, args: vector_field(t, y, args[0]))
    solver = ODE_SOLVERS[method]()

    def solve(y0, args, t0, t1, ts, rtol, atol, dt):
        sol = dfx.diffeqsolve(term, solver, t0, t1, dt if fixed else None, y0, args, saveat=_saveat(save, ts),
                              stepsize_controller=_controller(fixed, rtol, atol, t1 - t0),
                              max_steps=max_steps, event=_events(user, args[2]), throw=False, **_meter(progress))
        return _ended(sol, user is not None)

    if ensemble:
        batch = jax.vmap(solve, in_axes=(0, None, None, None, None, None, None, None))
    else:
        batch = lambda y0, *rest: jax.tree_util.tree_map(lambda x: x[None], solve(y0[0], *rest))  # noqa: E731
    return jax.jit(_guarded(batch, (vector_field,), save))


@functools.lru_cache(maxsize=256)
def _steps_program(vector_field, method, fixed, buffer_steps, first, user=None, progress=False):
    """One path, saving the steps it takes into a buffer of ``buffer_steps``; ``first=False``
    goes on from a previous buffer with its last step size; ``user`` the run's terminal event;
    ``progress`` a bar per buffer (`_meter`)."""
    term = dfx.ODETerm(vector_field)
    solver = ODE_SOLVERS[method]()

    def solve(y0, args, t0, t1, rtol, atol, dt, span, event_params):
        dt0 = dt if (fixed or not first) else None
        sol = dfx.diffeqsolve(term, solver, t0, t1, dt0, y0, args, saveat=dfx.SaveAt(steps=True),
                              stepsize_controller=_controller(fixed, rtol, atol, span), max_steps=buffer_steps,
                              event=_events(user, event_params), throw=False, **_meter(progress))
        more = sol.result == dfx.RESULTS.max_steps_reached
        return sol.ts, sol.ys, jnp.where(more, -1, _outcome(sol, user is not None)), _stats(sol)

    if not first:
        return jax.jit(solve)

    def guarded(y0, args, t0, *rest):
        ok = start_ok((vector_field,), t0, y0, args)
        shapes = jax.eval_shape(solve, y0, args, t0, *rest)
        blank = lambda: jax.tree_util.tree_map(  # noqa: E731
            lambda s: jnp.full(s.shape, jnp.inf if jnp.issubdtype(s.dtype, jnp.floating) else 0, s.dtype), shapes)
        ts, ys, outcome, stats = jax.lax.cond(ok, lambda: solve(y0, args, t0, *rest), blank)
        return ts, ys, jnp.where(ok, outcome, BAD_START), jnp.where(ok, stats, 0)

    return jax.jit(guarded)


def _outcome(sol, user=False):
    """`OK`: reached t1; `DIVERGED`: left the finite numbers (the divergence event);
    `FAILED`: the solver could not go on; `EVENT`: the run's own event (``user``) stopped it."""
    stopped = DIVERGED if not user else jnp.where(sol.event_mask[1] & ~sol.event_mask[0], EVENT, DIVERGED)
    return jnp.where(sol.result == dfx.RESULTS.successful, OK,
                     jnp.where(sol.result == dfx.RESULTS.event_occurred, stopped, FAILED))


@functools.lru_cache(maxsize=256)
def _sde_program(drift, diffusion, noise, method, m, progress=False):
    solver = SDE_SOLVERS[method]()

    def solve(y0, key, args, grid, saves):
        path = SharedBrownianPath(key, grid[0], grid[1] - grid[0], m)
        terms = dfx.MultiTerm(dfx.ODETerm(drift),
                              dfx.ControlTerm(lambda t, y, a: diffusion_matrix(noise, diffusion(t, y, a)), path))
        sol = dfx.diffeqsolve(terms, solver, grid[0], grid[-1], None, y0, args,
                              saveat=_saveat(None, saves), stepsize_controller=dfx.StepTo(ts=grid),
                              max_steps=grid.shape[0], event=_EVENT, throw=False, **_meter(progress))
        ts, ys, t_end, y_end, outcome, stats = _ended(sol)
        ok = start_ok((drift, diffusion), grid[0], y0, args)  # fixed steps cannot spin: solved anyway
        return ts, ys, jnp.where(ok, t_end, grid[0]), y_end, jnp.where(ok, outcome, BAD_START), stats

    return jax.jit(jax.vmap(solve, in_axes=(0, 0, None, None, None)))


def solve(problem):
    """Returns saved times, states ``(paths, n, dim)``, each path's stop time and failure flag,
    and the solver statistics (a progress bar while solving if `progress_enabled`)."""
    y0 = jnp.asarray(problem.y0)
    progress = progress_enabled(problem.progress)
    out = _solve(problem, y0, progress)
    if progress:
        jax.effects_barrier()  # the bar's last callbacks have run
    return out


def _solve(problem, y0, progress):
    from .._system import SDE

    if isinstance(problem.system, SDE):
        system = problem.system
        m = noise_dim(system, problem.y0[0], problem.t0, problem.args)
        n = round((problem.t1 - problem.t0) / problem.dt)
        grid = jnp.asarray(problem.t0 + problem.dt * np.arange(n + 1))
        program = _sde_program(system.drift, system.diffusion, system.noise, problem.method, m, progress)
        keys = _noise.path_keys(problem.seed, y0.shape[0])
        ts, ys, *rest = program(y0, keys, problem.args, grid, jnp.asarray(problem.ts))
        ys = np.array(ys)  # a save at t0 is the start (diffrax interpolates it from a first step that may be NaN)
        ys[:, np.asarray(problem.ts) == problem.t0] = problem.y0[:, None, :]
        return _finish(problem, None, ts, ys, *rest)
    fixed = problem.method in FIXED_STEP
    max_steps = MAX_STEPS if not fixed else max(MAX_STEPS, math.ceil(abs(problem.t1 - problem.t0) / problem.dt) + 1)
    dt = 0.0 if problem.dt is None else math.copysign(problem.dt, problem.t1 - problem.t0)  # backward: dt0 < 0
    if problem.ts is None:
        return _solve_steps(problem, fixed, max_steps, dt, progress)
    save, save_params = problem.save or (None, None)
    user, event_params = _user_event(problem)
    program = _ode_program(problem.system.vector_field, problem.method, fixed, max_steps, problem.ensemble, save,
                           user, progress)
    out = program(y0, (problem.args, save_params, event_params), problem.t0, problem.t1, jnp.asarray(problem.ts),
                  problem.rtol, problem.atol, dt)
    return _finish(problem, problem.system.vector_field, *out)


def _user_event(problem):
    """``((g, direction), params)`` of the run's terminal event, or ``(None, None)``."""
    if problem.event is None:
        return None, None
    g, params, direction, _ = problem.event
    return (g, direction), params


def _finish(problem, field, ts, ys, t_end, y_end, outcome, stats):
    """Saved times, values (unreached saves NaN), stop times, failure flags, statistics.

    A failed adaptive solve whose field is not finite at or just beyond where it stopped
    (`regflow.backends._common.nonfinite_near`) diverged there: it is not reported as a failure."""
    ts, ys, t_end, outcome = np.asarray(ts), np.asarray(ys), np.asarray(t_end), np.asarray(outcome)
    saves = np.asarray(problem.ts)
    kept = ys.copy()
    kept[ts != saves[None, :]] = np.nan
    stop = np.where((outcome == OK) | (outcome == EVENT), np.inf, t_end)
    failed = outcome == FAILED
    events = None
    if problem.event is not None:
        hit = outcome == EVENT
        y_end = np.asarray(y_end)
        events = ([t_end[p:p + 1] if hit[p] else np.zeros(0) for p in range(len(hit))],
                  [y_end[p:p + 1] if hit[p] else np.zeros((0, y_end.shape[-1])) for p in range(len(hit))])
    if field is not None and failed.any():
        near = nonfinite_near(field, t_end[failed], np.asarray(y_end)[failed], problem.args,
                              problem.t1 - problem.t0)
        failed[np.flatnonzero(failed)[near]] = False
    return saves, kept, stop, failed, _stats_dict(np.asarray(stats)), events


def _stats_dict(stats):
    """Solver statistics summed over paths: steps, accepted, rejected."""
    total = stats.reshape(-1, 3).sum(axis=0)
    return {"num_steps": int(total[0]), "num_accepted_steps": int(total[1]), "num_rejected_steps": int(total[2])}


def _solve_steps(problem, fixed, max_steps, dt, progress=False):
    """One path without ``ts``: the steps it takes, buffer after buffer (`STEP_BUFFER_ELEMENTS`)."""
    dim = problem.y0.shape[1]
    lo, hi = STEP_BUFFER_STEPS
    buffer_steps = int(np.clip(STEP_BUFFER_ELEMENTS // dim, lo, hi))
    t_parts, y_parts, stats = [np.array([problem.t0])], [problem.y0[:1]], np.zeros(3)
    t, y, step, first = problem.t0, jnp.asarray(problem.y0[0]), dt, True
    span, end = problem.t1 - problem.t0, problem.t0
    user, event_params = _user_event(problem)
    while True:
        program = _steps_program(problem.system.vector_field, problem.method, fixed, buffer_steps, first, user,
                                 progress)
        ts, ys, outcome, st = program(y, problem.args, t, problem.t1, problem.rtol, problem.atol, step, span,
                                      event_params)
        ts, ys, outcome = np.asarray(ts), np.asarray(ys), int(outcome)
        stats += np.asarray(st)
        reached = np.isfinite(ts)
        end = float(ts[reached][-1]) if reached.any() else end
        keep = reached & np.all(np.isfinite(ys), axis=-1)
        t_parts.append(ts[keep])
        y_parts.append(ys[keep])
        taken = int(stats[0])
        if outcome != -1 or not keep.any() or taken >= max_steps:
            break
        if keep.sum() >= 2:
            step = float(ts[keep][-1] - ts[keep][-2])
        t, y, first = float(ts[keep][-1]), jnp.asarray(ys[keep][-1]), False
    t_all, y_all = np.concatenate(t_parts), np.concatenate(y_parts)
    distinct = np.append(np.diff(t_all) != 0, True)  # with a real-valued event diffrax saves the last step twice
    t_all, y_all = t_all[distinct], y_all[distinct]
    outcome = FAILED if outcome == -1 else outcome
    stop = {OK: np.inf, BAD_START: problem.t0, DIVERGED: end, EVENT: np.inf}.get(outcome, t_all[-1])
    failed = outcome == FAILED and not nonfinite_near(problem.system.vector_field, t_all[-1:], y_all[-1:],
                                                      problem.args, span)[0]
    events = None
    if problem.event is not None:
        hit = outcome == EVENT
        events = ([t_all[-1:] if hit else np.zeros(0)], [y_all[-1:] if hit else np.zeros((0, dim))])
    return t_all, y_all[None], np.array([stop]), np.array([failed]), _stats_dict(stats), events
