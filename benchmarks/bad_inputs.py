"""A bad-input sweep of regflow's public API: each case runs in its own process with a timeout.

Every case is a few lines that either should fail (and the message should name one of the
case's words: the argument, the file, the flag) or should work as the contract says (e.g. a
blown-up run returns a Trajectory whose status names the time).  Outcomes:

* clear:   ValueError/TypeError/FileExistsError/... raised by regflow, naming the argument or
           file (or, for a case that should work, it worked; for the command line, the usage
           exit status with a message naming the flag and no traceback)
* unclear: a raw error from JAX, equinox, numpy or Python, or a message naming none of the words
* silent:  accepted (or a case that should work gave the wrong answer)
* hang:    the timeout passed
* crash:   the process died without reporting

Usage: ``python benchmarks/bad_inputs.py [--jobs 2] [--timeout 120] [--only SUBSTRING]``.
Prints the tally and every case that is not clear.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import dataclasses
import json
import os
import subprocess
import sys
import textwrap
import time

#: Exception types that count as a deliberate refusal.
CLEAR_TYPES = ("ValueError", "TypeError", "FileExistsError", "FileNotFoundError", "IsADirectoryError",
               "NotADirectoryError", "PermissionError", "KeyError", "IndexError", "LookupError")
#: Marker of the child's one-line report.
MARK = "@@RESULT@@"
#: Exit status of the command line's usage errors (`regflow.cli.EXIT_USAGE`).
CLI_USAGE = 2

PREAMBLE = '''
import contextlib, io, json, os, sys, tempfile, traceback, warnings
warnings.simplefilter("ignore")
import numpy as np, jax, jax.numpy as jnp
import regflow as rf
ROT = rf.ODE(lambda t, y, a: jnp.array([-y[1], y[0]]), names=("x", "y"))
OU = rf.SDE(lambda t, y, a: -y, lambda t, y, a: 0.5 + 0 * y)
HALVE = rf.Map(lambda k, y, a: 0.5 * y, dt=0.1)
LOSS = lambda w, a: (w[0] * w[1] - 1.0) ** 2
NANF = rf.ODE(lambda t, y, a: y * jnp.nan)
AHEAD = rf.ODE(lambda t, y, a: jnp.where(t > 0.5, jnp.nan, -y))
BLOW = rf.SDE(lambda t, y, a: y ** 3, lambda t, y, a: 0 * y)
TMP = tempfile.mkdtemp()
def cli(*argv):
    from regflow import cli as _cli
    err, out = io.StringIO(), io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(out):
        code = _cli.main(list(argv))
    text = err.getvalue()
    return {"cli": code, "err": text if len(text) < 3000 else text[:1500] + " ... " + text[-1500:],
            "out": out.getvalue()[-500:]}
def saved(path="t.npz"):
    p = os.path.join(TMP, path)
    rf.integrate(ROT, [1.0, 0.0], 1.0, ts=[0.5, 1.0]).save(p)
    return p
def write(name, data):
    p = os.path.join(TMP, name)
    with open(p, "wb") as fh:
        fh.write(data)
    return p
result = None
'''

CHILD = '''
def _report(out):
    print("{mark}" + json.dumps(out), flush=True)
try:
    exec(compile({code!r}, "<case>", "exec"))
    works = {works!r}
    out = {{"kind": "returned", "repr": repr(result)[:300]}}
    if isinstance(result, dict) and "cli" in result:
        out.update(kind="cli", code=result["cli"], err=result["err"])
    if works:
        try:
            out["works"] = bool(eval(works))
        except Exception as err:
            out["works"] = False
            out["repr"] += " | check failed: " + repr(err)[:200]
    _report(out)
except BaseException as err:
    frames = traceback.extract_tb(err.__traceback__)
    _report({{"kind": "raised", "type": type(err).__name__, "message": str(err)[:800],
             "mro": [c.__name__ for c in type(err).__mro__],
             "where": frames[-1].filename if frames else ""}})
'''


@dataclasses.dataclass(frozen=True)
class Case:
    name: str
    code: str
    words: tuple = ()  # the message must name one of these (an error is expected)
    works: str | None = None  # an expression of `result` that must be true (the case should work)


def E(name, code, *words):
    return Case(name, code, tuple(words))


def W(name, code, works):
    return Case(name, code, (), works)


def cases():
    out = []
    add = out.append
    # --------------------------------------------------------------- integrate: y0
    for label, y0 in [("strings", "['1', '2']"), ("complex", "np.array([1+1j, 2])"), ("nan", "[np.nan, 0.0]"),
                      ("inf", "[np.inf, 0.0]"), ("None", "None"), ("object", "object()"), ("empty list", "[]"),
                      ("empty dict", "{}"), ("dim 3", "[1.0, 2.0, 3.0]"), ("dim 1", "[1.0]"),
                      ("bools", "[True, False]"), ("huge", "[1e13, 0.0]"), ("text", "'ab'"),
                      ("ragged", "[[1.0], [1.0, 2.0]]")]:
        add(E(f"integrate y0 {label}", f"result = rf.integrate(ROT, {y0}, 1.0)", "y0"))
    # --------------------------------------------------------------- integrate: times
    for label, t1 in [("str", "'1.0'"), ("bool", "True"), ("None", "None"), ("nan", "np.nan"), ("inf", "np.inf"),
                      ("negative", "-1.0"), ("zero", "0.0"), ("complex", "1j"), ("list", "[1.0]")]:
        add(E(f"integrate t1 {label}", f"result = rf.integrate(ROT, [1.0, 0.0], {t1})", "t1"))
    for label, t0 in [("str", "'0'"), ("nan", "np.nan"), ("after t1", "2.0")]:
        add(E(f"integrate t0 {label}", f"result = rf.integrate(ROT, [1.0, 0.0], 1.0, t0={t0})", "t0", "t1"))
    for label, ts in [("text", "'abc'"), ("2-D", "[[0.5, 1.0]]"), ("decreasing", "[0.8, 0.2]"),
                      ("outside", "[2.0]"), ("nan", "[0.5, np.nan]"), ("complex", "[0.5j]"), ("empty", "[]"),
                      ("objects", "[object()]"), ("repeated", "[0.5, 0.5]"), ("bools", "[True]")]:
        add(E(f"integrate ts {label}", f"result = rf.integrate(ROT, [1.0, 0.0], 1.0, ts={ts})", "ts"))
    # --------------------------------------------------------------- integrate: tolerances, method, backend, paths
    for label, kw in [("rtol=atol=10", "rtol=10, atol=10"), ("rtol 0", "rtol=0"), ("rtol -1", "rtol=-1"),
                      ("rtol nan", "rtol=np.nan"), ("rtol str", "rtol='1e-8'"), ("rtol bool", "rtol=True"),
                      ("rtol tiny", "rtol=1e-20"), ("atol 0", "atol=0.0"), ("atol inf", "atol=np.inf")]:
        add(E(f"integrate {label}", f"result = rf.integrate(ROT, [1.0, 0.0], 1.0, {kw})", "rtol", "atol"))
    add(E("integrate method unknown", "result = rf.integrate(ROT, [1.0, 0.0], 1.0, method='rk99')", "method"))
    add(E("integrate method int", "result = rf.integrate(ROT, [1.0, 0.0], 1.0, method=3)", "method"))
    add(E("integrate euler without dt", "result = rf.integrate(ROT, [1.0, 0.0], 1.0, method='euler')", "dt"))
    add(E("integrate dt negative", "result = rf.integrate(ROT, [1.0, 0.0], 1.0, dt=-1.0)", "dt"))
    add(E("integrate backend unknown", "result = rf.integrate(ROT, [1.0, 0.0], 1.0, backend='nope')", "backend"))
    add(E("integrate backend sdeint for ODE", "result = rf.integrate(ROT, [1.0, 0.0], 1.0, backend='sdeint')",
          "backend"))
    for label, p in [("0", "0"), ("-1", "-1"), ("2.5", "2.5"), ("True", "True"), ("str", "'3'")]:
        add(E(f"integrate paths {label}", f"result = rf.integrate(ROT, [1.0, 0.0], 1.0, paths={p})", "paths"))
    add(E("integrate batched str", "result = rf.integrate(ROT, [1.0, 0.0], 1.0, batched='yes')", "batched"))
    add(E("integrate batched paths mismatch", "result = rf.integrate(ROT, [[1.0, 0.0]], 1.0, batched=True, paths=3)",
          "paths"))
    add(E("integrate seed str", "result = rf.integrate(OU, [1.0], 1.0, dt=0.1, seed='a')", "seed"))
    add(E("integrate seed float", "result = rf.integrate(OU, [1.0], 1.0, dt=0.1, seed=1.5)", "seed"))
    add(E("integrate seed huge", "result = rf.integrate(OU, [1.0], 1.0, dt=0.1, seed=2**70)", "seed"))
    add(E("integrate ODE seed str", "result = rf.integrate(ROT, [1.0, 0.0], 1.0, seed='a')", "seed"))
    add(E("integrate progress str", "result = rf.integrate(OU, [1.0], 1.0, dt=0.1, progress='yes')", "progress"))
    add(E("integrate save not callable", "result = rf.integrate(ROT, [1.0, 0.0], 1.0, ts=[1.0], save=3)", "save"))
    add(E("integrate save signature", "result = rf.integrate(ROT, [1.0, 0.0], 1.0, ts=[1.0], save=lambda y: y)",
          "save"))
    add(E("integrate save complex", "result = rf.integrate(ROT, [1.0, 0.0], 1.0, ts=[1.0], save=lambda y, a: 1j*y)",
          "save"))
    add(E("integrate save without ts", "result = rf.integrate(ROT, [1.0, 0.0], 1.0, save=lambda y, a: y[0])",
          "ts", "save"))
    add(E("integrate a Map", "result = rf.integrate(HALVE, [1.0], 1.0)", "iterate", "Map"))
    add(E("integrate not a system", "result = rf.integrate(lambda t, y, a: y, [1.0], 1.0)", "system"))
    # --------------------------------------------------------------- declarations
    add(E("ODE one-parameter field", "result = rf.ODE(lambda y: -y)", "vector_field"))
    add(E("ODE two-parameter field", "result = rf.ODE(lambda t, y: -y)", "vector_field"))
    add(E("ODE not callable", "result = rf.ODE(3.0)", "vector_field"))
    add(E("ODE empty name", "result = rf.ODE(lambda t, y, a: y, names=('', 'b'))", "names"))
    add(E("ODE repeated names", "result = rf.ODE(lambda t, y, a: y, names=('a', 'a'))", "names"))
    add(E("ODE names a string", "result = rf.ODE(lambda t, y, a: y, names='ab')", "names"))
    add(E("ODE names numbers", "result = rf.ODE(lambda t, y, a: y, names=(1, 2))", "names"))
    add(E("ODE names empty", "result = rf.ODE(lambda t, y, a: y, names=())", "names"))
    add(E("ODE args string", "result = rf.ODE(lambda t, y, a: -y, args='abc')", "args"))
    add(E("ODE args dict with string", "result = rf.ODE(lambda t, y, a: -y, args={'mode': 'fast'})", "args"))
    add(E("integrate args nan", "result = rf.integrate(rf.ODE(lambda t, y, a: -a['k'] * y, args={'k': np.nan}), "
                                "[1.0], 1.0)", "args"))
    add(E("integrate names vs dimension", "result = rf.integrate(ROT.replace(names=('a', 'b', 'c')), [1.0, 0.0], 1.0)",
          "names"))
    for label, field, words in [
            ("list", "lambda t, y, a: [-y[0]]", ("vector_field", "array")),
            ("None", "lambda t, y, a: None", ("vector_field", "return")),
            ("complex", "lambda t, y, a: y * 1j", ("vector_field", "complex")),
            ("numpy", "lambda t, y, a: np.sin(y)", ("vector_field", "jax.numpy")),
            ("bad index", "lambda t, y, a: y[3]", ("vector_field", "y0")),
            ("wrong shape", "lambda t, y, a: jnp.ones(2)", ("vector_field", "y0")),
            ("bool", "lambda t, y, a: y > 0", ("vector_field",)),
            ("python if", "lambda t, y, a: y if y[0] > 0 else -y", ("vector_field", "jax.numpy")),
            ("reads missing args", "lambda t, y, a: a['k'] * y", ("vector_field", "args"))]:
        add(E(f"field returns {label}", f"result = rf.integrate(rf.ODE({field}), [1.0], 1.0)", *words))
    add(E("SDE noise unknown", "result = rf.SDE(lambda t, y, a: y, lambda t, y, a: y, noise='pink')", "noise"))
    add(E("SDE noise list", "result = rf.SDE(lambda t, y, a: y, lambda t, y, a: y, noise=['diagonal'])", "noise"))
    add(E("SDE calculus unknown", "result = rf.SDE(lambda t, y, a: y, lambda t, y, a: y, calculus='x')", "calculus"))
    add(E("SDE diffusion signature", "result = rf.SDE(lambda t, y, a: -y, lambda y: y)", "diffusion"))
    add(E("SDE drift signature", "result = rf.SDE(lambda y, a: -y, lambda t, y, a: y)", "drift"))
    add(E("SDE diffusion shape", "result = rf.integrate(rf.SDE(lambda t, y, a: -y, lambda t, y, a: jnp.ones(3)), "
                                 "[1.0, 2.0], 1.0, dt=0.1)", "diffusion"))
    add(E("SDE general (dim, 0)", "result = rf.integrate(rf.SDE(lambda t, y, a: -y, lambda t, y, a: jnp.zeros((2, 0)),"
                                  " noise='general'), [1.0, 2.0], 1.0, dt=0.1)", "diffusion", "m"))
    add(E("SDE general vector", "result = rf.integrate(rf.SDE(lambda t, y, a: -y, lambda t, y, a: y, "
                                "noise='general'), [1.0, 2.0], 1.0, dt=0.1)", "diffusion"))
    add(E("SDE diffusion None", "result = rf.integrate(rf.SDE(lambda t, y, a: -y, lambda t, y, a: None), [1.0], 1.0,"
                                " dt=0.1)", "diffusion"))
    add(E("SDE without dt", "result = rf.integrate(OU, [1.0], 1.0)", "dt"))
    add(E("SDE dt 0", "result = rf.integrate(OU, [1.0], 1.0, dt=0.0)", "dt"))
    add(E("SDE dt str", "result = rf.integrate(OU, [1.0], 1.0, dt='0.1')", "dt"))
    add(E("SDE dt not whole", "result = rf.integrate(OU, [1.0], 1.0, dt=0.3)", "dt"))
    add(E("SDE ts off grid", "result = rf.integrate(OU, [1.0], 1.0, dt=0.1, ts=[0.55])", "ts"))
    add(E("SDE heun for ito", "result = rf.integrate(OU, [1.0], 1.0, dt=0.1, method='heun')", "method"))
    add(E("SDE sri2 on jax", "result = rf.integrate(OU, [1.0], 1.0, dt=0.1, method='sri2')", "method"))
    add(E("SDE milstein general", "result = rf.integrate(rf.SDE(lambda t, y, a: -y, lambda t, y, a: jnp.ones((1, 2)),"
                                  " noise='general'), [1.0], 1.0, dt=0.1, method='milstein')", "milstein", "method"))
    add(E("SDE on scipy", "result = rf.integrate(OU, [1.0], 1.0, dt=0.1, backend='scipy')", "backend"))
    # --------------------------------------------------------------- memory
    add(E("paths=10**8", "result = rf.integrate(OU, [1.0, 1.0, 1.0], 1.0, dt=1e-3, paths=10**8)", "paths"))
    add(E("paths=10**12", "result = rf.integrate(OU, [1.0], 1.0, dt=1e-3, paths=10**12)", "paths"))
    add(E("dt=1e-13", "result = rf.integrate(OU, [1.0], 1.0, dt=1e-13)", "ts", "dt"))
    add(E("dt=1e-11 diffrax", "result = rf.integrate(OU, [1.0], 1.0, dt=1e-11, ts=[1.0], backend='diffrax')", "dt"))
    add(E("dt=1e-11 sdeint", "result = rf.integrate(OU, [1.0], 1.0, dt=1e-11, ts=[1.0], backend='sdeint')", "dt"))
    add(E("iterate steps=10**13", "result = rf.iterate(HALVE, [1.0], 10**13)", "every", "steps"))
    add(E("ODE paths=10**9", "result = rf.integrate(ROT, [1.0, 0.0], 1.0, paths=10**9)", "paths"))
    add(E("ODE euler dt=1e-12", "result = rf.integrate(ROT, [1.0, 0.0], 1.0, method='euler', dt=1e-12)", "ts", "dt"))
    # --------------------------------------------------------------- maps and iterate
    for label, steps in [("0", "0"), ("-1", "-1"), ("2.5", "2.5"), ("True", "True"), ("str", "'3'"), ("None", "None")]:
        add(E(f"iterate steps {label}", f"result = rf.iterate(HALVE, [1.0], {steps})", "steps"))
    add(E("iterate every 0", "result = rf.iterate(HALVE, [1.0], 3, every=0)", "every"))
    add(E("iterate every str", "result = rf.iterate(HALVE, [1.0], 3, every='x')", "every"))
    add(E("iterate y0 strings", "result = rf.iterate(HALVE, ['a'], 3)", "y0"))
    add(E("iterate paths 0", "result = rf.iterate(HALVE, [1.0], 3, paths=0)", "paths"))
    add(E("iterate an ODE", "result = rf.iterate(ROT, [1.0, 0.0], 3)", "Map", "integrate"))
    add(E("iterate save signature", "result = rf.iterate(HALVE, [1.0], 3, save=lambda y: y)", "save"))
    for label, dt in [("0", "0.0"), ("-1", "-1.0"), ("True", "True"), ("str", "'0.1'"), ("nan", "np.nan"),
                      ("inf", "np.inf")]:
        add(E(f"Map dt {label}", f"result = rf.Map(lambda k, y, a: y, dt={dt})", "dt"))
    add(E("Map stochastic str", "result = rf.Map(lambda k, y, a: y, dt=0.1, stochastic='no')", "stochastic"))
    add(E("stochastic Map without key", "result = rf.Map(lambda k, y, a: y, dt=0.1, stochastic=True)", "step", "key"))
    add(E("Map step with key, not stochastic", "result = rf.Map(lambda k, y, a, key: y, dt=0.1)", "stochastic"))
    add(E("Map step float32", "result = rf.iterate(rf.Map(lambda k, y, a: y.astype(jnp.float32), dt=1.0), [1.0], 3)",
          "step", "float64"))
    add(E("Map step list", "result = rf.iterate(rf.Map(lambda k, y, a: [y[0]], dt=1.0), [1.0], 3)", "step"))
    add(E("Map step wrong shape", "result = rf.iterate(rf.Map(lambda k, y, a: jnp.ones(3), dt=1.0), [1.0], 3)",
          "step", "y0"))
    # --------------------------------------------------------------- divergence: these should work
    for method in ("dopri5", "rk23", "dop853", "radau", "bdf", "lsoda"):
        add(W(f"NaN field at start, scipy {method}",
              f"result = rf.integrate(NANF, [1.0], 1.0, backend='scipy', method='{method}')",
              "result.status == 'diverged at t=0' and result.t.tolist() == [0.0]"))
    add(W("NaN field at start, diffrax", "result = rf.integrate(NANF, [1.0], 1.0)",
          "result.status == 'diverged at t=0'"))
    add(W("NaN field at start, diffrax ensemble", "result = rf.integrate(NANF, [1.0], 1.0, paths=3)",
          "result.status.startswith('diverged at t=0 (3 of 3') and 'kvaerno5' not in result.status"))
    for backend, method in (("diffrax", "dopri5"), ("scipy", "dopri5"), ("scipy", "lsoda"), ("scipy", "bdf")):
        add(W(f"field NaN beyond t=0.5, {backend} {method}",
              f"result = rf.integrate(AHEAD, [1.0], 1.0, backend='{backend}', method='{method}')",
              "result.status.startswith('diverged at t=0.5') and 'kvaerno5' not in result.status"))
    add(W("field inf below y=0.5, scipy lsoda",
          "result = rf.integrate(rf.ODE(lambda t, y, a: jnp.where(y < 0.5, jnp.inf, -y)), [1.0], 1.0, "
          "backend='scipy', method='lsoda')", "result.status.startswith('diverged at t=0.693')"))
    for backend in ("jax", "diffrax", "sdeint"):
        add(W(f"SDE blow-up, {backend}",
              f"result = rf.integrate(BLOW, [1.0], 1.0, dt=0.01, paths=2, backend='{backend}')",
              "np.allclose(result.diverged_at, 0.57) and np.isnan(result.y[:, 57:]).all() and "
              "np.isfinite(result.y[:, :57]).all()"))
        add(W(f"SDE NaN drift at start, {backend}",
              f"result = rf.integrate(rf.SDE(lambda t, y, a: y * jnp.nan, lambda t, y, a: 0 * y), [1.0], 1.0, "
              f"dt=0.1, backend='{backend}')", "result.status == 'diverged at t=0'"))
    add(W("Map blow-up", "result = rf.iterate(rf.Map(lambda k, y, a: 10.0 * y, dt=0.1), [1.0], 20)",
          "result.status.startswith('diverged at t=1.3')"))
    add(W("ODE blow-up y' = y^2, diffrax and scipy agree",
          "a = rf.integrate(rf.ODE(lambda t, y, a: y ** 2), [1.0], 2.0)\n"
          "b = rf.integrate(rf.ODE(lambda t, y, a: y ** 2), [1.0], 2.0, backend='scipy')\nresult = (a, b)",
          "all(r.status.startswith('diverged at t=1') for r in result)"))
    add(W("callable signatures that fit (partial, jit, *args, equinox)",
          "import functools, equinox as eqx\n"
          "class M(eqx.Module):\n    k: jax.Array\n    def __call__(self, t, y, args): return -self.k * y\n"
          "fs = [functools.partial(lambda t, y, a, k: -k * y, k=2.0), jax.jit(lambda t, y, a: -y), "
          "lambda *x: -x[1], M(jnp.asarray(1.0))]\nresult = [rf.integrate(rf.ODE(f), [1.0], 1.0).status for f in fs]",
          "result == ['ok'] * 4"))
    # --------------------------------------------------------------- analysis
    add(E("jacobian wrong dimension", "result = rf.jacobian(ROT, [1.0, 2.0, 3.0])", "y"))
    add(E("jacobian NaN point", "result = rf.jacobian(ROT, [np.nan, 1.0])", "y"))
    add(E("jacobian t str", "result = rf.jacobian(ROT, [1.0, 1.0], t='0')", "t"))
    add(E("jacobian of a stochastic Map", "result = rf.jacobian(rf.Map(lambda k, y, a, key: y, dt=1.0, "
                                          "stochastic=True), [1.0])", "stochastic"))
    add(E("jacobian of a function", "result = rf.jacobian(lambda t, y, a: y, [1.0])", "system"))
    add(E("jacobian args string", "result = rf.jacobian(ROT, [1.0, 1.0], args={'s': 'x'})", "args"))
    add(E("hessian vector-valued", "result = rf.hessian(lambda w, a: 2 * w, [1.0, 2.0])", "rf.jacobian"))
    add(E("hessian NaN point", "result = rf.hessian(LOSS, [np.inf, 2.0])", "w"))
    add(E("hessian complex loss", "result = rf.hessian(lambda w, a: jnp.sum(w) * 1j, [1.0, 2.0])", "loss"))
    add(E("hessian loss signature", "result = rf.hessian(lambda w: w @ w, [1.0, 2.0])", "loss"))
    add(E("hessian loss not callable", "result = rf.hessian(3, [1.0, 2.0])", "loss"))
    add(E("hessian string point", "result = rf.hessian(LOSS, ['a', 'b'])", "w"))
    add(E("lie_derivative signature", "result = rf.lie_derivative(ROT, lambda y: y @ y)", "q"))
    add(E("lie_derivative of a Map", "result = rf.lie_derivative(HALVE, lambda y, a: y @ y)", "Map"))
    add(E("lie_derivative wrong point", "result = rf.lie_derivative(ROT, lambda y, a: y @ y)(jnp.ones(3))", "y"))
    add(E("lie_derivative NaN point", "result = rf.lie_derivative(ROT, lambda y, a: y @ y)(jnp.array([1.0, np.nan]))",
          "y"))
    add(E("equilibria wrong dimension", "result = rf.equilibria(ROT, [1.0, 0.0, 2.0])", "guesses"))
    add(E("equilibria NaN guess", "result = rf.equilibria(ROT, [1.0, np.nan])", "guesses"))
    add(E("equilibria tol negative", "result = rf.equilibria(ROT, [1.0, 0.0], tol=-1.0)", "tol"))
    add(E("equilibria dedupe str", "result = rf.equilibria(ROT, [1.0, 0.0], dedupe='x')", "dedupe"))
    add(E("equilibria dense_below str", "result = rf.equilibria(ROT, [1.0, 0.0], dense_below='x')", "dense_below"))
    add(E("equilibria of a stochastic Map", "result = rf.equilibria(rf.Map(lambda k, y, a, key: y, dt=1.0, "
                                            "stochastic=True), [1.0])", "stochastic"))
    add(E("sharpness vector loss", "result = rf.sharpness(lambda w, a: 2 * w, jnp.ones(2))", "loss"))
    add(E("sharpness NaN point", "result = rf.sharpness(LOSS, jnp.array([1.0, np.nan]))", "w"))
    add(E("sharpness loss signature", "result = rf.sharpness(lambda w: w @ w, jnp.ones(2))", "loss"))
    add(E("hessian_eigs k too large", "result = rf.hessian_eigs(LOSS, jnp.ones(2), k=5)", "k"))
    add(E("hessian_eigs which", "result = rf.hessian_eigs(LOSS, jnp.ones(2), which='middle')", "which"))
    add(E("hessian_eigs dense_below None", "result = rf.hessian_eigs(LOSS, jnp.ones(2), dense_below=None)",
          "dense_below"))
    add(E("hvp v of another shape", "result = rf.hvp(LOSS, jnp.ones(2), jnp.ones(3))", "v"))
    add(E("jacobian_eigs which", "result = rf.jacobian_eigs(lambda t, y, a: -y, jnp.ones(2), which='XX')", "which"))
    add(E("jacobian_eigs field signature", "result = rf.jacobian_eigs(lambda y: -y, jnp.ones(2))", "field"))
    add(E("hessian_trace samples 1", "result = rf.hessian_trace(LOSS, jnp.ones(2), samples=1)", "samples"))
    # --------------------------------------------------------------- constructors of methods
    for label, call, words in [
            ("gradient_flow lr 0", "rf.gradient_flow(LOSS, lr=0.0)", ("lr",)),
            ("gradient_flow lr str", "rf.gradient_flow(LOSS, lr='x')", ("lr",)),
            ("gradient_flow lr nan", "rf.gradient_flow(LOSS, lr=np.nan)", ("lr",)),
            ("gradient_flow weight_decay -1", "rf.gradient_flow(LOSS, weight_decay=-1.0)", ("weight_decay",)),
            ("gradient_flow weight_decay str", "rf.gradient_flow(LOSS, weight_decay='x')", ("weight_decay",)),
            ("gradient_flow loss not callable", "rf.gradient_flow(3)", ("loss",)),
            ("gradient_flow loss signature", "rf.gradient_flow(lambda w: w @ w)", ("loss",)),
            ("gradient_descent without lr", "rf.gradient_descent(LOSS)", ("lr",)),
            ("modified_flow lr -1", "rf.modified_flow(LOSS, lr=-1.0)", ("lr",)),
            ("sgd batch_size 0", "rf.sgd(lambda w, b, a: w @ w, {'x': jnp.ones((4, 2))}, lr=0.1, batch_size=0)",
             ("batch_size",)),
            ("sgd batch_size too big", "rf.sgd(lambda w, b, a: w @ w, {'x': jnp.ones((4, 2))}, lr=0.1, batch_size=9)",
             ("batch_size",)),
            ("sgd data mismatched", "rf.sgd(lambda w, b, a: w @ w, {'x': jnp.ones((4, 2)), 'y': jnp.ones(3)}, lr=0.1,"
             " batch_size=2)", ("data",)),
            ("sgd data strings", "rf.sgd(lambda w, b, a: w @ w, {'x': ['a', 'b']}, lr=0.1, batch_size=1)", ("data",)),
            ("sgd sample_loss signature", "rf.sgd(lambda w, a: w @ w, {'x': jnp.ones((4, 2))}, lr=0.1, batch_size=2)",
             ("sample_loss",)),
            ("sme data NaN", "rf.sme(lambda w, b, a: w @ w, {'x': jnp.full((4, 2), jnp.nan)}, lr=0.1, batch_size=2)",
             ("data",))]:
        add(E(label, f"result = {call}", *words))
    # --------------------------------------------------------------- comparisons
    add(E("map_error with a flow as map", "result = rf.map_error(ROT, ROT, [1.0, 0.0], 1.0)", "map_"))
    add(E("agreement_order steps text", "result = rf.agreement_order(lambda h: HALVE, ROT, [1.0], 1.0, 'abc')",
          "steps"))
    add(E("agreement_order one step", "result = rf.agreement_order(lambda h: HALVE, ROT, [1.0], 1.0, [0.1])", "steps"))
    add(E("agreement_order negative steps", "result = rf.agreement_order(lambda h: HALVE, ROT, [1.0], 1.0, "
                                            "[-0.1, 0.1])", "steps"))
    add(E("agreement_order map_at not callable", "result = rf.agreement_order(HALVE, ROT, [1.0], 1.0, [0.1, 0.05])",
          "map_at"))
    add(E("agreement_order t1 str", "result = rf.agreement_order(lambda h: HALVE, ROT, [1.0], 'x', [0.1, 0.05])", "t1"))
    # --------------------------------------------------------------- Trajectory and files
    add(E("Trajectory y rows vs t", "result = rf.Trajectory(t=[0.0, 1.0], y=np.ones((3, 2)))", "t", "y"))
    add(E("Trajectory t decreasing", "result = rf.Trajectory(t=[1.0, 0.0], y=np.ones((2, 2)))", "t"))
    add(E("Trajectory complex y", "result = rf.Trajectory(t=[0.0, 1.0], y=np.ones((2, 2)) * 1j)", "y"))
    add(E("Trajectory status", "result = rf.Trajectory(t=[0.0], y=np.ones((1, 2)), status='weird')", "status"))
    add(E("Trajectory names count", "result = rf.Trajectory(t=[0.0], y=np.ones((1, 2)), names=('a', 'b', 'c'))",
          "names"))
    add(E("trajectory unknown coordinate", "result = rf.integrate(ROT, [1.0, 0.0], 1.0)['z']", "z"))
    add(E("evaluate signature", "result = rf.integrate(ROT, [1.0, 0.0], 1.0).evaluate(lambda y: y)", "q"))
    add(E("load missing file", "result = rf.Trajectory.load(os.path.join(TMP, 'missing.npz'))", "missing.npz"))
    add(E("load zero-byte file", "result = rf.Trajectory.load(write('zero.npz', b''))", "zero.npz"))
    add(E("load random bytes", "result = rf.Trajectory.load(write('junk.npz', os.urandom(200)))", "junk.npz"))
    add(E("load npz without header", "p = os.path.join(TMP, 'plain.npz'); np.savez(p, t=np.ones(2))\n"
                                     "result = rf.Trajectory.load(p)", "plain.npz"))
    add(E("load truncated file", "p = saved(); data = open(p, 'rb').read(); open(p, 'wb').write(data[:len(data)//2])\n"
                                 "result = rf.Trajectory.load(p)", "t.npz"))
    add(E("save existing file", "p = saved(); result = rf.integrate(ROT, [1.0, 0.0], 1.0).save(p)", "t.npz",
          "overwrite"))
    add(E("save into missing directory", "result = rf.integrate(ROT, [1.0, 0.0], 1.0).save(os.path.join(TMP, 'no', "
                                         "'x.npz'))", "no"))
    add(E("save onto a directory", "os.mkdir(os.path.join(TMP, 'd.npz'))\n"
                                   "result = rf.integrate(ROT, [1.0, 0.0], 1.0).save(os.path.join(TMP, 'd.npz'))",
          "d.npz"))
    add(E("save wrong suffix", "result = rf.integrate(ROT, [1.0, 0.0], 1.0).save(os.path.join(TMP, 'x.csv'))", "csv",
          "x.csv"))
    add(W("save and load keep args and diverged_at",
          "s = rf.SDE(lambda t, y, a: a['k'] * y ** 3, lambda t, y, a: 0 * y, args={'k': 1.0})\n"
          "r = rf.integrate(s, [1.0], 1.0, dt=0.01, paths=2)\np = os.path.join(TMP, 'a.npz'); r.save(p)\n"
          "result = rf.Trajectory.load(p)",
          "np.allclose(result.diverged_at, 0.57) and result.evaluate(lambda y, a: a['k'] * y[0]).shape == (2, 101)"))
    # --------------------------------------------------------------- sweeps
    add(E("sweep grid not a dict", "result = rf.sweep(lambda lr: ROT, [0.1], run=lambda s, seed: {'v': 1.0})", "grid"))
    add(E("sweep grid empty values", "result = rf.sweep(lambda lr: ROT, {'lr': []}, run=lambda s, seed: {'v': 1.0})",
          "lr", "grid"))
    add(E("sweep grid 2-D values", "result = rf.sweep(lambda lr: ROT, {'lr': [[0.1, 0.2]]}, "
                                   "run=lambda s, seed: {'v': 1.0})", "lr", "grid"))
    add(E("sweep run not callable", "result = rf.sweep(lambda lr: ROT, {'lr': [0.1]}, run=3)", "run"))
    add(E("sweep chunk_size 0", "result = rf.sweep(lambda lr: ROT, {'lr': [0.1]}, run=lambda s, seed: {'v': 1.0}, "
                                "chunk_size=0)", "chunk_size"))
    add(E("sweep result a string", "result = rf.sweep(lambda lr: ROT, {'lr': [0.1]}, run=lambda s, seed: {'v': 'x'})",
          "v", "run"))
    add(E("sweep changed run on an existing out", "o = os.path.join(TMP, 'sw')\n"
          "rf.sweep(lambda lr: lr, {'lr': [0.1, 0.2]}, run=lambda s, seed: {'v': s}, out=o, progress=False)\n"
          "result = rf.sweep(lambda lr: lr, {'lr': [0.1, 0.2]}, run=lambda s, seed: {'v': 2 * s}, out=o, "
          "progress=False)", "run", "recompute"))
    add(E("sweep other grid on an existing out", "o = os.path.join(TMP, 'sw2')\n"
          "rf.sweep(lambda lr: lr, {'lr': [0.1, 0.2]}, run=lambda s, seed: {'v': s}, out=o, progress=False)\n"
          "result = rf.sweep(lambda lr: lr, {'lr': [0.3]}, run=lambda s, seed: {'v': s}, out=o, progress=False)",
          "grid", "out"))
    add(W("sweep empty chunk recomputed", "o = os.path.join(TMP, 'sw3')\n"
          "f = lambda lr: lr\nrun = lambda s, seed: {'v': s}\n"
          "rf.sweep(f, {'lr': [0.1, 0.2]}, run=run, out=o, progress=False, chunk_size=1)\n"
          "c = sorted(x for x in os.listdir(o) if x.startswith('chunk'))[0]; open(os.path.join(o, c), 'wb').close()\n"
          "result = rf.sweep(f, {'lr': [0.1, 0.2]}, run=run, out=o, progress=False, chunk_size=1)",
          "np.allclose(result['v'], [0.1, 0.2])"))
    # --------------------------------------------------------------- catalogue and claims
    add(E("get_entry unknown", "result = rf.get_entry('nope.nothing')", "nope.nothing"))
    add(E("check not a method", "result = rf.check(3)", "check", "Method", "entry"))
    # --------------------------------------------------------------- command line
    for label, argv, words, works in [
            ("run unknown name", ["run", "nope.entry"], ("nope.entry",), None),
            ("run --paths 0", ["run", "scalar_net.gradient_flow", "--paths", "0"], ("--paths",), None),
            ("run --out missing dir", ["run", "scalar_net.gradient_flow", "--out", "MISSING/dir/x.npz"],
             ("--out", "dir"), None),
            ("run --set d=0", ["run", "scalar_net.gradient_flow", "--set", "d=0"], ("d", "--set"), None),
            ("run --set without =", ["run", "scalar_net.gradient_flow", "--set", "d"], ("--set",), None),
            ("run --set unknown key", ["run", "scalar_net.gradient_flow", "--set", "zz=1"], ("zz", "--set"), None),
            ("run --t1 abc", ["run", "scalar_net.gradient_flow", "--t1", "abc"], ("--t1",), None),
            ("run --out csv suffix", ["run", "scalar_net.gradient_flow", "--out", "{TMP}/wd.txt"], ("--out", "txt"),
             None),
            ("check unknown name", ["check", "nope"], ("nope",), None),
            ("no subcommand", [], ("command", "usage"), None),
            ("--version", ["--version"], (), "result['cli'] == 0")]:
        code = f"result = cli(*[a.format(TMP=TMP) for a in {argv!r}])"
        add(Case(f"cli {label}", code, words, works))
    add(Case("cli run existing --out", "p = saved('e.npz')\nresult = cli('run', 'scalar_net.gradient_flow', "
                                       "'--out', p)", ("--overwrite", "e.npz")))
    add(Case("cli portrait existing png", "p = write('p.png', b'x')\nresult = cli('portrait', "
                                          "'scalar_net.gradient_flow', '--out', p)", ("--overwrite", "p.png")))
    return out


def run_case(case, timeout, python):
    child = PREAMBLE + CHILD.format(mark=MARK, code=textwrap.dedent(case.code), works=case.works)
    env = dict(os.environ, JAX_PLATFORMS=os.environ.get("JAX_PLATFORMS", "cpu"), REGFLOW_PROGRESS="0")
    start = time.perf_counter()
    try:
        proc = subprocess.run([python, "-c", child], capture_output=True, text=True, timeout=timeout, env=env)
    except subprocess.TimeoutExpired:
        return case, "hang", f"no answer within {timeout} s", timeout
    seconds = time.perf_counter() - start
    line = next((x for x in proc.stdout.splitlines() if x.startswith(MARK)), None)
    if line is None:
        return case, "crash", f"exit status {proc.returncode}: {proc.stderr.strip()[-300:]}", seconds
    return (case, *classify(case, json.loads(line[len(MARK):])), seconds)


def _names(message, words):
    low = message.lower()
    return any(w.lower() in low for w in words)


def classify(case, out):
    """``(outcome, detail)`` of one case's report."""
    if out["kind"] == "raised":
        detail = f"{out['type']}: {out['message'][:300]}"
        if case.works:
            return "unclear", f"should work, raised {detail}"
        ours = "/regflow/" in out["where"] or "/systems/" in out["where"]
        binding = out["where"] == "<case>" and out["type"] == "TypeError" and "argument" in out["message"]
        if binding and _names(out["message"], case.words):  # Python's own "missing argument 'lr'"
            return "clear", detail
        if not ours:
            return "unclear", f"raw error from {out['where'].split('site-packages/')[-1]}: {detail}"
        if not any(t in out["mro"] for t in CLEAR_TYPES):
            return "unclear", f"{detail} (not a ValueError/TypeError)"
        if case.words and not _names(out["message"], case.words):
            return "unclear", f"names none of {case.words}: {detail}"
        return "clear", detail
    if out["kind"] == "cli":
        detail = f"exit {out['code']}: {out['err'].strip()[-300:]}"
        if case.works:
            return ("clear" if out.get("works") else "silent"), detail
        if out["code"] == 0:
            return "silent", detail
        if "Traceback" in out["err"] or out["code"] != CLI_USAGE:
            return "unclear", detail
        if case.words and not _names(out["err"], case.words):
            return "unclear", f"names none of {case.words}: {detail}"
        return "clear", detail
    if case.works:
        return ("clear" if out.get("works") else "silent"), out["repr"]
    return "silent", f"accepted: {out['repr']}"


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=2, help="cases run at once (default 2)")
    parser.add_argument("--timeout", type=float, default=180.0, help="seconds before a case counts as a hang")
    parser.add_argument("--only", default="", help="run only the cases whose name contains this")
    parser.add_argument("--json", help="also write every outcome to this file")
    args = parser.parse_args(argv)
    todo = [c for c in cases() if args.only in c.name]
    names = [c.name for c in todo]
    assert len(set(names)) == len(names), "case names must be distinct"
    print(f"{len(todo)} cases, {args.jobs} at a time, timeout {args.timeout:g} s", flush=True)
    results = []
    with concurrent.futures.ThreadPoolExecutor(args.jobs) as pool:
        futures = [pool.submit(run_case, c, args.timeout, sys.executable) for c in todo]
        for done, future in enumerate(concurrent.futures.as_completed(futures), 1):
            results.append(future.result())
            if done % 20 == 0:
                print(f"  {done}/{len(todo)}", flush=True)
    order = {c.name: i for i, c in enumerate(todo)}
    results.sort(key=lambda r: order[r[0].name])
    kinds = ("clear", "unclear", "silent", "hang", "crash")
    tally = {k: sum(r[1] == k for r in results) for k in kinds}
    print(f"\ntried {len(results)}: " + ", ".join(f"{k} {tally[k]}" for k in kinds))
    for case, kind, detail, seconds in results:
        if kind != "clear":
            print(f"\n[{kind}] {case.name} ({seconds:.1f} s)\n    {case.code.splitlines()[-1][:150]}\n    {detail[:400]}")
    if args.json:
        with open(args.json, "w") as fh:
            json.dump([{"name": c.name, "outcome": k, "detail": d, "seconds": s} for c, k, d, s in results], fh,
                      indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
