"""sdeint backend: `itoEuler`, `itoSRI2`, `stratHeun`, `stratSRS2`, one path at a time, with
the increments ``dW`` injected from regflow's seeded noise (`regflow._noise`)."""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import sdeint

from .. import _noise
from ._common import DIVERGENCE_BOUND, diffusion_matrix, noise_dim

METHODS = {"euler": sdeint.itoEuler, "sri2": sdeint.itoSRI2, "heun": sdeint.stratHeun, "srs2": sdeint.stratSRS2}


@functools.lru_cache(maxsize=256)
def _compiled(drift, diffusion, noise):
    f = jax.jit(lambda y, t, args: drift(t, y, args))
    g = jax.jit(lambda y, t, args: diffusion_matrix(noise, diffusion(t, y, args)))
    return f, g


#: One path's increments, compiled once per (steps, m).
_increments = jax.jit(_noise.increments, static_argnums=(1, 3))


def solve(problem):
    """Returns saved times, states ``(paths, n, dim)`` and each path's divergence time: the first
    grid time whose state is not finite or passes `DIVERGENCE_BOUND`, or the start where drift
    or diffusion is not finite there (that path is not solved)."""
    system, args = problem.system, problem.args
    f, g = _compiled(system.drift, system.diffusion, system.noise)
    m = noise_dim(system, problem.y0[0], problem.t0, args)
    n = round((problem.t1 - problem.t0) / problem.dt)
    tspan = problem.t0 + problem.dt * np.arange(n + 1)
    keys = _noise.path_keys(problem.seed, problem.y0.shape[0])
    ys, div_t = [], []
    for p, y0 in enumerate(problem.y0):
        y = jnp.asarray(y0)
        with np.errstate(all="ignore"):
            start_finite = (np.isfinite(np.asarray(f(y, problem.t0, args))).all()
                            and np.isfinite(np.asarray(g(y, problem.t0, args))).all())
        if not start_finite:
            saved = np.full((len(problem.save_idx), len(y0)), np.nan)
            saved[problem.save_idx == 0] = y0
            div_t.append(problem.t0)
            ys.append(saved)
            continue
        dw = np.asarray(_increments(keys[p], n, problem.dt, m))
        extra = {}
        if problem.method in ("sri2", "srs2"):  # their repeated integrals need extra variates, seeded too
            extra["generator"] = np.random.default_rng(np.asarray(keys[p]).tolist())
        with np.errstate(all="ignore"):
            path = METHODS[problem.method](lambda y, t: np.asarray(f(jnp.asarray(y), t, args)),
                                           lambda y, t: np.asarray(g(jnp.asarray(y), t, args)),
                                           y0, tspan, dW=dw, **extra)
        with np.errstate(invalid="ignore"):
            bad = ~np.all(np.abs(path) <= DIVERGENCE_BOUND, axis=1)
        div_t.append(tspan[np.argmax(bad)] if bad.any() else np.inf)
        saved = path[problem.save_idx]
        saved[tspan[problem.save_idx] >= div_t[-1]] = np.nan
        ys.append(saved)
    return tspan[problem.save_idx], np.stack(ys), np.array(div_t)
