r"""Sinusoid regression tasks (Finn et al. 2017, section 5.1).

A task is y = A sin(x - \phi) with amplitude A ~ U[0.1, 5.0] and phase \phi ~ U[0, \pi]; inputs
x ~ U[-5, 5]. (The Reptile paper uses phase in [0, 2\pi] and sin(x + b); numbers across papers
are therefore not directly comparable.) All randomness comes from an explicit generator.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

from mamlviz.core.episode import Episode, Examples
from mamlviz.errors import check_range


@dataclass(frozen=True)
class SinusoidTasks:
    """The task distribution p(T) over sinusoids, with the MAML paper's ranges as defaults."""

    amplitude: tuple[float, float] = (0.1, 5.0)
    phase: tuple[float, float] = (0.0, math.pi)
    x_range: tuple[float, float] = (-5.0, 5.0)

    def sample_tasks(
        self, generator: torch.Generator, meta_batch: int, dtype: torch.dtype = torch.float32
    ) -> tuple[Tensor, Tensor]:
        """Amplitudes and phases of ``meta_batch`` tasks, each of shape ``[meta_batch]``."""
        check_range("meta_batch", meta_batch, 1, integer=True)
        u = torch.rand(2, meta_batch, generator=generator, dtype=dtype)
        amp = self.amplitude[0] + (self.amplitude[1] - self.amplitude[0]) * u[0]
        phase = self.phase[0] + (self.phase[1] - self.phase[0]) * u[1]
        return amp, phase

    def sample_x(
        self, generator: torch.Generator, shape: tuple[int, ...], dtype: torch.dtype = torch.float32
    ) -> Tensor:
        """Inputs drawn uniformly from ``x_range``, with a trailing feature axis of size 1."""
        lo, hi = self.x_range
        return lo + (hi - lo) * torch.rand(*shape, 1, generator=generator, dtype=dtype)

    def episode(
        self,
        amplitude: Tensor,
        phase: Tensor,
        generator: torch.Generator,
        shots: int,
        query_shots: int,
    ) -> Episode:
        """Support and query sets for given task parameters (a meta-batch if they are vectors).

        Scalars give one task (shapes ``[shots, 1]``); vectors of length T give ``[T, shots, 1]``.
        """
        check_range("shots", shots, 1, integer=True)
        check_range("query_shots", query_shots, 1, integer=True)
        amplitude, phase = torch.as_tensor(amplitude), torch.as_tensor(phase)
        lead = tuple(amplitude.shape)
        x = self.sample_x(generator, (*lead, shots + query_shots), amplitude.dtype)
        a = amplitude.reshape(*lead, 1, 1)
        p = phase.reshape(*lead, 1, 1)
        y = a * torch.sin(x - p)
        return Episode(
            Examples(x[..., :shots, :], y[..., :shots, :]),
            Examples(x[..., shots:, :], y[..., shots:, :]),
        )

    def sample(
        self,
        generator: torch.Generator,
        shots: int,
        query_shots: int,
        meta_batch: int,
        dtype: torch.dtype = torch.float32,
    ) -> Episode:
        """A meta-batch of tasks: support ``[T, shots, 1]``, query ``[T, query_shots, 1]``."""
        amp, phase = self.sample_tasks(generator, meta_batch, dtype)
        return self.episode(amp, phase, generator, shots, query_shots)


def sinusoid(x: Tensor, amplitude: float, phase: float) -> Tensor:
    """The target function of one task, for plotting the ground truth."""
    return amplitude * torch.sin(x - phase)
