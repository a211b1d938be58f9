"""Phase portraits, invariant level sets and trajectory plots (matplotlib).

Every function draws on ``ax`` (a new figure's Axes when ``None``) and returns the Axes, so
calls compose; `portrait` composes them all.  Coordinates ``x`` and ``y`` are an index into
the state or one of the system's ``names``.  For a state of dimension > 2 the picture is the
2-D slice through ``at`` (a full state; the other coordinates stay fixed at its values).
Nothing here calls ``plt.show``, so it runs under the ``Agg`` backend.

Fields and quantities are evaluated on a grid with one ``jax.jit(jax.vmap(...))`` per call.
`trace` draws what a claim's row measured (a `regflow.claims.Trace`), by its kind.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import matplotlib.pyplot as plt
import numpy as np
from matplotlib.colors import ListedColormap, LogNorm
from matplotlib.lines import Line2D

from ._plot_traces import trace
from ._system import ODE, SDE, Map
from ._trajectory import Trajectory

__all__ = ["band", "equilibria", "level_sets", "nullclines", "portrait", "starts", "streamlines", "time_series",
           "trace", "trajectories"]

#: Grid points per axis behind ``streamplot`` and behind contours (nullclines, level sets, bands).
STREAM_GRID = 80
CONTOUR_GRID = 241
#: Streamline look: matplotlib's ``density``, line width, arrow size, colour map of the speed.
STREAM_DENSITY = 1.4
STREAM_LINEWIDTH = 0.9
STREAM_ARROWSIZE = 0.9
STREAM_CMAP = "Greys"
#: The part of STREAM_CMAP used, slow to fast (the lightest greys would vanish on white).
STREAM_CMAP_RANGE = (0.35, 0.95)
CMAP_SAMPLES = 256
#: Streamlines are faded so that what is drawn over them (paths, level sets, markers) stands out.
STREAM_ALPHA = 0.8
#: With ``log=True`` speeds below this fraction of the largest are shown as this fraction.
SPEED_FLOOR = 1e-4
NULLCLINE_COLORS = ("tab:red", "tab:purple")
NULLCLINE_STYLE = {"linestyles": "--", "linewidths": 1.3}
#: Level sets: number of levels when none are given, colour, width, size of the inline labels.
DEFAULT_LEVELS = 9
LEVEL_COLOR = "teal"
LEVEL_LINEWIDTH = 0.8
LEVEL_FONTSIZE = 8
LEVEL_FORMAT = "%.3g"
MINIMA_COLOR = "black"
MINIMA_LINEWIDTH = 2.6
BAND_COLOR = "tab:orange"
BAND_ALPHA = 0.22
#: Trajectories: a single flow path, each path of an ensemble, a map's iterates.
TRAJECTORY_LINEWIDTH = 2.0
ENSEMBLE_LINEWIDTH = 1.0
ENSEMBLE_ALPHA = 0.7
MAP_MARKER = "o"
MAP_MARKERSIZE = 3.5
MAP_LINEWIDTH = 0.7
#: Noise sample paths of an SDE: thin and faint, so that a few of them read as a spread.
SAMPLE_PATH_LINEWIDTH = 0.7
SAMPLE_PATH_ALPHA = 0.5
TRAJECTORY_STYLES = ("auto", "line", "markers", "paths")
#: Start points: marker, size, face and edge colours.
START_MARKER = "o"
START_SIZE = 30
START_FACE = "gold"
START_EDGE = "black"
START_ZORDER = 6
#: time_series of an ensemble: mean and this band of quantiles across paths.
QUANTILES = (0.05, 0.95)
QUANTILE_ALPHA = 0.25
#: Equilibrium markers: kind -> (marker, face colour), all edged in EQUILIBRIUM_EDGE ("white": open).
EQUILIBRIUM_STYLE = {
    "sink": ("o", "tab:green"),
    "source": ("o", "white"),
    "saddle": ("X", "tab:red"),
    "center": ("s", "tab:cyan"),
    "non-hyperbolic": ("^", "white"),
    "degenerate sink": ("D", "tab:green"),
    "degenerate source": ("D", "white"),
    "degenerate saddle": ("P", "tab:red"),
    "degenerate center": ("s", "white"),
    "degenerate non-hyperbolic": ("v", "white"),
    "degenerate": ("*", "tab:gray"),
}
UNKNOWN_KIND_STYLE = ("h", "tab:gray")
EQUILIBRIUM_EDGE = "black"
EQUILIBRIUM_EDGEWIDTH = 1.2
EQUILIBRIUM_SIZE = 70
EQUILIBRIUM_ZORDER = 5
#: portrait of a slice: equilibria farther than this (times max(1, |at|)) from the plane are left out.
SLICE_TOL = 1e-6
LEGEND_FONTSIZE = "small"
#: A portrait on a figure of its own: size in inches; its legend sits right of the plot.
PORTRAIT_FIGSIZE = (8.0, 5.5)
OUTSIDE_LEGEND = {"loc": "upper left", "bbox_to_anchor": (1.02, 1.0), "borderaxespad": 0.0}


# ----------------------------------------------------------------------------- validation


def _coord(c, names, dim, argname):
    if isinstance(c, str):
        if not names or c not in names:
            raise ValueError(f"{argname}={c!r} is not a coordinate name; the names are {names}; "
                             "pass one of them or an index")
        return names.index(c)
    if isinstance(c, bool) or not isinstance(c, (int, np.integer)):
        raise TypeError(f"{argname} must be a coordinate index or name, got {c!r}")
    if not -dim <= c < dim:
        raise ValueError(f"{argname}={c} is out of range for a state of dimension {dim}")
    return int(c) % dim


def _plane(x, y, names, dim):
    ix, iy = _coord(x, names, dim, "x"), _coord(y, names, dim, "y")
    if ix == iy:
        raise ValueError(f"x and y must be different coordinates, both are coordinate {ix}; e.g. x=0, y=1")
    return ix, iy


def _lim(lim, argname):
    try:
        lo, hi = (float(v) for v in lim)
    except (TypeError, ValueError):
        raise ValueError(f"{argname} must be a pair (lo, hi) of numbers, got {lim!r}") from None
    if not (math.isfinite(lo) and math.isfinite(hi) and lo < hi):
        raise ValueError(f"{argname} must be an increasing pair of finite numbers (lo < hi), got {lim!r}")
    return lo, hi


def _slice(names, at, x, y, xlim, ylim):
    """Validated plane: coordinate indices, the base state ``at`` and the limits."""
    dim = len(names) if names else (2 if at is None else np.size(at))
    if at is None:
        if dim != 2:
            raise ValueError(f"at is required for a state of dimension {dim}: pass the full state of shape "
                             f"({dim},) the 2-D slice goes through")
        at = np.zeros(dim)
    at = np.asarray(at, dtype=np.float64)
    if at.shape != (dim,) or not np.all(np.isfinite(at)):
        raise ValueError(f"at must be a finite state of shape ({dim},), got {at.tolist()}")
    ix, iy = _plane(x, y, names, dim)
    return ix, iy, at, _lim(xlim, "xlim"), _lim(ylim, "ylim")


def _field(system, t, args):
    """The velocity ``y -> f(t, y)``; for a Map the displacement per unit flow time."""
    args = system.args if args is None else args
    if isinstance(system, Map):
        if system.stochastic:
            raise TypeError("system: a stochastic Map has no deterministic field; plot its full-batch map")
        k = round(t / system.dt)
        return lambda y: (system.step(k, y, args) - y) / system.dt
    if isinstance(system, (ODE, SDE)):
        return lambda y: system.drift(t, y, args)
    raise TypeError(f"system must be an rf.ODE, rf.SDE or rf.Map, got {type(system).__name__}")


def _on_grid(fn, at, ix, iy, xlim, ylim, n, shape, what):
    """``fn`` on an n x n grid of the plane through ``at``: (X, Y, values of shape (n, n, *shape))."""
    got = jax.eval_shape(fn, jnp.asarray(at)).shape
    if got != shape:
        raise ValueError(f"{what} returns shape {got} at a state of shape {at.shape}; it must return {shape}")
    X, Y = np.meshgrid(np.linspace(*xlim, n), np.linspace(*ylim, n))
    states = np.tile(at, (X.size, 1))
    states[:, ix], states[:, iy] = X.ravel(), Y.ravel()
    values = np.asarray(jax.jit(jax.vmap(fn))(jnp.asarray(states)))
    return X, Y, np.ma.masked_invalid(values.reshape(X.shape + shape))


# ----------------------------------------------------------------------------- axes helpers


def _axes(ax, figsize=None):
    return plt.subplots(figsize=figsize, layout="constrained")[1] if ax is None else ax


def _finish(ax, names, ix, iy, xlim=None, ylim=None):
    for i, set_label, get_label in ((ix, ax.set_xlabel, ax.get_xlabel), (iy, ax.set_ylabel, ax.get_ylabel)):
        if names or not get_label():
            set_label(names[i] if names else f"y{i}")
    if xlim is not None:
        ax.set_xlim(xlim)
        ax.set_ylim(ylim)
    return ax


def _legend(ax, outside=False):
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=LEGEND_FONTSIZE, **(OUTSIDE_LEGEND if outside else {}))


def _proxy(ax, label, **style):
    """A data-less line standing for a contour set in the legend (legends do not take contours)."""
    if label:
        ax.add_line(Line2D([], [], label=label, **style))
        _legend(ax)


# ----------------------------------------------------------------------------- vector fields


def streamlines(system, *, x=0, y=1, xlim, ylim, at=None, args=None, t=0.0, density=STREAM_DENSITY,
                log=False, colorbar=False, ax=None, **kw):
    """Streamlines of a flow (ODE field, SDE drift, or a Map's ``(step(y) - y) / dt``) coloured by speed.

    ``log=True`` colours on a log scale; ``colorbar=True`` adds a colour bar; ``kw`` go to
    ``Axes.streamplot``.  In a slice of a state of dimension > 2 the arrows and the speed are
    the in-plane components.

    Example
    -------
    >>> import regflow as rf, regflow.plot as rfp, jax.numpy as jnp
    >>> rot = rf.ODE(lambda t, y, a: jnp.array([-y[1], y[0]]), names=("x", "y"))
    >>> ax = rfp.streamlines(rot, xlim=(-1, 1), ylim=(-1, 1))
    """
    ix, iy, at, xlim, ylim = _slice(system.names, at, x, y, xlim, ylim)
    X, Y, F = _on_grid(_field(system, t, args), at, ix, iy, xlim, ylim, STREAM_GRID, at.shape, "the system")
    U, V = F[..., ix], F[..., iy]
    speed = np.ma.hypot(U, V)
    norm = None
    if log and speed.max() > 0:
        norm = LogNorm(vmin=max(speed.min(), SPEED_FLOOR * speed.max()), vmax=speed.max())
    ax = _axes(ax)
    cmap = ListedColormap(plt.get_cmap(STREAM_CMAP)(np.linspace(*STREAM_CMAP_RANGE, CMAP_SAMPLES)))
    style = {"density": density, "color": speed, "cmap": cmap, "norm": norm,
             "linewidth": STREAM_LINEWIDTH, "arrowsize": STREAM_ARROWSIZE, **kw}
    alpha = style.pop("alpha", STREAM_ALPHA)
    stream = ax.streamplot(X[0], Y[:, 0], U, V, **style)
    stream.lines.set_alpha(alpha)
    stream.arrows.set_alpha(alpha)
    if colorbar:
        ax.figure.colorbar(stream.lines, ax=ax, label="speed")
    return _finish(ax, system.names, ix, iy, xlim, ylim)


def nullclines(system, *, x=0, y=1, xlim, ylim, at=None, args=None, t=0.0, ax=None):
    """The zero sets of the ``x`` and ``y`` components of the field (dashed), labelled in the legend.

    Example
    -------
    >>> import regflow as rf, regflow.plot as rfp, jax.numpy as jnp
    >>> ode = rf.ODE(lambda t, y, a: jnp.array([y[1] - y[0] ** 2, -y[0]]), names=("u", "v"))
    >>> ax = rfp.nullclines(ode, xlim=(-1, 1), ylim=(-1, 1))
    """
    ix, iy, at, xlim, ylim = _slice(system.names, at, x, y, xlim, ylim)
    X, Y, F = _on_grid(_field(system, t, args), at, ix, iy, xlim, ylim, CONTOUR_GRID, at.shape, "the system")
    ax = _axes(ax)
    for i, color in zip((ix, iy), NULLCLINE_COLORS):
        if F[..., i].min() < 0 < F[..., i].max():
            ax.contour(X, Y, F[..., i], levels=[0.0], colors=color, **NULLCLINE_STYLE)
            name = system.names[i] if system.names else f"y{i}"
            label = f"Δ{name} = 0" if isinstance(system, Map) else f"d{name}/dt = 0"
            _proxy(ax, label, color=color, linestyle=NULLCLINE_STYLE["linestyles"])
    return _finish(ax, system.names, ix, iy, xlim, ylim)


# ----------------------------------------------------------------------------- quantities


def level_sets(q, *, x=0, y=1, xlim, ylim, levels=DEFAULT_LEVELS, at=None, args=None, names=None,
               label=None, inline=True, ax=None, **kw):
    """Contour lines of a quantity ``q(y, args)`` over the plane; ``levels`` a count or values.

    ``inline`` writes the level values on the lines; ``kw`` go to ``Axes.contour``.

    Example
    -------
    >>> import regflow.plot as rfp
    >>> imbalance = lambda w, a: w[0] ** 2 - w[1] ** 2
    >>> ax = rfp.level_sets(imbalance, xlim=(-2, 2), ylim=(-2, 2), levels=[-1, 0, 1], names=("w1", "w2"))
    """
    ix, iy, at, xlim, ylim = _slice(names, at, x, y, xlim, ylim)
    X, Y, Z = _on_grid(lambda s: q(s, args), at, ix, iy, xlim, ylim, CONTOUR_GRID, (), "q")
    ax = _axes(ax)
    style = {"colors": LEVEL_COLOR, "linewidths": LEVEL_LINEWIDTH, "negative_linestyles": "solid", **kw}
    levels = np.sort(np.atleast_1d(levels)) if np.ndim(levels) else levels
    cs = ax.contour(X, Y, Z, levels=levels, **style)
    if inline and len(cs.levels):
        ax.clabel(cs, fmt=LEVEL_FORMAT, fontsize=LEVEL_FONTSIZE)
    color = style["colors"] if isinstance(style["colors"], str) else None
    _proxy(ax, label, color=color, linewidth=np.max(style["linewidths"]))
    return _finish(ax, names, ix, iy, xlim, ylim)


def band(q, lower, upper, *, x=0, y=1, xlim, ylim, at=None, args=None, names=None, label=None,
         color=BAND_COLOR, ax=None):
    """Shade where ``lower <= q(y, args) <= upper`` (either bound may be ``-inf``/``inf``).

    Example
    -------
    >>> import regflow.plot as rfp
    >>> loss = lambda w, a: (w[0] * w[1] - 1.0) ** 2
    >>> ax = rfp.band(loss, 0.0, 0.1, xlim=(-2, 2), ylim=(-2, 2), label="L <= 0.1")
    """
    lower, upper = float(lower), float(upper)
    if not lower < upper:
        raise ValueError(f"lower must be below upper, got lower={lower}, upper={upper}")
    ix, iy, at, xlim, ylim = _slice(names, at, x, y, xlim, ylim)
    X, Y, Z = _on_grid(lambda s: q(s, args), at, ix, iy, xlim, ylim, CONTOUR_GRID, (), "q")
    ax = _axes(ax)
    zmin, zmax = Z.min(), Z.max()
    lo, hi = max(lower, np.nextafter(zmin, -np.inf)), min(upper, np.nextafter(zmax, np.inf))
    if lo < hi:  # otherwise the band misses the plotted region
        ax.contourf(X, Y, Z, levels=[lo, hi], colors=[color], alpha=BAND_ALPHA)
    if label:
        ax.fill_between([], [], [], color=color, alpha=BAND_ALPHA, label=label)
        _legend(ax)
    return _finish(ax, names, ix, iy, xlim, ylim)


# ----------------------------------------------------------------------------- points and paths


def equilibria(eqs, *, x=0, y=1, names=None, ax=None):
    """Mark equilibria (``rf.Equilibrium`` objects) by kind, one legend entry per kind.

    Sinks are filled circles, sources open circles, saddles crosses; the degenerate kinds
    (on manifolds of equilibria) diamonds, pluses and stars (see ``EQUILIBRIUM_STYLE``).

    Example
    -------
    >>> import regflow as rf, regflow.plot as rfp, jax, jax.numpy as jnp
    >>> loss = lambda w, a: (w[0] * w[1] - 1.0) ** 2
    >>> flow = rf.ODE(lambda t, w, a: -jax.grad(loss)(w, a), names=("w1", "w2"))
    >>> eqs = rf.equilibria(flow, [[0.0, 0.0], [1.1, 0.8]])
    >>> ax = rfp.equilibria(eqs, names=flow.names)
    """
    eqs = list(eqs)
    if not eqs:
        return _axes(ax)
    points = np.array([np.asarray(e.point, dtype=np.float64) for e in eqs])
    ix, iy = _plane(x, y, names, points.shape[-1])
    ax = _axes(ax)
    for kind in dict.fromkeys(e.kind for e in eqs):
        marker, face = EQUILIBRIUM_STYLE.get(kind, UNKNOWN_KIND_STYLE)
        at = points[[e.kind == kind for e in eqs]]
        ax.scatter(at[:, ix], at[:, iy], s=EQUILIBRIUM_SIZE, marker=marker, facecolors=face,
                   edgecolors=EQUILIBRIUM_EDGE, linewidths=EQUILIBRIUM_EDGEWIDTH, zorder=EQUILIBRIUM_ZORDER,
                   label=kind)
    _legend(ax)
    return _finish(ax, names, ix, iy)


def _is_map(traj):
    return traj.meta.get("method") == "iterate"


def _is_sde(traj):
    return str(traj.meta.get("system", "")).startswith("SDE")


def _draw_path(ax, xs, ys, color, label, style, ensemble, kw):
    if style == "markers":
        look = {"marker": MAP_MARKER, "markersize": MAP_MARKERSIZE * (ENSEMBLE_ALPHA if ensemble else 1),
                "linewidth": MAP_LINEWIDTH}
    elif style == "paths":
        look = {"linewidth": SAMPLE_PATH_LINEWIDTH, "alpha": SAMPLE_PATH_ALPHA}
    else:
        look = {"linewidth": ENSEMBLE_LINEWIDTH if ensemble else TRAJECTORY_LINEWIDTH}
    if ensemble and style != "paths":
        look["alpha"] = ENSEMBLE_ALPHA
    return ax.plot(xs, ys, color=color, label=label, **{**look, **kw})[0].get_color()


def trajectories(trajs, *, x=0, y=1, ax=None, label=None, style="auto", color=None, **kw):
    """Draw one or several `Trajectory` in the (x, y) plane (a slice is shown projected).

    An ensemble draws every path thinly.  ``style``: ``"line"``, ``"markers"`` (iterates with
    a thin line), ``"paths"`` (thin, faint lines: noise sample paths) or ``"auto"`` (markers for
    a Map's iterates, ``"paths"`` for an SDE ensemble, lines for flows), so a map, its flow and
    the noise read apart on one plot.  ``label``: one string (one legend entry and one colour for
    all) or one label per trajectory (each its own colour).  ``kw`` go to ``Axes.plot``.

    Example
    -------
    >>> import regflow as rf, regflow.plot as rfp
    >>> halve = rf.Map(lambda k, y, a: 0.5 * y, dt=1.0, names=("a", "b"))
    >>> ax = rfp.trajectories(rf.iterate(halve, [1.0, 2.0], 5), label="halving")
    """
    trajs = [trajs] if isinstance(trajs, Trajectory) else list(trajs)
    if not all(isinstance(tr, Trajectory) for tr in trajs):
        raise TypeError("trajs must be an rf.Trajectory or a sequence of them")
    if style not in TRAJECTORY_STYLES:
        raise ValueError(f"style must be one of {TRAJECTORY_STYLES}, got {style!r}")
    if label is None or isinstance(label, str):
        labels = [label] + [None] * (len(trajs) - 1)
    else:
        labels = list(label)
        if len(labels) != len(trajs):
            raise ValueError(f"label has {len(labels)} entries for {len(trajs)} trajectories; give one per trajectory")
    ax = _axes(ax)
    shared = isinstance(label, str)
    for traj, lab in zip(trajs, labels):
        ix, iy = _plane(x, y, traj.names, traj.y.shape[-1])
        look = style
        if style == "auto":
            look = "markers" if _is_map(traj) else "paths" if traj.is_ensemble and _is_sde(traj) else "line"
        paths = traj.y if traj.is_ensemble else traj.y[None]
        drawn = color
        for path in paths:
            drawn = _draw_path(ax, path[:, ix], path[:, iy], drawn, lab, look, traj.is_ensemble, kw)
            lab = None
        color = drawn if shared else color
        _finish(ax, traj.names, ix, iy)
    _legend(ax)
    return ax


def starts(points, *, x=0, y=1, names=None, label="start", ax=None):
    """Mark start points ``points`` (shape (n, dim), or one state) in the (x, y) plane.

    Example
    -------
    >>> import regflow.plot as rfp
    >>> ax = rfp.starts([[0.3, 1.6], [1.8, 0.2]], names=("w1", "w2"))
    """
    points = np.atleast_2d(np.asarray(points, dtype=np.float64))
    if points.ndim != 2:
        raise ValueError(f"points must be one state or an array of shape (n, dim), got shape {points.shape}")
    ix, iy = _plane(x, y, names, points.shape[-1])
    ax = _axes(ax)
    ax.scatter(points[:, ix], points[:, iy], s=START_SIZE, marker=START_MARKER, facecolors=START_FACE,
               edgecolors=START_EDGE, linewidths=EQUILIBRIUM_EDGEWIDTH, zorder=START_ZORDER, label=label)
    _legend(ax)
    return _finish(ax, names, ix, iy)


def time_series(traj, quantities, *, args=None, ax=None):
    """Plot quantities ``q(y, args)`` along a trajectory against time.

    ``quantities`` maps a legend label to ``q``.  For an ensemble: the mean over paths and the
    band between the ``QUANTILES`` (5% and 95%) of the paths.

    Example
    -------
    >>> import regflow as rf, regflow.plot as rfp, jax.numpy as jnp
    >>> traj = rf.integrate(rf.ODE(lambda t, y, a: -y), jnp.ones(2), 1.0)
    >>> ax = rfp.time_series(traj, {"|y|^2": lambda y, a: y @ y})
    """
    if not isinstance(traj, Trajectory):
        raise TypeError(f"traj must be an rf.Trajectory, got {type(traj).__name__}")
    if not isinstance(quantities, dict) or not quantities or not all(map(callable, quantities.values())):
        raise ValueError("quantities must be a non-empty dict {label: q(y, args)}")
    ax = _axes(ax)
    marker = MAP_MARKER if _is_map(traj) else None
    for name, q in quantities.items():
        values = traj.evaluate(q, args)
        if traj.is_ensemble:
            mean = np.nanmean(values, axis=0)
            (line,) = ax.plot(traj.t, mean, marker=marker, markersize=MAP_MARKERSIZE, label=f"{name} (mean)")
            lo, hi = np.nanquantile(values, QUANTILES, axis=0)
            ax.fill_between(traj.t, lo, hi, color=line.get_color(), alpha=QUANTILE_ALPHA,
                            label=f"{name} ({QUANTILES[0]:.0%}-{QUANTILES[1]:.0%})")
        else:
            ax.plot(traj.t, values, marker=marker, markersize=MAP_MARKERSIZE, label=name)
    ax.set_xlabel("t")
    _legend(ax)
    return ax


# ----------------------------------------------------------------------------- composition

_mark_equilibria, _draw_trajectories, _draw_nullclines, _mark_starts = equilibria, trajectories, nullclines, starts


def _in_slice(eqs, at, ix, iy):
    off = np.ones(at.shape, dtype=bool)
    off[[ix, iy]] = False
    tol = SLICE_TOL * max(1.0, float(np.linalg.norm(at)))
    return [e for e in eqs if np.all(np.abs(np.asarray(e.point)[off] - at[off]) <= tol)]


def portrait(system, *, x=0, y=1, xlim, ylim, at=None, args=None, equilibria=None, trajectories=(),
             invariant=None, invariant_levels=None, minima=None, bands=(), nullclines=True, starts=None,
             density=STREAM_DENSITY, ax=None, title=None):
    """A phase portrait: bands, streamlines, invariant level sets, nullclines, the minima set,
    trajectories, start points and equilibria, bottom to top.

    Parameters
    ----------
    system : ODE, SDE (its drift) or deterministic Map (its displacement per unit time).
    x, y : coordinate index or name; xlim, ylim : increasing pairs.
    at : full state the slice goes through (required for dimension > 2).
    equilibria : list of ``rf.Equilibrium``, or guesses (shape (n, dim)) handed to
        ``rf.equilibria``.  In a slice only those lying in it are marked.
    trajectories : a `Trajectory`, a sequence of them, or a dict ``{label: trajectories}``
        (an SDE ensemble is drawn as thin, faint sample paths).
    invariant, invariant_levels : a quantity ``q(y, args)`` and its levels (count or values).
    minima : ``(q, level)``: the set ``q == level`` drawn as a thick line.
    bands : sequence of ``(q, lower, upper)`` or ``(q, lower, upper, label)``.
    nullclines : draw the nullclines.
    starts : start points (shape (n, dim)) to mark; projected in a slice.
    density : of the streamlines (matplotlib's ``streamplot`` density).

    Example
    -------
    >>> import regflow as rf, regflow.plot as rfp, jax, jax.numpy as jnp
    >>> loss = lambda w, a: (w[0] * w[1] - 1.0) ** 2
    >>> flow = rf.ODE(lambda t, w, a: -jax.grad(loss)(w, a), names=("w1", "w2"))
    >>> traj = rf.integrate(flow, jnp.array([2.0, 0.1]), 5.0)
    >>> ax = rfp.portrait(flow, xlim=(-2.5, 2.5), ylim=(-2.5, 2.5), equilibria=[[0.0, 0.0], [1.0, 1.0]],
    ...                   trajectories=traj, invariant=lambda w, a: w[0] ** 2 - w[1] ** 2,
    ...                   minima=(lambda w, a: w[0] * w[1], 1.0))
    """
    ix, iy, at, xlim, ylim = _slice(system.names, at, x, y, xlim, ylim)
    plane = {"x": ix, "y": iy, "xlim": xlim, "ylim": ylim, "at": at, "args": args}
    quantity_args = system.args if args is None else args
    slice_of = {**plane, "args": quantity_args, "names": system.names}
    if not all(3 <= len(entry) <= 4 for entry in bands):
        raise ValueError("bands must hold tuples (q, lower, upper) or (q, lower, upper, label)")
    if minima is not None and (len(minima) != 2 or not callable(minima[0])):
        raise ValueError("minima must be a pair (q, level): the set q(y, args) == level is drawn")
    ax = _axes(ax, PORTRAIT_FIGSIZE)
    for entry in bands:
        band(*entry[:3], label=entry[3] if len(entry) == 4 else None, ax=ax, **slice_of)
    streamlines(system, density=density, ax=ax, **plane)
    if invariant is not None:
        levels = DEFAULT_LEVELS if invariant_levels is None else invariant_levels
        level_sets(invariant, levels=levels, label="invariant level sets", ax=ax, **slice_of)
    if nullclines:
        _draw_nullclines(system, ax=ax, **plane)
    if minima is not None:
        q, level = minima
        level_sets(q, levels=[level], colors=MINIMA_COLOR, linewidths=MINIMA_LINEWIDTH, inline=False,
                   label="minima", ax=ax, **slice_of)
    groups = trajectories.items() if isinstance(trajectories, dict) else [(None, trajectories)]
    for label, group in groups:
        if isinstance(group, Trajectory) or len(group):
            _draw_trajectories(group, x=ix, y=iy, label=label, ax=ax)
    if starts is not None:
        _mark_starts(starts, x=ix, y=iy, names=system.names, ax=ax)
    if equilibria is not None and len(equilibria):
        if not all(hasattr(e, "kind") and hasattr(e, "point") for e in equilibria):
            from ._equilibria import equilibria as find_equilibria

            equilibria = find_equilibria(system, equilibria, args)
        _mark_equilibria(_in_slice(equilibria, at, ix, iy), x=ix, y=iy, names=system.names, ax=ax)
    if title:
        ax.set_title(title)
    _legend(ax, outside=True)
    return _finish(ax, system.names, ix, iy, xlim, ylim)
