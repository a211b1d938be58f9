"""The benchmark problems and the anchors regflow is measured against.

The problem is the 3-layer scalar net, :math:`W = w_1 w_2 w_3`:

* SDE (Ito, one Brownian motion): :math:`dw_i = -2(W-1)\\frac{W}{w_i}dt + \\sigma\\,\\frac{2W}{w_i}dB`,
  ``sigma = 0.1``, ``y0 = (0.5, 1.0, 1.5)``, Euler-Maruyama with ``dt = 1e-3``;
* gradient flow: the same drift, started on a grid of 400 points in ``[0.3, 2]^3``.

Every SDE implementation returns the states at ``saves + 1`` equally spaced times (t = 0
included), shape ``(paths, saves + 1, 3)`` or the anchor's own layout; none returns every step.
"""

from __future__ import annotations

import functools
import math

import diffrax as dfx
import jax
import jax.numpy as jnp
import numpy as np

import regflow as rf

SIGMA = 0.1
Y0 = (0.5, 1.0, 1.5)
DT = 1e-3
RTOL, ATOL = 1e-8, 1e-10
ODE_T1 = 10.0
ODE_SAVES = 100


# ----------------------------------------------------------------------------- the systems


def drift(t, w, args):
    W = jnp.prod(w)
    return -2.0 * args["c"] * (W - 1.0) * W / w


def diffusion(t, w, args):
    W = jnp.prod(w)
    return args["sigma"] * 2.0 * W / w


def sde(sigma=SIGMA):
    """The scalar-net SDE as a regflow system (``args`` carry the parameters: new values do not
    recompile)."""
    return rf.SDE(drift, diffusion, noise="scalar", names=("w1", "w2", "w3"), args={"c": 1.0, "sigma": sigma})


def gradient_flow(c=1.0):
    return rf.ODE(drift, names=("w1", "w2", "w3"), args={"c": c})


def ode_starts(n=400):
    """``n`` starts on a grid in ``[0.3, 2]^3``: 10 x 10 x (n / 100) points."""
    per = max(n // 100, 1)
    a, b = np.linspace(0.3, 2.0, 10), np.linspace(0.3, 2.0, per)
    grid = np.stack(np.meshgrid(a, a, b, indexing="ij"), axis=-1).reshape(-1, 3)
    return grid[:n]


def save_times(steps, saves, dt=DT):
    return np.linspace(0.0, steps * dt, saves + 1)


# ----------------------------------------------------------------------------- SDE anchors


@functools.lru_cache(maxsize=None)
def hand_scan(paths, steps, saves, dt=DT):
    """The hand-written anchor: one jitted ``lax.scan`` over the saves, a ``fori_loop`` over the
    steps between them, drawing ``jax.random.normal(key, (paths, 1))`` each step (key split)."""
    every = steps // saves
    sqdt = math.sqrt(dt)

    def run(key, y0, sigma):
        def step(i, carry):
            y, key = carry
            key, sub = jax.random.split(key)
            z = jax.random.normal(sub, (paths, 1))
            W = jnp.prod(y, axis=1, keepdims=True)
            y = y + (-2.0 * (W - 1.0) * W / y) * dt + sigma * 2.0 * W / y * (sqdt * z)
            return y, key

        def segment(carry, _):
            carry = jax.lax.fori_loop(0, every, step, carry)
            return carry, carry[0]

        y0 = jnp.broadcast_to(y0, (paths, 3))
        _, ys = jax.lax.scan(segment, (y0, key), None, length=saves)
        return jnp.concatenate([y0[None], ys])  # (saves + 1, paths, 3)

    return jax.jit(run)


@functools.lru_cache(maxsize=None)
def diffrax_sde(kind, steps, saves, dt=DT):
    """diffrax Euler, ``jax.vmap`` over the path keys, with its own Brownian path:
    ``"unsafe"`` (`UnsafeBrownianPath`, fixed steps only) or ``"tree"`` (`VirtualBrownianTree`,
    tolerance dt/2)."""
    t1 = steps * dt
    ts = jnp.asarray(save_times(steps, saves, dt))

    def solve(key, y0, args):
        if kind == "unsafe":
            bm = dfx.UnsafeBrownianPath(shape=(1,), key=key)
        else:
            bm = dfx.VirtualBrownianTree(0.0, t1, tol=dt / 2, shape=(1,), key=key)
        terms = dfx.MultiTerm(dfx.ODETerm(drift),
                              dfx.ControlTerm(lambda t, y, a: diffusion(t, y, a)[:, None], bm))
        adjoint = dfx.ForwardMode() if kind == "unsafe" else dfx.RecursiveCheckpointAdjoint()
        sol = dfx.diffeqsolve(terms, dfx.Euler(), 0.0, t1, dt, y0, args, saveat=dfx.SaveAt(ts=ts),
                              max_steps=steps + 1, adjoint=adjoint)
        return sol.ys

    return jax.jit(jax.vmap(solve, in_axes=(0, None, None)))


def numpy_em(paths, steps, saves, seed=0, dt=DT, sigma=SIGMA):
    """Vectorised numpy Euler-Maruyama: all paths at once, a Python loop over the steps."""
    rng = np.random.default_rng(seed)
    every = steps // saves
    y = np.tile(np.asarray(Y0), (paths, 1))
    out = [y.copy()]
    sqdt = math.sqrt(dt)
    for k in range(steps):
        W = y.prod(axis=1, keepdims=True)
        z = rng.standard_normal((paths, 1))
        y = y + (-2.0 * (W - 1.0) * W / y) * dt + sigma * 2.0 * W / y * (sqdt * z)
        if (k + 1) % every == 0:
            out.append(y.copy())
    return np.stack(out, axis=1)


def _f_np(y, t):
    W = y.prod()
    return -2.0 * (W - 1.0) * W / y


def _g_np(y, t):
    W = y.prod()
    return (SIGMA * 2.0 * W / y)[:, None]


def sdeint_paths(paths, steps, saves, dt=DT):
    """sdeint ``itoEuler`` one path at a time with numpy drift and diffusion (its own normals)."""
    import sdeint

    tspan = np.linspace(0.0, steps * dt, steps + 1)
    every = steps // saves
    return np.stack([sdeint.itoEuler(_f_np, _g_np, np.asarray(Y0), tspan,
                                     generator=np.random.default_rng(p))[::every] for p in range(paths)])


# ----------------------------------------------------------------------------- ODE anchors


@functools.lru_cache(maxsize=None)
def diffrax_ode(with_stats=False):
    """diffrax ``Dopri5`` + ``PIDController(rtol=1e-8, atol=1e-10)``, ``jax.vmap`` over starts
    (``with_stats``: also the accepted and rejected step counts of each start)."""
    ts = jnp.asarray(np.linspace(0.0, ODE_T1, ODE_SAVES + 1))

    def solve(y0, args):
        sol = dfx.diffeqsolve(dfx.ODETerm(drift), dfx.Dopri5(), 0.0, ODE_T1, None, y0, args,
                              saveat=dfx.SaveAt(ts=ts),
                              stepsize_controller=dfx.PIDController(rtol=RTOL, atol=ATOL), max_steps=2**16)
        if with_stats:
            return sol.ys, sol.stats["num_accepted_steps"], sol.stats["num_rejected_steps"]
        return sol.ys

    return jax.jit(jax.vmap(solve, in_axes=(0, None)))


def _grad_np(t, y):
    W = y.prod()
    return -2.0 * (W - 1.0) * W / y


def scipy_ode(starts, nfev=None):
    """scipy ``solve_ivp`` (RK45, rtol 1e-8, atol 1e-10), one start at a time, numpy vector field
    (``nfev``: a list that receives each start's number of vector-field calls)."""
    from scipy.integrate import solve_ivp

    ts = np.linspace(0.0, ODE_T1, ODE_SAVES + 1)
    out = []
    for y0 in starts:
        sol = solve_ivp(_grad_np, (0.0, ODE_T1), y0, method="RK45", rtol=RTOL, atol=ATOL, t_eval=ts)
        out.append(sol.y.T)
        if nfev is not None:
            nfev.append(sol.nfev)
    return np.stack(out)
