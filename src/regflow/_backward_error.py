r"""Backward error analysis: the flow a one-step map follows to second order in its step.

A map with step :math:`h` whose Taylor expansion in :math:`h` is

.. math:: y_{k+1} = y_k + h\,f(y_k) + h^2\,d(y_k) + O(h^3)

agrees to :math:`O(h^3)` per step (so :math:`O(h^2)` over a fixed horizon) with the modified flow

.. math:: \dot y = f + h\,f_2, \qquad f_2 = d - \tfrac12\,(Df)\,f

(Hairer, Lubich & Wanner, *Geometric Numerical Integration*, IX.1).  For the Euler step of a
flow (:math:`d = 0`) the correction is :math:`-\tfrac12 (Df) f`; for gradient descent on
:math:`L`, :math:`f = -\nabla L` and the modified flow is the gradient flow of
:math:`L + \tfrac h4 |\nabla L|^2` (`rf.modified_flow`).

`backward_error_flow` builds the modified flow from the first-order flow ``f`` and, for a map
that is not the plain Euler step, its second Taylor coefficient ``d`` given by the caller
(derived from the printed update rule): it never differentiates the map it is compared with,
so a wrong map is not absorbed into its own modified equation.
"""

from __future__ import annotations

from typing import Any, Callable

import jax
import jax.numpy as jnp

from ._methods import _positive, _pytree
from ._system import ODE, SDE

tree_map = jax.tree_util.tree_map


@_pytree
class BackwardErrorField:
    r"""The modified field :math:`f + h\,(d - \tfrac12 (Df) f)` of a first-order field ``field``
    (``f(t, y, args)``), step ``lr`` and second Taylor coefficient ``second`` (``d(t, y, args)``
    or None for the Euler step)."""

    field: Callable
    lr: Any
    second: Any = None

    def __call__(self, t, y, args):
        f = self.field(t, y, args)
        df_f = jax.jvp(lambda z: self.field(t, z, args), (y,), (f,))[1]
        correction = tree_map(lambda v: -0.5 * v, df_f)
        if self.second is not None:
            correction = tree_map(jnp.add, correction, self.second(t, y, args))
        return tree_map(lambda a, c: a + self.lr * c, f, correction)


def backward_error_field(field, *, lr, second=None) -> BackwardErrorField:
    r"""The second-order modified field :math:`f + \text{lr}\,(d - \tfrac12 (Df) f)` of a map
    :math:`y + \text{lr}\,f + \text{lr}^2 d + O(\text{lr}^3)`, as a callable ``(t, y, args)``.

    ``field`` is :math:`f(t, y, args)`; ``second`` is :math:`d(t, y, args)` (None: the map is
    the Euler step of ``field``).  States may be pytrees.  ``lr`` is a program input: a new
    ``lr`` reuses the compiled program."""
    if not callable(field):
        raise TypeError(f"field must be a vector field f(t, y, args), got {type(field).__name__}")
    if second is not None and not callable(second):
        raise TypeError("second must be the map's second Taylor coefficient d(t, y, args), or None for the Euler "
                        f"step; got {type(second).__name__}")
    return BackwardErrorField(field, _positive(lr, "lr", 0.01), second)


def backward_error_flow(flow, *, lr, second=None, names=None, args=None):
    r"""The modified flow of a one-step map with step ``lr`` whose first-order flow is ``flow``.

    The map is :math:`y_{k+1} = y_k + \text{lr}\,f(y_k) + \text{lr}^2 d(y_k) + O(\text{lr}^3)`,
    :math:`f` the field of ``flow`` (an `rf.ODE`; for an `rf.SDE`, its drift, the diffusion kept)
    and :math:`d` = ``second(t, y, args)`` (None: the Euler step of ``flow``).  The result
    follows the map to :math:`O(\text{lr}^2)` over a fixed horizon:

    .. math:: \dot y = f + \text{lr}\,\big(d - \tfrac12 (Df)\,f\big).

    ``names`` and ``args`` default to the flow's.

    Example
    -------
    >>> import regflow as rf, jax.numpy as jnp
    >>> loss = lambda w, a: jnp.sum(w**4) / 4
    >>> mod = rf.backward_error_flow(rf.gradient_flow(loss), lr=0.1)   # = rf.modified_flow(loss, lr=0.1)
    >>> float(mod.vector_field(0.0, jnp.array([1.0]), None)[0])          # -(w^3 + 0.1/4 * 6 w^5)
    -1.15
    """
    if not isinstance(flow, (ODE, SDE)):
        raise TypeError(f"flow must be the first-order flow (an rf.ODE or rf.SDE), got {type(flow).__name__}")
    names = flow.names if names is None else names
    args = flow.args if args is None else args
    if isinstance(flow, ODE):
        return ODE(backward_error_field(flow.vector_field, lr=lr, second=second), names=names, args=args)
    return flow.replace(drift=backward_error_field(flow.drift, lr=lr, second=second), names=names, args=args)
