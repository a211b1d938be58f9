r"""Systems derived from a loss: flows and the discrete algorithms they come from.

Losses are ``loss(w, args)``; per-sample losses ``loss(w, sample, args)`` where ``sample``
is one row of a data set (a pytree of arrays with a leading sample axis).
Weight decay ``mu`` adds ``mu * w`` to the gradient (penalty :math:`\tfrac{\mu}{2}|w|^2`).
Flows run in learning-rate time: ``gradient_descent(loss, lr=eta)`` has ``dt == eta`` and its
flow partner is ``gradient_flow(loss)``.

The fields and steps built here are pytrees whose leaves are their parameters (``lr``,
``weight_decay``, a data set) and callables: compiled programs are cached on everything but
the numbers (`regflow._compiled`), so a new ``lr`` or data set of the same shape reuses them.
States may be pytrees (a dict of weight matrices): gradients keep the state's structure.
"""

from __future__ import annotations

from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np
from jax.flatten_util import ravel_pytree

from . import _validate
from ._system import ODE, SDE, Map
from ._tree import pytree_dataclass as _pytree

tree_map = jax.tree_util.tree_map


def _positive(x, name, example):
    x = _validate.real_number(x, name, example)
    if not (x > 0 and np.isfinite(x)):
        raise ValueError(f"{name} must be positive and finite, got {x}; e.g. {name}={example}")
    return x


def _non_negative(x, name):
    x = _validate.real_number(x, name, "0.0")
    if not (x >= 0 and np.isfinite(x)):
        raise ValueError(f"{name} must be >= 0 and finite, got {x}")
    return x


def _loss(loss):
    return _validate.check_callable(loss, "loss", _validate.LOSS)


def _sample_loss(loss):
    return _validate.check_callable(loss, "sample_loss", _validate.SAMPLE_LOSS)


def _sq_norm(tree):
    return sum(jnp.sum(leaf**2) for leaf in jax.tree_util.tree_leaves(tree))


@_pytree
class RegularizedGradient:
    r""":math:`\nabla L(w) + \mu w` as a function ``(w, args)`` (pytree ``w`` keeps its structure)."""

    loss: Callable
    weight_decay: Any = 0.0

    def __call__(self, w, args):
        return tree_map(lambda g, x: g + self.weight_decay * x, jax.grad(self.loss)(w, args), w)


def regularized_gradient(loss, weight_decay=0.0):
    r""":math:`\nabla L(w) + \mu w` as a function ``(w, args)``."""
    return RegularizedGradient(_loss(loss), _non_negative(weight_decay, "weight_decay"))


@_pytree
class GradientField:
    r"""The vector field :math:`-\text{lr}\,(\nabla L(w) + \mu w)`."""

    gradient: RegularizedGradient
    lr: Any

    def __call__(self, t, w, args):
        return tree_map(lambda g: -self.lr * g, self.gradient(w, args))


@_pytree
class GradientStep:
    r"""The step :math:`w - \text{lr}\,(\nabla L(w) + \mu w)`."""

    gradient: RegularizedGradient
    lr: Any

    def __call__(self, k, w, args):
        return tree_map(lambda x, g: x - self.lr * g, w, self.gradient(w, args))


def gradient_flow(loss, *, lr=1.0, weight_decay=0.0, names=None, args=None) -> ODE:
    r"""Gradient flow :math:`\dot w = -\text{lr}\,(\nabla L(w) + \mu w)`.

    ``w`` may be any pytree of arrays (e.g. a dict of weight matrices).

    Example
    -------
    >>> import regflow as rf, jax.numpy as jnp
    >>> flow = rf.gradient_flow(lambda w, a: jnp.sum(w**2) / 2)
    >>> float(flow.vector_field(0.0, jnp.array([2.0]), None)[0])
    -2.0
    """
    lr = _positive(lr, "lr", 1.0)
    return ODE(GradientField(regularized_gradient(loss, weight_decay), lr), names=names, args=args)


def gradient_descent(loss, *, lr, weight_decay=0.0, names=None, args=None) -> Map:
    r"""Gradient descent :math:`w_{k+1} = w_k - \text{lr}\,(\nabla L(w_k) + \mu w_k)`, ``dt = lr``.

    A new ``lr`` reuses the compiled program of the old one.

    Example
    -------
    >>> import regflow as rf, jax.numpy as jnp
    >>> gd = rf.gradient_descent(lambda w, a: jnp.sum(w**2) / 2, lr=0.1)
    >>> gd.dt, float(gd.step(0, jnp.array([1.0]), None)[0])
    (0.1, 0.9)
    """
    lr = _positive(lr, "lr", 0.01)
    return Map(GradientStep(regularized_gradient(loss, weight_decay), lr), dt=lr, names=names, args=args)


@_pytree
class ModifiedField:
    r""":math:`-\nabla\big(L + \tfrac{\text{lr}}{4}|\nabla L|^2\big)`."""

    loss: Callable
    lr: Any

    def _modified(self, w, args):
        return self.loss(w, args) + self.lr / 4 * _sq_norm(jax.grad(self.loss)(w, args))

    def __call__(self, t, w, args):
        return tree_map(jnp.negative, jax.grad(self._modified)(w, args))


def modified_flow(loss, *, lr, names=None, args=None) -> ODE:
    r"""Modified flow of GD (Barrett & Dherin): gradient flow of
    :math:`\tilde L = L + \tfrac{\text{lr}}{4}|\nabla L|^2`, second-order accurate for GD."""
    return ODE(ModifiedField(_loss(loss), _positive(lr, "lr", 0.01)), names=names, args=args)


def _check_data(data, batch_size):
    _validate.args_pytree(data, "data")
    leaves = [np.asarray(leaf) for leaf in jax.tree_util.tree_leaves(data)]
    if not leaves:
        raise ValueError("data must be a pytree of arrays with a leading sample axis")
    if any(leaf.ndim == 0 for leaf in leaves):
        raise ValueError("data must have a leading sample axis on every array; a leaf is a scalar")
    if any(leaf.dtype.kind in "fc" and not np.all(np.isfinite(leaf)) for leaf in leaves):
        raise ValueError("data must be finite; an array holds NaN or inf")
    n = leaves[0].shape[0]
    if any(leaf.shape[0] != n for leaf in leaves):
        raise ValueError(f"every array of data must have the same number of samples (leading axis), got "
                         f"{sorted({leaf.shape[0] for leaf in leaves})}")
    if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)) or not 1 <= batch_size <= n:
        raise ValueError(f"batch_size must be an int in [1, {n}] (the number of samples), got {batch_size!r}")
    return n


@_pytree
class FullLoss:
    """The data-set loss ``(w, args) -> mean_n sample_loss(w, data[n], args)``."""

    sample_loss: Callable
    data: Any

    def __call__(self, w, args):
        return jnp.mean(jax.vmap(lambda s: self.sample_loss(w, s, args))(self.data))


def full_loss(sample_loss, data):
    """The data-set loss ``(w, args) -> mean_n sample_loss(w, data[n], args)``."""
    _sample_loss(sample_loss)
    _validate.args_pytree(data, "data")
    return FullLoss(sample_loss, tree_map(jnp.asarray, data))


@_pytree
class SGDStep:
    r"""One minibatch SGD step, the batch drawn without replacement from the step's key."""

    sample_loss: Callable
    data: Any
    lr: Any
    weight_decay: Any
    batch_size: int

    def __call__(self, k, w, args, key):
        n = jax.tree_util.tree_leaves(self.data)[0].shape[0]
        idx = jax.random.choice(key, n, (self.batch_size,), replace=False)
        batch = tree_map(lambda x: x[idx], self.data)
        grad = RegularizedGradient(FullLoss(self.sample_loss, batch), self.weight_decay)(w, args)
        return tree_map(lambda x, g: x - self.lr * g, w, grad)


def sgd(sample_loss, data, *, lr, batch_size, weight_decay=0.0, names=None, args=None) -> Map:
    r"""Minibatch SGD :math:`w_{k+1} = w_k - \text{lr}\,\nabla L_{B_k}(w_k)`, each batch drawn
    without replacement from the step's key; ``dt = lr``."""
    lr = _positive(lr, "lr", 0.01)
    _sample_loss(sample_loss)
    _check_data(data, batch_size)
    step = SGDStep(sample_loss, tree_map(jnp.asarray, data), lr, _non_negative(weight_decay, "weight_decay"),
                   int(batch_size))
    return Map(step, dt=lr, stochastic=True, names=names, args=args)


@_pytree
class MinibatchCovariance:
    r"""Covariance of the minibatch gradient at ``w`` in the flat view, ``(dim, dim)``."""

    sample_loss: Callable
    data: Any
    factor: Any

    def __call__(self, w, args):
        grads = jax.vmap(lambda s: ravel_pytree(jax.grad(self.sample_loss)(w, s, args))[0])(self.data)
        centred = grads - grads.mean(axis=0)
        return self.factor * centred.T @ centred / grads.shape[0]


def minibatch_covariance(sample_loss, data, batch_size):
    r"""Covariance of the minibatch gradient at ``w``, sampling without replacement:

    .. math:: \Sigma_B(w) = \Big(\frac1B - \frac1N\Big)\frac{N}{N-1}\,
              \operatorname{Cov}_n[\nabla \ell_n(w)]

    returned as a function ``(w, args) -> (dim, dim)`` (``dim`` the size of the flat view of ``w``)."""
    _sample_loss(sample_loss)
    n = _check_data(data, batch_size)
    factor = (1.0 / batch_size - 1.0 / n) * n / (n - 1) if n > 1 else 0.0
    return MinibatchCovariance(sample_loss, tree_map(jnp.asarray, data), factor)


def psd_sqrt(matrix):
    """Symmetric square root of a positive semi-definite matrix (negative rounding clipped)."""
    vals, vecs = jnp.linalg.eigh(matrix)
    return (vecs * jnp.sqrt(jnp.clip(vals, 0.0))) @ vecs.T


@_pytree
class SMEDrift:
    gradient: RegularizedGradient

    def __call__(self, t, w, args):
        return tree_map(jnp.negative, self.gradient(w, args))


@_pytree
class SMEDiffusion:
    r""":math:`\sqrt{\text{lr}}\,\Sigma_B(w)^{1/2}`: each leaf of ``w`` gets its rows, ``shape + (dim,)``."""

    covariance: MinibatchCovariance
    lr: Any

    def __call__(self, t, w, args):
        root = jnp.sqrt(self.lr) * psd_sqrt(self.covariance(w, args))
        if isinstance(w, jax.Array) and w.ndim == 1:
            return root
        unravel = ravel_pytree(w)[1]
        return jax.vmap(unravel, in_axes=1, out_axes=-1)(root)


def sme(sample_loss, data, *, lr, batch_size, weight_decay=0.0, names=None, args=None) -> SDE:
    r"""Stochastic modified equation of minibatch SGD (Li, Tai & E), in learning-rate time:

    .. math:: dw = -(\nabla L(w) + \mu w)\,dt + \sqrt{\text{lr}}\,\Sigma_B(w)^{1/2}\,dB_t

    with :math:`\Sigma_B` from `minibatch_covariance`: its variance follows
    :math:`(1/B - 1/N)`.  Weak order 1 against `sgd` with the same ``lr`` and ``batch_size``."""
    lr = _positive(lr, "lr", 0.01)
    cov = minibatch_covariance(sample_loss, data, batch_size)
    drift = SMEDrift(regularized_gradient(full_loss(sample_loss, data), weight_decay))
    return SDE(drift, SMEDiffusion(cov, lr), noise="general", names=names, args=args)
