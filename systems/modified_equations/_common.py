r"""What the modified-equation entries share: the error of a map against a flow at a fixed
number of saves (so one compiled program serves every step size), and `OrderFit` claims on it."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

import regflow as rf

#: Step sizes of the order fits: halving, so each run has a whole number of saves.
STEPS = (0.025, 0.0125, 0.00625, 0.003125)
#: Saved states per run of an order fit: the same array shapes for every step size, so a map
#: (or flow) declared once is compiled once for all of them.
FIT_SAVES = 20
#: Tolerances of the reference flow solves (DOP853), far below the maps' errors.
REF_RTOL, REF_ATOL = 1e-12, 1e-14
#: Tolerance on a fitted order (as `rf.Agrees`).
ORDER_TOL = 0.15


def flow_at(flow, y0, ts):
    """The flow at times ``ts`` (reference accuracy: scipy DOP853), ``(len(ts), dim)``."""
    traj = rf.integrate(flow, y0, ts[-1], ts=ts, backend="scipy", method="dop853", rtol=REF_RTOL, atol=REF_ATOL)
    if not traj.ok:
        raise RuntimeError(f"the reference flow did not finish: {traj.status}")
    return traj.y


def map_flow_error(map_, flow, y0, t1, *, epochs=None, observable=None) -> float:
    r""":math:`\max_k |y_k - y(k\,dt)|` of ``map_`` against ``flow`` from ``y0`` over ``FIT_SAVES``
    times up to ``t1`` (``epochs=n``: over ``n`` map steps instead; ``n = 1`` is the local error).
    With ``observable`` (``q(y, args)``), ``q`` is compared instead of the state."""
    n = epochs or round(t1 / map_.dt)
    traj = rf.iterate(map_, y0, n, every=max(1, n // FIT_SAVES))
    if not traj.ok:
        raise RuntimeError(f"the map with dt={map_.dt:g} diverged ({traj.status}); use smaller steps")
    disc, cont = traj.y[1:], flow_at(flow, y0, traj.t[1:])
    if observable is None:
        return float(np.max(np.linalg.norm(disc - cont, axis=-1)))
    qa = jax.vmap(lambda y: observable(y, map_.args))(jnp.asarray(disc))
    qb = jax.vmap(lambda y: observable(y, flow.args))(jnp.asarray(cont))
    return float(np.max(np.abs(np.asarray(qa) - np.asarray(qb))))


def agreement(map_at, flow_of, y0, t1, steps=STEPS, **kw) -> rf.Agreement:
    """Errors of ``map_at(h)`` against ``flow_of(h)`` for ``h`` in ``steps`` and the fitted order
    (for figures: the claims fit the same errors with `rf.OrderFit`)."""
    steps = np.asarray(steps, dtype=float)
    if steps.size < 2 or np.any(steps <= 0):
        raise ValueError(f"steps must hold at least two positive step sizes, e.g. {STEPS}, got {steps}")
    errors = np.array([map_flow_error(map_at(h), flow_of(h), y0, t1, **kw) for h in steps])
    return rf.Agreement(steps=steps, errors=errors, order=float(np.polyfit(np.log(steps), np.log(errors), 1)[0]))


def order_fit(flow_of, order, *, t1, name, source, map_of=None, epochs=None, observable=None, tol=ORDER_TOL,
              **kw):
    r"""`rf.OrderFit` of the method's maps ``method.map_at(h)`` (or ``map_of(method, h)``) against
    ``flow_of(h)`` from the method's first start, with ``FIT_SAVES`` saves up to ``t1``."""
    map_of = map_of or (lambda method, h: method.map_at(h))

    def error(method, h):
        return map_flow_error(map_of(method, h), flow_of(h), method.start(0), t1, epochs=epochs,
                              observable=observable)

    error.__name__ = name
    horizon = f"{epochs} step(s)" if epochs else f"t = {t1:g}"
    return rf.OrderFit(error=error, order=order, steps=STEPS, tol=tol, name=name, source=source,
                       what=f"max error vs the flow up to {horizon}", **kw)
