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

from . import _validate

NOISE_TYPES = ("scalar", "diagonal", "general")
CALCULI = ("ito", "stratonovich")


def _check_common(system):
    """Names and args, checked at construction (and on every `replace`)."""
    object.__setattr__(system, "names", _validate.names(system.names))
    _validate.args_pytree(system.args)


def _choice(value, name, choices):
    if not isinstance(value, str) or value not in choices:
        raise ValueError(f"{name} must be one of {choices}, got {value!r}")
    return value


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
        _validate.check_callable(self.vector_field, "vector_field", _validate.FIELD)
        _check_common(self)

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
        _validate.check_callable(self.drift, "drift", _validate.FIELD)
        _validate.check_callable(self.diffusion, "diffusion", _validate.DIFFUSION)
        _choice(self.noise, "noise", NOISE_TYPES)
        _choice(self.calculus, "calculus", CALCULI)
        _check_common(self)

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
        stochastic = _validate.flag(self.stochastic, "stochastic")
        hint = ("; a stochastic map's step also takes the key: pass stochastic=False for step(k, y, args)" if stochastic
                else "; a step that takes a key is a stochastic map: pass stochastic=True")
        _validate.check_callable(self.step, "step", _validate.STOCHASTIC_STEP if stochastic else _validate.STEP, hint)
        dt = _validate.real_number(self.dt, "dt", "0.01")
        if not 0 < dt < float("inf"):
            raise ValueError(f"dt must be a positive finite number (the flow time of one step), got {self.dt!r}")
        object.__setattr__(self, "dt", dt)
        object.__setattr__(self, "stochastic", stochastic)
        _check_common(self)

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
