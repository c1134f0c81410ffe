"""Chapter 08's exercise checkers (Omniglot), registered in the shared ``CHECKS`` registry.

They follow :mod:`mamlviz.course.exercises`: each prints ``right: ...``, ``wrong: <hint>`` or
``not done yet: ...`` and returns True or False, never raising on a wrong answer.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor

from mamlviz.course.exercises import Result, close, exercise

# The standard split (Vinyals et al. 2016, as MAML uses it): 1200 training characters, of which
# the last 100 are held out for validation, and 423 test characters; each training character
# appears under 4 rotations (0, 90, 180, 270 degrees) as 4 classes (Santoro et al. 2016).
TRAIN_CHARACTERS = 1100
ROTATIONS = 4


def reference_accuracy(logits: Tensor, labels: Tensor) -> float:
    """Share of examples whose arg-max logit is their label: mean of [argmax_c z_ic = y_i]."""
    return float((logits.argmax(-1) == labels).double().mean())


def _accuracy_cases() -> list[tuple[Tensor, Tensor]]:
    generator = torch.Generator().manual_seed(0)
    cases = []
    for n, ways in ((12, 4), (10, 5), (7, 3)):
        logits = torch.randn(n, ways, generator=generator, dtype=torch.float64)
        labels = torch.randint(ways, (n,), generator=generator)
        # make some predictions right, so that the accuracy is neither 0 nor 1
        labels[: n // 2] = logits[: n // 2].argmax(-1)
        cases.append((logits, labels))
    return cases


@exercise(
    "episode_accuracy",
    hint="predict the arg-max over the LAST axis (the classes) of each row of logits, compare"
    " with the labels and average over the examples: a number in [0, 1]",
)
def check_episode_accuracy(fn: Callable[[Tensor, Tensor], Any]) -> Result:
    """``fn(logits [examples, ways], labels [examples]) -> accuracy`` as a float in [0, 1]."""
    for logits, labels in _accuracy_cases():
        answer = fn(logits.clone(), labels.clone())
        result = close(float(answer), reference_accuracy(logits, labels), atol=1e-9)
        if not result.ok:
            return result
    return Result(True)


@exercise(
    "rotation_classes",
    hint="only the meta-TRAINING characters are rotated (validation and test are not), and"
    " each gives one class per rotation by 0, 90, 180 and 270 degrees",
)
def check_rotation_classes(n: Any) -> Result:
    """``n``: how many classes meta-training tasks are drawn from in the standard split."""
    return close(float(n), float(TRAIN_CHARACTERS * ROTATIONS), rtol=0.0, atol=0.0)
