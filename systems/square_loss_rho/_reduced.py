r"""Eq 5 of Poggio & Liao with the sums :math:`\sum f_n^2`, :math:`\sum f_ny_n` frozen: the transient phase
(sec 3, Fig. 1) and the collapse :math:`\rho\to0` when :math:`\sum f_ny_n < 0`."""

from __future__ import annotations

import dataclasses
import functools
from typing import Any

import jax.numpy as jnp
import numpy as np

import regflow as rf

from ._network import half_time


# ----------------------------------------------------------------------------- eq 5 alone


def reduced_field(t, rho, args):
    r"""Eq 5 with :math:`\sum f_n^2 = b`, :math:`\sum f_ny_n = c` frozen:
    :math:`\dot\rho = 2L\rho^{(2L-2)/L}(c - b\rho)`; ``args = {"L", "b", "c"}``."""
    L = args["L"]
    r = jnp.maximum(rho, 0.0)
    return 2.0 * L * r ** ((2.0 * L - 2.0) / L) * (args["c"] - args["b"] * r)


def dropped_factor_field(t, rho, args):
    r"""Eq 5 with the factor :math:`\rho_k^{L-1}` of eq 3 dropped: :math:`2L\rho^{(L-1)/L}(c - b\rho)`
    (a perturbation)."""
    L = args["L"]
    r = jnp.maximum(rho, 0.0)
    return 2.0 * L * r ** ((L - 1.0) / L) * (args["c"] - args["b"] * r)


#: Frozen sums of the reduced equation (rho_eq = c / b = 1) and the depths compared.
REDUCED_B, REDUCED_C = 1.0, 1.0
REDUCED_DEPTHS = (2, 3, 4, 5, 6)
REDUCED_STARTS = (1e-1, 1e-2, 1e-3)
#: Per-layer starting norms for the depth comparison (rho(0) = r^L).
REDUCED_LAYER_NORM = 0.5
#: Depths and starts of the small-rho law T ~ rho0^-(1 - 2/L), and the allowed error of its exponent.
LAW_DEPTHS = (3, 4, 5, 6)
LAW_STARTS = (1e-4, 1e-5, 1e-6)
EXPONENT_TOL = 0.03


def _sweep_field(t, y, args):
    """Eq 5 with its parameters carried in the state, ``y = [rho, L, b, c]``: one compiled
    program integrates many depths and starts at once."""
    rho_dot = reduced_field(t, y[0], {"L": y[1], "b": y[2], "c": y[3]})
    return jnp.stack([rho_dot, 0.0 * y[1], 0.0 * y[2], 0.0 * y[3]])


SWEEP = rf.ODE(_sweep_field, names=("rho", "L", "b", "c"))
#: Saved times of a transient-time sweep.
SWEEP_SAVES = 4001


def transient_sweep(cases, frac=0.5, b=REDUCED_B, c=REDUCED_C, t1=None):
    r"""Eq 5 from every ``(L, rho0)`` of ``cases`` in one `rf.integrate` ensemble of `SWEEP`
    (state ``[rho, L, b, c]``) on a dense grid.  Returns the trajectory and, per case, the time
    :math:`T` to rise to ``frac`` :math:`\rho_{eq}` (linear interpolation of the crossing)."""
    cases = _check_cases(cases, frac, b, c)
    if t1 is None:  # the small-rho estimate, tripled, plus relaxation
        t1 = 3.0 * float(_estimate(cases, c).max()) + 4.0 / b
    ts = np.linspace(0.0, t1, SWEEP_SAVES)
    y0 = np.column_stack([cases[:, 1], cases[:, 0], np.full(len(cases), b), np.full(len(cases), c)])
    traj = rf.integrate(SWEEP, y0, t1, ts=ts, rtol=1e-10, atol=1e-12, batched=True)
    if not traj.ok:
        raise RuntimeError(f"the transient sweep did not finish: {traj.status}")
    return traj, np.array([half_time(ts, traj.y[p, :, 0], frac * c / b) for p in range(len(cases))])


def _check_cases(cases, frac, b, c):
    cases = np.asarray(cases, dtype=float).reshape(-1, 2)
    if np.any(cases[:, 1] <= 0) or np.any(cases[:, 1] >= frac * c / b):
        raise ValueError(f"every rho0 must lie in (0, frac * rho_eq = {frac * c / b:g}), got {cases[:, 1]}")
    return cases


def _estimate(cases, c):
    r"""The small-rho estimate of T: :math:`\rho_0^{-(1-2/L)}/(2(L-2)c)`, :math:`\log(1/\rho_0)/(4c)` for L = 2."""
    L, r0 = cases[:, 0], cases[:, 1]
    expo = np.maximum(1.0 - 2.0 / L, 0.0)
    return np.where(expo > 0, r0 ** (-expo) / np.maximum(2.0 * (L - 2.0), 1.0), np.log(1.0 / r0) + 1.0) / c


#: Horizon of a rescaled transient run, in units of its case's estimate of T, and its saves.
RESCALED_HORIZON = 4.0
RESCALED_SAVES = 801


def transient_times(cases, frac=0.5, b=REDUCED_B, c=REDUCED_C, field=reduced_field):
    r"""The time :math:`T` each ``(L, rho0)`` of ``cases`` takes to rise to ``frac`` :math:`\rho_{eq}` under
    ``field(t, rho, {"L", "b", "c"})`` (eq 5, or a method's flow).  Each case runs in its own unit of
    time, :math:`\tau` = the small-rho estimate of T plus :math:`1/b` (state ``[rho, L, b, c, tau]``,
    :math:`d\rho/ds = \tau\,\dot\rho`), so one ensemble resolves T from 0.1 to 10^4."""
    cases = _check_cases(cases, frac, b, c)
    tau = _estimate(cases, c) + 1.0 / b
    ts = np.linspace(0.0, RESCALED_HORIZON, RESCALED_SAVES)
    y0 = np.column_stack([cases[:, 1], cases[:, 0], np.full(len(cases), b), np.full(len(cases), c), tau])
    traj = rf.integrate(_rescaled_system(field), y0, RESCALED_HORIZON, ts=ts, rtol=1e-8, atol=1e-13, batched=True)
    if not traj.ok:
        raise RuntimeError(f"the transient sweep did not finish: {traj.status}")
    return tau * np.array([half_time(ts, traj.y[p, :, 0], frac * c / b) for p in range(len(cases))])


@dataclasses.dataclass(frozen=True)
class _Rescaled:
    """``[rho, L, b, c, tau]`` -> ``[tau * field(rho; L, b, c), 0, 0, 0, 0]``."""

    field: Any

    def __call__(self, t, y, args):
        rho_dot = self.field(t, y[:1], {"L": y[1], "b": y[2], "c": y[3]})[0]
        return jnp.stack([y[4] * rho_dot, 0.0 * y[1], 0.0 * y[2], 0.0 * y[3], 0.0 * y[4]])


def _rescaled_system(field):
    """The rescaled sweep ODE of ``field``, one per field (so one compiled program per field and process)."""
    try:
        return _cached_rescaled(field)
    except TypeError:  # an unhashable field (e.g. one holding arrays): built afresh
        return rf.ODE(_Rescaled(field))


@functools.lru_cache(maxsize=16)
def _cached_rescaled(field):
    return rf.ODE(_Rescaled(field))


def transient_quadrature(args, rho0, frac=0.5):
    r""":math:`T = \int_{\rho_0}^{\text{frac}\,\rho_{eq}} d\rho/\dot\rho` by scipy quadrature
    (an independent reference for `transient_times`)."""
    from scipy.integrate import quad

    level = frac * args["c"] / args["b"]
    return float(quad(lambda r: 1.0 / float(reduced_field(0.0, r, args)), rho0, level, limit=200)[0])


#: Monotone tolerance: claims integrate flows at rtol 1e-8, so once rho has reached rho_eq the
#: solver moves it by ~1e-8 (relative) either way; 1e-7 sits above that floor.
MONOTONE_TOL = 1e-7


def reduced_args(L, b=REDUCED_B, c=REDUCED_C):
    return {"L": float(L), "b": float(b), "c": float(c)}


#: The transient times a `reduced` check compares: by start, by depth at equal layer norms, at a fixed
#: product norm, and for the small-rho law.
_STARTS_CASES = [(d, r) for d in REDUCED_DEPTHS for r in REDUCED_STARTS]
_LAYER_CASES = [(d, REDUCED_LAYER_NORM**d) for d in REDUCED_DEPTHS]
_PRODUCT_CASES = [(6, 0.1), (3, 0.1)]
_LAW_CASES = [(d, r) for d in LAW_DEPTHS for r in LAW_STARTS]


@functools.lru_cache(maxsize=8)
def _transients(method):
    """The transient times of the method's flow (one rescaled ensemble per built method)."""
    a = method.flow.args
    T = transient_times(_STARTS_CASES + _LAYER_CASES + _PRODUCT_CASES + _LAW_CASES, b=a["b"], c=a["c"],
                        field=method.flow.vector_field)
    sizes = np.cumsum([0, len(_STARTS_CASES), len(_LAYER_CASES), len(_PRODUCT_CASES), len(_LAW_CASES)])
    by_start, by_layer, product, law = (T[i:j] for i, j in zip(sizes[:-1], sizes[1:]))
    return by_start.reshape(len(REDUCED_DEPTHS), -1), by_layer, product, law.reshape(len(LAW_DEPTHS), -1)


def start_ordering(method):
    by_start = _transients(method)[0]
    ratios = by_start[:, 1:] / by_start[:, :-1]
    return float(np.min(ratios)), rf.Trace(np.arange(ratios.size), ratios.ravel(), "(L, rho0) pair",
                                           "T(rho0/10) / T(rho0)", "points", 1.0)


def depth_ordering(method):
    T = _transients(method)[1]
    return float(np.min(T[1:] / T[:-1])), rf.Trace(REDUCED_DEPTHS, T, "depth L", "T at rho_k(0) = 0.5", "points")


def fixed_product(method):
    T = _transients(method)[2]
    return float(T[0] / T[1])


def small_rho_exponents(method):
    r"""The exponents :math:`-d\log T/d\log\rho_0` fitted over ``LAW_STARTS`` per depth, against
    :math:`1 - 2/L`: the largest error, with fitted and predicted exponents."""
    law = _transients(method)[3]
    fitted = np.array([-np.polyfit(np.log(LAW_STARTS), np.log(T), 1)[0] for T in law])
    predicted = 1.0 - 2.0 / np.asarray(LAW_DEPTHS, dtype=float)
    return float(np.max(np.abs(fitted - predicted))), rf.Trace(LAW_DEPTHS, fitted, "depth L", "-d log T / d log rho0",
                                                               "points", (LAW_DEPTHS, predicted, "1 - 2/L"))


def _exponent_field(power):
    r"""Eq 5 with :math:`\rho^{p(L)}` for :math:`\rho^{(2L-2)/L}` (a perturbation)."""

    def field(t, rho, args):
        r = jnp.maximum(rho, 0.0)
        return 2.0 * args["L"] * r ** power(args["L"]) * (args["c"] - args["b"] * r)

    return field


def _reduced_perturbations(flow, args):
    def flipped(t, rho, a):
        return -reduced_field(t, rho, a)

    return [rf.Perturbation("bracket of eq 5 with the opposite sign", {"flow": flow.replace(vector_field=flipped)}),
            rf.Perturbation("eq 5 with rho^(2L-2) (rho for rho_k in eq 3's rho_k^(2L-2))",
                            {"flow": flow.replace(vector_field=_exponent_field(lambda L: 2.0 * L - 2.0))}),
            rf.Perturbation("eq 5 with the L = 4 exponent 3/2 at every depth",
                            {"flow": flow.replace(vector_field=_exponent_field(lambda L: 1.5))})]


@rf.entry("square_loss_rho.reduced", source="Poggio & Liao, eq 5-6, sec 3, Fig. 1")
def reduced(L: int = 4, b: float = REDUCED_B, c: float = REDUCED_C) -> rf.Method:
    r"""Eq 5 with the sums frozen, :math:`\dot\rho = 2L\rho^{(2L-2)/L}(c - b\rho)` (Fig. 1):
    the sink :math:`\rho_{eq} = c/b` (eq 6) and the transient phase, whose length T (the time to
    reach :math:`\rho_{eq}/2`) is measured on the method's own field at the depths and starts of sec 3;
    near :math:`\rho = 0`, :math:`T \approx \rho(0)^{-(1-2/L)}/(2(L-2)c)`."""
    if not (b > 0 and c > 0):
        raise ValueError(f"b = sum f^2 and c = sum f y must be positive for a transient to rho_eq = c/b, "
                         f"got b={b}, c={c}")
    args = reduced_args(L, b, c)
    flow = rf.ODE(reduced_field, names=("rho",), args=args)
    starts = np.array([[1e-3], [1e-2], [0.1], [0.5 * c / b]])
    return rf.Method(
        flow=flow, y0=starts, t1=40.0 / (b * L), samples=np.array([[1e-2], [0.3], [0.9 * c / b]]),
        view={"x": "rho"}, perturbations=_reduced_perturbations(flow, args),
        claims=[
            rf.EquilibriumSet(guesses=np.array([[0.8 * c / b], [1.3 * c / b]]), on=lambda y, a: y[0] - a["c"] / a["b"],
                              kind="sink", zero_modes=0, name="rho_eq = sum y f / sum f^2",
                              source="eq 6: the equilibrium of eq 5"),
            rf.Monotone(lambda y, a: y[0], increasing=True, name="rho", tol=MONOTONE_TOL,
                        source="sec 3.1: rho grows while rho < rho_eq and sum f y > 0"),
            rf.Holds(measure=start_ordering, lo=1.0, name="smaller start, longer transient",
                     what=f"min over L in {REDUCED_DEPTHS} of T(rho0/10)/T(rho0), rho0 in {REDUCED_STARTS}; "
                          "T: time to reach rho_eq/2 under the method's field",
                     source="sec 3: 'the smaller rho_{t=0} is, the longer it takes to rho to grow'"),
            rf.Holds(measure=depth_ordering, lo=1.0, name="deeper, longer transient",
                     what=f"min over L in {REDUCED_DEPTHS} of T(L+1)/T(L) with every layer at rho_k(0) = "
                          f"{REDUCED_LAYER_NORM} (rho(0) = {REDUCED_LAYER_NORM}^L)",
                     source="abstract, sec 3: 'T is longer with more layers'"),
            rf.Holds(measure=small_rho_exponents, hi=EXPONENT_TOL, name="T ~ rho(0)^-(1 - 2/L)",
                     what=f"max over L in {LAW_DEPTHS} of |fitted -dlog T/dlog rho0 - (1 - 2/L)|, rho0 in {LAW_STARTS}",
                     source="sec 3: 'this phenomenon increase with larger L': the exponent 1 - 2/L of eq 5 near "
                            "rho = 0 grows with depth"),
            rf.Holds(measure=fixed_product, lo=0.0, hi=1.0, name="fixed rho(0): depth need not lengthen",
                     what="T(L=6) / T(L=3) at the same product norm rho(0) = 0.1",
                     source="qualification of 'longer for deeper networks' (it needs equal small layer norms)"),
        ],
    )


def inverse_power(L):
    r""":math:`\rho^{-(1-2/L)}`: along eq 5 with :math:`c < 0` it grows like :math:`2(L-2)|c|\,t`."""

    def q(y, args=None):
        return jnp.maximum(y[0], 1e-300) ** (-(1.0 - 2.0 / L))

    q.__name__ = f"rho^-(1-2/{L})"
    return q


def collapse_rate(L):
    r"""Eq 5 for :math:`q = \rho^{-(1-2/L)}`: :math:`\dot q = 2(L-2)(|c| + b\rho)` when :math:`c < 0`."""
    return lambda y, a: 2.0 * (L - 2.0) * (-a["c"] + a["b"] * y[0])


def time_law(t):
    """The law :math:`t` (for GrowsLike: the quantity is affine in t)."""
    return np.asarray(t, dtype=float)


time_law.__name__ = "t"


@rf.entry("square_loss_rho.collapse", source="Poggio & Liao, eq 5, sec 3")
def collapse(L: int = 4, b: float = REDUCED_B, c: float = -0.5) -> rf.Method:
    r"""Eq 5 with :math:`\sum f_ny_n = c < 0` frozen: :math:`\dot\rho = 2L\rho^{(2L-2)/L}(c - b\rho) < 0`, so
    :math:`\rho \to 0` ("when it does not go to zero", sec 3), algebraically for :math:`L > 2`:
    :math:`\rho^{-(1-2/L)}` grows like :math:`2(L-2)|c|\,t`."""
    if isinstance(L, bool) or not isinstance(L, (int, np.integer)) or L < 3:
        raise ValueError(f"L must be an int >= 3 (rho -> 0 algebraically), got {L!r}")
    if not (b > 0 and c < 0):
        raise ValueError(f"collapse needs b = sum f^2 > 0 and c = sum f y < 0, got b={b}, c={c}")
    args = reduced_args(L, b, c)
    flow = rf.ODE(reduced_field, names=("rho",), args=args)
    return rf.Method(
        flow=flow, y0=np.array([[0.8], [0.3], [0.05]]), t1=1e3, samples=np.array([[1e-3], [0.1], [0.5], [2.0]]),
        options={"rtol": 1e-10, "atol": 1e-14},
        perturbations=[rf.Perturbation("eq 5 without rho_k^(L-1) of eq 3: rho^((L-1)/L)",
                                       {"flow": flow.replace(vector_field=dropped_factor_field)})],
        claims=[
            rf.Monotone(lambda y, a: y[0], name="rho",
                        source="sec 3 (and remark 3.1 read backwards): with sum f_n y_n < 0, d rho/dt < 0"),
            rf.Formula(collapse_rate(L), rate_of=inverse_power(L), tol=1e-10, name="d/dt rho^-(1-2/L)",
                       source="eq 5: d/dt rho^-(1-2/L) = 2(L-2)(|c| + b rho), so rho -> 0 like t^-L/(L-2)"),
            rf.GrowsLike(inverse_power(L), law=time_law, t_from=1e2, tol=1e-3,
                         name="rho^-(1-2/L)",
                         source="sec 3: rho goes to zero (algebraically in t) when sum f_n y_n < 0"),
        ],
    )
