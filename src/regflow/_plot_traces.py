"""`trace`: the figure of what a claim's row measured (a `regflow.claims.Trace`), drawn by kind.

| kind | drawn |
|---|---|
| ``"line"`` | values against time, several curves thin; a reference curve dashed, a level as a line |
| ``"drift"`` | the relative drift of a conserved quantity around 0 (symmetric log axis when it spans decades), the tolerance as a +- band |
| ``"loglog"`` | an error against a step size on log axes, with the reference slope |
| ``"points"`` | one marker per sample point or eigenvalue index; expected values as open markers, a level dashed |

The reference is always drawn and labelled in the legend.
"""

from __future__ import annotations

import math
import textwrap

import numpy as np

#: Curves drawn at most (the rest are left out, and the legend says how many there were).
MAX_CURVES = 48
#: Line widths of one curve and of each of several; their transparency when several.
CURVE_LINEWIDTH = 1.4
CURVES_LINEWIDTH = 0.7
CURVES_ALPHA = 0.7
DATA_COLOR = "tab:blue"
REFERENCE_COLOR = "black"
REFERENCE_STYLE = {"color": REFERENCE_COLOR, "linestyle": "--", "linewidth": 1.1}
BAND_COLOR = "tab:green"
BAND_ALPHA = 0.15
#: Points: measured markers (filled), expected ones (open, larger); sizes in points.
POINT_SIZE = 3.5
EXPECTED_SIZE = 7.0
#: Positive data spanning more than this ratio is drawn on a log axis (symmetric log if it crosses 0).
DECADES_FOR_LOG = 1e3
#: Magnitudes below this fraction of the largest count as 0 when choosing the axis.
ZERO_BELOW = 1e-12
#: A symmetric log axis is linear below this fraction of the largest magnitude (or the smallest one).
SYMLOG_DEPTH = 1e-6
#: Decades labelled per sign on a symmetric log axis.
SYMLOG_TICKS = 4
#: Axis labels wrap at this many characters.
LABEL_WIDTH = 38
#: Step sizes labelled one by one on a log-log trace when there are at most this many.
MAX_STEP_TICKS = 6
TRACE_FONTSIZE = 7
LEGEND_FONTSIZE = 6
TRACE_KINDS = ("line", "drift", "loglog", "points")


def _wrap(text):
    return "\n".join(textwrap.wrap(str(text), LABEL_WIDTH)[:2])


def _axes(ax):
    if ax is None:
        import matplotlib.pyplot as plt

        ax = plt.subplots(layout="constrained")[1]
    return ax


def _curves(y):
    """``y`` as (curves, n) and how many curves there were."""
    curves = np.atleast_2d(np.asarray(y, dtype=float))
    if curves.ndim > 2:
        curves = curves.reshape(-1, curves.shape[-1])
    return curves[:MAX_CURVES], len(curves)


def _reference(reference):
    """``(x, y, label)`` as arrays and a label, a number as a float, or None."""
    if reference is None:
        return None
    if isinstance(reference, (tuple, list)) and len(reference) == 3:
        x, y, label = reference
        return np.asarray(x, dtype=float), np.asarray(y, dtype=float), str(label)
    if np.ndim(reference) == 0:
        return float(reference)
    raise ValueError(f"trace.reference must be (x, y, label) or a number, got {reference!r}")


def _finite_abs(*arrays):
    values = np.abs(np.concatenate([np.ravel(np.asarray(a, dtype=float)) for a in arrays]))
    return values[np.isfinite(values)]


def _scale_y(ax, values, symmetric=False, data=None):
    """Choose the y axis for ``values`` (data and reference): log for positive values spanning
    decades; symmetric log for values around 0 that span decades (always, with ``symmetric``,
    unless all are 0); else linear.  Magnitudes below `ZERO_BELOW` times the largest count as 0.
    A symmetric log axis is linear below `SYMLOG_DEPTH` of the largest magnitude of ``data``
    (default: of ``values``), so that small data are drawn on its log part."""
    finite = np.concatenate([np.ravel(v) for v in values]) if values else np.array([])
    finite = finite[np.isfinite(finite)]
    top = np.max(np.abs(finite)) if len(finite) else 0.0
    if top == 0:
        return "linear"
    nonzero = np.abs(finite[np.abs(finite) > top * ZERO_BELOW])
    spread = top / nonzero.min()
    if not symmetric and np.all(finite > top * ZERO_BELOW) and spread > DECADES_FOR_LOG:
        ax.set_yscale("log")
        return "log"
    if symmetric or spread > DECADES_FOR_LOG:
        linthresh = float(max(nonzero.min(), top * SYMLOG_DEPTH))
        if data is not None:
            own = np.abs(np.ravel(data))
            own = own[np.isfinite(own) & (own > top * ZERO_BELOW)]
            if len(own):
                linthresh = float(max(own.min(), own.max() * SYMLOG_DEPTH))
        ax.set_yscale("symlog", linthresh=linthresh)
        _symlog_ticks(ax, linthresh, top, negative=symmetric or bool(np.any(finite < 0)),
                      positive=symmetric or bool(np.any(finite > 0)))
        return "symlog"
    return "linear"


def _symlog_ticks(ax, linthresh, top, negative, positive):
    """At most `SYMLOG_TICKS` decades labelled per sign, and 0."""
    from matplotlib.ticker import NullLocator

    lo, hi = math.ceil(math.log10(linthresh)), math.ceil(math.log10(top))
    step = max(1, math.ceil((hi - lo + 1) / SYMLOG_TICKS))
    decades = [10.0 ** k for k in range(hi, lo - 1, -step)]
    ticks = sorted([0.0] + (decades if positive else []) + ([-d for d in decades] if negative else []))
    ax.set_yticks(ticks)
    ax.yaxis.set_minor_locator(NullLocator())


def _plot_curves(ax, x, y, label, marker=None):
    curves, total = _curves(y)
    several = len(curves) > 1
    style = {"linewidth": CURVES_LINEWIDTH if several else CURVE_LINEWIDTH, "marker": marker,
             "markersize": 3.5, "color": DATA_COLOR}
    if several:
        style["alpha"] = CURVES_ALPHA
        label = f"{label} ({total} curves{'' if total <= MAX_CURVES else f', {MAX_CURVES} shown'})"
    for i, curve in enumerate(curves):
        if len(curve) != len(x):
            raise ValueError(f"trace.y has {len(curve)} values per curve for {len(x)} x values; give y of shape "
                             f"(n,) or (curves, n) with n = len(x)")
        ax.plot(x, curve, label=label if i == 0 else None, **style)
    return curves


def _loglog(ax, x):
    """Log axes; the x ticks at the step sizes themselves when there are few."""
    from matplotlib.ticker import FixedFormatter, NullFormatter

    ax.set_xscale("log")
    ax.set_yscale("log")
    x = np.asarray(x, dtype=float)
    x = np.unique(x[np.isfinite(x) & (x > 0)])
    if 0 < len(x) <= MAX_STEP_TICKS:
        ax.set_xticks(x)
        ax.xaxis.set_major_formatter(FixedFormatter([f"{v:g}" for v in x]))
        ax.xaxis.set_minor_formatter(NullFormatter())


def _level(ax, level, label):
    ax.axhline(level, label=label, **REFERENCE_STYLE)


def _draw_line(ax, tr, ref, loglog=False):
    curves = _plot_curves(ax, tr.x, tr.y, "measured", marker="o" if loglog else None)
    shown = [curves]
    if isinstance(ref, tuple):
        ax.plot(ref[0], ref[1], label=ref[2], **REFERENCE_STYLE)
        shown.append(ref[1])
    elif ref is not None:
        _level(ax, ref, f"level {ref:g}")
        shown.append(np.array([ref]))
    if loglog:
        _loglog(ax, tr.x)
    else:
        _scale_y(ax, shown)


def _draw_drift(ax, tr, ref):
    curves = _plot_curves(ax, tr.x, tr.y, "measured")
    shown = [curves]
    if isinstance(ref, tuple):
        ax.plot(ref[0], ref[1], label=ref[2], **REFERENCE_STYLE)
        shown.append(ref[1])
    elif ref is not None:
        tol = abs(ref)
        ax.axhspan(-tol, tol, color=BAND_COLOR, alpha=BAND_ALPHA, label=f"tolerance ±{tol:g}")
        shown.append(np.array([tol, -tol]))
    ax.axhline(0.0, color="grey", linewidth=0.6)
    _scale_y(ax, shown, symmetric=True, data=curves)
    big = _finite_abs(*shown)
    if len(big) and big.max() > 0:
        ax.set_ylim(-1.5 * big.max(), 1.5 * big.max())


def _draw_points(ax, tr, ref):
    curves, total = _curves(tr.y)
    label = "measured" if total == 1 else f"measured ({total} series)"
    for i, curve in enumerate(curves):
        x = tr.x if len(tr.x) == len(curve) else np.arange(len(curve))
        ax.plot(x, curve, linestyle="none", marker="o", markersize=POINT_SIZE, color=DATA_COLOR, zorder=3,
                label=label if i == 0 else None)
    shown = [curves]
    if isinstance(ref, tuple):
        ax.plot(ref[0], ref[1], linestyle="none", marker="o", markersize=EXPECTED_SIZE, markerfacecolor="none",
                markeredgecolor=REFERENCE_COLOR, markeredgewidth=1.0, zorder=4, label=ref[2])
        shown.append(ref[1])
    elif ref is not None:
        _level(ax, ref, f"level {ref:g}")
        shown.append(np.array([ref]))
    _scale_y(ax, shown)
    if len(tr.x) <= 1:
        ax.set_xticks([])


_DRAW = {"line": _draw_line, "loglog": lambda ax, tr, ref: _draw_line(ax, tr, ref, loglog=True),
         "drift": _draw_drift, "points": _draw_points}


def trace(tr, *, ax=None, legend=True):
    """Draw a `regflow.claims.Trace` by its ``kind`` (see the module table), with its reference
    labelled in the legend; returns the Axes.

    Example
    -------
    >>> import numpy as np, regflow.plot as rfp
    >>> from regflow.claims import Trace
    >>> t = np.linspace(0, 1, 11)
    >>> ax = rfp.trace(Trace(t, np.exp(-t), "t", "L", "line", (t, np.exp(-t), "exp(-t)")))
    """
    for attr in ("x", "y", "kind", "xlabel", "ylabel", "reference"):
        if not hasattr(tr, attr):
            raise TypeError(f"tr must be a regflow.claims.Trace (x, y, kind, labels, reference), got {type(tr).__name__}")
    if tr.kind not in _DRAW:
        raise ValueError(f"tr.kind must be one of {TRACE_KINDS}, got {tr.kind!r}")
    ax = _axes(ax)
    y = np.asarray(tr.y, dtype=float)
    if not np.any(np.isfinite(y)):
        ax.text(0.5, 0.5, "no finite values", transform=ax.transAxes, ha="center", va="center",
                fontsize=TRACE_FONTSIZE)
    else:
        _DRAW[tr.kind](ax, tr, _reference(tr.reference))
    ax.set_xlabel(_wrap(tr.xlabel), fontsize=TRACE_FONTSIZE)
    ax.set_ylabel(_wrap(tr.ylabel), fontsize=TRACE_FONTSIZE)
    ax.tick_params(which="both", labelsize=TRACE_FONTSIZE - 1)
    if legend and ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=LEGEND_FONTSIZE, loc="best")
    return ax
