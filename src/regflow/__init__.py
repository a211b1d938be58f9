"""regflow: training algorithms as dynamical systems.

Declare a method once as an `ODE`, `SDE` or `Map`, integrate it with scipy, diffrax or
sdeint, compare it with the discrete algorithm it came from, and check a paper's claims.

Importing regflow turns on JAX float64 (``jax_enable_x64``): every state, time and
parameter is float64.
"""

import jax as _jax

_jax.config.update("jax_enable_x64", True)

from ._system import ODE, SDE, Map  # noqa: E402
from ._tree import pytree_dataclass  # noqa: E402
from ._trajectory import Trajectory  # noqa: E402
from ._integrate import integrate, iterate  # noqa: E402
from ._events import Event, EventLog  # noqa: E402
from ._brownian import brownian_increments, brownian_path  # noqa: E402
from ._sde_order import strong_order, weak_order  # noqa: E402
from ._methods import (  # noqa: E402
    full_loss,
    gradient_descent,
    gradient_flow,
    minibatch_covariance,
    modified_flow,
    sgd,
    sme,
)
from ._backward_error import backward_error_field, backward_error_flow  # noqa: E402
from ._nmgd import decay_schedule, halpern, nmgd, nmgd_flow, nmgd_partner, power_schedule  # noqa: E402
from ._analysis import hessian, jacobian, lie_derivative  # noqa: E402
from ._equilibria import Equilibrium, equilibria  # noqa: E402
from ._spectra import (  # noqa: E402
    hessian_eigs,
    hessian_trace,
    hvp,
    jacobian_eigs,
    sharpness,
    sharpness_fn,
)
from ._compare import Agreement, agreement_order, map_error  # noqa: E402
from ._central_flow import central_flow, central_flow_sigma2  # noqa: E402
from ._conservation_laws import Law, conservation_laws, law_coefficients, principal_angles, prove_conserved  # noqa: E402
from ._lie_algebra import LawCount, count_conservation_laws  # noqa: E402
from ._networks import Network, stack_states  # noqa: E402
from ._optax import from_optax, on_params, optax_state  # noqa: E402
from ._optimizer_flows import adam_flow, heavy_ball_flow, momentum_ode, momentum_start, rmsprop_flow  # noqa: E402
from ._sweep import sweep  # noqa: E402
from ._catalogue import Entry, Method, catalogue, entry, get_entry  # noqa: E402
from .claims import (  # noqa: E402
    Agrees,
    AtHorizon,
    Formula,
    OrderFit,
    Refuted,
    SameLimit,
    Claim,
    Conserved,
    Context,
    Decays,
    EquilibriumSet,
    GrowsLike,
    Holds,
    Monotone,
    Perturbation,
    Report,
    Row,
    Spectrum,
    StaysIn,
    StepRatio,
    Trace,
    check,
)

__version__ = "0.1.0"


def __getattr__(name):
    """``rf.plot`` on first use (it imports matplotlib, which plain integration does not need)."""
    if name == "plot":
        import importlib

        return importlib.import_module(".plot", __name__)
    raise AttributeError(f"module 'regflow' has no attribute {name!r}")
__all__ = [
    "ODE", "SDE", "Map", "Trajectory", "integrate", "iterate", "pytree_dataclass", "Network", "stack_states",
    "Event", "EventLog", "brownian_increments", "brownian_path", "strong_order", "weak_order",
    "gradient_flow", "gradient_descent", "modified_flow", "sgd", "sme", "full_loss", "minibatch_covariance",
    "backward_error_flow", "backward_error_field",
    "nmgd", "halpern", "nmgd_flow", "power_schedule", "decay_schedule", "nmgd_partner",
    "jacobian", "hessian", "equilibria", "Equilibrium", "lie_derivative",
    "hvp", "hessian_eigs", "sharpness", "sharpness_fn", "hessian_trace", "jacobian_eigs",
    "central_flow", "central_flow_sigma2",
    "count_conservation_laws", "LawCount", "conservation_laws", "Law", "principal_angles", "law_coefficients", "prove_conserved",
    "map_error", "agreement_order", "Agreement", "sweep",
    "from_optax", "optax_state", "on_params", "heavy_ball_flow", "momentum_ode", "momentum_start", "adam_flow", "rmsprop_flow",
    "Method", "Entry", "entry", "catalogue", "get_entry",
    "Claim", "Conserved", "Decays", "Monotone", "StaysIn", "Spectrum", "EquilibriumSet", "Agrees", "StepRatio", "GrowsLike", "Holds",
    "AtHorizon", "SameLimit", "Formula", "Refuted", "OrderFit",
    "Report", "Row", "Trace", "Context", "Perturbation", "check",
]
