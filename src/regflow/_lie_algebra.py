r"""How many conservation laws a model has: the rank of the Lie algebra of its Jacobian fields.

Marcotte, Gribonval & Peyré, "Abide by the law and follow the flow: conservation laws for
gradient flows" (NeurIPS 2023).  Write the model as :math:`g(\theta, x)`,
:math:`\theta\in\mathbb R^D`.  A function :math:`h` is conserved by the gradient flow of every
loss :math:`L(\theta) = \sum_n \ell(g(\theta, x_n), y_n)` (every data set, every loss) iff

.. math:: \nabla h(\theta) \perp W(\theta) = \operatorname{span}\{\nabla_\theta g_i(\theta, x)\ :\ x, i\}

at every :math:`\theta`.  Then :math:`\nabla h` is also orthogonal to every iterated Lie bracket
:math:`[X, Y] = \partial Y\,X - \partial X\,Y` of those fields, and (Frobenius) the number of
independent conservation laws near a generic :math:`\theta` is

.. math:: N = D - \dim \operatorname{Lie}(W)(\theta).

`count_conservation_laws` computes it numerically: the generating fields are the model's
Jacobian rows at sampled inputs (or a flow's field at sampled data sets), reduced to a basis of
the function space they span (their values at the sample points, SVD); each level brackets the
last level's new fields with the generators (left-normed brackets span the Lie algebra), with
the derivatives from ``jax.jacfwd``; the rank at the points (normalized columns, singular
values above ``tol`` times the largest) is taken after each level, until it stops growing.
"""

from __future__ import annotations

import dataclasses
import inspect
import jax
import jax.numpy as jnp
import numpy as np

from ._system import ODE
from ._tree import structure_of

#: Relative singular-value threshold of every rank (float64 Jacobians; the gap is reported).
RANK_TOL = 1e-8
#: Random parameter points, besides ``params``, where the rank is taken.
POINTS = 5
#: Inputs drawn when ``inputs`` is an input dimension.
INPUTS = 48
#: Data sets drawn for a flow when ``datasets`` is not given (a flow whose args hold data).
DATASETS = 12
#: Bracket levels at most (level 1: the fields themselves).
MAX_DEPTH = 5
#: Largest parameter dimension (the nested Jacobians cost about D^depth).
MAX_DIM = 60
TINY = 1e-300


@dataclasses.dataclass(frozen=True)
class LawCount:
    r"""The result of `count_conservation_laws`: ``laws`` :math:`= D - \text{rank}`.

    ``dim`` is :math:`D`, ``rank`` the generic dimension of the Lie algebra (the largest over
    the points), ``ranks`` the dimension at each point (``params`` first), ``depth`` the bracket
    levels used, ``levels`` the rank after each level, ``tol`` the relative singular-value
    threshold, and ``gap`` ``(smallest kept, largest dropped)`` singular values relative to the
    largest at the point of largest rank: a clear gap (e.g. ``(1e-2, 1e-14)``) means a clear rank.
    ``int(count)`` and ``count == n`` read ``laws``."""

    laws: int
    dim: int
    rank: int
    ranks: tuple[int, ...]
    depth: int
    levels: tuple[int, ...]
    tol: float
    gap: tuple[float, float]

    def __int__(self):
        return self.laws

    def __index__(self):
        return self.laws

    def __eq__(self, other):
        if isinstance(other, (int, np.integer)) and not isinstance(other, bool):
            return self.laws == int(other)
        if not isinstance(other, LawCount):
            return NotImplemented
        return dataclasses.astuple(self) == dataclasses.astuple(other)

    def __hash__(self):
        return hash(dataclasses.astuple(self))

    def __str__(self):
        return (f"{self.laws} conservation laws (D = {self.dim}, dim Lie = {self.rank} after {self.depth} levels "
                f"{list(self.levels)}; singular values kept >= {self.gap[0]:.2g}, dropped <= {self.gap[1]:.2g}, "
                f"tol {self.tol:g})")


# ----------------------------------------------------------------------------- validation


def _positive_int(value, argname, fix):
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ValueError(f"{argname} must be a positive int, got {value!r}; {fix}")
    return int(value)


def _tolerance(tol):
    if isinstance(tol, bool) or not isinstance(tol, (int, float)) or not 0 < tol < 1:
        raise ValueError(f"tol must be a number in (0, 1) (a relative singular-value threshold), got {tol!r}")
    return float(tol)


def _parameters(params):
    """The `Structure` and flat float64 view of ``params``, validated."""
    try:
        structure, flat = structure_of(params, "params")
    except (TypeError, ValueError) as error:
        raise type(error)(f"{error} (params: the model's parameters, a pytree of arrays, e.g. {{'U': U, 'V': V}})") \
            from None
    if structure.size > MAX_DIM:
        raise ValueError(f"params has {structure.size} entries; count_conservation_laws and conservation_laws work "
                         f"at small scale (at most {MAX_DIM}): use a smaller network of the same architecture")
    return structure, np.asarray(flat, dtype=np.float64)


def _random_points(flat, points, seed, scale=1.0):
    """``params`` followed by ``points`` standard normal points (``scale`` times), ``(1 + points, D)``."""
    rng = np.random.default_rng(seed)
    return np.vstack([flat[None], scale * rng.normal(size=(points, flat.size))])


def _model_caller(model, args):
    """``(params, x) -> outputs`` from ``model(params, x)`` or ``model(params, x, args)``."""
    if not callable(model):
        raise TypeError(f"model must be a function model(params, x) -> outputs (or an rf.ODE), got "
                        f"{type(model).__name__}")
    if args is None:
        return model
    return lambda p, x: model(p, x, args)


def _inputs(inputs, seed):
    """A batch of inputs: the array given, or `INPUTS` standard normal inputs of dimension ``inputs``."""
    if inputs is None:
        raise ValueError("inputs is required for a model: a batch of inputs (n, d_in), or the input dimension d_in "
                         f"to draw {INPUTS} standard normal inputs")
    if isinstance(inputs, (int, np.integer)) and not isinstance(inputs, bool):
        d = _positive_int(inputs, "inputs", "give the input dimension, or a batch of inputs (n, d_in)")
        return np.random.default_rng(seed + 1).normal(size=(INPUTS, d))
    x = np.asarray(inputs, dtype=np.float64)
    if x.ndim < 1 or x.shape[0] < 1 or not np.all(np.isfinite(x)):
        raise ValueError(f"inputs must be a finite batch of inputs with a leading sample axis (n, d_in), got shape "
                         f"{x.shape}")
    return x


def _random_args(args, datasets, seed):
    """``args`` followed by ``datasets`` random data sets of its structure (standard normal leaves)."""
    leaves, treedef = jax.tree_util.tree_flatten(args)
    if not leaves or any(not np.issubdtype(np.asarray(leaf).dtype, np.number) for leaf in leaves):
        raise ValueError("datasets resamples the flow's args (its data set): the flow needs args that are a pytree of "
                         "arrays, e.g. {'x': X, 'y': Y}; give datasets=0 for the flow's own field only")
    rng = np.random.default_rng(seed + 2)
    draws = [[np.asarray(leaf, dtype=np.float64)] + [rng.normal(size=np.shape(leaf)) for _ in range(datasets)]
             for leaf in leaves]
    return jax.tree_util.tree_unflatten(treedef, [np.stack(d) for d in draws])


def generators(model_or_flow, params, args=None, *, inputs=None, datasets=None, seed=0):
    r"""The generating fields as one function ``G(theta, data) -> (D, g)`` of the flat
    parameters and its ``data`` (passed as an argument, so compiled programs do not bake it in),
    the parameters' `Structure` and flat view: ``(G, data, structure, flat)``.

    A model ``model(params, x)``: the Jacobian rows :math:`\nabla_\theta g_i(\theta, x_n)` at
    ``inputs``.  An `rf.ODE`: its field :math:`f(0, \theta, a)` at its own ``args`` and, when
    it has args, ``datasets`` random data sets of their structure (for a gradient flow of
    :math:`L_{X,Y}` these span the same fields as the model's Jacobian rows, the paper's
    :math:`W^g_\theta`)."""
    structure, flat = _parameters(params)
    if isinstance(model_or_flow, ODE):
        flow = model_or_flow
        own = flow.args if args is None else args
        if datasets is None:
            datasets = DATASETS if own is not None else 0
        if isinstance(datasets, bool) or not isinstance(datasets, (int, np.integer)) or datasets < 0:
            raise ValueError(f"datasets must be an int >= 0 (random data sets besides the flow's own), got "
                             f"{datasets!r}")
        field = flow.vector_field
        if datasets == 0:
            def G(theta, data):
                return structure.ravel(field(0.0, structure.unravel(theta), data))[:, None]

            return G, own, structure, flat

        def G(theta, data):
            one = lambda a: structure.ravel(field(0.0, structure.unravel(theta), a))  # noqa: E731
            return jax.vmap(one)(data).T

        stacked = jax.tree_util.tree_map(jnp.asarray, _random_args(own, int(datasets), seed))
        return G, stacked, structure, flat
    if datasets is not None:
        raise ValueError("datasets resamples a flow's data set; for a model give inputs= (the sampled inputs) instead")
    call = _model_caller(model_or_flow, args)

    def outputs(theta, x):
        out = call(structure.unravel(theta), x)
        return jnp.concatenate([jnp.ravel(leaf) for leaf in jax.tree_util.tree_leaves(out)])

    def G(theta, x):
        return jax.jacfwd(outputs)(theta, x).T

    return G, jnp.asarray(_inputs(inputs, seed)), structure, flat


# ----------------------------------------------------------------------------- linear algebra


def _normalized(columns):
    """Columns of ``(..., D, n)`` scaled to unit norm; zero columns stay zero."""
    norms = np.linalg.norm(columns, axis=-2, keepdims=True)
    big = norms.max(axis=-1, keepdims=True) if columns.shape[-1] else norms
    return np.where(norms > 1e-12 * big + TINY, columns / np.maximum(norms, TINY), 0.0)


def _rank(matrix, tol):
    """Rank with relative threshold ``tol``, and ``(smallest kept, largest dropped)`` relative singular values."""
    if matrix.size == 0:
        return 0, (1.0, 0.0)
    s = np.linalg.svd(matrix, compute_uv=False)
    if s[0] <= TINY:
        return 0, (1.0, 0.0)
    rel = s / s[0]
    rank = int(np.sum(rel > tol))
    return rank, (float(rel[rank - 1]) if rank else 1.0, float(rel[rank]) if rank < len(rel) else 0.0)


def _function_basis(values, tol):
    """Coefficients ``C (n, r)`` of a basis of the functions whose values at the points are
    ``values (P, D, n)``: their span is kept exactly at those points."""
    P, D, n = values.shape
    if n == 0:
        return np.zeros((0, 0))
    stacked = values.reshape(P * D, n)
    scale = np.linalg.norm(stacked, axis=0)
    keep = scale > 1e-12 * max(scale.max(), TINY)
    if not keep.any():
        return np.zeros((n, 0))
    _, s, vt = np.linalg.svd(stacked[:, keep] / scale[keep], full_matrices=False)
    r = int(np.sum(s > tol * s[0]))
    C = np.zeros((n, r))
    C[keep] = vt[:r].T / scale[keep, None]
    return C


def _bracket_level(F, F1, pairs=None):
    r"""The fields :math:`[X_a, Y_c] = \partial Y_c\,X_a - \partial X_a\,Y_c` for ``X = F1``
    (generators) and ``Y = F`` (last level), as one function ``(theta, consts) -> (D, a * c)``;
    ``pairs`` (rows, columns) keeps only those brackets (for ``F = F1``: :math:`a < c`, the others
    being their negatives or zero)."""

    def level(theta, consts):
        X, Y = F1(theta, consts), F(theta, consts)
        dX, dY = jax.jacfwd(F1)(theta, consts), jax.jacfwd(F)(theta, consts)  # (D, fields, D)
        out = jnp.einsum("icj,ja->iac", dY, X) - jnp.einsum("iaj,jc->iac", dX, Y)
        return out.reshape(out.shape[0], -1) if pairs is None else out[:, pairs[0], pairs[1]]

    return level


def _combined(F, level):
    """``F`` followed by the level's basis coefficients ``consts["C"][level]``."""
    return lambda theta, consts: F(theta, consts) @ consts["C"][level]


def _at_points(F, pts, consts):
    return np.asarray(jax.jit(jax.vmap(F, in_axes=(0, None)))(pts, consts))


def lie_algebra_rank(G, data, points, *, tol=RANK_TOL, max_depth=MAX_DEPTH):
    """Ranks of the Lie algebra generated by the fields ``G(theta, data) -> (D, g)`` at ``points (P, D)``:
    ``(ranks per point, rank after each level, gap, depth)``."""
    pts = jnp.asarray(points)
    D = pts.shape[1]
    base = lambda theta, consts: G(theta, consts["data"])  # noqa: E731
    consts = {"data": data, "C": ()}
    values = _at_points(base, pts, consts)
    C1 = _function_basis(values, tol)
    consts = {"data": data, "C": (jnp.asarray(C1),)}
    F1 = _combined(base, 0)
    kept = [values @ C1]  # (P, D, r) per level
    F, levels = F1, []
    best = None
    for depth in range(1, max_depth + 1):
        if depth > 1:
            new = _bracket_level(F, F1, np.triu_indices(C1.shape[1], 1) if depth == 2 else None)
            raw = _at_points(new, pts, consts)
            C = _function_basis(raw, tol)
            if C.shape[1] == 0:
                levels.append(levels[-1])
                break
            consts = {"data": data, "C": (*consts["C"], jnp.asarray(C))}
            F = _combined(new, depth - 1)
            kept.append(raw @ C)
        stacked = _normalized(np.concatenate(kept, axis=-1))
        ranks, gaps = zip(*(_rank(m, tol) for m in stacked))
        total = max(ranks)
        best = (tuple(ranks), gaps[int(np.argmax(ranks))])
        grew = not levels or total > levels[-1]
        levels.append(total)
        if total >= D or not grew:
            break
    return best[0], tuple(levels), best[1], len(levels)


def count_conservation_laws(model, params, args=None, *, inputs=None, datasets=None, points: int = POINTS,
                            seed: int = 0, tol: float = RANK_TOL, max_depth: int = MAX_DEPTH) -> LawCount:
    r"""The number of independent conservation laws :math:`D - \dim\operatorname{Lie}(W)(\theta)`
    of a model (or of a gradient flow, over data sets).

    ``model(params, x)`` (or ``model(params, x, args)`` when ``args`` is given) maps the
    parameters (a pytree) and a batch of ``inputs`` (an array ``(n, d_in)``, or ``d_in`` to draw
    `INPUTS` standard normal ones) to the outputs; the generating fields are the Jacobian rows
    :math:`\nabla_\theta g_i(\theta, x_n)`.  An `rf.ODE` (e.g. ``rf.gradient_flow(loss,
    args=data)``) gives its field at its ``args`` and ``datasets`` random data sets of their
    structure instead.  The rank is taken at ``params`` and ``points`` standard normal points
    (``seed``), with relative singular-value threshold ``tol``, after each bracket level until
    it stops growing (at most ``max_depth`` levels); the generic (largest) rank counts.  Sampled
    fields can only miss directions: the rank found is a lower bound and the count an upper
    bound, exact once the inputs (or data sets) and points suffice (a flow's one field per data
    set needs about as many data sets as the rank; see ``levels`` and ``gap``).

    Example
    -------
    >>> import regflow as rf, numpy as np
    >>> model = lambda p, x: x @ p["V"] @ p["U"].T          # U V^T x, 2 hidden units
    >>> params = {"U": np.ones((3, 2)), "V": np.ones((3, 2))}
    >>> int(rf.count_conservation_laws(model, params, inputs=3))   # r (r + 1) / 2
    3
    """
    if not (isinstance(model, ODE) or callable(model)):
        raise TypeError(f"model must be a function model(params, x) -> outputs or an rf.ODE, got "
                        f"{type(model).__name__}")
    if callable(model) and not isinstance(model, ODE):
        _check_arity(model, args)
    points = _positive_int(points, "points", "the number of random parameter points where the rank is taken")
    max_depth = _positive_int(max_depth, "max_depth", "the most bracket levels (1: the fields alone)")
    tol = _tolerance(tol)
    G, data, structure, flat = generators(model, params, args, inputs=inputs, datasets=datasets, seed=seed)
    pts = _random_points(flat, points, seed)
    ranks, levels, gap, depth = lie_algebra_rank(G, data, pts, tol=tol, max_depth=max_depth)
    rank = max(ranks)
    return LawCount(structure.size - rank, structure.size, rank, ranks, depth, levels, tol, gap)


def _check_arity(model, args):
    """A model takes ``(params, x)``, or ``(params, x, args)`` when ``args`` is given."""
    try:
        sig = inspect.signature(model)
    except (TypeError, ValueError):
        return
    positional = [p for p in sig.parameters.values() if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    varargs = any(p.kind == p.VAR_POSITIONAL for p in sig.parameters.values())
    need = 2 if args is None else 3
    required = [p for p in positional if p.default is p.empty]
    if not varargs and (len(positional) < need or len(required) > need):
        form = "model(params, x)" if args is None else "model(params, x, args)"
        raise TypeError(f"model must be called as {form}; {getattr(model, '__name__', 'it')} takes "
                        f"{len(positional)} positional argument(s){'' if args is None else ' (args was given)'}")


__all__: list[str] = ["LawCount", "count_conservation_laws", "generators", "lie_algebra_rank"]
