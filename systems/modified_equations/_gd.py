r"""GD and its modified flow (Barrett & Dherin, Thm 3.1; Singh eq 2 with one batch) on the
two-parameter model :math:`E(a, b) = \tfrac12 (y - abx)^2`."""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

import regflow as rf

from ._common import agreement, flow_at, order_fit

#: The two-parameter model y = a b x of Barrett & Dherin, one data point.
AB_X, AB_Y = 1.0, 1.0
#: Learning rate of the GD map and start of the GD entry (far from balance: a^2 - b^2 = 4).
GD_LR = 0.1
GD_START = np.array([2.0, 0.05])
#: Horizon of the long run (IGR: which minimum GD reaches).
GD_LONG_T = 60.0
#: How much flatter than the gradient flow's minimum GD's limit is claimed to be (it is ~1%).
FLATTER = 1e-3
_AB = ("a", "b")


def ab_loss(w, args=None):
    r""":math:`E(a, b) = \tfrac12 (y - a b x)^2`: minima on the hyperbola :math:`ab = y/x`."""
    return 0.5 * (AB_Y - w[0] * w[1] * AB_X) ** 2


def ab_sharpness(w, args=None):
    r"""Largest Hessian eigenvalue of :math:`E` on the minima: :math:`x^2(a^2 + b^2)`."""
    return AB_X**2 * (w[0] ** 2 + w[1] ** 2)


def ab_imbalance(w, args=None):
    r""":math:`D = a^2 - b^2`, conserved by the gradient flow of :math:`E`."""
    return w[0] ** 2 - w[1] ** 2


def igr_term(w, args=None):
    r"""Barrett & Dherin's implicit regularizer (without :math:`\eta/4`): :math:`\|\nabla E\|^2
    = x^2(y - abx)^2(a^2 + b^2)`."""
    return jnp.sum(jax.grad(ab_loss)(w) ** 2)


def gradient_flow_limit_sharpness(w0):
    r"""Sharpness of the minimum the gradient flow reaches from ``w0``: it conserves :math:`D`, so
    it ends on :math:`ab = y/x` with :math:`a^2 - b^2 = D_0`, where
    :math:`x^2(a^2 + b^2) = x^2\sqrt{D_0^2 + 4(y/x)^2}`."""
    return AB_X**2 * float(np.sqrt(float(ab_imbalance(w0)) ** 2 + 4 * (AB_Y / AB_X) ** 2))


def gd_modified_flow(lr, coefficient=0.25):
    r"""Gradient flow of :math:`E + c\,\eta\,\|\nabla E\|^2`: `rf.modified_flow` for ``c = 1/4``."""
    if coefficient == 0.25:
        return rf.modified_flow(ab_loss, lr=lr, names=_AB)
    return rf.gradient_flow(_Penalized(coefficient * lr), names=_AB)


@rf.pytree_dataclass
class _Penalized:
    r""":math:`E + \text{weight}\,\|\nabla E\|^2` (the weight a program input)."""

    weight: Any

    def __call__(self, w, args):
        return ab_loss(w) + self.weight * igr_term(w)


@rf.pytree_dataclass
class FlippedStep:
    r""":math:`w - \eta\nabla E + \eta^2 H\nabla E`: a map whose modified loss is
    :math:`E - \frac\eta4\|\nabla E\|^2`, GD's implicit regularizer with the sign flipped."""

    lr: Any

    def __call__(self, k, w, args):
        g = jax.grad(ab_loss)(w)
        return w - self.lr * g + self.lr**2 * jax.jvp(jax.grad(ab_loss), (w,), (g,))[1]


def flipped_map(lr):
    return rf.Map(FlippedStep(lr), dt=lr, names=_AB)


AB_GRADIENT_FLOW = rf.gradient_flow(ab_loss, names=_AB)


def _gd_fit(coefficient=None):
    """GD's errors against the gradient flow (``None``) or the flow of :math:`E + c\\eta|\\nabla E|^2`."""
    flow_of = (lambda h: AB_GRADIENT_FLOW) if coefficient is None else (lambda h: gd_modified_flow(h, coefficient))
    return agreement(lambda h: rf.gradient_descent(ab_loss, lr=h, names=_AB), flow_of, GD_START, 1.0)


def long_runs(lr=GD_LR, t1=GD_LONG_T, start=GD_START):
    """GD (a `rf.Trajectory`), the gradient flow and the modified flow (arrays at GD's saved times)."""
    n = round(t1 / lr)
    gd = rf.iterate(rf.gradient_descent(ab_loss, lr=lr, names=_AB), start, n, every=max(1, n // 200))
    gf = flow_at(AB_GRADIENT_FLOW, start, gd.t[1:])
    mf = flow_at(gd_modified_flow(lr, 0.25), start, gd.t[1:])
    return gd, np.vstack([start, gf]), np.vstack([start, mf])


def ab_samples(n=12, seed=0):
    """Points off the minima and off balance, where the rate of D is not zero."""
    rng = np.random.default_rng(seed)
    return np.column_stack([rng.uniform(0.2, 2.5, n), rng.uniform(-1.5, 1.5, n)])


@rf.entry("modified_equations.gd", source="Barrett & Dherin Thm 3.1; Singh sec 2, eq 2 (m = 1)")
def gd(lr: float = GD_LR) -> rf.Method:
    r"""Gradient descent :math:`w_{k+1} = w_k - \eta\nabla E(w_k)` on the two-parameter model
    :math:`E = \tfrac12(y - abx)^2` and its modified flow (Barrett & Dherin; Singh eq 2 with one batch)

    .. math:: \dot w = -\nabla\tilde E,\qquad \tilde E = E + \frac{\eta}{4}\|\nabla E\|^2 .

    GD agrees with the gradient flow at first order and with the modified flow (built for the same
    :math:`\eta`) at second order; the constant :math:`1/4` is the only one that gives second order.
    The regularizer :math:`\frac\eta4\|\nabla E\|^2 = \frac\eta4 x^2(y-abx)^2(a^2+b^2)` breaks the
    gradient flow's conservation of :math:`D = a^2 - b^2` and steers GD to flatter minima (smaller
    :math:`a^2 + b^2`) than the gradient flow reaches from the same start."""
    flat = gradient_flow_limit_sharpness(GD_START)

    def flatter_than_gradient_flow(w, args):
        return (1 - FLATTER) * flat - ab_sharpness(w)

    def imbalance_rate(w, args):
        return -lr * AB_X**2 * (AB_Y - w[0] * w[1] * AB_X) ** 2 * ab_imbalance(w)

    return rf.Method(
        flow=rf.modified_flow(ab_loss, lr=lr, names=_AB),
        map=rf.gradient_descent(ab_loss, lr=lr, names=_AB),
        map_at=lambda h: rf.gradient_descent(ab_loss, lr=h, names=_AB),
        y0=GD_START, t1=GD_LONG_T, steps=round(GD_LONG_T / lr), samples=ab_samples(),
        view={"x": "a", "y": "b", "xlim": (0.0, 2.5), "ylim": (0.0, 2.5), "invariant": ab_imbalance},
        perturbations=[rf.Perturbation("the regularizer's sign flipped (modified loss E - lr/4 |grad E|^2)", {
            "map": flipped_map(lr), "map_at": flipped_map})],
        claims=[
            order_fit(lambda h: AB_GRADIENT_FLOW, 1.0, t1=1.0, name="GD vs gradient flow",
                      source="Barrett & Dherin sec 2; Singh sec 2: as lr -> 0 GD follows the gradient flow"),
            order_fit(lambda h: gd_modified_flow(h), 2.0, t1=1.0, name="GD vs modified flow E + lr/4 |grad E|^2",
                      source="Barrett & Dherin Thm 3.1; Singh eq 2 with m = 1"),
            order_fit(lambda h: gd_modified_flow(h, 0.5), 1.0, t1=1.0, name="constant lr/2 instead of lr/4",
                      source="the constant 1/4 is sharp: any other constant is first order only"),
            rf.Formula(imbalance_rate, rate_of=ab_imbalance, name="modified flow: dD/dt = -lr x^2 r^2 D",
                       source="Barrett & Dherin sec 3: the regularizer drives the parameters towards balance"),
            rf.StaysIn(flatter_than_gradient_flow, on="map", name="GD stays flatter than the gradient flow's minimum",
                       source=f"Barrett & Dherin sec 3: IGR steers GD towards flatter minima (sharpness below "
                              f"(1 - {FLATTER:g}) x {flat:.4g}, the gradient flow's limit from the same start)"),
        ],
    )
