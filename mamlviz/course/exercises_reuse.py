"""Chapter 09's exercise checkers (feature reuse), registered in the shared ``CHECKS`` registry.

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
from mamlviz.course.feature_reuse import linear_cka


def _cka_cases() -> list[tuple[Tensor, Tensor]]:
    """Pairs on which the usual slips differ from CKA: features with large means (centring
    matters), a rotated and scaled copy (CKA is exactly 1), and unrelated features."""
    g = torch.Generator().manual_seed(0)
    x = torch.randn(30, 6, generator=g, dtype=torch.float64) + 3.0
    q, _ = torch.linalg.qr(torch.randn(6, 6, generator=g, dtype=torch.float64))
    mixed = x @ torch.randn(6, 4, generator=g, dtype=torch.float64) + torch.randn(
        30, 4, generator=g, dtype=torch.float64
    )
    other = torch.randn(30, 9, generator=g, dtype=torch.float64) - 2.0
    return [(x, 2.5 * x @ q + 7.0), (x, mixed), (x, other), (mixed, other)]


@exercise(
    "linear_cka",
    hint="centre each column first (subtract the mean over the examples), then"
    " ||Y^T X||_F^2 / (||X^T X||_F ||Y^T Y||_F): the numerator squared, the denominator not;"
    " a rotated copy must give exactly 1",
)
def check_linear_cka(fn: Callable[[Tensor, Tensor], Any]) -> Result:
    """``fn(x [n, p], y [n, q]) -> float``: linear CKA (Kornblith et al. 2019)."""
    for x, y in _cka_cases():
        result = close(float(fn(x.clone(), y.clone())), float(linear_cka(x, y)), atol=1e-9)
        if not result.ok:
            return result
    return Result(True)


def reference_prototype_labels(
    support: Tensor, support_labels: Tensor, query: Tensor, ways: int
) -> Tensor:
    """Nearest prototype in cosine: prototype c = mean of class c's support features."""
    protos = torch.stack([support[support_labels == c].mean(0) for c in range(ways)])
    return (F.normalize(query, dim=1) @ F.normalize(protos, dim=1).T).argmax(1)


def _prototype_cases() -> list[tuple[Tensor, Tensor, Tensor, int]]:
    """3-way 2-shot features where Euclidean distance, a single shot or the farthest prototype
    each give other labels than the cosine-nearest class mean."""
    s = torch.tensor(
        [
            [1.0, 0.0],
            [1.0, 0.2],  # class 0: along x
            [0.0, 4.0],
            [0.4, 4.0],  # class 1: along y, far from the origin
            [-1.0, -1.0],
            [-1.4, -1.0],  # class 2
        ],
        dtype=torch.float64,
    )
    y = torch.tensor([0, 0, 1, 1, 2, 2])
    q = torch.tensor(
        [[0.3, 1.2], [2.0, 0.1], [-0.2, -0.3], [0.35, 0.45], [3.0, 2.5]], dtype=torch.float64
    )
    g = torch.Generator().manual_seed(1)
    s2 = torch.randn(12, 5, generator=g, dtype=torch.float64)
    y2 = torch.arange(4).repeat_interleave(3)
    q2 = torch.randn(9, 5, generator=g, dtype=torch.float64) * 3
    return [(s, y, q, 3), (s2, y2, q2, 4)]


@exercise(
    "prototype_labels",
    hint="average each class's support features (its prototype), then give each query the"
    " class whose prototype has the largest COSINE similarity (normalise both to unit length);"
    " Euclidean distance prefers prototypes near the origin",
)
def check_prototype_labels(fn: Callable[[Tensor, Tensor, Tensor, int], Any]) -> Result:
    """``fn(support [n, d], support_labels [n], query [m, d], ways) -> labels [m]``."""
    for s, y, q, ways in _prototype_cases():
        answer = torch.as_tensor(fn(s.clone(), y.clone(), q.clone(), ways))
        want = reference_prototype_labels(s, y, q, ways)
        if answer.shape != want.shape or not torch.equal(answer.long(), want):
            return Result(False, f" (expected labels {want.tolist()}, got {answer.tolist()})")
    return Result(True)
