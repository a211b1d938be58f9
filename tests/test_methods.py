"""Loss-derived systems: GD/flow partners, SGD minibatches and the SME's noise."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import regflow as rf


def quadratic_sample_loss(w, s, a=None):
    return 0.5 * (s["x"] @ w - s["y"]) ** 2


def product_loss(w, a=None):
    """(w1 w2 - 1)^2, shared by the order tests so that their GD and modified-flow programs are too."""
    return (w[0] * w[1] - 1.0) ** 2


PRODUCT_START = np.array([1.5, 0.4])


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(12, 2))
    return {"x": jnp.asarray(x), "y": jnp.asarray(x @ np.array([1.0, -2.0]) + 0.3 * rng.normal(size=12))}


def test_weight_decay_convention():
    loss = lambda w, a: 0.0 * jnp.sum(w)  # noqa: E731
    flow = rf.gradient_flow(loss, weight_decay=0.3)
    np.testing.assert_allclose(flow.vector_field(0.0, jnp.array([2.0]), None), [-0.6])
    gd = rf.gradient_descent(loss, lr=0.1, weight_decay=0.3)
    assert gd.dt == 0.1
    np.testing.assert_allclose(gd.step(0, jnp.array([2.0]), None), [2.0 - 0.1 * 0.6])


def test_minibatch_covariance_matches_sgd_draws(data):
    """The SME's noise covariance is the covariance of the SGD step's gradient (Monte Carlo)."""
    lr, batch = 0.1, 3
    w = jnp.array([0.2, 0.4])
    sgd = rf.sgd(quadratic_sample_loss, data, lr=lr, batch_size=batch)
    full = rf.full_loss(quadratic_sample_loss, data)
    keys = jax.random.split(jax.random.PRNGKey(0), 40000)
    grads = (w - jax.vmap(lambda k: sgd.step(0, w, None, k))(keys)) / lr
    np.testing.assert_allclose(grads.mean(axis=0), jax.grad(full)(w, None), atol=0.05)
    want = rf.minibatch_covariance(quadratic_sample_loss, data, batch)(w, None)
    got = np.cov(np.asarray(grads).T)
    np.testing.assert_allclose(got, want, rtol=0.05, atol=0.02 * np.abs(want).max())
    sme = rf.sme(quadratic_sample_loss, data, lr=lr, batch_size=batch)
    G = sme.diffusion(0.0, w, None)
    np.testing.assert_allclose(G @ G.T, lr * want, rtol=1e-8, atol=1e-12)


def test_full_batch_has_no_noise(data):
    cov = rf.minibatch_covariance(quadratic_sample_loss, data, 12)(jnp.zeros(2), None)
    assert np.allclose(cov, 0.0)


def test_modified_flow_is_second_order():
    errs = [rf.map_error(rf.gradient_descent(product_loss, lr=h), rf.modified_flow(product_loss, lr=h),
                         PRODUCT_START, 0.5) for h in (0.02, 0.01)]
    assert 3.4 < errs[0] / errs[1] < 4.6


@pytest.mark.parametrize("batch", [0, 13, 2.5])
def test_bad_batch_size(data, batch):
    with pytest.raises(ValueError, match="batch_size must be an int in"):
        rf.sgd(quadratic_sample_loss, data, lr=0.1, batch_size=batch)


def test_agrees_with_a_step_dependent_modified_flow():
    claim = rf.Agrees(map_at=lambda h: rf.gradient_descent(product_loss, lr=h),
                      flow=lambda h: rf.modified_flow(product_loss, lr=h),
                      order=2.0, steps=(0.02, 0.01, 0.005), t1=0.5, source="Barrett-Dherin")
    method = rf.Method(flow=rf.gradient_flow(product_loss), y0=PRODUCT_START[None], claims=[claim])
    report = rf.check(method)
    assert report.passed, report.table()
