"""The MAML Omniglot network (Finn et al. 2017, sec. 5.2; Vinyals et al. 2016).

Four blocks of [3x3 conv with 64 filters, BatchNorm, ReLU], then a linear head with ``ways``
outputs. Two variants:

* ``pool=False`` (MAML's Omniglot net): stride-2 convolutions, 28 -> 14 -> 7 -> 4 -> 2, then the
  spatial mean of the 64 feature maps (as the MAML code does) feeds the head;
* ``pool=True`` (MAML's MiniImagenet net, also common for Omniglot): stride-1 convolutions each
  followed by a 2x2 max-pool, 28 -> 14 -> 7 -> 3 -> 1, then flatten (64 features).

BatchNorm always uses the statistics of the batch it sees and keeps no running averages:
support and query sets are normalised with their own statistics at meta-train AND meta-test
time. This is the "transductive" setting of MAML and iMAML (Reptile's Table 2 labels MAML's
Omniglot rows "+ Transduction").

Why BatchNorm is written out from basic ops (:class:`BatchStatNorm`) instead of
``F.batch_norm``: DESIGN.md reports that ``torch.func.vmap`` over tasks gives silently wrong
second-order meta-gradients through ``F.batch_norm``. We re-measured it (float64, torch 2.13
CPU, vmap vs per-task loop, MAML and FOMAML, 1 and 2 inner steps, random BN scale/shift): on
THIS network (4-D input, ``BatchNorm2d(track_running_stats=False)``, strided and max-pool) the
paths agreed to ~1e-14, so we could not reproduce it here; but ``BatchNorm1d`` on a 2-D
[N, C] input under vmap gave meta-gradients off by O(1) relative, even first order, while
``LayerNorm`` agreed. Written from basic ops, the normalisation is exact under every
transform by construction, so the vmap path does not depend on a batching rule being right.
(:mod:`mamlviz.core.stacked`, which uses no vmap, calls the fused ``F.batch_norm``: faster, and
tested equal to this module's per-task loop.) The convolution bias is dropped: BatchNorm
subtracts each channel's mean, so a bias before it has exactly zero gradient and no effect.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from mamlviz.errors import check_range

BLOCKS = 4

Scale = Callable[[int, Tensor], Tensor]  # (block index from 1, block input) -> factor on conv out


class BatchStatNorm(nn.Module):
    """Per-channel normalisation with the batch's own statistics, then scale and shift.

    ``y = (x - mean) / sqrt(var + eps) * weight + bias``, mean and (biased) variance over every
    axis except the channel axis 1. Plain tensor ops, so every ``torch.func`` transform
    (vmap, grad of grad) differentiates it exactly.
    """

    def __init__(self, channels: int, eps: float = 1e-5) -> None:
        super().__init__()
        check_range("channels", channels, 1, integer=True)
        check_range("eps", eps, 0.0, low_open=True)
        self.weight = nn.Parameter(torch.ones(channels))
        self.bias = nn.Parameter(torch.zeros(channels))
        self.eps = eps

    def forward(self, x: Tensor) -> Tensor:
        return batch_stat_norm(x, self.weight, self.bias, self.eps)


def batch_stat_norm(x: Tensor, weight: Tensor, bias: Tensor, eps: float = 1e-5) -> Tensor:
    """Functional form of :class:`BatchStatNorm` for ``x`` shaped [N, C, ...]."""
    dims = [0, *range(2, x.dim())]
    var, mean = torch.var_mean(x, dim=dims, correction=0, keepdim=True)
    shape = [1, -1] + [1] * (x.dim() - 2)
    scale = weight.view(shape) * torch.rsqrt(var + eps)  # fold the scale: one multiply on x
    return (x - mean) * scale + bias.view(shape)


class ConvNet(nn.Module):
    """MAML's 4-block conv net for ``channels`` x ``size`` x ``size`` images and ``ways`` classes.

    Parameter names (``conv1.weight``, ``norm1.weight``, ``norm1.bias``, ..., ``head.weight``,
    ``head.bias``) are what checkpoints and :mod:`mamlviz.core.stacked` use.
    """

    def __init__(
        self,
        ways: int,
        *,
        channels: int = 1,
        filters: int = 64,
        pool: bool = False,
        size: int = 28,
    ) -> None:
        super().__init__()
        check_range("ways", ways, 2, integer=True)
        check_range("channels", channels, 1, integer=True)
        check_range("filters", filters, 1, integer=True)
        check_range("size", size, 16 if pool else 1, integer=True)
        self.ways, self.pool, self.size = int(ways), bool(pool), int(size)
        ins = [channels] + [filters] * (BLOCKS - 1)
        for i, c in enumerate(ins, start=1):
            self.add_module(f"conv{i}", nn.Conv2d(c, filters, 3, self.stride, 1, bias=False))
            self.add_module(f"norm{i}", BatchStatNorm(filters))
        self.head = nn.Linear(filters, ways)
        for i in range(1, BLOCKS + 1):  # Xavier, as the MAML code initialises its conv filters
            nn.init.xavier_uniform_(getattr(self, f"conv{i}").weight)

    def features(self, x: Tensor, scale: Scale | None = None) -> Tensor:
        """The 4 conv blocks and the spatial reduction: [N, C, H, W] -> [N, filters].

        ``scale(i, h)``, when given, returns a factor for block i's convolution output, computed
        from the block's input ``h`` (Meta-Dropout's noise, :mod:`mamlviz.models.noise_conv`).
        """
        if x.dim() != 4:
            raise ValueError(f"x must have shape [N, C, H, W], got {tuple(x.shape)}")
        for i in range(1, BLOCKS + 1):
            mu = getattr(self, f"conv{i}")(x)
            if scale is not None:
                mu = mu * scale(i, x)
            x = torch.relu(getattr(self, f"norm{i}")(mu))
            if self.pool:
                x = F.max_pool2d(x, 2)
        return x.flatten(1) if self.pool else x.mean(dim=(2, 3))

    @property
    def stride(self) -> int:
        return 1 if self.pool else 2

    def stacked_forward(self, params: dict[str, Tensor], x: Tensor, noisy: bool = False) -> Tensor:
        """T copies of this network at once: ``params`` [T, ...], ``x`` [T, N, C, H, W]."""
        return stacked_logits(self, params, x)

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.features(x))


def omniglot_convnet(
    ways: int, *, pool: bool = False, seed: int = 0, dtype: torch.dtype = torch.float32
) -> ConvNet:
    """The MAML Omniglot net for ``ways`` classes, initialised from ``seed``."""
    with torch.random.fork_rng(devices=[]):  # leave the caller's global RNG untouched
        torch.manual_seed(seed)
        return ConvNet(ways, pool=pool).to(dtype)


def stacked_logits(
    net: ConvNet, params: dict[str, Tensor], x: Tensor, scale: Scale | None = None
) -> Tensor:
    """Logits [T, N, ways] of T task networks (``params`` [T, ...]) on ``x`` [T, N, C, H, W].

    The T networks run as ONE network with tasks stacked on the channel axis
    (:mod:`mamlviz.core.stacked` explains why and how). ``scale`` as in ``ConvNet.features``,
    but on the stacked layout [N, T*C, H, W].
    """
    if x.dim() != 5:
        raise ValueError(f"x must have shape [tasks, N, C, H, W], got {tuple(x.shape)}")
    tasks, n = x.shape[:2]
    h = x.transpose(0, 1).reshape(n, -1, *x.shape[3:])  # channels task-major: [N, T*C, H, W]
    # Channels-last: the grouped convolutions and their backward run ~2x faster on CPU (oneDNN).
    h = h.contiguous(memory_format=torch.channels_last)
    for i in range(1, BLOCKS + 1):
        w = params[f"conv{i}.weight"]
        mu = F.conv2d(h, w.reshape(-1, *w.shape[2:]), stride=net.stride, padding=1, groups=tasks)
        h = mu if scale is None else mu * scale(i, h)
        norm = getattr(net, f"norm{i}")
        weight, bias = params[f"norm{i}.weight"].reshape(-1), params[f"norm{i}.bias"].reshape(-1)
        # The fused kernel (and its double backward) is exact here, as no vmap is involved, and
        # ~1.5x faster than the basic-op form at these sizes: elementwise passes dominate.
        h = F.batch_norm(h, None, None, weight, bias, training=True, eps=norm.eps)
        h = torch.relu(h)
        if net.pool:
            h = F.max_pool2d(h, 2)
    h = h.flatten(2) if net.pool else h.flatten(2).mean(2, keepdim=True)  # [N, T*F, 1]
    feats = h.reshape(n, tasks, -1)  # [N, T, F]
    logits = torch.einsum("ntf,twf->tnw", feats, params["head.weight"])
    return logits + params["head.bias"].unsqueeze(1)
