r"""Degenerate Hessians of deep networks (sec 19): Thm 7's regularized two-layer example (eq 62-64)
and the zero eigenvalues a deep linear network owes to its symmetries, with and without
:math:`L_2` regularization."""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import regflow as rf

from ._data import LR, T1

#: Thm 7: the lambdas whose Hessians the figures and tests compare (all < 1/2, where the critical circle exists).
THM7_LAMBDAS = (0.01, 0.05, 0.1, 0.25, 0.4, 0.49)


def thm7_exp_loss(w, args=None):
    r"""Eq 62 without the penalty: :math:`e^{-w_1w_2 - w_3w_4}` (one example x = (1, 1))."""
    return jnp.exp(-(w[0] * w[1] + w[2] * w[3]))


def thm7_loss(lam):
    r"""Eq 62: :math:`L = e^{-w_1w_2 - w_3w_4} + \lambda|w|^2`."""
    return lambda w, args=None: thm7_exp_loss(w) + lam * jnp.sum(w**2)


def _check_lam(lam):
    lam = float(lam)
    if not 0.0 < lam < 0.5:
        raise ValueError(f"lam must lie in (0, 0.5): the critical set e^(-f) = 2 lam exists only there, got {lam}")
    return lam


def critical_circle(lam, n=8, phase=0.1):
    r"""Points of the critical set :math:`w = (a, a, b, b)`, :math:`a^2 + b^2 = -\ln 2\lambda`."""
    r = np.sqrt(-np.log(2.0 * _check_lam(lam)))
    th = phase + 2 * np.pi * np.arange(n) / n
    a, b = r * np.cos(th), r * np.sin(th)
    return np.stack([a, a, b, b], axis=1)


def thm7_spectrum(lam):
    r"""Hessian eigenvalues on the critical circle: :math:`\{0, 4\lambda, 4\lambda, -4\lambda\ln 2\lambda\}`."""
    return lambda w: np.array([0.0, 4 * lam, 4 * lam, -4 * lam * np.log(2 * lam)])


@jax.jit
def thm7_hessians(points, lams):
    r"""Hessians of eq 62 at ``points`` (n, 4), one :math:`\lambda` per point: :math:`\nabla^2e^{-f} + 2\lambda I`."""
    return jax.vmap(lambda w, lam: jax.hessian(thm7_exp_loss)(w) + 2.0 * lam * jnp.eye(4))(points, lams)


def det_hessian(w, lam):
    r"""Eq 64 corrected, at any :math:`w` (rows of ``w``, traceable):
    :math:`e^{-4f}(4\lambda^2e^{2f}-1)(4\lambda^2e^{2f} + 2\lambda e^f|w|^2 + 2f - 1)`."""
    f = w[..., 0] * w[..., 1] + w[..., 2] * w[..., 3]
    q = 4 * lam**2 * jnp.exp(2 * f)
    return jnp.exp(-4 * f) * (q - 1) * (q + 2 * lam * jnp.exp(f) * jnp.sum(w**2, axis=-1) + 2 * f - 1)


def det_hessian_printed(w, lam):
    r"""Eq 64 as printed: :math:`e^{-4f}(4\lambda^2e^{-2f}-1)(4\lambda^2e^{-2f} + 2\lambda e^f|w|^2 + 2f - 1)`."""
    f = w[..., 0] * w[..., 1] + w[..., 2] * w[..., 3]
    q = 4 * lam**2 * jnp.exp(-2 * f)
    return jnp.exp(-4 * f) * (q - 1) * (q + 2 * lam * jnp.exp(f) * jnp.sum(w**2, axis=-1) + 2 * f - 1)


def random_points(n=40, seed=11, scale=1.0):
    return np.random.default_rng(seed).normal(size=(n, 4)) * scale


def rotation_generator(w, planes):
    """The infinitesimal rotation of the coordinate ``planes`` ((i, j), ...) applied to w."""
    out = np.zeros(4)
    for i, j in planes:
        out[i], out[j] = -w[j], w[i]
    return out


@functools.lru_cache(maxsize=8)
def _jacobians(method, points_key):
    """The flow's Jacobians at the points ``points_key`` (a tuple of tuples), one compiled call per method."""
    points = jnp.asarray(points_key)
    return np.asarray(jax.jit(jax.vmap(jax.jacfwd(lambda w: method.flow.vector_field(0.0, w, method.flow.args))))(
        points))


def _key(points):
    return tuple(map(tuple, np.asarray(points, dtype=float)))


def det_error(points, lam):
    r"""Largest relative error of eq 64 (corrected) against :math:`\det H = \det(-J)` of the method's flow."""

    def measure(method):
        det = np.linalg.det(-_jacobians(method, _key(points)))
        formula = np.asarray(det_hessian(jnp.asarray(points), lam))
        err = np.abs(formula - det) / np.abs(det)
        return float(np.max(err)), rf.Trace(np.arange(len(err)), err, "random point", "|eq 64 - det H| / |det H|",
                                            "points", 1e-8)

    return measure


def curvature_along(points, planes, lam):
    r"""``values(method)``: :math:`|v^\top H v|/(4\lambda|v|^2)` with :math:`H = -J` of the method's flow,
    :math:`v` the rotation of the coordinate ``planes``, at ``points``."""

    def values(method):
        J = _jacobians(method, _key(points))
        v = np.stack([rotation_generator(p, planes) for p in points])
        return np.abs(np.einsum("ni,nij,nj->n", v, -J, v)) / np.sum(v**2, axis=1) / (4 * lam)

    return values


@rf.entry("normalized_flows.regularized_hessian", source="Theory III sec 19, Thm 7, eq 62-64")
def regularized_hessian(lam: float = 0.1) -> rf.Method:
    r"""Gradient flow of eq 62, :math:`L = e^{-w_1w_2-w_3w_4} + \lambda|w|^2` (``weight_decay = 2 lam``).

    Critical points: :math:`w_1 = \frac{e^{-f}}{2\lambda}w_2`, :math:`w_2 = \frac{e^{-f}}{2\lambda}w_1`
    (eq 63), so the origin and the circle :math:`e^{-f} = 2\lambda`, :math:`w = (a, a, b, b)`.  On the
    circle :math:`H = 2\lambda(gg^\top + I - P)` with eigenvalues
    :math:`\{0, 4\lambda, 4\lambda, -4\lambda\ln2\lambda\}`: :math:`\det H = 0` for every
    :math:`\lambda\in(0, 1/2)` (Thm 7).  Every row reads the Hessian as :math:`-J` of the method's flow.

    Corrections: the printed determinant (eq 64) has :math:`e^{-2f}` where :math:`e^{+2f}` belongs (twice);
    the critical circle exists only for :math:`\lambda < 1/2`, and there the origin (Hessian eigenvalues
    :math:`2\lambda\pm1`) is a saddle, not "a local minimum with a positive definite Hessian"; the zero
    mode rotates :math:`(w_1, w_3)` and :math:`(w_2, w_4)` together (the O(2) symmetry of sec 19), not
    circles in the :math:`w_1`-:math:`w_2` and :math:`w_3`-:math:`w_4` planes."""
    lam = _check_lam(lam)
    names = ("w1", "w2", "w3", "w4")
    flow = rf.gradient_flow(thm7_exp_loss, weight_decay=2.0 * lam, names=names)
    circle = critical_circle(lam)
    rng = np.random.default_rng(5)
    guesses = circle * 1.1 + 0.05 * rng.normal(size=circle.shape)
    pts = random_points()
    zero_mode = curvature_along(circle, ((0, 2), (1, 3)), lam)
    printed_mode = curvature_along(circle, ((0, 1), (2, 3)), lam)

    def trace_of(values, level):
        def measure(method):
            v = values(method)
            worst = float(np.max(v) if level is None else np.min(v))
            return worst, rf.Trace(np.arange(len(v)), v, "point of the set", "|v^T H v| / (4 lam |v|^2)", "points",
                                   0.5 if level is not None else 0.0)

        return measure

    return rf.Method(
        flow=flow, map=rf.gradient_descent(thm7_exp_loss, lr=LR, weight_decay=2.0 * lam, names=names),
        y0=np.array([[0.9, 0.4, -0.3, 1.2], [0.2, 1.0, 0.8, 0.1]]), t1=T1,
        perturbations=[rf.Perturbation("penalty lambda |w|^2 as weight_decay = lambda (mu, not 2 mu)",
                                       {"flow": rf.gradient_flow(thm7_exp_loss, weight_decay=lam, names=names)}),
                       rf.Perturbation("lambda = 0.6 > 1/2 (no critical circle)",
                                       {"flow": rf.gradient_flow(thm7_exp_loss, weight_decay=1.2, names=names)})],
        claims=[
            rf.EquilibriumSet(guesses=guesses, on=lambda w, a: jnp.exp(-(w[0] * w[1] + w[2] * w[3])) - 2 * lam,
                              kind="degenerate sink", zero_modes=1, name="e^-f = 2 lam",
                              source="Thm 7, eq 63: the critical set e^{-f} = 2 lambda is degenerate"),
            rf.Spectrum(at=circle, of="jacobian", expect=lambda w: -thm7_spectrum(lam)(w), name="-J on e^-f = 2 lam",
                        source="Thm 7: H = 2 lam (g g^T + I - P) on the set: {0, 4 lam, 4 lam, -4 lam ln 2 lam}, so "
                               "det H = 0 for every lambda < 1/2"),
            rf.Holds(measure=det_error(pts, lam), hi=1e-8, name="eq 64 corrected",
                     what="max rel. error of e^{-4f}(4l^2e^{2f}-1)(4l^2e^{2f}+2l e^f|w|^2+2f-1) vs det(-J) at 40 "
                          "random w", source="eq 64 with e^{+2f}: det H at every w"),
            rf.Refuted(lambda w, a: det_hessian_printed(w, lam), lambda w, a: det_hessian(w, lam), at=pts,
                       name="eq 64 as printed", source="eq 64 as printed",
                       erratum="printed 4 lam^2 e^{-2f} (twice); correct 4 lam^2 e^{+2f} (row above: it equals det H)",
                       grade="erratum"),
            rf.Refuted(lambda w, a: det_hessian_printed(w, lam), lambda w, a: det_hessian(w, lam), at=circle,
                       name="eq 64 as printed on the set", source="eq 64 as printed vs Thm 7's conclusion",
                       erratum="the printed eq 64 does not vanish on e^{-f} = 2 lam; the corrected one does",
                       grade="erratum"),
            rf.EquilibriumSet(guesses=np.array([[0.03, -0.02, 0.01, 0.02]]), on=lambda w, a: jnp.sum(w**2),
                              kind="saddle", zero_modes=0, name="origin",
                              source="Thm 7 proof: the origin (Hessian eigenvalues 2 lam +- 1)",
                              erratum="printed: a local minimum with positive definite Hessian; for lam < 1/2 "
                                      "(where the degenerate set exists) it is a saddle", grade="erratum"),
            rf.Spectrum(at=np.zeros((1, 4)), of="jacobian",
                        expect=lambda w: [1 - 2 * lam, 1 - 2 * lam, -1 - 2 * lam, -1 - 2 * lam],
                        name="-J at the origin",
                        source="eq 62 at w = 0: H = 2 lam I - P, eigenvalues 2 lam -+ 1 (twice each)"),
            rf.Holds(measure=trace_of(zero_mode, None), hi=1e-12, name="zero mode = O(2) rotation",
                     what="max |v^T H v| / (4 lam |v|^2) on the set, v = rotation of (w1,w3), (w2,w4)",
                     source="sec 19: the regularized loss is O(2)-invariant; its orbit is the critical circle"),
            rf.Holds(measure=trace_of(printed_mode, 0.5), lo=0.5, name="circles in w1-w2, w3-w4 planes",
                     what="min |v^T H v| / (4 lam |v|^2) on the set, v = rotation of (w1,w2), (w3,w4)",
                     source="Thm 7 proof as printed",
                     erratum="printed: degeneracy from circles in the w1-w2 and w3-w4 planes; those rotations "
                             "have curvature 4 lam, the zero mode rotates (w1,w3) and (w2,w4)", grade="erratum",
                     identity="refutes the printed zero modes (the evidence is their curvature on the set)"),
        ],
    )


# ----------------------------------------------------------------------------- symmetries of deep linear nets


#: The deep linear network of the zero-mode counts: widths 3-2-2-3 (GL(2) x GL(2) between the layers).
SYMMETRY_WIDTHS = (3, 2, 2, 3)
SYMMETRY_SAMPLES = 6


def symmetry_problem(seed=0):
    r"""Data :math:`X` (6 x 3, orthonormal columns) and targets :math:`Y = XM^\top` of a rank-2 map
    :math:`M = AB`, so :math:`L = \tfrac12\|W_3W_2W_1 - M\|_F^2`; and the network."""
    rng = np.random.default_rng(seed)
    X = np.linalg.qr(rng.normal(size=(SYMMETRY_SAMPLES, SYMMETRY_WIDTHS[0])))[0]
    A, B = rng.normal(size=(SYMMETRY_WIDTHS[-1], 2)), rng.normal(size=(2, SYMMETRY_WIDTHS[0]))
    M = A @ B
    return {"x": jnp.asarray(X), "y": jnp.asarray(X @ M.T)}, M, rf.Network(SYMMETRY_WIDTHS)


def _orthogonal(rng, n):
    return np.linalg.qr(rng.normal(size=(n, n)))[0]


def symmetry_minima(M, lam, n=3, seed=1):
    r"""Exact critical points of :math:`\tfrac12\|W_3W_2W_1 - M\|^2 + \lambda\sum_k\|W_k\|^2` (flat):
    :math:`\lambda = 0`: factorizations :math:`W_1 = G_1B'`, :math:`W_2 = G_2G_1^{-1}`, :math:`W_3 = A'G_2^{-1}`
    of :math:`M = A'B'` with random :math:`G_k\in GL(2)`; :math:`\lambda > 0`: balanced layers
    :math:`W_1 = O_1\Sigma V^\top`, :math:`W_2 = O_2\Sigma O_1^\top`, :math:`W_3 = U\Sigma O_2^\top` with
    :math:`\sigma^4 - m\sigma + 2\lambda = 0` per singular value m of M (largest root) and random
    :math:`O_k\in O(2)`."""
    U, m, Vt = np.linalg.svd(M)
    U, m, Vt = U[:, :2], m[:2], Vt[:2]
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        if lam == 0:
            G1, G2 = rng.normal(size=(2, 2)) + 2 * np.eye(2), rng.normal(size=(2, 2)) + 2 * np.eye(2)
            W1, W3 = G1 @ np.diag(np.sqrt(m)) @ Vt, U @ np.diag(np.sqrt(m)) @ np.linalg.inv(G2)
            W2 = G2 @ np.linalg.inv(G1)
        else:
            s = np.array([max(np.roots([1.0, 0.0, 0.0, -mi, 2 * lam]).real) for mi in m])
            O1, O2 = _orthogonal(rng, 2), _orthogonal(rng, 2)
            W1, W2, W3 = O1 @ np.diag(s) @ Vt, O2 @ np.diag(s) @ O1.T, U @ np.diag(s) @ O2.T
        out.append(np.concatenate([W1.ravel(), W2.ravel(), W3.ravel()]))
    return np.asarray(out)


def group_dimension(widths, orthogonal):
    r"""Dimension of :math:`\prod_k GL(d_k)` (:math:`\sum d_k^2`) or :math:`\prod_k O(d_k)`
    (:math:`\sum d_k(d_k-1)/2`) over the hidden widths."""
    hidden = widths[1:-1]
    return int(sum(d * (d - 1) // 2 if orthogonal else d * d for d in hidden))


def _symmetry_method(lam):
    lam = float(lam)
    if not (np.isfinite(lam) and lam >= 0):
        raise ValueError(f"lam must be >= 0 and finite, got {lam}")
    data, M, net = symmetry_problem()

    def loss(w, d):
        return 0.5 * jnp.sum((net(net.unflatten(w), d["x"]) - d["y"]) ** 2)

    names = tuple(f"{k}[{i},{j}]" for k, (r, c) in zip(net.keys, net.shapes) for i in range(r) for j in range(c))
    flow = rf.gradient_flow(loss, weight_decay=2.0 * lam, names=names, args=data)
    minima = symmetry_minima(M, lam)
    guesses = minima + 1e-3 * np.random.default_rng(2).normal(size=minima.shape)
    zero_modes = group_dimension(net.widths, orthogonal=lam > 0)
    if lam == 0:
        on, name = (lambda w, a: jnp.ravel(end_to_end_matrix(net, w) - M)), "W3 W2 W1 = M"
        other = rf.Perturbation("weight decay 0.1 added",
                                {"flow": rf.gradient_flow(loss, weight_decay=0.1, names=names, args=data)})
        source = ("sec 19: a deep linear net is invariant under GL(d_2) x GL(d_1) acting between the layers; the "
                  f"Hessian has as many zero eigenvalues as the group's dimension ({zero_modes})")
    else:
        on, name = (lambda w, a: balancedness(net, w)), "balanced layers"
        other = rf.Perturbation("no weight decay", {"flow": rf.gradient_flow(loss, names=names, args=data)})
        source = ("sec 19: with sum_k lambda |W_k|^2 the loss keeps only O(d_2) x O(d_1); its dimension "
                  f"({zero_modes}) of zero eigenvalues remains")
    return rf.Method(
        flow=flow, y0=minima[:1], t1=1.0, perturbations=[other],
        claims=[rf.EquilibriumSet(guesses=guesses, on=on, kind="degenerate sink", zero_modes=zero_modes, name=name,
                                  source=source)],
    )


def end_to_end_matrix(net, w):
    r""":math:`W_K\cdots W_1` of flat weights ``w``."""
    out = jnp.eye(net.widths[0])
    for W in net.weights(net.unflatten(w)):
        out = W @ out
    return out


def balancedness(net, w):
    r""":math:`W_{k+1}^\top W_{k+1} - W_kW_k^\top` for every k, flattened (0 at critical points of the
    :math:`L_2`-regularized loss of a linear network)."""
    Ws = net.weights(net.unflatten(w))
    return jnp.concatenate([jnp.ravel(b.T @ b - a @ a.T) for a, b in zip(Ws[:-1], Ws[1:])])


@rf.entry("normalized_flows.linear_net_zero_modes", source="Theory III sec 19")
def linear_net_zero_modes(lam: float = 0.0) -> rf.Method:
    r"""Gradient flow of :math:`\tfrac12\|W_3W_2W_1X^\top - Y^\top\|^2` (widths 3-2-2-3, targets of rank 2)
    at its minima :math:`W_3W_2W_1 = M`: the set is one orbit of :math:`GL(2)\times GL(2)`,
    :math:`(W_k, W_{k+1}) \mapsto (GW_k, W_{k+1}G^{-1})`, so the Hessian has 8 zero eigenvalues."""
    return _symmetry_method(lam)


@rf.entry("normalized_flows.linear_net_zero_modes_l2", source="Theory III sec 19")
def linear_net_zero_modes_l2(lam: float = 0.05) -> rf.Method:
    r"""The same network with :math:`\lambda\sum_k\|W_k\|_F^2` (``weight_decay = 2 lam``): its critical points
    are balanced, :math:`W_{k+1}^\top W_{k+1} = W_kW_k^\top`, and only :math:`O(2)\times O(2)` remains: 2 zero
    eigenvalues."""
    return _symmetry_method(lam)
