r"""Systems derived from a loss: flows and the discrete algorithms they come from.

Losses are ``loss(w, args)``; per-sample losses ``loss(w, sample, args)`` where ``sample``
is one row of a data set (a pytree of arrays with a leading sample axis).
Weight decay ``mu`` adds ``mu * w`` to the gradient (penalty :math:`\tfrac{\mu}{2}|w|^2`).
Flows run in learning-rate time: ``gradient_descent(loss, lr=eta)`` has ``dt == eta`` and its
flow partner is ``gradient_flow(loss)``.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from ._system import ODE, SDE, Map


def _positive(x, name, example):
    try:
        x = float(x)
    except (TypeError, ValueError):
        raise TypeError(f"{name} must be a positive number, got {x!r}") from None
    if not (x > 0 and np.isfinite(x)):
        raise ValueError(f"{name} must be positive and finite, got {x}; e.g. {name}={example}")
    return x


def _non_negative(x, name):
    x = float(x)
    if not (x >= 0 and np.isfinite(x)):
        raise ValueError(f"{name} must be >= 0 and finite, got {x}")
    return x


def regularized_gradient(loss, weight_decay=0.0):
    r""":math:`\nabla L(w) + \mu w` as a function ``(w, args)``."""
    grad = jax.grad(loss)
    if weight_decay == 0.0:
        return grad
    return lambda w, args: grad(w, args) + weight_decay * w


def gradient_flow(loss, *, lr=1.0, weight_decay=0.0, names=None, args=None) -> ODE:
    r"""Gradient flow :math:`\dot w = -\text{lr}\,(\nabla L(w) + \mu w)`.

    Example
    -------
    >>> import regflow as rf, jax.numpy as jnp
    >>> flow = rf.gradient_flow(lambda w, a: jnp.sum(w**2) / 2)
    >>> float(flow.vector_field(0.0, jnp.array([2.0]), None)[0])
    -2.0
    """
    lr = _positive(lr, "lr", 1.0)
    grad = regularized_gradient(loss, _non_negative(weight_decay, "weight_decay"))
    return ODE(lambda t, w, a: -lr * grad(w, a), names=names, args=args)


def gradient_descent(loss, *, lr, weight_decay=0.0, names=None, args=None) -> Map:
    r"""Gradient descent :math:`w_{k+1} = w_k - \text{lr}\,(\nabla L(w_k) + \mu w_k)`, ``dt = lr``.

    Example
    -------
    >>> import regflow as rf, jax.numpy as jnp
    >>> gd = rf.gradient_descent(lambda w, a: jnp.sum(w**2) / 2, lr=0.1)
    >>> gd.dt, float(gd.step(0, jnp.array([1.0]), None)[0])
    (0.1, 0.9)
    """
    lr = _positive(lr, "lr", 0.01)
    grad = regularized_gradient(loss, _non_negative(weight_decay, "weight_decay"))
    return Map(lambda k, w, a: w - lr * grad(w, a), dt=lr, names=names, args=args)


def modified_flow(loss, *, lr, names=None, args=None) -> ODE:
    r"""Modified flow of GD (Barrett & Dherin): gradient flow of
    :math:`\tilde L = L + \tfrac{\text{lr}}{4}|\nabla L|^2`, second-order accurate for GD."""
    lr = _positive(lr, "lr", 0.01)
    grad = jax.grad(loss)
    modified = jax.grad(lambda w, a: loss(w, a) + lr / 4 * jnp.sum(grad(w, a) ** 2))
    return ODE(lambda t, w, a: -modified(w, a), names=names, args=args)


def _check_data(data, batch_size):
    leaves = jax.tree_util.tree_leaves(data)
    if not leaves:
        raise ValueError("data must be a pytree of arrays with a leading sample axis")
    n = leaves[0].shape[0]
    if any(leaf.shape[0] != n for leaf in leaves):
        raise ValueError("every array of data must have the same number of samples (leading axis)")
    if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)) or not 1 <= batch_size <= n:
        raise ValueError(f"batch_size must be an int in [1, {n}] (the number of samples), got {batch_size!r}")
    return n


def full_loss(sample_loss, data):
    """The data-set loss ``(w, args) -> mean_n sample_loss(w, data[n], args)``."""
    return lambda w, a: jnp.mean(jax.vmap(lambda s: sample_loss(w, s, a))(data))


def sgd(sample_loss, data, *, lr, batch_size, weight_decay=0.0, names=None, args=None) -> Map:
    r"""Minibatch SGD :math:`w_{k+1} = w_k - \text{lr}\,\nabla L_{B_k}(w_k)`, each batch drawn
    without replacement from the step's key; ``dt = lr``."""
    lr = _positive(lr, "lr", 0.01)
    n = _check_data(data, batch_size)
    wd = _non_negative(weight_decay, "weight_decay")

    def step(k, w, a, key):
        idx = jax.random.choice(key, n, (batch_size,), replace=False)
        batch = jax.tree_util.tree_map(lambda x: x[idx], data)
        return w - lr * (jax.grad(full_loss(sample_loss, batch))(w, a) + wd * w)

    return Map(step, dt=lr, stochastic=True, names=names, args=args)


def minibatch_covariance(sample_loss, data, batch_size):
    r"""Covariance of the minibatch gradient at ``w``, sampling without replacement:

    .. math:: \Sigma_B(w) = \Big(\frac1B - \frac1N\Big)\frac{N}{N-1}\,
              \operatorname{Cov}_n[\nabla \ell_n(w)]

    returned as a function ``(w, args) -> (dim, dim)``."""
    n = _check_data(data, batch_size)
    factor = (1.0 / batch_size - 1.0 / n) * n / (n - 1) if n > 1 else 0.0

    def cov(w, a):
        grads = jax.vmap(lambda s: jax.grad(sample_loss)(w, s, a))(data)
        centred = grads - grads.mean(axis=0)
        return factor * centred.T @ centred / n

    return cov


def psd_sqrt(matrix):
    """Symmetric square root of a positive semi-definite matrix (negative rounding clipped)."""
    vals, vecs = jnp.linalg.eigh(matrix)
    return (vecs * jnp.sqrt(jnp.clip(vals, 0.0))) @ vecs.T


def sme(sample_loss, data, *, lr, batch_size, weight_decay=0.0, names=None, args=None) -> SDE:
    r"""Stochastic modified equation of minibatch SGD (Li, Tai & E), in learning-rate time:

    .. math:: dw = -(\nabla L(w) + \mu w)\,dt + \sqrt{\text{lr}}\,\Sigma_B(w)^{1/2}\,dB_t

    with :math:`\Sigma_B` from `minibatch_covariance`: its variance follows
    :math:`(1/B - 1/N)`.  Weak order 1 against `sgd` with the same ``lr`` and ``batch_size``."""
    lr = _positive(lr, "lr", 0.01)
    cov = minibatch_covariance(sample_loss, data, batch_size)
    grad = regularized_gradient(full_loss(sample_loss, data), _non_negative(weight_decay, "weight_decay"))
    scale = float(np.sqrt(lr))
    return SDE(lambda t, w, a: -grad(w, a), lambda t, w, a: scale * psd_sqrt(cov(w, a)), noise="general",
               names=names, args=args)
