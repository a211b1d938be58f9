"""`Trajectory`: the result of `integrate` and `iterate`: times, states, names, status, metadata."""

from __future__ import annotations

import dataclasses
import functools
import json
import os
import tempfile
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from . import _tree
from ._compiled import bind_quantity, split

#: Version of files written by `Trajectory.save` (version 1, flat states only, still loads).
FORMAT_VERSION = 2
READABLE_FORMATS = (1, 2)


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

    def __post_init__(self):
        if self.structure is None:
            y = np.asarray(self.y)
            if y.ndim not in (2, 3):
                raise ValueError(f"y must have shape (n, dim) or (paths, n, dim) for a vector state, got {y.shape}; "
                                 f"for pytree states use Trajectory.from_flat(t, flat, structure)")
            object.__setattr__(self, "y", y)
            object.__setattr__(self, "structure", _tree.structure_of(y[(0,) * (y.ndim - 1)], "y")[0])
        if self.ensemble is None:
            object.__setattr__(self, "ensemble", self.flat.ndim == 3)
        if self.names is None and self.structure.trivial:
            object.__setattr__(self, "names", tuple(f"y{i}" for i in range(self.structure.size)))
        if self.names is not None:
            object.__setattr__(self, "names", tuple(self.names))

    @classmethod
    def from_flat(cls, t, flat, structure, **fields) -> "Trajectory":
        """A trajectory from flat states ``(n, dim)`` / ``(paths, n, dim)`` of a `Structure`."""
        flat = np.asarray(flat)
        traj = cls(t=np.asarray(t), y=flat if structure.trivial else structure.unravel(flat), structure=structure,
                   **fields)
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
    def ok(self) -> bool:
        return self.status == "ok"

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

    def evaluate(self, q, args=None):
        """A quantity ``q(y, args)`` at every saved state (``y`` in the state's own structure).

        Returns ``((paths,) n, *q_shape)``: scalars give ``(n,)`` or ``(paths, n)``; an array- or
        pytree-valued quantity (e.g. the balancedness matrix of two layers) gives those shapes,
        leaf by leaf.  Compiled once per quantity and state structure (``args`` are inputs)."""
        args = self.meta.get("args_value") if args is None else args
        lead = self.flat.shape[:-1]
        dynamic, static = split((q,))
        values = _evaluator(static, self.structure)(jnp.asarray(self.flat.reshape(-1, self.flat.shape[-1])),
                                                    (dynamic, args))
        return jax.tree_util.tree_map(lambda v: np.asarray(v).reshape(*lead, *v.shape[1:]), values)

    def to_xarray(self):
        """For a vector state an ``xarray.DataArray`` with dims ``(path,) time, var`` and the
        names as coordinates; for a pytree state an ``xarray.Dataset`` with one variable per
        leaf, named by its pytree path (dims ``(path,) time, <leaf>_0, <leaf>_1 ...``)."""
        import xarray as xr

        lead = ("path", "time") if self.is_ensemble else ("time",)
        coords = {"time": self.t}
        if self.is_ensemble:
            coords["path"] = np.arange(self.paths)
        attrs = {"status": self.status, **{k: json.dumps(v) for k, v in _jsonable_meta(self.meta).items()}}
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
        """Save losslessly to ``path`` (``.npz``), the pytree structure included (dicts,
        lists and tuples rebuild on `load`; other containers load as a dict by leaf path,
        or pass ``like=``).  Refuses to replace an existing file unless ``overwrite=True``;
        the write is atomic, so a crash never leaves half a file."""
        path = os.fspath(path)
        if not path.endswith(".npz"):
            path += ".npz"
        if os.path.exists(path) and not overwrite:
            raise FileExistsError(f"{path} exists; pass overwrite=True to replace it or choose another path")
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
        arrays = {"t": self.t, "y": self.flat, "header": np.array(json.dumps(header))}
        if self.diverged_at is not None:
            arrays["diverged_at"] = self.diverged_at
        directory = os.path.dirname(os.path.abspath(path))
        fd, tmp = tempfile.mkstemp(suffix=".npz", dir=directory)
        try:
            with os.fdopen(fd, "wb") as fh:
                np.savez(fh, **arrays)
            os.replace(tmp, path)
        except BaseException:
            if os.path.exists(tmp):
                os.remove(tmp)
            raise
        return path

    @classmethod
    def load(cls, path, *, like=None) -> "Trajectory":
        """Read a trajectory written by `save`.  ``like``: a state of the saved structure (needed
        to rebuild containers other than dicts, lists and tuples, e.g. an equinox module)."""
        with np.load(os.fspath(path), allow_pickle=False) as data:
            header = json.loads(str(data["header"]))
            if header.get("format") not in READABLE_FORMATS:
                raise ValueError(f"{path} has format {header.get('format')}, this regflow reads {READABLE_FORMATS}")
            diverged_at = data["diverged_at"] if "diverged_at" in data.files else None
            flat, t = data["y"], data["t"]
        names = None if header["names"] is None else tuple(header["names"])
        fields = dict(names=names, status=header["status"], diverged_at=diverged_at, meta=header["meta"])
        if header["format"] == 1:
            return cls(t=t, y=flat, **fields)
        spec = header["structure"]
        shapes = tuple(tuple(s) for s in spec["shapes"])
        if like is not None:
            structure = _tree.structure_of(like, "like")[0]
            if structure.shapes != shapes:
                raise ValueError(f"like= has leaf shapes {structure.shapes} but {path} holds {shapes}")
        else:
            structure = _tree.Structure(_tree.treedef_of(spec["skeleton"], spec["leaf_names"]), shapes,
                                        tuple(spec["leaf_names"]))
        return cls.from_flat(t, flat, structure, ensemble=header["ensemble"], **fields)

    def __repr__(self):
        lead = f"{self.paths} paths x " if self.is_ensemble else ""
        return (f"Trajectory({lead}{len(self.t)} times x {self.structure.describe()}, "
                f"t=[{self.t[0]:g}, {self.t[-1]:g}], status={self.status!r})")


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
