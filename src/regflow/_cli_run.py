"""What ``regflow run`` and ``regflow portrait`` compute: an entry's flow (built with
``--set``) or a bare ODE/SDE from ``--y0``, a Map's iterates, and the phase portraits of both."""

from __future__ import annotations

import dataclasses

import jax
import numpy as np

from ._catalogue import Entry, Method, repeat_starts
from ._cli_args import UsageError
from ._cli_targets import build
from ._system import ODE, SDE, Map

#: Saved times of ``regflow run``.
RUN_SAVES = 201
#: ODE methods that take fixed steps (``--dt`` applies to them).
FIXED_STEP_METHODS = ("euler", "heun")
#: Padding around a bare system's trajectory when no --xlim/--ylim is given.
PORTRAIT_MARGIN = 0.15


def run(target, args):
    """(label, trajectory) of ``regflow run``: an entry's or bare system's flow, or a Map's iterates."""
    if isinstance(target, Map):
        return args.name, _iterate(target, args)
    label, method = _method(target, args)
    if args.steps is not None:
        raise UsageError(f"--steps applies to an rf.Map; {label}'s flow runs to --t1")
    starts = None if args.y0 is None else _start_of(label, method, args.y0)
    if args.paths is not None:
        first = jax.tree_util.tree_map(lambda leaf: leaf[:1], method.y0 if starts is None else starts)
        starts = repeat_starts(first, args.paths)
    traj = method.run_flow(y0=starts, saves=RUN_SAVES, paths=1 if args.paths else None, **_overrides(method, args))
    return label, traj


def _method(target, args):
    """(label, method) for an entry (built with --set) or a bare ODE/SDE (from --y0, --t1, --dt)."""
    if isinstance(target, Entry):
        return target.name, build(target, args.set)
    kind = f"{args.name} is a bare rf.{type(target).__name__}"
    if args.set:
        raise UsageError(f"--set: {kind} without parameters; change its args in its module, or declare an "
                         f"@rf.entry factory whose keyword parameters --set can change")
    if args.y0 is None:
        raise UsageError(f"{kind}: give its start with --y0, e.g. --y0 0.3,1.6")
    if args.t1 is None:
        raise UsageError(f"{kind}: give the end time with --t1, e.g. --t1 10")
    if isinstance(target, SDE) and args.dt is None:
        raise UsageError(f"{kind}: give the step with --dt, e.g. --dt 0.001")
    return args.name, Method(flow=target, y0=_one_start(args.y0), t1=args.t1, dt=args.dt)


def _overrides(method, args):
    """Keywords of `Method.run_flow` the flags change."""
    if args.dt is not None and isinstance(method.flow, ODE) and method.options.get("method") not in FIXED_STEP_METHODS:
        raise UsageError("--dt sets the step of an SDE or of a fixed-step method; this flow is an ODE solved "
                         "with an adaptive method, whose steps follow its tolerances")
    overrides = {"t1": args.t1, "seed": args.seed}
    overrides = {k: v for k, v in overrides.items() if v is not None}
    if args.dt is not None:
        overrides["dt"] = args.dt
    if args.backend != "auto":
        overrides["backend"] = args.backend
    return overrides


def _iterate(map_, args):
    from ._integrate import iterate

    kind = f"{args.name} is an rf.Map"
    for flag, value in (("--set", args.set), ("--dt", args.dt)):
        if value:
            raise UsageError(f"{flag}: {kind}; its step dt={map_.dt} and args are fixed in its module")
    if args.backend != "auto":
        raise UsageError(f"--backend: {kind}, iterated as is; backends integrate ODEs and SDEs")
    if args.y0 is None:
        raise UsageError(f"{kind}: give its start with --y0, e.g. --y0 0.3,1.6")
    steps = args.steps
    if steps is None:
        if args.t1 is None:
            raise UsageError(f"{kind}: give the number of steps with --steps N (or --t1 T for T/dt steps)")
        steps = round(args.t1 / map_.dt)
        if steps < 1:
            raise UsageError(f"--t1 {args.t1} is less than one step dt={map_.dt}; give --steps N instead")
    every = max(1, steps // (RUN_SAVES - 1))
    return iterate(map_, args.y0, steps, paths=args.paths, seed=args.seed or 0, every=every)


def _start_of(label, method, y0):
    """``--y0`` as one start of ``method``, whose leaves it must match."""
    want = jax.tree_util.tree_map(np.shape, method.start(0))
    got = jax.tree_util.tree_map(np.shape, y0)
    if jax.tree_util.tree_structure(want) != jax.tree_util.tree_structure(got) or want != got:
        example = ",".join(f"{v:g}" for v in np.ravel(method.start(0))) if isinstance(method.y0, np.ndarray) else ""
        raise UsageError(f"--y0: {label}'s state has shape {want}, got {got}"
                         + (f"; e.g. --y0 {example}" if example else ""))
    return _one_start(y0)


def _one_start(y0):
    """One start with the leading start axis `Method` expects."""
    return jax.tree_util.tree_map(lambda leaf: np.asarray(leaf)[None], y0)


# ----------------------------------------------------------------------------- portraits


def entry_portrait(entry, args):
    """The figure of ``regflow portrait`` for an entry: its view, changed by the flags."""
    from ._report import entry_portrait

    method = build(entry, args.set)
    if args.steps is not None:
        raise UsageError(f"--steps applies to an rf.Map; {entry.name}'s map runs its own steps={method.steps}")
    if not isinstance(method.y0, np.ndarray) or method.y0.ndim != 2 or method.y0.shape[1] < 2:
        raise UsageError(f"{entry.name} has no phase plane: a portrait needs a vector state of 2 or more coordinates")
    options = {**method.options, **_overrides(method, args)}
    changes = {k: options.pop(k) for k in ("t1", "seed", "dt") if k in options}
    view = dict(method.view or {})
    view.update({k: v for k, v in (("xlim", args.xlim), ("ylim", args.ylim)) if v is not None})
    if args.y0 is not None:
        changes["y0"] = _start_of(entry.name, method, args.y0)
    method = dataclasses.replace(method, options=options, view=view, **changes)
    names = method.flow.names or tuple(f"y{i}" for i in range(method.y0.shape[1]))
    x, y = _plane_names(entry.name, names, args.x or view.get("x"), args.y or view.get("y"))
    return entry_portrait(entry.name, method, x=x, y=y)


def system_portrait(system, args):
    """The figure of ``regflow portrait`` for a bare ODE, SDE or Map, run from ``--y0``."""
    from . import plot

    if args.y0 is None:
        kind = type(system).__name__
        raise UsageError(f"{args.name} is a bare rf.{kind}: give its start with --y0, e.g. --y0 0.3,1.6")
    if not (isinstance(args.y0, np.ndarray) and args.y0.ndim == 1 and args.y0.size >= 2):
        raise UsageError("--y0: a portrait needs a vector state of 2 or more coordinates, e.g. --y0 0.3,1.6")
    names = system.names or tuple(f"y{i}" for i in range(args.y0.size))
    x, y = _plane_names(args.name, names, args.x, args.y)
    if isinstance(system, Map):
        traj, label = _iterate(system, args), "map"
    else:
        traj, label = run(system, args)[1], "flow"
    names = traj.coordinate_names
    ix, iy = names.index(x), names.index(y)
    start = np.asarray(traj.flat[..., 0, :]).reshape(-1, len(names))[0]
    ax = plot.portrait(system, x=ix, y=iy, xlim=args.xlim or _span(traj.flat[..., ix]),
                       ylim=args.ylim or _span(traj.flat[..., iy]), at=start if len(names) > 2 else None,
                       trajectories={label: traj}, title=args.name)
    return ax.figure


def _plane_names(label, names, x, y):
    x = names[0] if x is None else x
    y = (names[1] if x != names[1] else names[0]) if y is None else y
    for flag, value in (("--x", x), ("--y", y)):
        if value not in names:
            raise UsageError(f"{flag}: {label} has no coordinate {value!r}; coordinates: {', '.join(names)}")
    if x == y:
        raise UsageError(f"--x and --y are both {x!r}; choose two different coordinates")
    return x, y


def _span(values):
    values = np.asarray(values)[np.isfinite(values)]
    lo, hi = (float(values.min()), float(values.max())) if values.size else (-1.0, 1.0)
    pad = PORTRAIT_MARGIN * (hi - lo) or max(1.0, abs(lo))
    return lo - pad, hi + pad
