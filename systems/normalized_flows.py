r"""Normalized flows of exponential-loss classifiers, and a degenerate regularized Hessian.

Banburski, Liao, Miranda, Poggio, Rosasco, Liang, Hidary, "Theory III: Dynamics and
Generalization in Deep Networks" (sec 6, 7, 14.2-14.3, 17, 19 Thm 7, 21, 21.1).

A network :math:`f(W;x) = W_K\sigma(\cdots\sigma(W_1x))` (:math:`\sigma` linear or ReLU, no
biases) is positively one-homogeneous in each layer, so with :math:`\rho_k = \|W_k\|_F`,
:math:`V_k = W_k/\rho_k` and :math:`\rho = \prod_k\rho_k`, :math:`f = \rho\tilde f(V)` (eq 1-3).
On a separable data set :math:`(x_n, y_n)` the exponential loss (eq 36, 47)

.. math:: L(W) = \sum_n e^{-y_n f(W;x_n)}

has no critical point: gradient flow (eq 37, 48) sends :math:`\rho\to\infty` while the direction
:math:`V` converges.  The same flow written in :math:`(\rho_k, V_k)` (eq 42-43 for one layer,
eq 54 and 13 for K layers) is

.. math:: \dot\rho_k = \frac{\rho}{\rho_k}\sum_n e^{-\rho y_n\tilde f_n}y_n\tilde f_n,\qquad
          \dot V_k = \frac{\rho}{\rho_k^2}(I - V_kV_k^\top)\tilde B_k,\quad
          \tilde B_k = \sum_n e^{-\rho y_n\tilde f_n}y_n\frac{\partial\tilde f_n}{\partial V_k}
          \ \text{(eq 78)}.

Weight normalization :math:`w = g\,v/\|v\|` (eq 89, 93-95) and the Lagrange-multiplier method
(eq 12-15, multiplier chosen to keep :math:`\|V_k\| = 1`) move the direction with speed
:math:`g/\|v\|^2` and :math:`\rho` instead of :math:`\rho/\rho_k^2`.

Conventions and corrections recorded here (each with a measured row in `rf.check`):

* Labels are folded into the data, :math:`z_n = y_nx_n`, where the paper writes :math:`x_n`.
* The max-margin direction is the hard-margin SVM through the origin, computed independently
  (`hard_margin_svm`, SLSQP; the tests cross-check it with scikit-learn's ``SVC``).  The rate
  is Soudry et al. [ref 1]: :math:`w(t) = \hat w\log t + \tilde w + o(1)`, so
  :math:`\rho \approx \|\hat w\|\log t` (sec 21, "\|w\| ~ log t") and the angle to the SVM
  direction is :math:`|P_\perp\tilde w|/\rho + o(1/\rho)`; both constants come from the SVM
  (`svm_asymptotics`), so the slow convergence is checked against a prediction at a finite horizon.
* Eq 88 / sec 21: "weight normalization does not converge to the normalized vector obtained by
  running GD on w and normalizing it at the end".  For the *induced* normalized flow (eq 42-43,
  54, 85) integrating it and normalizing GF afterwards agree to solver accuracy (chain rule,
  eq 75-76); eq 88 also prints :math:`\|\tilde w\|` (= 1) where :math:`\|w\|` belongs.  For WN
  in :math:`(g, v)` (eq 93-95) the trajectories do differ, but both converge to the SVM direction.
* Eq 89 prints :math:`\rho = \|w\|g`; with :math:`w = g v/\|v\|`, :math:`\rho = \|w\| = |g|`.
* Eq 91-92 print :math:`\partial L/\partial\tilde w = S\,\partial L/\partial w` with
  :math:`S = (I-\tilde w\tilde w^\top)/\rho`; that is the induced velocity of eq 76.  The
  (tangential) gradient of :math:`L(\rho\tilde w)` is :math:`\rho(I-\tilde w\tilde w^\top)\partial L/\partial w`.
* Eq 15 (multiplier keeping :math:`\|V\| = 1` after a step :math:`V + g - \lambda V`) prints
  :math:`\lambda = 1 - \sqrt{1 - \|g\|^2 + (V^\top g)^2 + V^\top g}`; solving
  :math:`\|(1-\lambda)V + g\| = 1` gives :math:`\lambda = 1 + V^\top g - \sqrt{1 - \|g\|^2 + (V^\top g)^2}`.
* Thm 7 (eq 62-64): :math:`L = e^{-w_1w_2-w_3w_4} + \lambda|w|^2` (``weight_decay = 2 lambda``).
  The printed determinant (eq 64) has :math:`e^{-2f}` where :math:`e^{+2f}` belongs (twice):
  :math:`\det H = e^{-4f}(4\lambda^2e^{2f}-1)(4\lambda^2e^{2f} + 2\lambda e^{f}|w|^2 + 2f - 1)`,
  valid at every :math:`w`; the printed form does not vanish on :math:`e^{-f} = 2\lambda`.  The
  critical circle :math:`w = (a, a, b, b)`, :math:`a^2 + b^2 = -\ln 2\lambda`, exists only for
  :math:`\lambda < 1/2` (not "for arbitrary lambda"), and there the origin (Hessian eigenvalues
  :math:`2\lambda\pm1`) is a saddle, not "a local minimum with a positive definite Hessian".  The
  zero mode rotates :math:`(w_1, w_3)` and :math:`(w_2, w_4)` together (the O(2) symmetry of sec
  19), not circles in the :math:`w_1`-:math:`w_2` and :math:`w_3`-:math:`w_4` planes.

Notes on the runs:

* Sec 6.2 says the unit-norm techniques are equivalent "for small values of lambda"; with the
  multiplier that keeps :math:`|V| = 1` the Lagrange field *equals* the WN field at :math:`\|v\| = 1`.
* WN and Lagrange directions relax :math:`\rho^2` times faster than GF's, so those flows are stiff
  at large t: they are run to ``STIFF_HORIZON`` = 1e15 (an explicit solver needs ~log^3 t steps).
* ReLU networks start label-aligned (`relu_starts`).  From generic starts a unit's hyperplane can
  come to rest on a data point; GF there is a sliding (Filippov) flow an explicit solver cannot follow.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
from scipy.optimize import minimize

import regflow as rf

#: The data set: two Gaussian blobs in the plane, separable by a line through the origin, with two
#: support vectors, the other margins >= 1.6 (so the asymptotic regime comes early), and every
#: cross-class inner product negative (so label-aligned ReLU units never reach a kink).
DATA_SEED = 134
PER_CLASS = 4
CLASS_CENTRES = ((1.2, 0.4), (-0.4, -1.2))
CLASS_SPREAD = 0.5
#: Long-run horizon (flow time) of the convergence measures, saved log-spaced from LONG_T0.
#: rho grows like log t, so an adaptive solver reaches it in a few hundred steps.
HORIZON = 1e40
LONG_T0 = 1e-2
LONG_SAVES = 201  # = the claims' saves (regflow._claims.CLAIM_SAVES)
#: Solver tolerances of the long runs.  Runs use the claims' number of saves and all of a
#: method's starts at once, so they reuse the compiled program of the claims' runs.
LONG_RTOL, LONG_ATOL = 1e-10, 1e-12
#: Horizon of the deep normalized-vs-GF comparison (the GF runs on scipy there: fewer decades, faster).
NORMALIZE_HORIZON = 1e20
#: Horizon of the WN and Lagrange flows: their direction moves rho^2 times faster than GF's, so
#: an explicit solver needs ~log(t)^3 steps (1e15: ~10^4 steps; 1e40 would pass diffrax's step budget).
STIFF_HORIZON = 1e15
#: Horizon of the standard claims (Conserved, Monotone) and learning rate of the maps.
T1 = 50.0
LR = 0.05
#: The angle to the SVM direction is checked to decrease from this time on (earlier, starts on
#: the far side of the SVM direction cross it).
MONOTONE_FROM = 1e2
#: Map steps of the map claims.
MAP_STEPS = 400
#: Margins above this (relative) are not support vectors of the SVM.
SV_RTOL = 1e-6
SVM_TOL = 1e-15
#: Thm 7: the lambdas checked (all < 1/2, where the critical circle exists).
THM7_LAMBDAS = (0.01, 0.05, 0.1, 0.25, 0.4, 0.49)
ACTIVATIONS = ("linear", "relu")


# ----------------------------------------------------------------------------- data and SVM


def dataset(seed=DATA_SEED, per_class=PER_CLASS):
    """Two labelled Gaussian blobs, ``{"x": (N, 2), "y": (N,)}`` with labels +-1 (N = 2 per_class)."""
    rng = np.random.default_rng(seed)
    pos = rng.normal(size=(per_class, 2)) * CLASS_SPREAD + np.asarray(CLASS_CENTRES[0])
    neg = rng.normal(size=(per_class, 2)) * CLASS_SPREAD + np.asarray(CLASS_CENTRES[1])
    return {"x": jnp.asarray(np.vstack([pos, neg])), "y": jnp.asarray(np.r_[np.ones(per_class), -np.ones(per_class)])}


def signed_data(data):
    r""":math:`z_n = y_n x_n` (labels folded in, as the paper does from eq 37 on)."""
    return np.asarray(data["y"])[:, None] * np.asarray(data["x"])


def hard_margin_svm(data):
    r"""The hard-margin SVM through the origin, :math:`\min\tfrac12|w|^2` s.t. :math:`y_nw\cdot x_n\ge1`
    (SLSQP).  Its direction is the max-margin direction; its margin is :math:`1/|\hat w|`.

    Raises ValueError when no line through the origin separates the data."""
    z = signed_data(data)
    start = np.linalg.lstsq(z, np.ones(len(z)), rcond=None)[0]
    res = minimize(lambda w: 0.5 * w @ w, start, jac=lambda w: w, method="SLSQP",
                   constraints=[{"type": "ineq", "fun": lambda w: z @ w - 1.0, "jac": lambda w: z}],
                   options={"ftol": SVM_TOL, "maxiter": 1000})
    if not res.success or np.min(z @ res.x) < 1.0 - 1e-8:
        raise ValueError("the data are not separable by a line through the origin: no hard-margin SVM exists")
    return res.x


def svm_asymptotics(data):
    r"""Constants of the asymptotics :math:`w(t) = \hat w\log t + \tilde w + o(1)` of the GF (Soudry et al.).

    Returns ``(w_hat, offset)``: the SVM :math:`\hat w` and :math:`|P_\perp\tilde w|`, where
    :math:`\hat w = \sum_{SV}\alpha_nz_n` and :math:`z_n\cdot\tilde w = -\ln\alpha_n` on the support
    vectors.  Needs as many support vectors as dimensions (else ValueError)."""
    z = signed_data(data)
    w_hat = hard_margin_svm(data)
    sv = np.flatnonzero(z @ w_hat < 1.0 + SV_RTOL)
    if len(sv) != z.shape[1]:
        raise ValueError(f"the SVM has {len(sv)} support vectors; the offset needs exactly {z.shape[1]}")
    alpha = np.linalg.solve(z[sv].T, w_hat)
    if np.any(alpha <= 0):
        raise ValueError("a support vector has a non-positive dual coefficient")
    w_tilde = np.linalg.solve(z[sv], -np.log(alpha))
    u = w_hat / np.linalg.norm(w_hat)
    return w_hat, float(np.linalg.norm(w_tilde - u * (u @ w_tilde)))


def angle(a, b):
    """Angle (radians) between two vectors, or row-wise for ``a`` of shape (n, d)."""
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    cos = (a @ b) / (np.linalg.norm(a, axis=-1) * np.linalg.norm(b))
    return np.arccos(np.clip(cos, -1.0, 1.0))


# ----------------------------------------------------------------------------- networks


def layer_shapes(depth, width, d_in=2):
    """Shapes of W_1 ... W_K of a scalar-output network: ``((1, d_in),)`` for depth 1."""
    if isinstance(depth, bool) or not isinstance(depth, (int, np.integer)) or depth < 1:
        raise ValueError(f"depth must be an int >= 1, got {depth!r}")
    if isinstance(width, bool) or not isinstance(width, (int, np.integer)) or width < 1:
        raise ValueError(f"width must be an int >= 1, got {width!r}")
    if depth == 1:
        return ((1, d_in),)
    return ((width, d_in),) + ((width, width),) * (depth - 2) + ((1, width),)


def _check_activation(activation):
    if activation not in ACTIVATIONS:
        raise ValueError(f"activation must be one of {ACTIVATIONS}, got {activation!r}")


def unflatten(w, shapes):
    """The layer matrices of a flat weight vector."""
    out, i = [], 0
    for r, c in shapes:
        out.append(w[i:i + r * c].reshape(r, c))
        i += r * c
    return out


def weight_names(shapes):
    return tuple(f"W{k + 1}_{i}{j}" for k, (r, c) in enumerate(shapes) for i in range(r) for j in range(c))


def network(layers, x, activation):
    r""":math:`f(W;x) = W_K\sigma(\cdots\sigma(W_1x))` (scalar)."""
    act = jax.nn.relu if activation == "relu" else (lambda h: h)
    h = x
    for W in layers[:-1]:
        h = act(W @ h)
    return (layers[-1] @ h)[0]


def end_to_end(w, shapes):
    r"""The linear network's vector :math:`\beta^\top = W_K\cdots W_1` (f = beta . x)."""
    return np.asarray(functools.reduce(lambda a, W: W @ a, unflatten(jnp.asarray(w), shapes), jnp.eye(shapes[0][1]))[0])


@functools.lru_cache(maxsize=None)
def model(shapes, activation):
    """Loss and quantities of one architecture, cached so that flows share compiled programs."""
    _check_activation(activation)
    K = len(shapes)

    def margins(w, data):
        layers = unflatten(w, shapes)
        return data["y"] * jax.vmap(lambda x: network(layers, x, activation))(data["x"])

    def loss(w, data):
        r"""Eq 36, 47: :math:`L = \sum_n e^{-y_nf(W;x_n)}`."""
        return jnp.sum(jnp.exp(-margins(w, data)))

    def layer_norms(w):
        return jnp.stack([jnp.sqrt(jnp.sum(W**2)) for W in unflatten(w, shapes)])

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
    return dict(K=K, margins=margins, loss=loss, rho=rho, balances=[balance(k) for k in range(K - 1)],
                normalized_margin=normalized_margin, flow=flow, layer_norms=layer_norms)


@functools.lru_cache(maxsize=None)
def normalized_field(shapes, activation, speed="induced"):
    r"""The flow in :math:`(\rho_1..\rho_K, V_1..V_K)`: eq 13 for :math:`\rho_k` and
    :math:`\dot V_k = s_k(I - V_kV_k^\top)\tilde B_k` with :math:`s_k = \rho/\rho_k^2` (``"induced"``:
    GF in these coordinates, eq 42 for K = 1, eq 54) or :math:`s_k = \rho` (``"lagrange"``: eq 14 with
    the multiplier :math:`2\lambda_k = V_k^\top g_k` that keeps :math:`\|V_k\| = 1`)."""
    _check_activation(activation)
    if speed not in ("induced", "lagrange"):
        raise ValueError(f"speed must be 'induced' or 'lagrange', got {speed!r}")
    K = len(shapes)

    def parts(y, data):
        rhos = y[:K]
        rho = jnp.prod(rhos)

        def soft_loss(v):  # -(1/rho) sum_n exp(-rho y_n f~_n(V)); its V-gradient is B~ (eq 78)
            layers = unflatten(v, shapes)
            m = data["y"] * jax.vmap(lambda x: network(layers, x, activation))(data["x"])
            return -jnp.sum(jnp.exp(-rho * m)) / rho, m

        B, m = jax.grad(soft_loss, has_aux=True)(y[K:])
        return rhos, rho, m, unflatten(B, shapes), unflatten(y[K:], shapes)

    def field(t, y, data):
        rhos, rho, m, Bs, Vs = parts(y, data)
        drive = jnp.sum(jnp.exp(-rho * m) * m)
        rho_dot = rho / rhos * drive
        v_dot = []
        for k in range(K):
            s = rho / rhos[k] ** 2 if speed == "induced" else rho
            v_dot.append((s * (Bs[k] - Vs[k] * jnp.sum(Vs[k] * Bs[k]))).ravel())
        return jnp.concatenate([rho_dot, *v_dot])

    return field


def to_normalized(w, shapes):
    """Flat weights -> ``(rho_1..rho_K, V_1 flat, ..., V_K flat)`` (works row-wise on (n, dim))."""
    w = np.asarray(w, dtype=float)
    flat = w.reshape(-1, w.shape[-1])
    out = []
    for row in flat:
        layers = unflatten(row, shapes)
        rhos = [np.linalg.norm(W) for W in layers]
        out.append(np.concatenate([rhos, *[(W / r).ravel() for W, r in zip(layers, rhos)]]))
    return np.asarray(out).reshape(w.shape[:-1] + (len(shapes) + w.shape[-1],))


def normalized_names(shapes):
    return tuple(f"rho{k + 1}" for k in range(len(shapes))) + tuple(n.replace("W", "V") for n in weight_names(shapes))


# ----------------------------------------------------------------------------- starts and runs


def separating_cone(data, grid=7201):
    """The angles ``(lo, hi)`` of the directions v with ``y_n v.x_n > 0`` for all n."""
    z = signed_data(data)
    theta = np.linspace(-np.pi, np.pi, grid)
    inside = theta[(np.stack([np.cos(theta), np.sin(theta)], axis=1) @ z.T).min(axis=1) > 0]
    if inside.size == 0:
        raise ValueError("the data are not separable by a line through the origin")
    return inside.min(), inside.max()


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
    """``n`` starts of norm ``scale`` whose network separates the data: random (rejection-sampled)
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


def linear_starts(data, n=4, radius=0.3):
    """Separating starts of the linear classifier: directions spread over the separating cone."""
    lo, hi = separating_cone(data)
    picks = np.linspace(lo, hi, n + 2)[1:-1]
    return radius * np.stack([np.cos(picks), np.sin(picks)], axis=1)


def long_ts(horizon=HORIZON):
    """Saves of the long runs: 0, then log-spaced from LONG_T0 to ``horizon``."""
    return np.concatenate([[0.0], np.logspace(np.log10(LONG_T0), np.log10(horizon), LONG_SAVES - 1)])


def long_run(system, starts, horizon=HORIZON, backend="auto"):
    """The flow from each of ``starts`` (n, dim) to ``horizon``, saved at `long_ts`; ``y`` is (n, 201, dim).

    A method's own flow runs on the default backend (reusing its claims' compiled program); a
    second flow it is compared with runs on ``backend="scipy"`` (only its field is compiled)."""
    traj = rf.integrate(system, np.atleast_2d(starts), horizon, batched=True, ts=long_ts(horizon), backend=backend,
                        rtol=LONG_RTOL, atol=LONG_ATOL)
    if not traj.ok:
        raise RuntimeError(f"the long run did not finish: {traj.status}")
    return traj


def _memo(fn):
    """Compute ``fn()`` once per built Method (several claims share one long run)."""
    return functools.lru_cache(maxsize=None)(fn)


# ----------------------------------------------------------------------------- linear classifier


def _linear_system():
    shapes = layer_shapes(1, 1)
    return shapes, model(shapes, "linear")


@rf.entry("normalized_flows.linear", source="Theory III sec 14.2, eq 36-37")
def linear() -> rf.Method:
    r"""Gradient flow of the exponential loss of a linear classifier (eq 36-37),
    :math:`\dot w = \sum_n z_ne^{-z_n\cdot w}`, and GD :math:`w \leftarrow w + \text{lr}\sum_n z_ne^{-z_n\cdot w}`.

    Started where :math:`w` separates the data, :math:`\rho = |w|` grows like
    :math:`|\hat w|\log t` (sec 21) and :math:`w/|w|` tends to the SVM direction."""
    data = dataset()
    shapes, mdl = _linear_system()
    flow = mdl["flow"].replace(args=data)
    w_hat = hard_margin_svm(data)
    starts = linear_starts(data)
    run = _memo(lambda: long_run(flow, starts))
    rv_flow = rf.ODE(normalized_field(shapes, "linear"), args=data)
    rho_rv = _memo(lambda: long_run(rv_flow, to_normalized(starts, shapes), backend="scipy"))

    def rho_slope(method):  # over the last 20 saves (4.2 decades of t), worst start
        traj = run()
        rho, logt = np.linalg.norm(traj.y[:, -21:], axis=-1), np.log(traj.t[-21:])
        return max((r[-1] - r[0]) / (logt[-1] - logt[0]) / np.linalg.norm(w_hat) - 1.0 for r in rho)

    def normalize_after(method):
        w = run().y
        return float(np.max(np.abs(w / np.linalg.norm(w, axis=-1, keepdims=True) - rho_rv().y[..., 1:])))

    def eq88_integrand(printed):
        @jax.jit
        @jax.vmap
        def error(w):  # (I - uu^T)/|w| dw/dt (printed: /|u| = 1) against d/dt (w/|w|) by JVP
            w_dot = flow.vector_field(0.0, w, data)
            _, want = jax.jvp(lambda x: x / jnp.linalg.norm(x), (w,), (w_dot,))
            u = w / jnp.linalg.norm(w)
            got = (w_dot - u * (u @ w_dot)) / (1.0 if printed else jnp.linalg.norm(w))
            return jnp.linalg.norm(got - want) / jnp.linalg.norm(want)

        return lambda method: float(jnp.max(error(jnp.asarray(method.points))))

    return rf.Method(
        flow=flow, map=rf.gradient_descent(mdl["loss"], lr=LR, names=flow.names, args=data),
        y0=starts, t1=T1, steps=MAP_STEPS, samples=np.vstack([starts, 3 * starts, 10 * starts]),
        claims=[
            rf.Monotone(mdl["loss"], name="loss", source="eq 37: gradient flow of eq 36, dL/dt = -|grad L|^2"),
            rf.Monotone(mdl["rho"], increasing=True, name="rho=|w|",
                        source="eq 43/77: d|w|/dt = sum_n e^{-z_n.w} z_n.w/|w| > 0 once w separates the data"),
            rf.Monotone(mdl["loss"], on="map", name="loss", source="GD on eq 36 with lr=0.05 decreases the loss"),
            rf.Holds(measure=rho_slope, lo=-1e-4, hi=1e-4, name="d rho / d log t = |w_svm|",
                     what="(d rho/d log t over t in [6e35, 1e40]) / |w_svm| - 1, worst of 4 starts",
                     source="sec 21: |w| ~ log t; the slope is 1/margin of the hard-margin SVM (Soudry et al. [1])"),
            rf.Holds(measure=normalize_after, lo=0.0, hi=1e-6, name="GF normalized after = eq 42-43",
                     what="max_t |w(t)/|w(t)| - V(t)|, V from integrating eq 42-43, t in [0, 1e40]",
                     source="eq 75-76: eq 42-43 are the GF in (rho, V) coordinates"),
            rf.Holds(measure=eq88_integrand(False), lo=0.0, hi=1e-12, name="d(w/|w|)/dt = (I-uu^T)/|w| dw/dt",
                     what="max rel. error against the JVP of w -> w/|w| at 12 points",
                     source="eq 76, 84: the velocity of the normalized vector"),
            rf.Holds(measure=eq88_integrand(True), lo=0.1, name="eq 88 integrand as printed",
                     what="max rel. error of (I-uu^T)/|u| dw/dt (|u| = 1) against d(w/|w|)/dt at 12 points",
                     source="eq 88 as printed",
                     erratum="eq 88 prints (I - w~w~^T)/|w~| (= 1); the velocity of w/|w| has 1/|w|"),
        ],
    )


# ----------------------------------------------------------------------------- (rho, V) flow


def unit_norm_sq(y, data=None):
    r""":math:`|V|^2` of a ``(rho, V)`` state."""
    return jnp.sum(y[1:] ** 2)


def rho_coord(y, data=None):
    return y[0]


def off_sphere_sq(y, data=None):
    return (jnp.sum(y[1:] ** 2) - 1.0) ** 2


def polar_field(t, y, data):
    r"""Eq 42-43 in the plane in coordinates :math:`(\theta, s = \ln\rho)`, :math:`V = (\cos\theta, \sin\theta)`:
    :math:`\dot\theta = V_\perp\cdot\tilde B/\rho`, :math:`\dot s = \sum_n e^{-\rho V\cdot z_n}V\cdot z_n/\rho`
    (a 2-D system for phase portraits)."""
    theta, rho = y[0], jnp.exp(y[1])
    v = jnp.stack([jnp.cos(theta), jnp.sin(theta)])
    v_perp = jnp.stack([-jnp.sin(theta), jnp.cos(theta)])
    z = data["y"][:, None] * data["x"]
    e = jnp.exp(-rho * (z @ v))
    return jnp.stack([v_perp @ (z.T @ e) / rho, jnp.sum(e * (z @ v)) / rho])


def _rescaled(starts, rhos=(3.0, 20.0)):
    """``(rho, V)`` starts and the same directions at larger rho (points for pointwise claims)."""
    return np.vstack([starts, *[np.c_[np.full(len(starts), r), starts[:, 1:]] for r in rhos]])


def _rv_starts(data):
    shapes = layer_shapes(1, 1)
    return to_normalized(linear_starts(data), shapes)


@rf.entry("normalized_flows.rho_v", source="Theory III sec 14.3, eq 42-43")
def rho_v() -> rf.Method:
    r"""The GF of the linear classifier in :math:`(\rho, V)` coordinates (eq 42-43):

    .. math:: \dot V = \frac1\rho\sum_n e^{-\rho V\cdot z_n}(z_n - VV^\top z_n),\qquad
              \dot\rho = \sum_n e^{-\rho V\cdot z_n}V\cdot z_n.

    :math:`\dot V\perp V` keeps :math:`|V| = 1`; :math:`V \to \hat w/|\hat w|` (sec 14.3) with
    angle :math:`|P_\perp\tilde w|/\rho + o(1/\rho)`, and :math:`\rho\approx|\hat w|\log t`."""
    data = dataset()
    shapes = layer_shapes(1, 1)
    flow = rf.ODE(normalized_field(shapes, "linear"), names=("rho", "v1", "v2"), args=data)
    w_hat, offset = svm_asymptotics(data)
    starts = _rv_starts(data)
    run = _memo(lambda: long_run(flow, starts))
    angles = _memo(lambda: angle(run().y[..., 1:], w_hat))  # (starts, saves)

    def rate(method):  # angle * rho at the horizon against |P_perp w~| from the SVM
        return float(np.max(np.abs(angles()[:, -1] * run().y[:, -1, 0] / offset - 1.0)))

    def late_monotone(method):  # largest increase of the angle once t >= MONOTONE_FROM
        return float(np.max(np.diff(angles()[:, run().t >= MONOTONE_FROM], axis=1)))

    def start_spread(method):  # max_{p,q} |w_p - w_q| at the horizon, w = rho V
        w = run().y[:, -1, :1] * run().y[:, -1, 1:]
        return float(np.max(np.linalg.norm(w[:, None] - w[None], axis=-1)))

    def stable_sphere(method):  # Lie derivative of (|V|^2 - 1)^2 at points off the sphere
        lq = jax.jit(jax.vmap(lambda y: rf.lie_derivative(flow, off_sphere_sq)(y, data)))
        pts = np.vstack([np.c_[np.full(len(starts), r), starts[:, 1:] * f] for r in (0.3, 3.0) for f in (0.8, 1.25)])
        return float(np.max(lq(jnp.asarray(pts))))

    samples = _rescaled(starts)
    return rf.Method(
        flow=flow, y0=starts, t1=T1, samples=samples,
        claims=[
            rf.Conserved(unit_norm_sq, name="|V|^2", source="sec 14.3: dV/dt is orthogonal to V, |V| = 1 is kept"),
            rf.Monotone(rho_coord, increasing=True, name="rho",
                        source="eq 43: drho/dt = sum_n e^{-rho V.z_n} V.z_n > 0 when V separates the data"),
            rf.Holds(measure=stable_sphere, hi=0.0, name="|V| = 1 attracting",
                     what="max d/dt (|V|^2-1)^2 at 16 separating points off the sphere (|V| = 0.8, 1.25)",
                     source="sec 14.3: unit normalization is stable under the dynamics"),
            rf.Holds(measure=lambda m: float(np.max(angles()[:, -1])), lo=0.0, hi=5e-3, name="angle to SVM at t=1e40",
                     what="max over 4 starts of angle(V(1e40), w_svm) [rad]",
                     source="sec 14.3: V converges to the hard-margin SVM direction"),
            rf.Holds(measure=rate, lo=0.0, hi=1e-4, name="angle * rho -> |P_perp w~|",
                     what="max over 4 starts |angle*rho / |P_perp w~| - 1| at t=1e40 (w~ from the SVM)",
                     source="sec 14.3 with Soudry et al. [1]: w = w_svm log t + w~ + o(1): angle = O(1/log t)"),
            rf.Holds(measure=late_monotone, hi=0.0, name="angle decreasing",
                     what="max increase of angle(V, w_svm) between log-spaced saves, t in [100, 1e40]",
                     source="sec 14.3: V approaches the SVM direction (monotonically once starts on the far "
                            "side have crossed it, t < 25 here)"),
            rf.Holds(measure=start_spread, lo=0.0, hi=1e-6, name="independent of the start",
                     what="max over pairs of 4 starts |rho V (p) - rho V (q)| at t = 1e40",
                     source="sec 7 remarks: for exponential losses and linear networks the convergence is "
                            "independent of initial conditions (w - w_svm log t -> w~ for every start)"),
        ],
    )


# ----------------------------------------------------------------------------- weight normalization


def wn_field(t, y, data):
    r"""Eq 93-95 as a flow: :math:`\dot g = -\tilde w^\top\partial_wL`,
    :math:`\dot v = -\frac{g}{\|v\|}(I - \tilde w\tilde w^\top)\partial_wL`, :math:`\tilde w = v/\|v\|`."""
    g, v = y[0], y[1:]
    u = v / jnp.linalg.norm(v)
    z = data["y"][:, None] * data["x"]
    G = z.T @ jnp.exp(-z @ (g * u))  # -dL/dw at w = g u
    return jnp.concatenate([(u @ G)[None], g / jnp.linalg.norm(v) * (G - u * (u @ G))])


def wn_step(lr):
    """GD on (g, v) with learning rate ``lr`` (the discrete weight normalization)."""
    return lambda k, y, data: y + lr * wn_field(0.0, y, data)


def wn_weights(y):
    """w = g v/|v| (eq 89) of ``(g, v)`` states (any leading shape)."""
    y = np.asarray(y)
    return y[..., :1] * y[..., 1:] / np.linalg.norm(y[..., 1:], axis=-1, keepdims=True)


def v_norm_sq(y, data=None):
    return jnp.sum(y[1:] ** 2)


def g_coord(y, data=None):
    return y[0]


@rf.entry("normalized_flows.weight_norm", source="Theory III sec 21.1, eq 89-95")
def weight_norm(v_norm: float = 1.0) -> rf.Method:
    r"""Weight normalization :math:`w = g\,v/\|v\|` (eq 89) of the linear classifier: gradient flow
    in :math:`(g, v)` (eq 93-95) and GD on :math:`(g, v)`.

    :math:`\dot v\perp v` keeps :math:`\|v\|`; the direction :math:`\tilde w = v/\|v\|` moves at
    :math:`g^2/\|v\|^2` times the speed of the induced GF direction (eq 84), so its trajectory
    differs from normalizing the GF (eq 88), though both end at the SVM direction."""
    if not v_norm > 0:
        raise ValueError(f"v_norm must be positive (|v| at the start), got {v_norm!r}")
    data = dataset()
    shapes, mdl = _linear_system()
    flow = rf.ODE(wn_field, names=("g", "v1", "v2"), args=data)
    gf = mdl["flow"].replace(args=data)
    w_hat, _ = svm_asymptotics(data)
    w0 = linear_starts(data)
    starts = np.c_[np.linalg.norm(w0, axis=1), v_norm * w0 / np.linalg.norm(w0, axis=1, keepdims=True)]
    wn_run = _memo(lambda: long_run(flow, starts, STIFF_HORIZON))
    gf_run = _memo(lambda: long_run(gf, w0, STIFF_HORIZON, backend="scipy"))

    def gap():  # (starts, saves): |w_WN/|w_WN| - w_GF/|w_GF||
        a, b = wn_weights(wn_run().y), gf_run().y
        unit = lambda x: x / np.linalg.norm(x, axis=-1, keepdims=True)  # noqa: E731
        return np.linalg.norm(unit(a) - unit(b), axis=-1)

    induced = normalized_field(shapes, "linear")

    @jax.jit
    @jax.vmap
    def speed_error(y):  # |dV/dt|_WN / |dV/dt|_GF (eq 84) against g^2/|v|^2 (g > 0)
        u = y[1:] / jnp.linalg.norm(y[1:])
        dv = wn_field(0.0, y, data)[1:]
        du_wn = (dv - u * (u @ dv)) / jnp.linalg.norm(y[1:])
        du_gf = induced(0.0, jnp.concatenate([y[:1], u]), data)[1:]
        return jnp.abs(jnp.linalg.norm(du_wn) / jnp.linalg.norm(du_gf) / (y[0] ** 2 / (y[1:] @ y[1:])) - 1.0)

    def tangential_gradient(printed):
        @jax.jit
        @jax.vmap
        def error(y):  # projected V-gradient of L(rho V) against rho^2 S dL/dw (printed: S dL/dw), S of eq 92
            rho, u = y[0], y[1:] / jnp.linalg.norm(y[1:])
            gv = jax.grad(lambda v: mdl["loss"](rho * v, data))(u)
            gv = gv - u * (u @ gv)
            S = (jnp.eye(2) - jnp.outer(u, u)) / rho
            want = S @ jax.grad(mdl["loss"])(rho * u, data) * (1.0 if printed else rho**2)
            return jnp.linalg.norm(gv - want) / jnp.linalg.norm(gv)

        return lambda method: float(jnp.max(error(jnp.asarray(method.points))))

    def printed_rho(method):  # eq 89 prints rho = |w| g; rho = |w| = |g|
        y = wn_run().y
        w = np.linalg.norm(wn_weights(y), axis=-1)
        return float(np.max(np.abs(w * y[..., 0] - w) / w))

    samples = np.vstack([starts, np.c_[3 * starts[:, :1], 2 * starts[:, 1:]], np.c_[8 * starts[:, :1], starts[:, 1:]]])
    return rf.Method(
        flow=flow, map=rf.Map(wn_step(LR), dt=LR, names=flow.names, args=data),
        y0=starts, t1=T1, steps=MAP_STEPS, samples=samples,
        claims=[
            rf.Conserved(v_norm_sq, name="|v|^2", source="eq 94-95: dL/dv = (g/|v|) S' dL/dw with S'v = 0"),
            rf.Monotone(g_coord, increasing=True, name="g",
                        source="eq 93: dg/dt = sum_n e^{-z_n.w} z_n.v/|v| > 0 when w separates the data"),
            rf.Monotone(v_norm_sq, increasing=True, on="map", name="|v|^2",
                        source="eq 94-95 discretized: each GD step on v is orthogonal to v, so |v|^2 grows by "
                               "lr^2 |dL/dv|^2 (the flow keeps it)"),
            rf.Holds(measure=lambda m: float(jnp.max(speed_error(jnp.asarray(m.points)))), lo=0.0, hi=1e-10,
                     name="WN direction speed = g^2/|v|^2 x GF's",
                     what="max rel. error of |dV/dt|_WN / |dV/dt|_eq84 = g^2/|v|^2 at 12 points",
                     source="eq 94 vs eq 84: 'qualitatively identical' dynamics, differing by the factor g^2/|v|^2"),
            rf.Holds(measure=lambda m: float(np.min(np.max(gap(), axis=1))), lo=1e-2, name="eq 88: WN != normalized GF",
                     what="min over 4 starts of max_t |w_WN/|w_WN| - w_GF/|w_GF||, same start, t in [0, 1e15]",
                     source="eq 88: normalizing and integrating do not commute for WN"),
            rf.Holds(measure=lambda m: float(np.max(gap()[:, -1])), lo=0.0, hi=1e-3, name="same limit",
                     what="max over 4 starts |w_WN/|w_WN| - w_GF/|w_GF|| at t = 1e15 (both -> SVM direction)",
                     source="sec 21: 'WN does not converge to the normalized GD vector'",
                     erratum="printed: WN does not converge to the normalized GD vector; the trajectories differ "
                             "(row above) but both converge to the SVM direction"),
            rf.Holds(measure=lambda m: float(np.max(angle(wn_weights(wn_run().y[:, -1]), w_hat))), lo=0.0, hi=1e-2,
                     name="WN angle to SVM at t=1e15", what="max over 4 starts angle(w_WN(1e15), w_svm) [rad]",
                     source="sec 21.1: WN dynamics qualitatively identical to sec 14.3 (converges to the SVM)"),
            rf.Holds(measure=tangential_gradient(False), lo=0.0, hi=1e-12, name="dL/dV = rho (I - VV^T) dL/dw",
                     what="max rel. error of the projected V-gradient of L(rho V) vs rho(I-VV^T)dL/dw at 12 points",
                     source="eq 90-92 (corrected): the gradient in the (rho, V) parametrization"),
            rf.Holds(measure=tangential_gradient(True), lo=0.1, name="eq 91-92 as printed",
                     what="max rel. error of printed dL/dV = S dL/dw, S = (I-VV^T)/rho, at 12 points",
                     source="eq 91-92 as printed",
                     erratum="printed dL/dV = (I-VV^T)/rho dL/dw (the induced velocity of eq 76); "
                             "the gradient is rho (I-VV^T) dL/dw"),
            rf.Holds(measure=printed_rho, lo=0.1, name="eq 89 as printed: rho = |w| g",
                     what="max_t | |w| g - |w| | / |w| along WN (rho = |w| = |g|)", source="eq 89 as printed",
                     erratum="printed rho = |w| g; with w = g v/|v|, rho = |w| = |g|"),
        ],
    )


# ----------------------------------------------------------------------------- Lagrange multiplier


def paper_g(y, data):
    r"""Eq 14's :math:`g = \rho\sum_n e^{-\rho V\cdot z_n}z_n` for a linear ``(rho, V)`` state."""
    z = data["y"][:, None] * data["x"]
    return y[0] * z.T @ jnp.exp(-y[0] * (z @ y[1:]))


def multiplier(y, data):
    r"""The continuous multiplier keeping :math:`|V| = 1` in eq 14: :math:`\lambda = V^\top g/2`."""
    return 0.5 * y[1:] @ paper_g(y, data)


def eq15_lambda(c, g_sq, lr, printed=False):
    r"""Eq 15 for the step :math:`V + \text{lr}\,g - \lambda V` (``lr = 1`` in the paper):
    :math:`\lambda = 1 + \text{lr}\,c - \sqrt{1 - \text{lr}^2(|g|^2 - c^2)}`, :math:`c = V^\top g`;
    ``printed=True``: :math:`1 - \sqrt{1 - \text{lr}^2|g|^2 + \text{lr}^2c^2 + \text{lr}\,c}`."""
    if printed:
        return 1.0 - jnp.sqrt(1.0 - lr**2 * g_sq + lr**2 * c**2 + lr * c)
    return 1.0 + lr * c - jnp.sqrt(1.0 - lr**2 * (g_sq - c**2))


def lagrange_step(lr, printed=False):
    r"""GD on eq 12 with the multiplier of eq 15: :math:`\rho \leftarrow \rho + \text{lr}\,\dot\rho`
    (eq 13), :math:`V \leftarrow V + \text{lr}\,g - \lambda V`."""

    def step(k, y, data):
        z = data["y"][:, None] * data["x"]
        e = jnp.exp(-y[0] * (z @ y[1:]))
        g = paper_g(y, data)
        lam = eq15_lambda(y[1:] @ g, g @ g, lr, printed)
        return jnp.concatenate([(y[0] + lr * jnp.sum(e * (z @ y[1:])))[None], y[1:] + lr * g - lam * y[1:]])

    return step


@rf.entry("normalized_flows.lagrange", source="Theory III sec 6.1, eq 12-16")
def lagrange() -> rf.Method:
    r"""The Lagrange-multiplier method (eq 12-14) for the linear classifier with the multiplier chosen
    to keep :math:`|V| = 1` (remark 1):

    .. math:: \dot\rho = \sum_n e^{-\rho V\cdot z_n}V\cdot z_n,\qquad
              \dot V = g - 2\lambda V,\quad g = \rho\sum_n e^{-\rho V\cdot z_n}z_n,\quad 2\lambda = V^\top g,

    and its discrete form with eq 15.  It coincides with weight normalization at :math:`\|v\| = 1`
    (sec 6.2: the unit-norm techniques are equivalent)."""
    data = dataset()
    shapes = layer_shapes(1, 1)
    flow = rf.ODE(normalized_field(shapes, "linear", "lagrange"), names=("rho", "v1", "v2"), args=data)
    w_hat, _ = svm_asymptotics(data)
    starts = _rv_starts(data)
    run = _memo(lambda: long_run(flow, starts, STIFF_HORIZON))
    gd = rf.Map(lagrange_step(LR), dt=LR, names=flow.names, args=data)
    printed_gd = rf.Map(lagrange_step(LR, printed=True), dt=LR, names=flow.names, args=data)

    def unit_drift(map_):
        def measure(method):
            traj = rf.iterate(map_, starts, MAP_STEPS, batched=True)
            return float(np.nanmax(np.abs(np.linalg.norm(traj.y[..., 1:], axis=-1) - 1.0)))

        return measure

    @jax.jit
    @jax.vmap
    def field_gap(y):
        f_wn = wn_field(0.0, y, data)
        return jnp.linalg.norm(flow.vector_field(0.0, y, data) - f_wn) / jnp.linalg.norm(f_wn)

    def same_field(method):
        return float(jnp.max(field_gap(jnp.asarray(method.points))))

    def eq16(method):  # |V - g/(2 lambda)| at the horizon, worst start
        y = jnp.asarray(run().y[:, -1])
        g = jax.vmap(lambda s: paper_g(s, data))(y)
        return float(jnp.max(jnp.linalg.norm(y[:, 1:] - g / jnp.sum(y[:, 1:] * g, axis=1, keepdims=True), axis=1)))

    def lam_decay(method):  # 2 lambda = rho drho/dt ~ |w_svm| rho / t: relative error at the horizon
        y = run().y[:, -1]
        lam = np.asarray(jax.vmap(lambda s: multiplier(s, data))(jnp.asarray(y)))
        return float(np.max(np.abs(2 * lam * STIFF_HORIZON / (y[:, 0] * np.linalg.norm(w_hat)) - 1.0)))

    return rf.Method(
        flow=flow, map=gd, y0=starts, t1=T1, steps=MAP_STEPS,
        samples=_rescaled(starts),
        claims=[
            rf.Conserved(unit_norm_sq, name="|V|^2", source="sec 6.1 remark 1: lambda(t) keeps |V| = 1"),
            rf.Monotone(rho_coord, increasing=True, name="rho", source="eq 13: rho grows while V separates the data"),
            rf.Holds(measure=unit_drift(gd), lo=0.0, hi=1e-12, name="eq 15 keeps |V| = 1 (map)",
                     what="max_k ||V_k| - 1| over 400 GD steps (lr=0.05) with the corrected eq 15",
                     source="sec 6.1 remark 1, eq 15 (corrected): lambda = 1 + V.g - sqrt(1 - |g|^2 + (V.g)^2)"),
            rf.Holds(measure=unit_drift(printed_gd), lo=1e-3, name="eq 15 as printed (map)",
                     what="max_k ||V_k| - 1| over 400 GD steps with the printed eq 15", source="eq 15 as printed",
                     erratum="printed lambda = 1 - sqrt(1 - |g|^2 + |V.g|^2 + V.g); solving |V + g - lambda V| = 1 "
                             "gives lambda = 1 + V.g - sqrt(1 - |g|^2 + (V.g)^2)"),
            rf.Holds(measure=same_field, lo=0.0, hi=1e-12, name="Lagrange = WN with |v| = 1",
                     what="max |f_Lagrange(y) - f_WN(y)| / |f_WN(y)| at 12 states (rho, V) = (g, v), |V| = 1",
                     source="sec 6.2: the Lagrange and tangent-gradient (WN) methods are equivalent [36]"),
            rf.Holds(measure=lam_decay, lo=0.0, hi=1e-2, name="lambda(t) -> 0 like rho |w_svm| / 2t",
                     what="max over 4 starts |2 lambda t / (rho |w_svm|) - 1| at t = 1e15",
                     source="eq 15: lambda(t) goes to zero because g(t) does (2 lambda = rho drho/dt)"),
            rf.Holds(measure=eq16, lo=0.0, hi=1e-3, name="eq 16: V = g/(2 lambda)",
                     what="max over 4 starts |V - g/(2 lambda)| at t = 1e15",
                     source="eq 16: V = g(t)/(2 lambda) asymptotically"),
            rf.Holds(measure=lambda m: float(np.max(angle(run().y[:, -1, 1:], w_hat))), lo=0.0, hi=1e-2,
                     name="angle to SVM at t=1e15", what="max over 4 starts angle(V(1e15), w_svm) [rad]",
                     source="Thm 3: eq 13-14 converge to maximum-margin solutions with unit norm"),
        ],
    )


# ----------------------------------------------------------------------------- deep networks


def _deep_setup(depth, width, activation):
    _check_activation(activation)
    if depth < 2:
        raise ValueError(f"depth must be >= 2 for a deep network (depth 1 is normalized_flows.linear), got {depth}")
    shapes = layer_shapes(depth, width)
    data = dataset()
    return shapes, data, model(shapes, activation)


@rf.entry("normalized_flows.deep", source="Theory III sec 16, eq 47-48; sec 7, eq 18")
def deep(depth: int = 2, width: int = 2, activation: str = "linear") -> rf.Method:
    r"""Gradient flow of the exponential loss of a small deep network (eq 47-48),
    :math:`\dot W_k = \sum_n y_n\partial_{W_k}f(W;x_n)e^{-y_nf(W;x_n)}`, linear or ReLU.

    :math:`\rho_k\dot\rho_k` is the same for all layers (eq 18), every :math:`\rho_k` grows once the
    network separates the data (eq 13), and for linear layers the end-to-end vector
    :math:`\beta = W_1^\top\cdots W_K^\top` turns to the SVM direction (Thm 3)."""
    shapes, data, mdl = _deep_setup(depth, width, activation)
    flow = mdl["flow"].replace(args=data)
    starts = separating_starts(shapes, activation, data, n=3, seed=depth)
    claims = [
        *[rf.Conserved(b, source="eq 18 (sec 7): d rho_k^2/dt is the same for every layer") for b in mdl["balances"]],
        rf.Monotone(mdl["loss"], name="loss", source="eq 48: gradient flow of eq 47"),
        rf.Monotone(mdl["rho"], increasing=True, name="rho",
                    source="eq 13: rho_k d rho_k/dt = sum_n e^{-f_n} f_n > 0 once f separates the data"),
    ]
    if activation == "linear":
        w_hat, _ = svm_asymptotics(data)
        run = _memo(lambda: long_run(flow, starts))

        def beta_angle(method):  # worst start
            return max(float(angle(end_to_end(w, shapes), w_hat)) for w in run().y[:, -1])

        claims.append(rf.Holds(measure=beta_angle, lo=0.0, hi=1e-2, name="angle to SVM at t=1e40",
                               what="max over 3 starts angle(W_K...W_1 at t=1e40, w_svm) [rad]",
                               source="Thm 3 (sec 6.3): convergence to the maximum-margin solution"))
    return rf.Method(flow=flow, map=rf.gradient_descent(mdl["loss"], lr=LR, names=flow.names, args=data),
                     y0=starts, t1=T1, steps=MAP_STEPS, samples=np.vstack([starts, 2 * starts]), claims=claims)


@rf.entry("normalized_flows.deep_relu", source="Theory III sec 16, eq 47-48; sec 7, eq 18")
def deep_relu(depth: int = 3, width: int = 2) -> rf.Method:
    r"""`deep` with ReLU activations (default: three layers), :math:`f = W_3\sigma(W_2\sigma(W_1x))`,
    from label-aligned starts (`relu_starts`)."""
    return deep(depth=depth, width=width, activation="relu")


@rf.entry("normalized_flows.deep_normalized", source="Theory III sec 17, eq 54; sec 6.1, eq 13")
def deep_normalized(depth: int = 2, width: int = 2, activation: str = "relu") -> rf.Method:
    r"""The deep GF in normalized coordinates :math:`(\rho_k, V_k)` (eq 54, 13):

    .. math:: \dot\rho_k = \frac{\rho}{\rho_k}\sum_n e^{-\rho y_n\tilde f_n}y_n\tilde f_n,\qquad
              \dot V_k = \frac{\rho}{\rho_k^2}(I - V_kV_k^\top)\tilde B_k.

    Each :math:`\|V_k\| = 1` is kept, :math:`\rho_k^2 - \rho_{k+1}^2` is conserved (eq 18) and the
    solution is the GF normalized layer by layer (eq 87)."""
    shapes, data, mdl = _deep_setup(depth, width, activation)
    K = len(shapes)
    flow = rf.ODE(normalized_field(shapes, activation), names=normalized_names(shapes), args=data)
    w_starts = separating_starts(shapes, activation, data, n=3, seed=depth)
    starts = to_normalized(w_starts, shapes)
    sizes = np.cumsum([0] + [r * c for r, c in shapes]) + K

    def unit(k):
        def q(y, data=None):
            return jnp.sum(y[sizes[k]:sizes[k + 1]] ** 2)

        q.__name__ = f"|V{k + 1}|^2"
        return q

    def gap(k):
        def q(y, data=None):
            return y[k] ** 2 - y[k + 1] ** 2

        q.__name__ = f"rho{k + 1}^2-rho{k + 2}^2"
        return q

    def rho_prod(y, data=None):
        return jnp.prod(y[:K])

    def normalize_after(method):
        a = long_run(flow, starts, NORMALIZE_HORIZON).y
        b = to_normalized(long_run(mdl["flow"].replace(args=data), w_starts, NORMALIZE_HORIZON, backend="scipy").y,
                          shapes)
        return float(np.max(np.abs(b - a) / np.maximum(1.0, np.abs(a))))

    samples = np.vstack([starts, to_normalized(2 * w_starts, shapes)])
    return rf.Method(
        flow=flow, y0=starts, t1=T1, samples=samples,
        claims=[
            *[rf.Conserved(unit(k), source="eq 54: dV_k/dt is orthogonal to V_k") for k in range(K)],
            *[rf.Conserved(gap(k), source="eq 13 and 18: rho_k d rho_k/dt is independent of k") for k in range(K - 1)],
            rf.Monotone(rho_prod, increasing=True, name="rho",
                        source="eq 13: d rho_k/dt = (rho/rho_k) sum_n e^{-rho f~_n} f~_n > 0 once f separates"),
            rf.Holds(measure=normalize_after, lo=0.0, hi=1e-6, name="GF normalized after = eq 54",
                     what="max_t relative |normalize(GF(t)) - (rho_k, V_k)(t)|, 3 starts, t in [0, 1e20]",
                     source="eq 54, 87: the normalized flow is the GF in (rho_k, V_k) coordinates"),
        ],
    )


# ----------------------------------------------------------------------------- Thm 7


def thm7_exp_loss(w, args=None):
    r"""Eq 62 without the penalty: :math:`e^{-w_1w_2 - w_3w_4}` (one example x = (1, 1))."""
    return jnp.exp(-(w[0] * w[1] + w[2] * w[3]))


def thm7_loss(lam):
    r"""Eq 62: :math:`L = e^{-w_1w_2 - w_3w_4} + \lambda|w|^2`."""
    return lambda w, args=None: thm7_exp_loss(w) + lam * jnp.sum(w**2)


def _check_lam(lam):
    lam = float(lam)
    if not 0.0 < lam < 0.5:
        raise ValueError(f"lam must lie in (0, 0.5): the critical set e^(-f) = 2 lam exists only there, got {lam}")
    return lam


def critical_circle(lam, n=8, phase=0.1):
    r"""Points of the critical set :math:`w = (a, a, b, b)`, :math:`a^2 + b^2 = -\ln 2\lambda`."""
    r = np.sqrt(-np.log(2.0 * _check_lam(lam)))
    th = phase + 2 * np.pi * np.arange(n) / n
    a, b = r * np.cos(th), r * np.sin(th)
    return np.stack([a, a, b, b], axis=1)


def thm7_spectrum(lam):
    r"""Hessian eigenvalues on the critical circle: :math:`\{0, 4\lambda, 4\lambda, -4\lambda\ln 2\lambda\}`."""
    return lambda w: np.array([0.0, 4 * lam, 4 * lam, -4 * lam * np.log(2 * lam)])


@jax.jit
def thm7_hessians(points, lams):
    r"""Hessians of eq 62 at ``points`` (n, 4), one :math:`\lambda` per point: :math:`\nabla^2e^{-f} + 2\lambda I`."""
    return jax.vmap(lambda w, lam: jax.hessian(thm7_exp_loss)(w) + 2.0 * lam * jnp.eye(4))(points, lams)


def det_hessian(w, lam):
    r"""Eq 64 corrected, at any :math:`w` (rows of ``w`` with ``lam`` broadcast):
    :math:`e^{-4f}(4\lambda^2e^{2f}-1)(4\lambda^2e^{2f} + 2\lambda e^f|w|^2 + 2f - 1)`."""
    w = np.asarray(w, dtype=float)
    f = w[..., 0] * w[..., 1] + w[..., 2] * w[..., 3]
    q = 4 * lam**2 * np.exp(2 * f)
    return np.exp(-4 * f) * (q - 1) * (q + 2 * lam * np.exp(f) * np.sum(w**2, axis=-1) + 2 * f - 1)


def det_hessian_printed(w, lam):
    r"""Eq 64 as printed: :math:`e^{-4f}(4\lambda^2e^{-2f}-1)(4\lambda^2e^{-2f} + 2\lambda e^f|w|^2 + 2f - 1)`."""
    w = np.asarray(w, dtype=float)
    f = w[..., 0] * w[..., 1] + w[..., 2] * w[..., 3]
    q = 4 * lam**2 * np.exp(-2 * f)
    return np.exp(-4 * f) * (q - 1) * (q + 2 * lam * np.exp(f) * np.sum(w**2, axis=-1) + 2 * f - 1)


def _random_points(n=40, seed=11, scale=1.0):
    return np.random.default_rng(seed).normal(size=(n, 4)) * scale


def _rotation_generator(w, planes):
    """The infinitesimal rotation of the coordinate ``planes`` ((i, j), ...) applied to w."""
    out = np.zeros(4)
    for i, j in planes:
        out[i], out[j] = -w[j], w[i]
    return out


@rf.entry("normalized_flows.regularized_hessian", source="Theory III sec 19, Thm 7, eq 62-64")
def regularized_hessian(lam: float = 0.1) -> rf.Method:
    r"""Gradient flow of eq 62, :math:`L = e^{-w_1w_2-w_3w_4} + \lambda|w|^2` (``weight_decay = 2 lam``).

    Critical points: :math:`w_1 = \frac{e^{-f}}{2\lambda}w_2`, :math:`w_2 = \frac{e^{-f}}{2\lambda}w_1`
    (eq 63), so the origin and the circle :math:`e^{-f} = 2\lambda`, :math:`w = (a, a, b, b)`.  On the
    circle :math:`H = 2\lambda(gg^\top + I - P)` with eigenvalues
    :math:`\{0, 4\lambda, 4\lambda, -4\lambda\ln2\lambda\}`: :math:`\det H = 0` for every
    :math:`\lambda\in(0, 1/2)` (Thm 7)."""
    lam = _check_lam(lam)
    loss = thm7_loss(lam)
    flow = rf.gradient_flow(thm7_exp_loss, weight_decay=2.0 * lam, names=("w1", "w2", "w3", "w4"))
    circle = critical_circle(lam)
    rng = np.random.default_rng(5)
    guesses = circle * 1.1 + 0.05 * rng.normal(size=circle.shape)

    set_pts = np.vstack([critical_circle(l) for l in THM7_LAMBDAS])
    set_lams = np.repeat(THM7_LAMBDAS, len(set_pts) // len(THM7_LAMBDAS))
    rand_pts = np.tile(_random_points(), (len(THM7_LAMBDAS), 1))
    rand_lams = np.repeat(THM7_LAMBDAS, len(_random_points()))

    def det_on_set(method):  # |det H| / |H|_2^4 on the set, for every lambda tried
        H = thm7_hessians(set_pts, set_lams)
        return float(np.max(np.abs(np.linalg.det(H)) / np.linalg.norm(H, 2, axis=(1, 2)) ** 4))

    def det_formula(printed):
        formula = det_hessian_printed if printed else det_hessian

        def measure(method):  # relative error of the formula against det H at random w, every lambda
            d = np.linalg.det(thm7_hessians(rand_pts, rand_lams))
            return float(np.max(np.abs(formula(rand_pts, rand_lams) - d) / np.abs(d)))

        return measure

    def printed_factor(method):  # the factor of eq 64 that should vanish on the set, as printed
        f = set_pts[:, 0] * set_pts[:, 1] + set_pts[:, 2] * set_pts[:, 3]
        return float(np.min(np.abs(4 * set_lams**2 * np.exp(-2 * f) - 1)))

    def rayleigh(planes, reduce):
        def measure(method):  # v^T H v / (4 lam |v|^2) along the rotation of the given planes, every lambda
            H = thm7_hessians(set_pts, set_lams)
            v = np.stack([_rotation_generator(p, planes) for p in set_pts])
            return float(reduce(np.abs(np.einsum("ni,nij,nj->n", v, H, v)) / np.sum(v**2, axis=1) / (4 * set_lams)))

        return measure

    return rf.Method(
        flow=flow, map=rf.gradient_descent(thm7_exp_loss, lr=LR, weight_decay=2.0 * lam, names=flow.names),
        y0=np.array([[0.9, 0.4, -0.3, 1.2], [0.2, 1.0, 0.8, 0.1]]), t1=T1,
        claims=[
            rf.EquilibriumSet(guesses=guesses, on=lambda w, a: jnp.exp(-(w[0] * w[1] + w[2] * w[3])) - 2 * lam,
                              kind="degenerate sink", zero_modes=1, name="e^-f = 2 lam",
                              source="Thm 7, eq 63: the critical set e^{-f} = 2 lambda is degenerate"),
            rf.Spectrum(at=circle, expect=thm7_spectrum(lam), loss=loss, name="Hessian on e^-f = 2 lam",
                        source="Thm 7: H = 2 lam (g g^T + I - P) on the set: {0, 4 lam, 4 lam, -4 lam ln 2 lam}"),
            rf.Holds(measure=det_on_set, lo=0.0, hi=1e-12, name="det H = 0 on the set, every lambda",
                     what=f"max |det H| / |H|_2^4 on 8 points of the set, lambda in {list(THM7_LAMBDAS)}",
                     source="Thm 7: at e^{-f} = 2 lambda the determinant is 0 for arbitrary lambda (< 1/2)"),
            rf.Holds(measure=det_formula(False), lo=0.0, hi=1e-8, name="eq 64 corrected",
                     what="max rel. error of e^{-4f}(4l^2e^{2f}-1)(4l^2e^{2f}+2l e^f|w|^2+2f-1) vs det H, "
                          "40 random w x 6 lambda",
                     source="eq 64 with e^{+2f}: det H at every w"),
            rf.Holds(measure=det_formula(True), lo=0.1, name="eq 64 as printed",
                     what="max rel. error of the printed eq 64 vs det H, 40 random w x 6 lambda",
                     source="eq 64 as printed",
                     erratum="printed 4 lam^2 e^{-2f} (twice); correct 4 lam^2 e^{+2f}"),
            rf.Holds(measure=printed_factor, lo=1e-2, name="printed eq 64 on the set",
                     what=f"min |4 lam^2 e^(-2f) - 1| (printed factor) on 8 points of the set, "
                          f"lambda in {list(THM7_LAMBDAS)}",
                     source="eq 64 as printed vs Thm 7's conclusion",
                     erratum="the printed eq 64 does not vanish on e^{-f} = 2 lam; the corrected one does"),
            rf.EquilibriumSet(guesses=np.array([[0.03, -0.02, 0.01, 0.02]]), on=lambda w, a: jnp.sum(w**2),
                              kind="saddle", zero_modes=0, name="origin",
                              source="Thm 7 proof: the origin (Hessian eigenvalues 2 lam +- 1)",
                              erratum="printed: a local minimum with positive definite Hessian; for lam < 1/2 "
                                      "(where the degenerate set exists) it is a saddle"),
            rf.Spectrum(at=np.zeros((1, 4)), expect=lambda w: [2 * lam - 1, 2 * lam - 1, 2 * lam + 1, 2 * lam + 1],
                        loss=loss, name="Hessian at the origin",
                        source="eq 62 at w = 0: H = 2 lam I - P, eigenvalues 2 lam -+ 1 (twice each)"),
            rf.Holds(measure=rayleigh(((0, 2), (1, 3)), np.max), lo=0.0, hi=1e-12, name="zero mode = O(2) rotation",
                     what="max |v^T H v| / (4 lam |v|^2) on the set (6 lambdas), v = rotation of (w1,w3), (w2,w4)",
                     source="sec 19: the regularized loss is O(2)-invariant; its orbit is the critical circle"),
            rf.Holds(measure=rayleigh(((0, 1), (2, 3)), np.min), lo=0.5, name="circles in w1-w2, w3-w4 planes",
                     what="min |v^T H v| / (4 lam |v|^2) on the set (6 lambdas), v = rotation of (w1,w2), (w3,w4)",
                     source="Thm 7 proof as printed",
                     erratum="printed: degeneracy from circles in the w1-w2 and w3-w4 planes; those rotations "
                             "have curvature 4 lam, the zero mode rotates (w1,w3) and (w2,w4)"),
        ],
    )
