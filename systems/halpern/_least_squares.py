r"""GD on the least squares of eq 28 (*Theory III* sec 14.1) and the contraction rate of GD
(appendix 20, Theorem 12), on the degenerate problem and on a strongly convex quadratic."""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np

import regflow as rf

from ._problem import (DIM, LR, N_EQ, RUN_OPTIONS, SEED, T1_GD, contraction_excess, gd_limit, hessian_spectrum,
                       loss, names, null_coordinate, problem, starts, state)

#: Steps of the contraction measurements (far above round-off: 0.89^60 = 1e-3).
RATE_STEPS = 60
#: Steps at the end of a run over which the contraction is fitted.
FIT_STEPS = 20

THEOREM12A = ("printed eq 70: |w_t+1 - w*|^2 <= (1 - gamma L)^(2(t+1)) |w0 - w*|^2 for any L-smooth g with "
              "gamma L < 1. The proof's first inequality uses (grad g(w_t), w_t - w*) >= L |w_t - w*|^2, the "
              "wrong direction of eq 72 (L-smoothness bounds it from above); GD contracts at max_i |1 - gamma "
              "lambda_i| over the nonzero Hessian eigenvalues, so eq 70 fails whenever one of them is below L, "
              "strongly convex or not (here 0.89 per step against the printed 0.5; on diag(1, 0.1) 0.95 against 0.5)")


def solution_distance_sq(w, args):
    r""":math:`|X^+(Xw - y)|^2`: squared distance from :math:`w` to the solution set, which for GD
    (whose null-space part never moves) is :math:`|w - w_*|^2`."""
    r = jnp.linalg.pinv(args["X"]) @ (args["X"] @ w - args["y"])
    return r @ r


def _errors(map_, y0, distance, steps=RATE_STEPS):
    """``distance(w)`` along ``steps`` steps of ``map_`` from every start, ``(runs, steps + 1)``."""
    traj = rf.iterate(map_, y0, steps, batched=True)
    if not traj.ok:
        raise RuntimeError(f"the map did not finish: {traj.status}")
    return np.sqrt(np.atleast_2d(traj.evaluate(distance)))


def contraction_rate_error(expected, distance):
    r"""Relative error of GD's fitted per-step contraction of :math:`|w_t - w_*|` (last
    ``FIT_STEPS`` of ``RATE_STEPS`` steps, every start) against ``expected``."""

    def measure(method):
        err = _errors(method.map, method.y0, distance)
        err = err[err[:, 0] > 0]
        t = np.arange(RATE_STEPS - FIT_STEPS, RATE_STEPS + 1)
        fits = [np.exp(np.polyfit(t, np.log(e[-FIT_STEPS - 1:]), 1)[0]) for e in err]
        return float(max(abs(f / expected - 1) for f in fits))

    measure.__name__ = "GD contraction rate"
    return measure


def printed_rate_excess(printed_factor, distance):
    r"""Theorem 12(a) as printed, per step: `contraction_excess` of GD's runs against the printed
    factor :math:`1 - \gamma L` (> 1: eq 70 fails)."""

    def measure(method):
        err = _errors(method.map, method.y0, distance)
        t = np.arange(err.shape[1])
        value = contraction_excess(err, printed_factor)
        per_step = (err[:, 1:] / err[:, :1]) ** (1.0 / t[1:])
        return value, rf.Trace(t[1:], per_step, "step t", "(e_t / e_0)^(1/t) (observed per-step contraction)",
                               "line", printed_factor)

    measure.__name__ = "Theorem 12(a) per-step rate"
    return measure


def _rates(args, lr):
    ev = hessian_spectrum(args)
    nonzero = ev[ev > 0]
    return np.max(np.abs(1 - lr * nonzero)), 1 - lr * ev.max()


@rf.entry("halpern.gradient_descent", source="Theory III sec 14.1, eq 28-30; appendix 20")
def gradient_descent(lr: float = LR, seed: int = SEED) -> rf.Method:
    r"""Gradient flow :math:`\dot w = -\nabla L = 2X^\top(y - Xw)` (eq 29) and GD on the
    underdetermined least squares of eq 28 (X of shape 3 x 6): the null-space part of
    :math:`w_0` never moves, so GD converges to :math:`(I - X^+X)w_0 + X^+y`, the minimum norm
    :math:`X^+y` only from :math:`w_0 = 0`; it contracts at :math:`\max_i|1-\gamma\lambda_i|`
    over the nonzero eigenvalues of :math:`H = 2X^\top X` (Theorem 12 corrected)."""
    args = problem(seed)
    rate, printed = _rates(args, lr)
    other = problem(seed + 1)
    return rf.Method(
        flow=rf.gradient_flow(loss, names=names(), args=args),
        map=rf.gradient_descent(loss, lr=lr, names=names(), args=args),
        map_at=lambda h: rf.gradient_descent(loss, lr=h, args=args),
        y0=starts(), t1=T1_GD, steps=round(T1_GD / lr), samples=np.random.default_rng(3).normal(size=(8, DIM)),
        options=RUN_OPTIONS,
        perturbations=[
            rf.Perturbation("another data set (seed + 1)", {
                "flow": rf.gradient_flow(loss, names=names(), args=other),
                "map": rf.gradient_descent(loss, lr=lr, names=names(), args=other),
                "map_at": lambda h: rf.gradient_descent(loss, lr=h, args=other)}),
            rf.Perturbation("GD step lr/2 per dt = lr (another lr convention)", {
                "map": rf.gradient_descent(loss, lr=lr / 2, names=names(), args=args).replace(dt=lr),
                "map_at": lambda h: rf.gradient_descent(loss, lr=h / 2, args=args).replace(dt=h)}),
        ],
        claims=[
            *[rf.Conserved(null_coordinate(i), source="sec 14.1: null-space components of w are invariant (eq 29)")
              for i in range(DIM - N_EQ)],
            rf.Spectrum(at=starts(), expect=lambda p: hessian_spectrum(args), name=f"Hessian, {DIM - N_EQ} zeros",
                        source=f"sec 14.1 item 2 (eq 30): the Hessian is degenerate, with d - n = {DIM - N_EQ} zero "
                               "eigenvalues when d > n"),
            rf.AtHorizon(state, predict=gd_limit, on="flow", tol=1e-8, name="flow limit (I - X^+X) w0 + X^+y",
                         source="sec 14.1: the flow converges to the fixed point nearest its start"),
            rf.AtHorizon(state, predict=gd_limit, on="map", tol=1e-8, name="GD limit (I - X^+X) w0 + X^+y",
                         source="sec 14.1: GD converges to the fixed point nearest its start, to the minimum norm "
                                "solution X^+ y from w0 = 0 (the first start)"),
            rf.Agrees(order=1.0, source="GD is the Euler step of the gradient flow (eq 29)"),
            rf.StepRatio(solution_distance_sq, hi=rate**2, at=np.random.default_rng(3).normal(size=(8, DIM)),
                         name="|w - w*|^2",
                         source="appendix 20, Theorem 12(a) corrected: |w_t+1 - w*| <= max_i |1 - lr lambda_i| "
                                "|w_t - w*| over the nonzero eigenvalues of H"),
            rf.Holds(measure=contraction_rate_error(rate, solution_distance_sq), hi=1e-3, name="GD contraction rate",
                     what=f"|fitted contraction / max_i |1 - lr lambda_i| - 1| (= {rate:.3g}, nonzero eigenvalues)",
                     source="appendix 20, Theorem 12 corrected: the rate is set by the smallest nonzero eigenvalue"),
            rf.Holds(measure=printed_rate_excess(printed, solution_distance_sq), lo=1.0 + 1e-3,
                     name="Theorem 12(a) as printed",
                     what=f"max_t (e_t / e_0)^(1/t) / (1 - lr L): observed per-step contraction over the printed "
                          f"{printed:.3g} (<= 1 if eq 70 held)",
                     source="appendix 20, Theorem 12(a), eq 70", erratum=THEOREM12A, grade="erratum",
                     identity="refutes the printed rate of eq 70 (the evidence is the gap)"),
        ],
    )


#: The strongly convex quadratic of the Theorem 12 check: g(w) = w^T diag(CURVATURES) w / 2, L = 1, mu = 0.1.
CURVATURES = (1.0, 0.1)
#: Its learning rate: gamma L = 0.5 < 1, as Theorem 12 assumes.
LR_CONVEX = 0.5


def convex_loss(w, args):
    r""":math:`g(w) = \tfrac12 w^\top \operatorname{diag}(\kappa)\,w`."""
    return 0.5 * jnp.sum(args["kappa"] * w**2)


def squared_norm(w, args=None):
    r""":math:`|w - w_*|^2` with :math:`w_* = 0`."""
    return jnp.sum(w**2)


@rf.entry("halpern.strongly_convex", source="Theory III appendix 20, Theorem 12 (eq 70-72)")
def strongly_convex(lr: float = LR_CONVEX) -> rf.Method:
    r"""GD on the strongly convex quadratic :math:`g = \tfrac12(w_1^2 + 0.1\,w_2^2)` (:math:`L = 1`,
    :math:`\mu = 0.1`, :math:`\gamma L = 0.5`): Theorem 12(b) (eq 71) holds, while (a) (eq 70)
    fails although :math:`g` is strongly convex: one step multiplies :math:`|w|^2` by a factor
    in :math:`[(1-\gamma L)^2, (1-\gamma\mu)^2]`, and the slow direction contracts at
    :math:`1 - \gamma\mu`, not at the printed :math:`1 - \gamma L`."""
    args = {"kappa": jnp.asarray(CURVATURES)}
    L, mu = max(CURVATURES), min(CURVATURES)
    points = np.vstack([np.eye(2), np.random.default_rng(4).normal(size=(8, 2))])
    flat = {"kappa": jnp.asarray([L, mu / 5])}
    return rf.Method(
        flow=rf.gradient_flow(convex_loss, names=("w1", "w2"), args=args),
        map=rf.gradient_descent(convex_loss, lr=lr, names=("w1", "w2"), args=args),
        map_at=lambda h: rf.gradient_descent(convex_loss, lr=h, args=args),
        y0=points[2:5], t1=RATE_STEPS * lr, steps=RATE_STEPS, samples=points,
        perturbations=[rf.Perturbation("a flatter direction (mu / 5)", {
            "flow": rf.gradient_flow(convex_loss, args=flat),
            "map": rf.gradient_descent(convex_loss, lr=lr, args=flat)})],
        claims=[
            rf.StepRatio(squared_norm, hi=1 - lr * mu, at=points, name="|w|^2, eq 71",
                         source="appendix 20, Theorem 12(b), eq 71: |w_t+1 - w*|^2 <= (1 - gamma mu) |w_t - w*|^2"),
            rf.StepRatio(squared_norm, lo=(1 - lr * L) ** 2 * (1 - 1e-12), hi=(1 - lr * mu) ** 2, at=points,
                         name="|w|^2, exact range",
                         source="appendix 20, Theorem 12 corrected: one step multiplies |w - w*|^2 by a factor in "
                                "[(1 - gamma L)^2, (1 - gamma mu)^2]"),
            rf.Holds(measure=printed_rate_excess(1 - lr * L, squared_norm), lo=1.0 + 1e-3,
                     name="Theorem 12(a) as printed, strongly convex",
                     what=f"max_t (e_t / e_0)^(1/t) / (1 - lr L): observed per-step contraction over the printed "
                          f"{1 - lr * L:g} (<= 1 if eq 70 held)",
                     source="appendix 20, Theorem 12(a), eq 70", erratum=THEOREM12A, grade="erratum",
                     identity="refutes the printed rate of eq 70 (the evidence is the gap)"),
        ],
    )
