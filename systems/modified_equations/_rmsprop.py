r"""RMSProp and the modified loss Singh proposes for it (Singh sec 2), against RMSProp's
second-order modified equation from backward error analysis (`rf.backward_error_flow` of the
continuous RMSProp flow), on the two-parameter model of `._gd`."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

import regflow as rf

from ._common import agreement, order_fit
from ._gd import ab_loss

#: RMSProp on the two-parameter model, state (a, b, s_a, s_b); gamma = 1 - rho * lr.
RMS_LR = 0.01
RMS_RHO = 1.0
RMS_EPS = 1e-8
RMS_START = np.array([2.0, 0.05, 0.3, 0.6])
RMS_NAMES = ("a", "b", "s_a", "s_b")
#: Horizon of the RMSProp fits.
RMS_T1 = 1.0
#: Tolerance of an order-0 fit (an error that does not vanish: at most a factor 2 over the 8x range of lr).
FLAT_TOL = 1 / 3


def preconditioner(s, eps):
    r""":math:`P = 1/(\sqrt s + \epsilon)` (elementwise)."""
    return 1.0 / (jnp.sqrt(s) + eps)


def rmsprop_update(y, h, args, after=True):
    r"""One RMSProp step with learning rate ``h`` (PyTorch order: the average first, then the step):

    .. math:: s' = \gamma s + (1-\gamma) g^2,\quad w' = w - h\,\frac{g}{\sqrt{s'} + \epsilon},
              \qquad g = \nabla C(w),\ \gamma = 1 - \rho h .

    ``after=False`` divides by the previous average :math:`\sqrt s + \epsilon` instead."""
    w, s = y[:2], y[2:]
    g = jax.grad(ab_loss)(w)
    s_new = s + h * args["rho"] * (g**2 - s)
    return jnp.concatenate([w - h * g * preconditioner(s_new if after else s, args["eps"]), s_new])


def rmsprop_step(k, y, args):
    """`rmsprop_update` as a map step (``args["lr"]``)."""
    return rmsprop_update(y, args["lr"], args)


def rmsprop_step_before(k, y, args):
    """RMSProp dividing by the average before its update (a perturbation of the update order)."""
    return rmsprop_update(y, args["lr"], args, after=False)


def plain_step(k, y, args):
    """GD in :math:`w` with RMSProp's average tracked but unused (the preconditioner dropped: a perturbation)."""
    w, s = y[:2], y[2:]
    g = jax.grad(ab_loss)(w)
    h = args["lr"]
    return jnp.concatenate([w - h * g, s + h * args["rho"] * (g**2 - s)])


def rmsprop_field(t, y, args):
    r"""RMSProp's first-order flow (the printed recursion :math:`s_t = \gamma s_{t-1} + (1-\gamma)g_t^2`
    with :math:`\gamma = 1 - \rho\eta`, in learning-rate time):
    :math:`\dot w = -P(s)\nabla C,\ \dot s = \rho(\nabla C^2 - s)`."""
    w, s = y[:2], y[2:]
    g = jax.grad(ab_loss)(w)
    return jnp.concatenate([-preconditioner(s, args["eps"]) * g, args["rho"] * (g**2 - s)])


def rmsprop_second(t, y, args):
    r"""The :math:`\eta^2` coefficient of the RMSProp step around the Euler step of `rmsprop_field`,
    by hand: :math:`P(s') = P(s) + \eta\rho(g^2 - s)P'(s) + O(\eta^2)` gives
    :math:`d_w = -\rho\,P'(s)(g^2 - s)\,g`, :math:`d_s = 0`, with
    :math:`P'(s) = -\frac{1}{2\sqrt s(\sqrt s+\epsilon)^2}`."""
    w, s = y[:2], y[2:]
    g = jax.grad(ab_loss)(w)
    dP = -0.5 / (jnp.sqrt(s) * (jnp.sqrt(s) + args["eps"]) ** 2)
    return jnp.concatenate([-args["rho"] * dP * (g**2 - s) * g, jnp.zeros_like(s)])


def first_order_flow(rho=RMS_RHO, lr=RMS_LR):
    return rf.ODE(rmsprop_field, args={"lr": lr, "rho": rho, "eps": RMS_EPS}, names=RMS_NAMES)


def rmsprop_bea_flow(lr, rho=RMS_RHO):
    r"""RMSProp's second-order modified flow: `rf.backward_error_flow` of its first-order flow with
    the step's second Taylor coefficient `rmsprop_second` (derived from the update rule, not from
    the map it is compared with)."""
    return rf.backward_error_flow(first_order_flow(rho, lr), lr=lr, second=rmsprop_second)


def rmsprop_modified_field(t, y, args):
    r"""The same in closed form (derived by hand):

    .. math:: \dot w = -P\nabla\Big(C + \frac\eta4\nabla C^\top P\,\nabla C\Big)
                       - \frac{\eta\rho}{2}\,P'(s)\,(g^2 - s)\,g,\qquad
              \dot s = \rho(g^2 - s) + \eta\Big(\rho\,g\odot HPg + \frac{\rho^2}2(g^2 - s)\Big),

    :math:`H = \nabla^2 C`.  With :math:`\rho = 0` (frozen :math:`s`) it is the preconditioned flow of
    the modified loss :math:`C + \frac\eta4\sum_i g_i^2/(\sqrt{s_i}+\epsilon)`."""
    w, s = y[:2], y[2:]
    lr, rho, eps = args["lr"], args["rho"], args["eps"]
    g = jax.grad(ab_loss)(w)
    P = preconditioner(s, eps)
    dP = -0.5 / (jnp.sqrt(s) * (jnp.sqrt(s) + eps) ** 2)
    HPg = jax.jvp(jax.grad(ab_loss), (w,), (P * g,))[1]
    dw = -P * g - 0.5 * lr * P * HPg - 0.5 * lr * rho * dP * (g**2 - s) * g
    ds = rho * (g**2 - s) + lr * (rho * g * HPg + 0.5 * rho**2 * (g**2 - s))
    return jnp.concatenate([dw, ds])


def _penalized_field(penalty, preconditioned=True):
    r"""Flow of :math:`C + \frac\eta4\,\text{penalty}(g, s)` in :math:`w` (preconditioned by
    :math:`P(s)` or plain), with :math:`\dot s = \rho(g^2 - s)` unchanged."""

    def field(t, y, args):
        w, s = y[:2], y[2:]
        P = preconditioner(s, args["eps"])
        loss = lambda v: ab_loss(v) + args["lr"] / 4 * penalty(jax.grad(ab_loss)(v), s, P)  # noqa: E731
        g = jax.grad(ab_loss)(w)
        dw = -(P if preconditioned else 1.0) * jax.grad(loss)(w)
        return jnp.concatenate([dw, args["rho"] * (g**2 - s)])

    return field


#: Singh sec 2 as printed (one batch): :math:`C + \frac\eta4\|s\odot\nabla C\|^2`, in RMSProp's flow.
singh_rms_field = _penalized_field(lambda g, s, P: jnp.sum((s * g) ** 2))
#: The same loss under the plain gradient flow.
singh_rms_plain_field = _penalized_field(lambda g, s, P: jnp.sum((s * g) ** 2), preconditioned=False)
#: Singh's form with the preconditioner in place of s: :math:`C + \frac\eta4\|P\odot\nabla C\|^2`.
singh_rms_p_field = _penalized_field(lambda g, s, P: jnp.sum((P * g) ** 2))
#: The preconditioned modified loss :math:`C + \frac\eta4\nabla C^\top P\nabla C` (correct for frozen s).
preconditioned_igr_field = _penalized_field(lambda g, s, P: jnp.sum(P * g**2))

RMS_FIELDS = {"flow": rmsprop_field, "singh": singh_rms_field, "singh_plain": singh_rms_plain_field,
              "singh_P": singh_rms_p_field, "preconditioned_igr": preconditioned_igr_field}


def rms_flow(kind, lr, rho=RMS_RHO):
    """A flow compared with RMSProp: one of ``RMS_FIELDS``, or ``"bea"`` (`rmsprop_bea_flow`)."""
    if kind == "bea":
        return rmsprop_bea_flow(lr, rho)
    return rf.ODE(RMS_FIELDS[kind], args={"lr": lr, "rho": rho, "eps": RMS_EPS}, names=RMS_NAMES)


def rms_map(lr, rho=RMS_RHO, step=rmsprop_step):
    return rf.Map(step, dt=lr, args={"lr": lr, "rho": rho, "eps": RMS_EPS}, names=RMS_NAMES)


def _rms_fit(kind, rho=RMS_RHO):
    """RMSProp's errors against ``rms_flow(kind)`` (for figures)."""
    return agreement(lambda h: rms_map(h, rho), lambda h: rms_flow(kind, h, rho), RMS_START, RMS_T1)


def _frozen(method, h):
    """The method's map at step ``h`` with the average frozen (``rho = 0``)."""
    m = method.map_at(h)
    return m.replace(args={**m.args, "rho": 0.0})


SINGH_RMS = ("Singh sec 2 proposes (without derivation) C + lr/(4m) sum_k |s_t * grad C_k|^2 as RMSProp's modified "
             "loss; RMSProp follows it at first order only, like its plain flow. Backward error analysis gives, for "
             "frozen s, C + lr/4 sum_i g_i^2 / (sqrt(s_i) + eps) under w' = -P grad, P = 1/(sqrt s + eps), and with a "
             "moving s an extra coupling term")


def rms_samples(n=8, seed=2):
    rng = np.random.default_rng(seed)
    return np.column_stack([rng.uniform(0.3, 2.0, (n, 2)), rng.uniform(0.1, 2.0, (n, 2))])


@rf.entry("modified_equations.rmsprop", source="Singh sec 2 (modified loss proposed for RMSProp)")
def rmsprop(lr: float = RMS_LR, rho: float = RMS_RHO) -> rf.Method:
    r"""RMSProp with :math:`\gamma = 1 - \rho\eta` (the average moves on the flow's time scale) on the
    two-parameter model, state :math:`(a, b, s_a, s_b)`, and its modified equations.

    Singh proposes (one batch, :math:`m = 1`) the modified loss
    :math:`\tilde C_{rms} = C + \frac\eta4\|s_t\odot\nabla C\|^2`.  Backward error analysis of the
    update rule (`rf.backward_error_flow` of the first-order flow, with the step's second Taylor
    coefficient `rmsprop_second`; closed form `rmsprop_modified_field`) gives instead, for frozen
    :math:`s` (:math:`\rho = 0`), the preconditioned flow
    :math:`\dot w = -P\nabla(C + \frac\eta4\nabla C^\top P\nabla C)`, :math:`P = (\sqrt s+\epsilon)^{-1}`,
    and for moving :math:`s` an extra coupling term.  Measured: RMSProp agrees with that field at
    order 2, with Singh's :math:`\tilde C_{rms}` at order 1 only."""
    order = lambda kind, p, r=rho, **kw: order_fit(lambda h: rms_flow(kind, h, r), p, t1=RMS_T1, **kw)  # noqa: E731
    before = lambda h: rms_map(h, rho, rmsprop_step_before)  # noqa: E731
    plain = lambda h: rms_map(h, rho, plain_step)  # noqa: E731
    return rf.Method(
        flow=rmsprop_bea_flow(lr, rho), map=rms_map(lr, rho), map_at=lambda h: rms_map(h, rho),
        y0=RMS_START, t1=RMS_T1, steps=round(RMS_T1 / lr), samples=rms_samples(),
        perturbations=[
            rf.Perturbation("RMSProp dividing by the previous average", {"map": before(lr), "map_at": before}),
            rf.Perturbation("the preconditioner dropped (GD in w)", {"map": plain(lr), "map_at": plain}),
        ],
        claims=[
            order("flow", 1.0, name="RMSProp vs its first-order flow",
                  source="RMSProp is, to first order, the Euler step of w' = -P grad C, s' = rho (g^2 - s)"),
            order("bea", 2.0, name="RMSProp vs its second-order modified flow",
                  source="backward error analysis of the RMSProp update (rf.backward_error_flow of the first-order "
                         "flow, second Taylor coefficient by hand)"),
            rf.Formula(lambda y, p: rmsprop_modified_field(0.0, y, p), field=True,
                       name="closed form of the modified field",
                       source="rmsprop_modified_field (by hand) is the backward-error field of the RMSProp flow"),
            order("singh", 1.0, name="Singh's modified loss (RMSProp flow)",
                  source="Singh sec 2: proposed modified loss for RMSProp", erratum=SINGH_RMS, grade="erratum"),
            order("singh_plain", 0.0, tol=FLAT_TOL, name="Singh's modified loss (gradient flow)",
                  source="Singh sec 2 read as the plain gradient flow of C_rms: the error does not vanish as lr -> 0"),
            order("singh_P", 1.0, name="Singh's form with P in place of s",
                  source="Singh sec 2 with s_t read as the preconditioner P: still first order"),
            order("preconditioned_igr", 2.0, r=0.0, map_of=_frozen, name="frozen s: C + lr/4 g^T P g",
                  source="corrected modified loss for RMSProp with a frozen average (rho = 0)"),
            order("singh", 1.0, r=0.0, map_of=_frozen, name="frozen s: Singh's modified loss",
                  source="Singh sec 2, frozen average (rho = 0): still first order", erratum=SINGH_RMS,
                  grade="erratum"),
            order("preconditioned_igr", 1.0, name="moving s: C + lr/4 g^T P g",
                  source="with a moving average no modified loss of this form is second order"),
        ],
    )
