r"""`Context`: one check of one method.  It owns the runs its claims measure (one flow run and
one map run per protocol, made on first use and shared), and the pointwise tools claims use."""

from __future__ import annotations

from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np
from jax.flatten_util import ravel_pytree

from .._catalogue import Method, batch_of, repeat_starts
from .._integrate import iterate
from .._system import SDE

#: Saved times of a flow trajectory used by a claim.
CLAIM_SAVES = 201
#: Map iterations when neither the claim nor the method says.
DEFAULT_STEPS = 1000
TINY = 1e-300


class Context:
    """The runs of one check of ``method`` (catalogue entry ``entry`` built with ``params``),
    made on first use and shared by every claim: `flow` and `map` (the method's protocol), and
    `memo` for anything else a claim computes that another may reuse."""

    def __init__(self, entry: str, method: Method, params: dict | None = None):
        self.entry, self.method, self.params = entry, method, dict(params or {})
        self._memo: dict[Any, Any] = {}

    def memo(self, key, compute: Callable[[], Any]):
        """``compute()`` once per ``key`` for this check."""
        if key not in self._memo:
            self._memo[key] = compute()
        return self._memo[key]

    def flow(self, y0=None, t1=None):
        """The flow from the method's starts (or ``y0``) to its ``t1`` (or ``t1``): an ensemble of
        `CLAIM_SAVES` saves; an SDE runs ``method.paths`` paths per start."""
        key = ("flow", None if y0 is None else id(y0), t1)
        traj = self.memo(key, lambda: self.method.run_flow(y0=y0, t1=t1, saves=CLAIM_SAVES))
        return _require_ok(traj, "the flow")

    def map(self, y0=None, steps=None):
        """The map from the method's starts (``method.paths`` runs per start if stochastic)."""
        method = self.method
        if method.map is None:
            raise ValueError("this claim is about the discrete map, but the method declares map=None")

        def run():
            starts = method.y0 if y0 is None else batch_of(y0, "y0")
            if method.map.stochastic:
                starts = repeat_starts(starts, max(1, method.paths or 1))
            return iterate(method.map, starts, steps or method.steps or DEFAULT_STEPS, seed=method.seed,
                           batched=True)

        return _require_ok(self.memo(("map", None if y0 is None else id(y0), steps), run), "the map")

    def shared_runs(self) -> dict:
        """The default flow and map runs made so far (``{"flow": ..., "map": ...}``)."""
        found = {"flow": self._memo.get(("flow", None, None)), "map": self._memo.get(("map", None, None))}
        return {k: v for k, v in found.items() if v is not None and v.ok}

    def run(self, on: str):
        """`flow` or `map` by name."""
        if on not in ("flow", "map"):
            raise ValueError(f"on must be 'flow' or 'map', got {on!r}")
        return self.flow() if on == "flow" else self.map()


def _require_ok(traj, what):
    if not traj.ok:
        raise RuntimeError(f"{what} did not finish: {traj.status}")
    return traj


def label(q, name):
    """A claim's label for ``q``: its ``name`` or the callable's name."""
    return name or getattr(q, "__name__", "quantity")


def entries(value):
    """The entries of a scalar-, array- or pytree-valued quantity as one flat vector."""
    return ravel_pytree(value)[0]


def pointwise(fn, points):
    """``fn`` at every point of a batch (a pytree with a leading axis), as numpy ``(points, entries)``,
    in one compiled call."""
    values = jax.jit(jax.vmap(lambda y: entries(fn(y))))(jax.tree_util.tree_map(jnp.asarray, points))
    return np.asarray(values)


def flat_values(values, n_lead):
    """Trajectory values ``(lead..., *q_shape)`` (or a pytree of them) as ``(lead..., entries)``."""
    leaves = jax.tree_util.tree_leaves(values)
    lead = np.shape(leaves[0])[:n_lead]
    return np.concatenate([np.reshape(leaf, (*lead, -1)) for leaf in leaves], axis=-1)


def conservation_residuals(system, q, args):
    r"""Per point and entry of ``q``, how far ``q`` is from conserved, as relative residuals
    ``(points, 1 or 2, entries)``.

    ODE: the cosine :math:`|\nabla q\cdot f| / (|\nabla q|\,|f|)`.  SDE (pathwise
    conservation needs both): the Ito generator relative to its terms,
    :math:`|\nabla q\cdot b + \tfrac12 \sum_j G_j^\top \nabla^2 q\, G_j| /
    (|\nabla q|\,|b| + \tfrac12 \sum_j |G_j^\top \nabla^2 q\, G_j|)` with the Ito drift
    :math:`b` (a Stratonovich drift converted), and the worst cosine
    :math:`|\nabla q \cdot G_j| / (|\nabla q|\,|G_j|)` over noise columns."""
    from .._analysis import _FlatSDE, _diffusion_matrix, _ito_drift

    def residuals(y):
        flat, unravel = ravel_pytree(y)
        qf = lambda x: entries(q(unravel(x), args))  # noqa: E731
        grads = jax.jacrev(qf)(flat)  # (entries, dim)
        norms = jnp.linalg.norm(grads, axis=1)
        if not isinstance(system, SDE):
            f = ravel_pytree(system.drift(0.0, y, args))[0]
            return (jnp.abs(grads @ f) / (norms * jnp.linalg.norm(f) + TINY))[None]
        sde = _FlatSDE(system, unravel)
        b, G = _ito_drift(sde, 0.0, flat, args), _diffusion_matrix(sde, 0.0, flat, args)
        curv = jax.vmap(lambda g: jax.jvp(lambda x: jax.jvp(qf, (x,), (g,))[1], (flat,), (g,))[1])(G.T)
        generator = grads @ b + 0.5 * jnp.sum(curv, axis=0)
        scale = norms * jnp.linalg.norm(b) + 0.5 * jnp.sum(jnp.abs(curv), axis=0)
        noise = jnp.max(jnp.abs(grads @ G) / (norms[:, None] * jnp.linalg.norm(G, axis=0) + TINY), axis=1)
        return jnp.stack([jnp.abs(generator) / (scale + TINY), noise])

    return jax.jit(jax.vmap(residuals))
