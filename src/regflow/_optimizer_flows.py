r"""Flows of the common optimizers: heavy-ball momentum, Nesterov, Adam and RMSProp, in
learning-rate time (one step of learning rate :math:`h` is flow time :math:`h`), as partners
of their optax maps (`rf.from_optax`).

**Heavy ball** (``optax.sgd(h, momentum=beta)``):
:math:`v_{k+1} = \beta v_k + \nabla L(w_k)`, :math:`w_{k+1} = w_k - h v_{k+1}`, i.e.
:math:`w_{k+1} - w_k - \beta(w_k - w_{k-1}) = -h\nabla L(w_k)`.  Taylor expanding
:math:`w_{k\pm1} = w(t \pm h)` gives (Kovachki & Stuart 2021, "Continuous time analysis of
momentum methods", JMLR 22; see also Ghosh et al. 2023, "Implicit regularization in heavy-ball
momentum accelerated SGD", ICLR)

.. math:: \tfrac h2 (1+\beta)\,\ddot w + (1-\beta)\,\dot w = -\nabla L(w)
          \qquad\text{(second order)},\qquad (1-\beta)\,\dot w = -\nabla L(w)
          \qquad\text{(first order, } h \to 0).

The first-order flow (`heavy_ball_flow`) is the map's limit with error :math:`O(h)`; the
second-order ODE (`momentum_ode`) also follows the map's transient from :math:`v_0 = 0`
when started with the velocity of `momentum_start`.  Its largest error over the run is
still :math:`O(h)` (the ODE's transient decays as :math:`e^{-2(1-\beta)t/(h(1+\beta))}`, the
map's as :math:`\beta^{t/h}`), with a constant far below the first-order flow's.

**Nesterov** (``optax.sgd(h, momentum=beta, nesterov=True)``: the update is
:math:`-h(\nabla L(w_k) + \beta v_{k+1})`) satisfies
:math:`w_{k+1} - w_k - \beta(w_k - w_{k-1}) = -h[(1+\beta)\nabla L(w_k) - \beta\nabla L(w_{k-1})]`,
whose expansion adds the Hessian-driven damping of the high-resolution ODEs (Shi, Du, Jordan &
Su 2022, "Understanding the acceleration phenomenon via high-resolution differential
equations", Math. Program. 195):

.. math:: \tfrac h2 (1+\beta)\,\ddot w + (1-\beta)\,\dot w + \beta h\,\nabla^2 L(w)\,\dot w = -\nabla L(w);

its first-order flow is the heavy ball's.

**Adam and RMSProp** with fixed :math:`\beta_1, \beta_2` (decay :math:`\rho`): as
:math:`h \to 0` a unit of flow time holds :math:`1/h` steps, the moment averages forget their
start after :math:`O(h/(1-\beta))` flow time and track :math:`\nabla L` and
:math:`(\nabla L)^2`, so the iterates follow the sign-like, elementwise preconditioned flow
(Ma, Wu & E 2022, "A qualitative study of the dynamic behavior for adaptive gradient
algorithms", MSML; Malladi et al. 2022, "On the SDEs and scaling rules for adaptive gradient
algorithms", NeurIPS: the limit without scaling :math:`1-\beta` with :math:`h`)

.. math:: \dot w = -\frac{\nabla L(w)}{\sqrt{(\nabla L(w))^2 + \epsilon_{\rm root}} + \epsilon}
          \quad\text{(Adam)},\qquad
          \dot w = -\frac{\nabla L(w)}{\sqrt{(\nabla L(w))^2 + \epsilon}}
          \quad\text{(RMSProp, optax's eps inside the root)},

with error :math:`O(h)`.  Their hyperparameters are pytree leaves: a new ``beta`` or ``eps``
reuses the compiled program.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from ._methods import _loss, _non_negative, _positive, _pytree
from ._system import ODE

tree_map = jax.tree_util.tree_map
#: Keys of a second-order flow's state.
PARAMS, VELOCITY = "params", "velocity"


def _beta(beta):
    beta = _non_negative(beta, "beta")
    if not beta < 1:
        raise ValueError(f"beta must be in [0, 1) (the momentum coefficient), got {beta}; e.g. beta=0.9")
    return beta


@_pytree
class HeavyBallField:
    r""":math:`\dot w = -\nabla L(w) / (1 - \beta)`."""

    loss: object
    beta: object

    def __call__(self, t, w, args):
        return tree_map(lambda g: -g / (1.0 - self.beta), jax.grad(self.loss)(w, args))


def heavy_ball_flow(loss, *, beta, names=None, args=None) -> ODE:
    r"""First-order flow of heavy-ball momentum and of Nesterov, :math:`(1-\beta)\,\dot w = -\nabla L(w)`
    (module doc); the partner of ``rf.from_optax(optax.sgd(h, momentum=beta), loss)`` with error :math:`O(h)`.

    Example
    -------
    >>> import regflow as rf, jax.numpy as jnp
    >>> flow = rf.heavy_ball_flow(lambda w, a: jnp.sum(w**2) / 2, beta=0.9)
    >>> round(float(flow.vector_field(0.0, jnp.array([1.0]), None)[0]), 6)
    -10.0
    """
    return ODE(HeavyBallField(_loss(loss), _beta(beta)), names=names, args=args)


@_pytree
class MomentumField:
    r"""Second-order momentum ODE on ``{"params": w, "velocity": v}``:
    :math:`\dot w = v`, :math:`\dot v = -\frac{2}{h(1+\beta)}\big(\nabla L + (1-\beta) v + \nu\beta h\,\nabla^2 L\,v\big)`
    with :math:`\nu = 1` for Nesterov, 0 for heavy ball."""

    loss: object
    lr: object
    beta: object
    nesterov: object

    def __call__(self, t, y, args):
        w, v = y[PARAMS], y[VELOCITY]
        grad = jax.grad(self.loss)
        rate = 2.0 / (self.lr * (1.0 + self.beta))
        if self.nesterov:  # a Python bool: static, so heavy ball compiles no Hessian-vector product
            g, hv = jax.jvp(lambda x: grad(x, args), (w,), (v,))
            g = tree_map(lambda gi, hi: gi + self.beta * self.lr * hi, g, hv)
        else:
            g = grad(w, args)
        return {PARAMS: v, VELOCITY: tree_map(lambda gi, vi: -rate * (gi + (1.0 - self.beta) * vi), g, v)}


def momentum_ode(loss, *, lr, beta, nesterov=False, names=None, args=None) -> ODE:
    r"""The second-order ODE of heavy ball (``nesterov=False``) or Nesterov momentum at learning
    rate ``lr`` (module doc), on the state ``{"params": w, "velocity": dw/dt}``; start it with
    `momentum_start`.

    Example
    -------
    >>> import regflow as rf, jax.numpy as jnp
    >>> loss = lambda w, a: jnp.sum(w**2) / 2
    >>> ode = rf.momentum_ode(loss, lr=0.1, beta=0.5)
    >>> y0 = rf.momentum_start(loss, jnp.array([1.0]), beta=0.5)
    >>> round(float(y0["velocity"][0]), 6), round(float(ode.vector_field(0.0, y0, None)["velocity"][0]), 6)
    (-0.666667, -8.888889)
    """
    if not isinstance(nesterov, bool):
        raise TypeError(f"nesterov must be True or False, got {nesterov!r}")
    return ODE(MomentumField(_loss(loss), _positive(lr, "lr", 0.01), _beta(beta), nesterov),
               names=names, args=args)


def momentum_start(loss, params, *, beta, nesterov=False, args=None) -> dict:
    r"""The start ``{"params": w0, "velocity": v0}`` of `momentum_ode` whose transient matches the
    optax map's from a zero trace: :math:`v_0 = -\nabla L(w_0)/(1+\beta)` (heavy ball) or
    :math:`-(1+2\beta)\nabla L(w_0)/(1+\beta)` (Nesterov).  The ODE's transient decays at
    :math:`2(1-\beta)/(h(1+\beta))`, the map's at :math:`-\ln\beta / h`; with this :math:`v_0` the
    displacements they leave, :math:`h\beta\nabla L/(1-\beta)^2` (resp.
    :math:`h\beta^2\nabla L/(1-\beta)^2`) under a constant gradient, are equal."""
    beta = _beta(beta)
    if not isinstance(nesterov, bool):
        raise TypeError(f"nesterov must be True or False, got {nesterov!r}")
    w0 = tree_map(lambda x: jnp.asarray(x, dtype=jnp.float64), params)
    factor = (1.0 + 2.0 * beta if nesterov else 1.0) / (1.0 + beta)
    return {PARAMS: w0, VELOCITY: tree_map(lambda g: -factor * g, jax.grad(_loss(loss))(w0, args))}


@_pytree
class AdaptiveField:
    r""":math:`\dot w = -\nabla L / (\sqrt{(\nabla L)^2 + \epsilon_{\rm root}} + \epsilon)`, elementwise."""

    loss: object
    eps: object
    eps_root: object

    def __call__(self, t, w, args):
        return tree_map(lambda g: -g / (jnp.sqrt(g**2 + self.eps_root) + self.eps), jax.grad(self.loss)(w, args))


def adam_flow(loss, *, eps=1e-8, eps_root=0.0, names=None, args=None) -> ODE:
    r"""The sign-like flow of Adam with fixed :math:`\beta_1, \beta_2` (module doc),
    :math:`\dot w = -\nabla L/(\sqrt{(\nabla L)^2 + \epsilon_{\rm root}} + \epsilon)`, with optax's
    ``eps`` and ``eps_root``; the partner of ``rf.from_optax(optax.adam(h, eps=eps), loss)``, error :math:`O(h)`.

    Example
    -------
    >>> import regflow as rf, jax.numpy as jnp
    >>> flow = rf.adam_flow(lambda w, a: jnp.sum(w**2) / 2, eps=0.0)
    >>> flow.vector_field(0.0, jnp.array([3.0, -0.5]), None).tolist()
    [-1.0, 1.0]
    """
    return ODE(AdaptiveField(_loss(loss), _non_negative(eps, "eps"), _non_negative(eps_root, "eps_root")),
               names=names, args=args)


def rmsprop_flow(loss, *, eps=1e-8, eps_in_sqrt=True, names=None, args=None) -> ODE:
    r"""The preconditioned flow of RMSProp with a fixed decay (module doc),
    :math:`\dot w = -\nabla L/\sqrt{(\nabla L)^2 + \epsilon}` (optax's default ``eps_in_sqrt=True``)
    or :math:`-\nabla L/(|\nabla L| + \epsilon)`; the partner of ``rf.from_optax(optax.rmsprop(h), loss)``.

    Example
    -------
    >>> import regflow as rf, jax.numpy as jnp
    >>> flow = rf.rmsprop_flow(lambda w, a: jnp.sum(w**2) / 2, eps=0.0)
    >>> flow.vector_field(0.0, jnp.array([2.0]), None).tolist()
    [-1.0]
    """
    if not isinstance(eps_in_sqrt, bool):
        raise TypeError(f"eps_in_sqrt must be True or False, got {eps_in_sqrt!r}")
    eps = _non_negative(eps, "eps")
    field = AdaptiveField(_loss(loss), 0.0, eps) if eps_in_sqrt else AdaptiveField(_loss(loss), eps, 0.0)
    return ODE(field, names=names, args=args)
