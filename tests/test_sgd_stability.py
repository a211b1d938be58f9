"""Tests of `regflow.systems.sgd_stability` (and `sgd_stability_gd`) beyond their catalogue claims:
brute-force cross-checks of the stability quantities, a property of commuting Hessians, wrong
systems (the printed curvatures, batches with replacement, plain GD) failing the claims that
describe them, bad parameters."""

import dataclasses
import itertools

import numpy as np
import pytest

import regflow as rf
from regflow.systems import sgd_stability as ss


def test_batch_factor_limits():
    assert ss.batch_factor(10, 1) == pytest.approx(1.0)
    assert ss.batch_factor(10, 10) == 0.0
    assert ss.batch_factor(10, 4) == pytest.approx(6 / 36)


def test_growth_factor_brute_force():
    """Eq 23 against a direct average of (1 - eta mean(batch))^2 over every batch."""
    a = np.array([0.3, 1.1, 2.0, 0.7, 4.0])
    for B in range(1, 6):
        direct = np.mean([(1 - 0.4 * a[list(c)].mean()) ** 2 for c in itertools.combinations(range(5), B)])
        assert ss.growth_factor(a, 0.4, B) == pytest.approx(direct, rel=1e-13)


def test_sharpness_nonuniformity_1d():
    a = np.array([1.0, 3.0])
    sharp, nonuni = ss.sharpness_nonuniformity(a[:, None, None])
    assert sharp == pytest.approx(2.0)
    assert nonuni == pytest.approx(1.0)


def test_commuting_hessians_radius_equals_lambda_max():
    """For diagonal H_k the coordinates decouple: lambda_max of eq 23 is the exact growth rate."""
    rng = np.random.default_rng(3)
    hs = np.stack([np.diag(rng.uniform(0.0, 2.0, 3)) for _ in range(5)])
    for eta, B in [(0.3, 1), (0.8, 2), (1.2, 4)]:
        lam = np.linalg.eigvalsh(ss.stability_matrix(hs, eta, B))[-1]
        assert ss.second_moment_operator_radius(hs, eta, B) == pytest.approx(lam, rel=1e-12)


def test_gd_bounds():
    a_max, s_max = ss.stability_bounds(0.5, 6, 6)
    assert a_max == 4.0 and s_max == np.inf


def test_sample_hessians_of_escape_example():
    np.testing.assert_allclose(ss.escape_curvatures(1.0), [0.2, 3.8], rtol=1e-14)
    np.testing.assert_allclose(ss.escape_curvatures(0.0), [2.0, 2.0], rtol=1e-14)


def test_bad_parameters():
    with pytest.raises(ValueError, match="batch_size must be an int in"):
        ss.batch_factor(5, 6)
    with pytest.raises(ValueError, match="n must be an int >= 2"):
        ss.batch_factor(1, 1)
    with pytest.raises(ValueError, match="hessians must have shape"):
        ss.moments(np.ones((3, 2)))


def _only(method, *names):
    keep = [c for c in method.claims if (c.name or type(c).__name__) in names]
    assert len(keep) == len(names)
    return dataclasses.replace(method, claims=keep)


def _perturbed(method, name):
    (perturbation,) = [p for p in method.perturbations if p.name == name]
    return perturbation.apply(method)


def test_printed_curvatures_do_not_escape():
    """The example built with the printed curvatures (f_i halved) is stable for SGD at x = 1: the
    measured eq 23 factor and the escape both fail there, while the example as defined passes."""
    method = _only(rf.get_entry("sgd_stability.escape").build(paths=64), "eq 23 factor at x=1", "SGD escapes to 0")
    assert rf.check(method).passed
    wrong = rf.check(_perturbed(method, "the example with the printed curvatures (f_i halved)"))
    assert not any(row.passed for row in wrong.rows)


def test_batches_with_replacement_miss_eq23():
    method = _only(rf.get_entry("sgd_stability.quadratic_1d").build(paths=2000), "E x_1^2")
    assert rf.check(method).passed
    assert not rf.check(_perturbed(method, ss.WITH_REPLACEMENT)).passed


def test_quasi_newton_stability_threshold():
    from regflow.systems import sgd_stability_gd as qn

    method = _only(rf.get_entry("sgd_stability.quasi_newton").build(), "x^T D x")
    assert rf.check(method).passed
    assert not rf.check(_perturbed(method, "GD (D = I) at the same learning rate")).passed
    with pytest.raises(ValueError, match="lr must be in"):
        rf.get_entry("sgd_stability.quasi_newton").build(lr=2.5)
    assert qn.qn_hessian().shape == (3, 3)
