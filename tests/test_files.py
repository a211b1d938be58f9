"""Files are complete or absent, and a bad one is named: `Trajectory.save` / `Trajectory.load`
(`regflow._trajectory_file`), `Trajectory`'s own validation, and `regflow._files`.

The crash and race tests fork the test process (no second JAX import) and hold the child
inside ``os.fsync`` of its temporary: the moment after the data is written and before it is
put in place, the widest window a crash or a concurrent writer can hit.
"""

import errno
import json
import multiprocessing
import os
import signal
import sys
import time
import warnings
import zipfile

import jax.numpy as jnp
import numpy as np
import pytest
import xarray as xr

import regflow as rf
from regflow import _files
from regflow._trajectory_file import FORMAT_VERSION

T = np.linspace(0.0, 1.0, 6)
Y = np.arange(12.0).reshape(6, 2)
ARGS = {"k": 2.0, "w": np.array([1.0, -3.0]), "steps": 4, "pair": (0.5, [1.0, 2.0]), "none": None}

needs_fork = pytest.mark.skipif(sys.platform != "linux" or "fork" not in multiprocessing.get_all_start_methods(),
                                reason="forks and reads /proc/self/fd")
quiet_fork = pytest.mark.filterwarnings("ignore:os.fork:RuntimeWarning")


def small(**fields):
    fields.setdefault("names", ("a", "b"))
    return rf.Trajectory(t=fields.pop("t", T), y=fields.pop("y", Y), **fields)


def uses_args(y, args):
    return args["k"] * y[0] + args["w"] @ y + args["pair"][1][1]


# ----------------------------------------------------------------------------- saving


def test_save_round_trip_keeps_args_and_evaluate_works(tmp_path):
    traj = small(status="ok", meta={"args_value": ARGS, "seed": 3})
    back = rf.Trajectory.load(traj.save(tmp_path / "run.npz"))
    np.testing.assert_array_equal(back.y, Y)
    np.testing.assert_array_equal(back.t, T)
    assert back.names == ("a", "b") and back.meta["seed"] == 3
    args = back.meta["args_value"]
    assert set(args) == set(ARGS) and args["steps"] == 4 and args["none"] is None
    assert isinstance(args["pair"], tuple) and isinstance(args["pair"][1], list)
    np.testing.assert_array_equal(args["w"], ARGS["w"])
    np.testing.assert_array_equal(back.evaluate(uses_args), traj.evaluate(uses_args))
    other = small(meta={"args_value": ["x", np.float32(1.5), {"n": [True, -(2**40)]}]})
    kept = rf.Trajectory.load(other.save(tmp_path / "other.npz")).meta["args_value"]
    assert kept[0] == "x" and kept[1].dtype == np.float32 and kept[2] == {"n": [True, -(2**40)]}


def test_integrated_args_round_trip(tmp_path):
    ode = rf.ODE(lambda t, y, a: -a["k"] * y, args={"k": 2.0, "w": jnp.array([1.0, -1.0])})
    traj = rf.integrate(ode, [1.0, 0.5], 0.5, ts=np.linspace(0.0, 0.5, 6), backend="scipy")
    back = rf.Trajectory.load(traj.save(tmp_path / "run"))
    reads_args = lambda y, a: a["k"] * (a["w"] @ y)  # noqa: E731
    np.testing.assert_array_equal(back.evaluate(reads_args), traj.evaluate(reads_args))
    assert back.meta["backend"] == "scipy" and back.meta["args"] == {"k": 2.0, "w": [1.0, -1.0]}


def diverged_ensemble():
    y = np.ones((2, 6, 2))
    y[1, 4:] = np.nan
    return rf.Trajectory(t=T, y=y, diverged_at=[np.inf, 0.7],
                         status="diverged at t=0.7 (1 of 2 paths; see diverged_at)")


def test_diverged_at_round_trips_the_file_and_xarray(tmp_path):
    traj = diverged_ensemble()
    back = rf.Trajectory.load(traj.save(tmp_path / "ens.npz"))
    np.testing.assert_array_equal(back.diverged_at, [np.inf, 0.7])
    np.testing.assert_array_equal(back.y, traj.y)  # NaN after divergence, as saved
    assert back.status == traj.status and back.is_ensemble
    da = traj.to_xarray()
    np.testing.assert_array_equal(da.attrs["diverged_at"], [np.inf, 0.7])
    da.to_netcdf(tmp_path / "ens.nc", engine="scipy")
    np.testing.assert_array_equal(xr.load_dataarray(tmp_path / "ens.nc", engine="scipy").attrs["diverged_at"],
                                  [np.inf, 0.7])


def test_args_that_cannot_be_stored_are_left_out_with_a_warning(tmp_path):
    traj = small(meta={"args_value": {"k": 2.0, "fn": np.sin}})
    with pytest.warns(UserWarning, match=r"keeps no args: args\['fn'\] \(a ufunc\).*evaluate\(q, args=\.\.\.\)"):
        path = traj.save(tmp_path / "run.npz")
    back = rf.Trajectory.load(path)
    assert "args_value" not in back.meta
    with pytest.raises(TypeError) as info:
        back.evaluate(lambda y, a: a["k"] * y[0])
    assert any("carries no args" in note for note in info.value.__notes__)
    np.testing.assert_array_equal(back.evaluate(lambda y, a: a["k"] * y[0], args={"k": 2.0}), 2.0 * Y[:, 0])


def test_save_refuses_to_replace_and_overwrite_replaces(tmp_path):
    path = small().save(tmp_path / "run.npz")
    with pytest.raises(FileExistsError, match=r"run.npz exists; pass overwrite=True to replace it"):
        small(y=Y + 1).save(path)
    np.testing.assert_array_equal(rf.Trajectory.load(path).y, Y)
    small(y=Y + 1).save(path, overwrite=True)
    np.testing.assert_array_equal(rf.Trajectory.load(path).y, Y + 1)
    assert os.listdir(tmp_path) == ["run.npz"]


@pytest.mark.parametrize("name, saved", [("run", "run.npz"), ("run.npz", "run.npz"), ("run.NPZ", "run.NPZ"),
                                         ("v1.2.npz", "v1.2.npz")])
def test_npz_suffix_rule(tmp_path, name, saved):
    assert small().save(tmp_path / name) == str(tmp_path / saved)
    assert os.listdir(tmp_path) == [saved]
    rf.Trajectory.load(tmp_path / name)  # the path given to save loads too


@pytest.mark.parametrize("name, match", [
    ("run.csv", r"ends in '.csv'.*to_xarray\(\).to_dataframe\(\).to_csv\(path\)"),
    ("run.nc", r"ends in '.nc'.*to_xarray\(\).to_netcdf\(path\)"),
    ("run.v2", r"ends in '.v2': give a path ending in .npz"),
])
def test_other_suffixes_are_refused(tmp_path, name, match):
    with pytest.raises(ValueError, match=match):
        small().save(tmp_path / name)
    assert os.listdir(tmp_path) == []


def test_save_into_a_missing_directory_names_the_path_and_the_fix(tmp_path):
    target = tmp_path / "missing" / "run.npz"
    with pytest.raises(FileNotFoundError, match=rf"cannot write {target}: the directory .*missing does not exist; "
                                                rf"create it first \(e.g. os.makedirs"):
        small().save(target)
    with pytest.raises(IsADirectoryError, match="it is a directory"):
        (tmp_path / "d.npz").mkdir()
        small().save(tmp_path / "d.npz", overwrite=True)
    with pytest.raises(TypeError, match="path must be a file path"):
        small().save(3)


@pytest.mark.parametrize("interrupt", [KeyboardInterrupt, MemoryError])
def test_temporaries_are_removed_when_a_save_is_interrupted(tmp_path, monkeypatch, interrupt):
    def fails(fd):
        raise interrupt()

    monkeypatch.setattr(os, "fsync", fails)
    with pytest.raises(interrupt):
        small().save(tmp_path / "run.npz")
    assert os.listdir(tmp_path) == []


def test_os_errors_name_the_users_path(tmp_path, monkeypatch):
    def full(src, dst):
        raise OSError(errno.ENOSPC, "No space left on device", src)

    monkeypatch.setattr(os, "link", full)
    with pytest.raises(OSError, match=rf"^cannot write {tmp_path / 'run.npz'}: No space left on device$") as info:
        small().save(tmp_path / "run.npz")
    assert info.value.errno == errno.ENOSPC
    assert os.listdir(tmp_path) == []


def test_without_hard_links_the_target_is_still_created_exclusively(tmp_path, monkeypatch):
    def no_links(src, dst):
        raise OSError(errno.EPERM, "Operation not permitted")

    monkeypatch.setattr(os, "link", no_links)
    path = small().save(tmp_path / "run.npz")
    with pytest.raises(FileExistsError, match="overwrite=True"):
        small(y=Y + 1).save(path)
    np.testing.assert_array_equal(rf.Trajectory.load(path).y, Y)
    assert os.listdir(tmp_path) == ["run.npz"]


# ----------------------------------------------------------------------------- races and crashes


def _fsync_hook(hook):
    """``os.fsync`` that calls ``hook()`` first when syncing one of `regflow._files`' temporaries."""
    real = os.fsync

    def fsync(fd):
        try:
            target = os.path.basename(os.readlink(f"/proc/self/fd/{fd}"))
        except OSError:
            target = ""
        if _files.is_temporary(target):
            hook()
        real(fd)

    return fsync


def _race(traj, path, barrier, results, overwrite):
    os.fsync = _fsync_hook(lambda: barrier.wait(20))  # both writers are past the exists-check here
    try:
        traj.save(path, overwrite=overwrite)
        results.put("saved")
    except FileExistsError as err:
        results.put(f"refused: {err}")
    except BaseException as err:  # noqa: BLE001  (reported to the test)
        results.put(f"error: {err!r}")


def _two_writers(path, overwrite):
    ctx = multiprocessing.get_context("fork")
    barrier, results = ctx.Barrier(2), ctx.Queue()
    writers = [ctx.Process(target=_race, args=(small(y=Y + 100 * i), path, barrier, results, overwrite))
               for i in range(2)]
    for w in writers:
        w.start()
    outcome = sorted(results.get(timeout=60) for _ in writers)
    for w in writers:
        w.join(20)
    return outcome


@needs_fork
@quiet_fork
def test_two_concurrent_saves_to_one_path_exactly_one_succeeds(tmp_path):
    path = str(tmp_path / "run.npz")
    refused, saved = _two_writers(path, overwrite=False)  # sorted
    assert saved == "saved"
    assert refused.startswith("refused: ") and "run.npz exists (another process wrote it first)" in refused
    assert "overwrite=True" in refused
    assert os.listdir(tmp_path) == ["run.npz"]
    y = rf.Trajectory.load(path).y
    assert np.array_equal(y, Y) or np.array_equal(y, Y + 100)


@needs_fork
@quiet_fork
def test_two_concurrent_overwrites_leave_one_whole_file(tmp_path):
    path = str(tmp_path / "run.npz")
    assert _two_writers(path, overwrite=True) == ["saved", "saved"]
    assert os.listdir(tmp_path) == ["run.npz"]
    y = rf.Trajectory.load(path).y
    assert np.array_equal(y, Y) or np.array_equal(y, Y + 100)


def _save_and_hang(traj, path, ready):
    os.fsync = _fsync_hook(lambda: (ready.set(), time.sleep(60)))
    traj.save(path)


@needs_fork
@quiet_fork
def test_kill_during_save_then_a_rerun_succeeds_and_no_temporary_remains(tmp_path):
    big = rf.Trajectory(t=np.linspace(0.0, 1.0, 1000), y=np.random.default_rng(0).normal(size=(1000, 500)))
    path = tmp_path / "big.npz"
    ctx = multiprocessing.get_context("fork")
    ready = ctx.Event()
    child = ctx.Process(target=_save_and_hang, args=(big, str(path), ready))
    child.start()
    assert ready.wait(30), "the child never reached fsync"
    os.kill(child.pid, signal.SIGKILL)
    child.join(20)
    (stray,) = os.listdir(tmp_path)  # what the kill left: a temporary, never the target
    assert _files.is_temporary(stray) and stray.startswith(".big.npz.tmp-") and not path.exists()
    assert os.path.getsize(tmp_path / stray) > big.flat.nbytes
    assert not list(tmp_path.glob("*.npz"))  # a dotfile with no .npz suffix: no reader takes it for data
    assert big.save(path) == str(path)
    assert os.listdir(tmp_path) == ["big.npz"]
    np.testing.assert_array_equal(rf.Trajectory.load(path).y, big.y)


@needs_fork
@quiet_fork
def test_only_temporaries_of_dead_processes_on_this_host_are_removed(tmp_path):
    ctx = multiprocessing.get_context("fork")
    dead = ctx.Process(target=lambda: None)
    dead.start()
    dead.join()
    target = str(tmp_path / "run.npz")
    live = _files.temporary_path(target).replace(f"-{os.getpid()}-", f"-{os.getppid()}-")
    gone = _files.temporary_path(target).replace(f"-{os.getpid()}-", f"-{dead.pid}-")
    host = os.path.basename(_files.temporary_path(target)).split("-")[1]
    elsewhere = gone.replace(f"-{host}-", "-00000000-" if host != "00000000" else "-11111111-")
    other = _files.temporary_path(str(tmp_path / "other.npz")).replace(f"-{os.getpid()}-", f"-{dead.pid}-")
    for name in (live, gone, elsewhere, other):
        open(name, "w").close()
    small().save(target)
    left = sorted(os.listdir(tmp_path))
    assert os.path.basename(gone) not in left
    assert sorted(os.path.basename(p) for p in (live, elsewhere, other)) + ["run.npz"] == sorted(left)
    assert _files.remove_stale_temporaries(str(tmp_path)) == [other]


# ----------------------------------------------------------------------------- loading


def _write(path, **arrays):
    with open(path, "wb") as fh:
        np.savez(fh, **arrays)


def _forge(tmp_path, name, header=None, **arrays):
    """A copy of a good file with some header fields or arrays changed."""
    good = small(meta={"args_value": {"k": 1.0}}).save(tmp_path / "good.npz", overwrite=True)
    with np.load(good) as data:
        content = {k: data[k] for k in data.files}
    head = json.loads(str(content["header"]))
    head.update(header or {})
    content.update(arrays, header=np.array(json.dumps(head)))
    _write(tmp_path / name, **content)
    return tmp_path / name


def _zip_without_npy(path):
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("notes.txt", "hello")


def _damaged(tmp_path, name):
    data = bytearray(open(small().save(tmp_path / "good.npz", overwrite=True), "rb").read())
    data[data.find(Y[3].tobytes())] ^= 0xFF  # one flipped byte inside y
    (tmp_path / name).write_bytes(bytes(data))


def _truncated(tmp_path, name):
    data = open(small().save(tmp_path / "good.npz", overwrite=True), "rb").read()
    (tmp_path / name).write_bytes(data[: len(data) // 2])


BAD_FILES = {
    "text": (lambda tp, n: (tp / n).write_text("t,y\n0,1\n"), "it is not an .npz archive"),
    "empty": (lambda tp, n: (tp / n).write_bytes(b""), "the file is empty"),
    "npy": (lambda tp, n: np.save(open(tp / n, "wb"), np.zeros(3)), r"it holds one .npy array of shape \(3,\)"),
    "other zip": (lambda tp, n: _zip_without_npy(tp / n), r"it has no 'header', 't', 'y' entries"),
    "foreign npz": (lambda tp, n: _write(tp / n, a=np.zeros(2)),
                    r"it has no 'header', 't', 'y' entries \(it holds \['a'\]\)"),
    "truncated": (_truncated, "it is not a readable .npz archive, perhaps truncated or damaged"),
    "damaged": (_damaged, r"its 'y' entry cannot be read .*CRC"),
    "pickled": (lambda tp, n: _write(tp / n, header=np.array("{}"), t=np.array([0, 1], dtype=object), y=Y[:2]),
                r"its 't' entry cannot be read .*allow_pickle"),
    "header not json": (lambda tp, n: _write(tp / n, header=np.array("{nope"), t=T, y=Y), "its header is not JSON"),
    "3 names for 2 columns": (lambda tp, n: _forge(tp, n, {"names": ["a", "b", "c"]}),
                              r"it has 3 names for 2 columns of states \(shape \(6, 2\)\)"),
    "5 times for 6 rows": (lambda tp, n: _forge(tp, n, t=np.linspace(0, 1, 5)),
                           r"it has 5 times for 6 rows of states"),
    "structure vs y": (lambda tp, n: _forge(tp, n, {"structure": {"shapes": [[3]], "leaf_names": [""],
                                                                   "skeleton": 0}}),
                       r"its structure has 3 coordinates .* but its states have 2 columns"),
    "bad skeleton": (lambda tp, n: _forge(tp, n, {"structure": {"shapes": [[2]], "leaf_names": [""],
                                                                 "skeleton": {"set": [0]}}}),
                     "its structure's skeleton is malformed"),
    "ensemble vs y": (lambda tp, n: _forge(tp, n, {"ensemble": True}), "its header says ensemble=True but its states"),
    "status": (lambda tp, n: _forge(tp, n, {"status": 3}), r"its header's 'status' is int, expected str"),
    "decreasing times": (lambda tp, n: _forge(tp, n, t=T[::-1].copy()), "t must be strictly increasing"),
    "diverged_at": (lambda tp, n: _forge(tp, n, diverged_at=np.zeros(4)),
                    r"its diverged_at has shape \(4,\) for 1 paths"),
    "args": (lambda tp, n: _forge(tp, n, {"args_value": {"array": 7}}), "its args cannot be rebuilt"),
    "format": (lambda tp, n: _forge(tp, n, {"format": "x"}), r"its header has format 'x'"),
}


@pytest.mark.parametrize("case", list(BAD_FILES))
def test_a_file_that_is_not_a_trajectory_is_named_with_the_problem(tmp_path, case):
    make, what = BAD_FILES[case]
    make(tmp_path, "bad.npz")
    with pytest.raises(ValueError, match=rf"^{tmp_path / 'bad.npz'} is not a regflow trajectory file: {what}"):
        rf.Trajectory.load(tmp_path / "bad.npz")


def test_load_of_a_newer_format_or_a_missing_file(tmp_path):
    newer = _forge(tmp_path, "new.npz", {"format": FORMAT_VERSION + 1})
    with pytest.raises(ValueError, match="written by a newer regflow .* upgrade regflow"):
        rf.Trajectory.load(newer)
    with pytest.raises(FileNotFoundError, match="no trajectory file .*nothing.npz: it does not exist; check the path"):
        rf.Trajectory.load(tmp_path / "nothing.npz")
    with pytest.raises(ValueError, match=r"like= has leaf shapes \(\(3,\),\) but .* holds \(\(2,\),\)"):
        rf.Trajectory.load(small().save(tmp_path / "ok.npz"), like=np.zeros(3))


def test_older_formats_still_load(tmp_path):
    version2 = _forge(tmp_path, "v2.npz", {"format": 2})
    with np.load(version2) as data:
        content = {k: data[k] for k in data.files if not k.startswith("args_")}
    head = json.loads(str(content["header"]))
    del head["args_value"]  # format 2 kept no args
    content["header"] = np.array(json.dumps(head))
    _write(version2, **content)
    back = rf.Trajectory.load(version2)
    np.testing.assert_array_equal(back.y, Y)
    assert back.names == ("a", "b") and "args_value" not in back.meta
    _write(tmp_path / "v1.npz", t=T, y=Y[None], header=np.array(json.dumps(
        {"format": 1, "names": ["a", "b"], "status": "ok", "meta": {"seed": 1}})))
    back = rf.Trajectory.load(tmp_path / "v1.npz")
    assert back.is_ensemble and back.paths == 1 and back.meta == {"seed": 1}
    np.testing.assert_array_equal(back.y[0], Y)


# ----------------------------------------------------------------------------- Trajectory's own fields


@pytest.mark.parametrize("fields, error, match", [
    ({"t": [0.0, 0.5, 0.5, 0.7, 0.8, 1.0]}, ValueError, r"t must be strictly increasing; t\[1\] = 0.5 is followed"),
    ({"t": T[::-1]}, ValueError, "t must be strictly increasing"),
    ({"t": T.reshape(6, 1)}, ValueError, r"t must be 1-D .* got shape \(6, 1\)"),
    ({"t": np.where(T > 0.5, np.inf, T)}, ValueError, "t must be finite"),
    ({"t": ["0"] * 6}, TypeError, "t must hold real numbers"),
    ({"t": np.ones(6, bool)}, TypeError, "t must hold times"),
    ({"t": T[:4]}, ValueError, r"y holds 6 states .* but t has 4 times"),
    ({"y": Y[:, 0]}, ValueError, r"y must have shape \(n, dim\) or \(paths, n, dim\)"),
    ({"y": Y + 1j}, TypeError, "y must hold real numbers, got complex values"),
    ({"y": [[1.0, 2.0], [3.0]]}, TypeError, "y must be an array of real numbers"),
    ({"names": ("a",)}, ValueError, "names has 1 entries but the state has 2 coordinates"),
    ({"names": ("a", "b", "c")}, ValueError, "names has 3 entries"),
    ({"names": ("a", "a")}, ValueError, r"names must be distinct; \['a'\] repeat"),
    ({"names": ("a", "")}, TypeError, "names must be non-empty strings"),
    ({"names": "ab"}, TypeError, "names must be a sequence of strings"),
    ({"status": "fine"}, ValueError, "status must be 'ok' or a text starting with 'diverged' or 'failed'"),
    ({"status": None}, ValueError, "status must be 'ok'"),
    ({"ensemble": True}, ValueError, r"ensemble=True but y has leading axes \(6,\)"),
    ({"diverged_at": [1.0, 2.0]}, ValueError, r"diverged_at must have shape \(1,\)"),
    ({"diverged_at": [np.nan]}, ValueError, "diverged_at must not hold NaN"),
    ({"meta": [1]}, TypeError, "meta must be a dict"),
    ({"structure": "vector"}, TypeError, "structure must be a regflow Structure"),
])
def test_trajectory_validates_its_fields(fields, error, match):
    with pytest.raises(error, match=match):
        small(**fields)


def test_pytree_trajectories_are_checked_against_their_structure():
    state = {"W": jnp.zeros((2, 2)), "b": jnp.zeros(3)}
    traj = rf.integrate(rf.ODE(lambda t, y, a: {"W": -y["W"], "b": -y["b"]}), state, 0.2, ts=np.linspace(0, 0.2, 3),
                        backend="scipy")
    with pytest.raises(ValueError, match=r"flat must have shape \(n, 7\)"):
        rf.Trajectory.from_flat(traj.t, traj.flat[:, :6], traj.structure)
    with pytest.raises(ValueError, match=r"y's leaf 'W' of shape \(3, 3, 2\) must be \(n, \*\(2, 2\)\)"):
        rf.Trajectory(t=traj.t, y={"W": np.zeros((3, 3, 2)), "b": np.zeros((3, 3))}, structure=traj.structure)
    with pytest.raises(ValueError, match="different leading"):
        rf.Trajectory(t=traj.t, y={"W": np.zeros((3, 2, 2)), "b": np.zeros((2, 3, 3))}, structure=traj.structure)
    assert repr(rf.Trajectory.from_flat(np.zeros(0), np.zeros((0, 7)), traj.structure)).count("no times") == 1


# ----------------------------------------------------------------------------- helpers


def test_write_file_publishes_complete_files_only(tmp_path):
    target = str(tmp_path / "f.bin")

    def half_then_fail(fh):
        fh.write(b"x" * 1000)
        raise RuntimeError("disk gone")

    with pytest.raises(RuntimeError, match="disk gone"):
        _files.write_file(target, half_then_fail)
    assert os.listdir(tmp_path) == []
    assert _files.write_text(target, "one") == target
    with pytest.raises(FileExistsError, match="f.bin exists"):
        _files.write_text(target, "two")
    assert open(target).read() == "one"
    _files.write_text(target, "two", overwrite=True)
    assert open(target).read() == "two" and os.listdir(tmp_path) == ["f.bin"]
    assert _files.sha256_file(target) == "3fc4ccfe745870e2c0d99f71f30ff0656c8dedd41cc1d7d3d376b0dbe685e2f3"
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert not _files.is_temporary("f.bin") and _files.is_temporary(os.path.basename(_files.temporary_path(target)))
