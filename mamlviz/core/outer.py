"""The outer loop: one meta-step over a meta-batch of tasks.

``task_gradients`` runs a learner's per-task strategy over every task of a meta-batch
``Episode`` (tensors with a leading task axis). The batched path maps it with
``torch.func.vmap``: sinusoid MAML is dispatch-bound (thousands of tiny ops per task), and vmap
issues each op once for the whole meta-batch. The per-task loop is the reference path; tests
assert the two agree in float64.
"""

from __future__ import annotations

import functools
from collections.abc import Callable

import torch
from torch import Tensor
from torch.func import vmap

from mamlviz.core.compiled import Compiled
from mamlviz.core.episode import Episode
from mamlviz.core.functional import Params, detach
from mamlviz.core.implicit import indefinite_policy, refuse_indefinite, task_weights
from mamlviz.core.learner import Learner
from mamlviz.errors import DivergenceError


def _with_diagnostics(out: tuple) -> tuple[Params, Tensor, dict[str, Tensor]]:
    return (out[0], out[1], out[2]) if len(out) == 3 else (out[0], out[1], {})


def task_gradients(
    learner: Learner, meta: Params, episode: Episode, *, batched: bool = True
) -> tuple[Params, Tensor, dict[str, Tensor]]:
    """Per-task meta-gradients stacked on a leading task axis, per-task query losses, and the
    strategy's per-task diagnostics (empty for most strategies)."""
    check_episode(episode, meta)
    if batched and learner.compile:
        if "task_gradients" not in learner.compiled:
            learner.compiled["task_gradients"] = Compiled(
                functools.partial(_vmapped, learner), f"{learner.algorithm}'s meta-gradient"
            )
        return learner.compiled["task_gradients"](meta, episode)
    if batched:
        return _vmapped(learner, meta, episode)
    outs = [_with_diagnostics(learner.strategy(learner, meta, episode.task(i)))
            for i in range(episode.num_tasks)]  # fmt: skip
    grads = {n: torch.stack([o[0][n] for o in outs]) for n in meta}
    diagnostics = {k: torch.stack([o[2][k] for o in outs]) for k in outs[0][2]}
    return grads, torch.stack([o[1] for o in outs]), diagnostics


def _vmapped(
    learner: Learner, meta: Params, episode: Episode
) -> tuple[Params, Tensor, dict[str, Tensor]]:
    # randomness="different": stochastic forwards (Meta-Dropout) draw fresh noise per task.
    per_task = vmap(
        lambda ep: _with_diagnostics(learner.strategy(learner, meta, ep)), randomness="different"
    )
    return per_task(episode)


def check_episode(episode: Episode, meta: Params | None = None) -> None:
    """A meta-batch episode: ``x`` [tasks, examples, features...] (at least 3-D) and ``y``
    [tasks, examples, ...] (at least 2-D), one task count for all four tensors, and inputs of
    the meta-parameters' floating dtype."""
    parts = {"support": episode.support, "query": episode.query}
    ok = all(e.x.dim() >= 3 and e.y.dim() >= 2 and e.x.shape[:2] == e.y.shape[:2]
             for e in parts.values())  # fmt: skip
    ok = ok and episode.support.x.shape[0] == episode.query.x.shape[0]
    if not ok:
        shapes = {f"{k}.{a}": tuple(getattr(e, a).shape) for k, e in parts.items() for a in "xy"}
        raise ValueError(
            "episode must be a meta-batch: x [tasks, examples, features...] and y [tasks,"
            f" examples, ...] with one task count; got {shapes}. For one task, add the task"
            " axis: Episode(*(Examples(e.x[None], e.y[None]) for e in episode))"
        )
    want = next(iter(meta.values())).dtype if meta else None
    if want is not None and episode.support.x.dtype != want:
        raise ValueError(
            f"episode inputs are {episode.support.x.dtype} but the meta-parameters are {want}:"
            " sample the tasks with that dtype (sample(..., dtype=...)) or convert the model"
        )


def meta_gradient(
    learner: Learner, meta: Params, episode: Episode, *, batched: bool = True
) -> tuple[Params, Tensor]:
    """Meta-gradient averaged over the tasks of ``episode``, and the per-task query losses.

    Raises :class:`IndefiniteError` where an implicit solve met non-positive curvature (or,
    with iMAML's option ``indefinite=skip``, leaves those tasks out of the mean and warns).
    """
    try:
        grads, losses, diagnostics = task_gradients(learner, meta, episode, batched=batched)
    except RuntimeError as err:  # the model's own shape check, deep inside a forward
        if "shape" not in str(err) and "size" not in str(err):
            raise
        shapes = {
            f"{k}.x": tuple(e.x.shape) for k, e in zip(("support", "query"), episode, strict=True)
        }
        raise ValueError(
            f"episode does not fit the model: inputs {shapes} (torch: {str(err).splitlines()[0]});"
            " give x the model's input features as its last axis"
        ) from None
    curvature = diagnostics.get("curvature")
    if curvature is None:
        return {n: g.mean(0) for n, g in grads.items()}, losses
    policy = indefinite_policy(learner.options)
    refuse_indefinite(diagnostics, policy)
    weights = task_weights(curvature, policy)  # 1/T each, or skip: 0 on indefinite tasks
    return {n: torch.tensordot(weights, g, dims=1) for n, g in grads.items()}, losses


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
