"""Conventions shared by the backends: diffusion shapes and the divergence rule.

The divergence rule, the same on every backend: a path diverges at the first time its state is
not finite or exceeds `DIVERGENCE_BOUND` in magnitude, or its field (drift, diffusion) is not
finite at the start, or at or just beyond the state where an adaptive solver stopped
(`nonfinite_near`).  Saved values from that time on are NaN (`regflow._integrate`).
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np

#: A state whose magnitude exceeds this (or is not finite) has diverged.  Finite-time blow-ups
#: stall adaptive solvers near 1e16 (float64 time can no longer resolve the steps), so the bound
#: sits below that: such runs are reported as diverged, not as solver failures.
DIVERGENCE_BOUND = 1e12
#: Step budget of one adaptive solve, on every ODE backend.
MAX_STEPS = 2**16
#: Where an adaptive solver stopped, the field is probed at ``(t + h, y + h f)`` for these
#: steps ``h`` (relative to the time span): a non-finite value there means the solve ran into
#: a region where the field is not defined, a divergence, not a stiff or non-smooth field.
PROBE_STEPS = (1e-12, 1e-9, 1e-6)


def finite(tree):
    """Are all entries of a pytree of arrays finite (traceable)?"""
    return jnp.all(jnp.stack([jnp.all(jnp.isfinite(leaf)) for leaf in jax.tree_util.tree_leaves(tree)]))


def start_ok(fields, t0, y, args):
    """Are all ``fields`` (callables ``(t, y, args)``) finite at the start ``(t0, y)`` (one path)?"""
    return jnp.all(jnp.stack([finite(field(t0, y, args)) for field in fields]))


@functools.lru_cache(maxsize=256)
def _probe_program(field):
    def probe(t, y, args, span):
        f0 = field(t, y, args)
        ok = [finite(f0)] + [finite(field(t + h * span, y + (h * span) * f0, args)) for h in PROBE_STEPS]
        return ~jnp.all(jnp.stack(ok))

    return jax.jit(jax.vmap(probe, in_axes=(0, 0, None, None)))


def nonfinite_near(field, t, y, args, span) -> np.ndarray:
    """Per path (``t`` (n,), ``y`` (n, dim)): is ``field`` non-finite at ``(t, y)`` or just beyond
    (`PROBE_STEPS`)?  Compiled only when an adaptive solve stopped early."""
    with np.errstate(all="ignore"):
        return np.asarray(_probe_program(field)(jnp.asarray(t, jnp.float64), jnp.asarray(y), args, float(span)))


def noise_dim(system, y, t, args) -> int:
    """Number of Brownian motions ``m`` driving an SDE."""
    if system.noise == "scalar":
        return 1
    if system.noise == "diagonal":
        return y.shape[-1]
    shape = jax.eval_shape(lambda y: system.diffusion(t, y, args), jnp.asarray(y)).shape
    return shape[1]


def apply_diffusion(noise, g, dw):
    """``G(y) dW`` for the three noise types."""
    if noise == "scalar":
        return g * dw[0]
    if noise == "diagonal":
        return g * dw
    return g @ dw


def diffusion_matrix(noise, g):
    """The ``(dim, m)`` matrix ``G`` of any noise type."""
    if noise == "scalar":
        return g[:, None]
    if noise == "diagonal":
        return jnp.diag(g)
    return g
