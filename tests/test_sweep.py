"""Tests of `regflow._sweep` (parameter sweeps) and `regflow._progress` (progress bars).

The physics: a 1-D Ornstein-Uhlenbeck SDE dy = -theta y dt + sigma dW from y(0) = 0 has
Var y(t) = sigma^2 / (2 theta) (1 - exp(-2 theta t)).  The bookkeeping (grids, files,
resume, validation) uses a cheap pure-numpy `run` so it costs no compilation.
"""

import functools
import io
import json
import multiprocessing
import os
import re
import signal
import subprocess
import sys
import time
import warnings

import jax.numpy as jnp
import numpy as np
import pytest
import xarray as xr

import regflow as rf
import regflow._sweep
from regflow import _files
from regflow._fingerprint import fingerprint
from regflow._progress import ENV_VAR, progress_bar, progress_enabled
from regflow._sweep import CHECKSUM_FILE, CHUNK_FILE, MANIFEST, POINT_SEED, RESULT_FILE, point_seeds, sweep

GRID = {"theta": [0.5, 1.0, 2.0], "sigma": [0.1, 0.3]}
T1, DT, PATHS = 1.0, 0.01, 256
TS = np.array([0.25, 0.5, 0.75, 1.0])
LABELS = {"dims": {"var_curve": ("time",)}, "coords": {"time": TS}}
#: Relative error allowed against the exact variance: ~4 standard errors of a 256-path estimate.
VARIANCE_RTOL = 0.35


def ou_drift(t, y, args):
    return -args["theta"] * y


def ou_diffusion(t, y, args):
    return args["sigma"] * jnp.ones_like(y)


def ou(theta, sigma):
    """Module-level vector fields, parameters in args: one compiled program for the grid."""
    return rf.SDE(ou_drift, ou_diffusion, args={"theta": theta, "sigma": sigma})


def variances(sde, seed):
    traj = rf.integrate(sde, [0.0], T1, dt=DT, ts=TS, paths=PATHS, seed=seed, backend="jax")
    curve = np.var(traj.y[:, :, 0], axis=0)
    return {"var": curve[-1], "var_curve": curve}


def ou_sweep(**options):
    options.setdefault("run", variances)
    return sweep(ou, GRID, progress=False, **LABELS, **options)


@pytest.fixture(scope="module")
def local():
    return ou_sweep()


# cheap bookkeeping sweep: no JAX
CHEAP_GRID = {"a": [1.0, 2.0, 3.0], "b": [10, 20]}


def identity(**params):
    return params


def cheap_run(params, seed):
    return {"total": params["a"] + params["b"], "draws": np.random.default_rng(seed).normal(size=3)}


def counting(run):
    """``run`` that counts its calls (same name, so the Dataset attrs are unchanged)."""

    @functools.wraps(run)
    def wrapper(system, seed):
        wrapper.calls += 1
        return run(system, seed)

    wrapper.calls = 0
    return wrapper


def cheap_sweep(**options):
    options.setdefault("run", cheap_run)
    return sweep(identity, CHEAP_GRID, progress=False, **options)


def sweep_files(n_chunks, result=True):
    """The files of a finished ``out`` directory: manifest, chunks and their checksums, result."""
    chunks = [f.format(i) for i in range(n_chunks) for f in (CHUNK_FILE, CHECKSUM_FILE)]
    return sorted([MANIFEST] + chunks + ([RESULT_FILE] if result else []))


# ----------------------------------------------------------------------------- the Dataset


def test_dims_coords_and_attrs(local):
    assert dict(local.sizes) == {"theta": 3, "sigma": 2, "time": 4}
    assert local["var"].dims == ("theta", "sigma")
    assert local["var_curve"].dims == ("theta", "sigma", "time")
    np.testing.assert_array_equal(local["theta"], GRID["theta"])
    np.testing.assert_array_equal(local["sigma"], GRID["sigma"])
    np.testing.assert_array_equal(local["time"], TS)
    assert local["var"].dtype == np.float64
    assert local.attrs["seed"] == 0
    assert "theta[3] x sigma[2]" in local.attrs["description"]
    assert local.attrs["run"].endswith("variances") and local.attrs["factory"].endswith("ou")
    seeds = local[POINT_SEED]
    assert seeds.dims == ("theta", "sigma") and seeds.dtype == np.int32
    np.testing.assert_array_equal(seeds.values.ravel(), point_seeds(0, 6))
    assert len(set(seeds.values.ravel().tolist())) == 6


def test_values_match_direct_runs_and_theory(local):
    for theta in GRID["theta"]:
        for sigma in GRID["sigma"]:
            point = local.sel(theta=theta, sigma=sigma)
            direct = variances(ou(theta, sigma), int(point[POINT_SEED]))
            np.testing.assert_array_equal(point["var_curve"], direct["var_curve"])
            assert float(point["var"]) == direct["var"]
    exact = local["sigma"] ** 2 / (2 * local["theta"]) * (1 - np.exp(-2 * local["theta"] * local["time"]))
    np.testing.assert_allclose(local["var_curve"], exact.transpose(*local["var_curve"].dims), rtol=VARIANCE_RTOL)


def test_chunking_does_not_change_the_result(local):
    one, five = ou_sweep(chunk_size=1), ou_sweep(chunk_size=5)
    xr.testing.assert_identical(one, five)
    xr.testing.assert_identical(one, local)


def test_seed_changes_the_noise_only():
    a, b = cheap_sweep(seed=0), cheap_sweep(seed=1)
    xr.testing.assert_identical(a["total"], b["total"])
    assert not np.array_equal(a["draws"], b["draws"])
    assert b.attrs["seed"] == 1
    assert a["draws"].dims == ("a", "b", "draws_dim0")


def test_mixed_grid_types_round_trip_the_file(tmp_path):
    def run(params, seed):
        return {"x": float(len(params["method"])) * params["n"], "flag": params["on"]}

    ds = sweep(identity, {"method": ["euler", "heun"], "n": [1, 2, 3], "on": [True, False]}, run=run,
               out=tmp_path / "s", progress=False)
    assert ds["x"].sel({"method": "euler", "n": 3, "on": True}) == 15.0  # dict: sel has a method= keyword
    assert ds["flag"].dtype == bool
    saved = xr.load_dataset(tmp_path / "s" / RESULT_FILE, engine="scipy")
    xr.testing.assert_identical(saved, ds)


# ----------------------------------------------------------------------------- files and resume


def test_resume_computes_only_missing_chunks(tmp_path, local):
    out = tmp_path / "ou"
    first_run = counting(variances)
    first = ou_sweep(out=out, chunk_size=2, run=first_run)
    assert first_run.calls == 6
    assert sorted(os.listdir(out)) == sweep_files(3)
    xr.testing.assert_identical(first, local)
    xr.testing.assert_identical(xr.load_dataset(out / RESULT_FILE, engine="scipy"), first)  # float64 exact

    os.remove(out / CHUNK_FILE.format(1))
    os.remove(out / RESULT_FILE)
    second_run = counting(variances)
    second = ou_sweep(out=out, chunk_size=2, run=second_run)
    assert second_run.calls == 2  # chunk 1 = grid points 2 and 3, nothing else
    xr.testing.assert_identical(second, first)
    xr.testing.assert_identical(xr.load_dataset(out / RESULT_FILE, engine="scipy"), first)

    third_run = counting(variances)
    xr.testing.assert_identical(ou_sweep(out=out, chunk_size=2, run=third_run), first)
    assert third_run.calls == 0


def failing_while(flag):
    """``cheap_run`` that fails at a = 3 while the file ``flag`` exists (a passing outage: the
    code does not change, so a rerun resumes)."""

    def run(params, seed):
        if params["a"] == 3.0 and os.path.exists(flag):
            raise RuntimeError("boom")
        return cheap_run(params, seed)

    return run


def test_failure_keeps_finished_chunks(tmp_path):
    out, flag = tmp_path / "s", tmp_path / "outage"
    flag.touch()
    flaky = counting(failing_while(str(flag)))
    with pytest.raises(RuntimeError, match="boom") as info:
        cheap_sweep(run=flaky, out=out, chunk_size=1)
    if sys.version_info >= (3, 11):  # exceptions carry notes
        assert "at grid point {'a': 3.0, 'b': 10}" in info.value.__notes__[-1]
    assert sorted(f for f in os.listdir(out) if f.startswith("chunk-")) == sweep_files(4, result=False)[:-1]
    flag.unlink()
    flaky.calls = 0
    xr.testing.assert_identical(cheap_sweep(run=flaky, out=out, chunk_size=1).drop_attrs(),
                                cheap_sweep().drop_attrs())
    assert flaky.calls == 2
    assert sorted(os.listdir(out)) == sweep_files(6)


def test_unreadable_chunk_is_recomputed(tmp_path):
    out = tmp_path / "s"
    run = counting(cheap_run)
    reference = cheap_sweep(out=out, chunk_size=2, run=run)
    (out / CHUNK_FILE.format(0)).write_bytes(b"not a zip file")
    run.calls = 0
    with pytest.warns(RuntimeWarning, match="chunk-0.npz does not match its checksum .* computing chunk 0 again"):
        again = cheap_sweep(run=run, out=out, chunk_size=2)
    assert run.calls == 2
    xr.testing.assert_identical(again, reference)


@pytest.mark.parametrize("change, match", [
    ({"seed": 1}, "different seed"),
    ({"chunk_size": 3}, "different chunk_size"),
    ({"grid": {"a": [1.0, 2.0, 4.0], "b": [10, 20]}}, "different grid"),
    ({"grid": {"b": [10, 20], "a": [1.0, 2.0, 3.0]}}, "different grid"),  # order = flat index
    ({"grid": {"a": [1.0, 2.0, 3.0], "b": [10.0, 20.0]}}, "different grid"),  # float, not int
])
def test_mismatched_manifest_is_refused(tmp_path, change, match):
    out = tmp_path / "s"
    cheap_sweep(out=out, chunk_size=2)
    options = {"out": out, "chunk_size": 2, "run": cheap_run, "progress": False} | change
    grid = options.pop("grid", CHEAP_GRID)
    with pytest.raises(ValueError, match=match + ".*pass recompute=True .*choose another out directory, or delete"):
        sweep(identity, grid, **options)


def test_out_with_foreign_files_is_refused(tmp_path):
    (tmp_path / "file").write_text("x")
    with pytest.raises(ValueError, match="is a file; out must be a directory"):
        cheap_sweep(out=tmp_path / "file")
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "chunk-0.npz").write_text("x")
    with pytest.raises(ValueError, match="no manifest.json"):
        cheap_sweep(out=tmp_path / "d")


# ----------------------------------------------------------------------------- stale results


SCALE = 1.0


def scale(x):
    return SCALE * x


def scaled_run(params, seed):
    """Reads a module-level helper and, through it, a module-level constant."""
    return {"total": scale(params["a"] + params["b"])}


def make_run(factor):
    def run(params, seed):
        return {"total": factor * params["a"]}

    return run


def doubled(**params):
    return {k: 2 * v for k, v in params.items()}


def test_changed_run_is_refused_and_recompute_replaces_it(tmp_path):
    out = tmp_path / "s"
    cheap_sweep(out=out, chunk_size=2)
    run = counting(make_run(3.0))
    with pytest.raises(ValueError, match=r"holds results of a different run: its code, defaults, closure values .* "
                                         r"\(run: saved test_sweep.cheap_run .*, this call "
                                         r"test_sweep.make_run.<locals>.run .*\), so they would be stale; "
                                         r"pass recompute=True"):
        cheap_sweep(out=out, chunk_size=2, run=run)
    fresh = cheap_sweep(out=out, chunk_size=2, run=run, recompute=True)
    assert run.calls == 6
    np.testing.assert_array_equal(fresh["total"].values, 3.0 * np.repeat(CHEAP_GRID["a"], 2).reshape(3, 2))
    run.calls = 0
    xr.testing.assert_identical(cheap_sweep(out=out, chunk_size=2, run=run), fresh)  # resumed: nothing computed
    assert run.calls == 0 and sorted(os.listdir(out)) == sweep_files(3)


@pytest.mark.parametrize("first, second, what", [
    ({"run": make_run(1.0)}, {"run": make_run(2.0)}, "run"),  # a closure value
    ({"run": scaled_run}, {"run": scaled_run, "SCALE": 2.0}, "run"),  # a module constant it reads
    ({"run": scaled_run}, {"run": scaled_run, "scale": lambda x: x + 1}, "run"),  # a helper it calls
    ({"run": cheap_run}, {"run": cheap_run, "factory": doubled}, "factory"),
])
def test_what_run_and_factory_read_is_part_of_their_fingerprint(tmp_path, monkeypatch, first, second, what):
    out = tmp_path / "s"
    sweep(first.get("factory", identity), CHEAP_GRID, run=first["run"], out=out, progress=False)
    for name in ("SCALE", "scale"):
        if name in second:
            monkeypatch.setitem(globals(), name, second[name])
    with pytest.raises(ValueError, match=f"holds results of a different {what}:"):
        sweep(second.get("factory", identity), CHEAP_GRID, run=second["run"], out=out, progress=False)


def test_the_same_code_rebuilt_resumes(tmp_path, monkeypatch):
    out = tmp_path / "s"
    first = sweep(identity, CHEAP_GRID, run=make_run(1.0), out=out, progress=False)
    chunks, real = [], regflow._sweep.run_chunk
    monkeypatch.setattr(regflow._sweep, "run_chunk", lambda *a: chunks.append(a[2]) or real(*a))
    xr.testing.assert_identical(sweep(identity, CHEAP_GRID, run=make_run(1.0), out=out, progress=False), first)
    assert chunks == []


def _compiled(source):
    namespace = {"__name__": "user_code", "np": np}
    exec(compile(source, "<user code>", "exec"), namespace)
    return namespace["run"]


def test_fingerprint_reads_code_not_layout():
    plain = _compiled("def run(p, s):\n    return {'x': p['a'] * 2}\n")
    moved = _compiled('\n\n# a comment\ndef run(p, s):\n    """What it does."""\n    # why\n'
                      "    return {'x': p['a'] * 2}\n")
    changed = _compiled("def run(p, s):\n    return {'x': p['a'] * 3}\n")
    renamed = _compiled("def run(q, s):\n    return {'x': q['a'] * 2}\n")
    assert fingerprint(plain) == fingerprint(moved)
    assert len({fingerprint(plain), fingerprint(changed), fingerprint(renamed)}) == 3
    assert fingerprint(functools.partial(plain, s=1)) != fingerprint(functools.partial(plain, s=2))


FINGERPRINT_SCRIPT = """
import importlib.util, sys
spec = importlib.util.spec_from_file_location("fingerprint", sys.argv[1])
module = importlib.util.module_from_spec(spec)
spec.loader.exec_module(module)
CONFIG = {"lr": 0.1, "names": {"a", "b", "c"}, "order": ("x", "y")}
def run(params, seed):
    return {"hit": params["method"] in {"euler", "heun", "milstein"}, "lr": CONFIG["lr"]}
print(module.fingerprint(run))
"""


def test_fingerprint_is_the_same_in_every_process(tmp_path):
    """Sets and dicts of strings iterate in an order that depends on PYTHONHASHSEED."""
    source = os.path.join(os.path.dirname(regflow._sweep.__file__), "_fingerprint.py")
    script = tmp_path / "fp.py"
    script.write_text(FINGERPRINT_SCRIPT)
    prints = {subprocess.run([sys.executable, str(script), source], capture_output=True, text=True, check=True,
                             env={**os.environ, "PYTHONHASHSEED": seed}).stdout.strip() for seed in ("1", "2")}
    assert len(prints) == 1 and len(prints.pop()) == 64


def test_a_manifest_without_fingerprints_is_refused(tmp_path):
    out = tmp_path / "s"
    cheap_sweep(out=out, chunk_size=2)
    manifest = json.loads((out / MANIFEST).read_text())
    manifest["format"] = 1
    del manifest["fingerprints"]
    (out / MANIFEST).write_text(json.dumps(manifest))
    with pytest.raises(ValueError, match="sweep format 1, which recorded no fingerprints .* pass recompute=True"):
        cheap_sweep(out=out, chunk_size=2)
    xr.testing.assert_identical(cheap_sweep(out=out, chunk_size=2, recompute=True), cheap_sweep(chunk_size=2))


# ----------------------------------------------------------------------------- damaged chunks


def _tamper(path, checksum):
    """Change one result and save a valid npz again: only the checksum can tell."""
    with np.load(path) as data:
        content = {k: data[k] for k in data.files}
    content["result_total"] = content["result_total"] + 1.0
    with open(path, "wb") as fh:
        np.savez(fh, **content)


DAMAGE = {
    "empty": (lambda path, checksum: path.write_bytes(b""), "is empty"),
    "truncated": (lambda path, checksum: path.write_bytes(path.read_bytes()[:-200]),
                  r"does not match its checksum in chunk-1.sha256 \(\d+ bytes: truncated or modified\)"),
    "tampered": (_tamper, "does not match its checksum"),
    "no checksum": (lambda path, checksum: checksum.unlink(), r"has no checksum \(chunk-1.sha256 is missing\)"),
    "bad checksum": (lambda path, checksum: checksum.write_text(""), "has an unreadable checksum file chunk-1.sha256"),
}


@pytest.mark.parametrize("case", list(DAMAGE))
def test_a_damaged_chunk_is_recomputed_with_a_warning_naming_it(tmp_path, case):
    out = tmp_path / "s"
    run = counting(cheap_run)
    reference = cheap_sweep(out=out, chunk_size=2, run=run)
    damage, what = DAMAGE[case]
    damage(out / CHUNK_FILE.format(1), out / CHECKSUM_FILE.format(1))
    run.calls = 0
    chunk = re.escape(str(out / CHUNK_FILE.format(1)))
    with pytest.warns(RuntimeWarning, match=f"^{chunk} {what}.*; computing chunk 1 again$"):
        again = cheap_sweep(out=out, chunk_size=2, run=run)
    assert run.calls == 2
    xr.testing.assert_identical(again, reference)
    assert sorted(os.listdir(out)) == sweep_files(3)
    run.calls = 0
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the repaired chunk is trusted again
        xr.testing.assert_identical(cheap_sweep(out=out, chunk_size=2, run=run), reference)
    assert run.calls == 0


def _sweep_until_killed(out, ready):
    """Run the cheap sweep; hang inside the fsync of chunk 3 (written, not yet in place)."""
    real = os.fsync

    def fsync(fd):
        try:
            target = os.path.basename(os.readlink(f"/proc/self/fd/{fd}"))
        except OSError:
            target = ""
        if target.startswith("." + CHUNK_FILE.format(3) + _files.TMP_MARK):
            ready.set()
            time.sleep(60)
        real(fd)

    os.fsync = fsync
    cheap_sweep(out=out, chunk_size=1)


@pytest.mark.skipif(sys.platform != "linux", reason="forks and reads /proc/self/fd")
@pytest.mark.filterwarnings("ignore:os.fork:RuntimeWarning")
def test_kill_during_a_sweep_then_a_rerun_loses_nothing_and_leaves_no_stray_files(tmp_path, monkeypatch):
    out = tmp_path / "s"
    ctx = multiprocessing.get_context("fork")
    ready = ctx.Event()
    child = ctx.Process(target=_sweep_until_killed, args=(str(out), ready))
    child.start()
    assert ready.wait(30), "the sweep never reached chunk 3"
    os.kill(child.pid, signal.SIGKILL)
    child.join(20)
    stray = [f for f in os.listdir(out) if _files.is_temporary(f)]
    assert len(stray) == 1 and stray[0].startswith(".chunk-3.npz.tmp-")
    assert all((out / CHUNK_FILE.format(i)).exists() for i in range(3)) and not (out / CHUNK_FILE.format(3)).exists()

    reference = cheap_sweep()
    chunks, real = [], regflow._sweep.run_chunk
    monkeypatch.setattr(regflow._sweep, "run_chunk", lambda *a: chunks.append(a[2]) or real(*a))
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # nothing damaged: no warning
        resumed = cheap_sweep(out=out, chunk_size=1)
    assert [p[0] for p in chunks] == [{"a": 2.0, "b": 20}, {"a": 3.0, "b": 10}, {"a": 3.0, "b": 20}]  # chunks 3-5
    xr.testing.assert_identical(resumed, reference)
    assert sorted(os.listdir(out)) == sweep_files(6)


# ----------------------------------------------------------------------------- Dask


@pytest.fixture(scope="module")
def client():
    """Two worker processes; the context managers close them even when a test fails."""
    distributed = pytest.importorskip("distributed")
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                  dashboard_address=None) as cluster, distributed.Client(cluster) as client:
        yield client


def test_dask_cluster_matches_local_run(tmp_path, local, client):
    """Acceptance: chunks computed in two worker processes give the local Dataset bit for bit."""
    remote = ou_sweep(executor=client, chunk_size=2, out=tmp_path / "dask")
    xr.testing.assert_identical(remote, local)
    xr.testing.assert_identical(xr.load_dataset(tmp_path / "dask" / RESULT_FILE, engine="scipy"), local)


def fails_at_a2_b20_while(params, seed, flag):
    if params == {"a": 2.0, "b": 20} and os.path.exists(flag):
        raise RuntimeError("boom")
    return cheap_run(params, seed)


def test_dask_failure_keeps_finished_chunks(tmp_path, client, monkeypatch):
    out, flag = tmp_path / "s", tmp_path / "outage"
    flag.touch()
    run = functools.partial(fails_at_a2_b20_while, flag=str(flag))
    with pytest.raises(RuntimeError, match="boom"):
        cheap_sweep(run=run, executor=client, out=out, chunk_size=1)
    saved = [f for f in os.listdir(out) if f.startswith("chunk-") and f.endswith(".npz")]
    assert CHUNK_FILE.format(3) not in saved
    flag.unlink()
    reference = cheap_sweep()
    chunks, real = [], regflow._sweep.run_chunk  # finish here: executors are interchangeable
    monkeypatch.setattr(regflow._sweep, "run_chunk", lambda *a: chunks.append(a[2]) or real(*a))
    finished = cheap_sweep(run=run, out=out, chunk_size=1)
    xr.testing.assert_identical(finished.drop_attrs(), reference.drop_attrs())
    assert len(chunks) == 6 - len(saved)


# ----------------------------------------------------------------------------- bad input


@pytest.mark.parametrize("kwargs, error, match", [
    ({"grid": {}}, ValueError, "grid is empty"),
    ({"grid": [1.0, 2.0]}, TypeError, "grid must be a dict"),
    ({"grid": {"a": [[1.0, 2.0], [3.0, 4.0]]}}, ValueError, r"grid\['a'\] must be a 1-D sequence"),
    ({"grid": {"a": 1.0}}, ValueError, r"grid\['a'\] must be a 1-D sequence"),
    ({"grid": {"a": []}}, ValueError, r"grid\['a'\] is empty"),
    ({"grid": {"a": [1.0, 1.0]}}, ValueError, "repeats values"),
    ({"grid": {"a": [1.0, np.nan]}}, ValueError, "must be finite"),
    ({"grid": {"a": [None, 1]}}, TypeError, "real numbers, bools or strings"),
    ({"grid": {1: [1.0]}}, TypeError, "grid names must be identifiers"),
    ({"chunk_size": 0}, ValueError, "chunk_size must be at least 1"),
    ({"chunk_size": 1.5}, TypeError, "chunk_size must be a positive int"),
    ({"executor": "threads"}, TypeError, "executor must be None .* or a dask.distributed.Client"),
    ({"seed": -1}, ValueError, r"seed must be in \[0, 2\*\*31\)"),
    ({"seed": 1.0}, TypeError, "seed must be an int"),
    ({"factory": "ou"}, TypeError, "factory must be a callable"),
    ({"run": None}, TypeError, "run must be a callable"),
    ({"progress": "yes"}, TypeError, "progress must be True, False or None"),
    ({"out": 3}, TypeError, "out must be a directory path"),
    ({"dims": {"draws": "x"}}, TypeError, r"dims\['draws'\] must be a tuple"),
    ({"dims": {"draws": ("x", "y")}}, ValueError, r"dims\['draws'\] .* names 2 axes .* shape \(3,\)"),
    ({"dims": {"draws": ("a",)}}, ValueError, "different from the grid names"),
    ({"dims": {"loss": ("x",)}}, ValueError, r"dims names results \['loss'\] that run does not return"),
    ({"coords": {"time": [1, 2]}}, ValueError, r"coords\['time'\] labels no axis"),
    ({"coords": {"draws_dim0": [1, 2]}}, ValueError, r"coords\['draws_dim0'\] has 2 values"),
    ({"coords": {"a": [1, 2, 3]}}, ValueError, "coordinates of grid dimensions are the grid values"),
    ({"run": lambda p, s: [1.0]}, TypeError, "run must return a non-empty dict"),
    ({"run": lambda p, s: {"x": "text"}}, TypeError, "must hold real numbers or bools"),
    ({"run": lambda p, s: {"x": np.zeros(int(p["a"]))}}, ValueError, "same names and shapes at every grid point"),
    ({"run": lambda p, s: {"point_seed": 1.0}}, ValueError, "reserved"),
    ({"run": lambda p, s: {"a": 1.0}}, ValueError, "also grid or dimension names"),
    ({"recompute": "yes"}, TypeError, "recompute must be True or False"),
    ({"recompute": True}, ValueError, "recompute=True discards the results saved in out, but out is None"),
])
def test_bad_input_is_refused(kwargs, error, match):
    options = {"factory": identity, "grid": CHEAP_GRID, "run": cheap_run, "progress": False} | kwargs
    with pytest.raises(error, match=match):
        sweep(options.pop("factory"), options.pop("grid"), **options)


def test_chunks_with_different_layouts_are_refused():
    def run(params, seed):  # the shape changes between chunk 0 (a=1.0) and chunk 1 (a=2.0)
        return {"x": np.zeros(int(params["a"]))}

    with pytest.raises(ValueError, match="chunk 1 gives .* but chunk 0 gives"):
        cheap_sweep(run=run, chunk_size=2)


# ----------------------------------------------------------------------------- progress


def test_progress_switches(monkeypatch):
    assert progress_enabled(True) and not progress_enabled(False)
    monkeypatch.setattr("sys.stderr", io.StringIO())  # not a terminal
    assert not progress_enabled(None)

    class Terminal:
        def isatty(self):
            return True

        def write(self, text):
            pass

        def flush(self):
            pass

    monkeypatch.setattr("sys.stderr", Terminal())
    monkeypatch.delenv(ENV_VAR, raising=False)
    assert progress_enabled(None)
    monkeypatch.setenv(ENV_VAR, "0")
    assert not progress_enabled(None)
    assert progress_enabled(True)  # an explicit argument wins over the environment
    with progress_bar(4, "work") as bar:
        assert bar.disable


def test_sweep_ticks_once_per_chunk(capsys):
    sweep(identity, CHEAP_GRID, run=cheap_run, chunk_size=2, progress=True)
    err = capsys.readouterr().err
    assert "sweep" in err and "3/3" in err and "chunk" in err
    sweep(identity, CHEAP_GRID, run=cheap_run, chunk_size=2, progress=False)
    assert capsys.readouterr().err == ""
