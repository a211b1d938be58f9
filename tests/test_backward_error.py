"""`rf.backward_error_flow`: the second-order modified flow of a one-step map, from its
first-order flow (and the map's second Taylor coefficient), never from the map itself."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import regflow as rf
from regflow._compiled import split

POINTS = jnp.asarray(np.random.default_rng(0).normal(size=(6, 2)))


def quartic(w, args=None):
    return jnp.sum(w**4) / 4 + w[0] * w[1]


def test_gradient_descent_gives_the_library_modified_flow():
    mod = rf.backward_error_flow(rf.gradient_flow(quartic), lr=0.1)
    ref = rf.modified_flow(quartic, lr=0.1)
    both = jax.jit(jax.vmap(lambda w: (mod.vector_field(0.0, w, None), ref.vector_field(0.0, w, None))))
    np.testing.assert_allclose(*both(POINTS), rtol=1e-12, atol=1e-14)


def test_euler_step_of_a_linear_flow():
    """y' = Ay, Euler step y + hAy: the modified field is (A - h A^2 / 2) y."""
    A = jnp.array([[0.0, 1.0], [-2.0, -0.3]])
    flow = rf.ODE(lambda t, y, a: A @ y)
    mod = rf.backward_error_flow(flow, lr=0.05)
    got = jax.vmap(lambda y: mod.vector_field(0.0, y, None))(POINTS)
    np.testing.assert_allclose(got, POINTS @ (A - 0.025 * A @ A).T, rtol=1e-13, atol=1e-14)


def test_a_second_order_map_has_no_correction():
    """The explicit midpoint map y + h f(y + h f / 2) has d = f'f / 2: its modified field is f."""
    flow = rf.gradient_flow(quartic)
    f = flow.vector_field
    second = lambda t, y, a: 0.5 * jax.jvp(lambda z: f(t, z, a), (y,), (f(t, y, a),))[1]  # noqa: E731
    mod = rf.backward_error_flow(flow, lr=0.1, second=second)
    both = jax.vmap(lambda y: (mod.vector_field(0.0, y, None), f(0.0, y, None)))(POINTS)
    np.testing.assert_allclose(*both, rtol=1e-12, atol=1e-14)


def local_errors(map_at, flow_at, w0, steps):
    """|one step of map_at(h) - flow_at(h) at t = h| from w0 for each h (scipy reference)."""
    out = []
    for h in steps:
        ref = rf.integrate(flow_at(h), w0, h, ts=[0.0, h], backend="scipy", method="dop853", rtol=1e-13, atol=1e-15)
        out.append(np.linalg.norm(np.asarray(map_at(h).step(0, jnp.asarray(w0), None)) - ref.y[-1]))
    return np.array(out)


def test_gd_follows_its_backward_error_flow_at_third_order_per_step():
    w0, steps = np.array([0.8, -0.5]), [0.08, 0.04, 0.02]
    gd = lambda h: rf.gradient_descent(quartic, lr=h)  # noqa: E731
    err = local_errors(gd, lambda h: rf.backward_error_flow(rf.gradient_flow(quartic), lr=h), w0, steps)
    first = local_errors(gd, lambda h: rf.gradient_flow(quartic), w0, steps)
    assert np.all(np.abs(np.log2(err[:-1] / err[1:]) - 3) < 0.15)  # O(h^3) per step: second order
    assert np.all(np.abs(np.log2(first[:-1] / first[1:]) - 2) < 0.15)  # the plain flow: first order


def test_pytree_states_and_sdes():
    loss = lambda w, a: jnp.sum(w["a"] ** 2) * jnp.sum(w["b"] ** 2)  # noqa: E731
    w = {"a": jnp.array([0.3, -1.0]), "b": jnp.array([2.0])}
    mod = rf.backward_error_flow(rf.gradient_flow(loss), lr=0.2)
    ref = rf.modified_flow(loss, lr=0.2)
    got, want = mod.vector_field(0.0, w, None), ref.vector_field(0.0, w, None)
    for k in w:
        np.testing.assert_allclose(got[k], want[k], rtol=1e-12)
    sde = rf.SDE(lambda t, y, a: -y**3, lambda t, y, a: 0.5 * jnp.ones_like(y), noise="diagonal", names=("x", "y"))
    mod = rf.backward_error_flow(sde, lr=0.1)
    y = POINTS[0]
    np.testing.assert_allclose(mod.drift(0.0, y, None), -y**3 - 0.1 * 0.5 * 3 * y**2 * y**3, rtol=1e-12)
    assert mod.diffusion is sde.diffusion and mod.noise == "diagonal" and mod.names == ("x", "y")


def test_a_new_lr_is_a_program_input():
    a, b = (rf.backward_error_flow(rf.gradient_flow(quartic), lr=h).vector_field for h in (0.1, 0.01))
    assert split((a,))[1] == split((b,))[1]


def test_bad_input():
    with pytest.raises(TypeError, match="flow must be the first-order flow"):
        rf.backward_error_flow(rf.gradient_descent(quartic, lr=0.1), lr=0.1)
    with pytest.raises(ValueError, match="lr must be positive"):
        rf.backward_error_flow(rf.gradient_flow(quartic), lr=0.0)
    with pytest.raises(TypeError, match="second must be the map's second Taylor coefficient"):
        rf.backward_error_flow(rf.gradient_flow(quartic), lr=0.1, second=3.0)
    with pytest.raises(TypeError, match="field must be a vector field"):
        rf.backward_error_field(None, lr=0.1)
