"""Top eigenvalue of the support-loss Hessian at a checkpoint's theta, over training tasks.

    python scripts/sharpness.py sinusoid-maml sinusoid-imaml-10shot [--tasks 200]

Gradient descent on a task diverges when inner_lr times this curvature exceeds 2 (plus lambda
for iMAML's proximal objective); the README's iMAML notes quote it. Power iteration on
Hessian-vector products (mamlviz.core.implicit.hvp), 30 iterations from a seeded random vector.
"""

from __future__ import annotations

import argparse

import torch

from mamlviz.core.episode import Examples
from mamlviz.core.functional import Params
from mamlviz.core.implicit import hvp
from mamlviz.core.learner import Learner
from mamlviz.training import hub
from mamlviz.training.problems import get_problem


def top_eigenvalue(learner: Learner, theta: Params, support: Examples, seed: int) -> float:
    """Largest-magnitude Hessian eigenvalue of the support loss (power iteration)."""
    g = torch.Generator().manual_seed(seed)
    v = {n: torch.randn(w.shape, generator=g, dtype=w.dtype) for n, w in theta.items()}
    value = 0.0
    for _ in range(30):
        norm = torch.sqrt(sum((x**2).sum() for x in v.values()))
        v = {n: x / norm for n, x in v.items()}
        hv = hvp(learner.loss, theta, support, v)
        value = float(sum((hv[n] * v[n]).sum() for n in v))
        v = hv
    return value


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("checkpoints", nargs="+")
    parser.add_argument("--tasks", type=int, default=200)
    args = parser.parse_args()
    torch.set_num_threads(1)
    for name in args.checkpoints:
        loaded = hub.load(name)
        config = loaded.config
        tasks = get_problem(config.problem).make_tasks("train")
        episode = tasks.sample(torch.Generator().manual_seed(5), config.shots, 1, args.tasks)
        learner = loaded.learner()
        values = sorted(
            top_eigenvalue(learner, loaded.meta, episode.task(i).support, i)
            for i in range(args.tasks)
        )
        median, p99 = values[len(values) // 2], values[int(0.99 * (len(values) - 1))]
        print(f"{name}: median {median:.1f}, 99th percentile {p99:.1f}, max {values[-1]:.1f}")


if __name__ == "__main__":
    main()
