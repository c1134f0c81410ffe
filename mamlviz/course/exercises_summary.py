r"""Exercise checkers of chapter 12 (summary), registered in the shared
:data:`mamlviz.course.exercises.CHECKS`.

* ``check_paired_difference(fn)``: ``fn(a, b) -> (mean, half_width)``, the mean of the per-task
  differences a_i - b_i of two learners on the SAME tasks and its 95 % half-width
  1.96 s_d / \sqrt{n} (s_d the sample standard deviation of the differences, torch's default);
* ``check_stability_edge(fn)``: ``fn(loss_fn, theta, support) -> float``, the largest inner
  learning rate at which gradient descent on the support loss is stable near theta,
  2 / \lambda_max with \lambda_max the largest eigenvalue of the support loss's Hessian (by
  power iteration on Hessian-vector products; the Hessian of the checker's small problem is
  formed exactly to grade it).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch.func import hessian

from mamlviz.core.episode import Examples
from mamlviz.core.functional import LossFn, Params
from mamlviz.course import summary
from mamlviz.course.exercises import Result, close, exercise, problem


def paired_samples() -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Pairs of per-task metrics with correlated tasks (the hard tasks are hard for both), so
    that an unpaired interval is several times the paired one; small n, so that a population
    standard deviation (or a missing 1.96) gives another number; the first pair has A worse."""
    g = torch.Generator().manual_seed(12)
    pairs = []
    for n, gap in ((9, 0.15), (25, -0.04)):
        difficulty = torch.rand(n, generator=g, dtype=torch.float64) * 2
        a = difficulty + gap + 0.05 * torch.randn(n, generator=g, dtype=torch.float64)
        b = difficulty + 0.05 * torch.randn(n, generator=g, dtype=torch.float64)
        pairs.append((a, b))
    return pairs


@exercise(
    "paired_difference",
    hint="difference per task first, d = a - b; then its mean and 1.96 * d.std() / sqrt(n)"
    " (d.std() is the sample standard deviation; not the two rows' own spreads combined)",
)
def check_paired_difference(fn: Callable[[torch.Tensor, torch.Tensor], Any]) -> Result:
    """``fn(a, b)`` against :func:`mamlviz.course.summary.paired_difference` on two pairs."""
    results = []
    for a, b in paired_samples():
        answer = fn(a.clone(), b.clone())
        if not isinstance(answer, tuple | list) or len(answer) != 2:
            return Result(False, " (expected a pair (mean, half_width))")
        results.append(close([float(answer[0]), float(answer[1])], summary.paired_difference(a, b)))
    bad = [r for r in results if not r.ok]
    return bad[0] if bad else results[0]


def stability_problem() -> tuple[LossFn, Params, Examples]:
    """The shared small float64 problem (MLP 1-8-8-1, 5 support points) of the checkers."""
    loss_fn, theta, episode = problem(seed=3)
    return loss_fn, theta, episode.support


def reference_stability_edge(loss_fn: LossFn, theta: Params, support: Examples) -> float:
    """2 / lambda_max from the exactly formed Hessian (small models only)."""
    names = list(theta)
    sizes = [theta[n].numel() for n in names]

    def flat_loss(vector: torch.Tensor) -> torch.Tensor:
        parts = torch.split(vector, sizes)
        params = {n: p.view_as(theta[n]) for n, p in zip(names, parts, strict=True)}
        return loss_fn(params, support)

    vector = torch.cat([theta[n].reshape(-1) for n in names]).detach()
    h = hessian(flat_loss)(vector)
    return 2.0 / float(torch.linalg.eigvalsh((h + h.T) / 2).max())


@exercise(
    "stability_edge",
    hint="lambda_max by power iteration: v <- H v / ||H v|| with mamlviz.hvp(loss_fn, theta,"
    " support, v), lambda = v . H v after ~100 products; the edge is 2 / lambda_max, not"
    " 1 / lambda_max (where the steps start to overshoot) nor lambda_max itself",
)
def check_stability_edge(fn: Callable[[LossFn, Params, Examples], Any]) -> Result:
    """``fn`` on the checker's problem against 2 / lambda_max of its exact Hessian. Tolerance
    0.1 %: 100 power iterations reach about 1e-6 here; the usual mistakes are off by 2x."""
    loss_fn, theta, support = stability_problem()
    answer = fn(loss_fn, {n: w.clone() for n, w in theta.items()}, support)
    return close(float(answer), reference_stability_edge(loss_fn, theta, support), rtol=1e-3)
