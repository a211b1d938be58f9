"""`rf.Network`: outputs, homogeneity, layer norms, the normalized state, flat views, bad input."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import regflow as rf


def test_outputs_match_a_hand_written_forward_pass():
    net = rf.Network((3, 4, 2), activation="tanh", bias=True)
    p = net.init(seed=1)
    p["b1"], p["b2"] = np.arange(4.0) / 10, np.array([0.3, -0.2])
    x = np.random.default_rng(0).normal(size=(5, 3))
    want = np.tanh(x @ p["W1"].T + p["b1"]) @ p["W2"].T + p["b2"]
    np.testing.assert_allclose(net(p, x), want, rtol=1e-13)
    assert net(p, x[0]).shape == (2,) and net.size == 3 * 4 + 4 * 2 + 4 + 2


def test_init_is_seeded_and_scaled():
    net = rf.Network((50, 40, 1))
    a, b = net.init(seed=3), net.init(seed=3)
    assert all(np.array_equal(a[k], b[k]) for k in a) and not np.array_equal(a["W1"], net.init(seed=4)["W1"])
    assert np.std(net.init(seed=3, scale=2.0)["W1"]) == pytest.approx(2.0 / np.sqrt(50), rel=0.05)


@pytest.mark.parametrize("activation", ["linear", "relu"])
def test_homogeneous_per_layer_and_normalized_state(activation):
    net = rf.Network((2, 3, 3, 1), activation=activation)
    assert net.homogeneous
    p = net.init(seed=2)
    x = np.random.default_rng(1).normal(size=(6, 2))
    scaled = {**p, "W2": 2.5 * p["W2"]}
    np.testing.assert_allclose(net.scalar(scaled, x), 2.5 * net.scalar(p, x), rtol=1e-13)
    state = net.normalize(p)
    np.testing.assert_allclose([np.linalg.norm(V) for V in state["V"].values()], 1.0, rtol=1e-14)
    np.testing.assert_allclose(state["rho"], [np.linalg.norm(p[k]) for k in net.keys], rtol=1e-14)
    np.testing.assert_allclose(net.scalar(p, x), net.rho(p) * net.scalar(state["V"], x), rtol=1e-12)
    back = net.denormalize(state)
    assert all(np.allclose(back[k], p[k], rtol=1e-14) for k in net.keys)


def test_flat_view_round_trip_and_jit():
    net = rf.Network((2, 3, 1), bias=True)
    p = net.init(seed=0)
    w = net.flatten(p)
    assert w.shape == (net.size,)
    q = jax.jit(net.unflatten)(w)
    assert all(np.array_equal(q[k], p[k]) for k in p)
    with pytest.raises(ValueError, match="expected a vector of 13 parameters"):
        net.unflatten(jnp.zeros(12))


def test_stack_states_batches_every_leaf():
    net = rf.Network((2, 2, 1))
    batch = rf.stack_states([net.init(seed=s) for s in range(3)])
    assert batch["W1"].shape == (3, 2, 2) and batch["W2"].shape == (3, 1, 2)


def test_bad_input():
    with pytest.raises(ValueError, match="widths must be two or more positive ints"):
        rf.Network((3,))
    with pytest.raises(ValueError, match="widths must be two or more positive ints"):
        rf.Network((3, 0, 1))
    with pytest.raises(ValueError, match="activation must be one of"):
        rf.Network((2, 1), activation="sigmoid")
    with pytest.raises(ValueError, match="needs a homogeneous network"):
        rf.Network((2, 2, 1), activation="tanh").normalize(rf.Network((2, 2, 1)).init(0))
    with pytest.raises(ValueError, match="scalar needs one output"):
        rf.Network((2, 2)).scalar(rf.Network((2, 2)).init(0), np.ones(2))
