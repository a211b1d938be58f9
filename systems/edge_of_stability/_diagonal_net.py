r"""GD at the edge of stability on a two-layer diagonal linear network, against its central flow.

:math:`f(x) = \sum_j x_j u_j v_j`, one training example, :math:`L(u, v) = \tfrac12 (f(x) - y)^2`
(16 parameters; inputs :math:`x_j` spread over [0.5, 2]).  Its minima :math:`\sum_j x_j u_j v_j = y`
have sharpness :math:`\sum_j x_j^2 (u_j^2 + v_j^2)` from :math:`2 y \min_j x_j` up: gradient flow
from a small balanced start grows the weights of the large inputs fastest and ends at a sharp
minimum (:math:`S \approx 3.53`), sharpening progressively (from 1.26 at t = 1); GD at ``lr = 0.8`` (edge
:math:`2/\eta = 2.5`) reaches the edge, oscillates there and, like its central flow, moves the
weight to the small inputs and ends at a minimum of sharpness :math:`\approx 2/\eta`.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np
from jax.flatten_util import ravel_pytree

import regflow as rf
from regflow._central_flow import CENTRAL_ITERS, edge_terms

from ._claims import EdgeAverage, Predicts, Tracks

#: Width (inputs = hidden units) and the input scales x_j.
DIM = 8
X_RANGE = (0.5, 2.0)
#: Target of the one training example.
Y = 1.0
#: Balanced start u = v = ALPHA (sharpness 1.95 there).
ALPHA = 0.05
#: Learning rate: the edge 2 / LR = 2.5 lies between the start's sharpness and gradient flow's limit (3.53).
LR = 0.8
#: GD steps; the flow is saved at every step time (t1 = STEPS * LR).
STEPS = 200
#: The edge phase measured by the rows: GD reaches 2/lr by t ~ 5 and its oscillation cycle settles
#: by EDGE_FROM; the predictions of the loss and the oscillation are checked while sigma^2 is not
#: negligible (sigma^2 decays from 0.06 to 4e-4 by t = 100; later GD's oscillation lags behind
#: the prediction, x^2 / sigma^2 = 0.8 on [48, 64], 0.5 by t = 150).
EDGE_FROM, PREDICT_TO = 16.0, 32.0
#: Flow runs: tolerances far below the claims'; scipy's solver calling the jitted field compiles in
#: half the time of diffrax's solve here (200 saves, about 1200 field evaluations).
RUN_OPTIONS = {"backend": "scipy", "rtol": 1e-9, "atol": 1e-11}


def problem():
    return {"x": jnp.asarray(np.linspace(*X_RANGE, DIM)), "y": jnp.asarray(Y)}


def loss(w, args):
    r""":math:`L = \tfrac12(\sum_j x_j u_j v_j - y)^2`, ``w = (u, v)`` flat."""
    u, v = w[:DIM], w[DIM:]
    return 0.5 * (jnp.sum(args["x"] * u * v) - args["y"]) ** 2


def names():
    return tuple(f"u{j}" for j in range(DIM)) + tuple(f"v{j}" for j in range(DIM))


def start(alpha=ALPHA):
    return np.full(2 * DIM, float(alpha))


#: The sharpness S(w) (Lanczos on HVPs, exact here: 30 steps >= 16 parameters).
sharpness = rf.sharpness_fn(loss)
sharpness.__name__ = "S"


def predicted_loss(method):
    r"""The method's flow's time-averaged loss :math:`L(\bar w) + \sigma^2(\bar w)/\eta` (sec 3.1),
    with the flow's own :math:`\sigma^2` and :math:`\eta`."""
    field = method.flow.vector_field

    def q(w, args):
        return loss(w, args) + field.sigma2(w, args) / field.lr

    return q


def gd_loss(w_gd, w_flow, args):
    return loss(w_gd, args)


def oscillation_sq(w_gd, w_flow, args):
    r""":math:`\langle u(\bar w), w_k - \bar w(t_k)\rangle^2`: GD's displacement along the top eigenvector."""
    u = edge_terms(loss, w_flow, args, LR).vector
    return (u @ (ravel_pytree(w_gd)[0] - ravel_pytree(w_flow)[0])) ** 2


@functools.partial(jax.tree_util.register_dataclass, data_fields=["lr", "scale", "sign"], meta_fields=["loss"])
@dataclasses.dataclass(frozen=True)
class Projected:
    r"""A wrong central flow for falsification: :math:`-(\nabla L + s\,\tfrac{c\sigma^2}{2}\nabla S)`,
    predicting :math:`c\sigma^2` (``scale = c = 1/2``: sigma^2 halved; ``sign = s = -1``: projection flipped)."""

    loss: Callable
    lr: Any
    scale: Any = 1.0
    sign: Any = 1.0

    def __call__(self, t, w, args):
        e = edge_terms(self.loss, w, args, self.lr, CENTRAL_ITERS)
        return -(e.grad + self.sign * 0.5 * self.scale * e.sigma2 * e.grad_sharpness)

    def sigma2(self, w, args):
        return self.scale * edge_terms(self.loss, w, args, self.lr, CENTRAL_ITERS).sigma2


def edge(method):
    """The edge 2 / lr of the method's GD (its map's step is the learning rate)."""
    return 2.0 / method.map.dt


#: Seed of the jitter of the sample points.
POINT_SEED = 1


def below_edge_points():
    """Jittered balanced states u = v = a (a = 0.03 .. 0.15): sharpness 1.56 .. 1.98, between
    1 / LR and 2 / LR."""
    rng = np.random.default_rng(POINT_SEED)
    a = np.array([0.03, 0.05, 0.1, 0.15])[:, None]
    return a * (1.0 + 0.2 * rng.uniform(-1.0, 1.0, size=(len(a), 2 * DIM)))


def edge_points(args):
    """States past the edge, still sharpening (S = 2.97 .. 3.49 > 2 / LR, -<grad S, grad L> = 1.7 .. 0.12):
    GD at a small step (lr = 0.05, close to gradient flow) at t = 1.75 .. 2.5."""
    traj = rf.iterate(rf.gradient_descent(loss, lr=0.05, args=args), start(), 50)
    return np.asarray(traj.y)[35::5]


def gradient_field(w, args):
    return -jax.grad(loss)(w, args)


gradient_field.__name__ = "-grad L"


def no_change(w, args):
    return jnp.zeros(())


no_change.__name__ = "dS/dt = 0"


@rf.entry("edge_of_stability.diagonal_net", source="Cohen et al. 2025 (central flows) sec 3.1; Cohen et al. 2021 "
          "(edge of stability) sec 3")
def diagonal_net(lr: float = LR, alpha: float = ALPHA, steps: int = STEPS) -> rf.Method:
    r"""GD at ``lr`` on the diagonal linear network (module doc) against its central flow
    :math:`\dot w = -(\nabla L + \tfrac{\sigma^2}{2}\nabla S)` (``rf.central_flow``).  GD
    sharpens progressively from 1.95 to :math:`2/\eta`, stays there (window means), and its
    window means track the central flow, far from gradient flow; the central flow holds
    :math:`S = 2/\eta` and predicts GD's time-averaged loss :math:`L + \sigma^2/\eta` and the
    variance :math:`\sigma^2` of its oscillation along the top eigenvector."""
    args = problem()
    flow = rf.central_flow(loss, lr=lr, args=args, names=names())
    gd = rf.gradient_descent(loss, lr=lr, args=args, names=names())
    t1 = steps * lr
    edge_to = t1

    def wrong(field):
        return {"flow": rf.ODE(field, args=args, names=names())}

    return rf.Method(
        flow=flow, map=gd, y0=start(alpha)[None], t1=t1, steps=steps, options=dict(RUN_OPTIONS),
        samples=below_edge_points(),
        perturbations=[
            rf.Perturbation("edge at 1/lr (the other learning-rate convention)",
                            {"flow": rf.central_flow(loss, lr=2 * lr, args=args, names=names())}),
            rf.Perturbation("sigma^2 halved", wrong(Projected(loss, lr, 0.5, 1.0))),
            rf.Perturbation("projection sign flipped", wrong(Projected(loss, lr, 1.0, -1.0))),
        ],
        claims=[
            EdgeAverage(sharpness, edge, on="map", t_from=EDGE_FROM, t_to=edge_to, tol=0.05,
                        name="GD's sharpness at 2/lr",
                        source="Cohen et al. 2021 sec 3: progressive sharpening to 2/lr, then the edge of stability "
                               "(sharpness hovers at 2/lr)"),
            EdgeAverage(sharpness, edge, on="flow", t_from=EDGE_FROM, t_to=edge_to, window=1, tol=1e-4,
                        name="central flow's sharpness at 2/lr",
                        source="Cohen et al. 2025 sec 3.1: sigma^2 keeps dS/dt = 0 at S = 2/lr"),
            rf.Formula(no_change, rate_of=sharpness, at=edge_points(args), tol=1e-6,
                       source="Cohen et al. 2025 sec 3.1: at the edge the projected flow has dS/dt = 0"),
            rf.Formula(gradient_field, field=True, tol=1e-9, name="below the edge: gradient flow",
                       source="Cohen et al. 2025 sec 3.1: below 2/lr the central flow is the gradient flow"),
            Tracks(rf.gradient_flow(loss, args=args), ratio=10.0, t_from=EDGE_FROM, t_to=edge_to,
                   source="Cohen et al. 2025 sec 3 (fig 1): GD follows the central flow, not the gradient flow"),
            Predicts(gd_loss, predicted_loss, t_from=EDGE_FROM, t_to=PREDICT_TO, tol=0.15,
                     name="GD's time-averaged loss = L + sigma^2/lr",
                     source="Cohen et al. 2025 sec 3.1: time-averaged loss L(w) + sigma^2 S(w)/2 = L + sigma^2/lr"),
            Predicts(oscillation_sq, lambda m: m.flow.vector_field.sigma2, t_from=EDGE_FROM, t_to=PREDICT_TO,
                     tol=0.15, name="oscillation variance along u = sigma^2",
                     source="Cohen et al. 2025 sec 3.1: GD oscillates along u with E[x^2] = sigma^2"),
        ],
    )
