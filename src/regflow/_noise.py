r"""Randomness from a seed, in one place, shared by every backend.

Path ``p`` of a run with seed ``s`` has the key ``path_key(s, p) = fold_in(PRNGKey(s), p)``.
Its Brownian increments are :math:`\Delta W_k = \sqrt{h}\, z_k`, :math:`z_k \sim N(0, I_m)`,
where component ``j`` of step ``k`` is a counter-based draw: the 64 bits
``threefry2x32(path_key, (NOISE_TAG + j, k))`` turned into a standard normal exactly as
``jax.random.normal`` turns its bits into float64 normals (uniform on (-1, 1), then
:math:`\sqrt 2\,\mathrm{erf}^{-1}`).  One hash per number, and each number is addressed by
``(path, step, component)`` alone, so

* path ``p`` is the same whatever the ensemble size, and the same seed gives the same numbers;
* an SDE integrated with sdeint, diffrax or the compiled scan on the same grid sees the same
  increments, whether a backend asks for them one step at a time (`increment`) or many steps
  at once (`increments`, which the compiled scan uses to draw blocks of steps for all paths
  in one vectorised call).

Stochastic maps get the step key ``step_key(path_key, k) = fold_in(path_key, k)``, which is
``threefry2x32(path_key, (0, k))``; ``NOISE_TAG`` keeps the increments' counters apart from it.
Step indices are taken modulo :math:`2^{32}`.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

#: High counter word of the increments (component ``j`` uses ``NOISE_TAG + j``): disjoint
#: from the counters ``(0, k)`` of the step keys ``fold_in(path_key, k)``.
NOISE_TAG = 1 << 31
#: The float64 just above -1: the open lower end of the uniform, as in ``jax.random.normal``.
_UNIFORM_LO = np.nextafter(np.float64(-1.0), np.float64(0.0))
_ONE_BITS = np.float64(1.0).view(np.uint64)
_MANTISSA_SHIFT = np.uint64(64 - np.finfo(np.float64).nmant)
_THREEFRY_ROTATIONS = ((13, 15, 26, 6), (17, 29, 16, 24))
_THREEFRY_PARITY = 0x1BD11BDA


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
    """Key of step ``k`` of one path (handed to stochastic maps)."""
    return jax.random.fold_in(key, k)


def standard_normals(key, ks, m: int):
    """The standard normals :math:`z_k` of steps ``ks`` (any shape ``s``) of one path: ``s + (m,)``."""
    ks = jnp.asarray(ks)
    shape = ks.shape + (m,)
    high = jnp.broadcast_to(jnp.uint32(NOISE_TAG) + jnp.arange(m, dtype=jnp.uint32), shape)
    low = jnp.broadcast_to(ks.astype(jnp.uint32)[..., None], shape)
    return _bits_to_normal(*threefry2x32(key[0], key[1], high, low))


def threefry2x32(key0, key1, x0, x1):
    """The Threefry-2x32 hash (20 rounds) of the counters ``(x0, x1)`` under ``(key0, key1)``.

    Bit for bit the hash behind ``jax.random`` (``jax.extend.random.threefry_2x32``), written
    out in array operations: XLA's CPU lowering of that primitive is a rolled loop, which
    cannot fuse with the normal transform that follows and costs ~25% more per number.
    Arguments broadcast; all uint32.
    """
    ks = (key0, key1, key0 ^ key1 ^ np.uint32(_THREEFRY_PARITY))
    x0, x1 = x0 + ks[0], x1 + ks[1]
    for i in range(5):
        for r in _THREEFRY_ROTATIONS[i % 2]:
            x0 = x0 + x1
            x1 = x0 ^ ((x1 << np.uint32(r)) | (x1 >> np.uint32(32 - r)))
        x0 = x0 + ks[(i + 1) % 3]
        x1 = x1 + ks[(i + 2) % 3] + np.uint32(i + 1)
    return x0, x1


def _bits_to_normal(hi, lo):
    """Two uint32 words -> one float64 standard normal, as ``jax.random.normal`` does."""
    bits = (hi.astype(jnp.uint64) << np.uint64(32)) | lo.astype(jnp.uint64)
    one_to_two = jax.lax.bitcast_convert_type((bits >> _MANTISSA_SHIFT) | _ONE_BITS, jnp.float64)
    u = jnp.maximum(_UNIFORM_LO, (one_to_two - 1.0) * (1.0 - _UNIFORM_LO) + _UNIFORM_LO)
    return np.sqrt(2.0) * jax.lax.erf_inv(u)


def increment(key, k, h, m: int):
    r"""Brownian increment :math:`\sqrt{h}\,z_k` of step ``k``, shape ``(m,)``."""
    return jnp.sqrt(h) * standard_normals(key, k, m)


def increments(key, steps: int, h, m: int, start=0):
    """Increments of steps ``start .. start+steps-1`` of one path, shape ``(steps, m)``.

    Row ``i`` equals ``increment(key, start + i, h, m)``."""
    return jnp.sqrt(h) * standard_normals(key, start + jnp.arange(steps), m)
