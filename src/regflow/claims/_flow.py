r"""Claims about quantities along the flow: `Conserved`, `Decays`, `Monotone`, `StaysIn`,
`GrowsLike`.  Each is measured pointwise (a Lie derivative or Ito generator at sample points)
where that makes sense, and along the context's shared flow (or map) run."""

from __future__ import annotations

import dataclasses
from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np

from .._analysis import lie_derivative
from .._system import SDE
from ._base import Claim
from ._context import TINY, conservation_residuals, flat_values, label, pointwise
from ._rows import Trace

#: Default tolerances (relative unless said otherwise).
POINTWISE_TOL = 1e-9
DRIFT_TOL = 1e-6
RATE_TOL = 1e-3
GROWTH_TOL = 1e-2


def _values(traj, q):
    """``q`` along a run as ``(paths, n, entries)``."""
    return flat_values(traj.evaluate(q), traj.flat.ndim - 1)


@dataclasses.dataclass(frozen=True)
class Conserved(Claim):
    r"""``q`` is constant along the flow.  Pointwise: for an ODE the cosine between
    :math:`\nabla q` and the field; for an SDE both the Ito generator
    :math:`\nabla q\cdot b + \tfrac12 \operatorname{tr}(G G^\top \nabla^2 q)` (relative to its
    terms; a Stratonovich drift converted to Ito) and the cosine between :math:`\nabla q` and
    each noise column, so it holds pathwise.  Along trajectories: the drift of ``q`` relative
    to :math:`\max(1, |q(y_0)|)`."""

    q: Callable = None
    tol: float = POINTWISE_TOL
    drift_tol: float = DRIFT_TOL

    def rows(self, ctx):
        method = ctx.method
        name = f"Conserved({label(self.q, self.name)})"
        system, args = method.flow, method.flow.args
        points = jax.tree_util.tree_map(jnp.asarray, method.points)
        res = np.asarray(conservation_residuals(system, self.q, args)(points))  # (points, 1 or 2, entries)
        each = f" over {res.shape[-1]} entries" if res.shape[-1] > 1 else ""
        sde = isinstance(system, SDE)
        what = "|Lq| / its terms (Ito generator)" if sde else "|cos(grad q, f)|"
        trace = Trace(np.arange(len(res)), res[:, 0].max(axis=-1), "sample point", what, "points", self.tol)
        rows = [self._row(ctx, name, f"{what} at {len(res)} points{each}", res[:, 0].max(), f"< {self.tol:g}",
                          res[:, 0].max() < self.tol, trace)]
        if sde:
            trace = Trace(np.arange(len(res)), res[:, 1].max(axis=-1), "sample point", "|cos(grad q, G_j)|",
                          "points", self.tol)
            rows.append(self._row(ctx, name, "|cos(grad q, G)| at points (pathwise)", res[:, 1].max(),
                                  f"< {self.tol:g}", res[:, 1].max() < self.tol, trace))
        traj = ctx.flow()
        values = _values(traj, self.q)
        change = (values - values[:, :1]) / np.maximum(1.0, np.abs(values[:, :1]))
        drift = float(np.max(np.abs(change)))
        worst = np.unravel_index(np.argmax(np.abs(change)), change.shape)[-1]
        trace = Trace(traj.t, change[..., worst], "t", f"relative drift of {label(self.q, self.name)}", "drift",
                      self.drift_tol)
        rows.append(self._row(ctx, name, f"drift along {traj.paths} trajectories{each}", drift,
                              f"< {self.drift_tol:g}", drift < self.drift_tol, trace))
        return rows


@dataclasses.dataclass(frozen=True)
class Decays(Claim):
    r""":math:`q(t) = q(0)\,e^{-\text{rate}\,t}`: pointwise :math:`|\mathcal L q + \text{rate}\,q|`
    relative to :math:`|\text{rate}\,q|`, and the rate fitted along trajectories.  For an SDE
    the mean over paths decays (the generator is used)."""

    q: Callable = None
    rate: float = 0.0
    tol: float = RATE_TOL

    def rows(self, ctx):
        method = ctx.method
        name = f"Decays({label(self.q, self.name)}, rate={self.rate:g})"
        lq = lie_derivative(method.flow, self.q)
        args = method.flow.args
        lhs = pointwise(lambda y: lq(y, args), method.points)
        qv = pointwise(lambda y: self.q(y, args), method.points)
        errs = np.max(np.abs(lhs + self.rate * qv) / (np.abs(self.rate * qv) + TINY), axis=-1)
        point_err = float(np.max(errs))
        traj = ctx.flow()
        values = _values(traj, self.q)
        if isinstance(method.flow, SDE):
            values = values.mean(axis=0)[None]
        curves = np.moveaxis(values, -1, 1).reshape(-1, len(traj.t))
        curves = curves[np.abs(curves[:, 0]) > TINY]
        fits = [-np.polyfit(traj.t, np.log(np.abs(v)), 1)[0] for v in curves]
        fit_err = max(abs(f - self.rate) for f in fits) / abs(self.rate)
        v0 = values[..., 0]
        law = (traj.t, v0[0, 0] * np.exp(-self.rate * traj.t), f"q(0) exp(-{self.rate:g} t)")
        return [
            self._row(ctx, name, "|Lq + rate q| / |rate q| at points", point_err, f"< {self.tol:g}",
                      point_err < self.tol,
                      Trace(np.arange(len(errs)), errs, "sample point", "|Lq + rate q| / |rate q|", "points",
                            self.tol)),
            self._row(ctx, name, "fitted rate, relative error", fit_err, f"< {self.tol:g}", fit_err < self.tol,
                      Trace(traj.t, v0, "t", label(self.q, self.name), "line", law)),
        ]


@dataclasses.dataclass(frozen=True)
class Monotone(Claim):
    """``q`` never increases (``increasing=True``: never decreases) along the flow (``on="flow"``:
    pointwise Lie derivative and along trajectories) or along the map (``on="map"``)."""

    q: Callable = None
    increasing: bool = False
    on: str = "flow"
    tol: float = POINTWISE_TOL

    def rows(self, ctx):
        method = ctx.method
        word = "increasing" if self.increasing else "decreasing"
        name = f"Monotone({label(self.q, self.name)}, {word}, {self.on})"
        sign = -1.0 if self.increasing else 1.0
        rows = []
        if self.on == "flow":
            lq = lie_derivative(method.flow, self.q)
            args = method.flow.args
            signed = np.max(sign * pointwise(lambda y: lq(y, args), method.points), axis=-1)
            worst = float(np.max(signed))
            rows.append(self._row(ctx, name, "max sign-adjusted Lq at points", worst, f"<= {self.tol:g}",
                                  worst <= self.tol,
                                  Trace(np.arange(len(signed)), signed, "sample point", "sign-adjusted Lq", "points",
                                        self.tol)))
        traj = ctx.run(self.on)
        values = _values(traj, self.q)
        steps = sign * np.diff(values, axis=1) / np.maximum(1.0, np.abs(values[:, :-1]))
        worst = float(steps.max())
        rows.append(self._row(ctx, name, f"max relative wrong-way step along {traj.paths} runs", worst,
                              f"<= {self.tol:g}", worst <= self.tol,
                              Trace(traj.t, values[..., 0], "t", label(self.q, self.name))))
        return rows


@dataclasses.dataclass(frozen=True)
class StaysIn(Claim):
    """Trajectories enter the band ``margin(y, args) >= 0`` and then stay in it: measured as the
    fraction of saved states inside the band after first entry (worst path)."""

    margin: Callable = None
    on: str = "flow"
    min_fraction: float = 1.0
    atol: float = 1e-9

    def rows(self, ctx):
        name = f"StaysIn({label(self.margin, self.name)}, {self.on})"
        traj = ctx.run(self.on)
        margins = np.atleast_2d(traj.evaluate(self.margin))
        inside = margins >= -self.atol
        entered = inside.any(axis=1)
        first = np.argmax(inside, axis=1)
        fractions = [inside[p, first[p]:].mean() if entered[p] else 0.0 for p in range(len(inside))]
        worst = float(min(fractions))
        entry_t = float(traj.t[first.max()]) if entered.all() else float("inf")
        return [self._row(ctx, name, f"fraction inside after entry (all entered by t={entry_t:.3g})", worst,
                          f">= {self.min_fraction:g}", entered.all() and worst >= self.min_fraction,
                          Trace(traj.t, margins, "t", f"{label(self.margin, self.name)} (>= 0 inside)", "line", 0.0))]


@dataclasses.dataclass(frozen=True)
class GrowsLike(Claim):
    r"""Along the flow, ``q(t)`` follows ``law(t)`` up to an affine fit
    :math:`q \approx a\,\text{law}(t) + b` on ``t >= t_from``: measured as the largest residual
    relative to the range of ``q`` there (and ``a > 0``)."""

    q: Callable = None
    law: Callable = None
    t_from: float = 0.0
    tol: float = GROWTH_TOL

    def rows(self, ctx):
        name = f"GrowsLike({label(self.q, self.name)}, {label(self.law, None)})"
        traj = ctx.flow()
        values = np.atleast_2d(traj.evaluate(self.q))
        late = traj.t >= self.t_from
        x = np.asarray(self.law(traj.t[late]), dtype=float)
        worst, slope_ok, fitted = 0.0, True, None
        for v in values[:, late]:
            a, b = np.polyfit(x, v, 1)
            slope_ok &= a > 0
            worst = max(worst, np.max(np.abs(a * x + b - v)) / (np.ptp(v) + TINY))
            fitted = a * x + b if fitted is None else fitted
        law = (traj.t[late], fitted, f"a {label(self.law, None)}(t) + b")
        return [self._row(ctx, name, f"max affine-fit residual / range on t >= {self.t_from:g}", worst,
                          f"< {self.tol:g}", slope_ok and worst < self.tol,
                          Trace(traj.t, values, "t", label(self.q, self.name), "line", law))]
