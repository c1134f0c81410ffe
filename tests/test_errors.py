"""Bad input gives a clear error naming the argument and the allowed range."""

from __future__ import annotations

import math

import pytest
import torch

from mamlviz.algorithms import make_learner
from mamlviz.core.functional import make_loss, params_of
from mamlviz.core.inner import adapt
from mamlviz.core.rules import SGD
from mamlviz.errors import DivergenceError
from mamlviz.models import sinusoid_mlp
from mamlviz.tasks.sinusoid import SinusoidTasks


@pytest.mark.parametrize("bad", [-0.1, math.nan, math.inf, -math.inf])
def test_inner_lr_must_be_finite_and_non_negative(bad: float) -> None:
    with pytest.raises(ValueError, match=r"inner_lr must be .*\[0, inf\)"):
        make_learner("maml", sinusoid_mlp(), "mse", inner_lr=bad, inner_steps=1)


@pytest.mark.parametrize("bad", [-1, 1.5])
def test_inner_steps_must_be_a_non_negative_integer(bad: float) -> None:
    with pytest.raises(ValueError, match="inner_steps"):
        make_learner("maml", sinusoid_mlp(), "mse", inner_lr=0.01, inner_steps=bad)  # type: ignore[arg-type]


@pytest.mark.parametrize("argument", ["shots", "query_shots", "meta_batch"])
def test_counts_must_be_at_least_one(argument: str) -> None:
    kwargs = {"shots": 5, "query_shots": 5, "meta_batch": 2, argument: 0}
    with pytest.raises(ValueError, match=rf"{argument} must be in \[1, inf\)"):
        SinusoidTasks().sample(torch.Generator().manual_seed(0), **kwargs)


def test_unknown_algorithm_lists_the_known_ones() -> None:
    with pytest.raises(ValueError, match=r"algorithm must be one of: .*maml.*reptile.*'mamal'"):
        make_learner("mamal", sinusoid_mlp(), "mse", inner_lr=0.01, inner_steps=1)


def test_unknown_loss() -> None:
    with pytest.raises(ValueError, match="loss must be one of"):
        make_loss(sinusoid_mlp(), "hinge")


def test_divergence_names_the_inner_step() -> None:
    model = sinusoid_mlp()
    episode = SinusoidTasks().sample(torch.Generator().manual_seed(0), 10, 10, 1).task(0)
    with pytest.raises(
        DivergenceError, match=r"diverged: loss is (NaN|infinite) at inner step \d+"
    ):
        adapt(
            make_loss(model, "mse"),
            params_of(model),
            episode.support,
            SGD(1e6),
            10,
            check_finite=True,
        )
