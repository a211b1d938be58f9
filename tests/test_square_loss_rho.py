"""Tests of `regflow.systems.square_loss_rho` beyond its catalogue claims: helpers, an
independent quadrature cross-check of the transient times, and bad parameters."""

import jax.numpy as jnp
import numpy as np
import pytest

import regflow as rf
from regflow.systems import square_loss_rho as slr


def test_rho_v_round_trip():
    depth = 3
    w = np.random.default_rng(0).normal(size=slr.n_weights(depth))
    s = slr.to_rho_v(jnp.asarray(w), depth)
    np.testing.assert_allclose(slr.from_rho_v(s, depth), w, rtol=1e-14)
    norms = [np.linalg.norm(v) for v in slr.unflatten(np.asarray(s[depth:]), depth)]
    np.testing.assert_allclose(norms, 1.0, rtol=1e-14)
    np.testing.assert_allclose(s[:depth], slr.layer_norms(jnp.asarray(w), depth), rtol=1e-14)


def test_network_is_homogeneous_in_each_layer():
    depth, data = 3, slr.toy_data()
    w = slr.directions(depth)
    scaled = np.concatenate([m.ravel() * c for m, c in zip(slr.unflatten(w, depth), (2.0, 0.5, 3.0))])
    np.testing.assert_allclose(slr.network(scaled, data["X"], depth), 3.0 * slr.network(w, data["X"], depth),
                               rtol=1e-13)


def test_directions_correlate_with_labels():
    data = slr.toy_data()
    for depth in (1, 2, 3, 4):
        f = slr.network(slr.directions(depth), data["X"], depth)
        assert float(jnp.sum(f * data["y"])) > 0


def test_transient_times_match_quadrature():
    cases = [(2, 1e-2), (3, 1e-3), (4, 1e-2), (6, 0.05)]
    measured = slr.transient_times(cases)
    exact = [slr.transient_quadrature(slr.reduced_args(L), r0) for L, r0 in cases]
    # the crossing is interpolated on a grid of t1/4000; the quadrature is exact to ~1e-10
    np.testing.assert_allclose(measured, exact, rtol=2e-3)


def test_transient_small_rho_asymptotics():
    # T ~ rho0^{-(1 - 2/L)} / (2 (L - 2) c) as rho0 -> 0
    L, r0 = 4, 1e-6
    T = slr.transient_quadrature(slr.reduced_args(L), r0)
    assert T == pytest.approx(r0 ** (-(1 - 2 / L)) / (2 * (L - 2)), rel=1e-2)


def test_half_time_interpolates():
    t = np.array([0.0, 1.0, 2.0])
    assert slr.half_time(t, np.array([0.0, 0.5, 1.5]), 1.0) == pytest.approx(1.5)
    assert slr.half_time(t, np.array([0.0, 0.1, 0.2]), 1.0) == np.inf


def test_bad_parameters():
    with pytest.raises(ValueError, match="depth must be an int >= 1"):
        slr.layer_shapes(0)
    with pytest.raises(ValueError, match="must be positive"):
        rf.get_entry("square_loss_rho.reduced").build(b=-1.0)
    with pytest.raises(ValueError, match="every rho0 must lie in"):
        slr.transient_times([(3, 0.9)])


def test_reduced_transients_read_the_flow():
    # the transient rows measure the method's own field: eq 5 with the exponent (L-1)/L (the factor
    # rho_k^(L-1) of eq 3 dropped) has no transient near rho = 0, so T no longer grows like rho0^-(1 - 2/L)
    L, starts = 4, slr.LAW_STARTS
    T = slr.transient_times([(L, r) for r in starts], field=slr.dropped_factor_field)
    exponent = -np.polyfit(np.log(starts), np.log(T), 1)[0]
    assert abs(exponent - (1 - 2 / L)) > 0.3


def test_collapse_needs_a_negative_correlation():
    with pytest.raises(ValueError, match="c = sum f y < 0"):
        rf.get_entry("square_loss_rho.collapse").build(c=0.5)
    with pytest.raises(ValueError, match="L must be an int >= 3"):
        rf.get_entry("square_loss_rho.collapse").build(L=2)
