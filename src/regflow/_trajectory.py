"""`Trajectory`: the result of `integrate` and `iterate`: times, states, names, status, metadata."""

from __future__ import annotations

import dataclasses
import functools
import json
import os
import warnings
from collections.abc import Mapping
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from . import _files, _tree, _validate
from . import _trajectory_file as _file
from ._compiled import bind_quantity, split
from ._trajectory_file import FORMAT_VERSION, READABLE_FORMATS, SUFFIX  # noqa: F401

#: Status words: ``"ok"``, or a status starting with one of these and naming the time.
STATUS_WORDS = ("diverged", "failed", "event")


@dataclasses.dataclass(frozen=True, eq=False)
class Trajectory:
    """States of a system at saved times.

    Attributes
    ----------
    t : (n,) times.
    y : the states, shaped like the state with leading ``(paths,) n`` axes: ``(n, dim)`` (or
        ``(paths, n, dim)`` for an ensemble) for a vector state, a dict of ``(n, *shape)``
        arrays for a dict of matrices, and so on.
    flat : the flat view of ``y``, ``(n, dim)`` or ``(paths, n, dim)`` (leaves raveled in
        pytree order; equal to ``y`` for a vector state).
    names : coordinate names, one per flat coordinate (``"W1[0,2]"`` for pytree states).
    leaf_names : the state's leaves by pytree path (``"W1"``, ``"layers.0.w"``).
    status : ``"ok"``, or starts with ``"diverged"`` and names the time.
    diverged_at : (paths,) time each path left the finite numbers (``inf`` if it did not);
        ``None`` for a single path.  States of an ensemble path after that time are NaN.
    meta : system, args, seed, backend, method, library versions.
    events : the crossings of the run's `Event` (an `EventLog`: ``t``, ``y``, ``terminal``),
        or ``None`` when it had none.
    dense : the dense output of a run with ``dense=True`` (`regflow._dense.Hermite`), used by
        `interpolate`; ``None`` otherwise.

    The fields are checked when a trajectory is built: ``t`` 1-D, finite and strictly
    increasing (decreasing for a backward run, ``meta["t1"] < meta["t0"]``); ``y`` real, with
    one state per time; one distinct name per coordinate;
    ``status`` ``"ok"`` or starting with ``"diverged"``/``"failed"``; ``diverged_at`` one
    time per path.

    Example
    -------
    >>> traj = rf.integrate(ode, y0, 1.0)          # doctest: +SKIP
    >>> traj["w1"][-1], traj.status                 # doctest: +SKIP
    """

    t: np.ndarray
    y: Any
    names: tuple[str, ...] | None = None
    status: str = "ok"
    diverged_at: np.ndarray | None = None
    meta: dict[str, Any] = dataclasses.field(default_factory=dict)
    ensemble: bool | None = None
    structure: Any = None
    events: Any = None
    dense: Any = None

    def __post_init__(self):
        object.__setattr__(self, "t", _check_times(self.t, backward=self.backward))
        if self.structure is None:
            y = _real_array(self.y, "y")
            if y.ndim not in (2, 3):
                raise ValueError(f"y must have shape (n, dim) or (paths, n, dim) for a vector state, got {y.shape}; "
                                 f"for pytree states use Trajectory.from_flat(t, flat, structure)")
            object.__setattr__(self, "y", y)
            object.__setattr__(self, "structure", _tree.structure_of(np.zeros(y.shape[-1]), "y")[0])
        elif not isinstance(self.structure, _tree.Structure):
            raise TypeError(f"structure must be a regflow Structure (from Trajectory.from_flat), got "
                            f"{type(self.structure).__name__}")
        lead = _leading_axes(self.y, self.structure)
        if lead[-1] != len(self.t):
            raise ValueError(f"y holds {lead[-1]} states (leading axes {lead}) but t has {len(self.t)} times; give "
                             f"one time per saved state")
        if self.ensemble is None:
            object.__setattr__(self, "ensemble", len(lead) == 2)
        if not isinstance(self.ensemble, (bool, np.bool_)) or bool(self.ensemble) != (len(lead) == 2):
            raise ValueError(f"ensemble={self.ensemble!r} but y has leading axes {lead}: (paths, n) for an ensemble, "
                             f"(n,) for one path; leave ensemble=None to read it from y")
        object.__setattr__(self, "ensemble", bool(self.ensemble))
        if self.names is None and self.structure.trivial:
            object.__setattr__(self, "names", tuple(f"y{i}" for i in range(self.structure.size)))
        if self.names is not None:
            object.__setattr__(self, "names", _check_names(self.names, self.structure.size))
        _check_status(self.status)
        if self.diverged_at is not None:
            paths = lead[0] if self.ensemble else 1
            object.__setattr__(self, "diverged_at", _check_diverged_at(self.diverged_at, paths))
        if not isinstance(self.meta, Mapping):
            raise TypeError(f"meta must be a dict, got {type(self.meta).__name__}")
        if not isinstance(self.meta, dict):
            object.__setattr__(self, "meta", dict(self.meta))

    @classmethod
    def from_flat(cls, t, flat, structure, **fields) -> "Trajectory":
        """A trajectory from flat states ``(n, dim)`` / ``(paths, n, dim)`` of a `Structure`."""
        if not isinstance(structure, _tree.Structure):
            raise TypeError(f"structure must be a regflow Structure, got {type(structure).__name__}")
        flat = _real_array(flat, "flat")
        if flat.ndim not in (2, 3) or flat.shape[-1] != structure.size:
            raise ValueError(f"flat must have shape (n, {structure.size}) or (paths, n, {structure.size}) for a state "
                             f"{structure.describe()}, got {flat.shape}")
        traj = cls(t=t, y=flat if structure.trivial else structure.unravel(flat), structure=structure, **fields)
        traj.__dict__["flat"] = flat
        return traj

    @functools.cached_property
    def flat(self) -> np.ndarray:
        """The flat view ``(n, dim)`` or ``(paths, n, dim)``."""
        if self.structure.trivial:
            return np.asarray(self.y)
        leaves = self.structure.treedef.flatten_up_to(self.y)
        lead = np.shape(leaves[0])[: np.ndim(leaves[0]) - len(self.structure.shapes[0])]
        return np.concatenate([np.reshape(leaf, (*lead, -1)) for leaf in leaves], axis=-1)

    @property
    def coordinate_names(self) -> tuple[str, ...]:
        """``names``, or for a pytree state the names of its flat coordinates (``"W1[0,2]"``)."""
        return self.names if self.names is not None else self.structure.coordinate_names()

    @property
    def leaf_names(self) -> tuple[str, ...]:
        return self.structure.leaf_names

    @property
    def backward(self) -> bool:
        """A backward run (``meta`` says ``t1 < t0``): ``t`` decreases from ``t0`` to ``t1``."""
        meta = self.meta if isinstance(self.meta, Mapping) else {}
        t0, t1 = meta.get("t0"), meta.get("t1")
        return isinstance(t0, (int, float)) and isinstance(t1, (int, float)) and t1 < t0

    @property
    def ok(self) -> bool:
        """Reached ``t1``, or stopped at its terminal event (not diverged, not failed)."""
        return self.status == "ok" or self.status.startswith("event")

    @property
    def is_ensemble(self) -> bool:
        return bool(self.ensemble)

    @property
    def paths(self) -> int:
        return self.flat.shape[0] if self.is_ensemble else 1

    def __getitem__(self, name: str):
        """A coordinate by name, shape ``(n,)`` or ``(paths, n)``; or a leaf by its pytree path,
        shape ``((paths,) n, *leaf_shape)``."""
        if not self.structure.trivial and name in self.structure.leaf_names:
            return self.structure.treedef.flatten_up_to(self.y)[self.structure.leaf_names.index(name)]
        names = self.coordinate_names
        if name not in names:
            some = names if len(names) <= 12 else (*names[:6], "...", *names[-3:])
            raise KeyError(f"no coordinate or leaf {name!r}; this trajectory has leaves {self.structure.leaf_names} "
                           f"and coordinates {some}")
        return self.flat[..., names.index(name)]

    def interpolate(self, ts):
        """The state at times ``ts`` (a number or an array, inside the span the run covered)
        from the dense output of ``integrate(..., dense=True)``: shaped like ``y`` with a
        leading ``len(ts)`` axis (none for a number).  ``traj(t)`` is the same."""
        if self.dense is None:
            raise ValueError("this trajectory has no dense output; integrate with dense=True (an ODE, one path) to "
                             "interpolate between saved times")
        flat = self.dense(ts)
        return flat if self.structure.trivial else self.structure.unravel(flat)

    def __call__(self, t):
        return self.interpolate(t)

    def evaluate(self, q, args=None):
        """A quantity ``q(y, args)`` at every saved state (``y`` in the state's own structure).

        Returns ``((paths,) n, *q_shape)``: scalars give ``(n,)`` or ``(paths, n)``; an array- or
        pytree-valued quantity (e.g. the balancedness matrix of two layers) gives those shapes,
        leaf by leaf.  Compiled once per quantity and state structure (``args`` are inputs)."""
        _validate.check_callable(q, "q", _validate.QUANTITY)
        unknown_args = args is None and "args_value" not in self.meta
        args = self.meta.get("args_value") if args is None else args
        lead = self.flat.shape[:-1]
        dynamic, static = split((q,))
        try:
            values = _evaluator(static, self.structure)(jnp.asarray(self.flat.reshape(-1, self.flat.shape[-1])),
                                                        (dynamic, args))
        except Exception as err:
            if unknown_args and hasattr(err, "add_note"):
                err.add_note("regflow: this trajectory carries no args (built without them, or loaded from a file "
                             "that did not keep them), so q got args=None; pass them: traj.evaluate(q, args=...)")
            raise
        return jax.tree_util.tree_map(lambda v: np.asarray(v).reshape(*lead, *v.shape[1:]), values)

    def to_xarray(self):
        """For a vector state an ``xarray.DataArray`` with dims ``(path,) time, var`` and the
        names as coordinates; for a pytree state an ``xarray.Dataset`` with one variable per
        leaf, named by its pytree path (dims ``(path,) time, <leaf>_0, <leaf>_1 ...``).
        ``attrs`` hold the status, ``diverged_at`` (an ensemble's per-path times, ``inf`` for
        paths that did not diverge) and the metadata (as JSON text)."""
        import xarray as xr

        lead = ("path", "time") if self.is_ensemble else ("time",)
        coords = {"time": self.t}
        if self.is_ensemble:
            coords["path"] = np.arange(self.paths)
        attrs = {"status": self.status, **{k: json.dumps(v) for k, v in _jsonable_meta(self.meta).items()}}
        if self.diverged_at is not None:
            attrs["diverged_at"] = np.asarray(self.diverged_at)
        if self.structure.trivial:
            return xr.DataArray(self.flat, dims=(*lead, "var"), coords={**coords, "var": list(self.coordinate_names)},
                                name="y", attrs=attrs)
        leaves = self.structure.treedef.flatten_up_to(self.y)
        data = {}
        for name, leaf in zip(self.structure.leaf_names, leaves):
            label = name or "y"
            data[label] = (lead + tuple(f"{label}_{i}" for i in range(np.ndim(leaf) - len(lead))), np.asarray(leaf))
        return xr.Dataset(data, coords=coords, attrs=attrs)

    def save(self, path, *, overwrite: bool = False) -> str:
        """Save losslessly to ``path`` in numpy's ``.npz`` format; returns the path written.

        ``path`` ends in ``.npz`` (a path without a suffix gets ``.npz``; other suffixes are
        refused: use `to_xarray` for netCDF or CSV).  Kept: times, states, names, status,
        ``diverged_at``, events, dense output, metadata, the pytree structure (dicts, lists and tuples rebuild on
        `load`; other containers load as a dict by leaf path, or pass ``like=``) and ``args``
        when they are numbers, strings, arrays and dicts, lists or tuples of them (else they
        are left out, with a warning).

        The file is written to a temporary beside it, fsynced, then put in place in one step:
        it is complete or absent, even after a crash.  An existing file is never replaced
        unless ``overwrite=True``; of two processes saving to one new path at once, one
        succeeds and the other gets `FileExistsError`.
        """
        path = _file.npz_path(path)
        _files.check_target(path, overwrite=overwrite)
        arrays = self._file_arrays(path)
        return _files.write_file(path, lambda fh: np.savez(fh, **arrays), overwrite=overwrite)

    def _file_arrays(self, path) -> dict[str, np.ndarray]:
        header = {
            "format": FORMAT_VERSION,
            "names": None if self.names is None else list(self.names),
            "status": self.status,
            "ensemble": self.is_ensemble,
            "structure": {"shapes": [list(s) for s in self.structure.shapes],
                          "leaf_names": list(self.structure.leaf_names),
                          "skeleton": _tree.skeleton(self.structure)},
            "meta": _jsonable_meta(self.meta),
        }
        arrays = {"t": self.t, "y": self.flat}
        if self.diverged_at is not None:
            arrays["diverged_at"] = self.diverged_at
        if "args_value" in self.meta:
            args_arrays = []
            try:
                header["args_value"] = _file.encode_args(self.meta["args_value"], args_arrays)
            except _file.Unstorable as err:
                warnings.warn(f"{path} keeps no args: {err} is not a number, string, array or a dict, list or tuple "
                              f"of them; after Trajectory.load pass them yourself: traj.evaluate(q, args=...)",
                              UserWarning, stacklevel=3)
            else:
                arrays.update({_file.ARGS_ARRAY.format(i): a for i, a in enumerate(args_arrays)})
        _file.encode_run_extras(self.events, self.dense, header, arrays)
        arrays["header"] = np.array(json.dumps(header))
        return arrays

    @classmethod
    def load(cls, path, *, like=None) -> "Trajectory":
        """Read a trajectory written by `save` (any earlier format too).  ``like``: a state of the
        saved structure (needed to rebuild containers other than dicts, lists and tuples, e.g.
        an equinox module).  A file that is not one raises ``ValueError("PATH is not a regflow
        trajectory file: <what is wrong>")``."""
        if not isinstance(path, (str, os.PathLike)):
            raise TypeError(f"path must be a file path (str or os.PathLike), got {type(path).__name__}")
        path = os.fspath(path)
        if not os.path.exists(path) and not os.path.splitext(path)[1] and os.path.exists(path + SUFFIX):
            path += SUFFIX  # the name save() gives a path without a suffix
        header, arrays = _file.read_file(path)
        bad = functools.partial(_file.not_a_trajectory, path)
        t, flat = arrays["t"], arrays["y"]
        version = header["format"]
        names = None if header["names"] is None else tuple(header["names"])
        meta = dict(header["meta"])
        if "args_value" in header:
            try:
                meta["args_value"] = _file.decode_args(header["args_value"], arrays)
            except (KeyError, TypeError, ValueError, IndexError, StopIteration) as err:
                raise bad(f"its args cannot be rebuilt ({type(err).__name__}: {err})") from None
        fields = dict(names=names, status=header["status"], diverged_at=arrays.get("diverged_at"), meta=meta)
        if version == 1:
            structure = _tree.structure_of(np.zeros(flat.shape[-1]), "y")[0]
        else:
            structure, ensemble = _file.file_structure(header, flat, bad), header["ensemble"]
            fields["ensemble"] = ensemble
        if like is not None:
            wanted = _tree.structure_of(like, "like")[0]
            if wanted.shapes != structure.shapes:
                raise ValueError(f"like= has leaf shapes {wanted.shapes} but {path} holds {structure.shapes}; pass a "
                                 f"state of the saved structure, or leave like=None")
            structure = wanted
        fields.update(_file.decode_run_extras(header, arrays, structure, bad))
        try:
            return cls.from_flat(t, flat, structure, **fields)
        except (TypeError, ValueError) as err:
            raise bad(str(err)) from None

    def __repr__(self):
        lead = f"{self.paths} paths x " if self.is_ensemble else ""
        span = f"t=[{self.t[0]:g}, {self.t[-1]:g}]" if len(self.t) else "no times"
        return f"Trajectory({lead}{len(self.t)} times x {self.structure.describe()}, {span}, status={self.status!r})"


@functools.lru_cache(maxsize=256)
def _evaluator(q_static, structure):
    """``(flat states (N, dim), params) -> q`` of every state, jitted; cached on the quantity's
    static part and the state structure."""
    q = bind_quantity(q_static)

    def one(y, params):
        return q(y if structure.trivial else structure.unravel(y), params)

    return jax.jit(jax.vmap(one, in_axes=(0, None)))


def _jsonable(value):
    """A JSON form of a pytree of numbers and arrays (lists keep float64 exactly via repr)."""
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, (np.ndarray, jax.Array, np.generic)):
        return np.asarray(value).tolist()
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    return repr(value)


def _jsonable_meta(meta):
    return {k: _jsonable(v) for k, v in meta.items() if k != "args_value"}


# ----------------------------------------------------------------------------- validation


def _real_array(value, name) -> np.ndarray:
    try:
        array = np.asarray(value)
    except (TypeError, ValueError):
        raise TypeError(f"{name} must be an array of real numbers, got a ragged or non-numeric "
                        f"{type(value).__name__}") from None
    if array.dtype.kind not in "biuf":
        what = "complex values" if array.dtype.kind == "c" else f"dtype {array.dtype}"
        raise TypeError(f"{name} must hold real numbers, got {what}; pass a real array (e.g. np.real(...))")
    return array


def _check_times(t, backward=False) -> np.ndarray:
    t = _real_array(t, "t")
    if t.dtype.kind == "b":
        raise TypeError("t must hold times (real numbers), got bools")
    t = np.asarray(t, dtype=np.float64)
    if t.ndim != 1:
        raise ValueError(f"t must be 1-D (one time per saved state), got shape {t.shape}")
    if not np.all(np.isfinite(t)):
        raise ValueError("t must be finite; it contains NaN or inf")
    steps = np.diff(t) * (-1.0 if backward else 1.0)
    if np.any(steps <= 0):
        i = int(np.argmax(steps <= 0))
        order = "decreasing (a backward run: meta t1 < t0)" if backward else "increasing"
        raise ValueError(f"t must be strictly {order}; t[{i}] = {float(t[i])!r} is followed by t[{i + 1}] = "
                         f"{float(t[i + 1])!r}")
    return t


def _leading_axes(y, structure) -> tuple[int, ...]:
    """The ``(n,)`` or ``(paths, n)`` axes every leaf of ``y`` has before its state shape."""
    try:
        leaves = structure.treedef.flatten_up_to(y)
    except (TypeError, ValueError) as err:
        raise ValueError(f"y does not have the state's structure {structure.describe()}: {err}") from None
    leads = []
    for name, shape, leaf in zip(structure.leaf_names, structure.shapes, leaves):
        got = tuple(np.shape(leaf))
        k = len(got) - len(shape)
        if k not in (1, 2) or got[k:] != tuple(shape):
            leaf_text = f"leaf {name!r} of " if name else ""
            raise ValueError(f"y's {leaf_text}shape {got} must be (n, *{tuple(shape)}) or (paths, n, *{tuple(shape)}) "
                             f"for a state {structure.describe()}")
        leads.append(got[:k])
    if len(set(leads)) != 1:
        raise ValueError(f"y's leaves have different leading (paths, time) axes {sorted(set(leads))}; every leaf "
                         f"needs the same")
    return leads[0]


def _check_names(names, size) -> tuple[str, ...]:
    if isinstance(names, str) or not hasattr(names, "__iter__"):
        raise TypeError(f"names must be a sequence of strings, one per coordinate, got {names!r}")
    names = tuple(names)
    bad = [n for n in names if not isinstance(n, str) or not n]
    if bad:
        raise TypeError(f"names must be non-empty strings, got {bad[0]!r}")
    if len(names) != size:
        raise ValueError(f"names has {len(names)} entries but the state has {size} coordinates; give one name per "
                         f"coordinate")
    if len(set(names)) != len(names):
        repeated = sorted({n for n in names if names.count(n) > 1})
        raise ValueError(f"names must be distinct; {repeated} repeat")
    return names


def _check_status(status):
    if not isinstance(status, str) or not (status == "ok" or status.startswith(STATUS_WORDS)):
        raise ValueError(f"status must be 'ok' or a text starting with 'diverged' or 'failed' (or 'event') that "
                         f"names the time (e.g. 'diverged at t=0.5'), got {status!r}")


def _check_diverged_at(diverged_at, paths) -> np.ndarray:
    d = np.asarray(_real_array(diverged_at, "diverged_at"), dtype=np.float64)
    if d.shape != (paths,):
        raise ValueError(f"diverged_at must have shape ({paths},), one time per path (inf where a path did not "
                         f"diverge), got {d.shape}")
    if np.any(np.isnan(d)):
        raise ValueError("diverged_at must not hold NaN; use inf for a path that did not diverge")
    return d
