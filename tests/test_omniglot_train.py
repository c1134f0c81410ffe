"""Float32 smoke test on real Omniglot: a few MAML meta-iterations on the stacked path lower the
post-adaptation query loss and raise the accuracy on held-out (meta-test) characters."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from mamlviz import stacked
from mamlviz.algorithms import make_learner
from mamlviz.convnet import omniglot_convnet
from mamlviz.functional import Params
from mamlviz.learner import Learner
from mamlviz.problems import get_problem
from mamlviz.tasks.episode import Episode
from mamlviz.tasks.omniglot import OmniglotTasks
from mamlviz.tasks.omniglot_data import load_omniglot
from mamlviz.tasks.omniglot_problem import OmniglotSplitTasks


@pytest.fixture(scope="module")
def tasks(omniglot_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> OmniglotTasks:
    cache = tmp_path_factory.mktemp("omniglot_cache")
    return OmniglotTasks(load_omniglot(root=omniglot_dir, cache_dir=cache, progress=False))


def query_metrics(learner: Learner, meta: Params, episode: Episode) -> tuple[float, float]:
    """Mean query loss and accuracy after the learner's inner steps, over all tasks."""
    losses = stacked.meta_gradient(learner, meta, episode)[1]
    fast, _, _ = learner.split(stacked.stack(meta, episode.num_tasks))
    phi = torch.func.grad(
        lambda p: stacked.per_task_losses(learner.model, p, episode.support).sum()
    )
    grads = phi(fast)
    adapted = {n: fast[n] - learner.rule.inner_lr * grads[n] for n in fast}
    logits = stacked.stacked_logits(learner.model, adapted, episode.query.x)
    accuracy = (logits.argmax(-1) == episode.query.y).float().mean()
    return float(losses.mean()), float(accuracy)


def test_maml_training_lowers_query_loss(tasks: OmniglotTasks) -> None:
    torch.manual_seed(0)
    learner = make_learner(
        "maml", omniglot_convnet(5), "cross_entropy", inner_lr=0.4, inner_steps=1
    )
    meta = {n: w.requires_grad_() for n, w in learner.init_meta().items()}
    optimizer = torch.optim.Adam(meta.values(), lr=3e-3)
    train = OmniglotSplitTasks("train", tasks=tasks)
    test = OmniglotSplitTasks("test", tasks=tasks).sample(
        torch.Generator().manual_seed(9), 1, 5, 40
    )
    before = query_metrics(learner, meta, test)
    generator = torch.Generator().manual_seed(0)
    for _ in range(25):
        grads, _ = stacked.meta_gradient(learner, meta, train.sample(generator, 1, 1, 8))
        optimizer.zero_grad()
        for n, w in meta.items():
            w.grad = grads[n]
        optimizer.step()
    after = query_metrics(learner, meta, test)
    assert after[0] < before[0] - 0.3, (before, after)
    assert after[1] > before[1] + 0.1, (before, after)


def test_problem_is_registered_with_maml_defaults() -> None:
    problem = get_problem("omniglot")
    assert problem.metric == "accuracy" and problem.loss == "cross_entropy"
    d = problem.defaults("maml")
    assert (d["inner_lr"], d["inner_steps"], d["meta_batch"], d["outer_lr"]) == (0.4, 1, 32, 1e-3)
    assert problem.eval_defaults["steps"] == 3 and problem.eval_defaults["tasks"] == 600
    assert problem.make_model(0, torch.float32)(torch.rand(2, 1, 28, 28)).shape == (2, 5)
