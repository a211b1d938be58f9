"""Bad input at every public boundary is refused with a message naming the argument and the fix;
a run that blows up returns a Trajectory whose status says so and when, the same on every backend;
a request too large for memory is refused before anything is allocated."""

import functools

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import regflow as rf
from regflow import _memory, _validate


def rot_field(t, y, args):
    return jnp.array([-y[1], y[0]])


ROT = rf.ODE(rot_field)
OU = rf.SDE(lambda t, y, a: -y, lambda t, y, a: 0.5 + 0.0 * y)
HALVE = rf.Map(lambda k, y, a: 0.5 * y, dt=0.1)


# ----------------------------------------------------------------------------- callables' signatures


@pytest.mark.parametrize("make, match", [
    (lambda: rf.ODE(lambda y: -y), r"vector_field must be f\(t, y, args\).*got a callable of 1 parameter \(y\)"),
    (lambda: rf.ODE(lambda t, y: -y), r"vector_field must be f\(t, y, args\).*2 parameters \(t, y\)"),
    (lambda: rf.ODE(lambda t, y, a, b: -y), r"4 parameters"),
    (lambda: rf.ODE(lambda t, y, *, args: -y), r"required keyword-only parameter\(s\) args"),
    (lambda: rf.SDE(lambda t, y, a: -y, lambda y: y), r"diffusion must be g\(t, y, args\).*1 parameter"),
    (lambda: rf.SDE(lambda y, a: -y, lambda t, y, a: y), r"drift must be f\(t, y, args\)"),
    (lambda: rf.Map(lambda k, y, a: y, dt=0.1, stochastic=True), r"step must be step\(k, y, args, key\).*stochastic"),
    (lambda: rf.Map(lambda k, y, a, key: y, dt=0.1), r"step must be step\(k, y, args\).*pass stochastic=True"),
    (lambda: rf.Map(lambda y: y, dt=0.1), r"step must be step\(k, y, args\)"),
    (lambda: rf.lie_derivative(ROT, lambda y: y @ y), r"q must be q\(y, args\).*1 parameter"),
    (lambda: rf.hessian(lambda w: w @ w, [1.0, 2.0]), r"loss must be loss\(w, args\)"),
    (lambda: rf.sharpness(lambda w: w @ w, jnp.ones(2)), r"loss must be loss\(w, args\)"),
    (lambda: rf.gradient_flow(lambda w: w @ w), r"loss must be loss\(w, args\)"),
    (lambda: rf.sgd(lambda w, a: w @ w, {"x": jnp.ones((4, 2))}, lr=0.1, batch_size=2),
     r"sample_loss must be loss\(w, batch, args\)"),
    (lambda: rf.integrate(ROT, [1.0, 0.0], 1.0, ts=[1.0], save=lambda y: y), r"save must be q\(y, args\)"),
    (lambda: rf.ODE(3.0), "vector_field must be a callable"),
])
def test_wrong_signature_shows_the_convention(make, match):
    with pytest.raises(TypeError, match=match):
        make()


class Decay(eqx.Module):
    rate: jax.Array

    def __call__(self, t, y, args):
        return -self.rate * y


@pytest.mark.parametrize("field", [
    functools.partial(lambda t, y, a, k: -k * y, k=2.0),
    jax.jit(lambda t, y, a: -y),
    lambda *xs: -xs[1],
    lambda t, y, args=None, extra=1.0: -y,
    Decay(jnp.asarray(2.0)),
    max,  # cannot be inspected: accepted as it is
])
def test_signatures_that_fit_are_accepted(field):
    assert rf.ODE(field).vector_field is field


def test_signature_check_is_cached_per_callable_and_class():
    _validate.parameters(rot_field)
    assert _validate._SIGNATURES[rot_field] == (3, 3, ("t", "y", "args"), ())
    _validate.parameters(Decay(jnp.asarray(1.0)))
    assert Decay in _validate._SIGNATURES  # an unhashable module is keyed by its class


# ----------------------------------------------------------------------------- what a callable returns


@pytest.mark.parametrize("field, error, match", [
    (lambda t, y, a: [-y[0]], TypeError, r"returns a list of 1 number; return an array like y.*jnp.array"),
    (lambda t, y, a: None, TypeError, r"vector_field f\(t, y, args\) returned None.*return"),
    (lambda t, y, a: y * 1j, TypeError, r"returns complex values.*real"),
    (lambda t, y, a: np.sin(y), TypeError, r"vector_field f\(t, y, args\) uses numpy.*jax\.numpy"),
    (lambda t, y, a: a["k"] * y, TypeError,
     r"calling the vector_field f\(t, y, args\) on a state like y \(\(1,\)\) failed with TypeError.*args"),
    (lambda t, y, a: y[0], ValueError, r"y0 does not fit the system: the vector_field returns shape \(\)"),
    (lambda t, y, a: jnp.ones(2), ValueError, r"vector_field returns shape \(2,\) for a state of shape \(1,\)"),
])
def test_bad_field_output_is_named_at_the_first_evaluation(field, error, match):
    with pytest.raises(error, match=match):
        rf.integrate(rf.ODE(field), [1.0], 1.0)


def test_bad_step_and_diffusion_outputs():
    with pytest.raises(TypeError, match=r"step step\(k, y, args\) returns float32 values for a float64 state"):
        rf.iterate(rf.Map(lambda k, y, a: y.astype(jnp.float32), dt=1.0), [1.0], 3)
    general0 = rf.SDE(lambda t, y, a: -y, lambda t, y, a: jnp.zeros((2, 0)), noise="general")
    with pytest.raises(ValueError, match=r"m = 0 Brownian motions; noise='general' needs m >= 1"):
        rf.integrate(general0, [1.0, 2.0], 1.0, dt=0.1)
    with pytest.raises(TypeError, match=r"save q\(y, args\) returns complex128 values"):
        rf.integrate(ROT, [1.0, 0.0], 1.0, ts=[1.0], save=lambda y, a: y * 1j)
    with pytest.raises(TypeError, match=r"q must be q\(y, args\), called with 2 arguments"):
        rf.integrate(ROT, [1.0, 0.0], 1.0, ts=[1.0], backend="scipy").evaluate(lambda y: y)


# ----------------------------------------------------------------------------- numbers, times, tolerances, args, names


@pytest.mark.parametrize("call, error, match", [
    (lambda: rf.integrate(ROT, ["1", "2"], 1.0), TypeError, r"y0 \(leaf '0'\) holds str '1', not numbers"),
    (lambda: rf.integrate(ROT, np.array([1 + 1j, 2]), 1.0), TypeError, "y0 has dtype complex"),
    (lambda: rf.integrate(ROT, [[1.0], [1.0, 2.0]], 1.0), ValueError, "y0 is a ragged nested list"),
    (lambda: rf.integrate(ROT, [1.0, 2.0], "1.0"), TypeError, r"t1 must be a real number.*got str '1.0'"),
    (lambda: rf.integrate(ROT, [1.0, 2.0], True), TypeError, "t1 must be a real number, got the bool True"),
    (lambda: rf.integrate(ROT, [1.0, 2.0], 1.0, t0="0"), TypeError, "t0 must be a real number"),
    (lambda: rf.integrate(ROT, [1.0, 2.0], np.inf), ValueError, "t1 must be finite"),
    (lambda: rf.integrate(ROT, [1.0, 2.0], 1.0, ts="abc"), TypeError, "ts must be a sequence of times"),
    (lambda: rf.integrate(ROT, [1.0, 2.0], 1.0, ts=[[0.5, 1.0]]), ValueError, r"ts must be 1-D.*shape \(1, 2\)"),
    (lambda: rf.integrate(ROT, [1.0, 2.0], 1.0, ts=[0.5j]), TypeError, "ts must hold real numbers, got complex"),
    (lambda: rf.integrate(ROT, [1.0, 2.0], 1.0, rtol=10, atol=10), ValueError, "rtol=10 allows a relative error"),
    (lambda: rf.integrate(ROT, [1.0, 2.0], 1.0, rtol=1e-20), ValueError, "below float64 resolution"),
    (lambda: rf.integrate(ROT, [1.0, 2.0], 1.0, atol=0.0), ValueError, "atol must be positive"),
    (lambda: rf.integrate(ROT, [1.0, 2.0], 1.0, rtol="1e-8"), TypeError, "rtol must be a real number"),
    (lambda: rf.integrate(OU, [1.0], 1.0, dt="0.1"), TypeError, "dt must be a real number"),
    (lambda: rf.integrate(ROT, [1.0, 2.0], 1.0, paths=True), TypeError, "paths must be a positive int"),
    (lambda: rf.integrate(ROT, [1.0, 2.0], 1.0, batched="no"), TypeError, "batched must be True or False"),
    (lambda: rf.integrate(ROT, [1e13, 0.0], 1.0), ValueError, "beyond the divergence bound"),
    (lambda: rf.integrate(ROT.replace(names=("a", "b", "c")), [1.0, 0.0], 1.0), ValueError,
     r"names 3 coordinates .* y0 has 2"),
    (lambda: rf.integrate(ROT, [1.0, 2.0], 1.0, seed="a"), TypeError, "seed must be an int or a jax.random.PRNGKey"),
    (lambda: rf.iterate(HALVE, [1.0], 3, seed=2**70), ValueError, "seed must fit in 64 bits"),
    (lambda: rf.iterate(HALVE, [1.0], 2.5), TypeError, "steps must be a positive int"),
    (lambda: rf.iterate(HALVE, [1.0], 3, every=0), ValueError, "every must be at least 1"),
    (lambda: rf.ODE(rot_field, names=("", "b")), ValueError, "names must be non-empty strings"),
    (lambda: rf.ODE(rot_field, names=()), ValueError, "names is empty"),
    (lambda: rf.ODE(rot_field, names=("a", 1)), TypeError, "names must be strings"),
    (lambda: rf.ODE(rot_field, args="abc"), TypeError, r"args must be a pytree of arrays and numbers.*str 'abc'"),
    (lambda: rf.ODE(rot_field, args={"mode": "fast"}), TypeError, r"args\['mode'\] is str 'fast'"),
    (lambda: rf.Map(lambda k, y, a: y, dt=True), TypeError, "dt must be a real number, got the bool"),
    (lambda: rf.Map(lambda k, y, a: y, dt="0.1"), TypeError, "dt must be a real number"),
    (lambda: rf.Map(lambda k, y, a: y, dt=0.1, stochastic="no"), TypeError, "stochastic must be True or False"),
    (lambda: rf.SDE(lambda t, y, a: y, lambda t, y, a: y, noise=["diagonal"]), ValueError, "noise must be one of"),
    (lambda: rf.gradient_descent(lambda w, a: w @ w, lr="0.1"), TypeError, "lr must be a real number"),
    (lambda: rf.sgd(lambda w, b, a: w @ w, {"x": [1.0, 2.0]}, lr=0.1, batch_size=1), ValueError, "data must"),
    (lambda: rf.agreement_order(lambda h: HALVE, ROT, [1.0], 1.0, "abc"), TypeError, "steps must be a sequence"),
])
def test_bad_numbers_times_and_declarations(call, error, match):
    with pytest.raises(error, match=match):
        call()


def test_string_args_are_refused_before_compiling():
    ode = rf.ODE(lambda t, y, a: -y)
    with pytest.raises(TypeError, match=r"args must be a pytree of arrays and numbers"):
        rf.integrate(ode.replace(args={"k": 1.0, "label": "x"}), [1.0], 1.0)


# ----------------------------------------------------------------------------- analysis functions


@pytest.mark.parametrize("call, error, match", [
    (lambda: rf.jacobian(ROT, [1.0, 2.0, 3.0]), ValueError,
     r"y does not fit the system: the vector_field returns shape \(2,\) for a state of shape \(3,\)"),
    (lambda: rf.jacobian(ROT, [np.nan, 1.0]), ValueError, "y must be finite"),
    (lambda: rf.jacobian(ROT, [1.0, 1.0], t="0"), TypeError, "t must be a real number"),
    (lambda: rf.jacobian(ROT, [1.0, 1.0], args={"s": "x"}), TypeError, "args must be a pytree"),
    (lambda: rf.hessian(lambda w, a: 2 * w, [1.0, 2.0]), ValueError,
     r"loss must return a scalar, got shape \(2,\).*rf\.jacobian"),
    (lambda: rf.hessian(lambda w, a: w @ w, [np.inf, 2.0]), ValueError, "w must be finite"),
    (lambda: rf.hessian(lambda w, a: jnp.sum(w) * 1j, [1.0, 2.0]), TypeError, "real float scalar"),
    (lambda: rf.lie_derivative(ROT, lambda y, a: y @ y)(jnp.ones(3)), ValueError, "y does not fit the system"),
    (lambda: rf.lie_derivative(ROT, lambda y, a: y @ y)(jnp.array([1.0, np.nan])), ValueError, "y must be finite"),
    (lambda: rf.equilibria(ROT, [1.0, np.nan]), ValueError, "guesses must be finite"),
    (lambda: rf.equilibria(ROT, [1.0, 0.0, 2.0]), ValueError, "guesses have dimension 3"),
    (lambda: rf.equilibria(ROT, [1.0, 0.0], tol=-1.0), ValueError, "tol must be positive"),
    (lambda: rf.equilibria(ROT, [1.0, 0.0], dense_below="big"), TypeError, "dense_below must be a positive int"),
    (lambda: rf.sharpness(lambda w, a: w @ w, jnp.array([1.0, np.nan])), ValueError, "non-finite entries"),
    (lambda: rf.jacobian_eigs(rot_field, jnp.ones(2), t="x"), TypeError, "t must be a real number"),
    (lambda: rf.hessian_eigs(lambda w, a: w @ w, jnp.ones(2), dense_below=None), TypeError, "dense_below"),
])
def test_analysis_functions_refuse_bad_points(call, error, match):
    with pytest.raises(error, match=match):
        call()


def test_lie_derivative_still_jits_and_vmaps():
    lq = rf.lie_derivative(ROT, lambda y, a: y @ y)
    values = jax.jit(jax.vmap(lq))(jnp.ones((3, 2)))
    np.testing.assert_allclose(values, 0.0, atol=1e-12)


# ----------------------------------------------------------------------------- divergence: one rule everywhere

#: One field for the ODE cases (one compiled program per backend): NaN from t > a["t_nan"] on,
#: and at once wherever y < 0.
NAN_AFTER = rf.ODE(lambda t, y, a: jnp.where(t > a["t_nan"], jnp.nan, -jnp.sqrt(y)), args={"t_nan": 10.0})
#: One SDE for the SDE cases: y' = c y^3 - s sqrt(y), no noise.
SDE_CASES = rf.SDE(lambda t, y, a: a["c"] * y**3 - a["s"] * jnp.sqrt(y), lambda t, y, a: 0.0 * y,
                   args={"c": 1.0, "s": 0.0})
TS = [0.0, 0.5, 1.0]


def _time(status):
    return float(status.split("t=")[1].split()[0].rstrip(":"))


@pytest.mark.parametrize("method", ["dopri5", "rk23", "lsoda", "radau", "bdf"])
def test_nan_field_at_the_start_on_scipy_returns_at_once(method):
    traj = rf.integrate(rf.ODE(lambda t, y, a: y * jnp.nan), [1.0], 1.0, backend="scipy", method=method)
    assert traj.status == "diverged at t=0"
    assert traj.t.tolist() == [0.0] and traj.y.tolist() == [[1.0]]


def test_nan_field_at_the_start_on_diffrax_is_a_divergence_not_a_stiffness_failure():
    traj = rf.integrate(NAN_AFTER.replace(args={"t_nan": -1.0}), [1.0], 1.0, ts=TS)
    assert traj.status == "diverged at t=0" and "kvaerno5" not in traj.status
    assert traj.t.tolist() == [0.0] and traj.y.tolist() == [[1.0]]


@pytest.mark.parametrize("backend", ["diffrax", "scipy"])
def test_ode_ensemble_paths_with_a_nan_start_diverge_there_others_run(backend):
    traj = rf.integrate(NAN_AFTER, [[1.0], [-1.0]], 1.0, batched=True, ts=TS, backend=backend)
    assert traj.diverged_at.tolist() == [np.inf, 0.0]
    assert traj.status.startswith("diverged at t=0 (1 of 2 paths")
    np.testing.assert_allclose(traj.y[0, :, 0], [1.0, 0.5625, 0.25], rtol=1e-6)
    assert traj.y[1, 0, 0] == -1.0 and np.isnan(traj.y[1, 1:, 0]).all()
    both = rf.integrate(NAN_AFTER.replace(args={"t_nan": -1.0}), [[1.0], [2.0]], 1.0, batched=True, ts=TS,
                        backend=backend)
    assert both.diverged_at.tolist() == [0.0, 0.0] and both.y[:, 0, 0].tolist() == [1.0, 2.0]


@pytest.mark.parametrize("backend, method, within", [("diffrax", "dopri5", 1e-6), ("scipy", "dopri5", 1e-6),
                                                     ("scipy", "radau", 1e-6), ("scipy", "lsoda", 0.5)])
def test_field_nan_ahead_is_a_divergence_with_no_stiffness_hint(backend, method, within):
    """(LSODA steps on through NaN, with long steps here: its divergence is the first of its
    steps whose state is NaN, somewhere after t = 0.5.)"""
    ahead = NAN_AFTER.replace(args={"t_nan": 0.5})
    traj = rf.integrate(ahead, [[1.0], [1.0]], 1.0, batched=True, ts=TS, backend=backend, method=method)
    assert traj.status.startswith("diverged at t=") and "kvaerno5" not in traj.status, traj.status
    assert np.all((0.5 - 1e-9 <= traj.diverged_at) & (traj.diverged_at <= 0.5 + within)), traj.diverged_at
    assert np.isfinite(traj.y[:, 0]).all() and np.isnan(traj.y[:, 2:]).all()


@pytest.mark.parametrize("method", ["dopri5", "lsoda"])
def test_a_solver_stuck_on_a_finite_field_fails_within_its_step_budget(monkeypatch, method):
    from regflow.backends import scipy_

    monkeypatch.setattr(scipy_, "MAX_STEPS", 300)  # the budget is 2**16, as for diffrax; smaller here to be quick
    chatter = rf.ODE(lambda t, y, a: jnp.array([5.0 * jnp.sign(1.0 - y[0])]))  # sliding at y = 1 from t = 0.2
    traj = rf.integrate(chatter, [0.0], 1.0, ts=[0.1, 0.5, 1.0], backend="scipy", method=method)
    assert traj.status.startswith("failed at t=") and "kvaerno5" in traj.status, traj.status
    assert 0.19 < _time(traj.status) < 0.3 and traj.y[:, 0].tolist() == pytest.approx([0.5])


def test_sde_backends_share_the_bound_the_time_and_the_stored_values():
    runs = {b: rf.integrate(SDE_CASES, [1.0], 1.0, dt=0.01, paths=2, backend=b) for b in ("jax", "diffrax", "sdeint")}
    for backend, traj in runs.items():
        assert traj.diverged_at.tolist() == pytest.approx([0.57, 0.57]), backend
        first = np.argmax(traj.t >= 0.57 - 1e-12)
        assert np.isnan(traj.y[:, first:]).all() and np.isfinite(traj.y[:, :first]).all(), backend
        np.testing.assert_allclose(traj.y[:, :first], runs["jax"].y[:, :first], rtol=1e-12)


@pytest.mark.parametrize("backend", ["jax", "diffrax", "sdeint"])
def test_sde_drift_nan_at_the_start_diverges_at_t0_keeping_the_start(backend):
    sde = SDE_CASES.replace(args={"c": 0.0, "s": 1.0})
    traj = rf.integrate(sde, [[1.0], [-1.0]], 1.0, dt=0.01, batched=True, backend=backend)
    assert traj.diverged_at.tolist() == [np.inf, 0.0]
    assert traj.y[1, 0, 0] == -1.0 and np.isnan(traj.y[1, 1:]).all() and np.isfinite(traj.y[0]).all()


# ----------------------------------------------------------------------------- memory


@pytest.mark.parametrize("call, match", [
    (lambda: rf.integrate(OU, [1.0, 1.0, 1.0], 1.0, dt=1e-3, paths=10**8),
     r"paths=10\*\*8 x 1001 saved times x 3 floats .* needs about 4.8\d? TB.*reduce paths to at most"),
    (lambda: rf.integrate(OU, [1.0], 1.0, dt=1e-3, paths=10**12), r"paths=10\*\*12 .* reduce paths"),
    (lambda: rf.integrate(OU, [1.0], 1.0, dt=1e-13), r"dt=1e-13: 10\*\*13 steps.*pass ts= with at most"),
    (lambda: rf.integrate(OU, [1.0], 1.0, dt=1e-11, ts=[1.0], backend="diffrax"), r"a larger dt"),
    (lambda: rf.iterate(HALVE, [1.0], 10**13), r"steps=10\*\*13, every=1.*pass every=\d"),
    (lambda: rf.integrate(ROT, [1.0, 0.0], 1.0, paths=10**9), r"paths=10\*\*9 x 102 saved times.*reduce paths"),
])
def test_requests_beyond_memory_are_refused_before_allocating(call, match):
    with pytest.raises(ValueError, match=match):
        call()


def test_the_memory_limit_is_a_fraction_of_physical_memory(monkeypatch):
    assert _memory.limit() == int(_memory.MEMORY_FRACTION * _memory.physical_bytes()) > 0
    monkeypatch.setattr(_memory, "physical_bytes", lambda: 2000)
    with pytest.raises(ValueError, match=r"more than the limit of 1 kB \(50% of this machine's 2 kB\)"):
        rf.integrate(OU, [1.0], 1.0, dt=0.5, paths=10)
