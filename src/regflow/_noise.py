r"""Randomness from a seed, in one place, shared by every backend.

Path ``p`` of a run with seed ``s`` has the key ``path_key(s, p) = fold_in(PRNGKey(s), p)``;
its step ``k`` uses ``step_key(path_key, k) = fold_in(path_key, k)``.  Brownian increments
are :math:`\Delta W_k = \sqrt{h}\, z_k`, :math:`z_k \sim N(0, I_m)` drawn from the step key.
So path ``p`` is the same whatever the ensemble size, the same seed always gives the same
numbers, and an SDE integrated with sdeint, diffrax or the compiled scan on the same grid
sees the same increments.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np


def root_key(seed):
    """The key of a run: an int seed or an existing JAX key."""
    if isinstance(seed, (int, np.integer)) and not isinstance(seed, bool):
        return jax.random.PRNGKey(int(seed))
    if isinstance(seed, jax.Array) and seed.dtype == jnp.uint32 and seed.shape == (2,):
        return seed
    raise TypeError(f"seed must be an int or a jax.random.PRNGKey, got {seed!r}")


def path_keys(seed, paths: int):
    """Keys of paths ``0 .. paths-1``, shape ``(paths, 2)``."""
    key = root_key(seed)
    return jax.vmap(lambda p: jax.random.fold_in(key, p))(jnp.arange(paths))


def step_key(key, k):
    """Key of step ``k`` of one path."""
    return jax.random.fold_in(key, k)


def increment(key, k, h, m: int):
    r"""Brownian increment :math:`\sqrt{h}\,z` of step ``k``, shape ``(m,)``."""
    return jnp.sqrt(h) * jax.random.normal(step_key(key, k), (m,), dtype=jnp.float64)


def increments(key, steps: int, h, m: int):
    """All increments of one path, shape ``(steps, m)`` (for backends that want an array)."""
    return jax.vmap(lambda k: increment(key, k, h, m))(jnp.arange(steps))
