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
])
def test_bad_input_names_the_argument(call, match):
    with pytest.raises(ValueError, match=match):
        call()
