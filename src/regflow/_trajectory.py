"""`Trajectory`: the result of `integrate` and `iterate`: times, states, names, status, metadata."""

from __future__ import annotations

import dataclasses
import json
import os
import tempfile
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

FORMAT_VERSION = 1


@dataclasses.dataclass(frozen=True, eq=False)
class Trajectory:
    """States of a system at saved times.

    Attributes
    ----------
    t : (n,) times.
    y : (n, dim) states, or (paths, n, dim) for an ensemble.
    names : coordinate names, one per state dimension.
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
    y: np.ndarray
    names: tuple[str, ...]
    status: str = "ok"
    diverged_at: np.ndarray | None = None
    meta: dict[str, Any] = dataclasses.field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return self.status == "ok"

    @property
    def is_ensemble(self) -> bool:
        return self.y.ndim == 3

    @property
    def paths(self) -> int:
        return self.y.shape[0] if self.is_ensemble else 1

    def __getitem__(self, name: str) -> np.ndarray:
        """The coordinate called ``name``, shape (n,) or (paths, n)."""
        if name not in self.names:
            raise KeyError(f"no coordinate {name!r}; this trajectory has {self.names}")
        return self.y[..., self.names.index(name)]

    def evaluate(self, q, args=None) -> np.ndarray:
        """A quantity ``q(y, args)`` at every saved state, shape (n,) or (paths, n)."""
        args = self.meta.get("args_value") if args is None else args
        flat = self.y.reshape(-1, self.y.shape[-1])
        values = jax.vmap(lambda y: q(y, args))(jnp.asarray(flat))
        return np.asarray(values).reshape(self.y.shape[:-1])

    def to_xarray(self):
        """An ``xarray.DataArray`` with dims ``(path,) time, var`` and the names as coordinates."""
        import xarray as xr

        dims = ("path", "time", "var") if self.is_ensemble else ("time", "var")
        coords = {"time": self.t, "var": list(self.names)}
        if self.is_ensemble:
            coords["path"] = np.arange(self.paths)
        attrs = {"status": self.status, **{k: json.dumps(v) for k, v in _jsonable_meta(self.meta).items()}}
        return xr.DataArray(self.y, dims=dims, coords=coords, name="y", attrs=attrs)

    def save(self, path, *, overwrite: bool = False) -> str:
        """Save losslessly to ``path`` (``.npz``).  Refuses to replace an existing file
        unless ``overwrite=True``; the write is atomic, so a crash never leaves half a file."""
        path = os.fspath(path)
        if not path.endswith(".npz"):
            path += ".npz"
        if os.path.exists(path) and not overwrite:
            raise FileExistsError(f"{path} exists; pass overwrite=True to replace it or choose another path")
        header = {
            "format": FORMAT_VERSION,
            "names": list(self.names),
            "status": self.status,
            "meta": _jsonable_meta(self.meta),
        }
        arrays = {"t": self.t, "y": self.y, "header": np.array(json.dumps(header))}
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
    def load(cls, path) -> "Trajectory":
        """Read a trajectory written by `save`."""
        with np.load(os.fspath(path), allow_pickle=False) as data:
            header = json.loads(str(data["header"]))
            if header.get("format") != FORMAT_VERSION:
                raise ValueError(f"{path} has format {header.get('format')}, this regflow reads {FORMAT_VERSION}")
            diverged_at = data["diverged_at"] if "diverged_at" in data.files else None
            return cls(t=data["t"], y=data["y"], names=tuple(header["names"]), status=header["status"],
                       diverged_at=diverged_at, meta=header["meta"])

    def __repr__(self):
        shape = "x".join(map(str, self.y.shape))
        return f"Trajectory({shape}, names={self.names}, t=[{self.t[0]:g}, {self.t[-1]:g}], status={self.status!r})"


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
