"""Accuracy of an Omniglot checkpoint on the 100 VALIDATION characters (never meta-test).

    MAMLVIZ_OMNIGLOT=path/to/omniglot python scripts/validate_omniglot.py RUN.pt --shots 5 \\
        [--tasks 300] [--inner-batch 25] [--inner-lr 0.2] [--steps 50]

Model selection for the Omniglot rows in the README (when to stop a run, Reptile's inner
optimiser and test-time minibatch) used this script only; the 600 meta-test episodes of
``python -m mamlviz evaluate`` played no part. Defaults: the problem's evaluation settings for
the checkpoint's algorithm, query shots = shots, seed 7.
"""

from __future__ import annotations

import argparse
import dataclasses

import torch

from mamlviz.training import hub
from mamlviz.training.evaluate import evaluate
from mamlviz.training.problems import get_problem


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("checkpoint")
    parser.add_argument("--shots", type=int, default=1)
    parser.add_argument("--tasks", type=int, default=600)
    parser.add_argument("--steps", type=int, default=None)
    parser.add_argument("--inner-batch", type=int, default=None)
    parser.add_argument("--inner-lr", type=float, default=None)
    args = parser.parse_args()
    torch.set_num_threads(1)
    loaded = hub.load(args.checkpoint)
    settings = get_problem("omniglot").eval_settings(loaded.config.algorithm)
    learner = loaded.learner(inner_lr=args.inner_lr)
    batch = args.inner_batch if args.inner_batch is not None else settings.get("inner_batch")
    learner = dataclasses.replace(learner, inner_batch=batch)
    result = evaluate(
        learner,
        loaded.meta,
        get_problem("omniglot").make_tasks("val"),
        metric="accuracy",
        shots=args.shots,
        query_shots=args.shots,
        tasks=args.tasks,
        steps=settings["steps"] if args.steps is None else args.steps,
        seed=7,
    )
    iteration = loaded.metadata.get("iteration")
    print(f"{args.checkpoint} (iteration {iteration}), validation characters:")
    print(result.table())


if __name__ == "__main__":
    main()
