r"""Local analysis of systems: Jacobians, Hessians, Lie derivatives and equilibria.

Everything here uses only the public interface of a system (``drift``, ``diffusion``,
``noise``, ``calculus``, ``step``, ``stochastic``, ``args``) and gets its derivatives from
JAX autodiff, so it works for any system declared with ``jax.numpy``.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
from scipy.optimize import least_squares

from ._system import ODE, SDE, Map

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


def _field(system):
    """The map ``(t, y, args) -> f`` whose zeros are equilibria and whose Jacobian we want."""
    if isinstance(system, (ODE, SDE)):
        return system.drift
    if isinstance(system, Map):
        if system.stochastic:
            raise TypeError(
                "a stochastic Map has no deterministic Jacobian or fixed points; pass a "
                "deterministic map (stochastic=False), e.g. the full-batch step"
            )
        return lambda t, y, args: system.step(0, y, args)
    raise TypeError(f"system must be an ODE, SDE or Map, got {type(system).__name__}")


def _state(y, argname="y"):
    y = jnp.asarray(y, dtype=jnp.float64)
    if y.ndim != 1:
        raise ValueError(f"{argname} must be one state of shape (dim,), got shape {y.shape}")
    return y


def jacobian(system, y, t=0.0, args=None):
    r"""Jacobian :math:`J_{ij} = \partial f_i / \partial y_j` of a system at a state.

    :math:`f` is the vector field of an ODE, the drift :math:`b` of an SDE, or the step
    :math:`y \mapsto \text{step}(0, y)` of a deterministic Map (so for gradient descent
    :math:`J = I - \eta \nabla^2 L`).

    Parameters
    ----------
    system : ODE, SDE or Map
    y : array_like, shape (dim,)
    t : float
        Time at which the field is evaluated (ignored for a Map, which uses ``k = 0``).
    args : pytree, optional
        Parameters; ``None`` uses ``system.args``.

    Returns
    -------
    numpy.ndarray, shape (dim, dim), float64

    Example
    -------
    >>> import regflow as rf, jax.numpy as jnp
    >>> field = rf.ODE(lambda t, y, a: jnp.array([y[0] - 2 * y[1], y[0] * y[1]]))
    >>> rf.jacobian(field, [1.0, 3.0])
    array([[ 1., -2.],
           [ 3.,  1.]])
    """
    f = _field(system)
    args = system.args if args is None else args
    y = _state(y)
    return np.asarray(jax.jacfwd(lambda x: f(t, x, args))(y), dtype=np.float64)


def hessian(loss, w, args=None):
    r"""Hessian :math:`H_{ij} = \partial^2 L / \partial w_i \partial w_j` of ``loss(w, args)``.

    Example
    -------
    >>> import regflow as rf, jax.numpy as jnp
    >>> rf.hessian(lambda w, a: (jnp.prod(w) - 1.0) ** 2, [2.0, 0.5])   # eigenvalues 0, 8.5
    array([[0.5, 2. ],
           [2. , 8. ]])
    """
    w = _state(w, "w")
    return np.asarray(jax.hessian(loss)(w, args), dtype=np.float64)


def _diffusion_matrix(system, t, y, args):
    """The diffusion as a ``(dim, m)`` matrix :math:`G` whatever ``system.noise`` is."""
    g = system.diffusion(t, y, args)
    if system.noise == "scalar":
        return g[:, None]
    if system.noise == "diagonal":
        return jnp.diag(g)
    return g


def _ito_drift(system, t, y, args):
    r"""Drift in Ito form: :math:`b + \tfrac12 \sum_j (\partial G_{\cdot j}/\partial y) G_{\cdot j}`
    for a Stratonovich SDE, :math:`b` for an Ito one."""
    b = system.drift(t, y, args)
    if system.calculus == "ito":
        return b
    G = _diffusion_matrix(system, t, y, args)
    dG = jax.jacfwd(lambda x: _diffusion_matrix(system, t, x, args))(y)  # [i, j, k] = dG_ij/dy_k
    return b + 0.5 * jnp.einsum("ijk,kj->i", dG, G)


def lie_derivative(system, q):
    r"""The rate of change of a quantity ``q(y, args)`` along a flow.

    For an ODE :math:`\dot y = f`: :math:`\mathcal{L} q = \nabla q \cdot f`.  For an SDE
    :math:`dy = b\,dt + G\,dB` it is the generator (Ito's formula)

    .. math:: \mathcal{L} q = \nabla q \cdot b + \tfrac12 \operatorname{tr}(G G^\top \nabla^2 q),

    where a Stratonovich drift is first converted to Ito form,
    :math:`b \leftarrow b + \tfrac12 \sum_j (\partial G_j / \partial y)\, G_j` (:math:`G_j` the
    columns of :math:`G`).  ``noise="scalar"`` means :math:`G = g[:, None]`, ``"diagonal"``
    :math:`G = \operatorname{diag}(g)`, ``"general"`` :math:`G = g` of shape ``(dim, m)``.
    A quantity is conserved when :math:`\mathcal{L} q \equiv 0`.

    Returns
    -------
    callable
        ``Lq(y, args=None, t=0.0) -> scalar`` (``args=None`` uses ``system.args``); pure JAX,
        so it can be jitted and vmapped.

    Example
    -------
    >>> import regflow as rf, jax.numpy as jnp
    >>> rot = rf.ODE(lambda t, y, a: jnp.array([-y[1], y[0]]))
    >>> float(rf.lie_derivative(rot, lambda y, a: y @ y)(jnp.array([1.0, 2.0])))
    0.0
    """
    if isinstance(system, Map):
        raise TypeError(
            "a Map has no Lie derivative; for the change of q over one step use "
            "q(step(k, y, args), args) - q(y, args)"
        )
    if not isinstance(system, (ODE, SDE)):
        raise TypeError(f"system must be an ODE or SDE, got {type(system).__name__}")

    def Lq(y, args=None, t=0.0):
        args = system.args if args is None else args
        grad = jax.grad(q)(y, args)
        if isinstance(system, ODE):
            return grad @ system.drift(t, y, args)
        G = _diffusion_matrix(system, t, y, args)
        H = jax.hessian(q)(y, args)
        return grad @ _ito_drift(system, t, y, args) + 0.5 * jnp.sum(G * (H @ G))

    return Lq


@dataclasses.dataclass(frozen=True, eq=False)
class Equilibrium:
    r"""An equilibrium :math:`f(y^*) = 0` of a flow, or fixed point :math:`\text{step}(y^*) = y^*` of a map.

    Attributes
    ----------
    point : numpy.ndarray, shape (dim,)
    eigenvalues : numpy.ndarray, complex, shape (dim,)
        Of the Jacobian (flow) or the multipliers :math:`\mu` of the step (map), sorted by
        real part, descending.
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

    point: np.ndarray
    eigenvalues: np.ndarray
    zero_modes: int
    stable: bool
    kind: str
    residual: float


def _classify(system, point, jac_residual, residual):
    """Build the `Equilibrium` at ``point`` from the Jacobian of the residual there."""
    is_map = isinstance(system, Map)
    sigma = np.linalg.svd(jac_residual, compute_uv=False)
    scale = sigma[0] if sigma.size else 0.0
    zero_modes = int(np.sum(sigma <= ZERO_MODE_RTOL * scale))
    J = jac_residual + np.eye(len(point)) if is_map else jac_residual
    eig = np.linalg.eigvals(J).astype(complex)
    eig = eig[np.lexsort((-eig.imag, -eig.real))]
    # drop the zero_modes eigenvalues closest to 0 (flow) or multipliers closest to 1 (map)
    distance_to_kernel = np.abs(eig - 1.0) if is_map else np.abs(eig)
    remaining = eig[np.argsort(distance_to_kernel, kind="stable")[zero_modes:]]
    # offset < 0 contracts, > 0 expands: Re(lambda) for a flow, |mu| - 1 for a map
    offsets = np.abs(remaining) - 1.0 if is_map else remaining.real
    margin = MARGINAL_RTOL * scale
    contracting, expanding = offsets < -margin, offsets > margin
    if remaining.size == 0:
        kind = "degenerate"
    else:
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
        kind = f"degenerate {kind}" if zero_modes else kind
    stable = bool(remaining.size and contracting.all())
    return Equilibrium(point, eig, zero_modes, stable, kind, float(residual))


def _check_guesses(guesses, residual_fn, system):
    guesses = np.asarray(guesses, dtype=np.float64)
    if guesses.ndim == 1:
        guesses = guesses[None, :]
    if guesses.ndim != 2 or guesses.size == 0:
        raise ValueError(f"guesses must have shape (dim,) or (n, dim), got shape {guesses.shape}")
    if not np.all(np.isfinite(guesses)):
        raise ValueError("guesses must be finite; remove the NaN/inf entries")
    dim = guesses.shape[1]
    if system.names is not None and len(system.names) != dim:
        raise ValueError(
            f"guesses have dimension {dim} but the system names {len(system.names)} "
            f"coordinates {system.names}; pass guesses of shape (n, {len(system.names)})"
        )
    try:
        shape = np.shape(residual_fn(guesses[0]))
    except (TypeError, ValueError, IndexError) as err:
        raise ValueError(f"could not evaluate the vector field at guesses of dimension {dim}: {err}") from err
    if shape != (dim,):
        raise ValueError(
            f"guesses have dimension {dim} but the vector field returns shape {shape}; pass "
            f"guesses of shape (n, dim) with dim the system's state dimension"
        )
    return guesses


def equilibria(system, guesses, args=None, *, tol=RESIDUAL_TOL, dedupe=DEDUPE_RTOL):
    r"""Equilibria :math:`f(0, y^*) = 0` of a flow (the drift of an SDE), or fixed points
    :math:`\text{step}(0, y^*) = y^*` of a deterministic map, found from guesses.

    Each guess starts a Levenberg-Marquardt solve (``scipy.optimize.least_squares`` with the
    JAX Jacobian).  Equilibria of training dynamics usually form manifolds (the minima of
    :math:`(w_1 w_2 - 1)^2` are the hyperbola :math:`w_1 w_2 = 1`), so different guesses land
    on different points of one set; ``zero_modes`` tells the set's dimension.

    Parameters
    ----------
    system : ODE, SDE or Map
    guesses : array_like, shape (dim,) or (n, dim)
    args : pytree, optional
        Parameters; ``None`` uses ``system.args``.
    tol : float
        Keep a solution when its residual :math:`|f(y^*)|` is below ``tol``.
    dedupe : float
        Merge solutions :math:`p, q` with :math:`|p - q| \le` ``dedupe`` :math:`\max(1, |p|, |q|)`.

    Returns
    -------
    list of Equilibrium
        Sorted lexicographically by point.

    Example
    -------
    >>> import regflow as rf, jax, jax.numpy as jnp
    >>> loss = lambda w, a: (w[0] * w[1] - 1.0) ** 2
    >>> flow = rf.ODE(lambda t, w, a: -jax.grad(loss)(w, a))
    >>> [e.kind for e in rf.equilibria(flow, [[0.0, 0.0], [1.1, 0.8]])]
    ['saddle', 'degenerate sink']
    """
    f = _field(system)
    args = system.args if args is None else args
    if isinstance(system, Map):
        residual_fn = jax.jit(lambda y: f(0.0, y, args) - y)
    else:
        residual_fn = jax.jit(lambda y: f(0.0, y, args))
    jac_fn = jax.jit(jax.jacfwd(residual_fn))
    guesses = _check_guesses(guesses, residual_fn, system)

    found = []
    for guess in guesses:
        if not np.all(np.isfinite(residual_fn(guess))):
            continue
        try:
            sol = least_squares(
                lambda y: np.asarray(residual_fn(y)), guess, jac=lambda y: np.asarray(jac_fn(y)),
                method="lm", xtol=SOLVER_TOL, ftol=SOLVER_TOL, gtol=SOLVER_TOL, max_nfev=SOLVER_MAX_NFEV,
            )
        except (np.linalg.LinAlgError, ValueError):  # the solve wandered where the field is singular
            continue
        point = np.asarray(sol.x, dtype=np.float64)
        residual = float(np.linalg.norm(residual_fn(point)))
        if not (np.all(np.isfinite(point)) and residual < tol and np.all(np.isfinite(jac_fn(point)))):
            continue
        if any(np.linalg.norm(point - p) <= dedupe * max(1.0, np.linalg.norm(point), np.linalg.norm(p))
               for p, _ in found):
            continue
        found.append((point, residual))
    found.sort(key=lambda pr: tuple(pr[0]))
    return [_classify(system, p, np.asarray(jac_fn(p)), r) for p, r in found]
