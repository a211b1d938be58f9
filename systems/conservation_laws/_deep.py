r"""Laws found on two catalogue models: Ginsburg's scalar net (the hyperbolas
:math:`w_i^2 - w_j^2`) and a deep ReLU net (Theory III eq 18, the layer balance)."""

from __future__ import annotations

import functools

import jax.numpy as jnp
import numpy as np

import regflow as rf

from ._measures import ANGLE_TOL, conserved_rows, found_laws, law_count, span_angle
from ._two_layer import SOURCE, WEIGHT_DECAY

# ----------------------------------------------------------------------------- scalar net (Ginsburg)

#: Starts of the scalar net (off the minima, imbalanced).
SCALAR_STARTS = np.array([[0.3, 1.6], [1.8, 0.2], [0.5, 0.7]])
#: Horizon of the scalar-net runs.
SCALAR_T1 = 3.0
#: Ginsburg's normalized data set (eq 2): one example x = 1, y = 1.
NORMALIZED = {"x": np.array([1.0]), "y": np.array([1.0])}


def scalar_loss(w, args):
    r""":math:`L(w) = \tfrac1N\sum_n (w_1\cdots w_d\,x_n - y_n)^2`; on the normalized data (eq 2)
    it is eq 4, :math:`(W - 1)^2`."""
    return jnp.mean((jnp.prod(w) * args["x"] - args["y"]) ** 2)


def uneven_loss(w, args):
    r"""A wrong model: :math:`w_1 w_2^2\cdots` (layer 2 squared), whose law is :math:`w_1^2 - w_2^2/2`."""
    return jnp.mean((jnp.prod(w) * w[1] * args["x"] - args["y"]) ** 2)


def hyperbolas(d):
    r"""Ginsburg eq 6 for consecutive layers: :math:`D_{i,i+1} = w_i^2 - w_{i+1}^2`."""

    def entry(i):
        def q(w, args=None):
            return w[i] ** 2 - w[i + 1] ** 2

        q.__name__ = f"w{i + 1}^2 - w{i + 2}^2"
        return q

    return [entry(i) for i in range(d - 1)]


def scalar_starts(d):
    return np.column_stack([SCALAR_STARTS, np.ones((len(SCALAR_STARTS), d - 2))]) if d > 2 else SCALAR_STARTS


def scalar_point(d):
    return np.linspace(0.6, 1.4, d)


@functools.lru_cache(maxsize=None)
def _scalar_laws(d):
    return tuple(found_laws(rf.gradient_flow(scalar_loss, args=NORMALIZED), scalar_point(d)))


@rf.entry("conservation_laws.scalar_net", source="Ginsburg sec 3.1, eq 4-6; Marcotte et al. 2023")
def scalar_net(d: int = 2) -> rf.Method:
    r"""Gradient flow of Ginsburg's scalar net :math:`y = w_1\cdots w_d\,x` on the normalized
    data (eq 2: the flow of eq 4, :math:`L = (W-1)^2`).  The hyperbolas :math:`w_i^2 - w_j^2`
    (eq 6) are found as its only laws: :math:`d - 1` of them (:math:`\dim\operatorname{Lie} = 1`),
    and the degree-2 laws found span :math:`w_i^2 - w_{i+1}^2`."""
    flow = rf.gradient_flow(scalar_loss, args=NORMALIZED)
    laws = _scalar_laws(d)
    point = lambda: scalar_point(d)  # noqa: E731
    return rf.Method(
        flow=flow, y0=scalar_starts(d), t1=SCALAR_T1,
        samples=np.vstack([scalar_starts(d), np.random.default_rng(3).normal(size=(8, d))]),
        perturbations=[
            rf.Perturbation(f"weight decay {WEIGHT_DECAY:g} (Ginsburg sec 4.1: the imbalance decays)",
                            {"flow": rf.gradient_flow(scalar_loss, weight_decay=WEIGHT_DECAY, args=NORMALIZED)}),
            rf.Perturbation("layer 2 squared, w1 w2^2 (its law is w1^2 - w2^2/2)",
                            {"flow": rf.gradient_flow(uneven_loss, args=NORMALIZED)}),
        ],
        claims=[
            rf.Holds(measure=law_count(point, lambda: NORMALIZED, d - 1, "scalar"), lo=d - 1, hi=d - 1,
                     name=f"number of laws, d={d}",
                     what="D - dim Lie(W)(theta) of the flow's fields over data sets (d - 1)",
                     source=f"{SOURCE}: W = w1...wd has d - 1 independent laws"),
            rf.Holds(measure=span_angle(point, hyperbolas(d), "hyperbolas"), hi=ANGLE_TOL,
                     name="laws found = hyperbolas w_i^2 - w_j^2",
                     what="largest principal angle (rad) between the degree-2 laws found over data sets and "
                          "w_i^2 - w_{i+1}^2 (pi/2 if their numbers differ)",
                     source="Ginsburg sec 3.1: the trajectories are hyperbolas w_i^2 - w_j^2 = const, the only laws"),
            *conserved_rows(laws, "Ginsburg sec 3.1, eq 6: each law found is conserved along the flow"),
        ],
    )


# ----------------------------------------------------------------------------- deep ReLU net (Theory III eq 18)

#: The deep ReLU network (no biases): 21 weights, 6 hidden neurons.
WIDTHS = (3, 3, 3, 1)
#: Examples of its data set.
DEEP_EXAMPLES = 6
#: Random data sets of the count (a scalar output: each data set's gradient is one field, and the
#: Lie algebra has dimension D - 6 = 12).
DEEP_DATASETS = 24
#: Horizon of its runs.
DEEP_T1 = 1.0


def network(activation="relu"):
    return rf.Network(WIDTHS, activation=activation)


@functools.lru_cache(maxsize=None)
def deep_loss(activation="relu", bias=0.0):
    r"""Square loss :math:`\tfrac1{2N}\sum_n (f(W; x_n) - y_n)^2` (eq 18 holds for any loss of the outputs);
    ``bias`` adds a fixed bias to every hidden pre-activation (a wrong, non-homogeneous model)."""
    net = network(activation)
    act = {"relu": lambda h: jnp.maximum(h, 0.0), "tanh": jnp.tanh}[activation]

    def forward(w, x):
        if not bias:
            return net.scalar(w, x)
        h = x
        for k, W in enumerate(net.weights(w)):
            h = h @ W.T
            if k < net.depth - 1:
                h = act(h + bias)
        return h[..., 0]

    def loss(w, args):
        return 0.5 * jnp.mean((forward(w, args["x"]) - args["y"]) ** 2)

    loss.__name__ = f"deep_{activation}_loss" + (f"_bias{bias:g}" if bias else "")
    return loss


def deep_data(seed=0):
    rng = np.random.default_rng(seed + 30)
    return {"x": rng.normal(size=(DEEP_EXAMPLES, WIDTHS[0])), "y": rng.normal(size=DEEP_EXAMPLES)}


def deep_params(seed=0):
    return network().init(seed + 40, scale=1.5)


def layer_balance(k):
    r"""Eq 18: :math:`\|W_k\|^2 - \|W_{k+1}\|^2`."""

    def q(w, args=None):
        return jnp.sum(w[f"W{k}"] ** 2) - jnp.sum(w[f"W{k + 1}"] ** 2)

    q.__name__ = f"|W{k}|^2 - |W{k + 1}|^2"
    return q


def neuron_balance(k, j):
    r"""Neuron :math:`j` of hidden layer :math:`k`: incoming minus outgoing squared weights,
    :math:`\|W_k[j,:]\|^2 - \|W_{k+1}[:,j]\|^2`; summed over :math:`j` it is eq 18."""

    def q(w, args=None):
        return jnp.sum(w[f"W{k}"][j] ** 2) - jnp.sum(w[f"W{k + 1}"][:, j] ** 2)

    q.__name__ = f"neuron ({k},{j}) balance"
    return q


def neuron_balances():
    return [neuron_balance(k, j) for k in range(1, len(WIDTHS) - 1) for j in range(WIDTHS[k])]


def _batch(seeds):
    ps = [deep_params(seed) for seed in seeds]
    return {key: np.stack([p[key] for p in ps]) for key in ps[0]}


@functools.lru_cache(maxsize=None)
def _deep_laws():
    return tuple(found_laws(rf.gradient_flow(deep_loss(), args=deep_data()), deep_params()))


@rf.entry("conservation_laws.deep_relu", source="Theory III sec 7, eq 18; Marcotte et al. 2023")
def deep_relu() -> rf.Method:
    r"""Gradient flow of a deep ReLU net without biases (widths 2-3-3-1, an `rf.Network`) under
    the square loss.  The laws found over data sets are the neuron balances
    :math:`\|W_k[j,:]\|^2 - \|W_{k+1}[:,j]\|^2`, one per hidden neuron and no others, and Theory
    III's eq 18, :math:`\frac{d}{dt}\rho_k^2 = \frac{d}{dt}\rho_{k+1}^2` (the layer balance
    :math:`\|W_k\|^2 - \|W_{k+1}\|^2`, their sum over the layer's neurons), lies in their span."""
    data = deep_data()
    hidden = sum(WIDTHS[1:-1])
    laws = _deep_laws()
    eq18 = [layer_balance(k) for k in range(1, len(WIDTHS) - 1)]
    return rf.Method(
        flow=rf.gradient_flow(deep_loss(), args=data), y0=_batch((1, 2)), samples=_batch(range(3, 9)), t1=DEEP_T1,
        perturbations=[
            rf.Perturbation("tanh network (not homogeneous)", {"flow": rf.gradient_flow(deep_loss("tanh"), args=data)}),
            rf.Perturbation("fixed hidden biases 0.5", {"flow": rf.gradient_flow(deep_loss("relu", 0.5), args=data)}),
            rf.Perturbation(f"weight decay {WEIGHT_DECAY:g}",
                            {"flow": rf.gradient_flow(deep_loss(), weight_decay=WEIGHT_DECAY, args=data)}),
        ],
        claims=[
            rf.Holds(measure=law_count(deep_params, deep_data, hidden, "deep", datasets=DEEP_DATASETS),
                     lo=hidden, hi=hidden,
                     name=f"number of laws = {hidden} hidden neurons",
                     what="D - dim Lie(W)(theta) of the flow's fields over data sets (one per hidden neuron)",
                     source=f"{SOURCE}: ReLU networks have one law per hidden neuron and no others"),
            rf.Holds(measure=span_angle(deep_params, neuron_balances(), "neurons"), hi=ANGLE_TOL,
                     name="laws found = neuron balances",
                     what="largest principal angle (rad) between the degree-2 laws found over data sets and the "
                          "neuron balances (pi/2 if their numbers differ)",
                     source=f"{SOURCE}: the laws are incoming minus outgoing squared weights of each neuron"),
            rf.Holds(measure=span_angle(deep_params, eq18, "eq18", contains=True), hi=ANGLE_TOL,
                     name="eq 18 in the span of the laws found",
                     what="largest principal angle (rad) between |W_k|^2 - |W_k+1|^2 (k = 1, 2) and the span of "
                          "the degree-2 laws found over data sets",
                     source="Theory III sec 7, eq 18: d/dt rho_k^2 = d/dt rho_{k-1}^2"),
            *conserved_rows(laws, "Theory III sec 7, eq 18: each law found is conserved along the flow"),
        ],
    )
