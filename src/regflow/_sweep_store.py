r"""The ``out`` directory of a `sweep`: what was swept, one file per finished chunk, the result.

::

    out/manifest.json      grid, seed, chunk size, fingerprints of factory and run
    out/chunk-<i>.npz      results of chunk i (grid indices, seeds, one array per result)
    out/chunk-<i>.sha256   its checksum, in ``sha256sum`` format
    out/sweep.nc           the finished Dataset

Every file is written through `regflow._files` (temporary, fsync, atomic publication), the
checksum before its chunk, so a chunk is either absent or complete and checkable: a rerun
after a crash (even ``kill -9``) reuses every finished chunk, recomputes an empty, truncated
or modified one with a warning naming it, and removes the temporaries the crash left.  A rerun
whose grid, seed, chunk size, ``factory`` or ``run`` differ from the manifest is refused
(the saved results would be stale) unless ``recompute=True``.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import platform
import re
import warnings
import zipfile

import numpy as np

from . import _files

#: Version of the files written to ``out`` (version 1: no fingerprints or checksums).
FORMAT_VERSION = 2
MANIFEST = "manifest.json"
RESULT_FILE = "sweep.nc"
CHUNK_FILE = "chunk-{}.npz"
CHECKSUM_FILE = "chunk-{}.sha256"
#: netCDF engine and format of ``sweep.nc``; scipy is a core dependency of regflow.
NETCDF = {"engine": "scipy", "format": "NETCDF3_64BIT"}
#: Manifest entries that must match for a rerun to reuse ``out``.
MANIFEST_KEYS = ("grid", "seed", "chunk_size")
#: Callables whose fingerprints must match (`regflow._fingerprint`).
FINGERPRINTED = ("factory", "run")
_RESULT_PREFIX = "result_"
_SWEEP_FILE = re.compile(r"^(chunk-\d+\.(npz|sha256)|manifest\.json|sweep\.nc)$")


def manifest(grid, seed, chunk_size, n_chunks, names, fingerprints) -> dict:
    """The manifest of a sweep; ``names`` and ``fingerprints``: ``{"factory": ..., "run": ...}``."""
    return {
        "format": FORMAT_VERSION,
        "kind": "regflow.sweep",
        "grid": grid.to_json(),
        "seed": seed,
        "chunk_size": chunk_size,
        "n_points": grid.size,
        "n_chunks": n_chunks,
        **names,
        "fingerprints": dict(fingerprints),
        "python": platform.python_version(),
    }


class Store:
    """The ``out`` directory of one sweep."""

    def __init__(self, path):
        self.path = path

    @classmethod
    def open(cls, out, manifest, *, recompute: bool = False) -> "Store":
        """Open ``out`` for the sweep of ``manifest``: create it, resume it, or refuse it."""
        if not isinstance(out, (str, os.PathLike)):
            raise TypeError(f"out must be a directory path (str or os.PathLike) or None, got {type(out).__name__}")
        path = os.fspath(out)
        if os.path.exists(path) and not os.path.isdir(path):
            raise ValueError(f"out={path!r} is a file; out must be a directory (it is created if missing)")
        os.makedirs(path, exist_ok=True)
        store = cls(path)
        _files.remove_stale_temporaries(path)
        manifest_path = os.path.join(path, MANIFEST)
        if recompute:
            store._clear()
        elif os.path.exists(manifest_path):
            store._compare(manifest_path, manifest)
            return store
        else:
            leftovers = [f for f in os.listdir(path) if _SWEEP_FILE.match(f)]
            if leftovers:
                raise ValueError(f"out={path!r} holds sweep files {sorted(leftovers)[:3]} but no {MANIFEST}; pass "
                                 f"recompute=True to replace them, choose another out directory, or delete "
                                 f"{path!r} to start this sweep afresh")
        try:
            _files.write_text(manifest_path, json.dumps(manifest, indent=2) + "\n")
        except FileExistsError:  # another sweep created it just now
            store._compare(manifest_path, manifest)
        return store

    def _clear(self):
        for name in os.listdir(self.path):
            if _SWEEP_FILE.match(name):
                os.unlink(os.path.join(self.path, name))

    def _compare(self, manifest_path, manifest):
        fresh = (f"pass recompute=True to compute every chunk again in it, choose another out directory, or "
                 f"delete {self.path!r} to start this sweep afresh")
        try:
            with open(manifest_path) as fh:
                saved = json.load(fh)
            if not isinstance(saved, dict):
                raise ValueError("not a JSON object")
        except (OSError, ValueError) as err:
            raise ValueError(f"cannot read {manifest_path} ({err}); {fresh}") from None
        if saved.get("kind") != "regflow.sweep":
            raise ValueError(f"{manifest_path} is not a regflow sweep manifest; {fresh}")
        if saved.get("format") != FORMAT_VERSION:
            raise ValueError(f"{manifest_path} was written by a regflow with sweep format {saved.get('format')}, "
                             f"which recorded no fingerprints of factory and run, so its chunks cannot be checked "
                             f"against this sweep; {fresh}")
        new = json.loads(json.dumps(manifest))
        # compared as JSON text, so 1 and 1.0 (int and float grids) differ
        differ = [key for key in MANIFEST_KEYS if json.dumps(saved.get(key)) != json.dumps(new[key])]
        if differ:
            shown = {"grid": lambda g: " x ".join(f"{n}{v}" for n, v in g)}
            detail = "; ".join(f"{key}: saved {shown.get(key, repr)(saved.get(key))}, this call "
                               f"{shown.get(key, repr)(new[key])}" for key in differ)
            raise ValueError(f"out={self.path!r} holds a sweep with a different {', '.join(differ)} ({detail}); "
                             f"{fresh}")
        saved_prints = saved.get("fingerprints") or {}
        changed = [key for key in FINGERPRINTED if saved_prints.get(key) != new["fingerprints"][key]]
        if changed:
            detail = "; ".join(f"{key}: saved {saved.get(key)} {str(saved_prints.get(key))[:12]}, this call "
                               f"{new[key]} {new['fingerprints'][key][:12]}" for key in changed)
            python = ""
            if saved.get("python") != new["python"]:
                python = (f" (the Python version changed too, {saved.get('python')} -> {new['python']}, which "
                          f"changes the bytecode the fingerprint reads)")
            raise ValueError(f"out={self.path!r} holds results of a different {' and '.join(changed)}: its code, "
                             f"defaults, closure values or the module-level values it reads changed since they "
                             f"were computed ({detail}){python}, so they would be stale; {fresh}")

    def chunk_path(self, i) -> str:
        return os.path.join(self.path, CHUNK_FILE.format(i))

    def checksum_path(self, i) -> str:
        return os.path.join(self.path, CHECKSUM_FILE.format(i))

    def load(self, bounds, seeds) -> dict[int, dict[str, np.ndarray]]:
        """The chunks saved by earlier runs; a damaged one is reported (a warning naming it) and
        left out, to be computed again."""
        parts = {}
        for i, (a, b) in enumerate(bounds):
            path = self.chunk_path(i)
            if not os.path.exists(path):
                continue
            part, problem = self._read(i, path, np.arange(a, b), seeds[a:b])
            if problem is not None:
                warnings.warn(f"{path} {problem}; computing chunk {i} again", RuntimeWarning, stacklevel=3)
                continue
            parts[i] = part
        return parts

    def _read(self, i, path, index, seeds):
        """``(part, None)``, or ``(None, what is wrong)``."""
        checksum = self.checksum_path(i)
        try:
            with open(checksum) as fh:
                want = fh.read().split()[0]
        except FileNotFoundError:
            return None, f"has no checksum ({os.path.basename(checksum)} is missing)"
        except (OSError, IndexError, UnicodeDecodeError):
            return None, f"has an unreadable checksum file {os.path.basename(checksum)}"
        size = os.path.getsize(path)
        if size == 0:
            return None, "is empty"
        if _files.sha256_file(path) != want:
            return None, (f"does not match its checksum in {os.path.basename(checksum)} ({size} bytes: truncated "
                          f"or modified)")
        try:
            with np.load(path, allow_pickle=False) as data:
                header = json.loads(str(data["header"]))
                saved_index, saved_seeds = data["index"], data["seeds"]
                part = {k[len(_RESULT_PREFIX):]: data[k] for k in data.files if k.startswith(_RESULT_PREFIX)}
        except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as err:
            return None, f"cannot be read ({type(err).__name__}: {err})"
        if (header.get("format") != FORMAT_VERSION or header.get("chunk") != i
                or not np.array_equal(saved_index, index) or not np.array_equal(saved_seeds, seeds)):
            return None, f"does not belong to the sweep in {MANIFEST} (other chunk number, grid points or seeds)"
        return part, None

    def save(self, i, part, bound, seeds):
        """Save chunk ``i``: its checksum first, then the chunk, each atomically."""
        a, b = bound
        arrays = {_RESULT_PREFIX + name: values for name, values in part.items()}
        arrays.update(header=np.array(json.dumps({"format": FORMAT_VERSION, "chunk": i})),
                      index=np.arange(a, b), seeds=seeds[a:b])
        buffer = io.BytesIO()
        np.savez(buffer, **arrays)
        data = buffer.getbuffer()
        name = CHUNK_FILE.format(i)
        _files.write_text(self.checksum_path(i), f"{hashlib.sha256(data).hexdigest()}  {name}\n", overwrite=True)
        _files.write_file(self.chunk_path(i), lambda fh: fh.write(data), overwrite=True)

    def save_result(self, ds):
        path = os.path.join(self.path, RESULT_FILE)
        try:
            data = ds.to_netcdf(None, **NETCDF)
            _files.write_file(path, lambda fh: fh.write(data), overwrite=True)
        except (ValueError, TypeError, OSError) as err:
            warnings.warn(f"could not write {path} ({err}); the chunks in {self.path!r} are complete and the "
                          f"Dataset is returned: save it yourself, e.g. ds.to_netcdf(..., engine='h5netcdf')",
                          RuntimeWarning, stacklevel=3)
