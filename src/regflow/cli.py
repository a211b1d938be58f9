"""The ``regflow`` command: list, run, check and draw catalogue entries.

    regflow list
    regflow run NAME [--set k=v ...] [--backend B] [--t1 T] [--paths N] [--seed S] [--out FILE]
    regflow check NAME|all [--report DIR]
    regflow portrait NAME [--x NAME --y NAME] --out FILE.png [--set k=v ...]
"""

from __future__ import annotations

import argparse
import sys

import jax
import numpy as np

from ._catalogue import repeat_starts

#: Saved times of ``regflow run``.
RUN_SAVES = 201
#: `regflow run` prints at most this many coordinates of the final state.
PRINTED_COORDINATES = 20


def _parse_sets(entry, pairs):
    """``k=v`` strings -> parameters, typed like the entry's defaults."""
    params = {}
    defaults = entry.params
    for pair in pairs or ():
        if "=" not in pair:
            raise SystemExit(f"--set takes key=value, got {pair!r}")
        key, value = pair.split("=", 1)
        if key not in defaults:
            raise SystemExit(f"{entry.name} has no parameter {key!r}; its parameters: "
                             + ", ".join(f"{k}={v!r}" for k, v in defaults.items()))
        kind = type(defaults[key])
        try:
            params[key] = (value.lower() in ("1", "true", "yes")) if kind is bool else kind(value)
        except ValueError:
            raise SystemExit(f"--set {key}: expected a {kind.__name__}, got {value!r}") from None
    return params


def _entry(name):
    from ._catalogue import get_entry

    try:
        return get_entry(name)
    except KeyError as error:
        raise SystemExit(str(error.args[0])) from None


def cmd_list(args):
    from ._catalogue import catalogue

    for name, entry in catalogue().items():
        params = ", ".join(f"{k}={v!r}" for k, v in entry.params.items())
        print(f"{name:40s} {entry.source}\n{'':40s} ({params})")


def cmd_run(args):
    import regflow as rf

    entry = _entry(args.name)
    method = entry.build(**_parse_sets(entry, args.set))
    first = jax.tree_util.tree_map(lambda leaf: leaf[None], method.start(0))
    starts = None if args.paths is None else repeat_starts(first, args.paths)
    traj = method.run_flow(y0=starts, t1=args.t1, saves=RUN_SAVES, seed=args.seed, paths=1 if args.paths else None,
                          **({} if args.backend == "auto" else {"backend": args.backend}))
    print(f"{entry.name}: {traj}")
    names = traj.coordinate_names
    for name, value in list(zip(names, traj.flat[..., -1, :].T))[:PRINTED_COORDINATES]:
        print(f"  {name}(t1): {np.array2string(np.atleast_1d(value), precision=6)}")
    if len(names) > PRINTED_COORDINATES:
        print(f"  ... ({len(names) - PRINTED_COORDINATES} more coordinates; save with --out to see them all)")
    if args.out:
        print(f"saved {traj.save(args.out, overwrite=args.overwrite)}")
    return 0 if traj.ok else 1


def cmd_check(args):
    from ._catalogue import catalogue
    from ._claims import Report, check

    names = list(catalogue()) if args.name == "all" else [_entry(args.name).name]
    reports = {}
    for name in names:
        reports[name] = check(name)
        print(reports[name].table() + "\n", flush=True)
    total = sum(reports.values(), Report(()))
    print(f"catalogue: {sum(r.passed for r in total.rows)} passed, {len(total.failed)} failed")
    if args.report:
        from ._report import write_report

        print(f"report written to {write_report(reports, args.report)}")
    return 0 if total.passed else 1


def cmd_portrait(args):
    import matplotlib

    matplotlib.use("Agg")
    from ._report import entry_portrait

    entry = _entry(args.name)
    method = entry.build(**_parse_sets(entry, args.set))
    names = method.flow.names or ()
    for flag in ("x", "y"):
        value = getattr(args, flag)
        if value is not None and value not in names:
            raise SystemExit(f"--{flag}: {entry.name} has no coordinate {value!r}; coordinates: {', '.join(names)}")
    fig = entry_portrait(entry.name, method, x=args.x, y=args.y)
    fig.savefig(args.out, dpi=130, bbox_inches="tight")
    print(f"wrote {args.out}")
    return 0


def build_parser():
    parser = argparse.ArgumentParser(prog="regflow", description="Training algorithms as dynamical systems.")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("list", help="list the catalogue").set_defaults(func=cmd_list)

    run = sub.add_parser("run", help="integrate an entry's flow from its starts")
    run.add_argument("name")
    run.add_argument("--set", action="append", metavar="K=V", help="change a parameter (repeatable)")
    run.add_argument("--backend", default="auto", choices=("auto", "scipy", "diffrax", "sdeint", "jax"))
    run.add_argument("--t1", type=float)
    run.add_argument("--paths", type=int, help="start this many paths at the first start")
    run.add_argument("--seed", type=int, default=0)
    run.add_argument("--out", help="save the trajectory (.npz)")
    run.add_argument("--overwrite", action="store_true", help="replace --out if it exists")
    run.set_defaults(func=cmd_run)

    chk = sub.add_parser("check", help="check an entry's claims (or all)")
    chk.add_argument("name", help="entry name or 'all'")
    chk.add_argument("--report", metavar="DIR", help="write a markdown report with figures")
    chk.set_defaults(func=cmd_check)

    por = sub.add_parser("portrait", help="draw an entry's phase portrait")
    por.add_argument("name")
    por.add_argument("--x")
    por.add_argument("--y")
    por.add_argument("--out", required=True)
    por.add_argument("--set", action="append", metavar="K=V")
    por.set_defaults(func=cmd_portrait)
    return parser


def main(argv=None):
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except (ValueError, TypeError, FileExistsError) as error:
        print(f"regflow: error: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
