"""NMGD and Halpern constructors (`rf.nmgd`, `rf.halpern`, `rf.nmgd_flow` and their schedules)."""

import jax.numpy as jnp
import numpy as np
import pytest

import regflow as rf
from regflow._compiled import split


def loss(w, args=None):
    return jnp.sum((w - 1.0) ** 2) / 2


W = jnp.array([0.5, -2.0, 3.0])


def test_power_schedule():
    sched = rf.power_schedule(0.5, n0=4)
    np.testing.assert_allclose(sched(jnp.arange(3)), [4**-0.5, 5**-0.5, 6**-0.5], rtol=1e-15)
    assert float(rf.power_schedule(1.5, n0=1)(0)) == 1.0  # 1/n^a from n = 1


@pytest.mark.parametrize("k", [0, 3, 40])
def test_eq26_is_eq25(k):
    sched = rf.power_schedule(0.75, n0=2)
    lam, lr = float(sched(k)), 0.3
    nm, hp = rf.nmgd(loss, lr=lr, schedule=sched), rf.halpern(loss, lr=lr, schedule=sched)
    want = W - (1 - lam) * lr * (W - 1.0) - lam * W
    np.testing.assert_allclose(nm.step(k, W, None), want, rtol=1e-14)
    np.testing.assert_allclose(hp.step(k, W, None), want, rtol=1e-14)
    assert nm.dt == lr


def test_flow_and_its_partner_schedule():
    flow = rf.nmgd_flow(loss, a=0.5, c=2.0, tau=1.0)
    np.testing.assert_allclose(flow.vector_field(3.0, W, None), -(W - 1.0) - 2.0 * 4.0**-0.5 * W, rtol=1e-14)
    for a, n0, lr in [(0.5, 2, 0.25), (0.75, 1, 0.1), (1.5, 100, 0.05)]:
        c, tau = rf.nmgd_partner(lr, a, n0)
        k = jnp.arange(500)
        np.testing.assert_allclose(rf.decay_schedule(a, c, tau, lr=lr)(k), rf.power_schedule(a, n0=n0)(k), rtol=1e-12)


def test_decay_schedule_map_is_the_euler_step_of_the_flow():
    """One step of eq 26 with lambda_k = h mu(k h) differs from the flow by O(h^2)."""
    flow, errors = rf.nmgd_flow(loss, a=0.75, c=1.0, tau=0.5), []
    for h in (0.04, 0.02, 0.01):
        step = rf.nmgd(loss, lr=h, schedule=rf.decay_schedule(0.75, 1.0, 0.5, lr=h)).step
        ref = rf.integrate(flow, np.asarray(W), h, ts=[0.0, h], backend="scipy", method="dop853", rtol=1e-13,
                           atol=1e-15)
        errors.append(np.linalg.norm(np.asarray(step(0, W, None)) - ref.y[-1]))
    assert np.all(np.abs(np.log2(np.array(errors[:-1]) / np.array(errors[1:])) - 2) < 0.15)


def test_numbers_are_program_inputs_and_pytrees_work():
    maps = [rf.nmgd(loss, lr=lr, schedule=rf.power_schedule(a, n0=n0)) for lr, a, n0 in [(0.1, 0.5, 2), (0.2, 0.9, 7)]]
    assert split((maps[0].step,))[1] == split((maps[1].step,))[1]
    tree_loss = lambda w, a: jnp.sum(w["x"] ** 2) + jnp.sum(w["y"] ** 2)  # noqa: E731
    step = rf.nmgd(tree_loss, lr=0.25, schedule=rf.power_schedule(1.0, n0=2)).step
    out = step(0, {"x": jnp.ones(2), "y": jnp.ones(1)}, None)
    np.testing.assert_allclose(out["x"], 1 - 0.5 * 0.25 * 2 - 0.5)


def test_bad_input():
    with pytest.raises(ValueError, match="n0 must be an int >= 1"):
        rf.power_schedule(0.5, n0=0)
    with pytest.raises(ValueError, match="a must be positive"):
        rf.power_schedule(-1.0, n0=2)
    with pytest.raises(ValueError, match="tau must be positive"):
        rf.nmgd_flow(loss, a=0.5, tau=0.0)
    with pytest.raises(ValueError, match="lr must be positive"):
        rf.nmgd(loss, lr=-0.1, schedule=rf.power_schedule(0.5, n0=2))
    with pytest.raises(TypeError, match="schedule must be a function k -> lambda_k"):
        rf.halpern(loss, lr=0.1, schedule=0.5)
