r"""Dense output: the state between saved times, from a quintic Hermite interpolant.

``rf.integrate(ode, y0, t1, dense=True)`` keeps the solver's accepted steps :math:`t_i`, the
states :math:`y_i` there, the field :math:`f_i = f(t_i, y_i)` and its derivative along the
flow :math:`\dot f_i = \partial_t f + (\partial_y f) f` (one Jacobian-vector product); between
two steps (:math:`h = t_{i+1} - t_i`, :math:`s = (t - t_i)/h`)

.. math::
    y(t) \approx H_0(s)\, y_i + H_1(s)\, h f_i + H_2(s)\, h^2 \dot f_i
               + H_0(1-s)\, y_{i+1} - H_1(1-s)\, h f_{i+1} + H_2(1-s)\, h^2 \dot f_{i+1},

:math:`H_0 = 1 - 10s^3 + 15s^4 - 6s^5`, :math:`H_1 = s - 6s^3 + 8s^4 - 3s^5`,
:math:`H_2 = (s^2 - 3s^3 + 3s^4 - s^5)/2`: exact for quintics, error :math:`O(h^6)` per step,
so at the steps a 5th-order controller takes it is about as accurate as the solve itself.
It is built from the saved steps and the field, not kept from the solver (so it is the same
for scipy and diffrax, and `Trajectory.save` keeps it).
"""

from __future__ import annotations

import dataclasses
import functools

import jax
import jax.numpy as jnp
import numpy as np

from . import _validate


@dataclasses.dataclass(frozen=True, eq=False)
class Hermite:
    """Knots ``t`` (n,) (monotone, in the run's direction), flat states ``y``, field values
    ``dy`` and their time derivatives ``ddy`` (n, dim); called with times it gives flat
    states ``(*ts.shape, dim)``."""

    t: np.ndarray
    y: np.ndarray
    dy: np.ndarray
    ddy: np.ndarray

    def __call__(self, ts) -> np.ndarray:
        ts = np.asarray(ts, dtype=np.float64)
        t, y, dy, ddy = self.t, self.y, self.dy, self.ddy
        if len(t) > 1 and t[-1] < t[0]:  # a backward run: knots in increasing order
            t, y, dy, ddy = t[::-1], y[::-1], dy[::-1], ddy[::-1]
        lo, hi = t[0], t[-1]
        if np.any(~np.isfinite(ts)) or np.any(ts < lo) or np.any(ts > hi):
            raise ValueError(f"ts must lie in the span the run covered, [{lo:g}, {hi:g}], got [{np.min(ts):g}, "
                             f"{np.max(ts):g}]")
        if len(t) == 1:
            return np.broadcast_to(y[0], (*ts.shape, y.shape[-1])).copy()
        i = np.clip(np.searchsorted(t, ts, side="right") - 1, 0, len(t) - 2)
        h = (t[i + 1] - t[i])[..., None]
        s = (ts - t[i])[..., None] / h
        return (_h0(s) * y[i] + _h1(s) * h * dy[i] + _h2(s) * h * h * ddy[i]
                + _h0(1 - s) * y[i + 1] - _h1(1 - s) * h * dy[i + 1] + _h2(1 - s) * h * h * ddy[i + 1])


def _h0(s):
    return 1 - s**3 * (10 - 15 * s + 6 * s * s)


def _h1(s):
    return s - s**3 * (6 - 8 * s + 3 * s * s)


def _h2(s):
    return 0.5 * s * s * (1 - 3 * s + 3 * s * s - s**3)


@functools.lru_cache(maxsize=256)
def _field_program(vector_field):
    def derivatives(t, y, params):
        f = vector_field(t, y, params)
        _, df = jax.jvp(lambda t, y: vector_field(t, y, params), (t, y), (jnp.ones_like(t), f))
        return f, df

    return jax.jit(jax.vmap(derivatives, in_axes=(0, 0, None)))


def knots(vector_field, t, y, params) -> Hermite:
    """The interpolant through the finite saved steps ``t`` (n,), ``y`` (n, dim) of one path
    (``vector_field`` on flat states with the compiled ``params``)."""
    t, y = np.asarray(t, np.float64), np.asarray(y, np.float64)
    keep = np.all(np.isfinite(y), axis=-1)
    t, y = t[keep], y[keep]
    with np.errstate(all="ignore"):
        dy, ddy = _field_program(vector_field)(jnp.asarray(t), jnp.asarray(y), params)
    return Hermite(t, y, np.asarray(dy), np.asarray(ddy))


def check(dense, system, ensemble):
    """``dense=True`` needs one path of an ODE."""
    from ._system import SDE

    if not _validate.flag(dense, "dense"):
        return
    if isinstance(system, SDE):
        raise ValueError("dense=True interpolates ODE solutions; an SDE's path between grid points is not fixed by its "
                         "saves: save every step (ts=None) or use a finer dt")
    if ensemble:
        raise ValueError("dense=True keeps the steps of one path; integrate one start at a time (leave paths and "
                         "batched out)")
