r"""Two-layer networks :math:`g(\theta, x) = U\sigma(V^\top x)`, :math:`U\in\mathbb R^{n\times r}`,
:math:`V\in\mathbb R^{m\times r}`: the state is ``{"U": (n, r), "V": (m, r)}``; gradient flow of
the square loss :math:`L = \tfrac1{2N}\sum_n |g(\theta, x_n) - y_n|^2` on random data."""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np

import regflow as rf

from ._measures import ANGLE_TOL, conserved_rows, found_laws, law_count, span_angle

#: Examples of the data set of the flow.
EXAMPLES = 6
#: Fixed hidden bias of the perturbation that breaks homogeneity: sigma(V^T x + c).
BIAS = 0.5
#: Weight decay of the perturbation that makes the layer balance decay.
WEIGHT_DECAY = 0.1
#: Horizon of the flow runs (the found laws are checked along them).
T1 = 2.0
#: Shapes (n, m, r) whose counts the entries check (the tests use other shapes).
LINEAR_SHAPES = ((3, 2, 2), (2, 3, 3), (4, 3, 1))
RELU_SHAPES = ((3, 2, 2), (2, 3, 3), (2, 2, 4))

ACTIVATIONS = {"linear": lambda h: h, "relu": jax.nn.relu, "tanh": jnp.tanh,
               "relu2": lambda h: jax.nn.relu(h) ** 2}


def model(activation, bias=0.0):
    r""":math:`g(\theta, x) = U\sigma(V^\top x + c)` for a batch ``x`` ``(N, m)``: ``(N, n)``."""
    act = ACTIVATIONS[activation]

    def g(p, x):
        return act(x @ p["V"] + bias) @ p["U"].T

    g.__name__ = f"{activation}_net" + (f"_bias{bias:g}" if bias else "")
    return g


@functools.lru_cache(maxsize=None)
def square_loss(activation, bias=0.0):
    r""":math:`L(\theta) = \tfrac1{2N}\sum_n |g(\theta, x_n) - y_n|^2` with the data in ``args``."""
    g = model(activation, bias)

    def loss(p, args):
        return 0.5 * jnp.mean(jnp.sum((g(p, args["x"]) - args["y"]) ** 2, axis=-1))

    loss.__name__ = f"square_loss_{g.__name__}"
    return loss


def data(n, m, seed=0):
    """A random data set ``{"x": (N, m), "y": (N, n)}``."""
    rng = np.random.default_rng(seed + 10)
    return {"x": rng.normal(size=(EXAMPLES, m)), "y": rng.normal(size=(EXAMPLES, n))}


def params(n, m, r, seed=0):
    """Random parameters ``{"U": (n, r), "V": (m, r)}``."""
    rng = np.random.default_rng(seed + 20)
    return {"U": rng.normal(size=(n, r)), "V": rng.normal(size=(m, r))}


def flow(activation, n, m, bias=0.0, weight_decay=0.0):
    return rf.gradient_flow(square_loss(activation, bias), weight_decay=weight_decay, args=data(n, m))


def gram_laws(r):
    r"""The known laws of a linear net: the entries of :math:`U^\top U - V^\top V` (:math:`i \le j`)."""

    def entry(i, j):
        def q(p, args=None):
            return p["U"][:, i] @ p["U"][:, j] - p["V"][:, i] @ p["V"][:, j]

        q.__name__ = f"(U^T U - V^T V)[{i},{j}]"
        return q

    return [entry(i, j) for i in range(r) for j in range(i, r)]


def neuron_laws(r, power=1.0):
    r"""The known laws of a ReLU net: :math:`\|u_k\|^2 - \|v_k\|^2` per hidden neuron
    (``power`` :math:`= 1/k` for a :math:`k`-homogeneous activation)."""

    def entry(k):
        def q(p, args=None):
            return jnp.sum(p["U"][:, k] ** 2) - power * jnp.sum(p["V"][:, k] ** 2)

        q.__name__ = f"|u_{k}|^2 - |v_{k}|^2"
        return q

    return [entry(k) for k in range(r)]


def starts(n, m, r):
    """Two starts, batched like ``y0``."""
    ps = [params(n, m, r, seed) for seed in (1, 2)]
    return {key: np.stack([p[key] for p in ps]) for key in ("U", "V")}


def samples(n, m, r):
    ps = [params(n, m, r, seed) for seed in range(3, 11)]
    return {key: np.stack([p[key] for p in ps]) for key in ("U", "V")}


@functools.lru_cache(maxsize=None)
def _laws_of(activation, n, m, r):
    return tuple(found_laws(flow(activation, n, m), params(n, m, r)))


def _count_rows(shapes, expect, what, source):
    rows = []
    for n, m, r in shapes:
        want = expect(r)
        rows.append(rf.Holds(measure=law_count(lambda n=n, m=m, r=r: params(n, m, r), lambda n=n, m=m: data(n, m),
                                               want, f"{n}x{m}x{r}"),
                             lo=want, hi=want, name=f"number of laws, n={n}, m={m}, r={r}",
                             what=f"D - dim Lie(W)(theta) of the flow's fields over data sets ({what} = {want})",
                             source=source))
    return rows


def _perturbations(n, m, keep=()):
    options = {
        "tanh": rf.Perturbation("tanh hidden layer (not homogeneous)", {"flow": flow("tanh", n, m)}),
        "bias": rf.Perturbation(f"fixed hidden bias {BIAS:g}: sigma(V^T x + c)", {"flow": flow_bias(n, m)}),
        "wd": rf.Perturbation(f"weight decay {WEIGHT_DECAY:g}",
                              {"flow": flow("linear", n, m, weight_decay=WEIGHT_DECAY)}),
        "relu2": rf.Perturbation("relu^2 hidden layer (2-homogeneous: |u|^2 - |v|^2/2 is conserved instead)",
                                 {"flow": flow("relu2", n, m)}),
    }
    return [options[k] for k in keep]


def flow_bias(n, m, activation="linear"):
    return rf.gradient_flow(square_loss(activation, BIAS), args=data(n, m))


SOURCE = "Marcotte, Gribonval & Peyre 2023"


@rf.entry("conservation_laws.linear_net", source=f"{SOURCE}: two-layer linear networks")
def linear_net(n: int = 3, m: int = 2, r: int = 2) -> rf.Method:
    r"""Gradient flow of a two-layer linear net :math:`UV^\top x`.  Its laws for every data set
    are the :math:`r(r+1)/2` entries of :math:`U^\top U - V^\top V`, and there are no others:
    :math:`D - \dim\operatorname{Lie}(W) = r(r+1)/2` (checked on three shapes), and the degree-2
    laws found span exactly those entries."""
    laws = _laws_of("linear", n, m, r)
    return rf.Method(
        flow=flow("linear", n, m), y0=starts(n, m, r), samples=samples(n, m, r), t1=T1,
        perturbations=[*_perturbations(n, m, ("tanh", "bias", "wd"))],
        claims=[
            *_count_rows(LINEAR_SHAPES, lambda r: r * (r + 1) // 2, "r(r+1)/2",
                         f"{SOURCE}: a two-layer linear net has exactly r(r+1)/2 independent laws"),
            rf.Holds(measure=span_angle(lambda: params(n, m, r), gram_laws(r), "linear"), hi=ANGLE_TOL,
                     name="laws found = entries of U^T U - V^T V",
                     what="largest principal angle (rad) between the degree-2 laws found over data sets and the "
                          "entries of U^T U - V^T V (pi/2 if their numbers differ)",
                     source=f"{SOURCE}: the laws are h_kk'(U, V) = <u_k, u_k'> - <v_k, v_k'>"),
            *conserved_rows(laws, f"{SOURCE}: each law found is conserved along the flow"),
        ],
    )


@rf.entry("conservation_laws.relu_net", source=f"{SOURCE}: two-layer ReLU networks")
def relu_net(n: int = 2, m: int = 3, r: int = 3) -> rf.Method:
    r"""Gradient flow of a two-layer ReLU net :math:`U\,\mathrm{relu}(V^\top x)` without biases.
    Its laws are :math:`\|u_k\|^2 - \|v_k\|^2`, one per hidden neuron, and no others:
    :math:`D - \dim\operatorname{Lie}(W) = r` (three shapes), and the degree-2 laws found span
    exactly those."""
    laws = _laws_of("relu", n, m, r)
    return rf.Method(
        flow=flow("relu", n, m), y0=starts(n, m, r), samples=samples(n, m, r), t1=T1,
        perturbations=[*_perturbations(n, m, ("tanh", "relu2")),
                       rf.Perturbation(f"fixed hidden bias {BIAS:g}: relu(V^T x + c)",
                                       {"flow": flow_bias(n, m, "relu")})],
        claims=[
            *_count_rows(RELU_SHAPES, lambda r: r, "r",
                         f"{SOURCE}: a two-layer ReLU net has exactly one law per hidden neuron"),
            rf.Holds(measure=span_angle(lambda: params(n, m, r), neuron_laws(r), "relu"), hi=ANGLE_TOL,
                     name="laws found = |u_k|^2 - |v_k|^2",
                     what="largest principal angle (rad) between the degree-2 laws found over data sets and "
                          "|u_k|^2 - |v_k|^2 (pi/2 if their numbers differ)",
                     source=f"{SOURCE}: the laws of a ReLU net are h_k(U, V) = |u_k|^2 - |v_k|^2"),
            *conserved_rows(laws, f"{SOURCE}: each law found is conserved along the flow"),
        ],
    )
