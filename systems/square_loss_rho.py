r"""Square loss in deep ReLU networks: the dynamics of the norm :math:`\rho` and of the
normalized weights :math:`V_k`.

Poggio & Liao, "Implicit dynamic regularization in deep networks" (CBMM Memo 112, 2020).
A deep ReLU network without biases, :math:`g(x) = W_L\sigma(W_{L-1}\cdots\sigma(W_1x))`, is
positively homogeneous of degree one in every layer.  Writing :math:`W_k = \rho_kV_k`,
:math:`\|V_k\| = 1` (Frobenius), :math:`\rho = \prod_k\rho_k` and :math:`f_n = g_V(x_n)` (the
normalized network), gradient flow on the square loss
:math:`L = \sum_n(\rho f_n - y_n)^2` becomes

.. math:: \dot\rho_k = -2\frac{\rho}{\rho_k}\sum_n(\rho f_n - y_n)f_n,\qquad
          \dot V_k = -2\frac{\rho}{\rho_k^2}\sum_n(\rho f_n - y_n)
          \Big(\frac{\partial f_n}{\partial V_k} - V_kf_n\Big)
          \qquad\text{(eq 3-4)},

so :math:`\partial_t\rho_k^2` does not depend on :math:`k` (Lemma 1) and layers that start
with equal norms keep them.  Then :math:`\rho = \rho_k^L` and

.. math:: \dot\rho = 2L\rho^{\frac{2L-2}{L}}\Big[\sum_n f_ny_n - \rho\sum_n f_n^2\Big],\qquad
          \rho_{eq} = \frac{\sum_n y_nf_n}{\sum_n f_n^2},\qquad
          \dot V_k = -2\rho^{\frac{L-2}{L}}\sum_n(\rho f_n - y_n)
          \Big(\frac{\partial f_n}{\partial V_k} - V_kf_n\Big)\qquad\text{(eq 5-7)}.

With :math:`\sum f_n^2` and :math:`\sum f_ny_n` frozen, eq 5 alone shows the *transient phase*:
from a small :math:`\rho(0)` the norm stays small for a time :math:`T` and then rises quickly to
:math:`\rho_{eq}`.  Near :math:`\rho = 0`,
:math:`T \approx \rho(0)^{-(1-2/L)}/(2(L-2)\sum f_ny_n)` for :math:`L > 2`: longer for a
smaller start, with an exponent :math:`1 - 2/L` that grows with depth.

Conventions and remarks recorded here:

* Eq 1-2 carry a factor :math:`1/N`; eq 3-7 drop it ("gradient descent on
  :math:`L = \sum_n(\rho f_n - y_n)^2`").  We use the sum; the mean only rescales time by
  :math:`N`.
* Eq 3-7 print :math:`\rho_k^{L-1}`, :math:`\rho^{(2L-2)/L}`, :math:`\rho^{(L-2)/L}`, which
  hold once the :math:`\rho_k` are equal; `rho_v_field` implements the general eq 2-4 (ratios
  :math:`\rho/\rho_k`, :math:`\rho/\rho_k^2`) and the claims check the printed forms at balanced
  points.
* "Longer for deeper nets" holds when every layer starts with the same norm
  :math:`\rho_k(0) = r < 1` (so :math:`\rho(0) = r^L`); at a fixed product :math:`\rho(0)` the
  transient is not monotone in depth (at :math:`\rho(0) = 0.1` it is shorter for
  :math:`L = 6` than for :math:`L = 3`); eq 5 predicts this, the paper's wording does not
  distinguish the two.
* ReLU makes the field discontinuous where a pre-activation crosses zero, and trajectories
  slide along such sets; adaptive solvers stall there.  Trajectory claims of the network
  entry therefore integrate with fixed-step Heun (``method="heun"``), and the exact identities
  (eq 3-7, Lemma 1) are checked pointwise.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np

import regflow as rf

#: Input dimension, hidden width, number of samples of the toy classification problem.
IN_DIM, WIDTH, SAMPLES = 2, 4, 6
#: Default depth.
DEPTH = 3
#: Fixed Heun step for the non-smooth network flow, and its horizon.
HEUN_DT = 5e-3
NET_T1 = 40.0
#: Tolerance of exact (pointwise) identities.
EXACT_TOL = 1e-12


# ----------------------------------------------------------------------------- the network


def toy_data(n=SAMPLES, seed=0):
    r"""``{"X": (n, 2) on the unit circle (\|x\| = 1 as sec 2.2 assumes), "y": +-1}``."""
    rng = np.random.default_rng(seed)
    theta = rng.uniform(0.0, 2 * np.pi, n)
    X = np.c_[np.cos(theta), np.sin(theta)]
    return {"X": jnp.asarray(X), "y": jnp.asarray(np.sign(np.cos(theta - 0.5)))}


def layer_shapes(depth, width=WIDTH, d=IN_DIM):
    """Shapes of W_1 .. W_L: (width, d), (width, width) ..., (1, width); (1, d) when L = 1."""
    if isinstance(depth, bool) or not isinstance(depth, (int, np.integer)) or depth < 1:
        raise ValueError(f"depth must be an int >= 1, got {depth!r}")
    if depth == 1:
        return ((1, d),)
    return ((width, d),) + ((width, width),) * (depth - 2) + ((1, width),)


def unflatten(w, depth):
    """Flat weights -> list of layer matrices."""
    out, i = [], 0
    for r, c in layer_shapes(depth):
        out.append(w[i:i + r * c].reshape(r, c))
        i += r * c
    return out


def n_weights(depth):
    return sum(r * c for r, c in layer_shapes(depth))


def network(w, X, depth):
    r""":math:`g(x_n) = W_L\sigma(\cdots\sigma(W_1x_n))` for every row of ``X``: shape ``(n,)``."""
    Ws = unflatten(w, depth)
    z = X.T
    for W in Ws[:-1]:
        z = jnp.maximum(W @ z, 0.0)
    return (Ws[-1] @ z)[0]


def square_loss(depth):
    r""":math:`L(W) = \sum_n(g(x_n) - y_n)^2` (the sum, as eq 3-7 use it), ``args`` the data."""

    def loss(w, args):
        return jnp.sum((network(w, args["X"], depth) - args["y"]) ** 2)

    return loss


def layer_norms(w, depth):
    r""":math:`(\rho_1, \dots, \rho_L)`, Frobenius norms of the layers."""
    return jnp.stack([jnp.linalg.norm(W) for W in unflatten(w, depth)])


def weight_names(depth):
    return tuple(f"W{k + 1}_{i}{j}" for k, (r, c) in enumerate(layer_shapes(depth)) for i in range(r) for j in range(c))


# ----------------------------------------------------------------------------- (rho, V) coordinates


def to_rho_v(w, depth):
    r"""Weights -> state ``[rho_1..rho_L, vec V_1 .. vec V_L]``."""
    rho = layer_norms(w, depth)
    V = [W / r for W, r in zip(unflatten(w, depth), rho)]
    return jnp.concatenate([rho] + [v.ravel() for v in V])


def from_rho_v(s, depth):
    r"""State ``[rho, V]`` -> weights :math:`W_k = \rho_kV_k`."""
    rho, V = s[:depth], unflatten(s[depth:], depth)
    return jnp.concatenate([(r * v).ravel() for r, v in zip(rho, V)])


def rho_v_field(depth):
    r"""Eq 2-4 for arbitrary :math:`\rho_k`: ``f(t, [rho, V], data)``.  :math:`f_n = g(V)(x_n)`
    and :math:`\partial f_n/\partial V_k` is the derivative of the network at :math:`V`."""

    def field(t, s, args):
        rho, v = s[:depth], s[depth:]
        prod = jnp.prod(rho)
        f, pullback = jax.vjp(lambda u: network(u, args["X"], depth), v)
        err = prod * f - args["y"]
        dfdv = unflatten(pullback(err)[0], depth)  # sum_n err_n df_n/dV_k
        ef = jnp.sum(err * f)
        rho_dot = -2.0 * prod / rho * ef
        V = unflatten(v, depth)
        v_dot = [-2.0 * prod / r**2 * (g - Vk * ef) for r, g, Vk in zip(rho, dfdv, V)]
        return jnp.concatenate([rho_dot] + [x.ravel() for x in v_dot])

    return field


def rho_v_names(depth):
    return tuple(f"rho{k + 1}" for k in range(depth)) + tuple("V" + n[1:] for n in weight_names(depth))


def normalized_outputs(s, args, depth):
    r""":math:`f_n = g(V)(x_n)`."""
    return network(s[depth:], args["X"], depth)


def rho_of(s, args=None, depth=DEPTH):
    r""":math:`\rho = \prod_k\rho_k`."""
    return jnp.prod(s[:depth])


def rho_eq(s, args, depth):
    r"""Eq 6: :math:`\rho_{eq} = \sum_n y_nf_n / \sum_n f_n^2` at the current :math:`V`."""
    f = normalized_outputs(s, args, depth)
    return jnp.sum(args["y"] * f) / jnp.sum(f**2)


def eq5_rate(s, args, depth):
    r"""Eq 5's right side :math:`2L\rho^{(2L-2)/L}[\sum f_ny_n - \rho\sum f_n^2]`."""
    f = normalized_outputs(s, args, depth)
    rho = rho_of(s, depth=depth)
    return 2.0 * depth * rho ** ((2.0 * depth - 2.0) / depth) * (jnp.sum(f * args["y"]) - rho * jnp.sum(f**2))


def eq7_field(s, args, depth):
    r"""Eq 7's right side for every layer, :math:`-2\rho^{(L-2)/L}\sum_n(\rho f_n - y_n)
    (\partial f_n/\partial V_k - V_kf_n)`, flattened."""
    v = s[depth:]
    rho = rho_of(s, depth=depth)
    f, pullback = jax.vjp(lambda u: network(u, args["X"], depth), v)
    err = rho * f - args["y"]
    g = pullback(err)[0]
    V = unflatten(v, depth)
    corr = jnp.concatenate([(Vk * jnp.sum(err * f)).ravel() for Vk in V])
    return -2.0 * rho ** ((depth - 2.0) / depth) * (g - corr)


def directions(depth, seed=0, data=None):
    r"""Random unit-norm :math:`V_k` (fixed by ``seed``), the last one's sign chosen so that
    :math:`\sum_n f_ny_n > 0` (otherwise :math:`\rho \to 0`, sec 3)."""
    data = toy_data() if data is None else data
    rng = np.random.default_rng(seed)
    V = [rng.normal(size=s) for s in layer_shapes(depth)]
    V = [v / np.linalg.norm(v) for v in V]
    flat = jnp.asarray(np.concatenate([v.ravel() for v in V]))
    if float(jnp.sum(network(flat, data["X"], depth) * data["y"])) < 0:
        V[-1] = -V[-1]
    return np.concatenate([v.ravel() for v in V])


def balanced_state(depth, layer_norm, seed=0):
    """State with every rho_k = ``layer_norm`` and the directions of `directions`."""
    return np.concatenate([np.full(depth, layer_norm), directions(depth, seed)])


def unbalanced_states(depth, count=4, seed=10):
    """States with unequal rho_k (for the general identities)."""
    rng = np.random.default_rng(seed)
    return np.stack([np.concatenate([rng.uniform(0.3, 1.5, depth), directions(depth, seed + i)])
                     for i in range(count)])


def half_time(t, values, level):
    """First time ``values`` (n,) reaches ``level`` (linear interpolation); inf if never."""
    above = np.nonzero(values >= level)[0]
    if not len(above):
        return np.inf
    i = above[0]
    if i == 0:
        return float(t[0])
    return float(t[i - 1] + (level - values[i - 1]) * (t[i] - t[i - 1]) / (values[i] - values[i - 1]))


#: Per-layer starting norms of the network transient claim.
NET_LAYER_NORMS = (0.6, 0.45, 0.3)
#: Heun steps of the Lemma 1 trajectory check (the drift must shrink with the step).
LEMMA1_STEPS = (1e-2, 5e-3, 2.5e-3)
#: Learning rate of the GD map of the network entry, and of the one-step Lemma 1 check (large
#: enough that the lr^2 term stands well above float64 rounding of rho_k^2).
NET_LR = 1e-2
LEMMA1_GD_LR = 0.1


@functools.lru_cache(maxsize=None)
def _network_parts(depth):
    """Flow, GD map and jitted pointwise checks of one depth, built once per process (so
    repeated builds reuse the compiled programs)."""
    data = toy_data()
    field = rho_v_field(depth)
    names = rho_v_names(depth)
    flow = rf.ODE(field, names=names, args=data)
    loss = square_loss(depth)
    grad = jax.grad(loss)

    def gd_step(k, s, args):
        w = from_rho_v(s, depth)
        return to_rho_v(w - args["lr"] * grad(w, args), depth)

    gd = rf.Map(gd_step, dt=NET_LR, names=names, args={**data, "lr": NET_LR})

    def pushed(s):
        w = from_rho_v(s, depth)
        return jax.jvp(lambda u: to_rho_v(u, depth), (w,), (-grad(w, data),))[1]

    def d_rho_sq(s):
        return 2.0 * s[:depth] * field(0.0, s, data)[:depth]

    def sphere_rates(s):
        v_dot = unflatten(field(0.0, s, data)[depth:], depth)
        return jnp.stack([jnp.sum(V * Vd) for V, Vd in zip(unflatten(s[depth:], depth), v_dot)])

    def eq5_pair(s):
        return jax.grad(rho_of)(s, None, depth) @ field(0.0, s, data), eq5_rate(s, data, depth)

    def eq7_pair(s):
        return field(0.0, s, data)[depth:], eq7_field(s, data, depth)

    def gd_imbalance_pair(s):
        """Change of rho_k^2 - rho_1^2 in one GD step, and lr^2 (|grad_k L|^2 - |grad_1 L|^2)."""
        nxt = gd_step(0, s, {**data, "lr": LEMMA1_GD_LR})
        before, after = s[:depth] ** 2, nxt[:depth] ** 2
        g2 = jnp.stack([jnp.sum(G**2) for G in unflatten(grad(from_rho_v(s, depth), data), depth)])
        return (after - after[0]) - (before - before[0]), LEMMA1_GD_LR**2 * (g2 - g2[0])

    def loss_of_state(s, args):
        return loss(from_rho_v(s, depth), args)

    def ratio_to_eq(s, args):
        return rho_of(s, depth=depth) / rho_eq(s, args, depth)

    checks = {name: jax.jit(jax.vmap(fn)) for name, fn in [
        ("field", lambda s: field(0.0, s, data)), ("pushed", pushed), ("d_rho_sq", d_rho_sq),
        ("sphere", sphere_rates), ("eq5", eq5_pair), ("eq7", eq7_pair), ("gd_imbalance", gd_imbalance_pair)]}
    return data, flow, gd, checks, loss_of_state, ratio_to_eq


def _rel(pair):
    got, want = (np.asarray(x) for x in pair)
    return float(np.max(np.abs(got - want)) / np.max(np.abs(want)))


@rf.entry("square_loss_rho.network", source="Poggio & Liao, sec 2.3, eq 2-7, Lemma 1")
def network_flow(depth: int = DEPTH, layer_norm: float = 0.45, t1: float = NET_T1) -> rf.Method:
    r"""Gradient flow of the square loss of a deep ReLU network (``depth`` layers, width 4, no
    biases) in the coordinates :math:`(\rho_k, V_k)` of eq 3-4; its map is GD on the weights
    :math:`W_k = \rho_kV_k` (learning rate ``NET_LR``) read in the same coordinates."""
    data, flow, gd, checks, loss_of_state, ratio_to_eq = _network_parts(depth)
    y0 = balanced_state(depth, layer_norm)
    balanced = np.stack([balanced_state(depth, r, seed=s) for s, r in [(0, 0.45), (1, 0.9), (2, 1.2)]])
    unbalanced = unbalanced_states(depth)
    samples = jnp.asarray(np.vstack([balanced, unbalanced]))
    starts = np.vstack([np.stack([balanced_state(depth, r) for r in NET_LAYER_NORMS]), unbalanced[:1]])
    n_bal = len(NET_LAYER_NORMS)
    ts = np.linspace(0.0, t1, 401)
    cache = {}

    def heun_run(dt=HEUN_DT):
        if dt not in cache:
            cache[dt] = rf.integrate(flow, starts, t1, ts=ts, method="heun", dt=dt, batched=True)
        if not cache[dt].ok:
            raise RuntimeError(f"Heun run did not finish: {cache[dt].status}")
        return cache[dt]

    def pushforward_error(method):
        return _rel((checks["field"](samples), checks["pushed"](samples)))

    def lemma1_pointwise(method):
        d_sq = np.asarray(checks["d_rho_sq"](samples))
        return float(np.max(np.abs(d_sq - d_sq[:, :1])) / np.max(np.abs(d_sq)))

    def imbalance_drift(dt):
        rho = heun_run(dt).y[-1, :, :depth]
        imb = rho**2 - rho[:, :1] ** 2
        return float(np.max(np.abs(imb - imb[0])) / np.max(np.abs(imb[0])))

    def lemma1_drift(method):
        return imbalance_drift(min(LEMMA1_STEPS))

    def lemma1_order(method):
        drifts = [imbalance_drift(dt) for dt in LEMMA1_STEPS]
        return float(np.polyfit(np.log(LEMMA1_STEPS), np.log(drifts), 1)[0])

    def eq6_at_end(method):
        ratio = heun_run().evaluate(ratio_to_eq)[:n_bal, -1]
        return float(np.max(np.abs(ratio - 1.0)))

    def transient_ordering(method):
        """min over consecutive starts of T(smaller r) / T(larger r), T: loss reaches half of sum y^2."""
        lossv = heun_run().evaluate(loss_of_state)[:n_bal]
        level = 0.5 * float(jnp.sum(data["y"] ** 2))
        T = [half_time(ts, -lv, -level) for lv in lossv]
        return min(T[i + 1] / T[i] for i in range(len(T) - 1))

    return rf.Method(
        flow=flow, map=gd, y0=y0, t1=t1, steps=int(round(t1 / NET_LR)), samples=np.asarray(samples),
        claims=[
            rf.Holds(measure=pushforward_error, lo=0.0, hi=EXACT_TOL, name="eq 2-4 = GD flow in (rho, V)",
                     what=f"max |(rho, V) field - d/dt(|W_k|, W_k/|W_k|)| / max at {len(samples)} points "
                          "(balanced and not)",
                     source="eq 2-4: rho_k dot = V_k^T W_k dot, V_k dot = S_k W_k dot / rho_k"),
            rf.Holds(measure=lemma1_pointwise, lo=0.0, hi=EXACT_TOL, name="Lemma 1, pointwise",
                     what="max_k |d(rho_k^2)/dt - d(rho_1^2)/dt| / max, at points with unequal rho_k",
                     source="Lemma 1: d(rho_k^2)/dt is independent of k"),
            rf.Holds(measure=lemma1_drift, lo=0.0, hi=1e-6, name="Lemma 1, trajectory",
                     what=f"max_k |drift of rho_k^2 - rho_1^2| / |rho_k^2 - rho_1^2| to t={t1:g}, unequal start, "
                          f"Heun dt={min(LEMMA1_STEPS)}",
                     source="Lemma 1: rho_k^2 - rho_j^2 is constant, so equal rho_k stay equal"),
            rf.Holds(measure=lemma1_order, lo=2.0, name="Lemma 1 drift is integrator error",
                     what=f"fitted order p of that drift ~ dt^p over Heun dt = {LEMMA1_STEPS}",
                     source="Lemma 1 (the drift vanishes as dt -> 0)"),
            rf.Holds(measure=lambda m: _rel(checks["gd_imbalance"](samples)), lo=0.0, hi=EXACT_TOL,
                     name="Lemma 1 for GD",
                     what=f"|one GD step's change of rho_k^2 - rho_1^2 - lr^2(|grad_k|^2 - |grad_1|^2)| / max, "
                          f"lr={LEMMA1_GD_LR}",
                     source="sec 2.1 (GD): the first-order change of rho_k^2 is k-independent, as in Lemma 1"),
            rf.Holds(measure=lambda m: float(np.max(np.abs(np.asarray(checks["sphere"](samples))))), lo=0.0,
                     hi=EXACT_TOL, name="|V_k| = 1 is invariant", what="max_k |<V_k, V_k dot>| at the sample points",
                     source="eq 4: V_k dot = S_k W_k dot / rho_k with S_k = I - V_k V_k^T"),
            rf.Holds(measure=lambda m: _rel(checks["eq5"](jnp.asarray(balanced))), lo=0.0, hi=EXACT_TOL, name="eq 5",
                     what="max |d(prod rho_k)/dt - 2L rho^((2L-2)/L)(sum f y - rho sum f^2)| / max at balanced points",
                     source="eq 5"),
            rf.Holds(measure=lambda m: _rel(checks["eq7"](jnp.asarray(balanced))), lo=0.0, hi=EXACT_TOL, name="eq 7",
                     what="max |V dot (eq 4) - eq 7 with rho^((L-2)/L)| / max at balanced points", source="eq 7"),
            rf.Holds(measure=eq6_at_end, lo=0.0, hi=1e-6, name="eq 6 at the end",
                     what=f"max |rho / rho_eq(V) - 1| at t={t1:g} over {n_bal} Heun runs (dt={HEUN_DT}) "
                          "from equal rho_k",
                     source="eq 6: rho_eq = sum y f / sum f^2"),
            rf.Holds(measure=transient_ordering, lo=1.0, name="smaller start, longer transient",
                     what=f"min ratio of half-loss times T(r_next)/T(r) for layer norms r = {NET_LAYER_NORMS}",
                     source="sec 3: 'the smaller rho_{t=0} is, the longer it takes rho to grow'"),
        ],
    )


# ----------------------------------------------------------------------------- eq 5 alone


def reduced_field(t, rho, args):
    r"""Eq 5 with :math:`\sum f_n^2 = b`, :math:`\sum f_ny_n = c` frozen:
    :math:`\dot\rho = 2L\rho^{(2L-2)/L}(c - b\rho)`; ``args = {"L", "b", "c"}``."""
    L = args["L"]
    r = jnp.maximum(rho, 0.0)
    return 2.0 * L * r ** ((2.0 * L - 2.0) / L) * (args["c"] - args["b"] * r)


#: Frozen sums of the reduced equation (rho_eq = c / b = 1) and the depths compared.
REDUCED_B, REDUCED_C = 1.0, 1.0
REDUCED_DEPTHS = (2, 3, 4, 5, 6)
REDUCED_STARTS = (1e-1, 1e-2, 1e-3)
#: Per-layer starting norms for the depth comparison (rho(0) = r^L).
REDUCED_LAYER_NORM = 0.5


def _sweep_field(t, y, args):
    """Eq 5 with its parameters carried in the state, ``y = [rho, L, b, c]``: one compiled
    program integrates many depths and starts at once."""
    rho_dot = reduced_field(t, y[0], {"L": y[1], "b": y[2], "c": y[3]})
    return jnp.stack([rho_dot, 0.0 * y[1], 0.0 * y[2], 0.0 * y[3]])


SWEEP = rf.ODE(_sweep_field, names=("rho", "L", "b", "c"))
#: Saved times of a transient-time sweep.
SWEEP_SAVES = 4001


def transient_sweep(cases, frac=0.5, b=REDUCED_B, c=REDUCED_C, t1=None):
    r"""Eq 5 from every ``(L, rho0)`` of ``cases`` in one `rf.integrate` ensemble of `SWEEP`
    (state ``[rho, L, b, c]``) on a dense grid.  Returns the trajectory and, per case, the time
    :math:`T` to rise to ``frac`` :math:`\rho_{eq}` (linear interpolation of the crossing)."""
    cases = np.asarray(cases, dtype=float).reshape(-1, 2)
    if np.any(cases[:, 1] <= 0) or np.any(cases[:, 1] >= frac * c / b):
        raise ValueError(f"every rho0 must lie in (0, frac * rho_eq = {frac * c / b:g}), got {cases[:, 1]}")
    if t1 is None:  # the small-rho estimate, tripled, plus relaxation
        L, r0 = cases[:, 0], cases[:, 1]
        expo = np.maximum(1.0 - 2.0 / L, 0.0)
        est = np.where(expo > 0, r0 ** (-expo) / np.maximum(2.0 * (L - 2.0), 1.0), np.log(1.0 / r0) + 1.0) / c
        t1 = 3.0 * float(est.max()) + 4.0 / b
    ts = np.linspace(0.0, t1, SWEEP_SAVES)
    y0 = np.column_stack([cases[:, 1], cases[:, 0], np.full(len(cases), b), np.full(len(cases), c)])
    traj = rf.integrate(SWEEP, y0, t1, ts=ts, rtol=1e-10, atol=1e-12, batched=True)
    if not traj.ok:
        raise RuntimeError(f"the transient sweep did not finish: {traj.status}")
    return traj, np.array([half_time(ts, traj.y[p, :, 0], frac * c / b) for p in range(len(cases))])


def transient_times(cases, frac=0.5, b=REDUCED_B, c=REDUCED_C, t1=None):
    """The times ``T`` of `transient_sweep`."""
    return transient_sweep(cases, frac, b, c, t1)[1]


def transient_quadrature(args, rho0, frac=0.5):
    r""":math:`T = \int_{\rho_0}^{\text{frac}\,\rho_{eq}} d\rho/\dot\rho` by scipy quadrature
    (an independent reference for `transient_time`)."""
    from scipy.integrate import quad

    level = frac * args["c"] / args["b"]
    return float(quad(lambda r: 1.0 / float(reduced_field(0.0, r, args)), rho0, level, limit=200)[0])


#: Monotone tolerance: claims integrate flows at rtol 1e-8, so once rho has reached rho_eq the
#: solver moves it by ~1e-8 (relative) either way; 1e-7 sits above that floor.
MONOTONE_TOL = 1e-7


def reduced_args(L, b=REDUCED_B, c=REDUCED_C):
    return {"L": float(L), "b": float(b), "c": float(c)}


@rf.entry("square_loss_rho.reduced", source="Poggio & Liao, eq 5-6, sec 3, Fig. 1")
def reduced(L: int = 4, b: float = REDUCED_B, c: float = REDUCED_C) -> rf.Method:
    r"""Eq 5 with the sums frozen, :math:`\dot\rho = 2L\rho^{(2L-2)/L}(c - b\rho)` (Fig. 1):
    the sink :math:`\rho_{eq} = c/b` (eq 6) and the transient phase."""
    if not (b > 0 and c > 0):
        raise ValueError(f"b = sum f^2 and c = sum f y must be positive for a transient to rho_eq = c/b, "
                         f"got b={b}, c={c}")
    args = reduced_args(L, b, c)
    flow = rf.ODE(reduced_field, names=("rho",), args=args)
    starts = np.array([[1e-3], [1e-2], [0.1], [0.5 * c / b]])

    starts_cases = [(d, r) for d in REDUCED_DEPTHS for r in REDUCED_STARTS]
    layer_cases = [(d, REDUCED_LAYER_NORM**d) for d in REDUCED_DEPTHS]
    product_cases = [(6, 0.1), (3, 0.1)]
    sweep = {}

    def times():
        if "T" not in sweep:
            sweep["T"] = transient_times(starts_cases + layer_cases + product_cases, b=b, c=c)
        T = sweep["T"]
        n1, n2 = len(starts_cases), len(starts_cases) + len(layer_cases)
        return T[:n1].reshape(len(REDUCED_DEPTHS), len(REDUCED_STARTS)), T[n1:n2], T[n2:]

    def start_ordering(method):
        by_start = times()[0]
        return float(np.min(by_start[:, 1:] / by_start[:, :-1]))

    def depth_ordering(method):
        T = times()[1]
        return float(np.min(T[1:] / T[:-1]))

    def exponents(method):
        """-d log T / d log rho0 between rho0 = 1e-2 and 1e-3, per depth; returns the smallest increase."""
        by_start = times()[0]
        return float(np.min(np.diff(np.log(by_start[:, 2] / by_start[:, 1]) / np.log(10.0))))

    def fixed_product(method):
        T = times()[2]
        return float(T[0] / T[1])

    return rf.Method(
        flow=flow, y0=starts, t1=40.0 / (b * L), samples=np.array([[1e-2], [0.3], [0.9 * c / b]]),
        view={"x": "rho"},
        claims=[
            rf.EquilibriumSet(guesses=np.array([[0.8 * c / b], [1.3 * c / b]]), on=lambda y, a: y[0] - a["c"] / a["b"],
                              kind="sink", zero_modes=0, name="rho_eq = sum y f / sum f^2",
                              source="eq 6: the equilibrium of eq 5"),
            rf.Monotone(lambda y, a: y[0], increasing=True, name="rho", tol=MONOTONE_TOL,
                        source="sec 3.1: rho grows while rho < rho_eq and sum f y > 0"),
            rf.Holds(measure=start_ordering, lo=1.0, name="smaller start, longer transient",
                     what=f"min over L in {REDUCED_DEPTHS} of T(rho0/10)/T(rho0), rho0 in {REDUCED_STARTS}; "
                          "T: time to reach rho_eq/2",
                     source="sec 3: 'the smaller rho_{t=0} is, the longer it takes to rho to grow'"),
            rf.Holds(measure=depth_ordering, lo=1.0, name="deeper, longer transient",
                     what=f"min over L in {REDUCED_DEPTHS} of T(L+1)/T(L) with every layer at rho_k(0) = "
                          f"{REDUCED_LAYER_NORM} (rho(0) = {REDUCED_LAYER_NORM}^L)",
                     source="abstract, sec 3: 'T is longer with more layers'"),
            rf.Holds(measure=exponents, lo=0.0, name="depth sharpens the dependence on rho(0)",
                     what="min over consecutive L of the increase of -dlog T/dlog rho0 (rho0: 1e-2 -> 1e-3)",
                     source="sec 3: 'this phenomenon increase with larger L'"),
            rf.Holds(measure=fixed_product, lo=0.0, hi=1.0, name="fixed rho(0): depth need not lengthen",
                     what="T(L=6) / T(L=3) at the same product norm rho(0) = 0.1",
                     source="qualification of 'longer for deeper networks' (it needs equal small layer norms)"),
        ],
    )
