"""Sharpness at network scale: ``regflow._spectra.sharpness`` against a hand-written anchor.

    python benchmarks/spectra.py            # d ~ 1e3, 1e4, 1e5 (under 2 minutes on 2 cores)
    python benchmarks/spectra.py --quick    # d ~ 1e3, 1e4

The problem: a 2-layer tanh MLP ``64 -> hidden -> 10`` (biases included, ``d = 75 hidden + 10``)
on the 1797 standardised ``sklearn`` digits, mean squared error against one-hot labels, at a
random point.  The anchor is what one writes by hand: a jitted flat HVP (``jax.jvp`` of
``jax.grad``) behind a scipy ``LinearOperator`` and ``eigsh(k=1, which="LA")`` with regflow's
tolerance and start vector.  Times are the minimum over interleaved repeats after a warm-up
that compiles both HVP programs (regflow's through ``hvp``, which shares its cached program
with ``sharpness``), so compilation is excluded; peak memory is the process's ``ru_maxrss``
after each row.
"""

from __future__ import annotations

import argparse
import resource
import time

import jax
import jax.numpy as jnp
import numpy as np
from jax.flatten_util import ravel_pytree
from scipy.sparse.linalg import LinearOperator, eigsh
from sklearn.datasets import load_digits

import regflow  # noqa: F401  (turns on float64)
from regflow._spectra import EIGSH_TOL, LANCZOS_SEED, hvp, sharpness

#: d -> repeats (the d ~ 1e5 solve takes ~100 HVPs of ~0.2 s each on 2 busy cores).
SIZES = {1_000: 5, 10_000: 3, 100_000: 2}
QUICK_SIZES = {1_000: 3, 10_000: 2}
N_IN, N_OUT = 64, 10
TARGET_RATIO = 2.0
TARGET_PEAK_MB = 1024.0


def digits():
    X, labels = load_digits(return_X_y=True)
    std = X.std(axis=0)
    X = (X - X.mean(axis=0)) / np.where(std > 0, std, 1.0)
    return jax.device_put((jnp.asarray(X), jnp.asarray(np.eye(N_OUT)[labels])))


def loss(p, data):
    X, Y = data
    out = jnp.tanh(X @ p["W1"].T + p["b1"]) @ p["W2"].T + p["b2"]
    return 0.5 * jnp.mean(jnp.sum((out - Y) ** 2, axis=1))


def init(d, seed=0):
    hidden = max(1, round((d - N_OUT) / (N_IN + 1 + N_OUT)))
    rng = np.random.default_rng(seed)
    return {"W1": jnp.asarray(rng.standard_normal((hidden, N_IN)) / np.sqrt(N_IN)),
            "b1": jnp.zeros(hidden),
            "W2": jnp.asarray(rng.standard_normal((N_OUT, hidden)) / np.sqrt(hidden)),
            "b2": jnp.zeros(N_OUT)}


def anchor(p, data):
    """Hand-written: jitted flat HVP + LinearOperator + eigsh, same tol and start vector.
    Built once per problem (its compilation is outside the timing); returns the solve."""
    w, unravel = ravel_pytree(p)
    d = w.shape[0]
    grad = jax.grad(lambda x: loss(unravel(x), data))
    hvp = jax.jit(lambda w, v: jax.jvp(grad, (w,), (v,))[1])
    op = LinearOperator((d, d), matvec=lambda x: np.asarray(hvp(w, jnp.asarray(x.ravel()))), dtype=np.float64)
    v0 = np.random.default_rng(LANCZOS_SEED).standard_normal(d)
    solve = lambda: float(eigsh(op, k=1, which="LA", v0=v0, tol=EIGSH_TOL, return_eigenvectors=False)[0])  # noqa: E731
    return solve, lambda: hvp(w, w).block_until_ready()


def timed(fn):
    start = time.perf_counter()
    value = fn()
    return time.perf_counter() - start, value


def row(d, data, repeat):
    p = init(d)
    ours = lambda: sharpness(loss, p, data)  # noqa: E731
    theirs, theirs_warm = anchor(p, data)
    hvp(loss, p, p, data), theirs_warm()  # warm-up: compiles the HVP programs the solves use
    t_ours, t_theirs, v_ours, v_theirs = [], [], None, None
    for _ in range(repeat):
        t, v_ours = timed(ours)
        t_ours.append(t)
        t, v_theirs = timed(theirs)
        t_theirs.append(t)
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
    d_true = ravel_pytree(p)[0].shape[0]
    return d_true, min(t_ours), min(t_theirs), v_ours, v_theirs, peak_mb


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="d ~ 1e3 and 1e4 only, fewer repeats")
    opts = parser.parse_args(argv)
    sizes = QUICK_SIZES if opts.quick else SIZES
    data = digits()
    print(f"top Hessian eigenvalue, 2-layer tanh MLP on digits (n = {data[0].shape[0]}), "
          f"eigsh tol {EIGSH_TOL:g}; min over interleaved repeats ({', '.join(map(str, sizes.values()))}) "
          "after a warm-up that compiles each HVP; "
          f"jax {jax.__version__}, {jax.devices()[0].platform}")
    print()
    print("| d | regflow s | anchor s | ratio | lambda_max | rel. diff | peak MB |")
    print("|---|---|---|---|---|---|---|")
    worst_ratio, peak = 0.0, 0.0
    for d, repeat in sizes.items():
        d_true, t_ours, t_theirs, v_ours, v_theirs, peak_mb = row(d, data, repeat)
        ratio = t_ours / t_theirs
        worst_ratio, peak = max(worst_ratio, ratio), max(peak, peak_mb)
        print(f"| {d_true} | {t_ours:.3f} | {t_theirs:.3f} | {ratio:.2f} | {v_ours:.8g} | "
              f"{abs(v_ours - v_theirs) / abs(v_theirs):.1e} | {peak_mb:.0f} |", flush=True)
    print()
    print(f"targets: ratio <= {TARGET_RATIO} ({'met' if worst_ratio <= TARGET_RATIO else 'MISSED'}, "
          f"worst {worst_ratio:.2f}); peak < {TARGET_PEAK_MB:.0f} MB "
          f"({'met' if peak < TARGET_PEAK_MB else 'MISSED'}, {peak:.0f} MB)")


if __name__ == "__main__":
    main()
