"""Claims at points: `Spectrum` (Hessian or Jacobian eigenvalues against a formula) and
`EquilibriumSet` (where the equilibria lie, their kind and zero modes)."""

from __future__ import annotations

import dataclasses
from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np

from .. import _spectra
from .._analysis import hessian, jacobian
from .._catalogue import batch_of
from .._equilibria import equilibria
from .._methods import GradientField
from ._base import Claim
from ._context import entries, label
from ._rows import Trace

SPECTRUM_TOL = 1e-8
EQUILIBRIUM_TOL = 1e-8
#: Why a row that refutes a printed formula is not expected to fail under a perturbation.
REFUTATION = "refutes a printed formula (the evidence is the gap, not a property of the run)"


def loss_of(system):
    """The loss of a flow built by `rf.gradient_flow`, else None."""
    field = getattr(system, "vector_field", None) or getattr(system, "drift", None)
    return field.gradient.loss if isinstance(field, GradientField) else None


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

    def _loss(self, method):
        """``loss``, or the loss of the method's gradient flow (so perturbations reach it)."""
        loss = self.loss if self.loss is not None else loss_of(method.flow)
        if loss is None:
            raise ValueError("Spectrum(of='hessian') needs loss=, or a method whose flow is rf.gradient_flow(loss)")
        return loss

    def _eigs(self, method, point):
        """All eigenvalues (ascending), or with ``k`` the ``k`` largest, matrix-free (Lanczos)."""
        if self.k is not None:
            if self.of == "hessian":
                return np.sort(_spectra.hessian_eigs(self._loss(method), point, k=self.k, which="top", args=method.flow.args))
            return np.sort(_spectra.jacobian_eigs(method.flow.drift, point, k=self.k, which="LR",
                                                  args=method.flow.args).real)
        if self.of == "hessian":
            return np.sort(np.linalg.eigvalsh(hessian(self._loss(method), point, method.flow.args)))
        return np.sort(np.linalg.eigvals(jacobian(method.flow, point)).real)

    def _deviation(self, method, formula, computed):
        """The worst relative eigenvalue error over the points, with that point's spectra."""
        worst = (-1.0, None, None)
        for got, p in computed:
            want = np.sort(np.asarray(formula(p), dtype=float))
            if self.k is not None:
                want = want[-self.k:]
            dev = np.max(np.abs(got - want)) / max(1.0, np.max(np.abs(want)))
            worst = max(worst, (dev, got, want), key=lambda w: w[0])
        return worst

    def rows(self, ctx):
        method = ctx.method
        title = f"Spectrum({self.name or self.of})"
        points = batch_of(self.at, "at")
        n = len(jax.tree_util.tree_leaves(points)[0])
        at = [jax.tree_util.tree_map(lambda leaf: leaf[i], points) for i in range(n)]
        computed = [(self._eigs(method, p), p) for p in at]
        dev, got, want = self._deviation(method, self.expect, computed)
        index = np.arange(len(got))
        rows = [self._row(ctx, title, f"max relative eigenvalue error at {n} points", dev, f"< {self.tol:g}",
                          dev < self.tol, Trace(index, got, "eigenvalue index", "eigenvalue (worst point)", "points",
                                                (index, want, "expected")), note="")]
        if self.printed is not None:
            dev_p, got, printed = self._deviation(method, self.printed, computed)
            rows.append(self._row(ctx, title, "printed formula refuted (its error)", dev_p, f"> {self.tol:g}",
                                  dev_p > self.tol, Trace(index, got, "eigenvalue index", "eigenvalue", "points",
                                                          (index, printed, "printed")), identity=REFUTATION))
        return rows


@dataclasses.dataclass(frozen=True)
class EquilibriumSet(Claim):
    """Equilibria found from ``guesses`` lie on the set ``on(y, args) = 0`` with the expected
    ``kind`` and ``zero_modes`` (dimension of the set)."""

    guesses: Any = None
    on: Callable = None
    kind: str | None = None
    zero_modes: int | None = None
    tol: float = EQUILIBRIUM_TOL

    def rows(self, ctx):
        method = ctx.method
        title = f"EquilibriumSet({label(self.on, self.name)})"
        found = equilibria(method.flow, self.guesses)
        if not found:
            return [self._row(ctx, title, "equilibria found", 0, ">= 1", False)]
        args = method.flow.args
        off = [float(np.max(np.abs(entries(self.on(jax.tree_util.tree_map(jnp.asarray, e.point), args)))))
               for e in found]
        worst = max(off)
        kinds = {e.kind for e in found}
        modes = {e.zero_modes for e in found}
        ok_kind = self.kind is None or kinds == {self.kind}
        ok_modes = self.zero_modes is None or modes == {self.zero_modes}
        rows = [self._row(ctx, title, f"max |on(point)| over {len(found)} equilibria", worst, f"< {self.tol:g}",
                          worst < self.tol, Trace(np.arange(len(off)), off, "equilibrium found", "|on(point)|",
                                                  "points", self.tol))]
        if self.kind is not None or self.zero_modes is not None:
            rows.append(self._row(ctx, title, f"kind {sorted(kinds)}, zero modes {sorted(modes)}",
                                  float(ok_kind and ok_modes), f"kind={self.kind}, zero_modes={self.zero_modes}",
                                  ok_kind and ok_modes,
                                  Trace(np.arange(len(found)), [e.zero_modes for e in found], "equilibrium found",
                                        "zero modes", "points", self.zero_modes)))
        return rows
