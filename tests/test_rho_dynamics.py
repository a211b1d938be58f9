"""Helpers of `regflow.systems.rho_dynamics` and cross-checks its claims do not make.

The claims themselves run in test_catalogue.py; here: the logarithmic integral and its inverse,
the one-homogeneity that eq 18 rests on, the kinks crossed by the chosen network starts,
the asymptotic series against the exact K = 2 solution, and bad parameters.
"""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.integrate

import regflow as rf
from regflow.systems import rho_dynamics as rd

#: Soldner's constant: li(MU) = 0.
MU = 1.4513692348833810


def test_li_known_values_and_inverse():
    assert abs(rd.li(MU)) < 1e-14
    assert rd.li(np.e) == pytest.approx(1.8951178163559368, rel=1e-14)  # Ei(1)
    # li(x) = int_0^x dt / log t (principal value); check the increment from 2 to 50 by quadrature
    inc, _ = scipy.integrate.quad(lambda t: 1 / np.log(t), 2.0, 50.0, epsabs=1e-13, epsrel=1e-13)
    assert rd.li(50.0) - rd.li(2.0) == pytest.approx(inc, rel=1e-12)
    x = np.array([1.01, MU, 2.0, 10.0, 1e4, 1e12])
    assert np.allclose(rd.li_inverse(rd.li(x)), x, rtol=1e-12)


def _first(tree):
    return jax.tree_util.tree_map(lambda leaf: jnp.asarray(leaf[0]), tree)


def test_network_is_one_homogeneous_in_each_layer():
    """W_k . df/dW_k = f, the identity behind eq 13 and eq 18 (no biases, ReLU)."""
    data = rd.dataset()
    w = _first(rd.net_starts())
    f = rd.outputs(w, data)
    grad = jax.jacobian(lambda v: rd.outputs(v, data))(w)
    for key in rd.NET.keys:
        assert np.allclose(rd.outputs({**w, key: 2.5 * w[key]}, data), 2.5 * f, rtol=1e-13)
        assert np.allclose(np.einsum("nij,ij->n", grad[key], w[key]), f, rtol=1e-12, atol=1e-14)


def test_states_are_weight_dicts():
    starts = rd.net_starts()
    assert sorted(starts) == ["W1", "W2", "W3"]
    assert [starts[k].shape[1:] for k in rd.NET.keys] == [tuple(s) for s in rd.layer_shapes()]
    assert starts["W1"].shape[0] == len(rd.START_SEEDS)


@pytest.mark.parametrize("loss", rd.LOSSES)
def test_network_starts_cross_kinks_transversally(loss):
    """The starts' runs change their ReLU activation pattern only at a few isolated times (no
    sliding along a kink), units are active on some examples and not others, the norms move by
    O(1), and eq 18 holds with an independent integrator (scipy)."""
    method = rd.relu_net() if loss == "exponential" else rd.relu_net_square()
    data = method.flow.args
    traj = rf.integrate(method.flow, method.y0, method.t1, ts=np.linspace(0, method.t1, 1001), backend="scipy",
                        batched=True, rtol=1e-10, atol=1e-12)
    states = jax.tree_util.tree_map(jnp.asarray, traj.y)
    pattern = np.asarray(jax.vmap(jax.vmap(lambda w: rd.activation_pattern(w, data)))(states))
    changes = np.any(np.diff(pattern, axis=1), axis=2)  # (paths, saves - 1): the pattern changed there
    assert changes.any() and changes.sum(axis=1).max() <= 5
    layer1 = pattern[:, :, : rd.WIDTHS[1] * rd.N_DATA].reshape(*pattern.shape[:2], rd.WIDTHS[1], rd.N_DATA)
    assert np.any((layer1.mean(axis=3) > 0) & (layer1.mean(axis=3) < 1))  # partly active units
    norms = traj.evaluate(lambda w, a: rd.squared_norms(w)[0])
    assert np.max(np.abs(norms[:, -1] - norms[:, 0])) > 0.5
    for k in (1, 2):
        gap = traj.evaluate(rd.norm_gap(k))
        assert np.max(np.abs(gap - gap[:, :1])) < 1e-6


def test_eq13_row_reads_the_flow():
    # the eq 13 row compares the method's own flow with the formula: the square-loss flow fails it
    method = rd.relu_net()
    formula = [c for c in method.claims if type(c).__name__ == "Formula"]
    assert rf.check(dataclasses.replace(method, claims=formula)).rows[0].passed
    wrong = rd.relu_net_square().flow
    assert not rf.check(dataclasses.replace(method, flow=wrong, claims=formula)).rows[0].passed


def test_printed_eq99_differs_from_the_reduced_field():
    rho = jnp.array([0.7, 1.3, 2.0])
    args = {"margin": 0.4}
    assert not np.allclose(rd.printed_field(0.0, rho, args), rd.reduced_field(0.0, rho, args))
    np.testing.assert_allclose(rd.printed_field(0.0, rho[:1], args), rd.reduced_field(0.0, rho[:1], args))  # K = 1


def test_excess_series_matches_the_exact_two_layer_solution():
    """K = 2: t = (li(R) - li(R0)) / (2 f), so s = t R'/R = t 2 f log R / R exactly."""
    f, R0 = 0.5, np.exp(0.5)
    logR = np.array([15.0, 20.0, 30.0])
    R = np.exp(logR)
    t = (rd.li(R) - rd.li(R0)) / (2 * f)
    s = t * 2 * f * logR / R
    err = np.abs((s - 1) / rd.excess_series(logR, 1.0) - 1)
    assert np.all(err < 4 * 24 / logR**3)  # next term ~ (p+1)(p+2)(p+3)/u^3


def test_reduced_field_is_eq99():
    rho = jnp.array([0.7, 1.3, 2.0])
    P = float(jnp.prod(rho))
    got = rd.reduced_field(0.0, rho, {"margin": 0.4})
    assert np.allclose(rho * got, 0.4 * P * np.exp(-0.4 * P), rtol=1e-14)


def test_bad_parameters():
    with pytest.raises(ValueError, match="K \\(the number of layers\\) must be an int >= 1"):
        rd.reduced_flow(0)
    with pytest.raises(ValueError, match="margin must be positive"):
        rd.reduced_flow(2, margin=-1.0)
    with pytest.raises(ValueError, match="K \\(the number of layers\\) must be an int >= 2"):
        rf.get_entry("rho_dynamics.deep").build(K=1)
    with pytest.raises(ValueError, match="rho0 must be positive"):
        rf.get_entry("rho_dynamics.two_layer").build(rho0=0.0)
    with pytest.raises(ValueError, match="loss must be one of"):
        rd._network_method("hinge")
