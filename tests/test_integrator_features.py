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
    ens = rf.integrate(ROTATION, Y0, -1.0, backward=True, paths=2, ts=[0.0, -0.5, -1.0], backend="scipy")
    np.testing.assert_allclose(ens.y[1], _exact(np.array([0.0, -0.5, -1.0])), atol=1e-7)
    blowup = rf.ODE(lambda t, y, a: -y**2)  # y = 1 / (1 + t): infinite at t = -1
    run = rf.integrate(blowup, np.array([1.0]), -2.0, backward=True, backend="scipy")
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


# ----------------------------------------------------------------------------- events


def _decay(t, y, args):
    return -args["k"] * y


DECAY = rf.ODE(_decay, args={"k": 2.0})


def _first(y, args):
    return y[0]


@pytest.mark.parametrize("backend", ["diffrax", "scipy"])
def test_a_terminal_event_stops_at_the_closed_form_time(backend):
    """y = y0 exp(-k t) crosses the level c at t = log(y0 / c) / k."""
    event = rf.Event(_first, level=0.1, direction=-1)
    starts = np.array([[1.0], [4.0], [0.05]])  # the last starts below the level: no crossing
    ens = rf.integrate(DECAY, starts, 5.0, batched=True, backend=backend, event=event)
    np.testing.assert_allclose(ens.events.t[:2, 0], np.log(starts[:2, 0] / 0.1) / 2.0, rtol=1e-8)
    assert np.isnan(ens.events.t[2, 0]) and ens.status.startswith("event at t=1.15129 (2 of 3 paths")
    assert np.isnan(ens.y[0, -1, 0]) and ens.y[2, -1, 0] == pytest.approx(0.05 * np.exp(-10), abs=1e-9)
    upward = rf.integrate(ROTATION, Y0, 1.0, backend=backend, event=rf.Event(_first, 0.1, direction=1))
    assert upward.status == "ok" and upward.events.count == 0 and upward.t[-1] == 1.0  # cos t only falls


def test_a_stopped_run_ends_at_the_event_state():
    event = rf.Event(_first, level=0.1, direction=-1)
    one = rf.integrate(DECAY, np.array([1.0]), 5.0, backend="scipy", event=event, ts=np.linspace(0, 5, 11))
    t_event = np.log(10.0) / 2.0
    assert one.status == f"event at t={t_event:.6g}" and one.ok
    np.testing.assert_allclose(one.events.t, [t_event], rtol=1e-8)
    assert one.t[-1] == one.events.t[0] and abs(one.y[-1, 0] - 0.1) < 1e-8 and np.all(one.t[:-1] < t_event)
    loss = rf.integrate(DECAY, np.array([1.0]), 5.0, backend="scipy", event=event, ts=[1.0, 5.0],
                        save=lambda y, a: y[0] ** 2)  # a saved quantity ends at its value at the event
    assert loss.t[0] == 1.0 and loss.t[1] == pytest.approx(t_event, rel=1e-8)
    assert loss.y[-1] == pytest.approx(0.01, rel=1e-7)


def test_plain_callable_events_backward_records_and_files(tmp_path):
    circle = rf.integrate(ROTATION, Y0, 10.0, event=rf.Event(_first, level=-0.5))  # cos t = -1/2
    np.testing.assert_allclose(circle.events.t, [2 * np.pi / 3], rtol=1e-8)
    zero = rf.integrate(ROTATION, Y0, 10.0, event=_first, backend="scipy")  # a plain callable: its zero
    np.testing.assert_allclose(zero.events.t, [np.pi / 2], rtol=1e-8)
    back = rf.integrate(ROTATION, Y0, -3.0, backward=True, event=rf.Event(_first, level=-0.5))
    np.testing.assert_allclose(back.events.t, [-2 * np.pi / 3], rtol=1e-8)
    assert back.t[-1] == back.events.t[0] and np.all(np.diff(back.t) < 0)
    crossings = rf.integrate(ROTATION, Y0, 10.0, backend="scipy", event=rf.Event(_first, terminal=False))
    assert crossings.status == "ok" and crossings.t[-1] == 10.0 and crossings.events.count == 3
    np.testing.assert_allclose(crossings.events.t, np.pi / 2 + np.pi * np.arange(3), rtol=1e-8)
    np.testing.assert_allclose(np.abs(crossings.events.y[:, 1]), 1.0, rtol=1e-7)
    loaded = rf.Trajectory.load(crossings.save(tmp_path / "events.npz"))
    np.testing.assert_array_equal(loaded.events.t, crossings.events.t)
    assert not loaded.events.terminal and loaded.status == "ok"


def test_events_refused_where_they_cannot_run():
    sde = rf.SDE(lambda t, y, a: -y, lambda t, y, a: 0.1 * jnp.ones_like(y))
    with pytest.raises(ValueError, match="SDE backends .* have no events"):
        rf.integrate(sde, Y0, 1.0, dt=0.01, event=_first)
    with pytest.raises(ValueError, match="non-terminal event .* needs backend='scipy'"):
        rf.integrate(ROTATION, Y0, 1.0, event=rf.Event(_first, terminal=False))
    with pytest.raises(ValueError, match="must return one number"):
        rf.integrate(ROTATION, Y0, 1.0, event=lambda y, a: y)
    with pytest.raises(ValueError, match="direction must be -1, 0 or \\+1"):
        rf.integrate(ROTATION, Y0, 1.0, event=rf.Event(_first, direction=2))


# ----------------------------------------------------------------------------- dense output


@pytest.mark.parametrize("backend", ["diffrax", "scipy"])
def test_dense_output_is_as_accurate_as_the_solve(backend, tmp_path):
    ts = np.linspace(0.0, 3.0, 301)
    traj = rf.integrate(ROTATION, Y0, 3.0, backend=backend, dense=True)
    between = np.abs(traj.interpolate(ts) - _exact(ts)).max()
    at_steps = np.abs(traj.y - _exact(traj.t)).max()
    assert between < 1e-7 and between < 3 * at_steps  # as good between the steps as at them
    assert len(traj.t) < 60  # and the steps are far apart: the interpolant does the work
    np.testing.assert_allclose(traj(1.0), _exact(1.0), atol=1e-7)
    coarse = rf.integrate(ROTATION, Y0, -3.0, backward=True, backend=backend, ts=np.linspace(0, -3, 5), dense=True)
    assert len(coarse.t) == 5  # saves 0.75 apart; the interpolant uses the solver's steps
    np.testing.assert_allclose(coarse.interpolate(-ts), _exact(-ts), atol=1e-7)
    loaded = rf.Trajectory.load(traj.save(tmp_path / "dense.npz"))
    np.testing.assert_array_equal(loaded.interpolate(ts), traj.interpolate(ts))


def test_dense_output_errors():
    plain = rf.integrate(ROTATION, Y0, 1.0)
    with pytest.raises(ValueError, match="no dense output; integrate with dense=True"):
        plain.interpolate([0.5])
    stopped = rf.integrate(ROTATION, Y0, 3.0, dense=True, event=_first)
    with pytest.raises(ValueError, match=r"ts must lie in the span the run covered, \[0, 1.5708\]"):
        stopped(2.0)
    with pytest.raises(ValueError, match="dense=True keeps the steps of one path"):
        rf.integrate(ROTATION, Y0, 1.0, paths=2, dense=True)
    sde = rf.SDE(lambda t, y, a: -y, lambda t, y, a: 0.1 * jnp.ones_like(y))
    with pytest.raises(ValueError, match="dense=True interpolates ODE solutions"):
        rf.integrate(sde, Y0, 1.0, dt=0.01, dense=True)


# ----------------------------------------------------------------------------- Brownian paths, SDE orders


def _gbm_drift(t, y, args):
    return args["mu"] * y


def _gbm_diffusion(t, y, args):
    return args["sigma"] * y


GBM = rf.SDE(_gbm_drift, _gbm_diffusion, noise="scalar", args={"mu": 0.5, "sigma": 1.0})


def _gbm_exact(t, y0, w, args):
    """X_t = x0 exp((mu - sigma^2/2) t + sigma W_t)."""
    return y0 * jnp.exp((args["mu"] - 0.5 * args["sigma"] ** 2) * t + args["sigma"] * w)


@pytest.mark.parametrize("backend", ["jax", "sdeint"])
def test_the_brownian_path_is_the_one_the_run_used(backend, tmp_path):
    """dX = dW from 0: the run's states are its Brownian path, on every backend."""
    walk = rf.SDE(lambda t, y, a: jnp.zeros_like(y), lambda t, y, a: jnp.ones_like(y), noise="diagonal")
    traj = rf.integrate(walk, np.zeros(2), 0.5, dt=2**-6, paths=3, seed=7, backend=backend)
    w = rf.brownian_path(traj)
    assert w.shape == (3, 33, 2) and np.all(w[:, 0] == 0)
    np.testing.assert_allclose(w, traj.y, atol=1e-12)
    np.testing.assert_allclose(np.cumsum(rf.brownian_increments(traj), axis=1), w[:, 1:], atol=1e-12)
    other = rf.integrate(walk, np.zeros(2), 0.5, dt=2**-6, seed=8, ts=[0.25, 0.5], backend=backend)
    np.testing.assert_allclose(rf.brownian_path(other), other.y, atol=1e-12)  # one path, saves at ts
    assert not np.allclose(rf.brownian_path(other), w[0, [16, 32]])  # another seed, another path
    loaded = rf.Trajectory.load(traj.save(tmp_path / "walk.npz"))
    np.testing.assert_array_equal(rf.brownian_path(loaded), w)
    with pytest.raises(ValueError, match="not an SDE run"):
        rf.brownian_path(rf.integrate(ROTATION, Y0, 0.1, backend="scipy"))


DTS = 2.0 ** -np.arange(3, 8)


@pytest.mark.parametrize("method, order", [("euler", 0.5), ("milstein", 1.0)])
def test_strong_orders_on_geometric_brownian_motion(method, order):
    fit = rf.strong_order(GBM, _gbm_exact, np.ones(1), 1.0, DTS, seed=0, paths=2000, method=method)
    assert abs(fit.order - order) < 0.12, fit
    assert np.all(np.diff(fit.errors) < 0)


def test_weak_order_of_euler_maruyama_and_a_reference_on_the_same_path():
    weak = rf.weak_order(GBM, _gbm_exact, np.ones(1), 1.0, 2.0 ** -np.arange(2, 6), seed=1, paths=100_000)
    assert abs(weak.order - 1.0) < 0.2, weak
    bias = np.exp(0.5) - (1 + 0.5 * weak.steps) ** (1 / weak.steps)  # E X_1 - E Y_N, exactly
    np.testing.assert_allclose(weak.errors, bias, rtol=0.3)
    fine = rf.strong_order(GBM, None, np.ones(1), 1.0, DTS[:3], seed=0, paths=1000, refine=4)
    assert abs(fine.order - 0.5) < 0.15, fine
    with pytest.raises(ValueError, match="dts must be whole multiples"):
        rf.strong_order(GBM, None, np.ones(1), 1.0, [0.1, 0.03])
    with pytest.raises(TypeError, match="system must be an rf.SDE"):
        rf.strong_order(ROTATION, _gbm_exact, Y0, 1.0, DTS)
