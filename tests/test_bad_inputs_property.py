"""Property: every bad input of the public API raises ValueError or TypeError whose message names
the argument: random wrong types, shapes, NaN/inf, complex numbers and bad tolerances.  Each
example fails before anything is compiled, so the suite is fast; it is deterministic."""

import re

import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import regflow as rf

PROFILE = settings(max_examples=30, deadline=None, derandomize=True, database=None,
                   suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])

ROT = rf.ODE(lambda t, y, a: jnp.array([-y[1], y[0]]))
HALVE = rf.Map(lambda k, y, a: 0.5 * y, dt=0.1)
LOSS = lambda w, a: (w[0] * w[1] - 1.0) ** 2  # noqa: E731

text = st.text(max_size=5)
not_a_number = st.one_of(text, st.just(None), st.booleans(), st.complex_numbers(allow_nan=False).filter(
    lambda z: z.imag != 0), st.lists(st.floats(), max_size=2), st.just(object()), st.just(b"1"))
non_finite = st.sampled_from([np.nan, np.inf, -np.inf])


@st.composite
def bad_state(draw, shapes=True):
    """Something that is not a finite real state (of dimension 2, with ``shapes``)."""
    kinds = ["type", "nan", "complex", "text", "empty"] + (["shape"] if shapes else [])
    kind = draw(st.sampled_from(kinds))
    if kind == "type":
        return draw(st.one_of(st.just(None), st.just(object()), text, st.just(b"ab")))
    if kind == "nan":
        y = np.array([draw(st.floats(-10, 10)), 0.0])
        y[draw(st.integers(0, 1))] = draw(non_finite)
        return y
    if kind == "complex":
        return np.array([1.0, 2.0]) + 1j * draw(st.floats(0.5, 3))
    if kind == "shape":
        n = draw(st.sampled_from([1, 3, 4]))
        return np.ones(n) * draw(st.floats(-3, 3))
    if kind == "text":
        return [draw(text), draw(text)]
    return draw(st.sampled_from([[], {}, ()]))


def names_argument(err, *names):
    message = str(err)
    assert any(re.search(rf"\b{re.escape(n)}\b", message) for n in names), message


def raises_named(call, *names):
    with pytest.raises((ValueError, TypeError)) as info:
        call()
    names_argument(info.value, *names)


@PROFILE
@given(bad_state())
def test_integrate_bad_y0(y0):
    raises_named(lambda: rf.integrate(ROT, y0, 1.0), "y0")


@PROFILE
@given(st.one_of(not_a_number, non_finite, st.floats(-5, 0)))
def test_integrate_bad_t1(t1):
    raises_named(lambda: rf.integrate(ROT, [1.0, 0.0], t1), "t1")


@PROFILE
@given(st.sampled_from(["rtol", "atol"]),
       st.one_of(not_a_number, non_finite, st.floats(-1, 0), st.floats(1.0, 1e6).filter(lambda x: x >= 1.0)))
def test_integrate_bad_tolerance(which, value):
    if which == "atol" and isinstance(value, float) and np.isfinite(value) and value >= 1.0:
        value = -value  # a large atol is allowed (states may be large); a negative one is not
    raises_named(lambda: rf.integrate(ROT, [1.0, 0.0], 1.0, **{which: value}), which)


@st.composite
def bad_ts(draw):
    kind = draw(st.sampled_from(["text", "2d", "decreasing", "outside", "nan", "complex", "empty", "objects"]))
    if kind == "text":
        return draw(st.one_of(text, st.lists(text, min_size=1, max_size=3)))
    if kind == "2d":
        return np.linspace(0.1, 1.0, 4).reshape(2, 2)
    if kind == "decreasing":
        return [0.8, draw(st.floats(0.0, 0.8))]
    if kind == "outside":
        return [draw(st.floats(1.01, 10))]
    if kind == "nan":
        return [0.5, draw(non_finite)]
    if kind == "complex":
        return [0.5 + 1j]
    if kind == "empty":
        return []
    return [object()]


@PROFILE
@given(bad_ts())
def test_integrate_bad_ts(ts):
    raises_named(lambda: rf.integrate(ROT, [1.0, 0.0], 1.0, ts=ts), "ts")


@PROFILE
@given(st.one_of(st.integers(-5, 0), st.floats(0.5, 3.5).filter(lambda x: x != int(x)), st.booleans(), text))
def test_integrate_and_iterate_bad_paths(paths):
    raises_named(lambda: rf.integrate(ROT, [1.0, 0.0], 1.0, paths=paths), "paths")
    raises_named(lambda: rf.iterate(HALVE, [1.0], 3, paths=paths), "paths")


@PROFILE
@given(st.one_of(not_a_number, non_finite, st.floats(-1, 0)))
def test_integrate_sde_bad_dt(dt):
    sde = rf.SDE(lambda t, y, a: -y, lambda t, y, a: 0.1 + 0 * y)
    raises_named(lambda: rf.integrate(sde, [1.0], 1.0, dt=dt), "dt")


@PROFILE
@given(st.one_of(st.integers(-5, 0), st.floats(0.5, 9.5).filter(lambda x: x != int(x)), st.booleans(), text,
                 st.just(None)))
def test_iterate_bad_steps(steps):
    raises_named(lambda: rf.iterate(HALVE, [1.0], steps), "steps")


@PROFILE
@given(bad_state())
def test_iterate_bad_y0(y0):
    raises_named(lambda: rf.iterate(rf.Map(lambda k, y, a: jnp.array([y[1], y[0]]), dt=0.1), y0, 3), "y0")


@PROFILE
@given(bad_state(), st.one_of(st.just(0.0), not_a_number, non_finite))
def test_jacobian_bad_point_or_time(y, t):
    if isinstance(t, float) and t == 0.0:
        raises_named(lambda: rf.jacobian(ROT, y), "y")
    else:
        raises_named(lambda: rf.jacobian(ROT, [1.0, 0.0], t=t), "t")


@PROFILE
@given(bad_state(shapes=False))
def test_hessian_bad_point(w):
    raises_named(lambda: rf.hessian(LOSS, w), "w", "loss")


@PROFILE
@given(st.one_of(not_a_number, st.just(3.0)))
def test_hessian_and_lie_derivative_bad_callables(fn):
    raises_named(lambda: rf.hessian(fn, [1.0, 2.0]), "loss")
    raises_named(lambda: rf.lie_derivative(ROT, fn), "q")


@PROFILE
@given(bad_state())
def test_lie_derivative_bad_point(y):
    lq = rf.lie_derivative(ROT, lambda y, a: y @ y)
    raises_named(lambda: lq(y), "y")


@PROFILE
@given(bad_state(), st.one_of(not_a_number, non_finite, st.floats(-1, 0)))
def test_equilibria_bad_guesses_and_tol(guesses, tol):
    raises_named(lambda: rf.equilibria(ROT, guesses), "guesses")
    raises_named(lambda: rf.equilibria(ROT, [1.0, 0.0], tol=tol), "tol")


@PROFILE
@given(st.one_of(text.filter(lambda s: s not in ("scalar", "diagonal", "general")), st.just(None), st.just(3)),
       st.one_of(st.sampled_from(["", " ", "x"]), st.just(None), st.integers(), st.just(b"y")))
def test_declarations_bad_noise_and_names(noise, name):
    raises_named(lambda: rf.SDE(lambda t, y, a: y, lambda t, y, a: y, noise=noise), "noise")
    raises_named(lambda: rf.ODE(lambda t, y, a: y, names=("x", name)), "names")
