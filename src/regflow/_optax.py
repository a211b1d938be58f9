r"""An optax optimizer as a regflow `Map`: `from_optax`, its start `optax_state`, and
quantities of the parameters lifted to the map's state (`on_params`).

One step of an optax optimizer on a loss :math:`L(w, \text{args})` is

.. math:: g_k = \nabla L(w_k),\quad (u_k, s_{k+1}) = \text{update}(g_k, s_k, w_k),\quad
          w_{k+1} = w_k + u_k

(an optimizer taking extra arguments, such as ``optax.lbfgs``, also gets ``value``, ``grad``
and ``value_fn``), so the map's state is the pytree ``{"params": w, "opt_state": s}``.  Its ``dt``, the flow time
of one step, is the learning rate: given as ``lr=``, or read from the optimizer's state when it
was built with ``optax.inject_hyperparams`` (``opt_state.hyperparams["learning_rate"]``).
A learning-rate *schedule* has no single flow time per step, so it needs ``lr=`` said
explicitly (the flow time the comparison should use).

Comparing with a flow (`rf.map_error`, `rf.agreement_order`, `rf.Agrees`): the flow's state is
the parameters (a first-order flow such as `rf.heavy_ball_flow`) or a dict whose ``"params"``
entry is (a second-order flow, ``{"params": w, "velocity": v}``).  The map starts from the
flow's start with ``optimizer.init`` (the step's ``lift``) and the two are compared on the
parameters (the step's ``project``), so the optimizer's moments, which have no counterpart in
the flow, are not part of the distance.

Example
-------
>>> import optax, regflow as rf, jax.numpy as jnp
>>> loss = lambda w, a: 0.5 * jnp.sum(w["W"] ** 2)
>>> opt = optax.inject_hyperparams(optax.sgd)(learning_rate=0.1, momentum=0.9)
>>> heavy_ball = rf.from_optax(opt, loss)
>>> heavy_ball.dt
0.1
>>> run = rf.iterate(heavy_ball, rf.optax_state(opt, {"W": jnp.ones(2)}), 3)
>>> [round(float(x), 4) for x in run.evaluate(rf.on_params(lambda w, a: w["W"][0]))]
[1.0, 0.9, 0.72, 0.486]
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np

from . import _validate
from ._system import Map

#: The keys of the map's state.
PARAMS, OPT_STATE = "params", "opt_state"
#: The hyperparameter `from_optax` reads ``dt`` from (``optax.inject_hyperparams``).
LEARNING_RATE = "learning_rate"


def _optax():
    try:
        import optax
    except ImportError as err:  # pragma: no cover - optax is a dependency
        raise ImportError("rf.from_optax needs optax: pip install optax") from err
    return optax


def _check_optimizer(optimizer, name="optimizer"):
    optax = _optax()
    if isinstance(optimizer, optax.GradientTransformation):
        return optimizer
    if callable(optimizer) and getattr(optimizer, "__module__", "").startswith("optax"):
        raise TypeError(f"{name} must be an optax optimizer (a GradientTransformation), got the function "
                        f"{getattr(optimizer, '__name__', optimizer)!r}: call it, e.g. optax.adam(learning_rate=0.01)")
    raise TypeError(f"{name} must be an optax optimizer (a GradientTransformation such as optax.adam(0.01) or "
                    f"optax.inject_hyperparams(optax.sgd)(learning_rate=0.01, momentum=0.9)), got "
                    f"{type(optimizer).__name__}")


def params_of(y):
    """The parameters of a state: ``y["params"]`` for a dict that has them (the map's state
    ``{"params", "opt_state"}``, a second-order flow's ``{"params", "velocity"}``), else ``y``."""
    if isinstance(y, Mapping) and PARAMS in y:
        return y[PARAMS]
    return y


def _float64(tree):
    return jax.tree_util.tree_map(lambda x: jnp.asarray(x, dtype=jnp.float64), tree)


def optax_state(optimizer, params) -> dict:
    """The start of `from_optax`'s map: ``{"params": params, "opt_state": optimizer.init(params)}``
    (every leaf float64, as regflow states are; the step restores optax's integer counters).

    Example
    -------
    >>> import optax, regflow as rf, jax.numpy as jnp
    >>> sorted(rf.optax_state(optax.adam(0.01), {"W": jnp.zeros(3)}))
    ['opt_state', 'params']
    """
    optimizer = _check_optimizer(optimizer)
    params = _float64(params)
    if not jax.tree_util.tree_leaves(params):
        raise ValueError("params must be a pytree with at least one array (e.g. a dict of weight matrices)")
    opt_state = _float64(optimizer.init(params))
    for path, leaf in jax.tree_util.tree_flatten_with_path(opt_state)[0]:
        if not np.all(np.isfinite(np.asarray(leaf))):
            raise ValueError(f"the optimizer's initial state has non-finite entries (opt_state{jax.tree_util.keystr(path)}"
                             f"); a regflow state must be finite, so an optimizer whose state starts at inf (such as "
                             f"optax.lbfgs's best value) cannot be a Map")
    return {PARAMS: params, OPT_STATE: opt_state}


def _restore_dtypes(opt_state, template):
    """The optimizer state with optax's dtypes (integer step counters), from its float64 copy."""
    return jax.tree_util.tree_map(lambda x, t: jnp.round(x).astype(t.dtype) if jnp.issubdtype(t.dtype, jnp.integer)
                                  else x.astype(t.dtype), opt_state, template)


def _check_state(y):
    if not (isinstance(y, Mapping) and set(y) == {PARAMS, OPT_STATE}):
        got = sorted(y) if isinstance(y, Mapping) else type(y).__name__
        raise ValueError(f"the state of an rf.from_optax map is {{'params', 'opt_state'}}, got {got}; start it with "
                         f"y0=rf.optax_state(optimizer, params)")


@dataclasses.dataclass(frozen=True)
class OptaxStep:
    r"""One optimizer step ``{"params": w, "opt_state": s} -> {"params": w + u, "opt_state": s'}``
    with :math:`(u, s') = \text{update}(\nabla L(w, \text{args}), s, w)`.

    ``lift(y0)`` starts the map from a flow's state (its parameters, `params_of`);
    ``project(y)`` reads the parameters of either (`params_of`)."""

    optimizer: Any
    loss: Callable
    lr: Any = None

    def __call__(self, k, y, args):
        _check_state(y)
        params = y[PARAMS]
        opt_state = _restore_dtypes(y[OPT_STATE], jax.eval_shape(self.optimizer.init, params))
        if self.lr is not None:  # an injected learning rate: the map's dt, an input of the compiled step
            hyper = dict(opt_state.hyperparams)
            hyper[LEARNING_RATE] = jnp.asarray(self.lr, dtype=jnp.result_type(hyper[LEARNING_RATE]))
            opt_state = opt_state._replace(hyperparams=hyper)
        value, grads = jax.value_and_grad(self.loss)(params, args)
        if isinstance(self.optimizer, _optax().GradientTransformationExtraArgs):  # e.g. optax.lbfgs's line search
            updates, opt_state = self.optimizer.update(grads, opt_state, params, value=value, grad=grads,
                                                       value_fn=lambda p: self.loss(p, args))
        else:
            updates, opt_state = self.optimizer.update(grads, opt_state, params)
        params = jax.tree_util.tree_map(lambda w, u: w + u, params, updates)
        return {PARAMS: params, OPT_STATE: _float64(opt_state)}

    def lift(self, y0):
        """The map's start from a flow's start: ``optax_state(optimizer, params_of(y0))``."""
        return optax_state(self.optimizer, params_of(y0))

    @staticmethod
    def project(y):
        """The parameters of a map's or a flow's state (`params_of`)."""
        return params_of(y)


jax.tree_util.register_dataclass(OptaxStep, data_fields=["optimizer", "loss", "lr"], meta_fields=[])


def _learning_rate(optimizer):
    """The constant learning rate of an ``inject_hyperparams`` optimizer, or None when it has none
    (a schedule, or an optimizer that keeps it in a closure)."""
    try:
        state = optimizer.init(jnp.zeros(()))
    except Exception:  # an optimizer whose state needs the parameters' structure (optax.masked ...)
        return None, "its state cannot be built without the parameters"
    hyper = getattr(state, "hyperparams", None)
    if not isinstance(hyper, Mapping) or LEARNING_RATE not in hyper:
        return None, "it was not built with optax.inject_hyperparams"
    if LEARNING_RATE in (getattr(state, "hyperparams_states", None) or {}):
        return None, "its learning rate is a schedule (a step has no single flow time)"
    return float(np.asarray(hyper[LEARNING_RATE])), None


def from_optax(optimizer, loss, *, lr=None, names=None, args=None) -> Map:
    r"""An optax optimizer on ``loss(params, args)`` as an `rf.Map` on ``{"params", "opt_state"}``.

    ``dt`` (the flow time of one step) is ``lr`` when given; else the learning rate read from an
    optimizer built with ``optax.inject_hyperparams`` (``opt_state.hyperparams["learning_rate"]``).
    For such an optimizer (a constant learning rate) ``lr=`` also *sets* the learning rate its
    steps use, as an input of the compiled step: one optimizer serves every ``lr`` without
    recompiling (``map_at = lambda h: rf.from_optax(opt, loss, lr=h)``).  For any other
    optimizer ``lr`` must be the learning rate it was built with (optax keeps it in a closure,
    out of reach).  Start it with `optax_state`; read the parameters with `on_params`.  `rf.map_error`, `rf.agreement_order` and `rf.Agrees` start it from a flow's
    start and compare the parameters (see the module doc).

    Example
    -------
    >>> import optax, regflow as rf, jax.numpy as jnp
    >>> loss = lambda w, a: 0.5 * jnp.sum((w["W2"] @ w["W1"] - a) ** 2)
    >>> adam = rf.from_optax(optax.adam(0.01), loss, lr=0.01, args=jnp.eye(2))
    >>> net = {"W1": 0.5 * jnp.ones((3, 2)), "W2": 0.5 * jnp.ones((2, 3))}
    >>> run = rf.iterate(adam, rf.optax_state(optax.adam(0.01), net), 100)
    >>> float(run.t[-1]), bool(run.evaluate(rf.on_params(loss))[-1] < loss(net, jnp.eye(2)))
    (1.0, True)
    """
    optimizer = _check_optimizer(optimizer)
    loss = _validate.check_callable(loss, "loss", _validate.LOSS,
                                    "; the loss of an optimizer is loss(params, args) -> scalar")
    injected, why = _learning_rate(optimizer)
    if lr is None:
        if injected is None:
            raise ValueError(f"lr is needed: the optimizer's learning rate cannot be read ({why}); pass lr= (the flow "
                             f"time of one step, e.g. lr=0.01), or build the optimizer with "
                             f"optax.inject_hyperparams(optax.adam)(learning_rate=0.01)")
        lr = injected
    lr = _validate.real_number(lr, "lr", "0.01")
    if not (0 < lr < float("inf")):
        raise ValueError(f"lr must be a positive finite number (the flow time of one step), got {lr!r}")
    return Map(OptaxStep(optimizer, loss, lr if injected is not None else None), dt=lr, names=names, args=args)


@dataclasses.dataclass(frozen=True)
class OnParams:
    """A quantity ``q(params, args)`` read on a state that holds parameters (`params_of`)."""

    q: Callable

    def __call__(self, y, args):
        return self.q(params_of(y), args)


jax.tree_util.register_dataclass(OnParams, data_fields=["q"], meta_fields=[])


def on_params(q) -> OnParams:
    """The quantity ``q(params, args)`` lifted to states holding parameters: the map's state
    ``{"params", "opt_state"}``, a second-order flow's ``{"params", "velocity"}``, or the
    parameters themselves.

    Example
    -------
    >>> import regflow as rf, jax.numpy as jnp
    >>> norm = rf.on_params(lambda w, a: jnp.sum(w["W"] ** 2))
    >>> float(norm({"params": {"W": jnp.ones(2)}, "opt_state": ()}, None))
    2.0
    """
    return OnParams(_validate.check_callable(q, "q", _validate.QUANTITY, "; q is a quantity q(params, args)"))
