"""Networks at scale: regflow against hand-written JAX/diffrax on a 2-layer tanh MLP.

    python benchmarks/networks.py            # d = 10^2 .. 10^5, about 2 minutes on 2 cores
    python benchmarks/networks.py --quick    # d = 10^2, 10^3

Rows (minimum over interleaved repeats, after one warm-up call each; ratios regflow / anchor):

* gradient flow of the MLP (pytree params, dopri5, rtol 1e-6, saved at 11 times):
  ``rf.integrate(rf.gradient_flow(loss), params, T)`` against ``jax.jit(diffrax.diffeqsolve)``
  on the same field, pytree and tolerances;
* compilations triggered by a second call with a new y0, args, seed, lr or progress setting
  (``jax.log_compiles``), which must be 0;
* ``rf.equilibria`` from one guess near a minimum at d = 1000 (a 2-layer linear net near an
  exact fit, whose GL(h) symmetry gives h^2 zero modes), dense and matrix-free, with the
  zero-mode count.
"""

from __future__ import annotations

import argparse
import logging
import time

import diffrax as dfx
import jax
import jax.numpy as jnp
import numpy as np

import regflow as rf

N_IN, N_OUT, SAMPLES = 8, 2, 256
T1, RTOL, ATOL = 1.0, 1e-6, 1e-8
TS = np.linspace(0.0, T1, 11)
REPEATS = 5


def data(seed=0):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((SAMPLES, N_IN))
    y = np.stack([np.sin(x[:, 0]), np.cos(x[:, 1] * x[:, 2])], axis=1)
    return {"x": jnp.asarray(x), "y": jnp.asarray(y)}


def params(hidden, seed=0):
    rng = np.random.default_rng(seed)
    return {"W1": jnp.asarray(rng.standard_normal((hidden, N_IN)) / np.sqrt(N_IN)),
            "b1": jnp.zeros(hidden),
            "W2": jnp.asarray(rng.standard_normal((N_OUT, hidden)) / np.sqrt(hidden)),
            "b2": jnp.zeros(N_OUT)}


def mlp_loss(w, args):
    h = jnp.tanh(args["x"] @ w["W1"].T + w["b1"])
    return 0.5 * jnp.mean(jnp.sum((h @ w["W2"].T + w["b2"] - args["y"]) ** 2, axis=1))


def hidden_for(d):
    return max(1, round((d - N_OUT) / (N_IN + 1 + N_OUT)))


def size(w):
    return sum(x.size for x in jax.tree_util.tree_leaves(w))


@jax.jit
def anchor(w0, args):
    term = dfx.ODETerm(lambda t, w, a: jax.tree_util.tree_map(jnp.negative, jax.grad(mlp_loss)(w, a)))
    sol = dfx.diffeqsolve(term, dfx.Dopri5(), 0.0, T1, None, w0, args, saveat=dfx.SaveAt(ts=jnp.asarray(TS)),
                          stepsize_controller=dfx.PIDController(rtol=RTOL, atol=ATOL), max_steps=2**16)
    return sol.ys


FLOW = rf.gradient_flow(mlp_loss)


def regflow_run(w0, args):
    return rf.integrate(FLOW.replace(args=args), w0, T1, ts=TS, rtol=RTOL, atol=ATOL)


def best(fn, repeats=REPEATS):
    out = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t)
    return min(out)


def flow_rows(dims):
    rows = []
    args = data()
    for d in dims:
        w0 = params(hidden_for(d))
        a = lambda: jax.block_until_ready(anchor(w0, args))  # noqa: E731
        r = lambda: regflow_run(w0, args)  # noqa: E731
        a(), r()  # warm-up (compile)
        got, want = r().flat[-1], jax.flatten_util.ravel_pytree(jax.tree_util.tree_map(lambda x: x[-1], a()))[0]
        assert np.max(np.abs(got - np.asarray(want))) < 1e-8, "regflow and the anchor disagree"
        repeats = REPEATS if size(w0) < 50_000 else 3
        times_r, times_a = [], []
        for _ in range(repeats):  # interleaved
            times_a.append(best(a, 1))
            times_r.append(best(r, 1))
        rows.append((size(w0), min(times_r), min(times_a)))
    return rows


class _Compiles(logging.Handler):
    def __init__(self):
        super().__init__()
        self.count = 0

    def emit(self, record):
        if "Compiling" in record.getMessage() or "compiling" in record.getMessage():
            self.count += 1


def compiles(fn):
    handler = _Compiles()
    logger = logging.getLogger("jax")
    logger.addHandler(handler)
    old = logger.level
    logger.setLevel(logging.DEBUG)
    try:
        with jax.log_compiles(True):
            fn()
    finally:
        logger.removeHandler(handler)
        logger.setLevel(old)
    return handler.count


def compile_rows():
    args, w0 = data(), params(hidden_for(1000))
    loss = mlp_loss
    sde = rf.SDE(lambda t, w, a: jax.tree_util.tree_map(jnp.negative, jax.grad(loss)(w, a)),
                 lambda t, w, a: jax.tree_util.tree_map(lambda x: 0.01 + 0 * x, w), args=args)
    rf.integrate(FLOW.replace(args=args), w0, T1, ts=TS)
    rf.integrate(sde, w0, 0.1, dt=0.01, paths=4, seed=0, progress=False)
    rf.iterate(rf.gradient_descent(loss, lr=0.01, args=args), w0, 20)
    w1 = params(hidden_for(1000), seed=1)
    other = data(seed=1)
    return [
        ("new y0 (ODE)", compiles(lambda: rf.integrate(FLOW.replace(args=args), w1, T1, ts=TS))),
        ("new args (ODE)", compiles(lambda: rf.integrate(FLOW.replace(args=other), w0, T1, ts=TS))),
        ("new seed (SDE)", compiles(lambda: rf.integrate(sde, w0, 0.1, dt=0.01, paths=4, seed=1, progress=False))),
        ("progress on (SDE)", compiles(lambda: rf.integrate(sde, w0, 0.1, dt=0.01, paths=4, seed=1, progress=True))),
        ("new lr (GD map)", compiles(lambda: rf.iterate(rf.gradient_descent(loss, lr=0.02, args=args), w0, 20))),
        ("new lr (gradient flow)", compiles(lambda: rf.integrate(rf.gradient_flow(loss, lr=0.5, args=args), w0, T1,
                                                                 ts=TS))),
    ]


def linear_loss(w, args):
    return 0.5 * jnp.mean(jnp.sum((args["x"] @ w["W1"].T @ w["W2"].T - args["y"]) ** 2, axis=1))


def equilibrium_row(width=25, hidden=20, samples=200, dense_below=None):
    """d = 2 * hidden * width = 1000: a 2-layer linear net W2 W1 started near an exact fit of
    a rank-``hidden`` target.  Its minima through the fit are the orbit (W2 A^-1, A W1) of
    GL(hidden): ``hidden**2`` zero modes, every other direction curved."""
    rng = np.random.default_rng(3)
    best = {"W1": jnp.asarray(rng.standard_normal((hidden, width)) / np.sqrt(width)),
            "W2": jnp.asarray(rng.standard_normal((width, hidden)) / np.sqrt(hidden))}
    x = jnp.asarray(rng.standard_normal((samples, width)))
    args = {"x": x, "y": x @ best["W1"].T @ best["W2"].T}
    guess = jax.tree_util.tree_map(lambda w: w + 1e-2 * rng.standard_normal(w.shape), best)
    flow = rf.gradient_flow(linear_loss, args=args)
    options = {} if dense_below is None else {"dense_below": dense_below}
    t = time.perf_counter()
    found = rf.equilibria(flow, guess, **options)
    elapsed = time.perf_counter() - t
    return size(best), elapsed, (found[0] if found else None), hidden**2


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true")
    opts = parser.parse_args()
    dims = [100, 1000] if opts.quick else [100, 1000, 10_000, 100_000]
    print("| gradient flow, 2-layer tanh MLP | regflow (s) | hand-written diffeqsolve (s) | ratio |")
    print("|---|---|---|---|")
    for d, r, a in flow_rows(dims):
        print(f"| d = {d} | {r:.4f} | {a:.4f} | {r / a:.2f}x |")
    print()
    print("| second call with | compilations |")
    print("|---|---|")
    for what, n in compile_rows():
        print(f"| {what} | {n} |")
    if not opts.quick:
        print()
        print("| equilibria from one guess near a minimum of a 2-layer linear net | s | residual | kind | zero modes "
              "| predicted (GL(h): h^2) |")
        print("|---|---|---|---|---|---|")
        for label, dense_below in (("dense (default below 2,000)", None), ("matrix-free (forced)", 0)):
            d, elapsed, eq, predicted = equilibrium_row(dense_below=dense_below)
            if eq is None:
                print(f"| d = {d}, {label} | {elapsed:.1f} | - | nothing found | - | {predicted} |")
            else:
                print(f"| d = {d}, {label} | {elapsed:.1f} | {eq.residual:.1e} | {eq.kind} | {eq.zero_modes} "
                      f"| {predicted} |")


if __name__ == "__main__":
    main()
