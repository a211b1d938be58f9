"""regflow: training algorithms as dynamical systems.

Declare a method once as an `ODE`, `SDE` or `Map`, integrate it with scipy, diffrax or
sdeint, compare it with the discrete algorithm it came from, and check a paper's claims.

Importing regflow turns on JAX float64 (``jax_enable_x64``): every state, time and
parameter is float64.
"""

import jax as _jax

_jax.config.update("jax_enable_x64", True)

from ._system import ODE, SDE, Map  # noqa: E402
from ._trajectory import Trajectory  # noqa: E402
from ._integrate import integrate, iterate  # noqa: E402

__version__ = "0.1.0"
__all__ = ["ODE", "SDE", "Map", "Trajectory", "integrate", "iterate"]
