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

The network entry is in `_network`, the reduced eq 5 (``reduced``, ``collapse``) in `_reduced`.

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

from ._network import (  # noqa: F401
    DEPTH, HEUN_DT, IN_DIM, LEMMA1_GD_LR, LEMMA1_STEPS, NET_LAYER_NORMS, NET_LR, NET_T1, SAMPLES, WIDTH,
    balanced_state, directions, eq5_rate, eq7_field, from_rho_v, half_time, layer_norms, layer_shapes,
    n_weights, net_of, network, network_flow, normalized_outputs, rho_eq, rho_of, rho_v_field, rho_v_names,
    square_loss, tanh_field, to_rho_v, toy_data, unbalanced_states, unflatten, weight_names,
)
from ._reduced import (  # noqa: F401
    EXPONENT_TOL, LAW_DEPTHS, LAW_STARTS, MONOTONE_TOL, REDUCED_B, REDUCED_C, REDUCED_DEPTHS,
    REDUCED_LAYER_NORM, REDUCED_STARTS, SWEEP, SWEEP_SAVES, collapse, dropped_factor_field, reduced,
    reduced_args, reduced_field, transient_quadrature, transient_sweep, transient_times,
)
