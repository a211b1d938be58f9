r"""NMGD and Halpern's iteration on the least squares of eq 28 (*Theory III* sec 12, eq 25-26,
Theorem 5; sec 13-14.1): the schedule :math:`\lambda_n = (n + n_0)^{-a}` with :math:`a < 1`
and :math:`a > 1`, the literal :math:`1/n^a` from :math:`n = 1`, and a fixed factor :math:`k`."""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np

import regflow as rf

from ._problem import (A, A_FAST, DIM, LR, N0, RUN_OPTIONS, SEED, T1, Constant, distance_to_pinv, flow_schedule,
                       loss, names, nmgd_systems, null_part, paper_schedule, pinv_solution, problem,
                       remainder_factor_flow, remainder_factor_map, ridge_path, starts, state)

#: Map steps of halpern.nmgd (flow time T1).
NMGD_STEPS = round(T1 / LR)
#: Map steps of halpern.nmgd_fast_decay and halpern.literal_schedule (the remainder has settled).
FAST_STEPS = 10_000


def _with_exponent(a, lr, n0, args):
    """The NMGD flow, map and map_at with exponent ``a`` (a perturbation of the schedule)."""
    return nmgd_systems(loss, a, lr, n0, args, names())[0]


@rf.entry("halpern.nmgd", source="Theory III eq 9, sec 12 eq 25-26, Theorem 5; sec 13-14.1")
def nmgd(a: float = A, lr: float = LR, n0: int = N0, seed: int = SEED) -> rf.Method:
    r"""NMGD (eq 26) with :math:`\lambda_n = (n + n_0)^{-a}`, :math:`0 < a < 1`, on eq 28, and its flow
    :math:`\dot w = -\nabla L - c(t+\tau)^{-a}w` (:math:`c = \gamma^{a-1}`, :math:`\tau = n_0\gamma`):
    both converge to :math:`X^+y` from every start; what is left at a finite time is the
    Tikhonov bias :math:`w_\mu - X^+y` of the regularization path at the current :math:`\mu`."""
    if not 0 < a <= 1:
        raise ValueError(f"a must be in (0, 1] for this entry (Theorem 5: sum lambda_n = infinity), got {a}; "
                         f"see halpern.nmgd_fast_decay for a > 1")
    args = problem(seed)
    systems, (c, tau) = nmgd_systems(loss, a, lr, n0, args, names())
    mu_flow = c * (T1 + tau) ** (-a)
    lam = (NMGD_STEPS - 1 + n0) ** (-a)
    mu_map = lam / ((1 - lam) * lr)
    xs = pinv_solution(args)
    halpern_step = rf.halpern(loss, lr=lr, schedule=paper_schedule(a, n0), args=args).step
    summable = f"lambda_n = (n + n0)^-{A_FAST:g} (summable)"
    return rf.Method(
        **systems, y0=starts(), t1=T1, steps=NMGD_STEPS, samples=np.random.default_rng(3).normal(size=(8, DIM)),
        options=RUN_OPTIONS,
        perturbations=[
            rf.Perturbation(summable, _with_exponent(A_FAST, lr, n0, args)),
            rf.Perturbation("lambda_n = 2 h mu(n h) (penalty mu |w|^2 read as mu/2 |w|^2)", {
                "map_at": lambda h: rf.nmgd(loss, lr=h, schedule=flow_schedule(a, 2 * c, tau, h), args=args)}),
        ],
        claims=[
            rf.Formula(lambda w, p: halpern_step(0, w, p), step=True, name="eq 26 = eq 25",
                       source="sec 12: eq 26 (= eq 9) is Halpern's eq 25 with T = I - gamma grad L"),
            rf.SameLimit(state, on="flow", tol=1e-9, name="flow: start-independent",
                         source="sec 12-13: NMGD converges independently of initial conditions"),
            rf.AtHorizon(distance_to_pinv, predict=0.0, on="flow", absolute=True, tol=1e-2 * np.linalg.norm(xs),
                         name="flow: |w - X^+y|",
                         source="sec 12, Theorem 5: convergence to the minimum norm fixed point X^+ y"),
            rf.AtHorizon(state, predict=ridge_path(mu_flow, args), on="flow", absolute=True, tol=1e-6,
                         name="flow: the rest is Tikhonov bias",
                         source="sec 13 remark: the pseudoinverse is the lambda -> 0 limit of regularization; "
                                "w(t1) = argmin L + mu/2 |w|^2 at mu = mu(t1)"),
            rf.SameLimit(state, on="map", tol=1e-9, name="map: start-independent",
                         source="sec 12-13: NMGD converges independently of initial conditions"),
            rf.AtHorizon(distance_to_pinv, predict=0.0, on="map", absolute=True, tol=1e-2 * np.linalg.norm(xs),
                         name="map: |w - X^+y|", source="sec 12, Theorem 5 / eq 26: NMGD converges to X^+ y"),
            rf.AtHorizon(state, predict=ridge_path(mu_map, args), on="map", absolute=True, tol=1e-6,
                         name="map: the rest is Tikhonov bias",
                         source="sec 13 remark: w_n = argmin L + mu/2 |w|^2 at mu = lambda_n / ((1 - lambda_n) lr)"),
            rf.Agrees(order=1.0, t1=2.0,
                      source="eq 26 with lambda_n = h mu(n h) is the Euler step of the NMGD flow"),
        ],
    )


#: Fixed Halpern factor of Theorem 5's first sentence, k = 1 - FIXED_LAMBDA.
FIXED_LAMBDA = 0.05
#: Steps of the fixed-k iteration (it contracts by at most k = 0.95 per step: 0.95^800 = 1e-18).
FIXED_STEPS = 800


def fixed_point_of_kT(k, lr, args):
    r"""The fixed point of :math:`kT`, :math:`T = I - \gamma\nabla L`: :math:`\nabla L + \frac{1-k}{k\gamma}w = 0`,
    the regularization path at :math:`\mu = (1-k)/(k\gamma)`."""
    return ridge_path((1 - k) / (k * lr), args)


def gradient_norm(w, args):
    r""":math:`|\nabla L(w)| = |Tw - w| / \gamma`: zero exactly at the fixed points of :math:`T`."""
    return jnp.linalg.norm(2.0 * args["X"].T @ (args["X"] @ w - args["y"]))


@rf.entry("halpern.fixed_k", source="Theory III sec 12, Theorem 5 (first sentence); sec 14.1 item 3")
def fixed_k(lam: float = FIXED_LAMBDA, lr: float = LR, seed: int = SEED) -> rf.Method:
    r"""Halpern's iteration with a fixed factor, :math:`x_n = kTx_{n-1}`, :math:`k = 1 - \lambda`,
    :math:`T = I - \gamma\nabla L` on eq 28, and its flow, gradient flow with the fixed weight decay
    :math:`\mu = (1-k)/(k\gamma)` (:math:`\dot w = -k(\nabla L + \mu w)` in learning-rate time).
    :math:`kT` is a contraction: the iteration converges to its unique fixed point, the
    regularization path at :math:`\mu`, from every start, and that is not a fixed point of
    :math:`T` (Theorem 5 says "one of the fixed points of T")."""
    if not 0 < lam < 1:
        raise ValueError(f"lam must be in (0, 1) (k = 1 - lam), got {lam}")
    args = problem(seed)
    k = 1.0 - lam
    fixed = fixed_point_of_kT(k, lr, args)
    mu = (1 - k) / (k * lr)
    return rf.Method(
        flow=rf.gradient_flow(loss, lr=k, weight_decay=mu, names=names(), args=args),
        map=rf.halpern(loss, lr=lr, schedule=Constant(lam), names=names(), args=args),
        y0=starts(), t1=FIXED_STEPS * lr, steps=FIXED_STEPS, options=RUN_OPTIONS,
        perturbations=[rf.Perturbation("k = 1 - lam / 2", {
            "map": rf.halpern(loss, lr=lr, schedule=Constant(lam / 2), names=names(), args=args),
            "flow": rf.gradient_flow(loss, lr=1 - lam / 2, weight_decay=lam / (2 - lam) / lr, args=args)}),
            rf.Perturbation("k = 1 (plain GD, no regularization)", {
                "map": rf.gradient_descent(loss, lr=lr, names=names(), args=args),
                "flow": rf.gradient_flow(loss, names=names(), args=args)})],
        claims=[
            rf.AtHorizon(state, predict=fixed, on="map", tol=1e-10, name="x_n -> fixed point of kT",
                         source="sec 12, Theorem 5 (first sentence) corrected: x_n = kTx_{n-1}, |k| < 1, converges "
                                "to the unique fixed point of kT"),
            rf.AtHorizon(gradient_norm, predict=gradient_norm(jnp.asarray(fixed), args), printed=0.0, on="map",
                         absolute=True, tol=1e-8, name="|grad L| at the limit",
                         source="sec 12, Theorem 5 (first sentence) as printed: the limit is a fixed point of T",
                         erratum="printed: x_n = kTx_{n-1}, |k| < 1, converges to one of the fixed points y_k of T; "
                                 "it converges to the unique fixed point of kT, where grad L = -(1 - k)/(k gamma) w "
                                 "is not 0", grade="erratum"),
            rf.EquilibriumSet(guesses=starts(), on=lambda w, p: w - fixed, kind="sink", zero_modes=0,
                              name="one hyperbolic equilibrium",
                              source="sec 14.1 item 3 (eq 32-35): with any fixed regularization the equilibrium is "
                                     "unique and hyperbolic (here the fixed point of kT)"),
        ],
    )


def _remainder_flow(a, c, tau, t1):
    factor = remainder_factor_flow(a, c, tau, t1)
    return lambda y0, args: np.linalg.norm(null_part(y0, args)) * factor


@rf.entry("halpern.nmgd_fast_decay", source="Theory III sec 12, eq 25-26, Theorem 5 (a > 1)")
def nmgd_fast_decay(a: float = A_FAST, lr: float = LR, n0: int = N0, seed: int = SEED) -> rf.Method:
    r"""NMGD with :math:`a > 1`: :math:`\sum\lambda_n < \infty`, so the null-space part of
    :math:`w_0` is only shrunk by :math:`\prod_n(1-\lambda_n) > 0` (flow:
    :math:`\exp(-\int_0^{t}\mu)`): the limit is not :math:`X^+y` and depends on the start."""
    if not a > 1:
        raise ValueError(f"a must be > 1 for this entry (summable lambda_n), got {a}; see halpern.nmgd for a <= 1")
    args = problem(seed)
    systems, (c, tau) = nmgd_systems(loss, a, lr, n0, args, names())
    xs_norm = np.linalg.norm(pinv_solution(args))
    map_factor = remainder_factor_map(a, n0, FAST_STEPS)
    away = lambda w, p: distance_to_pinv(w, p) / xs_norm - 0.05  # noqa: E731
    away.__name__ = "|w - X^+y| / |X^+y| - 0.05"
    return rf.Method(
        **{**systems, "map_at": None}, y0=starts()[1:], t1=T1, steps=FAST_STEPS, options=RUN_OPTIONS,
        perturbations=[rf.Perturbation(f"lambda_n = (n + n0)^-{A:g} (not summable)",
                                       {**_with_exponent(A, lr, n0, args), "map_at": None})],
        claims=[
            rf.AtHorizon(distance_to_pinv, predict=_remainder_flow(a, c, tau, T1), on="flow", tol=1e-6,
                         name="flow: predicted remainder |P_N w0| exp(-int mu)",
                         source="sec 12: the null-space part decays by exp(-int mu) > 0 when a > 1"),
            rf.StaysIn(away, on="flow", name="flow: stays away from X^+y",
                       source="sec 12: Halpern needs sum lambda_n = infinity (a <= 1); a = 1.5 does not reach X^+ y"),
            rf.AtHorizon(distance_to_pinv,
                         predict=lambda y0, p: np.linalg.norm(null_part(y0, p)) * map_factor, on="map", tol=1e-6,
                         name="map: predicted remainder |P_N w0| prod (1 - lambda_n)",
                         source="sec 12: the null-space part is multiplied by prod (1 - lambda_n) > 0"),
            rf.StaysIn(away, on="map", name="map: stays away from X^+y",
                       source="sec 12, eq 26 with a = 1.5: no convergence to X^+ y"),
        ],
    )


LITERAL = ("eq 9 / eq 26 write lambda_n = 1/n^a, Theorem 5 k_n = 1 - 1/n^a; indexed from n = 1 this makes "
           "lambda_1 = 1 (k_1 = 0): the first step maps every start to 0, independence of the initial condition "
           "is trivial, and a = 1.5 converges to X^+ y too. Indexed so that lambda_n < 1 (here (n + 2)^-a) the "
           "statement holds as meant: a < 1 converges from every start, a > 1 does not (halpern.nmgd, "
           "halpern.nmgd_fast_decay)")


@rf.entry("halpern.literal_schedule", source="Theory III eq 9, eq 26, Theorem 5 (lambda_n = 1/n^a from n = 1)")
def literal_schedule(a: float = A_FAST, lr: float = LR, seed: int = SEED) -> rf.Method:
    r"""Eq 26 with the schedule as printed, :math:`\lambda_n = 1/n^a` from :math:`n = 1` (here
    :math:`a = 1.5`, summable): :math:`\lambda_1 = 1` sends every start to 0, after which the
    iteration is NMGD from 0 and reaches :math:`X^+y` whatever :math:`a`."""
    args = problem(seed)
    systems, _ = nmgd_systems(loss, a, lr, 1, args, names())
    shifted = nmgd_systems(loss, a, lr, N0, args, names())[0]
    return rf.Method(
        **{**systems, "map_at": None}, y0=starts()[1:], t1=1.0, steps=FAST_STEPS,
        perturbations=[rf.Perturbation(f"lambda_n = (n + {N0})^-a (lambda < 1)", {"map": shifted["map"]})],
        claims=[
            rf.Formula(lambda w, p: jnp.zeros_like(w), step=True, at=starts()[1:], name="first step: w_1 = 0",
                       source="eq 9 / eq 26 / Theorem 5 as printed (lambda_n = 1/n^a, k_n = 1 - 1/n^a, n >= 1)",
                       erratum=LITERAL, grade="convention"),
            rf.AtHorizon(state, predict=lambda y0, p: pinv_solution(p), on="map", tol=1e-5,
                         name="a = 1.5 reaches X^+y", source="eq 9 / eq 26 as printed, a = 1.5 > 1",
                         erratum=LITERAL, grade="convention"),
        ],
    )
