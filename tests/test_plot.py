"""regflow.plot: phase portraits of the two-layer scalar net L = (w1 w2 - 1)^2 and its 3-layer slice."""

from types import SimpleNamespace

import matplotlib

matplotlib.use("Agg")

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
from matplotlib.collections import LineCollection, PolyCollection  # noqa: E402
from matplotlib.contour import ContourSet  # noqa: E402

import regflow as rf  # noqa: E402
import regflow.plot as rfp  # noqa: E402

LIM = (-2.5, 2.5)
LR = 0.05
GD_STEPS = 40
SAVES = 60


def loss(w, args):
    return (w[0] * w[1] - 1.0) ** 2


def loss3(w, args):
    return (w[0] * w[1] * w[2] - 1.0) ** 2


def imbalance(w, args):
    return w[0] ** 2 - w[1] ** 2


def product(w, args):
    return w[0] * w[1]


FLOW = rf.ODE(lambda t, w, a: -jax.grad(loss)(w, a), names=("w1", "w2"))
GD = rf.Map(lambda k, w, a: w - LR * jax.grad(loss)(w, a), dt=LR, names=("w1", "w2"))
FLOW3 = rf.ODE(lambda t, w, a: -jax.grad(loss3)(w, a), names=("w1", "w2", "w3"))
# Equilibria as rf.equilibria reports them (duck-typed: plot only reads .point and .kind).
EQS = [SimpleNamespace(point=np.zeros(2), kind="saddle"),
       SimpleNamespace(point=np.array([1.0, 1.0]), kind="degenerate sink"),
       SimpleNamespace(point=np.array([-2.0, -0.5]), kind="degenerate sink")]


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")


@pytest.fixture(scope="module")
def paths():
    starts = jnp.array([[2.0, 0.1], [0.4, 0.05], [0.3, 2.2], [-2.4, -0.3]])
    ts = np.linspace(0.0, 4.0, SAVES)
    return {
        "ensemble": rf.integrate(FLOW, starts, 4.0, ts=ts, backend="scipy", batched=True),
        "single": rf.integrate(FLOW, jnp.array([0.25, -2.3]), 4.0, ts=ts, backend="scipy"),
        "gd": rf.iterate(GD, [0.25, -2.3], GD_STEPS),
    }


def _contours(ax):
    return [c for c in ax.collections if isinstance(c, ContourSet)]


def _legend_texts(ax):
    return [t.get_text() for t in ax.get_legend().get_texts()]


def test_portrait_of_the_two_layer_flow(paths, tmp_path):
    ens, single, gd = paths["ensemble"], paths["single"], paths["gd"]
    ax = rfp.portrait(FLOW, xlim=LIM, ylim=LIM, equilibria=EQS,
                      trajectories={"flow ensemble": ens, "flow": single, "GD": gd},
                      invariant=imbalance, invariant_levels=[-3, -1, 0, 1, 3], minima=(product, 1.0),
                      bands=[(loss, 0.0, 0.1, "L <= 0.1")], title="L = (w1 w2 - 1)^2")
    # streamlines: a LineCollection with many segments (besides the contour sets)
    streams = [c for c in ax.collections if isinstance(c, LineCollection) and not isinstance(c, ContourSet)]
    assert streams and len(streams[0].get_segments()) > 100
    # band + invariant + two nullclines + minima
    assert len(_contours(ax)) == 5
    # the minima set drawn is the hyperbola w1 w2 = 1
    (minima,) = [c for c in _contours(ax) if list(c.levels) == [1.0]]
    vertices = np.concatenate([p.vertices for p in minima.get_paths()])
    assert len(vertices) > 50 and np.allclose(vertices[:, 0] * vertices[:, 1], 1.0, atol=1e-2)
    # one line per ensemble path, one for the flow path, one with markers for GD
    lines = {line.get_label(): line for line in ax.lines}
    assert len(lines["flow"].get_xdata()) == len(single.t) == SAVES
    assert len(lines["GD"].get_xdata()) == GD_STEPS + 1 and lines["GD"].get_marker() == "o"
    assert sum(len(line.get_xdata()) == SAVES for line in ax.lines) == ens.paths + 1
    np.testing.assert_allclose(lines["flow"].get_ydata(), single["w2"])
    texts = _legend_texts(ax)
    for entry in ("saddle", "degenerate sink", "minima", "invariant level sets", "L <= 0.1",
                  "dw1/dt = 0", "dw2/dt = 0", "flow", "flow ensemble", "GD"):
        assert texts.count(entry) == 1, (entry, texts)
    assert (ax.get_xlabel(), ax.get_ylabel()) == ("w1", "w2")
    assert ax.get_xlim() == LIM and ax.get_title() == "L = (w1 w2 - 1)^2"
    png = tmp_path / "portrait.png"
    ax.figure.savefig(png)
    assert png.stat().st_size > 10_000


def test_portrait_finds_equilibria_from_guesses():
    pytest.importorskip("regflow._analysis")
    ax = rfp.portrait(FLOW, xlim=LIM, ylim=LIM, equilibria=[[0.1, -0.1], [1.1, 0.8]], nullclines=False)
    assert _legend_texts(ax) == ["saddle", "degenerate sink"]


def test_slice_of_the_three_layer_flow():
    at = [0.0, 0.5, 0.0]
    eqs = [SimpleNamespace(point=np.array([2.0, 0.5, 1.0]), kind="degenerate sink"),
           SimpleNamespace(point=np.array([1.0, 1.0, 1.0]), kind="degenerate saddle")]  # off the slice
    ax = rfp.portrait(FLOW3, x="w1", y="w3", at=at, xlim=(-3, 3), ylim=(-3, 3), equilibria=eqs,
                      minima=(lambda w, a: jnp.prod(w), 1.0))
    assert (ax.get_xlabel(), ax.get_ylabel()) == ("w1", "w3")
    assert "degenerate sink" in _legend_texts(ax) and "degenerate saddle" not in _legend_texts(ax)
    assert "dw3/dt = 0" in _legend_texts(ax)
    # dw1/dt = -2 (w1 w2 w3 - 1) w2 w3 vanishes on w1 w3 = 1/w2 = 2 and on w3 = 0
    ax = rfp.nullclines(FLOW3, x=0, y=2, at=at, xlim=(-3, 3), ylim=(-3, 3))
    v = np.concatenate([p.vertices for p in _contours(ax)[0].get_paths()])
    assert np.all(np.minimum(np.abs(v[:, 0] * v[:, 1] - 2.0), np.abs(v[:, 1])) < 2e-2)


def test_map_field_and_time_series(paths):
    ax = rfp.streamlines(GD, xlim=LIM, ylim=LIM, log=True, colorbar=True)
    assert any(isinstance(c, LineCollection) for c in ax.collections)
    ax = rfp.time_series(paths["ensemble"], {"loss": loss, "imbalance": imbalance})
    assert len(ax.lines) == 2 and sum(isinstance(c, PolyCollection) for c in ax.collections) == 2
    np.testing.assert_allclose(ax.lines[1].get_ydata(), paths["ensemble"].evaluate(imbalance).mean(0))
    ax = rfp.time_series(paths["gd"], {"loss": loss})
    assert ax.lines[0].get_marker() == "o" and ax.get_xlabel() == "t"
    ax = rfp.level_sets(imbalance, xlim=LIM, ylim=LIM, levels=4, names=("w1", "w2"), label="w1^2 - w2^2")
    assert len(_contours(ax)) == 1 and _legend_texts(ax) == ["w1^2 - w2^2"]


def test_portrait_marks_starts_and_draws_sde_sample_paths_thin(paths):
    flow = paths["ensemble"]
    starts = np.asarray(flow.y[:, 0])
    noisy = rf.SDE(FLOW.drift, lambda t, w, a: 0.2 * jnp.ones_like(w), names=("w1", "w2"))
    sample = rf.integrate(noisy, np.repeat(starts, 2, axis=0), 1.0, dt=0.05, batched=True, seed=1)
    ax = rfp.portrait(FLOW, xlim=LIM, ylim=LIM, trajectories={"noise paths": sample, "flow": flow},
                      starts=starts, nullclines=False, density=0.5)
    assert len(ax.lines) == sample.paths + flow.paths == 12
    noise, flow = ax.lines[:sample.paths], ax.lines[sample.paths:]
    assert all(line.get_alpha() == rfp.SAMPLE_PATH_ALPHA and line.get_linewidth() == rfp.SAMPLE_PATH_LINEWIDTH
               for line in noise)
    assert all(line.get_alpha() == rfp.ENSEMBLE_ALPHA for line in flow)  # an ODE ensemble keeps its look
    (marked,) = [c for c in ax.collections if c.get_label() == "start"]
    np.testing.assert_allclose(marked.get_offsets(), starts)
    assert {"noise paths", "flow", "start"} <= set(_legend_texts(ax))


def _trace(kind, y, reference):
    from regflow.claims import Trace

    x = np.array([0.02, 0.01, 0.005]) if kind == "loglog" else np.arange(3.0)
    return Trace(x, y, "x", "y", kind, reference)


@pytest.mark.parametrize("kind, y, reference, scale, legend", [
    ("line", [[1.0, 0.5, 0.25], [2.0, 1.0, 0.5]], (np.arange(3.0), [1.0, 0.5, 0.25], "law"), "linear",
     ["measured (2 curves)", "law"]),
    ("line", [1.0, 1e-3, 1e-6], 1e-5, "log", ["measured", "level 1e-05"]),
    ("drift", [0.0, 1e-13, -2e-12], 1e-6, "symlog", ["measured", "tolerance ±1e-06"]),
    ("loglog", [0.2, 0.1, 0.05], (np.array([0.02, 0.01, 0.005]), [0.2, 0.1, 0.05], "slope 1"), "log",
     ["measured", "slope 1"]),
    ("points", [0.0, 1.0, 4.0], (np.arange(3.0), [0.0, 1.0, 4.0], "expected"), "linear", ["measured", "expected"]),
    ("points", [1e-16, 3e-15, 2e-16], 1e-9, "log", ["measured", "level 1e-09"]),
])
def test_trace_draws_each_kind_with_its_reference(kind, y, reference, scale, legend):
    ax = rfp.trace(_trace(kind, y, reference))
    assert ax.get_yscale() == scale and _legend_texts(ax) == legend
    measured = ax.lines[0]
    np.testing.assert_allclose(measured.get_ydata(), np.atleast_2d(y)[0])
    if kind == "points":
        assert measured.get_linestyle() == "None"
        if isinstance(reference, tuple):
            assert ax.lines[-1].get_markerfacecolor() == "none"  # expected values: open markers
    if kind == "drift":
        (band,) = [p for p in ax.patches if p.get_label().startswith("tolerance")]
        assert np.allclose([band.get_y(), band.get_y() + band.get_height()], [-1e-6, 1e-6])
        lo, hi = ax.get_ylim()
        assert lo < -1e-6 and hi > 1e-6  # the band is in view
    if kind == "loglog":
        assert ax.get_xscale() == "log"


def test_trace_refuses_an_unknown_kind():
    bad = SimpleNamespace(x=[0.0], y=[1.0], xlabel="", ylabel="", kind="bars", reference=None)
    with pytest.raises(ValueError, match="tr.kind"):
        rfp.trace(bad)
    with pytest.raises(TypeError, match="Trace"):
        rfp.trace([1.0, 2.0])


@pytest.mark.parametrize("call, match", [
    (lambda: rfp.portrait(FLOW, x=0, y="w1", xlim=LIM, ylim=LIM), "x and y"),
    (lambda: rfp.streamlines(FLOW, x="w9", xlim=LIM, ylim=LIM), "x='w9'"),
    (lambda: rfp.streamlines(FLOW, y=5, xlim=LIM, ylim=LIM), "y=5"),
    (lambda: rfp.portrait(FLOW, xlim=(1.0, -1.0), ylim=LIM), "xlim"),
    (lambda: rfp.nullclines(FLOW, xlim=LIM, ylim=(0.0, 0.0)), "ylim"),
    (lambda: rfp.streamlines(FLOW3, xlim=LIM, ylim=LIM), "at"),
    (lambda: rfp.streamlines(FLOW3, at=[1.0, 1.0], xlim=LIM, ylim=LIM), "at"),
    (lambda: rfp.level_sets(lambda w, a: w, xlim=LIM, ylim=LIM), "q"),
    (lambda: rfp.band(loss, 1.0, 0.0, xlim=LIM, ylim=LIM), "lower"),
    (lambda: rfp.trajectories([], label=["a"]), "label"),
    (lambda: rfp.portrait(FLOW, xlim=LIM, ylim=LIM, bands=[(loss, 0.0)]), "bands"),
    (lambda: rfp.portrait(FLOW, xlim=LIM, ylim=LIM, minima=(product,)), "minima"),
    (lambda: rfp.starts(np.zeros((2, 2, 2))), "points"),
])
def test_bad_input_names_the_argument(call, match):
    with pytest.raises(ValueError, match=match):
        call()
