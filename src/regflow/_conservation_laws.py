r"""Polynomial conservation laws found, not only checked: `conservation_laws`, `Law`,
`principal_angles`, `law_coefficients`, `prove_conserved`.

Marcotte, Gribonval & Peyré, "Abide by the law and follow the flow" (NeurIPS 2023), the
polynomial-laws algorithm.  A polynomial :math:`h(\theta) = \sum_m c_m\,\theta^{\alpha_m}` of
degree :math:`1 \le |\alpha_m| \le` ``degree`` is conserved iff its Lie derivative along each
generating field vanishes,

.. math:: \nabla h(\theta)\cdot X_a(\theta) = \sum_m c_m\,\nabla\theta^{\alpha_m}\cdot X_a(\theta) = 0,

a linear condition on :math:`c` at each point :math:`\theta_p` and field :math:`X_a` (the model's
Jacobian rows at sampled inputs: laws for every data set; or one flow's field).  Over enough
random points the laws are the null space of that operator on the monomial basis, taken by SVD
(singular values below ``tol`` times the largest), so the laws returned are an orthonormal basis
in coefficient space and `principal_angles` compares them with known laws.
"""

from __future__ import annotations

import dataclasses
import inspect
import itertools
import math
from typing import Any, Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np
import scipy.linalg

from ._lie_algebra import _positive_int, _random_points, _tolerance, generators
from ._system import ODE

#: Relative singular value below which a direction of the Lie-derivative operator is a law.
NULL_TOL = 1e-9
#: Equations per unknown coefficient (rows of the operator over its columns).
OVERSAMPLE = 3
#: Coefficients below this (relative to the largest) are not printed in a law's formula.
PRINT_TOL = 1e-9
#: Tolerance of the rational coefficients a `Law` is proven with (relative to its largest).
RATIONAL_TOL = 1e-8
#: Most monomials (the operator is dense).
MAX_MONOMIALS = 4000
#: Fewest random points where a known law is fitted onto the monomial basis.
FIT_POINTS = 64
#: Largest relative residual of that fit for the law to count as a polynomial of the basis.
FIT_TOL = 1e-8


def monomials(dim: int, degree: int) -> np.ndarray:
    """Exponents ``(M, dim)`` of the monomials of degree 1 to ``degree`` in ``dim`` variables
    (by degree, then lexicographically)."""
    rows = []
    for d in range(1, degree + 1):
        for combo in itertools.combinations_with_replacement(range(dim), d):
            e = np.zeros(dim, dtype=int)
            for i in combo:
                e[i] += 1
            rows.append(e)
    return np.array(rows, dtype=int).reshape(-1, dim)


def _monomial_values(flat, exponents, degree):
    """The monomials at ``flat`` (D,): products of powers, differentiable everywhere."""
    powers = [jnp.ones_like(flat)]
    for _ in range(degree):
        powers.append(powers[-1] * flat)
    table = jnp.stack(powers)  # (degree + 1, D)
    return jnp.prod(table[exponents, jnp.arange(flat.shape[0])], axis=1)


@dataclasses.dataclass(frozen=True, eq=False)
class Law:
    r"""A polynomial conservation law :math:`q(y) = \sum_m c_m\,y^{\alpha_m}` in the flat
    coordinates of a state: ``coefficients`` :math:`c` ``(M,)``, ``monomials`` the exponents
    :math:`\alpha` ``(M, D)``, ``names`` the coordinates.  A law is a quantity: ``law(y, args)``
    evaluates it on a state of the structure it was found on (``args`` is ignored), so it goes
    into `rf.Conserved` as it is.  ``residual`` is its singular value relative to the largest
    (how far from exactly conserved at the sampled points), ``gap`` the smallest singular value
    kept out of the null space (relative): a clear gap means a clear set of laws."""

    coefficients: np.ndarray
    monomials: np.ndarray
    names: tuple[str, ...]
    residual: float = 0.0
    gap: float = 1.0
    label: str = "law"

    @property
    def __name__(self):
        return self.label

    @property
    def degree(self) -> int:
        return int(self.monomials.sum(axis=1).max())

    def __call__(self, y, args=None):
        leaves = jax.tree_util.tree_leaves(y)
        flat = jnp.concatenate([jnp.ravel(jnp.asarray(leaf)) for leaf in leaves])
        if flat.shape[0] != self.monomials.shape[1]:
            raise ValueError(f"{self.label} is a law of a state with {self.monomials.shape[1]} coordinates, got a "
                             f"state with {flat.shape[0]}; evaluate it on states of the structure it was found on")
        values = _monomial_values(flat, jnp.asarray(self.monomials), self.degree)
        return values @ jnp.asarray(self.coefficients)

    def formula(self, digits: int = 3) -> str:
        """The polynomial, largest coefficients first, those below `PRINT_TOL` (relative) left out."""
        c = np.asarray(self.coefficients)
        big = np.max(np.abs(c)) if c.size else 0.0
        terms = []
        for i in np.argsort(-np.abs(c), kind="stable"):
            if abs(c[i]) <= PRINT_TOL * big:
                continue
            factors = [n if k == 1 else f"{n}^{k}" for n, k in zip(self.names, self.monomials[i]) if k]
            terms.append((c[i], " ".join(factors)))
        if not terms:
            return "0"
        text = f"{terms[0][0]:.{digits}g} {terms[0][1]}"
        for coef, mono in terms[1:]:
            text += f" {'-' if coef < 0 else '+'} {abs(coef):.{digits}g} {mono}"
        return text

    def __str__(self):
        return f"{self.label}: {self.formula()}"

    __repr__ = __str__


def _coordinate_names(structure):
    return structure.coordinate_names() if not structure.trivial else tuple(f"y{i}" for i in range(structure.size))


def conservation_laws(model_or_flow, params, args=None, *, degree: int = 2, inputs=None, datasets=None,
                      points: int | None = None, seed: int = 0, tol: float = NULL_TOL) -> list[Law]:
    r"""The polynomial conservation laws of degree 1 to ``degree``: an orthonormal basis (in
    coefficient space) of the null space of the Lie-derivative operator.

    ``model_or_flow`` is a model ``model(params, x)`` (``model(params, x, args)`` with
    ``args``), whose fields are its Jacobian rows at ``inputs`` (a batch ``(n, d_in)`` or
    ``d_in``): laws for every data set; or an `rf.ODE`, whose field at its own ``args`` (and
    ``datasets`` random data sets of their structure; default none, the laws of this flow) is
    used.  ``params`` gives the structure of the parameters (and one sample point); ``points``
    random points (default: enough for `OVERSAMPLE` equations per coefficient) from ``seed``.

    Example
    -------
    >>> import regflow as rf, jax.numpy as jnp, numpy as np
    >>> flow = rf.gradient_flow(lambda w, a: (w[0] * w[1] - 1.0) ** 2 / 2)
    >>> laws = rf.conservation_laws(flow, np.array([0.5, 1.5]))
    >>> len(laws), laws[0].formula(2)       # doctest: +SKIP
    (1, '0.71 y0^2 - 0.71 y1^2')
    """
    degree = _positive_int(degree, "degree", "the largest degree of the polynomial laws (e.g. 2)")
    tol = _tolerance(tol)
    if isinstance(model_or_flow, ODE) and datasets is None:
        datasets = 0
    G, data, structure, flat = generators(model_or_flow, params, args, inputs=inputs, datasets=datasets, seed=seed)
    D = structure.size
    exps = monomials(D, degree)
    M = len(exps)
    if M > MAX_MONOMIALS:
        raise ValueError(f"degree={degree} in {D} coordinates has {M} monomials (at most {MAX_MONOMIALS}); lower "
                         f"degree or use a smaller model")
    rank0 = _field_rank(G, data, flat, tol)
    if points is None:
        points = max(2, math.ceil(OVERSAMPLE * M / rank0))
    points = _positive_int(points, "points", "the number of random points where the Lie derivatives are sampled")
    if points * rank0 < M:
        raise ValueError(f"points={points} gives about {points * rank0} independent equations ({rank0} per point) for "
                         f"{M} coefficients; give points >= {math.ceil(M / rank0)} (default: {OVERSAMPLE} per "
                         f"coefficient)")
    pts = jnp.asarray(_random_points(flat, points - 1, seed))
    jexps = jnp.asarray(exps)
    fields = np.asarray(jax.jit(jax.vmap(G, in_axes=(0, None)))(pts, data))  # (P, D, g)
    grads = np.asarray(jax.jit(jax.vmap(jax.jacfwd(lambda th: _monomial_values(th, jexps, degree))))(pts))  # (P, M, D)
    A = np.concatenate([_span(F, tol).T @ J.T for F, J in zip(fields, grads)])  # rows: grad q . (span of fields)
    _, s, vt = np.linalg.svd(A, full_matrices=True)
    s = np.concatenate([s, np.zeros(M - len(s))]) if len(s) < M else s
    rel = s / s[0] if s[0] > 0 else np.zeros_like(s)
    null = np.flatnonzero(rel < tol)
    gap = float(rel[null[0] - 1]) if null.size and null[0] > 0 else (float(rel[-1]) if not null.size else 1.0)
    names = _coordinate_names(structure)
    basis = [vt[i] * np.sign(vt[i][np.argmax(np.abs(vt[i]))]) for i in null]  # largest coefficient positive
    return [Law(c, exps, names, float(rel[i]), gap, f"law {k + 1}") for k, (c, i) in enumerate(zip(basis, null))]


def _span(F, tol):
    """An orthonormal basis ``(D, r)`` of the span of the columns of ``F`` (relative threshold ``tol``)."""
    u, s, _ = np.linalg.svd(F, full_matrices=False)
    if not s.size or s[0] <= 0:
        return u[:, :0]
    return u[:, : int(np.sum(s > tol * s[0]))]


def _field_rank(G, data, flat, tol):
    """The rank of the generating fields at ``flat`` (at least 1)."""
    return max(1, _span(np.asarray(jax.jit(G)(jnp.asarray(flat), data)), tol).shape[1])


def _fit_points(law: Law, seed):
    """Random points for a least-squares fit on the law's basis: `OVERSAMPLE` per unknown, at least `FIT_POINTS`."""
    rng = np.random.default_rng(seed + 3)
    n = max(FIT_POINTS, OVERSAMPLE * (len(law.monomials) + 1))
    return rng.normal(size=(n, law.monomials.shape[1]))


def law_coefficients(q: Callable, like: Law, params=None, args=None, *, seed: int = 0) -> np.ndarray:
    r"""The coefficients of ``q(y, args)`` on the monomial basis of ``like`` (a `Law`), fitted at
    random points (with a constant term, dropped); ``params`` gives the structure of ``y``
    (default: a flat vector).  Raises when ``q`` is not a polynomial of that basis."""
    if not isinstance(like, Law):
        raise TypeError(f"like must be an rf.Law (whose monomials the fit uses), got {type(like).__name__}")
    if not callable(q):
        raise TypeError(f"q must be a quantity q(y, args), got {type(q).__name__}")
    pts = _fit_points(like, seed)
    if params is None:
        unravel = lambda v: v  # noqa: E731
    else:
        from ._tree import structure_of

        structure, _ = structure_of(params, "params")
        if structure.size != pts.shape[1]:
            raise ValueError(f"params has {structure.size} coordinates but the law has {pts.shape[1]}")
        unravel = structure.unravel
    values = np.asarray(jax.jit(jax.vmap(lambda v: jnp.ravel(jnp.asarray(q(unravel(v), args)))[0]))(jnp.asarray(pts)))
    basis = np.asarray(jax.jit(jax.vmap(lambda v: _monomial_values(v, jnp.asarray(like.monomials), like.degree)))(
        jnp.asarray(pts)))
    design = np.column_stack([np.ones(len(pts)), basis])
    coef, *_ = np.linalg.lstsq(design, values, rcond=None)
    residual = np.linalg.norm(design @ coef - values) / max(np.linalg.norm(values), 1e-300)
    if residual > FIT_TOL:
        raise ValueError(f"{getattr(q, '__name__', 'q')} is not a polynomial of degree <= {like.degree} in these "
                         f"coordinates (fit residual {residual:.2g}); compare laws of the same degree")
    return coef[1:]


def _coefficient_matrix(laws, like, params, args, seed):
    """Columns: the coefficients of each law (a `Law`, or a quantity fitted onto ``like``)."""
    cols = []
    for law in laws:
        if isinstance(law, Law):
            if like is not None and (law.monomials.shape != like.monomials.shape
                                     or not np.array_equal(law.monomials, like.monomials)):
                raise ValueError("laws compared must share one monomial basis (same state and degree)")
            cols.append(np.asarray(law.coefficients))
        else:
            cols.append(law_coefficients(law, like, params, args, seed=seed))
    return np.column_stack(cols)


def principal_angles(found: Sequence[Law], known: Sequence[Any], params=None, args=None, *,
                     seed: int = 0) -> np.ndarray:
    r"""Principal angles (radians, largest first) between the spans of two sets of laws in
    coefficient space.  ``found`` are `Law`\ s; ``known`` are `Law`\ s or quantities
    ``q(y, args)`` (fitted onto ``found``'s monomials; ``params`` gives the state's structure).
    ``min(len(found), len(known))`` angles: all ~0 iff the smaller span lies in the larger.

    Example
    -------
    >>> angles = rf.principal_angles(laws, [lambda w, a: w[0]**2 - w[1]**2])   # doctest: +SKIP
    """
    found, known = list(found), list(known)
    if not found or not known:
        raise ValueError(f"principal_angles needs two non-empty sets of laws, got {len(found)} found and "
                         f"{len(known)} known")
    if not all(isinstance(law, Law) for law in found):
        raise TypeError("found must be rf.Law objects (from rf.conservation_laws)")
    like = found[0]
    A = _coefficient_matrix(found, like, params, args, seed)
    B = _coefficient_matrix(known, like, params, args, seed)
    return np.asarray(scipy.linalg.subspace_angles(A, B))


# ----------------------------------------------------------------------------- symbolic proof


def _symbolic(value, symbols):
    import sympy

    if isinstance(value, Law):
        c = np.asarray(value.coefficients)
        scale = np.max(np.abs(c))
        terms = [sympy.nsimplify(ci / scale, rational=True, tolerance=RATIONAL_TOL)
                 * sympy.prod([s**int(k) for s, k in zip(symbols, row)])
                 for ci, row in zip(c, value.monomials) if abs(ci) > PRINT_TOL * scale]
        return sympy.Add(*terms)
    return sympy.sympify(value)


def _call_symbolic(fn, y, args, arity_three):
    if isinstance(fn, Law):
        return fn
    if not callable(fn):
        return fn
    try:
        n = len([p for p in inspect.signature(fn).parameters.values()
                 if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)])
    except (TypeError, ValueError):
        n = 3 if arity_three else 2
    if arity_three:
        return fn(0, y, args) if n >= 3 else fn(y)
    return fn(y, args) if n >= 2 else fn(y)


def prove_conserved(field, q, names: Sequence[str], args=None) -> bool:
    r"""``True`` when sympy simplifies the Lie derivative :math:`\nabla q\cdot f` to 0 exactly.

    ``field`` is ``f(t, y, args)`` or ``f(y)`` written with arithmetic (and sympy functions),
    so that it accepts a vector of sympy symbols, or a list of expressions in ``names``; ``q``
    is ``q(y, args)`` / ``q(y)`` of the same kind, an expression, or a `Law` (its coefficients
    rationalized, relative to the largest, to 1e-8: the law proven is that rational one).
    ``False`` means "not proven", not "refuted".

    Example
    -------
    >>> rf.prove_conserved(lambda y: [-y[1] * (y[0] * y[1] - 1), -y[0] * (y[0] * y[1] - 1)],
    ...                    lambda y: y[0]**2 - y[1]**2, ["w1", "w2"])
    True
    """
    import sympy

    if isinstance(names, str) or not all(isinstance(n, str) for n in names) or not names:
        raise TypeError("names must be a non-empty sequence of coordinate names, e.g. ['w1', 'w2']")
    symbols = sympy.symbols(list(names))
    y = np.array(symbols, dtype=object)
    try:
        f = _call_symbolic(field, y, args, True)
        f = [_symbolic(v, symbols) for v in (list(f) if not isinstance(f, str) else [f])]
        qv = _symbolic(_call_symbolic(q, y, args, False), symbols)
    except (TypeError, AttributeError, sympy.SympifyError) as error:
        raise TypeError(f"field and q must accept sympy symbols (arithmetic and sympy functions, not jax.numpy): "
                        f"{error}") from None
    if len(f) != len(symbols):
        raise ValueError(f"field has {len(f)} components for {len(symbols)} names; give one name per coordinate")
    lie = sum(sympy.diff(qv, s) * fi for s, fi in zip(symbols, f))
    return bool(sympy.simplify(sympy.expand(lie)) == 0)
