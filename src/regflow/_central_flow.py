r"""The central flow of gradient descent at the edge of stability (Cohen, Damian, Talwalkar,
Kolter, Lee, "Understanding Optimization in Deep Learning with Central Flows", ICLR 2025, sec 3).

Gradient descent :math:`w_{k+1} = w_k - \eta\nabla L(w_k)` with sharpness
:math:`S(w) = \lambda_{\max}(\nabla^2 L(w))` above :math:`2/\eta` oscillates along the top
eigenvector :math:`u`; its time average :math:`\bar w` follows, in learning-rate time
:math:`t = k\eta`,

.. math::
    \frac{d\bar w}{dt} = -\Big(\nabla L(\bar w) + \tfrac{\sigma^2(t)}{2}\nabla S(\bar w)\Big),
    \qquad
    \sigma^2 = \begin{cases} \max\!\Big(0, \dfrac{-2\langle\nabla S, \nabla L\rangle}{\|\nabla S\|^2}\Big)
    & S(\bar w) \ge 2/\eta \\ 0 & S(\bar w) < 2/\eta \end{cases}

(sec 3.1, the one unstable eigenvalue case): below the edge the gradient flow; at the edge the
gradient flow projected so that :math:`dS/dt = \langle\nabla S, \dot w\rangle = 0`, i.e. the
sharpness stays at :math:`2/\eta`.  :math:`\sigma^2(t)` is the predicted variance of the
oscillation :math:`\langle u, w_k - \bar w(t_k)\rangle`, and the time-averaged loss is
:math:`L(\bar w) + \tfrac{\sigma^2}{2} S(\bar w) = L(\bar w) + \sigma^2/\eta` (sec 3.1).

Matrix-free: :math:`(S, u)` from ``iters`` Lanczos steps on Hessian-vector products (forward
over reverse) with full reorthogonalisation, from the fixed start vector of
`rf.sharpness_fn` (exact once ``iters >= dim``); :math:`\nabla S = \nabla_w (u^\top\nabla^2L(w)\,u)`
(a simple eigenvalue's derivative, :math:`u` held fixed) is the third derivative
:math:`D^3L(w)[u, u, \cdot]`, a ``jvp`` of the HVP.  A vector field has no memory between calls,
so Lanczos is not warm started: each call runs its ``iters`` steps from the same start, which
keeps the field a deterministic function of ``w`` (as an ODE solver needs).

Not done: several eigenvalues at the edge at once (the paper's sec 3.2 complementarity problem
over the top-k eigenspace); this module projects out the top one only, so it is the central
flow while the second eigenvalue stays below :math:`2/\eta` (check with
``rf.hessian_eigs(loss, w, k=2)``).
"""

from __future__ import annotations

from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp
from jax.flatten_util import ravel_pytree

from . import _validate
from ._spectra import LANCZOS_ITERS, LANCZOS_SEED, _scalar, lanczos_top
from ._system import ODE
from ._tree import pytree_dataclass as _pytree

#: Lanczos steps of the central flow's top eigenpair (the dimension, if smaller, is used).
CENTRAL_ITERS = LANCZOS_ITERS
#: A :math:`\|\nabla S\|^2` below this (no direction moves :math:`S`) gives :math:`\sigma^2 = 0`.
TINY_GRAD = 1e-300


class EdgeTerms(NamedTuple):
    """The quantities of the central flow at one point, on the flat view of ``w``."""

    grad: jax.Array             # grad L
    sharpness: jax.Array        # S = lambda_max
    vector: jax.Array           # u, the unit top eigenvector
    grad_sharpness: jax.Array   # grad S = D^3 L [u, u, .]
    sigma2: jax.Array           # sigma^2 >= 0 (0 below the edge)


def edge_terms(loss, w, args, lr, iters=CENTRAL_ITERS, seed=LANCZOS_SEED) -> EdgeTerms:
    r"""`EdgeTerms` of the central flow at ``w`` (jax-traceable; ``w`` any pytree of arrays)."""
    flat, unravel = ravel_pytree(w)

    def grad(x):
        return ravel_pytree(jax.grad(lambda y: _scalar(loss(y, args)))(unravel(x)))[0]

    def hvp_at(x, v):
        return jax.jvp(grad, (x,), (v,))[1]

    g = grad(flat)
    S, u = lanczos_top(lambda v: hvp_at(flat, v), flat.shape[0], flat.dtype, iters, seed)
    gS = jax.jvp(lambda x: hvp_at(x, u), (flat,), (u,))[1]  # D^3 L[u, u, .] = grad (u^T H u)
    norm2 = gS @ gS
    pushed = -2.0 * (gS @ g) / jnp.where(norm2 > TINY_GRAD, norm2, 1.0)
    at_edge = (S >= 2.0 / lr) & (norm2 > TINY_GRAD)
    sigma2 = jnp.where(at_edge, jnp.maximum(pushed, 0.0), 0.0)
    return EdgeTerms(g, S, u, gS, sigma2)


@_pytree
class CentralField:
    r"""The central flow's field :math:`-(\nabla L + \tfrac{\sigma^2}{2}\nabla S)` (``lr`` a traced
    leaf, so a new learning rate reuses the compiled program)."""

    loss: Callable
    lr: Any
    iters: int = CENTRAL_ITERS

    def __call__(self, t, w, args):
        e = edge_terms(self.loss, w, args, self.lr, self.iters)
        _, unravel = ravel_pytree(w)
        return unravel(-(e.grad + 0.5 * e.sigma2 * e.grad_sharpness))

    def sigma2(self, w, args):
        r"""This flow's predicted oscillation variance :math:`\sigma^2(w)`."""
        return edge_terms(self.loss, w, args, self.lr, self.iters).sigma2


@_pytree
class CentralSigma2:
    r"""The predicted oscillation variance :math:`\sigma^2(w)` as a quantity ``q(w, args)``."""

    loss: Callable
    lr: Any
    iters: int = CENTRAL_ITERS

    def __call__(self, w, args=None):
        return edge_terms(self.loss, w, args, self.lr, self.iters).sigma2


def _checked(loss, lr, iters):
    _validate.check_callable(loss, "loss", _validate.LOSS)
    lr = _validate.real_number(lr, "lr", "0.01")
    if not (lr > 0 and jnp.isfinite(lr)):
        raise ValueError(f"lr must be positive and finite (the edge is at sharpness 2/lr), got {lr}; e.g. lr=0.01")
    if isinstance(iters, bool) or not isinstance(iters, int) or iters < 2:
        raise ValueError(f"iters must be an int >= 2 (Lanczos steps of the top eigenpair; the state's dimension "
                         f"makes it exact), got {iters!r}")
    return lr


def central_flow(loss, *, lr, names=None, args=None, iters=CENTRAL_ITERS) -> ODE:
    r"""The central flow of gradient descent at learning rate ``lr`` (module doc), in learning-rate
    time: the partner of ``rf.gradient_descent(loss, lr=lr)`` (step ``k`` at ``t = k lr``).

    ``iters``: Lanczos steps of the top Hessian eigenpair per field evaluation (exact when
    ``iters >= dim``; more steps converge the top eigenvector of a larger network).

    Example
    -------
    >>> import regflow as rf, jax.numpy as jnp
    >>> loss = lambda w, a: 0.5 * (w[0] ** 2 + 3.0 * w[1] ** 2)     # S = 3
    >>> flow = rf.central_flow(loss, lr=0.5)                         # edge at 4: gradient flow
    >>> flow.vector_field(0.0, jnp.array([1.0, 1.0]), None).tolist()
    [-1.0, -3.0]
    """
    lr = _checked(loss, lr, iters)
    return ODE(CentralField(loss, lr, iters), names=names, args=args)


def central_flow_sigma2(loss, lr, iters=CENTRAL_ITERS):
    r"""The central flow's predicted oscillation variance :math:`\sigma^2(w)` along the top
    eigenvector, a quantity ``q(w, args)`` (0 below the edge), e.g. ``traj.evaluate(q)``."""
    lr = _checked(loss, lr, iters)
    return CentralSigma2(loss, lr, iters)


__all__ = ["central_flow", "central_flow_sigma2", "edge_terms", "EdgeTerms", "CentralField"]
