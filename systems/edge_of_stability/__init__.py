r"""Gradient descent at the edge of stability and its central flow.

Cohen, Kaur, Li, Kolter, Talwalkar, "Gradient descent on neural networks typically occurs at the
edge of stability" (ICLR 2021): full-batch GD at step size :math:`\eta` sharpens progressively
until the sharpness :math:`S = \lambda_{\max}(\nabla^2 L)` reaches :math:`2/\eta`, then hovers
there while the loss keeps decreasing non-monotonically.  Cohen, Damian, Talwalkar, Kolter, Lee,
"Understanding Optimization in Deep Learning with Central Flows" (ICLR 2025), sec 3.1: GD's time
average follows

.. math:: \dot w = -\big(\nabla L(w) + \tfrac{\sigma^2}{2}\nabla S(w)\big),\qquad
          \sigma^2 = \max\!\big(0, -2\langle\nabla S, \nabla L\rangle/\|\nabla S\|^2\big)
          \text{ at } S = 2/\eta

(`rf.central_flow`), which holds :math:`S = 2/\eta`; GD's time-averaged loss is
:math:`L + \sigma^2/\eta` and :math:`\sigma^2` is the variance of its oscillation along the top
Hessian eigenvector (`rf.central_flow_sigma2`).

Every row is measured on window means of 20 GD steps (the oscillation has a period-2 part and
a slower cycle); the central flow is saved at GD's step times.
"""

from . import _diagonal_net  # noqa: F401  (registers the entries)
from ._claims import WINDOW, EdgeAverage, Predicts, Tracks  # noqa: F401
from ._diagonal_net import (ALPHA, DIM, EDGE_FROM, LR, PREDICT_TO, STEPS, Projected, diagonal_net, edge,  # noqa: F401
                            loss, names, oscillation_sq, predicted_loss, problem, sharpness, start)
