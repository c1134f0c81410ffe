r"""Exercise checkers of chapter 11 (Meta-Experience Replay), registered in the shared
:data:`mamlviz.course.exercises.CHECKS`.

* ``check_backward_transfer(fn)``: ``fn(R) -> float``, the backward transfer of a loss matrix
  R[t, j] (loss on family j after learning family t), mean_{j < T-1} R[T-1, j] - R[j, j]
  (Lopez-Paz & Ranzato 2017; for a loss, positive means forgetting);
* ``check_reservoir_probability(fn)``: ``fn(size, seen) -> float``, the probability that a
  given one of ``seen`` stream examples is in a reservoir memory of ``size`` slots (Vitter
  1985): min(1, size / seen).
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from mamlviz.course.exercises import Result, close, exercise


def loss_matrices() -> tuple[torch.Tensor, torch.Tensor]:
    """Two 4 x 4 float64 loss matrices with no symmetry, so that a transposed or sign-flipped
    answer, or one that averages the last family in, gives another number: one that forgets
    (BWT > 0) and one on which later families helped the earlier ones (BWT < 0)."""
    forgets = [
        [0.40, 2.10, 3.30, 4.00],
        [0.90, 0.35, 2.60, 3.70],
        [1.50, 0.70, 0.30, 2.90],
        [2.20, 1.10, 0.60, 0.25],
    ]
    improves = [
        [1.20, 2.40, 3.10, 3.50],
        [0.80, 1.00, 2.20, 3.30],
        [0.60, 0.70, 0.90, 2.80],
        [0.50, 0.45, 0.65, 0.70],
    ]
    return torch.tensor(forgets, dtype=torch.float64), torch.tensor(improves, dtype=torch.float64)


def reference_bwt(r: torch.Tensor) -> float:
    """mean_{j < T-1} R[T-1, j] - R[j, j]."""
    last = r.shape[0] - 1
    return float((r[last, :last] - torch.diagonal(r)[:last]).mean())


@exercise(
    "backward_transfer",
    hint="the LAST row minus the diagonal, R[T-1, j] - R[j, j], averaged over j < T-1 only"
    " (rows: after which family; columns: evaluated on which family)",
)
def check_backward_transfer(fn: Callable[[torch.Tensor], float]) -> Result:
    """``fn(R) -> float`` for two loss matrices (a forgetting one and an improving one)."""
    results = []
    for r in loss_matrices():
        reference = reference_bwt(r)
        answer = fn(r.clone())
        if isinstance(answer, torch.Tensor) and answer.numel() != 1:
            return Result(
                False, f" (got a tensor of shape {tuple(answer.shape)}, expected a number)"
            )
        results.append(close(float(answer), reference))
    bad = [r for r in results if not r.ok]
    return bad[0] if bad else results[0]


PAIRS = ((5, 3), (5, 5), (5, 20), (200, 1000), (1, 7), (0, 4))


@exercise(
    "reservoir_probability",
    hint="while the memory is not full every example is kept; after that each of the `seen`"
    " examples is kept with the same probability, size / seen",
)
def check_reservoir_probability(fn: Callable[[int, int], float]) -> Result:
    """``fn(size, seen)`` against min(1, size / seen) on (size, seen) pairs below, at and above
    the memory size, and for an empty memory."""
    answer = [float(fn(size, seen)) for size, seen in PAIRS]
    return close(answer, [min(1.0, size / seen) for size, seen in PAIRS])
