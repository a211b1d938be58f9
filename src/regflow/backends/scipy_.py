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


#: A solve stops once the field has been evaluated this many times since the last accepted step
#: (LSODA can otherwise retry one step forever); it has diverged if a value was not finite,
#: else failed.  Other methods shrink the step and fail on their own, told apart the same way.
EVALS_PER_STEP_LIMIT = 10_000
#: ... and once this many accepted steps in a row advanced time by less than `STALL_RTOL` of the
#: time span (LSODA can also take accepted steps that no longer move).
STALL_LIMIT, STALL_RTOL = 1000, 1e-13
#: A stopped solve is redone up to its last accepted time less these fractions of the time it
#: had covered, the first that gets there (ending right at a stall can stall again).
REDO_BACKOFF = (0.0, 1e-9, 1e-6, 1e-3)


class _Stuck(Exception):
    """The solve cannot go on from the last accepted step (`EVALS_PER_STEP_LIMIT`, or a
    non-finite Jacobian); it is redone up to there."""


class _Field:
    """The jitted field as scipy calls it: whether a value was not finite, and the evaluations
    since the last accepted step (the divergence event, called once per accepted step, records it)."""

    def __init__(self, f, jac, args, t0, span):
        self.f, self.jac, self.args, self.span = f, jac, args, span
        self.nonfinite, self.since, self.accepted, self.stalls, self.stop_at = False, 0, t0, 0, None

    def __call__(self, t, y):
        out = np.asarray(self.f(t, jnp.asarray(y), self.args))
        self.since += 1
        if not np.isfinite(out).all():
            self.nonfinite = True
        if self.since > EVALS_PER_STEP_LIMIT:
            raise _Stuck()
        return out

    def jacobian(self, t, y):
        out = np.asarray(self.jac(t, jnp.asarray(y), self.args))
        if not np.isfinite(out).all():  # implicit methods would fail inside LU with a numpy error
            self.nonfinite = True
            raise _Stuck()
        return out

    def blow_up(self, t, y):
        """The terminal event: the state reaching `DIVERGENCE_BOUND` in magnitude.  A state that
        is not finite (LSODA steps on through NaN) or steps that stall stop the solve."""
        if not np.isfinite(y).all():
            self.nonfinite, self.stop_at = True, t
            raise _Stuck()
        if t - self.accepted <= STALL_RTOL * self.span:
            self.stalls += 1
            if self.stalls > STALL_LIMIT:
                raise _Stuck()
        else:
            self.stalls = 0
        self.accepted, self.since = t, 0
        return DIVERGENCE_BOUND - np.max(np.abs(y))


def _solve_one(problem, f, jac, y0, t1, ts):
    """One path up to ``t1`` (saving at ``ts``): ``(sol, stop time, whether the field or state
    was non-finite)``; the stop time is ``inf`` if it reached ``t1``.

    A solve that is stuck (`_Stuck`, or an implicit step's linear algebra meeting NaN) ends at
    its last accepted step: it is redone up to there (or a little earlier, `REDO_BACKOFF`);
    ``sol`` is None if it stops at the start."""
    method = METHODS[problem.method]

    def run(field, t_end, t_eval):
        options = {"jac": field.jacobian} if method in IMPLICIT else {}
        if problem.dt is not None:
            options["first_step"] = min(problem.dt, t_end - problem.t0)
        with np.errstate(all="ignore"):
            return solve_ivp(field, (problem.t0, t_end), y0, method=method, t_eval=t_eval, rtol=problem.rtol,
                             atol=problem.atol, events=field.blow_up, **options)

    field = _Field(f, jac, problem.args, problem.t0, problem.t1 - problem.t0)
    try:
        sol = run(field, t1, ts)
        if sol.status == 1:
            return sol, float(sol.t_events[0][0]), field.nonfinite
        return sol, (np.inf if sol.status == 0 else field.accepted), field.nonfinite
    except _Stuck:
        pass
    except ValueError as err:
        if "infs or NaNs" not in str(err):
            raise
    stop = field.stop_at if field.stop_at is not None else field.accepted
    for back in REDO_BACKOFF:
        end = field.accepted - back * (field.accepted - problem.t0)
        if end <= problem.t0:
            break
        try:
            return run(_Field(f, jac, problem.args, problem.t0, end - problem.t0), end,
                       None if ts is None else ts[ts <= end]), stop, field.nonfinite
        except (_Stuck, ValueError):
            continue
    return None, stop if field.nonfinite else problem.t0, field.nonfinite


def solve(problem):
    """Returns saved times, states ``(paths, n, dim)``, each path's divergence time, whether it
    was a solver failure, and the function/Jacobian evaluation counts.  Paths whose field is not
    finite at the start are not solved: they diverge there."""
    f, jac = _compiled(problem.system.vector_field)
    args, ts = problem.args, problem.ts
    t_out, ys, div_t, failed = None, [], [], []
    stats = {"num_steps": 0, "nfev": 0, "njev": 0}
    for y0 in problem.y0:
        with np.errstate(all="ignore"):
            start_finite = np.isfinite(np.asarray(f(problem.t0, jnp.asarray(y0), args))).all()
        sol, stop, nonfinite = _solve_one(problem, f, jac, y0, problem.t1, ts) if start_finite else (
            None, problem.t0, True)
        if sol is None:  # stopped before its first accepted step
            t_path = np.array([problem.t0]) if ts is None else ts
            y_path = np.full((len(t_path), len(y0)), np.nan)
            y_path[t_path == problem.t0] = y0
            t_out = t_path if ts is None else ts
            div_t.append(stop)
            failed.append(not nonfinite)
            ys.append(y_path)
            continue
        stats["nfev"] += int(sol.nfev)
        stats["njev"] += int(sol.njev)
        stats["num_steps"] += len(sol.t) - 1 if ts is None else 0
        t_path, y_path = sol.t, sol.y.T
        if ts is None:
            t_out = t_path
        else:  # pad the saves a stopped run did not reach
            t_out = ts
            y_path = np.vstack([y_path, np.full((len(ts) - len(y_path), y_path.shape[1]), np.nan)])
        div_t.append(stop)
        failed.append(bool(np.isfinite(stop) and not nonfinite and sol.status != 1))
        ys.append(y_path)
    if ts is not None:
        del stats["num_steps"]  # scipy does not report the steps it took between saves
    return t_out, np.stack(ys), np.array(div_t), np.array(failed), stats


_Field.blow_up.terminal = True
