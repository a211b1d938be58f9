"""Tests of `regflow.systems.least_squares` (and `least_squares_two_layer`) beyond their catalogue
claims: the closed forms against numpy's pseudo-inverse and against iteration, the sparsity
measure, the kernel of eq 15, wrong systems failing the claims that describe them, and bad
parameters."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import regflow as rf
from regflow.systems import least_squares as ls
from regflow.systems import least_squares_two_layer as ls2


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


def test_kernel_normaliser():
    """Eq 15 with 1/(2 pi d) matches E_x[relu(b.x) relu(b'.x)] on the sphere; as printed it is 2 pi d times off."""
    w = jnp.asarray(ls.net_start("conventional", seed=3))
    mc = np.asarray(ls2.kernel_monte_carlo(w))
    np.testing.assert_allclose(np.asarray(ls2.kernel(w)), mc, atol=1e-2)
    ratio = np.asarray(ls2.kernel_printed(w)) / mc
    assert np.median(ratio) == pytest.approx(2 * np.pi * ls.NET_DIM, rel=0.05)


def test_random_feature_closed_form():
    """The random-feature risk in closed form equals iterating GD with the b_j frozen."""
    gd = ls.two_layer_gd("conventional", random_features=True)
    w0 = ls.net_start("conventional")
    traj = rf.iterate(gd, w0, 40)
    risks = np.asarray(traj.evaluate(ls.half_risk))
    a0, B0 = ls.unpack(w0)
    closed = ls2.random_feature_risk(gd.args, a0, B0, gd.args["lr"], [0, 10, 40])
    np.testing.assert_allclose(closed, risks[[0, 10, 40]], rtol=1e-10)


def test_printed_risk_dynamics_fail_the_field_claim():
    """A flow descending eq 4 as printed (twice eq 6-7) fails the claim that eq 6-7 descend the half risk."""
    method = rf.get_entry("least_squares.two_layer_conventional").build()
    (claim,) = [c for c in method.claims if isinstance(c, rf.Formula) and c.field]
    right = dataclasses.replace(method, claims=[claim])
    assert rf.check(right).rows[0].passed
    field = lambda t, w, a: -jax.grad(ls.printed_risk)(w, a)  # noqa: E731
    wrong = dataclasses.replace(right, flow=rf.ODE(field, args=method.flow.args))
    assert not rf.check(wrong).rows[0].passed


def test_convex_lyapunov_fails_at_half_speed():
    """dJ/dt <= 0 needs the flow at unit speed: the flow of R/2 breaks it where the risk is nearly linear."""
    method = rf.get_entry("least_squares.convex").build()
    (claim,) = [c for c in method.claims if c.name == "dJ/dt <= 0"]
    right = dataclasses.replace(method, claims=[claim])
    assert rf.check(right).passed
    (half,) = [p for p in method.perturbations if p.name.startswith("the flow of R/2")]
    assert not rf.check(half.apply(right)).passed
