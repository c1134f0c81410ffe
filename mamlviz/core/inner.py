r"""The inner loop: ONE ``adapt`` serves every algorithm in mamlviz.

For ``k = 0 .. inner_steps - 1``

    g_k     = \nabla_\phi L_support(\phi_k)          (torch.func.grad)
    \phi_{k+1} = rule(\phi_k, g_k)                   (SGD, Adam, Meta-SGD, Meta-Curvature, ...)

with \phi_0 = \theta. The gradient is computed with ``torch.func.grad``, so when ``adapt`` runs
inside an outer ``torch.func.grad`` over \theta, the outer transform differentiates through
every inner step: that is second-order MAML (Finn et al. 2017, eq. 1). ``first_order=True``
detaches g_k from the outer graph, which replaces d\phi/d\theta by the identity: First-Order
MAML. This is the only place in the package where that choice is made; a closed-form test
guards it (the most-forked PyTorch MAML silently lost ``create_graph`` for years).

``inner_batch`` makes step k use a minibatch of the support set instead of all of it, as
Reptile's Omniglot setup does (Nichol et al. 2018, sec. 6 and their code: 5 steps over
minibatches of 10 of the 50 training examples of a task); see :func:`minibatch`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import torch
from torch import Tensor
from torch.func import grad_and_value

from mamlviz.core.episode import Examples
from mamlviz.core.functional import LossFn, Params, detach
from mamlviz.core.rules import InnerRule
from mamlviz.errors import DivergenceError, check_range

Recorder = Callable[[int, Params, Tensor, Params], None]


def minibatch(support: Examples, size: int, k: int) -> Examples:
    """The ``size`` examples that inner step ``k`` uses: a window that slides by ``size``.

    For class labels ``y`` (integers; the examples axis is the last axis of ``y``, so it works
    per task, under ``vmap`` and on the stacked ``[tasks, examples]`` layout alike). Examples
    are first put in round-robin order of their labels (each label's first example, then each
    label's second, ...), so a window of class-ordered few-shot data holds every class equally
    often. Windows wrap around the end, so over a pass every example is used once, as in
    sampling without replacement. ``size >= N`` returns the whole support.
    """
    check_range("inner_batch", size, 1, integer=True)
    x, y = support
    if y.is_floating_point():
        raise ValueError("inner_batch needs integer class labels y (classification supports)")
    axis = y.dim() - 1
    n = y.shape[axis]
    if size >= n:
        return support
    # rank of each example among the earlier examples with its label, then round-robin order
    same = y.unsqueeze(-1) == y.unsqueeze(-2)
    earlier = torch.ones(n, n, dtype=torch.bool, device=y.device).tril(-1)
    rank = (same & earlier).sum(-1)
    order = (rank * n + torch.arange(n, device=y.device)).argsort(dim=-1)
    pick = order.roll(-(k * size) % n, dims=axis).narrow(axis, 0, size)
    xs = x.flatten(axis + 1)
    xs = xs.take_along_dim(pick.unsqueeze(-1).expand(*pick.shape, xs.shape[-1]), dim=axis)
    return Examples(xs.reshape(*pick.shape, *x.shape[axis + 1 :]), y.take_along_dim(pick, axis))


def adapt(
    loss_fn: LossFn,
    fast: Params,
    support: Examples,
    rule: InnerRule,
    inner_steps: int,
    *,
    rule_params: Params | None = None,
    first_order: bool = False,
    record: Recorder | None = None,
    check_finite: bool = False,
    inner_batch: int | None = None,
) -> Params:
    """Adapt ``fast`` to ``support`` with ``inner_steps`` steps of ``rule``; returns phi.

    ``record(k, fast_k, loss_k, grad_k)`` is called before each step and once after the last
    (with ``grad = {}``), which is what the widgets draw. ``check_finite`` raises
    :class:`DivergenceError` naming the inner step where the support loss stopped being
    finite; it reads the loss value, so it is off inside ``vmap``. ``inner_batch`` (None: the
    whole support) is the size of the :func:`minibatch` each step uses.
    """
    check_range("inner_steps", inner_steps, 0, integer=True)
    if support.x.numel() == 0 or support.y.numel() == 0:  # shapes only: fine under vmap
        raise ValueError(
            f"support must hold at least one example, got x {tuple(support.x.shape)} and y"
            f" {tuple(support.y.shape)}"
        )
    rule_params = {} if rule_params is None else rule_params
    state = rule.init_state(fast)
    step_fn = grad_and_value(loss_fn)
    for k in range(inner_steps):
        batch = support if inner_batch is None else minibatch(support, inner_batch, k)
        grads, loss = step_fn(fast, batch)
        if check_finite and not bool(torch.isfinite(loss)):
            raise DivergenceError("inner step", k, float(loss))
        if first_order:
            grads = detach(grads)
        if record is not None:
            record(k, fast, loss, grads)
        fast, state = rule.step(fast, grads, state, rule_params, k)
    if record is not None or check_finite:
        loss = loss_fn(fast, support)
        if check_finite and not bool(torch.isfinite(loss)):
            raise DivergenceError("inner step", inner_steps, float(loss))
        if record is not None:
            record(inner_steps, fast, loss, {})
    return fast


@dataclass
class Trajectory:
    """What ``adapt`` saw at every inner step: fast weights, support loss and gradient.

    Use ``trajectory.record`` as the ``record`` callback. Tensors are detached copies, so a
    recorded trajectory never holds the autograd graph alive.
    """

    fast: list[Params] = field(default_factory=list)
    losses: list[float] = field(default_factory=list)
    grads: list[Params] = field(default_factory=list)

    def record(self, k: int, fast: Params, loss: Tensor, grads: Params) -> None:
        self.fast.append({n: w.detach().clone() for n, w in fast.items()})
        self.losses.append(float(loss))
        if grads:
            self.grads.append({n: g.detach().clone() for n, g in grads.items()})

    def __len__(self) -> int:
        return len(self.fast)
