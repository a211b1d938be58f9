r"""Deep linear networks with scalar layers.

Ginsburg, "On regularization of gradient descent, layer imbalance and flat minima".
On the normalized data set (eq 2) training :math:`y = w_1\cdots w_d\,x` is

.. math:: L(w) = (W - 1)^2,\qquad W = w_1 \cdots w_d \qquad\text{(eq 4)}

with gradient :math:`\partial_i L = 2(W-1)W/w_i` (eq 5).  The layer imbalance
:math:`D_{ij} = w_i^2 - w_j^2` (eq 6) measures sharpness: minima (the set :math:`W = 1`) with
small imbalance are flat.  This module holds the model, gradient flow and GD (sec 3) and
weight decay (sec 4.1); noise augmentation and SGD (sec 4.2, 5) are in `scalar_net_noise`.

Conventions and corrections recorded here:

* Flows run in learning-rate time (the paper's :math:`\lambda` in eq 7, 9 is the time unit);
  a map with learning rate ``lr`` has ``dt = lr``.
* Eq 8 prints :math:`w_i - 2\lambda\,\partial L/\partial w_i = w_i - 2\lambda(W-1)W/w_i`; by
  eq 5 the middle is twice the right side.  Footnote 2 and the proofs expand the right side:
  GD is :math:`w - \text{lr}\,\nabla L`.
* Footnote 2 prints :math:`L(t+1) = L(1 - 2\lambda(w_1^2+w_2^2) + 4\lambda^2(w_1w_2-1))^2`; the
  last term is :math:`4\lambda^2(W-1)W`.
* Sec 4.1 writes the penalty as :math:`\mu|w|^2`; regflow's ``weight_decay`` adds
  :math:`\text{wd}\cdot w` to the gradient (penalty :math:`\text{wd}/2\,|w|^2`), so
  ``weight_decay = 2 mu``.
* Sec 2.2 prints the nonzero Hessian eigenvalue at a minimum as :math:`\sum 1/w_i^2`; it is
  :math:`2\sum 1/w_i^2` (the printed Hessian is :math:`2\,vv^\top` there, :math:`v_i = W/w_i`).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

import regflow as rf

#: Default learning rate of the discrete methods.
LR = 0.01
#: Tolerance of one-step identities of the map (float64 rounding).
STEP_TOL = 1e-10
#: Largest sign-adjusted cosine between grad L and the field counted as "decreasing".
SIGN_TOL = 1e-12


# ----------------------------------------------------------------------------- the model


def loss(w, args=None):
    r"""Eq 4: :math:`L(w) = (w_1\cdots w_d - 1)^2`."""
    return (jnp.prod(w) - 1.0) ** 2


def half_loss(w, args=None):
    r""":math:`L/2`: the loss whose Hessian at a minimum has the printed eigenvalue :math:`\sum 1/w_i^2`."""
    return 0.5 * loss(w)


def product(w, args=None):
    r""":math:`W = w_1 \cdots w_d`; the minima are the set :math:`W = 1`."""
    return jnp.prod(w)


def off_minima(w, args=None):
    """``W - 1``: zero exactly on the minima set."""
    return jnp.prod(w) - 1.0


def imbalance(w, args=None):
    r"""Eq 6 for layers 1 and 2: :math:`D_{12} = w_1^2 - w_2^2`."""
    return w[0] ** 2 - w[1] ** 2


def imbalance_sq(w, args=None):
    r""":math:`D_{12}^2`: non-increasing whenever :math:`|D_{12}|` is."""
    return (w[0] ** 2 - w[1] ** 2) ** 2


def inverse_square_sum(w):
    r""":math:`\sum_i 1/w_i^2`."""
    return jnp.sum(1.0 / w**2)


def hessian_spectrum(w):
    """Eigenvalues of the Hessian of L at a minimum: {0, ..., 0, 2 sum 1/w_i^2}."""
    return np.r_[np.zeros(len(w) - 1), 2.0 * np.sum(1.0 / np.asarray(w) ** 2)]


def printed_hessian_spectrum(w):
    """What sec 2.2 prints: {0, ..., 0, sum 1/w_i^2}."""
    return np.r_[np.zeros(len(w) - 1), np.sum(1.0 / np.asarray(w) ** 2)]


def names(d):
    return tuple(f"w{i + 1}" for i in range(d))


def minima_points(d, n=6, seed=0):
    """Points of the minima set W = 1, from balanced to strongly imbalanced."""
    rng = np.random.default_rng(seed)
    free = np.exp(rng.uniform(-1.2, 1.2, size=(n, d - 1)))
    return np.column_stack([free, 1.0 / free.prod(axis=1)])


def near_minima(d, width, n=40, seed=1):
    """Points with ``|W - 1| < width`` and varied imbalance (the theorems' hypothesis)."""
    rng = np.random.default_rng(seed)
    free = np.exp(rng.uniform(-1.0, 1.0, size=(n, d - 1)))
    target = 1.0 + width * rng.uniform(-0.98, 0.98, size=n)
    return np.column_stack([free, target / free.prod(axis=1)])


def starts(d):
    """Default starts: off the minima, imbalanced, both sides of W = 1."""
    base = np.array([[0.3, 1.6], [1.8, 0.2], [0.5, 0.7], [1.5, 1.2]])
    return np.column_stack([base, np.ones((len(base), d - 2))]) if d > 2 else base


def view(d):
    return {"x": "w1", "y": "w2", "xlim": (-2.5, 2.5), "ylim": (-2.5, 2.5), "invariant": imbalance,
            "minima": product}


# ----------------------------------------------------------------------------- bands (sec 4)


def wd_band(mu, d):
    r"""Sec 4.1 WD band :math:`1 - \mu d/(W\sum 1/w_i^2) \le W \le 1`, as a margin (>= 0 inside)."""

    def margin(w, args=None):
        W = jnp.prod(w)
        lower = 1.0 - mu * d / (W * inverse_square_sum(w))
        return jnp.minimum(W - lower, 1.0 - W)

    margin.__name__ = "wd_band"
    return margin


def uniform_moments(delta, d, form):
    r"""Moments :math:`m_k = E(1+\xi)^k`, k = 1..4, of the multiplicative noise of sec 4.2:
    ``form="input"`` :math:`\xi = \eta` (eq 10; also dropout of one layer output),
    ``"dropconnect"`` :math:`1+\xi = \prod_i (1+\eta_i)` (independent noise on each weight;
    for scalar layers identical to dropout on every layer), with :math:`\eta \sim U[-\delta, \delta]`."""
    k = np.arange(1, 5)
    one = ((1 + delta) ** (k + 1) - (1 - delta) ** (k + 1)) / ((k + 1) * 2 * delta)  # E(1+eta)^k
    return one ** (d if form == "dropconnect" else 1)


FORMS = ("input", "dropconnect")


def check_form(form):
    if form not in FORMS:
        raise ValueError(f"form must be one of {FORMS}, got {form!r}")


def noise_band(delta, d, form):
    r"""Sec 4.2 noise band :math:`1/(1+\xi_{max}) < W < 1/(1+\xi_{min})`; for ``form="input"``
    this is :math:`1 - \delta/(1+\delta) < W < 1 + \delta/(1-\delta)`."""
    n = d if form == "dropconnect" else 1
    lo, hi = 1.0 / (1.0 + delta) ** n, 1.0 / (1.0 - delta) ** n

    def margin(w, args=None):
        W = jnp.prod(w)
        return jnp.minimum(W - lo, hi - W)

    margin.__name__ = "noise_band"
    return margin


# ----------------------------------------------------------------------------- measures shared by entries


def decreases_outside(band, q=loss):
    r"""A `rf.Holds` measure: the largest sign-adjusted cosine :math:`\nabla q\cdot f /
    (|\nabla q|\,|f|)` over the method's sample points outside ``band`` (margin < 0), along
    the method's flow; <= 0 means ``q`` decreases there."""

    def measure(method):
        args = method.flow.args
        lq = rf.lie_derivative(method.flow, q)
        field = method.flow.drift

        def cosine(w):
            grad = jax.grad(lambda x: q(x, args))(w)
            return lq(w, args) / (jnp.linalg.norm(grad) * jnp.linalg.norm(field(0.0, w, args)) + 1e-300)

        points = jnp.asarray(method.points)
        outside = np.asarray(jax.vmap(lambda w: band(w, args))(points)) < 0
        if not outside.any():
            raise ValueError("no sample point lies outside the band: add some to the method's samples")
        values = np.asarray(jax.jit(jax.vmap(cosine))(points))[outside]
        index = np.arange(len(values))
        return float(values.max()), rf.Trace(index, values, "sample point outside the band",
                                             "cos(grad L, field)", "points", 0.0)

    measure.__name__ = "decreases_outside"
    return measure


def after_one_step(q, formula):
    r"""A `rf.Holds` measure: the worst error of ``formula(w)`` as ``q`` after one step of the
    method's (deterministic) map from each sample point, relative to :math:`\max(1, |q|)`."""

    def measure(method):
        step, args = method.map.step, method.map.args
        points = jnp.asarray(method.points)
        after = np.asarray(jax.jit(jax.vmap(lambda w: q(step(0, w, args), args)))(points))
        want = np.asarray(jax.vmap(formula)(points))
        errors = np.abs(after - want) / np.maximum(1.0, np.abs(after))
        index = np.arange(len(errors))
        return float(errors.max()), rf.Trace(index, after, "sample point", f"{q.__name__} after one step",
                                             "points", (index, want, "formula"))

    measure.__name__ = f"{q.__name__}_after_one_step"
    return measure


# ----------------------------------------------------------------------------- gradient flow and GD


def eq8_step(lr):
    r"""Eq 8's right side, :math:`w_i - 2\,\text{lr}\,(W-1)W/w_i`."""
    return lambda w, args=None: w - 2.0 * lr * (jnp.prod(w) - 1.0) * jnp.prod(w) / w


def eq8_printed(lr):
    r"""Eq 8's middle as printed, :math:`w - 2\,\text{lr}\,\partial L/\partial w`."""
    return lambda w, args=None: w - 2.0 * lr * jax.grad(loss)(w)


def printed_eq8(lr):
    r"""GD with eq 8's middle as printed, :math:`w - 2\,\text{lr}\,\nabla L`, as a map of step ``lr``."""
    return rf.gradient_descent(loss, lr=2.0 * lr).replace(dt=lr)


def footnote2(lr):
    r"""Footnote 2, corrected: :math:`L(t+1) = L\,(1 - 2\lambda(w_1^2+w_2^2) + 4\lambda^2(W-1)W)^2`."""

    def formula(w):
        W = w[0] * w[1]
        return loss(w) * (1.0 - 2.0 * lr * (w[0] ** 2 + w[1] ** 2) + 4.0 * lr**2 * (W - 1.0) * W) ** 2

    return formula


def footnote2_printed(lr):
    r"""Footnote 2 as printed: :math:`L\,(1 - 2\lambda(w_1^2+w_2^2) + 4\lambda^2(W-1))^2`."""
    return lambda w, args=None: loss(w) * (1.0 - 2.0 * lr * (w[0] ** 2 + w[1] ** 2)
                                           + 4.0 * lr**2 * (w[0] * w[1] - 1.0)) ** 2


def increasing_point(lr, W=1.05):
    r"""A point near the minima (:math:`w_1w_2 = W`) with :math:`w_1^2 = 2/\text{lr}`, where by
    footnote 2 one GD step multiplies the loss by :math:`k^2`, :math:`k \approx -3`."""
    s = np.sqrt(2.0 / lr)
    return [s, W / s]


#: Weight decay that turns the origin's saddle (Hessian eigenvalues +-2) into a sink.
ORIGIN_SINK_WD = 3.0


def loss_rate(w, args=None):
    r"""Sec 3.1: :math:`dL/dt = -4W^2(\sum 1/w_i^2)\,L` (learning-rate time, :math:`\lambda = 1`)."""
    return -4.0 * jnp.prod(w) ** 2 * inverse_square_sum(w) * loss(w)


@rf.entry("scalar_net.gradient_flow", source="Ginsburg sec 3.1, eq 7-8")
def gradient_flow(d: int = 2, lr: float = LR) -> rf.Method:
    r"""Continuous GD (eq 7) :math:`\dot w_i = -2(W-1)W/w_i` and GD (eq 8, as the proofs use it)
    :math:`w_i \leftarrow w_i - 2\,\text{lr}\,(W-1)W/w_i`."""
    gd_at = lambda h: rf.gradient_descent(loss, lr=h, names=names(d))  # noqa: E731
    two_layer = [
        rf.EquilibriumSet(guesses=np.array([[0.05, -0.04]]), on=product, kind="saddle", zero_modes=0,
                          name="origin", source="sec 2 (Baldi-Hornik): other critical points are saddles"),
        rf.StepRatio(loss, 1.0, np.inf, at=[increasing_point(lr)], name="loss, fixed lr",
                     source="sec 3.1: for any fixed lr there is a w (W ~ 1, w1^2 + w2^2 large) where a GD step "
                            "increases the loss"),
        rf.Holds(measure=after_one_step(loss, footnote2(lr)), hi=STEP_TOL, name="footnote 2",
                 what="max over sample points of |L after one GD step - L (1 - 2 lr (w1^2 + w2^2) + "
                      "4 lr^2 (W - 1) W)^2| / max(1, L)",
                 source="sec 3.1, footnote 2: the loss after one GD step, 2 layers"),
        rf.Refuted(printed=footnote2_printed(lr), correct=lambda w, a: footnote2(lr)(w), name="footnote 2 as printed",
                   source="sec 3.1, footnote 2", grade="erratum",
                   erratum="printed last term 4 lam^2 (w1 w2 - 1); expanding (w1 - 2 lam (W-1) w2)(w2 - 2 lam (W-1) "
                           "w1) - 1 gives 4 lam^2 (W - 1) W (the row above measures it on GD)"),
    ]
    adaptive = rf.Map(lambda k, w, a: w - adaptive_lr(w) * jax.grad(loss)(w), dt=lr, names=names(d))
    return rf.Method(
        flow=rf.gradient_flow(loss, names=names(d)), map=gd_at(lr), map_at=gd_at,
        y0=starts(d), t1=3.0, steps=300, view=view(d),
        samples=np.vstack([starts(d), near_minima(d, 0.5, n=20), near_minima(d, 0.02, n=8, seed=4)]),
        perturbations=[
            rf.Perturbation("eq 8 as printed, w - 2 lr dL/dw", {"map": printed_eq8(lr), "map_at": printed_eq8}),
            rf.Perturbation("flow of L/2 (its Hessian has the printed eigenvalue)",
                            {"flow": rf.gradient_flow(half_loss, names=names(d))}),
            rf.Perturbation("GD with Thm 3.1's adaptive rate", {"map": adaptive}),
            rf.Perturbation(f"weight decay {ORIGIN_SINK_WD:g} (the origin becomes a sink)",
                            {"flow": rf.gradient_flow(loss, weight_decay=ORIGIN_SINK_WD, names=names(d))}),
        ],
        claims=[
            rf.Conserved(imbalance, source="sec 3.1: trajectories are hyperbolas w_i^2 - w_j^2 = const"),
            rf.Monotone(loss, source="sec 3.1: dL/dt <= 0"),
            rf.Formula(loss_rate, rate_of=loss, source="sec 3.1: dL/dt = -4 lam W^2 (sum 1/w_i^2) L"),
            rf.Spectrum(at=minima_points(d), expect=hessian_spectrum, printed=printed_hessian_spectrum,
                        source="sec 2.2: Hessian eigenvalues at minima", grade="erratum",
                        erratum="printed {0,...,0, sum 1/w_i^2}; at W = 1 the printed Hessian is 2 v v^T with "
                                "v_i = 1/w_i, so the nonzero eigenvalue is 2 sum 1/w_i^2"),
            rf.EquilibriumSet(guesses=minima_points(d, n=8, seed=3) * 1.05, on=off_minima, kind="degenerate sink",
                              zero_modes=d - 1, name="minima W=1",
                              source="sec 2: minima form the manifold W = 1, normally attracting"),
            rf.Formula(eq8_step(lr), step=True, printed=eq8_printed(lr), name="eq 8",
                       source="eq 8: GD w_i - 2 lam (W - 1) W / w_i", grade="erratum",
                       erratum="eq 8 prints w_i - 2 lam dL/dw_i = w_i - 2 lam (W-1) W/w_i; by eq 5 the middle is twice "
                               "the right side, which footnote 2 and the proofs use"),
            rf.Agrees(order=1.0, source="eq 8 is the Euler step of eq 7: first order in lr"),
            *(two_layer if d == 2 else []),
        ],
    )


def adaptive_lr(w):
    r"""Thm 3.1-3.2: :math:`\lambda(w) = 1/(4\sum 1/w_i^2)`."""
    return 1.0 / (4.0 * inverse_square_sum(w))


#: Thm 3.1's bound on the loss factor k.
THM31_RATE = 59 / 64
#: A fixed learning rate: the adaptive rate at the balanced minimum w = (1, 1).
FIXED_LR = 1.0 / 8.0


@rf.entry("scalar_net.adaptive_gd", source="Ginsburg sec 3.2, Thm 3.1-3.2")
def adaptive_gd(d: int = 2) -> rf.Method:
    r"""GD with adaptive learning rate :math:`\lambda(w) = 1/(4\sum 1/w_i^2)`:
    :math:`w_i \leftarrow w_i - 2\lambda(w)(W-1)W/w_i`; its flow is
    :math:`\dot w = -\lambda(w)\nabla L` (one step = one unit of time)."""
    grad = jax.grad(loss)
    flow = rf.ODE(lambda t, w, a: -adaptive_lr(w) * grad(w), names=names(d))
    gd = rf.Map(lambda k, w, a: w - adaptive_lr(w) * grad(w), dt=1.0, names=names(d))
    hyp = near_minima(d, 0.5, n=200)
    y0, steps = near_minima(d, 0.5, n=6, seed=5), 60
    start_loss = float(np.max((np.prod(y0, axis=1) - 1.0) ** 2))
    fixed = rf.Map(lambda k, w, a: w - FIXED_LR * grad(w), dt=1.0, names=names(d))
    return rf.Method(
        flow=flow, map=gd, y0=y0, t1=20.0, steps=steps, view=view(d),
        perturbations=[rf.Perturbation("fixed lr 1/8 (the adaptive rate at w = 1)", {"map": fixed})],
        claims=[
            rf.StepRatio(loss, 0.0, THM31_RATE**2, at=hyp, name="loss",
                         source="Thm 3.1: L(t+1) < k^2 L(t), -4/5 < k < 59/64 when |W-1| < 1/2"),
            rf.StepRatio(imbalance, 247 / 256, 1.0, at=hyp, name="imbalance",
                         source="Thm 3.2: D(t+1) = k D(t), 247/256 < k <= 1 when |W-1| < 1/2"),
            rf.Monotone(loss, on="map", source="Thm 3.1: the loss decreases monotonically"),
            rf.Monotone(imbalance_sq, on="map", source="Thm 3.2: the layer imbalance decreases monotonically"),
            rf.AtHorizon(loss, predict=0.0, on="map", absolute=True, tol=THM31_RATE ** (2 * steps) * start_loss,
                         name="linear rate",
                         source=f"Thm 3.1: the loss converges to 0 with a linear rate: L_K <= (59/64)^(2K) max L_0 "
                                f"after K = {steps} steps"),
        ],
    )


# ----------------------------------------------------------------------------- weight decay


def wd_loss_rate(mu, d):
    r"""Sec 4.1: :math:`dL/dt = -4(\sum 1/w_i^2)W^2(W-1)\big(W - (1 - \mu d/(W\sum 1/w_i^2))\big)`."""

    def rate(w, args=None):
        W, s = jnp.prod(w), inverse_square_sum(w)
        return -4.0 * s * W**2 * (W - 1.0) * (W - (1.0 - mu * d / (W * s)))

    rate.__name__ = "wd_loss_rate"
    return rate


def _wd_systems(d, penalty, lr):
    """Flow, GD and GD at any step for ``weight_decay = penalty``."""
    at = lambda h: rf.gradient_descent(loss, lr=h, weight_decay=penalty, names=names(d))  # noqa: E731
    return {"flow": rf.gradient_flow(loss, weight_decay=penalty, names=names(d)), "map": at(lr), "map_at": at}


#: Name of the perturbation that reads the penalty mu |w|^2 as weight_decay = mu.
WD_MU = "weight_decay = mu, not 2 mu (penalty mu/2 |w|^2)"


@rf.entry("scalar_net.weight_decay", source="Ginsburg sec 4.1, eq 9")
def weight_decay(d: int = 2, mu: float = 0.05, lr: float = LR) -> rf.Method:
    r"""GD with weight decay on :math:`\bar L = L + \mu|w|^2` (eq 9):
    :math:`\dot w_i = -2((W-1)W/w_i + \mu w_i)`, i.e. ``weight_decay = 2 mu``."""
    band, plain = wd_band(mu, d), _wd_systems(d, 0.0, lr)
    return rf.Method(
        **_wd_systems(d, 2.0 * mu, lr),
        y0=starts(d)[[0, 1, 3]], t1=20.0, steps=2000, view=view(d),
        samples=np.vstack([starts(d), near_minima(d, 0.5, n=20), near_minima(d, 0.1, n=24, seed=6)]),
        perturbations=[rf.Perturbation(WD_MU, _wd_systems(d, mu, lr)),
                       rf.Perturbation("weight_decay = 4 mu (penalty 2 mu |w|^2: a wider band)",
                                       _wd_systems(d, 4.0 * mu, lr)),
                       rf.Perturbation("GD without weight decay", {k: v for k, v in plain.items() if k != "flow"}),
                       rf.Perturbation("gradient flow without weight decay", {"flow": plain["flow"]})],
        claims=[
            rf.Decays(imbalance, rate=4.0 * mu, source="sec 4.1: d(w_i^2 - w_j^2)/dt = -4 mu (w_i^2 - w_j^2)"),
            rf.Formula(wd_loss_rate(mu, d), rate_of=loss,
                       source="sec 4.1: dL/dt = -4 lam (sum 1/w_i^2) W^2 (W-1)(W - (1 - mu d/(W sum 1/w_i^2)))"),
            rf.Holds(measure=decreases_outside(band), hi=SIGN_TOL, name="loss decreases outside the WD band",
                     what="max over sample points outside the band of cos(grad L, field) (<= 0: L decreases)",
                     source="sec 4.1: the loss decreases outside the weight decay band"),
            rf.StaysIn(band, on="flow", source="sec 4.1: the trajectory enters the WD band and stays"),
            rf.StaysIn(band, on="map", source="sec 4.1, Fig 2b: GD enters the WD band and stays"),
            rf.Agrees(order=1.0, source="GD with weight decay is the Euler step of eq 9"),
        ],
    )
