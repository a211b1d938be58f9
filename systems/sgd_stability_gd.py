r"""Which minima GD and quasi-Newton methods select: sharpness :math:`\le 2/\eta`.

Lei Wu, "Towards understanding the implicit regularization in deep learning" (slides, SJTU
summer school 2020); the stability theory and the SGD entries are in `sgd_stability`.

* GD (:math:`B = n`) keeps only the sharpness condition: the minima GD converges to have
  :math:`\lambda_{\max}(\nabla^2 L) \le 2/\eta` (the slides' table).
* A quasi-Newton iteration :math:`x_{t+1} = x_t - \eta D^{-1}\nabla f(x_t)` is linearly stable
  at a minimum iff :math:`\lambda_{\max}(D^{-1}H) \le 2/\eta` (the eigenvalues of
  :math:`D^{-1}H` are those of the symmetric :math:`D^{-1/2}HD^{-1/2}`); with :math:`D \approx H`
  that is :math:`\eta \lesssim 2` whatever the sharpness, so "almost all the minima can be
  selected".
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

import regflow as rf
from regflow.systems.sgd_stability import (SHARP_NAMES, TABLE_LRS, gd_minima, sharp_gd, sharp_loss, sharp_starts,
                                           sharpness_table)

#: Learning rate of "GD with a small step", close to the flow.
SMALL_LR = 0.01


def _table_measure(column, reduce, steps, starts):
    """A `rf.Holds` measure over the sharpness table of the method's GD (``method.map_at``)."""

    def measure(method):
        rows = sharpness_table(starts=starts, steps=steps, map_at=method.map_at)
        values = np.array([reduce(row) for row in rows])
        return float(column(values)), rf.Trace(np.array(TABLE_LRS), values, "eta", "per eta", "points")

    return measure


@rf.entry("sgd_stability.sharpness_gd", source="Wu slides, table 'Sharpness of the solutions found by GD'")
def sharpness_gd(lr: float = 0.2, steps: int = 3000) -> rf.Method:
    r"""GD :math:`w \leftarrow w - \eta\nabla L` on a diagonal linear network: every minimum GD
    converges to has sharpness :math:`\lambda_{\max}(\nabla^2L) \le 2/\eta` (the condition
    :math:`a \le 2/\eta` with :math:`B = n`), while GD with small steps (close to the flow)
    from the same starts also reaches sharper minima."""
    starts = sharp_starts()
    worst = _table_measure(np.max, lambda row: row[3] * row[0] / 2.0, steps, starts)
    worst.__name__ = "worst_sharpness_ratio"
    converged = _table_measure(np.min, lambda row: row[2], steps, starts)
    converged.__name__ = "converged_fraction"

    def small_steps_sharper(method):
        small = gd_minima(SMALL_LR, starts, 10 * steps, method.map_at)
        ok = np.isfinite(small)
        value = float(np.mean(small[ok] > 2.0 / max(TABLE_LRS))) if ok.any() else float("nan")
        index = np.arange(int(ok.sum()))
        return value, rf.Trace(index, np.sort(small[ok]), "converged run (sorted)", f"sharpness, eta={SMALL_LR}",
                               "points", 2.0 / max(TABLE_LRS))

    half = lambda h: sharp_gd(h, step_lr=h / 2)  # noqa: E731
    return rf.Method(
        flow=rf.gradient_flow(sharp_loss, names=SHARP_NAMES), map=sharp_gd(lr), map_at=sharp_gd,
        y0=starts[:4], t1=20.0, steps=steps,
        perturbations=[rf.Perturbation("GD on L/2 (the factor 2 of eq 1 vs eq 2)", {"map": half(lr), "map_at": half})],
        claims=[
            rf.Holds(measure=worst, lo=0.0, hi=1.0, name="sharpness <= 2/eta",
                     what=f"max over eta in {TABLE_LRS} and converged runs of eta * sharpness / 2",
                     source="table: sharpness of GD solutions <= prediction 2/eta"),
            rf.Holds(measure=converged, lo=0.5, hi=1.0, name="runs converge",
                     what=f"min over eta of the fraction of {len(starts)} GD runs with loss < 1e-12",
                     source="table (the bound is about minima GD converges to)"),
            rf.Holds(measure=small_steps_sharper, lo=0.05, hi=1.0, name="small steps reach sharper minima",
                     what=f"fraction of GD runs with eta={SMALL_LR} ending sharper than 2/{max(TABLE_LRS)}",
                     source="'learning rate is crucial for the sharpness of the selected minima'"),
        ],
    )


# ----------------------------------------------------------------------------- quasi-Newton

#: Eigenvalues of the Hessian of the quasi-Newton example: a sharp minimum (GD needs eta <= 0.2).
QN_CURVATURES = (10.0, 1.0, 0.1)
#: The quasi-Newton matrix is D = H + QN_SHIFT * I (an approximation of the Hessian).
QN_SHIFT = 0.05


def qn_hessian(seed=0):
    """A fixed symmetric Hessian with eigenvalues `QN_CURVATURES` in a random basis."""
    Q = np.linalg.qr(np.random.default_rng(seed).normal(size=(3, 3)))[0]
    return Q @ np.diag(QN_CURVATURES) @ Q.T


def qn_loss(x, args):
    r""":math:`f(x) = \frac12 x^\top H x`."""
    return 0.5 * x @ args["H"] @ x


def _preconditioned(x, args):
    return jnp.linalg.solve(args["D"], jax.grad(qn_loss)(x, args))


def qn_field(t, x, args):
    r"""The quasi-Newton flow :math:`\dot x = -D^{-1}\nabla f(x)`."""
    return -_preconditioned(x, args)


def qn_step(k, x, args):
    r"""The quasi-Newton iteration :math:`x - \eta D^{-1}\nabla f(x)`."""
    return x - args["lr"] * _preconditioned(x, args)


def d_norm(x, args):
    r""":math:`x^\top D x`: the norm in which :math:`I - \eta D^{-1}H` is symmetric."""
    return x @ args["D"] @ x


def identity(x, args=None):
    return x


@rf.entry("sgd_stability.quasi_newton", source="Wu slides, 'Extension: Quasi-Newton Method'")
def quasi_newton(lr: float = 1.5) -> rf.Method:
    r"""The quasi-Newton iteration :math:`x_{t+1} = x_t - \eta D^{-1}\nabla f(x_t)` on
    :math:`f = \frac12 x^\top Hx` with :math:`\lambda(H) = (10, 1, 0.1)` and :math:`D = H + 0.05 I`:
    stable iff :math:`\lambda_{\max}(D^{-1}H) \le 2/\eta`, so at :math:`\eta = 1.5` it selects
    a minimum ten times sharper than GD's bound :math:`2/\eta` allows."""
    H = qn_hessian()
    D = H + QN_SHIFT * np.eye(3)
    ratios = np.sort(np.linalg.eigvals(np.linalg.solve(D, H)).real)
    if not 0 < lr < 2.0 / ratios[-1]:
        raise ValueError(f"lr must be in (0, 2/lambda_max(D^-1 H) = {2.0 / ratios[-1]:.4g}), where the minimum is "
                         f"stable for the iteration, got {lr}")
    contraction = float(np.max((1.0 - lr * ratios) ** 2))
    args = {"H": jnp.asarray(H), "D": jnp.asarray(D)}
    at = lambda h: rf.Map(qn_step, dt=h, args={**args, "lr": h}, names=("x1", "x2", "x3"))  # noqa: E731
    gd = {"flow": rf.gradient_flow(qn_loss, args=args, names=("x1", "x2", "x3")),
          "map": rf.gradient_descent(qn_loss, lr=lr, args=args, names=("x1", "x2", "x3")),
          "map_at": lambda h: rf.gradient_descent(qn_loss, lr=h, args=args)}
    rng = np.random.default_rng(1)
    return rf.Method(
        flow=rf.ODE(qn_field, args=args, names=("x1", "x2", "x3")), map=at(lr), map_at=at,
        y0=rng.normal(size=(3, 3)), t1=10.0, steps=100, samples=rng.normal(size=(16, 3)),
        perturbations=[rf.Perturbation("GD (D = I) at the same learning rate", gd)],
        claims=[
            rf.Spectrum(at=[[0.0, 0.0, 0.0]], of="jacobian", expect=lambda p: -ratios, name="D^-1 H",
                        source=f"the linearization at the minimum is -D^-1 H: lambda_max(D^-1 H) = {ratios[-1]:.4f} "
                               f"for D ~ H (H's is {max(QN_CURVATURES):g})"),
            rf.StepRatio(d_norm, 0.0, contraction, at=rng.normal(size=(16, 3)), name="x^T D x",
                         source=f"stability iff lambda_max(D^-1 H) <= 2/eta: one step multiplies x^T D x by at most "
                                f"max (1 - eta lambda(D^-1 H))^2 = {contraction:.4g} (<= 1 iff eta <= "
                                f"{2 / ratios[-1]:.4g})"),
            rf.AtHorizon(identity, predict=0.0, on="map", absolute=True, tol=1e-10,
                         name="the sharp minimum is selected",
                         source=f"'for D ~ H almost all the minima can be selected as long as eta <= 2': at eta = "
                                f"{lr:g} the iteration converges to a minimum of sharpness {max(QN_CURVATURES):g} > "
                                "2/eta"),
        ],
    )
