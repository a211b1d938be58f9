"""A user's own system, not in the catalogue: declare, integrate with two backends, check a claim."""

import jax.numpy as jnp
import numpy as np

import regflow as rf


def test_user_pendulum_scipy_diffrax_and_energy():
    pendulum = rf.ODE(lambda t, y, a: jnp.array([y[1], -a["g"] * jnp.sin(y[0])]), names=("theta", "omega"),
                      args={"g": 9.81})

    def energy(y, a):
        return 0.5 * y[1] ** 2 - a["g"] * jnp.cos(y[0])

    ts = np.linspace(0, 5, 51)
    a = rf.integrate(pendulum, [1.0, 0.0], 5.0, ts=ts, backend="scipy")
    b = rf.integrate(pendulum, [1.0, 0.0], 5.0, ts=ts, backend="diffrax")
    assert np.max(np.abs(a.y - b.y)) < 1e-6
    report = rf.check(rf.Method(flow=pendulum, y0=[[1.0, 0.0], [2.5, 0.5]], t1=5.0,
                                claims=[rf.Conserved(energy, source="Newton")]))
    assert report.passed, report.table()
