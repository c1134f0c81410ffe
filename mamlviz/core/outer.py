"""The outer loop: one meta-step over a meta-batch of tasks.

``task_gradients`` runs a learner's per-task strategy over every task of a meta-batch
``Episode`` (tensors with a leading task axis). The batched path maps it with
``torch.func.vmap``: sinusoid MAML is dispatch-bound (thousands of tiny ops per task), and vmap
issues each op once for the whole meta-batch. The per-task loop is the reference path; tests
assert the two agree in float64.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor
from torch.func import vmap

from mamlviz.core.episode import Episode
from mamlviz.core.functional import Params, detach
from mamlviz.core.learner import Learner
from mamlviz.errors import DivergenceError


def task_gradients(
    learner: Learner, meta: Params, episode: Episode, *, batched: bool = True
) -> tuple[Params, Tensor]:
    """Per-task meta-gradients stacked on a leading task axis, and per-task query losses."""
    if batched:
        # randomness="different": stochastic forwards (Meta-Dropout) draw fresh noise per task.
        per_task = vmap(lambda ep: learner.strategy(learner, meta, ep), randomness="different")
        return per_task(episode)
    grads, losses = [], []
    for i in range(episode.num_tasks):
        g, loss = learner.strategy(learner, meta, episode.task(i))
        grads.append(g)
        losses.append(loss)
    return {n: torch.stack([g[n] for g in grads]) for n in meta}, torch.stack(losses)


def meta_gradient(
    learner: Learner, meta: Params, episode: Episode, *, batched: bool = True
) -> tuple[Params, Tensor]:
    """Meta-gradient averaged over the tasks of ``episode``, and the per-task query losses."""
    grads, losses = task_gradients(learner, meta, episode, batched=batched)
    return {n: g.mean(0) for n, g in grads.items()}, losses


def meta_step(
    learner: Learner,
    meta: Params,
    optimizer: torch.optim.Optimizer,
    episode: Episode,
    *,
    batched: bool = True,
    iteration: int = 0,
    gradient: Callable[[Learner, Params, Episode], tuple[Params, Tensor]] | None = None,
) -> Tensor:
    """One outer update of the leaf tensors ``meta`` (those the optimiser holds).

    ``gradient`` replaces :func:`meta_gradient` with another batching of the same mathematics
    (e.g. :func:`mamlviz.core.stacked.meta_gradient` for conv nets).
    Raises :class:`DivergenceError` instead of writing NaN into the meta-parameters.
    Returns the per-task query losses (detached).
    """
    # The strategies differentiate with torch.func; detaching keeps autograd from also taping
    # an unneeded outer graph through the optimiser's leaf tensors.
    if gradient is None:
        grads, losses = meta_gradient(learner, detach(meta), episode, batched=batched)
    else:  # the same mathematics batched another way (mamlviz.core.stacked.meta_gradient)
        grads, losses = gradient(learner, detach(meta), episode)
    mean_loss = float(losses.mean())
    if not torch.isfinite(losses).all() or not all(torch.isfinite(g).all() for g in grads.values()):
        raise DivergenceError("meta-iteration", iteration, mean_loss, "lower inner_lr or outer_lr")
    optimizer.zero_grad(set_to_none=True)
    for n, w in meta.items():
        w.grad = grads[n].detach()
    optimizer.step()
    return losses
