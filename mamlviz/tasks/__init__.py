"""Task distributions: each one samples ``Episode`` objects from an explicit generator.

One sampler per task family, all of the :class:`TaskDistribution` form: sinusoids
(:class:`mamlviz.tasks.sinusoid.SinusoidTasks`), Omniglot
(:class:`mamlviz.tasks.omniglot.OmniglotTasks`, with its data in ``omniglot_data``), and the
continual-learning streams (``stream``, ``rotated_omniglot``) that MER reads one example at a
time.
"""

from __future__ import annotations

from typing import Protocol

import torch

from mamlviz.core.episode import Episode, Examples


class TaskDistribution(Protocol):
    """What training, evaluation and the notebooks need from a task distribution."""

    def sample(
        self,
        generator: torch.Generator,
        shots: int,
        query_shots: int,
        meta_batch: int,
        dtype: torch.dtype = torch.float32,
    ) -> Episode: ...


__all__ = ["Episode", "Examples", "TaskDistribution"]
