"""Claims about the discrete map: `Agrees` (the map tracks the flow with a fitted order) and
`StepRatio` (one step multiplies a quantity by a bounded factor)."""

from __future__ import annotations

import dataclasses
from typing import Any, Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from .._compare import agreement_order
from ._base import Claim
from ._context import label
from ._rows import Trace

ORDER_TOL = 0.15
#: Step sizes of an order fit.
ORDER_STEPS = (0.02, 0.01, 0.005, 0.0025)


@dataclasses.dataclass(frozen=True)
class Agrees(Claim):
    """The map tracks the flow with error O(dt^order): the order fitted over maps
    ``map_at(dt)`` (default: the method's ``map_at``) for ``dt`` in ``steps`` up to flow time
    ``t1``.  ``flow`` (default: the method's) may be a function ``dt -> flow``, e.g.
    ``lambda h: rf.modified_flow(loss, lr=h)``."""

    map_at: Callable = None
    order: float = 1.0
    steps: Sequence[float] = ORDER_STEPS
    t1: float = 1.0
    flow: Any = None
    tol: float = ORDER_TOL

    def rows(self, ctx):
        method = ctx.method
        flow = self.flow or method.flow
        map_at = self.map_at or method.map_at
        if map_at is None:
            raise ValueError("Agrees needs map_at= (dt -> the map at step dt), here or on the method")
        title = f"Agrees(order={self.order:g}{', ' + self.name if self.name else ''})"
        fit = agreement_order(map_at, flow, method.start(0), self.t1, self.steps)
        slope = (fit.steps, fit.errors[0] * (np.asarray(fit.steps) / fit.steps[0]) ** self.order,
                 f"slope {self.order:g}")
        return [self._row(ctx, title, f"fitted order over dt={list(self.steps)} (errors {fit.errors[0]:.2g}.."
                          f"{fit.errors[-1]:.2g})", fit.order, f"{self.order:g} +- {self.tol:g}",
                          abs(fit.order - self.order) < self.tol,
                          Trace(fit.steps, fit.errors, "step size dt", "max error vs flow", "loglog", slope))]


@dataclasses.dataclass(frozen=True)
class StepRatio(Claim):
    """One map step multiplies ``q`` by a factor in ``(lo, hi]``: checked at points ``at`` (one
    step from each, over ``draws`` keys for a stochastic map), else along the map's runs."""

    q: Callable = None
    lo: float = 0.0
    hi: float = 1.0
    at: Any = None
    draws: int = 16
    rtol: float = 1e-12

    def rows(self, ctx):
        method = ctx.method
        title = f"StepRatio({label(self.q, self.name)} in ({self.lo:.6g}, {self.hi:.6g}])"
        args = method.map.args
        if self.at is not None:
            pts = jnp.asarray(np.atleast_2d(self.at))
            q, step = self.q, method.map.step
            if method.map.stochastic:
                keys = jax.random.split(jax.random.PRNGKey(method.seed), self.draws)

                @jax.jit
                def ratios(pts, keys):  # one compiled call, not one per primitive
                    nxt = jax.vmap(lambda key: jax.vmap(lambda y: step(0, y, args, key))(pts))(keys)
                    before = jnp.broadcast_to(jax.vmap(lambda y: q(y, args))(pts), nxt.shape[:2])
                    after = jax.vmap(lambda y: q(y, args))(nxt.reshape(-1, pts.shape[-1])).reshape(before.shape)
                    return after / before

                ratio = np.asarray(ratios(pts, keys))
            else:
                ratio = np.asarray(jax.jit(jax.vmap(lambda y: q(step(0, y, args), args) / q(y, args)))(pts))
            where = f"one step from {len(pts)} points"
        else:
            traj = ctx.map()
            values = np.atleast_2d(traj.evaluate(self.q))
            ratio, where = values[:, 1:] / values[:, :-1], f"along {traj.paths} runs"
        lo_m, hi_m = float(np.min(ratio)), float(np.max(ratio))
        ok = lo_m > self.lo and hi_m <= self.hi * (1 + self.rtol)
        ratios = np.sort(ratio.ravel())
        return [self._row(ctx, title, f"min {lo_m:.6g}, max (shown) {where}", hi_m,
                          f"in ({self.lo:.6g}, {self.hi:.6g}]", ok,
                          Trace(np.arange(len(ratios)), ratios, "step (sorted by ratio)", "q after / q before",
                                "points", self.hi))]


@dataclasses.dataclass(frozen=True)
class OrderFit(Claim):
    r"""An error shrinks like :math:`dt^{\text{order}}` over a family of step sizes:
    ``error(method, dt) -> float`` for ``dt`` in ``steps`` (e.g. the distance between the
    method's map at step ``dt`` and a modified flow, or a weak error of an SME), the order fitted
    as the log-log slope.  ``error`` receives the method so that it measures its systems."""

    error: Callable = None
    order: float = 1.0
    steps: Sequence[float] = ORDER_STEPS
    tol: float = ORDER_TOL
    what: str = "error"

    def rows(self, ctx):
        steps = np.asarray(self.steps, dtype=float)
        errors = np.array([float(self.error(ctx.method, float(h))) for h in steps])
        if not np.all(np.isfinite(errors) & (errors > 0)):
            raise ValueError(f"OrderFit needs positive finite errors, got {errors}")
        fitted = float(np.polyfit(np.log(steps), np.log(errors), 1)[0])
        slope = (steps, errors[0] * (steps / steps[0]) ** self.order, f"slope {self.order:g}")
        title = f"OrderFit({self.name or label(self.error, None)}, order={self.order:g})"
        return [self._row(ctx, title, f"fitted order of the {self.what} over dt={list(self.steps)} "
                          f"(errors {errors[0]:.2g}..{errors[-1]:.2g})", fitted, f"{self.order:g} +- {self.tol:g}",
                          abs(fitted - self.order) < self.tol,
                          Trace(steps, errors, "step size dt", self.what, "loglog", slope))]
