"""regflow's own compiled loop: fixed-step SDE schemes and map iteration.

One jitted program per system structure (cached), vmapped over paths; increments are
drawn inside the loop from each path's key (never a paths x steps array in memory);
only the requested save indices are stored.  ``y0``, ``args``, seed, ``t0``, ``dt`` and the
save indices are inputs of the program, so changing them does not recompile.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np

from .. import _noise
from .._system import Map
from ._common import DIVERGENCE_BOUND, apply_diffusion, noise_dim

SDE_METHODS = {"euler": "ito", "milstein": "ito", "heun": "stratonovich"}


def _diverged(y):
    return ~jnp.all(jnp.isfinite(y)) | (jnp.max(jnp.abs(y)) > DIVERGENCE_BOUND)


def _run(step, y0, key, save_idx, args, t0, h):
    """One path: iterate ``step`` and keep the states at ``save_idx`` (increasing ints).

    Returns the saved states ``(S, dim)`` and the step at which the path diverged
    (``-1`` if it did not).  A diverged path is frozen and its later saves are NaN."""

    def one_step(k, carry):
        y, div = carry
        y_new = step(k, y, args, key, t0, h)
        bad = _diverged(y_new) & (div < 0)
        div = jnp.where(bad, k + 1, div)
        return jnp.where(div < 0, y_new, y), div

    def segment(carry, target):
        k, y, div = carry
        y, div = jax.lax.fori_loop(k, target, one_step, (y, div))
        saved = jnp.where(div < 0, y, jnp.nan)
        return (target, y, div), saved

    init = (jnp.asarray(0, save_idx.dtype), y0, jnp.asarray(-1, save_idx.dtype))
    (_, _, div), ys = jax.lax.scan(segment, init, save_idx)
    return ys, div


@functools.lru_cache(maxsize=256)
def _program(step):
    """The compiled, path-vectorised program of one step function (cached)."""
    run = functools.partial(_run, step)
    return jax.jit(jax.vmap(run, in_axes=(0, 0, None, None, None, None)))


@functools.lru_cache(maxsize=256)
def sde_step(drift, diffusion, noise, method, m):
    """The step function of a fixed-step scheme; cached so the program is reused."""
    jac_diag = None
    if method == "milstein":
        if noise == "scalar":
            def correction(t, y, args, g):
                return jax.jvp(lambda z: diffusion(t, z, args), (y,), (g,))[1]
        elif noise == "diagonal":
            def correction(t, y, args, g):
                return jnp.diagonal(jax.jacfwd(lambda z: diffusion(t, z, args))(y)) * g
        jac_diag = correction

    def step(k, y, args, key, t0, h):
        t = t0 + k * h
        dw = _noise.increment(key, k, h, m)
        b = drift(t, y, args)
        g = diffusion(t, y, args)
        if method == "euler":
            return y + b * h + apply_diffusion(noise, g, dw)
        if method == "milstein":
            dw_ = dw[0] if noise == "scalar" else dw
            return y + b * h + apply_diffusion(noise, g, dw) + 0.5 * jac_diag(t, y, args, g) * (dw_**2 - h)
        # heun (Stratonovich): predictor-corrector with the same increment
        y_pred = y + b * h + apply_diffusion(noise, g, dw)
        b2 = drift(t + h, y_pred, args)
        g2 = diffusion(t + h, y_pred, args)
        return y + 0.5 * (b + b2) * h + apply_diffusion(noise, 0.5 * (g + g2), dw)

    return step


@functools.lru_cache(maxsize=256)
def map_step(step_fn, stochastic):
    if stochastic:
        return lambda k, y, args, key, t0, h: step_fn(k, y, args, _noise.step_key(key, k))
    return lambda k, y, args, key, t0, h: step_fn(k, y, args)


def solve(problem):
    """Integrate an SDE on the fixed grid of ``problem`` (see `regflow._integrate.Problem`)."""
    system = problem.system
    m = noise_dim(system, problem.y0[0], problem.t0, problem.args)
    step = sde_step(system.drift, system.diffusion, system.noise, problem.method, m)
    return _simulate(step, problem)


def iterate_map(problem):
    system: Map = problem.system
    return _simulate(map_step(system.step, system.stochastic), problem)


def _simulate(step, problem):
    """Run the cached program; returns saved times, states (paths, S, dim), divergence times."""
    keys = _noise.path_keys(problem.seed, problem.y0.shape[0])
    run = _program(step)
    ys, div = run(jnp.asarray(problem.y0), keys, jnp.asarray(problem.save_idx), problem.args,
                  jnp.float64(problem.t0), jnp.float64(problem.dt))
    div = np.asarray(div)
    div_t = np.where(div < 0, np.inf, problem.t0 + div * problem.dt)
    return problem.t0 + problem.dt * problem.save_idx, np.asarray(ys), div_t
