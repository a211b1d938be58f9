r"""SGD with random reshuffling and its modified loss (Singh sec 2, eq 1-2; Smith, Dherin, Barrett
& De) on a small logistic regression split into :math:`M` fixed minibatches."""

from __future__ import annotations

import itertools

import jax
import jax.numpy as jnp
import numpy as np

import regflow as rf

from ._common import agreement, order_fit

#: Logistic regression on a fixed partition into M minibatches of B samples.
RR_N, RR_B = 8, 2
RR_M = RR_N // RR_B
RR_LR = 0.1
RR_START = np.array([1.5, -1.0])
#: All orderings of the M minibatches in an epoch.
RR_ORDERS = np.array(list(itertools.permutations(range(RR_M))))
#: Horizon of the global fits (each map step is one epoch of M SGD steps).
RR_T1 = 2.0
_NAMES = ("w1", "w2")


def logistic_data(n=RR_N, seed=3):
    r"""A small, non-separable binary data set: :math:`x \sim N(0, I_2)`, labels :math:`\pm1` of a
    noisy linear rule."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 2))
    y = np.sign(x @ np.array([1.0, -0.5]) + 0.8 * rng.normal(size=n))
    return {"x": jnp.asarray(x), "y": jnp.asarray(y)}


RR_DATA = logistic_data()
#: The data as (M, B, ...) minibatches.
RR_BATCHES = jax.tree_util.tree_map(lambda v: v.reshape((RR_M, RR_B) + v.shape[1:]), RR_DATA)


def logistic_sample_loss(w, sample, args=None):
    r"""Cross-entropy of sec 1 with labels :math:`\pm1`: :math:`\log(1 + e^{-y\,x\cdot w})`."""
    return jnp.logaddexp(0.0, -sample["y"] * (sample["x"] @ w))


def rr_batch_losses(w):
    r"""The minibatch losses :math:`\hat C_k(w)`, k = 0..M-1 (means over each batch)."""
    return jax.vmap(lambda b: rf.full_loss(logistic_sample_loss, b)(w, None))(RR_BATCHES)


def rr_loss(w, args=None):
    r""":math:`C = \frac1N\sum_i C_i = \frac1M\sum_k \hat C_k`."""
    return jnp.mean(rr_batch_losses(w))


def gradient_penalty_loss(batch_losses, m):
    r""":math:`C(w) + \frac{\eta}{4m}\sum_k\|\nabla \hat C_k(w)\|^2` with :math:`C = \frac1m\sum_k\hat C_k`
    (Singh eq 1; ``m = 1`` is Barrett & Dherin's :math:`C + \frac\eta4\|\nabla C\|^2`).
    ``batch_losses(w) -> (m,)`` are the minibatch losses :math:`\hat C_k`; ``args["lr"]`` is :math:`\eta`."""

    def loss(w, args):
        grads = jax.jacrev(batch_losses)(w)  # (m, dim)
        return jnp.mean(batch_losses(w)) + args["lr"] / (4.0 * m) * jnp.sum(grads**2)

    return loss


rr_smith_loss = gradient_penalty_loss(rr_batch_losses, RR_M)
rr_smith_loss.__doc__ = r"""Singh eq 1 / Smith et al.: :math:`C + \frac{\eta}{4M}\sum_k\|\nabla\hat C_k\|^2`."""
rr_smith_loss.__name__ = "eq 1"


def rr_eq2_loss(w, args):
    r"""Singh eq 2: :math:`C + \frac\eta4\|\nabla C\|^2 + \frac{\eta}{4M}\sum_k\|\nabla\hat C_k - \nabla C\|^2`."""
    grads = jax.jacrev(rr_batch_losses)(w)
    full = jax.grad(rr_loss)(w)
    lr = args["lr"]
    return rr_loss(w) + lr / 4 * jnp.sum(full**2) + lr / (4 * RR_M) * jnp.sum((grads - full) ** 2)


rr_eq2_loss.__name__ = "eq 2"


def rr_eq2_printed_convention(w, args):
    r"""Eq 1 and eq 2 with Singh's :math:`C = \sum_i C_i` (a sum; the minibatch losses stay means,
    as in the printed SGD step): returns (eq 1, eq 2)."""
    grads = jax.jacrev(rr_batch_losses)(w)
    total = RR_N * rr_loss(w)
    full = jax.grad(lambda v: RR_N * rr_loss(v))(w)
    lr = args["lr"]
    eq1 = total + lr / (4 * RR_M) * jnp.sum(grads**2)
    eq2 = total + lr / 4 * jnp.sum(full**2) + lr / (4 * RR_M) * jnp.sum((grads - full) ** 2)
    return eq1, eq2


def eq1_sum_convention(w, args):
    """Eq 1 with the printed :math:`C = \\sum_i C_i`."""
    return rr_eq2_printed_convention(w, args)[0]


def eq2_sum_convention(w, args):
    """Eq 2 with the printed :math:`C = \\sum_i C_i`."""
    return rr_eq2_printed_convention(w, args)[1]


def _rr_batch_grad(w, k):
    return jax.grad(lambda v: rf.full_loss(logistic_sample_loss, jax.tree_util.tree_map(lambda b: b[k], RR_BATCHES))(
        v, None))(w)


def _epoch(w, lr, orders):
    def sgd_step(ws, batches):
        return ws - lr * jax.vmap(_rr_batch_grad)(ws, batches), None

    ws, _ = jax.lax.scan(sgd_step, jnp.broadcast_to(w, (orders.shape[0], w.shape[0])), orders.T)
    return ws.mean(axis=0)


def rr_epoch_mean(k, w, args):
    r"""One epoch of SGD for every ordering of the M minibatches, averaged: the mean reshuffled-SGD
    iterate after an epoch started at ``w`` (exact: all :math:`M!` orderings are equally likely)."""
    return _epoch(w, args["lr"], jnp.asarray(RR_ORDERS))


def rr_epoch_fixed(k, w, args):
    """One epoch of SGD in the fixed order 0, 1, ..., M-1 (no reshuffling)."""
    return _epoch(w, args["lr"], jnp.asarray(RR_ORDERS[:1]))


def _grad_field(loss):
    grad = jax.grad(loss)

    def field(t, w, args):
        return -grad(w, args)

    return field


RR_FIELDS = {"gradient": rf.gradient_flow(rr_loss).vector_field,
             "gd_modified": _grad_field(gradient_penalty_loss(lambda w: rr_loss(w)[None], 1)),
             "smith": _grad_field(rr_smith_loss)}


def rr_flow(kind, lr):
    """Flows compared with reshuffled SGD: ``"gradient"`` (of C), ``"gd_modified"`` (Barrett & Dherin,
    the first two terms of eq 2) or ``"smith"`` (eq 1)."""
    return rf.ODE(RR_FIELDS[kind], args={"lr": lr}, names=_NAMES)


def epoch_map(lr, step=rr_epoch_mean):
    """The epoch map (``dt = M lr``) of the mean reshuffled-SGD iterate (or another epoch ``step``)."""
    return rf.Map(step, dt=RR_M * lr, args={"lr": lr}, names=_NAMES)


def _rr_fit(kind, epochs=None):
    return agreement(epoch_map, lambda h: rr_flow(kind, h), RR_START, RR_T1, epochs=epochs)


def rr_samples(n=16, seed=0):
    return np.random.default_rng(seed).normal(scale=1.5, size=(n, 2))


SUM_CONVENTION = ("Singh sec 1 defines C = sum_i C_i while the SGD step uses minibatch means; with that C eq 2 is "
                  "not an expansion of eq 1 (the mean of the minibatch gradients is grad C / N). Eq 1-2 hold with "
                  "Smith et al.'s C = (1/N) sum_i C_i, used here")


@rf.entry("modified_equations.sgd_reshuffled", source="Singh sec 2, eq 1-2; Smith et al. (modified loss of SGD)")
def sgd_reshuffled(lr: float = RR_LR) -> rf.Method:
    r"""SGD with random reshuffling of :math:`M` fixed minibatches on a logistic regression, as the
    epoch map of its mean iterate (all :math:`M!` orderings averaged, ``dt = M lr``), and the flow
    of Singh eq 1 (Smith et al.)

    .. math:: \dot w = -\nabla\Big(C + \frac{\eta}{4M}\sum_{k}\|\nabla\hat C_k\|^2\Big).

    The mean iterate agrees with it at second order (locally: one epoch, error
    :math:`O(M^3\eta^3)`), with the gradient flow of :math:`C` and with GD's modified flow
    :math:`C + \frac\eta4\|\nabla C\|^2` only at first order: the third term of eq 2, the spread of
    the minibatch gradients, is part of the second-order flow.  One fixed ordering of the batches
    (no reshuffling) does not follow eq 1 at second order."""
    fixed = lambda h: epoch_map(h, rr_epoch_fixed)  # noqa: E731
    return rf.Method(
        flow=rr_flow("smith", lr), map=epoch_map(lr), map_at=epoch_map, y0=RR_START, t1=RR_T1,
        steps=round(RR_T1 / (RR_M * lr)), samples=rr_samples(),
        perturbations=[rf.Perturbation("one fixed batch order (no reshuffling)",
                                       {"map": fixed(lr), "map_at": fixed})],
        claims=[
            rf.Formula(rr_eq2_loss, equals=rr_smith_loss, tol=1e-12, name="eq 2 = eq 1",
                       source="Singh eq 2: expansion of eq 1 (C the mean loss)",
                       identity="algebra: eq 2 is eq 1 expanded (both are printed formulas, not the system)"),
            rf.Refuted(printed=eq2_sum_convention, correct=eq1_sum_convention, name="eq 2 = eq 1, printed C = sum",
                       source="Singh sec 1 (C = sum_i C_i) with eq 1-2", erratum=SUM_CONVENTION, grade="convention"),
            order_fit(lambda h: rr_flow("gradient", h), 1.0, t1=RR_T1, name="mean SGD vs gradient flow of C",
                      source="Smith et al. sec 1: for infinitesimal lr SGD follows the gradient flow"),
            order_fit(lambda h: rr_flow("smith", h), 2.0, t1=RR_T1, name="mean SGD vs modified flow, eq 1",
                      source="Singh eq 1; Smith et al.: the mean iterate follows the modified loss"),
            order_fit(lambda h: rr_flow("gd_modified", h), 1.0, t1=RR_T1, name="mean SGD vs GD's modified flow",
                      source="Singh eq 2: the third term (minibatch gradient spread) is needed"),
            order_fit(lambda h: rr_flow("smith", h), 3.0, t1=RR_T1, epochs=1, name="one epoch vs eq 1 (local)",
                      source="Smith et al.: E[w after one epoch] = w(M lr) + O(M^3 lr^3)"),
        ],
    )
