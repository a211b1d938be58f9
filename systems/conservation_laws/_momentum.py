r"""Momentum flows lose the laws of the gradient flow.

Marcotte, Gribonval & Peyré, "Keep the momentum: conservation laws beyond Euclidean gradient
flows" (ICML 2024): the conservation laws of momentum flows depend on time, and there are fewer
of them than for the gradient flow (for linear nets, except in sufficiently over-parameterized
regimes; for ReLU nets none remain).  Checked here on a two-layer linear net
:math:`UV^\top x` under the heavy-ball ODE of `rf.momentum_ode`,
:math:`\ddot w = -c\,\dot w - b\,\nabla L(w)` with :math:`c = 2(1-\beta)/(h(1+\beta))`,
:math:`b = 2/(h(1+\beta))`, on the phase space :math:`(w, v = \dot w)`:

* the gradient flow of the same loss keeps :math:`r(r+1)/2` laws, the entries of
  :math:`U^\top U - V^\top V`;
* the momentum ODE keeps no time-independent law on :math:`(w, v)`:
  :math:`D - \dim\operatorname{Lie}` of its fields over data sets is 0;
* :math:`U^\top U - V^\top V` drifts along a momentum run;
* what remains is time-dependent: with :math:`M = U^\top\dot U - \dot V^\top V`,
  :math:`\dot M = \dot U^\top\dot U - \dot V^\top\dot V - cM` (the loss terms
  :math:`U^\top G V` cancel, :math:`G = \partial L/\partial(UV^\top)`), so its antisymmetric part
  obeys :math:`\dot A = -cA` and :math:`e^{ct}A` is conserved: :math:`r(r-1)/2` time-dependent
  laws (the paper counts all of them for linear nets, fewer than :math:`r(r+1)/2` except when
  sufficiently over-parameterized; that count is not checked here).  From the
  optimizer's own start (`rf.momentum_start`, :math:`v_0 \propto -\nabla L`) :math:`A = 0`, so
  the runs start from random velocities.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

import regflow as rf

from ._measures import COUNT_POINTS, DATASETS
from ._two_layer import data, gram_laws, params, square_loss

#: Learning rate and momentum of the heavy-ball ODE.
LR, BETA = 0.1, 0.9
#: Horizon of the momentum runs.
T1 = 2.0
#: Smallest drift of U^T U - V^T V (largest entry change over a run) the momentum runs must show.
DRIFT_FLOOR = 1e-2
#: Momentum of the perturbation whose damping the decay row must catch.
OTHER_BETA = 0.5
SOURCE = "Marcotte, Gribonval & Peyre 2024"


def damping(lr=LR, beta=BETA):
    r""":math:`c = 2(1-\beta)/(h(1+\beta))`, the rate of :math:`\dot w` in :math:`\ddot w = -c\dot w - b\nabla L`."""
    return 2.0 * (1.0 - beta) / (lr * (1.0 + beta))


def _split(y):
    """``(w, v)`` of a momentum state, ``(w, 0)`` of a first-order one."""
    if isinstance(y, dict) and "params" in y:
        return y["params"], y["velocity"]
    return y, {k: jnp.zeros_like(x) for k, x in y.items()}


def antisymmetric_momentum(y, args=None):
    r""":math:`A_{01}` with :math:`A = (M - M^\top)/2`, :math:`M = U^\top\dot U - \dot V^\top V` (0 without a velocity)."""
    w, v = _split(y)
    M = w["U"].T @ v["U"] - v["V"].T @ w["V"]
    return 0.5 * (M[0, 1] - M[1, 0])


def decayed(y0, args=None):
    r""":math:`e^{-cT}A_{01}(y_0)`, the paper's time-dependent law :math:`e^{ct}A` at the horizon."""
    return np.exp(-damping() * T1) * antisymmetric_momentum(y0)


def _phase_point(n, m, r, seed=0):
    w = params(n, m, r, seed)
    rng = np.random.default_rng(seed + 30)
    return {"params": w, "velocity": {k: rng.normal(size=x.shape) for k, x in w.items()}}


def _point_for(flow, n, m, r):
    """A phase point for a momentum flow, a parameter point for a first-order one."""
    return _phase_point(n, m, r) if hasattr(flow.vector_field, "lr") else params(n, m, r)


def _count(flow, point):
    return rf.count_conservation_laws(flow, point, args=flow.args, datasets=DATASETS, points=COUNT_POINTS)


def _trace(count, expect):
    levels = np.arange(1, len(count.levels) + 1)
    return rf.Trace(levels, count.dim - np.asarray(count.levels), "bracket level", "D - rank so far", "points",
                    float(expect))


def gradient_flow_count(n, m, r):
    """A `rf.Holds` measure: the law count of the gradient flow of the method's loss (its field's ``loss``)."""

    def measure(method):
        flow = rf.gradient_flow(method.flow.vector_field.loss, args=method.flow.args)
        count = _count(flow, params(n, m, r))
        return count.laws, _trace(count, r * (r + 1) // 2)

    measure.__name__ = f"gradient_flow_laws_{n}x{m}x{r}"
    return measure


def momentum_count(n, m, r):
    """A `rf.Holds` measure: the law count of the method's own flow on its state (phase space for momentum)."""

    def measure(method):
        count = _count(method.flow, _point_for(method.flow, n, m, r))
        return count.laws, _trace(count, 0)

    measure.__name__ = f"momentum_laws_{n}x{m}x{r}"
    return measure


class _Gram:
    r"""The entries of :math:`U^\top U - V^\top V` of a state's parameters, ``q(y, args) -> (k,)``."""

    def __init__(self, r):
        self.laws = gram_laws(r)
        self.__name__ = "U^T U - V^T V"

    def __call__(self, y, args=None):
        w = _split(y)[0]
        return jnp.stack([law(w) for law in self.laws])


def gram_drift(r):
    r"""A `rf.Holds` measure: the largest change of an entry of :math:`U^\top U - V^\top V` over the
    method's runs to ``t1``."""
    gram = _Gram(r)

    def measure(method):
        traj = rf.integrate(method.flow, method.y0, method.t1, batched=True, backend="scipy",
                            ts=np.linspace(0.0, method.t1, 21))
        q = np.asarray(traj.evaluate(gram))  # (paths, times, k)
        drifts = np.max(np.abs(q - q[:, :1]), axis=(0, 2))
        return float(drifts[-1]), rf.Trace(np.asarray(traj.t), drifts, "t", "max |Q(t) - Q(0)|", "points",
                                           DRIFT_FLOOR)

    measure.__name__ = f"gram_drift_r{r}"
    return measure


def momentum_flow(n, m, loss=None, beta=BETA):
    """The heavy-ball ODE (`rf.momentum_ode`) of ``loss`` (the linear net's) on the entry's data."""
    return rf.momentum_ode(loss or square_loss("linear"), lr=LR, beta=beta, args=data(n, m))


def _stack(states):
    return jax.tree_util.tree_map(lambda *xs: np.stack(xs), *states)


@rf.entry("conservation_laws.momentum_linear", source=f"{SOURCE}: momentum flows of two-layer linear networks")
def momentum_linear(n: int = 2, m: int = 2, r: int = 2) -> rf.Method:
    r"""Heavy-ball momentum ODE of a two-layer linear net :math:`UV^\top x`: the gradient flow's
    :math:`r(r+1)/2` laws (entries of :math:`U^\top U - V^\top V`) are lost on the phase space
    :math:`(w, v)` (no law independent of time remains, and :math:`U^\top U - V^\top V` drifts);
    the antisymmetric part of :math:`U^\top\dot U - \dot V^\top V` decays as :math:`e^{-ct}`."""
    if r != 2:
        raise ValueError(f"r must be 2 (the decay row follows the one antisymmetric entry A[0, 1]), got {r}")
    first_order = rf.heavy_ball_flow(square_loss("linear"), beta=BETA, args=data(n, m))
    return rf.Method(
        flow=momentum_flow(n, m), y0=_stack([_phase_point(n, m, r, seed) for seed in (1, 2)]), t1=T1,
        perturbations=[
            rf.Perturbation("first-order heavy-ball flow (h -> 0): (1 - beta) w' = -grad L, the gradient flow slowed",
                            {"flow": first_order, "y0": _stack([params(n, m, r, seed) for seed in (1, 2)])}),
            rf.Perturbation("tanh hidden layer (not homogeneous)", {"flow": momentum_flow(n, m, square_loss("tanh"))}),
            rf.Perturbation(f"momentum beta = {OTHER_BETA:g} (another damping c)",
                            {"flow": momentum_flow(n, m, beta=OTHER_BETA)}),
        ],
        claims=[
            rf.Holds(measure=gradient_flow_count(n, m, r), lo=r * (r + 1) // 2, hi=r * (r + 1) // 2,
                     name=f"gradient flow of the same loss: {r * (r + 1) // 2} laws",
                     what="D - dim Lie(W)(theta) of the gradient flow's fields over data sets (r(r+1)/2)",
                     source=f"{SOURCE} (and 2023): the gradient flow of a linear net keeps the r(r+1)/2 entries "
                            "of U^T U - V^T V"),
            rf.Holds(measure=momentum_count(n, m, r), lo=0, hi=0,
                     name="momentum ODE: 0 laws independent of time on (w, v)",
                     what="D - dim Lie of the momentum ODE's fields over data sets on the phase space (w, v)",
                     source=f"{SOURCE}: momentum laws depend on time; the gradient flow's laws are lost"),
            rf.Holds(measure=gram_drift(r), lo=DRIFT_FLOOR,
                     name="U^T U - V^T V drifts along momentum runs",
                     what="largest change of an entry of U^T U - V^T V over the runs to t1",
                     source=f"{SOURCE}: conservation loss from gradient flow to momentum dynamics"),
            rf.AtHorizon(q=antisymmetric_momentum, predict=decayed,
                         name="antisym(U^T U' - V'^T V) = exp(-c t) x its start",
                         source=f"{SOURCE}: the remaining momentum laws of a linear net depend on time, "
                                "e^{ct} times the antisymmetric part"),
        ],
    )
