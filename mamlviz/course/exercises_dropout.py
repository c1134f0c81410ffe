"""Chapter 10's exercise checkers (Meta-Dropout), registered in the shared ``CHECKS`` registry.

They follow :mod:`mamlviz.course.exercises`: each prints ``right: ...``, ``wrong: <hint>`` or
``not done yet: ...`` and returns True or False, never raising on a wrong answer.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from mamlviz.course.exercises import Result, close, exercise


def reference_noisy_layer(mu: Tensor, a: Tensor, eps: Tensor) -> Tensor:
    """Meta-Dropout's support-forward pre-activation: mu * softplus(z), z = a + eps ~ N(a, I)."""
    return mu * F.softplus(a + eps)


def _noise_cases() -> list[tuple[Tensor, Tensor, Tensor]]:
    g = torch.Generator().manual_seed(0)
    shape = (6, 5)
    return [
        tuple(torch.randn(shape, generator=g, dtype=torch.float64) * s for s in (2.0, 1.5, 1.0))
        for _ in range(3)
    ]  # type: ignore[misc]


@exercise(
    "noisy_layer",
    hint="the multiplier is softplus(z) = log(1 + exp(z)) with z = a + eps, i.e. z ~ N(a, I);"
    " it multiplies mu elementwise; without eps you have the query (mean) forward instead",
)
def check_noisy_layer(fn: Callable[[Tensor, Tensor, Tensor], Any]) -> Result:
    """``fn(mu, a, eps) -> mu * softplus(a + eps)``, elementwise, same shape as ``mu``."""
    for mu, a, eps in _noise_cases():
        result = close(
            torch.as_tensor(fn(mu.clone(), a.clone(), eps.clone())),
            reference_noisy_layer(mu, a, eps),
        )
        if not result.ok:
            return result
    return Result(True)
