r"""`sweep`: one computation over a grid of parameters, gathered into an ``xarray.Dataset``.

A sweep is three things: a ``grid`` (parameter name -> 1-D values; the Cartesian product
is the set of grid points), a ``factory(**params)`` that builds the system of one point,
and a ``run(system, seed) -> {name: array}`` that computes that point's results.

How the work is split and where it runs never changes the numbers:

* Grid points are numbered by their flat index in C order (the last grid name varies
  fastest).  Point ``i`` runs with the seed ``point_seeds(seed, n)[i]``: a base drawn from
  ``numpy.random.SeedSequence(seed)`` plus ``i`` (mod ``2**31``), so the seeds of one sweep
  are distinct, fit in an int32 and depend only on ``seed`` and ``i``.
* Consecutive points are grouped into chunks of ``chunk_size``.  A chunk is the pure
  function `run_chunk` of ``(factory, run, params, seeds)``; it runs here or on a Dask
  worker, and the Dataset is the same bit for bit.
* With ``out=DIR`` every finished chunk is saved at once (atomically, fsynced, with a
  sha256 checksum) to ``DIR/chunk-<i>.npz`` next to ``DIR/manifest.json`` (grid, seed,
  chunk size, fingerprints of ``factory`` and ``run``).  A rerun with the same ``out``
  loads the saved chunks and computes only the missing or damaged ones; one with a
  different grid, seed, chunk size, ``factory`` or ``run`` is refused unless
  ``recompute=True`` (`regflow._sweep_store`).  The finished Dataset is written to
  ``DIR/sweep.nc`` (netCDF3 through scipy: float64 round-trips exactly; int64 is stored as
  int32).
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import re
from collections.abc import Mapping
from typing import Any, Callable

import jax
import numpy as np

from ._fingerprint import fingerprint, qualname
from ._progress import progress_bar
from ._sweep_store import CHECKSUM_FILE, CHUNK_FILE, MANIFEST, RESULT_FILE, Store, manifest  # noqa: F401
from ._tree import is_number_list, path_name
from ._versions import versions

#: Without ``chunk_size`` the grid is cut into at most this many chunks.
DEFAULT_CHUNKS = 20
#: Seeds live in ``[0, SEED_LIMIT)``: int32, which netCDF3 stores and JAX takes without x64.
SEED_LIMIT = 2**31
#: Name of the data variable holding each grid point's seed.
POINT_SEED = "point_seed"
#: numpy dtype kinds allowed in results (bool, int, uint, float) and in grid values (+ str).
RESULT_KINDS = "biuf"
GRID_KINDS = "biufU"
_GRID_EXAMPLE = "{'lr': [0.01, 0.1], 'batch': [8, 32]}"


def sweep(factory: Callable, grid: Mapping, *, run: Callable, out=None, chunk_size: int | None = None,
          executor=None, progress: bool | None = None, seed: int = 0, dims: Mapping | None = None,
          coords: Mapping | None = None, description: str | None = None, recompute: bool = False):
    r"""Run ``run(factory(**params), seed)`` at every point of a parameter grid.

    Parameters
    ----------
    factory : ``factory(**params)`` builds what ``run`` takes, usually an `ODE`, `SDE` or
        `Map`.  Declare its vector fields at module level and pass the parameters through
        ``args``: then every point reuses one compiled program.
    grid : dict name -> 1-D sequence of distinct numbers, bools or strings; the grid is
        their Cartesian product, e.g. ``{"lr": [0.01, 0.1], "batch": [8, 32]}``.
    run : ``run(system, seed) -> {name: array}``: the results of one point, the same names
        and shapes at every point (numbers or bools; e.g. a final variance, a loss curve).
        A pytree value (the final parameters, a dict of matrices) gives one variable per
        leaf, ``<name>_<leaf path>``.
    out : directory to save chunks, ``manifest.json`` and the final ``sweep.nc`` in; a
        rerun with the same ``out`` resumes: finished chunks are reused, missing or damaged
        ones (a warning names them) computed.  A rerun with another grid, seed, chunk size,
        ``factory`` or ``run`` (their code, defaults, closure values or the module-level
        values they read, see `regflow._fingerprint`) is refused: the saved results would be
        stale.  One sweep writes to an ``out`` at a time.  ``None``: keep nothing on disk.
    chunk_size : grid points per chunk, the unit of work, saving and progress (default:
        the grid cut into at most ``DEFAULT_CHUNKS`` chunks).
    executor : ``None`` runs here; a ``dask.distributed.Client`` runs the chunks on its
        workers (``factory`` and ``run`` travel with cloudpickle, so closures are fine;
        the workers import regflow, which turns on float64).
    progress : show a bar, one tick per chunk (``None``: when stderr is a terminal and
        ``REGFLOW_PROGRESS`` is not ``"0"``).
    seed : int in ``[0, 2**31)``; point ``i`` runs with ``point_seeds(seed, n)[i]``.
    dims : names of the extra axes of array results, e.g. ``{"loss": ("time",)}``
        (default ``"<name>_dim<k>"``).
    coords : coordinates of those axes, e.g. ``{"time": ts}``.
    description : text kept in ``attrs["description"]`` (default: what was swept).
    recompute : discard what ``out`` holds and compute every chunk again (after changing
        ``run`` or ``factory``, or something they read that the fingerprint cannot see, such
        as a data file).  Drop it again to resume later runs.

    Returns
    -------
    xarray.Dataset with one dimension per grid name (in ``grid`` order, coordinates the grid
    values) followed by each result's own dims; a data variable per result plus
    ``point_seed``; ``attrs`` with ``seed``, ``description``, ``factory``, ``run`` and
    ``regflow_version`` (not the chunk size or executor: they never change the numbers).
    Select points with ``ds.sel(lr=0.1)``, or ``ds.sel({"method": "euler"})`` for grid
    names that are also keywords of ``sel``.

    Example
    -------
    >>> import numpy as np, regflow as rf
    >>> def ou(theta, sigma):
    ...     return rf.SDE(drift, diffusion, args={"theta": theta, "sigma": sigma})
    >>> def final_variance(sde, seed):
    ...     traj = rf.integrate(sde, [0.0], 1.0, dt=0.01, paths=256, seed=seed)
    ...     return {"var": np.var(traj.y[:, -1, 0])}
    >>> ds = sweep(ou, {"theta": [0.5, 1.0], "sigma": [0.1, 0.3]}, run=final_variance,
    ...            out="ou-sweep")                                  # doctest: +SKIP
    >>> ds["var"].sel(theta=1.0, sigma=0.3)                         # doctest: +SKIP
    """
    grid = _check_grid(grid)
    _check_callable(factory, "factory")
    _check_callable(run, "run")
    seed = _check_seed(seed)
    chunk_size = _check_chunk_size(chunk_size, grid.size)
    dims, coords = _check_dims(dims, grid), _check_coords(coords, grid)
    client = _check_executor(executor)
    if description is not None and not isinstance(description, str):
        raise TypeError(f"description must be a str, got {type(description).__name__}")
    if not isinstance(recompute, (bool, np.bool_)):
        raise TypeError(f"recompute must be True or False, got {recompute!r}")
    if recompute and out is None:
        raise ValueError("recompute=True discards the results saved in out, but out is None; give out=DIR or drop "
                         "recompute")

    seeds = point_seeds(seed, grid.size)
    bounds = [(start, min(start + chunk_size, grid.size)) for start in range(0, grid.size, chunk_size)]
    store = None
    if out is not None:
        callables = {"factory": factory, "run": run}
        store = Store.open(out, manifest(grid, seed, chunk_size, len(bounds),
                                         {k: qualname(fn) for k, fn in callables.items()},
                                         {k: fingerprint(fn) for k, fn in callables.items()}),
                           recompute=bool(recompute))
    parts = {} if store is None else store.load(bounds, seeds)
    schema = _Schema(grid, dims, coords)
    for i in sorted(parts):
        schema.check(i, parts[i])

    jobs = [(i, [grid.params(k) for k in range(a, b)], [int(s) for s in seeds[a:b]])
            for i, (a, b) in enumerate(bounds) if i not in parts]
    results = _local(jobs, factory, run) if client is None else _dask(client, jobs, factory, run)
    with progress_bar(len(bounds), "sweep", enabled=progress, initial=len(parts), unit="chunk") as bar, \
            contextlib.closing(results) as results:
        for i, part in results:
            schema.check(i, part)
            if store is not None:
                store.save(i, part, bounds[i], seeds)
            parts[i] = part
            bar.update()

    attrs = {
        "description": description if description is not None else _describe(grid, factory, run),
        "seed": seed,
        "factory": qualname(factory),
        "run": qualname(run),
        "regflow_version": versions()["regflow"],
    }
    ds = schema.dataset([parts[i] for i in range(len(bounds))], seeds, attrs)
    if store is not None:
        store.save_result(ds)
    return ds


def point_seeds(seed: int, n: int) -> np.ndarray:
    """Seeds of grid points ``0 .. n-1`` of a sweep with ``seed``: distinct int32 values.

    Example
    -------
    >>> s = point_seeds(0, 4)
    >>> s.dtype, len(set(s.tolist()))
    (dtype('int32'), 4)
    """
    base = int(np.random.SeedSequence(seed).generate_state(1, np.uint32)[0]) % SEED_LIMIT
    return ((base + np.arange(n, dtype=np.int64)) % SEED_LIMIT).astype(np.int32)


def run_chunk(factory: Callable, run: Callable, params: list[dict], seeds: list[int]) -> dict[str, np.ndarray]:
    """Results of consecutive grid points, stacked: ``{name: array (len(params), ...)}``.

    A pure function of its inputs, run here or on a Dask worker; importing this module
    imports regflow, which turns on JAX float64 in that process.
    """
    rows = []
    for p, s in zip(params, seeds):
        try:
            rows.append(_check_result(run(factory(**p), s), p))
        except Exception as err:
            if hasattr(err, "add_note"):  # Python >= 3.11
                err.add_note(f"regflow.sweep: raised at grid point {p} (seed {s})")
            raise
    first = rows[0]
    for p, row in zip(params[1:], rows[1:]):
        _same_layout(_layout(row), _layout(first), f"grid point {p}", f"grid point {params[0]}")
    return {name: np.stack([row[name] for row in rows]) for name in first}


# ----------------------------------------------------------------------------- executors


def _local(jobs, factory, run):
    for i, params, seeds in jobs:
        yield i, run_chunk(factory, run, params, seeds)


def _dask(client, jobs, factory, run):
    """Submit every chunk and yield them as they complete.  When one fails, the chunks
    already finished are yielded (so saved) before its error is raised; the rest are
    cancelled."""
    from distributed import as_completed

    futures = {client.submit(run_chunk, factory, run, params, seeds, pure=False): i
               for i, params, seeds in jobs}
    waiting = dict(futures)
    try:
        for future in as_completed(futures):
            if future.status != "finished":
                for other in [f for f in waiting if f.status == "finished"]:
                    yield waiting.pop(other), other.result()
                future.result()  # raises the worker's exception
            yield waiting.pop(future), future.result()
    finally:
        client.cancel(list(futures))


# ----------------------------------------------------------------------------- results


def _check_result(result, params) -> dict[str, np.ndarray]:
    where = f"at grid point {params}"
    if not isinstance(result, Mapping) or not result:
        raise TypeError(f"run must return a non-empty dict of named arrays such as {{'var': 0.5}}; "
                        f"{where} it returned {type(result).__name__}")
    arrays = {}
    for name, value in _expand_pytrees(result).items():
        if not isinstance(name, str) or not name.isidentifier():
            raise ValueError(f"run's result names must be identifiers such as 'final_var'; {where} it returned {name!r}")
        if name == POINT_SEED:
            raise ValueError(f"run's result name {POINT_SEED!r} is reserved for the seeds; rename it")
        array = np.asarray(value)
        if array.dtype.kind not in RESULT_KINDS:
            raise TypeError(f"run's result {name!r} must hold real numbers or bools; {where} it has dtype {array.dtype}")
        arrays[name] = array
    return arrays


def _expand_pytrees(result):
    """A pytree-valued result (say the final parameters, a dict of matrices) becomes one
    result per leaf, named ``<name>_<leaf path>`` (``params_W1``, ``params_layers_0_w``)."""
    out = {}
    for name, value in result.items():
        if isinstance(value, (dict, list, tuple)) and not is_number_list(value) or hasattr(value, "__dataclass_fields__"):
            for path, leaf in jax.tree_util.tree_flatten_with_path(value)[0]:
                label = re.sub(r"\W", "_", path_name(path)).strip("_")
                out[f"{name}_{label}" if label else str(name)] = leaf
        else:
            out[name] = value
    return out


def _layout(arrays) -> dict[str, tuple]:
    return {name: np.shape(a) for name, a in arrays.items()}


def _same_layout(layout, reference, what, reference_what, hint=""):
    if layout != reference:
        raise ValueError(f"run must return the same names and shapes at every grid point: {what} gives "
                         f"{layout} but {reference_what} gives {reference}{hint}")


class _Schema:
    """The layout of the results (set by the first chunk seen) and how it becomes a Dataset."""

    def __init__(self, grid, dims, coords):
        self.grid, self.user_dims, self.coords = grid, dims, coords
        self.layout = self.dims = self.first = None

    def check(self, i, part):
        layout = {name: a.shape[1:] for name, a in part.items()}
        if self.layout is None:
            self.dims = _result_dims(layout, self.user_dims, self.coords, self.grid)
            self.layout, self.first = layout, i
            return
        _same_layout(layout, self.layout, f"chunk {i}", f"chunk {self.first}",
                     "; if run changed since the chunks in out were saved, pass recompute=True")

    def dataset(self, parts, seeds, attrs):
        import xarray as xr

        shape, names = self.grid.shape, self.grid.names
        data = {}
        for name in self.layout:
            values = np.concatenate([p[name] for p in parts])
            data[name] = (names + self.dims[name], values.reshape(shape + values.shape[1:]))
        data[POINT_SEED] = (names, seeds.reshape(shape))
        coords = {name: v.copy() for name, v in zip(names, self.grid.values)} | self.coords
        return xr.Dataset(data, coords=coords, attrs=attrs)


def _result_dims(layout, user_dims, coords, grid) -> dict[str, tuple[str, ...]]:
    """Dims of every result's own axes; checks ``dims`` and ``coords`` against the results."""
    unknown = set(user_dims) - set(layout)
    if unknown:
        raise ValueError(f"dims names results {sorted(unknown)} that run does not return; run returns {list(layout)}")
    dims, sizes = {}, {}
    for name, shape in layout.items():
        own = user_dims.get(name, tuple(f"{name}_dim{k}" for k in range(len(shape))))
        if len(own) != len(shape):
            raise ValueError(f"dims[{name!r}] = {own} names {len(own)} axes but run's {name!r} has shape {shape}; "
                             f"give one name per axis")
        for dim, size in zip(own, shape):
            if sizes.setdefault(dim, size) != size:
                raise ValueError(f"dimension {dim!r} has length {sizes[dim]} in one result and {size} in {name!r}; "
                                 f"give the axes different names in dims")
        dims[name] = own
    clash = set(layout) & (set(sizes) | set(grid.names) | set(coords))
    if clash:
        raise ValueError(f"run's result names {sorted(clash)} are also grid or dimension names; rename them")
    for dim, values in coords.items():
        if dim not in sizes:
            raise ValueError(f"coords[{dim!r}] labels no axis of the results; their axes are {sorted(sizes)} "
                             f"(name them with dims=)")
        if len(values) != sizes[dim]:
            raise ValueError(f"coords[{dim!r}] has {len(values)} values but dimension {dim!r} has length {sizes[dim]}")
    return dims


# ----------------------------------------------------------------------------- grid and validation


@dataclasses.dataclass(frozen=True)
class _Grid:
    names: tuple[str, ...]
    values: tuple[np.ndarray, ...]

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(len(v) for v in self.values)

    @property
    def size(self) -> int:
        return math.prod(self.shape)

    def params(self, index: int) -> dict[str, Any]:
        """Parameters of the point with flat (C-order) ``index``, as Python scalars."""
        where = np.unravel_index(index, self.shape)
        return {name: v[k].item() for name, v, k in zip(self.names, self.values, where)}

    def to_json(self) -> list:
        return [[name, v.tolist()] for name, v in zip(self.names, self.values)]

    def summary(self) -> str:
        return " x ".join(f"{name}[{len(v)}]" for name, v in zip(self.names, self.values))


def _check_grid(grid) -> _Grid:
    if not isinstance(grid, Mapping):
        raise TypeError(f"grid must be a dict mapping parameter names to 1-D sequences of values, "
                        f"e.g. {_GRID_EXAMPLE}; got {type(grid).__name__}")
    if not grid:
        raise ValueError(f"grid is empty; give at least one parameter, e.g. {_GRID_EXAMPLE}")
    names, values = [], []
    for name, raw in grid.items():
        if not isinstance(name, str) or not name.isidentifier():
            raise TypeError(f"grid names must be identifiers (they are factory's keyword arguments), got {name!r}")
        if name == POINT_SEED:
            raise ValueError(f"grid name {POINT_SEED!r} is reserved for the seeds; rename the parameter")
        try:
            v = np.array(raw)
        except ValueError:
            raise ValueError(f"grid[{name!r}] must be a 1-D sequence of values, got a ragged {type(raw).__name__}") from None
        if v.ndim != 1:
            raise ValueError(f"grid[{name!r}] must be a 1-D sequence of values, got shape {v.shape}; "
                             f"pass a list or 1-D array (a scalar as [value])")
        if v.size == 0:
            raise ValueError(f"grid[{name!r}] is empty; give at least one value")
        if v.dtype.kind not in GRID_KINDS:
            raise TypeError(f"grid[{name!r}] must hold real numbers, bools or strings, got dtype {v.dtype}")
        if v.dtype.kind == "f" and not np.all(np.isfinite(v)):
            raise ValueError(f"grid[{name!r}] must be finite; it contains NaN or inf")
        if np.unique(v).size != v.size:
            raise ValueError(f"grid[{name!r}] repeats values {v.tolist()}; give each value once")
        v.setflags(write=False)
        names.append(name)
        values.append(v)
    return _Grid(tuple(names), tuple(values))


def _check_callable(fn, name):
    if not callable(fn):
        raise TypeError(f"{name} must be a callable, got {type(fn).__name__}")


def _check_seed(seed) -> int:
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)):
        raise TypeError(f"seed must be an int in [0, 2**31), got {seed!r}")
    if not 0 <= seed < SEED_LIMIT:
        raise ValueError(f"seed must be in [0, 2**31) (it is stored as int32), got {seed}")
    return int(seed)


def _check_chunk_size(chunk_size, n_points) -> int:
    if chunk_size is None:
        return max(1, math.ceil(n_points / DEFAULT_CHUNKS))
    if isinstance(chunk_size, bool) or not isinstance(chunk_size, (int, np.integer)):
        raise TypeError(f"chunk_size must be a positive int (grid points per chunk) or None, got {chunk_size!r}")
    if chunk_size < 1:
        raise ValueError(f"chunk_size must be at least 1 (grid points per chunk), got {chunk_size}")
    return int(chunk_size)


def _check_dims(dims, grid) -> dict[str, tuple[str, ...]]:
    if dims is None:
        return {}
    if not isinstance(dims, Mapping):
        raise TypeError(f"dims must be a dict result name -> tuple of dimension names, e.g. {{'loss': ('time',)}}; "
                        f"got {type(dims).__name__}")
    checked = {}
    for name, own in dims.items():
        if not isinstance(own, (tuple, list)) or not all(isinstance(d, str) and d.isidentifier() for d in own):
            raise TypeError(f"dims[{name!r}] must be a tuple of dimension names such as ('time',), got {own!r}")
        own = tuple(own)
        taken = set(own) & (set(grid.names) | {POINT_SEED})
        if taken or len(set(own)) != len(own):
            raise ValueError(f"dims[{name!r}] = {own} must be distinct names, different from the grid names {grid.names}")
        checked[name] = own
    return checked


def _check_coords(coords, grid) -> dict[str, np.ndarray]:
    if coords is None:
        return {}
    if not isinstance(coords, Mapping):
        raise TypeError(f"coords must be a dict dimension name -> 1-D values, e.g. {{'time': ts}}; got {type(coords).__name__}")
    checked = {}
    for dim, values in coords.items():
        if dim in grid.names:
            raise ValueError(f"coords[{dim!r}]: the coordinates of grid dimensions are the grid values; drop it")
        values = np.asarray(values)
        if values.ndim != 1:
            raise ValueError(f"coords[{dim!r}] must be 1-D, got shape {values.shape}")
        checked[dim] = values
    return checked


def _check_executor(executor):
    if executor is None:
        return None
    try:
        from distributed import Client
    except ImportError:  # without dask installed nothing can be a Client
        Client = None
    if Client is not None and isinstance(executor, Client):
        return executor
    raise TypeError(f"executor must be None (run here) or a dask.distributed.Client, got {type(executor).__name__}; "
                    f"e.g. executor=Client(LocalCluster())")


def _describe(grid, factory, run) -> str:
    return (f"regflow.sweep: {qualname(run)} on {qualname(factory)}(...) over {grid.summary()} "
            f"({grid.size} points); point_seed is the seed each point ran with")
