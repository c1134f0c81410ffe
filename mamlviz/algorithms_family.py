"""Registry rows for the rest of the family: Meta-Curvature, iMAML and Meta-Dropout.

Each is one row of (inner rule) x (meta-gradient strategy) x (which params adapt):

| name        | inner rule             | meta-gradient              | meta-only params |
| ----------- | ---------------------- | -------------------------- | ---------------- |
| metacurv    | Kronecker (MC(grad))   | unrolled, second order     | curvature factors|
| imaml       | SGD on proximal loss   | implicit (CG or dense)     | none             |
| metadropout | SGD, noisy support     | unrolled, second order     | the noise net    |

Meta-Dropout also changes the model (noise layers) and the support loss: its row carries that
finishing step as ``prepare``, which ``make_learner`` applies.
"""

from __future__ import annotations

import copy
import dataclasses
from typing import Any

from mamlviz import dropout
from mamlviz.algorithms import AlgorithmSpec, register, sgd_or_adam
from mamlviz.errors import check_range
from mamlviz.functional import make_loss
from mamlviz.implicit import implicit, implicit_options
from mamlviz.learner import Learner
from mamlviz.metagrad import unrolled
from mamlviz.models import MLP
from mamlviz.rules import SGD, InnerRule, Kronecker


def _kronecker(inner_lr: float, **_: Any) -> InnerRule:
    return Kronecker(inner_lr)


def _imaml_rule(
    inner_lr: float, inner_optimizer: str = "sgd", max_norm: float | None = None, **options: Any
) -> InnerRule:
    implicit_options(options)  # bad lam / cg_steps / solver fail when the learner is built
    # The implicit gradient only needs the inner solution, not how it was reached, so any
    # solver that converges will do: clipped SGD or Adam stay finite where the support loss is
    # sharper than 2 / inner_lr.
    if max_norm is not None and inner_optimizer == "sgd":
        return SGD(inner_lr, float(max_norm))
    return sgd_or_adam(inner_lr, inner_optimizer)


def _dropout_rule(inner_lr: float, noise: str = "sample", samples: int = 1, **_: Any) -> InnerRule:
    if noise not in dropout.NOISE_MODES:
        raise ValueError(f"noise must be one of {dropout.NOISE_MODES}, got {noise!r}")
    check_range("samples", samples, 1, integer=True)
    return SGD(inner_lr)


def _prepare_imaml(learner: Learner, loss: str) -> Learner:
    """Adapt on the proximal objective everywhere, evaluation included (Rajeswaran et al.)."""
    return dataclasses.replace(learner, proximal=implicit_options(learner.options)[0])


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


register(AlgorithmSpec("metacurv", "Meta-Curvature", "Park & Oliva 2019", _kronecker, unrolled))
register(
    AlgorithmSpec(
        "imaml",
        "iMAML",
        "Rajeswaran, Finn, Kakade & Levine 2019",
        _imaml_rule,
        implicit,
        defaults=(("lam", 2.0), ("cg_steps", 5), ("solver", "cg")),
        prepare=_prepare_imaml,
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
        prepare=_prepare_dropout,
    )
)
