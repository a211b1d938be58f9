r"""Implicit bias of GD: least squares and convex risks.

Lei Wu, "Towards understanding the implicit regularization in deep learning" (slides, SJTU
summer school 2020; after E, Ma & Wu 2019-2020); the two-layer networks of the slides are in
`least_squares_two_layer` (their names are re-exported here).

**Linear regression** (eq 1-2).  For :math:`X \in \mathbb R^{n\times d}`, :math:`d > n`, GD

.. math:: \beta_{t+1} = \beta_t - \frac{\eta}{n}X^\top(X\beta_t - y) \qquad\text{(eq 2)}

and its flow :math:`\dot\beta = -\frac1n X^\top(X\beta - y)` converge to the minimum-norm
interpolant plus the null-space part of the start.  With the thin SVD
:math:`X = U\Sigma V^\top`, :math:`\beta = Va + V^\perp b`, :math:`z = U^\top y`:

.. math:: \dot b = 0,\qquad a_j(t) = a_j(0)e^{-t\sigma_j^2/n}
          + \frac{z_j}{\sigma_j}\big(1 - e^{-t\sigma_j^2/n}\big),

and the GD iterates are exactly :math:`a_j(k) = z_j/\sigma_j + (1-\eta\sigma_j^2/n)^k
(a_j(0) - z_j/\sigma_j)`.

**Convex risks.**  For any convex risk the slides prove
:math:`\|\theta_t - \bar\theta\| \le \|\theta_0 - \bar\theta\|` (so
:math:`\|\theta_t\| \le \|\theta_0\| + 2\|\bar\theta\|`) from the Lyapunov function
:math:`J(t) = t(\hat R(\theta_t) - \hat R(\bar\theta)) + \frac12\|\theta_t - \bar\theta\|^2`,
checked here on a convex risk that is not quadratic, :math:`\frac1n\sum_i\log\cosh(x_i\cdot\theta - y_i)`.

Conventions and corrections recorded here:

* Eq 1 writes the risk :math:`\frac1n\|X\beta - y\|^2`; GD eq 2 and the proof's flow are
  gradient descent/flow on *half* of it (the gradient of eq 1 is
  :math:`\frac2n X^\top(X\beta-y)`): a learning-rate convention.  We use
  :math:`\frac1{2n}\|X\beta - y\|^2`, which the printed dynamics and the closed form follow.
* The proof writes :math:`V \in \mathbb R^{n\times d}` (it is :math:`d\times n`) and drops the
  :math:`1/n` in :math:`V\dot a + V^\perp\dot b = -V\Sigma^2 a + V\Sigma U^\top y`; the next
  line has it.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

import regflow as rf
from regflow.systems.least_squares_two_layer import (  # noqa: F401  (re-exported)
    NET_DIM, NET_LR, NET_SAMPLES, NET_STARTS, NET_STEPS, NET_WIDTH, SCALINGS, XAVIER_BETA, b_movement, half_risk,
    net_names, net_start, net_starts, network, neuron_magnitudes, printed_field, printed_risk, relu, teacher_data,
    top_fraction, two_layer_gd, unpack)

#: Samples and dimension of the over-parameterized least-squares problem (d > n).
LS_SAMPLES, LS_DIM = 5, 12
#: Default learning rate of eq 2 (stable below 2n / sigma_max^2 = 0.35 for the default data).
LS_LR = 0.1
#: Tolerance of "iterates equal the closed form" (float64 rounding of a few hundred steps).
EXACT_TOL = 1e-12
#: Flow against the continuous closed form (adaptive solver at rtol 1e-11).
FLOW_TOL = 1e-8
#: How many times the claims' horizon the limit runs go on (to converge to 1e-10).
LIMIT_FACTOR = 10


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




def eq2_step(lr):
    r"""Eq 2 written out, :math:`\beta - \frac{\eta}{n}X^\top(X\beta - y)`."""
    return lambda beta, args: beta - lr / len(args["y"]) * args["X"].T @ (args["X"] @ beta - args["y"])


def proof_flow(beta, args):
    r"""The proof's continuous GD, :math:`-\frac1n X^\top(X\beta - y)`."""
    return -args["X"].T @ (args["X"] @ beta - args["y"]) / len(args["y"])


#: Weight decay of the ridge flow, the explicit regularization the slides contrast with GD's implicit one.
RIDGE = 0.1


def near(point, count=4, shrink=0.05, scale=0.01, seed=7):
    """Points near ``point``, pulled slightly toward the origin (where a ridge flow moves away from it)."""
    noise = np.random.default_rng(seed).normal(size=(count, len(point)))
    return (1.0 - shrink) * np.asarray(point) + scale * noise


def limit(data, beta0):
    r"""The proof's limit :math:`V\Sigma^{-1}U^\top y + V^\perp b(0)`: the minimum-norm
    interpolant plus the null-space part of the start."""
    _, _, _, Vp, _ = svd_parts(data)
    return min_norm_solution(data) + Vp @ (Vp.T @ np.asarray(beta0))


#: Name of the perturbation that runs GD and the flow on eq 1 as printed.
PRINTED_RISK = "GD and flow on eq 1 as printed, (1/n)|X beta - y|^2"


@rf.entry("least_squares.gradient_descent", source="Wu slides, linear regression, eq 1-2 and proof")
def gradient_descent(lr: float = LS_LR, steps: int = 300, seed: int = 0) -> rf.Method:
    r"""GD (eq 2) :math:`\beta \leftarrow \beta - \frac{\eta}{n}X^\top(X\beta - y)` and its
    flow :math:`\dot\beta = -\frac1nX^\top(X\beta - y)` on :math:`\frac1{2n}\|X\beta-y\|^2`,
    against the SVD solution of the proof at steps ``steps / 10`` and ``steps`` and the limit
    after ``10 * steps``."""
    data = ls_data(seed=seed)
    if not 0 < lr < max_stable_lr(data):
        raise ValueError(f"lr must be in (0, 2n/sigma_max^2 = {max_stable_lr(data):.4g}) for eq 2 to converge, "
                         f"got {lr}")
    if steps < 10:
        raise ValueError(f"steps must be >= 10 (the closed form is checked at steps / 10 and steps), got {steps}")
    names = tuple(f"beta{i + 1}" for i in range(LS_DIM))
    star = min_norm_solution(data)
    early, horizon = steps // 10, steps
    wrong = {"flow": rf.gradient_flow(printed_ls_loss, names=names, args=data),
             "map": rf.gradient_descent(printed_ls_loss, lr=lr, names=names, args=data)}

    def gd_at(k):
        return lambda y0, a: closed_form_gd(a, y0, lr, k)[-1]

    def flow_at(t):
        return lambda y0, a: closed_form_flow(a, y0, [t])[0]

    proof = "proof: a_j(t) = a_j(0) e^{-t s_j^2/n} + z_j/s_j (1 - e^{-t s_j^2/n}), b(t) = b(0)"
    gd_proof = "proof: a_j(k) = z_j/s_j + (1 - eta s_j^2/n)^k (a_j(0) - z_j/s_j), b(k) = b(0)"
    convention = ("eq 1 prints (1/n)|X beta - y|^2, whose gradient is (2/n) X^T (X beta - y): eq 2 and the proof are "
                  "GD and flow on half of it (eq 1's GD with learning rate eta/2)")
    return rf.Method(
        flow=rf.gradient_flow(ls_loss, names=names, args=data),
        map=rf.gradient_descent(ls_loss, lr=lr, names=names, args=data),
        y0=ls_starts(), t1=LIMIT_FACTOR * steps * lr, steps=LIMIT_FACTOR * steps,
        options={"rtol": 1e-11, "atol": 1e-13},
        samples=np.vstack([ls_starts(), np.random.default_rng(2).normal(size=(5, LS_DIM)), near(star)]),
        perturbations=[rf.Perturbation(PRINTED_RISK, wrong),
                       rf.Perturbation(f"ridge flow and GD (weight decay {RIDGE:g})",
                                       {"flow": rf.gradient_flow(ls_loss, weight_decay=RIDGE, names=names, args=data),
                                        "map": rf.gradient_descent(ls_loss, lr=lr, weight_decay=RIDGE, names=names,
                                                                   args=data)})],
        claims=[
            rf.Formula(proof_flow, field=True, printed=lambda b, a: -jax.grad(printed_ls_loss)(b, a),
                       name="continuous GD", source="proof: d beta/dt = -(1/n) X^T (X beta - y)",
                       grade="convention", erratum=convention),
            rf.Formula(eq2_step(lr), step=True, printed=lambda b, a: b - lr * jax.grad(printed_ls_loss)(b, a),
                       name="eq 2", source="eq 2: beta - (eta/n) X^T (X beta - y)", grade="convention",
                       erratum=convention),
            rf.AtHorizon(state, predict=gd_at(early), on="map",
                         t=early * lr, tol=EXACT_TOL, name=f"GD at step {early}", source=gd_proof),
            rf.AtHorizon(state, predict=gd_at(horizon), on="map", t=horizon * lr, tol=EXACT_TOL,
                         name=f"GD at step {horizon}", source=gd_proof),
            rf.AtHorizon(state, predict=flow_at(early * lr), t=early * lr, tol=FLOW_TOL,
                         name=f"flow at t={early * lr:g}", source=proof),
            rf.AtHorizon(state, predict=flow_at(horizon * lr), t=horizon * lr, tol=FLOW_TOL,
                         name=f"flow at t={horizon * lr:g}", source=proof),
            rf.AtHorizon(state, predict=lambda y0, a: limit(a, y0), on="map", tol=1e-10, name="GD limit",
                         source=f"Theorem: lim beta_t = argmin{{|beta| : X beta = y}} when beta_0 = 0 (after "
                                f"{LIMIT_FACTOR * steps} steps; from any start, plus its null-space part)"),
            rf.AtHorizon(state, predict=lambda y0, a: limit(a, y0), tol=1e-8, name="flow limit",
                         source="proof: lim beta(t) = V Sigma^{-1} U^T y + V_perp b(0)"),
            rf.Conserved(null_component(data, 0), source="proof: db/dt = 0 (null-space part of the start is kept)"),
            rf.Conserved(null_component(data, LS_DIM - LS_SAMPLES - 1),
                         source="proof: db/dt = 0 (null-space part of the start is kept)"),
            rf.Monotone(distance_to(star), source="convex theorem: |theta_t - theta_bar| <= |theta_0 - theta_bar| "
                                                  "(so |theta_t| <= |theta_0| + 2|theta_bar|)"),
        ],
    )


def state(beta, args=None):
    """The state itself (for claims on the whole vector)."""
    return beta


# ----------------------------------------------------------------------------- convex risks


def log_cosh_risk(theta, args):
    r""":math:`\hat R(\theta) = \frac1n\sum_i \log\cosh(x_i\cdot\theta - y_i)`: convex, not
    quadratic, minimized exactly on the interpolating set :math:`X\theta = y`."""
    r = args["X"] @ theta - args["y"]
    return jnp.mean(jnp.logaddexp(r, -r) - jnp.log(2.0))


def lyapunov_rate(risk, star, t1):
    r"""A `rf.Holds` measure: the largest :math:`dJ/dt` (``risk`` :math:`\hat R`) over the method's
    sample points and :math:`t \in [0, t_1]`, :math:`J(t) = t(\hat R(\theta) - \hat R(\bar\theta)) +
    \frac12\|\theta - \bar\theta\|^2` along the method's flow: :math:`\hat R - \hat R(\bar\theta)
    + \mathcal L\frac12\|\theta - \bar\theta\|^2 + t\,\mathcal L\hat R` (linear in t, so the
    largest is at 0 or :math:`t_1`); <= 0 is the proof's :math:`dJ/dt \le 0`."""
    star = jnp.asarray(star)

    def measure(method):
        flow, args = method.flow, method.flow.args
        half_dist = lambda th, a: 0.5 * jnp.sum((th - star) ** 2)  # noqa: E731
        l_dist, l_risk = rf.lie_derivative(flow, half_dist), rf.lie_derivative(flow, risk)

        def rate(th):
            base = risk(th, args) - risk(star, args) + l_dist(th, args)
            return jnp.maximum(base, base + t1 * l_risk(th, args))

        values = np.asarray(jax.jit(jax.vmap(rate))(jnp.asarray(method.points)))
        index = np.arange(len(values))
        return float(values.max()), rf.Trace(index, values, "sample point", "max over t of dJ/dt", "points", 0.0)

    measure.__name__ = "lyapunov_rate"
    return measure


@rf.entry("least_squares.convex", source="Wu slides, 'Implicit bias of GD for general convex problems'")
def convex(lr: float = 0.1, steps: int = 1000, seed: int = 0) -> rf.Method:
    r"""Gradient flow and GD on the convex, non-quadratic risk
    :math:`\frac1n\sum_i\log\cosh(x_i\cdot\theta - y_i)` (``d > n``): the slides' theorem
    :math:`\|\theta_t - \bar\theta\| \le \|\theta_0 - \bar\theta\|`, :math:`\bar\theta` the
    minimum-norm minimizer, by its Lyapunov function :math:`J`."""
    data = ls_data(seed=seed)
    if not 0 < lr < max_stable_lr(data):  # log cosh'' <= 1: the risk is L-smooth with L <= sigma_max^2 / n
        raise ValueError(f"lr must be in (0, 2n/sigma_max^2 = {max_stable_lr(data):.4g}) for GD to be stable, got {lr}")
    names = tuple(f"theta{i + 1}" for i in range(LS_DIM))
    star = min_norm_solution(data)
    t1 = steps * lr
    half = lambda th, a: 0.5 * log_cosh_risk(th, a)  # noqa: E731
    starts = np.vstack([ls_starts(), 3.0 * np.random.default_rng(3).normal(size=(2, LS_DIM))])
    return rf.Method(
        flow=rf.gradient_flow(log_cosh_risk, names=names, args=data),
        map=rf.gradient_descent(log_cosh_risk, lr=lr, names=names, args=data),
        y0=starts, t1=t1, steps=steps, options={"rtol": 1e-11, "atol": 1e-13},
        samples=np.vstack([starts, 4.0 * np.random.default_rng(4).normal(size=(8, LS_DIM)), near(star)]),
        perturbations=[rf.Perturbation("the flow of R/2 (J's time then runs twice too fast)",
                                       {"flow": rf.gradient_flow(half, names=names, args=data)}),
                       rf.Perturbation(f"ridge flow and GD (weight decay {RIDGE:g})",
                                       {"flow": rf.gradient_flow(log_cosh_risk, weight_decay=RIDGE, names=names,
                                                                 args=data),
                                        "map": rf.gradient_descent(log_cosh_risk, lr=lr, weight_decay=RIDGE,
                                                                   names=names, args=data)})],
        claims=[
            rf.Monotone(distance_to(star), source="theorem: |theta_t - theta_bar| <= |theta_0 - theta_bar|, so "
                                                  "|theta_t| <= |theta_0| + 2|theta_bar|"),
            rf.Monotone(distance_to(star), on="map", source="theorem, for the GD iterates (lr below 2/L)"),
            rf.Holds(measure=lyapunov_rate(log_cosh_risk, star, t1), hi=0.0, name="dJ/dt <= 0",
                     what=f"max over sample points and t in [0, {t1:g}] of dJ/dt along the flow",
                     source="proof: dJ/dt = R_t - R_bar + <theta_t - theta_bar, -grad R> - t |grad R|^2 <= 0 by "
                            "convexity"),
            rf.Conserved(null_component(data, 0), source="the gradient lies in the row space of X: the null-space "
                                                         "part of the start is kept"),
            rf.AtHorizon(state, predict=lambda y0, a: limit(a, y0), tol=1e-9, name="flow limit",
                         source=f"the slides' question 'does GD still converge to the minimum-norm solution?': for a "
                                f"risk of X theta, from theta_0 = 0 it does (plus the start's null part; t = {t1:g})"),
            rf.AtHorizon(state, predict=lambda y0, a: limit(a, y0), on="map", tol=1e-10, name="GD limit",
                         source=f"the same for the GD iterates ({steps} steps)"),
        ],
    )
