"""Pytree states end to end: a dict-of-matrices network integrates, iterates, saves, checks a
matrix-valued conserved quantity, and never turns into an ensemble by accident."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import regflow as rf

RNG = np.random.default_rng(0)
X = jnp.asarray(RNG.standard_normal((40, 4)))
Y = jnp.asarray(RNG.standard_normal((40, 3)))
DATA = {"x": X, "y": Y, "mix": 0.0}        # a deep linear net (see `net_loss`)
TANH = {**DATA, "mix": 1.0}                 # the same net with tanh units
NET = {"W1": jnp.asarray(0.5 * RNG.standard_normal((5, 4))), "W2": jnp.asarray(0.5 * RNG.standard_normal((3, 5)))}
TS = np.linspace(0.0, 1.0, 21)
#: Saved times of a claim's flow run (`rf.check` saves 201 times from 0 to t1).
CLAIM_TS = np.linspace(0.0, 1.0, 201)


def net_loss(w, args):
    """f(x) = W2 s(W1 x), squared loss, with the activation s(z) = z + mix (tanh z - z): exactly
    linear for mix = 0 (`DATA`), tanh for mix = 1 (`TANH`).  The activation travels in the data,
    so the linear and the tanh net run the same compiled programs."""
    z = args["x"] @ w["W1"].T
    out = (z + args["mix"] * (jnp.tanh(z) - z)) @ w["W2"].T
    return 0.5 * jnp.mean(jnp.sum((out - args["y"]) ** 2, axis=1))


def balancedness(w, args):
    """W2^T W2 - W1 W1^T: conserved by the gradient flow of a deep linear net."""
    return w["W2"].T @ w["W2"] - w["W1"] @ w["W1"].T


def one_start(tree):
    return jax.tree_util.tree_map(lambda leaf: leaf[None], tree)


def test_dict_network_integrates_iterates_and_keeps_its_structure():
    flow = rf.gradient_flow(net_loss, args=DATA)
    traj = rf.integrate(flow, NET, 1.0, ts=TS)
    assert traj.ok and not traj.is_ensemble
    assert traj.y["W1"].shape == (21, 5, 4) and traj.y["W2"].shape == (21, 3, 5)
    assert traj.flat.shape == (21, 35) and traj.coordinate_names[0] == "W1[0,0]"
    assert traj["W2"].shape == (21, 3, 5) and traj["W2[2,4]"].shape == (21,)
    np.testing.assert_array_equal(traj.flat[0], np.concatenate([np.ravel(NET["W1"]), np.ravel(NET["W2"])]))
    gd = rf.iterate(rf.gradient_descent(net_loss, lr=1e-3, args=DATA), NET, 1000, every=50)
    assert gd.y["W1"].shape == (21, 5, 4)
    # GD at a small step follows the flow
    assert np.max(np.abs(gd.flat[-1] - traj.flat[-1])) < 1e-2
    values = traj.evaluate(balancedness)
    assert values.shape == (21, 5, 5)


def three_starts(tree):
    """Three starts (a leading path axis on every leaf): ``tree``, ``-tree`` and ``tree / 2``."""
    return jax.tree_util.tree_map(lambda leaf: jnp.stack([leaf, -leaf, leaf / 2]), tree)


def test_matrix_valued_conserved_passes_for_linear_and_fails_for_tanh():
    def method(data):
        return rf.Method(flow=rf.gradient_flow(net_loss, args=data), y0=three_starts(NET), t1=1.0,
                         claims=[rf.Conserved(balancedness, source="balancedness of linear layers")])

    linear = rf.check(method(DATA))
    assert linear.passed, linear.table()
    assert "25 entries" in linear.rows[0].check
    tanh = rf.check(method(TANH))
    assert not any(r.passed for r in tanh.rows), tanh.table()


def test_lie_derivative_of_a_matrix_quantity_is_a_matrix():
    flow = rf.gradient_flow(net_loss, args=DATA)
    lq = rf.lie_derivative(flow, balancedness)(NET)
    assert lq.shape == (5, 5) and float(jnp.max(jnp.abs(lq))) < 1e-12
    lq_tanh = rf.lie_derivative(rf.gradient_flow(net_loss, args=TANH), balancedness)(NET)
    assert float(jnp.max(jnp.abs(lq_tanh))) > 1e-3


def test_a_matrix_state_is_never_an_ensemble():
    decay = rf.ODE(lambda t, y, a: -y)
    m = np.arange(6.0).reshape(2, 3)
    traj = rf.integrate(decay, m, 1.0, ts=[0.0, 1.0])
    assert not traj.is_ensemble and traj.y.shape == (2, 2, 3)
    gd = rf.iterate(rf.Map(lambda k, y, a: 0.5 * y, dt=1.0), m, 2)
    assert not gd.is_ensemble and gd.y.shape == (3, 2, 3)
    np.testing.assert_allclose(gd.y[-1], m / 4)
    ensemble = rf.iterate(rf.Map(lambda k, y, a: 0.5 * y, dt=1.0), m, 2, batched=True)
    assert ensemble.is_ensemble and ensemble.y.shape == (2, 3, 3)
    # three paths from one start, saved like a claim's run of three starts (the program is shared)
    tree = rf.integrate(rf.gradient_flow(net_loss, args=DATA), NET, 1.0, ts=CLAIM_TS, paths=3)
    assert tree.is_ensemble and tree.y["W1"].shape == (3, 201, 5, 4)


def test_sde_and_stochastic_map_on_pytrees_share_the_noise():
    sde = rf.SDE(lambda t, w, a: jax.tree_util.tree_map(jnp.negative, w),
                 lambda t, w, a: jax.tree_util.tree_map(lambda x: 0.1 + 0 * x, w))
    a = rf.integrate(sde, NET, 0.5, dt=0.01, paths=4, seed=3, backend="jax")
    b = rf.integrate(sde, NET, 0.5, dt=0.01, paths=4, seed=3, backend="diffrax")
    assert a.y["W2"].shape == (4, 51, 3, 5)
    np.testing.assert_allclose(a.flat, b.flat, atol=1e-12)


def test_save_keeps_a_quantity_instead_of_the_state():
    flow = rf.gradient_flow(net_loss, args=DATA)
    full = rf.integrate(flow, NET, 1.0, ts=TS)
    for backend in ("diffrax", "scipy"):
        kept = rf.integrate(flow, NET, 1.0, ts=TS, save=balancedness, backend=backend)
        assert kept.y.shape == (21, 5, 5)
        np.testing.assert_allclose(kept.y, full.evaluate(balancedness), atol=1e-8)
    scalar = rf.iterate(rf.gradient_descent(net_loss, lr=0.01, args=DATA), NET, 10, save=net_loss)
    assert scalar.y.shape == (11,) and np.all(np.diff(scalar.y) < 0)
    with pytest.raises(ValueError, match="pass ts"):
        rf.integrate(flow, NET, 1.0, save=balancedness)


def test_save_load_and_xarray_round_trip(tmp_path):
    traj = rf.integrate(rf.gradient_flow(net_loss, args=DATA), NET, 1.0, ts=TS)
    loaded = rf.Trajectory.load(traj.save(tmp_path / "net.npz"))
    assert set(loaded.y) == {"W1", "W2"}
    np.testing.assert_array_equal(loaded.y["W1"], traj.y["W1"])
    ds = traj.to_xarray()
    assert set(ds.data_vars) == {"W1", "W2"} and ds["W1"].shape == (21, 5, 4)
    assert "W1: 5x4" in repr(traj) and len(repr(traj)) < 200


def test_solver_statistics_are_recorded():
    traj = rf.integrate(rf.gradient_flow(net_loss, args=DATA), NET, 1.0, ts=TS)
    stats = traj.meta["stats"]
    assert stats["num_steps"] == stats["num_accepted_steps"] + stats["num_rejected_steps"] > 0


def test_single_path_without_ts_saves_only_the_steps_taken(monkeypatch):
    from regflow.backends import diffrax_

    monkeypatch.setattr(diffrax_, "STEP_BUFFER_STEPS", (16, 64))  # force several buffers
    traj = rf.integrate(rf.ODE(lambda t, y, a: -y), jnp.ones(3), 200.0, rtol=1e-10, atol=1e-12)
    accepted = traj.meta["stats"]["num_accepted_steps"]
    assert len(traj.t) == accepted + 1 > 4 * 64
    np.testing.assert_allclose(traj.y[-1], np.exp(-200.0) * np.ones(3), atol=1e-12)
    assert np.all(np.diff(traj.t) > 0)


def _compiles(caplog, fn):
    import logging

    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="jax"), jax.log_compiles(True):
        fn()
    return [r for r in caplog.records if "ompil" in r.getMessage()]


def test_new_lr_y0_args_or_progress_do_not_recompile(caplog):
    # the runs of test_dict_network_integrates_iterates_and_keeps_its_structure (programs shared)
    gd = lambda lr: rf.gradient_descent(net_loss, lr=lr, args=DATA)  # noqa: E731
    rf.iterate(gd(1e-3), NET, 1000, every=50)
    assert _compiles(caplog, lambda: rf.iterate(gd(0.02), NET, 1000, every=50)) == []
    flow = rf.gradient_flow(net_loss, lr=1.0, args=DATA)
    rf.integrate(flow, NET, 1.0, ts=TS)
    other = jax.tree_util.tree_map(lambda x: 2 * x, NET)
    assert _compiles(caplog, lambda: rf.integrate(rf.gradient_flow(net_loss, lr=0.3, args=DATA), other, 1.0,
                                                  ts=TS)) == []
    new_data = {**DATA, "x": DATA["x"] + 1.0}
    assert _compiles(caplog, lambda: rf.integrate(flow.replace(args=new_data), NET, 1.0, ts=TS)) == []
    sde = rf.SDE(lambda t, w, a: jax.tree_util.tree_map(jnp.negative, w),
                 lambda t, w, a: jax.tree_util.tree_map(lambda x: 0.1 + 0 * x, w))
    rf.integrate(sde, NET, 0.1, dt=0.01, paths=3, progress=False)
    assert _compiles(caplog, lambda: rf.integrate(sde, NET, 0.1, dt=0.01, paths=3, progress=True, seed=2)) == []


@pytest.mark.parametrize("call, match", [
    (lambda: rf.integrate(rf.gradient_flow(net_loss, args=DATA), {"W1": NET["W1"]}, 1.0), "W2"),
    (lambda: rf.integrate(rf.ODE(lambda t, w, a: {"W1": w["W1"]}), NET, 1.0),
     "returns a pytree of structure .* it must return the same structure"),
    (lambda: rf.integrate(rf.ODE(lambda t, w, a: w), {"a": jnp.ones(2, jnp.float32), "b": jnp.ones(2)}, 1.0),
     r"leaves of mixed dtype \(a: float32, b: float64\)"),
    (lambda: rf.integrate(rf.ODE(lambda t, w, a: w), {"a": jnp.ones(2), "b": jnp.array([1.0, jnp.nan])}, 1.0),
     r"y0 \(leaf 'b'\) must be finite"),
    (lambda: rf.integrate(rf.ODE(lambda t, w, a: w), {"a": jnp.ones(2) * 1j}, 1.0), "has dtype complex"),
    (lambda: rf.integrate(rf.ODE(lambda t, w, a: w), {}, 1.0), "empty pytree"),
    (lambda: rf.integrate(rf.ODE(lambda t, w, a: w), {"a": jnp.ones((2, 2)), "b": jnp.ones((3, 2))}, 1.0,
                          batched=True), "same leading .*path.* axis"),
    (lambda: rf.sharpness(lambda w, a: w["W1"], NET), "loss must return a scalar"),
    (lambda: rf.hessian(lambda w, a: w["W1"], NET), "loss must return a scalar"),
    (lambda: rf.hvp(net_loss, NET, {"W1": NET["W1"]}, DATA), "structure"),
])
def test_bad_pytree_input_is_named(call, match):
    with pytest.raises((ValueError, TypeError, KeyError), match=match):
        call()


def test_hessian_and_jacobian_of_pytrees_are_flat_and_match_spectra():
    H = rf.hessian(net_loss, NET, DATA)
    assert H.shape == (35, 35)
    top = rf.sharpness(net_loss, NET, DATA)
    assert top == pytest.approx(np.linalg.eigvalsh(H)[-1], rel=1e-8)
    J = rf.jacobian(rf.gradient_flow(net_loss, args=DATA), NET)
    np.testing.assert_allclose(J, -H, atol=1e-10)


def test_equilibria_of_a_pytree_flow_count_the_symmetry():
    """A 2-layer linear net with one hidden unit at a minimum: the rescaling (W1, W2) ->
    (c W1, W2 / c) gives one zero mode; the minimum set of an overparametrised fit adds more,
    so a full-rank target keeps only the symmetry (hidden = 1, target of rank 1)."""
    x = jnp.asarray(RNG.standard_normal((30, 2)))
    target = x @ jnp.array([[1.0], [2.0]]) @ jnp.array([[0.5, -1.0]])
    args = {"x": x, "y": target, "mix": 0.0}
    start = {"W1": jnp.array([[0.9, 2.1]]), "W2": jnp.array([[0.45], [-1.05]])}
    found = rf.equilibria(rf.gradient_flow(net_loss, args=args), start)
    assert len(found) == 1 and found[0].zero_modes == 1 and found[0].kind == "degenerate sink"
    assert set(found[0].point) == {"W1", "W2"}


def test_sweep_takes_pytree_states_and_results():
    def factory(lr):
        return rf.gradient_descent(net_loss, lr=lr, args=DATA)

    def run(gd, seed):
        traj = rf.iterate(gd, NET, 20, every=20)
        return {"params": jax.tree_util.tree_map(lambda leaf: leaf[-1], traj.y), "loss": traj.evaluate(net_loss)[-1]}

    ds = rf.sweep(factory, {"lr": [0.01, 0.02]}, run=run, progress=False)
    assert ds["params_W1"].shape == (2, 5, 4) and ds["params_W2"].shape == (2, 3, 5)
    assert float(ds["loss"][1]) < float(ds["loss"][0])
