r"""Meta-Dropout (Lee, Nam, Yang & Hwang 2020): learned input-dependent noise in the support pass.

The model gains a noise net (:class:`mamlviz.models.noise.MetaDropoutMLP` for the sinusoid MLP,
:class:`mamlviz.models.noise_conv.MetaDropoutConvNet` for the Omniglot conv net) that is
meta-learned but never adapted; the inner loop's support forward multiplies each hidden
pre-activation by softplus(z), z ~ N(a(h), I), and the query forward is noise-free. The
meta-gradient is MAML's, unrolled through the noisy inner steps, so the outer loss teaches the
noise net which perturbation of the inner gradient makes the adapted weights generalise.
"""

from __future__ import annotations

import copy
import dataclasses
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.func import functional_call

from mamlviz.algorithms.registry import AlgorithmSpec, register
from mamlviz.core.episode import Examples
from mamlviz.core.functional import LossFn, Params, make_loss
from mamlviz.core.learner import Learner
from mamlviz.core.metagrad import unrolled
from mamlviz.core.rules import SGD, InnerRule
from mamlviz.errors import check_range
from mamlviz.models.convnet import ConvNet
from mamlviz.models.mlp import MLP
from mamlviz.models.noise import NOISE_MODES, NOISE_PREFIX, MetaDropoutMLP
from mamlviz.models.noise_conv import MetaDropoutConvNet


def adapts(name: str) -> bool:
    """The noise net is meta-learned only: it is the ``frozen`` part of ``Learner.split``."""
    return not name.startswith(NOISE_PREFIX)


def noisy_support_loss(model: nn.Module, kind: str, samples: int = 1) -> LossFn:
    """Support loss averaged over ``samples`` noise draws, in one forward.

    The inputs are repeated ``samples`` times along a new leading axis; every draw has the same
    number of examples, so the mean over all of them is the mean of the per-draw losses.
    """
    check_range("samples", samples, 1, integer=True)

    def loss(params: Params, examples: Examples) -> Tensor:
        if isinstance(model, ConvNet):
            # batch norm must see each draw as its own batch: one forward per draw
            outs = [
                functional_call(model, dict(params), (examples.x,), {"noisy": True})
                for _ in range(samples)
            ]
            out = torch.stack(outs)
        else:
            x = examples.x.expand(samples, *examples.x.shape)
            out = functional_call(model, dict(params), (x,), {"noisy": True})
        y = examples.y.expand(samples, *examples.y.shape)
        if kind == "mse":
            return F.mse_loss(out, y)
        if kind == "cross_entropy":
            return F.cross_entropy(out.reshape(-1, out.shape[-1]), y.reshape(-1))
        raise ValueError(f"loss must be one of ('mse', 'cross_entropy'), got {kind!r}")

    return loss


def dropout_rule(inner_lr: float, noise: str = "sample", samples: int = 1, **_: Any) -> InnerRule:
    if noise not in NOISE_MODES:
        raise ValueError(f"noise must be one of {NOISE_MODES}, got {noise!r}")
    check_range("samples", samples, 1, integer=True)
    return SGD(inner_lr)


def prepare(learner: Learner, loss: str) -> Learner:
    """Wrap the MLP or conv net with noise layers; noisy support loss; the noise net never
    adapts.

    Idempotent: a learner whose model already has the requested noise mode keeps it.
    """
    model = learner.model
    noise = learner.options.get("noise", "sample")
    if isinstance(model, MetaDropoutMLP | MetaDropoutConvNet):
        pass
    elif isinstance(model, ConvNet):
        model = MetaDropoutConvNet.from_convnet(model, noise)
    elif isinstance(model, MLP):
        model = MetaDropoutMLP.from_mlp(model, noise)
    else:
        raise ValueError(f"metadropout needs an MLP or a ConvNet, got {type(model).__name__}")
    if model.noise_mode != noise:
        model = copy.deepcopy(model)  # never change the caller's model behind its back
        model.noise_mode = noise
    return dataclasses.replace(
        learner,
        model=model,
        loss=make_loss(model, loss),
        adapts=adapts,
        support_loss=noisy_support_loss(model, loss, learner.options.get("samples", 1)),
    )


register(
    AlgorithmSpec(
        "metadropout",
        "Meta-Dropout",
        "Lee, Nam, Yang & Hwang 2020",
        dropout_rule,
        unrolled,
        defaults=(("noise", "sample"), ("samples", 1)),
        prepare=prepare,
        compiles=False,
        no_compile_reason="compiled noise draws would follow another random stream than the"
        " eager path's, so a compiled run would not reproduce an eager one",
        options=(
            ("noise", "sample, mean or off (off: exactly MAML); default sample"),
            ("samples", "noise draws averaged in the support loss, an integer >= 1; default 1"),
        ),
    )
)
