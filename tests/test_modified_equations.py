"""Tests of `regflow.systems.modified_equations` beyond its catalogue claims: the helpers,
independent cross-checks of the hand-derived pieces (closed forms, moment equations, the
vectorised epoch map) against the library and direct computation, and wrong systems that the
claims now catch."""

import dataclasses
import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import regflow as rf
from regflow.systems import modified_equations as me

RNG = np.random.default_rng(0)
POINTS = RNG.normal(size=(5, 2)) + np.array([1.0, 0.5])


def test_gradient_penalty_with_one_batch_is_barrett_dherin():
    penalized = me.gradient_penalty_loss(lambda w: me.ab_loss(w)[None], 1)
    library = rf.modified_flow(me.ab_loss, lr=0.2)
    both = jax.jit(jax.vmap(lambda w: (-jax.grad(penalized)(w, {"lr": 0.2}), library.vector_field(0.0, w, None))))
    np.testing.assert_allclose(*both(jnp.asarray(POINTS)), rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("rho", [0.0, 1.0, 3.0])
def test_rmsprop_closed_form_is_the_library_backward_error_field(rho):
    args = {"lr": 0.05, "rho": rho, "eps": 1e-3}
    states = np.column_stack([POINTS, RNG.uniform(0.1, 2.0, size=(len(POINTS), 2))])
    bea = rf.backward_error_flow(rf.ODE(me.rmsprop_field, args=args), lr=0.05, second=me.rmsprop_second)
    both = jax.jit(jax.vmap(lambda y: (me.rmsprop_modified_field(0.0, y, args), bea.vector_field(0.0, y, args))))
    np.testing.assert_allclose(*both(jnp.asarray(states)), rtol=1e-10, atol=1e-12)


def test_rmsprop_second_coefficient_is_the_steps_taylor_term():
    """The hand-derived h^2 coefficient matches the second h-derivative of the update rule / 2."""
    args = {"rho": 1.3, "eps": 1e-3}
    y = jnp.array([1.3, 0.2, 0.4, 0.9])
    second = jax.jvp(lambda h: jax.jvp(lambda u: me.rmsprop_update(y, u, args), (h,), (1.0,))[1], (0.0,), (1.0,))[1]
    np.testing.assert_allclose(0.5 * second, me.rmsprop_second(0.0, y, args), rtol=1e-12, atol=1e-14)


def test_frozen_average_modified_field_is_the_preconditioned_modified_loss():
    args = {"lr": 0.05, "rho": 0.0, "eps": 1e-8}
    y = jnp.array([1.3, 0.2, 0.4, 0.9])
    igr = me.preconditioned_igr_field(0.0, y, args)
    bea = me.rmsprop_bea_flow(0.05, rho=0.0).vector_field(0.0, y, args)
    np.testing.assert_allclose(igr, bea, rtol=1e-12, atol=1e-14)
    # Singh's printed form differs at O(lr) already at this point.
    assert np.max(np.abs(me.singh_rms_field(0.0, y, args) - bea)) > 1e-3


def claim(method, name):
    return next(c for c in method.claims if c.name == name)


def test_a_wrong_rmsprop_step_fails_the_second_order_row():
    """The second-order row once differentiated the step it checked (a wrong step still fitted order 2)."""
    method = me.rmsprop()
    row = claim(method, "RMSProp vs its second-order modified flow")
    assert rf.check(dataclasses.replace(method, claims=[row])).passed
    wrong = dataclasses.replace(method, claims=[row], map_at=lambda h: me.rms_map(h, step=me.rmsprop_step_before))
    report = rf.check(wrong)
    assert not report.passed and abs(report.rows[0].measured - 1) < 0.2


def test_epoch_mean_is_the_average_over_explicit_orderings():
    lr = 0.3
    w0 = jnp.array([0.7, -0.4])
    batches = [jax.tree_util.tree_map(lambda v: v[k], me.RR_BATCHES) for k in range(me.RR_M)]

    @jax.jit
    def explicit(w0):
        ends = []
        for order in itertools.permutations(range(me.RR_M)):
            w = w0
            for k in order:
                w = w - lr * jax.grad(rf.full_loss(me.logistic_sample_loss, batches[k]))(w, None)
            ends.append(w)
        return jnp.mean(jnp.stack(ends), axis=0)

    np.testing.assert_allclose(jax.jit(me.rr_epoch_mean)(0, w0, {"lr": lr}), explicit(w0), rtol=1e-13, atol=1e-14)


def test_epoch_mean_second_order_term_is_smiths():
    r"""E[w after one epoch] = w - M lr g + lr^2/2 (M^2 H g - sum_k H_k g_k) + O(lr^3): the term that
    the third summand of eq 2 produces."""
    w = jnp.array([0.7, -0.4])

    @jax.jit
    def gap(lr):
        grads = jax.jacrev(me.rr_batch_losses)(w)
        hessians = jax.jacfwd(jax.jacrev(me.rr_batch_losses))(w)
        g, H = grads.mean(0), hessians.mean(0)
        second = 0.5 * (me.RR_M**2 * H @ g - jnp.einsum("kij,kj->i", hessians, grads))
        return jnp.max(jnp.abs(me.rr_epoch_mean(0, w, {"lr": lr}) - (w - me.RR_M * lr * g + lr**2 * second)))

    for lr in (1e-2, 5e-3):
        assert gap(lr) < 20 * lr**3


def test_sme_moment_equations_match_the_library_generator():
    """At a point mass the moment ODE is the generator of `rf.sme` applied to w_i and w_i w_j."""
    lr = 0.1
    sme = rf.sme(me.regression_sample_loss, me.SME_DATA, lr=lr, batch_size=me.SME_B)
    quantities = [lambda y, a, i=i: y[i] for i in range(2)]
    quantities += [lambda y, a, i=i, j=j: y[i] * y[j] for i in range(2) for j in range(2)]
    generators = [rf.lie_derivative(sme, q) for q in quantities]
    both = jax.jit(jax.vmap(lambda w: (me.sme_moments_1(0.0, jnp.concatenate([w, jnp.outer(w, w).ravel()]), {"lr": lr}),
                                       jnp.stack([lq(w, None) for lq in generators]))))
    np.testing.assert_allclose(*both(jnp.asarray(POINTS)), rtol=1e-10, atol=1e-12)


def test_moment_system_of_rf_sme_is_the_hand_moment_field():
    lr = 0.1
    A, c = me.moment_system(rf.sme(me.regression_sample_loss, me.SME_DATA, lr=lr, batch_size=me.SME_B))
    for w in POINTS:
        M = np.outer(w, w) + np.diag([0.3, 0.1])
        z = np.concatenate([w, M.ravel()])
        np.testing.assert_allclose(A @ z + c, me.sme_moments_1(0.0, jnp.asarray(z), {"lr": lr}), rtol=1e-9,
                                   atol=1e-12)
    with pytest.raises(TypeError, match="moment_system needs an Ito rf.SDE"):
        me.moment_system(rf.gradient_flow(me.regression_loss))


def test_rf_sme_at_lr_x100_fails_the_sme_rows():
    """The SME rows once never used rf.sme: with rf.sme at lr x 100 every row still passed.  (The
    weak order of E C is blind to the noise's size, as the noise-free flow is weak order 1 too;
    the variance row is the one that sees it.)"""
    method = me.sme()
    rows = [c for c in method.claims if c.name and "generator" in c.name]
    rows += [c for c in method.claims if isinstance(c, rf.OrderFit) and "exact" in c.what and c.order == 2]
    hundred = rf.sme(me.regression_sample_loss, me.SME_DATA, lr=100 * me.SME_LR, batch_size=me.SME_B)
    assert rf.check(dataclasses.replace(method, claims=rows)).passed
    report = rf.check(dataclasses.replace(method, claims=rows, flow=hundred))
    assert len(report.rows) == 3 and not any(row.passed for row in report.rows)


def test_exact_sgd_moments_match_rf_sgd_paths():
    lr, steps, paths = 0.1, 10, 4000
    sgd = rf.sgd(me.regression_sample_loss, me.SME_DATA, lr=lr, batch_size=me.SME_B)
    w = rf.iterate(sgd, me.SME_START, steps, paths=paths, seed=7, every=steps).y[:, -1, :]
    z = jnp.asarray(me.moments_of(me.SME_START))
    for k in range(steps):
        z = me.sgd_moment_step(k, z, {"lr": lr})
    np.testing.assert_allclose(z[:2], me.gd_mean(lr, t1=steps * lr), rtol=1e-12)
    np.testing.assert_allclose(me.sgd_moments(lr, t1=steps * lr), z, rtol=1e-12)
    second = np.einsum("pi,pj->pij", w, w).reshape(paths, 4)
    for sample, exact in [(w, z[:2]), (second, z[2:])]:
        stderr = sample.std(axis=0, ddof=1) / np.sqrt(paths)
        assert np.all(np.abs(sample.mean(axis=0) - exact) < 4 * stderr)


def test_adaptive_methods_see_the_batches_of_rf_sgd():
    train, _ = me.digits_data(n_train=40, n_test=10)
    w = jnp.asarray(me.mlp_init(1))
    key = jax.random.PRNGKey(5)
    sgd = rf.sgd(me.mlp_sample_loss, train, lr=1.0, batch_size=8)
    both = jax.jit(lambda w: (me._batch_grad(train, 8, w, key), w - sgd.step(0, w, None, key)))
    np.testing.assert_allclose(*both(w), rtol=1e-12, atol=1e-14)


def test_digits_data_and_label_noise():
    train, test = me.digits_data(n_train=500, n_test=100, noise=0.3, seed=2)
    assert train["x"].shape == (500, 16) and test["x"].shape == (100, 16)
    assert 0.0 <= float(train["x"].min()) and float(train["x"].max()) <= 1.0
    clean, _ = me.digits_data(n_train=500, n_test=100, noise=0.0, seed=2)
    changed = float(np.mean(np.asarray(train["y"]) != np.asarray(clean["y"])))
    assert 0.2 < changed < 0.33  # 30% relabelled, a tenth of them to the same label
    with pytest.raises(ValueError, match="noise must be a fraction"):
        me.digits_data(noise=1.5)
    with pytest.raises(ValueError, match="n_train \\+ n_test"):
        me.digits_data(n_train=2000, n_test=100)


def test_norm_at_loss_interpolates_and_refuses_unreached_levels():
    run = {"norm": np.array([[1.0, 2.0, 4.0]]), "loss": np.array([[3.0, 2.0, 1.0]])}
    np.testing.assert_allclose(me.norm_at_loss(run, 1.5), [3.0])
    np.testing.assert_allclose(me.norm_at_loss(run, 3.0), [1.0])
    with pytest.raises(ValueError, match="never reaches training loss"):
        me.norm_at_loss(run, 0.5)


def test_agreement_needs_two_positive_steps_and_measures_orders():
    gd = lambda h: rf.gradient_descent(me.ab_loss, lr=h)  # noqa: E731
    with pytest.raises(ValueError, match="at least two positive step sizes"):
        me.agreement(gd, lambda h: me.AB_GRADIENT_FLOW, me.GD_START, 1.0, steps=[0.1])
    steps = (0.04, 0.02, 0.01)
    first = me.agreement(gd, lambda h: me.AB_GRADIENT_FLOW, me.GD_START, 0.4, steps=steps)
    second = me.agreement(gd, lambda h: me.gd_modified_flow(h), me.GD_START, 0.4, steps=steps)
    assert abs(first.order - 1) < 0.1 and abs(second.order - 2) < 0.1


def test_gradient_flow_limit_sharpness_is_where_the_flow_ends():
    end = me.flow_at(me.AB_GRADIENT_FLOW, me.GD_START, np.array([1.0, 200.0]))[-1]
    assert float(me.ab_sharpness(end)) == pytest.approx(me.gradient_flow_limit_sharpness(me.GD_START), rel=1e-8)


def test_flipped_map_has_the_opposite_regularizer():
    """The perturbation of modified_equations.gd follows E - lr/4 |grad E|^2 at second order."""
    fit = me.agreement(me.flipped_map, lambda h: me.gd_modified_flow(h, -0.25), me.GD_START, 0.4,
                       steps=(0.04, 0.02, 0.01))
    assert abs(fit.order - 2) < 0.1
