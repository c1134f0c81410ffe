"""The record of a meta-training run, :class:`History`: loss curves and meta-parameter snapshots.

Not tied to one chapter: :func:`mamlviz.training.train.fit` writes it into checkpoints, and
:mod:`mamlviz.training.hub` subsamples it for the shipped ones (``Checkpoint.history``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch

from mamlviz.core.functional import Params
from mamlviz.errors import check_range


@dataclass(eq=False)
class History:
    """What happened during meta-training, for plots and for widgets that scrub through it.

    ``loss[j]`` and ``grad_norm[j]`` are the mean query loss over the meta-batch and the norm of
    the averaged meta-gradient at outer iteration ``iterations[j]`` (before its update).
    ``snapshots[j]`` are the meta-parameters after ``snapshot_iterations[j]`` updates (0 = init).
    ``every`` > 1 marks a subsampled history (shipped checkpoints keep every 100th iteration).
    """

    iterations: list[int] = field(default_factory=list)
    loss: list[float] = field(default_factory=list)
    grad_norm: list[float] = field(default_factory=list)
    snapshot_iterations: list[int] = field(default_factory=list)
    snapshots: list[Params] = field(default_factory=list)
    every: int = 1

    def record(self, iteration: int, loss: float, grad_norm: float) -> None:
        self.iterations.append(iteration)
        self.loss.append(loss)
        self.grad_norm.append(grad_norm)

    def snapshot(self, iteration: int, meta: Params) -> None:
        self.snapshot_iterations.append(iteration)
        self.snapshots.append({n: w.detach().clone() for n, w in meta.items()})

    def __len__(self) -> int:
        return len(self.iterations)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, History):
            return NotImplemented
        same = [
            (self.iterations, other.iterations),
            (self.loss, other.loss),
            (self.grad_norm, other.grad_norm),
            (self.snapshot_iterations, other.snapshot_iterations),
            (self.every, other.every),
        ]
        return (
            all(a == b for a, b in same)
            and len(self.snapshots) == len(other.snapshots)
            and all(
                a.keys() == b.keys() and all(torch.equal(a[n], b[n]) for n in a)
                for a, b in zip(self.snapshots, other.snapshots, strict=True)
            )
        )

    def subsample(self, every: int, snapshot_every: int | None = None) -> History:
        """Every ``every``-th iteration (and the last); snapshots every ``snapshot_every``-th
        iteration (and the last; all of them if ``None``)."""
        check_range("every", every, 1, integer=True)
        keep = [j for j, it in enumerate(self.iterations) if it % every == 0 or j == len(self) - 1]
        snaps = self.snapshot_iterations
        kept = [
            j
            for j, it in enumerate(snaps)
            if snapshot_every is None or it % snapshot_every == 0 or j == len(snaps) - 1
        ]
        return History(
            [self.iterations[j] for j in keep],
            [self.loss[j] for j in keep],
            [self.grad_norm[j] for j in keep],
            [snaps[j] for j in kept],
            [self.snapshots[j] for j in kept],
            every * self.every,
        )

    def to_tensors(self) -> dict[str, Any]:
        """Tensors for a checkpoint (float64 holds the Python floats exactly)."""
        names = self.snapshots[0].keys() if self.snapshots else []
        return {
            "iterations": torch.tensor(self.iterations, dtype=torch.int64),
            "loss": torch.tensor(self.loss, dtype=torch.float64),
            "grad_norm": torch.tensor(self.grad_norm, dtype=torch.float64),
            "snapshot_iterations": torch.tensor(self.snapshot_iterations, dtype=torch.int64),
            "snapshots": {n: torch.stack([s[n] for s in self.snapshots]) for n in names},
            "every": torch.tensor(self.every),
        }

    @classmethod
    def from_tensors(cls, t: dict[str, Any]) -> History:
        count = len(t["snapshot_iterations"])
        return cls(
            t["iterations"].tolist(),
            t["loss"].tolist(),
            t["grad_norm"].tolist(),
            t["snapshot_iterations"].tolist(),
            [{n: s[j] for n, s in t["snapshots"].items()} for j in range(count)],
            int(t["every"]),
        )
