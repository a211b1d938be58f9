"""A user's own system, not in the catalogue: declare, integrate with two backends, check a claim."""

import jax.numpy as jnp
import numpy as np

import regflow as rf


def test_user_pendulum_scipy_diffrax_and_energy():
    pendulum = rf.ODE(lambda t, y, a: jnp.array([y[1], -a["g"] * jnp.sin(y[0])]), names=("theta", "omega"),
                      args={"g": 9.81})

    def energy(y, a):
        return 0.5 * y[1] ** 2 - a["g"] * jnp.cos(y[0])

    # the claim's own run (its starts, 201 saves), so the check reuses diffrax's compiled program
    starts, ts = [[1.0, 0.0], [2.5, 0.5]], np.linspace(0, 5, 201)
    a = rf.integrate(pendulum, starts, 5.0, ts=ts, backend="scipy", batched=True)
    b = rf.integrate(pendulum, starts, 5.0, ts=ts, backend="diffrax", batched=True)
    assert a.y.shape == b.y.shape == (2, 201, 2)
    assert np.max(np.abs(a.y - b.y)) < 1e-6
    report = rf.check(rf.Method(flow=pendulum, y0=starts, t1=5.0, claims=[rf.Conserved(energy, source="Newton")]))
    assert report.passed, report.table()
