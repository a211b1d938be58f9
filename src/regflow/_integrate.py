"""`integrate` (flows) and `iterate` (maps): validate at the boundary, dispatch to a backend,
wrap the result in a `Trajectory`."""

from __future__ import annotations

import dataclasses
import functools
import math
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from . import _dense, _events, _memory, _noise, _tree, _validate
from ._compiled import bind_quantity, compile_system, split
from ._progress import progress_enabled
from ._system import ODE, SDE, Map, describe
from ._trajectory import Trajectory
from ._versions import versions
from .backends._common import DIVERGENCE_BOUND, noise_dim

BACKENDS = ("auto", "scipy", "diffrax", "sdeint", "jax")
DEFAULT_ODE_METHOD = "dopri5"
#: SDE schemes of each backend (named here so that checking a call imports no backend).
SDE_METHODS = {"jax": ("euler", "milstein", "heun"), "diffrax": ("euler", "milstein", "heun"),
               "sdeint": ("euler", "sri2", "heun", "srs2")}
DEFAULT_SDE_METHOD = {"ito": "euler", "stratonovich": "heun"}
#: Saved times of an ODE ensemble when ``ts`` is not given (paths take different steps).
DEFAULT_ENSEMBLE_SAVES = 101
#: Said when an adaptive solver stopped without diverging (its field finite where it stopped).
FAILURE_HINT = (": the solver could not go on (step budget spent or steps too small) although the field is finite "
                "there; try method='kvaerno5' or 'radau' for stiff or non-smooth fields, or a fixed-step method with dt")
#: Relative tolerance for "this time lies on the step grid".
GRID_TOL = 1e-9


class Solution(NamedTuple):
    """What a backend returns: saved times (n,), states (paths, n, dim), the time each path
    stopped early (``inf`` if it reached t1) and, optionally, whether that stop was a solver
    failure rather than a divergence, solver statistics (steps, accepted, rejected,
    function evaluations: whatever the library reports, summed over paths) and the crossings
    of the run's event."""

    t: np.ndarray
    ys: np.ndarray
    stop_t: np.ndarray
    failed: np.ndarray | None = None
    stats: dict | None = None
    events: Any = None  # (per-path crossing times, per-path flat states) of the run's event


@dataclasses.dataclass(frozen=True)
class Problem:
    """A validated request, the one thing every backend receives.

    ``system`` works on flat states ``(dim,)`` and its callables take ``args`` (the
    compiled-program parameters of `regflow._compiled.compile_system`: ``(dynamic, user_args)``);
    ``structure`` turns flat states back into the user's pytree."""

    system: Any
    y0: np.ndarray  # (paths, dim)
    ensemble: bool
    t0: float
    t1: float
    ts: np.ndarray | None
    method: str
    rtol: float
    atol: float
    dt: float | None
    seed: Any
    args: Any
    save_idx: np.ndarray | None = None  # fixed-step schemes: saved step indices
    progress: bool | None = False
    structure: Any = None
    user_system: Any = None
    user_args: Any = None
    save: Any = None  # (bound quantity on flat states, its params), or None: save the states
    event: Any = None  # (g, params, direction, terminal) of `regflow._events.bound`, or None


def integrate(system, y0, t1, *, t0=0.0, ts=None, backend="auto", method=None, rtol=1e-8,
              atol=1e-10, dt=None, paths=None, batched=False, seed=0, save=None, progress=None,
              backward=False, event=None, dense=False) -> Trajectory:
    r"""Integrate an `ODE` or `SDE` from ``t0`` to ``t1``.

    Parameters
    ----------
    system : ODE or SDE.
    y0 : the start: an array or any pytree of arrays (a matrix is a matrix state, a dict of
        weight matrices a network's parameters).  With ``batched=True`` every leaf carries a
        leading path axis: one start per path.
    t1, t0 : end and start times (``t1 > t0``, or ``t1 < t0`` with ``backward=True``).
    ts : times to save at, running from ``t0`` towards ``t1`` (increasing; decreasing for a
        backward run; ``t1`` is appended if missing).  Without it: the
        solver's steps (single ODE path), ``DEFAULT_ENSEMBLE_SAVES`` times (ODE ensemble),
        every step (SDE).  For an SDE, ``ts`` must lie on the grid ``t0 + k*dt``.
    backend : ``"auto"`` (diffrax for ODEs, regflow's compiled scan ``"jax"`` for SDEs),
        ``"scipy"``, ``"diffrax"``, ``"sdeint"`` or ``"jax"``.
    method : ODE: ``"dopri5"`` (default, adaptive 5th order), ``"tsit5"``, ``"dop853"``,
        ``"bosh3"``, ``"kvaerno5"``, ``"radau"``, ``"bdf"``, ``"lsoda"`` (as each backend has
        them).  SDE: ``"euler"`` (Euler-Maruyama, Ito default), ``"milstein"``, ``"heun"``
        (Stratonovich default), ``"sri2"``, ``"srs2"`` (sdeint).
    rtol, atol : tolerances of adaptive ODE solvers.
    dt : step of fixed-step schemes (required for SDEs).
    paths : number of paths of an ensemble (``None``: one path, ``y`` is ``(n, dim)``); one
        start ``y0`` is shared by all paths unless ``batched``.
    batched : ``y0`` holds one start per path along the leading axis of every leaf (an
        ensemble of ``len`` starts).  An ensemble is never guessed from ``y0``'s shape.
    seed : int or JAX key; the same seed gives the same Brownian increments to every backend.
    save : a quantity ``q(y, args)`` (scalar, array or pytree) to keep at the saved times
        instead of the states (as diffrax's ``SaveAt(fn=...)``): ``traj.y`` then holds its
        values, and memory is that of ``q``, not of the state (needs ``ts`` for a single ODE
        path).  ``args`` are the system's.
    progress : a progress bar on stderr, on every backend but ``"sdeint"``: over the steps of
        an SDE on ``"jax"`` (and of maps); over paths x time span on ``"scipy"`` (moved at each
        field call; shown only once a run has taken a second); diffrax's percent of the span
        (`diffrax.TqdmProgressMeter`, the slowest path of an ensemble) on ``"diffrax"``.
        ``None`` shows it when stderr is a terminal (``REGFLOW_PROGRESS=0`` turns it off);
        results are the same with or without it.
    backward : integrate an ODE backward in time, from ``t0`` down to ``t1 < t0`` (backends
        ``"diffrax"`` and ``"scipy"``; said explicitly, so a sign slip in ``t1`` is an error).
        ``traj.t`` then decreases from ``t0`` to ``t1``.  SDEs run forward only.
    event : an `Event` (or a quantity ``q(y, args)`` whose zero crossing is the event) of an
        ODE on ``"diffrax"`` or ``"scipy"`` (`regflow._events`): a terminal one ends the run
        where it fires (``status`` ``"event at t=..."``, the last save the state there; an
        ensemble's saves after each path's event are NaN), a non-terminal one (scipy) records
        every crossing.  ``traj.events`` holds the crossings' times and states.
    dense : keep a dense output of one ODE path (`regflow._dense`: a quintic Hermite
        interpolant through the solver's accepted steps, the field there and its derivative
        along the flow; with ``ts`` the steps come from a second solve): ``traj.interpolate(ts)``
        or ``traj(t)`` give the state anywhere in the span the run covered.

    Returns
    -------
    Trajectory with ``y`` shaped like the state with leading ``(paths,) time`` axes (its
    flat view ``flat[..., -1, :]`` the state at ``t1``), unless the run diverged, which
    ``status`` then says with the time.  The rule is the same on every backend: a path diverges
    at the first time its state is not finite or exceeds ``DIVERGENCE_BOUND`` in magnitude, or
    its field is not finite (at the start, or where an adaptive solver stopped); its saves from
    then on are NaN (an ensemble) or left out (one path), its start is kept.  A solver that
    stops with a finite field says ``"failed at t=..."``.

    Raises
    ------
    TypeError, ValueError : bad input, naming the argument and the fix (callables are checked
        against the convention ``f(t, y, args)`` once, and evaluated abstractly once per
        structure); a request whose saved output and working memory would exceed
        `regflow._memory.limit` names the argument to change and by how much.

    Example
    -------
    >>> import regflow as rf, jax.numpy as jnp
    >>> ode = rf.ODE(lambda t, y, a: -y)
    >>> traj = rf.integrate(ode, jnp.ones(2), 1.0, ts=[0.5, 1.0])
    >>> round(float(traj.y[-1, 0]), 6)
    0.367879
    """
    if isinstance(system, Map):
        raise TypeError("integrate takes an ODE or SDE; iterate a Map with rf.iterate(map_, y0, steps)")
    if not isinstance(system, (ODE, SDE)):
        raise TypeError(f"system must be an rf.ODE or rf.SDE, got {type(system).__name__}")
    backend = _check_backend(system, backend)
    _noise.check_seed(seed)  # for ODEs too: the seed is kept in the metadata
    t0, t1 = _check_times(t0, t1, backward, system)
    structure, starts, n_paths, ensemble = _check_y0(y0, paths, batched)
    args = _check_args(system.args)
    _check_fits(system, structure, t0, args)
    rtol, atol = _validate.tolerances(rtol, atol)
    ts = _check_ts(ts, t0, t1)
    saved = _check_save_quantity(save, structure, args)
    _check_names_fit(system, structure, saved)
    checked_event = _events.check_event(event, structure, args, system, backend)
    _dense.check(dense, system, ensemble)
    width = structure.size if saved is None else saved.size
    if isinstance(system, SDE):
        method = _check_sde_method(system, backend, method)
        if dt is None:
            raise ValueError(f"dt is required to integrate an SDE with the fixed-step method {method!r}; pass e.g. dt=1e-3")
        dt = _check_dt(dt)
        n_steps = _grid_steps(t1 - t0, dt, "t1 - t0")
        _check_sde_memory(system, backend, n_paths, structure.size, width, n_steps, ts, dt, t1 - t0)
        save_idx = np.arange(n_steps + 1) if ts is None else _grid_indices(ts, t0, dt)
        if ts is None:
            ts = t0 + dt * save_idx
    else:
        method = _check_ode_method(backend, method, dt)
        dt = None if dt is None else _check_dt(dt)
        save_idx = None
        if ts is None and ensemble:
            ts = np.linspace(t0, t1, DEFAULT_ENSEMBLE_SAVES)
        fixed_steps = math.ceil(abs(t1 - t0) / dt) if dt is not None and method in _fixed_ode_methods(backend) else None
        _check_ode_memory(n_paths, structure.size, width, ts, fixed_steps, dt)
    progress_enabled(progress)  # validates
    if save is not None and ts is None and isinstance(system, ODE):
        raise ValueError("save= keeps a quantity at the times ts; pass ts, e.g. ts=np.linspace(t0, t1, 101)")
    y0 = _broadcast(starts, n_paths)
    flat, params = compile_system(flatten_system(system, structure), args)
    native = backend == "jax" or backend == "diffrax" and isinstance(system, ODE)
    problem = Problem(flat, y0, ensemble, t0, t1, ts, method, rtol, atol, dt, seed, params, save_idx, progress,
                      structure, system, args, _bound_save(save, structure, args, native),
                      _events.bound_event(checked_event, structure, args))
    solution = Solution(*_backend_module(backend, system).solve(problem))
    solution = _events.end_at_event(problem, solution)
    hermite = _dense_output(problem, backend, solution) if dense else None
    return _trajectory(problem, backend, _saved(problem, solution, save, saved), hermite)


def iterate(map_, y0, steps, *, paths=None, batched=False, seed=0, every=1, save=None,
            progress=None) -> Trajectory:
    r"""Iterate a `Map` ``steps`` times; step ``k`` is saved at flow time ``k * map_.dt``.

    ``y0``, ``paths`` and ``batched`` as for `integrate` (a pytree state, one start per path
    with ``batched=True``).  ``every`` saves every ``every``-th step (the last step is always
    saved); ``save`` and ``progress`` as for `integrate`.  A stochastic
    map receives the key ``fold_in(path_key, k)`` at step ``k`` (see `regflow._noise`).

    Example
    -------
    >>> import regflow as rf
    >>> halve = rf.Map(lambda k, y, a: 0.5 * y, dt=1.0)
    >>> rf.iterate(halve, [1.0], 3).y[:, 0].tolist()
    [1.0, 0.5, 0.25, 0.125]
    """
    if not isinstance(map_, Map):
        raise TypeError(f"iterate takes an rf.Map, got {type(map_).__name__}; integrate flows with rf.integrate")
    steps = _validate.positive_int(steps, "steps", example=100)
    _noise.check_seed(seed)
    every = _validate.positive_int(every, "every", example=10)
    structure, starts, n_paths, ensemble = _check_y0(y0, paths, batched)
    args = _check_args(map_.args)
    _check_fits(map_, structure, 0.0, args)
    saved = _check_save_quantity(save, structure, args)
    _check_names_fit(map_, structure, saved)
    n_saves = steps // every + 1 + (steps % every != 0)
    _check_iterate_memory(n_paths, structure.size, structure.size if saved is None else saved.size, steps, every,
                          n_saves)
    save_idx = np.unique(np.append(np.arange(0, steps + 1, every), steps))
    progress_enabled(progress)  # validates
    y0 = _broadcast(starts, n_paths)
    flat, params = compile_system(flatten_system(map_, structure), args)
    problem = Problem(flat, y0, ensemble, 0.0, steps * map_.dt, map_.dt * save_idx, "iterate", 0.0, 0.0,
                      map_.dt, seed, params, save_idx, progress, structure, map_, args,
                      _bound_save(save, structure, args, True))
    from .backends import scan_

    return _trajectory(problem, "jax", _saved(problem, Solution(*scan_.iterate_map(problem)), save, saved))


def _check_fits(system, structure, t0, args):
    """The system's callables return the state's structure and shapes at ``y0`` (`regflow._validate`)."""
    try:
        _validate.check_outputs(system, structure, t0, args)
    except ValueError as err:
        raise ValueError(f"y0 does not fit the system: {err}") from err


def _check_save_quantity(save, structure, args):
    """The `Structure` of ``save``'s values (validated: ``q(y, args)``, real), or None."""
    if save is None:
        return None
    out = _validate.check_quantity(save, structure, args, "save")
    leaves, treedef = jax.tree_util.tree_flatten_with_path(out)
    return _tree.Structure(treedef, tuple(tuple(leaf.shape) for _, leaf in leaves),
                           tuple(_tree.path_name(p) for p, _ in leaves))


def _check_names_fit(system, structure, saved):
    """The system's names, one per coordinate of the state (not needed for ``save=`` values)."""
    if saved is None and system.names is not None and len(system.names) != structure.size:
        raise ValueError(f"the system names {len(system.names)} coordinates {system.names} but y0 has {structure.size} "
                         f"(shape {structure.describe()}); give one name per coordinate, or pass y0 of the system's shape")


def _bound_save(save, structure, args, native):
    """``(bound quantity on flat states, params)`` where the backend evaluates ``save`` inside
    the solve (``native``: diffrax ODEs, regflow's scan), else None (applied to the states after)."""
    if save is None or not native:
        return None
    q = save if structure.trivial else _tree.FlatQuantity(save, structure)
    dynamic, static = split((q,))
    return bind_quantity(static), (dynamic, args)


def _dense_output(problem, backend, solution):
    """The `regflow._dense.Hermite` interpolant through the solver's steps (a second solve
    saving its steps when the run saved at ``ts``)."""
    if problem.ts is not None or problem.save is not None:
        steps = dataclasses.replace(problem, ts=None, save=None)
        solution = Solution(*_backend_module(backend, problem.user_system).solve(steps))
    solution = _after_divergence(problem, solution)
    return _dense.knots(problem.system.vector_field, solution.t, solution.ys[0], problem.args)


def _saved(problem, solution, save, structure):
    """The solution with the divergence rule applied (`_after_divergence`) and, with ``save``, its
    values (of `Structure` ``structure``): computed by the backend, or from its states here."""
    solution = _after_divergence(problem, solution)
    if save is None:
        return solution
    ys = solution.ys
    if problem.save is None:  # the backend kept the states: evaluate save on them
        traj = Trajectory.from_flat(solution.t, ys, problem.structure, ensemble=True)
        values = traj.evaluate(save, args=problem.user_args)
        ys = np.concatenate([np.reshape(v, (*ys.shape[:2], -1)) for v in jax.tree_util.tree_leaves(values)], axis=-1)
    return solution._replace(ys=ys), structure


def _after_divergence(problem, solution):
    """One rule on every backend: a path's saves at or after the time it stopped (diverged or
    failed) are NaN, except its start (the given, finite ``y0``)."""
    t, stop = np.asarray(solution.t), np.asarray(solution.stop_t)
    ys = np.asarray(solution.ys)
    if not np.isfinite(stop).any():
        return solution._replace(ys=ys)
    sign = np.sign(problem.t1 - problem.t0)
    after = (np.isfinite(stop)[:, None] & (sign * (t[None, :] - stop[:, None]) >= 0)
             & (sign * (t[None, :] - problem.t0) > 0))
    if after.any():
        ys = np.array(ys, dtype=np.float64, copy=True)
        ys[after] = np.nan
    return solution._replace(ys=ys)


# ----------------------------------------------------------------------------- results


def flatten_system(system, structure):
    """The system on flat states: the user's callables wrapped (`regflow._tree`), unless the
    state is already a vector."""
    if structure.trivial:
        return system
    field = functools.partial(_tree.FlatField, structure=structure)
    if isinstance(system, ODE):
        return system.replace(vector_field=field(system.vector_field))
    if isinstance(system, Map):
        return system.replace(step=field(system.step))
    diffusion = (_tree.FlatDiffusion if system.noise == "general" else _tree.FlatField)(system.diffusion, structure)
    return system.replace(drift=field(system.drift), diffusion=diffusion)


def _trajectory(problem, backend, solution, dense=None) -> Trajectory:
    solution, structure = solution if isinstance(solution, tuple) and len(solution) == 2 else (solution, None)
    saved = structure is not None
    structure = structure or problem.structure
    system = problem.user_system
    t, ys, div_t = np.asarray(solution.t), np.asarray(solution.ys), np.asarray(solution.stop_t)
    failed = np.zeros(len(div_t), bool) if solution.failed is None else np.asarray(solution.failed)
    dim = ys.shape[-1]
    names = None if saved else system.names or (tuple(f"y{i}" for i in range(dim)) if structure.trivial else None)
    meta = {
        "system": describe(system),
        "args": system.args,
        "args_value": problem.user_args,
        "seed": problem.seed if isinstance(problem.seed, int) else np.asarray(problem.seed).tolist(),
        "backend": backend,
        "method": problem.method,
        "t0": problem.t0,
        "t1": problem.t1,
        "dt": problem.dt,
        "rtol": problem.rtol,
        "atol": problem.atol,
        "versions": versions(),
    }
    if isinstance(system, SDE):  # with seed, t0 and dt: the Brownian path (`regflow._brownian`)
        meta["noise_dim"] = noise_dim(problem.system, problem.y0[0], problem.t0, problem.args)
    if solution.stats:
        meta["stats"] = solution.stats
    diverged = np.isfinite(div_t)
    events, hit = _events.run_log(problem, solution)
    if problem.ensemble:
        status = "ok"
        if hit.any() and not diverged.any():
            status = (f"event at t={np.nanmin(events.t[:, 0]):.6g} ({int(hit.sum())} of {len(hit)} paths; "
                      f"see events)")
        if diverged.any():
            word = "failed" if failed[diverged].any() else "diverged"
            status = (f"{word} at t={div_t.min():.6g} ({int(diverged.sum())} of {len(div_t)} paths; "
                      f"see diverged_at)")
            if failed.any():
                status += FAILURE_HINT
        return Trajectory.from_flat(t, ys, structure, names=names, status=status, diverged_at=div_t,
                                    meta=meta, ensemble=True, events=events)
    y = ys[0]
    status = f"event at t={events.t[0]:.6g}" if hit[0] else "ok"
    if diverged[0]:
        sign = np.sign(problem.t1 - problem.t0)
        keep = np.all(np.isfinite(y), axis=-1) & ((sign * (t - div_t[0]) < 0) | (t == problem.t0))
        t, y = t[keep], y[keep]
        status = f"diverged at t={div_t[0]:.6g}" if not failed[0] else f"failed at t={div_t[0]:.6g}" + FAILURE_HINT
    return Trajectory.from_flat(t, y, structure, names=names, status=status, meta=meta, ensemble=False,
                                events=events, dense=dense)


def _backend_module(backend, system):
    import importlib

    module = {"jax": "scan_", "scipy": "scipy_", "diffrax": "diffrax_", "sdeint": "sdeint_"}[backend]
    return importlib.import_module(f".backends.{module}", __package__)


# ----------------------------------------------------------------------------- validation


def _check_backend(system, backend):
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {BACKENDS}, got {backend!r}")
    if backend == "auto":
        return "diffrax" if isinstance(system, ODE) else "jax"
    if isinstance(system, SDE) and backend == "scipy":
        raise ValueError("backend 'scipy' integrates ODEs only; for an SDE use backend='jax', 'diffrax' or 'sdeint'")
    if isinstance(system, ODE) and backend in ("sdeint", "jax"):
        raise ValueError(f"backend {backend!r} integrates SDEs only; for an ODE use backend='diffrax' or 'scipy'")
    return backend


def _check_sde_method(system, backend, method):
    method = DEFAULT_SDE_METHOD[system.calculus] if method is None else method
    available = SDE_METHODS[backend]
    if method not in available:
        raise ValueError(f"method {method!r} is not available for SDEs with backend {backend!r}; choose one of {available}")
    calculus = {"euler": "ito", "milstein": "ito", "sri2": "ito", "heun": "stratonovich", "srs2": "stratonovich"}[method]
    if calculus != system.calculus:
        good = [m for m in available if {"euler": "ito", "milstein": "ito", "sri2": "ito"}.get(m, "stratonovich") == system.calculus]
        raise ValueError(f"method {method!r} solves {calculus} SDEs but this SDE is {system.calculus}; use method in {good}")
    if method == "milstein" and system.noise == "general":
        raise ValueError("method 'milstein' needs scalar or diagonal noise; use method='euler' for noise='general'")
    return method


def _check_ode_method(backend, method, dt):
    from .backends import diffrax_, scipy_

    method = DEFAULT_ODE_METHOD if method is None else method
    available = {"diffrax": tuple(diffrax_.ODE_SOLVERS), "scipy": tuple(scipy_.METHODS)}[backend]
    if method not in available:
        raise ValueError(f"method {method!r} is not available for ODEs with backend {backend!r}; choose one of {available}")
    if backend == "diffrax" and method in diffrax_.FIXED_STEP and dt is None:
        raise ValueError(f"method {method!r} takes fixed steps: pass dt, or use an adaptive method such as 'dopri5'")
    return method


def _fixed_ode_methods(backend):
    from .backends import diffrax_

    return diffrax_.FIXED_STEP if backend == "diffrax" else ()


def _check_times(t0, t1, backward=False, system=None):
    t0, t1 = _validate.finite_number(t0, "t0", "0.0"), _validate.finite_number(t1, "t1", "1.0")
    backward = _validate.flag(backward, "backward")
    if backward and isinstance(system, SDE):
        raise ValueError("backward=True integrates ODEs only: an SDE's Ito or Stratonovich solution runs forward in "
                         "time (its time reversal is another SDE); integrate it forward, with t1 > t0")
    if backward and not t1 < t0:
        raise ValueError(f"backward=True integrates from t0 down to t1 < t0, got t0={t0}, t1={t1}; pass t1 < t0 "
                         f"(or leave backward=False)")
    if not backward and not t1 > t0:
        hint = "; to integrate backward in time pass backward=True" if t1 < t0 else ""
        raise ValueError(f"t1 must be greater than t0, got t0={t0}, t1={t1}{hint}")
    return t0, t1


def _check_dt(dt):
    return _validate.positive_number(dt, "dt", "1e-3")


def _check_y0(y0, paths, batched):
    """``(structure, starts (1 or paths, dim), paths, ensemble)``: an ensemble only when said
    (``paths`` or ``batched``), never guessed from the shape of ``y0``.  Nothing is broadcast to
    the paths yet (`_broadcast`, after the memory estimate)."""
    batched = _validate.flag(batched, "batched")
    if paths is not None:
        paths = _validate.positive_int(paths, "paths", example=100)
    structure, flat = _tree.structure_of(y0, "y0", batched=batched)
    big = np.max(np.abs(flat))
    if big > DIVERGENCE_BOUND:
        raise ValueError(f"y0 has an entry of magnitude {big:.3g}, beyond the divergence bound {DIVERGENCE_BOUND:g} "
                         f"(a state that large counts as diverged on every backend); rescale the state")
    if batched:
        if paths is not None and flat.shape[0] != paths:
            raise ValueError(f"y0 has {flat.shape[0]} starts (batched) but paths={paths}; pass paths={flat.shape[0]} "
                             f"or leave paths out")
        return structure, flat, flat.shape[0], True
    if paths is not None:
        return structure, flat[None, :], paths, True
    return structure, flat[None, :], 1, False


def _broadcast(starts, paths):
    return starts if len(starts) == paths else np.broadcast_to(starts, (paths, starts.shape[-1])).copy()


def _check_args(args):
    return _validate.finite_args(args)


def _check_ts(ts, t0, t1):
    """Saved times from ``t0`` towards ``t1``: increasing, or decreasing for a backward run."""
    if ts is None:
        return None
    ts = _validate.times(ts)
    if ts.size == 0 or not np.all(np.isfinite(ts)):
        raise ValueError("ts must be a non-empty array of finite times, e.g. ts=np.linspace(t0, t1, 11)")
    sign = 1.0 if t1 > t0 else -1.0
    if np.any(sign * np.diff(ts) <= 0):
        k = int(np.argmax(sign * np.diff(ts) <= 0))
        order = "increasing" if sign > 0 else "decreasing (a backward run goes from t0 down to t1)"
        raise ValueError(f"ts must be strictly {order}; ts[{k}] = {ts[k]} is followed by ts[{k + 1}] = {ts[k + 1]}")
    if sign * (ts[0] - t0) < 0 or sign * (ts[-1] - t1) > 0:
        raise ValueError(f"ts must lie in [t0, t1] = [{t0}, {t1}], got [{ts[0]}, {ts[-1]}]")
    if sign * (ts[-1] - t1) < 0:
        ts = np.append(ts, t1)
    return ts


def _grid_steps(span, dt, what):
    n = round(span / dt)
    if n < 1 or abs(n * dt - span) > GRID_TOL * max(1.0, abs(span)):
        raise ValueError(f"{what} = {span} is not a whole number of steps dt = {dt}; choose dt = {span}/n")
    return n


def _grid_indices(ts, t0, dt):
    idx = np.round((ts - t0) / dt).astype(np.int64)
    off = np.abs(t0 + idx * dt - ts) > GRID_TOL * np.maximum(1.0, np.abs(ts))
    if off.any():
        raise ValueError(f"ts must lie on the step grid t0 + k*dt (dt={dt}); {ts[off][:3]} do not")
    return idx


# ----------------------------------------------------------------------------- memory


def _what(paths, saves, width):
    return (f"paths={_memory.count(paths)} x {_memory.count(saves)} saved times x {width} float"
            f"{'s' if width != 1 else ''}")


def _check_sde_memory(system, backend, paths, dim, width, n_steps, ts, dt, span):
    """The saved output, the paths' states and noise, and the time grid and (sdeint) whole paths
    of an SDE run, before anything is allocated."""
    from .backends import scan_

    m = 1 if system.noise == "scalar" else dim  # "general": m is not known yet; the state's dimension
    saves = n_steps + 1 if ts is None else len(ts)
    grid = {"jax": _memory.BYTES * scan_.NOISE_BLOCK_ELEMENTS * 4,  # noise blocks and their hashing
            "diffrax": _memory.OUTPUT_COPIES * _memory.BYTES * (n_steps + 1),  # the step grid
            "sdeint": _memory.BYTES * ((n_steps + 1) * (1 + 3 * dim) + n_steps * m)}[backend]  # a whole path
    noise = _memory.BYTES * 4 * m * (2 if backend == "jax" else 1)

    def saves_hint(n):
        if ts is None:
            return f"save fewer times: pass ts= with at most {_memory.count(n)} times on the grid (now every step)"
        return f"pass ts= with at most {_memory.count(n)} times"

    grid_hint = None if backend == "jax" else (
        f"a larger dt (the {backend} backend holds all {_memory.count(n_steps)} steps; the 'jax' backend does not)")
    what = f"{_what(paths, saves, width)} (t1 - t0 = {span:g} in steps of dt={dt:g}: {_memory.count(n_steps)} steps)"
    _memory.check_run(paths, saves, width, dim, adaptive=False, what=what, saves_hint=saves_hint,
                      noise_per_path=noise, grid=grid, grid_hint=grid_hint)


def _check_ode_memory(paths, dim, width, ts, fixed_steps, dt):
    """The saved output and the paths' working states of an ODE run (without ``ts`` a
    fixed-step method saves each of its ``fixed_steps`` steps; an adaptive one, those it takes)."""
    saves = (1 if fixed_steps is None else fixed_steps + 1) if ts is None else len(ts) + 1
    what = _what(paths, saves, width)
    if ts is None and fixed_steps is not None:
        what += f" (every step of dt={dt:g})"

    def saves_hint(n):
        return f"pass ts= with at most {_memory.count(n)} times" + (" (or a larger dt)" if fixed_steps else "")

    _memory.check_run(paths, saves, width, dim, adaptive=True, what=what, saves_hint=saves_hint)


def _check_iterate_memory(paths, dim, width, steps, every, saves):
    def saves_hint(n):
        return f"save every k-th step: pass every={_memory.count(-(-steps // max(n - 1, 1)))} or more (now every={every})"

    what = f"{_what(paths, saves, width)} (steps={_memory.count(steps)}, every={every})"
    _memory.check_run(paths, saves, width, dim, adaptive=False, what=what, saves_hint=saves_hint)
