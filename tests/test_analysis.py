"""Tests of `regflow._analysis`: Jacobians, Hessians, Lie derivatives, equilibria."""

import jax

jax.config.update("jax_enable_x64", True)

import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402

from regflow._analysis import hessian, jacobian, lie_derivative  # noqa: E402
from regflow._equilibria import Equilibrium, equilibria  # noqa: E402
from regflow._system import ODE, SDE, Map  # noqa: E402

RTOL = 1e-8


def scalar_net_loss(w, args):
    """L(w) = (w_1 ... w_d - 1)^2, minima on the set prod(w) = 1."""
    return (jnp.prod(w) - 1.0) ** 2


def imbalance(w, args):
    return w[0] ** 2 - w[1] ** 2


@pytest.fixture(scope="module")
def flow():
    return ODE(lambda t, w, args: -jax.grad(scalar_net_loss)(w, args), names=("w1", "w2"))


def gd(lr):
    return Map(lambda k, w, args: w - lr * jax.grad(scalar_net_loss)(w, args), dt=lr)


# --- jacobian / hessian -------------------------------------------------------------------


def test_jacobian_of_ode_sde_and_map_agree_with_hessian():
    w = np.array([2.0, 0.5])
    H = hessian(scalar_net_loss, w)
    assert H.dtype == np.float64 and H.shape == (2, 2)
    np.testing.assert_allclose(H, [[0.5, 2.0], [2.0, 8.0]], rtol=RTOL)
    drift = lambda t, w, args: -jax.grad(scalar_net_loss)(w, args)  # noqa: E731
    np.testing.assert_allclose(jacobian(ODE(drift), w), -H, rtol=RTOL)
    sde = SDE(drift, lambda t, w, args: 0.1 * jnp.ones_like(w))
    np.testing.assert_allclose(jacobian(sde, w), -H, rtol=RTOL)
    lr = 0.05
    np.testing.assert_allclose(jacobian(gd(lr), w), np.eye(2) - lr * H, rtol=RTOL)


def test_jacobian_uses_system_args_unless_given():
    ode = ODE(lambda t, y, a: a * y ** 2, args=3.0)
    np.testing.assert_allclose(jacobian(ode, [1.0, 2.0]), np.diag([6.0, 12.0]))
    np.testing.assert_allclose(jacobian(ode, [1.0, 2.0], args=1.0), np.diag([2.0, 4.0]))


def test_hessian_spectrum_of_scalar_net_d3():
    # at a minimum (prod w = 1) the spectrum is {0, 0, 2 * sum(1 / w_i^2)}
    w = np.array([2.0, 0.5, 1.0])
    eig = np.linalg.eigvalsh(hessian(scalar_net_loss, w))
    np.testing.assert_allclose(eig, [0.0, 0.0, 2 * np.sum(1 / w ** 2)], atol=1e-12)
    assert eig[-1] == pytest.approx(10.5)


# --- equilibria ---------------------------------------------------------------------------


def test_gradient_flow_minima_form_a_normally_attracting_hyperbola(flow):
    w1 = np.linspace(0.5, 2.5, 5)
    guesses = np.stack([w1, 1.15 / w1], axis=1)  # near, not on, the hyperbola
    eqs = equilibria(flow, guesses)
    assert len(eqs) == len(guesses)  # different guesses land on different points of the set
    assert [tuple(e.point) for e in eqs] == sorted(tuple(e.point) for e in eqs)
    for e in eqs:
        assert isinstance(e, Equilibrium)
        w1, w2 = e.point
        assert w1 * w2 == pytest.approx(1.0, abs=1e-10)
        assert e.zero_modes == 1
        assert e.kind == "degenerate sink"
        assert e.stable
        assert e.residual < 1e-9
        assert e.eigenvalues[0].real == pytest.approx(0.0, abs=1e-8)
        assert e.eigenvalues[-1].real == pytest.approx(-2 * (w1 ** 2 + w2 ** 2), rel=1e-8)


def test_origin_is_a_saddle_with_eigenvalues_plus_minus_two(flow):
    (origin,) = equilibria(flow, [0.0, 0.0])
    np.testing.assert_allclose(origin.point, [0.0, 0.0], atol=1e-12)
    np.testing.assert_allclose(origin.eigenvalues, [2.0, -2.0], atol=1e-12)
    assert origin.kind == "saddle" and origin.zero_modes == 0 and not origin.stable


def test_duplicates_merge_and_order_is_deterministic(flow):
    guesses = [[1.0, 1.0], [0.0, 0.0], [1.0, 1.0], [1.0 + 1e-12, 1.0]]
    eqs = equilibria(flow, guesses)
    assert len(eqs) == 2
    assert [e.kind for e in eqs] == ["saddle", "degenerate sink"]
    assert [tuple(e.point) for e in equilibria(flow, guesses)] == [tuple(e.point) for e in eqs]
    # another order keeps another representative of each cluster, the same ones up to dedupe
    reversed_points = [e.point for e in equilibria(flow, guesses[::-1])]
    np.testing.assert_allclose(reversed_points, [e.point for e in eqs], atol=1e-9)


def test_minimum_set_of_d3_net_is_two_dimensional():
    flow3 = ODE(lambda t, w, args: -jax.grad(scalar_net_loss)(w, args))
    (e,) = equilibria(flow3, [2.1, 0.5, 1.1])
    assert np.prod(e.point) == pytest.approx(1.0, abs=1e-10)
    assert e.zero_modes == 2 and e.kind == "degenerate sink" and e.stable
    assert e.eigenvalues[-1].real == pytest.approx(-2 * np.sum(1 / e.point ** 2), rel=1e-8)


def test_classification_of_linear_flows():
    def linear(A):
        return ODE(lambda t, y, args: jnp.asarray(A) @ y)

    cases = {
        "sink": [[-1.0, 0.0], [0.0, -2.0]],
        "source": [[1.0, 0.0], [0.0, 3.0]],
        "saddle": [[1.0, 0.0], [0.0, -3.0]],
        "center": [[0.0, -1.0], [1.0, 0.0]],
        "degenerate source": [[0.0, 0.0], [0.0, 2.0]],
        "degenerate": [[0.0, 0.0], [0.0, 0.0]],
    }
    for kind, A in cases.items():
        (e,) = equilibria(linear(A), [0.0, 0.0])
        assert e.kind == kind, kind
        assert e.stable == (kind == "sink")
    # a spiral sink: complex pair with negative real part
    (e,) = equilibria(linear([[-0.1, -1.0], [1.0, -0.1]]), [0.3, 0.2])
    assert e.kind == "sink" and e.stable
    np.testing.assert_allclose(e.eigenvalues, [-0.1 + 1j, -0.1 - 1j], atol=1e-12)


@pytest.mark.parametrize("factor, stable", [(0.9, True), (0.999, True), (1.001, False), (1.1, False)])
def test_gradient_descent_stable_iff_lr_times_sharpness_below_two(factor, stable):
    w_star = np.array([2.0, 0.5])
    sharpness = 2 * np.sum(w_star ** 2)  # lambda_max of the Hessian on w1 w2 = 1
    assert sharpness == pytest.approx(np.linalg.eigvalsh(hessian(scalar_net_loss, w_star))[-1])
    lr = factor * 2 / sharpness
    (e,) = equilibria(gd(lr), w_star)
    np.testing.assert_allclose(e.point, w_star, atol=1e-12)
    assert e.zero_modes == 1
    assert e.stable is stable
    assert e.kind == ("degenerate sink" if stable else "degenerate source")
    np.testing.assert_allclose(sorted(e.eigenvalues.real), [1 - lr * sharpness, 1.0], atol=1e-10)


def test_gradient_descent_fixed_points_from_guesses_match_flow_equilibria(flow):
    guesses = [[0.0, 0.0], [1.3, 0.9]]
    flow_points = [e.point for e in equilibria(flow, guesses)]
    map_points = [e.point for e in equilibria(gd(0.01), guesses)]
    np.testing.assert_allclose(map_points[0], flow_points[0], atol=1e-12)
    assert np.prod(map_points[1]) == pytest.approx(1.0, abs=1e-10)


def test_sde_equilibria_use_the_drift():
    ou = SDE(lambda t, y, a: -y + 1.0, lambda t, y, a: 0.5 * jnp.ones_like(y))
    (e,) = equilibria(ou, [0.0, 3.0])
    np.testing.assert_allclose(e.point, [1.0, 1.0], atol=1e-12)
    assert e.kind == "sink"


def test_guesses_that_do_not_converge_are_dropped():
    no_root = ODE(lambda t, y, a: y ** 2 + 1.0)
    assert equilibria(no_root, [[0.5], [-2.0]]) == []


# --- lie_derivative -----------------------------------------------------------------------


def test_imbalance_is_conserved_and_loss_decays_along_gradient_flow(flow):
    points = jax.random.normal(jax.random.PRNGKey(0), (20, 2)) * 1.5
    L_imb = jax.jit(jax.vmap(lie_derivative(flow, imbalance)))
    np.testing.assert_allclose(L_imb(points), 0.0, atol=1e-10)
    L_loss = jax.vmap(lie_derivative(flow, scalar_net_loss))(points)
    grad_sq = jax.vmap(lambda w: jnp.sum(jax.grad(scalar_net_loss)(w, None) ** 2))(points)
    np.testing.assert_allclose(L_loss, -grad_sq, rtol=1e-10)
    assert np.all(np.asarray(L_loss) <= 0)


def test_generator_of_ornstein_uhlenbeck():
    # dy = -y dt + s dB (diagonal): L |y|^2 = -2 |y|^2 + dim * s^2
    ou = SDE(lambda t, y, s: -y, lambda t, y, s: s * jnp.ones_like(y), noise="diagonal", args=0.3)
    gen = jax.jit(lie_derivative(ou, lambda y, a: jnp.sum(y ** 2)))
    y = jnp.array([1.0, -2.0, 0.5])
    assert float(gen(y)) == pytest.approx(-2 * float(y @ y) + 3 * 0.3 ** 2, rel=1e-12)
    assert float(gen(y, 0.7)) == pytest.approx(-2 * float(y @ y) + 3 * 0.7 ** 2, rel=1e-12)


def test_generator_with_general_noise():
    G = jnp.array([[1.0, 0.0, 2.0], [0.5, -1.0, 0.0]])  # dim 2, m = 3
    sde = SDE(lambda t, y, a: -y, lambda t, y, a: G, noise="general")
    y = jnp.array([0.4, -1.2])
    expected = -2 * float(y @ y) + float(jnp.trace(G @ G.T))
    assert float(lie_derivative(sde, lambda y, a: y @ y)(y)) == pytest.approx(expected, rel=1e-12)


def test_stratonovich_generator_uses_the_ito_drift():
    # dy = y o dB (scalar): Ito form dy = y/2 dt + y dB
    strat = SDE(lambda t, y, a: 0.0 * y, lambda t, y, a: y, noise="scalar", calculus="stratonovich")
    ito = SDE(lambda t, y, a: 0.0 * y, lambda t, y, a: y, noise="scalar")
    y = jnp.array([1.7])
    assert float(lie_derivative(strat, lambda y, a: y[0])(y)) == pytest.approx(0.85, rel=1e-12)
    assert float(lie_derivative(ito, lambda y, a: y[0])(y)) == pytest.approx(0.0, abs=1e-15)
    # L y^2 = 2y * y/2 + y^2 = 2 y^2
    assert float(lie_derivative(strat, lambda y, a: y[0] ** 2)(y)) == pytest.approx(2 * 1.7 ** 2)


def test_stratonovich_diagonal_correction():
    # diagonal g_i = y_i^2: Ito drift b_i + 1/2 g_i dg_i/dy_i = y_i^3
    strat = SDE(lambda t, y, a: 0.0 * y, lambda t, y, a: y ** 2, calculus="stratonovich")
    y = jnp.array([0.5, -1.5])
    Lq = lie_derivative(strat, lambda y, a: jnp.sum(y))
    assert float(Lq(y)) == pytest.approx(float(jnp.sum(y ** 3)), rel=1e-12)


# --- errors -------------------------------------------------------------------------------


def test_wrong_dimension_guesses_are_rejected():
    rot = ODE(lambda t, y, a: jnp.array([-y[1], y[0]]))
    with pytest.raises(ValueError, match="guesses have dimension 3"):
        equilibria(rot, [[1.0, 2.0, 3.0]])
    named = ODE(lambda t, y, a: -y, names=("x", "y"))
    with pytest.raises(ValueError, match="guesses have dimension 3"):
        equilibria(named, [1.0, 2.0, 3.0])
    with pytest.raises(ValueError, match="guesses must be finite"):
        equilibria(rot, [[1.0, np.nan]])


def test_non_finite_guesses_are_rejected(flow):
    with pytest.raises(ValueError, match="guesses must be finite"):
        equilibria(flow, [[1.0, np.nan]])
    with pytest.raises(ValueError, match="guesses must be finite"):
        equilibria(flow, [[1.0, 1.0], [np.inf, 0.0]])


def test_stochastic_map_is_rejected():
    noisy = Map(lambda k, y, a, key: y + jax.random.normal(key, y.shape), dt=0.1, stochastic=True)
    with pytest.raises(TypeError, match="deterministic map"):
        jacobian(noisy, [1.0, 2.0])
    with pytest.raises(TypeError, match="deterministic map"):
        equilibria(noisy, [1.0, 2.0])


def test_map_has_no_lie_derivative():
    with pytest.raises(TypeError, match=r"Map has no Lie derivative.*q\(step"):
        lie_derivative(gd(0.1), imbalance)


def test_non_system_is_rejected():
    with pytest.raises(TypeError, match="ODE, SDE or Map"):
        jacobian(lambda t, y, a: y, [1.0])
