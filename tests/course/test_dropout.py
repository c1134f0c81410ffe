"""Chapter 10's Meta-Dropout helpers: the noise map is the noise net's softplus(a), fits under a
noise draw are reproducible and differ between draws, averaging draws shrinks their spread, noise
off is MAML's adaptation; the main widget moves with its sliders."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from mamlviz.algorithms import make_learner
from mamlviz.core.functional import call
from mamlviz.course import dropout as dr
from mamlviz.models import sinusoid_mlp
from mamlviz.models.convnet import ConvNet
from mamlviz.models.noise_conv import MetaDropoutConvNet
from mamlviz.tasks.sinusoid import SinusoidTasks
from mamlviz.training import hub


@pytest.fixture(scope="module")
def shipped():
    return hub.load("sinusoid-metadropout-10shot"), hub.load("sinusoid-maml")


def task(seed: int = 3):
    return SinusoidTasks().sample(torch.Generator().manual_seed(seed), 10, 20, 1).task(0)


def test_noise_map_is_softplus_of_the_noise_net(shipped) -> None:
    md, _ = shipped
    model, meta = md.learner().model, md.meta
    x = torch.linspace(-5, 5, 7).view(-1, 1)
    maps = dr.noise_multipliers(model, meta, x)
    a1 = F.linear(x, meta["noise.fc1.weight"], meta["noise.fc1.bias"])
    torch.testing.assert_close(maps["fc1"], F.softplus(a1))
    h1 = torch.relu(F.linear(x, meta["fc1.weight"], meta["fc1.bias"]) * F.softplus(a1))
    a2 = F.linear(h1, meta["noise.fc2.weight"], meta["noise.fc2.bias"])
    torch.testing.assert_close(maps["fc2"], F.softplus(a2))
    conv = MetaDropoutConvNet.from_convnet(ConvNet(5, filters=4))
    maps = dr.noise_multipliers(conv, dict(conv.named_parameters()), torch.rand(3, 1, 28, 28))
    assert [tuple(m.shape) for m in maps.values()] == [(3, 4, s, s) for s in (14, 7, 4, 2)]
    torch.testing.assert_close(
        maps["conv1"], torch.full_like(maps["conv1"], F.softplus(torch.tensor(0.0)))
    )
    with pytest.raises(ValueError, match="Meta-Dropout model"):
        dr.noise_multipliers(sinusoid_mlp(), {}, x)


def test_fits_are_reproducible_per_draw_and_differ_between_draws(shipped) -> None:
    md, _ = shipped
    episode, x = task(), torch.linspace(-5, 5, 11).view(-1, 1)
    state = torch.get_rng_state()
    a = dr.adapted_fits(md.learner(), md.meta, episode, x, [4, 5])
    b = dr.adapted_fits(md.learner(), md.meta, episode, x, [5])
    assert torch.equal(torch.get_rng_state(), state)  # the caller's RNG is left alone
    torch.testing.assert_close(a[1], b[0], rtol=0, atol=0)
    assert (a[0] - a[1]).abs().max() > 1e-3
    # averaging 30 draws per step: the spread over draws shrinks
    one = dr.adapted_fits(md.learner(), md.meta, episode, x, range(10))
    many = dr.adapted_fits(md.learner(samples=30), md.meta, episode, x, range(10))
    assert many.var(0).mean() < 0.2 * one.var(0).mean()
    with pytest.raises(ValueError, match="draws"):
        dr.adapted_fits(md.learner(), md.meta, episode, x, [])


def test_noise_off_fits_are_mamls_adaptation(shipped) -> None:
    md, _ = shipped
    episode, x = task(5), torch.linspace(-5, 5, 11).view(-1, 1)
    off = dr.adapted_fits(md.learner(noise="off"), md.meta, episode, x, [0, 1])
    torch.testing.assert_close(off[0], off[1], rtol=0, atol=0)  # no noise: every draw alike
    base = {n: w for n, w in md.meta.items() if not n.startswith("noise.")}
    maml = make_learner("maml", sinusoid_mlp(), "mse", inner_lr=md.config.inner_lr, inner_steps=1)
    fast, frozen, rule = maml.split(base)
    phi = maml.inner_loop(fast, frozen, rule, episode.support)
    torch.testing.assert_close(off[0], call(maml.model, phi, x), rtol=1e-6, atol=1e-6)


def test_explorer_moves_with_its_sliders_and_recovers_the_task(shipped) -> None:
    from mamlviz.course.viz.dropout import DropoutExplorer

    md, maml = shipped
    w = DropoutExplorer(md, maml)
    before, fit = w.text.value, list(w.fig.data[-4].y)
    w.draw.value = 3
    assert w.text.value != before and list(w.fig.data[-4].y) != fit
    w.samples.value = 30
    assert "averaged over 30 draws" in w.text.value and w.status.message == ""
    episode = w.episode(11)
    amplitude, phase = w.truth(episode)
    torch.testing.assert_close(
        amplitude * torch.sin(episode.query.x - phase), episode.query.y, rtol=1e-4, atol=1e-4
    )


NOISY_MISTAKES = {
    "zeros": lambda mu, a, eps: torch.zeros_like(mu),
    "input unchanged": lambda mu, a, eps: mu,
    "no noise (the query forward)": lambda mu, a, eps: mu * F.softplus(a),
    "exp for softplus": lambda mu, a, eps: mu * torch.exp(a + eps),
    "added, not multiplied": lambda mu, a, eps: mu + F.softplus(a + eps),
    "wrong sign of the noise": lambda mu, a, eps: mu * F.softplus(a - eps),
}


@pytest.mark.parametrize("mistake", sorted(NOISY_MISTAKES))
def test_noisy_layer_checker_rejects_the_usual_mistakes(mistake: str, capsys) -> None:
    from mamlviz.course import exercises_dropout as ex

    assert ex.check_noisy_layer(NOISY_MISTAKES[mistake]) is False
    assert capsys.readouterr().out.startswith("wrong:")


def test_noisy_layer_checker_accepts_the_model_and_says_not_done(capsys) -> None:
    from mamlviz.course import exercises_dropout as ex
    from mamlviz.models.noise import multiplier

    assert ex.check_noisy_layer(ex.reference_noisy_layer) is True
    # the package's own multiplier, with the same draw, is the right answer
    assert ex.check_noisy_layer(lambda mu, a, eps: mu * multiplier(a + eps, "mean", False))

    def stub(*args):
        raise NotImplementedError("exercise")

    assert ex.check_noisy_layer(stub) is False
    assert "not done yet" in capsys.readouterr().out
