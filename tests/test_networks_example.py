"""Small versions of the networks of notebooks/networks.ipynb: dict-of-matrices states, a
matrix-valued conservation claim that holds (linear net) and fails (tanh net), a matrix state
that is not an ensemble, and the compiled sharpness estimate against Lanczos/eigh."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import regflow as rf

WIDTH, CLASSES, IMAGES = 6, 3, 240


@pytest.fixture(scope="module")
def data():
    from sklearn.datasets import load_digits

    digits = load_digits()
    keep = np.flatnonzero(digits.target < CLASSES)[:IMAGES]
    x = digits.data[keep]
    std = x.std(axis=0)
    x = (x - x.mean(axis=0)) / np.where(std > 0, std, 1.0)
    return {"x": jnp.asarray(x), "y": jnp.asarray(np.eye(CLASSES)[digits.target[keep]]), "mix": 0.0}


@pytest.fixture(scope="module")
def params(data):
    rng = np.random.default_rng(1)
    d_in = data["x"].shape[1]
    return {"W1": rng.normal(size=(WIDTH, d_in)) / np.sqrt(d_in),
            "W2": rng.normal(size=(CLASSES, WIDTH)) / np.sqrt(WIDTH)}


def two_layer_loss(w, args):
    """f(x) = W2 s(W1 x), square loss, s(z) = z + mix (tanh z - z): exactly linear for mix = 0 (the
    data's), tanh for mix = 1.  The activation travels in the data, so both nets share programs."""
    z = args["x"] @ w["W1"].T
    out = (z + args["mix"] * (jnp.tanh(z) - z)) @ w["W2"].T
    return 0.5 * jnp.mean(jnp.sum((out - args["y"]) ** 2, axis=1))


def balancedness(w, args):
    return w["W2"].T @ w["W2"] - w["W1"] @ w["W1"].T


def _method(data, params):
    return rf.Method(flow=rf.gradient_flow(two_layer_loss, args=data), y0=jax.tree_util.tree_map(lambda x: x[None], params),
                     t1=3.0, claims=[rf.Conserved(balancedness, source="Arora et al. 2018")])


def test_linear_net_balancedness_is_conserved_and_tanh_breaks_it(data, params):
    method = _method(data, params)
    # the call the claim makes (one start, batched, 201 saves), so the claim reuses its program
    traj = rf.integrate(method.flow, method.y0, method.t1, ts=np.linspace(0.0, method.t1, 201), batched=True)
    assert traj.status == "ok" and traj.is_ensemble and traj.paths == 1
    assert traj.y["W1"].shape == (1, 201, WIDTH, 64) and traj.y["W2"].shape == (1, 201, CLASSES, WIDTH)
    B = traj.evaluate(balancedness)[0]
    assert B.shape == (201, WIDTH, WIDTH)
    assert np.abs(B - B[0]).max() < 1e-6 * np.abs(B[0]).max()
    losses = traj.evaluate(two_layer_loss)[0]
    assert losses[-1] < 0.5 * losses[0]  # it does train

    linear = rf.check(method)
    assert linear.passed, linear
    assert any(f"over {WIDTH * WIDTH} entries" in row.check for row in linear.rows)

    tanh = rf.check(_method({**data, "mix": 1.0}, params))
    assert not tanh.passed, tanh
    drift = tanh.rows[-1]
    assert "drift" in drift.check and np.isfinite(drift.measured) and drift.measured > 1e-3


def test_a_matrix_start_is_one_state_not_an_ensemble(data):
    def loss(W, args):  # linear regression with a (classes, inputs) weight matrix
        return 0.5 * jnp.mean(jnp.sum((args["x"] @ W.T - args["y"]) ** 2, axis=1))

    W = np.zeros((CLASSES, data["x"].shape[1]))
    traj = rf.integrate(rf.gradient_flow(loss, args=data), W, 1.0, ts=np.linspace(0.0, 1.0, 5))
    assert traj.is_ensemble is False
    assert traj.y.shape == (5, CLASSES, 64)
    steps = rf.iterate(rf.gradient_descent(loss, lr=0.05, args=data), W, 20, every=5)
    assert steps.is_ensemble is False and steps.y.shape == (5, CLASSES, 64)
    np.testing.assert_allclose(steps.t, 0.05 * np.arange(0, 21, 5))


def test_sharpness_fn_along_gd_matches_lanczos(data, params):
    mlp_params = {**params, "b1": np.zeros(WIDTH), "b2": np.zeros(CLASSES)}

    def mlp_loss(w, args):
        hidden = jnp.tanh(args["x"] @ w["W1"].T + w["b1"])
        return 0.5 * jnp.mean(jnp.sum((hidden @ w["W2"].T + w["b2"] - args["y"]) ** 2, axis=1))

    run = rf.iterate(rf.gradient_descent(mlp_loss, lr=0.1, args=data), mlp_params, 60, every=20)
    assert run.status == "ok" and run.y["W1"].shape == (4, WIDTH, 64)
    curve = run.evaluate(rf.sharpness_fn(mlp_loss), args=data)
    assert curve.shape == (4,)
    for i in (0, -1):
        state = jax.tree_util.tree_map(lambda leaf: leaf[i], run.y)
        exact = rf.sharpness(mlp_loss, state, args=data, dense_below=0)  # force the Lanczos path
        assert abs(curve[i] - exact) <= 1e-6 * abs(exact), (i, curve[i], exact)
    assert curve[0] != pytest.approx(curve[-1], rel=1e-3)  # the states differ: not a vacuous match
