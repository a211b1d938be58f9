r"""Unit-norm techniques for the linear classifier: weight normalization :math:`w = g\,v/\|v\|`
(sec 21.1, eq 89-95) and the Lagrange-multiplier method (sec 6.1, eq 12-16)."""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np
import regflow as rf

from ._classifier import exp_gradient, rescaled, rho_coord, rv_starts, unit, unit_norm_sq
from ._data import (LONG_OPTIONS, LR, MAP_STEPS, STIFF_HORIZON, angle_to, dataset, flipped_labels, linear_starts,
                    soudry_constants, svm_asymptotics)
from ._nets import layer_shapes, linear_normalized_field, model


def wn_field(t, y, data):
    r"""Eq 93-95 as a flow: :math:`\dot g = \tilde w^\top G`,
    :math:`\dot v = \frac{g}{\|v\|}(I - \tilde w\tilde w^\top)G`,
    :math:`\tilde w = v/\|v\|`, :math:`G = -\partial_wL` at :math:`w = g\tilde w`."""
    g, v = y[0], y[1:]
    u = unit(v)
    G = exp_gradient(g * u, data)
    return jnp.concatenate([(u @ G)[None], g / jnp.linalg.norm(v) * (G - u * (u @ G))])


def wn_formula(y, data):
    r"""Eq 93-95 as a formula of the state: `wn_field` at t = 0."""
    return wn_field(0.0, y, data)


def wn_printed_field(t, y, data):
    r"""Eq 91-92 read as the gradient: :math:`\dot v = -S\,\partial_wL`,
    :math:`S = (I - \tilde w\tilde w^\top)/\rho`, :math:`\rho = g`."""
    g, v = y[0], y[1:]
    u = unit(v)
    G = exp_gradient(g * u, data)
    return jnp.concatenate([(u @ G)[None], (G - u * (u @ G)) / g])


def wn_printed_formula(y, data):
    r"""Eq 91-92 read as the gradient, as a formula of the state: `wn_printed_field` at t = 0."""
    return wn_printed_field(0.0, y, data)


def wn_step(lr):
    """GD on (g, v) with learning rate ``lr`` (the discrete weight normalization), eq 93-95 in closed form."""
    return lambda k, y, data: y + lr * wn_field(0.0, y, data)


def wn_weights(y):
    """w = g v/|v| (eq 89) of ``(g, v)`` states (any leading shape)."""
    y = np.asarray(y)
    return y[..., :1] * y[..., 1:] / np.linalg.norm(y[..., 1:], axis=-1, keepdims=True)


def v_norm_sq(y, data=None):
    return jnp.sum(y[1:] ** 2)


def g_coord(y, data=None):
    return y[0]


def direction(y, data=None):
    r""":math:`\tilde w = v/\|v\|`."""
    return unit(y[1:])


def rho_of_wn(y, data=None):
    r""":math:`\rho = \|w\| = \|g\,v/\|v\|\| = |g|`."""
    return jnp.abs(y[0])


def rho_printed(y, data=None):
    r"""Eq 89 as printed: :math:`\rho = \|w\|g`."""
    return jnp.abs(y[0]) * y[0]


@rf.entry("normalized_flows.weight_norm", source="Theory III sec 21.1, eq 89-95")
def weight_norm(v_norm: float = 1.0) -> rf.Method:
    r"""Weight normalization :math:`w = g\,v/\|v\|` (eq 89) of the linear classifier: gradient flow
    of :math:`L(g\,v/\|v\|)` in :math:`(g, v)` (eq 93-95) and GD on :math:`(g, v)`.

    :math:`L` does not change when :math:`v` is scaled, so :math:`\dot v\perp v` keeps :math:`\|v\|`; the
    direction :math:`\tilde w = v/\|v\|` moves at :math:`g^2/\|v\|^2` times the speed of the induced GF
    direction (eq 84), so its trajectory differs from normalizing the GF (eq 88), though both end at the
    SVM direction.  The flow runs to ``STIFF_HORIZON`` = 1e15."""
    if not v_norm > 0:
        raise ValueError(f"v_norm must be positive (|v| at the start), got {v_norm!r}")
    data = dataset()
    loss = model(layer_shapes(1, 1), "linear")["loss"]

    def wn_loss(y, data):
        return loss(y[0] * unit(y[1:]), data)

    flow = rf.gradient_flow(wn_loss, names=("g", "v1", "v2"), args=data)
    induced = linear_normalized_field()
    w_hat, _, _ = soudry_constants(data)
    w0 = linear_starts(data)
    starts = np.c_[np.linalg.norm(w0, axis=1), v_norm * w0 / np.linalg.norm(w0, axis=1, keepdims=True)]

    def wn_direction_velocity(y, data):  # g^2/|v|^2 times the induced GF velocity of the direction (eq 84)
        u = unit(y[1:])
        return y[0] ** 2 / (y[1:] @ y[1:]) * induced(0.0, jnp.concatenate([y[:1], u]), data)[1:]

    samples = np.vstack([starts, np.c_[3 * starts[:, :1], 2 * starts[:, 1:]], np.c_[8 * starts[:, :1], starts[:, 1:]]])
    unit_samples = np.c_[samples[:, :1], samples[:, 1:] / np.linalg.norm(samples[:, 1:], axis=1, keepdims=True)]
    gd = rf.gradient_descent(wn_loss, lr=LR, names=flow.names, args=data)
    return rf.Method(
        flow=flow, map=gd, y0=starts, t1=STIFF_HORIZON, options=LONG_OPTIONS, steps=MAP_STEPS, samples=samples,
        perturbations=[flipped_labels(flow, gd),
                       rf.Perturbation("w = g v (the normalization by |v| dropped)",
                                       {"flow": rf.gradient_flow(lambda y, d: loss(y[0] * y[1:], d), names=flow.names,
                                                                 args=data)})],
        claims=[
            rf.Conserved(v_norm_sq, name="|v|^2",
                         source="eq 94-95: dL/dv = (g/|v|) S' dL/dw with S'v = 0 (L is invariant to scaling v)"),
            rf.Monotone(g_coord, increasing=True, on="map", name="g",
                        source="eq 93: dg/dt = sum_n e^{-z_n.w} z_n.v/|v| > 0 when w separates the data (along GD)"),
            rf.Monotone(v_norm_sq, increasing=True, on="map", name="|v|^2",
                        source="eq 94-95 discretized: each GD step on v is orthogonal to v, so |v|^2 grows by "
                               "lr^2 |dL/dv|^2 (the flow keeps it)",
                        identity="GD on a loss invariant to scaling v: every step is orthogonal to v, so |v|^2 grows "
                                 "by lr^2 |grad_v L|^2 whatever the loss"),
            rf.Formula(wn_formula, field=True, tol=1e-12, name="eq 93-95",
                       source="eq 93-95: dg/dt = -w~^T dL/dw, dv/dt = -(g/|v|)(I - w~w~^T) dL/dw"),
            rf.Formula(wn_formula, field=True, at=unit_samples, tol=1e-12, printed=wn_printed_formula,
                       name="eq 90-92: dL/dV = rho (I - VV^T) dL/dw at |v| = 1",
                       source="eq 90-92: the gradient in the (rho, V) parametrization",
                       erratum="eq 91-92 print dL/dw~ = S dL/dw with S = (I - w~w~^T)/rho: that is the velocity "
                               "dw~/dt that GF on w induces (eq 76); read as the gradient of L(rho w~) it is "
                               "rho (I - w~w~^T) dL/dw (the row measures the printed form as the WN field)",
                       grade="reading"),
            rf.Formula(wn_direction_velocity, rate_of=direction, tol=1e-10,
                       name="WN direction speed = g^2/|v|^2 x GF's",
                       source="eq 94 vs eq 84: 'qualitatively identical' dynamics, the direction moving g^2/|v|^2 "
                              "times as fast as under GF, so the trajectories differ (eq 88)"),
            rf.AtHorizon(lambda y, a: angle_to(w_hat)(y[0] * y[1:]), predict=0.0, absolute=True, tol=1e-2,
                         name="WN angle to SVM at t=1e15",
                         source="sec 21.1: WN dynamics qualitatively identical to sec 14.3 (converges to the SVM "
                                "direction, as normalized GF does: normalized_flows.rho_v)",
                         erratum="sec 21 prints 'WN does not converge to the normalized GD vector obtained by "
                                 "running GD on w and normalizing at the end': true of the trajectories at finite t "
                                 "(the direction moves g^2/|v|^2 times as fast, row above), not of the limit: both "
                                 "converge to the SVM direction",
                         grade="reading"),
            rf.Refuted(rho_printed, rho_of_wn, name="eq 89 as printed: rho = |w| g", source="eq 89 as printed",
                       erratum="printed rho = |w| g; with w = g v/|v|, rho = |w| = |g|", grade="erratum"),
        ],
    )


# ----------------------------------------------------------------------------- Lagrange multiplier


def paper_g(y, data):
    r"""Eq 14's :math:`g = \rho\sum_n e^{-\rho V\cdot z_n}z_n` for a linear ``(rho, V)`` state."""
    return y[0] * exp_gradient(y[0] * y[1:], data)


def multiplier(y, data):
    r"""The continuous multiplier keeping :math:`|V| = 1` in eq 14: :math:`\lambda = V^\top g/2`."""
    return 0.5 * y[1:] @ paper_g(y, data)


def eq15_lambda(c, g_sq, lr, printed=False):
    r"""Eq 15 for the step :math:`V + \text{lr}\,g - \lambda V` (``lr = 1`` in the paper):
    :math:`\lambda = 1 + \text{lr}\,c - \sqrt{1 - \text{lr}^2(|g|^2 - c^2)}`, :math:`c = V^\top g`;
    ``printed=True``: :math:`1 - \sqrt{1 - \text{lr}^2|g|^2 + \text{lr}^2c^2 + \text{lr}\,c}`."""
    if printed:
        return 1.0 - jnp.sqrt(1.0 - lr**2 * g_sq + lr**2 * c**2 + lr * c)
    return 1.0 + lr * c - jnp.sqrt(1.0 - lr**2 * (g_sq - c**2))


def lagrange_step(lr, printed=False):
    r"""GD on eq 12 with the multiplier of eq 15: :math:`\rho \leftarrow \rho + \text{lr}\,\dot\rho`
    (eq 13), :math:`V \leftarrow V + \text{lr}\,g - \lambda V`."""

    def step(k, y, data):
        z = data["y"][:, None] * data["x"]
        e = jnp.exp(-y[0] * (z @ y[1:]))
        g = paper_g(y, data)
        lam = eq15_lambda(y[1:] @ g, g @ g, lr, printed)
        return jnp.concatenate([(y[0] + lr * jnp.sum(e * (z @ y[1:])))[None], y[1:] + lr * g - lam * y[1:]])

    return step


def stepped_norm_sq(printed):
    """``q(y)``: :math:`|V|^2` after one step of `lagrange_step` (lr = ``LR``) from ``y``."""

    def q(y, data):
        return jnp.sum(lagrange_step(LR, printed)(0, y, data)[1:] ** 2)

    q.__name__ = "|V|^2 after a step, eq 15 " + ("as printed" if printed else "solved")
    return q


@rf.entry("normalized_flows.lagrange", source="Theory III sec 6.1, eq 12-16")
def lagrange() -> rf.Method:
    r"""The Lagrange-multiplier method (eq 12-14) for the linear classifier with the multiplier chosen
    to keep :math:`|V| = 1` (remark 1):

    .. math:: \dot\rho = \sum_n e^{-\rho V\cdot z_n}V\cdot z_n,\qquad
              \dot V = g - 2\lambda V,\quad g = \rho\sum_n e^{-\rho V\cdot z_n}z_n,\quad 2\lambda = V^\top g,

    and its discrete form with eq 15.  It coincides with weight normalization at :math:`\|v\| = 1`
    (sec 6.2: the unit-norm techniques are equivalent).  The flow runs to ``STIFF_HORIZON`` = 1e15."""
    data = dataset()
    flow = rf.ODE(linear_normalized_field("lagrange"), names=("rho", "v1", "v2"), args=data)
    w_hat, _, _ = soudry_constants(data)
    starts = rv_starts(data)
    gd = rf.Map(lagrange_step(LR), dt=LR, names=flow.names, args=data)
    printed_gd = rf.Map(lagrange_step(LR, printed=True), dt=LR, names=flow.names, args=data)

    def lam_rate(y, data):  # 2 lambda t1 / (rho |w_svm|): -> 1 since 2 lambda = rho drho/dt ~ rho |w_svm| / t
        return 2.0 * multiplier(y, data) * STIFF_HORIZON / (y[0] * float(np.linalg.norm(w_hat)))

    _, offset = svm_asymptotics(data)

    def eq16_gap(y, data):  # |V - g/(2 lambda)| rho^3: V - g/(V.g) = -(dV/dt)/(V.g), of size |P_perp w~| / rho^3
        g = paper_g(y, data)
        return jnp.linalg.norm(y[1:] - g / (y[1:] @ g)) * y[0] ** 3

    return rf.Method(
        flow=flow, map=gd, y0=starts, t1=STIFF_HORIZON, options=LONG_OPTIONS, steps=MAP_STEPS,
        samples=rescaled(starts),
        perturbations=[rf.Perturbation("eq 15 as printed", {"map": printed_gd}), flipped_labels(flow, gd)],
        claims=[
            rf.Conserved(unit_norm_sq, name="|V|^2", source="sec 6.1 remark 1: lambda(t) keeps |V| = 1",
                         identity="the multiplier 2 lambda = V.g is chosen so that dV/dt = g - V (V.g) is "
                                  "orthogonal to V: |V|^2 is kept by construction"),
            rf.Monotone(rho_coord, increasing=True, on="map", name="rho",
                        source="eq 13: rho grows while V separates the data (along the GD of eq 13, 15)"),
            rf.StepRatio(unit_norm_sq, lo=1.0 - 1e-12, hi=1.0, name="|V|^2",
                         source="sec 6.1 remark 1, eq 15 (corrected): lambda = 1 + V.g - sqrt(1 - |g|^2 + (V.g)^2) "
                                "keeps |V| = 1 at every GD step (lr = 0.05)"),
            rf.Refuted(stepped_norm_sq(True), stepped_norm_sq(False), name="eq 15 as printed",
                       source="eq 15 as printed",
                       erratum="printed lambda = 1 - sqrt(1 - |g|^2 + |V.g|^2 + V.g); solving |V + g - lambda V| = 1 "
                               "gives lambda = 1 + V.g - sqrt(1 - |g|^2 + (V.g)^2)", grade="erratum"),
            rf.Formula(wn_formula, field=True, tol=1e-12, name="Lagrange = WN with |v| = 1",
                       source="sec 6.2: the Lagrange and tangent-gradient (WN) methods are equivalent [36]"),
            rf.AtHorizon(lam_rate, predict=1.0, tol=1e-2, name="lambda(t) -> 0 like rho |w_svm| / 2t",
                         source="eq 15: lambda(t) goes to zero because g(t) does (2 lambda = rho drho/dt)"),
            rf.AtHorizon(eq16_gap, predict=offset, tol=5e-2, name="eq 16: |V - g/(2 lambda)| rho^3 -> |P_perp w~|",
                         source="eq 16: V = g(t)/(2 lambda) asymptotically; the gap is -(dV/dt)/(2 lambda), "
                                "|P_perp w~| / rho^3 with the angle |P_perp w~| / rho and 2 lambda = rho drho/dt"),
            rf.AtHorizon(lambda y, a: angle_to(w_hat)(y[0] * y[1:]), predict=0.0, absolute=True, tol=1e-2,
                         name="angle to SVM at t=1e15",
                         source="Thm 3: eq 13-14 converge to maximum-margin solutions with unit norm"),
        ],
    )
