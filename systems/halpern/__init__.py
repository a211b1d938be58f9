r"""Halpern iterations and norm-minimizing gradient descent (NMGD).

Banburski, Liao, Miranda, Rosasco, Hidary, Poggio, "Theory III: Dynamics and Generalization in
Deep Networks", eq 9 (sec 5.1), section 12 (eq 25-26, Theorem 4-5), section 13-14.1 (eq 28-32),
appendix 20 (Theorem 12).

With :math:`T = I - \gamma\nabla L` (non-expansive for convex :math:`L` when
:math:`\gamma\lambda_{max}(\nabla^2L)\le 2`), Halpern's iteration with anchor 0 (eq 25) is

.. math:: w_{n+1} = (1-\lambda_n)\,Tw_n
          \iff w_{n+1} - w_n = -(1-\lambda_n)\gamma\nabla L(w_n) - \lambda_n w_n
          \qquad\text{(eq 26 = eq 9, NMGD; } `rf.halpern`, `rf.nmgd`)

with :math:`\lambda_n \to 0`, :math:`\sum\lambda_n = \infty`, e.g. :math:`\lambda_n = (n + n_0)^{-a}`,
:math:`0 < a < 1` (Theorem 5).  It converges to the fixed point of :math:`T` of smallest norm;
on underdetermined least squares (eq 28) that is :math:`X^+y`, while plain GD converges to
:math:`(I - X^+X)w_0 + X^+y` (the null-space part of :math:`w_0` is invariant, sec 14.1).
In learning-rate time (:math:`t = n\gamma`) eq 26 is the Euler step of the non-autonomous flow
(`rf.nmgd_flow`)

.. math:: \dot w = -\nabla L(w) - \mu(t)\,w,\qquad \mu(t) = c\,(t+\tau)^{-a},

gradient flow with a vanishing weight decay; :math:`\lambda_n = (n + n_0)^{-a}` corresponds to
:math:`c = \gamma^{a-1}`, :math:`\tau = n_0\gamma` (`rf.nmgd_partner`).  The null-space part decays
as :math:`\exp(-\int_0^t\mu)`, which vanishes iff :math:`a \le 1`; the rest of the distance to
:math:`X^+y` is the Tikhonov bias :math:`w_\mu - X^+y` of the regularization path
:math:`w_\mu = \arg\min L + \tfrac\mu2|w|^2`, which vanishes as :math:`\mu \to 0` (sec 13 remark:
the pseudoinverse as the :math:`\lambda \to 0` limit of regularization).

Printed formulas that are not what is checked (each with a measured row):

* Convention: :math:`\lambda_n = 1/n^a` indexed from :math:`n = 1` (Theorem 5's :math:`k_1 = 0`)
  sets :math:`\lambda_1 = 1`: the first step returns :math:`w = 0` from every start, so
  independence of the start is trivial and :math:`a = 1.5` converges to :math:`X^+y` too
  (``halpern.literal_schedule``).  With :math:`\lambda_n < 1`, e.g. :math:`(n + n_0)^{-a}`,
  :math:`n_0 \ge 1` from :math:`n = 0`, the statement holds as meant (``halpern.nmgd``,
  ``halpern.nmgd_fast_decay``).
* Erratum: Theorem 5's first sentence: :math:`x_n = kTx_{n-1}`, :math:`|k| < 1`, converges to the
  fixed point of :math:`kT` (a contraction), not to "one of the fixed points of :math:`T`"
  (``halpern.fixed_k``).
* Erratum: Appendix 20, Theorem 12(a): :math:`\|w_{t+1} - w_*\|^2 \le (1-\gamma L)^{2(t+1)}\|w_0 - w_*\|^2`
  (L the smoothness constant) is false whenever a Hessian eigenvalue lies below L, strongly
  convex or not: the proof's first inequality uses :math:`(\nabla g(w_t), w_t - w_*) \ge L|w_t - w_*|^2`,
  the wrong direction of eq 72.  GD contracts at :math:`\max_i|1 - \gamma\lambda_i|` over the
  nonzero eigenvalues (``halpern.gradient_descent``, ``halpern.strongly_convex``, where (b) holds).

Weight decay conventions: the flow's :math:`\mu(t)\,w` is regflow's ``weight_decay = mu``
(penalty :math:`\tfrac\mu2|w|^2`).
"""

from . import _least_squares, _network, _nmgd_entries  # noqa: F401  (registers the entries)
from ._least_squares import convex_loss, gradient_descent, solution_distance_sq, strongly_convex  # noqa: F401
from ._network import (HIDDEN, LR_DEEP, N0_DEEP, deep_loss, deep_names, deep_network, deep_unflatten, layer_imbalance,
                       minimum_norm, squared_norm)  # noqa: F401
from ._nmgd_entries import (  # noqa: F401
    fixed_k, fixed_point_of_kT, gradient_norm, literal_schedule, nmgd, nmgd_fast_decay)
from ._problem import (A, A_FAST, DIM, LR, N0, N_EQ, SEED, T1, T1_GD, contraction_excess, distance_to_pinv,
                       flow_schedule, gd_limit, halpern_map, hessian_matrix, hessian_spectrum, loss, names,
                       nmgd_flow, nmgd_map, null_coordinate, null_part, paper_partner, paper_schedule, pinv_solution,
                       problem, ridge_path, starts, state)  # noqa: F401
