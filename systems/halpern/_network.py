r"""NMGD on a two-layer linear network (*Theory III* sec 13 item 2, sec 15; eq 26 and eq 44)."""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np

import regflow as rf

from ._problem import A, DIM, SEED, T1, Constant, nmgd_systems, pinv_solution, problem

#: Hidden width of the two-layer linear network.
HIDDEN = 3
#: Learning rate of the two-layer network's map.
LR_DEEP = 0.1
#: Schedule offset of the two-layer network: lambda_0 = 100^-0.75 = 0.03.  With n0 = 2 the first
#: steps (lambda ~ 0.5) drive the weights to within |w|^2 ~ 0.01 of the origin, and the run would
#: then be GD from a tiny initialization; with n0 = 100 |w|^2 never drops below 3 (minimum norm 3.55).
N0_DEEP = 100
#: Offset of the perturbation that erases the start (the first steps drive w towards 0).
N0_ERASING = 2
#: Map steps (flow time T1 at LR_DEEP).
DEEP_STEPS = round(T1 / LR_DEEP)
#: Horizon of the flow (the imbalance check): exp(-2 int_0^t mu) ~ 5e-3 there, well above round-off.
IMBALANCE_T = 1.0


#: The two-layer linear network f(x) = v^T W x (`rf.Network`; its flat view is the state: W row-major, then v).
NETWORK = rf.Network((DIM, HIDDEN, 1))


def deep_unflatten(w, hidden=HIDDEN):
    """``(W, v)``: first layer (hidden x DIM) and output weights (hidden,)."""
    params = rf.Network((DIM, hidden, 1)).unflatten(w)
    return params["W1"], params["W2"][0]


def deep_loss(w, args):
    r"""Eq 44 for the two-layer linear network :math:`f(x) = v^\top Wx`: :math:`|y - f(X)|^2`."""
    return jnp.sum((args["y"] - NETWORK.scalar(NETWORK.unflatten(w), args["X"])) ** 2)


def squared_norm(w, args=None):
    return jnp.sum(w**2)


def layer_imbalance(w, args=None):
    r""":math:`\|W\|^2 - \|v\|^2`: conserved by GD (eq 18), shrunk by NMGD."""
    W, v = deep_unflatten(w)
    return jnp.sum(W**2) - jnp.sum(v**2)


def deep_names(hidden=HIDDEN):
    return tuple(f"W[{i},{j}]" for i in range(hidden) for j in range(DIM)) + tuple(f"v{i}" for i in range(hidden))


def minimum_norm(args):
    r"""The smallest :math:`\|W\|^2 + \|v\|^2` of an interpolant, :math:`2\min\|W^\top v\| = 2\|X^+y\|`
    (:math:`\|W\|^2 + \|v\|^2 \ge 2\|W\|\|v\| \ge 2\|W^\top v\|`, equality for balanced rank one)."""
    return 2.0 * np.linalg.norm(pinv_solution(args))


@rf.entry("halpern.deep_network", source="Theory III sec 13 item 2, sec 15; sec 12 eq 26")
def deep_network(a: float = A, lr: float = LR_DEEP, n0: int = N0_DEEP, seed: int = SEED) -> rf.Method:
    r"""NMGD on a two-layer linear network :math:`f(x) = v^\top Wx` (hidden width 3) on the data of
    eq 28 (square loss, eq 44), from large starts, and its flow
    :math:`\dot w = -\nabla L - c(t+\tau)^{-a}w`.  NMGD balances the layers (the flow shrinks
    :math:`\|W\|^2 - \|v\|^2`, which eq 18 says GD conserves) and reaches the minimum norm
    :math:`2\|X^+y\|` of an interpolant; plain GD from the same starts does not (the declared
    perturbation).  :math:`n_0 = 100`: see ``N0_DEEP``."""
    if not 0 < a < 1:
        raise ValueError(f"a must be in (0, 1), got {a}")
    args = problem(seed)
    systems, (c, tau) = nmgd_systems(deep_loss, a, lr, n0, args, deep_names())
    target = minimum_norm(args)
    y0 = 0.7 * np.random.default_rng(7).normal(size=(3, HIDDEN * (DIM + 1)))
    shrink = np.exp(-2 * c * ((IMBALANCE_T + tau) ** (1 - a) - tau ** (1 - a)) / (1 - a))

    def balance_rate(w, p):
        return -2.0 * c * tau ** (-a) * layer_imbalance(w)

    def not_erased(w, p):
        return squared_norm(w) / target - 0.5

    not_erased.__name__ = "|w|^2 / (2 |X^+y|) - 1/2"
    erasing = nmgd_systems(deep_loss, a, lr, N0_ERASING, args, deep_names())[0]
    return rf.Method(
        **{**systems, "map_at": None}, y0=y0, t1=IMBALANCE_T, steps=DEEP_STEPS,
        options={"rtol": 1e-11, "atol": 1e-13},
        perturbations=[
            rf.Perturbation("plain GD (no Halpern term)", {
                "map": rf.gradient_descent(deep_loss, lr=lr, args=args),
                "flow": rf.gradient_flow(deep_loss, args=args)}),
            rf.Perturbation(f"n0 = {N0_ERASING} (lambda_0 = {N0_ERASING ** -a:.2g})", {"map": erasing["map"]}),
            rf.Perturbation(f"lambda_n held at lambda_0 = {n0 ** -a:.2g} (the Halpern term does not vanish)",
                            {"map": rf.nmgd(deep_loss, lr=lr, schedule=Constant(n0 ** -a), args=args)}),
        ],
        claims=[
            rf.AtHorizon(squared_norm, predict=target, on="map", tol=1e-2, name="NMGD reaches the minimum norm",
                         source="sec 13 item 2 and sec 6.4: NMGD leads to the (locally) minimum norm fixed point "
                                "(|W|^2 + |v|^2 = 2 |X^+ y|, balanced rank one); GD does not"),
            rf.StaysIn(not_erased, on="map", name="NMGD does not pass through 0",
                       source="sec 12 end: is convergence to the minimum norm independent of initial conditions? "
                              "(the schedule must not erase the start)"),
            rf.AtHorizon(deep_loss, predict=0.0, on="map", absolute=True, tol=1e-4, name="NMGD interpolates",
                         source="sec 13 item 2: NMGD converges to fixed points (zero loss), as GD does"),
            rf.Formula(balance_rate, rate_of=layer_imbalance, name="d/dt(|W|^2 - |v|^2) = -2 mu(0) (|W|^2 - |v|^2)",
                       source="sec 7 eq 18 with the Halpern term: d/dt(|W|^2 - |v|^2) = -2 mu(t)(|W|^2 - |v|^2)"),
            rf.AtHorizon(layer_imbalance, predict=lambda y0, p: layer_imbalance(y0) * shrink, on="flow", tol=1e-6,
                         name=f"|W|^2 - |v|^2 at t = {IMBALANCE_T:g}",
                         source="sec 7 eq 18 with the Halpern term: |W|^2 - |v|^2 = D0 exp(-2 int_0^t mu)"),
        ],
    )
