"""Tests of `regflow.systems.normalized_flows` beyond its catalogue claims: the SVM against
scikit-learn, the chain rule behind the normalized fields, helpers, rows that now read the
method's flow, and bad parameters."""

import dataclasses

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
    net = nf.network_of(shapes, activation)
    field = nf.normalized_field(net)
    loss = nf.model(shapes, activation)["loss"]

    @jax.jit
    def both(w):
        params = net.unflatten(w)
        velocity = jax.tree_util.tree_map(lambda g: -g, jax.grad(lambda p: loss(net.flatten(p), data))(params))
        return field(0.0, net.normalize(params), data), jax.jvp(net.normalize, (params,), (velocity,))[1]

    for w in nf.separating_starts(shapes, activation, data, n=3, scale=1.5, seed=7):
        got, pushed = both(jnp.asarray(w))
        for a, b in zip(jax.tree_util.tree_leaves(got), jax.tree_util.tree_leaves(pushed)):
            np.testing.assert_allclose(a, b, rtol=1e-11, atol=1e-13)
        assert got["rho"].shape == (len(shapes),)


def test_normalize_round_trip():
    shapes = nf.layer_shapes(3, 2)
    net = nf.network_of(shapes, "relu")
    w = np.random.default_rng(0).normal(size=(5, net.size))
    states = nf.normalize(w, net)
    assert states["rho"].shape == (5, 3) and states["V"]["W2"].shape == (5, 2, 2)
    for i, orig in enumerate(w):
        state = jax.tree_util.tree_map(lambda leaf: leaf[i], states)
        np.testing.assert_allclose([np.linalg.norm(V) for V in state["V"].values()], 1.0, rtol=1e-14)
        np.testing.assert_allclose(net.flatten(net.denormalize(state)), orig, rtol=1e-14)
    np.testing.assert_allclose(nf.to_normalized(w[:, :2])[:, 0], np.linalg.norm(w[:, :2], axis=1), rtol=1e-14)


def test_polar_field_matches_eq_42_43(data):
    field = nf.linear_normalized_field()
    for theta, log_rho in [(0.2, -1.0), (0.7, 0.5), (1.1, 2.0)]:
        rho, v = np.exp(log_rho), np.array([np.cos(theta), np.sin(theta)])
        f = np.asarray(field(0.0, jnp.asarray(np.r_[rho, v]), data))
        np.testing.assert_allclose(f[0], nf.eq42_43(rho, jnp.asarray(v), data)[0], rtol=1e-12)
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
    pts = nf.random_points(n=2)
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
    ("normalized_flows.regularization_path", {"lam": 0.5}, "lam must lie in"),
    ("normalized_flows.linear_net_zero_modes", {"lam": -1.0}, "lam must be >= 0"),
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


def test_thm7_rows_measure_the_flow():
    # the spectra, the determinant and the zero-mode rows read the method's flow: a flow with the penalty
    # lambda |w|^2 taken as weight_decay = lambda (mu, not 2 mu) fails them
    method = nf.regularized_hessian(lam=0.1)
    kept = [c for c in method.claims if type(c).__name__ in ("Spectrum", "Holds")]
    wrong = rf.gradient_flow(nf.thm7_exp_loss, weight_decay=0.1)
    report = rf.check(dataclasses.replace(method, flow=wrong, claims=kept))
    assert len(report.rows) == 5 and not any(row.passed for row in report.rows[:3])
    assert rf.check(dataclasses.replace(method, claims=kept)).passed


def test_thm7_spectrum_for_every_lambda():
    for lam in nf.THM7_LAMBDAS:
        flow = nf.regularized_hessian(lam=lam).flow
        for p in nf.critical_circle(lam, n=3):
            eigs = np.sort(np.linalg.eigvals(rf.jacobian(flow, p)).real)
            np.testing.assert_allclose(eigs, np.sort(-nf.thm7_spectrum(lam)(p)), atol=1e-12)


def test_readings_and_errata_are_graded():
    grades = {c.name: c.grade for c in nf.weight_norm().claims if c.erratum}
    assert grades["WN angle to SVM at t=1e15"] == "reading"
    assert grades["eq 90-92: dL/dV = rho (I - VV^T) dL/dw at |v| = 1"] == "reading"
    assert grades["eq 89 as printed: rho = |w| g"] == "erratum"


def test_symmetry_minima_are_critical_and_counted():
    data, M, net = nf.symmetry_problem()
    for lam in (0.0, 0.05):
        def loss(w, d, lam=lam):
            return 0.5 * jnp.sum((net(net.unflatten(w), d["x"]) - d["y"]) ** 2) + lam * jnp.sum(w**2)

        for w in nf.symmetry_minima(M, lam):
            np.testing.assert_allclose(jax.grad(loss)(jnp.asarray(w), data), 0.0, atol=1e-12)
    assert nf.group_dimension(nf.SYMMETRY_WIDTHS, orthogonal=False) == 8
    assert nf.group_dimension(nf.SYMMETRY_WIDTHS, orthogonal=True) == 2


def test_regularization_path_asymptotics(data):
    # w_lam = s w_svm + w~ - A^-1 w~ / s + O(1/s^2), s = W(1/2 lam): the error shrinks faster than 1/s
    errors = []
    for lam in (1e-4, 1e-8, 1e-12):
        exact, predicted = nf.exact_path_point(data, lam), nf.path_point(data, lam)
        errors.append(np.linalg.norm(exact - predicted) / np.linalg.norm(exact))
    assert errors[0] > errors[1] > errors[2] and errors[2] < 1e-4
    w_hat, _ = nf.svm_asymptotics(data)
    assert nf.angle(nf.exact_path_point(data, 1e-12), w_hat) < 5e-3


def test_null_space_hessian_has_d_minus_n_zeros():
    w = np.array([0.3, -0.2, 0.7])
    eigs = np.linalg.eigvalsh(rf.hessian(lambda v, a: jnp.sum(jnp.exp(-(a["y"][:, None] * a["x"]) @ v)), w,
                                         nf.NULL_DATA))
    np.testing.assert_allclose(eigs, nf.hessian_spectrum(nf.NULL_DATA)(w), atol=1e-12)
    assert abs(eigs[0]) < 1e-12 and eigs[1] > 1e-3
    np.testing.assert_allclose(nf.null_projector(nf.NULL_DATA) @ nf.signed_data(nf.NULL_DATA).T, 0.0, atol=1e-14)
