r"""Growth of the layer norms :math:`\rho_k = \|W_k\|` under gradient flow on deep ReLU networks.

Banburski, Liao, Miranda, Rosasco, Hidary, Poggio, "Theory III: Dynamics and Generalization in
Deep Networks", section 7 (eq 18), section 21 (eq 77) and section 22 (eq 99-103, Fig. 11).

A ReLU network without biases is one-homogeneous in each layer,
:math:`f(W; x) = \rho\,\tilde f(V; x)` with :math:`\rho = \prod_k \rho_k`, so
:math:`W_k \cdot \partial f/\partial W_k = f` and, for any loss of the outputs,

.. math:: \frac{d}{dt}\tfrac12\|W_k\|^2 = -\sum_n \ell'(f_n)\,f_n \quad\text{(the same for every }k\text{)}

hence eq 18, :math:`\frac{d}{dt}\rho_k^2 = \frac{d}{dt}\rho_{k-1}^2`: the differences of squared
layer norms are conserved.  For the exponential loss this is eq 13,
:math:`\rho_k\dot\rho_k = \rho\sum_n e^{-\rho\tilde f_n}\tilde f_n` (labels absorbed in
:math:`\tilde f_n`).  With one example and :math:`\tilde f` held fixed (sec 22) the norms obey
the reduced ODE

.. math:: \rho_k\dot\rho_k = \tilde f\,\Big(\prod_{i=1}^K\rho_i\Big)\,
          e^{-\tilde f\prod_{i=1}^K\rho_i} \qquad\text{(eq 99, corrected)}

and, for :math:`K` equal layers, :math:`R = e^{\tilde f\rho^K}` obeys

.. math:: \dot R = K\,\tilde f^{2/K}(\log R)^{2-2/K} \qquad\text{(eq 103, corrected)}

so :math:`R \sim t`, :math:`\rho\sim\log t` for :math:`K=1` and
:math:`R(t) = \mathrm{li}^{-1}(2\tilde f t + C)` for :math:`K=2`.  The product
:math:`\rho^K = \log R/\tilde f` grows faster than :math:`\log t/\tilde f` (by
:math:`(2-2/K)\log\log t/\tilde f`: its log-slope :math:`d\log R/d\log t \approx 1 +
(2-2/K)/\log R > 1`), while each layer grows like :math:`(\log t)^{1/K}`, slower than one layer.

Corrections recorded here (each with a measured row):

* Eq 99 prints :math:`\rho_k\dot\rho_k = \tilde f(\prod_{i=1}^{k}\rho_i)e^{-\sum_{i=1}^K\rho_i\tilde f}`:
  the product must run over all :math:`K` layers and the exponent is the product
  :math:`\prod_i\rho_i`, not the sum (eq 13 and eq 100 use the corrected form).  Checked on the
  full network with one example.
* Eq 101-103 carry an extra factor :math:`K`: with :math:`\rho_1=\dots=\rho_K=\rho`, eq 99 gives
  :math:`\dot\rho = \tilde f\rho^{K-1}e^{-\tilde f\rho^K}` (eq 101 prints
  :math:`\tilde f K\rho^{K-1}e^{-\rho_k\tilde f}`, the flow of one parameter shared by all layers),
  so eq 102-103 read :math:`K` where :math:`K^2` is printed, and for :math:`K=2`
  :math:`\mathrm{li}(R) = 2\tilde f t + C`, not :math:`4\tilde f t + C`.  Only the time unit
  changes: the laws' shapes stand.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import scipy.optimize
import scipy.special

import regflow as rf
from regflow._validate import positive_number

#: Normalized margin :math:`\tilde f(x)` of the single example of sec 22 (kept != 1 so that the
#: powers of :math:`\tilde f` in eq 103 are visible).
MARGIN = 0.5
#: Horizon of the reduced ODE: long enough for the asymptotic laws (the field is tiny late on,
#: so the adaptive solver's steps grow like t and the cost grows like log t1).
T1 = 1e8
#: Start of the asymptotic window where laws are fitted and growth rates compared.
T_LATE = 1e4
#: Saved times of the per-layer log-slope run (log-spaced, plus t = 0: 201 in all, the length the
#: claims' own runs save, so both share one compiled solver).
SAVES = 200
#: Allowed relative error of the three-term series of the product's log-slope excess: the
#: next term is ~ (p+1)(p+2)(p+3)/u^3 ~ 3e-3 at u = log R(t1) ~ 21.
EXCESS_TOL = 1e-2
#: Residual allowed to an exact law fitted along the claims' run: integration error leaves ~1e-8
#: at rtol 1e-10 (~7e-7 at rtol 1e-8); a wrong law, e.g. the printed li^-1(4 f~ t + C) for K = 2,
#: leaves 6e-4.
LAW_TOL = 1e-5
#: Solver tolerances of the reduced flows' runs.
RTOL, ATOL = 1e-10, 1e-12
#: Width of the full network: input, hidden layers, output (ReLU, no biases).
WIDTHS = (3, 4, 3, 1)
#: Examples of the full network, scale of its random weights, its horizon.
N_DATA, INIT_SCALE, NET_T1 = 4, 0.7, 10.0
#: (seed, scale) of the network starts (see `net_starts`).
START_SEEDS = ((7, 0.7), (7, 1.0), (10, 1.0))
LOSSES = ("exponential", "square")


def _check_layers(K, low=1):
    if isinstance(K, bool) or not isinstance(K, (int, np.integer)) or K < low:
        raise ValueError(f"K (the number of layers) must be an int >= {low}, got {K!r}")
    return int(K)


# ----------------------------------------------------------------------------- the full network


#: The network: widths 3-4-3-1, ReLU, no biases (one-homogeneous in each layer); states are its
#: parameter dicts ``{"W1", "W2", "W3"}``.
NET = rf.Network(WIDTHS, activation="relu")


def layer_shapes(widths=WIDTHS):
    """Shapes of :math:`W_1 \\dots W_K`: ``(out, in)`` for each layer."""
    return list(rf.Network(widths).shapes)


def outputs(w, data):
    """:math:`y_n f(W; x_n)` for every example (labels absorbed, as the paper does)."""
    return data["y"] * NET.scalar(w, data["x"])


def exponential_loss(w, data):
    r"""Eq 47: :math:`L = \sum_n e^{-y_n f(W; x_n)}`."""
    return jnp.sum(jnp.exp(-outputs(w, data)))


def square_loss(w, data):
    r"""Eq 44: :math:`L = \sum_n (y_n - f(W; x_n))^2`."""
    return jnp.sum((data["y"] - NET.scalar(w, data["x"])) ** 2)


def dataset(n=N_DATA, seed=0):
    """A few unit-norm inputs in R^3 with labels +-1 (a float64 pytree)."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, WIDTHS[0]))
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    y = np.where(np.arange(n) % 2 == 0, 1.0, -1.0)
    return {"x": jnp.asarray(x), "y": jnp.asarray(y)}


def random_weights(seed, scale=INIT_SCALE):
    """Random weights with deliberately unequal layer norms (layer k scaled by 1 + k/2)."""
    params = NET.init(seed, scale)
    return {key: (1 + k / 2) * params[key] for k, key in enumerate(NET.keys)}


def net_starts():
    """The starts of the network entries (batched): random weights (``START_SEEDS``) whose gradient
    flow on `dataset()` is integrable with an adaptive explicit solver up to ``NET_T1``.

    The gradient field of a ReLU network jumps where a pre-activation vanishes.  A trajectory
    that crosses such a surface is fine (the solver rejects a step or two), but the flow can also
    slide along one (a Filippov sliding mode: the field points into the surface from both
    sides), and then an adaptive explicit solver stalls.  Most random starts slide within t < 2;
    these only cross surfaces, a few times and transversally (`activation_pattern` changes at
    isolated times, see the tests), with units active on some examples and not others, and
    their layer norms change by O(1)."""
    return rf.stack_states([random_weights(seed, scale) for seed, scale in START_SEEDS])


def activation_pattern(w, data):
    """Signs of every hidden pre-activation on every example (which smooth piece of the field)."""
    h, signs = data["x"].T, []
    for W in NET.weights(w)[:-1]:
        z = W @ h
        signs.append(jnp.ravel(z > 0))
        h = jax.nn.relu(z)
    return jnp.concatenate(signs)


def squared_norms(w, args=None):
    r""":math:`(\|W_1\|_F^2, \dots, \|W_K\|_F^2)`."""
    return NET.layer_norms(w) ** 2


def half_squared_norms(w, args=None):
    r""":math:`\tfrac12\|W_k\|_F^2` for every k: its rate is :math:`\rho_k\dot\rho_k`."""
    return 0.5 * squared_norms(w)


half_squared_norms.__name__ = "rho_k^2/2"


def norm_gap(k):
    r"""Eq 18: :math:`\|W_k\|^2 - \|W_{k+1}\|^2` (layers numbered from 1)."""

    def q(w, args=None):
        n = squared_norms(w)
        return n[k - 1] - n[k]

    q.__name__ = f"|W{k}|^2-|W{k + 1}|^2"
    return q


def _per_example(w, data):
    r""":math:`\rho_k`, :math:`\rho = \prod\rho_k` and the normalized margins :math:`\tilde f_n = y_nf_n/\rho`."""
    rho_k = NET.layer_norms(w)
    rho = jnp.prod(rho_k)
    return rho_k, rho, outputs(w, data) / rho


def eq13_99(w, data):
    r"""Eq 13 as the sum over examples of eq 99 (corrected), for every layer:
    :math:`\rho_k\dot\rho_k = \sum_n\tilde f_n\,\rho\,e^{-\tilde f_n\rho}` (:math:`= \sum_n e^{-y_nf_n}y_nf_n`)."""
    rho_k, rho, f = _per_example(w, data)
    return jnp.full(NET.depth, jnp.sum(f * rho * jnp.exp(-f * rho)))


def eq99_printed(w, data):
    r"""The sum over examples of eq 99 as printed,
    :math:`\tilde f_n(\prod_{i\le k}\rho_i)e^{-\sum_{i=1}^K\rho_i\tilde f_n}`."""
    rho_k, _, f = _per_example(w, data)
    return jnp.cumprod(rho_k) * jnp.sum(f * jnp.exp(-f * jnp.sum(rho_k)))


def square_rates(w, data):
    r""":math:`\rho_k\dot\rho_k = -2\sum_n(f_n - y_n)f_n` for every layer (square loss, eq 44)."""
    f = NET.scalar(w, data["x"])
    return jnp.full(NET.depth, -2.0 * jnp.sum((f - data["y"]) * f))


def _relative(a, b):
    return float(np.max(np.abs(np.asarray(a) - np.asarray(b)) / np.maximum(np.abs(np.asarray(b)), 1e-300)))


def _rates_error(method, formula, one_example=False):
    """Largest relative gap between the layers' :math:`\\rho_k\\dot\\rho_k` of the method's flow and ``formula``."""
    data = method.flow.args
    if one_example:
        data = {"x": data["x"][:1], "y": data["y"][:1]}
    lie = rf.lie_derivative(method.flow, half_squared_norms)
    got, want = jax.jit(jax.vmap(lambda w: (lie(w, data), formula(w, data))))(method.points)
    return _relative(got, want)


def eq13_error(method):
    r"""Eq 13 against the method's flow (relative error over layers and samples)."""
    return _rates_error(method, eq13_99)


def eq99_error(method):
    r"""Eq 99 (corrected) on the first example alone, against the method's flow."""
    return _rates_error(method, eq13_99, one_example=True)


def eq99_printed_error(method):
    r"""Eq 99 as printed on the first example alone, against the method's flow."""
    return _rates_error(method, eq99_printed, one_example=True)


def _network_method(loss_name):
    if loss_name not in LOSSES:
        raise ValueError(f"loss must be one of {LOSSES}, got {loss_name!r}")
    data = dataset()
    loss = exponential_loss if loss_name == "exponential" else square_loss
    flow = rf.gradient_flow(loss, args=data)
    gaps = [norm_gap(k) for k in range(1, len(WIDTHS) - 1)]
    claims = [rf.Conserved(q, source=f"sec 7, eq 18: d/dt rho_{k}^2 = d/dt rho_{k + 1}^2 ({loss_name} loss)")
              for k, q in enumerate(gaps, start=1)]
    if loss_name == "exponential":
        claims.append(rf.Formula(eq13_99, rate_of=half_squared_norms, tol=1e-10, printed=eq99_printed,
                                 name="eq 13 = sum_n eq 99",
                                 source="sec 6.1, eq 13 (lambda_k = 0): rho_k rho_k' = sum_n f~_n rho e^{-f~_n rho} "
                                        "for every layer, the sum over examples of sec 22's eq 99 (as eq 13 and 100 "
                                        "require)",
                                 erratum="eq 99 prints f~ (prod_{i<=k} rho_i) exp(-sum_i rho_i f~); correct "
                                         "f~ (prod_{i<=K} rho_i) exp(-f~ prod_i rho_i)", grade="erratum"))
    else:
        claims.append(rf.Formula(square_rates, rate_of=half_squared_norms, tol=1e-10, name="rho_k rho_k' (square loss)",
                                 source="sec 7 for the square loss (eq 44): d/dt |W_k|^2/2 = -2 sum_n (f_n - y_n) f_n "
                                        "for every layer"))
    samples = rf.stack_states([*(random_weights(seed, scale) for seed, scale in START_SEEDS),
                               *(random_weights(seed) for seed in range(20, 28))])
    return rf.Method(flow=flow, y0=net_starts(), t1=NET_T1, samples=samples, claims=claims)


@rf.entry("rho_dynamics.relu_net", source="Theory III sec 7, eq 18; sec 6.1, eq 13; sec 22, eq 99")
def relu_net() -> rf.Method:
    r"""Gradient flow of a 3-layer ReLU network without biases (widths 3-4-3-1, an `rf.Network`, state
    ``{"W1", "W2", "W3"}``) on four examples under the exponential loss (eq 47),
    :math:`\dot W_k = -\nabla_{W_k}L`.  Eq 18: :math:`\|W_k\|^2 - \|W_{k+1}\|^2` is conserved; eq 13:
    :math:`\rho_k\dot\rho_k = \sum_n e^{-y_nf_n}y_nf_n` for every :math:`k`, the sum of eq 99 over examples."""
    return _network_method("exponential")


@rf.entry("rho_dynamics.relu_net_square", source="Theory III sec 7, eq 18; eq 44")
def relu_net_square() -> rf.Method:
    r"""The same network under the square loss (eq 44): eq 18 holds for any loss of the outputs,
    since :math:`\tfrac{d}{dt}\tfrac12\|W_k\|^2 = -2\sum_n (f_n - y_n)f_n` for every layer."""
    return _network_method("square")


# ----------------------------------------------------------------------------- the reduced rho ODE


def reduced_field(t, rho, args):
    r"""Eq 99 (corrected): :math:`\dot\rho_k = \tilde f\,(\rho/\rho_k)\,e^{-\tilde f\rho}`,
    :math:`\rho = \prod_i \rho_i`, :math:`\tilde f` = ``args["margin"]``."""
    P = jnp.prod(rho)
    f = args["margin"]
    return f * (P / rho) * jnp.exp(-f * P)


def reduced_flow(K, margin=MARGIN):
    """The reduced ODE of sec 22 for ``K`` layers (state ``rho1 ... rhoK``)."""
    K = _check_layers(K)
    margin = positive_number(margin, "margin")
    return rf.ODE(reduced_field, names=tuple(f"rho{k + 1}" for k in range(K)), args={"margin": margin})


def product(rho, args=None):
    r""":math:`\rho = \prod_k \rho_k`, the norm of the product of the layers."""
    return jnp.prod(rho)


def exp_margin(rho, args):
    r""":math:`R = e^{\tilde f\prod_k\rho_k}` (eq 102-103; the paper's :math:`\gamma` of eq 100 for K = 2)."""
    return jnp.exp(args["margin"] * jnp.prod(rho))


def rho1(rho, args=None):
    """The first layer's norm."""
    return rho[0]


def ratio_gap(rho, args=None):
    r""":math:`(\rho_1/\rho_2 - 1)^2`: how unequal the first two layers are, relatively."""
    return (rho[0] / rho[1] - 1.0) ** 2


ratio_gap.__name__ = "(rho1/rho2 - 1)^2"


def rho_gap(k):
    r"""Eq 18 on the reduced ODE: :math:`\rho_k^2 - \rho_{k+1}^2`."""

    def q(rho, args=None):
        return rho[k - 1] ** 2 - rho[k] ** 2

    q.__name__ = f"rho{k}^2-rho{k + 1}^2"
    return q


def li(x):
    r"""The logarithmic integral :math:`\mathrm{li}(x) = \mathrm{Ei}(\ln x)`, ``x > 0``."""
    return scipy.special.expi(np.log(np.asarray(x, dtype=float)))


def li_inverse(y):
    r""":math:`\mathrm{li}^{-1}(y)` on the branch :math:`x > 1` (where li increases from
    :math:`-\infty` to :math:`\infty`), by root finding in :math:`u = \ln x`."""

    def one(v):
        hi = max(1.0, np.log(max(abs(v), 2.0)) + 2.0 * np.log(np.log(max(abs(v), 3.0)) + 1.0) + 2.0)
        while scipy.special.expi(hi) < v:
            hi *= 2.0
        u = scipy.optimize.brentq(lambda u: scipy.special.expi(u) - v, 1e-300, hi, xtol=1e-300, rtol=1e-15)
        return np.exp(u)

    return np.vectorize(one, otypes=[float])(y)


def linear(t):
    """The law :math:`t` (for GrowsLike: the quantity is affine in t)."""
    return np.asarray(t, dtype=float)


linear.__name__ = "t"


def li_law(K, margin, rho0):
    r"""The K = 2 law :math:`t \mapsto \mathrm{li}^{-1}(K\tilde f t + \mathrm{li}(R_0))`,
    :math:`R_0 = e^{\tilde f\rho_0^K}` (exact for equal layers starting at :math:`\rho_0`)."""
    C = float(li(np.exp(margin * rho0**K)))

    def law(t):
        return li_inverse(K * margin * np.asarray(t, dtype=float) + C)

    law.__name__ = f"li^-1({K * margin:g} t + C)"
    return law


def law_R(K, margin, printed=False):
    r"""Right side of eq 103 as a function of R: :math:`K\tilde f^{2/K}(\log R)^{2-2/K}`
    (``printed``: with the printed :math:`K^2`)."""
    coef = (K**2 if printed else K) * margin ** (2.0 / K)
    return lambda R: coef * jnp.log(R) ** (2.0 - 2.0 / K)


def eq103(K, printed=False):
    r"""``formula(rho, args)``: eq 103's :math:`\dot R` at a state (corrected, or ``printed`` with :math:`K^2`)."""

    def formula(rho, args):
        return law_R(K, args["margin"], printed)(exp_margin(rho, args))

    formula.__name__ = f"eq 103{' as printed' if printed else ''}"
    return formula


def equal_points(K, n=12):
    """Points with equal layers, rho from 0.3 to 4."""
    return np.repeat(np.linspace(0.3, 4.0, n)[:, None], K, axis=1)


def printed_field(t, rho, args):
    r"""Eq 99 as printed: :math:`\rho_k\dot\rho_k = \tilde f(\prod_{i\le k}\rho_i)e^{-\sum_{i=1}^K\rho_i\tilde f}`."""
    f = args["margin"]
    return f * jnp.cumprod(rho) * jnp.exp(-f * jnp.sum(rho)) / rho


def printed_eq99(flow):
    """`rf.Perturbation`: the reduced flow with eq 99 as printed."""
    return rf.Perturbation("eq 99 as printed", {"flow": flow.replace(vector_field=printed_field)})


def decoupled(flow):
    """`rf.Perturbation`: the reduced flow with every layer a one-layer network."""
    return rf.Perturbation("layers decoupled (each rho_k' = f~ e^(-f~ rho_k))",
                           {"flow": flow.replace(vector_field=decoupled_field)})


def excess_series(u, p):
    r"""Asymptotic series of :math:`s - 1` for :math:`\dot R = c(\log R)^p`, :math:`u = \log R`:
    :math:`t = \int^R dr/(c\log^p r) = \frac{R}{c\,u^p}\big(1 + \frac pu + \frac{p(p+1)}{u^2} + \dots\big)`,
    so :math:`s = tc\,u^p/R = 1 + p/u + p(p+1)/u^2 + p(p+1)(p+2)/u^3 + O(u^{-4})`."""
    return p / u + p * (p + 1) / u**2 + p * (p + 1) * (p + 2) / u**3


def excess_ratio(K, t1):
    r"""``q(rho, args)`` at the horizon :math:`t_1`: :math:`(s - 1)/\text{excess\_series}(\log R, 2 - 2/K)` with
    the product's log-slope :math:`s = t_1\dot R/R`, :math:`\dot R` from eq 103 (equal layers)."""
    p = 2.0 - 2.0 / K

    def q(rho, args):
        R = exp_margin(rho, args)
        s = t1 * law_R(K, args["margin"])(R) / R
        return (s - 1.0) / excess_series(jnp.log(R), p)

    q.__name__ = "(s - 1) / series"
    return q


def layer_log_slope(method):
    r"""Largest log-slope of one layer of the method's flow on :math:`[T_{late}, t_1]`, in units of the
    one-layer law: :math:`\max_{t,k}\tilde f\,t\,\dot\rho_k` (1-layer: -> 1; here ~ 1/(K rho^(K-1)))."""
    flow = method.flow
    ts = np.r_[0.0, np.geomspace(T_LATE, method.t1, SAVES)]
    traj = rf.integrate(flow, method.y0, method.t1, ts=ts, batched=True, **method.options)
    if not traj.ok:
        raise RuntimeError(f"the reduced flow did not finish: {traj.status}")
    rates = np.asarray(jax.vmap(jax.vmap(lambda r: flow.vector_field(0.0, r, flow.args)))(jnp.asarray(traj.y)))
    slopes = flow.args["margin"] * traj.t[None, 1:, None] * rates[:, 1:]
    return float(np.max(slopes)), rf.Trace(traj.t[1:], slopes[0].max(axis=-1), "t", "max_k f~ t rho_k'", "line", 1.0)


def _eq103_claim(K):
    return rf.Formula(eq103(K), rate_of=exp_margin, at=equal_points(K), tol=1e-12,
                      printed=eq103(K, True) if K > 1 else None,
                      name="eq 103: R' = K f~^(2/K) (log R)^(2-2/K)",
                      source="sec 22, eq 101-103 derived from eq 99 with rho_1 = ... = rho_K",
                      erratum=None if K == 1 else "printed rho' = f~ K rho^(K-1) e^(-rho_k f~), R' = f~^(2/K) K^2 "
                      "(log R)^(2-2/K); eq 99 with equal layers gives rho' = f~ rho^(K-1) e^(-f~ rho^K), "
                      "R' = K f~^(2/K) (log R)^(2-2/K)", grade=None if K == 1 else "erratum")


def _growth_claims(K, t1):
    return [
        rf.AtHorizon(excess_ratio(K, t1), predict=1.0, tol=EXCESS_TOL, name="log-slope excess at t1",
                     source="sec 21-22, Fig. 11 left and eq 103: for K > 1 the product diverges faster than log t, "
                            "R ~ t (log t)^(2-2/K): s = d log R/d log t = 1 + p/u + p(p+1)/u^2 + ..., u = log R"),
        rf.Holds(measure=layer_log_slope, hi=LAYER_SLOPE_MAX, name="each layer slower than one layer",
                 what=f"max over t in [{T_LATE:g}, t1] of f~ t rho_k' (1-layer law: -> 1; here ~ 1/(K rho^(K-1)) "
                      f"<= {LAYER_SLOPE_MAX:g})",
                 source="sec 22, Fig. 11 right: each layer diverges slower than in the 1-layer case"),
    ]


#: Bound on a layer's log-slope f~ t rho_k' in units of the one-layer law (which tends to 1).
LAYER_SLOPE_MAX = 0.5


def decoupled_field(t, rho, args):
    r""":math:`\dot\rho_k = \tilde f e^{-\tilde f\rho_k}`: every layer a one-layer network (a perturbation)."""
    return args["margin"] * jnp.exp(-args["margin"] * rho)


def squared_product_field(t, rho, args):
    r""":math:`\dot\rho = \tilde f\rho e^{-\tilde f\rho^2}`: the two-layer law of eq 99 for one layer
    (a perturbation)."""
    return args["margin"] * rho * jnp.exp(-args["margin"] * rho**2)


#: Solver options of the reduced flows (their laws are checked to ~1e-6).
REDUCED_OPTIONS = {"rtol": RTOL, "atol": ATOL}


@rf.entry("rho_dynamics.one_layer", source="Theory III sec 21-22, eq 77, eq 103 with K = 1")
def one_layer(margin: float = MARGIN, rho0: float = 1.0) -> rf.Method:
    r"""One layer, one example: :math:`\dot\rho = \tilde f e^{-\tilde f\rho}`, so
    :math:`R = e^{\tilde f\rho} = \tilde f^2 t + R_0` and :math:`\rho = \log(\tilde f^2t + R_0)/\tilde f\sim\log t`."""
    rho0 = positive_number(rho0, "rho0")
    flow = reduced_flow(1, margin)
    return rf.Method(
        flow=flow, y0=[rho0], t1=T1, samples=equal_points(1), options=REDUCED_OPTIONS,
        perturbations=[rf.Perturbation("rho' = f~ rho e^(-f~ rho^2) (the two-layer law)",
                                       {"flow": flow.replace(vector_field=squared_product_field)})],
        claims=[
            _eq103_claim(1),
            rf.GrowsLike(exp_margin, law=linear, tol=LAW_TOL, name="R",
                         source="sec 22, eq 103 with K = 1: R' = f~^2, R ~ t"),
            rf.AtHorizon(exp_margin, predict=lambda y0, a: a["margin"] ** 2 * T1 + np.exp(a["margin"] * y0[0]),
                         tol=1e-6, name="R(t1) = f~^2 t1 + R0",
                         source="sec 22: R = f~^2 t + R0 exactly, so rho = log(f~^2 t + R0)/f~, the reference rate of "
                                "Fig. 11"),
            rf.GrowsLike(rho1, law=np.log, t_from=T1 / 100, tol=1e-3, name="rho",
                         source="sec 21 (eq 77) and 22: ||w|| ~ log t for a 1-layer network"),
        ],
    )


def eq100_gamma(rho, args):
    r"""Eq 100: :math:`\dot\gamma = \tilde f^2r^2`, :math:`r^2 = \rho_1^2 + \rho_2^2`."""
    return args["margin"] ** 2 * jnp.sum(rho**2)


def eq100_r(rho, args):
    r"""Eq 100: :math:`r\dot r = 2\log\gamma/\gamma`, :math:`\gamma = e^{\tilde f\rho_1\rho_2}`."""
    gamma = exp_margin(rho, args)
    return 2.0 * jnp.log(gamma) / gamma


def half_r_sq(rho, args=None):
    r""":math:`r^2/2 = (\rho_1^2 + \rho_2^2)/2`: its rate is :math:`r\dot r`."""
    return 0.5 * jnp.sum(rho**2)


def li_of_R(rho, args):
    r""":math:`\mathrm{li}(R) = \mathrm{Ei}(\log R) = \mathrm{Ei}(\tilde f\rho_1\rho_2)`."""
    return jax.scipy.special.expi(args["margin"] * jnp.prod(rho))


li_of_R.__name__ = "li(R)"


@rf.entry("rho_dynamics.two_layer", source="Theory III sec 22, eq 99-103, Fig. 11")
def two_layer(margin: float = MARGIN, rho0: float = 1.0) -> rf.Method:
    r"""Two equal layers, one example: :math:`\dot\rho = \tilde f\rho e^{-\tilde f\rho^2}`;
    :math:`R = e^{\tilde f\rho^2}` obeys :math:`\dot R = 2\tilde f\log R`, so
    :math:`\mathrm{li}(R) = 2\tilde f t + \mathrm{li}(R_0)`, :math:`R = \mathrm{li}^{-1}(2\tilde f t + C)`."""
    rho0 = positive_number(rho0, "rho0")
    rng = np.random.default_rng(4)
    flow = reduced_flow(2, margin)

    def li_at_t1(coefficient):
        return lambda y0, a: coefficient * a["margin"] * T1 + scipy.special.expi(a["margin"] * np.prod(y0))

    return rf.Method(
        flow=flow, y0=[rho0, rho0], t1=T1, options=REDUCED_OPTIONS,
        perturbations=[printed_eq99(flow), decoupled(flow)],
        samples=np.vstack([equal_points(2), rng.uniform(0.3, 3.0, size=(12, 2))]),
        claims=[
            rf.Formula(eq100_gamma, rate_of=exp_margin, tol=1e-12, name="eq 100: gamma' = f~^2 r^2",
                       source="sec 22, eq 100 (consistent with eq 99 corrected)"),
            rf.Formula(eq100_r, rate_of=half_r_sq, tol=1e-12, name="eq 100: r r' = 2 log(gamma)/gamma",
                       source="sec 22, eq 100 (consistent with eq 99 corrected)"),
            _eq103_claim(2),
            rf.GrowsLike(exp_margin, law=li_law(2, margin, rho0), tol=LAW_TOL, name="R",
                         source="sec 22: for K = 2, R(t) = li^-1(K f~ t + C), C = li(R(0))"),
            rf.AtHorizon(li_of_R, predict=li_at_t1(2.0), printed=li_at_t1(4.0), tol=1e-6,
                         name="li(R(t1)) = K f~ t1 + C",
                         source="sec 22, K = 2: R(t) = li^-1(K f~ t + C) with eq 103 corrected",
                         erratum="printed li^-1(f~ K^2 t + C); correct li^-1(K f~ t + C) = li^-1(2 f~ t + C)",
                         grade="erratum"),
            *_growth_claims(2, T1),
        ],
    )


@rf.entry("rho_dynamics.deep", source="Theory III sec 22, eq 99-103, Fig. 11")
def deep(K: int = 3, margin: float = MARGIN, rho0: float = 1.0) -> rf.Method:
    r"""K equal layers, one example: :math:`\dot\rho = \tilde f\rho^{K-1}e^{-\tilde f\rho^K}` and
    :math:`\dot R = K\tilde f^{2/K}(\log R)^{2-2/K}` (eq 103 corrected): the product
    :math:`\rho^K` grows faster than :math:`\log t/\tilde f`, each layer like :math:`(\log t)^{1/K}`."""
    K = _check_layers(K, low=2)
    rho0 = positive_number(rho0, "rho0")
    flow = reduced_flow(K, margin)
    return rf.Method(
        flow=flow, y0=np.full(K, rho0), t1=T1, samples=equal_points(K), options=REDUCED_OPTIONS,
        perturbations=[printed_eq99(flow), decoupled(flow)],
        claims=[_eq103_claim(K), *_growth_claims(K, T1)],
    )


@rf.entry("rho_dynamics.unequal_layers", source="Theory III sec 7, eq 18; sec 22, eq 99")
def unequal_layers(K: int = 2, margin: float = MARGIN) -> rf.Method:
    r"""Eq 99 from unequal layers: :math:`\rho_k^2 - \rho_{k+1}^2` stays constant (eq 18), so as the
    norms diverge their ratios tend to 1: :math:`\rho_1^2 = \rho_2^2 + \eta` with
    :math:`\rho_1/\rho_2 - 1 \approx \eta/(2\rho_2^2) \to 0`."""
    K = _check_layers(K, low=2)
    starts = np.array([np.linspace(1.5, 0.5, K), np.linspace(0.4, 1.2, K), np.linspace(2.0, 1.0, K)])
    rng = np.random.default_rng(5)
    flow = reduced_flow(K, margin)
    return rf.Method(
        flow=flow, y0=starts, t1=1e4, samples=rng.uniform(0.3, 3.0, size=(20, K)), perturbations=[printed_eq99(flow)],
        claims=[
            *[rf.Conserved(rho_gap(k), source="sec 7, eq 18 on the reduced ODE (eq 99)") for k in range(1, K)],
            rf.Monotone(ratio_gap,
                        source="sec 7: with rho_1^2 - rho_2^2 fixed and the norms growing, the layers equalize"),
        ],
    )
