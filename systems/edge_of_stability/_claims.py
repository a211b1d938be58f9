r"""Claims of the edge-of-stability family that compare gradient descent with the central flow
over windows of steps (GD oscillates; its time averages are what the central flow predicts).

Both follow the rules of `regflow.claims._base`: they measure ``ctx.method``'s ``map`` and
``flow`` (the context's shared runs), so falsification reaches them.  The flow is saved at the
map's step times (``t1 = steps * lr`` and ``steps = CLAIM_SAVES - 1``)."""

from __future__ import annotations

import dataclasses
from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np
from jax.flatten_util import ravel_pytree

import regflow as rf
from regflow.claims._context import label

#: Steps per averaging window (several periods of the oscillation cycle's fast part).
WINDOW = 20


def _windows(values, times, window, t_from, t_to):
    """Means over consecutive windows of ``window`` saves whose start lies in ``[t_from, t_to]``."""
    n = (len(times) - 1) // window * window
    means = values[:n].reshape(n // window, window, *values.shape[1:]).mean(axis=1)
    starts = times[:n:window]
    keep = (starts >= t_from) & (starts <= t_to)
    return starts[keep], means[keep]


def _single(traj, what):
    if traj.paths != 1:
        raise ValueError(f"{what} compares one start; give the method one start (y0 of one state)")
    return np.asarray(traj.flat[0])


def _matched(ctx):
    """GD's and the flow's states at the same times, ``(t, gd, flow)`` (flat, one start)."""
    gd, flow = ctx.map(), ctx.flow()
    if len(gd.t) != len(flow.t) or not np.allclose(gd.t, flow.t, rtol=1e-9, atol=1e-9):
        raise ValueError(f"the flow's saves ({len(flow.t)}) are not at the map's step times ({len(gd.t)}): "
                         "set t1 = steps * lr with steps = CLAIM_SAVES - 1")
    return gd.t, _single(gd, "the map"), _single(flow, "the flow"), gd, flow


@dataclasses.dataclass(frozen=True)
class EdgeAverage(rf.Claim):
    r"""``q`` averaged over windows of ``window`` steps along ``on`` ("map" or "flow") equals
    ``target(method)`` on windows starting in ``[t_from, t_to]``: the worst relative error."""

    q: Callable = None
    target: Callable = None
    on: str = "map"
    t_from: float = 0.0
    t_to: float = np.inf
    window: int = WINDOW
    tol: float = 1e-2

    def rows(self, ctx):
        traj = ctx.run(self.on)
        values = np.asarray(traj.evaluate(self.q))[0]
        starts, means = _windows(values, traj.t, self.window, self.t_from, self.t_to)
        want = float(self.target(ctx.method))
        err = float(np.max(np.abs(means - want)) / abs(want))
        title = f"EdgeAverage({label(self.q, self.name)}, {self.on})"
        return [self._row(ctx, title, f"window means ({self.window} steps) on t in [{self.t_from:g}, "
                          f"{min(self.t_to, traj.t[-1]):g}] vs {want:.6g}: worst relative error", err,
                          f"< {self.tol:g}", err < self.tol,
                          rf.Trace(traj.t, values, "t", label(self.q, self.name), "line", want))]


@dataclasses.dataclass(frozen=True)
class Tracks(rf.Claim):
    r"""The map's window means stay closer to the method's flow than to ``reference`` (an
    ``rf.ODE``, e.g. the gradient flow) by at least ``ratio``: the smallest
    :math:`|\bar w_{GD} - \bar w_{ref}| / |\bar w_{GD} - \bar w_{flow}|` over windows starting in
    ``[t_from, t_to]``."""

    reference: rf.ODE = None
    ratio: float = 10.0
    t_from: float = 0.0
    t_to: float = np.inf
    window: int = WINDOW

    def rows(self, ctx):
        t, gd, flow, gd_traj, _ = _matched(ctx)
        ref = ctx.memo(("reference", id(self.reference)), lambda: rf.integrate(
            self.reference, ctx.method.start(0), float(t[-1]), ts=t, **ctx.method.options))
        ref = np.asarray(ref.flat)
        starts, gd_w = _windows(gd, t, self.window, self.t_from, self.t_to)
        _, flow_w = _windows(flow, t, self.window, self.t_from, self.t_to)
        _, ref_w = _windows(ref, t, self.window, self.t_from, self.t_to)
        to_flow = np.linalg.norm(gd_w - flow_w, axis=1)
        to_ref = np.linalg.norm(gd_w - ref_w, axis=1)
        ratios = to_ref / np.maximum(to_flow, 1e-300)
        worst = float(np.min(ratios))
        i = int(np.argmin(ratios))
        return [self._row(ctx, f"Tracks(map near flow, {self.ratio:g}x)",
                          f"min over windows on t in [{self.t_from:g}, {min(self.t_to, t[-1]):g}] of "
                          f"|GD - reference| / |GD - flow| (there {to_ref[i]:.3g} / {to_flow[i]:.3g})", worst,
                          f">= {self.ratio:g}", worst >= self.ratio,
                          rf.Trace(starts, to_flow, "window start t", "distance of GD's window mean", "loglog",
                                   (starts, to_ref, "to the reference")))]


@dataclasses.dataclass(frozen=True)
class Predicts(rf.Claim):
    r"""A figure of GD, ``of_map(w_gd, w_flow, args)`` (it may read the flow's state at the same
    step), averaged over windows, equals the flow's prediction ``predict(method)(w_flow, args)``
    averaged over the same windows (starting in ``[t_from, t_to]``): the worst relative error."""

    of_map: Callable = None
    predict: Callable = None
    t_from: float = 0.0
    t_to: float = np.inf
    window: int = WINDOW
    tol: float = 0.1

    def rows(self, ctx):
        t, gd, flow, gd_traj, flow_traj = _matched(ctx)
        args = ctx.method.map.args
        unravel = ravel_pytree(ctx.method.start(0))[1]
        q = self.predict(ctx.method)
        got = np.asarray(jax.jit(jax.vmap(lambda a, b: self.of_map(unravel(a), unravel(b), args)))(
            jnp.asarray(gd), jnp.asarray(flow)))
        want = np.asarray(jax.jit(jax.vmap(lambda b: q(unravel(b), ctx.method.flow.args)))(jnp.asarray(flow)))
        starts, got_w = _windows(got, t, self.window, self.t_from, self.t_to)
        _, want_w = _windows(want, t, self.window, self.t_from, self.t_to)
        errs = np.abs(got_w - want_w) / np.maximum(np.abs(want_w), 1e-300)
        worst = float(np.max(errs))
        title = f"Predicts({self.name or label(self.of_map, None)})"
        return [self._row(ctx, title, f"window means ({self.window} steps) on t in [{self.t_from:g}, "
                          f"{min(self.t_to, t[-1]):g}]: worst relative error", worst, f"< {self.tol:g}",
                          worst < self.tol,
                          rf.Trace(starts, got_w, "window start t", "GD (window mean)", "line",
                                   (starts, want_w, "central flow's prediction")))]
