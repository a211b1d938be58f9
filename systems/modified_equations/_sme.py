r"""Minibatch SGD and its stochastic modified equation (Li, Tai & E; Singh sec 1.1) on a linear
regression, where the first two moments of both close: SGD's by an exact recursion over all
minibatches, the SDE's by a linear ODE read off its drift and diffusion."""

from __future__ import annotations

import itertools

import jax
import jax.numpy as jnp
import numpy as np
import scipy.linalg

import regflow as rf

from ._common import ORDER_TOL, STEPS, flow_at

#: Linear regression with N samples, minibatches of B drawn without replacement (i.i.d. over steps).
SME_N, SME_B = 16, 4
SME_LR = 0.1
SME_START = np.array([2.0, 2.0])
SME_T1 = 1.0
#: Paths of the claims' SGD and SDE runs: Monte-Carlo standard errors ~3e-3 on the mean.
SME_PATHS = 2000
#: Tolerance of the Monte-Carlo rows: ~5 standard errors (plus Euler-Maruyama's O(dt) bias for the SDE).
MC_TOL = 0.02
#: Learning rates and paths of the Monte-Carlo weak-order fit (a figure; the claims use exact moments).
SME_MC_LRS = (0.2, 0.1, 0.05)
SME_MC_PATHS = 4000
#: Points where the SDE's drift and diffusion are read to build its moment equations.
FIT_POINTS = SME_START + np.random.default_rng(1).normal(size=(12, 2))
_NAMES = ("w1", "w2")


def regression_data(n=SME_N, seed=5):
    r"""A linear regression data set :math:`y = x\cdot(1, -1) + 0.5\,\xi`,
    :math:`x \sim N(0, \mathrm{diag}(1, 0.36))`."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 2)) * np.array([1.0, 0.6])
    y = x @ np.array([1.0, -1.0]) + 0.5 * rng.normal(size=n)
    return {"x": jnp.asarray(x), "y": jnp.asarray(y)}


SME_DATA = regression_data()


def regression_sample_loss(w, sample, args=None):
    r"""Squared loss of sec 1 (halved): :math:`\tfrac12(x\cdot w - y)^2`."""
    return 0.5 * (sample["x"] @ w - sample["y"]) ** 2


regression_loss = rf.full_loss(regression_sample_loss, SME_DATA)


def _regression_moments():
    """H, b, c0 of the loss and the per-sample / per-batch pieces (numpy, float64)."""
    x, y = np.asarray(SME_DATA["x"]), np.asarray(SME_DATA["y"])
    A = np.einsum("ni,nj->nij", x, x)  # per-sample Hessians
    c = y[:, None] * x
    H, b = A.mean(0), c.mean(0)
    batches = np.array(list(itertools.combinations(range(SME_N), SME_B)))
    return {"H": H, "b": b, "c0": 0.5 * np.mean(y**2), "D": A - H, "e": c - b,
            "HB": A[batches].mean(1), "bB": c[batches].mean(1),
            "factor": (1 / SME_B - 1 / SME_N) * SME_N / (SME_N - 1)}


SME_MOMENTS = _regression_moments()


def moments_of(w):
    r"""The moment state :math:`(E w, \operatorname{vec} E ww^\top)` of the point mass at ``w``."""
    w = np.asarray(w, dtype=float)
    return np.concatenate([w, np.outer(w, w).ravel()])


def moment_observables(w, args=None):
    r""":math:`(w, \operatorname{vec} ww^\top)`: their expectations are the moment state."""
    return jnp.concatenate([w, jnp.outer(w, w).ravel()])


def _split_moments(z):
    return z[:2], z[2:].reshape(2, 2)


def mean_loss(z, args=None):
    r""":math:`E\,C(w) = \tfrac12\operatorname{tr}(H\,Eww^\top) - b\cdot Ew + c_0` from the moment state."""
    m1, M2 = _split_moments(z)
    mo = SME_MOMENTS
    return 0.5 * jnp.trace(mo["H"] @ M2) - mo["b"] @ m1 + mo["c0"]


def total_variance(z, args=None):
    r""":math:`\operatorname{tr}\operatorname{Cov} w = \operatorname{tr} Eww^\top - |Ew|^2`."""
    m1, M2 = _split_moments(z)
    return jnp.trace(M2) - m1 @ m1


def sgd_moment_step(k, z, args):
    r"""Exact moments of one SGD step :math:`w' = (I - \eta H_B)w + \eta b_B`, averaged over all
    :math:`\binom NB` minibatches (drawn independently of :math:`w`):

    .. math:: Ew' = Ew - \eta(HEw - b),\quad
              Ew'w'^\top = E_B\big[A_B M A_B^\top + \eta(A_B m b_B^\top + b_B m^\top A_B^\top)
              + \eta^2 b_Bb_B^\top\big],\ A_B = I - \eta H_B."""
    lr = args["lr"]
    mo = SME_MOMENTS
    m1, M2 = _split_moments(z)
    A = jnp.eye(2) - lr * mo["HB"]
    bB = mo["bB"]
    Am = A @ m1
    M2n = (jnp.einsum("bij,jk,blk->il", A, M2, A) + lr * (jnp.einsum("bi,bj->ij", Am, bB)
           + jnp.einsum("bi,bj->ij", bB, Am)) + lr**2 * jnp.einsum("bi,bj->ij", bB, bB)) / A.shape[0]
    m1n = m1 - lr * (mo["H"] @ m1 - mo["b"])
    return jnp.concatenate([m1n, M2n.ravel()])


def sgd_moments(lr, t1=SME_T1, start=SME_START):
    """The exact SGD moment state after flow time ``t1`` (``t1 / lr`` steps of `sgd_moment_step`, with
    the averages over the minibatches taken once: numpy)."""
    mo = SME_MOMENTS
    A = np.eye(2) - lr * mo["HB"]
    bB = mo["bB"]
    quadratic = np.einsum("bij,blk->iljk", A, A).reshape(4, 4) / len(A)   # vec E[A M A^T] = quadratic vec M
    linear = np.einsum("bij,bl->ilj", A, bB).reshape(4, 2) / len(A)      # vec E[(A m) b^T] = linear m
    constant = np.einsum("bi,bj->ij", bB, bB).ravel() / len(A)
    m, M = np.array(start, dtype=float), np.outer(start, start).ravel()
    for _ in range(round(t1 / lr)):
        cross = (linear @ m).reshape(2, 2)
        M = quadratic @ M + lr * (cross + cross.T).ravel() + lr**2 * constant
        m = m - lr * (mo["H"] @ m - mo["b"])
    return np.concatenate([m, M])


def sme_moment_field(order):
    r"""Moment equations of the SME :math:`dw = -K(Hw - b)\,dt + \sqrt\eta\,\Sigma_B(w)^{1/2}dB`
    (``order=1``: :math:`K = I`, `rf.sme`; ``order=2``: :math:`K = I + \frac\eta2 H`, the drift
    :math:`-\nabla(C + \frac\eta4\|\nabla C\|^2)` of Li-Tai-E's second-order SME), derived by hand:

    .. math:: \dot m = -K(Hm - b),\quad \dot M = -KHM - MHK + Kbm^\top + mb^\top K + \eta\,E\,\Sigma_B(w),

    :math:`E\,\Sigma_B = \kappa\,\frac1N\sum_n (D_nMD_n - D_nme_n^\top - e_nm^\top D_n + e_ne_n^\top)`,
    :math:`D_n = x_nx_n^\top - H`, :math:`e_n = y_nx_n - b`, :math:`\kappa = (\frac1B - \frac1N)\frac N{N-1}`."""

    def field(t, z, args):
        lr = args["lr"]
        mo = SME_MOMENTS
        m1, M2 = _split_moments(z)
        H, b, D, e = mo["H"], mo["b"], mo["D"], mo["e"]
        K = jnp.eye(2) + (0.5 * lr * H if order == 2 else 0.0)
        Dm = D @ m1
        sigma = mo["factor"] * jnp.mean(jnp.einsum("nij,jk,nkl->nil", D, M2, D) - jnp.einsum("ni,nj->nij", Dm, e)
                                        - jnp.einsum("ni,nj->nij", e, Dm) + jnp.einsum("ni,nj->nij", e, e), axis=0)
        dm = -K @ (H @ m1 - b)
        KH = K @ H
        dM = -KH @ M2 - M2 @ KH.T + jnp.outer(K @ b, m1) + jnp.outer(m1, K @ b) + lr * sigma
        return jnp.concatenate([dm, dM.ravel()])

    return field


sme_moments_1 = sme_moment_field(1)
sme_moments_2 = sme_moment_field(2)
_MOMENT_NAMES = ("Ew1", "Ew2", "Ew1w1", "Ew1w2", "Ew2w1", "Ew2w2")


def hand_moments_at(lr, t1=SME_T1, start=SME_START, order=1):
    """The moment state at ``t1`` of the hand moment equations (`sme_moment_field`, linear in the
    state: read off at the origin and the unit vectors, solved exactly)."""
    field = sme_moments_1 if order == 1 else sme_moments_2
    c = np.asarray(field(0.0, jnp.zeros(6), {"lr": lr}))
    A = np.column_stack([np.asarray(field(0.0, jnp.eye(6)[i], {"lr": lr})) - c for i in range(6)])
    aug = np.zeros((7, 7))
    aug[:6, :6], aug[:6, 6] = A, c
    return (scipy.linalg.expm(t1 * aug) @ np.append(moments_of(start), 1.0))[:6]


def sme_moment_flow(lr, order=1):
    """Moment ODE (`sme_moment_field`) of the first- (`rf.sme`) or second-order SME for learning rate ``lr``."""
    return rf.ODE(sme_moments_1 if order == 1 else sme_moments_2, args={"lr": lr}, names=_MOMENT_NAMES)


# ----------------------------------------------------------------------------- moments of a declared SDE


def _monomials(w):
    """:math:`(1, w_1, w_2, w_1^2, w_1w_2, w_2^2)` at points ``(n, 2)``."""
    w1, w2 = w[:, 0], w[:, 1]
    return np.column_stack([np.ones_like(w1), w1, w2, w1**2, w1 * w2, w2**2])


def _fit(values, basis, what):
    coef, *_ = np.linalg.lstsq(basis, values, rcond=None)
    residual = np.max(np.abs(basis @ coef - values)) / max(1.0, np.max(np.abs(values)))
    if residual > 1e-8:
        raise ValueError(f"the SDE's {what} is not a polynomial of the degree its moment equations need "
                         f"(fit residual {residual:.2g}): the first two moments do not close")
    return coef


def moment_system(sde, noise_factor=1.0):
    r"""The moment equations :math:`\dot z = Az + c` of an Ito SDE on :math:`\mathbb R^2` whose drift
    :math:`b` is affine and whose :math:`S = GG^\top` is quadratic in :math:`w`, read off the SDE at
    ``FIT_POINTS`` (exact for such an SDE): :math:`\dot m = E\,b(w)`,
    :math:`\dot M = E[w b^\top + b w^\top] + E\,S(w)` (Ito's formula for :math:`w_iw_j`), with
    :math:`S` scaled by ``noise_factor``.  Returns ``(A, c)`` for the state of `moments_of`."""
    if not isinstance(sde, rf.SDE) or sde.calculus != "ito" or sde.noise != "general":
        raise TypeError("moment_system needs an Ito rf.SDE with noise='general' (as rf.sme builds)")
    pts = jnp.asarray(FIT_POINTS)
    b = np.asarray(jax.vmap(lambda w: sde.drift(0.0, w, sde.args))(pts))
    G = np.asarray(jax.vmap(lambda w: sde.diffusion(0.0, w, sde.args))(pts))
    S = noise_factor * np.einsum("nim,njm->nij", G, G).reshape(len(pts), 4)
    basis = _monomials(FIT_POINTS)
    beta = _fit(b, basis[:, :3], "drift")          # (3, 2): b_j = beta[0, j] + beta[1:, j] . w
    sigma = _fit(S, basis, "diffusion")            # (6, 4): S_ij over the monomials
    A, c = np.zeros((6, 6)), np.zeros(6)
    c[:2], A[:2, :2] = beta[0], beta[1:].T
    for i, j in itertools.product(range(2), range(2)):
        row = 2 + 2 * i + j
        c[row] = sigma[0, row - 2]
        A[row, 0] += sigma[1, row - 2]
        A[row, 1] += sigma[2, row - 2]
        quad = {(0, 0): sigma[3, row - 2], (0, 1): sigma[4, row - 2] / 2, (1, 0): sigma[4, row - 2] / 2,
                (1, 1): sigma[5, row - 2]}
        for (k, l), value in quad.items():
            A[row, 2 + 2 * k + l] += value
        # E[w_i b_j + w_j b_i] = beta0_j m_i + beta0_i m_j + sum_k (beta_kj M_ik + beta_ki M_jk)
        A[row, i] += beta[0, j]
        A[row, j] += beta[0, i]
        for k in range(2):
            A[row, 2 + 2 * i + k] += beta[1 + k, j]
            A[row, 2 + 2 * j + k] += beta[1 + k, i]
    return A, c


def moments_at(sde, t1=SME_T1, start=SME_START, noise_factor=1.0):
    """The SDE's moment state at ``t1`` from the point mass at ``start``, solving `moment_system` exactly."""
    A, c = moment_system(sde, noise_factor)
    aug = np.zeros((7, 7))
    aug[:6, :6], aug[:6, 6] = A, c
    return (scipy.linalg.expm(t1 * aug) @ np.append(moments_of(start), 1.0))[:6]


def _sde_at(method, h, order=1):
    r"""The method's SDE at learning rate ``h``: in learning-rate time `rf.sme`'s drift does not depend
    on the learning rate and its :math:`GG^\top` scales with it (noise factor ``h / lr``); ``order=2``
    adds the backward-error drift correction (`rf.backward_error_flow`: Li-Tai-E's second-order SME)."""
    sde = method.flow if order == 1 else rf.backward_error_flow(method.flow, lr=h)
    return sde, h / method.map.dt


def sme_exact_error(quantity, order=1):
    r"""``error(method, h)``: :math:`|q(z_{SGD}) - q(z_{SME})|` at ``SME_T1`` for lr ``h``, the exact
    SGD moments against the moments of the method's SDE at lr ``h``."""

    def error(method, h):
        sde, factor = _sde_at(method, h, order)
        return abs(float(quantity(sgd_moments(h))) - float(quantity(moments_at(sde, noise_factor=factor))))

    error.__name__ = {(mean_loss, 1): "SME weak error of E C", (total_variance, 1): "SME variance error",
                      (mean_loss, 2): "second-order SME weak error of E C"}.get((quantity, order), "weak error")
    return error


def sgd_paths_at(lr, paths=SME_MC_PATHS, t1=SME_T1, seed=0, map_=None):
    """States of ``paths`` SGD runs (`rf.sgd` at lr ``lr``, or ``map_``) at flow time ``t1``."""
    map_ = rf.sgd(regression_sample_loss, SME_DATA, lr=lr, batch_size=SME_B) if map_ is None else map_
    n = round(t1 / lr)
    traj = rf.iterate(map_, SME_START, n, paths=paths, seed=seed, every=n)
    return traj.y[:, -1, :]


def gd_mean(lr, t1=SME_T1):
    r""":math:`E\,w_k` of SGD on a quadratic loss: exactly the GD iterate (the gradient is affine in
    :math:`w` and the batch independent of :math:`w_k`)."""
    mo, m = SME_MOMENTS, np.array(SME_START, dtype=float)
    for _ in range(round(t1 / lr)):
        m = m - lr * (mo["H"] @ m - mo["b"])
    return m


def monte_carlo_weak_error(lr, map_, sde, noise_factor, paths=SME_MC_PATHS):
    r""":math:`|E\,C(w^{SGD}_T) - E\,C(w^{SME}_T)|` with SGD from ``paths`` runs of ``map_`` and the SME
    from its moments; :math:`E\,C(w^{SGD})` is estimated with the control variate
    :math:`\nabla C(\bar w)\cdot(w - \bar w)`, :math:`\bar w = E\,w` (exact: `gd_mean`), which removes
    the variance of the linear part.  Returns the error and its Monte-Carlo standard error."""
    w = sgd_paths_at(lr, paths, map_=map_)
    mean = gd_mean(lr)
    grad = SME_MOMENTS["H"] @ mean - SME_MOMENTS["b"]
    q = np.asarray(jax.vmap(lambda v: regression_loss(v, None))(jnp.asarray(w))) - (w - mean) @ grad
    sme = float(mean_loss(moments_at(sde, noise_factor=noise_factor)))
    return abs(q.mean() - sme), q.std(ddof=1) / np.sqrt(len(q))


def sme_monte_carlo_fit(paths=SME_MC_PATHS):
    r"""The Monte-Carlo weak-error fit of `rf.sgd` against `rf.sme` over ``SME_MC_LRS`` (for figures):
    the fitted order, its standard error (weighted least squares on log errors), the errors and
    their standard errors."""
    out = []
    for lr in SME_MC_LRS:
        sgd = rf.sgd(regression_sample_loss, SME_DATA, lr=lr, batch_size=SME_B)
        sde = rf.sme(regression_sample_loss, SME_DATA, lr=lr, batch_size=SME_B)
        out.append(monte_carlo_weak_error(lr, sgd, sde, 1.0, paths))
    errors, ses = np.array(out).T
    x, y, s = np.log(SME_MC_LRS), np.log(errors), ses / errors
    wts = 1 / s**2
    xm = np.sum(wts * x) / np.sum(wts)
    slope = np.sum(wts * (x - xm) * y) / np.sum(wts * (x - xm) ** 2)
    return float(slope), float(1 / np.sqrt(np.sum(wts * (x - xm) ** 2))), errors, ses


def _sme_fit(order, observable=None):
    """Exact-moment errors of SGD against the hand moment ODE of the SME over ``STEPS`` (for figures)."""
    quantity = mean_loss if observable is None else observable
    errors = np.array([abs(float(quantity(sgd_moments(h)))
                           - float(quantity(flow_at(sme_moment_flow(h, order), moments_of(SME_START),
                                                    np.array([SME_T1]))[-1]))) for h in STEPS])
    steps = np.asarray(STEPS)
    return rf.Agreement(steps=steps, errors=errors, order=float(np.polyfit(np.log(steps), np.log(errors), 1)[0]))


def _centred(about):
    r""":math:`(w, \operatorname{vec}(w - c)(w - c)^\top)`: with :math:`c` the true mean, the
    expectation is the mean and the covariance."""
    about = jnp.asarray(about)

    def q(w, args=None):
        d = w - about
        return jnp.concatenate([w, jnp.outer(d, d).ravel()])

    q.__name__ = "mean and covariance"
    return q


def _covariance_state(z):
    m, M = z[:2], z[2:].reshape(2, 2)
    return np.concatenate([m, (M - np.outer(m, m)).ravel()])


@rf.entry("modified_equations.sme", source="Li, Tai & E (SME); Singh sec 1.1, sec 2 (mini-batch noise)")
def sme(lr: float = SME_LR) -> rf.Method:
    r"""Minibatch SGD (`rf.sgd`, batches of B drawn without replacement, independent over steps) on a
    linear regression and its stochastic modified equation (`rf.sme`)

    .. math:: dw = -\nabla C\,dt + \sqrt\eta\,\Sigma_B(w)^{1/2}dB_t .

    For a quadratic loss the first two moments of both close: SGD's by an exact recursion over all
    minibatches (`sgd_moments`), the SDE's by linear moment equations read off its drift and
    diffusion (`moment_system`).  The SME is a weak order-1 approximation of SGD; its variance
    agrees to :math:`O(\eta^2)` (the variance itself is :math:`O(\eta)`), and with the modified drift
    :math:`-\nabla(C + \frac\eta4\|\nabla C\|^2)` (Li-Tai-E's second-order SME, `rf.backward_error_flow`)
    it is weak order 2."""
    sgd = rf.sgd(regression_sample_loss, SME_DATA, lr=lr, batch_size=SME_B, names=_NAMES)
    sgd_end = sgd_moments(lr)
    sme_end = hand_moments_at(lr)
    hundred = rf.sme(regression_sample_loss, SME_DATA, lr=100 * lr, batch_size=SME_B, names=_NAMES)
    return rf.Method(
        flow=rf.sme(regression_sample_loss, SME_DATA, lr=lr, batch_size=SME_B, names=_NAMES),
        map=sgd, map_at=lambda h: rf.sgd(regression_sample_loss, SME_DATA, lr=h, batch_size=SME_B),
        y0=SME_START, t1=SME_T1, dt=lr / 10, paths=SME_PATHS, steps=round(SME_T1 / lr),
        samples=FIT_POINTS[:6],
        perturbations=[rf.Perturbation("rf.sme at lr x 100", {"flow": hundred})],
        claims=[
            rf.Formula(lambda w, p: sme_moments_1(0.0, moment_observables(w), {"lr": lr}), rate_of=moment_observables,
                       name="generator of rf.sme on w, w w^T",
                       source="Li-Tai-E: dw = -grad C dt + sqrt(lr) Sigma_B^(1/2) dB; its moment equations "
                              "(sme_moment_field, by hand)"),
            rf.AtHorizon(_centred(sgd_end[:2]), predict=_covariance_state(sgd_end), on="map", mean=True,
                         tol=MC_TOL, name="rf.sgd: mean and covariance at t = 1",
                         source="Singh sec 1.1 (mini-batch SGD): the exact SGD moments over all minibatches"),
            rf.AtHorizon(_centred(sme_end[:2]), predict=_covariance_state(sme_end), on="flow", mean=True,
                         tol=MC_TOL, name="rf.sme paths: mean and covariance at t = 1",
                         source="Li-Tai-E: the SDE's paths have its moments (Euler-Maruyama, dt = lr/10)"),
            rf.OrderFit(error=sme_exact_error(mean_loss), order=1.0, steps=STEPS, tol=ORDER_TOL,
                        what=f"|E C(SGD) - E C(SME)| at t = {SME_T1:g} (exact moments)",
                        source="Li-Tai-E Thm 1: the SME is weak order 1; Singh sec 1.1"),
            rf.OrderFit(error=sme_exact_error(total_variance), order=2.0, steps=STEPS, tol=ORDER_TOL,
                        what="|tr Cov(SGD) - tr Cov(SME)| (exact moments)",
                        source="Li-Tai-E: the SME's O(lr) variance matches SGD's (error O(lr^2))"),
            rf.OrderFit(error=sme_exact_error(mean_loss, order=2), order=2.0, steps=STEPS, tol=ORDER_TOL,
                        what="|E C(SGD) - E C(SME_2)| (exact moments)",
                        source="Li-Tai-E Thm 3: drift -grad(C + lr/4 |grad C|^2) gives weak order 2"),
        ],
    )

