"""rf.count_conservation_laws, rf.conservation_laws, rf.principal_angles, rf.prove_conserved:
the counts and laws of Marcotte, Gribonval & Peyre on shapes the catalogue does not use, and bad
inputs named."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import regflow as rf


def linear(p, x):
    return x @ p["V"] @ p["U"].T


def relu(p, x):
    return jax.nn.relu(x @ p["V"]) @ p["U"].T


def tanh(p, x):
    return jnp.tanh(x @ p["V"]) @ p["U"].T


def params(n, m, r, seed=0):
    rng = np.random.default_rng(seed)
    return {"U": rng.normal(size=(n, r)), "V": rng.normal(size=(m, r))}


def gram(r):
    def entry(i, j):
        return lambda p, a=None: p["U"][:, i] @ p["U"][:, j] - p["V"][:, i] @ p["V"][:, j]

    return [entry(i, j) for i in range(r) for j in range(i, r)]


def balances(r):
    return [lambda p, a=None, k=k: jnp.sum(p["U"][:, k] ** 2) - jnp.sum(p["V"][:, k] ** 2) for k in range(r)]


@functools.lru_cache(maxsize=None)
def count(model, shape):
    n, m, r = shape
    return rf.count_conservation_laws(model, params(n, m, r), inputs=m)


@pytest.mark.parametrize("model, shape, expect", [
    (linear, (3, 3, 2), 3),     # r (r + 1) / 2
    (relu, (3, 2, 3), 3),       # one per hidden neuron
    (tanh, (2, 2, 2), 0),       # not homogeneous: none
])
def test_counts(model, shape, expect):
    n, m, r = shape
    found = count(model, shape)
    assert found == expect and int(found) == expect
    assert found.dim == (n + m) * r and found.rank == found.dim - expect
    kept, dropped = found.gap
    assert kept > 1e3 * found.tol > dropped  # a clear rank, not one at the threshold


def test_linear_count_needs_brackets():
    """W alone has D - r^2 dimensions; its brackets add r(r-1)/2 (the Lie algebra is larger than W)."""
    linear_count = count(linear, (3, 3, 2))
    assert linear_count.levels[0] == linear_count.dim - 4 and linear_count.levels[-1] == linear_count.dim - 3
    assert linear_count.depth >= 3


@pytest.fixture(scope="module")
def linear_laws():
    return rf.conservation_laws(linear, params(3, 3, 2), inputs=3)


def test_linear_laws_are_the_gram_entries(linear_laws):
    assert len(linear_laws) == 3
    angles = rf.principal_angles(linear_laws, gram(2), params(3, 3, 2))
    assert np.max(angles) < 1e-6
    coefficients = np.column_stack([law.coefficients for law in linear_laws])
    assert np.allclose(coefficients.T @ coefficients, np.eye(3), atol=1e-12)  # an orthonormal basis
    assert all(law.residual < 1e-9 for law in linear_laws) and linear_laws[0].gap > 1e-6


def test_relu_laws_are_the_neuron_balances():
    laws = rf.conservation_laws(relu, params(2, 3, 2), inputs=3)
    assert len(laws) == 2
    assert np.max(rf.principal_angles(laws, balances(2), params(2, 3, 2))) < 1e-6
    # the ReLU laws are not the linear net's: U^T U - V^T V off the diagonal is not in their span
    assert np.max(rf.principal_angles(laws, gram(2)[1:2], params(2, 3, 2))) > 0.1


def test_a_law_is_a_quantity(linear_laws):
    law = linear_laws[0]
    p = params(3, 3, 2, seed=5)
    flat = np.concatenate([p["U"].ravel(), p["V"].ravel()])
    by_hand = sum(c * np.prod(flat ** e) for c, e in zip(law.coefficients, law.monomials))
    assert abs(float(law(p, None)) - by_hand) < 1e-12
    assert "U[0,0]" in law.formula() and law.degree == 2


def test_scalar_net_flow_has_only_the_hyperbolas():
    flow = rf.gradient_flow(lambda w, a: (jnp.prod(w) - 1.0) ** 2)
    laws = rf.conservation_laws(flow, np.array([0.7, 1.1, 1.3]))
    assert len(laws) == 2
    hyperbolas = [lambda w, a: w[0] ** 2 - w[1] ** 2, lambda w, a: w[1] ** 2 - w[2] ** 2]
    assert np.max(rf.principal_angles(laws, hyperbolas)) < 1e-6
    # weight decay breaks them: no polynomial law is left
    assert rf.conservation_laws(rf.gradient_flow(lambda w, a: (jnp.prod(w) - 1.0) ** 2, weight_decay=0.1),
                                np.array([0.7, 1.1, 1.3])) == []


def test_prove_conserved():
    field = lambda y: [-2 * y[1] * (y[0] * y[1] - 1), -2 * y[0] * (y[0] * y[1] - 1)]  # noqa: E731
    assert rf.prove_conserved(field, lambda y: y[0] ** 2 - y[1] ** 2, ["w1", "w2"])
    assert not rf.prove_conserved(field, lambda y: y[0] ** 2 + y[1] ** 2, ["w1", "w2"])
    assert rf.prove_conserved(lambda t, y, a: [a * y[1], -a * y[0]], "w1**2 + w2**2", ["w1", "w2"], args=3)
    law = rf.conservation_laws(rf.gradient_flow(lambda w, a: (w[0] * w[1] - 1.0) ** 2), np.array([0.5, 1.5]))[0]
    assert rf.prove_conserved(field, law, ["w1", "w2"])


def test_bad_inputs_are_named():
    p = params(2, 2, 1)
    with pytest.raises(TypeError, match="model must be"):
        rf.count_conservation_laws("net", p, inputs=2)
    with pytest.raises(ValueError, match="inputs is required"):
        rf.count_conservation_laws(linear, p)
    with pytest.raises(ValueError, match="points must be a positive int"):
        rf.count_conservation_laws(linear, p, inputs=2, points=0)
    with pytest.raises(ValueError, match="tol must be a number in"):
        rf.count_conservation_laws(linear, p, inputs=2, tol=2.0)
    with pytest.raises(TypeError, match=r"model\(params, x, args\)"):
        rf.count_conservation_laws(linear, p, args={"a": 1.0}, inputs=2)
    with pytest.raises(ValueError, match="datasets resamples a flow"):
        rf.count_conservation_laws(linear, p, inputs=2, datasets=3)
    with pytest.raises(ValueError, match="flow needs args"):
        rf.count_conservation_laws(rf.gradient_flow(lambda w, a: jnp.sum(w**2)), np.ones(2), datasets=2)
    with pytest.raises(ValueError, match="at most 60"):
        rf.count_conservation_laws(linear, params(10, 10, 4), inputs=10)
    with pytest.raises(ValueError, match="params .*must be finite"):
        rf.count_conservation_laws(linear, {"U": np.full((2, 1), np.nan), "V": np.ones((2, 1))}, inputs=2)
    with pytest.raises(ValueError, match="degree must be a positive int"):
        rf.conservation_laws(linear, p, inputs=2, degree=0)
    with pytest.raises(ValueError, match="give points >="):
        rf.conservation_laws(linear, p, inputs=2, points=1)
    with pytest.raises(ValueError, match="two non-empty sets"):
        rf.principal_angles([], gram(1))
    with pytest.raises(TypeError, match="accept sympy symbols"):
        rf.prove_conserved(lambda y: jnp.stack([y[1], -y[0]]), lambda y: y[0] ** 2, ["a", "b"])
    with pytest.raises(ValueError, match="one name per coordinate"):
        rf.prove_conserved(lambda y: [y[1], -y[0]], lambda y: y[0] ** 2, ["a", "b", "c"])


def test_laws_checked_against_the_wrong_state(linear_laws):
    with pytest.raises(ValueError, match="12 coordinates, got a state with 2"):
        linear_laws[0](np.ones(2))
    with pytest.raises(ValueError, match="not a polynomial of degree <= 2"):
        rf.law_coefficients(lambda p, a: jnp.sum(p["U"] ** 4), linear_laws[0], params(3, 3, 2))


def test_a_gradient_flow_over_data_sets():
    """The fields of a gradient flow over random data sets generate the model's Lie algebra
    (the paper's W^g): the same count and laws as the model's Jacobian rows."""
    rng = np.random.default_rng(1)
    data = {"x": rng.normal(size=(5, 3)), "y": rng.normal(size=(5, 2))}

    def loss(p, a):
        return 0.5 * jnp.mean(jnp.sum((linear(p, a["x"]) - a["y"]) ** 2, axis=-1))

    flow = rf.gradient_flow(loss, args=data)
    assert rf.count_conservation_laws(flow, params(2, 3, 2), datasets=4, points=2) == 3
    laws = rf.conservation_laws(flow, params(2, 3, 2), datasets=2)
    assert len(laws) == 3 and np.max(rf.principal_angles(laws, gram(2), params(2, 3, 2))) < 1e-6


def test_momentum_keeps_no_law_of_the_gradient_flow():
    """Marcotte, Gribonval & Peyre 2024: the heavy-ball ODE of a linear net keeps none of the
    gradient flow's laws on (w, v) (its first-order limit keeps all three); what remains is the
    antisymmetric part A of U^T U' - V'^T V, with A' = -c A."""
    rng = np.random.default_rng(2)
    data = {"x": rng.normal(size=(5, 3)), "y": rng.normal(size=(5, 2))}

    def loss(p, a):
        return 0.5 * jnp.mean(jnp.sum((linear(p, a["x"]) - a["y"]) ** 2, axis=-1))

    lr, beta = 0.2, 0.8
    w = params(2, 3, 2, seed=3)
    y0 = {"params": w, "velocity": params(2, 3, 2, seed=4)}
    ode = rf.momentum_ode(loss, lr=lr, beta=beta, args=data)
    assert rf.count_conservation_laws(ode, y0, datasets=6, points=1) == 0
    assert len(rf.conservation_laws(ode, y0, datasets=2)) == 0
    assert rf.count_conservation_laws(rf.heavy_ball_flow(loss, beta=beta, args=data), w, datasets=6, points=1) == 3

    def anti(y, a=None):
        M = y["params"]["U"].T @ y["velocity"]["U"] - y["velocity"]["V"].T @ y["params"]["V"]
        return 0.5 * (M[0, 1] - M[1, 0])

    traj = rf.integrate(ode, y0, 1.0, ts=np.linspace(0.0, 1.0, 5), backend="scipy")
    c = 2 * (1 - beta) / (lr * (1 + beta))
    np.testing.assert_allclose(traj.evaluate(anti), np.exp(-c * traj.t) * anti(y0), rtol=1e-6, atol=1e-9)
    gram_drift = np.abs(traj.evaluate(lambda y, a: gram(2)[1](y["params"]))[-1] - gram(2)[1](w))
    assert gram_drift > 1e-2
