"""Episodes: the support and query examples of one task (or of a meta-batch of tasks).

An ``Episode`` holds two ``Examples`` pairs. For a single task the tensors have shape
``[n, ...]``; for a meta-batch they carry a leading task axis, ``[tasks, n, ...]``, so that
``torch.func.vmap`` can map over it (both are pytrees of tensors).
"""

from __future__ import annotations

from typing import NamedTuple

from torch import Tensor


class Examples(NamedTuple):
    """Inputs ``x`` and targets ``y`` of a set of examples."""

    x: Tensor
    y: Tensor


class Episode(NamedTuple):
    """One task: ``support`` adapts the fast weights, ``query`` evaluates them."""

    support: Examples
    query: Examples

    def task(self, i: int) -> Episode:
        """Task ``i`` of a meta-batch episode (drops the leading task axis)."""
        return Episode(
            Examples(self.support.x[i], self.support.y[i]),
            Examples(self.query.x[i], self.query.y[i]),
        )

    @property
    def num_tasks(self) -> int:
        """Size of the leading task axis of a meta-batch episode."""
        return int(self.support.x.shape[0])
