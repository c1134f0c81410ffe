r"""Meta-Curvature (Park & Oliva 2019): a learned, Kronecker-factored gradient preconditioner.

phi = theta - alpha MC(grad), where for a weight of shape [out, in, (filter)] MC multiplies the
gradient by one learned matrix per axis (identity at the start, so Meta-Curvature starts as
MAML); the factors are meta-learned by the unrolled second-order meta-gradient. They need not be
symmetric or positive definite: a learned preconditioner, not a metric.
"""

from __future__ import annotations

from typing import Any

from mamlviz.algorithms.registry import AlgorithmSpec, register
from mamlviz.core.metagrad import unrolled
from mamlviz.core.rules import InnerRule, Kronecker


def kronecker(inner_lr: float, **_: Any) -> InnerRule:
    return Kronecker(inner_lr)


register(AlgorithmSpec("metacurv", "Meta-Curvature", "Park & Oliva 2019", kronecker, unrolled))
