"""Score the weight snapshots of sinusoid training runs on held-out VALIDATION tasks.

Fine-tuning 5 shots at inner_lr 0.01 for 10 steps runs away on a few tasks for some MAML
inits (they sit near the edge of stability). This prints, for every snapshot, how many of
6,000 validation tasks (seed 99, apart from the evaluation seed) end above MSE 5 or non-finite,
and the mean MSE after 1 / 5 / 10 steps, so a snapshot can be chosen without looking at the
600 evaluation tasks:

    .venv/bin/python scripts/validate_snapshots.py runs/seeds/maml-s1.pt [more runs ...]
"""

from __future__ import annotations

import sys

import torch

from mamlviz.training import hub
from mamlviz.training.evaluate import metric_curves
from mamlviz.training.problems import get_problem

VALIDATION_SEED, TASKS, START = 99, 6000, 15000


def main() -> None:
    torch.set_num_threads(1)
    generator = torch.Generator().manual_seed(VALIDATION_SEED)
    episode = get_problem("sinusoid").make_tasks("test").sample(generator, 5, 100, TASKS)
    for path in sys.argv[1:]:
        run = hub.load(path)
        learner = run.learner(inner_lr=0.01)
        snapshots = zip(run.history.snapshot_iterations, run.history.snapshots, strict=True)
        for it, snapshot in snapshots:
            if it < START:
                continue
            curves = metric_curves(learner, snapshot, episode, 10)
            ok = torch.isfinite(curves[:, 10]) & (curves[:, 10] < 5)
            mean = curves.mean(0)
            print(
                f"{path} {it:6d}  runaway {int((~ok).sum()):3d}/{TASKS}"
                f"  mean 1/5/10: {[round(float(mean[k]), 3) for k in (1, 5, 10)]}",
                flush=True,
            )


if __name__ == "__main__":
    main()
