"""Tests of `regflow.systems.least_squares` beyond its catalogue claims: the closed forms
against numpy's pseudo-inverse, the sparsity measure, and bad parameters."""

import jax.numpy as jnp
import numpy as np
import pytest

import regflow as rf
from regflow.systems import least_squares as ls


@pytest.fixture(scope="module")
def data():
    return ls.ls_data()


def test_min_norm_solution_is_pinv(data):
    X, y = np.asarray(data["X"]), np.asarray(data["y"])
    star = ls.min_norm_solution(data)
    np.testing.assert_allclose(star, np.linalg.pinv(X) @ y, rtol=1e-12)
    np.testing.assert_allclose(X @ star, y, atol=1e-12)


def test_closed_forms_start_and_limit(data):
    beta0 = ls.ls_starts()[1]
    _, _, _, Vp, _ = ls.svd_parts(data)
    limit = ls.min_norm_solution(data) + Vp @ (Vp.T @ beta0)
    np.testing.assert_allclose(ls.closed_form_flow(data, beta0, [0.0])[0], beta0, atol=1e-13)
    np.testing.assert_allclose(ls.closed_form_gd(data, beta0, 0.1, 0)[0], beta0, atol=1e-13)
    np.testing.assert_allclose(ls.closed_form_flow(data, beta0, [1e4])[0], limit, atol=1e-10)
    np.testing.assert_allclose(ls.closed_form_gd(data, beta0, 0.1, 20000)[-1], limit, atol=1e-10)


def test_gd_step_is_eq2(data):
    """rf.gradient_descent on the half risk is eq 2: beta - (eta/n) X^T (X beta - y)."""
    beta = ls.ls_starts()[2]
    X, y = np.asarray(data["X"]), np.asarray(data["y"])
    gd = rf.gradient_descent(ls.ls_loss, lr=0.1, args=data)
    expected = beta - 0.1 / len(y) * X.T @ (X @ beta - y)
    np.testing.assert_allclose(gd.step(0, jnp.asarray(beta), data), expected, rtol=1e-13)


def test_top_fraction():
    m, d = ls.NET_WIDTH, ls.NET_DIM
    B = np.ones((m, d))
    one = np.r_[np.eye(1, m)[0], B.ravel()]
    assert ls.top_fraction(one, k=1) == pytest.approx(1.0)
    uniform = np.r_[np.ones(m), B.ravel()]
    assert ls.top_fraction(uniform, k=2) == pytest.approx(2 / m)


def test_random_features_freeze_b():
    gd = ls.two_layer_gd("conventional", random_features=True)
    w0 = ls.net_start("conventional")
    w1 = np.asarray(gd.step(0, jnp.asarray(w0), gd.args))
    np.testing.assert_array_equal(w1[ls.NET_WIDTH:], w0[ls.NET_WIDTH:])
    assert np.any(w1[:ls.NET_WIDTH] != w0[:ls.NET_WIDTH])


def test_bad_parameters():
    with pytest.raises(ValueError, match="lr must be in"):
        rf.get_entry("least_squares.gradient_descent").build(lr=1.0)
    with pytest.raises(ValueError, match="over-parameterized"):
        ls.ls_data(n=12, d=5)
    with pytest.raises(ValueError, match="scaling must be one of"):
        ls.net_start("ntk")
