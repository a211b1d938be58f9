"""Tests of `regflow._spectra`: matrix-free Hessian / Jacobian spectra, traces, zero modes."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.flatten_util import ravel_pytree

import regflow as rf  # noqa: F401  (turns on float64)
from regflow._spectra import (
    count_zero_modes,
    hessian_eigs,
    hessian_operator,
    hessian_trace,
    hvp,
    jacobian_eigs,
    sharpness,
    sharpness_fn,
)

RTOL = 1e-8


# ----------------------------------------------------------------------------- problems


def quadratic(w, A):
    return 0.5 * w @ A @ w


def dense_hessian(loss, w, args):
    """Reference: the jitted dense Hessian of the flat view."""
    flat, unravel = ravel_pytree(w)
    return np.asarray(jax.jit(jax.hessian(lambda x: loss(unravel(x), args)))(flat))


def random_symmetric(d, eigenvalues, seed=0):
    Q, _ = np.linalg.qr(np.random.default_rng(seed).standard_normal((d, d)))
    return jnp.asarray((Q * np.asarray(eigenvalues)) @ Q.T)


def mlp_loss(p, data):
    """Two-layer tanh network, mean squared error; ``p = {"W1": (h, n_in), "W2": (n_out, h)}``."""
    X, Y = data
    return 0.5 * jnp.mean(jnp.sum((jnp.tanh(X @ p["W1"].T) @ p["W2"].T - Y) ** 2, axis=1))


def mlp_point(n_in=6, hidden=12, n_out=3, n=40, seed=0):
    rng = np.random.default_rng(seed)
    p = {"W1": jnp.asarray(rng.standard_normal((hidden, n_in)) / np.sqrt(n_in)),
         "W2": jnp.asarray(rng.standard_normal((n_out, hidden)) / np.sqrt(hidden))}
    data = (jnp.asarray(rng.standard_normal((n, n_in))), jnp.asarray(rng.standard_normal((n, n_out))))
    return p, data


def scalar_net(w, args):
    """L(w) = (w_1 ... w_d - 1)^2."""
    return (jnp.prod(w) - 1.0) ** 2


def relu_net(p, data):
    """f(x) = sum_j a_j relu(b_j . x), squared error against the teacher's outputs."""
    X, y = data
    return 0.5 * jnp.mean((jax.nn.relu(X @ p["B"].T) @ p["a"] - y) ** 2)


@pytest.fixture(scope="module")
def mlp():
    return mlp_point()


@pytest.fixture(scope="module")
def relu_minimum():
    """A teacher's own weights: zero loss, and b_j -> s b_j, a_j -> a_j / s leaves f unchanged, so
    the Hessian has one zero mode per hidden neuron, and (many samples, generic data) no others."""
    hidden, n_in, n = 12, 8, 300
    rng = np.random.default_rng(3)
    p = {"a": jnp.asarray(rng.choice([-1.0, 1.0], hidden) * rng.uniform(0.5, 1.5, hidden)),
         "B": jnp.asarray(rng.standard_normal((hidden, n_in)))}
    X = jnp.asarray(rng.standard_normal((n, n_in)))
    return p, (X, jax.nn.relu(X @ p["B"].T) @ p["a"]), hidden


# ----------------------------------------------------------------------------- dense vs Lanczos


@pytest.mark.parametrize("which", ["top", "bottom"])
def test_dense_and_lanczos_agree_on_random_quadratic(which):
    d = 120
    A = random_symmetric(d, np.linspace(-2.0, 5.0, d) ** 3)
    w = jnp.ones(d)
    dense = hessian_eigs(quadratic, w, k=4, which=which, args=A)
    lanczos = hessian_eigs(quadratic, w, k=4, which=which, args=A, dense_below=0)
    exact = np.sort(np.linalg.eigvalsh(A))
    exact = exact[::-1][:4] if which == "top" else exact[:4]
    np.testing.assert_allclose(dense, exact, rtol=RTOL, atol=RTOL)
    np.testing.assert_allclose(lanczos, exact, rtol=RTOL, atol=RTOL * 125)


@pytest.mark.parametrize("which", ["top", "bottom"])
def test_dense_and_lanczos_agree_on_mlp(mlp, which):
    p, data = mlp
    dense = hessian_eigs(mlp_loss, p, k=3, which=which, args=data)
    lanczos = hessian_eigs(mlp_loss, p, k=3, which=which, args=data, dense_below=0)
    np.testing.assert_allclose(lanczos, dense, rtol=RTOL, atol=RTOL * abs(dense).max())
    assert np.all(np.diff(dense) <= 0) if which == "top" else np.all(np.diff(dense) >= 0)


def test_sharpness_is_top_eigenvalue(mlp):
    p, data = mlp
    top = hessian_eigs(mlp_loss, p, args=data)[0]
    assert sharpness(mlp_loss, p, data) == pytest.approx(top, rel=1e-12)
    assert sharpness(mlp_loss, p, data, dense_below=0) == pytest.approx(top, rel=RTOL)


def test_lanczos_is_reproducible(mlp):
    p, data = mlp
    a = hessian_eigs(mlp_loss, p, k=2, args=data, dense_below=0, vectors=True)
    b = hessian_eigs(mlp_loss, p, k=2, args=data, dense_below=0, vectors=True)
    np.testing.assert_array_equal(a[0], b[0])
    np.testing.assert_array_equal(ravel_pytree(a[1])[0], ravel_pytree(b[1])[0])


# ----------------------------------------------------------------------------- closed forms


@pytest.mark.parametrize("d", [4, 40])
def test_scalar_net_hessian_at_minimum(d):
    """At prod(w) = 1 the Hessian is 2 g g^T, g_i = 1/w_i: eigenvalues 2 sum 1/w_i^2 and d-1 zeros."""
    z = np.random.default_rng(d).uniform(-0.5, 0.5, d)
    w = jnp.asarray(np.exp(z - z.mean()))
    top = 2.0 * np.sum(1.0 / np.asarray(w) ** 2)
    for dense_below in (500, 0):
        np.testing.assert_allclose(hessian_eigs(scalar_net, w, k=2, dense_below=dense_below), [top, 0.0],
                                   rtol=RTOL, atol=RTOL * top)
        np.testing.assert_allclose(hessian_eigs(scalar_net, w, k=3, which="bottom", dense_below=dense_below),
                                   np.zeros(3), atol=RTOL * top)
    assert count_zero_modes(hessian_operator(scalar_net, w), k=d - 1) == d - 1


def test_analysis_docstring_example():
    np.testing.assert_allclose(hessian_eigs(scalar_net, [2.0, 0.5], k=2), [8.5, 0.0], atol=1e-12)


# ----------------------------------------------------------------------------- pytrees


def test_pytree_matches_flat_vector(mlp):
    p, data = mlp
    flat, unravel = ravel_pytree(p)
    flat_loss = lambda x, a: mlp_loss(unravel(x), a)  # noqa: E731
    for dense_below in (500, 0):
        tree = hessian_eigs(mlp_loss, p, k=3, args=data, dense_below=dense_below)
        vec = hessian_eigs(flat_loss, flat, k=3, args=data, dense_below=dense_below)
        np.testing.assert_allclose(tree, vec, rtol=1e-10)


@pytest.mark.parametrize("dense_below", [500, 0])
def test_eigenvectors_are_pytrees_like_w(mlp, dense_below):
    p, data = mlp
    vals, vecs = hessian_eigs(mlp_loss, p, k=2, which="bottom", args=data, vectors=True,
                              dense_below=dense_below)
    assert len(vecs) == 2
    for lam, v in zip(vals, vecs):
        assert jax.tree_util.tree_structure(v) == jax.tree_util.tree_structure(p)
        assert all(v[name].shape == p[name].shape for name in p)
        flat_v = ravel_pytree(v)[0]
        assert float(jnp.linalg.norm(flat_v)) == pytest.approx(1.0, rel=1e-10)
        np.testing.assert_allclose(ravel_pytree(hvp(mlp_loss, p, v, data))[0], lam * flat_v, atol=1e-7)


def test_hvp_matches_dense_hessian(mlp):
    p, data = mlp
    H = dense_hessian(mlp_loss, p, data)
    v = jax.tree_util.tree_map(lambda x: jnp.cos(jnp.arange(x.size, dtype=float)).reshape(x.shape), p)
    np.testing.assert_allclose(ravel_pytree(hvp(mlp_loss, p, v, data))[0], H @ ravel_pytree(v)[0],
                               rtol=1e-10, atol=1e-12)


# ----------------------------------------------------------------------------- traces


def test_trace_exact_below_threshold(mlp):
    p, data = mlp
    H = dense_hessian(mlp_loss, p, data)
    assert hessian_trace(mlp_loss, p, data) == pytest.approx(float(np.trace(H)), rel=1e-12)


def test_hutchinson_within_standard_errors():
    d, samples = 200, 100
    A = random_symmetric(d, np.random.default_rng(1).uniform(0.0, 2.0, d) + 1.0)
    exact = float(jnp.trace(A))
    sigma = np.sqrt(2.0 * (np.sum(np.asarray(A) ** 2) - np.sum(np.diag(A) ** 2)) / samples)
    est = hessian_trace(quadratic, jnp.ones(d), A, samples=samples, seed=0, dense_below=0)
    assert abs(est - exact) < 4.0 * sigma
    assert hessian_trace(quadratic, jnp.ones(d), A, samples=samples, seed=0, dense_below=0) == est
    assert hessian_trace(quadratic, jnp.ones(d), A, samples=samples, seed=1, dense_below=0) != est


# ----------------------------------------------------------------------------- Jacobians


def rotation_decay(t, y, args):
    """Blocks [[-g, -om], [om, -g]] on pairs (y[2i], y[2i+1]): eigenvalues -g_i +- i om_i."""
    gamma, omega = args
    x, v = y[0::2], y[1::2]
    return jnp.stack([-gamma * x - omega * v, omega * x - gamma * v], axis=1).ravel()


def test_jacobian_eigs_rotation_decay():
    n = 60
    gamma, omega = jnp.linspace(0.1, 3.0, n), jnp.linspace(1.0, 2.0, n)
    expected = np.array([-0.1 + 1.0j, -0.1 - 1.0j, -gamma[1] + 1j * omega[1], -gamma[1] - 1j * omega[1]])
    y = jnp.ones(2 * n)
    for dense_below in (500, 0):
        vals = jacobian_eigs(rotation_decay, y, k=4, args=(gamma, omega), dense_below=dense_below)
        np.testing.assert_allclose(vals, expected, atol=1e-8)
    sr = jacobian_eigs(rotation_decay, y, k=2, which="SR", args=(gamma, omega), dense_below=0)
    np.testing.assert_allclose(sr, [-3.0 + 2.0j, -3.0 - 2.0j], atol=1e-8)


def test_jacobian_eigs_pytree_state():
    field = lambda t, y, a: {"x": -y["v"] - 0.5 * y["x"], "v": y["x"] - 0.5 * y["v"]}  # noqa: E731
    vals = jacobian_eigs(field, {"x": jnp.ones(3), "v": jnp.zeros(3)}, k=6)
    np.testing.assert_allclose(vals, [-0.5 + 1j] * 3 + [-0.5 - 1j] * 3, atol=1e-12)


# ----------------------------------------------------------------------------- zero modes


@pytest.mark.parametrize("k, count", [(10, 7), (5, 5)])
def test_count_zero_modes_diagonal(k, count):
    """7 exact zeros among 2000: one Lanczos run sees one copy; deflation recovers all of them."""
    rng = np.random.default_rng(0)
    diag = rng.permutation(np.concatenate([np.zeros(7), rng.uniform(0.1, 10.0, 1993)]))
    assert count_zero_modes(lambda x: diag * x, dim=2000, k=k) == count


def test_count_zero_modes_indefinite_and_negative():
    rng = np.random.default_rng(1)
    diag = rng.permutation(np.concatenate([np.zeros(4), rng.uniform(0.5, 2.0, 296) * rng.choice([-1, 1], 296)]))
    assert count_zero_modes(lambda x: diag * x, dim=300, k=8) == 4
    assert count_zero_modes(lambda x: -np.abs(diag) * x, dim=300, k=8) == 4


def test_count_zero_modes_relu_rescaling(relu_minimum):
    p, data, hidden = relu_minimum
    spectrum = np.linalg.eigvalsh(dense_hessian(relu_net, p, data))
    assert spectrum[hidden] > 1e-5 * spectrum[-1]                         # the count is known:
    assert np.all(np.abs(spectrum[:hidden]) < 1e-12 * spectrum[-1])      # exactly `hidden` zeros
    for j in range(hidden):                                               # ... along the rescalings
        v = {"a": -p["a"] * (jnp.arange(hidden) == j), "B": p["B"] * (jnp.arange(hidden) == j)[:, None]}
        assert float(jnp.linalg.norm(ravel_pytree(hvp(relu_net, p, v, data))[0])) < 1e-12
    assert count_zero_modes(hessian_operator(relu_net, p, data), k=hidden + 10) == hidden


# ----------------------------------------------------------------------------- sharpness_fn


def test_sharpness_fn_matches_sharpness():
    d = 300
    A = random_symmetric(d, np.r_[10.0, np.random.default_rng(2).uniform(-1.0, 5.0, d - 1)])
    q = jax.jit(sharpness_fn(quadratic))
    w = jnp.ones(d)
    assert float(q(w, A)) == pytest.approx(sharpness(quadratic, w, A), rel=1e-6)


def test_sharpness_fn_vmaps_along_trajectory(mlp):
    p, data = mlp
    q = sharpness_fn(mlp_loss, iters=40)
    states = jax.tree_util.tree_map(lambda x: jnp.stack([x, 1.1 * x, 0.9 * x]), p)
    got = jax.jit(jax.vmap(lambda w: q(w, data)))(states)
    want = [sharpness(mlp_loss, jax.tree_util.tree_map(lambda x: x[i], states), data) for i in range(3)]
    np.testing.assert_allclose(got, want, rtol=1e-6)


def test_sharpness_fn_small_dim_breakdown():
    """iters > dim: Lanczos spans the space, then restarts instead of dividing by zero."""
    q = sharpness_fn(quadratic, iters=10)
    A = jnp.diag(jnp.array([-1.0, -2.0, -3.0]))
    assert float(q(jnp.ones(3), A)) == pytest.approx(-1.0, rel=1e-12)


# ----------------------------------------------------------------------------- compilation cache


def test_second_call_does_not_retrace():
    traces = []

    def loss(w, a):
        traces.append(1)
        return mlp_loss(w, a)

    def field(t, y, a):
        traces.append(1)
        return -a * y

    for seed in (0, 1):
        p, data = mlp_point(seed=seed)
        hessian_eigs(loss, p, k=2, args=data)
        hessian_eigs(loss, p, k=2, which="bottom", args=data, dense_below=0)
        hessian_trace(loss, p, data)
        hessian_trace(loss, p, data, seed=seed, dense_below=0)
        hvp(loss, p, p, data)
        jacobian_eigs(field, jnp.ones(8) * (seed + 1), k=2, args=jnp.arange(8.0) + seed)
        jacobian_eigs(field, jnp.ones(8) * (seed + 1), k=2, args=jnp.arange(8.0) + seed, dense_below=0,
                      t=float(seed))
        if seed == 0:
            first = len(traces)
    assert len(traces) == first


# ----------------------------------------------------------------------------- errors


def test_errors_name_the_argument():
    w = {"a": jnp.ones(3), "b": jnp.ones((2, 2))}
    loss = lambda w, a: jnp.sum(w["a"] ** 2) + jnp.sum(w["b"] ** 2)  # noqa: E731
    with pytest.raises(TypeError, match="loss must be a callable"):
        hessian_eigs("not a loss", w)
    with pytest.raises(ValueError, match=r"loss must return a scalar, got shape \(3,\); sum or average"):
        hessian_eigs(lambda w, a: w["a"] ** 2, w)
    with pytest.raises(TypeError, match=r"w\['b'\] has dtype int"):
        sharpness(loss, {"a": jnp.ones(3), "b": jnp.ones((2, 2), dtype=int)})
    with pytest.raises(TypeError, match=r"w mixes dtypes: w\['a'\] is float64 but w\['b'\] is float32"):
        sharpness(loss, {"a": jnp.ones(3), "b": jnp.ones((2, 2), dtype=jnp.float32)})
    with pytest.raises(ValueError, match=r"w\['a'\] has non-finite entries"):
        hessian_trace(loss, {"a": jnp.array([1.0, jnp.nan, 0.0]), "b": jnp.ones((2, 2))})
    with pytest.raises(ValueError, match="v must have the structure and leaf shapes of w: w is"):
        hvp(loss, w, [jnp.ones(3), jnp.ones((2, 2))])
    with pytest.raises(ValueError, match="k must be an int >= 1, got 0"):
        hessian_eigs(loss, w, k=0)
    with pytest.raises(ValueError, match="k = 7 is too large for dim = 7.*at most dim - 1 = 6"):
        hessian_eigs(loss, w, k=7, dense_below=0)
    assert hessian_eigs(loss, w, k=7).shape == (7,)            # dense: any k <= dim
    with pytest.raises(ValueError, match="which must be one of"):
        hessian_eigs(loss, w, which="LA")
    with pytest.raises(ValueError, match="which must be one of"):
        jacobian_eigs(lambda t, y, a: -y, jnp.ones(3), which="top")
    with pytest.raises(ValueError, match="field must return a pytree like y"):
        jacobian_eigs(lambda t, y, a: jnp.ones(4), jnp.ones(3))
    with pytest.raises(ValueError, match="dim must be an int"):
        count_zero_modes(lambda x: x, k=2)
    with pytest.raises(ValueError, match="iters must be an int >= 1"):
        sharpness_fn(loss, iters=0)
