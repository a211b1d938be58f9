r"""Randomness from a seed, in one place, shared by every backend.

Path ``p`` of a run with seed ``s`` has the key ``path_key(s, p) = fold_in(PRNGKey(s), p)``.
Its Brownian increments are :math:`\Delta W_k = \sqrt{h}\, z_k`, :math:`z_k \sim N(0, I_m)`.
The normals of a path form one sequence: component ``j`` of step ``k`` is number
``n = k*m + j``.  Numbers ``2l`` and ``2l + 1`` are the Box-Muller pair
:math:`(r\cos\theta, r\sin\theta)`, :math:`r = \sqrt{-2\log(1-U)}`, :math:`\theta = 2\pi V`,
of two 53-bit uniforms drawn by counter: ``U`` from the 64 bits of
``threefry2x32(path_key, (NOISE_TAG + 2 (l >> 32), l))``, ``V`` from those of the counter
``(NOISE_TAG + 2 (l >> 32) + 1, l)`` (indices modulo :math:`2^{32}` in the low word).  Each
number is addressed by ``(path, step, component)`` alone, so

* path ``p`` is the same whatever the ensemble size, and the same seed gives the same numbers;
* an SDE integrated with sdeint, diffrax or the compiled scan on the same grid sees the same
  increments, whether a backend asks for them one step at a time (`increment`), a path at a
  time (`increments`) or in blocks of steps for all paths at once (`increment_block`, what
  the compiled scan uses).

Why this form (measured on 2 CPU cores): one Threefry hash per number, fused with the
transform, and a transform (one ``log1p``, one ``sqrt`` and a short polynomial ``sincos`` per
*two* numbers) that costs about half of the ``erf_inv`` that ``jax.random.normal`` spends on
each float64 normal, which is what dominates an ensemble run.

Stochastic maps get the step key ``step_key(path_key, k) = fold_in(path_key, k)``, which is
``threefry2x32(path_key, (0, k))``; ``NOISE_TAG`` keeps the increments' counters apart from it.
"""

from __future__ import annotations

import dataclasses
import math

import jax
import jax.numpy as jnp
import numpy as np

#: High counter word of the increments (component ``j`` uses ``NOISE_TAG + j``): disjoint
#: from the counters ``(0, k)`` of the step keys ``fold_in(path_key, k)``.
NOISE_TAG = 1 << 31
#: Bits of a float64 uniform: multiples of 2**-53 in [0, 1).
_UNIFORM_BITS = 53
#: Taylor coefficients of sin(x)/x and cos(x) in x**2, enough for float64 on |x| <= pi/4.
_SIN_COEFFS = tuple((-1) ** i / math.factorial(2 * i + 1) for i in range(8))
_COS_COEFFS = tuple((-1) ** i / math.factorial(2 * i) for i in range(9))
_THREEFRY_ROTATIONS = ((13, 15, 26, 6), (17, 29, 16, 24))
_THREEFRY_PARITY = 0x1BD11BDA


def root_key(seed):
    """The key of a run: an int seed or an existing JAX key.

    For an int this is ``jax.random.PRNGKey(seed)`` (the seed's high and low 32 bits), built
    in numpy so that no compilation is spent on it."""
    if check_seed(seed):
        seed = int(seed)
        return jnp.asarray(np.array([(seed >> 32) & 0xFFFFFFFF, seed & 0xFFFFFFFF], dtype=np.uint32))
    return seed


def check_seed(seed) -> bool:
    """Raise unless ``seed`` is an int of 64 bits or a ``jax.random.PRNGKey``; True for an int."""
    if isinstance(seed, (int, np.integer)) and not isinstance(seed, (bool, np.bool_)):
        if not -(2**63) <= int(seed) < 2**63:
            raise ValueError(f"seed must fit in 64 bits, got {seed}; pass e.g. seed=0")
        return True
    if isinstance(seed, jax.Array) and seed.dtype == jnp.uint32 and seed.shape == (2,):
        return False
    raise TypeError(f"seed must be an int or a jax.random.PRNGKey, got {type(seed).__name__} {repr(seed)[:40]}; "
                    f"pass e.g. seed=0")


def path_keys(seed, paths: int):
    """Keys of paths ``0 .. paths-1``, shape ``(paths, 2)``: ``fold_in(root_key(seed), p)``."""
    return _path_keys_jit(root_key(seed), paths)


def keys_of_paths(key, paths: int, first=0):
    """``fold_in(key, p)`` for ``p = first .. first+paths-1`` as one vectorised hash (traceable)."""
    p = jnp.asarray(first, jnp.uint32) + jnp.arange(paths, dtype=jnp.uint32)
    return jnp.stack(threefry2x32(key[0], key[1], jnp.zeros_like(p), p), axis=-1)


_path_keys_jit = jax.jit(keys_of_paths, static_argnums=1)


def step_key(key, k):
    """Key of step ``k`` of one path (handed to stochastic maps)."""
    return jax.random.fold_in(key, k)


def standard_normals(key, ks, m: int):
    """The standard normals :math:`z_k` of steps ``ks`` (any shape ``s``) of one path: ``s + (m,)``."""
    n = jnp.asarray(ks)[..., None] * m + jnp.arange(m)
    cos, sin = _pair(key[0], key[1], n // 2)
    return jnp.where(n % 2 == 0, cos, sin)


def _pair(key0, key1, l):
    """Box-Muller pair ``l`` (int array) of the sequence under the key words (broadcasting)."""
    l = jnp.asarray(l)
    high = (np.uint32(NOISE_TAG) + 2 * (l >> 32)).astype(jnp.uint32)
    low = l.astype(jnp.uint32)
    u = _uniform(*threefry2x32(key0, key1, high, low))
    v = _uniform(*threefry2x32(key0, key1, high + np.uint32(1), low))
    r = jnp.sqrt(-2.0 * jnp.log1p(-u))
    cos, sin = _cos_sin_2pi(v)
    return r * cos, r * sin


def _uniform(hi, lo):
    """Two uint32 words -> a float64 uniform on [0, 1), a multiple of 2**-53."""
    bits = (hi.astype(jnp.uint64) << np.uint64(32)) | lo.astype(jnp.uint64)
    return (bits >> np.uint64(64 - _UNIFORM_BITS)).astype(jnp.float64) * 2.0**-_UNIFORM_BITS


def _cos_sin_2pi(v):
    r""":math:`(\cos 2\pi v, \sin 2\pi v)` for ``v`` in [0, 1), to ~1e-16.

    Reduced exactly in ``v``: :math:`2\pi v = q\pi/2 + x` with ``q = round(4v)`` and
    :math:`|x| \le \pi/4`, then Taylor polynomials (vectorise well; ``jnp.sin`` and ``jnp.cos``
    of float64 cost ~5x more on CPU)."""
    t = 4.0 * v
    q = jnp.floor(t + 0.5)
    x = (t - q) * (np.pi / 2)
    x2 = x * x
    sin_x, cos_x = x * _horner(_SIN_COEFFS, x2), _horner(_COS_COEFFS, x2)
    odd = q * 0.5 != jnp.floor(q * 0.5)
    quadrant = q - 4.0 * jnp.floor(q * 0.25)  # q mod 4
    cos = jnp.where(odd, sin_x, cos_x)
    sin = jnp.where(odd, cos_x, sin_x)
    return jnp.where((quadrant == 1.0) | (quadrant == 2.0), -cos, cos), jnp.where(quadrant >= 2.0, -sin, sin)


def _horner(coeffs, x):
    acc = jnp.full_like(x, coeffs[-1])
    for c in coeffs[-2::-1]:
        acc = acc * x + c
    return acc


def threefry2x32(key0, key1, x0, x1):
    """The Threefry-2x32 hash (20 rounds) of the counters ``(x0, x1)`` under ``(key0, key1)``.

    Bit for bit the hash behind ``jax.random`` (``jax.extend.random.threefry_2x32``), written
    out in array operations: XLA's CPU lowering of that primitive is a rolled loop, which
    cannot fuse with the transform that follows.  Arguments broadcast; all uint32.
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


@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class IncrementBlock:
    r"""The increments of ``steps`` consecutive steps of many paths, as Box-Muller pairs.

    ``cos[i, p]`` / ``sin[i, p]`` are numbers ``2 (first + i)`` and ``2 (first + i) + 1`` of
    path ``p``'s sequence (times :math:`\sqrt h`); step ``start + s`` component ``j`` is
    number ``2 first + offset + s*m + j``.  Take a step's increments with `block_step`.
    (Two arrays, not one stacked array: XLA would compute each pair twice to fill it.)"""

    cos: jax.Array  # (pairs, paths)
    sin: jax.Array
    offset: jax.Array  # 0 or 1
    m: int = dataclasses.field(metadata=dict(static=True))


def increment_block(keys, start, steps: int, h, m: int) -> IncrementBlock:
    """Increments of steps ``start .. start+steps-1`` of the paths with ``keys`` ``(paths, 2)``,
    drawn in one vectorised call (what the compiled scan draws every few steps)."""
    first_number = start * m
    first = first_number // 2
    ls = first + jnp.arange(steps * m // 2 + 1)
    cos, sin = _pair(keys[:, 0], keys[:, 1], ls[:, None])
    scale = jnp.sqrt(h)
    return IncrementBlock(scale * cos, scale * sin, first_number % 2, m)


def block_step(block: IncrementBlock, s):
    """Increments ``(paths, m)`` of step ``start + s`` of a block; equals
    ``increment(keys[p], start + s, h, m)`` for every path ``p``."""
    n = block.offset + s * block.m + jnp.arange(block.m)
    cos, sin = block.cos[n // 2], block.sin[n // 2]  # (m, paths)
    return jnp.where((n % 2 == 0)[:, None], cos, sin).T


def block_increments(keys, start, steps: int, h, m: int):
    """Increments of steps ``start .. start+steps-1`` of many paths, shape ``(steps, paths, m)``:
    entry ``[i, p]`` equals ``increment(keys[p], start + i, h, m)``."""
    block = increment_block(keys, start, steps, h, m)
    return jax.vmap(lambda s: block_step(block, s))(jnp.arange(steps))


def block_step_keys(keys, start, steps: int):
    """Step keys of steps ``start .. start+steps-1`` of many paths, shape ``(steps, paths, 2)``:
    entry ``[i, p]`` equals ``step_key(keys[p], start + i)``."""
    ks = jnp.broadcast_to((start + jnp.arange(steps))[:, None], (steps, keys.shape[0])).astype(jnp.uint32)
    return jnp.stack(threefry2x32(keys[:, 0], keys[:, 1], jnp.zeros_like(ks), ks), axis=-1)


def increment(key, k, h, m: int):
    r"""Brownian increment :math:`\sqrt{h}\,z_k` of step ``k``, shape ``(m,)``."""
    return jnp.sqrt(h) * standard_normals(key, k, m)


def increments(key, steps: int, h, m: int, start=0):
    """Increments of steps ``start .. start+steps-1`` of one path, shape ``(steps, m)``.

    Row ``i`` equals ``increment(key, start + i, h, m)``."""
    return block_increments(key[None], start, steps, h, m)[:, 0]
