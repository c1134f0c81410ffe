"""The algorithm registry: each algorithm is one row, (inner rule) x (meta-gradient strategy)
x (first or second order) x (which parameters adapt), never a copy of the training code.

>>> learner = make_learner("maml", model, "mse", inner_lr=0.01, inner_steps=1)

The rows live beside this file, one module per family (``maml``, ``reptile``, ``metasgd``, ...),
and register themselves on import; ``mamlviz.algorithms`` imports every row module, so the
registry never imports its rows and no module imports back up.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from torch import Tensor, nn

from mamlviz.core.episode import Episode
from mamlviz.core.functional import Params, make_loss
from mamlviz.core.learner import Learner, Strategy
from mamlviz.core.rules import SGD, Adam, InnerRule
from mamlviz.errors import check_range


@dataclass(frozen=True)
class AlgorithmSpec:
    """One registry row. ``make_rule(inner_lr, **options)`` builds the inner update rule."""

    name: str
    title: str
    paper: str
    make_rule: Callable[..., InnerRule]
    strategy: Strategy
    first_order: bool = False
    outer: str = "adam"  # "adam", or "sgd" for Reptile's interpolation step
    defaults: tuple[tuple[str, Any], ...] = ()
    # Finishing step for algorithms that change more than the rule and strategy (Meta-Dropout:
    # a model with a noise net, a noisy support loss, which params adapt): (learner, loss) ->
    # learner.
    prepare: Callable[[Learner, str], Learner] | None = None
    # The --option keys this algorithm reads, each with its allowed values and default (the
    # help text of `train --help`); every algorithm also reads ``inner_batch``.
    options: tuple[tuple[str, str], ...] = ()
    # False where the inner step sizes are learned (Meta-SGD): inner_lr is then only their
    # initial value, and an evaluation-time inner_lr would be ignored, so it is refused.
    uses_inner_lr: bool = True
    # Metric-based rows (ProtoNet) have no inner loop: ``classify(learner, meta, episode)``
    # gives the query logits [tasks, query examples, ways] of a meta-batch episode from its
    # support sets, which evaluation scores instead of adapting; inner_steps must then be 0.
    classify: Callable[[Learner, Params, Episode], Tensor] | None = None
    # False where the strategy must run task by task (ProtoNet reads each task's ways from its
    # labels), not under vmap over the meta-batch.
    batched: bool = True
    # False where torch.compile would change the results (a stochastic forward draws from
    # another random stream when compiled) or has nothing to compile; the reason says which.
    compiles: bool = True
    no_compile_reason: str = ""

    @property
    def has_inner_loop(self) -> bool:
        return self.classify is None

    def known_options(self) -> dict[str, str]:
        """Option key -> allowed values and default."""
        return {**dict(self.options), "inner_batch": INNER_BATCH}

    def check_options(self, options: Mapping[str, Any]) -> None:
        """Refuse option keys this algorithm does not read, naming the known keys and the
        closest one (a misspelt ``lamda=10`` would otherwise train with the default lam)."""
        known = self.known_options()
        for key in options:
            if key not in known:
                close = difflib.get_close_matches(key, known, n=1)
                hint = f" (did you mean {close[0]!r}?)" if close else ""
                raise ValueError(
                    f"unknown option {key!r} for {self.name}{hint}; its options are: "
                    + "; ".join(f"{k} ({v})" for k, v in known.items())
                )


INNER_BATCH = "support examples per inner step, an integer >= 1; default: the whole support"


def sgd(inner_lr: float, **_: Any) -> InnerRule:
    """Plain SGD at ``inner_lr`` (MAML, FOMAML, the pretrained baseline, Meta-Dropout)."""
    return SGD(inner_lr)


def sgd_or_adam(inner_lr: float, inner_optimizer: str = "sgd", **_: Any) -> InnerRule:
    """The inner optimiser named by option ``inner_optimizer`` (Reptile and iMAML)."""
    if inner_optimizer == "sgd":
        return SGD(inner_lr)
    if inner_optimizer == "adam":
        return Adam(inner_lr)
    raise ValueError(f"inner_optimizer must be 'sgd' or 'adam', got {inner_optimizer!r}")


ALGORITHMS: dict[str, AlgorithmSpec] = {}


def register(spec: AlgorithmSpec) -> AlgorithmSpec:
    """Add a row to the registry (variants register themselves in their own modules)."""
    ALGORITHMS[spec.name] = spec
    return spec


def get_algorithm(name: str) -> AlgorithmSpec:
    """Registry lookup with an error that lists the known names."""
    try:
        return ALGORITHMS[name]
    except KeyError:
        known = ", ".join(sorted(ALGORITHMS))
        raise ValueError(f"algorithm must be one of: {known}; got {name!r}") from None


def make_learner(
    algorithm: str,
    model: nn.Module,
    loss: str,
    *,
    inner_lr: float,
    inner_steps: int,
    compile: bool = False,
    **options: Any,
) -> Learner:
    """Build the ``Learner`` of a registered algorithm for ``model`` with loss ``loss``.

    ``compile=True`` runs its batched meta-gradient through ``torch.compile``
    (:mod:`mamlviz.core.compiled`): the same values, several times faster for small models;
    the first call compiles. Refused where the row sets ``compiles=False``.
    """
    spec = get_algorithm(algorithm)
    spec.check_options(options)
    if compile and not spec.compiles:
        able = ", ".join(a for a, s in sorted(ALGORITHMS.items()) if s.compiles)
        raise ValueError(
            f"compile must be False for {spec.name!r} ({spec.no_compile_reason}); algorithms"
            f" that compile: {able}"
        )
    check_range("inner_lr", inner_lr, 0.0)
    check_range("inner_steps", inner_steps, 0, integer=True)
    if not spec.has_inner_loop and inner_steps != 0:
        raise ValueError(
            f"inner_steps must be in [0, 0] for {spec.name!r}, got {inner_steps!r}: it has no"
            " inner loop (it classifies the query set from the support set directly)"
        )
    opts = {**dict(spec.defaults), **options}
    inner_batch = opts.pop("inner_batch", None)
    learner = Learner(
        model=model,
        loss=make_loss(model, loss),
        rule=spec.make_rule(inner_lr, **opts),
        strategy=spec.strategy,
        inner_steps=inner_steps,
        first_order=spec.first_order,
        algorithm=spec.name,
        options=opts,
        inner_batch=None if inner_batch is None else int(inner_batch),
        compile=bool(compile),
    )
    return learner if spec.prepare is None else spec.prepare(learner, loss)
