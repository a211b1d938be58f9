r"""One compiled program per system *structure*: the numbers inside a system's callables
travel as inputs.

A system's callables may be plain functions or pytrees of parameters and functions (such as
the fields `gradient_flow` builds, which hold ``lr`` and ``weight_decay`` as array leaves).
`split` separates their array and float leaves (*dynamic*: traced inputs of a compiled program) from
the rest (*static*: functions, ints, the pytree structure; hashable, the cache key).
`bind` rebuilds callables that take ``params = (dynamic, args)`` where they took ``args``,
cached on the static part, so that every backend's own program cache (keyed on callables)
hits for a new ``lr`` just as it does for new ``args``: a sweep over ``lr`` compiles once.
"""

from __future__ import annotations

import functools

import jax
import numpy as np

from ._system import ODE, SDE, Map


def _dynamic(leaf) -> bool:
    if isinstance(leaf, bool):
        return False
    return isinstance(leaf, (float, jax.Array, np.ndarray, np.generic))


def split(tree):
    """``(dynamic, static)`` of a pytree of callables and parameters (see the module doc)."""
    leaves, treedef = jax.tree_util.tree_flatten(tree)
    mask = tuple(_dynamic(leaf) for leaf in leaves)
    dynamic = tuple(np.float64(leaf) if isinstance(leaf, float) else leaf for leaf, m in zip(leaves, mask) if m)
    static = (treedef, mask, tuple(None if m else leaf for leaf, m in zip(leaves, mask)))
    return dynamic, static


def merge(dynamic, static):
    """Inverse of `split`."""
    treedef, mask, statics = static
    it = iter(dynamic)
    return jax.tree_util.tree_unflatten(treedef, [next(it) if m else s for m, s in zip(mask, statics)])


@functools.lru_cache(maxsize=512)
def bind(static, index):
    """Callable ``index`` of the split tuple, taking ``params = (dynamic, args)`` as its third
    argument: ``call(t_or_k, y, params, *rest) = fns[index](t_or_k, y, args, *rest)``."""

    def call(x, y, params, *rest):
        return merge(params[0], static)[index](x, y, params[1], *rest)

    return call


def compile_system(system, args):
    """The system with bound callables and the matching ``params``: what backends receive
    (on the device once, so a solver calling the field from Python does not convert them per call)."""
    system, params = _compile_system(system, args)
    return system, jax.tree_util.tree_map(
        lambda x: jax.device_put(x) if isinstance(x, (np.ndarray, np.generic)) else x, params)


def _compile_system(system, args):
    if isinstance(system, ODE):
        dynamic, static = split((system.vector_field,))
        return system.replace(vector_field=bind(static, 0), args=None), (dynamic, args)
    if isinstance(system, SDE):
        dynamic, static = split((system.drift, system.diffusion))
        return system.replace(drift=bind(static, 0), diffusion=bind(static, 1), args=None), (dynamic, args)
    if isinstance(system, Map):
        dynamic, static = split((system.step,))
        return system.replace(step=bind(static, 0), args=None), (dynamic, args)
    raise TypeError(f"system must be an rf.ODE, rf.SDE or rf.Map, got {type(system).__name__}")


@functools.lru_cache(maxsize=512)
def bind_quantity(static):
    """Quantity 0 of the split tuple as ``q(y, params)`` with ``params = (dynamic, args)``."""

    def call(y, params):
        return merge(params[0], static)[0](y, params[1])

    return call
