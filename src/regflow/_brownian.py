r"""The Brownian path an SDE run used, reproduced from its seed (`regflow._noise`).

Every SDE backend drives path ``p`` of a run with seed ``s`` on the grid
:math:`t_k = t_0 + k\,dt` by the increments :math:`\Delta W_k = \sqrt{dt}\, z_k` of the key
``fold_in(PRNGKey(s), p)``, so the run's `Trajectory` (its ``seed``, ``t0``, ``dt`` and noise
width in ``meta``, kept by `Trajectory.save`) is enough to rebuild them:
:math:`W(t_k) = \sum_{j<k} \Delta W_j`, :math:`W(t_0) = 0`.  This is what a strong-order study
against an exact solution :math:`X_t = F(t, x_0, W(t))` needs (`regflow._sde_order`).

Example
-------
>>> import regflow as rf, jax.numpy as jnp
>>> gbm = rf.SDE(lambda t, y, a: 0.5 * y, lambda t, y, a: y, noise="scalar")
>>> traj = rf.integrate(gbm, jnp.ones(1), 1.0, dt=0.01, paths=3, seed=1)
>>> rf.brownian_path(traj).shape, rf.brownian_increments(traj).shape      # W at traj.t; dW per step
((3, 101, 1), (3, 100, 1))
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np

from . import _noise


def _grid(traj):
    """``(keys (paths, 2), t0, dt, m, saved step indices)`` of an SDE run's trajectory."""
    from ._trajectory import Trajectory

    if not isinstance(traj, Trajectory):
        raise TypeError(f"traj must be an rf.Trajectory of an SDE run, got {type(traj).__name__}")
    meta = traj.meta
    if "noise_dim" not in meta or meta.get("dt") is None:
        raise ValueError("traj is not an SDE run of rf.integrate (its meta has no noise_dim and dt); the Brownian path "
                         "is kept for SDEs only")
    seed = meta["seed"]
    seed = seed if isinstance(seed, int) else jnp.asarray(np.asarray(seed, dtype=np.uint32))
    t0, dt, m = float(meta["t0"]), float(meta["dt"]), int(meta["noise_dim"])
    idx = np.round((np.asarray(traj.t) - t0) / dt).astype(np.int64)
    return _noise.path_keys(seed, traj.paths), t0, dt, m, idx


def brownian_increments(traj) -> np.ndarray:
    r"""The increments :math:`\Delta W_k` of every grid step of an SDE run up to its last saved
    time: ``(steps, m)`` for one path, ``(paths, steps, m)`` for an ensemble (the same numbers
    the backend used; ``m`` Brownian motions: 1 for ``noise="scalar"``)."""
    keys, _, dt, m, idx = _grid(traj)
    dw = np.asarray(_increments_program(int(idx[-1]), m)(keys, dt))
    return dw if traj.is_ensemble else dw[0]


def brownian_path(traj) -> np.ndarray:
    r""":math:`W(t)` at the trajectory's saved times ``traj.t``: ``(n, m)`` for one path,
    ``(paths, n, m)`` for an ensemble; :math:`W(t_0) = 0`.  Computed without holding all the
    increments (one step at a time), so long runs with few saves are cheap."""
    keys, _, dt, m, idx = _grid(traj)
    w = np.asarray(_path_program(m)(keys, jnp.asarray(idx), dt))
    return w if traj.is_ensemble else w[0]


@functools.lru_cache(maxsize=64)
def _increments_program(steps, m):
    def run(keys, dt):
        return jnp.swapaxes(_noise.block_increments(keys, 0, steps, dt, m), 0, 1)

    return jax.jit(run)


@functools.lru_cache(maxsize=16)
def _path_program(m):
    """``(keys, save_idx (increasing ints), dt) -> W`` at the save indices, ``(paths, S, m)``."""

    def run(keys, save_idx, dt):
        paths, n_saves = keys.shape[0], save_idx.shape[0]
        normals = jax.vmap(_noise.standard_normals, in_axes=(0, None, None))

        def step(k, carry):
            w, s, out = carry
            w = w + jnp.sqrt(dt) * normals(keys, k, m)
            hit = (s < n_saves) & (save_idx[jnp.minimum(s, n_saves - 1)] == k + 1)
            out = jnp.where(hit, jax.lax.dynamic_update_index_in_dim(out, w, s, 1), out)
            return w, s + hit.astype(s.dtype), out

        out = jnp.zeros((paths, n_saves, m))
        s0 = jnp.sum(save_idx == 0).astype(save_idx.dtype)
        w0 = jnp.zeros((paths, m))
        _, _, out = jax.lax.fori_loop(0, save_idx[-1], step, (w0, s0, out))
        return out

    return jax.jit(run)
