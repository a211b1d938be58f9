"""The ``regflow`` command: list, run, check and draw catalogue entries or a user's own systems.

    regflow list
    regflow run NAME [--set K=V ...] [--y0 Y] [--t1 T] [--dt H] [--steps N] [--paths N] [--seed S]
                [--backend B] [--out FILE.npz|.nc|.csv] [--overwrite]
    regflow check NAME|FAMILY|all [--report DIR] [--overwrite] [--falsify] [--jobs N]
    regflow portrait NAME --out FILE.png [--x X --y Y] [--xlim LO,HI --ylim LO,HI] [--overwrite] ...

``NAME`` is a catalogue entry (``regflow list``) or ``package.module:attr`` /
``path/to/file.py:attr`` of a user's `rf.Entry`, `rf.entry` factory, `rf.Method`, or (run,
portrait) bare `rf.ODE`, `rf.SDE`, `rf.Map` with ``--y0``.  Exit status: `EXIT_OK`,
`EXIT_FAILED`, `EXIT_USAGE`, `EXIT_INTERNAL` (see ``regflow --help``).
"""

from __future__ import annotations

import argparse
import importlib.metadata
import os
import re
import sys
import traceback

import numpy as np

from . import _cli_args as read
from ._catalogue import Entry
from ._progress import progress_bar
from ._cli_args import UsageError
from ._cli_output import TRAJECTORY_FORMATS, check_directory, check_target, figure_formats, save_figure, \
    write_trajectory
from ._cli_run import entry_portrait, run, system_portrait
from ._check_pool import MAX_DEFAULT_JOBS
from ._cli_targets import catalogue_names, is_reference, resolve

#: Exit statuses: success; a claim failed (check) or the run diverged (run); the command line
#: asks for something impossible; an unexpected exception; interrupted (Ctrl-C).
EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_INTERNAL = 3
EXIT_INTERRUPTED = 130
#: ``REGFLOW_DEBUG=1`` (any value but empty or 0) prints tracebacks, as ``--debug`` does.
DEBUG_ENV = "REGFLOW_DEBUG"
#: Characters of an unexpected exception's text shown without --debug.
INTERNAL_MESSAGE_CHARS = 400
#: Printed coordinates of ``regflow run``'s final state.
PRINTED_COORDINATES = 20
#: The file ``check --report DIR`` writes (with figures beside it).
REPORT_FILE = "report.md"
#: A command-line value such as ``-2,2`` or ``-.5,1`` (not a flag).
NEGATIVE_VALUE = re.compile(r"-[0-9.]")

EXIT_HELP = f"""\
exit status:
  {EXIT_OK}    success
  {EXIT_FAILED}    a claim failed (check), or the run diverged (run; the trajectory is still saved)
  {EXIT_USAGE}    usage error: unknown name or flag, bad flag or --set value, output that exists
       without --overwrite or whose directory is missing, input regflow rejects
  {EXIT_INTERNAL}    internal error: an unexpected exception (traceback with --debug or {DEBUG_ENV}=1)
  {EXIT_INTERRUPTED}  interrupted (Ctrl-C)

NAME is a catalogue entry (regflow list) or package.module:attr / path/to/file.py:attr of your own
rf.Entry, @rf.entry factory or rf.Method, or for run/portrait an rf.ODE, rf.SDE or rf.Map (with --y0).

examples:
  regflow list
  regflow run scalar_net.weight_decay --set mu=0.1 --t1 20 --out wd.npz
  regflow check all --report report
  regflow portrait scalar_net.gradient_flow --x w1 --y w2 --out portrait.png
  regflow --debug run mysystems:flow --y0 0.3,1.6 --t1 5
"""


def cmd_list(args):
    from ._catalogue import catalogue

    for name, entry in catalogue().items():
        params = ", ".join(f"{k}={v!r}" for k, v in entry.params.items())
        print(f"{name:40s} {entry.source}\n{'':40s} ({params})")
    return EXIT_OK


def cmd_run(args):
    if args.out:
        check_target(args.out, flag="--out", formats=TRAJECTORY_FORMATS, overwrite=args.overwrite)
    label, traj = run(resolve(args.name, systems=True), args)
    print(f"{label}: {traj}")
    names = traj.coordinate_names
    for name, value in list(zip(names, traj.flat[..., -1, :].T))[:PRINTED_COORDINATES]:
        print(f"  {name}(t1): {np.array2string(np.atleast_1d(value), precision=6)}")
    if len(names) > PRINTED_COORDINATES:
        print(f"  ... ({len(names) - PRINTED_COORDINATES} more coordinates; save with --out to see them all)")
    if args.out:
        print(f"saved {write_trajectory(traj, args.out, overwrite=args.overwrite)}")
    return EXIT_OK if traj.ok else EXIT_FAILED


def cmd_check(args):
    from ._check_pool import check_entries, default_jobs
    from .claims import Report

    if is_reference(args.name):
        if args.report:
            raise UsageError(f"--report covers catalogue entries; check {args.name} without it for the claim table")
        names, target = None, resolve(args.name, systems=False)
    else:
        names = catalogue_names(args.name)
    if args.report:
        check_directory(args.report, flag="--report", overwrite=args.overwrite, inside=REPORT_FILE)
    if args.jobs is not None and args.jobs < 1:
        raise UsageError(f"--jobs must be at least 1, got {args.jobs}; e.g. --jobs 2")
    reports, sections = {}, {}
    if names is None:  # a user's entry or method, checked here
        from .claims import check

        reports[target.name] = check(target, falsify=args.falsify)
        print(reports[target.name].table() + "\n", flush=True)
    else:
        jobs = default_jobs(len(names)) if args.jobs is None else min(args.jobs, len(names))
        with progress_bar(len(names), "check", unit="entry") as bar:
            checked = check_entries(names, falsify=args.falsify, directory=args.report, jobs=jobs,
                                    on_start=bar.set_postfix_str)
            for name, report, section in checked:
                reports[name], sections[name] = report, section
                bar.write(report.table() + "\n")
                bar.update()
    total = sum(reports.values(), Report(()))
    scope = "catalogue" if args.name == "all" else args.name
    print(f"{scope}: {total.summary()}", flush=True)
    if args.report:
        from ._report import write_report

        print(f"report written to {write_report(reports, args.report, sections=sections)}")
    return EXIT_OK if total.passed and not (args.falsify and total.vacuous) else EXIT_FAILED


def cmd_portrait(args):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    check_target(args.out, flag="--out", formats=figure_formats(), overwrite=args.overwrite)
    target = resolve(args.name, systems=True)
    fig = entry_portrait(target, args) if isinstance(target, Entry) else system_portrait(target, args)
    try:
        print(f"wrote {save_figure(fig, args.out, overwrite=args.overwrite)}")
    finally:
        plt.close(fig)
    return EXIT_OK


# ----------------------------------------------------------------------------- the parser


def _version():
    try:
        return importlib.metadata.version("regflow")
    except importlib.metadata.PackageNotFoundError:
        from . import __version__

        return __version__


def build_parser():
    formatter = argparse.RawDescriptionHelpFormatter
    parser = argparse.ArgumentParser(prog="regflow", description="Training algorithms as dynamical systems: run, "
                                     "check and draw the catalogue's methods or your own.", epilog=EXIT_HELP,
                                     formatter_class=formatter)
    parser.add_argument("--version", action="version", version=f"regflow {_version()}",
                        help="print regflow's version and exit, e.g. regflow --version")
    parser.add_argument("--debug", action="store_true", help=f"print the traceback of an error (or set {DEBUG_ENV}=1), "
                        "e.g. regflow --debug run NAME")
    debug = argparse.ArgumentParser(add_help=False)
    debug.add_argument("--debug", action="store_true", default=argparse.SUPPRESS,
                       help="print the traceback of an error, e.g. --debug")
    sub = parser.add_subparsers(dest="command", required=True, metavar="{list,run,check,portrait}")

    def command(name, func, summary, examples):
        cmd = sub.add_parser(name, help=summary, description=summary, parents=[debug], formatter_class=formatter,
                             epilog="examples:\n" + "\n".join(f"  {e}" for e in examples))
        cmd.set_defaults(func=func)
        return cmd

    command("list", cmd_list, "list the catalogue's entries with their sources and parameters",
            ["regflow list", "regflow list --debug"])

    run = command("run", cmd_run, "integrate an entry's flow (or a system of your own) and print the final state", [
        "regflow run scalar_net.weight_decay --set mu=0.1 --t1 20 --out wd.npz",
        "regflow run scalar_net.noise_augmentation --paths 100 --seed 3 --dt 0.001 --out noise.nc",
        "regflow run scalar_net.gradient_flow --y0 0.3,1.6 --backend scipy --out gf.csv --overwrite",
        "regflow run mysystems:gd --y0 '[0.3, 1.6]' --steps 500",
        "regflow run --debug path/to/mysystems.py:flow --y0 0.3,1.6 --t1 5"])
    run.add_argument("name", metavar="NAME", help="catalogue entry, or package.module:attr / file.py:attr of your own "
                     "entry, method, ODE, SDE or Map; e.g. scalar_net.weight_decay, mysystems:flow")
    _run_options(run)
    run.add_argument("--paths", type=read.positive_int, metavar="N",
                     help="run N paths from the first start (noise paths of an SDE), e.g. --paths 100")
    run.add_argument("--out", metavar="FILE", help="save the trajectory; the extension picks the format: "
                     + ", ".join(f"{k} {v}" for k, v in TRAJECTORY_FORMATS.items()) + "; e.g. --out wd.npz")
    run.add_argument("--overwrite", action="store_true",
                     help="replace --out if it exists, e.g. --out wd.npz --overwrite")

    chk = command("check", cmd_check, "check an entry's claims (or every entry's) and print a table per entry", [
        "regflow check scalar_net.gradient_flow",
        "regflow check all --report report",
        "regflow check all --report report --overwrite",
        "regflow check scalar_net.gradient_flow --falsify",
        "regflow check halpern --jobs 2",
        "regflow check mysystems:method --debug"])
    chk.add_argument("name", metavar="NAME", help="catalogue entry, a family of them, 'all', or package.module:attr of "
                     "your own entry or method; e.g. scalar_net.gradient_flow or halpern")
    chk.add_argument("--jobs", type=int, metavar="N", help="check entries in N processes side by side (default: one "
                     f"per core, at most {MAX_DEFAULT_JOBS}); e.g. --jobs 1")
    chk.add_argument("--report", metavar="DIR", help=f"write DIR/{REPORT_FILE} with figures (catalogue entries); "
                     "e.g. --report report")
    chk.add_argument("--overwrite", action="store_true",
                     help=f"replace an existing DIR/{REPORT_FILE}, e.g. --report report --overwrite")
    chk.add_argument("--falsify", action="store_true",
                     help="also rerun every claim on perturbed systems and give each row a verdict (falsified by, "
                     "identity, vacuous); a vacuous row makes the exit status 1; e.g. regflow check all --falsify")

    por = command("portrait", cmd_portrait, "draw the phase portrait of an entry (or of a system of your own)", [
        "regflow portrait scalar_net.gradient_flow --x w1 --y w2 --out portrait.png",
        "regflow portrait scalar_net.weight_decay --set mu=0.2 --xlim -2,2 --ylim -1,3 --out wd.pdf --overwrite",
        "regflow portrait scalar_net.gradient_flow --y0 0.5,1.5 --t1 5 --seed 1 --backend scipy --out p.svg",
        "regflow portrait mysystems:sde --y0 1,0 --t1 2 --dt 0.01 --out sde.png",
        "regflow portrait mysystems:gd --y0 0.3,1.6 --steps 200 --out gd.png --debug"])
    por.add_argument("name", metavar="NAME", help="catalogue entry, or package.module:attr of your own entry, method, "
                     "ODE, SDE or Map; e.g. scalar_net.gradient_flow")
    por.add_argument("--out", metavar="FILE", required=True,
                     help="the figure; its extension picks the format (.png, .pdf, .svg ...), e.g. --out portrait.png")
    por.add_argument("--overwrite", action="store_true", help="replace --out if it exists, e.g. --overwrite")
    por.add_argument("--x", metavar="COORD", help="horizontal coordinate (default: the entry's view, or the first), "
                     "e.g. --x w1")
    por.add_argument("--y", metavar="COORD", help="vertical coordinate (default: the entry's view, or the second), "
                     "e.g. --y w2")
    por.add_argument("--xlim", type=read.limits, metavar="LO,HI", help="horizontal range, e.g. --xlim -2,2")
    por.add_argument("--ylim", type=read.limits, metavar="LO,HI", help="vertical range, e.g. --ylim -1,3")
    _run_options(por)
    por.set_defaults(paths=None)
    return parser


def _run_options(cmd):
    cmd.add_argument("--set", action="append", metavar="K=V", help="change an entry's parameter, read as the type of "
                     "its default (repeatable), e.g. --set mu=0.1 --set d=3")
    cmd.add_argument("--y0", type=read.state, metavar="Y", help="the start: numbers with commas or JSON (a pytree); "
                     'required for a bare ODE/SDE/Map; e.g. --y0 0.3,1.6 or --y0 \'{"W": [[1, 0], [0, 1]]}\'')
    cmd.add_argument("--t1", type=read.positive_float, metavar="T",
                     help="end time (default: the entry's), e.g. --t1 20")
    cmd.add_argument("--dt", type=read.positive_float, metavar="H", help="step of an SDE or a fixed-step method "
                     "(default: the entry's), e.g. --dt 0.001")
    cmd.add_argument("--steps", type=read.positive_int, metavar="N", help="steps of a bare rf.Map, e.g. --steps 500")
    cmd.add_argument("--seed", type=read.seed, metavar="S", help="seed of the noise (default: the entry's, else 0), "
                     "e.g. --seed 3")
    cmd.add_argument("--backend", default="auto", choices=("auto", "scipy", "diffrax", "sdeint", "jax"),
                     help="solver backend of the flow (default: the entry's, else auto), e.g. --backend scipy")


# ----------------------------------------------------------------------------- main


def _attach_negative_values(argv):
    """``--xlim -2,2`` -> ``--xlim=-2,2``: argparse would read a value that starts with ``-``
    (and is not a plain number) as a flag; no regflow flag starts with a digit."""
    out = []
    for token in argv:
        if out and out[-1].startswith("--") and "=" not in out[-1] and NEGATIVE_VALUE.match(token):
            out[-1] = f"{out[-1]}={token}"
        else:
            out.append(token)
    return out


def main(argv=None) -> int:
    """Run the command line ``argv`` (default ``sys.argv[1:]``); returns the exit status."""
    try:
        args = build_parser().parse_args(_attach_negative_values(sys.argv[1:] if argv is None else list(argv)))
    except SystemExit as stop:  # --help, --version, and argparse's own usage errors
        return stop.code if isinstance(stop.code, int) else EXIT_USAGE
    debug = getattr(args, "debug", False) or os.environ.get(DEBUG_ENV, "") not in ("", "0")
    where = f"regflow {args.command}"
    try:
        return args.func(args)
    except (UsageError, ValueError, TypeError) as error:  # regflow's checks of the input name the fix
        if debug:
            traceback.print_exc()
        print(f"{where}: error: {error}\n(see regflow {args.command} --help)", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print(f"{where}: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except Exception as error:
        if debug:
            traceback.print_exc()
        hint = "the traceback is above" if debug else f"rerun with --debug (or {DEBUG_ENV}=1) for the traceback"
        message = " ".join(str(error).split())  # one paragraph, however long the exception's text
        if len(message) > INTERNAL_MESSAGE_CHARS:
            message = message[:INTERNAL_MESSAGE_CHARS] + " ..."
        print(f"{where}: internal error: {type(error).__name__}: {message}. This exception was not expected, in "
              f"regflow or in code it ran; {hint}.", file=sys.stderr)
        return EXIT_INTERNAL


if __name__ == "__main__":
    sys.exit(main())
