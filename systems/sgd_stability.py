r"""Dynamical stability of SGD: sharpness and non-uniformity.

Lei Wu, "Towards understanding the implicit regularization in deep learning" (slides, SJTU
summer school 2020; after Wu, Ma & E, NeurIPS 2018).  A global minimum :math:`x^*` of an
over-parameterized loss :math:`f = \frac1n\sum_i f_i` with :math:`\nabla f_i(x^*) = 0` for
every sample is *linearly stable* for an optimizer when small perturbations do not grow.  Near
it the loss is quadratic,

.. math:: f(x) = \frac1{2n}\sum_{k=1}^n x^\top H_k x,\qquad H = \frac1n\sum_k H_k,\quad
          \Sigma = \frac1n\sum_k H_k^2 - H^2 \qquad\text{(eq 19, multi-dimensional form)}

and SGD with learning rate :math:`\eta` and batch size :math:`B` (drawn without replacement)
is :math:`x_{t+1} = (I - \eta H_{\xi_t})x_t`, :math:`H_\xi = \frac1B\sum_{i\in\xi}H_i` (eq 20).
One step gives

.. math:: E\,x_{t+1} = (I - \eta H)\,E\,x_t,\qquad
          E\|x_{t+1}\|^2 = E\,x_t^\top\Big[(I-\eta H)^2 + \frac{\eta^2 (n-B)}{B(n-1)}\Sigma\Big]x_t
          \qquad\text{(eq 21-23)}

(:math:`(n-B)/(B(n-1))` is the finite-population factor of sampling without replacement).  In
one dimension :math:`H = a` (*sharpness*) and :math:`\Sigma = s^2` (*non-uniformity*), and
the minimum is stable iff :math:`(1-\eta a)^2 + \eta^2 s^2 (n-B)/(B(n-1)) \le 1` (eq 23).  In
several dimensions :math:`\lambda_{\max}\{\cdot\} \le 1` is sufficient, and implies the
necessary conditions :math:`a = \lambda_{\max}(H) \le 2/\eta`,
:math:`s = \lambda_{\max}(\Sigma)^{1/2} \le \eta^{-1}\sqrt{B(n-1)/(n-B)}`.  For GD
(:math:`B = n`) only the sharpness condition :math:`a \le 2/\eta` remains: the minima GD
converges to have sharpness at most :math:`2/\eta` (the slides' table).

Errata recorded here (evidence in the claims of ``sgd_stability.escape``):

* The motivating example :math:`f = \frac12(f_1+f_2)`,
  :math:`f_1 = \min\{x^2, 0.1(x-1)^2\}`, :math:`f_2 = \min\{x^2, 1.9(x-1)^2\}` is said to have
  :math:`f''(0) = f''(1) = 1`, :math:`f_1''(1) = 0.1`, :math:`f_2''(1) = 1.9`,
  :math:`f_1''(0) = f_2''(0) = 1` and GD-stable minima for :math:`\eta \le 2`.  The second
  derivatives of the printed functions are twice that: :math:`f'' = 2` at both minima,
  :math:`f_1''(1) = 0.2`, :math:`f_2''(1) = 3.8`, :math:`f_i''(0) = 2`, so GD is stable only
  for :math:`\eta \le 1` (GD with :math:`\eta = 1.5` leaves :math:`x = 1`).  With the printed
  curvatures 0.1 and 1.9 the slides' own stability factor at :math:`x=1` would be
  :math:`0.49 < 1` and SGD with :math:`\eta = 0.7` would stay; with the true ones it is
  :math:`1.75 > 1` and SGD escapes, as the slides' figure shows.  The conclusion holds; the
  stated curvatures are halved.

Conventions: losses are ``q(x, args)``; SGD is `regflow.sgd` on per-sample losses (batches
without replacement); the flow partner of a map with learning rate ``lr`` is the gradient
flow in learning-rate time (``dt = lr``).  The GD entries (sharpness of GD's minima, the
quasi-Newton extension) are in `sgd_stability_gd`.
"""

from __future__ import annotations

import itertools
import math
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

import regflow as rf

#: Monte-Carlo paths of the one-step checks.
MC_PATHS = 20000
#: Accepted Monte-Carlo deviation, in standard errors.
MC_SIGMAS = 4.0
#: Tolerance of exact (enumerated) identities.
EXACT_TOL = 1e-12


# ----------------------------------------------------------------------------- sharpness and non-uniformity


def batch_factor(n, batch_size):
    r"""The factor :math:`(n-B)/(B(n-1))` of eq 23: the variance of a mean of ``B`` of ``n``
    numbers drawn without replacement, relative to the population variance."""
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 2:
        raise ValueError(f"n must be an int >= 2 (the number of samples), got {n!r}")
    if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)) or not 1 <= batch_size <= n:
        raise ValueError(f"batch_size must be an int in [1, n={n}], got {batch_size!r}")
    return (n - batch_size) / (batch_size * (n - 1))


def sample_hessians(sample_loss, data, x, args=None):
    r"""Per-sample Hessians :math:`H_i = \nabla^2 f_i(x)`, shape ``(n, dim, dim)``."""
    x = jnp.asarray(x, dtype=jnp.float64)
    return np.asarray(jax.vmap(lambda s: jax.hessian(sample_loss)(x, s, args))(data))


def moments(hessians):
    r"""``(H, Sigma)``: :math:`H = \frac1n\sum H_i`, :math:`\Sigma = \frac1n\sum H_i^2 - H^2`."""
    hs = np.asarray(hessians, dtype=float)
    if hs.ndim != 3 or hs.shape[1] != hs.shape[2]:
        raise ValueError(f"hessians must have shape (n, dim, dim), got {hs.shape}")
    H = hs.mean(axis=0)
    return H, np.einsum("kij,kjl->il", hs, hs) / len(hs) - H @ H


def sharpness_nonuniformity(hessians):
    r"""``(a, s)``: sharpness :math:`\lambda_{\max}(H)` and non-uniformity
    :math:`\lambda_{\max}(\Sigma)^{1/2}` (eq 22 in one dimension, the multi-dimensional slide)."""
    H, S = moments(hessians)
    return float(np.linalg.eigvalsh(H)[-1]), float(np.sqrt(max(np.linalg.eigvalsh(S)[-1], 0.0)))


def stability_matrix(hessians, eta, batch_size):
    r"""Eq 23 (multi-dimensional): :math:`(I-\eta H)^2 + \frac{\eta^2(n-B)}{B(n-1)}\Sigma`."""
    H, S = moments(hessians)
    A = np.eye(len(H)) - eta * H
    return A @ A + eta**2 * batch_factor(len(hessians), batch_size) * S


def growth_factor(curvatures, eta, batch_size):
    r"""Eq 23 in one dimension: :math:`(1-\eta a)^2 + \eta^2 s^2 (n-B)/(B(n-1))`, with
    :math:`a, s^2` the mean and variance of the per-sample curvatures :math:`a_i`."""
    a_i = np.asarray(curvatures, dtype=float)
    return float(stability_matrix(a_i[:, None, None], eta, batch_size)[0, 0])


def _batches(n, batch_size):
    return [list(c) for c in itertools.combinations(range(n), batch_size)]


def exact_second_moment(hessians, eta, batch_size):
    r""":math:`E_\xi[(I-\eta H_\xi)^\top(I-\eta H_\xi)]`, enumerating every batch (the exact
    left side of eq 23)."""
    hs = np.asarray(hessians, dtype=float)
    eye = np.eye(hs.shape[1])
    mats = [eye - eta * hs[b].mean(axis=0) for b in _batches(len(hs), batch_size)]
    return np.mean([m.T @ m for m in mats], axis=0)


def one_step_variance(curvatures, eta, batch_size):
    r"""Variance over batches of :math:`(1-\eta a_\xi)^2` (one dimension): with :math:`x_0^2 = 1`
    the Monte-Carlo standard error of :math:`E x_1^2` over ``P`` paths is ``sqrt(var / P)``."""
    a_i = np.asarray(curvatures, dtype=float)
    r = np.array([(1 - eta * a_i[b].mean()) ** 2 for b in _batches(len(a_i), batch_size)])
    return float(r.var())


def second_moment_operator_radius(hessians, eta, batch_size):
    r"""Spectral radius of :math:`P \mapsto E_\xi[A_\xi P A_\xi^\top]`,
    :math:`A_\xi = I - \eta H_\xi`: the exact growth rate of :math:`E\,x_tx_t^\top`.  It never
    exceeds :math:`\lambda_{\max}` of eq 23's matrix (the slides' sufficient condition)."""
    hs = np.asarray(hessians, dtype=float)
    d = hs.shape[1]
    eye = np.eye(d)
    op = np.mean([np.kron(A, A) for A in (eye - eta * hs[b].mean(axis=0)
                                            for b in _batches(len(hs), batch_size))], axis=0)
    return float(np.max(np.abs(np.linalg.eigvals(op))))


def stability_bounds(eta, n, batch_size):
    r"""The necessary conditions of the slides: :math:`a \le 2/\eta`,
    :math:`s \le \eta^{-1}\sqrt{B(n-1)/(n-B)}` (``inf`` for ``B = n``)."""
    c = batch_factor(n, batch_size)
    return 2.0 / eta, (math.inf if c == 0 else 1.0 / (eta * math.sqrt(c)))


# ----------------------------------------------------------------------------- 1-D quadratic (eq 19-23)

#: Per-sample curvatures a_i of the 1-D example (eq 19).
CURVATURES = (0.2, 0.5, 0.8, 1.0, 1.3, 1.9, 2.6, 3.7)


def quadratic_sample_loss(x, sample, args=None):
    r"""Eq 19, one sample: :math:`f_i(x) = \frac12 a_i x^2`."""
    return 0.5 * sample["a"] * x[0] ** 2


def square(x, args=None):
    return x[0] ** 2


def coordinate(x, args=None):
    return x[0]


def squared_norm(x, args=None):
    return x @ x


def with_replacement(sample_loss, data, lr, batch_size):
    r"""SGD with batches drawn *with* replacement (variance factor :math:`1/B` in place of
    :math:`(n-B)/(B(n-1))`): the sampling eq 22 describes, as a wrong version of `rf.sgd`."""
    data = jax.tree_util.tree_map(jnp.asarray, data)
    n = len(jax.tree_util.tree_leaves(data)[0])

    def step(k, x, args, key):
        batch = jax.tree_util.tree_map(lambda v: v[jax.random.randint(key, (batch_size,), 0, n)], data)
        return x - lr * jax.grad(rf.full_loss(sample_loss, batch))(x, args)

    return rf.Map(step, dt=lr, stochastic=True)


#: Name of the perturbation that draws batches with replacement.
WITH_REPLACEMENT = "batches drawn with replacement (factor 1/B, not (n-B)/(B(n-1)))"


@rf.entry("sgd_stability.quadratic_1d", source="Wu slides, eq 19-23")
def quadratic_1d(eta: float = 0.6, batch_size: int = 2, paths: int = MC_PATHS) -> rf.Method:
    r"""SGD on :math:`f(x) = \frac1{2n}\sum a_i x^2` (eq 19):
    :math:`x_{t+1} = (1 - \eta a_\xi)x_t`, :math:`a_\xi` the mean over a batch of ``B`` samples
    drawn without replacement (eq 20), so that

    .. math:: E\,x_{t+1}^2 = \Big[(1-\eta a)^2 + \frac{\eta^2 (n-B)}{B(n-1)}s^2\Big]E\,x_t^2
              \qquad\text{(eq 22-23)}."""
    a_i = np.asarray(CURVATURES)
    n = len(a_i)
    batch_factor(n, batch_size)
    data = {"a": jnp.asarray(a_i)}
    factor = growth_factor(a_i, eta, batch_size)
    mean_factor = 1.0 - eta * a_i.mean()
    se = math.sqrt(one_step_variance(a_i, eta, batch_size) / paths)
    se_mean = math.sqrt(max(factor - mean_factor**2, 0.0) / paths)
    every_b = range(1, n + 1)
    eq23 = jnp.asarray([growth_factor(a_i, eta, b) for b in every_b])
    enumerated = jnp.asarray([exact_second_moment(a_i[:, None, None], eta, b)[0, 0] for b in every_b])
    return rf.Method(
        flow=rf.gradient_flow(rf.full_loss(quadratic_sample_loss, data), names=("x",)),
        map=rf.sgd(quadratic_sample_loss, data, lr=eta, batch_size=batch_size, names=("x",)),
        y0=[[1.0]], t1=5.0, steps=1, paths=paths, seed=0,
        perturbations=[rf.Perturbation(WITH_REPLACEMENT, {"map": with_replacement(quadratic_sample_loss, data, eta,
                                                                                  batch_size)})],
        claims=[
            rf.Formula(lambda x, a: eq23 * x[0] ** 2, equals=lambda x, a: enumerated * x[0] ** 2,
                       at=[[1.0], [-0.5], [2.0]], tol=EXACT_TOL, name="eq 23 = average over all batches",
                       identity=f"algebra: eq 23 against the exact average over all C(n, B) batches, B = 1..{n}, "
                                "of the per-sample curvatures (no run)",
                       source="eq 22-23: E x_{t+1}^2 = [(1 - eta a)^2 + eta^2 s^2 (n-B)/(B(n-1))] E x_t^2"),
            rf.AtHorizon(square, predict=lambda y0, a: factor * y0[0] ** 2, on="map", mean=True, absolute=True,
                         tol=MC_SIGMAS * se, name="E x_1^2",
                         source=f"eq 23 with B drawn without replacement (rf.sgd), one step from x_0 = 1 over {paths} "
                                f"paths; tolerance {MC_SIGMAS:g} Monte-Carlo standard errors"),
            rf.AtHorizon(coordinate, predict=lambda y0, a: mean_factor * y0[0], on="map", mean=True, absolute=True,
                         tol=MC_SIGMAS * se_mean, name="E x_1",
                         source=f"eq 21: E x_{{t+1}} = (1 - eta a) E x_t, over {paths} paths; tolerance "
                                f"{MC_SIGMAS:g} Monte-Carlo standard errors"),
        ],
    )


# ----------------------------------------------------------------------------- the f1/f2 example

#: Slopes c of f_i(x) = min{x^2, c (x-1)^2} in the motivating example.
ESCAPE_SLOPES = (0.1, 1.9)
#: Learning rate and start of the example.
ESCAPE_LR = 0.7
ESCAPE_START = 1.0 - 1e-5
#: GD learning rate that the printed bound eta <= 2/f'' = 2 calls stable at x = 1.
PRINTED_STABLE_LR = 1.5
#: Offset from a minimum and noise draws of the one-step growth factor of SGD.
GROWTH_OFFSET, GROWTH_DRAWS = 1e-6, 4096


def escape_sample_loss(x, sample, args=None):
    r""":math:`f_i(x) = \min\{x^2, c_i(x-1)^2\}`."""
    return jnp.minimum(x[0] ** 2, sample["c"] * (x[0] - 1.0) ** 2)


def printed_sample_loss(x, sample, args=None):
    r""":math:`\frac12 f_i`: the example with the curvatures as printed (:math:`f'' = 1` at both
    minima, :math:`f_i''(0) = 1`, :math:`f_1''(1) = 0.1`, :math:`f_2''(1) = 1.9`)."""
    return 0.5 * escape_sample_loss(x, sample, args)


ESCAPE_DATA = {"c": jnp.asarray(ESCAPE_SLOPES)}
_ESCAPE_MEAN = rf.full_loss(escape_sample_loss, ESCAPE_DATA)


def escape_loss(x, args=None):
    r""":math:`f = \frac12(f_1 + f_2)`: global minima at 0 and 1."""
    return _ESCAPE_MEAN(x, args)


def single(c):
    """The loss ``min{x^2, c (x-1)^2}`` of one sample, as a quantity ``q(x, args)``."""
    return lambda x, args=None: escape_sample_loss(x, {"c": c}, args)


def curvature(at_zero, at_one):
    """Expected second derivative at the points 0 and 1 (for `rf.Spectrum`)."""
    return lambda p: [at_zero if abs(p[0]) < 0.5 else at_one]


def escape_curvatures(x):
    """Per-sample second derivatives f_i''(x) by autodiff."""
    return sample_hessians(escape_sample_loss, ESCAPE_DATA, [x])[:, 0, 0]


@rf.pytree_dataclass
class EulerStep:
    r"""The Euler step :math:`x + \text{lr}\,f(x)` of a vector field (GD, for a gradient flow)."""

    field: Any
    lr: Any

    def __call__(self, k, x, args):
        return x + self.lr * self.field(0.0, x, args)


def euler_map(flow, lr):
    """GD as the Euler map of the method's gradient flow at learning rate ``lr`` (so it follows
    any change of the flow)."""
    return rf.Map(EulerStep(flow.vector_field, lr), dt=lr, args=flow.args)


def gd_distance(lr, start, steps):
    """A `rf.Holds` measure: ``|x_K - 1|`` after ``steps`` steps of GD (the Euler map of the
    method's flow) with ``lr`` from ``start``."""

    def measure(method):
        traj = rf.iterate(euler_map(method.flow, lr), [start], steps)
        gap = np.abs(traj.y[:, 0] - 1.0)
        return float(gap[-1]), rf.Trace(traj.t / lr, gap, "GD step", "|x_k - 1|")

    measure.__name__ = f"gd_distance_lr_{lr:g}"
    return measure


def _one_step(step, args, x0, keys):
    return jax.vmap(lambda key: step(0, x0, args, key))(keys)


#: One SGD step from a point over many keys, compiled once per step structure (numbers traced).
_ONE_STEP = eqx.filter_jit(_one_step)


def sgd_growth(x_star, offset=GROWTH_OFFSET, draws=GROWTH_DRAWS):
    r"""A `rf.Holds` measure: :math:`E[(x_1 - x^*)^2]/(x_0 - x^*)^2` for one step of the method's
    SGD map from :math:`x_0 = x^* + \text{offset}`, over ``draws`` batches: eq 23's factor of the
    linearized SGD at the minimum :math:`x^*`."""

    def measure(method):
        keys = jax.random.split(jax.random.PRNGKey(method.seed), draws)
        x0 = jnp.array([x_star + offset])
        x1 = np.asarray(_ONE_STEP(method.map.step, method.map.args, x0, keys))[:, 0]
        growth = ((x1 - x_star) / offset) ** 2
        index = np.arange(draws)
        return float(growth.mean()), rf.Trace(index, np.sort(growth), "draw (sorted)", "(x_1 - x*)^2 / (x_0 - x*)^2",
                                              "points", 1.0)

    measure.__name__ = f"sgd_growth_at_{x_star:g}"
    return measure


@rf.entry("sgd_stability.escape", source="Wu slides, 'An illustrative counter example'")
def escape(lr: float = ESCAPE_LR, steps: int = 300, paths: int = 256) -> rf.Method:
    r"""GD and SGD (batch 1 of 2) on :math:`f = \frac12(f_1+f_2)`,
    :math:`f_1 = \min\{x^2, 0.1(x-1)^2\}`, :math:`f_2 = \min\{x^2, 1.9(x-1)^2\}`, from
    :math:`x_0 = 1 - 10^{-5}`: GD stays at the minimum 1, SGD leaves it and converges to 0."""
    printed = np.array([0.1, 1.9])
    true_factor = growth_factor(escape_curvatures(1.0), lr, 1)
    printed_factor = growth_factor(printed, lr, 1)
    as_printed = {"flow": rf.gradient_flow(rf.full_loss(printed_sample_loss, ESCAPE_DATA), names=("x",)),
                  "map": rf.sgd(printed_sample_loss, ESCAPE_DATA, lr=lr, batch_size=1, names=("x",))}
    identity = "the curvature of the function as printed (autodiff), not of the dynamics"
    return rf.Method(
        flow=rf.gradient_flow(escape_loss, names=("x",)),
        map=rf.sgd(escape_sample_loss, ESCAPE_DATA, lr=lr, batch_size=1, names=("x",)),
        y0=[[ESCAPE_START]], t1=5.0, steps=steps, paths=paths, seed=0,
        perturbations=[rf.Perturbation("the example with the printed curvatures (f_i halved)", as_printed)],
        claims=[
            rf.Spectrum(at=[[0.0], [1.0]], expect=lambda p: [2.0], printed=lambda p: [1.0],
                        name="f'' at 0 and 1", source="'the two minima have the same sharpness f'' = 1'",
                        grade="erratum", erratum="printed f'' = 1 at both minima; it is 2"),
            rf.Spectrum(at=[[0.0], [1.0]], expect=curvature(2.0, 0.2), printed=curvature(1.0, 0.1),
                        loss=single(0.1), name="f_1'' at 0 and 1", source="'f_1''(0) = 1, f_1''(1) = 0.1'",
                        grade="erratum", erratum="printed f_1''(0) = 1, f_1''(1) = 0.1; they are 2 and 0.2",
                        identity=identity),
            rf.Spectrum(at=[[0.0], [1.0]], expect=curvature(2.0, 3.8), printed=curvature(1.0, 1.9),
                        loss=single(1.9), name="f_2'' at 0 and 1", source="'f_2''(0) = 1, f_2''(1) = 1.9'",
                        grade="erratum", erratum="printed f_2''(0) = 1, f_2''(1) = 1.9; they are 2 and 3.8",
                        identity=identity),
            rf.Holds(measure=gd_distance(lr, ESCAPE_START, steps), lo=0.0, hi=1e-12, name="GD stays at 1",
                     what=f"|x_K - 1| after {steps} GD steps (the Euler map of the flow), eta={lr}",
                     source="'GD with the same learning rate will converge to 1'"),
            rf.AtHorizon(coordinate, predict=0.0, on="map", absolute=True, tol=1e-8, name="SGD escapes to 0",
                         source=f"Figure: SGD with eta = 0.7 from 1 - 1e-5 converges to 0 (all {paths} paths, "
                                f"{steps} steps)"),
            rf.Holds(measure=sgd_growth(1.0), lo=1.0, name="eq 23 factor at x=1",
                     what=f"E(x_1 - 1)^2 / (x_0 - 1)^2 of one SGD step from 1 + {GROWTH_OFFSET:g} over "
                          f"{GROWTH_DRAWS} batches (eq 23 with f_i''(1): {true_factor:.4g}; > 1: unstable)",
                     source="'x = 1 is not stable' for SGD, eq 22-23"),
            rf.Holds(measure=sgd_growth(0.0), lo=0.0, hi=1.0, name="eq 23 factor at x=0",
                     what=f"E x_1^2 / x_0^2 of one SGD step from {GROWTH_OFFSET:g} over {GROWTH_DRAWS} batches "
                          f"(< 1: stable)",
                     source="'eta = 0.7 is stable for both f_1 and f_2 around x = 0', eq 22-23"),
            rf.Refuted(printed=lambda x, a: printed_factor, correct=lambda x, a: true_factor, at=[[1.0]],
                       name="printed curvatures predict stability",
                       source="the slides' explanation, eq 23 at x = 1 with its own numbers", grade="erratum",
                       erratum=f"with the printed f_1''(1) = 0.1, f_2''(1) = 1.9 eq 23 gives {printed_factor:.3g} < 1 "
                               f"(SGD would stay at 1, against the figure); the true curvatures give "
                               f"{true_factor:.3g} > 1"),
            rf.Holds(measure=gd_distance(PRINTED_STABLE_LR, ESCAPE_START, steps), lo=0.1, name="GD eta=1.5 leaves 1",
                     what=f"|x_K - 1| after {steps} GD steps with eta={PRINTED_STABLE_LR} (printed: stable for eta<=2)",
                     source="'both stable for GD with eta <= 2/f'' = 2'", grade="erratum",
                     erratum="printed eta <= 2; GD is stable at the minima only for eta <= 2/f'' = 1"),
        ],
    )


# ----------------------------------------------------------------------------- multi-dimensional quadratic

#: Dimension and number of samples of the multi-dimensional quadratic.
ND_DIM, ND_SAMPLES = 3, 6
#: Learning rates and batch sizes of the stability-region scan.
SCAN_LRS = np.linspace(0.05, 1.5, 59)


def nd_hessians(dim=ND_DIM, n=ND_SAMPLES, seed=0):
    r"""Per-sample Hessians :math:`H_k = g_k g_k^\top` (rank one, as for least squares on one
    sample each), :math:`g_k \sim N(0, I)`, fixed by ``seed``."""
    g = np.random.default_rng(seed).normal(size=(n, dim))
    return np.einsum("ki,kj->kij", g, g)


def nd_sample_loss(x, sample, args=None):
    r""":math:`f_k(x) = \frac12 x^\top H_k x`."""
    return 0.5 * x @ sample["H"] @ x


def top_direction(matrix):
    """Unit eigenvector of the largest eigenvalue of a symmetric matrix."""
    return np.linalg.eigh(matrix)[1][:, -1]


@rf.entry("sgd_stability.quadratic_nd", source="Wu slides, 'High-dimensional case', 'Stability condition'")
def quadratic_nd(eta: float = 0.4, batch_size: int = 2, paths: int = MC_PATHS, seed: int = 0) -> rf.Method:
    r"""SGD on :math:`\frac1{2n}\sum_k x^\top H_k x` with batch :math:`B`:
    :math:`x_{t+1} = x_t - \frac{\eta}{B}\sum_{i\in\xi}H_i x_t`.  Claims: eq 23's matrix is the
    exact one-step second moment; its :math:`\lambda_{\max} \le 1` implies
    :math:`a \le 2/\eta`, :math:`s \le \eta^{-1}\sqrt{B(n-1)/(n-B)}` and bounds the true
    growth rate of :math:`E\,x_tx_t^\top`."""
    hs = nd_hessians(seed=seed)
    n, dim = len(hs), hs.shape[1]
    batch_factor(n, batch_size)
    data = {"H": jnp.asarray(hs)}
    names = tuple(f"x{i + 1}" for i in range(dim))
    M = stability_matrix(hs, eta, batch_size)
    x0 = top_direction(M)
    values = [float(np.sum(((np.eye(dim) - eta * hs[b].mean(axis=0)) @ x0) ** 2)) for b in _batches(n, batch_size)]
    se = math.sqrt(np.var(values) / paths)
    grid = [(h, b) for h in SCAN_LRS for b in range(1, n + 1)]
    every_b = range(1, n + 1)
    eq23 = jnp.asarray(np.stack([stability_matrix(hs, eta, b) for b in every_b]))
    enumerated = jnp.asarray(np.stack([exact_second_moment(hs, eta, b) for b in every_b]))
    points = np.random.default_rng(seed + 1).normal(size=(4, dim))

    def necessary_violations(method):
        a, s = sharpness_nonuniformity(hs)
        bad = 0
        for h, b in grid:
            if np.linalg.eigvalsh(stability_matrix(hs, h, b))[-1] <= 1.0:
                a_max, s_max = stability_bounds(h, n, b)
                bad += not (a <= a_max * (1 + EXACT_TOL) and s <= s_max * (1 + EXACT_TOL))
        return bad

    def sufficiency_gap(method):
        return max(second_moment_operator_radius(hs, h, b) - np.linalg.eigvalsh(stability_matrix(hs, h, b))[-1]
                   for h, b in grid)

    stable_points = sum(np.linalg.eigvalsh(stability_matrix(hs, h, b))[-1] <= 1.0 for h, b in grid)
    algebra = f"matrix algebra on the sample Hessians over a grid of {len(grid)} (eta, B) (no run)"
    return rf.Method(
        flow=rf.gradient_flow(rf.full_loss(nd_sample_loss, data), names=names),
        map=rf.sgd(nd_sample_loss, data, lr=eta, batch_size=batch_size, names=names),
        y0=x0[None], t1=5.0, steps=1, paths=paths, seed=seed,
        perturbations=[rf.Perturbation(WITH_REPLACEMENT, {"map": with_replacement(nd_sample_loss, data, eta,
                                                                                  batch_size)})],
        claims=[
            rf.Formula(lambda x, a: jnp.einsum("i,bij,j->b", x, eq23, x),
                       equals=lambda x, a: jnp.einsum("i,bij,j->b", x, enumerated, x), at=points, tol=EXACT_TOL,
                       name="eq 23 matrix = average over all batches",
                       identity=f"algebra: x^T (eq 23 matrix) x against E_xi |(I - eta H_xi) x|^2 over all batches, "
                                f"B = 1..{n} (no run)",
                       source="'E|x_{t+1}|^2 = E x_t^T [(I - eta H)^2 + eta^2 (n-B)/(B(n-1)) Sigma] x_t'"),
            rf.AtHorizon(squared_norm, predict=lambda y0, a: y0 @ M @ y0, on="map", mean=True, absolute=True,
                         tol=MC_SIGMAS * se, name="E|x_1|^2",
                         source=f"'High-dimensional case': one SGD step (rf.sgd, batches without replacement) "
                                f"from the top eigenvector of eq 23's matrix (lambda_max = {x0 @ M @ x0:.5f}), "
                                f"{paths} paths; tolerance {MC_SIGMAS:g} Monte-Carlo standard errors"),
            rf.Holds(measure=necessary_violations, lo=0, hi=0, name="necessary conditions", identity=algebra,
                     what=f"grid points (eta, B) with lambda_max <= 1 but a > 2/eta or s > sqrt(B(n-1)/(n-B))/eta "
                          f"({stable_points} of {len(grid)} points stable)",
                     source="'a necessary condition is 0 <= a <= 2/eta, 0 <= s <= sqrt(B(n-1)/(n-B))/eta'"),
            rf.Holds(measure=sufficiency_gap, hi=EXACT_TOL, name="lambda_max bounds the growth rate", identity=algebra,
                     what="max over the grid of rho(P -> E A P A^T) - lambda_max(eq 23 matrix)",
                     source="'Global minimum 0 is stable for SGD if lambda_max{...} <= 1' (sufficient)"),
        ],
    )


# ----------------------------------------------------------------------------- sharpness of GD's minima

#: Inputs and targets of the over-parameterized model h(x) = (u * v) . x (2 samples, 6 weights).
SHARP_X = np.array([[1.0, 0.6, -0.3], [0.2, -1.0, 0.8]])
SHARP_Y = np.array([1.0, -0.5])
#: Learning rates of the table (the slides use 0.01 ... 1 on FashionMNIST / CIFAR10).
TABLE_LRS = (0.05, 0.1, 0.2, 0.4)
#: A run counts as converged when its loss is below this.
CONVERGED_LOSS = 1e-12
SHARP_NAMES = ("u1", "u2", "u3", "v1", "v2", "v3")


def sharp_loss(w, args=None):
    r""":math:`L(u, v) = \frac1{2n}\sum_i ((u\odot v)\cdot x_i - y_i)^2`: a diagonal linear
    network, interpolating on a 4-dimensional manifold of global minima of varying sharpness."""
    u, v = w[:3], w[3:]
    return 0.5 * jnp.mean((jnp.asarray(SHARP_X) @ (u * v) - jnp.asarray(SHARP_Y)) ** 2)


def sharpness(w, args=None):
    r""":math:`\lambda_{\max}(\nabla^2 L(w))`."""
    return jnp.linalg.eigvalsh(jax.hessian(sharp_loss)(w, args))[-1]


def sharp_starts(count=32, scale=2.0, seed=0):
    """Random initializations N(0, scale^2)."""
    return np.random.default_rng(seed).normal(size=(count, 6)) * scale


def _gd_step(k, w, args):
    return w - args["lr"] * jax.grad(sharp_loss)(w)


def sharp_gd(lr, step_lr=None):
    """GD on `sharp_loss` with the learning rate in ``args`` (one compiled program for every lr);
    ``step_lr`` makes the step differ from the nominal ``lr`` (a wrong convention)."""
    return rf.Map(_gd_step, dt=lr, args={"lr": lr if step_lr is None else step_lr}, names=SHARP_NAMES)


def gd_minima(lr, starts, steps, map_at=sharp_gd):
    """Sharpness of the minima GD (``map_at(lr)``) converges to (NaN for runs that did not converge)."""
    end = rf.iterate(map_at(lr), starts, steps, every=steps, batched=True).y[:, -1]
    ok = np.all(np.isfinite(end), axis=1)
    end = np.where(ok[:, None], end, 0.0)
    loss = np.asarray(jax.vmap(sharp_loss)(jnp.asarray(end)))
    sharp = np.asarray(jax.vmap(sharpness)(jnp.asarray(end)))
    return np.where(ok & (loss < CONVERGED_LOSS), sharp, np.nan)


def sharpness_table(lrs=TABLE_LRS, starts=None, steps=3000, map_at=sharp_gd):
    """Rows ``(lr, 2/lr, converged fraction, max sharpness, mean sharpness)``, as the slides' table."""
    starts = sharp_starts() if starts is None else starts
    rows = []
    for lr in lrs:
        s = gd_minima(lr, starts, steps, map_at)
        ok = np.isfinite(s)
        rows.append((lr, 2.0 / lr, float(np.mean(ok)), float(np.max(s[ok])) if ok.any() else np.nan,
                     float(np.mean(s[ok])) if ok.any() else np.nan))
    return rows
