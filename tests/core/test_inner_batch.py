"""Support minibatches in the inner loop (Reptile's Omniglot setup), in float64."""

from __future__ import annotations

import pytest
import torch

from mamlviz.algorithms import make_learner
from mamlviz.core import stacked
from mamlviz.core.episode import Episode, Examples
from mamlviz.core.functional import make_loss
from mamlviz.core.inner import adapt, minibatch
from mamlviz.core.outer import meta_gradient
from mamlviz.core.rules import SGD
from mamlviz.models import MLP
from mamlviz.models.convnet import ConvNet

TASKS, WAYS, SHOTS = 3, 5, 4


def class_major(tasks: int | None, shots: int) -> Examples:
    """Few-shot layout of the samplers: all drawings of class 0, then of class 1, ..."""
    y = torch.arange(WAYS).repeat_interleave(shots)
    x = torch.arange(WAYS * shots, dtype=torch.float64).view(-1, 1, 1, 1) * torch.ones(1, 1, 2, 2)
    if tasks is None:
        return Examples(x, y)
    return Examples(x.expand(tasks, *x.shape).clone(), y.expand(tasks, -1).clone())


def test_windows_hold_every_class_and_cover_the_support() -> None:
    support = class_major(None, SHOTS)
    seen = []
    for k in range(SHOTS * WAYS // 10):
        batch = minibatch(support, 10, k)
        assert batch.x.shape == (10, 1, 2, 2)
        # 10 of 5 classes: two of each, and x stays paired with its label
        assert torch.bincount(batch.y, minlength=WAYS).tolist() == [2] * WAYS
        assert torch.equal(batch.y, (batch.x[:, 0, 0, 0] // SHOTS).long())
        seen += batch.x[:, 0, 0, 0].long().tolist()
    assert sorted(seen) == list(range(WAYS * SHOTS))  # one pass uses each example once
    # windows wrap: step 2 of a 20-example support with batch 10 is step 0 again
    assert torch.equal(minibatch(support, 10, 2).x, minibatch(support, 10, 0).x)


def test_stacked_layout_and_floats() -> None:
    support = class_major(TASKS, SHOTS)
    for k in range(3):
        got = minibatch(support, 5, k)
        want = minibatch(Examples(support.x[0], support.y[0]), 5, k)
        for t in range(TASKS):
            assert torch.equal(got.x[t], want.x) and torch.equal(got.y[t], want.y)
    assert minibatch(support, 100, 0) is support
    regression = Examples(torch.zeros(6, 1), torch.zeros(6, 1))
    with pytest.raises(ValueError, match="class labels"):
        minibatch(regression, 4, 1)


def test_batch_of_whole_support_is_full_batch_and_differs_otherwise() -> None:
    torch.manual_seed(0)
    model = MLP(out_features=3, hidden=(8,)).double()
    loss = make_loss(model, "cross_entropy")
    theta = {n: w.detach() for n, w in model.named_parameters()}
    x = torch.randn(10, 1, dtype=torch.float64)
    y = torch.arange(3).repeat_interleave(4)[:10]
    support = Examples(x, y)
    full = adapt(loss, theta, support, SGD(0.1), 3)
    same = adapt(loss, theta, support, SGD(0.1), 3, inner_batch=10)
    part = adapt(loss, theta, support, SGD(0.1), 3, inner_batch=4)
    for n in theta:
        torch.testing.assert_close(same[n], full[n], rtol=0, atol=0)
    assert any(not torch.allclose(part[n], full[n]) for n in theta)
    # one step on window 0 by hand
    one = adapt(loss, theta, support, SGD(0.1), 1, inner_batch=4)
    window = minibatch(support, 4, 0)
    assert window.y.tolist() == [0, 1, 2, 0]
    g = torch.func.grad(loss)(theta, window)
    for n in theta:
        torch.testing.assert_close(one[n], theta[n] - 0.1 * g[n], rtol=1e-13, atol=1e-13)


def small_net() -> ConvNet:
    torch.manual_seed(0)
    return ConvNet(WAYS, filters=8).double()


def few_shot_episode() -> Episode:
    g = torch.Generator().manual_seed(3)
    support = class_major(TASKS, SHOTS)
    query = class_major(TASKS, 1)
    return Episode(
        Examples(torch.rand(TASKS, WAYS * SHOTS, 1, 28, 28, generator=g).double(), support.y),
        Examples(torch.rand(TASKS, WAYS, 1, 28, 28, generator=g).double(), query.y),
    )


@pytest.mark.parametrize("algorithm", ["maml", "reptile"])
def test_stacked_equals_vmap_equals_loop_with_minibatches(algorithm: str) -> None:
    options = {"inner_optimizer": "adam"} if algorithm == "reptile" else {}
    learner = make_learner(
        algorithm, small_net(), "cross_entropy", inner_lr=0.01, inner_steps=3,
        inner_batch=10, **options,
    )  # fmt: skip
    assert learner.inner_batch == 10
    meta, ep = learner.init_meta(), few_shot_episode()
    want, want_losses = meta_gradient(learner, meta, ep, batched=False)
    for got, losses in (meta_gradient(learner, meta, ep), stacked.meta_gradient(learner, meta, ep)):
        for n in want:
            torch.testing.assert_close(got[n], want[n], rtol=1e-10, atol=1e-12)
        torch.testing.assert_close(losses, want_losses, rtol=1e-12, atol=1e-12)
    # and the minibatches change the result
    full = make_learner(algorithm, small_net(), "cross_entropy", inner_lr=0.01, inner_steps=3,
                        **options)  # fmt: skip
    other, _ = meta_gradient(full, meta, ep, batched=False)
    assert any(not torch.allclose(other[n], want[n]) for n in want)


def test_bad_inner_batch() -> None:
    with pytest.raises(ValueError, match="inner_batch"):
        make_learner("maml", MLP(), "mse", inner_lr=0.1, inner_steps=1, inner_batch=0)
    with pytest.raises(ValueError, match="inner_batch"):
        minibatch(class_major(None, 2), 0, 0)
