r"""Halpern iterations and norm-minimizing gradient descent (NMGD), and their flow.

With :math:`T = I - \gamma\nabla L`, Halpern's iteration with anchor 0 and NMGD are one map
(Banburski et al., *Theory III*, eq 25-26):

.. math:: w_{n+1} = (1-\lambda_n)\,T w_n
          \iff w_{n+1} = w_n - (1-\lambda_n)\,\gamma\nabla L(w_n) - \lambda_n w_n ,

with a schedule :math:`\lambda_n \to 0`, :math:`\sum_n \lambda_n = \infty` (e.g.
:math:`\lambda_n = (n + n_0)^{-a}`, :math:`0 < a \le 1`).  In learning-rate time
(:math:`t = n\gamma`) it is, to first order in :math:`\gamma`, the Euler step of gradient flow
with a vanishing weight decay

.. math:: \dot w = -\nabla L(w) - \mu(t)\,w, \qquad \mu(t) = c\,(t + \tau)^{-a},

with :math:`\lambda_n = \gamma\,\mu(n\gamma)`; for :math:`\lambda_n = (n + n_0)^{-a}` that is
:math:`c = \gamma^{a-1}`, :math:`\tau = n_0\gamma` (`nmgd_partner`).

Schedules, steps and fields are pytrees whose numbers are program inputs: a new ``a``, ``lr``
or ``n0`` reuses the compiled program.
"""

from __future__ import annotations

from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np

from ._methods import RegularizedGradient, _positive, _pytree
from ._system import ODE, Map

tree_map = jax.tree_util.tree_map


def _offset(n0):
    if isinstance(n0, bool) or not isinstance(n0, (int, np.integer)) or n0 < 1:
        raise ValueError(f"n0 must be an int >= 1 (so that lambda_n = (n + n0)^-a <= 1), got {n0!r}; "
                         "n0=1 is lambda_n = 1/n^a from n = 1")
    return float(n0)


@_pytree
class PowerSchedule:
    r""":math:`\lambda_k = (k + n_0)^{-a}` at step :math:`k = 0, 1, \dots`."""

    a: Any
    n0: Any

    def __call__(self, k):
        return (jnp.asarray(k, dtype=jnp.float64) + self.n0) ** (-self.a)


def power_schedule(a, *, n0) -> PowerSchedule:
    r"""The schedule :math:`\lambda_k = (k + n_0)^{-a}`, :math:`k = 0, 1, \dots`
    (``n0=1``: :math:`1/n^a` from :math:`n = 1`, which makes :math:`\lambda = 1` at the first step).

    Example
    -------
    >>> import regflow as rf
    >>> float(rf.power_schedule(0.5, n0=4)(0))
    0.5
    """
    return PowerSchedule(_positive(a, "a", 0.75), _offset(n0))


@_pytree
class Decay:
    r""":math:`\mu(t) = c\,(t + \tau)^{-a}`."""

    a: Any
    c: Any
    tau: Any

    def __call__(self, t):
        return self.c * (t + self.tau) ** (-self.a)


def _decay(a, c, tau):
    return Decay(_positive(a, "a", 0.75), _positive(c, "c", 1.0), _positive(tau, "tau", 1.0))


@_pytree
class EulerSchedule:
    r""":math:`\lambda_k = h\,\mu(k h)`: the schedule whose NMGD map is the Euler step of the flow."""

    decay: Decay
    h: Any

    def __call__(self, k):
        return self.h * self.decay(self.h * jnp.asarray(k, dtype=jnp.float64))


def decay_schedule(a, c, tau, *, lr) -> EulerSchedule:
    r"""The schedule :math:`\lambda_k = \text{lr}\,\mu(k\,\text{lr})`, :math:`\mu(t) = c(t+\tau)^{-a}`:
    with it `nmgd` at step ``lr`` is the Euler step of ``nmgd_flow(loss, a=a, c=c, tau=tau)``
    to first order."""
    return EulerSchedule(_decay(a, c, tau), _positive(lr, "lr", 0.01))


def nmgd_partner(lr, a, n0) -> tuple[float, float]:
    r"""``(c, tau)`` of the `nmgd_flow` whose Euler step with step ``lr`` is `nmgd` with
    :math:`\lambda_n = (n + n_0)^{-a}`: :math:`\lambda_n = \gamma\,\mu(n\gamma)` gives
    :math:`c = \gamma^{a-1}`, :math:`\tau = n_0\gamma`."""
    lr, a, n0 = _positive(lr, "lr", 0.01), _positive(a, "a", 0.75), _offset(n0)
    return lr ** (a - 1.0), n0 * lr


def _schedule(schedule):
    if not callable(schedule):
        raise TypeError(f"schedule must be a function k -> lambda_k (e.g. rf.power_schedule(0.75, n0=2)), "
                        f"got {type(schedule).__name__}")
    return schedule


@_pytree
class NMGDStep:
    r""":math:`w - (1-\lambda_k)\,\gamma\nabla L(w) - \lambda_k w`."""

    gradient: RegularizedGradient
    lr: Any
    schedule: Callable

    def __call__(self, k, w, args):
        lam = self.schedule(k)
        return tree_map(lambda x, g: x - (1.0 - lam) * self.lr * g - lam * x, w, self.gradient(w, args))


@_pytree
class HalpernStep:
    r""":math:`(1-\lambda_k)\,(w - \gamma\nabla L(w))`."""

    gradient: RegularizedGradient
    lr: Any
    schedule: Callable

    def __call__(self, k, w, args):
        keep = 1.0 - self.schedule(k)
        return tree_map(lambda x, g: keep * (x - self.lr * g), w, self.gradient(w, args))


def nmgd(loss, *, lr, schedule, names=None, args=None) -> Map:
    r"""NMGD (*Theory III* eq 26 = eq 9):
    :math:`w_{n+1} = w_n - (1-\lambda_n)\,\gamma\nabla L(w_n) - \lambda_n w_n`, ``dt = lr``.

    ``schedule(k) -> lambda_k`` (e.g. `power_schedule`).  ``w`` may be any pytree.

    Example
    -------
    >>> import regflow as rf, jax.numpy as jnp
    >>> m = rf.nmgd(lambda w, a: jnp.sum(w**2), lr=0.25, schedule=rf.power_schedule(1.0, n0=2))
    >>> float(m.step(0, jnp.array([1.0]), None)[0])          # 1 - 0.5 * 0.25 * 2 - 0.5
    0.25
    """
    return Map(NMGDStep(RegularizedGradient(loss), _positive(lr, "lr", 0.01), _schedule(schedule)), dt=lr,
               names=names, args=args)


def halpern(loss, *, lr, schedule, names=None, args=None) -> Map:
    r"""Halpern's iteration with anchor 0 (*Theory III* eq 25):
    :math:`x_{n+1} = (1-\lambda_n)\,T x_n`, :math:`T = I - \gamma\nabla L`, ``dt = lr``
    (algebraically the same map as `nmgd`)."""
    return Map(HalpernStep(RegularizedGradient(loss), _positive(lr, "lr", 0.01), _schedule(schedule)), dt=lr,
               names=names, args=args)


@_pytree
class NMGDField:
    r""":math:`-\nabla L(w) - \mu(t)\,w`."""

    gradient: RegularizedGradient
    decay: Decay

    def __call__(self, t, w, args):
        mu = self.decay(t)
        return tree_map(lambda x, g: -g - mu * x, w, self.gradient(w, args))


def nmgd_flow(loss, *, a, c=1.0, tau=1.0, names=None, args=None) -> ODE:
    r"""Continuous NMGD, gradient flow with a vanishing weight decay (non-autonomous):
    :math:`\dot w = -\nabla L(w) - c\,(t+\tau)^{-a}\,w`.

    Example
    -------
    >>> import regflow as rf, jax.numpy as jnp
    >>> flow = rf.nmgd_flow(lambda w, a: jnp.sum(w**2), a=0.5, c=1.0, tau=1.0)
    >>> float(flow.vector_field(3.0, jnp.array([1.0]), None)[0])   # -2 - (3 + 1)^-0.5
    -2.5
    """
    return ODE(NMGDField(RegularizedGradient(loss), _decay(a, c, tau)), names=names, args=args)
