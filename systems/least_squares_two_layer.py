r"""Implicit bias of GD for two-layer ReLU networks: conventional and mean-field scaling.

Lei Wu, "Towards understanding the implicit regularization in deep learning" (slides, SJTU
summer school 2020; after E, Ma & Wu 2019-2020); linear regression and convex risks are in
`least_squares`, which re-exports the names here.

Conventional scaling :math:`f = \sum_j a_j\sigma(b_j^\top x)` (eq 3) with GD eq 6-7 and
Xavier-type start :math:`a_j(0)\sim N(0,\beta^2)`, :math:`b_j(0)\sim N(0, I/d)` (eq 8);
mean-field scaling :math:`f = \frac1m\sum_j a_j\sigma(b_j^\top x)` (eq 17) with GD eq 18.
With a small :math:`\beta` the conventional dynamics first behaves like a random-feature
model (the :math:`b_j` are *quenched*: :math:`\dot b_j = O(|a_j|)`), then a few neurons are
*activated* and the solution is sparse; the mean-field dynamics moves every neuron and is not
sparse.

Conventions and corrections recorded here:

* Eq 4 writes the risk :math:`\frac1n\sum(f-f^*)^2`; GD eq 6-7 and eq 18 are gradient
  descent/flow on *half* of it (a learning-rate convention, as eq 1-2 for least squares).
* Eq 18 as printed is plain gradient flow on the mean-field model, :math:`1/m` slower than the
  usual mean-field time; GD on it uses learning rate :math:`m\eta` (flow time :math:`m\eta`
  per step).  The slides do not give the mean-field start; we use :math:`a_j(0)\sim N(0,1)`,
  :math:`b_j(0)\sim N(0,I/d)`.
* Eq 15 prints the kernel :math:`k(b, b') = E_x[\sigma(b\cdot x)\sigma(b'\cdot x)] =
  \|b\|\|b'\|(\sin\theta + (\pi-\theta)\cos\theta)` for :math:`x` uniform on
  :math:`S^{d-1}`; it lacks the normaliser :math:`1/(2\pi d)` (Cho & Saul's arc-cosine kernel
  is :math:`\frac1{2\pi}\|b\|\|b'\|(\ldots)` for Gaussian :math:`x`, and :math:`E|x|^2 = d`).
* The demonstration uses :math:`n = 100` samples in :math:`d = 5` with :math:`m = 20`
  neurons (under-parameterized, :math:`m < n`, as in the slides' finite-data regimes): with
  :math:`n \le m(d+1)` the network nearly interpolates while the :math:`b_j` are still
  quenched and sparsity does not emerge within a few thousand steps.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np

import regflow as rf

#: Neurons, input dimension, samples of the teacher problem f*(x) = relu(x_1), x on the sphere.
NET_WIDTH, NET_DIM, NET_SAMPLES = 20, 5, 100
#: Xavier-type scale beta of a_j(0) (eq 8) in the conventional scaling.
XAVIER_BETA = 0.01
#: GD learning rate (conventional); the mean-field map uses m times it (eq 18 is 1/m slower).
NET_LR = 1.0
NET_STEPS = 5000
#: Neurons counted as "the top few" in the sparsity measure.
TOP_NEURONS = 2
SCALINGS = ("conventional", "mean_field")


def relu(u):
    return jnp.maximum(u, 0.0)


def teacher_data(n=NET_SAMPLES, d=NET_DIM, seed=0):
    r"""``{"X": (n, d) on the unit sphere, "y": relu(x_1)}``: the single-neuron target."""
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, d))
    X /= np.linalg.norm(X, axis=1, keepdims=True)
    return {"X": jnp.asarray(X), "y": jnp.asarray(np.maximum(X[:, 0], 0.0))}


def unpack(w, m=NET_WIDTH):
    """Flat state -> ``(a (m,), B (m, d))``."""
    return w[:m], w[m:].reshape(m, -1)


def net_names(m=NET_WIDTH, d=NET_DIM):
    return tuple(f"a{j + 1}" for j in range(m)) + tuple(f"b{j + 1}_{i + 1}" for j in range(m) for i in range(d))


def network(w, X, scale):
    r""":math:`f(x) = \text{scale}\sum_j a_j\sigma(b_j^\top x)` (eq 3: scale 1; eq 17: 1/m)."""
    a, B = unpack(w)
    return scale * (relu(X @ B.T) @ a)


def half_risk(w, args):
    r""":math:`\frac1{2n}\sum_i(f(x_i) - f^*(x_i))^2`: the risk the printed GD eq 6-7, 18 descend."""
    return 0.5 * jnp.mean((network(w, args["X"], args["scale"]) - args["y"]) ** 2)


def printed_risk(w, args):
    r"""Eq 4 as printed: :math:`\frac1n\sum_i(f(x_i) - f^*(x_i))^2`."""
    return jnp.mean((network(w, args["X"], args["scale"]) - args["y"]) ** 2)


def printed_field(t, w, args):
    r"""Eq 6-7 (scale 1) or eq 18 (scale 1/m), written out as printed:

    .. math:: \dot a_j = -\frac{c}{n}\sum_i e_i\,\sigma(b_j^\top x_i),\qquad
              \dot b_j = -\frac{c}{n}\sum_i e_i\,a_j\sigma'(b_j^\top x_i)\,x_i,\qquad
              e_i = f(x_i) - f^*(x_i),\ c = \text{scale}."""
    X, c = args["X"], args["scale"]
    a, B = unpack(w)
    pre = X @ B.T  # (n, m)
    err = network(w, X, c) - args["y"]  # (n,)
    n = X.shape[0]
    a_dot = -c / n * (relu(pre).T @ err)
    B_dot = -c / n * ((err[:, None] * (pre > 0) * a[None, :]).T @ X)
    return jnp.concatenate([a_dot, B_dot.ravel()])


def net_start(scaling, m=NET_WIDTH, d=NET_DIM, seed=1):
    r"""Eq 8 for the conventional scaling (:math:`a_j \sim N(0,\beta^2)`, :math:`b_j\sim N(0,I/d)`);
    :math:`a_j \sim N(0,1)` with the same :math:`b_j` for the mean-field scaling."""
    _check_scaling(scaling)
    rng = np.random.default_rng(seed)
    B = rng.normal(size=(m, d)) / np.sqrt(d)
    a = rng.normal(size=m) * (XAVIER_BETA if scaling == "conventional" else 1.0)
    return np.concatenate([a, B.ravel()])


def _check_scaling(scaling):
    if scaling not in SCALINGS:
        raise ValueError(f"scaling must be one of {SCALINGS}, got {scaling!r}")


def neuron_magnitudes(w):
    r""":math:`|a_j|\,\|b_j\|`, the contribution of each neuron (scale-free)."""
    a, B = unpack(np.asarray(w))
    return np.abs(a) * np.linalg.norm(B, axis=1)


def top_fraction(w, k=TOP_NEURONS):
    r"""Share of :math:`\sum_j|a_j|\|b_j\|` carried by the ``k`` largest neurons: 1 is a
    ``k``-neuron network, ``k/m`` a uniform one."""
    mags = np.sort(neuron_magnitudes(w))[::-1]
    return float(mags[:k].sum() / mags.sum())


def b_movement(w, w0):
    r"""Per neuron :math:`\|b_j(t) - b_j(0)\| / \|b_j(0)\|`."""
    B, B0 = unpack(np.asarray(w))[1], unpack(np.asarray(w0))[1]
    return np.linalg.norm(B - B0, axis=1) / np.linalg.norm(B0, axis=1)


def two_layer_gd(scaling, lr=NET_LR, data=None, random_features=False):
    r"""GD on the printed dynamics (Euler steps of eq 6-7 or eq 18); ``random_features=True``
    freezes the :math:`b_j` (the random-feature model of the slides)."""
    _check_scaling(scaling)
    data = teacher_data() if data is None else data
    scale = 1.0 if scaling == "conventional" else 1.0 / NET_WIDTH
    rate = lr if scaling == "conventional" else lr * NET_WIDTH
    mask = np.r_[np.ones(NET_WIDTH), np.full(NET_WIDTH * NET_DIM, 0.0 if random_features else 1.0)]
    args = {**data, "scale": scale, "lr": rate, "mask": jnp.asarray(mask)}
    return rf.Map(_gd_step, dt=rate, args=args, names=net_names())


def _gd_step(k, w, args):
    return w + args["lr"] * args["mask"] * printed_field(0.0, w, args)


#: Starts (seeds of eq 8) of the two-layer ensemble: the claims use the median or worst start.
NET_STARTS = tuple(range(1, 9))


def net_starts(scaling, seeds=NET_STARTS):
    """Eq 8 starts (same b_j for both scalings), shape (len(seeds), dim)."""
    return np.stack([net_start(scaling, seed=s) for s in seeds])



# ----------------------------------------------------------------------------- random features in closed form


def random_feature_risk(args, a0, B0, rate, steps):
    r"""Half risk of the random-feature model (GD on :math:`a` with the :math:`b_j` frozen at
    ``B0``) after each of ``steps``, in closed form: with :math:`\Phi = c\,\sigma(XB_0^\top)`,
    :math:`a_k = a^* + (I - \tfrac{r}{n}\Phi^\top\Phi)^k(a_0 - a^*)`, :math:`a^* = \Phi^+y`."""
    X, y, c = (np.asarray(args[k]) for k in ("X", "y", "scale"))
    phi = c * np.maximum(X @ np.asarray(B0).T, 0.0)
    a_star = np.linalg.pinv(phi) @ y
    lam, vecs = np.linalg.eigh(phi.T @ phi / len(y))
    coef = vecs.T @ (np.asarray(a0) - a_star)
    k = np.asarray(steps)[:, None]
    a = a_star + ((1.0 - rate * lam) ** k * coef) @ vecs.T  # (len(steps), m)
    return 0.5 * np.mean((a @ phi.T - y) ** 2, axis=1)


def _rf_risk_of(w0, args, steps):
    a0, B0 = unpack(np.asarray(w0))
    return random_feature_risk(args, a0, B0, float(args["lr"]), steps)


# ----------------------------------------------------------------------------- quantities of the runs


def log_risk(w, args):
    r""":math:`\log` of the half risk."""
    return jnp.log(half_risk(w, args))


def top_cosine(w, args=None):
    r"""Cosine between the largest neuron's :math:`b_j` (by :math:`|a_j|\|b_j\|`) and the teacher :math:`e_1`."""
    a, B = unpack(w)
    b = B[jnp.argmax(jnp.abs(a) * jnp.linalg.norm(B, axis=1))]
    return b[0] / jnp.linalg.norm(b)


def end_states(method):
    """The states after ``method.steps`` steps of the method's map from its starts."""
    starts = np.asarray(method.y0)
    return starts, rf.iterate(method.map, starts, method.steps, every=method.steps, batched=True).y[:, -1]


def sparsity_measure(reduce):
    """A `rf.Holds` measure: ``reduce`` over starts of the top-`TOP_NEURONS` share after the method's run."""

    def measure(method):
        _, end = end_states(method)
        shares = np.array([top_fraction(w) for w in end])
        return float(reduce(shares)), rf.Trace(np.arange(len(shares)), shares, "start",
                                               f"share of the top {TOP_NEURONS} neurons", "points")

    measure.__name__ = "sparsity"
    return measure


def movement_measure(reduce):
    """A `rf.Holds` measure: ``reduce`` over starts of the median over neurons of |b_j(T) - b_j(0)| / |b_j(0)|."""

    def measure(method):
        starts, end = end_states(method)
        moves = np.array([np.median(b_movement(w, w0)) for w, w0 in zip(end, starts)])
        return float(reduce(moves)), rf.Trace(np.arange(len(moves)), moves, "start",
                                              "median relative movement of b_j", "points")

    measure.__name__ = "b_movement"
    return measure


#: The random-feature phase is compared when the risk first falls below this share of its start.
EARLY_RISK = 0.4
#: Steps recorded for the early comparison (mean field).
EARLY_STEPS = 60


def early_gap(method):
    """A `rf.Holds` measure: median over starts of |risk(NN) - risk(RF)| / risk(RF) when the NN
    risk (the method's map) first falls below `EARLY_RISK` of its start; RF in closed form."""
    starts = np.asarray(method.y0)
    nn = rf.iterate(method.map, starts, EARLY_STEPS, batched=True).evaluate(half_risk)
    k = np.argmax(nn <= EARLY_RISK * nn[:, :1], axis=1)
    if np.any(nn[np.arange(len(k)), k] > EARLY_RISK * nn[:, 0]):
        raise RuntimeError(f"the risk did not fall below {EARLY_RISK} of its start in {EARLY_STEPS} steps")
    feat = np.array([_rf_risk_of(w0, method.map.args, [kk])[0] for w0, kk in zip(starts, k)])
    gaps = np.abs(nn[np.arange(len(k)), k] - feat) / feat
    return float(np.median(gaps)), rf.Trace(np.arange(len(gaps)), gaps, "start", "|risk(NN) - risk(RF)| / risk(RF)",
                                            "points")


#: Step of the conventional network's comparison with random features, and the accepted gap.
PHASE1_STEP, PHASE1_GAP = 5, 0.05
#: Final risk: below FIT of the start, and below DEPART of the random-feature model's.
FIT, DEPART = 1e-3, 1e-2
#: Activation: the largest neuron's cosine with the teacher.
ACTIVATION_TOL = 0.01
#: Monte-Carlo points of the sphere for the kernel of eq 15.
KERNEL_POINTS = 50_000


# ----------------------------------------------------------------------------- the kernel of eq 15


def _neuron_pairs(w):
    B = unpack(w)[1]
    norms = jnp.linalg.norm(B, axis=1)
    cos = jnp.clip(B @ B.T / jnp.outer(norms, norms), -1.0, 1.0)
    theta = jnp.arccos(cos)
    return jnp.outer(norms, norms), theta


def kernel_printed(w, args=None):
    r"""Eq 15 as printed for the neurons of ``w``: :math:`\|b\|\|b'\|(\sin\theta + (\pi-\theta)\cos\theta)`."""
    scale, theta = _neuron_pairs(w)
    return (scale * (jnp.sin(theta) + (jnp.pi - theta) * jnp.cos(theta))).ravel()


def kernel(w, args=None):
    r"""Eq 15 with its normaliser, :math:`\frac{\|b\|\|b'\|}{2\pi d}(\sin\theta + (\pi-\theta)\cos\theta)`."""
    return kernel_printed(w) / (2.0 * jnp.pi * unpack(w)[1].shape[1])


def sphere_points(n=KERNEL_POINTS, d=NET_DIM, seed=5):
    """``n`` points uniform on the unit sphere of R^d, fixed by ``seed``."""
    x = np.random.default_rng(seed).normal(size=(n, d))
    return x / np.linalg.norm(x, axis=1, keepdims=True)


_SPHERE = jnp.asarray(sphere_points())


def kernel_monte_carlo(w, args=None):
    r""":math:`E_x[\sigma(b\cdot x)\sigma(b'\cdot x)]` for the neurons of ``w``, by Monte Carlo over
    `KERNEL_POINTS` fixed points uniform on :math:`S^{d-1}`."""
    features = relu(_SPHERE @ unpack(w)[1].T)  # (points, m)
    return (features.T @ features / _SPHERE.shape[0]).ravel()


# ----------------------------------------------------------------------------- the entries


def _two_layer(scaling, lr, steps):
    gd = two_layer_gd(scaling, lr)
    starts = net_starts(scaling)
    flow = rf.ODE(printed_field, names=net_names(), args=gd.args)
    conventional = scaling == "conventional"
    risk0 = np.array([float(half_risk(jnp.asarray(w), gd.args)) for w in starts])
    eqs = "eq 6-7" if conventional else "eq 18"
    claims = [
        rf.Formula(lambda w, a: -jax.grad(half_risk)(w, a), field=True,
                   printed=lambda w, a: -jax.grad(printed_risk)(w, a),
                   name=f"{eqs} = -grad of (1/2n) sum (f - f*)^2",
                   source=f"{eqs} (the GD dynamics of the {'conventional' if conventional else 'mean-field'} model)",
                   grade="convention",
                   erratum=f"eq 4 prints (1/n) sum (f - f*)^2; {eqs} descend half of it (eq 4's flow at half speed)"),
    ]
    fits = rf.AtHorizon(half_risk, predict=0.0, on="map", absolute=True, tol=FIT * risk0.min(),
                        name="GD fits the teacher",
                        source=f"slides: training curves (risk after {steps} steps below {FIT:g} of the smallest "
                               f"start risk {risk0.min():.3g})")
    if conventional:
        rf_end = np.array([_rf_risk_of(w0, gd.args, [steps])[0] for w0 in starts])
        claims += [
            rf.AtHorizon(log_risk, predict=lambda y0, a: np.log(_rf_risk_of(y0, a, [PHASE1_STEP])), on="map",
                         t=PHASE1_STEP * gd.dt, absolute=True, tol=float(np.log1p(PHASE1_GAP)),
                         name="phase 1 = random features",
                         source=f"'Initially, NN is close to the RF model' (eq 11-12): log risk after {PHASE1_STEP} "
                                f"steps within log(1 + {PHASE1_GAP:g}) of the RF model's (b_j frozen, closed form)"),
            rf.AtHorizon(half_risk, predict=0.0, on="map", absolute=True, tol=min(DEPART * rf_end.min(), fits.tol),
                         name="GD fits the teacher, NN departs from RF",
                         source=f"training curves, 'NN and RF depart' (phase 2): risk after {steps} steps below "
                                f"{DEPART:g} of the smallest RF risk {rf_end.min():.3g} and {FIT:g} of the smallest "
                                f"start risk {risk0.min():.3g}"),
            rf.AtHorizon(top_cosine, predict=1.0, on="map", tol=ACTIVATION_TOL, name="activation",
                         source="'one neuron keeps activated and its magnitude keeps increasing': the largest "
                                "neuron's b_j aligns with the teacher e_1"),
            rf.Holds(measure=sparsity_measure(np.median), lo=0.8, hi=1.0, name="sparse solution",
                     what=f"median over starts of the share of sum_j |a_j||b_j| in the top {TOP_NEURONS} of "
                          f"{NET_WIDTH} neurons",
                     source="'The final NN solution is very sparse'; 'GD-conventional picks up sparse solutions'"),
            rf.Holds(measure=movement_measure(np.max), lo=0.0, hi=0.2, name="quenching",
                     what="max over starts of the median over neurons of |b_j(T) - b_j(0)| / |b_j(0)|",
                     source="'Phase 1: NN behaves like random feature'; b_j dot = O(|a_j|) (eq 12)"),
            rf.Formula(kernel, equals=kernel_monte_carlo, tol=1e-2, printed=kernel_printed, name="eq 15",
                       source="eq 15: k(b, b') = E_x[relu(b.x) relu(b'.x)], x uniform on the sphere, for the "
                              "neurons of the sample states",
                       identity=f"a property of the ReLU kernel (Monte Carlo over {KERNEL_POINTS} points of the "
                                "sphere), not of the dynamics",
                       grade="erratum",
                       erratum="eq 15 prints |b||b'|(sin theta + (pi - theta) cos theta); it lacks the normaliser "
                               "1/(2 pi d) (Cho-Saul's 1/(2 pi) for Gaussian x, and E|x|^2 = d)"),
        ]
    else:
        claims += [
            fits,
            rf.Holds(measure=early_gap, lo=0.2, name="not random-feature-like",
                     what=f"median over starts of |risk(NN) - risk(RF)| / risk(RF) when risk(NN) first "
                          f"< {EARLY_RISK} risk(0) (RF in closed form)",
                     source="eq 18: no time-scale separation between a_j and b_j"),
            rf.Holds(measure=movement_measure(np.min), lo=0.3, name="no quenching",
                     what="min over starts of the median over neurons of |b_j(T) - b_j(0)| / |b_j(0)|",
                     source="eq 18: a_j and b_j move on the same time scale"),
            rf.Holds(measure=sparsity_measure(np.median), lo=0.0, hi=0.7, name="not sparse",
                     what=f"median over starts of the share of sum_j |a_j||b_j| in the top {TOP_NEURONS} of "
                          f"{NET_WIDTH} neurons (conventional: >= 0.8)",
                     source="'GD-conventional picks up sparse solution, while GD-MF does not'"),
        ]
    other = "mean_field" if conventional else "conventional"
    other_gd = two_layer_gd(other, lr)
    swapped = rf.Perturbation(
        f"the {other.replace('_', '-')} scaling (with its start)",
        lambda m: dataclasses.replace(m, map=other_gd, y0=net_starts(other),
                                      flow=rf.ODE(printed_field, names=net_names(), args=other_gd.args)))
    return rf.Method(flow=flow, map=gd, y0=starts, t1=gd.dt * steps, steps=steps, samples=starts[:3], claims=claims,
                     perturbations=[swapped])


@rf.entry("least_squares.two_layer_conventional", source="Wu slides, two-layer networks, eq 3-8, 11-12, 15")
def two_layer_conventional(lr: float = NET_LR, steps: int = NET_STEPS) -> rf.Method:
    r"""GD (Euler steps of eq 6-7) on :math:`f = \sum_j a_j\sigma(b_j^\top x)` from the
    Xavier-type start eq 8 with :math:`\beta = 0.01`, teacher :math:`f^* = \sigma(x_1)`:
    random-feature phase, quenching of the :math:`b_j`, activation of one neuron, sparse
    solution."""
    return _two_layer("conventional", lr, steps)


@rf.entry("least_squares.two_layer_mean_field", source="Wu slides, mean-field scaling, eq 17-18")
def two_layer_mean_field(lr: float = NET_LR, steps: int = NET_STEPS) -> rf.Method:
    r"""GD on eq 18 (learning rate :math:`m\eta`) for :math:`f = \frac1m\sum_j a_j\sigma(b_j^\top x)`:
    every neuron moves and the solution is not sparse."""
    return _two_layer("mean_field", lr, steps)
