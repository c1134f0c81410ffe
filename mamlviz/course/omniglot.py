"""Omniglot for the notebooks: load a meta-trained net, draw a meta-test task, adapt, predict.

>>> demo = load_demo("omniglot-maml-5w1s")
>>> episode = demo.sample(seed=7)                # one 5-way task from the 423 test characters
>>> result = demo.adapt(episode, steps=3)        # inner loop from the meta-learned theta
>>> result.accuracy                              # query accuracy after 0, 1, 2, 3 steps

Everything after loading is one task on the CPU: a few forward/backward passes of a small conv
net, a few milliseconds each, so a widget can call it on every slider move. The first
``sample`` loads the Omniglot images (from the preprocessed cache after the first time).
BatchNorm uses the statistics of the set it sees, so by default the query set is predicted as
one batch (transductive, as in MAML's code): each query image's prediction depends on the other
query images through the normalisation statistics. ``adapt(..., transductive=False)`` predicts
every query image in a batch of its own (no query example informs another);
``with_support=True`` puts it in a batch with the support set instead, as Reptile's code does
for its non-transductive rows (Nichol et al. 2018, sec. 6 and Table 2).
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
            self.tasks = get_problem(self.checkpoint.config.problem).make_tasks("test")
            check_data(self.checkpoint, self.tasks)
        generator = torch.Generator().manual_seed(int(seed))
        shots = self.shots if shots is None else shots
        return self.tasks.sample(generator, shots, query_shots, 1).task(0)

    def adapt(
        self,
        episode: Episode,
        steps: int = 3,
        inner_lr: float | None = None,
        *,
        transductive: bool = True,
        with_support: bool = False,
    ) -> Adapted:
        """``steps`` inner steps of the learner's own rule on the support set from theta, and
        the query predictions after each step.

        The adaptation is the same in every mode; only how the query set is fed to the adapted
        net differs (see :func:`query_logits`): ``transductive=True`` (default) as one batch,
        ``False`` one example at a time, alone or (``with_support``) after the support set.
        """
        check_range("steps", steps, 0, 100, integer=True)
        trajectory, frozen = self.trajectory(episode, steps, inner_lr)
        with torch.no_grad():
            logits = torch.stack(
                [
                    query_logits(
                        self.model,
                        {**p, **frozen},
                        episode,
                        transductive=transductive,
                        with_support=with_support,
                    )
                    for p in trajectory.fast
                ]
            )
        probabilities = logits.softmax(-1)
        predictions = logits.argmax(-1)
        accuracy = (predictions == episode.query.y).double().mean(-1).tolist()
        return Adapted(probabilities, predictions, accuracy, trajectory.losses, trajectory.fast[-1])

    def trajectory(
        self, episode: Episode, steps: int, inner_lr: float | None = None
    ) -> tuple[Trajectory, Params]:
        """The fast weights after 0..``steps`` inner steps on the support set, and the frozen
        (not adapted) parameters."""
        check_range("steps", steps, 0, 100, integer=True)
        learner = self.learner(inner_lr)
        fast, frozen, rule_params = learner.split(dict(self.meta))
        trajectory = Trajectory()
        with torch.no_grad():  # torch.func.grad inside adapt still works; no graph is kept
            learner.inner_loop(
                fast,
                frozen,
                rule_params,
                episode.support,
                steps=steps,
                first_order=True,
                record=trajectory.record,
            )
        return trajectory, frozen


MODES = ("transductive", "alone", "with support")


def query_logits(
    model: torch.nn.Module,
    params: Params,
    episode: Episode,
    *,
    transductive: bool = True,
    with_support: bool = False,
) -> Tensor:
    """Logits [query examples, ways] of the adapted net on the query set, fed in one of three
    ways. With batch-statistics normalisation the batch is part of the input:

    * ``transductive=True``: the whole query set is one batch (MAML's and iMAML's evaluation;
      Nichol et al. 2018 label such rows "+ Transduction");
    * ``transductive=False``: each query example in a batch of one, so its normalisation uses
      only its own feature maps (spatial statistics) and no query example informs another;
    * ``transductive=False, with_support=True``: each query example in a batch with the support
      set, its logits read from the last row (Reptile's non-transductive evaluation).

    The per-example modes are ``torch.func.vmap`` over the query examples, equal to a loop
    that calls the net once per example (tested).
    """
    query = episode.query.x
    if transductive:
        return call(model, params, query)
    support = episode.support.x

    def one(x: Tensor) -> Tensor:
        batch = torch.cat([support, x.unsqueeze(0)]) if with_support else x.unsqueeze(0)
        return call(model, params, batch)[-1]

    return torch.func.vmap(one)(query)


def mode_accuracy(
    demo: OmniglotDemo, seeds: range | list[int], steps: int = 3
) -> dict[str, Tensor]:
    """Query accuracy after ``steps`` inner steps on the meta-test tasks drawn from ``seeds``,
    per task, for each way of feeding the query set (:data:`MODES`): the same tasks and the same
    adapted weights for every mode, so the differences are the normalisation's alone."""
    flags = {
        "transductive": dict(transductive=True),
        "alone": dict(transductive=False),
        "with support": dict(transductive=False, with_support=True),
    }
    out: dict[str, list[float]] = {mode: [] for mode in MODES}
    for seed in seeds:
        episode = demo.sample(seed)
        trajectory, frozen = demo.trajectory(episode, steps)
        params = {**trajectory.fast[-1], **frozen}
        with torch.no_grad():
            for mode in MODES:
                logits = query_logits(demo.model, params, episode, **flags[mode])
                out[mode].append(float((logits.argmax(-1) == episode.query.y).double().mean()))
    return {mode: torch.tensor(v, dtype=torch.float64) for mode, v in out.items()}


def load_demo(name_or_path: str | os.PathLike[str] = "omniglot-maml-5w1s") -> OmniglotDemo:
    """Load and verify an Omniglot checkpoint (shipped or a training run's file)."""
    loaded = hub.load(name_or_path)
    if not loaded.config.problem.startswith("omniglot"):
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
