r"""Meta-SGD (Li, Zhou, Chen & Li 2017): a learned step size per parameter.

phi = theta - alpha (.) grad L_support(theta), with alpha a meta-parameter of theta's shape
(initialised to ``inner_lr``); (theta, alpha) are meta-learned together by the unrolled
meta-gradient. alpha's entries may turn negative: it encodes a direction as well as a size.
"""

from __future__ import annotations

from typing import Any

from mamlviz.algorithms.registry import AlgorithmSpec, register
from mamlviz.core.metagrad import unrolled
from mamlviz.core.rules import InnerRule, PerParamLR


def per_param(inner_lr: float, **_: Any) -> InnerRule:
    return PerParamLR(inner_lr)


register(
    AlgorithmSpec(
        "metasgd",
        "Meta-SGD",
        "Li, Zhou, Chen & Li 2017",
        per_param,
        unrolled,
        uses_inner_lr=False,  # the learned alpha; inner_lr only initialises it
    )
)
