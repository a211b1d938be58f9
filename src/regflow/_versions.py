"""Library versions recorded in every result's metadata."""

import functools
from importlib import metadata

PACKAGES = ("regflow", "jax", "jaxlib", "diffrax", "sdeint", "scipy", "numpy")


@functools.lru_cache(maxsize=1)
def versions() -> dict[str, str]:
    found = {}
    for name in PACKAGES:
        try:
            found[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            found[name] = "not installed"
    return found
