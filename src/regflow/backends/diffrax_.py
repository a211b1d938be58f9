"""diffrax backend: `diffeqsolve`, jitted once per system structure, vmapped over paths.

SDEs are driven by `SharedBrownianPath`, which returns regflow's seeded increments
(`regflow._noise`) on the step grid, so diffrax sees the same noise as the other backends.
"""

from __future__ import annotations

import functools
import math

import diffrax as dfx
import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from .. import _noise
from .._tree import flat_value
from ._common import DIVERGENCE_BOUND, diffusion_matrix, noise_dim

ODE_SOLVERS = {"dopri5": dfx.Dopri5, "tsit5": dfx.Tsit5, "dop853": dfx.Dopri8, "dopri8": dfx.Dopri8,
               "bosh3": dfx.Bosh3, "kvaerno5": dfx.Kvaerno5, "euler": dfx.Euler, "heun": dfx.Heun}
FIXED_STEP = ("euler", "heun")
SDE_SOLVERS = {"euler": dfx.Euler, "milstein": dfx.ItoMilstein, "heun": dfx.Heun}
#: Step budget of one solve.
MAX_STEPS = 2**16
#: Without ``ts`` a single path saves the steps it takes into buffers of this many numbers
#: (steps x dim), solving on from the last step when one fills: memory grows with the steps
#: actually taken, never ``MAX_STEPS x dim``.
STEP_BUFFER_ELEMENTS = 2**22
#: Bounds on the steps per buffer.
STEP_BUFFER_STEPS = (16, 4096)


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


def _controller(fixed, rtol, atol):
    return dfx.ConstantStepSize() if fixed else dfx.PIDController(rtol=rtol, atol=atol)


def _stats(sol):
    return jnp.stack([sol.stats["num_steps"], sol.stats["num_accepted_steps"], sol.stats["num_rejected_steps"]])


def _saveat(save, **where):
    """``SaveAt`` of the states, or of ``save(y, save_params)`` (args are ``(params, save_params)``)."""
    if save is None:
        return dfx.SaveAt(**where)
    return dfx.SaveAt(**where, fn=lambda t, y, args: flat_value(save(y, args[1])))


@functools.lru_cache(maxsize=256)
def _ode_program(vector_field, method, fixed, max_steps, ensemble, save=None):
    """All paths (vmapped over an ensemble; one path as a batch of one), saving at ``ts`` and
    ``t1`` the states or ``save``'s values; ``args`` is ``(params, save_params)``."""
    term = dfx.ODETerm(lambda t, y, args: vector_field(t, y, args[0]))
    solver = ODE_SOLVERS[method]()

    def solve(y0, args, t0, t1, ts, rtol, atol, dt):
        sol = dfx.diffeqsolve(term, solver, t0, t1, dt if fixed else None, y0, args,
                              saveat=_saveat(save, ts=ts, t1=True),
                              stepsize_controller=_controller(fixed, rtol, atol),
                              max_steps=max_steps, event=_EVENT, throw=False)
        return sol.ts, sol.ys, _outcome(sol), _stats(sol)

    if ensemble:
        return jax.jit(jax.vmap(solve, in_axes=(0, None, None, None, None, None, None, None)))
    return jax.jit(lambda y0, *rest: jax.tree_util.tree_map(lambda x: x[None], solve(y0[0], *rest)))


@functools.lru_cache(maxsize=256)
def _steps_program(vector_field, method, fixed, buffer_steps, first):
    """One path, saving the steps it takes into a buffer of ``buffer_steps``; ``first=False``
    goes on from a previous buffer with its last step size."""
    term = dfx.ODETerm(vector_field)
    solver = ODE_SOLVERS[method]()

    def solve(y0, args, t0, t1, rtol, atol, dt):
        dt0 = dt if (fixed or not first) else None
        sol = dfx.diffeqsolve(term, solver, t0, t1, dt0, y0, args, saveat=dfx.SaveAt(steps=True),
                              stepsize_controller=_controller(fixed, rtol, atol), max_steps=buffer_steps,
                              event=_EVENT, throw=False)
        more = sol.result == dfx.RESULTS.max_steps_reached
        return sol.ts, sol.ys, jnp.where(more, -1, _outcome(sol)), _stats(sol)

    return jax.jit(solve)


def _outcome(sol):
    """0: reached t1; 1: left the finite numbers (the divergence event); 2: the solver failed."""
    return jnp.where(sol.result == dfx.RESULTS.successful, 0,
                     jnp.where(sol.result == dfx.RESULTS.event_occurred, 1, 2))


@functools.lru_cache(maxsize=256)
def _sde_program(drift, diffusion, noise, method, m):
    solver = SDE_SOLVERS[method]()

    def solve(y0, key, args, grid, saves):
        path = SharedBrownianPath(key, grid[0], grid[1] - grid[0], m)
        terms = dfx.MultiTerm(dfx.ODETerm(drift),
                              dfx.ControlTerm(lambda t, y, a: diffusion_matrix(noise, diffusion(t, y, a)), path))
        sol = dfx.diffeqsolve(terms, solver, grid[0], grid[-1], None, y0, args,
                              saveat=dfx.SaveAt(ts=saves, t1=True), stepsize_controller=dfx.StepTo(ts=grid),
                              max_steps=grid.shape[0], event=_EVENT, throw=False)
        return sol.ts, sol.ys, _outcome(sol), _stats(sol)

    return jax.jit(jax.vmap(solve, in_axes=(0, 0, None, None, None)))


def solve(problem):
    """Returns saved times, states ``(paths, n, dim)``, each path's stop time and failure flag,
    and the solver statistics."""
    from .._system import SDE

    y0 = jnp.asarray(problem.y0)
    if isinstance(problem.system, SDE):
        system = problem.system
        m = noise_dim(system, problem.y0[0], problem.t0, problem.args)
        n = round((problem.t1 - problem.t0) / problem.dt)
        grid = jnp.asarray(problem.t0 + problem.dt * np.arange(n + 1))
        program = _sde_program(system.drift, system.diffusion, system.noise, problem.method, m)
        keys = _noise.path_keys(problem.seed, y0.shape[0])
        ts, ys, outcome, stats = program(y0, keys, problem.args, grid, jnp.asarray(problem.ts))
        return (*_split(np.asarray(ts), np.asarray(ys), np.asarray(outcome), problem.ts, problem.t0),
                _stats_dict(np.asarray(stats)))
    fixed = problem.method in FIXED_STEP
    max_steps = MAX_STEPS if not fixed else max(MAX_STEPS, math.ceil((problem.t1 - problem.t0) / problem.dt) + 1)
    dt = 0.0 if problem.dt is None else problem.dt
    if problem.ts is None:
        return _solve_steps(problem, fixed, max_steps, dt)
    save, save_params = problem.save or (None, None)
    program = _ode_program(problem.system.vector_field, problem.method, fixed, max_steps, problem.ensemble, save)
    ts, ys, outcome, stats = program(y0, (problem.args, save_params), problem.t0, problem.t1, jnp.asarray(problem.ts),
                                     problem.rtol, problem.atol, dt)
    return (*_split(np.asarray(ts), np.asarray(ys), np.asarray(outcome), problem.ts, problem.t0),
            _stats_dict(np.asarray(stats)))


def _stats_dict(stats):
    """Solver statistics summed over paths: steps, accepted, rejected."""
    total = stats.reshape(-1, 3).sum(axis=0)
    return {"num_steps": int(total[0]), "num_accepted_steps": int(total[1]), "num_rejected_steps": int(total[2])}


def _solve_steps(problem, fixed, max_steps, dt):
    """One path without ``ts``: the steps it takes, buffer after buffer (`STEP_BUFFER_ELEMENTS`)."""
    dim = problem.y0.shape[1]
    lo, hi = STEP_BUFFER_STEPS
    buffer_steps = int(np.clip(STEP_BUFFER_ELEMENTS // dim, lo, hi))
    t_parts, y_parts, stats = [np.array([problem.t0])], [problem.y0[:1]], np.zeros(3)
    t, y, step, first = problem.t0, jnp.asarray(problem.y0[0]), dt, True
    while True:
        program = _steps_program(problem.system.vector_field, problem.method, fixed, buffer_steps, first)
        ts, ys, outcome, st = program(y, problem.args, t, problem.t1, problem.rtol, problem.atol, step)
        ts, ys, outcome = np.asarray(ts), np.asarray(ys), int(outcome)
        stats += np.asarray(st)
        keep = np.isfinite(ts) & np.all(np.isfinite(ys), axis=-1)
        t_parts.append(ts[keep])
        y_parts.append(ys[keep])
        taken = int(stats[0])
        if outcome != -1 or not keep.any() or taken >= max_steps:
            break
        if keep.sum() >= 2:
            step = float(ts[keep][-1] - ts[keep][-2])
        t, y, first = float(ts[keep][-1]), jnp.asarray(ys[keep][-1]), False
    t_all, y_all = np.concatenate(t_parts), np.concatenate(y_parts)
    outcome = 2 if outcome == -1 else outcome
    stop = np.array([np.inf if outcome == 0 else t_all[-1]])
    return t_all, y_all[None], stop, np.array([outcome == 2]), _stats_dict(stats)


def _split(ts, ys, outcome, saves, t0):
    """Separate the extra ``t1=True`` save from ``saves``.  A solve that stops early writes that
    save right after the last time it reached, so the stop time is the last finite entry and
    only slots holding their own save time are kept (the rest become NaN)."""
    saves = np.asarray(saves)
    finite = np.isfinite(ts)
    last = np.where(finite.any(axis=1), finite.shape[1] - 1 - np.argmax(finite[:, ::-1], axis=1), 0)
    stop = np.where(finite.any(axis=1), ts[np.arange(len(ts)), last], t0)
    stop = np.where(outcome == 0, np.inf, stop)
    kept = ys[:, :-1].copy()
    kept[ts[:, :-1] != saves[None, :]] = np.nan
    return saves, kept, stop, outcome == 2
