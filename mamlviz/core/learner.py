"""A ``Learner`` bundles what one algorithm needs to adapt and meta-learn a model.

Meta-parameters live in ONE dict: the model's parameters under their module names, plus the
update rule's own tensors under ``"rule.*"`` (Meta-SGD learning rates, Meta-Curvature factors).
``split`` cuts it into the three roles of the glossary:

* ``fast``   -- model parameters adapted in the inner loop (theta at the start, phi after);
* ``frozen`` -- model parameters that are meta-learned but never adapted (Meta-Dropout's
  noise net), passed to every forward unchanged;
* ``rule``   -- the update rule's meta-learned tensors.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

import torch
from torch import Tensor, nn

from mamlviz.core.episode import Episode, Examples
from mamlviz.core.functional import LossFn, Params, params_of, proximal_loss
from mamlviz.core.inner import Recorder, adapt
from mamlviz.core.rules import RULE_PREFIX, InnerRule
from mamlviz.errors import check_range


class Strategy(Protocol):
    """Per-task meta-gradient: returns ``({name: grad} over all meta-params, query loss)``, and
    optionally a third item, diagnostics ``{name: scalar tensor}`` (iMAML: ``curvature``)."""

    def __call__(self, learner: Learner, meta: Params, episode: Episode) -> tuple: ...


def adapt_all(name: str) -> bool:
    """Default ``adapts`` filter: every model parameter is a fast weight."""
    return True


@dataclass(frozen=True)
class Learner:
    """One algorithm applied to one model: rule x strategy x which params adapt.

    ``support_loss`` defaults to ``loss`` (Meta-Dropout replaces it with a noisy forward);
    ``options`` holds strategy settings such as iMAML's ``lam`` and ``cg_steps``;
    ``inner_batch`` (None: whole support) is the support minibatch of each inner step.
    ``compile=True`` runs the batched meta-gradient through ``torch.compile`` (same values).
    """

    model: nn.Module
    loss: LossFn
    rule: InnerRule
    strategy: Strategy
    inner_steps: int
    first_order: bool = False
    adapts: Callable[[str], bool] = adapt_all
    support_loss: LossFn | None = None
    algorithm: str = "custom"
    options: dict[str, float] = field(default_factory=dict)
    inner_batch: int | None = None
    proximal: float | None = None  # iMAML's lambda: adapt on L_s + lambda/2 ||phi - theta||^2
    # Run the batched meta-gradient through torch.compile (mamlviz.core.compiled); the compiled
    # function is made once per learner and kept in ``compiled`` (not part of equality).
    compile: bool = False
    compiled: dict = field(default_factory=dict, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        check_range("inner_steps", self.inner_steps, 0, integer=True)
        if self.inner_batch is not None:
            check_range("inner_batch", self.inner_batch, 1, integer=True)

    def init_meta(self) -> Params:
        """Fresh meta-parameters: the model's current weights plus the rule's tensors."""
        model = params_of(self.model)
        fast = {n: w for n, w in model.items() if self.adapts(n)}
        return {**model, **self.rule.init_params(fast)}

    def split(self, meta: Params) -> tuple[Params, Params, Params]:
        """``(fast, frozen, rule)`` views of a meta-parameter dict."""
        fast, frozen, rule = {}, {}, {}
        for n, w in meta.items():
            if n.startswith(RULE_PREFIX):
                rule[n] = w
            elif self.adapts(n):
                fast[n] = w
            else:
                frozen[n] = w
        return fast, frozen, rule

    def support_loss_fn(self, frozen: Params) -> LossFn:
        """Inner-loop loss over the fast weights, with the frozen weights held fixed."""
        base = self.support_loss or self.loss
        return lambda fast, examples: base({**fast, **frozen}, examples)

    def inner_objective(self, frozen: Params, theta: Params) -> LossFn:
        """What the inner loop minimises from ``theta``: the support loss, or for iMAML
        (``proximal`` = lambda) the proximal objective, at training and at test alike."""
        base = self.support_loss_fn(frozen)
        return base if self.proximal is None else proximal_loss(base, theta, self.proximal)

    def inner_loop(
        self,
        fast: Params,
        frozen: Params,
        rule_params: Params,
        support: Examples,
        *,
        steps: int | None = None,
        first_order: bool | None = None,
        objective: LossFn | None = None,
        record: Recorder | None = None,
    ) -> Params:
        """THE inner loop (:func:`mamlviz.core.inner.adapt`) with this learner's settings:
        ``steps`` (default ``inner_steps``) steps of its rule on ``objective`` (default
        :meth:`inner_objective`) from ``fast``, on support minibatches of ``inner_batch``."""
        return adapt(
            self.inner_objective(frozen, fast) if objective is None else objective,
            fast,
            support,
            self.rule,
            self.inner_steps if steps is None else steps,
            rule_params=rule_params,
            first_order=self.first_order if first_order is None else first_order,
            inner_batch=self.inner_batch,
            record=record,
        )

    def query_loss(self, phi: Params, frozen: Params, query: Examples) -> Tensor:
        """Outer loss of adapted weights ``phi`` on the query set (always noise-free)."""
        return self.loss({**phi, **frozen}, query)


def zeros_like(params: Params) -> Params:
    """Zero gradient for every entry (parameters a strategy does not move)."""
    return {n: torch.zeros_like(w) for n, w in params.items()}
