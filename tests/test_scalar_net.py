"""Tests of `regflow.systems.scalar_net` and `scalar_net_noise` beyond their catalogue claims:
the recorded errata by direct computation, and wrong systems (the paper's misprints, another
weight-decay convention) failing the claims that describe them."""

import dataclasses

import jax.numpy as jnp
import numpy as np
import pytest

import regflow as rf
from regflow.systems import scalar_net as sn
from regflow.systems import scalar_net_noise as snn


def _only(method, *names):
    """The method with only the claims called ``names`` (by claim name or type name)."""
    keep = [c for c in method.claims if (c.name or type(c).__name__) in names]
    assert len(keep) == len(names), [c.name or type(c).__name__ for c in method.claims]
    return dataclasses.replace(method, claims=keep)


def _perturbed(method, name):
    (perturbation,) = [p for p in method.perturbations if p.name == name]
    return perturbation.apply(method)


def test_footnote2_corrected_and_printed():
    """One GD step of the 2-layer net multiplies L by (1 - 2 lr (w1^2 + w2^2) + 4 lr^2 (W-1) W)^2, not
    by the printed (... + 4 lr^2 (W - 1))^2."""
    lr = 0.05
    gd = rf.gradient_descent(sn.loss, lr=lr)
    for w in (np.array([0.3, 1.6]), np.array([1.8, 0.2]), np.array([1.2, 1.1])):
        after = float(sn.loss(gd.step(0, jnp.asarray(w), None)))
        assert after == pytest.approx(float(sn.footnote2(lr)(jnp.asarray(w))), rel=1e-12)
        assert after != pytest.approx(float(sn.footnote2_printed(lr)(jnp.asarray(w), None)), rel=1e-6)


def test_weight_decay_mu_fails():
    """The entry built with weight_decay = mu (the penalty mu |w|^2 read as mu/2 |w|^2) fails the
    decay rate and the loss rate of sec 4.1; the entry itself passes them."""
    method = dataclasses.replace(_only(rf.get_entry("scalar_net.weight_decay").build(), "Decays", "Formula"), t1=5.0)
    assert rf.check(method).passed
    wrong = rf.check(_perturbed(method, sn.WD_MU))
    assert not wrong.passed and not any(row.passed for row in wrong.rows)


def test_eq8_as_printed_fails_the_gd_claim():
    """GD with eq 8's middle as printed (twice the step) fails the claim that GD is eq 8's right side
    (the row that stood for eq 8 before compared a map with itself and could not fail)."""
    method = _only(rf.get_entry("scalar_net.gradient_flow").build(), "eq 8")
    assert rf.check(method).rows[0].passed
    assert not rf.check(_perturbed(method, "eq 8 as printed, w - 2 lr dL/dw")).rows[0].passed


def test_proof_bounds_of_thm41_note_and_thm51():
    printed, sharp = snn.note_bound(0.3)
    assert sharp < printed  # the Note's lower bound fails
    W, eta, delta = 1.3, 0.3, 0.3
    assert W**2 * ((W - 1) ** 2 + eta**2) == pytest.approx(2 * delta**2 * (1 + delta) ** 2)


def test_sme_imbalance_rate_is_proportional_to_the_batch_noise():
    data = snn.normalized_data(64)
    w = jnp.asarray([0.7, 1.6])
    rates = [float(snn.sme_imbalance_rate(data, 0.01, b)(w)) for b in (4, 16, 64)]
    n = 64
    factors = [(1 / b - 1 / n) for b in (4, 16)]
    assert rates[0] / rates[1] == pytest.approx(factors[0] / factors[1], rel=1e-12)
    assert rates[2] == 0.0


def test_bad_parameters():
    with pytest.raises(ValueError, match="need \\|eta\\| <= delta"):
        rf.get_entry("scalar_net.noisy_flow").build(eta=0.4, delta=0.3)
    with pytest.raises(ValueError, match="batch_size must be at most"):
        rf.get_entry("scalar_net.sgd").build(batch_size=32)
    with pytest.raises(ValueError, match="form must be one of"):
        rf.get_entry("scalar_net.noise_augmentation").build(form="dropout")
