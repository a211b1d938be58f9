r"""Deep linear networks with scalar layers.

Ginsburg, "On regularization of gradient descent, layer imbalance and flat minima".
On the normalized data set (eq 2) training :math:`y = w_1\cdots w_d\,x` is

.. math:: L(w) = (W - 1)^2,\qquad W = w_1 \cdots w_d \qquad\text{(eq 4)}

with gradient :math:`\partial_i L = 2(W-1)W/w_i` (eq 5).  The layer imbalance
:math:`D_{ij} = w_i^2 - w_j^2` (eq 6) measures sharpness: minima (the set :math:`W = 1`) with
small imbalance are flat.

Conventions and corrections recorded here:

* Flows run in learning-rate time (the paper's :math:`\lambda` in eq 7, 9 is the time unit);
  a map with learning rate ``lr`` has ``dt = lr``.
* Eq 8 prints :math:`w_i - 2\lambda\,\partial L/\partial w_i`, but its right-hand side and every
  proof use :math:`w_i - 2\lambda(W-1)W/w_i = w_i - \lambda\,\partial_i L`.  We follow the proofs:
  GD is :math:`w - \text{lr}\,\nabla L`.
* Sec 4.1 writes the penalty as :math:`\mu|w|^2`; regflow's ``weight_decay`` adds
  :math:`\text{wd}\cdot w` to the gradient (penalty :math:`\text{wd}/2\,|w|^2`), so
  ``weight_decay = 2 mu``.
* Sec 2.2 prints the nonzero Hessian eigenvalue at a minimum as :math:`\sum 1/w_i^2`; it is
  :math:`2\sum 1/w_i^2` (the Hessian is :math:`2\,vv^\top` with :math:`v_i = W/w_i`).
* The continuous noisy GD and SGD of sec 4.2 and 5 are ambiguous SDEs.  Read in Stratonovich
  form they conserve the imbalance (the paper's statement); the stochastic modified equation
  of the discrete methods (Ito, noise :math:`\sqrt{\text{lr}}`) does not: there the imbalance
  decreases pathwise, as Thm 4.1 and 5.1 prove for the maps.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

import regflow as rf

#: Default learning rate of the discrete methods.
LR = 0.01


# ----------------------------------------------------------------------------- the model


def loss(w, args=None):
    r"""Eq 4: :math:`L(w) = (w_1\cdots w_d - 1)^2`."""
    return (jnp.prod(w) - 1.0) ** 2


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


# ----------------------------------------------------------------------------- gradient flow and GD


@rf.entry("scalar_net.gradient_flow", source="Ginsburg sec 3.1, eq 7-8")
def gradient_flow(d: int = 2, lr: float = LR) -> rf.Method:
    r"""Continuous GD (eq 7) :math:`\dot w_i = -2(W-1)W/w_i` and GD (eq 8, as the proofs use it)
    :math:`w_i \leftarrow w_i - 2\,\text{lr}\,(W-1)W/w_i`."""
    flow = rf.gradient_flow(loss, names=names(d))
    return rf.Method(
        flow=flow,
        map=rf.gradient_descent(loss, lr=lr, names=names(d)),
        y0=starts(d), t1=3.0, steps=300, samples=np.vstack([starts(d), near_minima(d, 0.5, n=20)]),
        view=view(d),
        claims=[
            rf.Conserved(imbalance, source="sec 3.1: trajectories are hyperbolas w_i^2 - w_j^2 = const"),
            rf.Monotone(loss, source="sec 3.1: dL/dt = -4 W^2 (sum 1/w_i^2) L <= 0"),
            rf.Spectrum(at=minima_points(d), expect=hessian_spectrum, loss=loss, printed=printed_hessian_spectrum,
                        source="sec 2.2: Hessian eigenvalues at minima",
                        erratum="printed {0,...,0, sum 1/w_i^2}; correct {0,...,0, 2 sum 1/w_i^2}"),
            rf.EquilibriumSet(guesses=minima_points(d, n=8, seed=3) * 1.05, on=off_minima, kind="degenerate sink",
                              zero_modes=d - 1, name="minima W=1",
                              source="sec 2: minima form the manifold W = 1, normally attracting"),
            *([rf.EquilibriumSet(guesses=np.array([[0.05, -0.04]]), on=product, kind="saddle", zero_modes=0,
                                 name="origin", source="sec 2 (Baldi-Hornik): other critical points are saddles")]
              if d == 2 else []),
            rf.Agrees(map_at=lambda h: rf.gradient_descent(loss, lr=h), order=1.0,
                      source="eq 8 is the Euler step of eq 7: first order in lr"),
            rf.Agrees(map_at=printed_eq8, order=0.0, name="eq 8 as printed",
                      source="eq 8 as printed, w - 2 lr dL/dw, does not approach eq 7 (error does not shrink)",
                      erratum="eq 8 prints w - 2 lam dL/dw; its right side and the proofs use w - lam dL/dw"),
        ],
    )


def printed_eq8(lr):
    r"""Eq 8 exactly as printed, :math:`w - 2\,	ext{lr}\,\partial L/\partial w` (twice the proofs' step)."""
    return rf.gradient_descent(loss, lr=2.0 * lr).replace(dt=lr)


def adaptive_lr(w):
    r"""Thm 3.1-3.2: :math:`\lambda(w) = 1/(4\sum 1/w_i^2)`."""
    return 1.0 / (4.0 * inverse_square_sum(w))


@rf.entry("scalar_net.adaptive_gd", source="Ginsburg sec 3.2, Thm 3.1-3.2")
def adaptive_gd(d: int = 2) -> rf.Method:
    r"""GD with adaptive learning rate :math:`\lambda(w) = 1/(4\sum 1/w_i^2)`:
    :math:`w_i \leftarrow w_i - 2\lambda(w)(W-1)W/w_i`; its flow is
    :math:`\dot w = -\lambda(w)\nabla L` (one step = one unit of time)."""
    grad = jax.grad(loss)
    flow = rf.ODE(lambda t, w, a: -adaptive_lr(w) * grad(w), names=names(d))
    gd = rf.Map(lambda k, w, a: w - adaptive_lr(w) * grad(w), dt=1.0, names=names(d))
    hyp = near_minima(d, 0.5, n=200)
    return rf.Method(
        flow=flow, map=gd, y0=near_minima(d, 0.5, n=6, seed=5), t1=20.0, steps=60, view=view(d),
        claims=[
            rf.StepRatio(loss, 0.0, (59 / 64) ** 2, at=hyp, name="loss",
                         source="Thm 3.1: L(t+1) < k^2 L(t), -4/5 < k < 59/64 when |W-1| < 1/2"),
            rf.StepRatio(imbalance, 247 / 256, 1.0, at=hyp, name="imbalance",
                         source="Thm 3.2: D(t+1) = k D(t), 247/256 < k <= 1 when |W-1| < 1/2"),
            rf.Monotone(loss, on="map", source="Thm 3.1: the loss decreases monotonically"),
            rf.Monotone(imbalance_sq, on="map", source="Thm 3.2: the layer imbalance decreases monotonically"),
        ],
    )


# ----------------------------------------------------------------------------- weight decay


def wd_band(mu, d):
    r"""Sec 4.1 WD band :math:`1 - \mu d/(W\sum 1/w_i^2) \le W \le 1`, as a margin (>= 0 inside)."""

    def margin(w, args=None):
        W = jnp.prod(w)
        lower = 1.0 - mu * d / (W * inverse_square_sum(w))
        return jnp.minimum(W - lower, 1.0 - W)

    margin.__name__ = "wd_band"
    return margin


@rf.entry("scalar_net.weight_decay", source="Ginsburg sec 4.1, eq 9")
def weight_decay(d: int = 2, mu: float = 0.05, lr: float = LR) -> rf.Method:
    r"""GD with weight decay on :math:`\bar L = L + \mu|w|^2` (eq 9):
    :math:`\dot w_i = -2((W-1)W/w_i + \mu w_i)`, i.e. ``weight_decay = 2 mu``."""
    wd = 2.0 * mu
    return rf.Method(
        flow=rf.gradient_flow(loss, weight_decay=wd, names=names(d)),
        map=rf.gradient_descent(loss, lr=lr, weight_decay=wd, names=names(d)),
        y0=starts(d)[:2], t1=20.0, steps=2000, view=view(d),
        claims=[
            rf.Decays(imbalance, rate=4.0 * mu, source="sec 4.1: d(w_i^2 - w_j^2)/dt = -4 mu (w_i^2 - w_j^2)"),
            rf.StaysIn(wd_band(mu, d), on="flow", source="sec 4.1: the trajectory enters the WD band and stays"),
            rf.StaysIn(wd_band(mu, d), on="map", source="sec 4.1, Fig 2b: GD enters the WD band and stays"),
            rf.Agrees(map_at=lambda h: rf.gradient_descent(loss, lr=h, weight_decay=wd), order=1.0,
                      source="GD with weight decay is the Euler step of eq 9"),
        ],
    )


# ----------------------------------------------------------------------------- noise augmentation


def uniform_moments(delta, d, form):
    r"""Moments :math:`m_k = E(1+\xi)^k`, k = 1..4, of the multiplicative noise of sec 4.2:
    ``form="input"`` :math:`\xi = \eta` (eq 10; also dropout of one layer output),
    ``"dropconnect"`` :math:`1+\xi = \prod_i (1+\eta_i)` (independent noise on each weight;
    for scalar layers identical to dropout on every layer), with :math:`\eta \sim U[-\delta, \delta]`."""
    k = np.arange(1, 5)
    one = ((1 + delta) ** (k + 1) - (1 - delta) ** (k + 1)) / ((k + 1) * 2 * delta)  # E(1+eta)^k
    return one ** (d if form == "dropconnect" else 1)


FORMS = ("input", "dropconnect")


def _check_form(form):
    if form not in FORMS:
        raise ValueError(f"form must be one of {FORMS}, got {form!r}")


def noisy_step(lr, delta, d, form, adaptive=None):
    r"""Eq 11: :math:`w_i \leftarrow w_i - 2\lambda(1+\xi)(W(1+\xi)-1)W/w_i` with a fresh
    :math:`\xi` from the step's key (``adaptive``: :math:`\lambda(w)` instead of ``lr``)."""
    n_eta = d if form == "dropconnect" else 1

    def step(k, w, a, key):
        factor = jnp.prod(1.0 + jax.random.uniform(key, (n_eta,), minval=-delta, maxval=delta))
        W = jnp.prod(w)
        lam = lr if adaptive is None else adaptive(w)
        return w - 2.0 * lam * factor * (W * factor - 1.0) * W / w

    return step


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


@rf.entry("scalar_net.noise_augmentation", source="Ginsburg sec 4.2, eq 10-11")
def noise_augmentation(d: int = 2, delta: float = 0.3, lr: float = LR, form: str = "input") -> rf.Method:
    r"""GD with noise augmentation (eq 11) and its stochastic modified equation (Ito, learning-rate
    time) with moments :math:`m_k = E(1+\xi)^k`:

    .. math:: dw_i = -2(m_2W - 1)\frac{W}{w_i}dt
              + 2\sqrt{\text{lr}}\,s(W)\frac{W}{w_i}\,dB,\quad
              s^2 = W^2(m_4 - m_2^2) - 2W(m_3 - m_2) + (m_2 - 1).

    Read this way the imbalance decreases pathwise (its generator is
    :math:`-4\,\text{lr}\,s^2W^2 D_{12}/(w_1w_2)^2`), the continuous counterpart of Thm 4.1."""
    _check_form(form)
    m1, m2, m3, m4 = uniform_moments(delta, d, form)
    scale = float(np.sqrt(lr))

    def drift(t, w, a):
        W = jnp.prod(w)
        return -2.0 * (m2 * W - m1) * W / w

    def diffusion(t, w, a):
        W = jnp.prod(w)
        s2 = W**2 * (m4 - m2**2) - 2 * W * (m3 - m2 * m1) + (m2 - m1**2)
        return 2.0 * scale * jnp.sqrt(s2) * W / w

    flow = rf.SDE(drift, diffusion, noise="scalar", names=names(d))
    gd = rf.Map(noisy_step(lr, delta, d, form), dt=lr, stochastic=True, names=names(d))
    return rf.Method(
        flow=flow, map=gd, y0=starts(d)[:2], t1=20.0, dt=lr, paths=4, steps=2000, view=view(d),
        claims=[
            rf.StaysIn(noise_band(delta, d, form), on="map",
                       source="sec 4.2, Fig 2c: GD enters the noise band 1-delta/(1+delta) < W < 1+delta/(1-delta) "
                              "and oscillates inside"),
            rf.StepRatio(imbalance_sq, 0.0, 1.0, name="imbalance^2",
                         source="sec 4.2, Thm 4.1: each noisy GD step multiplies D by k in (0, 1]"),
            rf.Monotone(imbalance_sq, source="SME of eq 11 (Ito): D decreases pathwise, as for the map"),
        ],
    )


@rf.entry("scalar_net.noise_stratonovich", source="Ginsburg sec 4.2")
def noise_stratonovich(d: int = 2, delta: float = 0.3, lr: float = LR) -> rf.Method:
    r"""The paper's continuous noisy GD, :math:`\dot w_i = -2(1+\eta)(W(1+\eta)-1)W/w_i`, to first
    order in white noise :math:`\eta` and read in Stratonovich form:

    .. math:: dw_i = -2(W-1)\frac{W}{w_i}dt - 2\sqrt{\text{lr}}\,\sigma(2W-1)\frac{W}{w_i}\circ dB,
              \quad \sigma^2 = \delta^2/3.

    Its chain rule is the ordinary one, so :math:`D_{12}` is conserved pathwise: sec 4.2's
    "the layer imbalance remains constant for continuous GD"."""
    sigma = delta / np.sqrt(3.0)
    scale = float(np.sqrt(lr))

    def drift(t, w, a):
        W = jnp.prod(w)
        return -2.0 * (W - 1.0) * W / w

    def diffusion(t, w, a):
        W = jnp.prod(w)
        return -2.0 * scale * sigma * (2 * W - 1) * W / w

    flow = rf.SDE(drift, diffusion, noise="scalar", calculus="stratonovich", names=names(d))
    return rf.Method(
        flow=flow, y0=starts(d)[:2], t1=10.0, dt=lr, paths=4, view=view(d),
        claims=[rf.Conserved(imbalance, drift_tol=1e-3,
                             source="sec 4.2: the imbalance stays constant for continuous noisy GD "
                                    "(pathwise, Stratonovich; Heun's error is O(dt))")],
    )


def adaptive_noise_lr(w):
    r"""Thm 4.1: :math:`\lambda(w) = \tfrac12(2/3)^5/\sum 1/w_i^2`."""
    return 0.5 * (2.0 / 3.0) ** 5 / inverse_square_sum(w)


@rf.entry("scalar_net.noisy_gd_adaptive", source="Ginsburg sec 4.2, Thm 4.1")
def noisy_gd_adaptive(d: int = 2, delta: float = 0.3) -> rf.Method:
    r"""Noisy GD (eq 11) with Thm 4.1's adaptive rate :math:`\lambda(w) = \tfrac12(2/3)^5/\sum 1/w_i^2`."""
    grad = jax.grad(loss)
    m = rf.Map(noisy_step(None, delta, d, "input", adaptive=adaptive_noise_lr), dt=1.0, stochastic=True,
               names=names(d))
    flow = rf.ODE(lambda t, w, a: -adaptive_noise_lr(w) * grad(w), names=names(d))
    return rf.Method(
        flow=flow, map=m, y0=near_minima(d, delta, n=4, seed=7), steps=200, paths=4, view=view(d),
        claims=[
            rf.StepRatio(imbalance, 0.0, 1.0, at=near_minima(d, delta, n=100), draws=32, name="imbalance",
                         source="Thm 4.1: D(t+1) = k D(t), 0 < k <= 1 inside the noise band |W-1| < delta"),
            rf.StepRatio(imbalance_sq, 0.0, 1.0, name="imbalance^2",
                         source="Thm 4.1: the layer imbalance decreases monotonically"),
        ],
    )


# ----------------------------------------------------------------------------- SGD


def normalized_data(n=64, noise=0.5, seed=0):
    r"""A real scalar regression data set normalized as eq 2:
    :math:`\sum x = 0,\ \tfrac1N\sum x^2 = 1,\ \sum y = 0,\ \tfrac1N\sum xy = 1`."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=n)
    y = x + noise * rng.normal(size=n)
    x = x - x.mean()
    x = x / np.sqrt(np.mean(x**2))
    y = y - y.mean()
    y = y / np.mean(x * y)
    return {"x": jnp.asarray(x), "y": jnp.asarray(y)}


def sample_loss(w, sample, args=None):
    """Per-sample squared error of the scalar net, ``(W x - y)^2`` (sec 5)."""
    return (jnp.prod(w) * sample["x"] - sample["y"]) ** 2


@rf.entry("scalar_net.sgd", source="Ginsburg sec 5, eq 12")
def sgd(d: int = 2, lr: float = LR, batch_size: int = 4, n: int = 64) -> rf.Method:
    r"""Minibatch SGD (eq 12) on a normalized data set (eq 2) and its stochastic modified equation

    .. math:: dw = -\nabla L\,dt + \sqrt{\text{lr}}\,\Sigma_B^{1/2}dB,\quad
              \Sigma_B = \Big(\frac1B - \frac1N\Big)\frac{N}{N-1}\operatorname{Cov}_n\nabla\ell_n,

    the noise derived from the minibatch statistics (sec 5 assumes variance
    :math:`\approx 1/B - 1/N`; sampling without replacement gives it exactly, times
    :math:`N/(N-1)`).  Every per-sample gradient is parallel to :math:`(W/w_i)_i`, so the noise
    is tangent to the level sets of :math:`D_{12}`, and in Ito form D decreases pathwise."""
    data = normalized_data(n)
    return rf.Method(
        flow=rf.sme(sample_loss, data, lr=lr, batch_size=batch_size, names=names(d)),
        map=rf.sgd(sample_loss, data, lr=lr, batch_size=batch_size, names=names(d)),
        y0=starts(d)[:2], t1=20.0, dt=lr, paths=4, steps=2000, view=view(d),
        claims=[
            rf.StepRatio(imbalance_sq, 0.0, 1.0, name="imbalance^2",
                         source="Thm 5.1: each SGD step multiplies D by k in (0, 1]"),
            rf.Monotone(imbalance_sq, source="SME of eq 12 (Ito): D decreases pathwise, as for the map"),
        ],
    )


def adaptive_sgd_lr(delta):
    r"""Thm 5.1: :math:`\lambda(w) = 1/(2\delta(1+\delta)\sum 1/w_i^2)`."""
    return lambda w: 1.0 / (2.0 * delta * (1.0 + delta) * inverse_square_sum(w))


@rf.entry("scalar_net.sgd_adaptive", source="Ginsburg sec 5, Thm 5.1")
def sgd_adaptive(d: int = 2, delta: float = 0.3) -> rf.Method:
    r"""Thm 5.1's SGD model :math:`w_i \leftarrow w_i - 2\lambda(w)(W-1+\eta)W/w_i`,
    :math:`|\eta| \le \delta` (uniform), with :math:`\lambda(w) = 1/(2\delta(1+\delta)\sum 1/w_i^2)`."""
    lam = adaptive_sgd_lr(delta)
    grad = jax.grad(loss)

    def step(k, w, a, key):
        eta = jax.random.uniform(key, minval=-delta, maxval=delta)
        W = jnp.prod(w)
        return w - 2.0 * lam(w) * (W - 1.0 + eta) * W / w

    return rf.Method(
        flow=rf.ODE(lambda t, w, a: -lam(w) * grad(w), names=names(d)),
        map=rf.Map(step, dt=1.0, stochastic=True, names=names(d)),
        y0=near_minima(d, delta, n=4, seed=9), steps=200, paths=4, view=view(d),
        claims=[
            rf.StepRatio(imbalance, 0.0, 1.0, at=near_minima(d, delta, n=100), draws=32, name="imbalance",
                         source="Thm 5.1: D(t+1) = k D(t), 0 < k <= 1 when |W-1| < delta, |eta| <= delta"),
        ],
    )
