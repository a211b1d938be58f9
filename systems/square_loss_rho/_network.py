r"""The deep ReLU network of Poggio & Liao in :math:`(\rho_k, V_k)` coordinates (sec 2.3, eq 2-8, Lemma 1)."""

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
    return net_of(depth, width, d).shapes


def net_of(depth, width=WIDTH, d=IN_DIM):
    """The `rf.Network` of ``depth`` ReLU layers without biases (one-homogeneous in each layer)."""
    if isinstance(depth, bool) or not isinstance(depth, (int, np.integer)) or depth < 1:
        raise ValueError(f"depth must be an int >= 1, got {depth!r}")
    return rf.Network((d,) + (width,) * (depth - 1) + (1,), activation="relu")


def unflatten(w, depth):
    """Flat weights -> list of layer matrices."""
    net = net_of(depth)
    return net.weights(net.unflatten(w))


def n_weights(depth):
    return net_of(depth).size


def network(w, X, depth):
    r""":math:`g(x_n) = W_L\sigma(\cdots\sigma(W_1x_n))` for every row of ``X``: shape ``(n,)``."""
    net = net_of(depth)
    return net.scalar(net.unflatten(w), X)


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
#: Heun steps of the Lemma 1 order fit (the drift must shrink like dt^2); the runs of the claims
#: use the smallest.
LEMMA1_STEPS = (1e-2, 5e-3, 2.5e-3)
#: Learning rate of the GD map of the network entry, and of the one-step Lemma 1 check (large
#: enough that the lr^2 term stands well above float64 rounding of rho_k^2).
NET_LR = 1e-2
LEMMA1_GD_LR = 0.1


#: Drift allowed to |V_k|^2 along the claims' Heun runs: a fixed-step run leaves the sphere by O(dt^2) per
#: unit time (8e-3 at dt = 2.5e-3 to t = 40); the pointwise row is exact.
SPHERE_DRIFT_TOL = 2e-2


def _sq_gaps(depth):
    def q(s, args=None):
        return s[1:depth] ** 2 - s[: depth - 1] ** 2

    q.__name__ = "rho_{k+1}^2 - rho_k^2"
    return q


def _unit_norms(depth):
    def q(s, args=None):
        return jnp.stack([jnp.sum(V**2) for V in unflatten(s[depth:], depth)])

    q.__name__ = "|V_k|^2"
    return q


def _v_part(depth):
    def q(s, args=None):
        return s[depth:]

    q.__name__ = "V"
    return q


def on_sphere(s, depth):
    r"""The state with :math:`V_k/\|V_k\|` and :math:`\rho_k\|V_k\|`: the same weights :math:`W_k = \rho_kV_k`, read
    with unit :math:`V_k` (a fixed-step run leaves the sphere by :math:`O(dt^2)`)."""
    Vs = unflatten(s[depth:], depth)
    norms = jnp.stack([jnp.linalg.norm(V) for V in Vs])
    return jnp.concatenate([s[:depth] * norms] + [(V / n).ravel() for V, n in zip(Vs, norms)])


def _loss_gradient(s, args, depth):
    r""":math:`\sum_n\ell_n\,\partial f_n/\partial V_k` (all k, flat), :math:`\ell_n = \rho f_n - y_n`:
    eq 8's left side."""
    f, pullback = jax.vjp(lambda u: network(u, args["X"], depth), s[depth:])
    return pullback(rho_of(s, depth=depth) * f - args["y"])[0]


@functools.lru_cache(maxsize=None)
def _network_parts(depth):
    """Flow, GD map, and the functions of one depth, built once per process (so repeated builds
    reuse the compiled programs)."""
    data = toy_data()
    names = rho_v_names(depth)
    flow = rf.ODE(rho_v_field(depth), names=names, args=data)
    loss = square_loss(depth)
    grad = jax.grad(loss)

    def gd_step(k, s, args):
        w = from_rho_v(s, depth)
        return to_rho_v(w - args["lr"] * grad(w, args), depth)

    gd = rf.Map(gd_step, dt=NET_LR, names=names, args={**data, "lr": NET_LR})

    def pushed(s, args):
        w = from_rho_v(s, depth)
        return jax.jvp(lambda u: to_rho_v(u, depth), (w,), (-grad(w, args),))[1]

    def loss_of_state(s, args):
        return loss(from_rho_v(s, depth), args)

    def ratio_to_eq(s, args):
        s = on_sphere(s, depth)
        return rho_of(s, depth=depth) / rho_eq(s, args, depth)

    return data, flow, gd, pushed, loss_of_state, ratio_to_eq


def gd_imbalance_error(depth, points):
    r"""``measure(method)``: one step of the method's map at ``LEMMA1_GD_LR`` changes
    :math:`\rho_k^2 - \rho_1^2` by :math:`\text{lr}^2(|\nabla_kL|^2 - |\nabla_1L|^2)` (relative error)."""
    loss = square_loss(depth)

    def measure(method):
        args = {**method.map.args, "lr": LEMMA1_GD_LR}

        def pair(s):
            after, before = method.map.step(0, s, args)[:depth] ** 2, s[:depth] ** 2
            g2 = jnp.stack([jnp.sum(G**2) for G in unflatten(jax.grad(loss)(from_rho_v(s, depth), args), depth)])
            return (after - after[0]) - (before - before[0]), LEMMA1_GD_LR**2 * (g2 - g2[0])

        got, want = (np.asarray(x) for x in jax.jit(jax.vmap(pair))(jnp.asarray(points)))
        return float(np.max(np.abs(got - want)) / np.max(np.abs(want)))

    return measure


def imbalance_drift(depth):
    r"""``error(method, dt)``: the largest relative drift of :math:`\rho_k^2 - \rho_1^2` along a Heun run of the
    method's flow with step ``dt`` from an unbalanced start (`unbalanced_states`)."""

    start = unbalanced_states(depth)[:1]

    def error(method, dt):
        traj = rf.integrate(method.flow, start, method.t1, ts=[0.0, method.t1], method="heun", dt=dt, batched=True)
        if not traj.ok:
            raise RuntimeError(f"the Heun run did not finish: {traj.status}")
        rho = traj.y[0, :, :depth]
        imb = rho**2 - rho[:, :1] ** 2
        return float(np.max(np.abs(imb[-1] - imb[0])) / np.max(np.abs(imb[0])))

    return error


def drift_order(depth):
    r"""``measure(method)``: the log-log slope of `imbalance_drift` over ``LEMMA1_STEPS``."""
    error = imbalance_drift(depth)

    def measure(method):
        drifts = np.array([error(method, dt) for dt in LEMMA1_STEPS])
        order = float(np.polyfit(np.log(LEMMA1_STEPS), np.log(drifts), 1)[0])
        slope = (LEMMA1_STEPS, drifts[0] * (np.asarray(LEMMA1_STEPS) / LEMMA1_STEPS[0]) ** 2, "slope 2")
        return order, rf.Trace(LEMMA1_STEPS, drifts, "Heun step dt", "drift of rho_k^2 - rho_1^2", "loglog", slope)

    return measure


def transient_ordering(loss_of_state, n_ordered):
    r"""``measure(method)``: :math:`\min_r T(r_{next})/T(r)` over the first ``n_ordered`` starts of the method
    (decreasing layer norms r), T the time the loss of its flow's run falls to half of :math:`\sum y^2`."""

    def measure(method):
        traj = method.run_flow()
        if not traj.ok:
            raise RuntimeError(f"the flow did not finish: {traj.status}")
        lossv = traj.evaluate(loss_of_state)[:n_ordered]
        level = 0.5 * float(jnp.sum(method.flow.args["y"] ** 2))
        T = [half_time(traj.t, -lv, -level) for lv in lossv]
        ratios = np.array([T[i + 1] / T[i] for i in range(len(T) - 1)])
        return float(np.min(ratios)), rf.Trace(np.arange(len(T)), T, "start (layer norm decreasing)",
                                                "T: loss at half of sum y^2", "points")

    return measure


def tanh_field(depth):
    """Eq 2-4 evaluated for a tanh network (not one-homogeneous): a perturbation of the field."""
    net = rf.Network(net_of(depth).widths, activation="tanh")

    def field(t, s, args):
        rho, v = s[:depth], s[depth:]
        prod = jnp.prod(rho)
        f, pullback = jax.vjp(lambda u: net.scalar(net.unflatten(u), args["X"]), v)
        err = prod * f - args["y"]
        dfdv = unflatten(pullback(err)[0], depth)
        ef = jnp.sum(err * f)
        v_dot = [-2.0 * prod / r**2 * (g - Vk * ef) for r, g, Vk in zip(rho, dfdv, unflatten(v, depth))]
        return jnp.concatenate([-2.0 * prod / rho * ef] + [x.ravel() for x in v_dot])

    return field


def flipped_rho_field(depth):
    r"""Eq 2-4 with eq 3's :math:`\dot\rho_k` of the opposite sign (a perturbation: the norms shrink)."""
    field = rho_v_field(depth)

    def wrong(t, s, args):
        return field(t, s, args).at[:depth].multiply(-1.0)

    return wrong


@rf.entry("square_loss_rho.network", source="Poggio & Liao, sec 2.3, eq 2-8, Lemma 1")
def network_flow(depth: int = DEPTH, layer_norm: float = 0.45, t1: float = NET_T1) -> rf.Method:
    r"""Gradient flow of the square loss of a deep ReLU network (``depth`` layers, width 4, no
    biases) in the coordinates :math:`(\rho_k, V_k)` of eq 3-4; its map is GD on the weights
    :math:`W_k = \rho_kV_k` (learning rate ``NET_LR``) read in the same coordinates.  Its runs start from
    equal layer norms ``NET_LAYER_NORMS``, with fixed-step Heun
    (the field jumps where a pre-activation crosses zero)."""
    data, flow, gd, pushed, loss_of_state, ratio_to_eq = _network_parts(depth)
    balanced = np.stack([balanced_state(depth, r, seed=s) for s, r in [(0, layer_norm), (1, 0.9), (2, 1.2)]])
    unbalanced = unbalanced_states(depth)
    samples = np.vstack([balanced, unbalanced])
    starts = np.stack([balanced_state(depth, r) for r in NET_LAYER_NORMS])
    n_bal = len(NET_LAYER_NORMS)
    return rf.Method(
        flow=flow, map=gd, y0=starts, t1=t1, steps=int(round(t1 / NET_LR)), samples=samples,
        options={"method": "heun", "dt": min(LEMMA1_STEPS)},
        perturbations=[rf.Perturbation("eq 2-4 for a tanh network (not one-homogeneous)",
                                       {"flow": flow.replace(vector_field=tanh_field(depth))}),
                       rf.Perturbation("eq 3 with the opposite sign",
                                       {"flow": flow.replace(vector_field=flipped_rho_field(depth))})],
        claims=[
            rf.Formula(pushed, field=True, tol=EXACT_TOL, name="eq 2-4 = GD flow in (rho, V)",
                       source="eq 2-4: rho_k dot = V_k^T W_k dot, V_k dot = S_k W_k dot / rho_k"),
            rf.Conserved(_sq_gaps(depth), drift_tol=1e-6, name="rho_{k+1}^2 - rho_k^2",
                         source="Lemma 1: d(rho_k^2)/dt is independent of k, so equal rho_k stay equal"),
            rf.Holds(measure=drift_order(depth), lo=2.0, name="Lemma 1 drift is integrator error",
                     what=f"fitted order p of the drift of rho_k^2 - rho_1^2 ~ dt^p along Heun runs to t1, dt in "
                          f"{LEMMA1_STEPS} (unbalanced start)",
                     source="Lemma 1: the drift along a run is the integrator's (Heun: at least order 2), it "
                            "vanishes as dt -> 0"),
            rf.Holds(measure=gd_imbalance_error(depth, samples), hi=EXACT_TOL, name="Lemma 1 for GD",
                     what=f"|one GD step's change of rho_k^2 - rho_1^2 - lr^2(|grad_k|^2 - |grad_1|^2)| / max, "
                          f"lr={LEMMA1_GD_LR}",
                     source="sec 2.1 (GD): the first-order change of rho_k^2 is k-independent, as in Lemma 1"),
            rf.Conserved(_unit_norms(depth), drift_tol=SPHERE_DRIFT_TOL, name="|V_k|^2",
                         source="eq 4: V_k dot = S_k W_k dot / rho_k with S_k = I - V_k V_k^T (V_k.dot = 0 because f "
                                "is one-homogeneous in V_k)"),
            rf.Formula(lambda s, a: eq5_rate(s, a, depth), rate_of=lambda s, a: rho_of(s, depth=depth), at=balanced,
                       tol=EXACT_TOL, name="eq 5", source="eq 5: d rho/dt at equal layer norms"),
            rf.Formula(lambda s, a: eq7_field(s, a, depth), rate_of=_v_part(depth), at=balanced, tol=EXACT_TOL,
                       name="eq 7", source="eq 7: dV_k/dt at equal layer norms, with rho^((L-2)/L)"),
            rf.AtHorizon(ratio_to_eq, predict=1.0, tol=1e-6, name="eq 6: rho = rho_eq(V) at t1",
                         source="eq 6: rho_eq = sum y f / sum f^2"),
            rf.AtHorizon(lambda s, a: jnp.linalg.norm(_loss_gradient(on_sphere(s, depth), a, depth)), predict=0.0,
                         absolute=True,
                         tol=1e-6, name="eq 8: sum_n l_n df_n/dV_k = 0 at t1",
                         source="eq 8 with eq 6: where dV_k/dt = 0 and rho = rho_eq, "
                                "sum_n (rho f_n - y_n) df_n/dV_k = 0"),
            rf.Holds(measure=transient_ordering(loss_of_state, n_bal), lo=1.0, name="smaller start, longer transient",
                     what=f"min ratio of half-loss times T(r_next)/T(r) for layer norms r = {NET_LAYER_NORMS}",
                     source="sec 3: 'the smaller rho_{t=0} is, the longer it takes rho to grow'"),
        ],
    )


