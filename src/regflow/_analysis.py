r"""Local analysis of systems: Jacobians, Hessians and Lie derivatives (equilibria: `regflow._equilibria`).

Everything here uses only the public interface of a system (``drift``, ``diffusion``,
``noise``, ``calculus``, ``step``, ``stochastic``, ``args``) and gets its derivatives from
JAX autodiff, so it works for any system declared with ``jax.numpy``.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax.flatten_util import ravel_pytree

from . import _tree, _validate
from ._compiled import merge, split
from ._system import ODE, SDE, Map

#: Largest dense matrix (entries) `jacobian` and `hessian` build: 2**28 float64 = 2 GiB.
DENSE_LIMIT = 2**28


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
        return _MapField(system.step)
    raise TypeError(f"system must be an ODE, SDE or Map, got {type(system).__name__}")


@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class _MapField:
    """``(t, y, args) -> step(0, y, args)``: a map's step as a field (a pytree, so it caches)."""

    step: Any

    def __call__(self, t, y, args):
        return self.step(0, y, args)


def _state(y, argname="y"):
    """``(structure, flat)`` of one state (an array or a pytree of arrays)."""
    return _tree.structure_of(y, argname)


def _check_dense(dim, what):
    if dim * dim > DENSE_LIMIT:
        raise ValueError(f"{what} of a state of dimension {dim} is a dense {dim} x {dim} matrix "
                         f"({dim * dim * 8 / 2**30:.1f} GiB); use the matrix-free tools instead: rf.hvp, "
                         f"rf.hessian_eigs, rf.sharpness, rf.jacobian_eigs")


@functools.lru_cache(maxsize=256)
def _jacobian_program(static, structure):
    """Jitted flat Jacobian of field 0 of ``static`` (see `regflow._compiled`)."""

    def jac(t, y, params):
        f = merge(params[0], static)[0]
        flat = lambda x: _flat_out(structure, f(t, _as_state(structure, x), params[1]))  # noqa: E731
        return jax.jacfwd(flat)(y)

    return jax.jit(jac)


def _as_state(structure, flat):
    return flat if structure.trivial else structure.unravel(flat)


def _flat_out(structure, tree):
    return tree if structure.trivial else structure.ravel(tree)


def jacobian(system, y, t=0.0, args=None):
    r"""Jacobian :math:`J_{ij} = \partial f_i / \partial y_j` of a system at a state.

    :math:`f` is the vector field of an ODE, the drift :math:`b` of an SDE, or the step
    :math:`y \mapsto \text{step}(0, y)` of a deterministic Map (so for gradient descent
    :math:`J = I - \eta \nabla^2 L`).  Compiled once per system and state structure.

    Parameters
    ----------
    system : ODE, SDE or Map
    y : array_like (dim,) or a pytree state (then :math:`J` is in its flat view, the order
        of `Trajectory.flat`)
    t : float
        Time at which the field is evaluated (ignored for a Map, which uses ``k = 0``).
    args : pytree, optional
        Parameters; ``None`` uses ``system.args``.

    Returns
    -------
    numpy.ndarray, shape (dim, dim), float64.  Above `DENSE_LIMIT` entries use the
    matrix-free `regflow.jacobian_eigs`.

    Example
    -------
    >>> import regflow as rf, jax.numpy as jnp
    >>> field = rf.ODE(lambda t, y, a: jnp.array([y[0] - 2 * y[1], y[0] * y[1]]))
    >>> rf.jacobian(field, [1.0, 3.0])
    array([[ 1., -2.],
           [ 3.,  1.]])
    """
    f = _field(system)
    args = _validate.finite_args(system.args if args is None else args)
    t = _validate.finite_number(t, "t", "0.0")
    structure, flat = _state(y)
    _fits(lambda: _validate.check_outputs(system, structure, t, args), "y")
    _check_dense(structure.size, "the Jacobian")
    dynamic, static = split((f,))
    return np.asarray(_jacobian_program(static, structure)(t, jnp.asarray(flat), (dynamic, args)), dtype=np.float64)


@functools.lru_cache(maxsize=256)
def _hessian_program(static, structure):
    def hess(w, params):
        loss = merge(params[0], static)[0]
        return jax.hessian(lambda x: loss(_as_state(structure, x), params[1]))(w)

    return jax.jit(hess)


def hessian(loss, w, args=None):
    r"""Hessian :math:`H_{ij} = \partial^2 L / \partial w_i \partial w_j` of ``loss(w, args)``,
    in the flat view of a pytree ``w``.  Compiled once per loss and structure; above
    `DENSE_LIMIT` entries use the matrix-free `regflow.hvp`, `regflow.hessian_eigs`.

    Example
    -------
    >>> import regflow as rf, jax.numpy as jnp
    >>> rf.hessian(lambda w, a: (jnp.prod(w) - 1.0) ** 2, [2.0, 0.5])   # eigenvalues 0, 8.5
    array([[0.5, 2. ],
           [2. , 8. ]])
    """
    _validate.check_callable(loss, "loss", _validate.LOSS)
    args = _validate.finite_args(args)
    structure, flat = _state(w, "w")
    _check_dense(structure.size, "the Hessian")
    value = _validate.trace(lambda x: loss(x, args), structure.abstract(), f"loss {_validate.LOSS}", structure)
    _check_scalar(value)
    dynamic, static = split((loss,))
    return np.asarray(_hessian_program(static, structure)(jnp.asarray(flat), (dynamic, args)), dtype=np.float64)


def _check_scalar(value):
    leaves = jax.tree_util.tree_leaves(value)
    if value is None or not leaves:
        raise TypeError("loss(w, args) returned None; it must return a scalar (is a `return` missing?)")
    if len(leaves) > 1 or jnp.shape(leaves[0]) != ():
        shapes = [tuple(jnp.shape(leaf)) for leaf in leaves]
        raise ValueError(f"loss must return a scalar, got shape {shapes[0] if len(shapes) == 1 else shapes}; the Hessian is "
                         f"of a scalar function: for a vector-valued one use rf.jacobian (of a system whose field it "
                         f"is), or sum or average it, e.g. jnp.mean")
    if np.dtype(leaves[0].dtype).kind != "f":
        raise TypeError(f"loss must return a real float scalar, got {np.dtype(leaves[0].dtype)}; differentiate a "
                        f"float loss (e.g. jnp.asarray(value, jnp.float64))")


def _diffusion_matrix(system, t, y, args):
    """The diffusion as a ``(dim, m)`` matrix :math:`G` whatever ``system.noise`` is (vector states)."""
    g = system.diffusion(t, y, args)
    if system.noise == "scalar":
        return g[:, None]
    if system.noise == "diagonal":
        return jnp.diag(g)
    return g


def _ito_drift(system, t, y, args):
    r"""Drift in Ito form: :math:`b + \tfrac12 \sum_j (\partial G_{\cdot j}/\partial y) G_{\cdot j}`
    for a Stratonovich SDE, :math:`b` for an Ito one (vector states)."""
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

    States may be pytrees and ``q`` may return an array or a pytree (e.g. the balancedness
    matrix :math:`W_2^\top W_2 - W_1 W_1^\top`): :math:`\mathcal L q` then has ``q``'s shape,
    entry by entry (a directional derivative, :math:`\tfrac{d}{d\epsilon} q(y + \epsilon f)`).

    Returns
    -------
    callable
        ``Lq(y, args=None, t=0.0)`` (``args=None`` uses ``system.args``); pure JAX, so it can
        be jitted and vmapped.

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
    _validate.check_callable(q, "q", _validate.QUANTITY)

    def Lq(y, args=None, t=0.0):
        args = system.args if args is None else args
        y = _check_point(system, y, args, t)
        if isinstance(system, ODE):
            return jax.jvp(lambda x: q(x, args), (y,), (system.drift(t, y, args),))[1]
        flat, unravel = ravel_pytree(y)
        sde = _FlatSDE(system, unravel)
        qf = lambda x: q(unravel(x), args)  # noqa: E731
        G = _diffusion_matrix(sde, t, flat, args)
        first = jax.jvp(qf, (flat,), (_ito_drift(sde, t, flat, args),))[1]
        second = jax.vmap(lambda g: jax.jvp(lambda x: jax.jvp(qf, (x,), (g,))[1], (flat,), (g,))[1])(G.T)
        return jax.tree_util.tree_map(lambda a, b: a + 0.5 * jnp.sum(b, axis=0), first, second)

    return Lq


def _check_point(system, y, args, t):
    """``y`` (a pytree, maybe traced) fits the system: the drift returns its structure and
    shapes; concrete points must be finite.  Shapes are static, so this costs nothing once
    ``Lq`` is jitted."""
    if _tree.is_number_list(y):
        y = jnp.asarray(y, jnp.float64)
    leaves = jax.tree_util.tree_leaves(y)
    if not leaves:
        raise ValueError("y is an empty pytree; pass the state at which to evaluate the Lie derivative")
    for leaf in leaves:
        if not isinstance(leaf, (jax.Array, np.ndarray, np.generic, int, float)) or isinstance(leaf, bool):
            raise TypeError(f"y must hold real numbers, got {type(leaf).__name__} {repr(leaf)[:30]}; pass a real state")
        kind = np.dtype(jnp.result_type(leaf)).kind
        if kind not in "iuf":
            raise TypeError(f"y must hold real numbers, got {jnp.result_type(leaf)}; pass a real state")
        if not isinstance(leaf, jax.core.Tracer) and not np.all(np.isfinite(np.asarray(leaf))):
            raise ValueError("y must be finite; it contains NaN or inf")
    if not isinstance(t, jax.core.Tracer):
        _validate.finite_number(t, "t", "0.0")
    treedef = jax.tree_util.tree_structure(y)
    structure = _tree.Structure(treedef, tuple(tuple(jnp.shape(x)) for x in leaves),
                                tuple(_tree.path_name(p) for p, _ in jax.tree_util.tree_flatten_with_path(y)[0]))
    shapes = jax.eval_shape(lambda x: system.drift(t, x, args), y)
    name = "vector_field" if isinstance(system, ODE) else "drift"
    _fits(lambda: _validate.check_returned(shapes, structure, name, f"the {name} {_validate.FIELD}"), "y")
    return y


def _fits(check, argname):
    """Run an output check of the system at a point ``argname``, saying so when it fails on shapes."""
    try:
        check()
    except ValueError as err:
        raise ValueError(f"{argname} does not fit the system: {err}; pass {argname} of the system's state shape") from None


@dataclasses.dataclass(frozen=True)
class _FlatSDE:
    """An SDE's drift and diffusion on the flat view of its (pytree) state."""

    system: Any
    unravel: Any

    @property
    def noise(self):
        return self.system.noise

    @property
    def calculus(self):
        return self.system.calculus

    def drift(self, t, y, args):
        return ravel_pytree(self.system.drift(t, self.unravel(y), args))[0]

    def diffusion(self, t, y, args):
        g = self.system.diffusion(t, self.unravel(y), args)
        if self.system.noise != "general":
            return ravel_pytree(g)[0]
        leaves = jax.tree_util.tree_leaves(g)
        return jnp.concatenate([jnp.reshape(leaf, (-1, leaf.shape[-1])) for leaf in leaves], axis=0)
