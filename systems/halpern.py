r"""Halpern iterations and norm-minimizing gradient descent (NMGD).

Banburski, Liao, Miranda, Rosasco, Hidary, Poggio, "Theory III: Dynamics and Generalization in
Deep Networks", eq 9 (sec 5.1), section 12 (eq 25-26, Theorem 4-5), section 13-14.1 (eq 28-29),
appendix 20 (Theorem 12).

With :math:`T = I - \gamma\nabla L` (non-expansive for convex :math:`L` when
:math:`\gamma\lambda_{max}(\nabla^2L)\le 2`), Halpern's iteration with anchor 0 (eq 25) is

.. math:: w_{n+1} = (1-\lambda_n)\,Tw_n
          \iff w_{n+1} - w_n = -(1-\lambda_n)\gamma\nabla L(w_n) - \lambda_n w_n
          \qquad\text{(eq 26 = eq 9, NMGD)}

with :math:`\lambda_n \to 0`, :math:`\sum\lambda_n = \infty`, e.g. :math:`\lambda_n = n^{-a}`,
:math:`0 < a < 1` (Theorem 5).  It converges to the fixed point of :math:`T` of smallest norm;
on underdetermined least squares (eq 28) that is :math:`X^+y`, while plain GD converges to
:math:`(I - X^+X)w_0 + X^+y` (the null-space part of :math:`w_0` is invariant, sec 14.1).
In learning-rate time (:math:`t = n\gamma`) eq 26 is the Euler step of the non-autonomous flow

.. math:: \dot w = -\nabla L(w) - \mu(t)\,w,\qquad \mu(t) = c\,(t+\tau)^{-a},

gradient flow with a vanishing weight decay; the paper's :math:`\lambda_n = (n + n_0)^{-a}`
corresponds to :math:`c = \gamma^{a-1}`, :math:`\tau = n_0\gamma` (`paper_partner`).  The null-space
part decays as :math:`\exp(-\int_0^t\mu)`, which vanishes iff :math:`a \le 1`; the rest of the
distance to :math:`X^+y` is the Tikhonov bias :math:`w_\mu - X^+y` of the regularization path
:math:`w_\mu = \arg\min L + \tfrac\mu2|w|^2`, which vanishes as :math:`\mu \to 0` (sec 13 remark:
the pseudoinverse as the :math:`\lambda \to 0` limit of regularization).

Corrections recorded here (each with a measured row):

* :math:`\lambda_n = 1/n^a` taken literally from :math:`n = 1` (Theorem 5's :math:`k_1 = 0`)
  sets :math:`\lambda_1 = 1`: the first NMGD step returns :math:`w = 0` from every start.
  Independence of the initial condition is then trivial and holds for every :math:`a`
  (:math:`a = 1.5` converges to :math:`X^+y` too).  The statement needs :math:`\lambda_n < 1`,
  e.g. :math:`\lambda_n = (n + n_0)^{-a}` with :math:`n_0 \ge 1`; then :math:`a > 1` fails.
* Theorem 5's first sentence: :math:`x_n = kTx_{n-1}`, :math:`|k| < 1`, converges to the fixed
  point of :math:`kT` (a contraction), not to "one of the fixed points of :math:`T`".
* Appendix 20, Theorem 12(a): :math:`\|w_{t+1} - w_*\|^2 \le (1-\gamma L)^{2(t+1)}\|w_0 - w_*\|^2`
  (L the smoothness constant) is false for degenerate (not strongly convex) losses: GD
  contracts at :math:`\max_i|1 - \gamma\lambda_i|` over the *nonzero* Hessian eigenvalues.

Weight decay conventions: the flow's :math:`\mu(t)\,w` is regflow's ``weight_decay = mu``
(penalty :math:`\tfrac\mu2|w|^2`).
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np

import regflow as rf

#: Underdetermined least squares: X of shape (N_EQ, DIM), fixed seed, largest singular value 1.
N_EQ, DIM, SEED = 3, 6, 5
#: Learning rate of the least-squares maps: gamma * lambda_max(H) = 0.5 (H = 2 X^T X).
LR = 0.25
#: Halpern exponent (lambda_n = n^-a): the distance decays like max(exp(-c t^(1-a)/(1-a)), t^-a),
#: and a = 3/4 makes both small by T1.
A = 0.75
#: An exponent with summable lambda_n (sum_n n^-a < infinity): Halpern's sum lambda_n = infinity fails.
A_FAST = 1.5
#: lambda_n = (n + N0)^-a: N0 = 1 is the paper's literal schedule (lambda_1 = 1).
N0 = 2
#: Horizon (learning-rate time) of the NMGD runs.
T1 = 1e4
#: Horizon of the plain GD runs (the slowest mode decays like exp(-0.87 t)).
T1_GD = 60.0
#: Saves of the measure runs (the claims' own flow runs save 201 times: same shape, one compile).
SAVES = 201
#: Tolerances of the measure runs (runtime arguments: no recompilation).
RTOL, ATOL = 1e-11, 1e-13
#: Hidden width of the two-layer linear network.
HIDDEN = 3
#: Learning rate of the two-layer network's map.
LR_DEEP = 0.1
#: Schedule offset of the two-layer network: lambda_0 = 100^-0.75 = 0.03.  With n0 = 2 the first
#: steps (lambda ~ 0.5) drive the weights to within |w|^2 ~ 0.01 of the origin, and the run would
#: then be GD from a tiny initialization; with n0 = 100 |w|^2 never drops below 3 (minimum norm 3.55).
N0_DEEP = 100


def _positive(x, name):
    x = float(x)
    if not (np.isfinite(x) and x > 0):
        raise ValueError(f"{name} must be positive and finite, got {x}")
    return x


def _check_n0(n0):
    if isinstance(n0, bool) or not isinstance(n0, (int, np.integer)) or n0 < 1:
        raise ValueError(f"n0 must be an int >= 1 (lambda_n = (n + n0)^-a must be <= 1), got {n0!r}")
    return int(n0)


# ----------------------------------------------------------------------------- the problem


def problem(seed=SEED):
    """X (N_EQ x DIM, largest singular value 1) and y, float64, from a fixed seed."""
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(N_EQ, DIM))
    X /= np.linalg.svd(X, compute_uv=False)[0]
    return {"X": jnp.asarray(X), "y": jnp.asarray(rng.normal(size=N_EQ))}


def loss(w, args):
    r"""Eq 28: :math:`L(w) = \sum_n (y_n - w^\top x_n)^2 = |y - Xw|^2`."""
    return jnp.sum((args["y"] - args["X"] @ w) ** 2)


def pinv_solution(args):
    r""":math:`X^+y`, the minimum-norm fixed point of :math:`T`."""
    return np.linalg.pinv(np.asarray(args["X"])) @ np.asarray(args["y"])


def gd_limit(w0, args):
    r"""Where GD from :math:`w_0` converges: :math:`(I - X^+X)w_0 + X^+y`."""
    X = np.asarray(args["X"])
    P = np.linalg.pinv(X) @ X
    return np.asarray(w0) @ (np.eye(X.shape[1]) - P).T + pinv_solution(args)


def hessian_matrix(args):
    r""":math:`H = 2X^\top X` (constant)."""
    X = np.asarray(args["X"])
    return 2.0 * X.T @ X


def ridge_path(mu, args):
    r"""The regularization path :math:`w_\mu = (H + \mu I)^{-1}\,2X^\top y`."""
    X, y = np.asarray(args["X"]), np.asarray(args["y"])
    return np.linalg.solve(hessian_matrix(args) + mu * np.eye(X.shape[1]), 2.0 * X.T @ y)


def null_coordinate(i):
    r"""The i-th coordinate of w in an orthonormal basis of the null space of X (invariant under GD)."""

    def q(w, args):
        basis = jnp.linalg.svd(args["X"])[2][N_EQ:]
        return basis[i] @ w

    q.__name__ = f"null coordinate {i + 1}"
    return q


def names(dim=DIM):
    return tuple(f"w{i + 1}" for i in range(dim))


def starts(n=4, dim=DIM, seed=11, scale=2.0):
    """Random starts plus the origin (GD from 0 reaches the minimum norm)."""
    rng = np.random.default_rng(seed)
    return np.vstack([np.zeros(dim), scale * rng.normal(size=(n - 1, dim))])


# ----------------------------------------------------------------------------- NMGD: map and flow


def paper_schedule(a, n0=N0):
    r"""Eq 26: :math:`\lambda_n = (n + n_0)^{-a}` at step n = 0, 1, ... (:math:`n_0 = 1`: the
    paper's :math:`1/n^a` from n = 1)."""
    a, n0 = _positive(a, "a"), _check_n0(n0)
    return lambda k: (jnp.asarray(k, dtype=jnp.float64) + n0) ** (-a)


def regularization(a, c, tau):
    r""":math:`\mu(t) = c\,(t+\tau)^{-a}`, the vanishing weight decay of the NMGD flow."""
    a, c, tau = _positive(a, "a"), _positive(c, "c"), _positive(tau, "tau")
    return lambda t: c * (t + tau) ** (-a)


def nmgd_map(loss_fn, *, lr, schedule, names=None, args=None) -> rf.Map:
    r"""NMGD, eq 26: :math:`w_{n+1} = w_n - (1-\lambda_n)\gamma\nabla L(w_n) - \lambda_n w_n`,
    ``schedule(n) -> lambda_n``; ``dt = lr``.

    Example
    -------
    >>> m = nmgd_map(loss, lr=0.25, schedule=paper_schedule(0.75), args=problem())
    """
    lr = _positive(lr, "lr")
    grad = jax.grad(loss_fn)

    def step(k, w, a):
        lam = schedule(k)
        return w - (1.0 - lam) * lr * grad(w, a) - lam * w

    return rf.Map(step, dt=lr, names=names, args=args)


def halpern_map(loss_fn, *, lr, schedule, names=None, args=None) -> rf.Map:
    r"""Eq 25 with anchor 0: :math:`x_{n+1} = (1 - s_n)\,T x_n`, :math:`T = I - \gamma\nabla L`."""
    lr = _positive(lr, "lr")
    grad = jax.grad(loss_fn)
    return rf.Map(lambda k, w, a: (1.0 - schedule(k)) * (w - lr * grad(w, a)), dt=lr, names=names, args=args)


def nmgd_flow(loss_fn, *, a, c=1.0, tau=1.0, names=None, args=None) -> rf.ODE:
    r"""Continuous NMGD: :math:`\dot w = -\nabla L(w) - c\,(t+\tau)^{-a}\,w` (non-autonomous).

    Example
    -------
    >>> flow = nmgd_flow(loss, a=0.75, c=2 ** 0.5, tau=0.5, args=problem())
    """
    mu = regularization(a, c, tau)
    grad = jax.grad(loss_fn)
    return rf.ODE(lambda t, w, p: -grad(w, p) - mu(t) * w, names=names, args=args)


def paper_partner(lr, a, n0=N0):
    r"""``(c, tau)`` of the flow whose Euler step with step ``lr`` is eq 26 with
    :math:`\lambda_n = (n+n_0)^{-a}`: :math:`\lambda_n = \gamma\,\mu(n\gamma)` gives
    :math:`c = \gamma^{a-1}`, :math:`\tau = n_0\gamma`."""
    lr, a, n0 = _positive(lr, "lr"), _positive(a, "a"), _check_n0(n0)
    return lr ** (a - 1.0), n0 * lr


def flow_schedule(a, c, tau, h):
    r""":math:`\lambda_k = h\,\mu(kh)`: eq 26 with step ``h`` as the Euler step of `nmgd_flow`."""
    mu = regularization(a, c, tau)
    return lambda k: h * mu(h * jnp.asarray(k, dtype=jnp.float64))


# ----------------------------------------------------------------------------- measures


def _relative_rows(a, b):
    a, b = np.atleast_2d(a), np.atleast_2d(b)
    return np.linalg.norm(a - b, axis=-1)


@functools.lru_cache(maxsize=16)
def _flow_end(method, t1=None):
    """States of the method's flow at its ``t1`` from every start (cached per method)."""
    t1 = method.t1 if t1 is None else t1
    traj = rf.integrate(method.flow, method.y0, t1, ts=np.linspace(0.0, t1, SAVES), rtol=RTOL, atol=ATOL, batched=True)
    if not traj.ok or not np.all(np.isfinite(traj.y)):
        raise RuntimeError(f"the flow did not finish: {traj.status}")
    return traj.y[:, -1]


@functools.lru_cache(maxsize=16)
def _map_end(method):
    """States of the method's map after ``steps`` from every start (cached per method)."""
    traj = rf.iterate(method.map, method.y0, method.steps, every=max(1, method.steps // 100), batched=True)
    if not traj.ok:
        raise RuntimeError(f"the map did not finish: {traj.status}")
    return traj.y[:, -1]


def _end(method, on):
    return _flow_end(method) if on == "flow" else _map_end(method)


def gd_limit_error(on):
    r""":math:`\max_{w_0}\|w_\infty - ((I - X^+X)w_0 + X^+y)\| / \|w_0 - \text{limit}\|`."""

    def measure(method):
        args = method.flow.args
        want = gd_limit(method.y0, args)
        scale = np.maximum(np.linalg.norm(method.y0 - want, axis=1), 1.0)
        return float(np.max(_relative_rows(_end(method, on), want) / scale))

    return measure


def distance_to_pinv(on, reduce="max"):
    r""":math:`\|w_{end} - X^+y\| / \|X^+y\|` over the starts (``reduce``: max or min)."""

    def measure(method):
        args = method.flow.args
        xs = pinv_solution(args)
        d = _relative_rows(_end(method, on), xs) / np.linalg.norm(xs)
        return float(getattr(np, reduce)(d))

    return measure


def spread(on):
    r"""Spread of the end states over the starts relative to the starts' spread:
    independence of the initial condition."""

    def measure(method):
        end = _end(method, on)
        return float(np.ptp(end, axis=0).max() / np.ptp(method.y0, axis=0).max())

    return measure


def _final_mu(method, on):
    """The regularization at the end: mu(t1) for the flow; lambda/((1-lambda) gamma) for the map."""
    if on == "flow":
        return float(method.view["mu"](method.t1))
    lam = float(method.view["schedule"](method.steps - 1))
    return lam / ((1.0 - lam) * method.map.dt)


def ridge_gap(on):
    r""":math:`\max\|w_{end} - w_\mu\| / \|w_{end} - X^+y\|`, :math:`w_\mu` the regularization path at
    the final :math:`\mu`: the remaining distance to :math:`X^+y` is the vanishing Tikhonov bias."""

    def measure(method):
        args = method.flow.args
        end = _end(method, on)
        ridge = ridge_path(_final_mu(method, on), args)
        return float(np.max(_relative_rows(end, ridge) / _relative_rows(end, pinv_solution(args))))

    return measure


def eq25_vs_eq26(method):
    r"""Largest difference between one step of eq 26 (NMGD) and of eq 25 (Halpern with
    :math:`T = I-\gamma\nabla L`) at the sample points and the first 50 steps' :math:`\lambda_n`."""
    sched = method.view["schedule"]
    args = method.map.args
    h = halpern_map(loss, lr=method.map.dt, schedule=sched)
    pts = jnp.asarray(method.points)

    @jax.jit
    def gap(k):
        return jnp.max(jnp.abs(jax.vmap(lambda w: method.map.step(k, w, args) - h.step(k, w, args))(pts)))

    return float(jnp.max(jax.vmap(gap)(jnp.arange(50))))


def null_limit_error(on):
    r"""For :math:`a > 1`: relative error of :math:`\|w_{end} - X^+y\|` against the predicted
    null-space remainder :math:`\|P_Nw_0\|\exp(-\int_0^{t_1}\mu)` (flow) or
    :math:`\|P_Nw_0\|\prod_n(1-\lambda_n)` (map)."""

    def measure(method):
        args = method.flow.args
        X = np.asarray(args["X"])
        null = method.y0 - method.y0 @ (np.linalg.pinv(X) @ X).T
        if on == "flow":
            a, c, tau = method.view["a"], method.view["c"], method.view["tau"]
            factor = np.exp(-c * ((method.t1 + tau) ** (1 - a) - tau ** (1 - a)) / (1 - a))
        else:
            factor = float(np.prod(1.0 - np.asarray(jax.vmap(method.view["schedule"])(jnp.arange(method.steps)))))
        want = np.linalg.norm(null, axis=1) * factor
        got = _relative_rows(_end(method, on), pinv_solution(args))
        return float(np.max(np.abs(got - want) / want))

    return measure


def literal_schedule_distance(method):
    r"""The paper's literal :math:`\lambda_n = n^{-a}` from n = 1 (:math:`\lambda_1 = 1`) with the
    method's :math:`a`: the first step maps every start to 0, and the iteration then reaches
    :math:`X^+y` whatever :math:`a`: max distance at the end relative to :math:`\|X^+y\|`."""
    args = method.map.args
    literal = nmgd_map(loss, lr=method.map.dt, schedule=paper_schedule(method.view["a"], n0=1), args=args)
    traj = rf.iterate(literal, method.y0, method.steps, every=method.steps, batched=True)
    xs = pinv_solution(args)
    return float(np.max(_relative_rows(traj.y[:, -1], xs)) / np.linalg.norm(xs))


def literal_first_step(method):
    r"""Largest norm after the first step of the literal schedule (:math:`\lambda_1 = 1`)."""
    args = method.map.args
    literal = nmgd_map(loss, lr=method.map.dt, schedule=paper_schedule(method.view["a"], n0=1), args=args)
    return float(np.max(np.abs(jax.vmap(lambda w: literal.step(0, w, args))(jnp.asarray(method.y0)))))


#: Fixed Halpern factor of Theorem 5's first sentence, k = 1 - FIXED_LAMBDA.
FIXED_LAMBDA = 0.05


def _fixed_k_end(method, steps=3000):
    args = method.map.args
    m = halpern_map(loss, lr=method.map.dt, schedule=lambda k: FIXED_LAMBDA, args=args)
    return rf.iterate(m, method.y0, steps, every=steps, batched=True).y[:, -1]


def fixed_k_limit_error(method):
    r"""Theorem 5, corrected: :math:`x_n = kTx_{n-1}` converges to the fixed point of
    :math:`kT`, :math:`((1-k)I + k\gamma H)^{-1}k\gamma\,2X^\top y`: max relative distance."""
    args = method.map.args
    k, g = 1.0 - FIXED_LAMBDA, method.map.dt
    X, y = np.asarray(args["X"]), np.asarray(args["y"])
    fixed = np.linalg.solve((1 - k) * np.eye(DIM) + k * g * hessian_matrix(args), k * g * 2 * X.T @ y)
    return float(np.max(_relative_rows(_fixed_k_end(method), fixed)) / np.linalg.norm(fixed))


def fixed_k_residual(method):
    r"""Theorem 5 as printed says the limit is a fixed point of T: its :math:`\|Tw - w\| =
    \gamma\|\nabla L(w)\|` (min over starts), relative to :math:`\gamma\|\nabla L(0)\|`."""
    args = method.map.args
    grad = jax.grad(loss)
    end = jnp.asarray(_fixed_k_end(method))
    res = np.linalg.norm(np.asarray(jax.vmap(lambda w: grad(w, args))(end)), axis=1)
    return float(np.min(res) / np.linalg.norm(np.asarray(grad(jnp.zeros(DIM), args))))


def gd_rate(method, steps=60):
    r"""GD's errors :math:`e_t = \|w_t - w_*\|` (w_* its own limit) over ``steps`` steps, all starts."""
    traj = rf.iterate(method.map, method.y0, steps, batched=True)
    want = gd_limit(method.y0, method.flow.args)
    return np.linalg.norm(traj.y - want[:, None, :], axis=-1)


def theorem12_printed_violation(method, steps=60):
    r"""Theorem 12(a) as printed: :math:`\|w_t - w_*\|^2 \le (1-\gamma L)^{2t}\|w_0 - w_*\|^2`
    with :math:`L = \lambda_{max}(H)`: :math:`\max_t \log_{10}` of left over right (<= 0 if it held)."""
    err = gd_rate(method, steps)
    H = hessian_matrix(method.flow.args)
    L = np.linalg.eigvalsh(H).max()
    t = np.arange(err.shape[1])
    keep = err[:, :1] > 0
    bound = (1 - method.map.dt * L) ** (2 * t) * err[:, :1] ** 2
    ratio = np.where(keep, np.log10(err**2 / bound), -np.inf)
    return float(ratio.max())


def gd_contraction_error(method, steps=60):
    r"""Relative error of the fitted per-step contraction of :math:`\|w_t - w_*\|` (last 20 steps)
    against :math:`\max_i |1-\gamma\lambda_i|` over the nonzero eigenvalues of H."""
    err = gd_rate(method, steps)
    ev = np.linalg.eigvalsh(hessian_matrix(method.flow.args))
    ev = ev[ev > 1e-12 * ev.max()]
    want = np.max(np.abs(1 - method.map.dt * ev))
    fits = [np.exp(np.polyfit(np.arange(steps - 20, steps + 1), np.log(e[-21:]), 1)[0]) for e in err if e[0] > 0]
    return float(max(abs(f / want - 1) for f in fits))


# ----------------------------------------------------------------------------- entries


@rf.entry("halpern.gradient_descent", source="Theory III sec 14.1, eq 28-29; appendix 20")
def gradient_descent(lr: float = LR, seed: int = SEED) -> rf.Method:
    r"""Gradient flow :math:`\dot w = -\nabla L = 2X^\top(y - Xw)` (eq 29) and GD on the
    underdetermined least squares of eq 28 (X of shape 3 x 6): the null-space part of
    :math:`w_0` never moves, so GD converges to :math:`(I - X^+X)w_0 + X^+y`, the minimum norm
    :math:`X^+y` only from :math:`w_0 = 0`."""
    args = problem(seed)
    return rf.Method(
        flow=rf.gradient_flow(loss, names=names(), args=args),
        map=rf.gradient_descent(loss, lr=lr, names=names(), args=args),
        y0=starts(), t1=T1_GD, steps=round(T1_GD / lr),
        claims=[
            *[rf.Conserved(null_coordinate(i), source="sec 14.1: null-space components of w are invariant (eq 29)")
              for i in range(DIM - N_EQ)],
            rf.Holds(measure=gd_limit_error("flow"), hi=1e-8, name="flow limit",
                     what="max |w(t1) - ((I - X^+X) w0 + X^+ y)| / |w0 - limit| over 4 starts",
                     source="sec 14.1: GD converges to the fixed point nearest its start"),
            rf.Holds(measure=gd_limit_error("map"), hi=1e-8, name="GD limit",
                     what="the same for GD iterates (lr = 0.25)",
                     source="sec 14.1: GD converges to the fixed point nearest its start"),
            rf.Holds(measure=lambda m: float(np.linalg.norm(_map_end(m)[0] - pinv_solution(m.flow.args))), hi=1e-10,
                     name="GD from 0", what="|w_end - X^+ y| from w0 = 0",
                     source="sec 14.1: GD converges to the minimum norm solution for zero initial conditions"),
            rf.Agrees(map_at=lambda h: rf.gradient_descent(loss, lr=h, args=args), order=1.0,
                      source="GD is the Euler step of the gradient flow (eq 29)"),
            rf.Holds(measure=gd_contraction_error, hi=1e-3, name="GD contraction rate",
                     what="|fitted contraction / max_i |1 - lr lambda_i| - 1| over nonzero eigenvalues of H",
                     source="appendix 20, Theorem 12 corrected: rate set by the smallest nonzero eigenvalue"),
            rf.Holds(measure=theorem12_printed_violation, lo=1.0, name="Theorem 12(a) as printed",
                     what="max_t log10(|w_t - w*|^2 / ((1 - lr L)^(2t) |w0 - w*|^2)) (<= 0 if it held)",
                     source="appendix 20, Theorem 12(a), eq 70",
                     erratum="printed |w_t+1 - w*|^2 <= (1 - gamma L)^(2(t+1)) |w0 - w*|^2 for any L-smooth g; "
                             "without strong convexity GD contracts only at max|1 - gamma lambda_i| over nonzero "
                             "eigenvalues (here 0.89 per step, not 0.5)"),
        ],
    )


def _nmgd_method(a, lr, n0, seed, steps_factor=1.0):
    args = problem(seed)
    c, tau = paper_partner(lr, a, n0)
    sched = paper_schedule(a, n0)
    return args, c, tau, sched, dict(
        flow=nmgd_flow(loss, a=a, c=c, tau=tau, names=names(), args=args),
        map=nmgd_map(loss, lr=lr, schedule=sched, names=names(), args=args),
        y0=starts(), t1=T1, steps=round(steps_factor * T1 / lr),
        view={"a": a, "c": c, "tau": tau, "schedule": sched, "mu": regularization(a, c, tau)},
    )


@rf.entry("halpern.nmgd", source="Theory III eq 9, sec 12 eq 25-26, Theorem 5; sec 13-14.1")
def nmgd(a: float = A, lr: float = LR, n0: int = N0, seed: int = SEED) -> rf.Method:
    r"""NMGD (eq 26) with :math:`\lambda_n = (n + n_0)^{-a}`, :math:`0 < a < 1`, on eq 28, and its flow
    :math:`\dot w = -\nabla L - c(t+\tau)^{-a}w` (:math:`c = \gamma^{a-1}`, :math:`\tau = n_0\gamma`):
    both converge to :math:`X^+y` from every start."""
    if not 0 < a <= 1:
        raise ValueError(f"a must be in (0, 1] for this entry (Theorem 5: sum lambda_n = infinity), got {a}; "
                         f"see halpern.nmgd_fast_decay for a > 1")
    args, c, tau, sched, kw = _nmgd_method(a, lr, n0, seed)
    rng = np.random.default_rng(3)
    return rf.Method(
        **kw, samples=rng.normal(size=(8, DIM)),
        claims=[
            rf.Holds(measure=eq25_vs_eq26, hi=1e-13, name="eq 26 = eq 25",
                     what="max |NMGD step - (1 - lambda_n) T w| over samples and n < 50, T = I - lr grad L",
                     source="sec 12: eq 26 (= eq 9) is Halpern's eq 25 with T = I - gamma grad L"),
            rf.Holds(measure=spread("flow"), hi=1e-9, name="flow: start-independent",
                     what="spread of w(t1) over 4 starts / spread of the starts",
                     source="sec 12-13: NMGD converges independently of initial conditions"),
            rf.Holds(measure=distance_to_pinv("flow"), hi=1e-2, name="flow: distance to X^+y",
                     what="max |w(t1) - X^+ y| / |X^+ y| at t1 = 1e4",
                     source="sec 12, Theorem 5: convergence to the minimum norm fixed point X^+ y"),
            rf.Holds(measure=ridge_gap("flow"), hi=1e-3, name="flow: the rest is Tikhonov bias",
                     what="|w(t1) - w_mu| / |w(t1) - X^+ y|, w_mu = argmin L + mu/2 |w|^2 at mu(t1)",
                     source="sec 13 remark: the pseudoinverse is the lambda -> 0 limit of regularization"),
            rf.Holds(measure=spread("map"), hi=1e-9, name="map: start-independent",
                     what="spread of w_n over 4 starts / spread of the starts, n = 4e4",
                     source="sec 12-13: NMGD converges independently of initial conditions"),
            rf.Holds(measure=distance_to_pinv("map"), hi=1e-2, name="map: distance to X^+y",
                     what="max |w_n - X^+ y| / |X^+ y|, n = 4e4 steps of eq 26",
                     source="sec 12, Theorem 5 / eq 26: NMGD converges to X^+ y"),
            rf.Holds(measure=ridge_gap("map"), hi=1e-3, name="map: the rest is Tikhonov bias",
                     what="|w_n - w_mu| / |w_n - X^+ y|, mu = lambda_n / ((1 - lambda_n) lr)",
                     source="sec 13 remark: the pseudoinverse is the lambda -> 0 limit of regularization"),
            rf.Agrees(map_at=lambda h: nmgd_map(loss, lr=h, schedule=flow_schedule(a, c, tau, h), args=args),
                      order=1.0, t1=2.0,
                      source="eq 26 with lambda_n = h mu(n h) is the Euler step of the NMGD flow"),
            rf.Holds(measure=fixed_k_limit_error, hi=1e-10, name="Theorem 5, fixed k",
                     what="max |x_n - fixed point of kT| / |fixed point|, k = 0.95, n = 3000",
                     source="sec 12, Theorem 5 (first sentence) corrected: x_n = kTx_{n-1} -> fixed point of kT"),
            rf.Holds(measure=fixed_k_residual, lo=1e-2, name="Theorem 5, fixed k, as printed",
                     what="min over starts |grad L(x_inf)| / |grad L(0)| (0 if x_inf were a fixed point of T)",
                     source="sec 12, Theorem 5 as printed",
                     erratum="printed: x_n = kTx_{n-1}, |k| < 1, converges to one of the fixed points y_k of T; "
                             "it converges to the unique fixed point of kT, which is not a fixed point of T"),
        ],
    )


@rf.entry("halpern.nmgd_fast_decay", source="Theory III sec 12, eq 25-26, Theorem 5 (a > 1)")
def nmgd_fast_decay(a: float = A_FAST, lr: float = LR, n0: int = N0, seed: int = SEED) -> rf.Method:
    r"""NMGD with :math:`a > 1`: :math:`\sum\lambda_n < \infty`, so the null-space part of
    :math:`w_0` is only shrunk by :math:`\prod_n(1-\lambda_n) > 0` (flow:
    :math:`\exp(-c\,\tau^{1-a}/(a-1))`): the limit is not :math:`X^+y` and depends on the start."""
    if not a > 1:
        raise ValueError(f"a must be > 1 for this entry (summable lambda_n), got {a}; see halpern.nmgd for a <= 1")
    args, c, tau, sched, kw = _nmgd_method(a, lr, n0, seed, steps_factor=0.25)
    return rf.Method(
        **{**kw, "y0": starts()[1:]},
        claims=[
            rf.Holds(measure=distance_to_pinv("flow", "min"), lo=0.05, name="flow: stays away from X^+y",
                     what="min over 3 starts of |w(t1) - X^+ y| / |X^+ y| at t1 = 1e4",
                     source="sec 12: Halpern needs sum lambda_n = infinity (a <= 1); a = 1.5 does not reach X^+ y"),
            rf.Holds(measure=null_limit_error("flow"), hi=1e-6, name="flow: predicted remainder",
                     what="relative error of |w(t1) - X^+ y| against |P_N w0| exp(-int_0^t1 mu)",
                     source="sec 12: the null-space part decays by exp(-int mu) > 0 when a > 1"),
            rf.Holds(measure=distance_to_pinv("map", "min"), lo=0.05, name="map: stays away from X^+y",
                     what="min over 3 starts of |w_n - X^+ y| / |X^+ y|, n = 1e4 steps of eq 26",
                     source="sec 12, eq 26 with a = 1.5: no convergence to X^+ y"),
            rf.Holds(measure=null_limit_error("map"), hi=1e-6, name="map: predicted remainder",
                     what="relative error of |w_n - X^+ y| against |P_N w0| prod_n (1 - lambda_n)",
                     source="sec 12: the null-space part is multiplied by prod (1 - lambda_n) > 0"),
            rf.Holds(measure=literal_first_step, hi=0.0, name="lambda_1 = 1 as printed",
                     what="max |w_1| after one step of lambda_n = n^-a from n = 1 (every start goes to 0)",
                     source="eq 9 / eq 26 / Theorem 5 as printed (lambda_n = 1/n^a, k_n = 1 - 1/n^a, n >= 1)",
                     erratum="lambda_1 = 1 (k_1 = 0) erases the start: independence of initial conditions is trivial"),
            rf.Holds(measure=literal_schedule_distance, hi=1e-5, name="lambda_n = n^-a from n = 1, a = 1.5",
                     what="max |w_n - X^+ y| / |X^+ y| with the literal schedule: it converges although a > 1",
                     source="eq 9 / eq 26 as printed",
                     erratum="with the literal 1/n^a the claim 'a < 1 converges, a > 1 does not' fails: a = 1.5 "
                             "converges too; the schedule must keep lambda_n < 1, e.g. (n + n0)^-a"),
        ],
    )


# ----------------------------------------------------------------------------- a two-layer network


def deep_unflatten(w, hidden=HIDDEN):
    """``(W, v)``: first layer (hidden x DIM) and output weights (hidden,)."""
    return w[: hidden * DIM].reshape(hidden, DIM), w[hidden * DIM:]


def deep_loss(w, args):
    r"""Eq 44 for the two-layer linear network :math:`f(x) = v^\top Wx`: :math:`|y - XW^\top v|^2`."""
    W, v = deep_unflatten(w)
    return jnp.sum((args["y"] - args["X"] @ (W.T @ v)) ** 2)


def squared_norm(w, args=None):
    return jnp.sum(w**2)


def layer_imbalance(w, args=None):
    r""":math:`\|W\|^2 - \|v\|^2`: conserved by GD (eq 18), shrunk by NMGD."""
    W, v = deep_unflatten(w)
    return jnp.sum(W**2) - jnp.sum(v**2)


def deep_names(hidden=HIDDEN):
    return tuple(f"W[{i},{j}]" for i in range(hidden) for j in range(DIM)) + tuple(f"v{i}" for i in range(hidden))


@functools.lru_cache(maxsize=8)
def _deep_runs(method):
    """NMGD (eq 26) and plain GD from the same starts for ``steps`` steps (cached per method):
    end states of both, and the smallest squared norm NMGD passes through."""
    gd = rf.gradient_descent(deep_loss, lr=method.map.dt, args=method.map.args)
    runs = []
    for map_ in (method.map, gd):
        traj = rf.iterate(map_, method.y0, method.steps, every=10, batched=True)
        if not traj.ok:
            raise RuntimeError(f"the map did not finish: {traj.status}")
        runs.append(traj)
    return runs[0].y[:, -1], runs[1].y[:, -1], float(runs[0].evaluate(squared_norm).min())


def norm_ratio(method):
    r"""Largest ratio :math:`\|w_{NMGD}\|^2 / \|w_{GD}\|^2` at the end, over the starts."""
    nm, gd, _ = _deep_runs(method)
    return float(np.max(np.sum(nm**2, axis=1) / np.sum(gd**2, axis=1)))


def min_norm_ratio(method):
    r""":math:`\max|\,\|w_{NMGD}\|^2 / (2\|X^+y\|) - 1|` at the end: the smallest
    :math:`\|W\|^2 + \|v\|^2` of an interpolant is :math:`2\min\|W^\top v\| = 2\|X^+y\|`
    (:math:`\|W\|^2 + \|v\|^2 \ge 2\|W\|\|v\| \ge 2\|W^\top v\|`, equality for balanced rank one)."""
    nm, _, _ = _deep_runs(method)
    return float(np.max(np.abs(np.sum(nm**2, axis=1) / (2 * np.linalg.norm(pinv_solution(method.flow.args))) - 1)))


def min_norm_passed(method):
    r"""Smallest :math:`\|w\|^2` along the NMGD runs over :math:`2\|X^+y\|`: the schedule does not
    erase the start by driving the weights to the origin."""
    return _deep_runs(method)[2] / (2 * np.linalg.norm(pinv_solution(method.flow.args)))


def deep_final_loss(which):
    def measure(method):
        ends = _deep_runs(method)[0 if which == "nmgd" else 1]
        return float(max(deep_loss(jnp.asarray(w), method.flow.args) for w in ends))

    return measure


#: Time of the imbalance check: exp(-2 int_0^t mu) ~ 5e-3 there, well above round-off.
IMBALANCE_T = 1.0


def imbalance_decay_error(method):
    r"""Relative error of :math:`\|W\|^2 - \|v\|^2` at :math:`t_1` against
    :math:`D_0\exp(-2\int_0^{t_1}\mu)` (NMGD shrinks what eq 18 says GD conserves)."""
    a, c, tau = method.view["a"], method.view["c"], method.view["tau"]
    t = IMBALANCE_T
    traj = rf.integrate(method.flow, method.y0, t, ts=[t], rtol=1e-11, atol=1e-13, batched=True)
    d0 = np.asarray(jax.vmap(layer_imbalance)(jnp.asarray(method.y0)))
    d1 = np.asarray(jax.vmap(layer_imbalance)(jnp.asarray(traj.y[:, -1])))
    want = d0 * np.exp(-2 * c * ((t + tau) ** (1 - a) - tau ** (1 - a)) / (1 - a))
    return float(np.max(np.abs(d1 - want) / np.abs(want)))


@rf.entry("halpern.deep_network", source="Theory III sec 13 item 2, sec 15; sec 12 eq 26")
def deep_network(a: float = A, lr: float = LR_DEEP, n0: int = N0_DEEP, seed: int = SEED) -> rf.Method:
    r"""NMGD on a two-layer linear network :math:`f(x) = v^\top Wx` (hidden width 3) on the data of
    eq 28 (square loss, eq 44): NMGD (eq 26) against plain GD from the same (large) starts, and the
    flow :math:`\dot w = -\nabla L - c(t+\tau)^{-a}w`.  GD keeps :math:`\|W\|^2 - \|v\|^2` (eq 18) and ends at a large
    interpolant; NMGD balances the layers and reaches the minimum norm :math:`2\|X^+y\|`
    (:math:`n_0 = 100`: see ``N0_DEEP``)."""
    if not 0 < a < 1:
        raise ValueError(f"a must be in (0, 1), got {a}")
    args = problem(seed)
    c, tau = paper_partner(lr, a, n0)
    sched = paper_schedule(a, n0)
    rng = np.random.default_rng(7)
    y0 = 0.7 * rng.normal(size=(3, HIDDEN * (DIM + 1)))
    return rf.Method(
        flow=nmgd_flow(deep_loss, a=a, c=c, tau=tau, names=deep_names(), args=args),
        map=nmgd_map(deep_loss, lr=lr, schedule=sched, names=deep_names(), args=args),
        y0=y0, t1=T1, steps=round(T1 / lr),
        view={"a": a, "c": c, "tau": tau, "schedule": sched, "mu": regularization(a, c, tau)},
        claims=[
            rf.Holds(measure=norm_ratio, hi=0.5, name="NMGD / GD final norm",
                     what="max over 3 starts of |w_NMGD|^2 / |w_GD|^2 after 1e5 steps (lr = 0.1) of eq 26 / GD",
                     source="sec 13 item 2: NMGD leads to the (locally) minimum norm fixed point, GD does not"),
            rf.Holds(measure=min_norm_ratio, hi=1e-2, name="NMGD reaches the minimum norm",
                     what="max | |w_NMGD|^2 / (2|X^+y|) - 1 | at the end (2|X^+y|: least |W|^2 + |v|^2 interpolating)",
                     source="sec 13 item 2 and sec 6.4: minimum norm, balanced layers"),
            rf.Holds(measure=min_norm_passed, lo=0.5, name="NMGD does not pass through 0",
                     what="min over the NMGD runs of |w|^2 / (2 |X^+ y|) (the start is not erased)",
                     source="sec 12 end: is convergence to the minimum norm independent of initial conditions?"),
            rf.Holds(measure=deep_final_loss("nmgd"), hi=1e-4, name="NMGD interpolates",
                     what="max loss of NMGD at the end (the Tikhonov bias, -> 0 as lambda_n -> 0)",
                     source="sec 13 item 2: NMGD converges to fixed points, as GD does"),
            rf.Holds(measure=imbalance_decay_error, hi=1e-6, name="imbalance decay",
                     what="relative error of |W|^2 - |v|^2 (flow) at t = 1 against D0 exp(-2 int_0^t mu)",
                     source="sec 7 eq 18 with the Halpern term: d/dt(|W|^2 - |v|^2) = -2 mu(t)(|W|^2 - |v|^2)"),
        ],
    )
