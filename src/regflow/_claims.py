r"""A paper's claims as executable checks, and `check`, which runs them into a `Report`.

Every claim carries ``source`` (the paper and equation) and may carry ``erratum`` (what the
paper printed instead, when that is wrong).  A claim is measured two ways where that makes
sense: pointwise (a Lie derivative or generator at sampled points) and along trajectories.
Quantities are ``q(y, args)``; `Conserved`, `Decays` and `Monotone` also take array- or
pytree-valued ones (each entry is checked; the row reports the worst).  States may be
pytrees: the method's ``y0`` and ``samples`` carry a leading batch axis on every leaf.
"""

from __future__ import annotations

import abc
import dataclasses
from typing import Any, Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from jax.flatten_util import ravel_pytree

from . import _spectra
from ._analysis import hessian, jacobian, lie_derivative
from ._catalogue import Entry, Method, batch_of, catalogue, get_entry, repeat_starts
from ._compare import agreement_order
from ._equilibria import equilibria
from ._integrate import iterate
from ._system import SDE

#: Default tolerances (relative unless said otherwise).
POINTWISE_TOL = 1e-9
DRIFT_TOL = 1e-6
RATE_TOL = 1e-3
ORDER_TOL = 0.15
SPECTRUM_TOL = 1e-8
#: Saved times of a flow trajectory used by a claim.
CLAIM_SAVES = 201
TINY = 1e-300


@dataclasses.dataclass(frozen=True)
class Row:
    """One measured figure of one claim."""

    entry: str
    claim: str
    check: str
    source: str
    measured: float
    tolerance: str
    passed: bool
    note: str = ""
    trace: Any = None  # (t, values (n,) or (paths, n), label) for report figures


@dataclasses.dataclass(frozen=True)
class Report:
    """Rows of `check`: one per measured figure of each claim."""

    rows: tuple[Row, ...]

    @property
    def passed(self) -> bool:
        return all(r.passed for r in self.rows)

    @property
    def failed(self) -> tuple[Row, ...]:
        return tuple(r for r in self.rows if not r.passed)

    def __add__(self, other: "Report") -> "Report":
        return Report(self.rows + other.rows)

    def table(self) -> str:
        """A plain-text table, one row per figure."""
        head = ("entry", "claim", "check", "measured", "tolerance", "ok", "source")
        body = [(r.entry, r.claim, r.check, f"{r.measured:.3g}", r.tolerance, "PASS" if r.passed else "FAIL",
                 r.source + (f"  [erratum: {r.note}]" if r.note else "")) for r in self.rows]
        widths = [max(len(str(x)) for x in col) for col in zip(head, *body)]
        line = lambda cells: "  ".join(str(c).ljust(w) for c, w in zip(cells, widths)).rstrip()  # noqa: E731
        out = [line(head), line("-" * w for w in widths), *map(line, body)]
        out.append(f"{sum(r.passed for r in self.rows)} passed, {len(self.failed)} failed")
        return "\n".join(out)

    def to_markdown(self) -> str:
        lines = ["| entry | claim | check | measured | tolerance | ok | source |", "|---|---|---|---|---|---|---|"]
        for r in self.rows:
            src = r.source + (f" (erratum: {r.note})" if r.note else "")
            lines.append(f"| {r.entry} | {r.claim} | {r.check} | {r.measured:.3g} | {r.tolerance} | "
                         f"{'PASS' if r.passed else '**FAIL**'} | {src} |")
        return "\n".join(lines)

    def __str__(self):
        return self.table()


# ----------------------------------------------------------------------------- context


def _label(q, name):
    return name or getattr(q, "__name__", "quantity")


def _flow_run(method: Method, y0=None, t1=None):
    """The flow from the method's starts (an ensemble; SDEs get ``method.paths`` per start)."""
    return method.run_flow(y0=y0, t1=t1, saves=CLAIM_SAVES)


def _map_run(method: Method, y0=None, steps=None):
    if method.map is None:
        raise ValueError("this claim is about the discrete map, but the method declares map=None")
    starts = method.y0 if y0 is None else batch_of(y0, "y0")
    if method.map.stochastic:
        starts = repeat_starts(starts, max(1, method.paths or 1))
    return iterate(method.map, starts, steps or method.steps or 1000, seed=method.seed, batched=True)


def _require_ok(traj, what):
    if not traj.ok:
        raise RuntimeError(f"{what} did not finish: {traj.status}")
    return traj


def _entries(value):
    """The entries of a scalar-, array- or pytree-valued quantity as one flat vector."""
    return ravel_pytree(value)[0]


def _grad_dot(system, q, args):
    r"""Per point and per entry of ``q``: the cosine between :math:`\nabla q_i` and the drift
    (and the worst over noise columns for an SDE), ``(points, 1 or 2, entries)``."""

    def cosines(y):
        flat, unravel = ravel_pytree(y)
        qf = lambda x: _entries(q(unravel(x), args))  # noqa: E731
        grads = jax.jacrev(qf)(flat)  # (entries, dim)
        norms = jnp.linalg.norm(grads, axis=1)
        f = ravel_pytree(system.drift(0.0, y, args))[0]
        out = [jnp.abs(grads @ f) / (norms * jnp.linalg.norm(f) + TINY)]
        if isinstance(system, SDE):
            from ._analysis import _FlatSDE, _diffusion_matrix

            G = _diffusion_matrix(_FlatSDE(system, unravel), 0.0, flat, args)
            out.append(jnp.max(jnp.abs(grads @ G) / (norms[:, None] * jnp.linalg.norm(G, axis=0) + TINY), axis=1))
        return jnp.stack(out)

    return jax.jit(jax.vmap(cosines))  # one compile instead of one per primitive


def _pointwise(fn, points):
    """``fn`` at every point of a batch (a pytree with a leading axis), as numpy ``(points, entries)``."""
    values = jax.vmap(lambda y: _entries(fn(y)))(jax.tree_util.tree_map(jnp.asarray, points))
    return np.asarray(values)


def _flat_values(values, n_lead):
    """Trajectory values ``(lead..., *q_shape)`` (or a pytree of them) as ``(lead..., entries)``."""
    leaves = jax.tree_util.tree_leaves(values)
    lead = np.shape(leaves[0])[:n_lead]
    return np.concatenate([np.reshape(leaf, (*lead, -1)) for leaf in leaves], axis=-1)


# ----------------------------------------------------------------------------- claims


@dataclasses.dataclass(frozen=True)
class Claim(abc.ABC):
    """A checkable statement: ``source`` cites the paper, ``erratum`` records a wrong printed form."""

    source: str = dataclasses.field(default="", kw_only=True)
    erratum: str | None = dataclasses.field(default=None, kw_only=True)
    name: str | None = dataclasses.field(default=None, kw_only=True)

    @abc.abstractmethod
    def rows(self, entry: str, method: Method) -> list[Row]:
        """Measure the claim on ``method``: one `Row` per figure."""

    def _row(self, entry, claim, check, measured, tolerance, passed, trace=None, note=None):
        note = self.erratum or "" if note is None else note
        return Row(entry, claim, check, self.source, float(measured), tolerance, bool(passed), note, trace)


@dataclasses.dataclass(frozen=True)
class Conserved(Claim):
    r"""``q`` is constant along the flow: :math:`\nabla q\cdot f = 0` (and
    :math:`\nabla q\cdot G = 0` for an SDE, so it holds pathwise), checked as the cosine
    between :math:`\nabla q` and the field at sample points, and as the drift of ``q``
    along integrated trajectories relative to :math:`\max(1, |q(y_0)|)`."""

    q: Callable = None
    tol: float = POINTWISE_TOL
    drift_tol: float = DRIFT_TOL

    def rows(self, entry, method):
        label = f"Conserved({_label(self.q, self.name)})"
        system, args = method.flow, method.flow.args
        points = jax.tree_util.tree_map(jnp.asarray, method.points)
        cos = np.asarray(_grad_dot(system, self.q, args)(points))  # (points, 1 or 2, entries)
        each = f" over {cos.shape[-1]} entries" if cos.shape[-1] > 1 else ""
        rows = [self._row(entry, label, f"|cos(grad q, f)| at {len(cos)} points{each}", cos[:, 0].max(),
                          f"< {self.tol:g}", cos[:, 0].max() < self.tol)]
        if isinstance(system, SDE):
            rows.append(self._row(entry, label, "|cos(grad q, G)| at points (pathwise)", cos[:, 1].max(),
                                  f"< {self.tol:g}", cos[:, 1].max() < self.tol))
        traj = _require_ok(_flow_run(method), "the flow")
        values = _flat_values(traj.evaluate(self.q), traj.flat.ndim - 1)  # (paths, n, entries)
        change = np.abs(values - values[:, :1]) / np.maximum(1.0, np.abs(values[:, :1]))
        drift = float(np.max(change))
        worst = np.unravel_index(np.argmax(change), change.shape)[-1]
        rows.append(self._row(entry, label, f"drift along {traj.paths} trajectories{each}", drift,
                              f"< {self.drift_tol:g}", drift < self.drift_tol, (traj.t, values[..., worst], label)))
        return rows


@dataclasses.dataclass(frozen=True)
class Decays(Claim):
    r""":math:`q(t) = q(0)\,e^{-\text{rate}\,t}`: pointwise :math:`|\mathcal L q + \text{rate}\,q|`
    relative to :math:`|\text{rate}\,q|`, and the rate fitted along trajectories.  For an SDE
    the mean over paths decays (the generator is used)."""

    q: Callable = None
    rate: float = 0.0
    tol: float = RATE_TOL

    def rows(self, entry, method):
        label = f"Decays({_label(self.q, self.name)}, rate={self.rate:g})"
        lq = lie_derivative(method.flow, self.q)
        args = method.flow.args
        lhs = _pointwise(lambda y: lq(y, args), method.points)
        qv = _pointwise(lambda y: self.q(y, args), method.points)
        point_err = float(np.max(np.abs(lhs + self.rate * qv) / (np.abs(self.rate * qv) + TINY)))
        traj = _require_ok(_flow_run(method), "the flow")
        values = _flat_values(traj.evaluate(self.q), traj.flat.ndim - 1)  # (paths, n, entries)
        if isinstance(method.flow, SDE):
            values = values.mean(axis=0)[None]
        curves = np.moveaxis(values, -1, 1).reshape(-1, len(traj.t))
        curves = curves[np.abs(curves[:, 0]) > TINY]
        fits = [-np.polyfit(traj.t, np.log(np.abs(v)), 1)[0] for v in curves]
        fit_err = max(abs(f - self.rate) for f in fits) / abs(self.rate)
        return [
            self._row(entry, label, "|Lq + rate q| / |rate q| at points", point_err, f"< {self.tol:g}",
                      point_err < self.tol),
            self._row(entry, label, "fitted rate, relative error", fit_err, f"< {self.tol:g}",
                      fit_err < self.tol, (traj.t, values[..., 0], label)),
        ]


@dataclasses.dataclass(frozen=True)
class Monotone(Claim):
    """``q`` never increases (``increasing=True``: never decreases) along the flow (``on="flow"``:
    pointwise Lie derivative and along trajectories) or along the map (``on="map"``)."""

    q: Callable = None
    increasing: bool = False
    on: str = "flow"
    tol: float = POINTWISE_TOL

    def rows(self, entry, method):
        word = "increasing" if self.increasing else "decreasing"
        label = f"Monotone({_label(self.q, self.name)}, {word}, {self.on})"
        sign = -1.0 if self.increasing else 1.0
        rows = []
        if self.on == "flow":
            lq = lie_derivative(method.flow, self.q)
            args = method.flow.args
            worst = float(np.max(sign * _pointwise(lambda y: lq(y, args), method.points)))
            rows.append(self._row(entry, label, "max sign-adjusted Lq at points", worst, f"<= {self.tol:g}",
                                  worst <= self.tol))
            traj = _require_ok(_flow_run(method), "the flow")
        else:
            traj = _require_ok(_map_run(method), "the map")
        values = _flat_values(traj.evaluate(self.q), traj.flat.ndim - 1)  # (paths, n, entries)
        steps = sign * np.diff(values, axis=1) / np.maximum(1.0, np.abs(values[:, :-1]))
        worst = float(steps.max())
        rows.append(self._row(entry, label, f"max relative wrong-way step along {traj.paths} runs", worst,
                              f"<= {self.tol:g}", worst <= self.tol, (traj.t, values[..., 0], label)))
        return rows


@dataclasses.dataclass(frozen=True)
class StaysIn(Claim):
    """Trajectories enter the band ``margin(y, args) >= 0`` and then stay in it: measured as the
    fraction of saved states inside the band after first entry (worst path)."""

    margin: Callable = None
    on: str = "flow"
    min_fraction: float = 1.0
    atol: float = 1e-9

    def rows(self, entry, method):
        label = f"StaysIn({_label(self.margin, self.name)}, {self.on})"
        traj = _require_ok(_flow_run(method) if self.on == "flow" else _map_run(method), f"the {self.on}")
        inside = np.atleast_2d(traj.evaluate(self.margin) >= -self.atol)
        entered = inside.any(axis=1)
        first = np.argmax(inside, axis=1)
        fractions = [inside[p, first[p]:].mean() if entered[p] else 0.0 for p in range(len(inside))]
        worst = float(min(fractions))
        entry_t = float(traj.t[first.max()]) if entered.all() else float("inf")
        return [self._row(entry, label, f"fraction inside after entry (all entered by t={entry_t:.3g})", worst,
                          f">= {self.min_fraction:g}", entered.all() and worst >= self.min_fraction,
                          (traj.t, traj.evaluate(self.margin), label))]


@dataclasses.dataclass(frozen=True)
class Spectrum(Claim):
    """Eigenvalues at points ``at`` (batched like a method's ``y0``): of the Hessian of ``loss``
    (``of="hessian"``) or of the flow's Jacobian (``of="jacobian"``), against
    ``expect(point) -> eigenvalues``.  With ``k``, only the ``k`` largest are compared,
    computed matrix-free (Lanczos on Hessian- or Jacobian-vector products): the form for
    networks, where the dense spectrum is out of reach.  With ``printed``
    (the paper's formula) and ``erratum``, a second row shows that the printed formula is refuted."""

    at: Any = None
    expect: Callable = None
    of: str = "hessian"
    loss: Callable | None = None
    printed: Callable | None = None
    tol: float = SPECTRUM_TOL
    k: int | None = None

    def _eigs(self, method, point):
        """All eigenvalues (ascending), or with ``k`` the ``k`` largest, matrix-free (Lanczos)."""
        if self.k is not None:
            if self.of == "hessian":
                return np.sort(_spectra.hessian_eigs(self.loss, point, k=self.k, which="top", args=method.flow.args))
            return np.sort(_spectra.jacobian_eigs(method.flow.drift, point, k=self.k, which="LR",
                                                  args=method.flow.args).real)
        if self.of == "hessian":
            return np.sort(np.linalg.eigvalsh(hessian(self.loss, point, method.flow.args)))
        return np.sort(np.linalg.eigvals(jacobian(method.flow, point)).real)

    def _deviation(self, method, formula):
        devs = []
        points = batch_of(self.at, "at")
        for i in range(len(jax.tree_util.tree_leaves(points)[0])):
            p = jax.tree_util.tree_map(lambda leaf: leaf[i], points)
            got, want = self._eigs(method, p), np.sort(np.asarray(formula(p), dtype=float))
            if self.k is not None:
                want = want[-self.k:]
            devs.append(np.max(np.abs(got - want)) / max(1.0, np.max(np.abs(want))))
        return max(devs)

    def rows(self, entry, method):
        label = f"Spectrum({self.name or self.of})"
        n = len(jax.tree_util.tree_leaves(batch_of(self.at, "at"))[0])
        dev = self._deviation(method, self.expect)
        rows = [self._row(entry, label, f"max relative eigenvalue error at {n} points", dev, f"< {self.tol:g}",
                          dev < self.tol, note="")]
        if self.printed is not None:
            dev_p = self._deviation(method, self.printed)
            rows.append(self._row(entry, label, "printed formula refuted (its error)", dev_p, f"> {self.tol:g}",
                                  dev_p > self.tol))
        return rows


@dataclasses.dataclass(frozen=True)
class EquilibriumSet(Claim):
    """Equilibria found from ``guesses`` lie on the set ``on(y, args) = 0`` with the expected
    ``kind`` and ``zero_modes`` (dimension of the set)."""

    guesses: Any = None
    on: Callable = None
    kind: str | None = None
    zero_modes: int | None = None
    tol: float = 1e-8

    def rows(self, entry, method):
        label = f"EquilibriumSet({_label(self.on, self.name)})"
        found = equilibria(method.flow, self.guesses)
        if not found:
            return [self._row(entry, label, "equilibria found", 0, ">= 1", False)]
        args = method.flow.args
        worst = max(float(np.max(np.abs(_entries(self.on(jax.tree_util.tree_map(jnp.asarray, e.point), args))))) for e in found)
        kinds = {e.kind for e in found}
        modes = {e.zero_modes for e in found}
        ok_kind = self.kind is None or kinds == {self.kind}
        ok_modes = self.zero_modes is None or modes == {self.zero_modes}
        rows = [self._row(entry, label, f"max |on(point)| over {len(found)} equilibria", worst, f"< {self.tol:g}",
                          worst < self.tol)]
        if self.kind is not None or self.zero_modes is not None:
            rows.append(self._row(entry, label, f"kind {sorted(kinds)}, zero modes {sorted(modes)}",
                                  float(ok_kind and ok_modes), f"kind={self.kind}, zero_modes={self.zero_modes}",
                                  ok_kind and ok_modes))
        return rows


@dataclasses.dataclass(frozen=True)
class Agrees(Claim):
    """The map tracks the flow with error O(dt^order): the order fitted over maps
    ``map_at(dt)`` for ``dt`` in ``steps`` up to flow time ``t1``.  ``flow`` (default: the
    method's) may be a function ``dt -> flow``, e.g. ``lambda h: rf.modified_flow(loss, lr=h)``."""

    map_at: Callable = None
    order: float = 1.0
    steps: Sequence[float] = (0.02, 0.01, 0.005, 0.0025)
    t1: float = 1.0
    flow: Any = None
    tol: float = ORDER_TOL

    def rows(self, entry, method):
        flow = self.flow or method.flow
        label = f"Agrees(order={self.order:g}{', ' + self.name if self.name else ''})"
        fit = agreement_order(self.map_at, flow, method.start(0), self.t1, self.steps)
        return [self._row(entry, label, f"fitted order over dt={list(self.steps)} (errors {fit.errors[0]:.2g}.."
                          f"{fit.errors[-1]:.2g})", fit.order, f"{self.order:g} +- {self.tol:g}",
                          abs(fit.order - self.order) < self.tol, (fit.steps, fit.errors, "error"))]


@dataclasses.dataclass(frozen=True)
class StepRatio(Claim):
    """One map step multiplies ``q`` by a factor in ``(lo, hi]``: checked at points ``at`` (one
    step from each, over ``draws`` keys for a stochastic map), else along the map's runs."""

    q: Callable = None
    lo: float = 0.0
    hi: float = 1.0
    at: Any = None
    draws: int = 16
    rtol: float = 1e-12

    def rows(self, entry, method):
        label = f"StepRatio({_label(self.q, self.name)} in ({self.lo:.6g}, {self.hi:.6g}])"
        args = method.map.args
        if self.at is not None:
            pts = jnp.asarray(np.atleast_2d(self.at))
            if method.map.stochastic:
                keys = jax.random.split(jax.random.PRNGKey(method.seed), self.draws)
                nxt = jax.vmap(lambda key: jax.vmap(lambda y: method.map.step(0, y, args, key))(pts))(keys)
                before = jnp.broadcast_to(jax.vmap(lambda y: self.q(y, args))(pts), nxt.shape[:2])
            else:
                nxt = jax.vmap(lambda y: method.map.step(0, y, args))(pts)
                before = jax.vmap(lambda y: self.q(y, args))(pts)
            after = jax.vmap(lambda y: self.q(y, args))(nxt.reshape(-1, pts.shape[-1])).reshape(before.shape)
            ratio, where = np.asarray(after / before), f"one step from {len(pts)} points"
        else:
            traj = _require_ok(_map_run(method), "the map")
            values = np.atleast_2d(traj.evaluate(self.q))
            ratio, where = values[:, 1:] / values[:, :-1], f"along {traj.paths} runs"
        lo_m, hi_m = float(np.min(ratio)), float(np.max(ratio))
        ok = lo_m > self.lo and hi_m <= self.hi * (1 + self.rtol)
        return [self._row(entry, label, f"min {lo_m:.6g}, max (shown) {where}", hi_m,
                          f"in ({self.lo:.6g}, {self.hi:.6g}]", ok)]


@dataclasses.dataclass(frozen=True)
class GrowsLike(Claim):
    r"""Along the flow, ``q(t)`` follows ``law(t)`` up to an affine fit
    :math:`q \approx a\,\text{law}(t) + b` on ``t >= t_from``: measured as the largest residual
    relative to the range of ``q`` there (and ``a > 0``)."""

    q: Callable = None
    law: Callable = None
    t_from: float = 0.0
    tol: float = 1e-2

    def rows(self, entry, method):
        label = f"GrowsLike({_label(self.q, self.name)}, {_label(self.law, None)})"
        traj = _require_ok(_flow_run(method), "the flow")
        values = np.atleast_2d(traj.evaluate(self.q))
        late = traj.t >= self.t_from
        x = np.asarray(self.law(traj.t[late]), dtype=float)
        worst, slope_ok = 0.0, True
        for v in values[:, late]:
            a, b = np.polyfit(x, v, 1)
            slope_ok &= a > 0
            worst = max(worst, np.max(np.abs(a * x + b - v)) / (np.ptp(v) + TINY))
        return [self._row(entry, label, f"max affine-fit residual / range on t >= {self.t_from:g}", worst,
                          f"< {self.tol:g}", slope_ok and worst < self.tol, (traj.t, values, label))]


@dataclasses.dataclass(frozen=True)
class Holds(Claim):
    """A figure computed by ``measure(method) -> float`` lies in ``[lo, hi]``: the escape hatch
    for statements no other claim type expresses (say what is measured in ``what``)."""

    measure: Callable = None
    lo: float = -np.inf
    hi: float = np.inf
    what: str = "measured figure"

    def rows(self, entry, method):
        value = float(self.measure(method))
        label = f"Holds({self.name or _label(self.measure, None)})"
        return [self._row(entry, label, self.what, value, f"in [{self.lo:g}, {self.hi:g}]",
                          self.lo <= value <= self.hi)]


# ----------------------------------------------------------------------------- check


def check(target, **params) -> Report:
    """Run the declared claims of a catalogue entry (name, `Entry`), a `Method`, or ``"all"``.

    Example
    -------
    >>> report = rf.check("scalar_net.gradient_flow")   # doctest: +SKIP
    >>> report.passed                                     # doctest: +SKIP
    True
    """
    if isinstance(target, str) and target == "all":
        return sum((check(e) for e in catalogue().values()), Report(()))
    if isinstance(target, str):
        target = get_entry(target)
    if isinstance(target, Entry):
        return _check_method(target.name, target.build(**params))
    if isinstance(target, Method):
        return _check_method("method", target)
    raise TypeError(f"check takes a catalogue name, an Entry or an rf.Method, got {type(target).__name__}")


def _check_method(name, method: Method) -> Report:
    rows = []
    for claim in method.claims:
        try:
            rows.extend(claim.rows(name, method))
        except Exception as error:  # a claim that cannot be evaluated fails, with the reason
            rows.append(Row(name, type(claim).__name__, f"error: {error}", claim.source, float("nan"), "-", False))
    return Report(tuple(rows))
