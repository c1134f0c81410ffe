"""Registry rows for the rest of the family: Meta-Curvature, iMAML and Meta-Dropout.

Each is one row of (inner rule) x (meta-gradient strategy) x (which params adapt):

| name        | inner rule             | meta-gradient              | meta-only params |
| ----------- | ---------------------- | -------------------------- | ---------------- |
| metacurv    | Kronecker (MC(grad))   | unrolled, second order     | curvature factors|
| imaml       | SGD on proximal loss   | implicit (CG or dense)     | none             |
| metadropout | SGD, noisy support     | unrolled, second order     | the noise net    |

Meta-Dropout also changes the model (noise layers) and the support loss. ``PREPARE`` holds
that per-algorithm finishing step; :func:`make_family_learner` applies it after
``make_learner``.
"""

from __future__ import annotations

import copy
import dataclasses
from collections.abc import Callable
from typing import Any

from torch import nn

from mamlviz import dropout
from mamlviz.algorithms import AlgorithmSpec, make_learner, register
from mamlviz.errors import check_range
from mamlviz.functional import make_loss
from mamlviz.implicit import implicit, implicit_options
from mamlviz.learner import Learner
from mamlviz.metagrad import unrolled
from mamlviz.models import MLP
from mamlviz.rules import SGD, InnerRule, Kronecker


def _kronecker(inner_lr: float, **_: Any) -> InnerRule:
    return Kronecker(inner_lr)


def _imaml_rule(inner_lr: float, **options: Any) -> InnerRule:
    implicit_options(options)  # bad lam / cg_steps / solver fail when the learner is built
    return SGD(inner_lr)


def _dropout_rule(inner_lr: float, noise: str = "sample", samples: int = 1, **_: Any) -> InnerRule:
    if noise not in dropout.NOISE_MODES:
        raise ValueError(f"noise must be one of {dropout.NOISE_MODES}, got {noise!r}")
    check_range("samples", samples, 1, integer=True)
    return SGD(inner_lr)


def _prepare_dropout(learner: Learner, loss: str) -> Learner:
    """Wrap the MLP with noise layers; noisy support loss; the noise net never adapts.

    Idempotent: a learner whose model already has the requested noise mode keeps it.
    """
    model = learner.model
    noise = learner.options.get("noise", "sample")
    if not isinstance(model, dropout.MetaDropoutMLP):
        if not isinstance(model, MLP):
            raise ValueError(f"metadropout needs an MLP model, got {type(model).__name__}")
        model = dropout.MetaDropoutMLP.from_mlp(model, noise)
    elif model.noise_mode != noise:
        model = copy.deepcopy(model)  # never change the caller's model behind its back
        model.noise_mode = noise
    return dataclasses.replace(
        learner,
        model=model,
        loss=make_loss(model, loss),
        adapts=dropout.adapts,
        support_loss=dropout.noisy_support_loss(model, loss, learner.options.get("samples", 1)),
    )


PREPARE: dict[str, Callable[[Learner, str], Learner]] = {"metadropout": _prepare_dropout}
# Once AlgorithmSpec has a ``prepare`` field, make_learner applies it and the registry row
# carries it; until then make_family_learner applies PREPARE itself.
_SPEC_HAS_PREPARE = "prepare" in {f.name for f in dataclasses.fields(AlgorithmSpec)}
_dropout_prepare = {"prepare": _prepare_dropout} if _SPEC_HAS_PREPARE else {}

register(AlgorithmSpec("metacurv", "Meta-Curvature", "Park & Oliva 2019", _kronecker, unrolled))
register(
    AlgorithmSpec(
        "imaml",
        "iMAML",
        "Rajeswaran, Finn, Kakade & Levine 2019",
        _imaml_rule,
        implicit,
        defaults=(("lam", 2.0), ("cg_steps", 5), ("solver", "cg")),
    )
)
register(
    AlgorithmSpec(
        "metadropout",
        "Meta-Dropout",
        "Lee, Nam, Yang & Hwang 2020",
        _dropout_rule,
        unrolled,
        defaults=(("noise", "sample"), ("samples", 1)),
        **_dropout_prepare,
    )
)


def make_family_learner(
    algorithm: str, model: nn.Module, loss: str, *, inner_lr: float, inner_steps: int, **options
) -> Learner:
    """``make_learner`` plus the algorithm's finishing step (``PREPARE``), if it has one."""
    learner = make_learner(
        algorithm, model, loss, inner_lr=inner_lr, inner_steps=inner_steps, **options
    )
    prepare = None if _SPEC_HAS_PREPARE else PREPARE.get(algorithm)
    return learner if prepare is None else prepare(learner, loss)
