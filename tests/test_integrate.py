"""integrate / iterate: backends agree, seeds reproduce, ensembles, saving, divergence, bad input."""

import jax.numpy as jnp
import numpy as np
import pytest

import regflow as rf
from conftest import two_layer_loss


def test_ode_backends_agree_with_exact_solution(rotation):
    ts = np.linspace(0, 2 * np.pi, 9)[1:]
    for backend in ("scipy", "diffrax"):
        traj = rf.integrate(rotation, [1.0, 0.0], 2 * np.pi, ts=ts, backend=backend)
        assert traj.ok and traj.y.shape == (8, 2)
        np.testing.assert_allclose(traj.y[:, 0], np.cos(ts), atol=1e-7)
        np.testing.assert_allclose(traj.y[:, 1], np.sin(ts), atol=1e-7)


@pytest.mark.parametrize("method", ["tsit5", "dop853", "kvaerno5"])
def test_diffrax_ode_methods(rotation, method):
    traj = rf.integrate(rotation, [1.0, 0.0], 1.0, ts=[1.0], backend="diffrax", method=method)
    np.testing.assert_allclose(traj.y[-1], [np.cos(1), np.sin(1)], atol=1e-7)


@pytest.mark.parametrize("method", ["radau", "bdf", "dop853"])
def test_scipy_ode_methods(rotation, method):
    traj = rf.integrate(rotation, [1.0, 0.0], 1.0, ts=[1.0], backend="scipy", method=method)
    np.testing.assert_allclose(traj.y[-1], [np.cos(1), np.sin(1)], atol=1e-6)


def test_solver_steps_saved_without_ts(rotation):
    for backend in ("scipy", "diffrax"):
        traj = rf.integrate(rotation, [1.0, 0.0], 3.0, backend=backend)
        assert traj.t[0] == 0.0 and traj.t[-1] == pytest.approx(3.0)
        assert np.all(np.diff(traj.t) > 0) and len(traj.t) > 5
        np.testing.assert_allclose(traj.y[-1], [np.cos(3), np.sin(3)], atol=1e-7)


def test_ts_gets_t1_appended(rotation):
    traj = rf.integrate(rotation, [1.0, 0.0], 2.0, ts=[0.5, 1.0])
    assert traj.t.tolist() == [0.5, 1.0, 2.0]


def test_ensemble_shapes_and_starts(rotation):
    y0 = np.array([[1.0, 0.0], [0.0, 2.0], [3.0, 0.0]])
    traj = rf.integrate(rotation, y0, 1.0, batched=True)
    assert traj.y.shape == (3, rf._integrate.DEFAULT_ENSEMBLE_SAVES, 2)
    np.testing.assert_allclose(traj.y[:, 0], y0)
    broadcast = rf.integrate(rotation, [1.0, 0.0], 1.0, paths=4, ts=[1.0])
    assert broadcast.y.shape == (4, 1, 2)


def test_a_matrix_start_is_a_matrix_state_not_an_ensemble():
    decay = rf.ODE(lambda t, y, a: -y)
    m = np.arange(25.0).reshape(5, 5)
    traj = rf.integrate(decay, m, 1.0, ts=[0.0, 1.0])
    assert not traj.is_ensemble and traj.y.shape == (2, 5, 5) and traj.flat.shape == (2, 25)
    np.testing.assert_allclose(traj.y[-1], m * np.exp(-1.0), rtol=1e-7)
    ens = rf.integrate(decay, m, 1.0, ts=[0.0, 1.0], batched=True)
    assert ens.is_ensemble and ens.y.shape == (5, 2, 5)


def test_sde_backends_share_the_euler_path(ou):
    runs = {b: rf.integrate(ou, [1.0, -1.0], 1.0, dt=0.01, backend=b, paths=3, seed=11, method="euler")
            for b in ("jax", "diffrax", "sdeint")}
    for b in ("diffrax", "sdeint"):
        np.testing.assert_allclose(runs[b].y, runs["jax"].y, rtol=0, atol=1e-10)
    assert runs["jax"].y.shape == (3, 101, 2)


def test_sde_general_noise_backends_agree():
    sde = rf.SDE(lambda t, y, a: -y, lambda t, y, a: jnp.array([[0.3, 0.1, 0.0], [0.0, 0.2, y[0]]]),
                 noise="general")
    a = rf.integrate(sde, [1.0, 0.5], 0.5, dt=0.01, backend="jax", seed=2).y
    b = rf.integrate(sde, [1.0, 0.5], 0.5, dt=0.01, backend="sdeint", seed=2).y
    np.testing.assert_allclose(a, b, atol=1e-10)


def test_milstein_matches_diffrax_and_converges_strongly():
    gbm = rf.SDE(lambda t, y, a: 0.1 * y, lambda t, y, a: 0.4 * y, noise="diagonal")
    a = rf.integrate(gbm, [1.0], 1.0, dt=0.01, method="milstein", backend="jax", seed=4)
    b = rf.integrate(gbm, [1.0], 1.0, dt=0.01, method="milstein", backend="diffrax", seed=4)
    np.testing.assert_allclose(a.y, b.y, atol=1e-10)
    # exact GBM solution on the same Brownian path
    w = np.concatenate([[0.0], np.cumsum(np.diff(_brownian(seed=4, n=100, dt=0.01)))])
    exact = np.exp((0.1 - 0.5 * 0.16) * a.t + 0.4 * w)
    assert np.max(np.abs(a.y[:, 0] - exact)) < 5e-3


def _brownian(seed, n, dt):
    from regflow import _noise

    key = _noise.path_keys(seed, 1)[0]
    return np.concatenate([[0.0], np.cumsum(np.asarray(_noise.increments(key, n, dt, 1))[:, 0])])


def test_stratonovich_heun_backends_agree():
    sde = rf.SDE(lambda t, y, a: 0 * y, lambda t, y, a: y, noise="scalar", calculus="stratonovich")
    runs = [rf.integrate(sde, [1.0], 1.0, dt=0.001, backend=b, seed=5).y for b in ("jax", "diffrax", "sdeint")]
    np.testing.assert_allclose(runs[1], runs[0], atol=1e-10)
    np.testing.assert_allclose(runs[2], runs[0], atol=1e-10)
    w = _brownian(seed=5, n=1000, dt=0.001)
    assert abs(runs[0][-1, 0] - np.exp(w[-1])) < 1e-2  # Stratonovich dy = y o dB: y = exp(B)


def test_same_seed_same_result_and_path_independent_of_ensemble_size(ou):
    a = rf.integrate(ou, [1.0, 0.0], 1.0, dt=0.01, paths=5, seed=3)
    b = rf.integrate(ou, [1.0, 0.0], 1.0, dt=0.01, paths=5, seed=3)
    c = rf.integrate(ou, [1.0, 0.0], 1.0, dt=0.01, paths=2, seed=3)
    single = rf.integrate(ou, [1.0, 0.0], 1.0, dt=0.01, seed=3)
    other = rf.integrate(ou, [1.0, 0.0], 1.0, dt=0.01, paths=2, seed=4)
    assert np.array_equal(a.y, b.y)
    assert np.array_equal(a.y[:2], c.y)
    assert np.array_equal(a.y[0], single.y)
    assert not np.allclose(c.y, other.y)


def test_sde_ts_on_grid_only(ou):
    traj = rf.integrate(ou, [1.0, 0.0], 1.0, dt=0.01, ts=[0.25, 0.5])
    assert traj.t.tolist() == pytest.approx([0.25, 0.5, 1.0])
    full = rf.integrate(ou, [1.0, 0.0], 1.0, dt=0.01)
    np.testing.assert_array_equal(traj.y, full.y[[25, 50, 100]])
    with pytest.raises(ValueError, match="ts must lie on the step grid"):
        rf.integrate(ou, [1.0, 0.0], 1.0, dt=0.01, ts=[0.255])


def test_ou_moments(ou):
    traj = rf.integrate(ou, [1.0, 0.0], 1.0, dt=0.01, paths=4000, ts=[1.0], seed=0)
    final = traj.y[:, -1, :]
    var = 0.25 / 2 * (1 - np.exp(-2.0))
    assert abs(final[:, 0].mean() - np.exp(-1)) < 4 * np.sqrt(var / 4000)
    assert abs(final[:, 1].var() - var) < 0.1 * var


def test_iterate_gradient_descent():
    gd = rf.gradient_descent(two_layer_loss, lr=0.1, names=("w1", "w2"))
    traj = rf.iterate(gd, [2.0, 0.3], 50)
    assert traj.t.shape == (51,) and traj.t[-1] == pytest.approx(5.0)
    manual = np.array([2.0, 0.3])
    for _ in range(50):
        manual = np.asarray(gd.step(0, jnp.asarray(manual), None))
    np.testing.assert_allclose(traj.y[-1], manual, rtol=1e-14)
    thinned = rf.iterate(gd, [2.0, 0.3], 50, every=7)
    assert thinned.t[-1] == pytest.approx(5.0)
    np.testing.assert_array_equal(thinned.y[-1], traj.y[-1])


def test_stochastic_map_is_reproducible():
    import jax

    noisy = rf.Map(lambda k, y, a, key: y + 0.1 * jax.random.normal(key, y.shape), dt=1.0, stochastic=True)
    a = rf.iterate(noisy, [0.0, 0.0], 20, paths=3, seed=1)
    b = rf.iterate(noisy, [0.0, 0.0], 20, paths=3, seed=1)
    c = rf.iterate(noisy, [0.0, 0.0], 20, seed=1)
    assert np.array_equal(a.y, b.y) and np.array_equal(a.y[0], c.y)
    assert not np.allclose(a.y[0], a.y[1])


def test_divergence_is_reported_not_silent():
    blow = rf.ODE(lambda t, y, a: y**2)
    for backend in ("scipy", "diffrax"):
        traj = rf.integrate(blow, [1.0], 2.0, backend=backend)
        assert traj.status.startswith("diverged at t=")
        t_div = float(traj.status.split("t=")[1].split()[0])
        assert 0.9 < t_div <= 1.0 + 1e-6
        assert np.all(np.isfinite(traj.y))
    gd = rf.gradient_descent(lambda w, a: jnp.sum(w**2), lr=1.5)  # multiplier -2: explodes
    traj = rf.iterate(gd, [1.0], 2000)
    assert traj.status.startswith("diverged at t=") and np.all(np.isfinite(traj.y))
    sde = rf.SDE(lambda t, y, a: y**3, lambda t, y, a: 0.1 + 0 * y)
    ens = rf.integrate(sde, [[0.1], [3.0]], 1.0, dt=0.01, batched=True)
    assert ens.status.startswith("diverged") and np.isinf(ens.diverged_at[0]) and np.isfinite(ens.diverged_at[1])


def test_save_load_roundtrip(tmp_path, ou):
    traj = rf.integrate(ou, [1.0, 0.0], 0.5, dt=0.01, paths=3, seed=9)
    path = traj.save(tmp_path / "run")
    back = rf.Trajectory.load(path)
    assert np.array_equal(back.y, traj.y) and np.array_equal(back.t, traj.t)
    assert back.names == ("x", "v") and back.status == "ok"
    assert back.meta["seed"] == 9 and back.meta["backend"] == "jax" and back.meta["args"] == {"theta": 1.0, "sigma": 0.5}
    assert "jax" in back.meta["versions"] and back.meta["method"] == "euler"
    with pytest.raises(FileExistsError, match="overwrite=True"):
        traj.save(path)
    traj.save(path, overwrite=True)


def test_to_xarray(ou):
    traj = rf.integrate(ou, [1.0, 0.0], 0.1, dt=0.01, paths=2)
    da = traj.to_xarray()
    assert da.dims == ("path", "time", "var") and list(da["var"].values) == ["x", "v"]
    assert float(da.sel(var="x").isel(path=1, time=-1)) == traj["x"][1, -1]


def _compiles(caplog, run):
    import jax

    caplog.clear()
    with jax.log_compiles(True), caplog.at_level("DEBUG"):
        run()
    return [r.getMessage() for r in caplog.records if "Compiling" in r.getMessage()]


def test_no_recompile_for_new_y0_args_seed(ou, caplog):
    rf.integrate(ou, [1.0, 0.0], 1.0, dt=0.01, paths=4, ts=[1.0], seed=0)
    again = _compiles(caplog, lambda: rf.integrate(ou.replace(args={"theta": 2.0, "sigma": 0.1}), [0.3, 2.0], 2.0,
                                                    dt=0.02, paths=4, ts=[2.0], seed=5))
    assert again == []


@pytest.mark.parametrize(
    "call, match",
    [
        (lambda s: rf.integrate(s, [[1.0, 0.0]], 1.0), r"returns shape \(2, 2\) for a state of shape \(1, 2\)"),
        (lambda s: rf.integrate(s, [1.0, 2.0, 3.0], 1.0), r"returns shape \(2,\) for a state of shape \(3,\)"),
        (lambda s: rf.integrate(s, [np.nan, 0.0], 1.0), "y0 must be finite"),
        (lambda s: rf.integrate(s, [1.0, 0.0], 1.0, paths=0), "paths must be at least 1"),
        (lambda s: rf.integrate(s, [1.0, 0.0], 1.0, paths=2.5), "paths must be a positive int"),
        (lambda s: rf.integrate(s, [1.0, 0.0], -1.0), "t1 must be greater than t0"),
        (lambda s: rf.integrate(s, [1.0, 0.0], 1.0, backend="sdeint"), "integrates SDEs only"),
        (lambda s: rf.integrate(s, [1.0, 0.0], 1.0, backend="nope"), "backend must be one of"),
        (lambda s: rf.integrate(s, [1.0, 0.0], 1.0, method="rk99"), "method 'rk99' is not available"),
        (lambda s: rf.integrate(s, [1.0, 0.0], 1.0, rtol=-1), "rtol must be positive"),
        (lambda s: rf.integrate(s, [[1.0, 0.0]], 1.0, paths=3, batched=True), r"y0 has 1 starts \(batched\) but paths=3"),
        (lambda s: rf.integrate(s.replace(args={"k": np.inf}), [1.0, 0.0], 1.0), "args must be finite"),
        (lambda s: rf.integrate(s, [1.0, 0.0], 1.0, ts=[0.5, 0.2]), "ts must be strictly increasing"),
    ],
)
def test_bad_ode_input(rotation, call, match):
    with pytest.raises((ValueError, TypeError), match=match):
        call(rotation)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"backend": "scipy", "dt": 0.1}, "backend 'scipy' integrates ODEs only"),
        ({}, "dt is required to integrate an SDE"),
        ({"dt": 0.0}, "dt must be positive"),
        ({"dt": -0.1}, "dt must be positive"),
        ({"dt": 0.3}, "not a whole number of steps"),
        ({"dt": 0.1, "method": "heun"}, "solves stratonovich SDEs but this SDE is ito"),
        ({"dt": 0.1, "method": "sri2"}, "not available for SDEs with backend 'jax'"),
    ],
)
def test_bad_sde_input(ou, kwargs, match):
    with pytest.raises(ValueError, match=match):
        rf.integrate(ou, [1.0, 0.0], 1.0, **kwargs)


def test_wrong_diffusion_shape():
    sde = rf.SDE(lambda t, y, a: -y, lambda t, y, a: jnp.ones(3), noise="diagonal")
    with pytest.raises(ValueError, match=r"diffusion returns shape \(3,\) for a state of shape \(2,\).*noise='diagonal'"):
        rf.integrate(sde, [1.0, 0.0], 1.0, dt=0.1)


def test_bad_declarations():
    with pytest.raises(ValueError, match="dt must be a positive finite number"):
        rf.Map(lambda k, y, a: y, dt=0.0)
    with pytest.raises(ValueError, match="noise must be one of"):
        rf.SDE(lambda t, y, a: y, lambda t, y, a: y, noise="pink")
    with pytest.raises(TypeError, match="vector_field must be a callable"):
        rf.ODE(3.0)
    with pytest.raises(ValueError, match="lr must be positive"):
        rf.gradient_descent(two_layer_loss, lr=0.0)
    with pytest.raises(ValueError, match="lr must be positive"):
        rf.gradient_flow(two_layer_loss, lr=-1.0)
    with pytest.raises(TypeError, match="iterate a Map with rf.iterate"):
        rf.integrate(rf.gradient_descent(two_layer_loss, lr=0.1), [1.0, 1.0], 1.0)
    with pytest.raises(ValueError, match="steps must be at least 1"):
        rf.iterate(rf.gradient_descent(two_layer_loss, lr=0.1), [1.0, 1.0], 0)


def test_stalled_solver_is_reported_as_failed_not_ok():
    chatter = rf.ODE(lambda t, y, a: jnp.array([5.0 * jnp.sign(1.0 - y[0])]))  # sliding at y = 1
    traj = rf.integrate(chatter, [0.0], 5.0, ts=np.linspace(0, 5, 11))
    assert traj.status.startswith("failed at t=") and "fixed-step method" in traj.status
    assert 0.19 < float(traj.status.split("t=")[1].split(":")[0]) < 0.3
    fixed = rf.integrate(chatter, [0.0], 5.0, ts=np.linspace(0, 5, 11), method="euler", dt=1e-3)
    assert fixed.ok and abs(fixed.y[-1, 0] - 1.0) < 1e-2


def test_fixed_step_ode_is_not_capped_by_the_adaptive_budget(rotation):
    traj = rf.integrate(rotation, [1.0, 0.0], 1.0, ts=[1.0], method="euler", dt=1e-5)
    assert traj.ok and abs(traj.y[-1, 0] - np.cos(1.0)) < 1e-4


def test_declared_sde_methods_match_the_backends():
    from regflow._integrate import SDE_METHODS
    from regflow.backends import diffrax_, sdeint_

    assert set(SDE_METHODS["diffrax"]) == set(diffrax_.SDE_SOLVERS)
    assert set(SDE_METHODS["sdeint"]) == set(sdeint_.METHODS)


def test_progress_bar_counts_steps_with_the_same_result(ou, capsys):
    plain = rf.integrate(ou, [1.0, 0.0], 0.5, dt=0.01, paths=45, seed=2, progress=False)
    shown = rf.integrate(ou, [1.0, 0.0], 0.5, dt=0.01, paths=45, seed=2, progress=True)
    assert np.array_equal(plain.y, shown.y)
    assert "50/50" in capsys.readouterr().err
    gd = rf.gradient_descent(two_layer_loss, lr=0.1)
    starts = [[2.0, 0.3]] * 7
    assert np.array_equal(rf.iterate(gd, starts, 5, progress=True, batched=True).y,
                          rf.iterate(gd, starts, 5, batched=True).y)
    with pytest.raises(TypeError, match="progress must be True, False or None"):
        rf.integrate(ou, [1.0, 0.0], 0.5, dt=0.01, progress="yes")


def test_ode_progress_bar_on_each_backend_with_the_same_result(rotation, capsys, monkeypatch):
    from regflow.backends import scipy_

    monkeypatch.setattr(scipy_, "PROGRESS_DELAY", 0.0)  # a bar for this short run too
    ensemble = {"paths": 3, "ts": [0.5, 1.0]}
    for backend, bar, kw in (("scipy", "100%|", ensemble), ("scipy", "100%|", {}), ("diffrax", "100.00%|", ensemble)):
        plain = rf.integrate(rotation, [1.0, 0.0], 1.0, backend=backend, progress=False, **kw)
        assert capsys.readouterr().err == ""
        shown = rf.integrate(rotation, [1.0, 0.0], 1.0, backend=backend, progress=True, **kw)
        assert np.array_equal(plain.t, shown.t) and np.array_equal(plain.y, shown.y)
        assert bar in capsys.readouterr().err, (backend, kw)
