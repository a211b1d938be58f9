r"""States as pytrees: the `Structure` of a state and its flat view.

A state may be any pytree of float64 arrays (a vector, a matrix, a dict or list of weight
matrices, nested parameters), as in diffrax.  Solvers see one flat vector: the leaves
raveled in the order of ``jax.tree_util.tree_leaves`` and concatenated.  `Structure` holds
what it takes to go back and forth, and names every leaf by its pytree path (``"W1"``,
``"layers.0.w"``) and every coordinate by leaf and index (``"W1[0,2]"``).

A plain 1-D array is its own flat view (`Structure.trivial`): regflow then passes the
user's callables through untouched.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np


def _key_name(key) -> str:
    for attr in ("key", "idx", "name"):
        if hasattr(key, attr):
            return str(getattr(key, attr))
    return str(key)


def path_name(path) -> str:
    """``"layers.0.w"`` for the key path of a leaf (``""`` for the root)."""
    return ".".join(_key_name(k) for k in path)


@dataclasses.dataclass(frozen=True)
class Structure:
    """The pytree structure and leaf shapes of one state (hashable: a cache key)."""

    treedef: Any
    shapes: tuple[tuple[int, ...], ...]
    leaf_names: tuple[str, ...]

    @property
    def sizes(self) -> tuple[int, ...]:
        return tuple(math.prod(s) for s in self.shapes)

    @property
    def size(self) -> int:
        """Dimension of the flat view."""
        return sum(self.sizes)

    @property
    def trivial(self) -> bool:
        """The state is one 1-D array: it is its own flat view."""
        return self.treedef.num_leaves == 1 and self.treedef.num_nodes == 1 and len(self.shapes[0]) == 1

    def ravel(self, tree):
        """Flat view ``(..., dim)`` of a state whose leaves carry leading axes ``...``
        (the same ones on every leaf); works on traced values."""
        leaves = self.treedef.flatten_up_to(tree)
        lead = jnp.shape(leaves[0])[: jnp.ndim(leaves[0]) - len(self.shapes[0])]
        return jnp.concatenate([jnp.reshape(leaf, (*lead, -1)) for leaf in leaves], axis=-1)

    def unravel(self, flat):
        """The state of a flat view ``(..., dim)``; leading axes are kept on every leaf.
        numpy in, numpy out; JAX in, JAX out."""
        lead = flat.shape[:-1]
        leaves, start = [], 0
        for shape, size in zip(self.shapes, self.sizes):
            leaves.append(flat[..., start:start + size].reshape(*lead, *shape))
            start += size
        return jax.tree_util.tree_unflatten(self.treedef, leaves)

    def abstract(self):
        """The state as a pytree of ``jax.ShapeDtypeStruct`` (float64), for ``jax.eval_shape``."""
        return jax.tree_util.tree_unflatten(self.treedef, [jax.ShapeDtypeStruct(s, jnp.float64) for s in self.shapes])

    def coordinate_names(self) -> tuple[str, ...]:
        """One name per flat coordinate: ``"W1[0,2]"``, or the leaf name for a scalar leaf."""
        out = []
        for name, shape in zip(self.leaf_names, self.shapes):
            if not shape:
                out.append(name or "y")
                continue
            for index in np.ndindex(*shape):
                out.append(f"{name}[{','.join(map(str, index))}]")
        return tuple(out)

    def describe(self) -> str:
        """``"{W1: 5x5, W2: 5x5}"``: the leaves and their shapes, for messages and reprs."""
        if self.trivial:
            return f"({self.shapes[0][0]},)"
        parts = [f"{n or 'y'}: {'x'.join(map(str, s)) or 'scalar'}" for n, s in zip(self.leaf_names, self.shapes)]
        return "{" + ", ".join(parts) + "}"


def flat_value(value):
    """A scalar, array or pytree value as one flat vector (leaves raveled in pytree order)."""
    return jnp.concatenate([jnp.ravel(leaf) for leaf in jax.tree_util.tree_leaves(value)])


def skeleton(structure: Structure):
    """A JSON form of the state's containers (dicts, lists, tuples, None; leaves as their
    index), or ``None`` if another container type is in it."""

    def node(x):
        if isinstance(x, int):
            return x
        if isinstance(x, dict):
            return {"dict": [[str(k), node(v)] for k, v in x.items()]}
        if isinstance(x, (list, tuple)) and type(x) in (list, tuple):
            return {type(x).__name__: [node(v) for v in x]}
        if x is None:
            return {"none": 0}
        raise TypeError

    tree = jax.tree_util.tree_unflatten(structure.treedef, list(range(structure.treedef.num_leaves)))
    try:
        return node(tree)
    except TypeError:
        return None


def treedef_of(skeleton, leaf_names):
    """The treedef of a `skeleton`; without one, a dict keyed by leaf path."""
    if skeleton is None:
        return jax.tree_util.tree_structure({name: 0 for name in leaf_names})

    def build(x):
        if isinstance(x, int):
            return 0
        kind, value = next(iter(x.items()))
        if kind == "dict":
            return {k: build(v) for k, v in value}
        if kind == "none":
            return None
        return {"list": list, "tuple": tuple}[kind](build(v) for v in value)

    return jax.tree_util.tree_structure(build(skeleton))


def _leaf_array(leaf, name, argname):
    try:
        array = np.asarray(leaf)
    except (TypeError, ValueError):
        raise TypeError(f"{argname}{_at(name)} must be an array of numbers, got {type(leaf).__name__}") from None
    if array.dtype.kind in "USO":
        raise TypeError(f"{argname}{_at(name)} holds {type(leaf).__name__} {repr(leaf)[:40]}, not numbers; regflow "
                        f"states are real float64 arrays: pass numbers, e.g. {argname}=[1.0, 2.0] (convert text with "
                        f"float(...))")
    if array.dtype.kind not in "biuf" or array.dtype == bool:
        what = "complex" if array.dtype.kind == "c" else str(array.dtype)
        raise TypeError(f"{argname}{_at(name)} has dtype {what}; regflow states are real float64 arrays: "
                        f"pass real numbers (e.g. jnp.real(...) or np.asarray(..., float))")
    return array


def _at(name):
    return f" (leaf {name!r})" if name else ""


def is_number_list(y) -> bool:
    """A (nested) list or tuple of Python numbers, e.g. ``[0.3, 1.6]``: read as an array, as
    numpy does.  A list of arrays (``[W1, W2]``) stays a pytree."""
    if not isinstance(y, (list, tuple)) or not y:
        return False
    return all(is_number_list(v) or (isinstance(v, (int, float)) and not isinstance(v, bool)) for v in y)


def structure_of(y, argname="y0", batched=False):
    """The `Structure` of a state and its flat view, validated.

    A nested list of Python numbers (``[0.3, 1.6]``) is an array, as for ``numpy.asarray``.

    ``batched=True``: every leaf carries a leading path axis (one start per path); returns
    the flat views ``(paths, dim)``.  Else one state; returns ``(dim,)``.  Leaves must be real
    numbers of one floating dtype (ints and Python numbers are taken as float64) and finite.
    """
    if is_number_list(y):
        try:
            y = np.asarray(y, dtype=np.float64)
        except ValueError:
            raise ValueError(f"{argname} is a ragged nested list (rows of different lengths: {repr(y)[:60]}); pass "
                             f"rows of one length, e.g. [[1.0, 2.0], [3.0, 4.0]], or a pytree of arrays") from None
    flat_leaves, treedef = jax.tree_util.tree_flatten_with_path(y)
    if not flat_leaves:
        raise ValueError(f"{argname} is an empty pytree; pass an array or a pytree of arrays (e.g. a dict of weight matrices)")
    names = tuple(path_name(p) for p, _ in flat_leaves)
    arrays = [_leaf_array(leaf, name, argname) for name, (_, leaf) in zip(names, flat_leaves)]
    floats = {a.dtype for a in arrays if a.dtype.kind == "f"}
    if len(floats) > 1:
        kinds = ", ".join(f"{n or 'y'}: {a.dtype}" for n, a in zip(names, arrays))
        raise TypeError(f"{argname} has leaves of mixed dtype ({kinds}); cast every leaf to one dtype, e.g. "
                        f"jax.tree_util.tree_map(lambda x: jnp.asarray(x, jnp.float64), {argname})")
    arrays = [a.astype(np.float64) for a in arrays]
    if batched:
        if any(a.ndim == 0 for a in arrays):
            raise ValueError(f"batched {argname} needs a leading path axis on every leaf; a leaf is a scalar")
        paths = {a.shape[0] for a in arrays}
        if len(paths) != 1:
            raise ValueError(f"batched {argname} must have the same leading (path) axis on every leaf, got "
                             f"lengths {sorted(paths)}")
        shapes = tuple(a.shape[1:] for a in arrays)
    else:
        shapes = tuple(a.shape for a in arrays)
    structure = Structure(treedef, shapes, names)
    if structure.size == 0:
        raise ValueError(f"{argname} has no entries (shape {structure.describe()}); pass a non-empty state")
    lead = (arrays[0].shape[0],) if batched else ()
    flat = np.concatenate([a.reshape(*lead, -1) for a in arrays], axis=-1)
    for name, a in zip(names, arrays):
        if not np.all(np.isfinite(a)):
            raise ValueError(f"{argname}{_at(name)} must be finite; it contains NaN or inf")
    return structure, flat


def check_like(structure: Structure, tree, what: str):
    """Raise unless ``tree`` (values or ``jax.ShapeDtypeStruct``) has the state's structure
    and leaf shapes."""
    got = jax.tree_util.tree_structure(tree)
    if got != structure.treedef:
        raise ValueError(f"the {what} returns a pytree of structure {got} for a state of structure "
                         f"{structure.treedef}; it must return the same structure as the state")
    for name, want, leaf in zip(structure.leaf_names, structure.shapes, jax.tree_util.tree_leaves(tree)):
        shape = tuple(jnp.shape(leaf))
        if shape != want:
            leaf_text = f" leaf {name!r}" if name else ""
            raise ValueError(f"the {what} returns shape {shape} for a state{leaf_text} of shape {want}; "
                             f"it must return {want}")


# ----------------------------------------------------------------------------- flat callables


def _register(cls):
    return jax.tree_util.register_dataclass(cls, data_fields=["fn"], meta_fields=["structure"])


@_register
@dataclasses.dataclass(frozen=True)
class FlatField:
    """``f(t, y, args)`` of pytree states as a function of flat states (also maps' steps)."""

    fn: Any
    structure: Structure

    def __call__(self, t, y, args, *key):
        return self.structure.ravel(self.fn(t, self.structure.unravel(y), args, *key))


@_register
@dataclasses.dataclass(frozen=True)
class FlatDiffusion:
    """A ``"general"`` diffusion of pytree states (each leaf ``shape + (m,)``) as ``(dim, m)``."""

    fn: Any
    structure: Structure

    def __call__(self, t, y, args):
        g = self.fn(t, self.structure.unravel(y), args)
        leaves = self.structure.treedef.flatten_up_to(g)
        return jnp.concatenate([jnp.reshape(leaf, (-1, jnp.shape(leaf)[-1])) for leaf in leaves], axis=0)


@_register
@dataclasses.dataclass(frozen=True)
class FlatQuantity:
    """``q(y, args)`` of pytree states as a function of flat states."""

    fn: Any
    structure: Structure

    def __call__(self, y, args):
        return self.fn(self.structure.unravel(y), args)


def pytree_dataclass(cls):
    """``cls`` as a frozen dataclass registered as a JAX pytree whose fields are all children.

    A field, step or loss written as such a class (its parameters as fields, e.g. a learning rate
    or a wrapped callable) is traced, not baked in: a new value reuses the compiled program,
    where a closure over it would compile again.

    >>> import jax.numpy as jnp
    >>> @pytree_dataclass
    ... class Scaled:
    ...     factor: float
    ...     def __call__(self, t, y, args):
    ...         return -self.factor * y
    >>> Scaled(2.0)(0.0, jnp.ones(2), None)
    Array([-2., -2.], dtype=float64)
    """
    cls = dataclasses.dataclass(frozen=True)(cls)
    return jax.tree_util.register_dataclass(cls, data_fields=[f.name for f in dataclasses.fields(cls)],
                                            meta_fields=[])
