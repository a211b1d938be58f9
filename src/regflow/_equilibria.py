r"""Equilibria of flows and fixed points of maps, found from guesses and classified.

Below `DENSE_BELOW` coordinates each guess starts a Levenberg-Marquardt solve with the dense
JAX Jacobian and the point is classified from all eigenvalues.  Above it everything is
matrix-free: a trust-region least-squares solve whose Jacobian is a `LinearOperator` of
Jacobian-vector products (LSMR inner solves), zero modes counted by Lanczos on
:math:`J^\top J` (`regflow._spectra.count_zero_modes`) and stability read from the extreme
eigenvalues (`regflow._spectra.jacobian_eigs`).  Residuals and Jacobian products are compiled
once per system and state structure.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from scipy.optimize import least_squares
from scipy.sparse.linalg import LinearOperator

from . import _spectra, _tree, _validate
from ._analysis import _as_state, _field, _flat_out
from ._compiled import merge, split
from ._system import Map

#: Default of ``equilibria(tol=...)``: a solution counts when :math:`|f(y^*)| <` this.
RESIDUAL_TOL = 1e-9
#: Default of ``equilibria(dedupe=...)``: points closer than this (relative to their size) merge.
DEDUPE_RTOL = 1e-6
#: Singular values of :math:`J` (flow) or :math:`J - I` (map) below this times the largest
#: one span the kernel, i.e. count as zero modes.
ZERO_MODE_RTOL = 1e-6
#: A real part (flow) or :math:`|\mu| - 1` (map) within this times the largest singular
#: value of :math:`J` (resp. :math:`J - I`) counts as marginal (neither sign).
MARGINAL_RTOL = 1e-6
#: Termination tolerances (``xtol``, ``ftol``, ``gtol``) of the least-squares root solver.
SOLVER_TOL = 1e-14
#: Most residual evaluations the root solver may spend on one guess.
SOLVER_MAX_NFEV = 2000
#: A solve stops as soon as the residual is below ``tol`` times this (the solvers' own step
#: tolerances are far stricter and, on flat minima of networks, would spend the whole budget).
EARLY_EXIT = 1e-3
#: Dense linear algebra below this many coordinates, matrix-free from there on.
DENSE_BELOW = 2000
#: Matrix-free: how many of the smallest eigenvalues are examined for zero modes (a count equal
#: to this means *at least* this many), and how many extreme eigenvalues are computed on each
#: side of the spectrum.
ZERO_MODE_CANDIDATES = 64
EXTREME_EIGENVALUES = 4


@dataclasses.dataclass(frozen=True, eq=False)
class Equilibrium:
    r"""An equilibrium :math:`f(y^*) = 0` of a flow, or fixed point :math:`\text{step}(y^*) = y^*` of a map.

    Attributes
    ----------
    point : the state, in its own structure (a vector, or a pytree of arrays).
    flat : numpy.ndarray, shape (dim,): its flat view.
    eigenvalues : numpy.ndarray, complex
        Of the Jacobian (flow) or the multipliers :math:`\mu` of the step (map), sorted by
        real part, descending: all ``dim`` of them (dense), or the extreme ones that decide
        the kind (matrix-free).
    zero_modes : int
        :math:`\dim\ker J` (flow) or :math:`\dim\ker(J - I)` (map): where the set of
        equilibria through ``point`` is a manifold, its dimension.
    stable : bool
        All eigenvalues except the zero modes have :math:`\operatorname{Re}\lambda < 0`
        (flow) or :math:`|\mu| < 1` (map); for a manifold of equilibria this is normal attraction.
    kind : str
        From the eigenvalues other than the zero modes: ``"sink"`` (all contracting),
        ``"source"`` (all expanding), ``"saddle"`` (both), ``"center"`` (all marginal),
        ``"non-hyperbolic"`` (marginal mixed with one sign); prefixed with ``"degenerate "``
        when ``zero_modes > 0``; just ``"degenerate"`` when all modes are zero modes.
    residual : float
        :math:`|f(y^*)|` (flow) or :math:`|\text{step}(y^*) - y^*|` (map).

    Example
    -------
    >>> import regflow as rf, jax.numpy as jnp
    >>> flow = rf.ODE(lambda t, y, a: -y)
    >>> rf.equilibria(flow, [0.3, -0.2])[0].kind
    'sink'
    """

    point: Any
    eigenvalues: np.ndarray
    zero_modes: int
    stable: bool
    kind: str
    residual: float
    flat: np.ndarray | None = None


def _kind(offsets, zero_modes, margin):
    """``kind`` and ``stable`` from the offsets (< 0 contracts) of the non-zero modes."""
    contracting, expanding = offsets < -margin, offsets > margin
    if offsets.size == 0:
        return "degenerate", False
    if contracting.all():
        kind = "sink"
    elif expanding.all():
        kind = "source"
    elif contracting.any() and expanding.any():
        kind = "saddle"
    elif not (contracting.any() or expanding.any()):
        kind = "center"
    else:
        kind = "non-hyperbolic"
    return (f"degenerate {kind}" if zero_modes else kind), bool(contracting.all())


def _classify_dense(is_map, point, flat, jac_residual, residual):
    """The `Equilibrium` at ``point`` from the dense Jacobian of the residual there."""
    sigma = np.linalg.svd(jac_residual, compute_uv=False)
    scale = sigma[0] if sigma.size else 0.0
    zero_modes = int(np.sum(sigma <= ZERO_MODE_RTOL * scale))
    J = jac_residual + np.eye(len(flat)) if is_map else jac_residual
    eig = np.linalg.eigvals(J).astype(complex)
    eig = eig[np.lexsort((-eig.imag, -eig.real))]
    # drop the zero_modes eigenvalues closest to 0 (flow) or multipliers closest to 1 (map)
    distance_to_kernel = np.abs(eig - 1.0) if is_map else np.abs(eig)
    remaining = eig[np.argsort(distance_to_kernel, kind="stable")[zero_modes:]]
    offsets = np.abs(remaining) - 1.0 if is_map else remaining.real
    kind, stable = _kind(offsets, zero_modes, MARGINAL_RTOL * scale)
    return Equilibrium(point, eig, zero_modes, stable, kind, float(residual), flat)


def _symmetric(apply, dim, seed=0):
    """Is the operator symmetric, :math:`u^\top A v = v^\top A u` on random vectors?"""
    u, v = np.random.default_rng(seed).standard_normal((2, dim))
    a, b = float(u @ apply(v)), float(v @ apply(u))
    return abs(a - b) <= 1e-9 * max(abs(a), abs(b), np.finfo(float).tiny)


def _classify_matrix_free(is_map, point, flat, ops, residual, field, args):
    """The `Equilibrium` from Jacobian-vector products only (see the module doc): zero modes
    by Lanczos on :math:`J` (symmetric, e.g. a gradient flow) or :math:`J^\top J`, the kind
    from the eigenvalues of largest and smallest real part (multipliers of largest modulus
    for a map)."""
    jvp, vjp = ops
    dim = flat.size
    k = min(ZERO_MODE_CANDIDATES, dim - 2)
    apply = lambda v: np.asarray(jvp(v))  # noqa: E731  (J of the residual)
    if _symmetric(apply, dim):
        scale = float(abs(_spectra._extremes(apply, dim, 1, "top", 0)[0][0]))
        scale = max(scale, float(abs(_spectra._extremes(apply, dim, 1, "bottom", 0)[0][0])))
        zero_modes = _spectra.count_zero_modes(apply, dim, k=k, scale=scale, rtol=ZERO_MODE_RTOL)
    else:
        normal = lambda v: np.asarray(vjp(jvp(v)))  # noqa: E731
        scale = float(np.sqrt(max(_spectra._extremes(normal, dim, 1, "top", 0)[0][0], 0.0)))
        zero_modes = _spectra.count_zero_modes(normal, dim, k=k, scale=scale**2, rtol=ZERO_MODE_RTOL**2)
    n = min(zero_modes + EXTREME_EIGENVALUES, dim - 2)
    high = _spectra.jacobian_eigs(field, point, k=n, which="LM" if is_map else "LR", args=args, dense_below=0)
    low = _spectra.jacobian_eigs(field, point, k=min(EXTREME_EIGENVALUES, dim - 2), which="SR", args=args,
                                 dense_below=0)
    eig = np.concatenate([high, low])
    eig = eig[np.lexsort((-eig.imag, -eig.real))]
    distance_to_kernel = np.abs(eig - 1.0) if is_map else np.abs(eig)
    remaining = eig[np.argsort(distance_to_kernel, kind="stable")[min(zero_modes, len(eig)):]]
    offsets = np.abs(remaining) - 1.0 if is_map else remaining.real
    kind, stable = _kind(offsets, zero_modes, MARGINAL_RTOL * scale)
    return Equilibrium(point, eig, zero_modes, stable, kind, float(residual), flat)


@functools.lru_cache(maxsize=256)
def _programs(static, structure, is_map):
    """Jitted flat residual, its dense Jacobian, and Jacobian-vector products (both ways)."""

    def residual(y, params):
        f = merge(params[0], static)[0]
        out = _flat_out(structure, f(0.0, _as_state(structure, y), params[1]))
        return out - y if is_map else out

    jvp = jax.jit(lambda y, v, params: jax.jvp(lambda x: residual(x, params), (y,), (v,))[1])
    vjp = jax.jit(lambda y, u, params: jax.vjp(lambda x: residual(x, params), y)[1](u)[0])
    return jax.jit(residual), jax.jit(jax.jacfwd(residual)), jvp, vjp


def _check_guesses(guesses, batched, system):
    """``(structure, (n, dim) flat guesses)``."""
    if batched is None:  # vector states: (dim,) one guess, (n, dim) one per row; any other pytree: one guess
        batched = _tree.is_number_list(guesses) and np.ndim(guesses) == 2 or (
            isinstance(guesses, (np.ndarray, jax.Array)) and np.ndim(guesses) == 2)
    structure, flat = _tree.structure_of(guesses, "guesses", batched=batched)
    flat = flat if batched else flat[None]
    if system.names is not None and len(system.names) != structure.size:
        raise ValueError(
            f"guesses have dimension {structure.size} but the system names {len(system.names)} "
            f"coordinates {system.names}; pass guesses of shape (n, {len(system.names)})"
        )
    return structure, flat


def equilibria(system, guesses, args=None, *, tol=RESIDUAL_TOL, dedupe=DEDUPE_RTOL, batched=None,
               dense_below=DENSE_BELOW):
    r"""Equilibria :math:`f(0, y^*) = 0` of a flow (the drift of an SDE), or fixed points
    :math:`\text{step}(0, y^*) = y^*` of a deterministic map, found from guesses.

    Each guess starts a least-squares solve of the residual (see the module doc: dense
    Levenberg-Marquardt below ``dense_below`` coordinates, matrix-free above).  Equilibria of
    training dynamics usually form manifolds (the minima of :math:`(w_1 w_2 - 1)^2` are the
    hyperbola :math:`w_1 w_2 = 1`), so different guesses land on different points of one
    set; ``zero_modes`` tells the set's dimension.

    Parameters
    ----------
    system : ODE, SDE or Map
    guesses : one state, or several along a leading axis.  With ``batched=None``: a 1-D
        vector is one guess, a 2-D array one guess per row (vector states), any other pytree
        one guess; ``batched=True`` / ``False`` says it explicitly.
    args : pytree, optional
        Parameters; ``None`` uses ``system.args``.
    tol : float
        Keep a solution when its residual :math:`|f(y^*)|` is below ``tol``.
    dedupe : float
        Merge solutions :math:`p, q` with :math:`|p - q| \le` ``dedupe`` :math:`\max(1, |p|, |q|)`.

    Returns
    -------
    list of Equilibrium
        Sorted lexicographically by flat point.

    Example
    -------
    >>> import regflow as rf, jax, jax.numpy as jnp
    >>> loss = lambda w, a: (w[0] * w[1] - 1.0) ** 2
    >>> flow = rf.ODE(lambda t, w, a: -jax.grad(loss)(w, a))
    >>> [e.kind for e in rf.equilibria(flow, [[0.0, 0.0], [1.1, 0.8]])]
    ['saddle', 'degenerate sink']
    """
    f = _field(system)
    args = _validate.finite_args(system.args if args is None else args)
    tol = _validate.positive_number(tol, "tol", "1e-9")
    dedupe = _validate.positive_number(dedupe, "dedupe", "1e-6")
    dense_below = _validate.positive_int(dense_below, "dense_below", least=0, example=2000)
    if batched is not None:
        batched = _validate.flag(batched, "batched")
    structure, guesses = _check_guesses(guesses, batched, system)
    is_map = isinstance(system, Map)
    try:
        _validate.check_outputs(system, structure, 0.0, args)
    except ValueError as err:
        raise ValueError(f"guesses have dimension {structure.size} (shape {structure.describe()}) but do not fit the "
                         f"system: {err}; pass guesses of the system's state shape, one per row") from None
    dynamic, static = split((f,))
    params = (dynamic, args)
    residual, jac, jvp, vjp = _programs(static, structure, is_map)
    dense = structure.size < dense_below

    found = []
    for guess in guesses:
        if not np.all(np.isfinite(residual(guess, params))):
            continue
        fun = _EarlyExit(lambda y: np.asarray(residual(y, params)), tol * EARLY_EXIT)
        try:
            if dense:
                sol = least_squares(fun, guess, jac=lambda y: np.asarray(jac(y, params)), method="lm",
                                    xtol=SOLVER_TOL, ftol=SOLVER_TOL, gtol=SOLVER_TOL, max_nfev=SOLVER_MAX_NFEV)
            else:
                sol = least_squares(fun, guess, jac=lambda y: _operator(jvp, vjp, y, params), method="trf",
                                    tr_solver="lsmr", xtol=SOLVER_TOL, ftol=SOLVER_TOL, gtol=SOLVER_TOL,
                                    max_nfev=SOLVER_MAX_NFEV)
        except _Converged as done:
            sol = done
        except (np.linalg.LinAlgError, ValueError):  # the solve wandered where the field is singular
            continue
        point = np.asarray(sol.x, dtype=np.float64)
        res = float(np.linalg.norm(residual(point, params)))
        if not (np.all(np.isfinite(point)) and res < tol):
            continue
        if any(np.linalg.norm(point - p) <= dedupe * max(1.0, np.linalg.norm(point), np.linalg.norm(p))
               for p, _ in found):
            continue
        found.append((point, res))
    found.sort(key=lambda pr: tuple(pr[0]))
    out = []
    for p, r in found:
        state = _as_state(structure, p)
        if dense:
            J = np.asarray(jac(p, params))
            if np.all(np.isfinite(J)):
                out.append(_classify_dense(is_map, state, p, J, r))
        else:
            ops = (lambda v, p=p: jvp(p, jnp.asarray(v), params), lambda u, p=p: vjp(p, jnp.asarray(u), params))
            out.append(_classify_matrix_free(is_map, state, p, ops, r, f, args))
    return out


class _Converged(Exception):
    def __init__(self, x):
        super().__init__("converged")
        self.x = x


@dataclasses.dataclass
class _EarlyExit:
    """A residual function that stops the solver (raises `_Converged`) once ``|r(y)| <= tol``."""

    fun: Any
    tol: float

    def __call__(self, y):
        r = self.fun(y)
        if np.linalg.norm(r) <= self.tol:
            raise _Converged(np.array(y, dtype=np.float64))
        return r


def _operator(jvp, vjp, y, params):
    y = jnp.asarray(y)
    n = y.shape[0]
    return LinearOperator((n, n), matvec=lambda v: np.asarray(jvp(y, jnp.asarray(v.ravel()), params)),
                          rmatvec=lambda u: np.asarray(vjp(y, jnp.asarray(u.ravel()), params)), dtype=np.float64)
