r"""The linear classifier under the exponential loss: gradient flow (eq 36-37), the same flow in
:math:`(\rho, V)` (eq 42-43), examples that do not span the space (sec 14.1-14.2, d > n) and the
:math:`\lambda \to 0` regularization path (sec 14.2, eq 40-41)."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import regflow as rf
import scipy.optimize
import scipy.special

from ._data import (DESCENT, HORIZON, LONG_OPTIONS, LR, MAP_STEPS, angle_to, dataset, flipped_labels, linear_starts,
                    signed_data, soudry_constants, svm_asymptotics)
from ._nets import layer_shapes, linear_normalized_field, model


def exp_gradient(w, data):
    r"""Eq 37: :math:`-\nabla L = \sum_n z_ne^{-z_n\cdot w}`, :math:`z_n = y_nx_n`."""
    z = data["y"][:, None] * data["x"]
    return z.T @ jnp.exp(-z @ w)


def eq42_43(rho, V, data):
    r"""Eq 42-43: :math:`\dot V = \frac1\rho\sum_n e^{-\rho V\cdot z_n}(z_n - VV^\top z_n)`,
    :math:`\dot\rho = \sum_n e^{-\rho V\cdot z_n}V\cdot z_n`."""
    z = data["y"][:, None] * data["x"]
    e = jnp.exp(-rho * (z @ V))
    return jnp.sum(e * (z @ V)), (z.T @ e - V * (V @ (z.T @ e))) / rho


def unit(w):
    return w / jnp.linalg.norm(w)


def to_normalized(w):
    """Weights of the linear classifier -> ``(rho, V)`` states (works row-wise on (n, 2))."""
    w = np.asarray(w, dtype=float)
    rho = np.linalg.norm(w, axis=-1, keepdims=True)
    return np.concatenate([rho, w / rho], axis=-1)


def rho_of_w(w, data=None):
    r""":math:`\rho = |w|`."""
    return jnp.linalg.norm(w)


def unit_vector(w, data=None):
    r""":math:`\tilde w = w/|w|`."""
    return unit(w)


def eq77_rate(w, data):
    r"""Eq 43, 77: :math:`\frac{d|w|}{dt} = \sum_n e^{-z_n\cdot w}z_n\cdot w/|w|`."""
    z = data["y"][:, None] * data["x"]
    return jnp.sum(jnp.exp(-z @ w) * (z @ w)) / jnp.linalg.norm(w)


def eq76_velocity(w, data):
    r"""Eq 76, 84: :math:`\dot{\tilde w} = \frac{I - \tilde w\tilde w^\top}{|w|}\dot w` with eq 37's :math:`\dot w`."""
    u, g = unit(w), exp_gradient(w, data)
    return (g - u * (u @ g)) / jnp.linalg.norm(w)


def eq88_printed(w, data):
    r"""Eq 88's integrand as printed: :math:`\frac{I - \tilde w\tilde w^\top}{|\tilde w|}\dot w`,
    :math:`|\tilde w| = 1`."""
    u, g = unit(w), exp_gradient(w, data)
    return g - u * (u @ g)


def gf_from_eq42_43(w, data):
    r""":math:`\dot w = \dot\rho V + \rho\dot V` with :math:`(\dot\rho, \dot V)` of eq 42-43 at :math:`(|w|, w/|w|)`."""
    rho = jnp.linalg.norm(w)
    rho_dot, v_dot = eq42_43(rho, w / rho, data)
    return rho_dot * w / rho + rho * v_dot


@rf.entry("normalized_flows.linear", source="Theory III sec 14.2, eq 36-37")
def linear() -> rf.Method:
    r"""Gradient flow of the exponential loss of a linear classifier (eq 36-37),
    :math:`\dot w = \sum_n z_ne^{-z_n\cdot w}`, and GD :math:`w \leftarrow w + \text{lr}\sum_n z_ne^{-z_n\cdot w}`.

    Started where :math:`w` separates the data, :math:`w(t) = \hat w\log t + \tilde w + o(1)` (Soudry et
    al. [1]): :math:`\rho = |w|` grows like :math:`|\hat w|\log t` (sec 21) and :math:`w/|w|` tends to the
    SVM direction.  The flow runs to ``HORIZON`` = 1e40."""
    data = dataset()
    mdl = model(layer_shapes(1, 1), "linear")
    flow = mdl["flow"].replace(args=data)
    w_hat, w_tilde, _ = soudry_constants(data)
    starts = linear_starts(data)
    gd = rf.gradient_descent(mdl["loss"], lr=LR, names=flow.names, args=data)
    return rf.Method(
        flow=flow, map=gd, y0=starts, t1=HORIZON, options=LONG_OPTIONS, steps=MAP_STEPS,
        samples=np.vstack([starts, 3 * starts, 10 * starts]), perturbations=[flipped_labels(flow, gd)],
        claims=[
            rf.Monotone(mdl["loss"], name="loss", source="eq 37: gradient flow of eq 36, dL/dt = -|grad L|^2",
                        identity=DESCENT),
            rf.Formula(eq77_rate, rate_of=rho_of_w, tol=1e-12, name="eq 77: d|w|/dt",
                       source="eq 43/77: d|w|/dt = sum_n e^{-z_n.w} z_n.w/|w| (> 0 once w separates the data)"),
            rf.Monotone(mdl["loss"], on="map", name="loss", source="GD on eq 36 with lr=0.05 decreases the loss"),
            rf.AtHorizon(rho_of_w, predict=float(np.linalg.norm(w_hat * np.log(HORIZON) + w_tilde)), tol=1e-6,
                         name="rho = |w_svm log t + w~| at t=1e40",
                         source="sec 21: |w| ~ log t, with slope 1/margin of the hard-margin SVM and offset w~ "
                                "(Soudry et al. [1]: w = w_svm log t + w~ + o(1))"),
            rf.Formula(gf_from_eq42_43, field=True, tol=1e-12, name="eq 42-43 pulled back to w",
                       source="eq 75-76: eq 42-43 are this gradient flow in (rho, V) coordinates"),
            rf.Formula(eq76_velocity, rate_of=unit_vector, tol=1e-12, printed=eq88_printed,
                       name="d(w/|w|)/dt = (I - uu^T)/|w| dw/dt",
                       source="eq 76, 84: the velocity of the normalized vector",
                       erratum="eq 88 prints (I - w~w~^T)/|w~| dw/dt with |w~| = 1; the velocity of w/|w| has 1/|w|",
                       grade="erratum"),
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


def rescaled(starts, rhos=(3.0, 20.0)):
    """``(rho, V)`` starts and the same directions at larger rho (points for pointwise claims)."""
    return np.vstack([starts, *[np.c_[np.full(len(starts), r), starts[:, 1:]] for r in rhos]])


def rv_starts(data):
    return to_normalized(linear_starts(data))


def eq37_pushed_forward(y, data):
    r""":math:`\frac{d}{dt}(|w|, w/|w|)` along eq 37 at :math:`w = \rho V` (JVP of the normalization)."""
    w = y[0] * y[1:]
    _, out = jax.jvp(lambda x: jnp.concatenate([jnp.linalg.norm(x)[None], unit(x)]), (w,), (exp_gradient(w, data),))
    return out


def sphere_attracting(method):
    r"""Largest :math:`\frac{d}{dt}(|V|^2 - 1)^2` of the method's flow at separating states off the sphere
    (:math:`|V| = 0.8, 1.25`, :math:`\rho = 0.3, 3`): at most 0 where the sphere attracts."""
    flow, starts = method.flow, np.asarray(method.y0)
    lq = jax.jit(jax.vmap(lambda y: rf.lie_derivative(flow, off_sphere_sq)(y, flow.args)))
    pts = np.vstack([np.c_[np.full(len(starts), r), starts[:, 1:] * f] for r in (0.3, 3.0) for f in (0.8, 1.25)])
    values = np.asarray(lq(jnp.asarray(pts)))
    return float(np.max(values)), rf.Trace(np.arange(len(values)), values, "point off the sphere",
                                           "d/dt (|V|^2 - 1)^2", "points", 0.0)


@rf.entry("normalized_flows.rho_v", source="Theory III sec 14.3, eq 42-43")
def rho_v() -> rf.Method:
    r"""The GF of the linear classifier in :math:`(\rho, V)` coordinates (eq 42-43):

    .. math:: \dot V = \frac1\rho\sum_n e^{-\rho V\cdot z_n}(z_n - VV^\top z_n),\qquad
              \dot\rho = \sum_n e^{-\rho V\cdot z_n}V\cdot z_n.

    :math:`\dot V\perp V` keeps :math:`|V| = 1`; :math:`V \to \hat w/|\hat w|` (sec 14.3) with
    angle :math:`|P_\perp\tilde w|/\rho + o(1/\rho)`, and :math:`\rho V - \hat w\log t \to \tilde w` from
    every start.  The flow runs to ``HORIZON`` = 1e40."""
    data = dataset()
    flow = rf.ODE(linear_normalized_field(), names=("rho", "v1", "v2"), args=data)
    w_hat, w_tilde, _ = soudry_constants(data)
    _, offset = svm_asymptotics(data)
    to_svm = angle_to(w_hat)
    log_t1 = float(np.log(HORIZON))

    def angle_rho(y, data=None):
        return to_svm(y[1:]) * y[0]

    def offset_of(y, data=None):
        return y[0] * y[1:] - jnp.asarray(w_hat) * log_t1

    starts = rv_starts(data)
    u = w_hat / np.linalg.norm(w_hat)
    rank_one = {**data, "x": jnp.asarray(np.outer(np.asarray(data["x"]) @ u, u))}
    return rf.Method(
        flow=flow, y0=starts, t1=HORIZON, options=LONG_OPTIONS, samples=rescaled(starts),
        perturbations=[flipped_labels(flow),
                       rf.Perturbation("examples on one line (rank 1: a null space, as d > n)",
                                       {"flow": flow.replace(args=rank_one)})],
        claims=[
            rf.Conserved(unit_norm_sq, name="|V|^2", source="sec 14.3: dV/dt is orthogonal to V, |V| = 1 is kept",
                         identity="eq 42 writes dV/dt as (I - VV^T)(...): orthogonal to V, so |V|^2 is kept by "
                                  "construction"),
            rf.Holds(measure=sphere_attracting, hi=0.0, name="|V| = 1 attracting",
                     what="max d/dt (|V|^2-1)^2 at 16 separating points off the sphere (|V| = 0.8, 1.25)",
                     source="sec 14.3: unit normalization is stable under the dynamics"),
            rf.Formula(eq37_pushed_forward, field=True, tol=1e-12, name="eq 37 pushed forward",
                       source="eq 75-76: eq 42-43 are the GF of eq 37 in (rho, V) coordinates"),
            rf.AtHorizon(lambda y, a: to_svm(y[1:]), predict=0.0, absolute=True, tol=5e-3, name="angle to SVM",
                         source="sec 14.3: V converges to the hard-margin SVM direction"),
            rf.AtHorizon(angle_rho, predict=offset, tol=1e-4, name="angle * rho -> |P_perp w~|",
                         source="sec 14.3 with Soudry et al. [1]: w = w_svm log t + w~ + o(1), so the angle is "
                                "|P_perp w~| / rho = O(1/log t)"),
            rf.SameLimit(offset_of, limit=w_tilde, tol=1e-6, name="rho V - w_svm log t",
                         source="sec 7 remarks: for exponential losses and linear networks the convergence is "
                                "independent of initial conditions (w - w_svm log t -> w~ for every start)"),
        ],
    )


# ----------------------------------------------------------------------------- d > n: a null space


#: Two examples in R^3 (d > n): a null space of the data matrix, one direction.
NULL_DATA = {"x": jnp.array([[1.0, 0.3, 0.2], [-0.2, -1.0, 0.4]]), "y": jnp.array([1.0, -1.0])}


def null_projector(data):
    r""":math:`P_N = I - Z^\top(ZZ^\top)^{-1}Z`, the projection on the null space of the examples."""
    z = signed_data(data)
    return np.eye(z.shape[1]) - z.T @ np.linalg.solve(z @ z.T, z)


def hessian_spectrum(data):
    r"""Eigenvalues of eq 38's Hessian :math:`\sum_n z_nz_n^\top e^{-z_n\cdot w}` from the :math:`n\times n`
    matrix :math:`D^{1/2}ZZ^\top D^{1/2}`, :math:`D = \operatorname{diag}(e^{-z_n\cdot w})`, and :math:`d - n` zeros."""
    z = signed_data(data)

    def expect(w):
        d = np.exp(-z @ np.asarray(w))
        small = np.sqrt(d)[:, None] * (z @ z.T) * np.sqrt(d)[None]
        return np.r_[np.zeros(z.shape[1] - len(z)), np.linalg.eigvalsh(small)]

    return expect


@rf.entry("normalized_flows.null_space", source="Theory III sec 14.1-14.2, eq 37-38")
def null_space() -> rf.Method:
    r"""The GF of eq 37 with two examples in :math:`\mathbb R^3` (d > n).  The field lies in the span of
    the examples, so the null-space component :math:`P_Nw` is conserved and
    :math:`w(t) = \hat w\log t + \tilde w + P_Nw(0) + o(1)`: in :math:`w/|w|` it decays like
    :math:`1/\log t`.  The Hessian (eq 38) has :math:`d - n` zero eigenvalues at every w."""
    data = NULL_DATA
    P = null_projector(data)
    w_hat, w_tilde, _ = soudry_constants(data)
    loss = lambda w, a: jnp.sum(jnp.exp(-(a["y"][:, None] * a["x"]) @ w))  # noqa: E731
    flow = rf.gradient_flow(loss, names=("w1", "w2", "w3"), args=data)
    starts = np.array([[0.5, -0.4, 0.3], [0.2, -0.1, -0.6], [0.6, -0.5, 1.0]])
    log_t1 = float(np.log(HORIZON))
    spanning = {"x": jnp.vstack([data["x"], jnp.array([[0.3, 0.3, 1.0]])]), "y": jnp.array([1.0, -1.0, 1.0])}

    def null_part(w, a=None):
        return jnp.asarray(P) @ w

    return rf.Method(
        flow=flow, y0=starts, t1=HORIZON, options=LONG_OPTIONS, samples=np.vstack([starts, 3 * starts]),
        perturbations=[rf.Perturbation("examples spanning R^3 (d = n)", {"flow": flow.replace(args=spanning)})],
        claims=[
            rf.Conserved(null_part, name="P_N w",
                         source="sec 14.2: components of w in the null space of X^T are invariant to the dynamics"),
            rf.AtHorizon(lambda w, a: w, predict=lambda w0, a: w_hat * log_t1 + w_tilde + P @ w0, tol=1e-6,
                         name="w = w_svm log t + w~ + P_N w(0)",
                         source="sec 14.2: the null-space component of w stays, the norm grows, so its share of "
                                "w/|w| decreases to zero (like 1/log t)"),
            rf.Spectrum(at=starts, expect=hessian_spectrum(data), name="eq 38: d - n zero eigenvalues",
                        source="sec 14.2, eq 38: the Hessian is degenerate with d - n zero eigenvalues if d > n"),
        ],
    )


# ----------------------------------------------------------------------------- lambda -> 0


def path_point(data, lam):
    r"""The asymptotic regularization path of eq 40 (penalty :math:`\lambda|w|^2`):
    :math:`w_\lambda = s\hat w + \tilde w - (\sum_{SV}\alpha_nz_nz_n^\top)^{-1}\tilde w/s + O(s^{-2})`,
    :math:`s = W(1/2\lambda)` (Lambert W): on the support vectors :math:`e^{-s} = 2\lambda s`."""
    w_hat, w_tilde, alpha = soudry_constants(data)
    z = signed_data(data)
    Z = z[np.flatnonzero(z @ w_hat < 1.0 + 1e-6)]
    s = float(np.real(scipy.special.lambertw(1.0 / (2.0 * lam))))
    return s * w_hat + w_tilde - np.linalg.solve((Z.T * alpha) @ Z, w_tilde) / s


def exact_path_point(data, lam):
    r"""The minimizer of :math:`L + \lambda|w|^2` by root finding
    (eq 40: :math:`\sum_n z_ne^{-z_n\cdot w} = 2\lambda w`)."""
    z = signed_data(data)
    return scipy.optimize.fsolve(lambda w: z.T @ np.exp(-z @ w) - 2 * lam * w, path_point(data, lam), xtol=1e-13)


def eq41_spectrum(data, lam, penalty=2.0):
    r"""Eigenvalues of the flow's Jacobian from eq 41: :math:`-(\sum_n z_nz_n^\top e^{-z_n\cdot w} + c\lambda I)`,
    ``penalty`` c = 2 for :math:`\lambda|w|^2` (c = 1 as printed)."""
    z = signed_data(data)
    return lambda w: -np.linalg.eigvalsh((z.T * np.exp(-z @ np.asarray(w))) @ z + penalty * lam * np.eye(z.shape[1]))


@rf.entry("normalized_flows.regularization_path", source="Theory III sec 14.2, eq 40-41")
def regularization_path(lam: float = 1e-6) -> rf.Method:
    r"""GF of the exponential loss plus :math:`\lambda|w|^2` (eq 40, ``weight_decay = 2 lam``).

    For every :math:`\lambda > 0` it has one hyperbolic equilibrium (eq 41), reached from every start;
    as :math:`\lambda\to0` it runs to infinity along :math:`w_\lambda = s\hat w + \tilde w + O(1/s)`,
    :math:`s = W(1/2\lambda)`, so :math:`w_\lambda/|w_\lambda|` converges to the max-margin direction."""
    lam = float(lam)
    if not 0.0 < lam < 1e-2:
        raise ValueError(f"lam must lie in (0, 1e-2): the asymptotic path needs W(1/2 lam) >> 1, got {lam}")
    data = dataset()
    mdl = model(layer_shapes(1, 1), "linear")
    flow = rf.gradient_flow(mdl["loss"], weight_decay=2.0 * lam, names=("w1", "w2"), args=data)
    predicted = path_point(data, lam)
    s = float(np.real(scipy.special.lambertw(1.0 / (2.0 * lam))))
    w_lam = exact_path_point(data, lam)
    starts = linear_starts(data, n=3)
    return rf.Method(
        flow=flow, y0=starts, t1=30.0 / lam, options=LONG_OPTIONS,
        perturbations=[rf.Perturbation("no weight decay (lambda = 0)",
                                       {"flow": rf.gradient_flow(mdl["loss"], names=("w1", "w2"), args=data)})],
        claims=[
            rf.EquilibriumSet(guesses=np.array([predicted, 1.2 * predicted]),
                              on=lambda w, a: (w - predicted) / np.linalg.norm(predicted), tol=1.0 / s**2,
                              kind="sink", zero_modes=0, name="w_lam = W(1/2lam) w_svm + w~ + O(1/W)",
                              source="sec 14.2: the equilibrium exists for any lambda > 0, is hyperbolic, and tends "
                                     "to infinity along the max-margin direction as lambda -> 0"),
            rf.SameLimit(lambda w, a: w, tol=1e-7, name="w(t1)",
                         source="sec 14.2: explicit regularization gives an equilibrium independent of initial "
                                "conditions"),
            rf.Spectrum(at=w_lam[None], of="jacobian", expect=eq41_spectrum(data, lam),
                        printed=eq41_spectrum(data, lam, penalty=1.0), name="eq 41 at w_lam",
                        source="eq 41: the Hessian at the equilibrium is sum_n x_n x_n^T e^{-x_n.w} + 2 lambda, "
                               "positive definite",
                        erratum="eq 40-41 print -lambda w and + lambda for the penalty lambda |w|^2 (the gradient "
                                "is 2 lambda w): right for the penalty lambda/2 |w|^2", grade="convention"),
        ],
    )
