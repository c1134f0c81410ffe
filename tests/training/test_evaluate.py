"""Evaluation protocol: per-step means and 95% CIs equal a hand-written loop; step 0 is theta."""

from __future__ import annotations

import math
import statistics

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from mamlviz.algorithms import make_learner
from mamlviz.core.episode import Episode, Examples
from mamlviz.models import sinusoid_mlp
from mamlviz.tasks.sinusoid import SinusoidTasks
from mamlviz.training.evaluate import Evaluation, evaluate, evaluate_checkpoint, summarize

TASKS, SHOTS, QUERY, STEPS, LR, SEED = 7, 5, 20, 3, 0.01, 42


pytestmark = pytest.mark.usefixtures("float64")


def setup(algorithm: str = "maml"):
    model = sinusoid_mlp(1, torch.float64)
    learner = make_learner(algorithm, model, "mse", inner_lr=LR, inner_steps=1)
    episode = SinusoidTasks().sample(
        torch.Generator().manual_seed(SEED), SHOTS, QUERY, TASKS, torch.float64
    )
    return model, learner, learner.init_meta(), episode


def manual_curves(model: nn.Module, episode: Episode, lrs: dict | float) -> torch.Tensor:
    """Plain autograd, one task at a time: query MSE after 0..STEPS SGD steps."""
    curves = []
    for i in range(TASKS):
        ep = episode.task(i)
        params = {n: p.detach().clone().requires_grad_() for n, p in model.named_parameters()}
        curve = []
        for k in range(STEPS + 1):
            pred = torch.func.functional_call(model, params, (ep.query.x,))
            curve.append(F.mse_loss(pred, ep.query.y).item())
            if k == STEPS:
                break
            loss = F.mse_loss(
                torch.func.functional_call(model, params, (ep.support.x,)), ep.support.y
            )
            grads = torch.autograd.grad(loss, list(params.values()))
            params = {
                n: (p - (lrs if isinstance(lrs, float) else lrs[n]) * g).detach().requires_grad_()
                for (n, p), g in zip(params.items(), grads, strict=True)
            }
        curves.append(curve)
    return torch.tensor(curves)


def test_mean_and_ci_equal_a_manual_computation() -> None:
    model, learner, meta, episode = setup()
    result = evaluate(
        learner,
        meta,
        SinusoidTasks(),
        shots=SHOTS,
        query_shots=QUERY,
        tasks=TASKS,
        steps=STEPS,
        seed=SEED,
    )
    curves = manual_curves(model, episode, LR)
    n = curves.shape[0]
    mean = [sum(curves[:, k].tolist()) / n for k in range(STEPS + 1)]
    std = [
        math.sqrt(sum((v - mean[k]) ** 2 for v in curves[:, k].tolist()) / n)
        for k in range(STEPS + 1)
    ]
    torch.testing.assert_close(torch.tensor(result.mean), torch.tensor(mean), rtol=1e-10, atol=0)
    torch.testing.assert_close(
        torch.tensor(result.ci95), 1.96 * torch.tensor(std) / math.sqrt(n), rtol=1e-8, atol=0
    )
    medians = [statistics.median(curves[:, k].tolist()) for k in range(STEPS + 1)]  # 7 tasks: odd
    torch.testing.assert_close(
        torch.tensor(result.median), torch.tensor(medians), rtol=1e-10, atol=0
    )
    assert result.steps == STEPS and result.inner_lr == LR and result.tasks == TASKS


def test_step_zero_is_the_loss_of_theta() -> None:
    model, learner, meta, episode = setup()
    result = evaluate(
        learner,
        meta,
        SinusoidTasks(),
        shots=SHOTS,
        query_shots=QUERY,
        tasks=TASKS,
        steps=0,
        seed=SEED,
    )
    per_task = ((model(episode.query.x) - episode.query.y) ** 2).mean(dim=(1, 2))
    assert len(result.mean) == 1
    torch.testing.assert_close(
        torch.tensor(result.mean[0]), per_task.mean().detach(), rtol=1e-12, atol=0
    )


def test_metasgd_uses_its_learned_rates() -> None:
    model, learner, meta, episode = setup("metasgd")
    rates = {
        n[len("rule.lr.") :]: 0.02 + 0.01 * torch.rand_like(w)
        for n, w in meta.items()
        if n.startswith("rule.lr.")
    }
    meta = {**meta, **{f"rule.lr.{n}": r for n, r in rates.items()}}
    result = evaluate(
        learner,
        meta,
        SinusoidTasks(),
        shots=SHOTS,
        query_shots=QUERY,
        tasks=TASKS,
        steps=STEPS,
        seed=SEED,
    )
    expected = manual_curves(model, episode, rates).mean(0)
    torch.testing.assert_close(torch.tensor(result.mean), expected, rtol=1e-10, atol=0)
    assert result.inner_lr is None  # its rates are alpha; inner_lr only initialised them


def test_chunking_does_not_change_the_result() -> None:
    _, learner, meta, _ = setup()
    kwargs = dict(shots=SHOTS, query_shots=QUERY, tasks=250, steps=2, seed=SEED)
    whole = evaluate(learner, meta, SinusoidTasks(), **kwargs)
    parts = evaluate(learner, meta, SinusoidTasks(), chunk=64, **kwargs)
    torch.testing.assert_close(
        torch.tensor(parts.mean), torch.tensor(whole.mean), rtol=1e-12, atol=0
    )
    assert Evaluation.from_dict(whole.to_dict()) == whole


def test_accuracy_metric() -> None:
    """A linear classifier: step-0 accuracy equals the fraction of argmax hits."""

    class Blobs:
        def sample(self, generator, shots, query_shots, meta_batch, dtype=torch.float32):
            x = torch.randn(meta_batch, shots + query_shots, 2, generator=generator, dtype=dtype)
            y = (x[..., 0] > 0).long()
            return Episode(
                Examples(x[:, :shots], y[:, :shots]), Examples(x[:, shots:], y[:, shots:])
            )

    model = nn.Linear(2, 2).double()
    learner = make_learner("maml", model, "cross_entropy", inner_lr=0.1, inner_steps=1)
    result = evaluate(
        learner,
        learner.init_meta(),
        Blobs(),
        metric="accuracy",
        shots=4,
        query_shots=30,
        tasks=9,
        steps=0,
        seed=3,
    )
    episode = Blobs().sample(torch.Generator().manual_seed(3), 4, 30, 9, torch.float64)
    hits = (model(episode.query.x).argmax(-1) == episode.query.y).double().mean()
    torch.testing.assert_close(torch.tensor(result.mean[0]), hits, rtol=1e-12, atol=0)


def test_summarize_closed_form() -> None:
    mean, ci = summarize(torch.tensor([[1.0, 0.0], [3.0, 0.0]]))
    assert mean == [2.0, 0.0] and ci == [1.96 * 1.0 / math.sqrt(2), 0.0]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"shots": 0}, r"shots must be in \[1, inf\), got 0"),
        ({"tasks": 0}, r"tasks must be in \[1, inf\), got 0"),
        ({"steps": -1}, r"steps must be in \[0, inf\), got -1"),
        ({"metric": "f1"}, r"metric must be one of \('mse', 'accuracy'\), got 'f1'"),
    ],
)
def test_bad_arguments(kwargs: dict, message: str) -> None:
    _, learner, meta, _ = setup()
    with pytest.raises(ValueError, match=message):
        evaluate(learner, meta, SinusoidTasks(), **kwargs)


def test_checkpoint_evaluation_defaults_to_the_stored_settings() -> None:
    """``evaluate NAME`` reproduces the stored number: its settings are the default."""
    import dataclasses

    from mamlviz.training import hub
    from mamlviz.training.evaluate import evaluate_checkpoint

    loaded = hub.load("sinusoid-maml")
    stored = dataclasses.replace(loaded.evaluation, shots=3, query_shots=7, tasks=4, seed=11)
    stored = dataclasses.replace(stored, mean=stored.mean[:3], ci95=stored.ci95[:3])
    loaded = dataclasses.replace(loaded, evaluation=stored)
    again = evaluate_checkpoint(loaded)
    assert again.settings() == stored.settings() and again.steps == 2
    other = evaluate_checkpoint(loaded, shots=2, steps=1)
    assert (other.shots, other.query_shots, other.tasks, other.steps) == (2, 7, 4, 1)
    # a different seed draws other tasks
    assert evaluate_checkpoint(loaded, seed=12).mean != again.mean


def test_a_noisy_learners_first_block_does_not_depend_on_how_many_tasks_follow() -> None:
    """Meta-Dropout's support noise comes from one stream per block of tasks, like the tasks:
    the first 100 tasks of a 200-task evaluation are scored exactly as a 100-task evaluation."""
    from mamlviz.training import hub

    md = hub.load("sinusoid-metadropout-10shot")
    small = evaluate_checkpoint(md, tasks=100, steps=1)
    large = evaluate_checkpoint(md, tasks=200, steps=1)
    torch.testing.assert_close(large.per_task[:100], small.per_task, rtol=0, atol=0)
    # and the noise is real: another seed for the noise stream would change the scores
    other = evaluate_checkpoint(md, tasks=100, steps=1, options={"samples": 2})
    assert not torch.equal(other.per_task, small.per_task)
