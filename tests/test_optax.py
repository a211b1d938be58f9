"""rf.from_optax on a 2-layer network (a dict of matrices) and the optimizer flows: the map is
optax's own loop, and its order of agreement with each flow as lr -> 0 is fitted (a wrong flow
gives order ~0).  One optimizer per method with an injected learning rate, so each map
compiles once for every lr; every run saves as many states; the wrong flows are
`heavy_ball_flow(beta=0)` (gradient flow), which reuses the heavy-ball flow's program."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import regflow as rf

BETA = 0.5
#: Every run saves SAVES states (the coarsest map's steps), so each program compiles once.
SAVES = 100
MOMENTUM_STEPS, MOMENTUM_T1 = (0.005, 0.0025, 0.00125), 0.5
#: Adam follows its flow once the moments' memory, h / (1 - b), is short against t1.
ADAM = dict(b1=0.9, b2=0.9, eps=0.1)
ADAM_STEPS, ADAM_T1 = (0.002, 0.001, 0.0005), 0.2

NET = rf.Network((3, 4, 2), activation="tanh")


def loss(w, data):
    return 0.5 * jnp.mean(jnp.sum((NET(w, data["x"]) - data["y"]) ** 2, axis=1))


@pytest.fixture(scope="module")
def problem():
    rng = np.random.default_rng(0)
    data = {"x": jnp.asarray(rng.normal(size=(16, 3))), "y": jnp.asarray(rng.normal(size=(16, 2)))}
    return data, jax.tree_util.tree_map(jnp.asarray, NET.init(seed=1))


@pytest.fixture(scope="module")
def momentum():
    return optax.inject_hyperparams(optax.sgd)(learning_rate=0.01, momentum=BETA)


@pytest.fixture(scope="module")
def adam():
    return optax.inject_hyperparams(optax.adam)(learning_rate=0.001, **ADAM)


def _optax_loop(optimizer, params, data, steps):
    def body(_, carry):
        params, state = carry
        updates, state = optimizer.update(jax.grad(loss)(params, data), state, params)
        return optax.apply_updates(params, updates), state

    return jax.lax.fori_loop(0, steps, body, (params, optimizer.init(params)))[0]


def _close(a, b, tol=1e-12):
    return all(np.allclose(x, y, rtol=0, atol=tol) for x, y in zip(jax.tree_util.tree_leaves(a),
                                                                   jax.tree_util.tree_leaves(b)))


def test_momentum_iterates_as_heavy_ball(problem, momentum):
    data, w0 = problem
    hb = rf.from_optax(momentum, loss, args=data)
    assert hb.dt == 0.01  # read from the injected learning rate
    run = rf.iterate(hb, rf.optax_state(momentum, w0), SAVES)
    assert run.ok and run.y["params"]["W1"].shape == (SAVES + 1, 4, 3)

    def heavy_ball(_, wv):  # v <- beta v + grad L(w), w <- w - lr v
        w, v = wv
        v = jax.tree_util.tree_map(lambda vi, g: BETA * vi + g, v, jax.grad(loss)(w, data))
        return jax.tree_util.tree_map(lambda wi, vi: wi - 0.01 * vi, w, v), v

    w = jax.lax.fori_loop(0, SAVES, heavy_ball, (w0, jax.tree_util.tree_map(jnp.zeros_like, w0)))[0]
    assert _close(jax.tree_util.tree_map(lambda x: x[-1], run.y["params"]), w)
    losses = run.evaluate(rf.on_params(loss))
    assert losses.shape == (SAVES + 1,) and losses[-1] < losses[0]


def test_adam_iterates_as_optax(problem, adam):
    data, w0 = problem
    run = rf.iterate(rf.from_optax(adam, loss, lr=0.002, args=data), rf.optax_state(adam, w0), SAVES)
    # lr= sets the injected learning rate: the run is optax's loop at 0.002, not the optimizer's 0.001
    expected = _optax_loop(optax.adam(0.002, **ADAM), w0, data, SAVES)
    assert _close(jax.tree_util.tree_map(lambda x: x[-1], run.y["params"]), expected)
    assert float(run.t[-1]) == pytest.approx(0.002 * SAVES)
    assert int(round(float(run.y["opt_state"].inner_state[0].count[-1]))) == SAVES


def test_heavy_ball_agrees_with_its_flow_and_not_without_the_factor(problem, momentum):
    data, w0 = problem
    map_at = lambda h: rf.from_optax(momentum, loss, lr=h, args=data)  # noqa: E731
    flow = rf.heavy_ball_flow(loss, beta=BETA, args=data)
    claim = rf.Agrees(order=1, steps=MOMENTUM_STEPS, t1=MOMENTUM_T1, source="(1 - beta) dw/dt = -grad L")
    report = rf.check(rf.Method(flow=flow, map=map_at(0.01), map_at=map_at, claims=[claim], t1=MOMENTUM_T1,
                                y0=jax.tree_util.tree_map(lambda x: x[None], w0)))
    row = report.rows[0]
    assert report.passed and row.measured >= 0.9, row
    wrong = rf.agreement_order(map_at, rf.heavy_ball_flow(loss, beta=0.0, args=data), w0, MOMENTUM_T1,
                               MOMENTUM_STEPS)
    assert abs(wrong.order) < 0.2 and wrong.errors[-1] > 10 * row.trace.y[-1], wrong


def test_map_error_reads_observables_on_params(problem, momentum):
    data, w0 = problem
    hb = rf.from_optax(momentum, loss, lr=MOMENTUM_T1 / SAVES, args=data)
    flow = rf.heavy_ball_flow(loss, beta=BETA, args=data)
    state_error = rf.map_error(hb, flow, w0, MOMENTUM_T1)
    loss_error = rf.map_error(hb, flow, w0, MOMENTUM_T1, observable=rf.on_params(loss))
    assert 0 < loss_error < state_error < 0.05


def test_adam_agrees_with_its_flow(problem, adam):
    data, w0 = problem
    map_at = lambda h: rf.from_optax(adam, loss, lr=h, args=data)  # noqa: E731
    fit = rf.agreement_order(map_at, rf.adam_flow(loss, eps=ADAM["eps"], args=data), w0, ADAM_T1, ADAM_STEPS)
    assert fit.order >= 0.9, fit
    wrong = rf.agreement_order(map_at, rf.heavy_ball_flow(loss, beta=0.0, args=data), w0, ADAM_T1, ADAM_STEPS)
    assert abs(wrong.order) < 0.2 and wrong.errors[-1] > 10 * fit.errors[-1], wrong


def test_momentum_start_matches_the_transient(problem):
    data, w0 = problem
    g = jax.grad(loss)(w0, data)
    hb = rf.momentum_start(loss, w0, beta=BETA, args=data)
    nesterov = rf.momentum_start(loss, w0, beta=BETA, nesterov=True, args=data)
    assert _close(hb["velocity"], jax.tree_util.tree_map(lambda x: -x / (1 + BETA), g))
    assert _close(nesterov["velocity"], jax.tree_util.tree_map(lambda x: -x * (1 + 2 * BETA) / (1 + BETA), g))
    field = jax.jit(rf.momentum_ode(loss, lr=0.01, beta=BETA).vector_field)(0.0, hb, data)
    assert _close(field["params"], hb["velocity"])


def test_bad_inputs_are_named(problem, momentum):
    data, w0 = problem
    with pytest.raises(TypeError, match="optimizer must be an optax optimizer.*got the function 'adam': call it"):
        rf.from_optax(optax.adam, loss, lr=0.01)
    with pytest.raises(TypeError, match="optimizer must be an optax optimizer.*got Map"):
        rf.from_optax(rf.gradient_descent(loss, lr=0.01), loss, lr=0.01)
    with pytest.raises(TypeError, match=r"loss must be loss\(w, args\).*loss\(params, args\)"):
        rf.from_optax(momentum, lambda w: jnp.sum(w["W1"]))
    with pytest.raises(ValueError, match="lr is needed.*not built with optax.inject_hyperparams"):
        rf.from_optax(optax.sgd(0.01), loss)
    schedule = optax.inject_hyperparams(optax.sgd)(learning_rate=optax.linear_schedule(0.1, 0.0, 10))
    with pytest.raises(ValueError, match="lr is needed.*schedule"):
        rf.from_optax(schedule, loss)
    with pytest.raises(ValueError, match="lr must be a positive finite number"):
        rf.from_optax(momentum, loss, lr=-0.1)
    with pytest.raises(ValueError, match=r"y0=rf.optax_state\(optimizer, params\)"):
        rf.iterate(rf.from_optax(momentum, loss, args=data), w0, 2)
    with pytest.raises(ValueError, match="initial state has non-finite entries"):
        rf.optax_state(optax.lbfgs(), w0)
    with pytest.raises(TypeError, match=r"q must be q\(y, args\)"):
        rf.on_params(lambda w: w)
    with pytest.raises(ValueError, match=r"beta must be in \[0, 1\)"):
        rf.heavy_ball_flow(loss, beta=1.0)
    with pytest.raises(TypeError, match="nesterov must be True or False"):
        rf.momentum_ode(loss, lr=0.01, beta=0.5, nesterov=1)
