"""A meta-batch of conv-net tasks as ONE network: tasks stacked on the channel axis.

The Omniglot conv net is compute bound on CPU, and small per-task convolutions use the cores
badly; ``vmap`` over tasks is slower still (DESIGN.md). Instead, every fast weight gets a
leading task axis [T, ...] and the T task networks run side by side as one network:

* input [T, N, C, H, W] -> [N, T*C, H, W]; ``F.conv2d(..., groups=T)`` applies task t's filters
  to task t's channels only;
* per-task BatchNorm falls out for free: each channel belongs to one task, and per-channel
  batch statistics are exactly that task's statistics;
* the head is a batched matrix product, logits [T, N, ways].

The loss is the SUM over tasks of each task's mean loss. Tasks share no weights, so the
gradient with respect to the stacked weights is, slice by slice, each task's own gradient:
the unchanged :func:`mamlviz.core.inner.adapt` then takes every task's inner steps at once. Theta
enters expanded to [T, ...], so the gradient with respect to theta is the SUM of the per-task
meta-gradients; we divide by T for the mean that :func:`mamlviz.core.outer.meta_gradient` returns.
Tests assert both paths agree in float64 (MAML, FOMAML, Reptile; 1 and 2 inner steps).
"""

from __future__ import annotations

import functools
from dataclasses import replace
from typing import Protocol

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.func import grad

from mamlviz.core.compiled import Compiled
from mamlviz.core.episode import Episode, Examples
from mamlviz.core.functional import Params, detach, proximal_loss
from mamlviz.core.implicit import (
    conjugate_gradient_checked,
    implicit,
    implicit_matvec,
    implicit_options,
    indefinite_policy,
    refuse_indefinite,
    task_weights,
)
from mamlviz.core.learner import Learner, zeros_like
from mamlviz.core.metagrad import reptile, unrolled

STRATEGIES = (unrolled, reptile, implicit)
Diagnostics = dict[str, Tensor]  # per-task values a strategy reports (iMAML: "curvature")


class Stackable(Protocol):
    """A model that can run T copies of itself side by side (``ConvNet.stacked_forward``).

    ``noisy=True`` is the support forward of a model with ``noisy_support = True`` (Meta-Dropout's
    noise net, :mod:`mamlviz.models.noise_conv`); other models ignore it.
    """

    def stacked_forward(self, params: Params, x: Tensor, noisy: bool = False) -> Tensor: ...


def stacked_logits(net: Stackable, params: Params, x: Tensor, noisy: bool = False) -> Tensor:
    """Logits [T, N, ways] of T task networks (``params`` [T, ...]) on ``x`` [T, N, C, H, W]."""
    return net.stacked_forward(params, x, noisy)


def per_task_losses(
    net: Stackable, params: Params, examples: Examples, noisy: bool = False
) -> Tensor:
    """Mean cross-entropy of each task, [T]."""
    logits = stacked_logits(net, params, examples.x, noisy)
    tasks, n, ways = logits.shape
    losses = F.cross_entropy(logits.reshape(-1, ways), examples.y.reshape(-1), reduction="none")
    return losses.view(tasks, n).mean(1)


def _noisy(learner: Learner) -> bool:
    """Whether the learner's support loss is its model's noisy forward (Meta-Dropout)."""
    return learner.support_loss is not None and getattr(learner.model, "noisy_support", False)


def stack(meta: Params, tasks: int) -> Params:
    """Every meta-parameter expanded (a view, no copy) to a leading task axis of ``tasks``."""
    return {n: w.expand(tasks, *w.shape) for n, w in meta.items()}


def supports(learner: Learner) -> bool:
    """Whether :func:`meta_gradient` can run ``learner`` (else use ``outer.meta_gradient``).

    Not a rule that clips the global gradient norm (stacked, that norm would span every task),
    nor iMAML's dense solver (one Hessian per task is what the stacked layout avoids).
    """
    return (
        callable(getattr(learner.model, "stacked_forward", None))
        and (learner.support_loss is None or _noisy(learner))
        and learner.strategy in STRATEGIES
        and getattr(learner.rule, "max_norm", None) is None
        and (learner.strategy is not implicit or implicit_options(learner.options)[2] == "cg")
    )


def stacked_learner(learner: Learner) -> Learner:
    """``learner`` with its loss replaced by the summed per-task loss over stacked weights."""
    net = learner.model
    if not callable(getattr(net, "stacked_forward", None)):
        raise ValueError(
            "learner.model must have stacked_forward (a ConvNet) for the stacked path,"
            f" got {type(net)}"
        )
    if learner.support_loss is not None and not _noisy(learner):
        raise ValueError(
            "the stacked path needs learner.support_loss=None or the model's noisy forward"
        )
    if learner.strategy not in STRATEGIES:
        raise ValueError(
            "learner.strategy must be metagrad.unrolled, metagrad.reptile or implicit.implicit"
        )
    support_loss = None
    if learner.support_loss is not None:
        samples = int(learner.options.get("samples", 1))

        def support_loss(p: Params, ex: Examples) -> Tensor:
            # the mean over noise draws of each draw's loss, as the per-task noisy loss
            draws = [per_task_losses(net, p, ex, noisy=True).sum() for _ in range(samples)]
            return torch.stack(draws).mean()

    return replace(
        learner, loss=lambda p, ex: per_task_losses(net, p, ex).sum(), support_loss=support_loss
    )


def meta_gradient(learner: Learner, meta: Params, episode: Episode) -> tuple[Params, Tensor]:
    """Mean meta-gradient over the meta-batch and per-task query losses [T].

    Same contract as ``outer.meta_gradient(learner, meta, episode)``, computed in one stacked
    forward/backward. Unrolled (MAML, FOMAML, Meta-SGD): the query loss after ``adapt`` is
    differentiated w.r.t. theta, through the expansion. Reptile: theta - phi per task, averaged.
    iMAML: the proximal inner loop on every task at once, then T conjugate-gradient solves
    side by side (the stacked support Hessian is block diagonal); a task whose system is not
    positive definite is refused or skipped, as by ``outer.meta_gradient``.
    A learner made with ``compile=True`` runs it through torch.compile (inductor fuses the
    batch-norm and ReLU backward passes that dominate here: ``bench --suite omniglot``).
    """
    if learner.compile:
        if "stacked" not in learner.compiled:
            learner.compiled["stacked"] = Compiled(
                functools.partial(_meta_gradient, learner),
                f"{learner.algorithm}'s stacked meta-gradient",
            )
        grads, losses, diagnostics = learner.compiled["stacked"](meta, episode)
    else:
        grads, losses, diagnostics = _meta_gradient(learner, meta, episode)
    refuse_indefinite(diagnostics, indefinite_policy(learner.options))
    return grads, losses


def _meta_gradient(
    learner: Learner, meta: Params, episode: Episode
) -> tuple[Params, Tensor, Diagnostics]:
    tasks = episode.num_tasks
    stacked = stacked_learner(learner)
    net = learner.model

    if learner.strategy is reptile:
        grads, _ = reptile(stacked, stack(detach(meta), tasks), episode)
        fast, frozen, _ = stacked.split(stack(detach(meta), tasks))
        phi = {n: fast[n] - grads[n] for n in fast}  # reptile returns theta - phi
        losses = per_task_losses(net, {**phi, **frozen}, episode.query)
        return {n: g.mean(0) for n, g in grads.items()}, losses, {}
    if learner.strategy is implicit:
        return _implicit(stacked, meta, episode)

    def total_query_loss(meta: Params) -> tuple[Tensor, Tensor]:
        fast, frozen, rule_params = stacked.split(stack(meta, tasks))
        phi = stacked.inner_loop(fast, frozen, rule_params, episode.support)
        losses = per_task_losses(net, {**phi, **frozen}, episode.query)
        return losses.sum(), losses.detach()

    grads, losses = grad(total_query_loss, has_aux=True)(meta)
    return {n: g / tasks for n, g in grads.items()}, losses, {}


def _implicit(
    stacked: Learner, meta: Params, episode: Episode
) -> tuple[Params, Tensor, Diagnostics]:
    """:func:`mamlviz.core.implicit.implicit` for every task at once (same equations).

    The summed loss makes each task's gradient, and each task's Hessian-vector product, its
    own slice; :func:`conjugate_gradient_checked` with ``stacked=True`` keeps every task's
    CG step sizes and curvature apart.
    """
    lam, cg_steps, _, damping = implicit_options(stacked.options)
    net = stacked.model
    fast, frozen, rule_params = stacked.split(stack(detach(meta), episode.num_tasks))
    support_loss = stacked.support_loss_fn(frozen)
    objective = proximal_loss(support_loss, fast, lam)
    phi = detach(
        stacked.inner_loop(fast, frozen, rule_params, episode.support, objective=objective)
    )

    def query_loss(p: Params) -> tuple[Tensor, Tensor]:
        losses = per_task_losses(net, {**p, **frozen}, episode.query)
        return losses.sum(), losses.detach()

    g_query, losses = grad(query_loss, has_aux=True)(phi)
    matvec = implicit_matvec(support_loss, phi, episode.support, lam, damping)
    g, curvature = conjugate_gradient_checked(matvec, g_query, cg_steps, stacked=True)
    grads = {**zeros_like(frozen), **zeros_like(rule_params), **g}
    weights = task_weights(curvature, indefinite_policy(stacked.options))
    mean = {n: torch.tensordot(weights, grads[n], dims=1) for n in meta}
    return mean, losses, {"curvature": curvature}


def accuracy_curves(learner: Learner, meta: Params, episode: Episode, steps: int) -> Tensor:
    """``[tasks, steps + 1]`` query accuracy after 0..steps inner steps, all tasks stacked.

    What :func:`mamlviz.training.evaluate.metric_curves` computes with ``vmap``, ~10x faster for the
    conv net (tested equal in float64); the evaluation of Reptile's 50 test steps needs it.
    """
    tasks, net = episode.num_tasks, learner.model
    sl = stacked_learner(learner)
    fast, frozen, rule_params = sl.split(stack(detach(meta), tasks))
    curve: list[Tensor] = []

    def record(k: int, phi: Params, loss: Tensor, grads: Params) -> None:
        logits = stacked_logits(net, {**phi, **frozen}, episode.query.x)
        hits = (logits.argmax(-1) == episode.query.y).to(logits.dtype).mean(1)
        finite = torch.isfinite(logits).flatten(1).all(1)  # a diverged task is NaN, not chance
        curve.append(torch.where(finite, hits, torch.nan))

    with torch.no_grad():  # torch.func.grad inside adapt still works; no outer graph
        sl.inner_loop(
            fast, frozen, rule_params, episode.support, steps=steps, first_order=True, record=record
        )
    return torch.stack(curve, dim=1)
