r"""The exponential-loss classifiers of the `normalized_flows` entries as `rf.Network` s, their
gradient flows, the flow in normalized coordinates :math:`(\rho_k, V_k)` (eq 13, 54), and the starts."""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import regflow as rf

from ._data import separating_cone

ACTIVATIONS = ("linear", "relu")
#: Input dimension of the data set.
D_IN = 2


def layer_shapes(depth, width, d_in=D_IN):
    """Shapes of W_1 ... W_K of a scalar-output network: ``((1, d_in),)`` for depth 1."""
    if isinstance(depth, bool) or not isinstance(depth, (int, np.integer)) or depth < 1:
        raise ValueError(f"depth must be an int >= 1, got {depth!r}")
    if isinstance(width, bool) or not isinstance(width, (int, np.integer)) or width < 1:
        raise ValueError(f"width must be an int >= 1, got {width!r}")
    return rf.Network((d_in,) + (width,) * (depth - 1) + (1,)).shapes


def check_activation(activation):
    if activation not in ACTIVATIONS:
        raise ValueError(f"activation must be one of {ACTIVATIONS}, got {activation!r}")


def network_of(shapes, activation):
    """The `rf.Network` with these layer shapes (no biases: one-homogeneous per layer)."""
    check_activation(activation)
    return rf.Network((shapes[0][1],) + tuple(r for r, _ in shapes), activation=activation)


def unflatten(w, shapes):
    """The layer matrices of a flat weight vector."""
    net = network_of(shapes, "linear")
    return net.weights(net.unflatten(w))


def weight_names(shapes):
    return tuple(f"W{k + 1}_{i}{j}" for k, (r, c) in enumerate(shapes) for i in range(r) for j in range(c))


def end_to_end(w, shapes):
    r"""The linear network's vector :math:`\beta^\top = W_K\cdots W_1` (f = beta . x)."""
    return np.asarray(functools.reduce(lambda a, W: W @ a, unflatten(jnp.asarray(w), shapes), jnp.eye(shapes[0][1]))[0])


@functools.lru_cache(maxsize=None)
def model(shapes, activation):
    """Loss and quantities of one architecture on flat weights (cached: flows share compiled programs)."""
    net = network_of(shapes, activation)
    K = net.depth

    def margins(w, data):
        return data["y"] * net.scalar(net.unflatten(w), data["x"])

    def loss(w, data):
        r"""Eq 36, 47: :math:`L = \sum_n e^{-y_nf(W;x_n)}`."""
        return jnp.sum(jnp.exp(-margins(w, data)))

    def layer_norms(w):
        return net.layer_norms(net.unflatten(w))

    def rho(w, data=None):
        r""":math:`\rho = \prod_k\|W_k\|_F`."""
        return jnp.prod(layer_norms(w))

    def balance(k):
        def q(w, data=None):
            n = layer_norms(w)
            return n[k] ** 2 - n[k + 1] ** 2

        q.__name__ = f"rho{k + 1}^2-rho{k + 2}^2"
        return q

    def normalized_margin(w, data):
        return jnp.min(margins(w, data)) / rho(w)

    flow = rf.gradient_flow(loss, names=weight_names(shapes))
    return dict(K=K, net=net, margins=margins, loss=loss, rho=rho, balances=[balance(k) for k in range(K - 1)],
                normalized_margin=normalized_margin, flow=flow, layer_norms=layer_norms)


@functools.lru_cache(maxsize=None)
def normalized_field(net, speed="induced"):
    r"""The flow of a homogeneous `rf.Network` in :math:`(\rho_k, V_k)`, state ``{"rho", "V"}``:
    eq 13, :math:`\dot\rho_k = \frac{\rho}{\rho_k}\sum_n e^{-\rho\tilde f_n}\tilde f_n`, and
    :math:`\dot V_k = s_k(I - V_kV_k^\top)\tilde B_k`, :math:`\tilde B_k = \sum_n e^{-\rho\tilde f_n}
    \partial\tilde f_n/\partial V_k` (eq 78), with :math:`s_k = \rho/\rho_k^2` (``"induced"``: GF in
    these coordinates, eq 42 for K = 1, eq 54) or :math:`s_k = \rho` (``"lagrange"``: eq 14 with the
    multiplier :math:`2\lambda_k = V_k^\top g_k` that keeps :math:`\|V_k\| = 1`)."""
    if speed not in ("induced", "lagrange"):
        raise ValueError(f"speed must be 'induced' or 'lagrange', got {speed!r}")

    def field(t, y, data):
        rhos = y["rho"]
        rho = jnp.prod(rhos)

        def soft_loss(V):  # -(1/rho) sum_n exp(-rho y_n f~_n(V)); its V-gradient is B~ (eq 78)
            m = data["y"] * net.scalar(V, data["x"])
            return -jnp.sum(jnp.exp(-rho * m)) / rho, m

        B, m = jax.grad(soft_loss, has_aux=True)(y["V"])
        rho_dot = rho / rhos * jnp.sum(jnp.exp(-rho * m) * m)
        v_dot = {}
        for k, key in enumerate(net.keys):
            s = rho / rhos[k] ** 2 if speed == "induced" else rho
            V = y["V"][key]
            v_dot[key] = s * (B[key] - V * jnp.sum(V * B[key]))
        return {"rho": rho_dot, "V": v_dot}

    return field


#: The linear classifier f = v . x as a network, and its (rho, V) state as a flat vector [rho, v1, v2].
LINEAR = rf.Network((D_IN, 1))


def _tree(y):
    return {"rho": y[:1], "V": {"W1": y[None, 1:]}}


@functools.lru_cache(maxsize=None)
def linear_normalized_field(speed="induced"):
    r"""`normalized_field` of the linear classifier on flat states ``[rho, v1, v2]`` (eq 42-43, or eq 13-14)."""
    tree_field = normalized_field(LINEAR, speed)

    def field(t, y, data):
        out = tree_field(t, _tree(y), data)
        return jnp.concatenate([out["rho"], out["V"]["W1"][0]])

    return field


def normalize(w, net):
    """Flat weights -> the normalized state ``{"rho", "V"}`` (works row-wise on (n, dim))."""
    w = np.atleast_2d(np.asarray(w, dtype=float))
    return rf.stack_states([jax.tree_util.tree_map(np.asarray, net.normalize(net.unflatten(jnp.asarray(row))))
                            for row in w])


def relu_starts(shapes, data, n=3, scale=0.6, seed=0):
    r"""Label-aligned ReLU starts: first-layer unit j is :math:`c_j r_j v_j` with :math:`v_j` in the
    separating cone and :math:`c_j = \pm1` alternating, so it is active on exactly one class; middle
    layers positive diagonal; last layer :math:`c_j a_j`.  With all cross-class inner products negative
    no pre-activation on the data ever reaches 0: the ReLU flow stays smooth.  (From generic starts a
    unit's hyperplane can end on a data point, where GF becomes a sliding (Filippov) flow that an
    explicit solver cannot follow.)"""
    z = np.asarray(data["x"])
    y = np.asarray(data["y"])
    if np.max(z[y > 0] @ z[y < 0].T) >= 0:
        raise ValueError("label-aligned ReLU starts need every cross-class inner product x_n . x_m < 0")
    lo, hi = separating_cone(data)
    rng = np.random.default_rng(seed)
    h = shapes[0][0]
    cls = np.where(np.arange(h) % 2 == 0, 1.0, -1.0)
    out = []
    for _ in range(n):
        t = rng.uniform(lo + 0.1 * (hi - lo), hi - 0.1 * (hi - lo), size=h)
        layers = [cls[:, None] * rng.uniform(0.5, 1.0, size=(h, 1)) * np.stack([np.cos(t), np.sin(t)], axis=1)]
        layers += [np.diag(rng.uniform(0.5, 1.0, size=h)) for _ in shapes[1:-1]]
        layers.append((cls * rng.uniform(0.5, 1.0, size=h))[None, :])
        w = np.concatenate([L.ravel() for L in layers])
        out.append(scale * w / np.linalg.norm(w))
    return np.asarray(out)


def separating_starts(shapes, activation, data, n=3, scale=0.6, seed=0, max_tries=10000):
    """``n`` flat starts of norm ``scale`` whose network separates the data: random (rejection-sampled)
    for linear layers, `relu_starts` for ReLU."""
    if activation == "relu":
        return relu_starts(shapes, data, n, scale, seed)
    margins = jax.jit(model(shapes, activation)["margins"])
    rng = np.random.default_rng(seed)
    dim = sum(r * c for r, c in shapes)
    found = []
    for _ in range(max_tries):
        w = rng.normal(size=dim)
        w *= scale / np.linalg.norm(w)
        if float(jnp.min(margins(jnp.asarray(w), data))) > 0.05 * scale ** len(shapes):
            found.append(w)
            if len(found) == n:
                return np.asarray(found)
    raise ValueError(f"found only {len(found)} separating starts in {max_tries} tries")
