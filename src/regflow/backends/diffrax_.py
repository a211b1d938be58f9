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
from ._common import DIVERGENCE_BOUND, diffusion_matrix, noise_dim

ODE_SOLVERS = {"dopri5": dfx.Dopri5, "tsit5": dfx.Tsit5, "dop853": dfx.Dopri8, "dopri8": dfx.Dopri8,
               "bosh3": dfx.Bosh3, "kvaerno5": dfx.Kvaerno5, "euler": dfx.Euler, "heun": dfx.Heun}
FIXED_STEP = ("euler", "heun")
SDE_SOLVERS = {"euler": dfx.Euler, "milstein": dfx.ItoMilstein, "heun": dfx.Heun}
#: Step budget of one solve.
MAX_STEPS = 2**16


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


@functools.lru_cache(maxsize=256)
def _ode_program(vector_field, method, save_steps, fixed, max_steps):
    term = dfx.ODETerm(vector_field)
    solver = ODE_SOLVERS[method]()

    def solve(y0, args, t0, t1, ts, rtol, atol, dt):
        if fixed:
            controller, dt0 = dfx.ConstantStepSize(), dt
        else:
            controller, dt0 = dfx.PIDController(rtol=rtol, atol=atol), None
        saveat = dfx.SaveAt(steps=True) if save_steps else dfx.SaveAt(ts=ts, t1=True)
        sol = dfx.diffeqsolve(term, solver, t0, t1, dt0, y0, args, saveat=saveat,
                              stepsize_controller=controller, max_steps=max_steps, event=_EVENT, throw=False)
        return sol.ts, sol.ys, _outcome(sol)

    return jax.jit(jax.vmap(solve, in_axes=(0, None, None, None, None, None, None, None)))


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
        return sol.ts, sol.ys, _outcome(sol)

    return jax.jit(jax.vmap(solve, in_axes=(0, 0, None, None, None)))


def solve(problem):
    """Returns saved times, states ``(paths, n, dim)``, each path's stop time and failure flag."""
    from .._system import SDE

    y0 = jnp.asarray(problem.y0)
    if isinstance(problem.system, SDE):
        system = problem.system
        m = noise_dim(system, problem.y0[0], problem.t0, problem.args)
        n = round((problem.t1 - problem.t0) / problem.dt)
        grid = jnp.asarray(problem.t0 + problem.dt * np.arange(n + 1))
        program = _sde_program(system.drift, system.diffusion, system.noise, problem.method, m)
        keys = _noise.path_keys(problem.seed, y0.shape[0])
        ts, ys, outcome = program(y0, keys, problem.args, grid, jnp.asarray(problem.ts))
        return _split(np.asarray(ts), np.asarray(ys), np.asarray(outcome), problem.ts, problem.t0)
    save_steps = problem.ts is None
    fixed = problem.method in FIXED_STEP
    max_steps = MAX_STEPS if not fixed else max(MAX_STEPS, math.ceil((problem.t1 - problem.t0) / problem.dt) + 1)
    program = _ode_program(problem.system.vector_field, problem.method, save_steps, fixed, max_steps)
    ts_in = jnp.zeros(1) if save_steps else jnp.asarray(problem.ts)
    dt = 0.0 if problem.dt is None else problem.dt
    ts, ys, outcome = program(y0, problem.args, problem.t0, problem.t1, ts_in, problem.rtol, problem.atol, dt)
    ts, ys, outcome = np.asarray(ts), np.asarray(ys), np.asarray(outcome)
    if save_steps:  # one path: drop the unused (inf) slots of the step buffer
        keep = np.isfinite(ts[0]) & np.all(np.isfinite(ys[0]), axis=-1)
        t, y = ts[0][keep], ys[:, keep]
        stop = np.where(outcome == 0, np.inf, t[-1] if len(t) else problem.t0)
        return (np.concatenate([[problem.t0], t]), np.concatenate([y0[:, None, :], y], axis=1), stop,
                outcome == 2)
    return _split(ts, ys, outcome, problem.ts, problem.t0)


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
