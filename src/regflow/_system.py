"""Immutable declarations of dynamical systems: `ODE`, `SDE` and `Map`.

A system holds callables and parameters only, never solver state.  The one callable
convention of regflow:

* vector field / drift   ``f(t, y, args) -> (dim,)``
* diffusion              ``g(t, y, args) -> (dim,)`` (``noise="scalar"`` or ``"diagonal"``)
                         or ``(dim, m)`` (``noise="general"``)
* map step               ``step(k, y, args) -> (dim,)``, stochastic: ``step(k, y, args, key)``
* quantity (loss, invariant, observable)   ``q(y, args) -> scalar``

All callables are written with ``jax.numpy`` so derivatives come from autodiff.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable

NOISE_TYPES = ("scalar", "diagonal", "general")
CALCULI = ("ito", "stratonovich")


def _check_names(names):
    if names is None:
        return None
    if isinstance(names, str) or not all(isinstance(n, str) for n in names):
        raise TypeError(f"names must be a sequence of strings such as ('w1', 'w2'), got {names!r}")
    names = tuple(names)
    if len(set(names)) != len(names):
        raise ValueError(f"names must be distinct, got {names!r}")
    return names


def _check_callable(fn, argname):
    if not callable(fn):
        raise TypeError(f"{argname} must be a callable, got {type(fn).__name__}")
    return fn


@dataclasses.dataclass(frozen=True, eq=False)
class ODE:
    r"""An ordinary differential equation :math:`\dot y = f(t, y, \text{args})`.

    Example
    -------
    >>> import regflow as rf, jax.numpy as jnp
    >>> rot = rf.ODE(lambda t, y, a: jnp.array([-y[1], y[0]]), names=("x", "y"))
    """

    vector_field: Callable
    names: tuple[str, ...] | None = dataclasses.field(default=None, kw_only=True)
    args: Any = dataclasses.field(default=None, kw_only=True)

    def __post_init__(self):
        _check_callable(self.vector_field, "vector_field")
        object.__setattr__(self, "names", _check_names(self.names))

    def drift(self, t, y, args):
        return self.vector_field(t, y, args)

    def replace(self, **changes) -> "ODE":
        """A copy with some fields changed, e.g. ``ode.replace(args=new_args)``."""
        return dataclasses.replace(self, **changes)


@dataclasses.dataclass(frozen=True, eq=False)
class SDE:
    r"""A stochastic differential equation :math:`dy = b(t,y)\,dt + g(t,y)\,dB_t`.

    ``noise`` says what ``diffusion`` returns: ``"scalar"`` (shape ``(dim,)`` times one
    Brownian motion), ``"diagonal"`` (shape ``(dim,)`` times ``dim`` independent ones,
    elementwise) or ``"general"`` (shape ``(dim, m)`` times ``m`` of them).  ``calculus`` is
    ``"ito"`` (default) or ``"stratonovich"``.

    Example
    -------
    >>> import regflow as rf
    >>> ou = rf.SDE(lambda t, y, a: -y, lambda t, y, a: 0.5 + 0 * y, noise="diagonal")
    """

    drift: Callable
    diffusion: Callable
    noise: str = dataclasses.field(default="diagonal", kw_only=True)
    calculus: str = dataclasses.field(default="ito", kw_only=True)
    names: tuple[str, ...] | None = dataclasses.field(default=None, kw_only=True)
    args: Any = dataclasses.field(default=None, kw_only=True)

    def __post_init__(self):
        _check_callable(self.drift, "drift")
        _check_callable(self.diffusion, "diffusion")
        if self.noise not in NOISE_TYPES:
            raise ValueError(f"noise must be one of {NOISE_TYPES}, got {self.noise!r}")
        if self.calculus not in CALCULI:
            raise ValueError(f"calculus must be one of {CALCULI}, got {self.calculus!r}")
        object.__setattr__(self, "names", _check_names(self.names))

    def replace(self, **changes) -> "SDE":
        """A copy with some fields changed, e.g. ``sde.replace(args=new_args)``."""
        return dataclasses.replace(self, **changes)


@dataclasses.dataclass(frozen=True, eq=False)
class Map:
    r"""A discrete map :math:`y_{k+1} = \text{step}(k, y_k, \text{args})`.

    ``dt`` is the flow time one step stands for (usually the learning rate): step ``k`` is
    compared with flow time ``k * dt``.  With ``stochastic=True`` the step also receives a
    JAX PRNG key, ``step(k, y, args, key)``, derived from the run's seed.

    Example
    -------
    >>> import regflow as rf
    >>> halve = rf.Map(lambda k, y, a: 0.5 * y, dt=1.0)
    """

    step: Callable
    dt: float = dataclasses.field(kw_only=True)
    stochastic: bool = dataclasses.field(default=False, kw_only=True)
    names: tuple[str, ...] | None = dataclasses.field(default=None, kw_only=True)
    args: Any = dataclasses.field(default=None, kw_only=True)

    def __post_init__(self):
        _check_callable(self.step, "step")
        try:
            dt = float(self.dt)
        except (TypeError, ValueError):
            raise TypeError(f"dt must be a positive number, got {self.dt!r}") from None
        if not dt > 0 or dt == float("inf"):
            raise ValueError(f"dt must be a positive finite number (the flow time of one step), got {self.dt!r}")
        object.__setattr__(self, "dt", dt)
        object.__setattr__(self, "stochastic", bool(self.stochastic))
        object.__setattr__(self, "names", _check_names(self.names))

    def replace(self, **changes) -> "Map":
        """A copy with some fields changed, e.g. ``gd.replace(args=new_args)``."""
        return dataclasses.replace(self, **changes)


System = ODE | SDE | Map


def describe(system) -> str:
    """A short human-readable name of a system's callables, kept in saved metadata."""
    fn = {ODE: "vector_field", SDE: "drift", Map: "step"}[type(system)]
    call = getattr(system, fn)
    label = getattr(call, "__qualname__", type(call).__name__)
    return f"{type(system).__name__}({getattr(call, '__module__', '?')}.{label})"
