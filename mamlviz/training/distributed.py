r"""Devices and data-parallel meta-training over processes (``torchrun``).

The meta-gradient is a mean over the tasks of a meta-batch, so it splits across processes
without approximation (as in the MAML code's multi-GPU runs and learn2learn's examples):

    g = (1 / B) \sum_{r} \sum_{i \in shard_r} g_i,

each rank computing the per-task meta-gradients of its contiguous shard of the SAME meta-batch
(every rank samples the whole meta-batch from the same generator state: sampling is cheap and
the ranks never disagree on the tasks), then one all-reduce of the shard sums. Every rank then
takes the same Adam step, so the meta-parameters stay identical without a broadcast; rank 0
alone writes checkpoints and prints. A run under ``torchrun --nproc-per-node N`` therefore ends
with the weights of a one-process run to float rounding (tested with gloo and 2 processes), and
resumes from its checkpoint like any run.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import Tensor

from mamlviz.core.episode import Episode, Examples
from mamlviz.core.functional import Params
from mamlviz.core.learner import Learner

DEVICES = ("auto", "cpu", "cuda")
Gradient = Callable[[Learner, Params, Episode], tuple[Params, Tensor]]


@dataclass(frozen=True)
class World:
    """This process's place among the training processes (rank 0 of 1 without torchrun)."""

    rank: int = 0
    size: int = 1

    @property
    def main(self) -> bool:
        return self.rank == 0


def current() -> World:
    """The world of this process: its rank in the torchrun group, or rank 0 of 1."""
    if dist.is_available() and dist.is_initialized():
        return World(dist.get_rank(), dist.get_world_size())
    return World()


def resolve_device(name: str) -> torch.device:
    """``auto`` (CUDA when available, else CPU), ``cpu`` or ``cuda``; under torchrun, CUDA is
    the GPU of this process's ``LOCAL_RANK``."""
    if name not in DEVICES:
        raise ValueError(f"device must be one of {DEVICES}, got {name!r}")
    if name == "cuda" and not torch.cuda.is_available():
        raise ValueError(
            "device cuda: no CUDA device is available to this torch (torch.cuda.is_available()"
            " is False; the pinned torch is the CPU build): use --device cpu or auto"
        )
    if name == "cpu" or (name == "auto" and not torch.cuda.is_available()):
        return torch.device("cpu")
    return torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0)))


def setup(device: torch.device) -> World:
    """Join the process group that ``torchrun`` describes (env ``WORLD_SIZE`` > 1), with NCCL
    on CUDA and gloo on CPU; a plain process is rank 0 of 1."""
    size = int(os.environ.get("WORLD_SIZE", "1"))
    if size == 1:
        return World()
    if not dist.is_initialized():
        if device.type == "cuda":
            torch.cuda.set_device(device)
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    return World(dist.get_rank(), dist.get_world_size())


def teardown() -> None:
    if dist.is_initialized():
        dist.destroy_process_group()


def shard_bounds(tasks: int, world: World) -> tuple[int, int]:
    """``[start, stop)`` of this rank's contiguous share of ``tasks`` (the first ``tasks % size``
    ranks take one more)."""
    if tasks < world.size:
        raise ValueError(
            f"meta_batch must be at least the number of processes ({world.size}), got {tasks}"
        )
    base, extra = divmod(tasks, world.size)
    start = world.rank * base + min(world.rank, extra)
    return start, start + base + (world.rank < extra)


def take_tasks(episode: Episode, start: int, stop: int) -> Episode:
    """Tasks ``start:stop`` of a meta-batch episode."""
    return Episode(*(Examples(e.x[start:stop], e.y[start:stop]) for e in episode))


def to_device(episode: Episode, device: torch.device) -> Episode:
    return Episode(*(Examples(e.x.to(device), e.y.to(device)) for e in episode))


def sharded(gradient: Gradient, world: World) -> Gradient:
    """``gradient`` (mean meta-gradient and per-task losses of an episode) computed on this
    rank's shard and combined over all ranks: the full meta-batch's mean and losses."""

    def combined(learner: Learner, meta: Params, episode: Episode) -> tuple[Params, Tensor]:
        total = episode.num_tasks
        start, stop = shard_bounds(total, world)
        failed: BaseException | None = None
        try:
            grads, losses = gradient(learner, meta, take_tasks(episode, start, stop))
        except Exception as err:  # every rank must learn of it, or the others wait forever
            failed, grads, losses = err, {n: torch.zeros_like(w) for n, w in meta.items()}, None
        flag = torch.tensor([float(failed is not None)], device=next(iter(meta.values())).device)
        dist.all_reduce(flag)
        if failed is not None:
            raise failed
        if float(flag) > 0:
            raise RuntimeError("another training process failed at this meta-iteration")
        names = sorted(grads)
        flat = torch.cat([grads[n].reshape(-1) * (stop - start) for n in names])
        every = torch.zeros(total, dtype=flat.dtype, device=flat.device)
        every[start:stop] = losses
        packed = torch.cat([flat, every])
        dist.all_reduce(packed)  # one message: the shard sums and every task's loss
        out, offset = {}, 0
        for n in names:
            size = grads[n].numel()
            out[n] = packed[offset : offset + size].view_as(grads[n]) / total
            offset += size
        return out, packed[offset:]

    return combined
