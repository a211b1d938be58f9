"""Helpers of `regflow.systems.halpern` and cross-checks its claims do not make.

The claims run in test_catalogue.py; here: the least-squares limits by linear algebra, the
map/flow correspondence of the schedules, the discrete invariance of the null space under GD,
the minimum norm of the two-layer network, the per-step measure of Theorem 12(a), wrong systems
the claims catch, and bad parameters.
"""

import dataclasses


import jax
import jax.numpy as jnp
import numpy as np
import pytest

import regflow as rf
from regflow.systems import halpern as hp

ARGS = hp.problem()


def test_problem_shape_and_scaling():
    X = np.asarray(ARGS["X"])
    assert X.shape == (hp.N_EQ, hp.DIM)
    assert np.linalg.svd(X, compute_uv=False)[0] == pytest.approx(1.0)
    assert hp.LR * np.linalg.eigvalsh(hp.hessian_matrix(ARGS)).max() <= 2.0  # T non-expansive


def test_gd_limit_is_the_projection_of_the_start_onto_the_solutions():
    X, y = np.asarray(ARGS["X"]), np.asarray(ARGS["y"])
    w0 = hp.starts()
    limit = hp.gd_limit(w0, ARGS)
    assert np.allclose(limit @ X.T, y, atol=1e-12)  # interpolates
    # limit - w0 lies in the row space of X: it is the nearest solution to w0
    coef, *_ = np.linalg.lstsq(X.T, (limit - w0).T, rcond=None)
    assert np.allclose(X.T @ coef, (limit - w0).T, atol=1e-12)
    assert np.allclose(limit[0], hp.pinv_solution(ARGS))  # from w0 = 0


def test_ridge_path_tends_to_the_pseudoinverse():
    xs = hp.pinv_solution(ARGS)
    gaps = [np.linalg.norm(hp.ridge_path(mu, ARGS) - xs) for mu in (1e-2, 1e-4, 1e-6)]
    assert gaps[0] > gaps[1] > gaps[2] and gaps[2] < 1e-5


@pytest.mark.parametrize("a,n0", [(0.5, 2), (0.75, 1), (1.5, 100)])
def test_paper_partner_reproduces_the_paper_schedule(a, n0):
    """lambda_n = (n + n0)^-a is h mu(n h) for mu(t) = c (t + tau)^-a with c = h^(a-1), tau = n0 h."""
    c, tau = hp.paper_partner(hp.LR, a, n0)
    k = jnp.arange(1000)
    assert np.allclose(hp.flow_schedule(a, c, tau, hp.LR)(k), hp.paper_schedule(a, n0)(k), rtol=1e-13)


def test_literal_schedule_starts_at_one():
    assert float(hp.paper_schedule(0.5, n0=1)(0)) == 1.0
    step = hp.nmgd_map(hp.loss, lr=hp.LR, schedule=hp.paper_schedule(1.5, n0=1), args=ARGS).step
    assert np.all(np.asarray(step(0, jnp.asarray(hp.starts()[1]), ARGS)) == 0.0)


def test_gd_map_keeps_the_null_space_coordinates():
    gd = rf.gradient_descent(hp.loss, lr=hp.LR, args=ARGS)
    run = rf.iterate(gd, hp.starts()[1], 50)
    for i in range(hp.DIM - hp.N_EQ):
        q = run.evaluate(hp.null_coordinate(i))
        assert np.max(np.abs(q - q[0])) < 1e-13


def test_balanced_rank_one_factorization_has_the_minimum_norm():
    r"""|W|^2 + |v|^2 >= 2 |W^T v|; equality at W = s u beta^T / |beta|, v = s u, s^2 = |beta|."""
    xs = hp.pinv_solution(ARGS)
    u = np.eye(hp.HIDDEN)[0]
    s = np.sqrt(np.linalg.norm(xs))
    w = np.concatenate([(s * np.outer(u, xs) / np.linalg.norm(xs)).ravel(), s * u])
    assert float(hp.deep_loss(jnp.asarray(w), ARGS)) < 1e-24
    assert float(hp.squared_norm(w)) == pytest.approx(2 * np.linalg.norm(xs), rel=1e-14)
    assert float(hp.layer_imbalance(jnp.asarray(w))) == pytest.approx(0.0, abs=1e-14)


def test_nmgd_flow_is_non_autonomous():
    flow = hp.nmgd_flow(hp.loss, a=0.5, c=1.0, tau=1.0, args=ARGS)
    w = jnp.asarray(hp.starts()[1])
    grad_part = -np.asarray(rf.gradient_flow(hp.loss).vector_field(0.0, w, ARGS))
    for t in (0.0, 3.0, 99.0):
        assert np.allclose(np.asarray(flow.vector_field(t, w, ARGS)), -grad_part - (t + 1.0) ** -0.5 * np.asarray(w))


def test_bad_parameters():
    with pytest.raises(ValueError, match="a must be positive"):
        hp.paper_schedule(0.0)
    with pytest.raises(ValueError, match="n0 must be an int >= 1"):
        hp.paper_schedule(0.5, n0=0)
    with pytest.raises(ValueError, match="tau must be positive"):
        hp.nmgd_flow(hp.loss, a=0.5, tau=0.0)
    with pytest.raises(ValueError, match="lr must be positive"):
        hp.nmgd_map(hp.loss, lr=-0.1, schedule=hp.paper_schedule(0.5))
    with pytest.raises(ValueError, match="a must be in \\(0, 1\\]"):
        rf.get_entry("halpern.nmgd").build(a=1.5)
    with pytest.raises(ValueError, match="a must be > 1"):
        rf.get_entry("halpern.nmgd_fast_decay").build(a=0.5)


def test_printed_rate_excess_is_per_step_and_bounded():
    """Theorem 12(a)'s violation was once a log-ratio that grew with the number of steps (10^29.9)."""
    gd = rf.gradient_descent(hp.loss, lr=hp.LR, args=ARGS)
    ev = np.linalg.eigvalsh(hp.hessian_matrix(ARGS))
    rate, printed = np.max(np.abs(1 - hp.LR * ev[ev > 1e-9])), 1 - hp.LR * ev.max()
    values = []
    for steps in (30, 60, 120):
        traj = rf.iterate(gd, hp.starts()[1:], steps, batched=True)
        errors = np.sqrt(np.atleast_2d(traj.evaluate(hp.solution_distance_sq)))
        values.append(hp.contraction_excess(errors, printed))
    assert all(1.0 < v <= rate / printed * (1 + 1e-9) for v in values)
    assert values[2] - values[1] < values[1] - values[0] + 1e-12  # it settles, it does not grow


def test_theorem12_on_the_strongly_convex_quadratic():
    report = rf.check("halpern.strongly_convex")
    assert report.passed
    printed = [row for row in report.rows if "as printed" in row.claim][0]
    assert printed.measured > 1.8 and printed.note.startswith("erratum:")  # 0.95 per step against the printed 0.5
    method = rf.get_entry("halpern.strongly_convex").build()
    flat = {"kappa": jnp.asarray([1.0, 0.02])}
    wrong = dataclasses.replace(method, map=rf.gradient_descent(hp.convex_loss, lr=0.5, args=flat))
    assert [row.passed for row in rf.check(wrong).rows][:2] == [False, False]  # eq 71 measures the map


def test_literal_schedule_is_a_convention_and_the_rows_see_the_indexing():
    method = rf.get_entry("halpern.literal_schedule").build()
    assert {c.grade for c in method.claims} == {"convention"}
    shifted = rf.nmgd(hp.loss, lr=hp.LR, schedule=hp.paper_schedule(hp.A_FAST, n0=2), args=ARGS)
    report = rf.check(dataclasses.replace(method, map=shifted, steps=2000))
    assert not any(row.passed for row in report.rows)


def test_fixed_point_of_kT_is_on_the_regularization_path():
    k = 0.9
    fixed = hp.fixed_point_of_kT(k, hp.LR, ARGS)
    T = lambda w: w - hp.LR * np.asarray(jax.grad(hp.loss)(jnp.asarray(w), ARGS))  # noqa: E731
    np.testing.assert_allclose(k * T(fixed), fixed, rtol=1e-12, atol=1e-14)
    assert float(hp.gradient_norm(jnp.asarray(fixed), ARGS)) > 0.1  # not a fixed point of T
