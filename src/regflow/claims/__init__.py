"""A paper's claims as executable checks, and `check`, which runs them into a `Report`.

Every claim carries ``source`` (the paper and equation) and may carry ``erratum`` (what the
paper printed instead, when that is not what is checked) with its ``grade``.  Claims of one
check share their runs through a `Context`.  The claim types:

| claim | states |
|---|---|
| `Conserved` | a quantity is constant along the flow (pointwise and along runs) |
| `Decays` | a quantity decays at a rate |
| `Monotone` | a quantity never increases (or decreases) along the flow or the map |
| `StaysIn` | runs enter a band and stay in it |
| `GrowsLike` | a quantity follows a law up to an affine fit |
| `Spectrum` | Hessian or Jacobian eigenvalues at points match a formula |
| `EquilibriumSet` | equilibria lie on a set, with a kind and zero modes |
| `AtHorizon` | a quantity at the end of the runs equals a prediction |
| `SameLimit` | runs from every start end at the same value |
| `Formula` | a paper's formula equals the system's field, step, dq/dt, or a closed form at points |
| `Refuted` | a printed formula differs from the correct one (an identity by construction) |
| `Agrees` | the map tracks the flow with a fitted order |
| `OrderFit` | an error over a family of step sizes shrinks with a fitted order |
| `StepRatio` | one map step multiplies a quantity by a bounded factor |
| `Holds` | a figure computed by a function lies in an interval (the escape hatch) |

The rules for writing a new claim type are in `regflow.claims._base`.
"""

from ._base import GRADES, Claim
from ._check import check, check_method
from ._context import Context
from ._flow import Conserved, Decays, GrowsLike, Monotone, StaysIn
from ._formula import Formula, Refuted
from ._holds import Holds
from ._horizon import AtHorizon, SameLimit
from ._maps import Agrees, OrderFit, StepRatio
from ._perturb import Perturbation, perturbations
from ._points import EquilibriumSet, Spectrum
from ._rows import Report, Row, Trace

__all__ = [
    "Claim", "GRADES", "Context", "check", "check_method", "Report", "Row", "Trace",
    "Conserved", "Decays", "Monotone", "StaysIn", "GrowsLike", "Spectrum", "EquilibriumSet",
    "Agrees", "StepRatio", "Holds", "AtHorizon", "SameLimit", "Formula", "Refuted", "OrderFit", "Perturbation", "perturbations",
]
