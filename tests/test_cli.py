"""The regflow command."""

import subprocess
import sys

import pytest

from regflow import cli


def test_list(capsys):
    cli.main(["list"])
    out = capsys.readouterr().out
    assert "scalar_net.gradient_flow" in out and "Ginsburg" in out


def test_check_entry_exit_status(capsys):
    assert cli.main(["check", "scalar_net.adaptive_gd"]) == 0
    assert "passed, 0 failed" in capsys.readouterr().out


def test_run_and_save(tmp_path, capsys):
    out = tmp_path / "run.npz"
    assert cli.main(["run", "scalar_net.weight_decay", "--set", "mu=0.1", "--t1", "2", "--out", str(out)]) == 0
    assert out.exists() and "status='ok'" in capsys.readouterr().out
    assert cli.main(["run", "scalar_net.weight_decay", "--t1", "2", "--out", str(out)]) == 2
    assert "overwrite" in capsys.readouterr().err


def test_portrait_png(tmp_path):
    out = tmp_path / "p.png"
    assert cli.main(["portrait", "scalar_net.gradient_flow", "--x", "w1", "--y", "w2", "--out", str(out)]) == 0
    assert out.stat().st_size > 20_000


@pytest.mark.parametrize(
    "argv, message",
    [
        (["run", "scalar_net.nope"], "no catalogue entry 'scalar_net.nope'; entries: scalar_net."),
        (["run", "scalar_net.gradient_flow", "--set", "depth=3"], "has no parameter 'depth'; its parameters: d=2"),
        (["run", "scalar_net.gradient_flow", "--set", "lr=fast"], "--set lr: expected a float"),
        (["portrait", "scalar_net.gradient_flow", "--x", "w9", "--out", "x.png"], "no coordinate 'w9'"),
    ],
)
def test_clear_errors(argv, message):
    with pytest.raises(SystemExit, match=message):
        cli.main(argv)


def test_import_and_cli_print_no_warnings():
    code = "import warnings; warnings.simplefilter('error'); import regflow, regflow.plot, regflow.cli"
    proc = subprocess.run([sys.executable, "-W", "error", "-c", code], capture_output=True, text=True)
    assert proc.returncode == 0 and proc.stderr == "", proc.stderr
    proc = subprocess.run([sys.executable, "-W", "error", "-m", "regflow.cli", "list"], capture_output=True, text=True)
    assert proc.returncode == 0 and proc.stderr == "", proc.stderr
