"""The catalogue: named methods (a flow, its discrete map, the paper's claims) in `regflow.systems`.

A catalogue module declares entries with the `entry` decorator on a factory whose keyword
parameters (with defaults) are the method's parameters::

    @rf.entry("scalar_net.gradient_flow", source="Ginsburg, sec 3.1, eq 7")
    def gradient_flow(d: int = 2, lr: float = 1.0) -> rf.Method: ...
"""

from __future__ import annotations

import dataclasses
import importlib
import inspect
import pkgutil
from typing import Any, Callable, Sequence

import jax
import numpy as np

from ._tree import is_number_list
from ._system import ODE, SDE, Map


@dataclasses.dataclass(frozen=True, eq=False)
class Method:
    """A learning method as a dynamical system: its ``flow`` (ODE or SDE), the discrete ``map``
    it comes from, and the ``claims`` its source makes.

    ``y0`` are the starts used by claims and runs, with a leading start axis on every leaf
    (``(n, dim)`` for vector states, a dict of ``(n, *shape)`` arrays for a dict of matrices; a
    1-D vector is one start), ``t1`` the flow horizon,
    ``dt`` the SDE step, ``paths`` the noise paths, ``steps`` the map iterations, ``samples``
    (n, dim) the points where pointwise claims are evaluated (default: ``y0``), ``view`` the
    default phase-portrait window (``x``, ``y``, ``xlim``, ``ylim``, ``invariant``, ``minima``),
    ``options`` extra keywords of `integrate` for runs of the flow (``method``, ``rtol``, ``dt``,
    ``backend`` ...; e.g. a fixed-step method for a non-smooth ReLU flow).  ``map_at`` gives the
    map at another step size (``dt -> Map``) for order fits.  ``perturbations`` are wrong versions
    of the systems (`rf.Perturbation`) that falsification checks the claims against."""

    flow: ODE | SDE
    map: Map | None = None
    claims: Sequence[Any] = ()
    y0: Any = None
    t1: float = 1.0
    dt: float | None = None
    paths: int | None = None
    steps: int | None = None
    samples: Any = None
    seed: int = 0
    view: dict | None = None
    options: dict = dataclasses.field(default_factory=dict)
    map_at: Callable[[float], Map] | None = None
    perturbations: Sequence[Any] = ()

    def __post_init__(self):
        if not isinstance(self.flow, (ODE, SDE)):
            raise TypeError(f"flow must be an rf.ODE or rf.SDE, got {type(self.flow).__name__}")
        if self.map is not None and not isinstance(self.map, Map):
            raise TypeError(f"map must be an rf.Map or None, got {type(self.map).__name__}")
        if self.y0 is None:
            raise ValueError("y0 is required: the start(s) that runs and claims use")
        object.__setattr__(self, "y0", batch_of(self.y0, "y0"))
        if self.samples is not None:
            object.__setattr__(self, "samples", batch_of(self.samples, "samples"))
        object.__setattr__(self, "claims", tuple(self.claims))
        object.__setattr__(self, "perturbations", tuple(self.perturbations))
        if self.map_at is not None and not callable(self.map_at):
            raise TypeError(f"map_at must be a function dt -> rf.Map, got {type(self.map_at).__name__}")

    @property
    def points(self):
        """Points for pointwise claims (batched like ``y0``)."""
        return self.y0 if self.samples is None else self.samples

    @property
    def n_starts(self) -> int:
        return len(jax.tree_util.tree_leaves(self.y0)[0])

    def start(self, i: int = 0):
        """Start ``i`` (one state, in the state's structure)."""
        return jax.tree_util.tree_map(lambda leaf: leaf[i], self.y0)

    def run_flow(self, *, y0=None, t1=None, saves: int = 201, seed=None, paths=None, **overrides):
        """The flow from ``y0`` (default: the method's starts) to ``t1``, saved at about ``saves``
        times; an SDE runs ``paths`` (default ``self.paths``) paths per start on its ``dt`` grid.
        ``overrides`` replace entries of ``options`` (e.g. ``backend="scipy"``)."""
        from ._integrate import integrate

        starts = self.y0 if y0 is None else batch_of(y0, "y0")
        t1 = self.t1 if t1 is None else t1
        options = {**self.options, **overrides}
        seed = self.seed if seed is None else seed
        dt = options.pop("dt", self.dt)
        if isinstance(self.flow, SDE) or dt is not None and options.get("method") in ("euler", "heun"):
            if isinstance(self.flow, SDE):
                starts = repeat_starts(starts, max(1, paths or self.paths or 1))
            n = round(t1 / dt)
            ts = dt * np.unique(np.linspace(0, n, min(n, saves - 1) + 1).round())
            return integrate(self.flow, starts, t1, dt=dt, ts=ts, seed=seed, batched=True, **options)
        return integrate(self.flow, starts, t1, ts=np.linspace(0.0, t1, saves), batched=True, **options)


def batch_of(starts, argname):
    """States with a leading batch axis on every leaf (float64 numpy); a 1-D vector (or a list
    of numbers) is a batch of one."""
    if isinstance(starts, (np.ndarray, jax.Array, float, int)) or is_number_list(starts):
        return np.atleast_2d(np.asarray(starts, dtype=np.float64))
    leaves = jax.tree_util.tree_leaves(starts)
    if not leaves or any(np.ndim(leaf) == 0 for leaf in leaves) or len({len(leaf) for leaf in leaves}) != 1:
        raise ValueError(f"{argname} must carry a leading start axis of one length on every leaf (a batch of "
                         f"states), e.g. {{'W1': W1[None], 'W2': W2[None]}} for one start")
    return jax.tree_util.tree_map(lambda leaf: np.asarray(leaf, dtype=np.float64), starts)


def repeat_starts(starts, times):
    """Each start repeated ``times`` times along the batch axis (start-major)."""
    return jax.tree_util.tree_map(lambda leaf: np.repeat(leaf, times, axis=0), starts)


@dataclasses.dataclass(frozen=True)
class Entry:
    """A named catalogue entry: a factory of `Method` with default parameters."""

    name: str
    factory: Callable[..., Method]
    source: str

    @property
    def params(self) -> dict[str, Any]:
        return {p.name: p.default for p in inspect.signature(self.factory).parameters.values()}

    @property
    def doc(self) -> str:
        return inspect.getdoc(self.factory) or ""

    def build(self, **params) -> Method:
        """The method with some parameters changed; unknown names get a clear error."""
        unknown = set(params) - set(self.params)
        if unknown:
            raise ValueError(f"{self.name} has no parameter {', '.join(sorted(unknown))}; "
                             f"its parameters are {self.params}")
        return self.factory(**params)


_REGISTRY: dict[str, Entry] = {}


def entry(name: str, *, source: str):
    """Decorator registering a factory of `Method` under ``name`` in the catalogue."""

    def register(factory):
        if name in _REGISTRY and _REGISTRY[name].factory.__qualname__ != factory.__qualname__:
            raise ValueError(f"catalogue entry {name!r} is declared twice")
        _REGISTRY[name] = Entry(name, factory, source)
        return factory

    return register


def catalogue() -> dict[str, Entry]:
    """All entries of `regflow.systems`, by name (importing its modules on first use)."""
    import regflow.systems as systems

    for module in pkgutil.iter_modules(systems.__path__):
        if not module.name.startswith("_"):
            importlib.import_module(f"regflow.systems.{module.name}")
    return dict(sorted(_REGISTRY.items()))


def get_entry(name: str) -> Entry:
    """The entry called ``name``; an unknown name lists what exists."""
    entries = catalogue()
    if name not in entries:
        close = [n for n in entries if name.split(".")[0] in n] or list(entries)
        raise KeyError(f"no catalogue entry {name!r}; entries: {', '.join(close)}")
    return entries[name]
