"""Models: stock ``nn.Module`` objects, run functionally with fast weights.

``MLP`` is the MAML paper's sinusoid regressor (1-40-40-1, ReLU). Parameter names
(``fc1.weight`` ...) appear in widgets and checkpoints, so they are spelled out.
"""

from __future__ import annotations

import itertools

import torch
from torch import Tensor, nn

from mamlviz.errors import check_range


class MLP(nn.Module):
    """Fully connected net ``in -> hidden[0] -> ... -> out`` with ReLU, as in MAML's sinusoid.

    PyTorch's default (Kaiming-uniform) init is used rather than the TF code's truncated normal
    with std 0.01: both train, and the default keeps the ReLU features alive from step one.
    """

    def __init__(
        self, in_features: int = 1, hidden: tuple[int, ...] = (40, 40), out_features: int = 1
    ):
        super().__init__()
        check_range("in_features", in_features, 1, integer=True)
        check_range("out_features", out_features, 1, integer=True)
        for h in hidden:
            check_range("hidden", h, 1, integer=True)
        sizes = (in_features, *hidden)
        for i, (a, b) in enumerate(itertools.pairwise(sizes), start=1):
            self.add_module(f"fc{i}", nn.Linear(a, b))
        self.out = nn.Linear(sizes[-1], out_features)
        self.hidden = tuple(hidden)

    def forward(self, x: Tensor) -> Tensor:
        for i in range(1, len(self.hidden) + 1):
            x = torch.relu(getattr(self, f"fc{i}")(x))
        return self.out(x)


def sinusoid_mlp(seed: int = 0, dtype: torch.dtype = torch.float32) -> MLP:
    """The MAML sinusoid network 1-40-40-1, initialised from ``seed``."""
    with torch.random.fork_rng(devices=[]):  # leave the caller's global RNG untouched
        torch.manual_seed(seed)
        return MLP().to(dtype)
