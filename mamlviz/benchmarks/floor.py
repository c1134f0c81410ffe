r"""The floor of the batched meta-step: MAML written directly in ``torch.func``, no package code.

For each task, ``inner_steps`` SGD steps phi_{k+1} = phi_k - alpha grad L_support(phi_k) from
phi_0 = theta, then the query loss L_query(phi_K); its gradient in theta through every step
(second order; ``first_order=True`` detaches each inner gradient, FOMAML), ``vmap``-ed over the
meta-batch and averaged (Finn et al. 2017, Algorithm 2). It computes exactly what
:func:`mamlviz.core.outer.meta_gradient` computes for ``make_learner("maml", ...)`` on an MLP
(tested in float64), with nothing around the vmap: no learner, rule, split or checks. The
sinusoid bench times both, so the package's Python overhead over this floor is a measured ratio.
"""

from __future__ import annotations

from torch import Tensor, nn
from torch.func import functional_call, grad, grad_and_value, vmap

Params = dict[str, Tensor]


def bare_meta_gradient(
    model: nn.Module,
    theta: Params,
    support: tuple[Tensor, Tensor],
    query: tuple[Tensor, Tensor],
    inner_lr: float,
    inner_steps: int,
    first_order: bool = False,
) -> tuple[Params, Tensor]:
    """Mean meta-gradient over the tasks of ``support``/``query`` ([tasks, examples, ...]) of
    the MSE query loss, and the per-task query losses."""

    def mse(params: Params, x: Tensor, y: Tensor) -> Tensor:
        return (functional_call(model, params, (x,)) - y).pow(2).mean()

    def query_loss(theta: Params, xs: Tensor, ys: Tensor, xq: Tensor, yq: Tensor) -> Tensor:
        phi = theta
        for _ in range(inner_steps):
            g = grad(mse)(phi, xs, ys)
            if first_order:
                g = {n: v.detach() for n, v in g.items()}
            phi = {n: phi[n] - inner_lr * g[n] for n in phi}
        return mse(phi, xq, yq)

    grads, losses = vmap(grad_and_value(query_loss), in_dims=(None, 0, 0, 0, 0))(
        theta, *support, *query
    )
    return {n: g.mean(0) for n, g in grads.items()}, losses
