r"""The problem of the Halpern family: underdetermined least squares (*Theory III* eq 28), its
limits in closed form, and the paper's names for the NMGD constructors of `regflow`."""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np

import regflow as rf

#: Underdetermined least squares: X of shape (N_EQ, DIM), fixed seed, largest singular value 1.
N_EQ, DIM, SEED = 3, 6, 5
#: Learning rate of the least-squares maps: gamma * lambda_max(H) = 0.5 (H = 2 X^T X).
LR = 0.25
#: Halpern exponent (lambda_n = (n + n0)^-a): the distance decays like max(exp(-c t^(1-a)/(1-a)), t^-a),
#: and a = 3/4 makes both small by T1.
A = 0.75
#: An exponent with summable lambda_n (sum_n n^-a < infinity): Halpern's sum lambda_n = infinity fails.
A_FAST = 1.5
#: lambda_n = (n + N0)^-a, n = 0, 1, ...: N0 = 1 is the paper's 1/n^a indexed from n = 1 (lambda = 1 first).
N0 = 2
#: Horizon (learning-rate time) of the NMGD runs.
T1 = 1e4
#: Horizon of the plain GD runs (the slowest mode decays like exp(-0.87 t)).
T1_GD = 60.0
#: Tolerances of the claims' flow runs (far below the tolerances of the claims).
RUN_OPTIONS = {"rtol": 1e-11, "atol": 1e-13}


def problem(seed=SEED):
    """X (N_EQ x DIM, largest singular value 1) and y, float64, from a fixed seed."""
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(N_EQ, DIM))
    X /= np.linalg.svd(X, compute_uv=False)[0]
    return {"X": jnp.asarray(X), "y": jnp.asarray(rng.normal(size=N_EQ))}


def loss(w, args):
    r"""Eq 28: :math:`L(w) = \sum_n (y_n - w^\top x_n)^2 = |y - Xw|^2`."""
    return jnp.sum((args["y"] - args["X"] @ w) ** 2)


def state(w, args=None):
    """The state itself (the quantity of limits and spreads)."""
    return w


def pinv_solution(args):
    r""":math:`X^+y`, the minimum-norm fixed point of :math:`T`."""
    return np.linalg.pinv(np.asarray(args["X"])) @ np.asarray(args["y"])


def gd_limit(w0, args):
    r"""Where GD from :math:`w_0` converges: :math:`(I - X^+X)w_0 + X^+y`."""
    X = np.asarray(args["X"])
    P = np.linalg.pinv(X) @ X
    return np.asarray(w0) @ (np.eye(X.shape[1]) - P).T + pinv_solution(args)


def null_part(w0, args):
    r""":math:`(I - X^+X)\,w_0`, the part of :math:`w_0` GD never moves."""
    X = np.asarray(args["X"])
    return np.asarray(w0) - np.asarray(w0) @ (np.linalg.pinv(X) @ X).T


def hessian_matrix(args):
    r""":math:`H = 2X^\top X` (constant)."""
    X = np.asarray(args["X"])
    return 2.0 * X.T @ X


def hessian_spectrum(args):
    r"""Eigenvalues of :math:`H = 2X^\top X`, the :math:`d - n` of the null space set to 0 exactly."""
    ev = np.linalg.eigvalsh(hessian_matrix(args))
    return np.where(np.abs(ev) < 1e-12 * ev.max(), 0.0, ev)


def ridge_path(mu, args):
    r"""The regularization path :math:`w_\mu = \arg\min L + \tfrac\mu2|w|^2 = (H + \mu I)^{-1}\,2X^\top y`."""
    X, y = np.asarray(args["X"]), np.asarray(args["y"])
    return np.linalg.solve(hessian_matrix(args) + mu * np.eye(X.shape[1]), 2.0 * X.T @ y)


def distance_to_pinv(w, args):
    r""":math:`\|w - X^+y\|`."""
    return jnp.linalg.norm(w - jnp.linalg.pinv(args["X"]) @ args["y"])


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


def contraction_excess(errors, printed_factor):
    r"""How far a run's errors :math:`e_t` exceed a printed per-step contraction :math:`q`:
    :math:`\max_{t \ge 1} (e_t/e_0)^{1/t} / q` over runs ``errors (runs, steps + 1)``, the observed
    geometric-mean contraction per step over the printed one (> 1: the printed rate fails).
    A ratio of per-step factors, it does not grow with the number of steps."""
    errors = np.asarray(errors, dtype=float)
    errors = errors[errors[:, 0] > 0]
    t = np.arange(1, errors.shape[1])
    per_step = (errors[:, 1:] / errors[:, :1]) ** (1.0 / t)
    return float(np.max(per_step) / printed_factor)


class Constant:
    """The schedule lambda_k = value."""

    def __init__(self, value):
        self.value = value

    def __call__(self, k):
        return jnp.float64(self.value)



# ----------------------------------------------------------------------------- the paper's names


def paper_schedule(a, n0=N0):
    r"""Eq 26: :math:`\lambda_n = (n + n_0)^{-a}` at step n = 0, 1, ... (`rf.power_schedule`;
    :math:`n_0 = 1`: the paper's :math:`1/n^a` from n = 1)."""
    return rf.power_schedule(a, n0=n0)


def paper_partner(lr, a, n0=N0):
    r"""``(c, tau)`` of the flow whose Euler step is eq 26 with :math:`\lambda_n = (n + n_0)^{-a}`
    (`rf.nmgd_partner`: :math:`c = \gamma^{a-1}`, :math:`\tau = n_0\gamma`)."""
    return rf.nmgd_partner(lr, a, n0)


def flow_schedule(a, c, tau, h):
    r""":math:`\lambda_k = h\,\mu(kh)`: eq 26 with step ``h`` as the Euler step of `rf.nmgd_flow`."""
    return rf.decay_schedule(a, c, tau, lr=h)


#: Eq 26 (`rf.nmgd`), eq 25 (`rf.halpern`) and the NMGD flow (`rf.nmgd_flow`).
nmgd_map, halpern_map, nmgd_flow = rf.nmgd, rf.halpern, rf.nmgd_flow


def nmgd_systems(loss_fn, a, lr, n0, args, names=None):
    """The NMGD flow and map of eq 26 with :math:`\\lambda_n = (n + n_0)^{-a}`, the map at other
    steps (``map_at``, the Euler steps of the flow) and ``(c, tau)``."""
    c, tau = paper_partner(lr, a, n0)
    return dict(
        flow=rf.nmgd_flow(loss_fn, a=a, c=c, tau=tau, names=names, args=args),
        map=rf.nmgd(loss_fn, lr=lr, schedule=paper_schedule(a, n0), names=names, args=args),
        map_at=lambda h: rf.nmgd(loss_fn, lr=h, schedule=flow_schedule(a, c, tau, h), args=args),
    ), (c, tau)


def remainder_factor_flow(a, c, tau, t1):
    r""":math:`\exp(-\int_0^{t_1}\mu)`, :math:`\mu = c(t+\tau)^{-a}`: what the flow leaves of the null-space part."""
    return float(np.exp(-c * ((t1 + tau) ** (1 - a) - tau ** (1 - a)) / (1 - a)))


def remainder_factor_map(a, n0, steps):
    r""":math:`\prod_{n < \text{steps}}(1 - \lambda_n)`: what eq 26 leaves of the null-space part."""
    lam = (np.arange(steps) + n0) ** (-float(a))
    return float(np.exp(np.sum(np.log1p(-lam)))) if lam[0] < 1 else 0.0
