"""regflow's own compiled loop: fixed-step SDE schemes and map iteration.

One jitted program per system structure (cached) runs all paths together; ``y0``, ``args``,
seed, ``t0``, ``dt`` and the save indices are inputs of the program, so changing them does
not recompile.

Where the time goes (3-layer scalar net, 10^4 paths, 2 CPU cores): drawing the normals is
~80-90% of a hand-written scan that calls ``jax.random.normal`` each step (float64 ``erf_inv``
dominates), the Euler-Maruyama update the rest.  So this loop draws the increments in
*blocks*: every ``B`` steps one vectorised call produces the increments of the next ``B``
steps of all paths (`regflow._noise.increment_block`: counter-based Box-Muller pairs, one
Threefry hash per number fused with a transform half as costly as ``erf_inv``).  The numbers
depend only on (path, step, component), not on ``B`` or the number of paths, so every backend
still sees the same increments.  A block is cheaper per number than ``B`` small draws and XLA
spreads it over the cores; its size stays bounded (``NOISE_BLOCK_ELEMENTS``), never a
paths x steps array.  Between draws a plain loop applies the steps, and the states are
written in place into the ``(paths, saves, dim)`` result only at the requested save indices.
"""

from __future__ import annotations

import dataclasses
import functools
import itertools
from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np

from .. import _noise
from .._tree import flat_value
from .._progress import progress_bar
from .._system import Map
from ._common import DIVERGENCE_BOUND, apply_diffusion, noise_dim, start_ok

#: Numbers (steps x paths x noise width) drawn in one block: 8 MiB of float64.
NOISE_BLOCK_ELEMENTS = 2**20
#: Most steps in one block (more gains nothing measurable; see the module docstring).
MAX_BLOCK_STEPS = 64


def _block_steps(paths, width):
    """Steps per noise block for ``paths`` paths drawing ``width`` numbers per step (even, so
    that a block of scalar noise holds whole Box-Muller pairs)."""
    steps = int(np.clip(NOISE_BLOCK_ELEMENTS // max(paths * width, 1), 2, MAX_BLOCK_STEPS))
    return steps - steps % 2


def _diverged(y):
    """Per path: has the state left the finite numbers or passed ``DIVERGENCE_BOUND``?"""
    return ~jnp.all(jnp.abs(y) <= DIVERGENCE_BOUND, axis=-1)


@dataclasses.dataclass(frozen=True)
class _Noise:
    """What a step consumes: ``draw(keys, start, n, h)`` returns a block of all paths' noise
    of steps ``start .. start+n-1``; ``take(block, i)`` gives step ``start + i``'s ``(paths, ...)``;
    ``width`` numbers per path and step (sets the block length)."""

    draw: Callable
    take: Callable
    width: int


#: Live progress bars by run id (a traced input of the program, so progress on or off runs
#: the same compiled program; an id with no bar makes the tick a no-op).
_BARS: dict = {}
#: About this many progress ticks per run.
PROGRESS_TICKS = 100


def _tick(run_id, k):
    bar = _BARS.get(int(run_id))
    if bar is not None:
        bar.update(int(k) - bar.n)


def _run(step, source, save, start_check, y0, key, first_path, save_idx, args, t0, h, run_id, tick_every, save_params):
    """All paths: iterate ``step`` and keep the states at ``save_idx`` (increasing ints).

    ``key`` is the run's root key; path ``p`` (counted from ``first_path``) uses
    ``fold_in(key, p)`` (`regflow._noise`).

    ``step(k, y, args, xi, t0, h)`` advances one path by one step given its noise ``xi`` of
    step ``k`` (from the `_Noise` ``source``).  Returns the saved states ``(paths, S, dim)``
    and the step at which each path diverged (``-1`` if it did not); saves after it are NaN.
    Every ``tick_every`` blocks it reports the step reached to the progress bar ``run_id``.
    With ``save`` (a bound quantity, `regflow._compiled`) it keeps ``save(y, save_params)``
    (flat, per path) instead of the states.  With ``start_check`` (``(t0, y, args) -> bool``) it also
    returns, per path, whether the fields are finite at the start (else all True).
    """
    paths, dim = y0.shape
    n_saves = save_idx.shape[0]
    keys = _noise.keys_of_paths(key, paths, first_path)
    block_steps = _block_steps(paths, source.width)
    step_all = jax.vmap(step, in_axes=(None, 0, None, 0, None, None))
    idx = save_idx.dtype

    def advance(start, end, y, div, block, block_start):
        def one_step(k, carry):
            y, div = carry
            xi = source.take(block, k - block_start)
            y = step_all(k, y, args, xi, t0, h)
            div = jnp.where((div < 0) & _diverged(y), k + 1, div)
            return y, div

        return jax.lax.fori_loop(start, end, one_step, (y, div))

    def chunk(carry):
        """Steps up to the next save or the end of the block, whichever comes first."""
        k, s, y, div, out, block, block_end = carry
        target = save_idx[s]
        end = jnp.minimum(target, block_end)
        y, div = advance(k, end, y, div, block, block_end - block_steps)
        hit = end == target
        # write row s in place: the new state on a save, else what the row already holds
        keep = jax.lax.dynamic_index_in_dim(out, s, 1, keepdims=False)
        value = y if save is None else jax.vmap(lambda x: flat_value(save(x, save_params)))(y)
        saved = jnp.where(hit, jnp.where((div < 0)[:, None], value, jnp.nan), keep)
        out = jax.lax.dynamic_update_index_in_dim(out, saved, s, 1)
        return end, s + hit.astype(idx), y, div, out, block, block_end

    def in_block(carry):
        k, s, *_, block_end = carry
        return (s < n_saves) & (k < block_end)

    def next_block(carry):
        k, s, y, div, out = carry
        jax.lax.cond((k // block_steps) % tick_every == 0, lambda: jax.debug.callback(_tick, run_id, k),
                     lambda: None)
        block = source.draw(keys, k, block_steps, h)
        k, s, y, div, out, _, _ = jax.lax.while_loop(in_block, chunk, (k, s, y, div, out, block, k + block_steps))
        return k, s, y, div, out

    width = dim if save is None else jax.eval_shape(lambda x: flat_value(save(x, save_params)), y0[0]).shape[0]
    out = jnp.zeros((paths, n_saves, width), y0.dtype)
    init = (jnp.asarray(0, idx), jnp.asarray(0, idx), y0, jnp.full((paths,), -1, idx), out)
    _, _, _, div, out = jax.lax.while_loop(lambda c: c[1] < n_saves, next_block, init)
    ok = jnp.ones(paths, bool) if start_check is None else jax.vmap(lambda y: start_check(t0, y, args))(y0)
    return out, div, ok


@functools.lru_cache(maxsize=256)
def _program(step, source, save=None, start_check=None):
    """The compiled program of one step function, noise source, saved quantity and start check (cached)."""
    return jax.jit(functools.partial(_run, step, source, save, start_check))


@functools.lru_cache(maxsize=256)
def sde_start(drift, diffusion):
    """``(t0, y, args) -> bool``: drift and diffusion finite at the start (one path)."""
    return lambda t0, y, args: start_ok((drift, diffusion), t0, y, args)


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

    def step(k, y, args, dw, t0, h):
        t = t0 + k * h
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
def sde_noise(m):
    """Brownian increments ``(paths, m)``, drawn in blocks (`regflow._noise.increment_block`)."""
    return _Noise(lambda keys, start, n, h: _noise.increment_block(keys, start, n, h, m), _noise.block_step, m)


def _take_row(block, i):
    return block[i]


#: Stochastic maps: the step keys ``(paths, 2)``.
STEP_KEYS = _Noise(lambda keys, start, n, h: _noise.block_step_keys(keys, start, n), _take_row, 2)
#: Deterministic maps: nothing.
NO_NOISE = _Noise(lambda keys, start, n, h: jnp.zeros((n, keys.shape[0], 0)), _take_row, 0)


@functools.lru_cache(maxsize=256)
def map_step(step_fn, stochastic):
    if stochastic:
        return lambda k, y, args, key, t0, h: step_fn(k, y, args, key)
    return lambda k, y, args, xi, t0, h: step_fn(k, y, args)


def solve(problem):
    """Integrate an SDE on the fixed grid of ``problem`` (see `regflow._integrate.Problem`)."""
    system = problem.system
    m = noise_dim(system, problem.y0[0], problem.t0, problem.args)
    step = sde_step(system.drift, system.diffusion, system.noise, problem.method, m)
    return _simulate(step, sde_noise(m), problem, sde_start(system.drift, system.diffusion))


def iterate_map(problem):
    system: Map = problem.system
    source = STEP_KEYS if system.stochastic else NO_NOISE
    return _simulate(map_step(system.step, system.stochastic), source, problem)


def _simulate(step, source, problem, start=None):
    """Run the cached program; returns saved times, states (paths, S, dim), divergence times
    (the start's time where ``start`` says the fields are not finite there).

    A progress bar counts steps through a host callback (`_tick`): the program and the
    numbers are the same with or without it."""
    save, save_params = problem.save or (None, None)
    run = _program(step, source, save, start)
    y0 = jnp.asarray(problem.y0)
    total = int(problem.save_idx[-1])
    blocks = -(-total // _block_steps(y0.shape[0], source.width))
    run_id = next(_RUN_IDS)
    with progress_bar(total, "steps", problem.progress, unit="step") as bar:
        if not bar.disable:
            _BARS[run_id] = bar
        try:
            ys, div, ok = run(y0, _noise.root_key(problem.seed), jnp.uint32(0), jnp.asarray(problem.save_idx),
                          problem.args, jnp.float64(problem.t0), jnp.float64(problem.dt), jnp.uint32(run_id),
                          jnp.int64(max(1, blocks // PROGRESS_TICKS)), save_params)
            ys, div, ok = np.asarray(ys), np.asarray(div), np.asarray(ok)
        finally:
            _BARS.pop(run_id, None)
        bar.update(total - bar.n)
    div_t = np.where(ok, np.where(div < 0, np.inf, problem.t0 + div * problem.dt), problem.t0)
    steps = int(np.where(div < 0, problem.save_idx[-1], div).sum())
    return problem.t0 + problem.dt * problem.save_idx, ys, div_t, None, {"num_steps": steps}


_RUN_IDS = itertools.count(1)
