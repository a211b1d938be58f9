"""The report of ``regflow check ... --report DIR``: a markdown file with one section per paper
(catalogue module) and per entry its parameters, seed and library versions, its claim table,
its phase portrait and one panel per row drawing what the row measured (its `Trace`)."""

from __future__ import annotations

import importlib
import inspect
import math
import os
import re
import textwrap
from collections.abc import Mapping

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from ._catalogue import Method  # noqa: E402
from ._integrate import iterate  # noqa: E402
from ._progress import progress_bar  # noqa: E402
from ._system import SDE  # noqa: E402
from ._trajectory import Trajectory  # noqa: E402

#: Guesses per axis for the equilibria marked on a portrait.
EQUILIBRIUM_GUESSES = 4
#: Saved times of a portrait's flow run when none is given (the claims' runs save as many).
PORTRAIT_SAVES = 201
#: Map iterates drawn per path at most (evenly thinned).
PORTRAIT_MAP_POINTS = 200
#: Noise sample paths drawn per start on an SDE portrait.
SDE_PATHS_SHOWN = 3
PORTRAIT_FIGSIZE = (7.5, 5.5)
#: Colours of a portrait's runs: the map's iterates, the flow (an SDE's sample paths).
RUN_COLORS = {"map": "tab:orange", "flow": "tab:blue", "SDE": "tab:blue"}
#: Streamline density of a report's portrait (drawing them is most of a portrait's time).
PORTRAIT_DENSITY = 1.0
#: Claim panels: at most this many per row of panels; each an axes of this size (inches) with
#: room around it for tick labels and two-line axis labels (left, right), its title and verdict
#: (top, bottom).  A fixed layout: measuring every text to lay panels out costs more than drawing them.
PANELS_PER_ROW = 4
PANEL_AXES = (2.85, 1.95)
PANEL_PAD = {"left": 0.8, "right": 0.15, "top": 0.75, "bottom": 0.8}
SUPTITLE_HEIGHT = 0.35
#: Panel titles are wrapped at this many characters; the check text keeps at most two lines.
TITLE_WIDTH = 46
TITLE_FONTSIZE = 7
VERDICT_FONTSIZE = 6
PASS_COLOR, FAIL_COLOR, VACUOUS_COLOR = "black", "tab:red", "tab:orange"
FIGURE_DPI = 90
#: Versions listed per entry, in this order (others follow).
VERSION_ORDER = ("regflow", "jax", "jaxlib", "diffrax", "numpy", "scipy", "sdeint")


# ----------------------------------------------------------------------------- portraits


def _vector_dim(method):
    """The dimension of a method's vector state, or None for a pytree state."""
    y0 = method.y0
    return y0.shape[1] if isinstance(y0, np.ndarray) and y0.ndim == 2 else None


def has_portrait(method) -> bool:
    """Whether the report draws a portrait of ``method``: a vector state of dimension >= 2 and a
    ``view`` that names the plane (``x`` and ``y``), or a 2-D state with a view."""
    dim = _vector_dim(method)
    if method.view is None or dim is None or dim < 2:
        return False
    return dim == 2 or {"x", "y"} <= set(method.view)


def _thinned(traj, paths=None, max_points=None):
    """``traj`` (a vector state) as an ensemble of the chosen ``paths`` at no more than ``max_points``
    evenly spaced saves (the last kept)."""
    flat = traj.flat if traj.is_ensemble else traj.flat[None]
    if paths is not None:
        flat = flat[np.asarray(paths)]
    keep = np.arange(len(traj.t))
    if max_points is not None and len(keep) > max_points:
        keep = np.unique(np.linspace(0, len(keep) - 1, max_points).round().astype(int))
    return Trajectory(traj.t[keep], flat[:, keep], names=traj.names, status=traj.status, meta=traj.meta,
                      ensemble=True)


def _sample_paths(traj, starts):
    """Up to `SDE_PATHS_SHOWN` noise paths per start of an SDE run (its paths are start-major)."""
    per_start = max(1, traj.paths // max(1, starts))
    shown = min(per_start, SDE_PATHS_SHOWN)
    return [s * per_start + j for s in range(starts) for j in range(shown)], shown


def _portrait_runs(method, runs):
    """The flow and map runs a portrait draws, labelled: from ``runs`` where given, else run here."""
    runs = dict(runs or {})
    drawn = {}
    if method.map is not None:  # drawn first, so the flow's lines stay visible over its markers
        steps = method.steps or 1000
        run = runs.get("map")
        if run is None:
            run = iterate(method.map, method.y0, steps, seed=method.seed, batched=True,
                          every=max(1, steps // PORTRAIT_MAP_POINTS))
        paths = None
        if method.map.stochastic and run.paths > method.n_starts:
            paths = _sample_paths(run, method.n_starts)[0]
        drawn["map iterates"] = _thinned(run, paths, PORTRAIT_MAP_POINTS)
    flow = runs.get("flow")
    if flow is None:
        flow = method.run_flow(saves=PORTRAIT_SAVES)
    if isinstance(method.flow, SDE):
        paths, shown = _sample_paths(flow, method.n_starts)
        drawn[f"SDE sample paths ({shown} per start)"] = _thinned(flow, paths)
    else:
        drawn["flow"] = _thinned(flow)
    return drawn


def entry_portrait(name, method, *, x=None, y=None, runs=None):
    """A figure: the phase portrait of ``method`` in its ``view`` window, with its flow (an SDE's
    noise sample paths, a few per start) and map runs, the start points, the equilibria (for a
    2-D state), the invariant's level sets and the minima set.

    ``runs`` ({"flow": Trajectory, "map": Trajectory}, either optional) are runs of the method
    made already (e.g. by its check); what is missing is run here."""
    from . import plot
    from ._equilibria import equilibria

    dim = _vector_dim(method)
    if dim is None or dim < 2:
        raise ValueError(f"{name}: a portrait needs a vector state of dimension >= 2")
    view = dict(method.view or {})
    names = method.flow.names or tuple(f"y{i}" for i in range(dim))
    x = x or view.get("x", names[0])
    y = y or view.get("y", names[1])
    xlim, ylim = view.get("xlim", (-2.0, 2.0)), view.get("ylim", (-2.0, 2.0))
    at = method.y0[0] if dim > 2 else None
    drawn = _portrait_runs(method, runs)
    found = None
    if dim == 2:
        gx, gy = np.meshgrid(np.linspace(*xlim, EQUILIBRIUM_GUESSES), np.linspace(*ylim, EQUILIBRIUM_GUESSES))
        found = equilibria(method.flow, np.column_stack([gx.ravel(), gy.ravel()]) + 1e-3)
    minima = (view["minima"], 1.0) if "minima" in view else None
    fig, ax = plt.subplots(figsize=PORTRAIT_FIGSIZE, layout="constrained")
    ax.set_prop_cycle(color=[RUN_COLORS[label.split()[0]] for label in drawn])
    plot.portrait(method.flow, x=x, y=y, xlim=xlim, ylim=ylim, at=at, equilibria=found, trajectories=drawn,
                  invariant=view.get("invariant"), minima=minima, starts=method.y0, density=PORTRAIT_DENSITY, ax=ax,
                  title=name)
    return fig


# ----------------------------------------------------------------------------- claim panels


def _wrap(text, lines=None):
    out = textwrap.wrap(str(text), TITLE_WIDTH) or [""]
    if lines is not None and len(out) > lines:
        out = out[:lines]
        out[-1] = out[-1][: TITLE_WIDTH - 1] + "…"
    return "\n".join(out)


def _panel(ax, number, row):
    from . import plot

    plot.trace(row.trace, ax=ax)
    outcome = "PASS" if row.passed else "FAIL"
    title = f"#{number} {row.claim}\n{_wrap(row.check, 2)}\n{outcome}: {row.measured:.3g} (want {row.tolerance})"
    ax.set_title(_wrap_title(title), fontsize=TITLE_FONTSIZE, color=PASS_COLOR if row.passed else FAIL_COLOR)
    if row.verdict:
        ax.annotate(_wrap(row.verdict, 2), xy=(0.5, 0.0), xycoords="axes fraction", xytext=(0, -31),
                    textcoords="offset points", ha="center", va="top", fontsize=VERDICT_FONTSIZE,
                    style="italic", color=VACUOUS_COLOR if row.verdict == "vacuous" else "dimgray")


def _wrap_title(title):
    return "\n".join(_wrap(line) for line in title.split("\n"))


def traces_figure(name, rows):
    """One figure with a panel per ``(number, row)`` (rows with a trace), `PANELS_PER_ROW` to a
    row of panels; None when there is none."""
    rows = [(n, r) for n, r in rows if r.trace is not None]
    if not rows:
        return None
    cols = min(PANELS_PER_ROW, len(rows))
    lines = math.ceil(len(rows) / cols)
    pad = PANEL_PAD
    cell = (PANEL_AXES[0] + pad["left"] + pad["right"], PANEL_AXES[1] + pad["top"] + pad["bottom"])
    size = (cell[0] * cols, cell[1] * lines + SUPTITLE_HEIGHT)
    fig, axes = plt.subplots(lines, cols, figsize=size, squeeze=False, gridspec_kw={
        "left": pad["left"] / size[0], "right": 1 - pad["right"] / size[0],
        "bottom": pad["bottom"] / size[1], "top": 1 - (pad["top"] + SUPTITLE_HEIGHT) / size[1],
        "wspace": (pad["left"] + pad["right"]) / PANEL_AXES[0], "hspace": (pad["top"] + pad["bottom"]) / PANEL_AXES[1]})
    for ax, (number, row) in zip(axes.ravel(), rows):
        _panel(ax, number, row)
    for ax in axes.ravel()[len(rows):]:
        ax.set_visible(False)
    fig.suptitle(name, fontsize=9, y=1 - 0.5 * SUPTITLE_HEIGHT / size[1], va="center")
    return fig


# ----------------------------------------------------------------------------- markdown

_SPECIAL = re.compile(r"([\\`*_\[\]<>|#!~])")


def _escape(text) -> str:
    """Text as literal inline markdown (its punctuation escaped, line breaks folded)."""
    return _SPECIAL.sub(r"\\\1", str(text)).replace("\n", " ")


def _code(text) -> str:
    """An inline code span holding ``text`` (fenced with more backticks than it contains)."""
    text = str(text).replace("\n", " ")
    longest = max((len(m) for m in re.findall(r"`+", text)), default=0)
    fence = "`" * (longest + 1)
    pad = " " if text.startswith("`") or text.endswith("`") else ""
    return f"{fence}{pad}{text}{pad}{fence}"


def _section_title(module_name):
    """The first paragraph of the catalogue module's docstring, or None outside the catalogue."""
    try:
        module = importlib.import_module(f"regflow.systems.{module_name}")
    except ImportError:
        return None
    doc = inspect.getdoc(module)
    return doc.strip().split("\n\n")[0].replace("\n", " ") if doc else None


def _provenance(report) -> str:
    """The entry's parameters, seed and library versions, from its rows."""
    rows = report.rows
    params = next((r.params for r in rows if r.params), {})
    seeds = sorted({r.seed for r in rows if r.seed is not None})
    versions = next((r.versions for r in rows if r.versions), {})
    ordered = [k for k in VERSION_ORDER if k in versions] + sorted(set(versions) - set(VERSION_ORDER))
    parts = ["parameters " + (", ".join(_code(f"{k}={v!r}") for k, v in params.items()) if params else "none")]
    parts.append("seed " + (", ".join(_code(s) for s in seeds) if seeds else "none"))
    if versions:
        parts.append("versions " + ", ".join(_escape(f"{k} {versions[k]}") for k in ordered))
    return "; ".join(parts) + "."


def _untraced(report) -> list[str]:
    rows = [(n, r) for n, r in enumerate(report.rows, 1) if r.trace is None]
    if not rows:
        return []
    items = [f"- #{n} {_escape(r.claim)}: {_escape(r.check)} ({'PASS' if r.passed else '**FAIL**'})"
             for n, r in rows]
    return ["Rows without a figure:", "", *items, ""]


def _file_name(name, kind):
    return re.sub(r"[^A-Za-z0-9_-]", "_", name) + f"_{kind}.png"


def _entry_method(name, report, given=None):
    """The method checked (``given``), else the catalogue entry ``name`` built with the parameters
    its rows record, or None."""
    from ._catalogue import catalogue

    if given is not None:
        return given
    entry = catalogue().get(name)
    if entry is None:
        return None
    params = next((r.params for r in report.rows if r.params), {})
    return entry.build(**{k: v for k, v in params.items() if k in entry.params})


def _check_inputs(reports, runs):
    from .claims import Report

    if not isinstance(reports, Mapping) or not all(isinstance(r, Report) for r in reports.values()):
        raise TypeError("reports must be a mapping of entry name -> rf.Report, e.g. {name: rf.check(name)}")
    if runs is not None:
        if not isinstance(runs, Mapping) or not all(isinstance(r, Mapping) for r in runs.values()):
            raise TypeError('runs must be a mapping of entry name -> {"flow": Trajectory, "map": Trajectory}')
        for name, pair in runs.items():
            for key, traj in pair.items():
                if key == "method" and isinstance(traj, Method):
                    continue
                if key not in ("flow", "map") or not isinstance(traj, Trajectory):
                    raise TypeError(f'runs[{name!r}] must map "flow" and/or "map" to an rf.Trajectory, '
                                    f"got {key!r}: {type(traj).__name__}")


def write_report(reports, directory, *, progress=None, runs=None, sections=None) -> str:
    """Write ``directory/report.md`` and its figures; returns the markdown file's path.

    ``reports`` maps an entry name to its `Report`.  Per entry the report gives its parameters,
    seed and library versions, its claim table, its phase portrait (entries whose ``view`` names
    a plane) and a figure with one panel per row.  ``runs`` maps an entry name to its runs
    ``{"flow": Trajectory, "map": Trajectory}`` (e.g. the ones its check made) for the portrait,
    which otherwise runs them again.  ``sections`` maps an entry name to its section already
    written by `entry_section` (its figures saved), e.g. in a worker process.  ``progress``
    shows a bar over figures (None: when stderr is a terminal)."""
    from .claims import Report

    _check_inputs(reports, runs)
    runs, sections = runs or {}, dict(sections or {})
    os.makedirs(directory, exist_ok=True)
    todo = {name: report for name, report in reports.items() if name not in sections}
    methods = {name: _method_or_note(name, report, runs) for name, report in todo.items()}
    total = sum(_figure_count(report, method) for (method, _), report in zip(methods.values(), todo.values()))
    with progress_bar(total, "report", enabled=progress, unit="figure") as bar:
        for name, report in todo.items():
            bar.set_postfix_str(name)
            method, note = methods[name]
            sections[name] = entry_section(name, report, directory, method=method, runs=runs.get(name),
                                           note=note, on_figure=bar.update)
    overall = sum(reports.values(), Report(()))
    lines = ["# regflow claim report", "", _escape(overall.summary()) + ".", ""]
    by_module = {}
    for name in reports:
        by_module.setdefault(name.split(".")[0], []).append(name)
    for module_name, names in by_module.items():
        title = _section_title(module_name)
        lines += [f"## {_escape(module_name)}", ""] + ([_escape(title), ""] if title else [])
        for name in names:
            lines += sections[name]
    path = os.path.join(directory, "report.md")
    with open(path, "w") as fh:
        fh.write("\n".join(lines))
    return path


def _method_or_note(name, report, runs):
    """``(method, note)``: the method to draw ``name``'s portrait with, or None and why not."""
    try:
        return _entry_method(name, report, (runs or {}).get(name, {}).get("method")), None
    except Exception as error:  # an entry that no longer builds still gets its tables
        return None, f"(portrait not drawn: {_escape(error)})"


def _figure_count(report, method):
    return (method is not None and has_portrait(method)) + any(r.trace is not None for r in report.rows)


def entry_section(name, report, directory, *, method=None, runs=None, note=None, on_figure=None) -> list[str]:
    """The markdown lines of entry ``name``'s section of the report (its parameters, claim table,
    portrait and claim panels), saving its figures into ``directory``.  ``method`` and ``runs``
    (``{"flow": ..., "map": ...}``) are the checked method and its runs (default: the ones
    ``report.runs`` holds); ``on_figure`` is called after each figure."""
    if method is None and note is None:
        method, note = _method_or_note(name, report, report.runs)
    runs = runs if runs is not None else report.runs.get(name, {})
    os.makedirs(directory, exist_ok=True)
    lines = [f"### {_escape(name)}", "", _provenance(report), "", report.to_markdown(), ""]
    if note:
        lines += [note, ""]
    if method is not None and has_portrait(method):
        try:
            fig = entry_portrait(name, method, runs={k: v for k, v in runs.items() if k != "method"})
        except Exception as error:  # a figure that cannot be drawn is reported, not fatal
            lines += [f"(portrait not drawn: {_escape(error)})", ""]
        else:
            lines += _save(fig, directory, name, "portrait")
        if on_figure:
            on_figure()
    fig = traces_figure(name, list(enumerate(report.rows, 1)))
    if fig is not None:
        lines += _save(fig, directory, name, "claims")
        if on_figure:
            on_figure()
    return lines + _untraced(report)


def _save(fig, directory, name, kind):
    """Save ``fig`` once and close it; the markdown lines linking it."""
    file = _file_name(name, kind)
    try:
        fig.savefig(os.path.join(directory, file), dpi=FIGURE_DPI)
    finally:
        plt.close(fig)
    return [f"![{_escape(name)} {kind}]({file})", ""]
