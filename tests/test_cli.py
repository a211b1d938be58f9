"""The regflow command: exit statuses, help, outputs checked before computing, formats by
extension, validation of flag values, and users' own systems as ``module:attr``."""

import argparse
import csv
import importlib.metadata
import os
import re
import subprocess
import sys
import textwrap
import uuid

import numpy as np
import pytest
import xarray as xr

import regflow as rf
from regflow import _catalogue, cli
from regflow._check_pool import check_entries
from regflow._cli_args import UsageError
from regflow._cli_targets import catalogue_names
from regflow._cli_output import TRAJECTORY_FORMATS, check_target, write_trajectory

#: The cheapest run of a catalogue entry (scipy compiles only the vector field).
CHEAP_RUN = ["run", "scalar_net.weight_decay", "--t1", "1", "--backend", "scipy"]

USER_MODULE = """
import jax
import jax.numpy as jnp
import regflow as rf

rotation = rf.ODE(lambda t, y, a: jnp.array([-y[1], y[0]]), names=("x", "y"))
noisy = rf.SDE(lambda t, y, a: -y, lambda t, y, a: 0.1 * jnp.ones_like(y), noise="diagonal", names=("x", "y"))
halve = rf.Map(lambda k, y, a: 0.5 * y, dt=0.5, names=("x", "y"))
radius = lambda y, a: y[0] ** 2 + y[1] ** 2
holds = rf.Method(flow=rotation, y0=[[1.0, 0.0]], t1=1.0, options={"backend": "scipy"},
                  claims=[rf.Conserved(radius, source="circles")])
fails = rf.Method(flow=rotation, y0=[[1.0, 0.0]], t1=1.0, options={"backend": "scipy"},
                  claims=[rf.Conserved(lambda y, a: y[0], source="x is not conserved")])
as_entry = rf.Entry("NAME.as_entry", lambda: holds, source="an Entry object")


@rf.entry("NAME.spiral", source="a spiral")
def spiral(k: float = 1.0):
    field = lambda t, y, a: jnp.array([-a * y[0] - y[1], y[0] - a * y[1]])
    return rf.Method(flow=rf.ODE(field, names=("x", "y"), args=k), y0=[[1.0, 0.0]], t1=1.0,
                     options={"backend": "scipy"}, claims=[rf.Monotone(radius, source="the radius decays")])


@rf.entry("NAME.broken", source="raises")
def broken():
    raise RuntimeError("boom inside the factory")


decay = rf.ODE(lambda t, y, a: jax.tree_util.tree_map(lambda leaf: -leaf, y))     # any pytree state
blowup = rf.ODE(lambda t, y, a: y ** 2, names=("x",))                 # x(t) = 1 / (1 - t) from x(0) = 1
@rf.entry("NAME.interrupted", source="Ctrl-C while building")
def interrupted():
    raise KeyboardInterrupt


@rf.entry("NAME.needs", source="a parameter without a default")
def needs(k):
    return holds


number = 3


def undecorated():
    return holds
"""


def run_cli(capsys, *argv):
    """(exit status, stdout, stderr) of ``regflow argv`` in this process."""
    status = cli.main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return status, out, err


@pytest.fixture(scope="module")
def user(tmp_path_factory):
    """The name of a user's module (in its own directory on sys.path); the catalogue's
    registry is restored afterwards."""
    rf.catalogue()  # import the catalogue's modules before the registry is swapped
    name = f"user_{uuid.uuid4().hex[:8]}"
    directory = tmp_path_factory.mktemp("user")
    (directory / f"{name}.py").write_text(USER_MODULE.replace("NAME", name))
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(sys, "path", [str(directory), *sys.path])
        mp.setattr(_catalogue, "_REGISTRY", dict(_catalogue._REGISTRY))
        yield name
        sys.modules.pop(name, None)


@pytest.fixture
def no_computing(monkeypatch):
    """Building an entry fails loudly: a command that refuses up front never gets there."""

    def build(self, **params):
        raise AssertionError("computed before refusing")

    monkeypatch.setattr(_catalogue.Entry, "build", build)


# ----------------------------------------------------------------------------- exit statuses, help


def test_exit_statuses_are_distinct_and_in_the_help(capsys):
    codes = (cli.EXIT_OK, cli.EXIT_FAILED, cli.EXIT_USAGE, cli.EXIT_INTERNAL)
    assert codes == (0, 1, 2, 3)
    status, out, _ = run_cli(capsys, "--help")
    assert status == cli.EXIT_OK
    for code, meaning in zip(codes, ("success", "a claim failed", "usage error", "internal error")):
        assert re.search(rf"^\s+{code}\s+{meaning}", out, re.M), meaning


def test_version(capsys):
    status, out, _ = run_cli(capsys, "--version")
    assert status == 0 and out.strip() == f"regflow {importlib.metadata.version('regflow')}"


def test_every_subcommand_and_flag_has_help_and_an_example(capsys):
    parser = cli.build_parser()
    commands = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction)).choices
    assert set(commands) == {"list", "run", "check", "portrait"}
    for name, cmd in commands.items():
        assert cmd.description and cmd.epilog.startswith("examples:"), name
        for action in cmd._actions:
            assert action.help and action.help != argparse.SUPPRESS, (name, action.dest)
            flags = [s for s in action.option_strings if s.startswith("--") and s != "--help"]
            for flag in flags:
                assert re.search(rf"{flag}(\s|=|$)", cmd.epilog, re.M), f"no example of {name} {flag}"
        status, out, _ = run_cli(capsys, name, "--help")
        assert status == 0 and "examples:" in out and f"regflow {name}" in out


def test_argparse_usage_errors_return_the_usage_status(capsys):
    assert run_cli(capsys, "frobnicate")[0] == cli.EXIT_USAGE
    assert run_cli(capsys)[0] == cli.EXIT_USAGE
    status, _, err = run_cli(capsys, "run", "scalar_net.weight_decay", "--no-such-flag")
    assert status == cli.EXIT_USAGE and "--no-such-flag" in err


# ----------------------------------------------------------------------------- list and check


def test_list(capsys):
    status, out, _ = run_cli(capsys, "list")
    assert status == 0 and "scalar_net.gradient_flow" in out and "Ginsburg" in out


def test_check_entry_exit_status(capsys):
    status, out, _ = run_cli(capsys, "check", "scalar_net.adaptive_gd")
    assert status == cli.EXIT_OK and "passed, 0 failed" in out


def test_check_user_methods_and_entries(user, capsys):
    status, out, _ = run_cli(capsys, "check", f"{user}:holds")
    assert status == cli.EXIT_OK and "circles" in out and "PASS" in out
    status, out, _ = run_cli(capsys, "check", f"{user}:fails")
    assert status == cli.EXIT_FAILED and "FAIL" in out and "1 failed" in out
    status, out, _ = run_cli(capsys, "check", f"{user}:spiral")       # an @rf.entry factory
    assert status == cli.EXIT_OK and f"{user}.spiral" in out
    status, out, _ = run_cli(capsys, "check", f"{user}:as_entry")     # an rf.Entry
    assert status == cli.EXIT_OK and f"{user}.as_entry" in out


def test_check_refuses_a_bare_system_and_a_report_of_user_entries(user, tmp_path, capsys):
    status, _, err = run_cli(capsys, "check", f"{user}:rotation")
    assert status == cli.EXIT_USAGE and "declares no claims" in err and "rf.Method" in err
    status, _, err = run_cli(capsys, "check", f"{user}:holds", "--report", tmp_path / "r")
    assert status == cli.EXIT_USAGE and "--report covers catalogue entries" in err
    assert not (tmp_path / "r").exists()


def test_report_target_checked_before_checking(tmp_path, capsys, monkeypatch):
    def never(*args, **kwargs):
        raise AssertionError("checked claims before refusing the report")

    monkeypatch.setattr(rf.claims, "check", never)
    (tmp_path / "report").mkdir()
    (tmp_path / "report" / "report.md").write_text("old")
    (tmp_path / "afile").write_text("")
    for target, message in [(tmp_path / "report", "exists; pass --overwrite to replace it"),
                            (tmp_path / "missing" / "report", "does not exist; create it first"),
                            (tmp_path / "afile", "is a file, not a directory")]:
        status, _, err = run_cli(capsys, "check", "all", "--report", target)
        assert status == cli.EXIT_USAGE and message in err, err
        assert "overwrite=True" not in err
    assert (tmp_path / "report" / "report.md").read_text() == "old"


def test_check_report_overwrite_writes_the_report(tmp_path, capsys, monkeypatch):
    import regflow._report

    written = []
    monkeypatch.setattr(rf.claims, "check", lambda entry, falsify=False: rf.Report(()))
    monkeypatch.setattr(regflow._report, "entry_section", lambda name, report, directory: [f"### {name}"])
    monkeypatch.setattr(regflow._report, "write_report",
                        lambda reports, directory, sections=None: written.append((list(reports), directory,
                                                                                   sections)) or "done")
    (tmp_path / "report.md").write_text("old")
    status, out, _ = run_cli(capsys, "check", "scalar_net.adaptive_gd", "--report", tmp_path, "--overwrite")
    assert status == cli.EXIT_OK
    assert written == [(["scalar_net.adaptive_gd"], str(tmp_path), {"scalar_net.adaptive_gd": ["### scalar_net.adaptive_gd"]})]
    assert "report written to done" in out


def test_check_names_a_family_or_all():
    names = list(_catalogue.catalogue())
    assert catalogue_names("all") == names
    assert catalogue_names("halpern") == [n for n in names if n.startswith("halpern.")] and len(catalogue_names("halpern")) > 1
    assert catalogue_names("halpern.fixed_k") == ["halpern.fixed_k"]
    with pytest.raises(UsageError, match="no catalogue entry 'halpernx'"):
        catalogue_names("halpernx")


def test_check_jobs_must_be_positive(capsys):
    status, _, err = run_cli(capsys, "check", "halpern", "--jobs", "0")
    assert status == cli.EXIT_USAGE and "--jobs must be at least 1" in err


def test_entries_checked_in_worker_processes_match_a_serial_check(tmp_path):
    """Two spawned workers give the rows and report sections of a check in this process."""
    names = ["halpern.strongly_convex", "halpern.fixed_k"]
    serial = list(check_entries(names, directory=str(tmp_path / "serial"), jobs=1))
    pooled = list(check_entries(names, directory=str(tmp_path / "pooled"), jobs=2))
    assert [n for n, _, _ in pooled] == names
    for (_, one, section_one), (_, two, section_two) in zip(serial, pooled):
        assert [(r.claim, r.check, r.passed) for r in one.rows] == [(r.claim, r.check, r.passed) for r in two.rows]
        np.testing.assert_allclose([r.measured for r in one.rows], [r.measured for r in two.rows], rtol=1e-9, atol=1e-14)
        assert section_one == section_two and not two.runs and one.runs
    assert sorted(os.listdir(tmp_path / "serial")) == sorted(os.listdir(tmp_path / "pooled"))


# ----------------------------------------------------------------------------- run: outputs and formats


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """The cheap run saved as .npz and loaded back."""
    path = tmp_path_factory.mktemp("ref") / "ref.npz"
    assert cli.main([*CHEAP_RUN, "--out", str(path)]) == cli.EXIT_OK
    return rf.Trajectory.load(path)


def test_run_npz_round_trip(reference, capsys):
    starts = np.asarray(_catalogue.catalogue()["scalar_net.weight_decay"].build().y0)
    assert reference.ok and reference.coordinate_names == ("w1", "w2")
    assert reference.flat.shape == (starts.shape[0], 201, 2)
    np.testing.assert_array_equal(reference.flat[:, 0], starts)
    assert reference.t[-1] == 1.0 and reference.meta["backend"] == "scipy"


def test_run_netcdf(reference, tmp_path, capsys):
    path = tmp_path / "wd.nc"
    status, out, _ = run_cli(capsys, *CHEAP_RUN, "--out", path)
    assert status == 0 and f"saved {path}" in out
    with xr.open_dataarray(path) as data:
        np.testing.assert_array_equal(data.values, reference.flat)
        np.testing.assert_array_equal(data["time"].values, reference.t)
        assert list(data["var"].values) == ["w1", "w2"] and data.attrs["status"] == "ok"
        assert "scipy" in data.attrs["backend"]


def test_run_tidy_csv(reference, tmp_path, capsys):
    path = tmp_path / "wd.csv"
    assert run_cli(capsys, *CHEAP_RUN, "--out", path)[0] == 0
    with open(path, newline="") as fh:
        rows = list(csv.reader(fh))
    paths, n, _ = reference.flat.shape
    assert rows[0] == ["path", "t", "w1", "w2"] and len(rows) == 1 + paths * n
    values = np.array(rows[1:], dtype=float)
    np.testing.assert_array_equal(values[:, 0], np.repeat(np.arange(paths), n))
    np.testing.assert_array_equal(values[:, 1], np.tile(reference.t, paths))
    np.testing.assert_array_equal(values[:, 2:], reference.flat.reshape(-1, 2))      # exact: floats written by repr


def test_run_csv_of_an_ensemble_has_a_row_per_path_and_time(tmp_path, capsys):
    path = tmp_path / "paths.csv"
    assert run_cli(capsys, *CHEAP_RUN, "--paths", 3, "--out", path)[0] == 0
    with open(path, newline="") as fh:
        rows = list(csv.reader(fh))[1:]
    assert len(rows) == 3 * 201 and [r[0] for r in rows[::201]] == ["0", "1", "2"]


@pytest.mark.parametrize("command", ["run", "portrait"])
def test_existing_out_refused_before_computing(command, tmp_path, capsys, no_computing):
    path = tmp_path / ("x.npz" if command == "run" else "x.png")
    path.write_text("keep me")
    status, _, err = run_cli(capsys, command, "scalar_net.weight_decay", "--out", path)
    assert status == cli.EXIT_USAGE and "exists; pass --overwrite to replace it" in err
    assert "overwrite=True" not in err and path.read_text() == "keep me"


@pytest.mark.parametrize("out, message", [
    ("missing/x.npz", "does not exist; create it first"),
    ("wd.json", "supported extensions: .npz"),
    ("wd.csv.txt", "cannot write a .txt"),
    ("wd", "without an extension"),
    (".", "supported extensions"),
])
def test_bad_out_refused_before_computing(out, message, tmp_path, capsys, monkeypatch, no_computing):
    monkeypatch.chdir(tmp_path)
    status, _, err = run_cli(capsys, "run", "scalar_net.weight_decay", "--out", out)
    assert status == cli.EXIT_USAGE and message in err
    assert os.listdir(tmp_path) == []


def test_out_that_is_a_directory_refused(tmp_path, capsys, no_computing):
    (tmp_path / "d.npz").mkdir()
    status, _, err = run_cli(capsys, "run", "scalar_net.weight_decay", "--out", tmp_path / "d.npz")
    assert status == cli.EXIT_USAGE and "is a directory" in err


def test_overwrite_replaces(reference, tmp_path, capsys):
    path = tmp_path / "wd.npz"
    path.write_text("old")
    assert run_cli(capsys, *CHEAP_RUN, "--out", path, "--overwrite")[0] == 0
    np.testing.assert_array_equal(rf.Trajectory.load(path).flat, reference.flat)


@pytest.mark.parametrize("ext", [".npz", ".nc", ".csv"])
def test_a_file_that_appears_while_running_is_not_replaced(ext, reference, tmp_path):
    path = str(tmp_path / f"late{ext}")
    check_target(path, flag="--out", formats=TRAJECTORY_FORMATS, overwrite=False)
    with open(path, "w") as fh:                                        # another process wins the race
        fh.write("theirs")
    with pytest.raises(UsageError, match=r"exists.*pass --overwrite to replace it"):
        write_trajectory(reference, path, overwrite=False)
    assert open(path).read() == "theirs" and os.listdir(tmp_path) == [f"late{ext}"]    # no temporaries
    write_trajectory(reference, path, overwrite=True)
    assert os.listdir(tmp_path) == [f"late{ext}"] and os.path.getsize(path) > 1000


# ----------------------------------------------------------------------------- run: bad values


@pytest.mark.parametrize("argv, message", [
    (["--paths", "0"], "argument --paths: must be a positive integer, got 0"),
    (["--paths", "-3"], "argument --paths: must be a positive integer"),
    (["--paths", "two"], "argument --paths: expected a positive integer"),
    (["--t1", "0"], "argument --t1: must be a positive finite number"),
    (["--t1", "-1"], "argument --t1: must be a positive finite number"),
    (["--t1", "inf"], "argument --t1: must be a positive finite number"),
    (["--dt", "0"], "argument --dt: must be a positive"),
    (["--seed", "1.5"], "argument --seed: expected an integer seed"),
    (["--seed", str(2**64)], "argument --seed: must fit in 64 bits"),
    (["--y0", "abc"], "argument --y0: expected numbers separated by commas or JSON"),
    (["--y0", "1,nan"], "argument --y0: a start must be finite"),
    (["--y0", "[1, [2, 3]]"], "argument --y0: the lists .* are ragged"),
    (["--backend", "fast"], "argument --backend: invalid choice"),
])
def test_bad_flag_values(argv, message, capsys, no_computing):
    status, _, err = run_cli(capsys, "run", "scalar_net.weight_decay", *argv)
    assert status == cli.EXIT_USAGE and re.search(message, err), err


@pytest.mark.parametrize("argv, message", [
    (["run", "scalar_net.nope"], "no catalogue entry 'scalar_net.nope'; entries: scalar_net."),
    (["run", "scalar_net.gradient_flow", "--set", "depth=3"], "has no parameter 'depth'; its parameters: d=2"),
    (["run", "scalar_net.gradient_flow", "--set", "lr=fast"], "--set lr: expected a float"),
    (["run", "scalar_net.gradient_flow", "--set", "lr=nan"], "--set lr: expected a finite float"),
    (["run", "scalar_net.gradient_flow", "--set", "d=2.5"], "--set d: expected an int"),
    (["run", "scalar_net.gradient_flow", "--set", "d"], "--set takes KEY=VALUE"),
    (["run", "scalar_net.gradient_flow", "--set", "d=2", "--set", "d=3"], "--set d is given twice"),
    (["run", "scalar_net.gradient_flow", "--set", "d=0"],
     r"--set d=0: scalar_net.gradient_flow cannot be built with these values \(ValueError: .*\); choose other"),
    (["run", "scalar_net.gradient_flow", "--dt", "0.1"], "--dt sets the step of an SDE or of a fixed-step method"),
    (["run", "scalar_net.gradient_flow", "--steps", "3"], "--steps applies to an rf.Map"),
    (["run", "scalar_net.gradient_flow", "--y0", "1,2,3"], r"--y0: .*state has shape \(2,\), got \(3,\)"),
    (["portrait", "scalar_net.gradient_flow", "--x", "w9", "--out", "x.png"], "--x: .* no coordinate 'w9'"),
    (["portrait", "scalar_net.gradient_flow", "--x", "w1", "--y", "w1", "--out", "x.png"], "both 'w1'"),
    (["portrait", "sgd_stability.quadratic_1d", "--out", "x.png"], "no phase plane"),
    (["portrait", "scalar_net.gradient_flow", "--out", "x.xyz"], r"cannot write a \.xyz; supported extensions: .*png"),
    (["portrait", "scalar_net.gradient_flow", "--xlim", "2,-2", "--out", "x.png"], "argument --xlim: expected finite"),
])
def test_usage_errors_name_the_fix(argv, message, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    status, _, err = run_cli(capsys, *argv)
    assert status == cli.EXIT_USAGE and re.search(message, err), err
    assert "Traceback" not in err and os.listdir(tmp_path) == []


# ----------------------------------------------------------------------------- users' own systems


def test_run_user_systems(user, capsys):
    status, out, _ = run_cli(capsys, "run", f"{user}:rotation", "--y0", "1,0", "--t1", 1, "--backend", "scipy")
    assert status == 0 and "x(t1): [0.540302]" in out and "y(t1): [0.841471]" in out        # cos 1, sin 1
    status, out, _ = run_cli(capsys, "run", f"{user}:halve", "--y0", "[1, 2]", "--steps", 5)
    assert status == 0 and "x(t1): [0.03125]" in out and "y(t1): [0.0625]" in out
    status, out, _ = run_cli(capsys, "run", f"{user}:halve", "--y0", "1,2", "--t1", 2.5)    # t1 / dt = 5 steps
    assert status == 0 and "x(t1): [0.03125]" in out
    status, out, _ = run_cli(capsys, "run", f"{user}:spiral", "--set", "k=2")
    assert status == 0 and f"{user}.spiral: Trajectory" in out
    status, out, _ = run_cli(capsys, "run", f"{user}:holds", "--t1", 1)
    assert status == 0 and "x(t1): [0.540302]" in out
    status, out, _ = run_cli(capsys, "run", f"{user}:needs", "--set", "k=1")            # no default: read as JSON
    assert status == 0 and "x(t1): [0.540302]" in out


def test_run_pytree_state_from_json(user, tmp_path, capsys):
    start = '{"W": [[1, 2], [3, 4]], "b": [1]}'
    for ext in (".csv", ".nc"):
        path = tmp_path / f"tree{ext}"
        status, out, _ = run_cli(capsys, "run", f"{user}:decay", "--y0", start, "--t1", 1, "--backend", "scipy",
                                 "--out", path)
        assert status == 0 and "W[1,1](t1): [1.471518]" in out                         # 4 / e
    with open(tmp_path / "tree.csv", newline="") as fh:
        rows = list(csv.reader(fh))
    assert rows[0] == ["path", "t", "W[0,0]", "W[0,1]", "W[1,0]", "W[1,1]", "b[0]"]
    np.testing.assert_allclose(np.array(rows[-1][2:], dtype=float), np.array([1, 2, 3, 4, 1]) / np.e, rtol=1e-6)
    with xr.open_dataset(tmp_path / "tree.nc") as data:
        assert data["W"].shape == (1, 201, 2, 2) and data["b"].shape == (1, 201, 1)
        np.testing.assert_allclose(data["W"].values[0, -1], np.array([[1, 2], [3, 4]]) / np.e, rtol=1e-6)


def test_diverged_run_exits_failed_and_is_saved(user, tmp_path, capsys):
    path = tmp_path / "blowup.npz"
    status, out, _ = run_cli(capsys, "run", f"{user}:blowup", "--y0", 1, "--t1", 2, "--backend", "scipy", "--out", path)
    assert status == cli.EXIT_FAILED and "diverged at t=1" in out
    assert rf.Trajectory.load(path).status.startswith("diverged")


@pytest.mark.parametrize("argv, message", [
    ([":rotation", "--t1", "1"], "give its start with --y0"),
    ([":rotation", "--y0", "1,0"], "give the end time with --t1"),
    ([":noisy", "--y0", "1,0", "--t1", "1"], "give the step with --dt"),
    ([":halve", "--y0", "1,2"], "give the number of steps with --steps"),
    ([":halve", "--y0", "1,2", "--t1", "0.1"], "less than one step"),
    ([":halve", "--y0", "1,2", "--steps", "2", "--backend", "scipy"], "--backend: .* is an rf.Map"),
    ([":rotation", "--y0", "1,0", "--t1", "1", "--set", "k=1"], "--set: .* bare rf.ODE without parameters"),
    ([":spiral", "--set", "k=x"], "--set k: expected a float"),
    ([":needs"], "has parameters without a default: k; give them with --set, e.g. --set k=VALUE"),
    ([":nothing"], "has no attribute 'nothing'; entries, methods and systems it defines: rotation, noisy, halve"),
    ([":number"], "is an int; expected an rf.Entry, an @rf.entry factory, an rf.Method"),
    ([":undecorated"], r"is a function; .*decorate the factory with @rf.entry"),
    ([":"], "expected package.module:attr or path/to/file.py:attr"),
    ([":rotation", "--y0", '{"W": [[1, 0]]}', "--t1", "1", "--out", "x.png"], "portrait needs a vector state"),
])
def test_user_reference_errors(argv, message, user, capsys):
    command = "portrait" if "--out" in argv else "run"
    status, _, err = run_cli(capsys, command, user + argv[0], *argv[1:])
    assert status == cli.EXIT_USAGE and re.search(message, err), err


def test_unknown_module_and_file(capsys, tmp_path):
    status, _, err = run_cli(capsys, "run", "no_such_module_xyz:flow")
    assert status == cli.EXIT_USAGE and "cannot import 'no_such_module_xyz'" in err
    status, _, err = run_cli(capsys, "run", tmp_path / "absent.py:flow")
    assert status == cli.EXIT_USAGE and "no such file" in err


def test_file_reference(tmp_path, capsys):
    script = tmp_path / "mine.py"
    script.write_text(textwrap.dedent("""
        import regflow as rf
        double = rf.Map(lambda k, y, a: 2.0 * y, dt=1.0)
    """))
    status, out, _ = run_cli(capsys, "run", f"{script}:double", "--y0", "1", "--steps", 3)
    assert status == 0 and "y0(t1): [8.]" in out


def test_internal_error_status_and_traceback(user, capsys, monkeypatch):
    monkeypatch.delenv(cli.DEBUG_ENV, raising=False)
    status, out, err = run_cli(capsys, "run", f"{user}:broken")
    assert status == cli.EXIT_INTERNAL and "internal error: RuntimeError: boom inside the factory" in err
    assert "--debug" in err and "Traceback" not in err and err.strip().count("\n") == 0
    for argv in (["--debug", "run", f"{user}:broken"], ["run", f"{user}:broken", "--debug"]):
        status, _, err = run_cli(capsys, *argv)
        assert status == cli.EXIT_INTERNAL and "Traceback" in err and "boom inside the factory" in err
    monkeypatch.setenv(cli.DEBUG_ENV, "1")
    status, _, err = run_cli(capsys, "run", f"{user}:broken")
    assert status == cli.EXIT_INTERNAL and "Traceback" in err


def test_interrupt_status(user, capsys):
    status, _, err = run_cli(capsys, "run", f"{user}:interrupted")
    assert status == cli.EXIT_INTERRUPTED == 130 and "interrupted" in err


# ----------------------------------------------------------------------------- portraits


def test_portrait_of_user_systems(user, tmp_path, capsys):
    svg = tmp_path / "rotation.svg"
    status, out, _ = run_cli(capsys, "portrait", f"{user}:rotation", "--y0", "1,0", "--t1", 6, "--backend", "scipy",
                             "--xlim", "-2,2", "--ylim", "-1.5,1.5", "--out", svg)
    assert status == 0 and f"wrote {svg}" in out and b"<svg" in svg.read_bytes()
    png = tmp_path / "halve.png"
    png.write_bytes(b"old")
    status, _, err = run_cli(capsys, "portrait", f"{user}:halve", "--y0", "1,2", "--steps", 6, "--out", png)
    assert status == cli.EXIT_USAGE and "exists; pass --overwrite" in err and png.read_bytes() == b"old"
    status, _, _ = run_cli(capsys, "portrait", f"{user}:halve", "--y0", "1,2", "--steps", 6, "--out", png,
                           "--overwrite")
    assert status == 0
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 20_000
    assert sorted(os.listdir(tmp_path)) == ["halve.png", "rotation.svg"]                  # no temporaries left


def test_portrait_png(tmp_path, capsys):
    out = tmp_path / "p.png"
    status, _, _ = run_cli(capsys, "portrait", "scalar_net.gradient_flow", "--x", "w1", "--y", "w2", "--backend",
                           "scipy", "--out", out)
    assert status == 0 and out.stat().st_size > 20_000


# ----------------------------------------------------------------------------- as a process


def test_python_m_regflow_exit_status_and_no_warnings():
    code = ("import sys, runpy, warnings; warnings.simplefilter('error'); import regflow.plot; "
            "sys.argv = ['regflow', 'run', 'scalar_net.nope']; runpy.run_module('regflow', run_name='__main__')")
    proc = subprocess.run([sys.executable, "-W", "error", "-c", code], capture_output=True, text=True)
    assert proc.returncode == cli.EXIT_USAGE, proc.stderr
    assert proc.stderr.startswith("regflow run: error: no catalogue entry 'scalar_net.nope'"), proc.stderr
    assert "Traceback" not in proc.stderr and "Warning" not in proc.stderr
