"""What ``regflow run|check|portrait NAME`` acts on: a catalogue entry by name, or
``package.module:attr`` (or ``path/to/file.py:attr``) of a user's own entry, method or system.

``attr`` may be an `rf.Entry`, a factory decorated with `rf.entry`, an `rf.Method`, or (where
a command integrates a bare system) an `rf.ODE`, `rf.SDE` or `rf.Map`.
"""

from __future__ import annotations

import importlib
import importlib.util
import inspect
import os
import sys

from . import _catalogue
from ._catalogue import Entry, Method, catalogue
from ._cli_args import UsageError, parameters
from ._system import ODE, SDE, Map

SYSTEMS = (ODE, SDE, Map)


def is_reference(name: str) -> bool:
    """``module:attr`` (a user's object) rather than a catalogue name."""
    return ":" in name


def resolve(name: str, *, systems: bool):
    """An `Entry` for a catalogue name or a user's entry/method; with ``systems`` a bare
    ODE/SDE/Map is returned as is."""
    if not is_reference(name):
        return catalogue_entry(name)
    obj = _import(name)
    if isinstance(obj, Entry):
        return obj
    if isinstance(obj, Method):
        return Entry(name, lambda: obj, source=name)
    if isinstance(obj, SYSTEMS):
        if systems:
            return obj
        raise UsageError(f"{name} is an rf.{type(obj).__name__}, which declares no claims; point at an rf.Method "
                         f"or an entry (a factory decorated with @rf.entry) that lists claims=[...]")
    registered = [e for e in _catalogue._REGISTRY.values() if e.factory is obj]
    if registered:
        return registered[0]
    kinds = "an rf.Entry, an @rf.entry factory, an rf.Method" + (", an rf.ODE, rf.SDE or rf.Map" if systems else "")
    hint = (" (decorate the factory with @rf.entry(name, source=...) to make it an entry)" if callable(obj) else "")
    raise UsageError(f"{name} is {_a(obj)}; expected {kinds}{hint}")


def catalogue_names(name: str) -> list[str]:
    """The catalogue entries ``name`` stands for: ``"all"``, a family (``"halpern"``: its
    entries) or one entry."""
    entries = catalogue()
    if name == "all":
        return list(entries)
    family = [n for n in entries if n.startswith(name + ".")]
    return family or [catalogue_entry(name).name]


def catalogue_entry(name: str) -> Entry:
    entries = catalogue()
    if name in entries:
        return entries[name]
    family = name.split(".")[0]
    close = [n for n in entries if n.startswith(family + ".")] or list(entries)
    raise UsageError(f"no catalogue entry {name!r}; entries: {', '.join(close)} (see `regflow list`; a system of "
                     f"your own is named package.module:attr)")


def build(entry: Entry, pairs):
    """``entry``'s method with the ``--set`` parameters; a failure with parameters set is a
    usage error naming them."""
    params = parameters(entry.name, entry.params, pairs)
    missing = [p.name for p in inspect.signature(entry.factory).parameters.values()
               if p.default is p.empty and p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY) and p.name not in params]
    if missing:
        raise UsageError(f"{entry.name} has parameters without a default: {', '.join(missing)}; give them with "
                         f"--set, e.g. --set {missing[0]}=VALUE")
    try:
        method = entry.build(**params)
    except Exception as error:
        if not params:
            raise
        shown = ", ".join(f"{k}={v!r}" for k, v in params.items())
        defaults = ", ".join(f"{k}={entry.params[k]!r}" for k in params)
        raise UsageError(f"--set {shown}: {entry.name} cannot be built with these values "
                         f"({type(error).__name__}: {error}); choose other values (defaults: {defaults})") from error
    if not isinstance(method, Method):
        raise UsageError(f"{entry.name}'s factory returned {_a(method)}, not an rf.Method")
    return method


def _import(reference: str):
    module_name, _, attr = reference.rpartition(":")
    if not module_name or not attr:
        raise UsageError(f"{reference!r}: expected package.module:attr or path/to/file.py:attr, e.g. mysystems:flow")
    module = _load_file(module_name) if module_name.endswith(".py") else _load_module(module_name)
    if not hasattr(module, attr):
        found = [k for k, v in vars(module).items() if _is_target(v)]
        raise UsageError(f"{reference}: module {module_name} has no attribute {attr!r}; "
                         f"entries, methods and systems it defines: {', '.join(found) or 'none'}")
    return getattr(module, attr)


def _load_module(module_name):
    if os.getcwd() not in sys.path and "" not in sys.path:
        sys.path.insert(0, os.getcwd())  # as `python -m` does: modules in the working directory import
    try:
        return importlib.import_module(module_name)
    except ModuleNotFoundError as error:
        if error.name is None or not module_name.startswith(error.name):
            raise  # the module exists but imports something missing
        raise UsageError(f"cannot import {module_name!r}: no module {error.name!r} on the Python path; run "
                         f"regflow from the directory that holds it, install it, or give a file: "
                         f"path/to/file.py:attr") from None


def _load_file(path):
    if not os.path.isfile(path):
        raise UsageError(f"{path}: no such file (a file reference reads path/to/file.py:attr)")
    path = os.path.abspath(path)
    name = os.path.splitext(os.path.basename(path))[0]
    loaded = sys.modules.get(name)
    if loaded is not None and getattr(loaded, "__file__", None) != path:
        name = f"_regflow_file_{name}"  # never shadow an imported module of the same name
    if os.path.dirname(path) not in sys.path:
        sys.path.insert(0, os.path.dirname(path))  # as for a script: its neighbours import
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except BaseException:
        sys.modules.pop(name, None)
        raise
    return module


def _is_target(value):
    registered = any(e.factory is value for e in _catalogue._REGISTRY.values())
    return registered or isinstance(value, (Entry, Method, *SYSTEMS))


def _a(obj):
    kind = type(obj).__name__
    return f"{'an' if kind[:1].lower() in 'aeiou' else 'a'} {kind}"
