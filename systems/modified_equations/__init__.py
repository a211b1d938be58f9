r"""Modified equations: the flows that discrete optimizers follow beyond first order.

Singh, "Implicit Regularization in Deep Neural Networks: An Optimization Perspective"
(sec 2, eq 1-2 and the RMSProp proposal; sec 3, Fig 1-4), with the results it builds on:
Barrett & Dherin, "Implicit gradient regularization" (ICLR 2021); Smith, Dherin, Barrett & De,
"On the origin of implicit regularization in stochastic gradient descent" (ICLR 2021); and the
stochastic modified equations of Li, Tai & E ("Stochastic modified equations and adaptive
stochastic gradient algorithms", 2017).

Backward error analysis asks which flow a map with step :math:`\eta` follows to higher order.
For gradient descent it is the gradient flow of the modified loss (Barrett & Dherin)

.. math:: \tilde C_{GD} = C + \frac{\eta}{4}\,\|\nabla C\|^2 ,

and for SGD with random reshuffling of :math:`m` fixed minibatches, the *mean* iterate after each
epoch follows (Smith et al.; Singh eq 1)

.. math:: \tilde C_{SGD} = C + \frac{\eta}{4m}\sum_{k=0}^{m-1}\|\nabla\hat C_k\|^2
          = C + \frac{\eta}{4}\|\nabla C\|^2 + \frac{\eta}{4m}\sum_k\|\nabla\hat C_k - \nabla C\|^2
          \quad\text{(eq 2)},

which is correct when :math:`C = \frac1m\sum_k \hat C_k` is the *mean* loss.

Conventions and corrections recorded here:

* Flows run in learning-rate time; a map with learning rate ``lr`` has ``dt = lr`` (one
  reshuffled epoch of ``m`` steps has ``dt = m lr``).
* Convention: Singh defines :math:`C = \sum_{i=1}^N C_i` (a sum) while the SGD step uses minibatch
  *means*; with that :math:`C`, eq 2 is not an identity of eq 1 (the mean of the minibatch gradients
  is :math:`\nabla C/N`, not :math:`\nabla C`).  Eq 1-2 hold with Smith et al.'s
  :math:`C = \frac1N\sum_i C_i`, used here.  (Singh's
  "where" list also calls the learning rate :math:`\epsilon`; it is the :math:`\eta` of eq 1.)
* Smith et al.'s result concerns the mean over the *orderings* of the minibatches in an epoch
  (random reshuffling).  For a quadratic loss this mean is an affine map, so iterating the
  epoch-averaged map gives the mean SGD iterate exactly; for other losses the fluctuation of an
  epoch is :math:`O(\eta^2)` and iterating the averaged map costs :math:`O(\eta^3)` over a fixed
  horizon, below the :math:`O(\eta^2)` agreement tested here.
* Erratum: Singh's proposed RMSProp modified loss :math:`C + \frac{\eta}{4m}\sum_k\|s_t\odot\nabla\hat C_k\|^2`
  is not RMSProp's modified equation (measured: it agrees with RMSProp only at first order,
  like the plain RMSProp flow).  With the preconditioner :math:`P = (\sqrt s + \epsilon)^{-1}`
  held fixed, the second-order modified equation is the preconditioned flow
  :math:`\dot w = -P\nabla(C + \frac{\eta}{4}\nabla C^\top P\,\nabla C)`; with a moving average
  :math:`s` (:math:`\gamma = 1 - \rho\eta`) an extra coupling term appears and no modified loss
  of this form suffices (`rf.backward_error_flow` of the RMSProp flow; closed form
  `rmsprop_modified_field`).
* Reading: sec 4 concludes from Fig 3 that the implicit regularizer is absent in adaptive methods, but Fig 3
  plots Singh's :math:`\|s_t\odot\nabla\hat C_k\|^2`, which is tiny because :math:`s \sim g^2`;
  RMSProp's own second-order term :math:`\frac{\eta}{4m}\sum_k\nabla\hat C_k^\top P\nabla\hat C_k`
  (frozen :math:`s`) is larger than SGD's (measured on the digits, ~70x).
* Reading: Fig 4 (SGD ends with the smallest parameter norm, all methods at lr 0.001) is
  reproduced, but at that learning rate SGD has barely trained; at equal training loss the norms
  agree to a few percent, so Fig 4 does not show that SGD favours small-norm solutions (sec 4).
  Likewise "adaptive methods generalize worse" (sec 1): at the protocol of Fig 1-2 SGD's test error
  is the highest, and at equal training loss the adaptive methods' test error is lower.
"""


from . import _digits, _gd, _reshuffled, _rmsprop, _sme  # noqa: F401  (registers the entries)
from ._common import (FIT_SAVES, ORDER_TOL, STEPS, agreement, flow_at, map_flow_error,  # noqa: F401
                      order_fit)
from ._digits import (DIGITS_DIM, DIGITS_FAST_LR, DIGITS_LR, DIGITS_METHODS, adaptive_norm, curves, digits_data,
                      implicit_regularizer, mlp_error, mlp_init, mlp_logits, mlp_sample_loss, norm_at_loss,
                      optimizer_runs, optimizer_trajectory, optimizers_map, optimizers_start, regularizer_terms,
                      rmsprop_average, value_at_loss, weights, _batch_grad)  # noqa: F401
from ._gd import (AB_GRADIENT_FLOW, AB_X, AB_Y, GD_LONG_T, GD_LR, GD_START, ab_imbalance, ab_loss, ab_samples,
                  ab_sharpness, flipped_map, gd, gd_modified_flow, gradient_flow_limit_sharpness, igr_term, long_runs,
                  _gd_fit)  # noqa: F401
from ._reshuffled import (RR_B, RR_BATCHES, RR_DATA, RR_LR, RR_M, RR_N, RR_START, RR_T1, epoch_map,
                          gradient_penalty_loss, logistic_data, logistic_sample_loss, rr_batch_losses, rr_epoch_fixed,
                          rr_epoch_mean, rr_eq2_loss, rr_eq2_printed_convention, rr_flow, rr_loss, rr_smith_loss,
                          sgd_reshuffled, _rr_fit)  # noqa: F401
from ._rmsprop import (RMS_EPS, RMS_LR, RMS_RHO, RMS_START, RMS_T1, first_order_flow, preconditioned_igr_field,
                       preconditioner, rms_flow, rms_map, rmsprop, rmsprop_bea_flow, rmsprop_field,
                       rmsprop_modified_field, rmsprop_second, rmsprop_step, rmsprop_step_before, rmsprop_update,
                       singh_rms_field, singh_rms_p_field, singh_rms_plain_field, _rms_fit)  # noqa: F401
from ._sme import (SME_B, SME_DATA, SME_LR, SME_MC_LRS, SME_MC_PATHS, SME_N, SME_START, SME_T1, gd_mean, mean_loss,
                   moment_observables, moment_system, moments_at, moments_of, regression_data, regression_loss,
                   regression_sample_loss, sgd_moment_step, sgd_moments, sgd_paths_at, sme, sme_moment_field,
                   sme_moment_flow, sme_moments_1, sme_moments_2, sme_monte_carlo_fit, total_variance,  # noqa: F401
                   _sme_fit)

#: The reference solve of the figures (scipy DOP853 at tight tolerances).
_flow_at = flow_at
