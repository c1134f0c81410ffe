r"""Rotated Omniglot: a continual-learning stream of rotation tasks, after MER's Rotated MNIST.

Riemer et al. 2019 (MER, sec. 5.1) evaluate continual learning on MNIST Rotations: task t shows
the same ten digits rotated by a fixed angle \alpha_t, tasks arrive one after another and never
return, and a single network (MLP 784-100-100-10) must classify all of them at the end. Here
the digits are replaced by ``classes`` Omniglot characters drawn (seeded) from the standard
meta-TRAINING split, without the 90-degree-rotated copies used for meta-learning. Task t is

    (R_{\alpha_t} x, c)   for a drawing x of character c,   \alpha_t = a_0 + t (a_1 - a_0) / T

for t = 0 .. T-1 (``tasks``; ``angles = (a_0, a_1)`` in degrees, [0, 180) by default, so the
angles are spread evenly and a_1 itself is excluded). R_\alpha rotates counterclockwise about
the image centre (bilinear, zero padding; multiples of 90 degrees are exact pixel permutations).
Each character's 20 drawings are split by drawer: the first ``stream_drawings`` feed the
stream, the rest are held out, so the test sets measure generalisation to unseen hands. The
stream shows ``examples_per_task`` examples of task 0 (classes balanced, shuffled), then of
task 1, and so on. Inputs are flattened to 784 floats in [0, 1] (ink = 1), targets are class
ids 0 .. classes-1. The metrics of the stream (final accuracy, backward transfer, learning
accuracy) are those of Lopez-Paz & Ranzato 2017 (GEM), as used by MER.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from mamlviz.core.episode import Examples
from mamlviz.errors import check_range
from mamlviz.tasks.omniglot import make_split
from mamlviz.tasks.omniglot_data import DRAWINGS, SIZE, OmniglotArrays


def rotate(images: Tensor, degrees: float) -> Tensor:
    """``images`` ``[..., H, W]`` rotated counterclockwise by ``degrees`` about their centre.

    Multiples of 90 degrees use ``torch.rot90``: bilinear resampling at those angles is exact
    only up to float rounding (~3e-6 in float32), and the permutation keeps task 0 the raw
    pixels. Other angles use ``affine_grid`` + ``grid_sample`` with zero padding (no torchvision).
    """
    quarter = degrees / 90.0
    if quarter.is_integer():
        return torch.rot90(images, int(quarter) % 4, dims=(-2, -1))
    a = math.radians(degrees)
    flat = images.reshape(-1, 1, *images.shape[-2:])
    # The output pixel p samples the input at R(a) p (normalised coordinates, y pointing down),
    # which turns the picture counterclockwise; it agrees with torch.rot90 at 90 degrees (tested).
    theta = torch.tensor(
        [[math.cos(a), -math.sin(a), 0.0], [math.sin(a), math.cos(a), 0.0]], dtype=images.dtype
    ).expand(flat.shape[0], 2, 3)
    grid = F.affine_grid(theta, list(flat.shape), align_corners=False)
    out = F.grid_sample(flat, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    return out.reshape(images.shape)


def choose_characters(arrays: OmniglotArrays, classes: int, seed: int) -> Tensor:
    """``classes`` distinct character ids of the standard meta-training split, drawn by ``seed``
    (the split's own characters only: no 90-degree-rotated copies)."""
    train = make_split(arrays).classes("train")
    check_range("classes", classes, 2, len(train), integer=True)
    pick = torch.randperm(len(train), generator=torch.Generator().manual_seed(seed))[:classes]
    return train[pick]


@dataclass(frozen=True, eq=False)
class RotatedOmniglot:
    """The stream over ``images`` (uint8 ``[classes, 20, 28, 28]``, ink 255): see the module doc.

    Build it from the dataset with :meth:`from_arrays`; ``images`` may be any such tensor (the
    tests use synthetic ones).
    """

    images: Tensor
    tasks: int = 10
    examples_per_task: int = 100
    angles: tuple[float, float] = (0.0, 180.0)
    stream_drawings: int = 15

    def __post_init__(self) -> None:
        if self.images.dtype != torch.uint8 or tuple(self.images.shape[1:]) != (
            DRAWINGS,
            SIZE,
            SIZE,
        ):
            raise ValueError(
                f"images must be uint8 [classes, {DRAWINGS}, {SIZE}, {SIZE}], got "
                f"{self.images.dtype} {tuple(self.images.shape)}"
            )
        check_range("classes", self.classes, 2, integer=True)
        check_range("tasks", self.tasks, 1, integer=True)
        check_range("examples_per_task", self.examples_per_task, 1, integer=True)
        check_range("stream_drawings", self.stream_drawings, 1, DRAWINGS - 1, integer=True)
        lo, hi = self.angles
        check_range("angles[0]", lo, -360.0, 360.0)
        check_range("angles[1]", hi, lo, lo + 360.0, low_open=True)

    @classmethod
    def from_arrays(
        cls, arrays: OmniglotArrays, classes: int = 10, seed: int = 0, **kwargs: object
    ) -> RotatedOmniglot:
        """The stream over ``classes`` meta-training characters chosen with ``seed``."""
        ids = choose_characters(arrays, classes, seed)
        return cls(arrays.images[ids], **kwargs)  # type: ignore[arg-type]

    @property
    def classes(self) -> int:
        return int(self.images.shape[0])

    def angle(self, task: int) -> float:
        """Rotation of ``task`` in degrees: ``a_0 + task (a_1 - a_0) / tasks``."""
        check_range("task", task, 0, self.tasks - 1, integer=True)
        lo, hi = self.angles
        return lo + task * (hi - lo) / self.tasks

    def _examples(
        self, task: int, drawings: Tensor, n: int, generator: torch.Generator, dtype: torch.dtype
    ) -> Examples:
        """``n`` examples of ``task`` from ``drawings`` (indices): labels as balanced as possible
        (counts differ by at most one), each class cycling through a random order of its
        drawings, so no drawing repeats before all have been used; then shuffled."""
        c, d = self.classes, len(drawings)
        i = torch.arange(n)
        label, occurrence = i % c, i // c
        # Which classes get the leftover n % c examples is random, not always the first ones.
        label = torch.randperm(c, generator=generator)[label]
        order = torch.rand(c, d, generator=generator).argsort(-1)
        drawing = drawings[order[label, occurrence % d]]
        shuffle = torch.randperm(n, generator=generator)
        label, drawing = label[shuffle], drawing[shuffle]
        pixels = self.images[label, drawing].to(dtype) / 255
        x = rotate(pixels, self.angle(task)).clamp(0.0, 1.0).reshape(n, SIZE * SIZE)
        return Examples(x, label)

    def stream(
        self, generator: torch.Generator, dtype: torch.dtype = torch.float32
    ) -> tuple[Examples, Tensor]:
        """All stream examples in order (``x`` ``[T n, 784]``, ``y`` int64), and each one's task."""
        drawings = torch.arange(self.stream_drawings)
        parts = [
            self._examples(t, drawings, self.examples_per_task, generator, dtype)
            for t in range(self.tasks)
        ]
        task = torch.arange(self.tasks).repeat_interleave(self.examples_per_task)
        return Examples(torch.cat([p.x for p in parts]), torch.cat([p.y for p in parts])), task

    def test_sets(
        self, generator: torch.Generator, n: int | None = None, dtype: torch.dtype = torch.float32
    ) -> list[Examples]:
        """One held-out set per task from the held-out drawings. ``n=None``: every held-out
        drawing of every class once (``classes x (20 - stream_drawings)``), in shuffled order."""
        held_out = torch.arange(self.stream_drawings, DRAWINGS)
        size = self.classes * len(held_out) if n is None else n
        check_range("n", size, 1, integer=True)
        return [self._examples(t, held_out, size, generator, dtype) for t in range(self.tasks)]
