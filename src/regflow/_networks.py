r"""Small deep networks as pytree states: `Network`.

A network :math:`f(W; x) = W_K\,\sigma(\cdots\sigma(W_1 x + b_1)\cdots) + b_K` is declared by
its widths :math:`(d_0, d_1, \dots, d_K)`, an activation :math:`\sigma` (``"linear"``,
``"relu"`` or ``"tanh"``) and whether it has biases.  Its parameters are a dict of arrays,
``{"W1": (d_1, d_0), ..., "WK": (d_K, d_{K-1})}`` plus ``"b1" ... "bK"`` with biases, so a
flow on them has named leaves (``"W1[0,2]"``) and every regflow tool takes them as they are.

Without biases and with a linear or ReLU activation the network is positively homogeneous of
degree one in each layer (`Network.homogeneous`):
:math:`f(\ldots, cW_k, \ldots) = c\,f(W)` for :math:`c > 0`, so with the layer norms
:math:`\rho_k = \|W_k\|_F`, :math:`V_k = W_k/\rho_k` and :math:`\rho = \prod_k\rho_k`,
:math:`f(W; x) = \rho\, f(V; x)`.  The normalized state is ``{"rho": (K,), "V": {"W1", ...}}``
(`Network.normalize`, `Network.denormalize`).

Example
-------
>>> import regflow as rf
>>> net = rf.Network((2, 3, 1), activation="relu")
>>> params = net.init(seed=0)
>>> net(params, [[1.0, 0.5]]).shape
(1, 1)
>>> state = net.normalize(params)
>>> float(abs(net.rho(params) - state["rho"].prod())) < 1e-12
True
"""

from __future__ import annotations

import dataclasses
import math

import jax
import jax.numpy as jnp
import numpy as np

#: Activations a `Network` knows, by name.
ACTIVATIONS = {"linear": lambda h: h, "relu": jax.nn.relu, "tanh": jnp.tanh}
#: Activations under which a network without biases is positively one-homogeneous per layer.
HOMOGENEOUS = ("linear", "relu")


@dataclasses.dataclass(frozen=True)
class Network:
    """A fully connected network with ``widths`` ``(d_in, hidden..., d_out)`` (at least two),
    an ``activation`` between layers and optional ``bias`` terms (hashable: usable as a cache key)."""

    widths: tuple[int, ...]
    activation: str = "linear"
    bias: bool = False

    def __post_init__(self):
        widths = tuple(self.widths)
        if len(widths) < 2 or any(isinstance(w, bool) or not isinstance(w, (int, np.integer)) or w < 1
                                  for w in widths):
            raise ValueError(f"widths must be two or more positive ints (d_in, hidden..., d_out), got {self.widths!r}")
        object.__setattr__(self, "widths", tuple(int(w) for w in widths))
        if self.activation not in ACTIVATIONS:
            raise ValueError(f"activation must be one of {tuple(ACTIVATIONS)}, got {self.activation!r}")

    @property
    def depth(self) -> int:
        """The number of layers K."""
        return len(self.widths) - 1

    @property
    def shapes(self) -> tuple[tuple[int, int], ...]:
        """``(out, in)`` of each weight matrix."""
        return tuple((self.widths[k + 1], self.widths[k]) for k in range(self.depth))

    @property
    def keys(self) -> tuple[str, ...]:
        """The weight keys ``"W1" ... "WK"`` in layer order."""
        return tuple(f"W{k + 1}" for k in range(self.depth))

    @property
    def size(self) -> int:
        """The number of parameters."""
        return sum(math.prod(s) for s in self.shapes) + (sum(self.widths[1:]) if self.bias else 0)

    @property
    def homogeneous(self) -> bool:
        """No biases and a linear or ReLU activation: one-homogeneous in each layer."""
        return not self.bias and self.activation in HOMOGENEOUS

    def weights(self, params) -> list:
        """The weight matrices :math:`W_1 \\dots W_K` in layer order."""
        return [params[key] for key in self.keys]

    def init(self, seed: int, scale: float = 1.0) -> dict:
        r"""Parameters from ``seed``: :math:`W_k` with entries :math:`\mathcal N(0, \text{scale}^2/d_{k-1})`,
        biases zero (float64 numpy arrays)."""
        rng = np.random.default_rng(seed)
        params = {key: scale * rng.normal(size=shape) / np.sqrt(shape[1]) for key, shape in zip(self.keys, self.shapes)}
        if self.bias:
            params.update({f"b{k + 1}": np.zeros(self.widths[k + 1]) for k in range(self.depth)})
        return params

    def __call__(self, params, x):
        """The outputs :math:`f(W; x)` for inputs ``x`` of shape ``(..., d_in)``: ``(..., d_out)``."""
        act = ACTIVATIONS[self.activation]
        h = jnp.asarray(x)
        for k, W in enumerate(self.weights(params)):
            h = h @ W.T + (params[f"b{k + 1}"] if self.bias else 0.0)
            if k < self.depth - 1:
                h = act(h)
        return h

    def scalar(self, params, x):
        """The output of a one-output network for inputs ``(..., d_in)``: shape ``(...)``."""
        if self.widths[-1] != 1:
            raise ValueError(f"scalar needs one output (widths[-1] == 1), got widths {self.widths}")
        return self(params, x)[..., 0]

    def layer_norms(self, params):
        r""":math:`(\rho_1, \dots, \rho_K)`, the Frobenius norms of the weight matrices."""
        return jnp.stack([jnp.sqrt(jnp.sum(W**2)) for W in self.weights(params)])

    def rho(self, params):
        r""":math:`\rho = \prod_k \rho_k`."""
        return jnp.prod(self.layer_norms(params))

    def _require_homogeneous(self, what):
        if not self.homogeneous:
            raise ValueError(f"{what} needs a homogeneous network (no biases, activation in {HOMOGENEOUS}), got "
                             f"activation={self.activation!r}, bias={self.bias}")

    def normalize(self, params) -> dict:
        r"""``{"rho": (K,), "V": {"Wk": W_k / rho_k}}`` (homogeneous networks only)."""
        self._require_homogeneous("normalize")
        rhos = self.layer_norms(params)
        return {"rho": rhos, "V": {key: W / r for key, W, r in zip(self.keys, self.weights(params), rhos)}}

    def denormalize(self, state) -> dict:
        r"""The weights :math:`W_k = \rho_k V_k` of a normalized state."""
        self._require_homogeneous("denormalize")
        return {key: state["rho"][k] * state["V"][key] for k, key in enumerate(self.keys)}

    def flatten(self, params):
        """The parameters as one vector: weights in layer order (row-major), then biases."""
        leaves = self.weights(params) + ([params[f"b{k + 1}"] for k in range(self.depth)] if self.bias else [])
        return jnp.concatenate([jnp.ravel(leaf) for leaf in leaves])

    def unflatten(self, w) -> dict:
        """The parameters of a vector laid out as `flatten` writes it."""
        if jnp.shape(w)[-1:] != (self.size,):
            raise ValueError(f"expected a vector of {self.size} parameters for widths {self.widths}, got shape "
                             f"{jnp.shape(w)}")
        params, i = {}, 0
        for key, (r, c) in zip(self.keys, self.shapes):
            params[key] = w[i:i + r * c].reshape(r, c)
            i += r * c
        if self.bias:
            for k in range(self.depth):
                params[f"b{k + 1}"] = w[i:i + self.widths[k + 1]]
                i += self.widths[k + 1]
        return params


def stack_states(states) -> dict:
    """States of one structure stacked along a new leading axis (a batch of starts)."""
    return jax.tree_util.tree_map(lambda *leaves: np.stack([np.asarray(x, dtype=np.float64) for x in leaves]), *states)
