"""Meta-SGD, Meta-Curvature and Meta-Dropout: equivalences with MAML at neutral settings,
gradients of the meta-only parameters, finite differences, vmap == loop (float64)."""

from __future__ import annotations

import pytest
import torch

from mamlviz.algorithms import make_learner
from mamlviz.core.functional import flatten, unflatten
from mamlviz.core.metagrad import unrolled
from mamlviz.core.outer import meta_gradient, meta_step
from mamlviz.core.rules import Kronecker
from mamlviz.errors import DivergenceError
from mamlviz.models.noise import MetaDropoutMLP

pytestmark = pytest.mark.usefixtures("float64")


def assert_same_model_grads(g: dict, ref: dict) -> None:
    for name in ref:
        torch.testing.assert_close(g[name], ref[name], rtol=1e-12, atol=1e-13)


@pytest.mark.parametrize("algorithm", ["metasgd", "metacurv", "metadropout-off"])
@pytest.mark.parametrize("steps", [1, 2])
def test_neutral_settings_equal_maml(tiny_sinusoid, algorithm: str, steps: int) -> None:
    """Constant alpha, identity factors, noise off: theta-gradients are MAML's exactly."""
    model, episode = tiny_sinusoid()
    task = episode.task(0)
    maml = make_learner("maml", model, "mse", inner_lr=0.05, inner_steps=steps)
    name, opts = algorithm.split("-")[0], {"noise": "off"} if "off" in algorithm else {}
    variant = make_learner(name, model, "mse", inner_lr=0.05, inner_steps=steps, **opts)
    g_ref, loss_ref = unrolled(maml, maml.init_meta(), task)
    g, loss = unrolled(variant, variant.init_meta(), task)
    torch.testing.assert_close(loss, loss_ref, rtol=1e-12, atol=1e-13)
    assert_same_model_grads(g, g_ref)
    extra = [n for n in g if n not in g_ref]
    assert extra, "the variant has meta-only parameters"
    norms = {n: float(g[n].abs().max()) for n in extra}
    if name == "metadropout":  # noise off: the noise net does not touch any loss
        assert all(v == 0.0 for v in norms.values()), norms
    else:  # alpha and the curvature factors still receive a gradient
        assert all(v > 0.0 for v in norms.values()), norms


@pytest.mark.parametrize("noise", ["mean", "sample"])
def test_noise_net_gets_gradient_when_noise_is_on(tiny_sinusoid, noise: str) -> None:
    model, episode = tiny_sinusoid()
    learner = make_learner("metadropout", model, "mse", inner_lr=0.05, inner_steps=1, noise=noise)
    meta = learner.init_meta()
    _, frozen, _ = learner.split(meta)
    assert frozen and all(n.startswith("noise.") for n in frozen)
    torch.manual_seed(0)
    g, _ = unrolled(learner, meta, episode.task(0))
    for name in frozen:
        assert float(g[name].abs().max()) > 0.0, name


def test_noise_net_is_never_adapted(tiny_sinusoid) -> None:
    model, _ = tiny_sinusoid()
    learner = make_learner("metadropout", model, "mse", inner_lr=0.05, inner_steps=1)
    fast, frozen, rule = learner.split(learner.init_meta())
    assert not rule and set(fast) == {n for n, _ in model.named_parameters()}
    assert set(frozen) == {n for n in learner.init_meta() if n.startswith("noise.")}


@pytest.mark.parametrize(
    ("algorithm", "opts"),
    [("metacurv", {}), ("metadropout", {"noise": "mean"}), ("metasgd", {})],
)
def test_meta_gradient_matches_finite_differences(
    tiny_sinusoid, algorithm: str, opts: dict
) -> None:
    """Checks the gradients of the meta-only parameters too, at non-neutral values."""
    model, episode = tiny_sinusoid()
    task = episode.task(1)
    learner = make_learner(algorithm, model, "mse", inner_lr=0.05, inner_steps=2, **opts)
    gen = torch.Generator().manual_seed(3)
    meta = {
        n: w + 0.1 * torch.randn(w.shape, generator=gen) for n, w in learner.init_meta().items()
    }
    g, _ = unrolled(learner, meta, task)
    x, eps = flatten(meta), 1e-6

    def f(v: torch.Tensor) -> float:
        return float(unrolled(learner, unflatten(v, meta), task)[1])

    meta_only = [i for i, n in enumerate(n for n, w in meta.items() for _ in range(w.numel()))
                 if n.startswith(("rule.", "noise."))]  # fmt: skip
    idx = (
        torch.randperm(x.numel(), generator=gen)[:6].tolist()
        + meta_only[:: max(1, len(meta_only) // 6)]
    )
    for i in idx:
        e = torch.zeros_like(x)
        e[i] = eps
        fd = (f(x + e) - f(x - e)) / (2 * eps)
        torch.testing.assert_close(flatten(g)[i].item(), fd, atol=1e-7, rtol=1e-5)


@pytest.mark.parametrize(
    ("algorithm", "opts"),
    [("metacurv", {}), ("metadropout", {"noise": "mean"}), ("metadropout", {"noise": "off"})],
)
def test_vmap_path_equals_per_task_loop(tiny_sinusoid, algorithm: str, opts: dict) -> None:
    model, episode = tiny_sinusoid(seed=2, tasks=5)
    learner = make_learner(algorithm, model, "mse", inner_lr=0.03, inner_steps=2, **opts)
    meta = learner.init_meta()
    gb, lb = meta_gradient(learner, meta, episode, batched=True)
    gl, ll = meta_gradient(learner, meta, episode, batched=False)
    torch.testing.assert_close(lb, ll, rtol=1e-12, atol=1e-12)
    for name in meta:
        torch.testing.assert_close(gb[name], gl[name], rtol=1e-10, atol=1e-12)


def test_kronecker_is_the_kronecker_product_on_vec() -> None:
    """MC(G) = (M_out (x) M_in^T (x) M_f^T) vec(G) for conv weights (row-major vec)."""
    gen = torch.Generator().manual_seed(0)
    g = {"conv": torch.randn(3, 2, 2, 2, generator=gen), "fc": torch.randn(4, 3, generator=gen)}
    rule = Kronecker(0.1)
    params = {n: torch.randn(w.shape, generator=gen) for n, w in rule.init_params(g).items()}
    assert {n: tuple(w.shape) for n, w in params.items() if "conv" in n} == {
        "rule.mc_out.conv": (3, 3), "rule.mc_in.conv": (2, 2), "rule.mc_f.conv": (4, 4)
    }  # fmt: skip
    p = {r: params[f"rule.mc_{r}.conv"] for r in ("out", "in", "f")}
    big = torch.kron(torch.kron(p["out"], p["in"].T.contiguous()), p["f"].T.contiguous())
    mc = rule.precondition("conv", g["conv"], params)
    torch.testing.assert_close(mc.reshape(-1), big @ g["conv"].reshape(-1))
    fc = rule.precondition("fc", g["fc"], params)
    torch.testing.assert_close(fc, params["rule.mc_out.fc"] @ g["fc"] @ params["rule.mc_in.fc"])


def test_meta_dropout_samples_average_and_seed_reproducibility(tiny_sinusoid) -> None:
    model, episode = tiny_sinusoid(tasks=3)
    learner = make_learner("metadropout", model, "mse", inner_lr=0.05, inner_steps=1, samples=4)
    meta = learner.init_meta()
    results = []
    for seed in (7, 7, 8):
        torch.manual_seed(seed)
        results.append(meta_gradient(learner, meta, episode, batched=True))
    for name in meta:
        torch.testing.assert_close(results[0][0][name], results[1][0][name], rtol=0, atol=0)
    assert not torch.equal(results[0][1], results[2][1])
    # The 4-sample support loss is the mean over 4 noisy forwards of the same support set.
    support = episode.task(0).support
    torch.manual_seed(1)
    four = learner.support_loss(meta, support)
    torch.manual_seed(1)
    x = support.x.expand(4, *support.x.shape)
    draws = torch.func.functional_call(learner.model, meta, (x,), {"noisy": True})
    per_draw = ((draws - support.y) ** 2).mean(dim=(1, 2))
    torch.testing.assert_close(four, per_draw.mean())
    assert per_draw.std() > 0  # the draws differ


def test_bad_inputs_name_the_argument(tiny_sinusoid) -> None:
    model, _ = tiny_sinusoid()
    with pytest.raises(ValueError, match="noise must be one of"):
        make_learner("metadropout", model, "mse", inner_lr=0.1, inner_steps=1, noise="on")
    with pytest.raises(ValueError, match=r"samples must be in \[1, inf\)"):
        make_learner("metadropout", model, "mse", inner_lr=0.1, inner_steps=1, samples=0)
    with pytest.raises(ValueError, match="inner_lr"):
        Kronecker(-1.0)
    with pytest.raises(ValueError, match="noise must be one of"):
        MetaDropoutMLP(noise="loud")


@pytest.mark.parametrize("algorithm", ["metasgd", "metacurv", "metadropout", "imaml"])
def test_divergence_is_reported_not_written(tiny_sinusoid, algorithm: str) -> None:
    model, episode = tiny_sinusoid()
    learner = make_learner(algorithm, model, "mse", inner_lr=1e4, inner_steps=5)
    meta = {n: w.requires_grad_(True) for n, w in learner.init_meta().items()}
    before = {n: w.detach().clone() for n, w in meta.items()}
    optimizer = torch.optim.Adam(meta.values(), lr=1e-3)
    with pytest.raises(DivergenceError, match="meta-iteration 0"):
        meta_step(learner, meta, optimizer, episode)
    for name in meta:
        assert torch.equal(meta[name].detach(), before[name])
