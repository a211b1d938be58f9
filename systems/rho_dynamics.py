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

import functools

import jax
import jax.numpy as jnp
import numpy as np
import scipy.optimize
import scipy.special

import regflow as rf

#: Normalized margin :math:`\tilde f(x)` of the single example of sec 22 (kept != 1 so that the
#: powers of :math:`\tilde f` in eq 103 are visible).
MARGIN = 0.5
#: Horizon of the reduced ODE: long enough for the asymptotic laws (the field is tiny late on,
#: so the adaptive solver's steps grow like t and the cost grows like log t1).
T1 = 1e8
#: Start of the asymptotic window where laws are fitted and growth rates compared.
T_LATE = 1e4
#: Saved times per run of the Holds measures (log-spaced, plus t = 0: 201 in all, the length the
#: claims' own runs save, so both share one compiled solver).
SAVES = 200
#: Allowed relative error of the three-term series of the product's log-slope excess: the
#: next term is ~ (p+1)(p+2)(p+3)/u^3 ~ 3e-3 at u = log R(t1) ~ 21.
EXCESS_TOL = 1e-2
#: Residual allowed to an exact law fitted along the claims' own run (default rtol 1e-8): their
#: integration error leaves ~7e-7 (1e-8 at rtol 1e-10); a wrong law, e.g. the printed
#: li^-1(4 f~ t + C) for K = 2, leaves 6e-4.
LAW_TOL = 1e-5
#: Solver tolerances of the Holds measures' own runs.
RTOL, ATOL = 1e-10, 1e-12
#: Width of the full network: input, hidden layers, output (ReLU, no biases).
WIDTHS = (3, 4, 3, 1)
#: Examples of the full network, scale of its random weights, its horizon.
N_DATA, INIT_SCALE, NET_T1 = 4, 0.7, 10.0
#: (seed, scale) of the network starts (see `net_starts`).
START_SEEDS = ((7, 0.7), (7, 1.0), (10, 1.0))
LOSSES = ("exponential", "square")


def _check_positive(x, name):
    x = float(x)
    if not (np.isfinite(x) and x > 0):
        raise ValueError(f"{name} must be positive and finite, got {x}")
    return x


def _check_layers(K, low=1):
    if isinstance(K, bool) or not isinstance(K, (int, np.integer)) or K < low:
        raise ValueError(f"K (the number of layers) must be an int >= {low}, got {K!r}")
    return int(K)


# ----------------------------------------------------------------------------- the full network


def layer_shapes(widths=WIDTHS):
    """Shapes of :math:`W_1 \\dots W_K`: ``(out, in)`` for each layer."""
    return [(widths[i + 1], widths[i]) for i in range(len(widths) - 1)]


def unflatten(w, widths=WIDTHS):
    """The flat state ``w`` as the list of layer matrices."""
    mats, start = [], 0
    for shape in layer_shapes(widths):
        size = shape[0] * shape[1]
        mats.append(w[start:start + size].reshape(shape))
        start += size
    return mats


def net_names(widths=WIDTHS):
    """``W1[i,j]`` ... coordinate names of the flat state."""
    return tuple(f"W{k + 1}[{i},{j}]" for k, (o, n) in enumerate(layer_shapes(widths))
                 for i in range(o) for j in range(n))


def network(w, x, widths=WIDTHS):
    r""":math:`f(W; x) = W_K\,\sigma(W_{K-1}\cdots\sigma(W_1 x))`, ReLU :math:`\sigma`, no biases (sec 2)."""
    h = x
    mats = unflatten(w, widths)
    for W in mats[:-1]:
        h = jax.nn.relu(W @ h)
    return (mats[-1] @ h)[0]


def outputs(w, data):
    """:math:`y_n f(W; x_n)` for every example (labels absorbed, as the paper does)."""
    return data["y"] * jax.vmap(lambda x: network(w, x))(data["x"])


def exponential_loss(w, data):
    r"""Eq 47: :math:`L = \sum_n e^{-y_n f(W; x_n)}`."""
    return jnp.sum(jnp.exp(-outputs(w, data)))


def square_loss(w, data):
    r"""Eq 44: :math:`L = \sum_n (y_n - f(W; x_n))^2`."""
    return jnp.sum((data["y"] - jax.vmap(lambda x: network(w, x))(data["x"])) ** 2)


def dataset(n=N_DATA, seed=0):
    """A few unit-norm inputs in R^3 with labels +-1 (a float64 pytree)."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, WIDTHS[0]))
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    y = np.where(np.arange(n) % 2 == 0, 1.0, -1.0)
    return {"x": jnp.asarray(x), "y": jnp.asarray(y)}


def random_weights(seed, scale=INIT_SCALE):
    """Random weights with deliberately unequal layer norms (layer k scaled by 1 + k/2)."""
    rng = np.random.default_rng(seed)
    return np.concatenate([scale * (1 + k / 2) * rng.normal(size=o * i) / np.sqrt(i)
                           for k, (o, i) in enumerate(layer_shapes())])


def net_starts():
    """The starts of the network entries: random weights (``START_SEEDS``) whose gradient flow on
    `dataset()` is integrable with an adaptive explicit solver up to ``NET_T1``.

    The gradient field of a ReLU network jumps where a pre-activation vanishes.  A trajectory
    that crosses such a surface is fine (the solver rejects a step or two), but the flow can also
    slide along one (a Filippov sliding mode: the field points into the surface from both
    sides), and then an adaptive explicit solver stalls.  Most random starts slide within t < 2;
    these only cross surfaces, a few times and transversally (`activation_pattern` changes at
    isolated times, see the tests), with units active on some examples and not others, and
    their layer norms change by O(1)."""
    return np.stack([random_weights(seed, scale) for seed, scale in START_SEEDS])


def activation_pattern(w, data):
    """Signs of every hidden pre-activation on every example (which smooth piece of the field)."""
    h, signs = data["x"].T, []
    for W in unflatten(w)[:-1]:
        z = W @ h
        signs.append(jnp.ravel(z > 0))
        h = jax.nn.relu(z)
    return jnp.concatenate(signs)


def squared_norms(w, args=None):
    r""":math:`(\|W_1\|_F^2, \dots, \|W_K\|_F^2)`."""
    return jnp.stack([jnp.sum(W**2) for W in unflatten(w)])


def norm_gap(k):
    r"""Eq 18: :math:`\|W_k\|^2 - \|W_{k+1}\|^2` (layers numbered from 1)."""

    def q(w, args=None):
        n = squared_norms(w)
        return n[k - 1] - n[k]

    q.__name__ = f"|W{k}|^2-|W{k + 1}|^2"
    return q


def layer_rates(flow):
    r""":math:`W_k\cdot\dot W_k = \rho_k\dot\rho_k` for every layer, from the flow's field."""

    def rates(w):
        velocity = unflatten(flow.vector_field(0.0, w, flow.args))
        return jnp.stack([jnp.sum(W * V) for W, V in zip(unflatten(w), velocity)])

    return jax.jit(jax.vmap(rates))


def _relative(a, b):
    return float(np.max(np.abs(np.asarray(a) - np.asarray(b)) / np.maximum(np.abs(np.asarray(b)), 1e-300)))


def eq13_error(method):
    r"""Largest relative gap between :math:`\rho_k\dot\rho_k` (measured from the field) and eq 13,
    :math:`\rho\sum_n e^{-\rho\tilde f_n}\tilde f_n = \sum_n e^{-y_nf_n}y_nf_n`, over layers and samples."""
    flow, pts = method.flow, jnp.asarray(method.points)
    got = layer_rates(flow)(pts)
    yf = jax.jit(jax.vmap(lambda w: outputs(w, flow.args)))(pts)
    want = jnp.sum(jnp.exp(-yf) * yf, axis=1)[:, None] * jnp.ones_like(got)
    return _relative(got, want)


def _one_example_quantities(method):
    """For the one-example network (sec 22, N = 1): rho_k rho_k' from the field, rho_k, f~."""
    data = method.flow.args
    one = {"x": data["x"][:1], "y": data["y"][:1]}
    flow = rf.gradient_flow(exponential_loss, args=one)
    pts = jnp.asarray(method.points)
    got = np.asarray(layer_rates(flow)(pts))
    rho_k = np.sqrt(np.asarray(jax.jit(jax.vmap(squared_norms))(pts)))
    margin = np.asarray(jax.jit(jax.vmap(lambda w: outputs(w, one)[0]))(pts)) / rho_k.prod(axis=1)
    return got, rho_k, margin


def eq99_error(method):
    r"""Eq 99 corrected, :math:`\rho_k\dot\rho_k = \tilde f\,\rho\,e^{-\tilde f\rho}`,
    :math:`\rho = \prod_{i=1}^K\rho_i`: largest relative error on the one-example network."""
    got, rho_k, f = _one_example_quantities(method)
    rho = rho_k.prod(axis=1, keepdims=True)
    return _relative(got, f[:, None] * rho * np.exp(-f[:, None] * rho))


def eq99_printed_error(method):
    r"""Eq 99 as printed, :math:`\tilde f(\prod_{i=1}^k\rho_i)e^{-\sum_{i=1}^K\rho_i\tilde f}`:
    its largest relative error on the one-example network."""
    got, rho_k, f = _one_example_quantities(method)
    printed = f[:, None] * np.cumprod(rho_k, axis=1) * np.exp(-f[:, None] * rho_k.sum(axis=1, keepdims=True))
    return _relative(got, printed)


def _network_method(loss_name):
    if loss_name not in LOSSES:
        raise ValueError(f"loss must be one of {LOSSES}, got {loss_name!r}")
    data = dataset()
    loss = exponential_loss if loss_name == "exponential" else square_loss
    flow = rf.gradient_flow(loss, names=net_names(), args=data)
    gaps = [norm_gap(k) for k in range(1, len(WIDTHS) - 1)]
    claims = [rf.Conserved(q, source=f"sec 7, eq 18: d/dt rho_{k}^2 = d/dt rho_{k + 1}^2 ({loss_name} loss)")
              for k, q in enumerate(gaps, start=1)]
    if loss_name == "exponential":
        claims += [
            rf.Holds(measure=eq13_error, hi=1e-10, name="eq 13: rho_k rho_k' = sum_n e^(-y f) y f",
                     what="max relative error over layers and samples",
                     source="sec 6.1, eq 13 (lambda_k = 0): rho_k rho_k' is the same for every layer"),
            rf.Holds(measure=eq99_error, hi=1e-10, name="eq 99 corrected, N=1",
                     what="max relative error of f~ rho e^(-f~ rho), rho = prod_i rho_i, one example",
                     source="sec 22, eq 99 (as eq 13 and 100 require)"),
            rf.Holds(measure=eq99_printed_error, lo=0.1, name="eq 99 as printed, N=1",
                     what="max relative error of the printed right side (refuted if > lo)",
                     source="sec 22, eq 99 as printed",
                     erratum="printed f~ (prod_{i<=k} rho_i) exp(-sum_i rho_i f~); "
                             "correct f~ (prod_{i<=K} rho_i) exp(-f~ prod_i rho_i)"),
        ]
    samples = np.vstack([net_starts(), [random_weights(seed) for seed in range(20, 28)]])
    return rf.Method(flow=flow, y0=net_starts(), t1=NET_T1, samples=samples, claims=claims)


@rf.entry("rho_dynamics.relu_net", source="Theory III sec 7, eq 18; sec 6.1, eq 13; sec 22, eq 99")
def relu_net() -> rf.Method:
    r"""Gradient flow of a 3-layer ReLU network without biases (widths 3-4-3-1) on four
    examples under the exponential loss (eq 47), :math:`\dot W_k = -\nabla_{W_k}L`.
    Eq 18: :math:`\|W_k\|^2 - \|W_{k+1}\|^2` is conserved; eq 13:
    :math:`\rho_k\dot\rho_k = \sum_n e^{-y_nf_n}y_nf_n` for every :math:`k`; eq 99 on one example."""
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
    margin = _check_positive(margin, "margin")
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
    return lambda R: coef * np.log(R) ** (2.0 - 2.0 / K)


def equal_points(K, n=12):
    """Points with equal layers, rho from 0.3 to 4."""
    return np.repeat(np.linspace(0.3, 4.0, n)[:, None], K, axis=1)


def eq103_error(K, printed=False):
    r"""Largest relative error of eq 103 at equal-layer points: :math:`\dot R` measured as the Lie
    derivative of R along eq 99 against :math:`K\tilde f^{2/K}(\log R)^{2-2/K}` (``printed``: K^2)."""

    def measure(method):
        args = method.flow.args
        lie = rf.lie_derivative(method.flow, exp_margin)
        pts = jnp.asarray(equal_points(K))
        got = np.asarray(jax.jit(jax.vmap(lambda y: lie(y, args)))(pts))
        R = np.exp(args["margin"] * np.prod(np.asarray(pts), axis=1))
        return _relative(got, law_R(K, args["margin"], printed)(R))

    return measure


@functools.lru_cache(maxsize=16)
def _late_run(method):
    """One run from the method's first start to ``t1``, saved log-spaced on [T_LATE, t1]
    (cached per method: the growth claims share it)."""
    ts = np.r_[0.0, np.geomspace(T_LATE, method.t1, SAVES)]
    traj = rf.integrate(method.flow, method.y0[0], method.t1, ts=ts, rtol=RTOL, atol=ATOL)
    if not traj.ok or not np.all(np.isfinite(traj.y)):
        raise RuntimeError(f"the reduced flow did not finish: {traj.status}")
    return traj.t[1:], traj.y[1:]


@functools.lru_cache(maxsize=16)
def _log_slopes(method):
    r"""Along the late run: :math:`s = \tilde f\,t\,\frac{d}{dt}\prod_i\rho_i = t\dot R/R` and the
    layers' :math:`\tilde f\,t\,\dot\rho_k` (both -> 1 for one layer, whose :math:`\rho\sim\log t/\tilde f`)."""
    t, y = _late_run(method)
    f = method.flow.args["margin"]
    rates = np.asarray(jax.jit(jax.vmap(lambda r: reduced_field(0.0, r, method.flow.args)))(jnp.asarray(y)))
    dP = np.sum(rates * np.prod(y, axis=1, keepdims=True) / y, axis=1)
    return t, y, f * t * dP, f * t[:, None] * rates


def li_slope(method):
    r"""Slope of :math:`\mathrm{li}(R(t))` against t on the late window (least squares)."""
    t, y = _late_run(method)
    v = scipy.special.expi(method.flow.args["margin"] * np.prod(y, axis=1))  # li(R) = Ei(log R)
    return np.polyfit(t, v, 1)[0]


def li_coefficient_error(printed=False):
    r""":math:`|\text{slope}/c - 1|` with :math:`c = K\tilde f` (correct) or :math:`K^2\tilde f` (printed)."""

    def measure(method):
        K, f = method.y0.shape[1], method.flow.args["margin"]
        return abs(li_slope(method) / ((K**2 if printed else K) * f) - 1.0)

    return measure


def product_log_slope(method):
    r"""Smallest log-slope of the product on the late window, in units of the one-layer law:
    :math:`\min_t s(t)`, :math:`s = d(\tilde f\prod\rho_i)/d\log t = t\dot R/R`
    (-> 1 for K = 1; > 1: faster than log t)."""
    return float(np.min(_log_slopes(method)[2]))


def final_log_slope(method):
    r""":math:`s(t_1) = t_1\dot R/R`, the product's log-slope at the end of the run."""
    return float(_log_slopes(method)[2][-1])


def layer_log_slope(method):
    r"""Largest log-slope of one layer on the late window, in units of the one-layer law:
    :math:`\max_{t,k} \tilde f\,t\,\dot\rho_k`."""
    return float(np.max(_log_slopes(method)[3]))


def excess_series(u, p):
    r"""Asymptotic series of :math:`s - 1` for :math:`\dot R = c(\log R)^p`, :math:`u = \log R`:
    :math:`t = \int^R dr/(c\log^p r) = \frac{R}{c\,u^p}\big(1 + \frac pu + \frac{p(p+1)}{u^2} + \dots\big)`,
    so :math:`s = tc\,u^p/R = 1 + p/u + p(p+1)/u^2 + p(p+1)(p+2)/u^3 + O(u^{-4})`."""
    return p / u + p * (p + 1) / u**2 + p * (p + 1) * (p + 2) / u**3


def excess_error(method):
    r"""Relative error of :math:`s(t_1) - 1` against `excess_series` with :math:`p = 2 - 2/K`:
    the product exceeds :math:`\log t/\tilde f` by :math:`(2-2/K)\log\log t/\tilde f + \dots`"""
    K = method.y0.shape[1]
    t, y, s, _ = _log_slopes(method)
    u = method.flow.args["margin"] * np.prod(y[-1])
    return abs((s[-1] - 1.0) / excess_series(u, 2.0 - 2.0 / K) - 1.0)


def eq100_error(method):
    r"""Eq 100 for K = 2 at sample points: :math:`\dot\gamma = \tilde f^2r^2` and
    :math:`r\dot r = 2\log\gamma/\gamma` with :math:`\gamma = e^{\rho_1\rho_2\tilde f}`,
    :math:`r^2 = \rho_1^2+\rho_2^2`; the largest relative error of the two."""
    flow, args = method.flow, method.flow.args
    f = args["margin"]
    pts = jnp.asarray(method.points)
    gamma_lie = rf.lie_derivative(flow, exp_margin)
    r2_lie = rf.lie_derivative(flow, lambda z, a: 0.5 * jnp.sum(z**2))
    gamma_dot, r_rdot, gamma = jax.jit(jax.vmap(lambda y: (gamma_lie(y, args), r2_lie(y, args), exp_margin(y, args))))(pts)
    r2 = jnp.sum(pts**2, axis=1)
    return max(_relative(gamma_dot, f**2 * r2), _relative(r_rdot, 2 * jnp.log(gamma) / gamma))


def _eq103_claims(K):
    claims = [rf.Holds(measure=eq103_error(K), hi=1e-12, name="eq 103 corrected",
                       what="max relative error of R' = K f~^(2/K) (log R)^(2-2/K) at equal-layer points",
                       source="sec 22, eq 101-103 derived from eq 99 with rho_1 = ... = rho_K")]
    if K > 1:
        claims.append(rf.Holds(measure=eq103_error(K, printed=True), lo=0.25, name="eq 103 as printed",
                               what="max relative error of the printed K^2 f~^(2/K) (log R)^(2-2/K) (= 1 - 1/K)",
                               source="sec 22, eq 101-103 as printed",
                               erratum="printed rho' = f~ K rho^(K-1) e^(-rho_k f~), "
                                       "R' = f~^(2/K) K^2 (log R)^(2-2/K); "
                                       "eq 99 with equal layers gives rho' = f~ rho^(K-1) e^(-f~ rho^K), "
                                       "R' = K f~^(2/K) (log R)^(2-2/K)"))
    return claims


def _growth_claims(K):
    return [
        rf.Holds(measure=product_log_slope, lo=1.0, name="product faster than log t",
                 what=f"min over t in [{T_LATE:g}, t1] of d(f~ prod rho)/d log t (1-layer law: -> 1)",
                 source="sec 21-22, Fig. 11 left: for K > 1 the product of weights diverges faster than log t"),
        rf.Holds(measure=excess_error, hi=EXCESS_TOL, name="log-slope excess",
                 what="relative error of s(t1) - 1 against p/u + p(p+1)/u^2 + p(p+1)(p+2)/u^3, u = log R, p = 2-2/K",
                 source="sec 22, eq 103: R ~ t (log t)^(2-2/K), the product exceeds log t by (2-2/K) log log t"),
        rf.Holds(measure=layer_log_slope, hi=1.0, name="each layer slower than one layer",
                 what=f"max over t in [{T_LATE:g}, t1] of f~ t rho_k' (1-layer law: -> 1; here ~ 1/(K rho^(K-1)))",
                 source="sec 22, Fig. 11 right: each layer diverges slower than in the 1-layer case"),
    ]


@rf.entry("rho_dynamics.one_layer", source="Theory III sec 21-22, eq 77, eq 103 with K = 1")
def one_layer(margin: float = MARGIN, rho0: float = 1.0) -> rf.Method:
    r"""One layer, one example: :math:`\dot\rho = \tilde f e^{-\tilde f\rho}`, so
    :math:`R = e^{\tilde f\rho} = \tilde f^2 t + R_0` and :math:`\rho = \log(\tilde f^2t + R_0)/\tilde f\sim\log t`."""
    rho0 = _check_positive(rho0, "rho0")
    return rf.Method(
        flow=reduced_flow(1, margin), y0=[rho0], t1=T1, samples=equal_points(1),
        claims=[
            *_eq103_claims(1),
            rf.GrowsLike(exp_margin, law=linear, tol=LAW_TOL, name="R",
                         source="sec 22, eq 103 with K = 1: R' = f~^2, R ~ t"),
            rf.GrowsLike(rho1, law=np.log, t_from=T1 / 100, tol=1e-3, name="rho",
                         source="sec 21 (eq 77) and 22: ||w|| ~ log t for a 1-layer network"),
            rf.Holds(measure=final_log_slope, lo=1.0 - 1e-6, hi=1.0, name="log-slope of rho",
                     what="f~ t rho' = t R'/R at t1 (exactly f~^2 t / (f~^2 t + R0) -> 1)",
                     source="sec 22: rho ~ log t, the reference rate of Fig. 11"),
        ],
    )


@rf.entry("rho_dynamics.two_layer", source="Theory III sec 22, eq 99-103, Fig. 11")
def two_layer(margin: float = MARGIN, rho0: float = 1.0) -> rf.Method:
    r"""Two equal layers, one example: :math:`\dot\rho = \tilde f\rho e^{-\tilde f\rho^2}`;
    :math:`R = e^{\tilde f\rho^2}` obeys :math:`\dot R = 2\tilde f\log R`, so
    :math:`\mathrm{li}(R) = 2\tilde f t + \mathrm{li}(R_0)`, :math:`R = \mathrm{li}^{-1}(2\tilde f t + C)`."""
    rho0 = _check_positive(rho0, "rho0")
    rng = np.random.default_rng(4)
    return rf.Method(
        flow=reduced_flow(2, margin), y0=[rho0, rho0], t1=T1,
        samples=np.vstack([equal_points(2), rng.uniform(0.3, 3.0, size=(12, 2))]),
        claims=[
            rf.Holds(measure=eq100_error, hi=1e-12, name="eq 100",
                     what="max relative error of gamma' = f~^2 r^2 and r r' = 2 log(gamma)/gamma at samples",
                     source="sec 22, eq 100 (consistent with eq 99 corrected)"),
            *_eq103_claims(2),
            rf.GrowsLike(exp_margin, law=li_law(2, margin, rho0), tol=LAW_TOL, name="R",
                         source="sec 22: for K = 2, R(t) = li^-1(K f~ t + C), C = li(R(0))"),
            rf.Holds(measure=li_coefficient_error(), hi=1e-5, name="li coefficient K f~",
                     what="|slope of li(R(t)) / (K f~) - 1| on the late window",
                     source="sec 22, K = 2: R(t) = li^-1(K f~ t + C) with eq 103 corrected"),
            rf.Holds(measure=li_coefficient_error(printed=True), lo=0.25, name="li coefficient as printed",
                     what="|slope of li(R(t)) / (K^2 f~) - 1| (refuted if > lo; 1 - 1/K = 0.5 measured)",
                     source="sec 22 as printed: R(t) = li^-1(f~ K^2 t + C)",
                     erratum="printed li^-1(f~ K^2 t + C); correct li^-1(K f~ t + C) = li^-1(2 f~ t + C)"),
            *_growth_claims(2),
        ],
    )


@rf.entry("rho_dynamics.deep", source="Theory III sec 22, eq 99-103, Fig. 11")
def deep(K: int = 3, margin: float = MARGIN, rho0: float = 1.0) -> rf.Method:
    r"""K equal layers, one example: :math:`\dot\rho = \tilde f\rho^{K-1}e^{-\tilde f\rho^K}` and
    :math:`\dot R = K\tilde f^{2/K}(\log R)^{2-2/K}` (eq 103 corrected): the product
    :math:`\rho^K` grows faster than :math:`\log t/\tilde f`, each layer like :math:`(\log t)^{1/K}`."""
    K = _check_layers(K, low=2)
    rho0 = _check_positive(rho0, "rho0")
    return rf.Method(
        flow=reduced_flow(K, margin), y0=np.full(K, rho0), t1=T1, samples=equal_points(K),
        claims=[*_eq103_claims(K), *_growth_claims(K)],
    )


@rf.entry("rho_dynamics.unequal_layers", source="Theory III sec 7, eq 18; sec 22, eq 99")
def unequal_layers(K: int = 2, margin: float = MARGIN) -> rf.Method:
    r"""Eq 99 from unequal layers: :math:`\rho_k^2 - \rho_{k+1}^2` stays constant (eq 18), so as the
    norms diverge their ratios tend to 1: :math:`\rho_1^2 = \rho_2^2 + \eta` with
    :math:`\rho_1/\rho_2 - 1 \approx \eta/(2\rho_2^2) \to 0`."""
    K = _check_layers(K, low=2)
    starts = np.array([np.linspace(1.5, 0.5, K), np.linspace(0.4, 1.2, K), np.linspace(2.0, 1.0, K)])
    rng = np.random.default_rng(5)
    return rf.Method(
        flow=reduced_flow(K, margin), y0=starts, t1=1e4, samples=rng.uniform(0.3, 3.0, size=(20, K)),
        claims=[
            *[rf.Conserved(rho_gap(k), source="sec 7, eq 18 on the reduced ODE (eq 99)") for k in range(1, K)],
            rf.Monotone(ratio_gap,
                        source="sec 7: with rho_1^2 - rho_2^2 fixed and the norms growing, the layers equalize"),
        ],
    )
