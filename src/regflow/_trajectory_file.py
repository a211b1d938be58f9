r"""The file format of `Trajectory.save` / `Trajectory.load`: a numpy ``.npz`` archive.

Entries: ``t`` (n,) times; ``y`` the flat states ``(n, dim)`` or ``(paths, n, dim)``;
``diverged_at`` (paths,) for an ensemble; ``args_<i>`` the arrays inside ``args``; and
``header``, a JSON text with ``format``, ``names``, ``status``, ``ensemble``, ``structure``
(leaf shapes, leaf names, a skeleton of the containers), ``meta`` (metadata as JSON) and
``args_value`` (the args as a JSON tree whose arrays refer to ``args_<i>``; absent when
they are not numbers, strings, arrays and dicts, lists or tuples of them).  A run with an
event adds ``event_t``, ``event_y`` (its `EventLog`, flat states) and ``events`` in the header
(``{"terminal": ...}``); a run with dense output ``dense_t``, ``dense_y``, ``dense_dy``,
``dense_ddy`` (the knots of `regflow._dense.Hermite`) and ``dense`` in the header.

Format 4 added events and dense output, format 3 ``args_value``; formats 1 (flat states, no
structure), 2 and 3 still load.
"""

from __future__ import annotations

import functools
import json
import math
import os
import zipfile
import zlib

import jax
import numpy as np

from . import _tree

#: Version of files written by `Trajectory.save`; 1 (flat states), 2 (no args) and 3 (no
#: events or dense output) still load.
FORMAT_VERSION = 4
READABLE_FORMATS = (1, 2, 3, 4)
#: Arrays of a dense output (`regflow._dense.Hermite` fields) in the file.
DENSE_ARRAYS = {"t": "dense_t", "y": "dense_y", "dy": "dense_dy", "ddy": "dense_ddy"}
SUFFIX = ".npz"
#: What `Trajectory.save` suggests for other suffixes.
OTHER_FORMATS = {".nc": "traj.to_xarray().to_netcdf(path)", ".csv": "traj.to_xarray().to_dataframe().to_csv(path)"}
ARGS_ARRAY = "args_{}"


def npz_path(path) -> str:
    """``path`` as a ``.npz`` file name: kept if it ends in ``.npz``, given ``.npz`` if it has no
    suffix, refused otherwise."""
    if not isinstance(path, (str, os.PathLike)):
        raise TypeError(f"path must be a file path (str or os.PathLike) ending in {SUFFIX}, got {type(path).__name__}")
    path = os.fspath(path)
    if not isinstance(path, str):
        path = os.fsdecode(path)
    name = os.path.basename(path)
    if not name or name in (".", ".."):
        raise ValueError(f"path {path!r} names a directory; give a file name such as {os.path.join(path, 'run.npz')!r}")
    suffix = os.path.splitext(name)[1]
    if suffix.lower() == SUFFIX:
        return path
    if not suffix:
        return path + SUFFIX
    other = OTHER_FORMATS.get(suffix.lower())
    hint = f"; for {suffix} use {other}" if other else f" (netCDF: {OTHER_FORMATS['.nc']})"
    raise ValueError(f"Trajectory.save writes numpy {SUFFIX} files, but path {path!r} ends in {suffix!r}: give a path "
                     f"ending in {SUFFIX} (a path without a suffix gets {SUFFIX}){hint}")


def not_a_trajectory(path, what) -> ValueError:
    return ValueError(f"{path} is not a regflow trajectory file: {what}")


def read_file(path):
    """The header and the arrays of a trajectory file, checked for what `load` relies on."""
    bad = functools.partial(not_a_trajectory, path)
    try:
        data = np.load(path, allow_pickle=False)
    except EOFError:
        raise bad("the file is empty") from None
    except ValueError as err:
        if "pickle" in str(err):
            raise bad("it is not an .npz archive (numpy read it as pickled data, so it is text or another "
                      "format)") from None
        raise bad(f"it cannot be read as .npz ({err})") from None
    except (zipfile.BadZipFile, zlib.error, OSError) as err:
        if isinstance(err, FileNotFoundError):
            raise FileNotFoundError(f"no trajectory file {path}: it does not exist; check the path (e.g. its "
                                    f"directory and the {SUFFIX} extension)") from None
        if isinstance(err, (IsADirectoryError, PermissionError)):
            raise
        raise bad(f"it is not a readable .npz archive, perhaps truncated or damaged ({type(err).__name__}: "
                  f"{err})") from None
    if not isinstance(data, np.lib.npyio.NpzFile):
        raise bad(f"it holds one .npy array of shape {np.shape(data)}, not an .npz archive")
    with data:
        missing = [k for k in ("header", "t", "y") if k not in data.files]
        if missing:
            shown = data.files if len(data.files) <= 6 else [*data.files[:6], "..."]
            raise bad(f"it has no {', '.join(map(repr, missing))} entries (it holds {shown})")
        arrays = {}
        for name in data.files:
            try:
                arrays[name] = data[name]
            except (ValueError, OSError, EOFError, zipfile.BadZipFile, zlib.error) as err:
                raise bad(f"its {name!r} entry cannot be read (damaged or not plain numbers: "
                          f"{type(err).__name__}: {err})") from None
    try:
        header = json.loads(str(arrays.pop("header")))
    except ValueError as err:
        raise bad(f"its header is not JSON ({err})") from None
    _check_header(header, arrays, bad)
    return header, arrays


def _check_header(header, arrays, bad):
    if not isinstance(header, dict):
        raise bad(f"its header is a JSON {type(header).__name__}, not an object")
    version = header.get("format")
    if version not in READABLE_FORMATS:
        if isinstance(version, int) and version > FORMAT_VERSION:
            raise ValueError(f"{bad.args[0]} was written by a newer regflow (file format {version}); this regflow "
                             f"reads formats {READABLE_FORMATS}: upgrade regflow to read it")
        raise bad(f"its header has format {version!r}; regflow files have formats {READABLE_FORMATS}")
    need = {"names": (list, type(None)), "status": str, "meta": dict}
    if version >= 2:
        need.update(ensemble=bool, structure=dict)
    for key, kind in need.items():
        if not isinstance(header.get(key), kind):
            raise bad(f"its header's {key!r} is {type(header.get(key)).__name__}, expected "
                      f"{getattr(kind, '__name__', 'list or null')}")
    t, y = arrays["t"], arrays["y"]
    if y.ndim not in (2, 3):
        raise bad(f"its states 'y' have shape {y.shape}, expected (n, dim) or (paths, n, dim)")
    if t.ndim != 1 or len(t) != y.shape[-2]:
        raise bad(f"it has {t.shape[0] if t.ndim == 1 else t.shape} times for {y.shape[-2]} rows of states "
                  f"(shape {y.shape})")
    names = header["names"]
    if names is not None and len(names) != y.shape[-1]:
        raise bad(f"it has {len(names)} names for {y.shape[-1]} columns of states (shape {y.shape})")
    if "diverged_at" in arrays:
        paths = y.shape[0] if y.ndim == 3 else 1
        if arrays["diverged_at"].shape != (paths,):
            raise bad(f"its diverged_at has shape {arrays['diverged_at'].shape} for {paths} paths")


def file_structure(header, flat, bad) -> _tree.Structure:
    spec = header["structure"]
    shapes, leaf_names = spec.get("shapes"), spec.get("leaf_names")
    if (not isinstance(shapes, list) or not all(isinstance(s, list) and all(isinstance(d, int) and d >= 0 for d in s)
                                                 for s in shapes)):
        raise bad(f"its structure's leaf shapes {shapes!r} are not lists of sizes")
    if not isinstance(leaf_names, list) or len(leaf_names) != len(shapes) or not all(isinstance(n, str)
                                                                                    for n in leaf_names):
        raise bad(f"its structure names {leaf_names!r} do not match its {len(shapes)} leaf shapes")
    shapes = tuple(tuple(s) for s in shapes)
    size = sum(math.prod(s) for s in shapes)
    if size != flat.shape[-1]:
        raise bad(f"its structure has {size} coordinates (leaf shapes {shapes}) but its states have {flat.shape[-1]} "
                  f"columns (shape {flat.shape})")
    if bool(header["ensemble"]) != (flat.ndim == 3):
        raise bad(f"its header says ensemble={header['ensemble']} but its states have shape {flat.shape}")
    try:
        treedef = _tree.treedef_of(spec.get("skeleton"), leaf_names)
    except (KeyError, TypeError, ValueError, StopIteration, AttributeError) as err:
        raise bad(f"its structure's skeleton is malformed ({type(err).__name__}: {err})") from None
    if treedef.num_leaves != len(shapes):
        raise bad(f"its structure's skeleton has {treedef.num_leaves} leaves for {len(shapes)} leaf shapes")
    return _tree.Structure(treedef, shapes, tuple(leaf_names))


class Unstorable(Exception):
    """A value `encode_args` cannot keep (its message says which)."""


def encode_args(value, arrays, where="args"):
    """A JSON form of a pytree of numbers, strings and arrays; arrays are appended to
    ``arrays`` and referenced by index (kept exactly, in the file's own arrays)."""
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, (np.ndarray, np.generic, jax.Array)):
        array = np.asarray(value)
        if array.dtype.kind not in "biufc":
            raise Unstorable(f"{where} (an array of dtype {array.dtype})")
        arrays.append(array)
        return {"array": len(arrays) - 1}
    if isinstance(value, dict):
        if not all(isinstance(k, str) for k in value):
            raise Unstorable(f"{where} (a dict with keys other than strings)")
        return {"dict": [[k, encode_args(v, arrays, f"{where}[{k!r}]")] for k, v in value.items()]}
    if type(value) in (list, tuple):
        return {type(value).__name__: [encode_args(v, arrays, f"{where}[{i}]") for i, v in enumerate(value)]}
    raise Unstorable(f"{where} (a {type(value).__name__})")


def decode_args(node, arrays):
    if node is None or isinstance(node, (bool, int, float, str)):
        return node
    (kind, value), = node.items()
    if kind == "array":
        return arrays[ARGS_ARRAY.format(value)]
    if kind == "dict":
        return {k: decode_args(v, arrays) for k, v in value}
    return {"list": list, "tuple": tuple}[kind](decode_args(v, arrays) for v in value)


#: Files without events or dense output are written in this format, which older regflows read.
PLAIN_FORMAT = 3


def encode_run_extras(events, dense, header, arrays):
    """Add a run's `EventLog` and dense output (if any) to the header and arrays of its file
    (format `FORMAT_VERSION`; a file with neither stays `PLAIN_FORMAT`)."""
    if events is None and dense is None:
        header["format"] = PLAIN_FORMAT
    if events is not None:
        header["events"] = {"terminal": bool(events.terminal)}
        arrays["event_t"], arrays["event_y"] = np.asarray(events.t), np.asarray(events.flat)
    if dense is not None:
        header["dense"] = "hermite5"
        arrays.update({name: np.asarray(getattr(dense, field)) for field, name in DENSE_ARRAYS.items()})


def decode_run_extras(header, arrays, structure, bad):
    """``{"events": EventLog, "dense": Hermite}`` as far as the file has them."""
    from ._dense import Hermite
    from ._events import EventLog

    out = {}
    try:
        if "events" in header:
            t, y = arrays["event_t"], arrays["event_y"]
            if y.shape != (*t.shape, structure.size):
                raise ValueError(f"event states of shape {y.shape} for event times {t.shape}")
            out["events"] = EventLog(t, y, bool(header["events"]["terminal"]), structure)
        if "dense" in header:
            knots = {field: arrays[name] for field, name in DENSE_ARRAYS.items()}
            if any(knots[k].shape != (len(knots["t"]), structure.size) for k in ("y", "dy", "ddy")):
                raise ValueError("dense knots of mismatched shapes")
            out["dense"] = Hermite(**knots)
    except (KeyError, TypeError, ValueError) as err:
        raise bad(f"its events or dense output cannot be rebuilt ({type(err).__name__}: {err})") from None
    return out
