"""rf.central_flow on a 2-d quadratic-plus-quartic toy: the gradient flow below the edge, the
sharpness held at 2/lr once reached, sigma^2 as the projection's multiplier, and bad inputs named.

L(x, y) = 0.5 (1 + y) x^2 + 0.5 (y - 3)^2 + 0.25 x^4 (sharpness S = 1 + y + 3 x^2 near x = 0):
gradient flow drives y towards 3 (x towards 0), so S rises from ~1 to ~4; with lr = 1 the edge
is at 2 and the central flow stops the rise there."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import regflow as rf
from regflow._central_flow import edge_terms

LR = 1.0
Y0 = np.array([0.3, -0.5])
T1 = 6.0
TS = np.linspace(0.0, T1, 61)


def loss(w, args):
    x, y = w[0], w[1]
    return 0.5 * (1.0 + y) * x**2 + 0.5 * (y - 3.0) ** 2 + 0.25 * x**4


sharpness = rf.sharpness_fn(loss)


@pytest.fixture(scope="module")
def runs():
    flow = rf.central_flow(loss, lr=LR)
    central = rf.integrate(flow, Y0, T1, ts=TS, rtol=1e-10, atol=1e-12)
    gradient = rf.integrate(rf.gradient_flow(loss), Y0, T1, ts=TS, rtol=1e-10, atol=1e-12)
    both = jax.jit(jax.vmap(lambda w: sharpness(w, None)))
    return central, gradient, np.asarray(both(central.y)), np.asarray(both(gradient.y))


def test_equals_the_gradient_flow_below_the_edge(runs):
    central, gradient, s_central, s_gradient = runs
    below = s_gradient < 2.0 / LR - 1e-3
    first_edge = np.argmin(below)
    assert 0 < first_edge < len(TS) - 1  # the gradient flow crosses the edge inside the run
    np.testing.assert_allclose(central.y[:first_edge], gradient.y[:first_edge], rtol=0, atol=1e-7)
    assert s_gradient[-1] > 3.0  # gradient flow sharpens far past the edge


def test_holds_the_sharpness_at_two_over_lr(runs):
    central, gradient, s_central, _ = runs
    reached = np.argmax(s_central >= 2.0 / LR - 1e-6)
    assert reached > 0
    np.testing.assert_allclose(s_central[reached:], 2.0 / LR, rtol=1e-6)
    # and it ends elsewhere than gradient flow
    assert np.linalg.norm(central.y[-1] - gradient.y[-1]) > 0.5


#: A point past the edge (S = 2.12) where gradient flow still sharpens.
PAST_EDGE = jnp.array([0.2, 1.0])


def test_sigma2_is_the_multiplier_that_stops_the_sharpening():
    q, field = rf.central_flow_sigma2(loss, LR), rf.central_flow(loss, lr=LR).vector_field
    h = 1e-6
    shifted = PAST_EDGE + h * jnp.array([[1.0, 0.0], [-1.0, 0.0], [0.0, 1.0], [0.0, -1.0]])

    @jax.jit
    def everything(w, below):
        s = jax.vmap(lambda x: sharpness(x, None))(shifted)
        return edge_terms(loss, w, None, LR), q(w, None), field(0.0, w, None), s, q(below, None)

    e, sigma2, f, s, sigma2_below = everything(PAST_EDGE, jnp.asarray(Y0))
    assert float(e.sharpness) > 2.0 / LR and float(sigma2) > 0.0
    assert float(sigma2) == pytest.approx(float(e.sigma2))
    # sigma^2 = -2 <grad S, grad L> / |grad S|^2, so that dS/dt = <grad S, f> = 0
    gS, g = np.asarray(e.grad_sharpness), np.asarray(e.grad)
    assert float(sigma2) == pytest.approx(-2.0 * gS @ g / (gS @ gS), rel=1e-12)
    assert abs(float(gS @ np.asarray(f))) < 1e-12 * np.linalg.norm(gS) * np.linalg.norm(g)
    np.testing.assert_allclose(np.asarray(f), -(g + 0.5 * float(sigma2) * gS), rtol=1e-12)
    # grad S from the third derivative matches a finite difference of the sharpness
    fd = np.array([s[0] - s[1], s[2] - s[3]]) / (2 * h)
    np.testing.assert_allclose(gS, fd, rtol=1e-6)
    assert float(sigma2_below) == 0.0  # below the edge


def test_pytree_states_keep_their_structure():
    tree = rf.central_flow(lambda w, a: loss(jnp.stack([w["x"], w["y"]]), a), lr=LR).vector_field
    flat = rf.central_flow(loss, lr=LR).vector_field
    out, ref = jax.jit(lambda w: (tree(0.0, {"x": w[0], "y": w[1]}, None), flat(0.0, w, None)))(PAST_EDGE)
    assert set(out) == {"x", "y"}
    np.testing.assert_allclose([out["x"], out["y"]], ref, rtol=1e-12)


@pytest.mark.parametrize("kwargs, error, match", [
    ({"lr": 0.0}, ValueError, "lr must be positive"),
    ({"lr": -1.0}, ValueError, "lr must be positive"),
    ({"lr": float("nan")}, ValueError, "lr must be positive"),
    ({"lr": "big"}, TypeError, "lr"),
    ({"lr": 1.0, "iters": 1}, ValueError, "iters must be an int >= 2"),
    ({"lr": 1.0, "iters": 2.5}, ValueError, "iters must be an int >= 2"),
])
def test_bad_inputs_are_named(kwargs, error, match):
    with pytest.raises(error, match=match):
        rf.central_flow(loss, **kwargs)


def test_bad_loss_is_named():
    with pytest.raises(TypeError, match="loss"):
        rf.central_flow("not a function", lr=1.0)
    with pytest.raises(TypeError, match="loss"):
        rf.central_flow_sigma2(None, 1.0)
    with pytest.raises(TypeError):
        rf.central_flow(loss)  # lr is required: the edge is at 2/lr
    vector_loss = rf.central_flow(lambda w, a: w**2, lr=1.0)
    with pytest.raises(ValueError, match="loss must return a scalar"):
        vector_loss.vector_field(0.0, jnp.asarray(Y0), None)
