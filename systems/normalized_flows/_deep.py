r"""Small deep networks under the exponential loss: gradient flow on the weights (sec 16, eq 47-48)
and in normalized coordinates :math:`(\rho_k, V_k)` (sec 17, eq 54; sec 6.1, eq 13)."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import regflow as rf

from ._data import (DESCENT, HORIZON, LONG_OPTIONS, LR, MAP_STEPS, T1, angle_to, dataset, flipped_labels,
                    soudry_constants)
from ._nets import check_activation, layer_shapes, model, normalize, normalized_field, separating_starts


def _deep_setup(depth, width, activation):
    check_activation(activation)
    if depth < 2:
        raise ValueError(f"depth must be >= 2 for a deep network (depth 1 is normalized_flows.linear), got {depth}")
    shapes = layer_shapes(depth, width)
    return shapes, dataset(), model(shapes, activation)


def end_to_end_fn(net):
    r""":math:`w \mapsto \beta = (W_K\cdots W_1)^\top` of a linear network on flat weights (traceable)."""

    def beta(w):
        out = jnp.eye(net.widths[0])
        for W in net.weights(net.unflatten(w)):
            out = W @ out
        return out[0]

    return beta


def alignment(net, k):
    r""":math:`\|V_{k+1}^\top V_{k+1} - V_kV_k^\top\|_F`, :math:`V_k = W_k/\|W_k\|_F`
    (sec 6.4: 0 for balanced layers)."""

    def q(w, data=None):
        V = net.normalize(net.unflatten(w))["V"]
        a, b = V[net.keys[k + 1]], V[net.keys[k]]
        return jnp.sqrt(jnp.sum((a.T @ a - b @ b.T) ** 2))

    q.__name__ = f"|V{k + 2}^T V{k + 2} - V{k + 1} V{k + 1}^T|"
    return q


def half_squared_norms(net):
    r"""``q(w)``: :math:`\tfrac12\rho_k^2` for every layer of flat weights (its rate is :math:`\rho_k\dot\rho_k`)."""

    def q(w, data=None):
        return 0.5 * net.layer_norms(net.unflatten(w)) ** 2

    q.__name__ = "rho_k^2/2"
    return q


def eq13_rates(net):
    r"""``formula(w, data)``: eq 13, :math:`\sum_n e^{-y_nf_n}y_nf_n` for every layer."""

    def formula(w, data):
        m = data["y"] * net.scalar(net.unflatten(w), data["x"])
        return jnp.full(net.depth, jnp.sum(jnp.exp(-m) * m))

    return formula


def layer_rates(net, flow):
    r"""`rf.Perturbation`: GF with layer k at learning rate k (not a gradient flow of L in the Euclidean
    metric: the layers' :math:`\rho_k\dot\rho_k` differ, which breaks eq 18)."""
    scale = jnp.concatenate([jnp.full(r * c, k + 1.0) for k, (r, c) in enumerate(net.shapes)])

    def field(t, w, data):
        return scale * flow.vector_field(t, w, data)

    return rf.Perturbation("layer k at learning rate k", {"flow": flow.replace(vector_field=field)})


#: Why the layer-balance row cannot fail on its own.
BALANCE = ("follows from the conserved W_{k+1}^T W_{k+1} - W_k W_k^T (eq 18's matrix form) and rho_k -> infinity: "
           "it shows how far the runs got, any flow with a conserved imbalance and diverging norms aligns its layers")


def without_inverse_rho_k(field):
    r"""Eq 13 with :math:`\rho` for :math:`\rho/\rho_k` (a perturbation of the normalized field)."""

    def wrong(t, y, data):
        out = field(t, y, data)
        return {**out, "rho": out["rho"] * y["rho"]}

    return wrong


@rf.entry("normalized_flows.deep", source="Theory III sec 16, eq 47-48; sec 7, eq 18; sec 6.4")
def deep(depth: int = 2, width: int = 2, activation: str = "linear") -> rf.Method:
    r"""Gradient flow of the exponential loss of a small deep network (eq 47-48),
    :math:`\dot W_k = \sum_n y_n\partial_{W_k}f(W;x_n)e^{-y_nf(W;x_n)}`, linear or ReLU (flat weights).

    :math:`\rho_k\dot\rho_k` is the same for all layers (eq 18), every :math:`\rho_k` grows once the
    network separates the data (eq 13), and for linear layers (run to ``HORIZON`` = 1e40) the end-to-end
    vector :math:`\beta = W_1^\top\cdots W_K^\top` turns to the SVM direction (Thm 3) while the normalized
    layers balance, :math:`V_{k+1}^\top V_{k+1} - V_kV_k^\top \to 0` (sec 6.4)."""
    shapes, data, mdl = _deep_setup(depth, width, activation)
    net = mdl["net"]
    flow = mdl["flow"].replace(args=data)
    starts = separating_starts(shapes, activation, data, n=3, seed=depth)
    claims = [
        *[rf.Conserved(b, source="eq 18 (sec 7): d rho_k^2/dt is the same for every layer") for b in mdl["balances"]],
        rf.Monotone(mdl["loss"], name="loss", source="eq 48: gradient flow of eq 47", identity=DESCENT),
        rf.Formula(eq13_rates(net), rate_of=half_squared_norms(net), tol=1e-10, name="eq 13: rho_k rho_k'",
                   source="eq 13: rho_k d rho_k/dt = sum_n e^{-y_n f_n} y_n f_n for every layer (> 0 once f separates "
                          "the data)"),
        rf.Monotone(mdl["rho"], increasing=True, on="map", name="rho",
                    source="eq 13 discretized: rho grows along GD once f separates the data"),
    ]
    linear_net = activation == "linear"
    if linear_net:
        w_hat, _, _ = soudry_constants(data)
        beta, to_svm = end_to_end_fn(net), angle_to(w_hat)
        claims += [
            rf.AtHorizon(lambda w, a: to_svm(beta(w)), predict=0.0, absolute=True, tol=1e-2,
                         name="angle(W_K...W_1, w_svm) at t=1e40",
                         source="Thm 3 (sec 6.3): convergence to the maximum-margin solution"),
            *[rf.AtHorizon(alignment(net, k), predict=0.0, absolute=True, tol=1e-2,
                           name=f"layer balance {k + 1}-{k + 2}", identity=BALANCE,
                           source="sec 6.4: the layers balance, 'relations of the type W3 = W2^T' for linear nets "
                                  "(here V_{k+1}^T V_{k+1} = V_k V_k^T: the conserved W_{k+1}^T W_{k+1} - W_k W_k^T "
                                  "shrinks relative to rho_k^2)")
              for k in range(depth - 1)],
        ]
    gd = rf.gradient_descent(mdl["loss"], lr=LR, names=flow.names, args=data)
    return rf.Method(flow=flow, map=gd,
                     y0=starts, t1=HORIZON if linear_net else T1, options=LONG_OPTIONS if linear_net else {},
                     steps=MAP_STEPS, samples=np.vstack([starts, 2 * starts]),
                     perturbations=[flipped_labels(flow, gd), layer_rates(net, flow)],
                     claims=claims)


@rf.entry("normalized_flows.deep_relu", source="Theory III sec 16, eq 47-48; sec 7, eq 18")
def deep_relu(depth: int = 3, width: int = 2) -> rf.Method:
    r"""`deep` with ReLU activations (default: three layers), :math:`f = W_3\sigma(W_2\sigma(W_1x))`,
    from label-aligned starts (`relu_starts`)."""
    return deep(depth=depth, width=width, activation="relu")


def _unit(key):
    def q(y, data=None):
        return jnp.sum(y["V"][key] ** 2)

    q.__name__ = f"|V{key[1:]}|^2"
    return q


def _gap(k):
    def q(y, data=None):
        return y["rho"][k] ** 2 - y["rho"][k + 1] ** 2

    q.__name__ = f"rho{k + 1}^2-rho{k + 2}^2"
    return q


def _rho(y, data=None):
    return jnp.prod(y["rho"])


def gf_pushed_forward(net, loss):
    r"""``formula(y, data)``: :math:`\frac{d}{dt}(\rho_k, V_k)` along the GF :math:`\dot W = -\nabla L` at
    :math:`W_k = \rho_kV_k` (the JVP of the normalization map)."""

    def formula(y, data):
        params = net.denormalize(y)
        velocity = jax.tree_util.tree_map(lambda g: -g, jax.grad(lambda p: loss(net.flatten(p), data))(params))
        return jax.jvp(net.normalize, (params,), (velocity,))[1]

    return formula


@rf.entry("normalized_flows.deep_normalized", source="Theory III sec 17, eq 54; sec 6.1, eq 13")
def deep_normalized(depth: int = 2, width: int = 2, activation: str = "relu") -> rf.Method:
    r"""The deep GF in normalized coordinates, state ``{"rho": (K,), "V": {"W1", ...}}`` (eq 54, 13):

    .. math:: \dot\rho_k = \frac{\rho}{\rho_k}\sum_n e^{-\rho y_n\tilde f_n}y_n\tilde f_n,\qquad
              \dot V_k = \frac{\rho}{\rho_k^2}(I - V_kV_k^\top)\tilde B_k.

    Each :math:`\|V_k\| = 1` is kept, :math:`\rho_k^2 - \rho_{k+1}^2` is conserved (eq 18) and the
    field is the GF's pushed forward by :math:`W_k \mapsto (\|W_k\|, W_k/\|W_k\|)` (eq 87)."""
    shapes, data, mdl = _deep_setup(depth, width, activation)
    net = mdl["net"]
    flow = rf.ODE(normalized_field(net), args=data)
    w_starts = separating_starts(shapes, activation, data, n=3, seed=depth)
    starts = normalize(w_starts, net)
    samples = normalize(np.vstack([w_starts, 2 * w_starts]), net)
    return rf.Method(
        flow=flow, y0=starts, t1=T1, samples=samples,
        perturbations=[flipped_labels(flow),
                       rf.Perturbation("eq 13 with rho for rho/rho_k",
                                       {"flow": flow.replace(vector_field=without_inverse_rho_k(flow.vector_field))})],
        claims=[
            *[rf.Conserved(_unit(key), source="eq 54: dV_k/dt is orthogonal to V_k",
                           identity="eq 54 writes dV_k/dt as (I - V_k V_k^T)(...): |V_k|^2 is kept by construction")
              for key in net.keys],
            *[rf.Conserved(_gap(k), source="eq 13 and 18: rho_k d rho_k/dt is independent of k")
              for k in range(net.depth - 1)],
            rf.Monotone(_rho, increasing=True, name="rho",
                        source="eq 13: d rho_k/dt = (rho/rho_k) sum_n e^{-rho f~_n} f~_n > 0 once f separates"),
            rf.Formula(gf_pushed_forward(net, mdl["loss"]), field=True, tol=1e-11, name="GF pushed forward = eq 54",
                       source="eq 54, 87: the normalized flow is the GF in (rho_k, V_k) coordinates"),
        ],
    )
