"""scipy backend: `solve_ivp` on a jitted vector field (and its Jacobian for implicit methods)."""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
from scipy.integrate import solve_ivp

from ._common import DIVERGENCE_BOUND

METHODS = {"dopri5": "RK45", "rk45": "RK45", "rk23": "RK23", "bosh3": "RK23", "dop853": "DOP853",
           "dopri8": "DOP853", "radau": "Radau", "bdf": "BDF", "lsoda": "LSODA"}
IMPLICIT = ("Radau", "BDF", "LSODA")


@functools.lru_cache(maxsize=256)
def _compiled(vector_field):
    f = jax.jit(lambda t, y, args: vector_field(t, y, args))
    jac = jax.jit(jax.jacfwd(lambda t, y, args: vector_field(t, y, args), argnums=1))
    return f, jac


def _blow_up(t, y, *_):
    return DIVERGENCE_BOUND - np.max(np.abs(y))


_blow_up.terminal = True


def solve(problem):
    """Returns saved times, states ``(paths, n, dim)``, each path's divergence time and the
    function/Jacobian evaluation counts."""
    f, jac = _compiled(problem.system.vector_field)
    args = problem.args
    method = METHODS[problem.method]
    options = {"jac": lambda t, y: np.asarray(jac(t, jnp.asarray(y), args))} if method in IMPLICIT else {}
    if problem.dt is not None:
        options["first_step"] = problem.dt
    t_out, ys, div_t = None, [], []
    stats = {"num_steps": 0, "nfev": 0, "njev": 0}
    for y0 in problem.y0:
        with np.errstate(all="ignore"):
            sol = solve_ivp(lambda t, y: np.asarray(f(t, jnp.asarray(y), args)), (problem.t0, problem.t1), y0,
                            method=method, t_eval=problem.ts, rtol=problem.rtol, atol=problem.atol,
                            events=_blow_up, **options)
        stats["nfev"] += int(sol.nfev)
        stats["njev"] += int(sol.njev)
        stats["num_steps"] += len(sol.t) - 1 if problem.ts is None else 0
        t_path, y_path = sol.t, sol.y.T
        if problem.ts is None:
            t_out = t_path
        else:  # pad the saves a stopped run did not reach
            t_out = problem.ts
            y_path = np.vstack([y_path, np.full((len(problem.ts) - len(y_path), y_path.shape[1]), np.nan)])
        finite = np.all(np.isfinite(sol.y)) and sol.status == 0
        div_t.append(np.inf if finite else float(sol.t_events[0][0] if sol.status == 1 else sol.t[-1]))
        ys.append(y_path)
    if problem.ts is not None:
        del stats["num_steps"]  # scipy does not report the steps it took between saves
    return t_out, np.stack(ys), np.array(div_t), None, stats
