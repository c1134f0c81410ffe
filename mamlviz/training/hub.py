"""Shipped checkpoints for the notebooks: ``hub.load("sinusoid-maml").learner()``.

The files in ``mamlviz/checkpoints/`` are made from training runs by :func:`export`: meta-params,
the history at every 100th iteration with snapshots every 5,000th, and the full metadata
(config, exact command, wall time, hardware, evaluation). They hold no optimiser or RNG state, so
they cannot be resumed; the training runs under ``runs/`` can.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from mamlviz.algorithms import make_learner
from mamlviz.core.functional import Params
from mamlviz.core.learner import Learner
from mamlviz.training import checkpoint as ckpt
from mamlviz.training.config import TrainConfig, build
from mamlviz.training.evaluate import Evaluation
from mamlviz.training.history import History
from mamlviz.training.problems import get_problem

SHIPPED = Path(__file__).resolve().parents[1] / "checkpoints"


def available() -> list[str]:
    """Names of the shipped checkpoints, e.g. ``"sinusoid-maml"``."""
    return sorted(p.stem for p in SHIPPED.glob("*.pt"))


@dataclass
class Checkpoint:
    """A loaded checkpoint: ``model`` holds the meta weights; ``meta`` adds the rule's tensors."""

    path: str
    config: TrainConfig
    model: nn.Module
    meta: Params
    history: History | None
    evaluation: Evaluation | None
    metadata: dict[str, Any]

    def learner(
        self, inner_lr: float | None = None, inner_steps: int | None = None, **options: Any
    ) -> Learner:
        """The algorithm's ``Learner`` on ``model``; settings default to the training config.

        Evaluate or adapt with ``meta`` (not ``learner.init_meta()``), which holds the learned
        rule tensors such as Meta-SGD's step sizes.
        """
        c = self.config
        return make_learner(
            c.algorithm,
            self.model,
            get_problem(c.problem).loss,
            inner_lr=c.inner_lr if inner_lr is None else inner_lr,
            inner_steps=c.inner_steps if inner_steps is None else inner_steps,
            **{**c.options, **options},
        )


def resolve(name_or_path: str | os.PathLike[str]) -> Path:
    """The file of a shipped name, or the path itself if it is a file."""
    if str(name_or_path) in available():
        return SHIPPED / f"{name_or_path}.pt"
    path = Path(name_or_path)
    if path.is_file():
        return path
    shipped = ", ".join(available()) or "none"
    raise ValueError(f"checkpoint must be a shipped name ({shipped}) or a file, got {path}")


def load(name_or_path: str | os.PathLike[str]) -> Checkpoint:
    """Load and verify a checkpoint; raises ``CheckpointError`` if it does not fit its model."""
    path = resolve(name_or_path)
    data = ckpt.load(path)
    try:
        config = TrainConfig.from_dict(data.metadata["config"])
        saved: Params = data.tensors["meta"]
    except (KeyError, TypeError, ValueError) as err:
        raise ckpt.CheckpointError(path, f"metadata or tensors are incomplete ({err})") from err
    learner, init = build(config)
    ckpt.check_params(path, saved, init)
    meta = {n: saved[n].to(init[n].dtype) for n in init}
    with torch.no_grad():
        for name, p in learner.model.named_parameters():
            p.copy_(meta[name])
    history = History.from_tensors(data.tensors["history"]) if "history" in data.tensors else None
    evaluation = data.metadata.get("evaluation")
    if evaluation:
        per_task = data.tensors.get("evaluation_per_task")
        evaluation = Evaluation(**evaluation, per_task=per_task)
    else:
        evaluation = None
    return Checkpoint(str(path), config, learner.model, meta, history, evaluation, data.metadata)


def export(
    run: str | os.PathLike[str],
    out: str | os.PathLike[str],
    *,
    history_every: int = 100,
    snapshot_every: int = 5000,
) -> None:
    """A small shippable copy of training checkpoint ``run``: no optimiser or RNG state; the
    history kept every ``history_every``-th iteration, snapshots every ``snapshot_every``-th."""
    data = ckpt.load(run)
    full = History.from_tensors(data.tensors["history"])
    history = full.subsample(history_every, snapshot_every)
    shipped = {"history_every": history_every, "snapshot_every": snapshot_every}
    metadata = {**data.metadata, "shipped": {**shipped, "resumable": False}}
    metadata.pop("evaluation", None)  # evaluate the shipped file itself (evaluate --write)
    tensors = {"meta": data.tensors["meta"], "history": history.to_tensors()}
    ckpt.save(out, metadata, tensors)
