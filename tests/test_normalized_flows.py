"""Tests of `regflow.systems.normalized_flows` beyond its catalogue claims: the SVM against
scikit-learn, the chain rule behind the normalized fields, helpers, and bad parameters."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import regflow as rf
from regflow.systems import normalized_flows as nf


@pytest.fixture(scope="module")
def data():
    return nf.dataset()


def test_svm_matches_scikit_learn(data):
    svm = pytest.importorskip("sklearn.svm")
    x, y = np.asarray(data["x"]), np.asarray(data["y"])
    # the mirrored data set (x, y) u (-x, -y) has the same SVM through the origin and forces intercept 0
    fit = svm.SVC(kernel="linear", C=1e6).fit(np.vstack([x, -x]), np.r_[y, -y])
    w_hat = nf.hard_margin_svm(data)
    assert abs(fit.intercept_[0]) < 1e-6
    assert nf.angle(fit.coef_[0], w_hat) < 1e-4
    np.testing.assert_allclose(np.linalg.norm(fit.coef_[0]), np.linalg.norm(w_hat), rtol=1e-3)


def test_svm_margins_and_support_vectors(data):
    z = nf.signed_data(data)
    margins = np.sort(z @ nf.hard_margin_svm(data))
    np.testing.assert_allclose(margins[:2], 1.0, atol=1e-9)  # two support vectors ...
    assert margins[2] > 1.5  # ... and a clear gap to the others (fast asymptotics)


def test_soudry_offset_solves_the_asymptotic_equation(data):
    # w~ is defined by sum_SV exp(-z_n . w~) z_n = w_hat; rebuild it and compare its perpendicular part
    z = nf.signed_data(data)
    w_hat, offset = nf.svm_asymptotics(data)
    sv = np.argsort(z @ w_hat)[:2]
    u = w_hat / np.linalg.norm(w_hat)
    n = np.array([-u[1], u[0]])

    def residual(w_tilde):
        return np.exp(-z[sv] @ w_tilde) @ z[sv] - w_hat

    from scipy.optimize import fsolve

    w_tilde = fsolve(residual, np.zeros(2), xtol=1e-14)
    np.testing.assert_allclose(residual(w_tilde), 0.0, atol=1e-10)
    np.testing.assert_allclose(abs(n @ w_tilde), offset, rtol=1e-8)


@pytest.mark.parametrize("depth,activation", [(1, "linear"), (2, "linear"), (2, "relu"), (3, "relu")])
def test_normalized_field_is_gf_pushed_forward(data, depth, activation):
    # eq 54 / 13: d/dt (rho_k, V_k) of the GF equals the normalized field (chain rule, by JVP)
    shapes = nf.layer_shapes(depth, 2)
    gf = nf.model(shapes, activation)["flow"]
    field = nf.normalized_field(shapes, activation)
    K = len(shapes)

    def coords(w):
        layers = nf.unflatten(w, shapes)
        rhos = jnp.stack([jnp.sqrt(jnp.sum(W**2)) for W in layers])
        return jnp.concatenate([rhos, *[(W / r).ravel() for W, r in zip(layers, rhos)]])

    @jax.jit
    def both(w):
        _, pushed = jax.jvp(coords, (w,), (gf.vector_field(0.0, w, data),))
        return field(0.0, coords(w), data), pushed

    for w in nf.separating_starts(shapes, activation, data, n=3, scale=1.5, seed=7):
        got, pushed = both(jnp.asarray(w))
        np.testing.assert_allclose(got, pushed, rtol=1e-11, atol=1e-13)
        assert got.shape == (K + w.shape[0],)


def test_to_normalized_round_trip():
    shapes = nf.layer_shapes(3, 2)
    w = np.random.default_rng(0).normal(size=(5, sum(r * c for r, c in shapes)))
    y = nf.to_normalized(w, shapes)
    K = len(shapes)
    for row, orig in zip(y, w):
        layers = nf.unflatten(row[K:], shapes)
        np.testing.assert_allclose([np.linalg.norm(V) for V in layers], 1.0, rtol=1e-14)
        back = np.concatenate([(r * V).ravel() for r, V in zip(row[:K], layers)])
        np.testing.assert_allclose(back, orig, rtol=1e-14)


def test_polar_field_matches_eq_42_43(data):
    field = nf.normalized_field(nf.layer_shapes(1, 1), "linear")
    for theta, log_rho in [(0.2, -1.0), (0.7, 0.5), (1.1, 2.0)]:
        rho, v = np.exp(log_rho), np.array([np.cos(theta), np.sin(theta)])
        f = np.asarray(field(0.0, jnp.asarray(np.r_[rho, v]), data))
        want = [np.array([-v[1], v[0]]) @ f[1:], f[0] / rho]
        np.testing.assert_allclose(nf.polar_field(0.0, jnp.array([theta, log_rho]), data), want, rtol=1e-12)


def test_wn_field_is_gradient_descent_on_g_v(data):
    # eq 93-95 are -dL/dg and -dL/dv of L(g v/|v|)
    loss = nf.model(nf.layer_shapes(1, 1), "linear")["loss"]
    y = jnp.array([0.7, 0.9, 0.5])
    grad = jax.grad(lambda s: loss(s[0] * s[1:] / jnp.linalg.norm(s[1:]), data))(y)
    np.testing.assert_allclose(nf.wn_field(0.0, y, data), -grad, rtol=1e-12)


def test_eq15_keeps_unit_norm_for_the_papers_unit_step():
    # remark 1 of sec 6.1 with step 1: |V + g - lambda V| = 1 for the solved lambda, not the printed one
    rng = np.random.default_rng(3)
    for _ in range(20):
        v = rng.normal(size=2)
        v /= np.linalg.norm(v)
        g = 0.3 * rng.normal(size=2)
        lam = float(nf.eq15_lambda(v @ g, g @ g, 1.0))
        np.testing.assert_allclose(np.linalg.norm(v + g - lam * v), 1.0, rtol=1e-13)
        printed = float(nf.eq15_lambda(v @ g, g @ g, 1.0, printed=True))
        assert abs(np.linalg.norm(v + g - printed * v) - 1.0) > 1e-6


def test_thm7_hessians_match_rf_hessian():
    pts = nf._random_points(n=2)
    for lam in (0.05, 0.3):
        batch = np.asarray(nf.thm7_hessians(pts, np.full(len(pts), lam)))
        for p, H in zip(pts, batch):
            np.testing.assert_allclose(H, rf.hessian(nf.thm7_loss(lam), p), rtol=1e-13, atol=1e-14)


def test_critical_circle_is_critical():
    for lam in nf.THM7_LAMBDAS:
        for p in nf.critical_circle(lam, n=5):
            np.testing.assert_allclose(jax.grad(nf.thm7_loss(lam))(jnp.asarray(p)), 0.0, atol=1e-14)
            np.testing.assert_allclose(np.exp(-(p[0] * p[1] + p[2] * p[3])), 2 * lam, rtol=1e-13)


def test_relu_starts_are_label_aligned(data):
    shapes = nf.layer_shapes(2, 2)
    x, y = np.asarray(data["x"]), np.asarray(data["y"])
    for w in nf.relu_starts(shapes, data, n=3, seed=1):
        W1 = nf.unflatten(w, shapes)[0]
        active = x @ W1.T > 0
        np.testing.assert_array_equal(active[:, 0], y > 0)
        np.testing.assert_array_equal(active[:, 1], y < 0)


@pytest.mark.parametrize("name,params,match", [
    ("normalized_flows.regularized_hessian", {"lam": 0.6}, "lam must lie in"),
    ("normalized_flows.regularized_hessian", {"lam": 0.0}, "lam must lie in"),
    ("normalized_flows.deep", {"activation": "tanh"}, "activation must be one of"),
    ("normalized_flows.deep", {"depth": 1}, "depth must be >= 2"),
    ("normalized_flows.deep_normalized", {"width": 0}, "width must be an int"),
    ("normalized_flows.weight_norm", {"v_norm": -1.0}, "v_norm must be positive"),
])
def test_bad_parameters(name, params, match):
    with pytest.raises(ValueError, match=match):
        rf.get_entry(name).build(**params)


def test_non_separable_data_is_refused():
    bad = {"x": jnp.array([[1.0, 0.0], [1.0, 0.1], [-0.5, 1.0]]), "y": jnp.array([1.0, -1.0, 1.0])}
    with pytest.raises(ValueError, match="not separable"):
        nf.hard_margin_svm(bad)
    with pytest.raises(ValueError, match="not separable"):
        nf.separating_cone(bad)
    crossed = {"x": jnp.array([[1.0, 0.2], [0.3, -1.0]]), "y": jnp.array([1.0, -1.0])}
    with pytest.raises(ValueError, match="cross-class inner product"):
        nf.relu_starts(nf.layer_shapes(2, 2), crossed)
