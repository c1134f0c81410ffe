"""Chapter 06's analysis of learned update rules, in float64 on a tiny network: the step
comparison and per-tensor steps against hand-computed values for rules whose action is known
in closed form (identity factors = SGD, scaled factors = scaled SGD, Meta-SGD = alpha (.) g)."""

from __future__ import annotations

import re

import pytest
import torch
from torch.func import grad

from mamlviz.algorithms import make_learner
from mamlviz.course.viz.rules import compare_steps, per_tensor_steps, reset_rule, rule_stats
from mamlviz.models import MLP
from mamlviz.tasks.sinusoid import SinusoidTasks

ALPHA = 0.05


def _learner(algorithm: str):
    torch.manual_seed(0)
    model = MLP(1, (8, 8), 1).double()
    learner = make_learner(algorithm, model, "mse", inner_lr=ALPHA, inner_steps=1)
    episode = SinusoidTasks().sample(torch.Generator().manual_seed(1), 5, 9, 3, torch.float64)
    return learner, learner.init_meta(), episode


def _flat(params: dict, names) -> torch.Tensor:
    return torch.cat([params[n].reshape(-1) for n in names])


def _query(learner, params, frozen, query) -> float:
    return float(learner.query_loss(params, frozen, query))


def test_identity_factors_are_sgd() -> None:
    learner, meta, episode = _learner("metacurv")
    c = compare_steps(learner, meta, episode)
    assert torch.allclose(c.cosine, torch.ones(3, dtype=torch.float64), atol=1e-12)
    assert torch.allclose(c.norm_ratio, torch.ones(3, dtype=torch.float64), atol=1e-12)
    assert torch.allclose(c.rule, c.sgd, atol=1e-12) and torch.allclose(c.rule, c.same_length)
    fast, frozen, _ = learner.split(meta)
    assert float(c.before[1]) == pytest.approx(_query(learner, fast, frozen, episode.task(1).query))


def test_scaled_factors_scale_the_step_and_keep_its_direction() -> None:
    learner, meta, episode = _learner("metacurv")
    scaled = {n: (3.0 * w if "mc_out" in n or "mc_vec" in n else w) for n, w in meta.items()}
    c = compare_steps(learner, scaled, episode)  # MC(G) = (3 I) G I = 3 G, MC(g) = 3 g
    assert torch.allclose(c.cosine, torch.ones(3, dtype=torch.float64), atol=1e-12)
    assert torch.allclose(c.norm_ratio, torch.full((3,), 3.0, dtype=torch.float64), atol=1e-12)
    assert torch.allclose(c.rule, c.same_length, atol=1e-12)
    assert not torch.allclose(c.rule, c.sgd)


def test_meta_sgd_step_is_alpha_times_gradient() -> None:
    learner, meta, episode = _learner("metasgd")
    g0 = torch.Generator().manual_seed(2)
    meta = {
        n: (0.1 * torch.randn(w.shape, generator=g0, dtype=w.dtype) if n.startswith("rule.") else w)
        for n, w in meta.items()
    }
    fast, frozen, rule = learner.split(meta)
    names = list(fast)
    c = compare_steps(learner, meta, episode)
    task = episode.task(2)
    g = grad(learner.support_loss_fn(frozen))(fast, task.support)
    d = {n: rule[f"rule.lr.{n}"] * g[n] for n in names}
    gf, df = _flat(g, names), _flat(d, names)
    assert float(c.cosine[2]) == pytest.approx(float(gf @ df / (gf.norm() * df.norm())), rel=1e-10)
    assert float(c.norm_ratio[2]) == pytest.approx(float(df.norm() / (ALPHA * gf.norm())), 1e-10)
    phi = {n: fast[n] - d[n] for n in names}
    assert float(c.rule[2]) == pytest.approx(_query(learner, phi, frozen, task.query), rel=1e-10)
    same = {n: fast[n] - float(df.norm() / gf.norm()) * g[n] for n in names}
    assert float(c.same_length[2]) == pytest.approx(_query(learner, same, frozen, task.query))

    steps = per_tensor_steps(learner, meta, episode)
    for n in names:  # |d| = |alpha| |g| elementwise: mean over tasks by hand
        expect = sum(
            float((rule[f"rule.lr.{n}"] * grad(learner.support_loss_fn(frozen))(fast, t.support)[n])
                  .abs().mean())
            for t in (episode.task(i) for i in range(3))
        ) / 3  # fmt: skip
        assert steps[n]["step"] == pytest.approx(expect, rel=1e-10)


def test_reset_rule_is_sgd_at_the_same_init() -> None:
    learner, meta, episode = _learner("metasgd")
    moved = {n: (w + 1.0 if n.startswith("rule.") else w) for n, w in meta.items()}
    reset = reset_rule(learner, moved)
    assert all(torch.equal(reset[n], meta[n]) for n in meta)
    steps = per_tensor_steps(learner, reset, episode)
    assert all(s["ratio"] == pytest.approx(ALPHA, rel=1e-10) for s in steps.values())


def _numbers(text: str) -> list[float]:
    return [float(t) for t in re.findall(r"-?\d+\.\d+", text)]


def test_rule_stats_report_the_right_quantities() -> None:
    lr = torch.tensor([0.02, -0.04, 0.06], dtype=torch.float64)
    text = rule_stats("rule.lr.fc1.bias", lr, inner_lr=0.01)
    assert "4.0 x inner_lr" in text and "negative 33%" in text and "M - I" not in text
    sym = torch.diag(torch.tensor([0.5, 2.0, 3.0], dtype=torch.float64))
    text = rule_stats("rule.mc_in.fc2.weight", sym)
    assert "asymmetry ||M - M^T|| / ||M|| = 0.000" in text
    assert _numbers(text)[-2:] == pytest.approx([0.5, 3.0])  # singular values of a diagonal M
    rot = torch.tensor([[0.0, -1.0], [1.0, 0.0]], dtype=torch.float64)  # antisymmetric
    assert "asymmetry ||M - M^T|| / ||M|| = 2.000" in rule_stats("rule.mc_out.w", rot)
    assert "elementwise factor" in rule_stats("rule.mc_vec.fc1.bias", lr)
