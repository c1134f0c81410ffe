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
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from mamlviz import checkpoint as ckpt
from mamlviz.convnet import ConvNet, omniglot_convnet
from mamlviz.errors import check_range
from mamlviz.functional import Params, call, make_loss
from mamlviz.inner import Trajectory, adapt
from mamlviz.rules import SGD
from mamlviz.tasks.episode import Episode
from mamlviz.tasks.omniglot_problem import WAYS, OmniglotSplitTasks

SHIPPED = Path(__file__).resolve().parent / "checkpoints"


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
    """A meta-trained Omniglot net with its training settings and evaluation (metadata)."""

    model: ConvNet
    meta: Params
    inner_lr: float
    shots: int
    metadata: dict[str, Any] = field(default_factory=dict)
    tasks: OmniglotSplitTasks = field(default_factory=lambda: OmniglotSplitTasks("test"))

    def sample(self, seed: int = 0, shots: int | None = None, query_shots: int = 1) -> Episode:
        """One meta-test task (no task axis): ``WAYS`` characters, drawn from ``seed``."""
        check_range("seed", seed, 0, 2**63 - 1, integer=True)
        generator = torch.Generator().manual_seed(int(seed))
        shots = self.shots if shots is None else shots
        return self.tasks.sample(generator, shots, query_shots, 1).task(0)

    def adapt(self, episode: Episode, steps: int = 3, inner_lr: float | None = None) -> Adapted:
        """``steps`` SGD steps on the support set from theta; predictions after each step."""
        check_range("steps", steps, 0, 100, integer=True)
        rule = SGD(self.inner_lr if inner_lr is None else inner_lr)
        trajectory = Trajectory()
        with torch.no_grad():  # torch.func.grad inside adapt still works; no graph is kept
            fast = adapt(
                make_loss(self.model, "cross_entropy"),
                dict(self.meta),
                episode.support,
                rule,
                steps,
                first_order=True,
                record=trajectory.record,
            )
            logits = torch.stack([call(self.model, p, episode.query.x) for p in trajectory.fast])
        probabilities = logits.softmax(-1)
        predictions = logits.argmax(-1)
        accuracy = (predictions == episode.query.y).double().mean(-1).tolist()
        return Adapted(probabilities, predictions, accuracy, trajectory.losses, fast)


def resolve(name_or_path: str | os.PathLike[str]) -> Path:
    """The file of a shipped checkpoint name (``omniglot-maml-5w1s``), or the path itself."""
    shipped = SHIPPED / f"{name_or_path}.pt"
    if shipped.is_file():
        return shipped
    path = Path(name_or_path)
    if path.is_file():
        return path
    names = ", ".join(sorted(p.stem for p in SHIPPED.glob("omniglot-*.pt"))) or "none"
    raise ValueError(f"checkpoint must be a shipped name ({names}) or a file, got {path}")


def load_demo(name_or_path: str | os.PathLike[str] = "omniglot-maml-5w1s") -> OmniglotDemo:
    """Load and verify an Omniglot checkpoint (shipped or a training run's file)."""
    path = resolve(name_or_path)
    data = ckpt.load(path)
    config = data.metadata.get("config", {})
    if config.get("problem") != "omniglot":
        raise ckpt.CheckpointError(path, f"not an Omniglot checkpoint ({config.get('problem')!r})")
    model = omniglot_convnet(WAYS)
    meta = {n: w.detach() for n, w in model.named_parameters()}
    ckpt.check_params(path, data.tensors["meta"], meta)
    with torch.no_grad():
        for n, w in meta.items():
            w.copy_(data.tensors["meta"][n])
    return OmniglotDemo(model, meta, float(config["inner_lr"]), int(config["shots"]), data.metadata)
