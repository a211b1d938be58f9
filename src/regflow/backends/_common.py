"""Conventions shared by the backends: diffusion shapes and the divergence test."""

from __future__ import annotations

import jax
import jax.numpy as jnp

#: A state whose magnitude exceeds this (or is not finite) has diverged.  Finite-time blow-ups
#: stall adaptive solvers near 1e16 (float64 time can no longer resolve the steps), so the bound
#: sits below that: such runs are reported as diverged, not as solver failures.
DIVERGENCE_BOUND = 1e12


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
