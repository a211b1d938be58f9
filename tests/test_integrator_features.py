"""Backward time, events, dense output, Brownian paths and SDE order fits."""

import jax.numpy as jnp
import numpy as np
import pytest

import regflow as rf


def _rotation(t, y, args):
    return jnp.stack([y[1], -y[0]])


ROTATION = rf.ODE(_rotation)
Y0 = np.array([1.0, 0.0])


def _exact(t):
    return np.stack([np.cos(t), -np.sin(t)], axis=-1)


# ----------------------------------------------------------------------------- backward time


@pytest.mark.parametrize("backend", ["diffrax", "scipy"])
def test_a_backward_run_returns_to_the_start(backend):
    forward = rf.integrate(ROTATION, Y0, 2.0, backend=backend, ts=np.linspace(0, 2, 5))
    back = rf.integrate(ROTATION, forward.y[-1], 0.0, t0=2.0, backward=True, backend=backend,
                        ts=np.linspace(2, 0, 5))
    assert back.ok and back.backward and back.t[0] == 2.0 and back.t[-1] == 0.0
    np.testing.assert_allclose(back.y, forward.y[::-1], atol=1e-7)
    np.testing.assert_allclose(back.y[-1], Y0, atol=1e-7)
    steps = rf.integrate(ROTATION, Y0, -1.0, backward=True, backend=backend)  # the solver's own steps
    assert np.all(np.diff(steps.t) < 0)
    np.testing.assert_allclose(steps.y, _exact(steps.t), atol=1e-7)


def test_backward_ensembles_divergence_and_files(tmp_path):
    ens = rf.integrate(ROTATION, Y0, -1.0, backward=True, paths=2, ts=[0.0, -0.5, -1.0])
    np.testing.assert_allclose(ens.y[1], _exact(np.array([0.0, -0.5, -1.0])), atol=1e-7)
    blowup = rf.ODE(lambda t, y, a: -y**2)  # y = 1 / (1 + t): infinite at t = -1
    run = rf.integrate(blowup, np.array([1.0]), -2.0, backward=True)
    assert run.status.startswith("diverged at t=-1")
    back = rf.Trajectory.load(ens.save(tmp_path / "back.npz"))
    assert back.backward and np.array_equal(back.t, ens.t)


def test_backward_is_said_and_sdes_refuse_it():
    with pytest.raises(ValueError, match="t1 must be greater than t0.*pass backward=True"):
        rf.integrate(ROTATION, Y0, -1.0)
    with pytest.raises(ValueError, match="backward=True integrates from t0 down to t1 < t0"):
        rf.integrate(ROTATION, Y0, 1.0, backward=True)
    with pytest.raises(ValueError, match="ts must be strictly decreasing"):
        rf.integrate(ROTATION, Y0, -1.0, backward=True, ts=[-0.5, -1.0, -0.7])
    sde = rf.SDE(lambda t, y, a: -y, lambda t, y, a: 0.1 * jnp.ones_like(y))
    with pytest.raises(ValueError, match="backward=True integrates ODEs only"):
        rf.integrate(sde, Y0, -1.0, backward=True, dt=0.01)
