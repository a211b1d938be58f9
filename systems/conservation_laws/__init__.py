r"""Conservation laws found, not only checked.

Marcotte, Gribonval & Peyré, "Abide by the law and follow the flow: conservation laws for
gradient flows" (NeurIPS 2023).  A function :math:`h(\theta)` is conserved by the gradient flow
of every loss of a model :math:`g(\theta, x)` on every data set iff :math:`\nabla h(\theta)` is
orthogonal to the fields :math:`W(\theta) = \operatorname{span}_{x,i}\nabla_\theta g_i(\theta, x)`
(the gradients :math:`\nabla L_{X,Y}` over data sets span the same); the number of independent
laws is :math:`D - \dim\operatorname{Lie}(W)(\theta)` (`rf.count_conservation_laws`), and the
polynomial ones are the null space of the Lie-derivative operator on monomials
(`rf.conservation_laws`).  The paper's results checked here, on the flows' own fields over
random data sets:

* a two-layer linear net :math:`UV^\top x` with :math:`r` hidden units has exactly
  :math:`r(r+1)/2` laws, the entries of :math:`U^\top U - V^\top V` (``linear_net``);
* a two-layer ReLU net has exactly one per hidden neuron, :math:`\|u_k\|^2 - \|v_k\|^2`
  (``relu_net``);
* Ginsburg's scalar net :math:`w_1\cdots w_d` has :math:`d - 1`, the hyperbolas
  :math:`w_i^2 - w_j^2` of eq 6 (``scalar_net``);
* a deep ReLU net has one per hidden neuron (incoming minus outgoing squared weights), whose
  sums over a layer are Theory III's eq 18, :math:`\|W_k\|^2 - \|W_{k+1}\|^2` (``deep_relu``);
* Marcotte, Gribonval & Peyré 2024 ("Keep the momentum"): the heavy-ball momentum ODE of a linear
  net keeps none of the gradient flow's laws on the phase space :math:`(w, \dot w)`; its laws
  depend on time (``momentum_linear``).

Every law found is checked with `rf.Conserved` along the flow.  The perturbations that the rows
must catch: a non-homogeneous activation (tanh) or a fixed hidden bias (the laws are lost), a
2-homogeneous activation :math:`\mathrm{relu}^2` or a layer squared (other laws:
:math:`\|u\|^2 - \|v\|^2/2`), weight decay (the balances decay).  A leaky ReLU is not among them:
it is positively 1-homogeneous and keeps the same laws.
"""

from . import _deep, _momentum, _two_layer  # noqa: F401  (registers the entries)
from ._deep import deep_relu, hyperbolas, layer_balance, neuron_balances, scalar_loss, scalar_net  # noqa: F401
from ._momentum import antisymmetric_momentum, damping, momentum_linear  # noqa: F401
from ._measures import ANGLE_TOL, DATASETS, law_count, span_angle  # noqa: F401
from ._two_layer import (LINEAR_SHAPES, RELU_SHAPES, gram_laws, linear_net, model, neuron_laws, params,  # noqa: F401
                         relu_net, square_loss)
