r"""Implicit bias of GD: least squares and two-layer networks.

Lei Wu, "Towards understanding the implicit regularization in deep learning" (slides, SJTU
summer school 2020; after E, Ma & Wu 2019-2020).

**Linear regression** (eq 1-2).  For :math:`X \in \mathbb R^{n\times d}`, :math:`d > n`, GD

.. math:: \beta_{t+1} = \beta_t - \frac{\eta}{n}X^\top(X\beta_t - y) \qquad\text{(eq 2)}

and its flow :math:`\dot\beta = -\frac1n X^\top(X\beta - y)` converge to the minimum-norm
interpolant plus the null-space part of the start.  With the thin SVD
:math:`X = U\Sigma V^\top`, :math:`\beta = Va + V^\perp b`, :math:`z = U^\top y`:

.. math:: \dot b = 0,\qquad a_j(t) = a_j(0)e^{-t\sigma_j^2/n}
          + \frac{z_j}{\sigma_j}\big(1 - e^{-t\sigma_j^2/n}\big),

and the GD iterates are exactly :math:`a_j(k) = z_j/\sigma_j + (1-\eta\sigma_j^2/n)^k
(a_j(0) - z_j/\sigma_j)`.  For any convex risk the slides prove
:math:`\|\theta_t - \bar\theta\| \le \|\theta_0 - \bar\theta\|` from the Lyapunov function
:math:`J(t) = t(\hat R(\theta_t) - \hat R(\bar\theta)) + \frac12\|\theta_t - \bar\theta\|^2`.

**Two-layer ReLU networks.**  Conventional scaling :math:`f = \sum_j a_j\sigma(b_j^\top x)`
(eq 3) with GD eq 6-7 and Xavier-type start :math:`a_j(0)\sim N(0,\beta^2)`,
:math:`b_j(0)\sim N(0, I/d)` (eq 8); mean-field scaling :math:`f = \frac1m\sum_j a_j
\sigma(b_j^\top x)` (eq 17) with GD eq 18.  With a small :math:`\beta` the conventional
dynamics first behaves like a random-feature model (the :math:`b_j` are *quenched*:
:math:`\dot b_j = O(|a_j|)`), then a few neurons are *activated* and the solution is sparse;
the mean-field dynamics moves every neuron and is not sparse.

Conventions and corrections recorded here:

* Eq 1 writes the risk :math:`\frac1n\|X\beta - y\|^2`, eq 4 :math:`\frac1n\sum(f - f^*)^2`;
  GD eq 2, the proof's flow, eq 6-7 and eq 18 are gradient descent/flow on *half* of
  these (the gradient of eq 1 is :math:`\frac2n X^\top(X\beta-y)`).  We use
  :math:`\frac1{2n}\|X\beta - y\|^2` and :math:`\frac1{2n}\sum(f-f^*)^2`, which the printed
  dynamics and the closed form follow; the printed risks give twice the speed (claims below).
* The proof writes :math:`V \in \mathbb R^{n\times d}` (it is :math:`d\times n`) and drops the
  :math:`1/n` in :math:`V\dot a + V^\perp\dot b = -V\Sigma^2 a + V\Sigma U^\top y`; the next
  line has it.
* Eq 18 as printed is plain gradient flow on the mean-field model, :math:`1/m` slower than the
  usual mean-field time; GD on it uses learning rate :math:`m\eta` (flow time :math:`m\eta`
  per step).  The slides do not give the mean-field start; we use :math:`a_j(0)\sim N(0,1)`,
  :math:`b_j(0)\sim N(0,I/d)`.
* The demonstration uses :math:`n = 100` samples in :math:`d = 5` with :math:`m = 20`
  neurons (under-parameterized, :math:`m < n`, as in the slides' finite-data regimes): with
  :math:`n \le m(d+1)` the network nearly interpolates while the :math:`b_j` are still
  quenched and sparsity does not emerge within a few thousand steps.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

import regflow as rf

#: Samples and dimension of the over-parameterized least-squares problem (d > n).
LS_SAMPLES, LS_DIM = 5, 12
#: Default learning rate of eq 2 (stable below 2n / sigma_max^2 = 0.35 for the default data).
LS_LR = 0.1
#: Tolerance of "iterates equal the closed form" (float64 rounding of a few hundred steps).
EXACT_TOL = 1e-12
#: Flow against the continuous closed form (adaptive solver at rtol 1e-11).
FLOW_TOL = 1e-8
#: Saved times of the flow runs (the grid `rf.check` uses, so one compiled program serves all).
CLAIM_SAVES = 201


# ----------------------------------------------------------------------------- linear regression


def ls_data(n=LS_SAMPLES, d=LS_DIM, seed=0):
    """``{"X": (n, d), "y": (n,)}`` with Gaussian entries, fixed by ``seed``."""
    if not 1 <= n < d:
        raise ValueError(f"need 1 <= n < d for the over-parameterized setting, got n={n}, d={d}")
    rng = np.random.default_rng(seed)
    return {"X": jnp.asarray(rng.normal(size=(n, d))), "y": jnp.asarray(rng.normal(size=n))}


def ls_loss(beta, args):
    r""":math:`\frac1{2n}\|X\beta - y\|^2`: the risk whose GD is eq 2."""
    r = args["X"] @ beta - args["y"]
    return 0.5 * jnp.mean(r**2)


def printed_ls_loss(beta, args):
    r"""Eq 1 as printed, :math:`\frac1n\|X\beta - y\|^2` (twice `ls_loss`)."""
    r = args["X"] @ beta - args["y"]
    return jnp.mean(r**2)


def svd_parts(data):
    r"""``(U, s, V, V_perp, z)`` of the thin SVD :math:`X = U\,\mathrm{diag}(s)V^\top`,
    an orthonormal basis ``V_perp`` of the null space and :math:`z = U^\top y`."""
    X, y = np.asarray(data["X"]), np.asarray(data["y"])
    n = X.shape[0]
    U, s, Vt_full = np.linalg.svd(X, full_matrices=True)
    return U, s, Vt_full[:n].T, Vt_full[n:].T, U.T @ y


def min_norm_solution(data):
    r""":math:`\beta^* = V\Sigma^{-1}U^\top y = X^+ y`."""
    U, s, V, _, z = svd_parts(data)
    return V @ (z / s)


def closed_form_flow(data, beta0, t):
    r"""The proof's solution at times ``t``: :math:`\beta(t) = Va(t) + V^\perp b(0)`, shape
    ``(len(t), d)``."""
    U, s, V, Vp, z = svd_parts(data)
    n = len(s)
    beta0 = np.asarray(beta0, dtype=float)
    a0, b0 = V.T @ beta0, Vp.T @ beta0
    decay = np.exp(-np.outer(np.asarray(t, dtype=float), s**2) / n)
    a = a0 * decay + z / s * (1.0 - decay)
    return a @ V.T + Vp @ b0


def closed_form_gd(data, beta0, lr, steps):
    r"""GD iterates of eq 2 in closed form, :math:`a_j(k) = z_j/\sigma_j +
    (1-\eta\sigma_j^2/n)^k(a_j(0) - z_j/\sigma_j)`, shape ``(steps + 1, d)``."""
    U, s, V, Vp, z = svd_parts(data)
    n = len(s)
    beta0 = np.asarray(beta0, dtype=float)
    a0, b0 = V.T @ beta0, Vp.T @ beta0
    factor = (1.0 - lr * s**2 / n) ** np.arange(steps + 1)[:, None]
    a = z / s + factor * (a0 - z / s)
    return a @ V.T + Vp @ b0


def max_stable_lr(data):
    r""":math:`2n/\sigma_{\max}^2`: eq 2 converges iff :math:`\eta` is below it."""
    s = svd_parts(data)[1]
    return 2.0 * len(s) / s[0] ** 2


def null_component(data, i):
    """The coordinate of beta along the i-th null-space direction of X (constant along the flow)."""
    u = jnp.asarray(svd_parts(data)[3][:, i])

    def q(beta, args=None):
        return u @ beta

    q.__name__ = f"null_component_{i}"
    return q


def distance_to(point):
    r""":math:`\frac12\|\beta - \bar\beta\|^2`."""
    p = jnp.asarray(point)

    def q(beta, args=None):
        return 0.5 * jnp.sum((beta - p) ** 2)

    q.__name__ = "half_distance_to_min_norm"
    return q


def ls_starts(d=LS_DIM, seed=1):
    """The zero start (GD -> minimum norm) and two random ones (GD -> minimum norm + null part)."""
    rng = np.random.default_rng(seed)
    return np.vstack([np.zeros(d), rng.normal(size=(2, d))])


@rf.entry("least_squares.gradient_descent", source="Wu slides, linear regression, eq 1-2 and proof")
def gradient_descent(lr: float = LS_LR, steps: int = 300, seed: int = 0) -> rf.Method:
    r"""GD (eq 2) :math:`\beta \leftarrow \beta - \frac{\eta}{n}X^\top(X\beta - y)` and its
    flow :math:`\dot\beta = -\frac1nX^\top(X\beta - y)` on :math:`\frac1{2n}\|X\beta-y\|^2`,
    against the SVD solution of the proof."""
    data = ls_data(seed=seed)
    if not 0 < lr < max_stable_lr(data):
        raise ValueError(f"lr must be in (0, 2n/sigma_max^2 = {max_stable_lr(data):.4g}) for eq 2 to converge, "
                         f"got {lr}")
    names = tuple(f"beta{i + 1}" for i in range(LS_DIM))
    starts = ls_starts()
    star = min_norm_solution(data)
    flow = rf.gradient_flow(ls_loss, names=names, args=data)
    gd = rf.gradient_descent(ls_loss, lr=lr, names=names, args=data)
    horizon = steps * lr
    ts = np.linspace(0.0, horizon, CLAIM_SAVES)  # the claims' own grid: one compiled flow program
    cache = {}

    def flow_run(method):
        if "flow" not in cache:
            cache["flow"] = rf.integrate(method.flow, starts, horizon, ts=ts, rtol=1e-11, atol=1e-13, batched=True)
        return cache["flow"]

    def gd_vs_closed_form(method, system=gd):
        traj = rf.iterate(system, starts, steps, batched=True)
        exact = np.stack([closed_form_gd(data, b0, lr, steps) for b0 in starts])
        return np.max(np.abs(traj.y - exact)) / np.max(np.abs(exact))

    def flow_vs_closed_form(method):
        exact = np.stack([closed_form_flow(data, b0, ts) for b0 in starts])
        return np.max(np.abs(flow_run(method).y - exact)) / np.max(np.abs(exact))

    def limit_is_min_norm(method):
        traj = rf.iterate(method.map, starts[0], 10 * steps, every=10 * steps)
        return np.linalg.norm(traj.y[-1] - star) / np.linalg.norm(star)

    def lyapunov_increase(method):
        """Largest increase of J(t) = t (R(theta_t) - R(theta_bar)) + |theta_t - theta_bar|^2 / 2."""
        traj = flow_run(method)
        risk = traj.evaluate(ls_loss) - float(ls_loss(jnp.asarray(star), data))
        J = ts * risk + traj.evaluate(distance_to(star))
        return np.max(np.diff(J, axis=-1) / np.maximum(1.0, np.abs(J[..., :-1])))

    def norm_bound(method):
        bound = np.linalg.norm(starts, axis=1)[:, None] + 2.0 * np.linalg.norm(star)
        return np.max(np.linalg.norm(flow_run(method).y, axis=-1) - bound)

    return rf.Method(
        flow=flow, map=gd, y0=starts, t1=horizon, steps=steps,
        samples=np.vstack([starts, np.random.default_rng(2).normal(size=(5, LS_DIM))]),
        claims=[
            rf.Holds(measure=gd_vs_closed_form, lo=0.0, hi=EXACT_TOL, name="GD = SVD closed form",
                     what=f"max over {steps} steps and {len(starts)} starts of |beta_k - closed form| / max|beta|",
                     source="proof: a_j(k) = z_j/s_j + (1 - eta s_j^2/n)^k (a_j(0) - z_j/s_j), b(k) = b(0)"),
            rf.Holds(measure=flow_vs_closed_form, lo=0.0, hi=FLOW_TOL, name="flow = SVD closed form",
                     what="max over t <= steps*lr of |beta(t) - closed form| / max|beta|",
                     source="proof: a_j(t) = a_j(0) e^{-t s_j^2/n} + z_j/s_j (1 - e^{-t s_j^2/n})"),
            rf.Holds(measure=lambda m: gd_vs_closed_form(m, rf.gradient_descent(printed_ls_loss, lr=lr, args=data)),
                     lo=0.1, name="eq 1 as printed misses eq 2",
                     what="the same error for GD (rate lr) on eq 1 as printed, (1/n)|X beta - y|^2",
                     source="eq 1 vs eq 2 and the proof",
                     erratum="eq 1 prints (1/n)|X beta - y|^2; eq 2 and the proof are GD/flow on half of it"),
            rf.Conserved(null_component(data, 0), source="proof: db/dt = 0 (null-space part of the start is kept)"),
            rf.Conserved(null_component(data, LS_DIM - LS_SAMPLES - 1),
                         source="proof: db/dt = 0 (null-space part of the start is kept)"),
            rf.Holds(measure=limit_is_min_norm, lo=0.0, hi=1e-10, name="limit from 0 = minimum norm",
                     what=f"|beta_K - X^+ y| / |X^+ y| after {10 * steps} GD steps from beta_0 = 0",
                     source="Theorem: lim beta_t = argmin{|beta| : X beta = y} when beta_0 = 0"),
            rf.Monotone(distance_to(star), source="convex theorem: |theta_t - theta_bar| <= |theta_0 - theta_bar|"),
            rf.Holds(measure=lyapunov_increase, hi=1e-9, name="J(t) non-increasing",
                     what="max relative increase of J(t) = t (R_t - R_bar) + |theta_t - theta_bar|^2/2 along the flow",
                     source="convex theorem, proof: dJ/dt <= 0"),
            rf.Holds(measure=norm_bound, hi=0.0, name="|theta_t| <= |theta_0| + 2|theta_bar|",
                     what="max over t and starts of |theta_t| - (|theta_0| + 2|theta_bar|)",
                     source="convex theorem: |theta_t| <= |theta_0| + 2|theta_bar|"),
        ],
    )


# ----------------------------------------------------------------------------- two-layer ReLU networks

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
#: The random-feature phase is compared when the risk first falls below this share of its start.
EARLY_RISK = 0.4
#: Steps recorded for the early comparison.
EARLY_STEPS = 60


def net_starts(scaling, seeds=NET_STARTS):
    """Eq 8 starts (same b_j for both scalings), shape (len(seeds), dim)."""
    return np.stack([net_start(scaling, seed=s) for s in seeds])


class _Runs:
    """The GD and random-feature runs of one scaling from `net_starts`, computed once."""

    def __init__(self, scaling, lr, steps):
        self.scaling, self.lr, self.steps = scaling, lr, steps
        self.starts = net_starts(scaling)
        self.gd = two_layer_gd(scaling, lr)
        self.features = two_layer_gd(scaling, lr, random_features=True)
        self._cache = {}

    def _get(self, key, make):
        if key not in self._cache:
            self._cache[key] = make()
        return self._cache[key]

    @property
    def end(self):
        return self._get("end", lambda: rf.iterate(self.gd, self.starts, self.steps, every=self.steps, batched=True).y[:, -1])

    @property
    def features_end(self):
        return self._get("rf", lambda: rf.iterate(self.features, self.starts, self.steps, every=self.steps, batched=True).y[:, -1])

    def risk(self, states):
        return np.asarray(jax.vmap(lambda w: half_risk(w, self.gd.args))(jnp.asarray(states)))

    def early_gap(self):
        """Median over starts of |risk(NN) - risk(RF)| / risk(RF) when the NN risk first falls
        below EARLY_RISK of its start."""
        nn = rf.iterate(self.gd, self.starts, EARLY_STEPS, batched=True).evaluate(half_risk)
        feat = rf.iterate(self.features, self.starts, EARLY_STEPS, batched=True).evaluate(half_risk)
        k = np.argmax(nn <= EARLY_RISK * nn[:, :1], axis=1)
        if np.any(nn[np.arange(len(k)), k] > EARLY_RISK * nn[:, 0]):
            raise RuntimeError(f"the risk did not fall below {EARLY_RISK} of its start in {EARLY_STEPS} steps")
        rows = np.arange(len(k))
        return float(np.median(np.abs(nn[rows, k] - feat[rows, k]) / feat[rows, k]))

    def fit(self):
        return float(np.max(self.risk(self.end) / self.risk(self.starts)))

    def movement(self):
        """Per start: median over neurons of the relative movement of b_j."""
        return np.array([np.median(b_movement(w, w0)) for w, w0 in zip(self.end, self.starts)])

    def sparsity(self):
        return np.array([top_fraction(w) for w in self.end])

    def top_cosines(self):
        out = []
        for w in self.end:
            b = unpack(w)[1][int(np.argmax(neuron_magnitudes(w)))]
            out.append(b[0] / np.linalg.norm(b))
        return np.array(out)


def _two_layer(scaling, lr, steps):
    runs = _Runs(scaling, lr, steps)
    gd = runs.gd
    flow = rf.ODE(printed_field, names=net_names(), args=gd.args)
    samples = runs.starts[:3]
    conventional = scaling == "conventional"
    count = len(runs.starts)

    def field_vs_autodiff(method, risk=half_risk):
        grad = jax.vmap(lambda w: -jax.grad(risk)(w, gd.args))(jnp.asarray(samples))
        field = jax.vmap(lambda w: printed_field(0.0, w, gd.args))(jnp.asarray(samples))
        return float(jnp.max(jnp.abs(field - grad)) / jnp.max(jnp.abs(grad)))

    eqs = "eq 6-7" if conventional else "eq 18"
    claims = [
        rf.Holds(measure=field_vs_autodiff, lo=0.0, hi=EXACT_TOL, name=f"{eqs} = -grad of (1/2n) sum (f - f*)^2",
                 what="max |printed field + grad(half risk)| / max |grad| at 3 points",
                 source=f"{eqs} (the GD dynamics of the {'conventional' if conventional else 'mean-field'} model)"),
        rf.Holds(measure=lambda m: field_vs_autodiff(m, printed_risk), lo=0.4, hi=0.6,
                 name=f"{eqs} vs eq 4 as printed",
                 what="the same deviation from -grad of eq 4's (1/n) sum (f - f*)^2 (0.5: a factor 2)",
                 source=f"eq 4 vs {eqs}",
                 erratum="eq 4 prints (1/n) sum (f - f*)^2; the printed GD descends half of it (time x 2)"),
        rf.Holds(measure=lambda m: runs.fit(), lo=0.0, hi=1e-3, name="GD fits the teacher",
                 what=f"max over {count} starts of risk after {steps} GD steps / initial risk",
                 source="slides: training curves"),
    ]
    if conventional:
        claims += [
            rf.Holds(measure=lambda m: runs.early_gap(), lo=0.0, hi=0.05, name="phase 1 = random features",
                     what=f"median over starts of |risk(NN) - risk(RF, b frozen)| / risk(RF) when risk(NN) "
                          f"first < {EARLY_RISK} risk(0)",
                     source="'Initially, NN is close to the RF model' (time-scale separation, eq 11-12)"),
            rf.Holds(measure=lambda m: np.max(runs.risk(runs.end) / runs.risk(runs.features_end)), lo=0.0,
                     hi=0.01, name="NN departs from RF",
                     what=f"max over starts of risk(NN) / risk(RF) after {steps} steps",
                     source="'NN and RF depart' (phase 2)"),
            rf.Holds(measure=lambda m: runs.movement().max(), lo=0.0, hi=0.2, name="quenching",
                     what="max over starts of the median over neurons of |b_j(T) - b_j(0)| / |b_j(0)|",
                     source="'Phase 1: NN behaves like random feature'; b_j dot = O(|a_j|) (eq 12)"),
            rf.Holds(measure=lambda m: runs.top_cosines().min(), lo=0.99, hi=1.0, name="activation",
                     what="min over starts of the cosine between the largest neuron's b_j and the teacher e_1",
                     source="'one neuron keeps activated and its magnitude keeps increasing'"),
            rf.Holds(measure=lambda m: np.median(runs.sparsity()), lo=0.8, hi=1.0, name="sparse solution",
                     what=f"median over starts of the share of sum_j |a_j||b_j| in the top {TOP_NEURONS} of "
                          f"{NET_WIDTH} neurons",
                     source="'The final NN solution is very sparse'; 'GD-conventional picks up sparse solutions'"),
        ]
    else:
        other = _Runs("conventional", lr, steps)
        claims += [
            rf.Holds(measure=lambda m: runs.early_gap(), lo=0.2, name="not random-feature-like",
                     what=f"median over starts of |risk(NN) - risk(RF)| / risk(RF) when risk(NN) first "
                          f"< {EARLY_RISK} risk(0)",
                     source="eq 18: no time-scale separation between a_j and b_j"),
            rf.Holds(measure=lambda m: runs.movement().min(), lo=0.3, name="no quenching",
                     what="min over starts of the median over neurons of |b_j(T) - b_j(0)| / |b_j(0)|",
                     source="eq 18: a_j and b_j move on the same time scale"),
            rf.Holds(measure=lambda m: np.median(runs.sparsity()), lo=0.0, hi=0.7, name="not sparse",
                     what=f"median over starts of the share of sum_j |a_j||b_j| in the top {TOP_NEURONS} of "
                          f"{NET_WIDTH} neurons",
                     source="'GD-conventional picks up sparse solution, while GD-MF does not'"),
            rf.Holds(measure=lambda m: np.min(other.sparsity() - runs.sparsity()), lo=0.0, name="sparser conventional",
                     what="min over starts (same b_j(0)) of top-2 share (conventional) - top-2 share (mean field)",
                     source="'Comparison between two scalings'"),
        ]
    return rf.Method(flow=flow, map=gd, y0=runs.starts, t1=gd.dt * steps, steps=steps, samples=samples,
                     claims=claims)


@rf.entry("least_squares.two_layer_conventional", source="Wu slides, two-layer networks, eq 3-8, 11-12")
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
