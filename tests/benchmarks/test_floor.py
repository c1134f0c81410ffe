"""The bench's floor (MAML in bare torch.func) computes exactly the package's meta-gradient, so
the ratio of their times is overhead, not different work."""

from __future__ import annotations

import pytest
import torch

from mamlviz.algorithms import make_learner
from mamlviz.benchmarks.floor import bare_meta_gradient
from mamlviz.core.functional import detach
from mamlviz.core.outer import meta_gradient
from mamlviz.models import sinusoid_mlp
from mamlviz.tasks.sinusoid import SinusoidTasks


@pytest.mark.parametrize(("algorithm", "steps"), [("maml", 1), ("maml", 3), ("fomaml", 2)])
def test_the_floor_equals_the_packages_meta_gradient_in_float64(algorithm: str, steps: int):
    model = sinusoid_mlp(0).double()
    learner = make_learner(algorithm, model, "mse", inner_lr=0.05, inner_steps=steps)
    meta = learner.init_meta()
    episode = SinusoidTasks().sample(torch.Generator().manual_seed(3), 5, 7, 4, torch.float64)
    want, want_losses = meta_gradient(learner, detach(meta), episode)
    got, losses = bare_meta_gradient(
        model, detach(meta), tuple(episode.support), tuple(episode.query), 0.05, steps,
        first_order=algorithm == "fomaml",
    )  # fmt: skip
    assert set(got) == set(want)
    for n in want:
        torch.testing.assert_close(got[n], want[n], rtol=1e-12, atol=1e-14)
    torch.testing.assert_close(losses, want_losses, rtol=1e-12, atol=1e-14)
    # and the orders differ where they should: FOMAML's floor is not MAML's
    other, _ = bare_meta_gradient(
        model, detach(meta), tuple(episode.support), tuple(episode.query), 0.05, steps,
        first_order=algorithm != "fomaml",
    )  # fmt: skip
    assert max(float((other[n] - want[n]).abs().max()) for n in want) > 1e-6
