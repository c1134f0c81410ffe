r"""A drifting stream of sinusoid task families, for continual learning (MER).

Family t = 0 .. families-1 draws sinusoids y = A sin(x - \phi) with amplitude and phase from
ranges that slide along with t, so consecutive families overlap in the kind of function they
ask for (transfer is possible) while the stream never returns to an old one (forgetting is
measurable). The input is (x, A, \phi): the task descriptor is visible, as the rotation angle is
implicitly visible in MER's Rotated MNIST, so one network can in principle fit every family and
what it loses over the stream is forgetting, not ambiguity. Each family contributes
``examples_per_family`` consecutive examples, then never appears again.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from mamlviz.core.episode import Examples
from mamlviz.errors import check_range


@dataclass(frozen=True)
class DriftingSinusoids:
    """``families`` task families; family t has amplitude in ``amplitude_t`` and phase in
    ``phase_t``: windows of relative width ``width`` sliding linearly across the full ranges.
    """

    families: int = 5
    examples_per_family: int = 200
    amplitude: tuple[float, float] = (0.5, 5.0)
    phase: tuple[float, float] = (0.0, math.pi)
    width: float = 0.4
    x_range: tuple[float, float] = (-5.0, 5.0)

    def __post_init__(self) -> None:
        check_range("families", self.families, 1, integer=True)
        check_range("examples_per_family", self.examples_per_family, 1, integer=True)
        check_range("width", self.width, 0.0, 1.0, low_open=True)

    def window(self, family: int, bounds: tuple[float, float]) -> tuple[float, float]:
        """The sub-range of ``bounds`` that family ``family`` samples from."""
        check_range("family", family, 0, self.families - 1, integer=True)
        lo, hi = bounds
        span = (hi - lo) * self.width
        start = lo + (hi - lo - span) * (family / max(self.families - 1, 1))
        return start, start + span

    def sample_family(
        self, family: int, n: int, generator: torch.Generator, dtype: torch.dtype = torch.float32
    ) -> Examples:
        """``n`` examples of ``family``: inputs ``[n, 3]`` = (x, A, phase), targets ``[n, 1]``."""
        check_range("n", n, 1, integer=True)
        u = torch.rand(3, n, generator=generator, dtype=dtype)
        (a0, a1), (p0, p1) = self.window(family, self.amplitude), self.window(family, self.phase)
        x = self.x_range[0] + (self.x_range[1] - self.x_range[0]) * u[0]
        amp, phase = a0 + (a1 - a0) * u[1], p0 + (p1 - p0) * u[2]
        y = amp * torch.sin(x - phase)
        return Examples(torch.stack([x, amp, phase], dim=-1), y.unsqueeze(-1))

    def stream(
        self, generator: torch.Generator, dtype: torch.dtype = torch.float32
    ) -> tuple[Examples, torch.Tensor]:
        """All stream examples in order, and the family index of each."""
        parts = [
            self.sample_family(t, self.examples_per_family, generator, dtype)
            for t in range(self.families)
        ]
        family = torch.arange(self.families).repeat_interleave(self.examples_per_family)
        return Examples(torch.cat([p.x for p in parts]), torch.cat([p.y for p in parts])), family

    def test_sets(
        self, generator: torch.Generator, n: int = 200, dtype: torch.dtype = torch.float32
    ) -> list[Examples]:
        """A held-out set of ``n`` examples per family, for the end-of-stream metrics."""
        return [self.sample_family(t, n, generator, dtype) for t in range(self.families)]
