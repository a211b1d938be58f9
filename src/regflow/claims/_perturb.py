r"""Perturbations: wrong versions of a method's systems, for falsification.

A claim that still passes when the system it describes is changed cannot tell the right system
from a wrong one.  `check(..., falsify=True)` reruns every claim on perturbed methods: those the
entry declares (``Method.perturbations``: a wrong rate, a sign, a noise scale, another
learning-rate convention) and the generic ones here, which apply to any system:

* ``field x 1.5``: :math:`f \to 1.5 f` (an SDE's drift; a map's update :math:`y + 1.5\,(s(y) - y)`);
* ``generic field added``: :math:`f \to f + \epsilon\,(A y + b)` with a fixed random
  :math:`A, b` and :math:`\epsilon` a tenth of the field's size at the sample points (a map
  adds :math:`dt\,\epsilon\,(A y + b)` to its step);
* ``noise x 2`` (SDEs, stochastic maps are not reached): :math:`G \to 2 G`.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable, Mapping

import jax
import jax.numpy as jnp
import numpy as np
from jax.flatten_util import ravel_pytree

from .._catalogue import Method
from .._system import ODE, SDE, Map
from .._tree import pytree_dataclass as _pytree

#: Factor of the ``field x`` perturbation.
FIELD_FACTOR = 1.5
#: Size of the added generic field relative to the field's RMS size at the sample points.
TILT = 0.1
#: Factor of the ``noise x`` perturbation.
NOISE_FACTOR = 2.0
#: Seed of the generic field's random matrix.
TILT_SEED = 20240601


@dataclasses.dataclass(frozen=True)
class Perturbation:
    """A named wrong version of a method: ``change`` maps `Method` fields (``flow``, ``map``,
    ``map_at``, ...) to replacements, or is a function ``method -> method``."""

    name: str
    change: Mapping[str, Any] | Callable[[Method], Method]

    def apply(self, method: Method) -> Method:
        if callable(self.change):
            return self.change(method)
        return dataclasses.replace(method, **dict(self.change))


@_pytree
class _Scaled:
    """``factor * f(t, y, args)``."""

    f: Any
    factor: Any

    def __call__(self, t, y, args):
        return jax.tree_util.tree_map(lambda v: self.factor * v, self.f(t, y, args))


@_pytree
class _Tilted:
    """``f(t, y, args) + eps (A y + b)`` on the flat view of the state."""

    f: Any
    A: Any
    b: Any
    eps: Any

    def __call__(self, t, y, args):
        flat, unravel = ravel_pytree(y)
        extra = unravel(self.eps * (self.A @ flat + self.b))
        return jax.tree_util.tree_map(jnp.add, self.f(t, y, args), extra)


@_pytree
class _StepScaled:
    """``y + factor (step(k, y, args[, key]) - y)``."""

    step: Any
    factor: Any

    def __call__(self, k, y, args, *key):
        new = self.step(k, y, args, *key)
        return jax.tree_util.tree_map(lambda a, b: a + self.factor * (b - a), y, new)


@_pytree
class _StepTilted:
    """``step(k, y, args[, key]) + dt eps (A y + b)``."""

    step: Any
    A: Any
    b: Any
    eps: Any
    dt: Any

    def __call__(self, k, y, args, *key):
        flat, unravel = ravel_pytree(y)
        extra = unravel(self.dt * self.eps * (self.A @ flat + self.b))
        return jax.tree_util.tree_map(jnp.add, self.step(k, y, args, *key), extra)


def _flow_with(system, drift):
    if isinstance(system, ODE):
        return ODE(drift, names=system.names, args=system.args)
    return dataclasses.replace(system, drift=drift)


def _field_of(system):
    return system.vector_field if isinstance(system, ODE) else system.drift


def _map_with(map_, step):
    return Map(step, dt=map_.dt, stochastic=map_.stochastic, names=map_.names, args=map_.args)


def _tilt_data(method: Method):
    """A fixed random affine field ``(A, b)`` of the state's size and its scale ``eps``."""
    point = method.start(0)
    flat = ravel_pytree(point)[0]
    rng = np.random.default_rng(TILT_SEED)
    dim = flat.size
    A = jnp.asarray(rng.normal(size=(dim, dim)) / np.sqrt(dim))
    b = jnp.asarray(rng.normal(size=dim))
    points = method.points
    field, args = _field_of(method.flow), method.flow.args
    sizes = jax.vmap(lambda y: jnp.linalg.norm(ravel_pytree(field(0.0, y, args))[0]))(
        jax.tree_util.tree_map(jnp.asarray, points))
    extra = jax.vmap(lambda y: jnp.linalg.norm(A @ ravel_pytree(y)[0] + b))(jax.tree_util.tree_map(jnp.asarray, points))
    size = float(jnp.sqrt(jnp.mean(sizes**2)))
    eps = TILT * (size / float(jnp.sqrt(jnp.mean(extra**2))) if size > 0 else 1.0)
    return A, b, eps


def _scaled(method: Method) -> Method:
    changes = {"flow": _flow_with(method.flow, _Scaled(_field_of(method.flow), FIELD_FACTOR))}
    if method.map is not None:
        changes["map"] = _map_with(method.map, _StepScaled(method.map.step, FIELD_FACTOR))
    if method.map_at is not None:
        map_at = method.map_at
        changes["map_at"] = lambda h: _map_with(map_at(h), _StepScaled(map_at(h).step, FIELD_FACTOR))
    return dataclasses.replace(method, **changes)


def _tilted(method: Method) -> Method:
    A, b, eps = _tilt_data(method)
    changes = {"flow": _flow_with(method.flow, _Tilted(_field_of(method.flow), A, b, eps))}
    if method.map is not None:
        changes["map"] = _map_with(method.map, _StepTilted(method.map.step, A, b, eps, method.map.dt))
    if method.map_at is not None:
        map_at = method.map_at

        def tilted_at(h):
            m = map_at(h)
            return _map_with(m, _StepTilted(m.step, A, b, eps, m.dt))

        changes["map_at"] = tilted_at
    return dataclasses.replace(method, **changes)


def _noisier(method: Method) -> Method:
    flow = method.flow
    return dataclasses.replace(method, flow=dataclasses.replace(flow, diffusion=_Scaled(flow.diffusion, NOISE_FACTOR)))


def perturbations(method: Method) -> list[Perturbation]:
    """The method's declared perturbations, then the generic ones that apply to it."""
    generic = [Perturbation(f"field x {FIELD_FACTOR:g}", _scaled), Perturbation("generic field added", _tilted)]
    if isinstance(method.flow, SDE):
        generic.append(Perturbation(f"noise x {NOISE_FACTOR:g}", _noisier))
    return [*method.perturbations, *generic]
