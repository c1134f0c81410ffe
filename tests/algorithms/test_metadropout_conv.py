"""Meta-Dropout on the Omniglot conv net (noise on the conv features), in float64.

The stacked path equals the loop in ``tests/core/test_convnet.py``; here: what the noise net
does and does not change, and that noise off is exactly MAML.
"""

from __future__ import annotations

import pytest
import torch

from mamlviz.algorithms import make_learner
from mamlviz.core import stacked
from mamlviz.core.episode import Episode, Examples
from mamlviz.core.functional import call
from mamlviz.core.outer import meta_gradient
from mamlviz.models.convnet import ConvNet
from mamlviz.models.noise import NOISE_PREFIX
from mamlviz.models.noise_conv import MetaDropoutConvNet

TASKS, WAYS = 2, 3


def net() -> ConvNet:
    torch.manual_seed(0)
    return ConvNet(WAYS, filters=6).double()


def episode() -> Episode:
    g = torch.Generator().manual_seed(2)

    def examples() -> Examples:
        x = torch.rand(TASKS, WAYS * 2, 1, 28, 28, generator=g, dtype=torch.float64)
        y = torch.arange(WAYS).repeat_interleave(2).expand(TASKS, -1).contiguous()
        return Examples(x, y)

    return Episode(examples(), examples())


def test_a_zero_noise_net_leaves_the_query_forward_the_base_nets() -> None:
    """softplus(0) is a per-channel constant that batch norm divides out (up to its eps)."""
    base = net()
    wrapped = MetaDropoutConvNet.from_convnet(base)
    assert all(float(w.detach().abs().sum()) == 0 for w in wrapped.noise.parameters())
    x = torch.rand(5, 1, 28, 28, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    torch.testing.assert_close(wrapped(x), base(x), rtol=0, atol=1e-4)
    moved = MetaDropoutConvNet.from_convnet(base)
    with torch.no_grad():
        for w in moved.noise.parameters():
            w.normal_(0, 0.5)
    assert (moved(x) - base(x)).abs().max() > 1e-2  # an input-dependent factor is not divided out


def test_support_forward_is_noisy_and_the_query_forward_is_not() -> None:
    model = MetaDropoutConvNet.from_convnet(net())
    x = torch.rand(4, 1, 28, 28, dtype=torch.float64)
    torch.manual_seed(1)
    a, b = model(x, noisy=True), model(x, noisy=True)
    assert (a - b).abs().max() > 1e-3
    torch.testing.assert_close(model(x), model(x), rtol=0, atol=0)
    # stacked: the noise-free forward of task t is task t's forward; the noisy one differs
    params = stacked.stack(dict(model.named_parameters()), TASKS)
    xs = x.expand(TASKS, *x.shape)
    clean = model.stacked_forward(params, xs)
    for t in range(TASKS):
        torch.testing.assert_close(clean[t], model(x), rtol=1e-12, atol=1e-12)
    noisy = model.stacked_forward(params, xs, noisy=True)
    assert (noisy - clean).abs().max() > 1e-3
    assert (noisy[0] - noisy[1]).abs().max() > 1e-3  # every task draws its own noise


@pytest.mark.parametrize("path", ["loop", "stacked"])
def test_noise_off_is_exactly_maml(path: str) -> None:
    ep = episode()
    maml = make_learner("maml", net(), "cross_entropy", inner_lr=0.4, inner_steps=2)
    off = make_learner(
        "metadropout", net(), "cross_entropy", inner_lr=0.4, inner_steps=2, noise="off"
    )
    assert isinstance(off.model, MetaDropoutConvNet)
    meta = off.init_meta()
    if path == "loop":
        got, _ = meta_gradient(off, meta, ep, batched=False)
        want, _ = meta_gradient(maml, maml.init_meta(), ep, batched=False)
    else:
        got, _ = stacked.meta_gradient(off, meta, ep)
        want, _ = stacked.meta_gradient(maml, maml.init_meta(), ep)
    for n, g in want.items():
        torch.testing.assert_close(got[n], g, rtol=1e-13, atol=1e-15)
    assert all(float(got[n].abs().max()) == 0 for n in got if n.startswith(NOISE_PREFIX))


def test_the_noise_net_is_learned_through_the_support_loss_only() -> None:
    """Sampled noise: the noise net gets a meta-gradient, and it is never adapted."""
    learner = make_learner("metadropout", net(), "cross_entropy", inner_lr=0.4, inner_steps=1)
    meta = learner.init_meta()
    _, frozen, _ = learner.split(meta)
    assert set(frozen) == {n for n in meta if n.startswith(NOISE_PREFIX)} and frozen
    torch.manual_seed(3)
    grads, _ = stacked.meta_gradient(learner, meta, episode())
    assert all(float(grads[n].abs().max()) > 0 for n in frozen)


def test_forward_of_a_trained_net_uses_the_stored_weights() -> None:
    base = net()
    wrapped = MetaDropoutConvNet.from_convnet(base, noise="off")
    x = torch.rand(3, 1, 28, 28, dtype=torch.float64)
    params = {n: w for n, w in wrapped.named_parameters()}
    torch.testing.assert_close(call(wrapped, params, x), base(x), rtol=1e-12, atol=1e-12)
    with pytest.raises(ValueError, match="noise must be"):
        MetaDropoutConvNet(WAYS, noise="loud")
