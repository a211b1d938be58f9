"""The report of ``regflow check ... --report DIR``: a markdown file with one section per paper
(catalogue module), each entry's claim table, its phase portrait and the traces its claims measured."""

from __future__ import annotations

import importlib
import inspect
import os

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from ._integrate import iterate  # noqa: E402

#: Guesses per axis for the equilibria marked on a portrait.
EQUILIBRIUM_GUESSES = 5
PORTRAIT_SAVES = 401
FIGURE_DPI = 110


def entry_portrait(name, method, *, x=None, y=None):
    """A figure: the phase portrait of ``method`` in its ``view`` window with flow and map runs,
    equilibria, the invariant's level sets and the minima set."""
    from . import plot
    from ._equilibria import equilibria

    view = dict(method.view or {})
    names = method.flow.names or tuple(f"y{i}" for i in range(method.y0.shape[1]))
    x = x or view.get("x", names[0])
    y = y or view.get("y", names[1])
    xlim, ylim = view.get("xlim", (-2.0, 2.0)), view.get("ylim", (-2.0, 2.0))
    at = method.y0[0] if method.y0.shape[1] > 2 else None
    runs = {"flow": method.run_flow(saves=PORTRAIT_SAVES)}
    if method.map is not None:
        runs["map"] = iterate(method.map, method.y0, method.steps or 1000, seed=method.seed, batched=True,
                              every=max(1, (method.steps or 1000) // PORTRAIT_SAVES))
    guesses = None
    if method.y0.shape[1] == 2:
        gx, gy = np.meshgrid(np.linspace(*xlim, EQUILIBRIUM_GUESSES), np.linspace(*ylim, EQUILIBRIUM_GUESSES))
        guesses = equilibria(method.flow, np.column_stack([gx.ravel(), gy.ravel()]) + 1e-3)
    minima = (view["minima"], 1.0) if "minima" in view else None
    fig, ax = plt.subplots(figsize=(7.5, 6))
    plot.portrait(method.flow, x=x, y=y, xlim=xlim, ylim=ylim, at=at, equilibria=guesses, trajectories=runs,
                  invariant=view.get("invariant"), minima=minima, ax=ax, title=name)
    return fig


def _traces_figure(name, report):
    rows = [r for r in report.rows if r.trace is not None]
    if not rows:
        return None
    fig, axes = plt.subplots(1, len(rows), figsize=(4.2 * len(rows), 3.3), squeeze=False)
    for ax, row in zip(axes[0], rows):
        t, values, label = row.trace
        values = np.asarray(values)
        if row.claim.startswith("Agrees"):
            ax.loglog(t, values, "o-")
            ax.set_xlabel("step size dt")
            ax.set_ylabel("max error vs flow")
        else:
            for v in np.atleast_2d(values):
                ax.plot(t, v, lw=0.8)
            ax.set_xlabel("t")
            ax.set_ylabel(str(label))
        ax.set_title(f"{row.claim}\n{'PASS' if row.passed else 'FAIL'}: {row.measured:.3g}", fontsize=8)
    fig.suptitle(name, fontsize=9)
    fig.tight_layout()
    return fig


def _section_title(module_name):
    module = importlib.import_module(f"regflow.systems.{module_name}")
    doc = inspect.getdoc(module) or module_name
    return doc.strip().split("\n\n")[0].replace("\n", " ")


def write_report(reports, directory) -> str:
    """Write ``directory/report.md`` and its figures; returns the markdown file's path."""
    from ._catalogue import get_entry

    os.makedirs(directory, exist_ok=True)
    by_module = {}
    for name, report in reports.items():
        by_module.setdefault(name.split(".")[0], []).append((name, report))
    total = sum(len(r.rows) for r in reports.values())
    failed = sum(len(r.failed) for r in reports.values())
    lines = ["# regflow claim report", "", f"{total - failed} passed, {failed} failed.", ""]
    for module_name, items in by_module.items():
        lines += [f"## {module_name}", "", _section_title(module_name), ""]
        for name, report in items:
            lines += [f"### {name}", "", report.to_markdown(), ""]
            method = get_entry(name).build()
            figures = []
            if method.view is not None and method.y0.shape[1] >= 2:
                try:
                    figures.append(("portrait", entry_portrait(name, method)))
                except Exception as error:  # a figure that cannot be drawn is reported, not fatal
                    lines += [f"(portrait not drawn: {error})", ""]
            traces = _traces_figure(name, report)
            if traces is not None:
                figures.append(("claims", traces))
            for kind, fig in figures:
                file = f"{name.replace('.', '_')}_{kind}.png"
                fig.savefig(os.path.join(directory, file), dpi=FIGURE_DPI, bbox_inches="tight")
                plt.close(fig)
                lines += [f"![{name} {kind}]({file})", ""]
    path = os.path.join(directory, "report.md")
    with open(path, "w") as fh:
        fh.write("\n".join(lines))
    return path
