"""Fast weights as plain dictionaries, run through ``torch.func.functional_call``.

Every algorithm in mamlviz manipulates ``Params = dict[str, Tensor]`` with pure functions, so the
same code runs per task, under ``torch.func.vmap`` over a meta-batch, and under ``torch.func.grad``
for second-order meta-gradients. Models stay stock ``nn.Module`` objects: no cloned modules, no
monkeypatching (see DESIGN.md section 1 for why).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.func import functional_call

from mamlviz.core.episode import Examples

Params = dict[str, Tensor]
LossFn = Callable[[Params, Examples], Tensor]

LOSSES = ("mse", "cross_entropy")


def params_of(model: nn.Module) -> Params:
    """Detached copies of a model's parameters, by name (the slow start of the fast weights)."""
    return {name: p.detach().clone() for name, p in model.named_parameters()}


def call(model: nn.Module, params: Mapping[str, Tensor], x: Tensor) -> Tensor:
    """Run ``model`` on ``x`` with ``params`` in place of its own parameters."""
    return functional_call(model, dict(params), (x,))


def make_loss(model: nn.Module, kind: str) -> LossFn:
    """Loss of ``model`` with given params on a set of examples.

    ``kind`` is ``"mse"`` for regression (sinusoid) or ``"cross_entropy"`` for classification.
    """
    if kind == "mse":

        def loss(params: Params, examples: Examples) -> Tensor:
            # Written out rather than F.mse_loss: under torch.func's second-order grad, mse_loss
            # runs its backward as a Python decomposition, 6 % of a sinusoid MAML meta-step
            # (bench --suite sinusoid, column b/floor). Same value; shapes must match exactly,
            # where F.mse_loss would only warn and broadcast.
            pred = call(model, params, examples.x)
            if pred.shape != examples.y.shape:
                raise ValueError(
                    f"mse: predictions {tuple(pred.shape)} and targets y"
                    f" {tuple(examples.y.shape)} must have the same shape"
                )
            return (pred - examples.y).pow(2).mean()

    elif kind == "cross_entropy":

        def loss(params: Params, examples: Examples) -> Tensor:
            return F.cross_entropy(call(model, params, examples.x), examples.y)

    else:
        raise ValueError(f"loss must be one of {LOSSES}, got {kind!r}")
    return loss


# --- tree helpers over Params -------------------------------------------------------------


def tree_map(
    fn: Callable[..., Tensor], first: Mapping[str, Tensor], *rest: Mapping[str, Tensor]
) -> Params:
    """Apply ``fn`` leaf-wise to dicts that share ``first``'s keys."""
    return {name: fn(value, *(r[name] for r in rest)) for name, value in first.items()}


def tree_sub(a: Mapping[str, Tensor], b: Mapping[str, Tensor]) -> Params:
    """``a - b`` leaf-wise."""
    return tree_map(torch.sub, a, b)


def tree_dot(a: Mapping[str, Tensor], b: Mapping[str, Tensor]) -> Tensor:
    """Inner product ``<a, b>`` summed over all leaves."""
    return sum(
        (torch.sum(a[n] * b[n]) for n in a), torch.zeros((), dtype=next(iter(a.values())).dtype)
    )


def tree_norm(a: Mapping[str, Tensor]) -> Tensor:
    """Euclidean norm of all leaves taken together."""
    return torch.sqrt(tree_dot(a, a))


def flatten(a: Mapping[str, Tensor]) -> Tensor:
    """All leaves concatenated into one vector (in key order)."""
    return torch.cat([v.reshape(-1) for v in a.values()])


def unflatten(vector: Tensor, like: Mapping[str, Tensor]) -> Params:
    """Inverse of :func:`flatten`: split ``vector`` into tensors shaped like ``like``."""
    out, i = {}, 0
    for name, v in like.items():
        out[name] = vector[i : i + v.numel()].reshape(v.shape)
        i += v.numel()
    return out


def detach(a: Mapping[str, Tensor]) -> Params:
    """Leaf-wise ``detach``: cuts the outer (meta) graph."""
    return {n: v.detach() for n, v in a.items()}


def proximal_loss(support_loss: LossFn, theta: Params, lam: float) -> LossFn:
    r"""iMAML's inner objective L_support(\phi) + \lambda/2 ||\phi - \theta||^2, a loss of \phi."""

    def proximal(phi: Params, examples: Examples) -> Tensor:
        distance = sum(torch.sum((phi[n] - theta[n]) ** 2) for n in phi)
        return support_loss(phi, examples) + 0.5 * lam * distance

    return proximal
