r"""Matrix-free spectra at network scale: Hessian- and Jacobian-vector products with Lanczos.

A state is a pytree of float arrays; every function works on its flat view
:math:`w \in \mathbb{R}^d` (``ravel_pytree``) and returns vectors shaped like ``w``.  Below
``dense_below`` parameters the matrix is built and decomposed exactly; above it only the products
:math:`Hv = \partial_\epsilon \nabla L(w + \epsilon v)` (forward over reverse) and
:math:`Jv = \partial_\epsilon f(t, y + \epsilon v)` go to ARPACK (``eigsh`` / ``eigs``).  Jitted
programs are cached per (function, pytree structure) with ``args`` traced, so a new ``w`` or
``args`` of the same shapes compiles nothing (pass the same function object, not a new lambda).
"""

from __future__ import annotations

import functools
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax.flatten_util import ravel_pytree
from scipy.sparse.linalg import ArpackNoConvergence, LinearOperator, eigs, eigsh

from . import _validate

#: Below this many parameters the dense matrix is built and decomposed exactly.
DENSE_BELOW = 500
#: ARPACK's relative residual tolerance, :math:`\|Av - \theta v\| \le` ``tol`` :math:`|\theta|`.
EIGSH_TOL = 1e-10
#: Seed of the fixed (standard normal) Lanczos start vector.
LANCZOS_SEED = 0
#: Lanczos steps of ``sharpness_fn`` (full reorthogonalisation).
LANCZOS_ITERS = 30
#: Rademacher probes of Hutchinson's trace estimator, and how many share one ``vmap``.
HUTCHINSON_SAMPLES, PROBE_BATCH = 100, 10
#: ``count_zero_modes``: :math:`|\lambda| \le` this times ``scale`` is zero (as in ``_analysis``);
#: how many smallest-magnitude eigenvalues it examines; its (looser) Lanczos tolerance.
ZERO_MODE_RTOL, ZERO_MODE_K, ZERO_MODE_TOL = 1e-6, 20, 1e-8
#: Lanczos basis ``ncv = max(NCV_MIN, NCV_PER_K * k + 1)``: ARPACK's default 2k + 1 needs many
#: times more products on clustered or repeated eigenvalues.
NCV_MIN, NCV_PER_K = 20, 3
#: After deflation, a Ritz value within this (relative) of the k-th found is a missed copy.
DEFLATE_RTOL = 1e-8
#: A Lanczos residual below this times :math:`\|Hq\|` is a breakdown (invariant subspace).
BREAKDOWN_RTOL = 1e-12
#: Distinct (function, structure) pairs whose compiled programs are kept.
PROGRAM_CACHE_SIZE = 64

HESSIAN_WHICH = ("top", "bottom")
JACOBIAN_WHICH = ("LR", "SR", "LM", "SM")


# ----------------------------------------------------------------------------- boundary checks


def _callable(fn, name, convention):
    _validate.check_callable(fn, name, convention.split(" ->")[0])


def _dense_below(value):
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 0:
        raise TypeError(f"dense_below must be an int >= 0 (the size below which dense linear algebra is used), got "
                        f"{value!r}")


def _positive_int(value, name, least=1, hint=""):
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < least:
        raise ValueError(f"{name} must be an int >= {least}{hint}, got {value!r}")


def _k(k, dim, spare, path):
    _positive_int(k, "k")
    if k > dim - spare:
        raise ValueError(f"k = {k} is too large for dim = {dim}: the {path} path finds at most "
                         f"dim - {spare} = {dim - spare} eigenvalues; ask for fewer"
                         + (", or set dense_below above dim to get all of them" if spare else ""))


def _which(which, allowed):
    if which not in allowed:
        raise ValueError(f"which must be one of {allowed}, got {which!r}")


def _flatten(w, name="w"):
    """Validate a float pytree; return ``(flat float64 vector, treedef, leaf shapes)``."""
    if isinstance(w, (list, tuple)) and w and all(isinstance(x, (int, float)) for x in w):
        w = np.asarray(w, dtype=np.float64)  # [2.0, 0.5] is a vector state, as in rf.hessian
    paths_leaves, treedef = jax.tree_util.tree_flatten_with_path(w)
    if not paths_leaves:
        raise ValueError(f"{name} has no array leaves; pass a float array or a pytree of them")
    names = [f"{name}{jax.tree_util.keystr(path)}" for path, _ in paths_leaves]
    dtypes = [jnp.result_type(leaf) for _, leaf in paths_leaves]
    for where, dtype in zip(names, dtypes):
        if not jnp.issubdtype(dtype, jnp.floating):
            raise TypeError(f"{where} has dtype {dtype}; every leaf of {name} must be a float "
                            "array, e.g. jnp.asarray(x, dtype=jnp.float64)")
        if dtype != dtypes[0]:
            raise TypeError(f"{name} mixes dtypes: {names[0]} is {dtypes[0]} but {where} is {dtype}; "
                            f"cast all leaves to one, e.g. tree_map(lambda x: x.astype(jnp.float64), {name})")
    leaves = [jnp.asarray(leaf, dtype=jnp.float64) for _, leaf in paths_leaves]
    flat = jnp.concatenate([x.ravel() for x in leaves])
    if not bool(jnp.isfinite(flat).all()):
        bad = next(n for n, x in zip(names, leaves) if not bool(jnp.isfinite(x).all()))
        raise ValueError(f"{bad} has non-finite entries (nan or inf); pass a finite point")
    return flat, treedef, tuple(x.shape for x in leaves)


def _scalar(out):
    """Trace-time check that a loss returned a float scalar."""
    if jnp.shape(out) != ():
        raise ValueError(f"loss must return a scalar, got shape {jnp.shape(out)}; "
                         "sum or average it, e.g. jnp.mean")
    if not jnp.issubdtype(jnp.result_type(out), jnp.floating):
        raise TypeError(f"loss must return a float scalar, got dtype {jnp.result_type(out)}")
    return out


# ----------------------------------------------------------------------------- cached programs


class _Programs(NamedTuple):
    unravel: object  # flat -> pytree
    apply: object    # (w, v, args) -> H v   or  (y, v, args, t) -> J v, flat
    dense: object    # (w, args) -> H        or  (y, args, t) -> J
    trace: object    # (w, args, key, samples) -> Hutchinson estimate (losses only)


def _cached(builder):
    """``lru_cache`` on (function, treedef, shapes); an unhashable function is built anew."""
    cached = functools.lru_cache(maxsize=PROGRAM_CACHE_SIZE)(builder)

    def get(fn, *key):
        try:
            hash(fn)
        except TypeError:
            return builder(fn, *key)
        return cached(fn, *key)

    return get


def _unravel(treedef, shapes):
    return ravel_pytree(jax.tree_util.tree_unflatten(treedef, [np.zeros(s) for s in shapes]))[1]


@_cached
def _loss_programs(loss, treedef, shapes):
    unravel = _unravel(treedef, shapes)

    def grad(w, args):
        return jax.grad(lambda x: _scalar(loss(unravel(x), args)))(w)

    def hvp_flat(w, v, args):
        return jax.jvp(lambda x: grad(x, args), (w,), (v,))[1]

    def hutchinson(w, args, key, samples):
        probes = jax.random.rademacher(key, (samples, w.shape[0]), dtype=w.dtype)
        return jnp.mean(jax.lax.map(lambda z: z @ hvp_flat(w, z, args), probes, batch_size=PROBE_BATCH))

    return _Programs(unravel, jax.jit(hvp_flat), jax.jit(jax.jacfwd(grad)),
                     jax.jit(hutchinson, static_argnums=3))


@_cached
def _field_programs(field, treedef, shapes):
    unravel = _unravel(treedef, shapes)

    def f(t, y, args):
        out = field(t, unravel(y), args)
        out_tree, out_shapes = jax.tree_util.tree_structure(out), [jnp.shape(x) for x in jax.tree.leaves(out)]
        if out_tree != treedef or out_shapes != list(shapes):
            raise ValueError(f"field must return a pytree like y ({treedef}, shapes {shapes}), got "
                             f"{out_tree} with shapes {out_shapes}")
        return ravel_pytree(out)[0].astype(y.dtype)

    jvp = jax.jit(lambda y, v, args, t: jax.jvp(lambda x: f(t, x, args), (y,), (v,))[1])
    return _Programs(unravel, jvp, jax.jit(lambda y, args, t: jax.jacfwd(lambda x: f(t, x, args))(y)), None)


def _loss_setup(loss, w, args):
    _callable(loss, "loss", "loss(w, args) -> scalar")
    flat, treedef, shapes = _flatten(w)
    args = _validate.finite_args(args)
    _check_loss(loss, treedef, shapes, args)
    return flat, (treedef, shapes), _loss_programs(loss, treedef, shapes), jax.device_put(args)


#: Losses whose output was checked, by (loss, structure, args signature).
_CHECKED: set = set()


def _check_loss(loss, treedef, shapes, args):
    """Trace the loss once per structure: a scalar float, written with jax.numpy."""
    key = (treedef, shapes, _validate.args_signature(args))
    try:
        key = (loss, *key)
        if key in _CHECKED:
            return
    except TypeError:
        key = None
    w = jax.tree_util.tree_unflatten(treedef, [jax.ShapeDtypeStruct(s, jnp.float64) for s in shapes])
    try:
        out = jax.eval_shape(lambda x: loss(x, args), w)
    except _validate.TRACER_ERRORS as err:
        raise TypeError(f"loss(w, args) uses numpy or Python control flow on traced values "
                        f"({_validate.first_line(err)}); write it with jax.numpy (jnp.sin, jnp.where instead of "
                        f"np.sin, if)") from err
    except (TypeError, ValueError, IndexError, KeyError, AttributeError, ArithmeticError) as err:
        kind = TypeError if isinstance(err, (TypeError, AttributeError, KeyError)) else ValueError
        raise kind(f"calling loss(w, args) on w (leaf shapes {shapes}) failed with {_validate.first_line(err)}; "
                   f"check that it fits w and args") from err
    if out is None:
        raise TypeError("loss(w, args) returned None; it must return a scalar (is a `return` missing?)")
    _scalar(out)
    if key is not None:
        _CHECKED.add(key)


def _numpy_op(apply):
    """A flat jax product ``v -> A v`` as a numpy matvec."""
    return lambda x: np.asarray(apply(jnp.asarray(np.ravel(x), dtype=jnp.float64)))


# ----------------------------------------------------------------------------- Lanczos driver


def _start(dim, seed):
    return np.random.default_rng(seed).standard_normal(dim)


def _eigsh(matvec, dim, k, v0, tol):
    """Top-``k`` eigenpairs of a symmetric operator, descending; on no convergence the ones
    that converged (possibly fewer than ``k``)."""
    op = LinearOperator((dim, dim), matvec=matvec, dtype=np.float64)
    try:
        vals, vecs = eigsh(op, k=k, which="LA", v0=v0, tol=tol, ncv=min(dim, max(NCV_MIN, NCV_PER_K * k + 1)))
    except ArpackNoConvergence as err:
        vals, vecs = err.eigenvalues, err.eigenvectors
        if not len(vals):
            raise RuntimeError(f"Lanczos (eigsh) did not converge for k = {k}: {err}; ask for fewer "
                               "eigenvalues or use the dense path (dense_below > dim)") from err
    order = np.argsort(vals)[::-1]
    return vals[order], vecs[:, order]


def _top_pairs(matvec, dim, k, v0, tol=EIGSH_TOL):
    r"""Top-``k`` eigenpairs, with the copies of repeated eigenvalues recovered by deflation.

    From one start vector Lanczos sees one copy of each eigenvalue (restarts find more only
    through rounding), so for ``k > 1`` the found pairs are moved down,
    :math:`B' = B + \sum_i (\tau - \theta_i) v_i v_i^\top`, and ``B'`` is searched again; a Ritz
    value at or above the k-th found so far is a missed copy.  At most ``k + 1`` rounds.
    """
    vals, vecs = np.empty(0), np.empty((dim, 0))
    for _ in range(k + 1):
        spread = max(float(np.abs(vals).max(initial=0.0)), np.finfo(float).tiny)

        def deflated(x, V=vecs, s=(vals.min(initial=0.0) - 2.0 * spread) - vals):
            x = np.ravel(x)
            return matvec(x) + V @ (s * (V.T @ x))

        new_vals, new_vecs = _eigsh(deflated, dim, k, v0 - vecs @ (vecs.T @ v0), tol)
        keep = new_vals > (vals[k - 1] - DEFLATE_RTOL * spread if len(vals) >= k else -np.inf)
        if not keep.any():
            break
        vals = np.concatenate([vals, new_vals[keep]])
        vecs = np.concatenate([vecs, new_vecs[:, keep]], axis=1)
        order = np.argsort(vals)[::-1]
        vals, vecs = vals[order], vecs[:, order]
        if k == 1:
            break
    if len(vals) < k:
        raise RuntimeError(f"Lanczos (eigsh) found {len(vals)} of k = {k} eigenpairs; ask for fewer "
                           "or use the dense path (dense_below > dim)")
    return vals[:k], vecs[:, :k]


def _extremes(matvec, dim, k, which, seed, tol=EIGSH_TOL):
    r"""``k`` largest (``"top"``) or smallest (``"bottom"``) eigenpairs of a symmetric operator.

    ARPACK silently skips Ritz values that are exactly 0 (and its relative tolerance cannot be
    met near 0), so it runs on :math:`B = \pm A + cI`, :math:`c = \|A v_0\| / \|v_0\|`, which
    puts the wanted end at the top and away from 0: :math:`\lambda = \pm(\theta - c)`.
    """
    v0 = _start(dim, seed)
    c = float(np.linalg.norm(matvec(v0)) / np.linalg.norm(v0)) or 1.0
    sign = 1.0 if which == "top" else -1.0
    vals, vecs = _top_pairs(lambda x: sign * matvec(x) + c * np.ravel(x), dim, k, v0, tol)
    return sign * (vals - c), vecs


# ----------------------------------------------------------------------------- public functions


def hvp(loss, w, v, args=None):
    r"""Hessian-vector product :math:`\nabla^2 L(w)\, v` (forward over reverse), shaped like ``w``.

    >>> import jax.numpy as jnp
    >>> hvp(lambda w, a: jnp.sum(w ** 3), jnp.array([1.0, 2.0]), jnp.array([1.0, 1.0]))
    Array([ 6., 12.], dtype=float64)
    """
    flat, structure, prog, args = _loss_setup(loss, w, args)
    vflat, *vstructure = _flatten(v, "v")
    if tuple(vstructure) != structure:
        raise ValueError(f"v must have the structure and leaf shapes of w: w is {structure[0]} with "
                         f"shapes {structure[1]}, v is {vstructure[0]} with shapes {vstructure[1]}; "
                         "build v like w, e.g. jax.tree_util.tree_map(jnp.ones_like, w)")
    return prog.unravel(prog.apply(flat, vflat, args))


def hessian_operator(loss, w, args=None):
    """The Hessian at ``w`` as a scipy ``LinearOperator`` on the flat view (a jitted HVP), e.g.
    for ``count_zero_modes(hessian_operator(loss, w, args))``."""
    flat, _, prog, args = _loss_setup(loss, w, args)
    return LinearOperator((flat.shape[0],) * 2, matvec=_numpy_op(lambda v: prog.apply(flat, v, args)),
                          dtype=np.float64)


def hessian_eigs(loss, w, k=1, which="top", args=None, vectors=False, dense_below=DENSE_BELOW,
                 seed=LANCZOS_SEED):
    r"""The ``k`` largest (``"top"``) or smallest (``"bottom"``) eigenvalues of :math:`\nabla^2 L(w)`.

    Below ``dense_below`` parameters: the jitted dense Hessian and ``numpy.linalg.eigh`` (any
    ``k <= dim``).  Above: Lanczos (``eigsh``) on the jitted HVP from a start vector fixed by
    ``seed`` (``k < dim``), shifted so that exact zeros are found; for ``k > 1`` copies of
    repeated eigenvalues (zero modes of a degenerate minimum) are recovered by deflation, which
    costs at least one more Lanczos run.  Accuracy about ``EIGSH_TOL`` times the spectral scale.

    Returns
    -------
    numpy.ndarray (k,) float64, descending ("top") or ascending ("bottom"); with
    ``vectors=True`` also a list of ``k`` unit eigenvectors, pytrees like ``w``.

    >>> import jax.numpy as jnp
    >>> hessian_eigs(lambda w, a: (jnp.prod(w) - 1.0) ** 2, [2.0, 0.5], k=2).round(12)
    array([8.5, 0. ])
    """
    _which(which, HESSIAN_WHICH)
    _dense_below(dense_below)
    flat, _, prog, args = _loss_setup(loss, w, args)
    dim = flat.shape[0]
    if dim < dense_below:
        _k(k, dim, 0, "dense")
        vals, vecs = np.linalg.eigh(np.asarray(prog.dense(flat, args)))
        idx = np.arange(k) if which == "bottom" else np.arange(dim - 1, dim - 1 - k, -1)
        vals, vecs = vals[idx], vecs[:, idx]
    else:
        _k(k, dim, 1, "matrix-free (Lanczos)")
        vals, vecs = _extremes(_numpy_op(lambda v: prog.apply(flat, v, args)), dim, k, which, seed)
    if not vectors:
        return np.asarray(vals, dtype=np.float64)
    vecs = vecs * np.sign(vecs[np.argmax(np.abs(vecs), axis=0), np.arange(k)])  # reproducible sign
    return np.asarray(vals, dtype=np.float64), [prog.unravel(jnp.asarray(x)) for x in vecs.T]


def sharpness(loss, w, args=None, dense_below=DENSE_BELOW):
    r"""Sharpness :math:`\lambda_{\max}(\nabla^2 L(w))`, the top Hessian eigenvalue, as a float.

    >>> import jax.numpy as jnp
    >>> sharpness(lambda w, a: 0.5 * jnp.sum(jnp.array([3.0, 1.0]) * w ** 2), jnp.ones(2))
    3.0
    """
    return float(hessian_eigs(loss, w, k=1, which="top", args=args, dense_below=dense_below)[0])


def hessian_trace(loss, w, args=None, samples=HUTCHINSON_SAMPLES, seed=0, dense_below=DENSE_BELOW):
    r"""Trace :math:`\operatorname{tr} \nabla^2 L(w)`: exact (the dense diagonal) below
    ``dense_below``; above it Hutchinson's :math:`\frac1S \sum_s z_s^\top H z_s` with ``samples``
    Rademacher probes :math:`z_s \in \{\pm1\}^d` drawn from ``seed`` (unbiased, variance
    :math:`\frac2S(\|H\|_F^2 - \sum_i H_{ii}^2)`; vmapped in batches of ``PROBE_BATCH``).

    >>> import jax.numpy as jnp
    >>> hessian_trace(lambda w, a: jnp.sum(w ** 2), jnp.ones(3))
    6.0
    """
    _positive_int(samples, "samples", least=2)
    _dense_below(dense_below)
    flat, _, prog, args = _loss_setup(loss, w, args)
    if flat.shape[0] < dense_below:
        return float(jnp.trace(prog.dense(flat, args)))
    return float(prog.trace(flat, args, jax.random.PRNGKey(seed), int(samples)))


def jacobian_eigs(field, y, k=1, which="LR", args=None, t=0.0, dense_below=DENSE_BELOW,
                  seed=LANCZOS_SEED):
    r"""``k`` eigenvalues of the Jacobian :math:`\partial f / \partial y` of ``field(t, y, args)``.

    ``which`` as in ``scipy.sparse.linalg.eigs``: largest / smallest real part (``"LR"``,
    ``"SR"``) or magnitude (``"LM"``, ``"SM"``).  Dense ``numpy.linalg.eigvals`` below
    ``dense_below`` (``k <= dim``); above it Arnoldi (``eigs``, ``k <= dim - 2``) on jitted JVPs,
    shifted by :math:`\pm c` for "LR"/"SR" so exact zeros are found.  Matrix-free limits: "SM"
    (no shift-invert) converges slowly and can miss exact zeros, and copies of a repeated
    eigenvalue can be missed (no deflation here); count zero modes with ``count_zero_modes``.
    Returns a complex128 array (k,), best first, conjugate pairs with ``+imag`` first.

    >>> import jax.numpy as jnp
    >>> jacobian_eigs(lambda t, y, a: jnp.array([-y[1], y[0]]) - 0.5 * y, jnp.ones(2), k=2)
    array([-0.5+1.j, -0.5-1.j])
    """
    _which(which, JACOBIAN_WHICH)
    _dense_below(dense_below)
    _callable(field, "field", "field(t, y, args) -> pytree like y")
    args = _validate.finite_args(args)
    t = _validate.finite_number(t, "t", "0.0")
    flat, treedef, shapes = _flatten(y, "y")
    prog, args, dim, t = _field_programs(field, treedef, shapes), jax.device_put(args), flat.shape[0], jnp.float64(t)
    shift = 0.0
    if dim < dense_below:
        _k(k, dim, 0, "dense")
        vals = np.linalg.eigvals(np.asarray(prog.dense(flat, args, t)))
    else:
        _k(k, dim, 2, "matrix-free (Arnoldi)")
        matvec, v0 = _numpy_op(lambda v: prog.apply(flat, v, args, t)), _start(dim, seed)
        c = float(np.linalg.norm(matvec(v0)) / np.linalg.norm(v0)) or 1.0
        shift = {"LR": c, "SR": -c}.get(which, 0.0)
        op = LinearOperator((dim, dim), matvec=lambda x: matvec(x) + shift * np.ravel(x), dtype=np.float64)
        try:
            vals = eigs(op, k=k, which=which, v0=v0, tol=EIGSH_TOL, return_eigenvectors=False)
        except ArpackNoConvergence as err:
            raise RuntimeError(f"Arnoldi (eigs) did not converge for k = {k}, which = {which!r}: {err}; "
                               "ask for fewer eigenvalues or use the dense path (dense_below > dim)") from err
    vals = np.asarray(vals, dtype=np.complex128) - shift
    key = {"LR": -vals.real, "SR": vals.real, "LM": -np.abs(vals), "SM": np.abs(vals)}[which]
    return vals[np.lexsort((-vals.imag, key))][:k]


def count_zero_modes(operator, dim=None, k=ZERO_MODE_K, scale=None, rtol=ZERO_MODE_RTOL,
                     seed=LANCZOS_SEED):
    r"""How many of the ``k`` smallest-magnitude eigenvalues of a symmetric operator ``A`` are
    zero, :math:`|\lambda| \le` ``rtol * scale`` (``scale`` defaults to :math:`\max|\lambda|`).

    ``operator`` is a scipy ``LinearOperator`` (e.g. ``hessian_operator``) or a callable
    ``matvec(x) -> A x`` on ``(dim,)`` arrays with ``dim`` given; ``k < dim``.  Matrix-free: the
    ``k`` bottom eigenpairs come from Lanczos on :math:`cI - A` with deflation, which recovers
    every copy of a repeated zero (one Lanczos run finds one copy; 7 zeros among 2000 come 3 or 4
    per run).  That suffices when ``A`` is positive semidefinite (a Hessian at a minimum); for a
    negative semidefinite ``A`` (the Jacobian :math:`-H` of gradient flow) the top is used, and
    for an indefinite one the top of :math:`c^2 I - A^2` (slower: its gap is squared).  A pair
    counts by :math:`\|Av\|`.  Limits: a count equal to ``k`` means *at least* ``k``; nonzero
    eigenvalues below ``rtol * scale`` count as zero; each deflation round is one more Lanczos
    run (at most ``k + 1``), so the cost grows with the multiplicity.

    >>> import numpy as np
    >>> diag = np.r_[np.zeros(3), np.linspace(1.0, 2.0, 97)]
    >>> count_zero_modes(lambda x: diag * x, dim=100, k=5)
    3
    """
    if isinstance(operator, LinearOperator):
        dim = operator.shape[0] if dim is None else dim
        operator = operator.matvec
    _callable(operator, "operator", "matvec(x) -> A x, or a scipy LinearOperator")
    _positive_int(dim, "dim", 2, " (the operator's size) when operator is a callable")
    _k(k, dim, 1, "matrix-free (Lanczos)")
    matvec = lambda x: np.ravel(operator(np.ravel(x)))  # noqa: E731
    top = float(_extremes(matvec, dim, 1, "top", seed, ZERO_MODE_TOL)[0][0])
    bottom, vecs = _extremes(matvec, dim, k, "bottom", seed, ZERO_MODE_TOL)
    scale = max(abs(top), abs(float(bottom[0]))) if scale is None else float(scale)
    if not scale > 0:
        return k
    zero = rtol * scale
    if bottom[0] < -zero and top <= zero:
        vecs = _extremes(matvec, dim, k, "top", seed, ZERO_MODE_TOL)[1]
    elif bottom[0] < -zero:
        squared = lambda x: scale ** 2 * np.ravel(x) - matvec(matvec(x))  # noqa: E731
        vecs = _top_pairs(squared, dim, k, _start(dim, seed), ZERO_MODE_TOL)[1]
    return int(sum(np.linalg.norm(matvec(v)) <= zero for v in vecs.T))


def lanczos_top(matvec, dim, dtype, iters, seed=LANCZOS_SEED):
    """``(value, unit vector)``: the top eigenpair of the symmetric operator ``matvec`` on
    ``dim`` numbers by ``min(iters, dim)`` Lanczos steps from a fixed normal start (``seed``),
    with full reorthogonalisation and a fresh orthogonal vector on breakdown; jax-traceable."""
    m = min(int(iters), dim)
    fresh = jax.random.normal(jax.random.PRNGKey(seed), (m + 1, dim), dtype=dtype)
    basis = jnp.zeros((m + 1, dim), dtype).at[0].set(fresh[0] / jnp.linalg.norm(fresh[0]))

    def orth(Q, z):  # twice is enough
        z = z - Q.T @ (Q @ z)
        return z - Q.T @ (Q @ z)

    def step(j, state):
        Q, alpha, beta = state
        hq = matvec(Q[j])
        z = orth(Q, hq)
        b = jnp.linalg.norm(z)
        ok = b > BREAKDOWN_RTOL * jnp.linalg.norm(hq)
        r = orth(Q, fresh[j + 1])
        nxt = jnp.where(ok, z / jnp.where(ok, b, 1.0), r / jnp.linalg.norm(r))
        return Q.at[j + 1].set(nxt), alpha.at[j].set(Q[j] @ hq), beta.at[j].set(jnp.where(ok, b, 0.0))

    zeros = jnp.zeros(m, dtype)
    Q, alpha, beta = jax.lax.fori_loop(0, m, step, (basis, zeros, zeros))
    vals, vecs = jnp.linalg.eigh(jnp.diag(alpha) + jnp.diag(beta[:-1], 1) + jnp.diag(beta[:-1], -1))
    u = Q[:m].T @ vecs[:, -1]
    return vals[-1], u / jnp.linalg.norm(u)


def sharpness_fn(loss, iters=LANCZOS_ITERS, seed=LANCZOS_SEED):
    r"""A pure-JAX sharpness estimate ``q(w, args=None) -> scalar``, jittable and vmappable in ``w``.

    ``iters`` Lanczos steps with full reorthogonalisation from a fixed normal start vector
    (``seed``); ``q`` is the top eigenvalue of the tridiagonal :math:`T = Q^\top H Q`
    (``jnp.linalg.eigvalsh``): a lower bound on :math:`\lambda_{\max}`, converging fast when the
    top eigenvalue is separated.  On breakdown (an invariant subspace, e.g. ``iters >= dim``) it
    restarts from a fresh orthogonal vector.  Memory ``iters * dim`` per state: map a long
    trajectory in chunks, ``jax.lax.map(lambda w: q(w, args), states, batch_size=...)``.

    >>> import jax, jax.numpy as jnp
    >>> q = sharpness_fn(lambda w, a: 0.5 * jnp.sum(a * w ** 2))
    >>> jax.vmap(lambda w: q(w, jnp.array([1.0, 2.0, 5.0])))(jnp.ones((4, 3))).round(6)
    Array([5., 5., 5., 5.], dtype=float64)
    """
    _callable(loss, "loss", "loss(w, args) -> scalar")
    _positive_int(iters, "iters")

    def q(w, args=None):
        flat, unravel = ravel_pytree(w)
        dim, m = flat.shape[0], min(int(iters), flat.shape[0])
        grad = jax.grad(lambda x: _scalar(loss(unravel(x), args)))
        return lanczos_top(lambda v: jax.jvp(grad, (flat,), (v,))[1], dim, flat.dtype, m, seed)[0]

    return q


__all__ = ["hvp", "hessian_operator", "hessian_eigs", "sharpness", "hessian_trace",
           "jacobian_eigs", "count_zero_modes", "sharpness_fn"]
