r"""Normalized flows of exponential-loss classifiers, and degenerate Hessians of deep networks.

Banburski, Liao, Miranda, Poggio, Rosasco, Liang, Hidary, "Theory III: Dynamics and
Generalization in Deep Networks" (sec 6, 7, 14, 16-17, 19, 21, 21.1).

A network :math:`f(W;x) = W_K\sigma(\cdots\sigma(W_1x))` (:math:`\sigma` linear or ReLU, no
biases; an `rf.Network`) is positively one-homogeneous in each layer, so with
:math:`\rho_k = \|W_k\|_F`, :math:`V_k = W_k/\rho_k` and :math:`\rho = \prod_k\rho_k`,
:math:`f = \rho\tilde f(V)` (eq 1-3).  On a separable data set :math:`(x_n, y_n)` the exponential
loss (eq 36, 47) :math:`L(W) = \sum_n e^{-y_n f(W;x_n)}` has no critical point: gradient flow
(eq 37, 48) sends :math:`\rho\to\infty` while the direction :math:`V` converges.  The same flow
written in :math:`(\rho_k, V_k)` (eq 42-43 for one layer, eq 54 and 13 for K layers) is

.. math:: \dot\rho_k = \frac{\rho}{\rho_k}\sum_n e^{-\rho y_n\tilde f_n}y_n\tilde f_n,\qquad
          \dot V_k = \frac{\rho}{\rho_k^2}(I - V_kV_k^\top)\tilde B_k,\quad
          \tilde B_k = \sum_n e^{-\rho y_n\tilde f_n}y_n\frac{\partial\tilde f_n}{\partial V_k}
          \ \text{(eq 78)}.

Weight normalization :math:`w = g\,v/\|v\|` (eq 89, 93-95) and the Lagrange-multiplier method
(eq 12-15, multiplier chosen to keep :math:`\|V_k\| = 1`) move the direction with speed
:math:`g/\|v\|^2` and :math:`\rho` instead of :math:`\rho/\rho_k^2`.

The entries, by module: `_classifier` (``linear``, ``rho_v``, ``null_space``,
``regularization_path``), `_unit_norm` (``weight_norm``, ``lagrange``), `_deep` (``deep``,
``deep_relu``, ``deep_normalized``), `_hessian` (``regularized_hessian``,
``linear_net_zero_modes``, ``linear_net_zero_modes_l2``); data, SVM and run constants in `_data`,
networks and the normalized field in `_nets`.

Conventions and readings recorded here (each with a measured row in `rf.check`):

* Labels are folded into the data, :math:`z_n = y_nx_n`, where the paper writes :math:`x_n`.
* The max-margin direction is the hard-margin SVM through the origin, computed independently
  (`hard_margin_svm`, SLSQP; the tests cross-check it with scikit-learn's ``SVC``).  The rate
  is Soudry et al. [ref 1]: :math:`w(t) = \hat w\log t + \tilde w + o(1)` with :math:`\tilde w`
  from the SVM's dual coefficients (`soudry_constants`), so the slow convergence is checked
  against a prediction at a finite horizon.
* Sec 21: "weight normalization does not converge to the normalized vector obtained by running
  GD on w and normalizing it at the end" is a reading: the trajectories differ (the WN direction
  moves :math:`g^2/\|v\|^2` times as fast as the induced one) but both converge to the SVM
  direction.  Eq 88 prints :math:`\|\tilde w\|` (= 1) where :math:`\|w\|` belongs (erratum).
* Eq 89 prints :math:`\rho = \|w\|g`; with :math:`w = g v/\|v\|`, :math:`\rho = \|w\| = |g|`.
* Eq 91-92 print :math:`\partial L/\partial\tilde w = S\,\partial L/\partial w` with
  :math:`S = (I-\tilde w\tilde w^\top)/\rho`: the induced velocity of eq 76 (a reading); the
  (tangential) gradient of :math:`L(\rho\tilde w)` is :math:`\rho(I-\tilde w\tilde w^\top)\partial L/\partial w`.
* Eq 15 (multiplier keeping :math:`\|V\| = 1` after a step :math:`V + g - \lambda V`) prints
  :math:`\lambda = 1 - \sqrt{1 - \|g\|^2 + (V^\top g)^2 + V^\top g}`; solving
  :math:`\|(1-\lambda)V + g\| = 1` gives :math:`\lambda = 1 + V^\top g - \sqrt{1 - \|g\|^2 + (V^\top g)^2}`.
* Eq 40-41 write :math:`-\lambda w` and :math:`+\lambda` for the penalty :math:`\lambda|w|^2`: right for
  :math:`\tfrac\lambda2|w|^2` (a convention); the entries use ``weight_decay = 2 lam`` for :math:`\lambda|w|^2`.
* Thm 7 (eq 62-64): the printed determinant has :math:`e^{-2f}` where :math:`e^{+2f}` belongs; the
  critical circle exists only for :math:`\lambda < 1/2`, where the origin is a saddle; the zero mode
  rotates :math:`(w_1, w_3)` and :math:`(w_2, w_4)` together (see `_hessian`).

Notes on the runs:

* WN and Lagrange directions relax :math:`\rho^2` times faster than GF's, so those flows are stiff
  at large t: they are run to ``STIFF_HORIZON`` = 1e15 (an explicit solver needs ~log^3 t steps).
* ReLU networks start label-aligned (`relu_starts`).  From generic starts a unit's hyperplane can
  come to rest on a data point; GF there is a sliding (Filippov) flow an explicit solver cannot follow.
"""

from ._classifier import (  # noqa: F401
    NULL_DATA, eq42_43, eq76_velocity, eq88_printed, exact_path_point, exp_gradient, hessian_spectrum, linear,
    null_projector, null_space, path_point, polar_field, regularization_path, rho_v, rv_starts, to_normalized,
    unit_norm_sq,
)
from ._data import (  # noqa: F401
    CLASS_CENTRES, CLASS_SPREAD, DATA_SEED, HORIZON, LONG_ATOL, LONG_RTOL, LONG_SAVES, LONG_T0, LR, MAP_STEPS,
    PER_CLASS, STIFF_HORIZON, T1, angle, angle_to, dataset, hard_margin_svm, linear_starts, long_run, long_ts,
    separating_cone, signed_data, soudry_constants, svm_asymptotics,
)
from ._deep import alignment, deep, deep_normalized, deep_relu, end_to_end_fn, gf_pushed_forward
from ._hessian import (  # noqa: F401
    SYMMETRY_WIDTHS, THM7_LAMBDAS, balancedness, critical_circle, det_hessian, det_hessian_printed,
    group_dimension, linear_net_zero_modes, linear_net_zero_modes_l2, random_points, regularized_hessian,
    rotation_generator, symmetry_minima, symmetry_problem, thm7_exp_loss, thm7_hessians, thm7_loss,
    thm7_spectrum,
)
from ._nets import (  # noqa: F401
    ACTIVATIONS, LINEAR, end_to_end, layer_shapes, linear_normalized_field, model, network_of, normalize,
    normalized_field, relu_starts, separating_starts, unflatten, weight_names,
)
from ._unit_norm import (eq15_lambda, g_coord, lagrange, lagrange_step, multiplier, paper_g, v_norm_sq, weight_norm,
                         wn_field, wn_printed_field, wn_step, wn_weights)
