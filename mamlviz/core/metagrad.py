r"""Meta-gradient strategies. Each one maps ``(learner, meta, episode)`` of ONE task to
``({name: gradient}, query loss)``; ``outer.meta_step`` averages them over a meta-batch.

* :func:`unrolled` -- differentiate the query loss through the inner loop (MAML, FOMAML,
  Meta-SGD, Meta-Curvature, Meta-Dropout). For one SGD step (Finn et al. 2017)

      grad_theta L_query(phi) = (I - alpha H_support(theta)) grad_phi L_query(phi),

  with ``first_order=True`` in ``adapt`` the bracket becomes I (FOMAML).
* :func:`reptile` -- the pseudo-gradient \theta - \phi (Nichol et al. 2018); an outer SGD step
  with learning rate \epsilon is the interpolation \theta + \epsilon (\phi - \theta).
"""

from __future__ import annotations

from torch import Tensor
from torch.func import grad_and_value

from mamlviz.core.episode import Episode
from mamlviz.core.functional import Params, detach
from mamlviz.core.learner import Learner, zeros_like


def unrolled(learner: Learner, meta: Params, episode: Episode) -> tuple[Params, Tensor]:
    """Gradient of the query loss after ``adapt``, back through every inner step."""

    def query_loss(meta: Params) -> Tensor:
        fast, frozen, rule_params = learner.split(meta)
        phi = learner.inner_loop(fast, frozen, rule_params, episode.support)
        return learner.query_loss(phi, frozen, episode.query)

    return grad_and_value(query_loss)(meta)


def reptile(learner: Learner, meta: Params, episode: Episode) -> tuple[Params, Tensor]:
    r"""Reptile's pseudo-gradient \theta - \phi, with \phi from ``inner_steps`` on the support.

    No second derivatives are taken (\theta is detached). With one SGD step this is exactly
    ``inner_lr * grad L_support(theta)`` (tested). The returned loss is the query loss of \phi,
    for monitoring only.
    """
    fast, frozen, rule_params = learner.split(detach(meta))
    phi = learner.inner_loop(fast, frozen, rule_params, episode.support)
    grads = {**zeros_like(frozen), **zeros_like(rule_params)}
    grads.update({n: fast[n] - phi[n] for n in fast})
    return {n: grads[n] for n in meta}, learner.query_loss(detach(phi), frozen, episode.query)
