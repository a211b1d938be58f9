"""Files ``regflow`` writes: checked before any computing, written whole or not at all.

Trajectories by extension: ``.npz`` (`Trajectory.save`, lossless, reads back with
`Trajectory.load`), ``.nc`` (netCDF of `Trajectory.to_xarray`), ``.csv`` (tidy: one row per path
and time, columns ``path, t`` then the coordinate names).  Figures in any format matplotlib
writes.  A target that exists is refused unless ``--overwrite``; a new file is created
exclusively (`regflow._files`: a hard link from a synced temporary), so two writers cannot
both succeed and an interrupted write leaves no half file.
"""

from __future__ import annotations

import csv
import io
import json
import os

import numpy as np

from ._cli_args import UsageError
from ._files import write_file

TRAJECTORY_FORMATS = {
    ".npz": "lossless regflow file (rf.Trajectory.load)",
    ".nc": "netCDF (xarray.open_dataset / open_dataarray)",
    ".csv": "tidy CSV: path, t, then one column per coordinate",
}
#: xarray's engine for ``.nc``: scipy's netCDF3 writer (scipy is a dependency; it writes to a
#: file object, so the file is created exclusively like every other).
NETCDF_ENGINE = "scipy"
OVERWRITE_HINT = "pass --overwrite to replace it"
FIGURE_DPI = 130


def figure_formats() -> dict[str, str]:
    """Extensions matplotlib can save to (``.png``, ``.pdf``, ``.svg`` ...)."""
    import matplotlib.figure

    return {f".{k}": v for k, v in matplotlib.figure.Figure().canvas.get_supported_filetypes().items()}


def check_target(path: str, *, flag: str, formats: dict, overwrite: bool) -> str:
    """Refuse, before anything is computed, a ``path`` that cannot be written: an unsupported
    extension, a missing or read-only directory, a directory in its place, or an existing file
    without ``--overwrite``."""
    ext = os.path.splitext(path)[1].lower()
    if ext not in formats:
        listing = "; ".join(f"{k} ({v})" for k, v in formats.items()) if len(formats) <= 4 else ", ".join(formats)
        raise UsageError(f"{flag} {path}: cannot write {'a ' + ext if ext else 'a file without an extension'}; "
                         f"supported extensions: {listing}")
    _check_place(path, flag=flag, overwrite=overwrite, what="file")
    return path


def check_directory(directory: str, *, flag: str, overwrite: bool, inside: str) -> None:
    """Refuse a report directory whose parent is missing, that is a file, or that already
    holds ``inside`` (without ``--overwrite``)."""
    if os.path.exists(directory) and not os.path.isdir(directory):
        raise UsageError(f"{flag} {directory}: is a file, not a directory; choose a directory")
    parent = os.path.dirname(os.path.abspath(directory))
    if not os.path.isdir(parent):
        raise UsageError(f"{flag} {directory}: the directory {parent} does not exist; create it first "
                         f"(mkdir -p {parent})")
    if os.path.isdir(directory):
        _check_place(os.path.join(directory, inside), flag=flag, overwrite=overwrite, what="report")
    elif not os.access(parent, os.W_OK):
        raise UsageError(f"{flag} {directory}: cannot create it, {parent} is not writable")


def _check_place(path, *, flag, overwrite, what):
    directory = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(directory):
        raise UsageError(f"{flag} {path}: the directory {directory} does not exist; create it first "
                         f"(mkdir -p {directory})")
    if not os.access(directory, os.W_OK):
        raise UsageError(f"{flag} {path}: the directory {directory} is not writable; choose another path")
    if os.path.isdir(path):
        raise UsageError(f"{flag} {path}: is a directory; give a file name")
    if os.path.lexists(path) and not overwrite:
        raise UsageError(f"{flag} {path}: the {what} exists; pass --overwrite to replace it, or choose another path")


def write_trajectory(traj, path: str, *, overwrite: bool) -> str:
    """Write ``traj`` to ``path`` in the format its extension names."""
    ext = os.path.splitext(path)[1].lower()
    if ext == ".npz":
        return _exclusive(lambda: traj.save(path, overwrite=overwrite))
    if ext == ".nc":
        data = _netcdf_ready(traj)
        return _write(path, lambda fh: data.to_netcdf(fh, engine=NETCDF_ENGINE), overwrite)
    if ext == ".csv":
        return _write(path, lambda fh: _write_csv(traj, fh), overwrite)
    raise UsageError(f"--out {path}: supported extensions: {', '.join(TRAJECTORY_FORMATS)}")


def save_figure(fig, path: str, *, overwrite: bool) -> str:
    fmt = os.path.splitext(path)[1].lower()[1:]
    return _write(path, lambda fh: fig.savefig(fh, format=fmt, dpi=FIGURE_DPI, bbox_inches="tight"), overwrite)


def _write(path, write, overwrite):
    """`regflow._files.write_file`: complete or absent, created exclusively without ``overwrite``."""
    return _exclusive(lambda: write_file(path, write, overwrite=overwrite, hint=OVERWRITE_HINT))


def _exclusive(write):
    try:
        return write()
    except FileExistsError as error:  # created by someone else since the check before computing
        raise UsageError(str(error).replace("overwrite=True", "--overwrite")) from None


def _netcdf_ready(traj):
    """``traj.to_xarray()`` with what netCDF3 cannot hold made storable: attributes that are
    not numbers or strings as JSON text, 64-bit integer coordinates as 32-bit, and the
    divergence times of an ensemble as a ``diverged_at(path)`` coordinate."""
    data = traj.to_xarray()
    held = any("diverged_at" in where for where in (data.coords, data.attrs, getattr(data, "data_vars", {})))
    if traj.diverged_at is not None and not held and "path" in data.dims:
        data = data.assign_coords(diverged_at=("path", np.asarray(traj.diverged_at, dtype=np.float64)))
    for name in list(data.coords):
        if data[name].dtype.kind in "iu" and data[name].dtype.itemsize > 4:
            data = data.assign_coords({name: data[name].astype(np.int32)})
    data.attrs = _storable(data.attrs)
    for name in getattr(data, "data_vars", {}):
        data[name].attrs = _storable(data[name].attrs)
    return data


def _storable(attrs):
    def one(value):
        if isinstance(value, (str, int, float, np.number)) and not isinstance(value, (bool, np.bool_)):
            return value
        if isinstance(value, np.ndarray) and value.ndim == 1 and value.dtype.kind in "fi":
            return value  # netCDF3 stores 1-D numeric attributes as numbers (e.g. diverged_at)
        return json.dumps(value, default=str)

    return {str(k): one(v) for k, v in attrs.items()}


def _write_csv(traj, fh):
    flat = traj.flat if traj.is_ensemble else traj.flat[None]
    text = io.TextIOWrapper(fh, encoding="utf-8", newline="")
    writer = csv.writer(text)
    writer.writerow(["path", "t", *traj.coordinate_names])
    for p, states in enumerate(flat):
        writer.writerows([p, t, *row] for t, row in zip(traj.t.tolist(), states.tolist()))
    text.flush()
    text.detach()  # leave ``fh`` open for the writer to sync
