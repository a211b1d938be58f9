"""The catalogue: one module per family of methods, declared with the public API."""
