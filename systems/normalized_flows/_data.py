r"""The data set, the hard-margin SVM and the asymptotic constants of the exponential-loss
gradient flow, the starts, and the run constants shared by the `normalized_flows` entries."""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np
import regflow as rf
from scipy.optimize import minimize

#: The data set: two Gaussian blobs in the plane, separable by a line through the origin, with two
#: support vectors, the other margins >= 1.6 (so the asymptotic regime comes early), and every
#: cross-class inner product negative (so label-aligned ReLU units never reach a kink).
DATA_SEED = 134
PER_CLASS = 4
CLASS_CENTRES = ((1.2, 0.4), (-0.4, -1.2))
CLASS_SPREAD = 0.5
#: Horizon (flow time) of the convergence claims: rho grows like log t, so an adaptive solver
#: reaches it in a few hundred steps.  Long runs outside the claims save log-spaced from LONG_T0.
HORIZON = 1e40
LONG_T0 = 1e-2
LONG_SAVES = 201
#: Solver tolerances of the runs to the horizon.
LONG_RTOL, LONG_ATOL = 1e-10, 1e-12
LONG_OPTIONS = {"rtol": LONG_RTOL, "atol": LONG_ATOL}
#: Horizon of the WN and Lagrange flows: their direction moves rho^2 times faster than GF's, so
#: an explicit solver needs ~log(t)^3 steps (1e15: ~10^4 steps; 1e40 would pass diffrax's step budget).
STIFF_HORIZON = 1e15
#: Horizon of the claims about finite times (ReLU networks) and learning rate of the maps.
T1 = 50.0
LR = 0.05
#: Map steps of the map claims.
MAP_STEPS = 400
#: Margins above this (relative) are not support vectors of the SVM.
SV_RTOL = 1e-6
SVM_TOL = 1e-15


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

    Raises ValueError when no hyperplane through the origin separates the data."""
    z = signed_data(data)
    start = np.linalg.lstsq(z, np.ones(len(z)), rcond=None)[0]
    res = minimize(lambda w: 0.5 * w @ w, start, jac=lambda w: w, method="SLSQP",
                   constraints=[{"type": "ineq", "fun": lambda w: z @ w - 1.0, "jac": lambda w: z}],
                   options={"ftol": SVM_TOL, "maxiter": 1000})
    if not res.success or np.min(z @ res.x) < 1.0 - 1e-8:
        raise ValueError("the data are not separable by a line through the origin: no hard-margin SVM exists")
    return res.x


def soudry_constants(data):
    r"""Constants of the asymptotics :math:`w(t) = \hat w\log t + \tilde w + o(1)` of the GF (Soudry et al.):
    ``(w_hat, w_tilde, alpha)``, the SVM :math:`\hat w = \sum_{SV}\alpha_nz_n` and the offset
    :math:`\tilde w` in the span of the support vectors with :math:`z_n\cdot\tilde w = -\ln\alpha_n` there.
    Needs support vectors that are linearly independent (else ValueError)."""
    z = signed_data(data)
    w_hat = hard_margin_svm(data)
    Z = z[np.flatnonzero(z @ w_hat < 1.0 + SV_RTOL)]
    if np.linalg.matrix_rank(Z) < len(Z):
        raise ValueError(f"the SVM's {len(Z)} support vectors are linearly dependent: the offset is not unique")
    alpha = np.linalg.lstsq(Z.T, w_hat, rcond=None)[0]
    if np.any(alpha <= 0):
        raise ValueError("a support vector has a non-positive dual coefficient")
    w_tilde = Z.T @ np.linalg.solve(Z @ Z.T, -np.log(alpha))
    return w_hat, w_tilde, alpha


def svm_asymptotics(data):
    r"""``(w_hat, offset)``: the SVM :math:`\hat w` and :math:`|P_\perp\tilde w|` (`soudry_constants`), the
    constant of the angle to the SVM direction, :math:`\angle(w(t), \hat w) = |P_\perp\tilde w|/\rho + o(1/\rho)`."""
    w_hat, w_tilde, _ = soudry_constants(data)
    u = w_hat / np.linalg.norm(w_hat)
    return w_hat, float(np.linalg.norm(w_tilde - u * (u @ w_tilde)))


def angle(a, b):
    """Angle (radians) between two vectors, or row-wise for ``a`` of shape (n, d)."""
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    cos = (a @ b) / (np.linalg.norm(a, axis=-1) * np.linalg.norm(b))
    return np.arccos(np.clip(cos, -1.0, 1.0))


def angle_to(direction):
    """``q(w, args)``: the angle between ``w`` and ``direction`` (traceable: an observable)."""
    u = jnp.asarray(direction / np.linalg.norm(direction))

    def q(w, args=None):
        return jnp.arccos(jnp.clip(w @ u / jnp.linalg.norm(w), -1.0, 1.0))

    return q


def separating_cone(data, grid=7201):
    """The angles ``(lo, hi)`` of the directions v with ``y_n v.x_n > 0`` for all n."""
    z = signed_data(data)
    theta = np.linspace(-np.pi, np.pi, grid)
    inside = theta[(np.stack([np.cos(theta), np.sin(theta)], axis=1) @ z.T).min(axis=1) > 0]
    if inside.size == 0:
        raise ValueError("the data are not separable by a line through the origin")
    return inside.min(), inside.max()


def linear_starts(data, n=4, radius=0.3):
    """Separating starts of the linear classifier: directions spread over the separating cone."""
    lo, hi = separating_cone(data)
    picks = np.linspace(lo, hi, n + 2)[1:-1]
    return radius * np.stack([np.cos(picks), np.sin(picks)], axis=1)


def long_ts(horizon=HORIZON):
    """Saves of a long run: 0, then log-spaced from LONG_T0 to ``horizon``."""
    return np.concatenate([[0.0], np.logspace(np.log10(LONG_T0), np.log10(horizon), LONG_SAVES - 1)])


def long_run(system, starts, horizon=HORIZON, backend="auto"):
    """The flow from each of ``starts`` (n, dim) to ``horizon``, saved at `long_ts`."""
    traj = rf.integrate(system, np.atleast_2d(starts), horizon, batched=True, ts=long_ts(horizon), backend=backend,
                        rtol=LONG_RTOL, atol=LONG_ATOL)
    if not traj.ok:
        raise RuntimeError(f"the long run did not finish: {traj.status}")
    return traj


def flipped_labels(flow, map_=None):
    r"""`rf.Perturbation`: the flow (and map) on the data with labels flipped, i.e. the margin's sign in the
    exponent reversed (:math:`e^{+y_nf}` for :math:`e^{-y_nf}`)."""
    data = flow.args
    flipped = {**data, "y": -data["y"]}
    change = {"flow": flow.replace(args=flipped)}
    if map_ is not None:
        change["map"] = map_.replace(args={**map_.args, "y": -map_.args["y"]})
    return rf.Perturbation("labels flipped (e^{+y f}: the margin's sign)", change)


#: Why Monotone(loss) along a gradient flow of that loss holds whatever the loss.
DESCENT = "the flow is rf.gradient_flow of this loss: dL/dt = -|grad L|^2 <= 0 by construction"
