"""Omniglot for the notebooks: load a meta-trained net, draw a meta-test task, adapt, predict.

>>> demo = load_demo("omniglot-maml-5w1s")
>>> episode = demo.sample(seed=7)                # one 5-way task from the 423 test characters
>>> result = demo.adapt(episode, steps=3)        # inner loop from the meta-learned theta
>>> result.accuracy                              # query accuracy after 0, 1, 2, 3 steps

Everything after loading is one task on the CPU: a few forward/backward passes of a small conv
net, a few milliseconds each, so a widget can call it on every slider move. The first
``sample`` loads the Omniglot images (from the preprocessed cache after the first time).
BatchNorm uses the statistics of the set it sees (transductive, as in MAML).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field, replace
from typing import Any

import torch
from torch import Tensor

from mamlviz.core.episode import Episode
from mamlviz.core.functional import Params, call
from mamlviz.core.inner import Trajectory
from mamlviz.core.learner import Learner
from mamlviz.errors import check_range
from mamlviz.tasks import TaskDistribution
from mamlviz.training import checkpoint as ckpt
from mamlviz.training import hub
from mamlviz.training.evaluate import check_data, checkpoint_settings
from mamlviz.training.problems import get_problem


@dataclass
class Adapted:
    """What one adaptation did: per step k = 0..steps, the fast weights' query predictions."""

    probabilities: Tensor  # [steps + 1, query examples, ways]
    predictions: Tensor  # [steps + 1, query examples], arg-max labels
    accuracy: list[float]  # query accuracy after k steps
    support_loss: list[float]  # support loss before step k (and after the last)
    fast: Params  # phi after the last step


@dataclass
class OmniglotDemo:
    """A meta-trained Omniglot learner with its evaluation settings (``shots``, ``inner_lr``).

    ``tasks`` is the meta-test task distribution of the problem registry (the same sampler that
    training and evaluation use); it loads the images on the first ``sample``.
    """

    checkpoint: hub.Checkpoint
    meta: Params
    inner_lr: float
    shots: int
    inner_batch: int | None = None
    metadata: dict[str, Any] = field(default_factory=dict)
    tasks: TaskDistribution | None = None

    @property
    def model(self) -> torch.nn.Module:
        return self.checkpoint.model

    def learner(self, inner_lr: float | None = None) -> Learner:
        """The checkpoint's learner at ``inner_lr`` (default: the evaluation's), adapting on
        the evaluation's support minibatches (``inner_batch``; None: the whole support)."""
        learner = self.checkpoint.learner(inner_lr=self.inner_lr if inner_lr is None else inner_lr)
        return replace(learner, inner_batch=self.inner_batch)

    def sample(self, seed: int = 0, shots: int | None = None, query_shots: int = 1) -> Episode:
        """One meta-test task (no task axis), drawn from ``seed``; ``shots`` defaults to the
        checkpoint's own evaluation shots."""
        check_range("seed", seed, 0, 2**63 - 1, integer=True)
        if self.tasks is None:
            self.tasks = get_problem("omniglot").make_tasks("test")
            check_data(self.checkpoint, self.tasks)
        generator = torch.Generator().manual_seed(int(seed))
        shots = self.shots if shots is None else shots
        return self.tasks.sample(generator, shots, query_shots, 1).task(0)

    def adapt(self, episode: Episode, steps: int = 3, inner_lr: float | None = None) -> Adapted:
        """``steps`` inner steps of the learner's own rule on the support set from theta, and
        the query predictions after each step."""
        check_range("steps", steps, 0, 100, integer=True)
        learner = self.learner(inner_lr)
        fast, frozen, rule_params = learner.split(dict(self.meta))
        trajectory = Trajectory()
        with torch.no_grad():  # torch.func.grad inside adapt still works; no graph is kept
            phi = learner.inner_loop(
                fast,
                frozen,
                rule_params,
                episode.support,
                steps=steps,
                first_order=True,
                record=trajectory.record,
            )
            logits = torch.stack(
                [call(self.model, {**p, **frozen}, episode.query.x) for p in trajectory.fast]
            )
        probabilities = logits.softmax(-1)
        predictions = logits.argmax(-1)
        accuracy = (predictions == episode.query.y).double().mean(-1).tolist()
        return Adapted(probabilities, predictions, accuracy, trajectory.losses, phi)


def load_demo(name_or_path: str | os.PathLike[str] = "omniglot-maml-5w1s") -> OmniglotDemo:
    """Load and verify an Omniglot checkpoint (shipped or a training run's file)."""
    loaded = hub.load(name_or_path)
    if loaded.config.problem != "omniglot":
        raise ckpt.CheckpointError(
            loaded.path, f"not an Omniglot checkpoint ({loaded.config.problem!r})"
        )
    settings = checkpoint_settings(loaded)
    inner_lr = settings.get("inner_lr")
    inner_lr = loaded.config.inner_lr if inner_lr is None else inner_lr
    return OmniglotDemo(
        loaded,
        {n: w.detach() for n, w in loaded.meta.items()},
        float(inner_lr),
        int(settings["shots"]),
        settings.get("inner_batch"),
        loaded.metadata,
    )
