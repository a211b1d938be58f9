import os
import pathlib

# Share compiled XLA programs between test workers and the notebooks' kernels (they compile
# the same catalogue systems): JAX's persistent compilation cache, inside the repository.
os.environ.setdefault("JAX_COMPILATION_CACHE_DIR", str(pathlib.Path(__file__).parent.parent / ".jax_cache"))
os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0.1")
# JAX never writes a program with a host callback to that cache.  Equinox's runtime checks are
# callbacks unless EQX_ON_ERROR=nan, and diffrax checks `saveat.ts` that way (regflow validates
# ts before it gets there), so without this no diffrax solve would be shared.
os.environ.setdefault("EQX_ON_ERROR", "nan")

import matplotlib

matplotlib.use("Agg")

import jax.numpy as jnp  # noqa: E402
import pytest  # noqa: E402

import regflow as rf  # noqa: E402


def two_layer_loss(w, args=None):
    return (w[0] * w[1] - 1.0) ** 2


@pytest.fixture(scope="session")
def ou():
    """Ornstein-Uhlenbeck dy = -theta y dt + sigma dB, diagonal noise, parameters in args."""
    return rf.SDE(lambda t, y, a: -a["theta"] * y, lambda t, y, a: a["sigma"] * jnp.ones_like(y),
                  noise="diagonal", names=("x", "v"), args={"theta": 1.0, "sigma": 0.5})


@pytest.fixture(scope="session")
def rotation():
    return rf.ODE(lambda t, y, a: jnp.array([-y[1], y[0]]), names=("x", "y"))


def pytest_collection_modifyitems(config, items):
    """Notebook runs first: they are the longest tests, so under pytest-xdist (which deals out the
    first tests in turn) they start early on every worker instead of holding up the end of the run."""
    items.sort(key=lambda item: not (item.path.name == "test_notebooks.py"
                                     and getattr(item, "originalname", "") == "test_notebook_runs"))
