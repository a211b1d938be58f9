r"""Strong and weak orders of an SDE scheme, measured on the Brownian path it used.

For step sizes :math:`h` the scheme's end state :math:`Y^h_T` is compared, path by path, with
the solution :math:`X_T` on the *same* Brownian path:

* strong error :math:`e_s(h) = \mathbb{E}\,|Y^h_T - X_T|` (Kloeden-Platen's strong order
  :math:`\gamma`: :math:`e_s = O(h^\gamma)`; Euler-Maruyama 1/2, Milstein 1);
* weak error :math:`e_w(h) = |\mathbb{E}\,\varphi(Y^h_T) - \mathbb{E}\,\varphi(X_T)|` for an
  observable :math:`\varphi` (the state by default; Euler-Maruyama order 1), estimated as
  :math:`|\overline{\varphi(Y^h_T) - \varphi(X_T)}|` over paths: the pairing on one Brownian
  path removes most of the Monte-Carlo noise, which would otherwise swamp an :math:`O(h)` bias.

:math:`X_T` is either an exact solution ``exact(t, y0, w, args)`` evaluated at
:math:`w = W(T)` (the run's Brownian path, `regflow._brownian`; e.g. geometric Brownian motion
:math:`X_t = x_0 \exp((\mu - \sigma^2/2) t + \sigma W_t)`), with each :math:`Y^h` from
`regflow.integrate` on the chosen backend; or, with ``exact=None``, the same scheme at the
step ``min(dts) / refine`` driven by finer increments whose sums are the coarse runs'
increments (regflow's compiled scheme, `regflow.backends.scan_`).  The order is the slope of
:math:`\log e` against :math:`\log h` (least squares).

Example
-------
>>> import regflow as rf, jax.numpy as jnp
>>> gbm = rf.SDE(lambda t, y, a: 0.5 * y, lambda t, y, a: y, noise="scalar")
>>> exact = lambda t, y0, w, a: y0 * jnp.exp(0.0 * t + w)       # mu - sigma^2/2 = 0
>>> fit = rf.strong_order(gbm, exact, jnp.ones(1), 1.0, [2**-4, 2**-5, 2**-6, 2**-7], paths=2000)
>>> round(fit.order, 1)                                          # doctest: +SKIP
0.5
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np

from . import _noise, _tree, _validate
from ._brownian import brownian_path
from ._compare import Agreement
from ._system import SDE

#: Paths of an order study by default.
DEFAULT_PATHS = 1000
#: With ``exact=None`` the reference takes steps this many times finer than the finest ``dts``.
DEFAULT_REFINE = 16
#: Relative tolerance for "this step divides that one".
GRID_TOL = 1e-9


def strong_order(system, exact, y0, t1, dts, *, seed=0, paths=DEFAULT_PATHS, method=None, backend="jax",
                 refine=DEFAULT_REFINE) -> Agreement:
    r"""Fit the strong order :math:`\gamma` of :math:`\mathbb{E}|Y^h_T - X_T| = O(h^\gamma)`
    over the step sizes ``dts`` (see the module doc for ``exact`` and ``refine``).

    Returns an `Agreement` (``steps`` the ``dts``, ``errors``, ``order``)."""
    return _order(system, exact, y0, t1, dts, seed, paths, method, backend, refine, None, strong=True)


def weak_order(system, exact, y0, t1, dts, *, observable=None, seed=0, paths=DEFAULT_PATHS, method=None,
               backend="jax", refine=DEFAULT_REFINE) -> Agreement:
    r"""Fit the weak order :math:`\beta` of :math:`|\mathbb{E}\varphi(Y^h_T) - \mathbb{E}\varphi(X_T)|
    = O(h^\beta)` over ``dts``; ``observable`` is :math:`\varphi(y, \text{args})` (scalar or
    array; the state if None)."""
    return _order(system, exact, y0, t1, dts, seed, paths, method, backend, refine, observable, strong=False)


def _order(system, exact, y0, t1, dts, seed, paths, method, backend, refine, observable, strong):
    if not isinstance(system, SDE):
        raise TypeError(f"system must be an rf.SDE, got {type(system).__name__}")
    dts = _validate.times(dts, "dts", "[2**-4, 2**-5, 2**-6]")
    if dts.ndim != 1 or dts.size < 2 or not np.all(np.isfinite(dts)) or np.any(dts <= 0):
        raise ValueError("dts must hold at least two positive step sizes, e.g. dts=[2**-4, 2**-5, 2**-6]")
    t1 = _validate.positive_number(t1, "t1", "1.0")
    paths = _validate.positive_int(paths, "paths", example=1000)
    if exact is not None and not callable(exact):
        raise TypeError(f"exact must be a function exact(t, y0, w, args) of the time, the start and W(t), or None for "
                        f"a fine reference on the same Brownian path; got {type(exact).__name__}")
    if observable is not None and not callable(observable):
        raise TypeError(f"observable must be a quantity q(y, args), got {type(observable).__name__}")
    if exact is None:
        ends, reference, structure = _on_one_path(system, y0, t1, dts, seed, paths, method, refine)
        references = [reference] * len(ends)
    else:
        ends, references, structure = _against_exact(system, exact, y0, t1, dts, seed, paths, method, backend)
    errors = np.array([_error(y, x, structure, system.args, observable, strong) for y, x in zip(ends, references)])
    if not np.all(np.isfinite(errors)) or np.any(errors <= 0):
        raise ValueError(f"the errors {errors} are not all positive and finite (a run diverged, or the scheme is exact "
                         f"here); choose smaller dts or another system")
    order = float(np.polyfit(np.log(dts), np.log(errors), 1)[0])
    return Agreement(steps=dts, errors=errors, order=order)


def _against_exact(system, exact, y0, t1, dts, seed, paths, method, backend):
    """Each scheme's end states from `regflow.integrate`, and the exact ones on each run's own
    Brownian path (``W(t1)`` of `regflow._brownian`); ``(ends, [exact per dt], structure)``."""
    from ._integrate import integrate

    structure, flat = _tree.structure_of(y0, "y0")
    start = structure.unravel(jnp.asarray(flat))  # the start as exact(t, y0, w, args) takes it: arrays
    ends, exacts = [], []
    for dt in dts:
        traj = integrate(system, y0, t1, dt=float(dt), paths=paths, seed=seed, method=method, backend=backend,
                         ts=[t1])
        if not traj.ok:
            raise ValueError(f"the run with dt={dt:g} {traj.status}; choose smaller dts")
        w = jnp.asarray(brownian_path(traj)[:, -1])
        x = jax.vmap(lambda w: exact(t1, start, w, system.args))(w)
        ends.append(traj.flat[:, -1])
        exacts.append(_flat(x, paths))
    return ends, exacts, structure


def _flat(tree, paths):
    return np.concatenate([np.reshape(np.asarray(leaf), (paths, -1)) for leaf in jax.tree_util.tree_leaves(tree)],
                          axis=-1)


def _error(y, x, structure, args, observable, strong):
    """Strong (mean distance) or weak (distance of the means) error of end states ``y``
    against ``x`` (both ``(paths, dim)``), through ``observable`` if given."""
    if observable is not None:
        q = jax.vmap(lambda z: _tree.flat_value(observable(structure.unravel(z), args)))
        y, x = np.asarray(q(jnp.asarray(y))), np.asarray(q(jnp.asarray(x)))
    diff = y - x
    if strong:
        return float(np.mean(np.linalg.norm(diff, axis=-1)))
    return float(np.linalg.norm(np.mean(diff, axis=0)))


def _on_one_path(system, y0, t1, dts, seed, paths, method, refine):
    """The scheme at each ``dt`` and at ``min(dts) / refine``, all driven by one set of fine
    increments (their sums over each coarse step); ``(ends, reference end, structure)``."""
    from . import _integrate
    from ._compiled import compile_system
    from .backends import scan_
    from .backends._common import noise_dim

    refine = _validate.positive_int(refine, "refine", example=16)
    h = float(np.min(dts)) / refine
    ratios = [_ratio(dt, h, "dts", f"the reference step min(dts) / refine = {h:g}") for dt in dts]
    n = _ratio(t1, h, "t1", f"the reference step {h:g}")
    structure, starts, _, _ = _integrate._check_y0(y0, None, False)
    method = _integrate._check_sde_method(system, "jax", method)
    flat, params = compile_system(_integrate.flatten_system(system, structure), _integrate._check_args(system.args))
    m = noise_dim(flat, starts[0], 0.0, params)
    step = scan_.sde_step(flat.drift, flat.diffusion, flat.noise, method, m)
    keys = _noise.path_keys(seed, paths)
    fine = _fine_increments(n, m)(keys, h)  # (n, paths, m)
    y0s = jnp.broadcast_to(jnp.asarray(starts[0]), (paths, starts.shape[-1]))
    run = _scheme_program(step)
    reference = np.asarray(run(y0s, fine, params, h))
    ends = [np.asarray(run(y0s, fine.reshape(n // r, r, paths, m).sum(axis=1), params, h * r)) for r in ratios]
    return ends, reference, structure


def _ratio(a, h, name, what):
    r = round(a / h)
    if r < 1 or abs(r * h - a) > GRID_TOL * a:
        raise ValueError(f"{name} must be whole multiples of {what}; {a:g} is not (use dts = t1 / 2**k)")
    return r


@functools.lru_cache(maxsize=32)
def _fine_increments(n, m):
    return jax.jit(lambda keys, h: _noise.block_increments(keys, 0, n, h, m))


@functools.lru_cache(maxsize=64)
def _scheme_program(step):
    """``(y0s (paths, dim), dws (steps, paths, m), params, h) -> end states``: the scheme's
    step (`regflow.backends.scan_.sde_step`) vmapped over paths, scanned over the increments."""
    step_all = jax.vmap(step, in_axes=(None, 0, None, 0, None, None))

    def run(y0s, dws, params, h):
        def body(carry, dw):
            k, y = carry
            return (k + 1, step_all(k, y, params, dw, 0.0, h)), None

        (_, y), _ = jax.lax.scan(body, (jnp.asarray(0, jnp.int64), y0s), dws)
        return y

    return jax.jit(run)
