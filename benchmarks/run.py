"""regflow against its anchors, side by side in one process.

    python benchmarks/run.py            # the issue's sizes (a few minutes on 2 cores)
    python benchmarks/run.py --quick    # a scaled-down smoke run (< 1 minute)
    python benchmarks/run.py --write    # also write benchmarks/results.md

Sections (each anchor on the same problem as regflow; see ``anchors.py``):

* SDE ensemble: regflow ``rf.integrate(sde, y0, t1, dt=dt, paths=N, ts=...)`` against the
  hand-written jitted ``lax.scan`` drawing its own normals, diffrax (``UnsafeBrownianPath`` and
  ``VirtualBrownianTree``, vmapped), vectorised numpy Euler-Maruyama and sdeint one path at a
  time; plus a breakdown of where the time goes.
* ODE ensemble: regflow against diffrax vmap (Dopri5 + PID, rtol 1e-8) and scipy ``solve_ivp``
  one start at a time.
* Recompilation: a second call with new ``y0``, seed and ``args`` must compile nothing (counted
  with ``jax.monitoring`` compile events) and take the warm time.
* First call: a catalogue system's first ``rf.integrate`` in a fresh process, compilation
  included, import excluded.
* Memory: peak resident memory (``VmHWM``; ``getrusage`` max RSS shown too) of a big ensemble
  that saves 100 times, in a fresh process.

Slow anchors are timed on a subset of paths (or starts) and scaled linearly; the table says so.
Timings are the minimum over ``--repeat`` runs after a warm-up call, interleaved so that load
from other processes hits regflow and its anchor alike.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

import regflow as rf  # noqa: E402  (turns on float64)
import anchors as A  # noqa: E402

FULL = dict(paths=10_000, steps=10_000, saves=100, ode_starts=400, big_paths=100_000, big_steps=10_000,
            vbt_paths=50, sdeint_paths=5, scipy_starts=10, numpy_paths=10_000, repeat=3)
QUICK = dict(paths=1_000, steps=1_000, saves=100, ode_starts=100, big_paths=10_000, big_steps=1_000,
             vbt_paths=20, sdeint_paths=2, scipy_starts=4, numpy_paths=1_000, repeat=2)
SECTIONS = ("sde", "ode", "recompile", "first-call", "memory")
TARGET_SDE_RATIO = 1.0
TARGET_ODE_RATIO = 1.5
TARGET_SCIPY_SPEEDUP = 100.0
TARGET_FIRST_CALL_S = 1.0
TARGET_PEAK_GB = 2.0
COMPILE_EVENT = "/jax/core/compile/backend_compile_duration"
COMPILE_EVENTS = {"/jax/core/compile/jaxpr_trace_duration": "trace",
                  "/jax/core/compile/jaxpr_to_mlir_module_duration": "lower",
                  COMPILE_EVENT: "XLA compile"}


# ----------------------------------------------------------------------------- measuring


class CompileCounter:
    """Counts XLA compilations (and sums trace/lower/compile seconds) while active."""

    def __init__(self):
        self.active = False
        self.count = 0
        self.seconds = {name: 0.0 for name in COMPILE_EVENTS.values()}
        self.largest = ("", 0.0)
        jax.monitoring.register_event_duration_secs_listener(self._listen)

    def _listen(self, event, duration, **kwargs):
        if self.active and event in COMPILE_EVENTS:
            self.seconds[COMPILE_EVENTS[event]] += duration
            self.count += event == COMPILE_EVENT
            if event == COMPILE_EVENT and duration > self.largest[1]:
                self.largest = (str(kwargs.get("fun_name", "?")), duration)

    def __enter__(self):
        self.count, self.active = 0, True
        self.seconds = {name: 0.0 for name in COMPILE_EVENTS.values()}
        self.largest = ("", 0.0)
        return self

    def __exit__(self, *exc):
        self.active = False


def _block(x):
    return jax.block_until_ready(x.y if isinstance(x, rf.Trajectory) else x)


def best_times(fns: dict, repeat: int, warm: bool = True) -> dict:
    """Minimum wall time of each function over ``repeat`` interleaved rounds (after one warm-up)."""
    if warm:
        for fn in fns.values():
            _block(fn())
    best = {name: float("inf") for name in fns}
    for _ in range(repeat):
        for name, fn in fns.items():
            t = time.perf_counter()
            _block(fn())
            best[name] = min(best[name], time.perf_counter() - t)
    return best


class Table:
    def __init__(self):
        self.rows = []
        self.targets = []
        self.notes = []

    def add(self, section, name, seconds, measured_at, scale=1.0, note="", ref=None):
        self.rows.append(dict(section=section, name=name, seconds=seconds * scale, measured=seconds,
                              measured_at=measured_at, scale=scale, note=note, ref=ref))
        print(f"  {name:48s} {seconds * scale:10.3f} s" + (f"   (measured {seconds:.3f} s at {measured_at}, x{scale:g})"
                                                         if scale != 1 else ""), flush=True)

    def target(self, what, measured, goal, met):
        self.targets.append(dict(what=what, measured=measured, goal=goal, met=bool(met)))

    def regflow_time(self, section):
        return next(r["seconds"] for r in self.rows if r["section"] == section and r["ref"] == "regflow")

    def markdown(self):
        out = ["| section | implementation | time [s] | vs regflow | measured on | note |",
               "|---|---|---:|---:|---|---|"]
        for r in self.rows:
            ratio = ""
            if r["ref"] != "regflow" and r["ref"] != "none":
                base = self.regflow_time(r["section"])
                ratio = f"{r['seconds'] / base:.2f}x"
            elif r["ref"] == "regflow":
                ratio = "1.00x"
            scaled = f"scaled x{r['scale']:g} from the subset" if r["scale"] != 1 else ""
            note = "; ".join(filter(None, [r["note"], scaled]))
            out.append(f"| {r['section']} | {r['name']} | {r['seconds']:.3f} | {ratio} | {r['measured_at']} | {note} |")
        return "\n".join(out)

    def targets_markdown(self):
        out = ["| target | goal | measured | met |", "|---|---|---|---|"]
        for t in self.targets:
            out.append(f"| {t['what']} | {t['goal']} | {t['measured']} | {'met' if t['met'] else 'NOT met'} |")
        return "\n".join(out)


# ----------------------------------------------------------------------------- sections


def sde_section(table, s):
    P, N, S = s["paths"], s["steps"], s["saves"]
    t1 = N * A.DT
    ts = A.save_times(N, S)
    sde = A.sde()
    y0 = np.asarray(A.Y0)
    size = f"{P} paths x {N} steps"
    print(f"SDE ensemble: {size}, dt={A.DT}, {S + 1} saves", flush=True)

    hand = A.hand_scan(P, N, S)
    key = jax.random.PRNGKey(0)
    sigma = jnp.float64(A.SIGMA)
    fns = {"regflow": lambda: rf.integrate(sde, y0, t1, dt=A.DT, paths=P, ts=ts, seed=1),
           "hand": lambda: hand(key, jnp.asarray(y0), sigma)}
    best = best_times(fns, s["repeat"])
    table.add("SDE", "regflow `rf.integrate(..., paths=N, ts=...)`", best["regflow"], size, ref="regflow",
              note="backend 'jax' (auto): compiled loop, counter-based Box-Muller normals drawn in blocks")
    table.add("SDE", "hand-written jitted `lax.scan` (own normals)", best["hand"], size,
              note="`jax.random.normal(key, (paths, 1))` per step, key split")
    ratio = best["regflow"] / best["hand"]
    table.target(f"SDE ensemble {size}: regflow / hand-written scan", f"{ratio:.2f}x",
                 f"<= {TARGET_SDE_RATIO:.1f}x", ratio <= TARGET_SDE_RATIO)

    ubp = A.diffrax_sde("unsafe", N, S)
    keys = jax.random.split(jax.random.PRNGKey(0), P)
    args = {"c": jnp.float64(1.0), "sigma": sigma}
    t = best_times({"ubp": lambda: ubp(keys, jnp.asarray(y0), args)}, max(s["repeat"] - 1, 1))["ubp"]
    table.add("SDE", "diffrax Euler + `UnsafeBrownianPath`, vmap", t, size)

    Pv = min(s["vbt_paths"], P)
    vbt = A.diffrax_sde("tree", N, S)
    keys_v = keys[:Pv]
    t = best_times({"vbt": lambda: vbt(keys_v, jnp.asarray(y0), args)}, 1)["vbt"]
    table.add("SDE", "diffrax Euler + `VirtualBrownianTree` (tol dt/2), vmap", t, f"{Pv} paths x {N} steps",
              scale=P / Pv)

    t = best_times({"rd": lambda: rf.integrate(sde, y0, t1, dt=A.DT, paths=P, ts=ts, seed=1, backend="diffrax")},
                   1)["rd"]
    table.add("SDE", "regflow `backend='diffrax'` (shared increments)", t, size, ref="none",
              note="the same regflow noise fed to diffrax step by step")

    Pn = min(s["numpy_paths"], P)
    t = best_times({"np": lambda: A.numpy_em(Pn, N, S)}, 1, warm=False)["np"]
    table.add("SDE", "vectorised numpy Euler-Maruyama", t, f"{Pn} paths x {N} steps", scale=P / Pn)

    Ps = min(s["sdeint_paths"], P)
    t = best_times({"sdeint": lambda: A.sdeint_paths(Ps, N, S)}, 1, warm=False)["sdeint"]
    table.add("SDE", "sdeint `itoEuler`, one path at a time", t, f"{Ps} paths x {N} steps", scale=P / Ps)

    # where the time goes: the normals against the update, for regflow and for the hand scan
    for name, seconds in sde_breakdown(P, N, s["repeat"]).items():
        table.add("SDE profile", name, seconds, size, ref="none")


def sde_breakdown(paths, steps, repeat):
    """Seconds of the parts of one ensemble run: drawing the normals (regflow's blocked counter
    draws; the hand scan's per-step ``jax.random.normal``) and the Euler-Maruyama update alone."""
    from regflow import _noise
    from regflow.backends import scan_

    block = scan_._block_steps(paths, 1)
    keys = _noise.path_keys(0, paths)

    @jax.jit
    def regflow_normals(keys):
        def body(b, acc):
            pairs = _noise.increment_block(keys, b * block, block, A.DT, 1)
            return acc + pairs.cos.sum(axis=0) + pairs.sin.sum(axis=0)
        return jax.lax.fori_loop(0, steps // block, body, jnp.zeros(paths))

    @jax.jit
    def hand_normals(key):
        def body(i, carry):
            acc, key = carry
            key, sub = jax.random.split(key)
            return acc + jax.random.normal(sub, (paths, 1)), key
        return jax.lax.fori_loop(0, steps, body, (jnp.zeros((paths, 1)), key))[0]

    @jax.jit
    def update_only(y):
        def body(i, y):
            W = jnp.prod(y, axis=1, keepdims=True)
            return y + (-2.0 * (W - 1.0) * W / y) * A.DT + A.SIGMA * 2.0 * W / y * 1e-3
        return jax.lax.fori_loop(0, steps, body, y)

    y = jnp.tile(jnp.asarray(A.Y0), (paths, 1))
    key = jax.random.PRNGKey(0)
    best = best_times({"rf": lambda: regflow_normals(keys), "hand": lambda: hand_normals(key),
                       "upd": lambda: update_only(y)}, repeat)
    return {f"regflow normals alone (Box-Muller blocks of {block} steps)": best["rf"],
            "hand-written normals alone (`jax.random.normal` per step)": best["hand"],
            "Euler-Maruyama update alone (no noise draws)": best["upd"]}


def ode_section(table, s):
    n = s["ode_starts"]
    starts = A.ode_starts(n)
    ts = np.linspace(0.0, A.ODE_T1, A.ODE_SAVES + 1)
    flow = A.gradient_flow()
    size = f"{n} starts, t1={A.ODE_T1:g}, rtol {A.RTOL:g}"
    print(f"ODE ensemble: {size}", flush=True)
    program = A.diffrax_ode()
    args = {"c": jnp.float64(1.0)}
    fns = {"regflow": lambda: rf.integrate(flow, starts, A.ODE_T1, ts=ts, rtol=A.RTOL, atol=A.ATOL, batched=True),
           "diffrax": lambda: program(jnp.asarray(starts), args)}
    best = best_times(fns, s["repeat"])
    table.add("ODE", "regflow `rf.integrate(ode, starts, ...)`", best["regflow"], size, ref="regflow",
              note="backend 'diffrax' (auto)")
    table.add("ODE", "diffrax Dopri5 + PIDController, vmap", best["diffrax"], size)
    ns = min(s["scipy_starts"], n)
    t = best_times({"scipy": lambda: A.scipy_ode(starts[:ns])}, 1, warm=False)["scipy"]
    table.add("ODE", "scipy `solve_ivp` RK45, one start at a time", t, f"{ns} starts", scale=n / ns)
    ratio = best["regflow"] / best["diffrax"]
    speedup = t * (n / ns) / best["regflow"]
    if speedup < TARGET_SCIPY_SPEEDUP:  # where the time goes: steps and time per step of each
        _, accepted, rejected = A.diffrax_ode(True)(jnp.asarray(starts), args)
        steps = int(np.max(np.asarray(accepted) + np.asarray(rejected)))
        nfev = []
        A.scipy_ode(starts[:ns], nfev)
        table.notes.append(
            f"- ODE ensemble, scipy loop / regflow = {speedup:.0f}x < {TARGET_SCIPY_SPEEDUP:.0f}x. "
            "regflow runs diffrax "
            f"({ratio:.2f}x of diffrax vmap), and diffrax vmap itself is only {t * (n / ns) / best['diffrax']:.0f}x "
            f"faster than the scipy loop here: the vmapped solve takes {steps} steps (the most of any start; a vmapped "
            f"adaptive loop runs until every start is done), {best['diffrax'] / steps * 1e6:.0f} us per step "
            f"for all {n} "
            f"starts, i.e. {best['diffrax'] / steps / n * 1e9:.0f} ns per start-step for a Dopri5 step (6 "
            "vector-field calls, FSAL) of a 3-component vector field (tens of flops): per-step loop overhead "
            f"dominates, not arithmetic. scipy needs "
            f"{t / ns * 1e3:.1f} ms per start ({np.mean(nfev):.0f} vector-field calls, "
            f"{t / max(sum(nfev), 1) * 1e6:.1f} us each). The target is out of reach of the diffrax backend as it "
            "stands; it would take a leaner batched Runge-Kutta loop (as the SDE scan does for Euler-Maruyama).")
    table.target(f"ODE ensemble {n} starts: regflow / diffrax vmap", f"{ratio:.2f}x", f"<= {TARGET_ODE_RATIO}x",
                 ratio <= TARGET_ODE_RATIO)
    table.target(f"ODE ensemble {n} starts: scipy loop / regflow", f"{speedup:.0f}x", f">= {TARGET_SCIPY_SPEEDUP:.0f}x",
                 speedup >= TARGET_SCIPY_SPEEDUP)


def recompile_section(table, s, counter):
    """A second call with new y0, seed and args: no compilation, warm time."""
    P, N, S = s["paths"], s["steps"], s["saves"]
    t1, ts = N * A.DT, A.save_times(N, S)
    print("Recompilation (second call with new y0, seed, args)", flush=True)
    sde = A.sde()
    y0 = np.asarray(A.Y0)
    warm = best_times({"warm": lambda: rf.integrate(sde, y0, t1, dt=A.DT, paths=P, ts=ts, seed=1)}, 1)["warm"]
    new_sde = sde.replace(args={"c": 1.0, "sigma": 0.2})
    new_y0 = np.tile(y0 * 1.1, (P, 1))
    with counter as c:
        t = time.perf_counter()
        rf.integrate(new_sde, new_y0, t1, dt=A.DT, paths=P, ts=ts, seed=12345, batched=True).y
        t = time.perf_counter() - t
    table.add("recompile", f"SDE: new y0/seed/args, {c.count} compilations", t, f"{P} paths x {N} steps", ref="none",
              note=f"same call with the old inputs: {warm:.3f} s")
    sde_compiles = c.count

    flow = A.gradient_flow()
    starts = A.ode_starts(s["ode_starts"])
    ts_ode = np.linspace(0.0, A.ODE_T1, A.ODE_SAVES + 1)
    warm = best_times({"warm": lambda: rf.integrate(flow, starts, A.ODE_T1, ts=ts_ode, rtol=A.RTOL, atol=A.ATOL,
                                                     batched=True)},
                      1)["warm"]
    with counter as c:
        t = time.perf_counter()
        rf.integrate(flow.replace(args={"c": 0.9}), starts * 0.95, A.ODE_T1, ts=ts_ode, rtol=A.RTOL, atol=A.ATOL,
                     batched=True)
        t = time.perf_counter() - t
    table.add("recompile", f"ODE: new y0/args, {c.count} compilations", t, f"{len(starts)} starts", ref="none",
              note=f"same call with the old inputs: {warm:.3f} s")
    table.target("second call with new y0/seed/args compiles nothing (SDE, ODE)",
                 f"{sde_compiles} and {c.count} compilations", "0", sde_compiles == 0 and c.count == 0)


def _child(args: list[str]) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith("JAX_COMPILATION_CACHE")}
    out = subprocess.run([sys.executable, str(Path(__file__).resolve()), "--child", *args], env=env,
                         capture_output=True, text=True, check=False)
    if out.returncode != 0:
        raise RuntimeError(f"child {args} failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def first_call_section(table, s):
    print("First call (fresh process, compile included, import excluded)", flush=True)
    for kind in ("ode", "sde"):
        r = _child(["first-call", kind])
        parts = ", ".join(f"{k} {v:.2f} s" for k, v in r["compile_seconds"].items())
        name, seconds = r["largest"]
        table.add("first call", f"{r['label']}: first call", r["first"], r["what"], ref="none",
                  note=f"{r['compiles']} compilations; {parts}; largest XLA compile `{name}` {seconds:.2f} s; "
                       f"warm call {r['warm']:.3f} s")
        met = r["first"] <= TARGET_FIRST_CALL_S
        table.target(f"first call incl. compile, {r['label']}", f"{r['first']:.2f} s",
                     f"<= {TARGET_FIRST_CALL_S:.0f} s", met)
        if not met:
            table.notes.append(
                f"- First call of {r['label']} ({r['what']}): {r['first']:.2f} s, of which trace "
                f"{r['compile_seconds']['trace']:.2f} s, lowering {r['compile_seconds']['lower']:.2f} s and XLA "
                f"compilation {r['compile_seconds']['XLA compile']:.2f} s over {r['compiles']} compilations, "
                "the largest "
                f"`{name}` ({seconds:.2f} s); the warm call takes {r['warm']:.3f} s. Compilation dominates.")


def memory_section(table, s):
    P, N = s["big_paths"], s["big_steps"]
    print(f"Memory: {P} paths x {N} steps saving {s['saves']} times (fresh process)", flush=True)
    r = _child(["memory", str(P), str(N), str(s["saves"])])
    table.add("memory", f"regflow, peak RSS {r['peak_gb']:.2f} GB", r["seconds"], f"{P} paths x {N} steps", ref="none",
              note=f"peak = VmHWM; result {r['result_gb']:.2f} GB; RSS after import {r['import_gb']:.2f} GB, "
                   f"after the run {r['after_gb']:.2f} GB; getrusage max RSS {r['rusage_gb']:.2f} GB (includes the "
                   "parent's RSS at fork, which Linux carries across exec)")
    table.target(f"peak memory, {P} paths x {N} steps, {s['saves']} saves", f"{r['peak_gb']:.2f} GB",
                 f"< {TARGET_PEAK_GB:.0f} GB", r["peak_gb"] < TARGET_PEAK_GB)


# ----------------------------------------------------------------------------- child processes


def _maxrss_gb():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # KiB on Linux


def _status_gb(field):
    """``VmRSS`` (current) or ``VmHWM`` (peak) resident memory of this process from Linux ``/proc``.

    ``getrusage``'s max RSS is not enough in a child: Linux carries the parent's max RSS at
    ``fork`` across ``exec``, so a child of this (big) process would report at least its size."""
    try:
        with open("/proc/self/status") as status:
            return next(int(line.split()[1]) for line in status if line.startswith(field + ":")) / 2**20
    except (OSError, StopIteration):
        return _maxrss_gb()


def child_first_call(kind):
    import regflow.backends.diffrax_, regflow.backends.scan_, regflow.backends.sdeint_  # noqa: F401  (imports excluded)

    counter = CompileCounter()
    try:
        if kind == "ode":
            name = "scalar_net.gradient_flow"
            m = rf.get_entry(name).build(d=3)
            call = lambda: rf.integrate(m.flow, m.y0[0], m.t1)  # noqa: E731
            what = f"1 start, t1={m.t1:g}"
        else:
            name = "scalar_net.noise_augmentation"
            m = rf.get_entry(name).build(d=3)
            call = lambda: rf.integrate(m.flow, m.y0[0], m.t1, dt=m.dt, paths=m.paths)  # noqa: E731
            what = f"{m.paths} paths x {round(m.t1 / m.dt)} steps"
        label = f"catalogue `{name}` (d=3)"
    except Exception:  # the catalogue is optional for the benchmark: fall back to its own systems
        if kind == "ode":
            call = lambda: rf.integrate(A.gradient_flow(), np.asarray(A.Y0), A.ODE_T1)  # noqa: E731
            what, label = f"1 start, t1={A.ODE_T1:g}", "scalar-net gradient flow"
        else:
            call = lambda: rf.integrate(A.sde(), np.asarray(A.Y0), 1.0, dt=A.DT, paths=4)  # noqa: E731
            what, label = "4 paths x 1000 steps", "scalar-net SDE"
    with counter as c:
        t = time.perf_counter()
        call().y
        first = time.perf_counter() - t
    t = time.perf_counter()
    call().y
    warm = time.perf_counter() - t
    return dict(first=first, warm=warm, compiles=c.count, compile_seconds=c.seconds, largest=c.largest, what=what,
                label=label)


def child_memory(paths, steps, saves):
    import_gb = _status_gb("VmRSS")
    t = time.perf_counter()
    traj = rf.integrate(A.sde(), np.asarray(A.Y0), steps * A.DT, dt=A.DT, paths=paths,
                        ts=A.save_times(steps, saves), seed=0)
    seconds = time.perf_counter() - t
    return dict(peak_gb=_status_gb("VmHWM"), rusage_gb=_maxrss_gb(), import_gb=import_gb, after_gb=_status_gb("VmRSS"),
                seconds=seconds, result_gb=traj.y.nbytes / 2**30)


# ----------------------------------------------------------------------------- report


def machine_info():
    cpu = platform.processor()
    try:
        cpu = next(line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    from importlib.metadata import version

    libs = {name: version(name) for name in ("jax", "jaxlib", "diffrax", "equinox", "numpy", "scipy", "sdeint")}
    return dict(cpu=cpu, cores=os.cpu_count(), python=platform.python_version(), platform=platform.platform(),
                libs=libs, load=os.getloadavg())


ABOUT_SDE = """\
## How the SDE ensemble gets under the hand-written scan

Drawing float64 normals dominates every JAX implementation (compare the 'SDE profile' rows with
the update alone). The hand-written scan calls `jax.random.normal` each step: a Threefry hash
(lowered on CPU as a rolled loop) and an `erf_inv` per number. regflow's compiled loop
(`regflow/backends/scan_.py`) draws the increments of a block of steps (64 at 10^4 paths) of all paths in one
vectorised call (`regflow._noise.increment_block`): counter-based Box-Muller pairs, one Threefry
hash per number written out so that XLA fuses it with the transform, and a transform (`log1p`,
`sqrt`, a polynomial `sincos` per two numbers) that costs about half of `erf_inv`. Each number is
still addressed by (seed, path, step, component) alone, so path p is the same whatever the
ensemble size, and the diffrax and sdeint backends (which ask for `_noise.increment` step by step)
see the same increments. Between draws a plain loop applies the steps and writes states only at
the save indices."""


def report(table, info, command, seconds, load_after):
    libs = ", ".join(f"{k} {v}" for k, v in info["libs"].items())
    return "\n".join([
        "# regflow benchmarks",
        "",
        f"Command: `{command}` ({seconds:.0f} s in all).",
        "",
        f"Machine: {info['cpu']}, {info['cores']} cores; {info['platform']}; Python {info['python']}; {libs}.",
        f"Load average before / after: {' '.join(f'{x:.2f}' for x in info['load'])} / "
        f"{' '.join(f'{x:.2f}' for x in load_after)} (other processes on the machine inflate wall times; "
        "the interleaved minima keep the ratios comparable).",
        "",
        "## Targets",
        "",
        table.targets_markdown(),
        "",
        "## Times",
        "",
        "Minimum wall time over the repeats after a warm-up call (compilation excluded except in "
        "'first call'). 'vs regflow' is the row's time over regflow's in the same section "
        "(> 1: slower than regflow). Rows measured on a subset are scaled linearly to the full size.",
        "",
        table.markdown(),
        "",
        ABOUT_SDE,
        "",
    ] + (["## Profile evidence for the targets not met", ""] + table.notes + [""] if table.notes else []))


def parse(argv):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="scaled-down smoke run (< 1 minute)")
    p.add_argument("--write", nargs="?", const=str(HERE / "results.md"), default=None, metavar="PATH",
                   help="write the markdown report (default benchmarks/results.md)")
    p.add_argument("--skip", action="append", default=[], choices=SECTIONS, help="leave a section out (repeatable)")
    for name, value in FULL.items():
        p.add_argument(f"--{name.replace('_', '-')}", type=int, default=None,
                       help=f"default {value} ({QUICK[name]} with --quick)")
    p.add_argument("--child", nargs="+", help=argparse.SUPPRESS)
    return p.parse_args(argv)


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    opts = parse(argv)
    if opts.child:
        kind, *rest = opts.child
        result = child_first_call(rest[0]) if kind == "first-call" else child_memory(*map(int, rest))
        print(json.dumps(result))
        return 0
    sizes = dict(QUICK if opts.quick else FULL)
    sizes.update({k: getattr(opts, k) for k in FULL if getattr(opts, k) is not None})
    for steps in ("steps", "big_steps"):
        if sizes[steps] % sizes["saves"]:
            raise SystemExit(f"--{steps.replace('_', '-')} ({sizes[steps]}) must be a multiple of --saves ({sizes['saves']})")
    info = machine_info()
    print(f"{info['cpu']}, {info['cores']} cores, load {info['load'][0]:.2f}; sizes {sizes}", flush=True)
    counter = CompileCounter()
    table = Table()
    start = time.perf_counter()
    if "sde" not in opts.skip:
        sde_section(table, sizes)
    if "ode" not in opts.skip:
        ode_section(table, sizes)
    if "recompile" not in opts.skip:
        recompile_section(table, sizes, counter)
    if "first-call" not in opts.skip:
        first_call_section(table, sizes)
    if "memory" not in opts.skip:
        memory_section(table, sizes)
    seconds = time.perf_counter() - start
    print()
    print(table.targets_markdown())
    print()
    print(table.markdown())
    if table.notes:
        print("\nProfile evidence for the targets not met:\n" + "\n".join(table.notes))
    if opts.write:
        command = "python benchmarks/run.py " + " ".join(a for a in argv)
        Path(opts.write).write_text(report(table, info, command.strip(), seconds, os.getloadavg()))
        print(f"\nwrote {opts.write}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
