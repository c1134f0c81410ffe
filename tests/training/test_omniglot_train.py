"""Float32 smoke test on real Omniglot: a few MAML meta-iterations on the stacked path lower the
post-adaptation query loss and raise the accuracy on held-out (meta-test) characters."""

from __future__ import annotations

import pytest
import torch

from mamlviz.algorithms import make_learner
from mamlviz.core import stacked
from mamlviz.core.episode import Episode
from mamlviz.core.functional import Params, detach
from mamlviz.core.inner import adapt
from mamlviz.core.learner import Learner
from mamlviz.models.convnet import omniglot_convnet
from mamlviz.tasks.omniglot import OmniglotTasks
from mamlviz.training.problems import get_problem


@pytest.fixture(scope="module")
def tasks(omniglot_tasks: OmniglotTasks) -> OmniglotTasks:
    return omniglot_tasks


def query_metrics(learner: Learner, meta: Params, episode: Episode) -> tuple[float, float]:
    """Mean query loss and accuracy after the learner's inner steps, over all tasks."""
    net, sl = learner.model, stacked.stacked_learner(learner)
    fast = stacked.stack(detach(meta), episode.num_tasks)
    phi = adapt(sl.loss, fast, episode.support, sl.rule, sl.inner_steps, first_order=True)
    logits = stacked.stacked_logits(net, phi, episode.query.x)
    losses = stacked.per_task_losses(net, phi, episode.query)
    return float(losses.mean()), float((logits.argmax(-1) == episode.query.y).float().mean())


def test_maml_training_lowers_query_loss(tasks: OmniglotTasks) -> None:
    torch.manual_seed(0)
    learner = make_learner(
        "maml", omniglot_convnet(5), "cross_entropy", inner_lr=0.4, inner_steps=1
    )
    meta = {n: w.requires_grad_() for n, w in learner.init_meta().items()}
    optimizer = torch.optim.Adam(meta.values(), lr=3e-3)
    train = tasks.view("train")
    test = tasks.view("test").sample(torch.Generator().manual_seed(9), 1, 5, 40)
    before = query_metrics(learner, meta, test)
    generator = torch.Generator().manual_seed(0)
    for _ in range(15):
        grads, _ = stacked.meta_gradient(learner, meta, train.sample(generator, 1, 1, 6))
        optimizer.zero_grad()
        for n, w in meta.items():
            w.grad = grads[n]
        optimizer.step()
    after = query_metrics(learner, meta, test)
    print(f"query loss, accuracy before {before}, after {after}")
    assert after[0] < before[0] - 0.1, (before, after)
    assert after[1] > before[1] + 0.05, (before, after)


def test_problem_is_registered_with_maml_defaults() -> None:
    problem = get_problem("omniglot")
    assert problem.metric == "accuracy" and problem.loss == "cross_entropy"
    d = problem.defaults("maml")
    assert (d["inner_lr"], d["inner_steps"], d["meta_batch"], d["outer_lr"]) == (0.4, 1, 32, 1e-3)
    assert problem.eval_defaults["steps"] == 3 and problem.eval_defaults["tasks"] == 600
    assert problem.make_model(0, torch.float32)(torch.rand(2, 1, 28, 28)).shape == (2, 5)
    # query shots follow the shots (MAML code), so a 5-shot evaluation has 5 query per class
    assert problem.eval_settings("maml")["query_shots"] is None
    # Reptile's README commands: train-shots 10, inner-batch 10, 5 Adam steps, meta-batch 5,
    # meta-step 1 -> 0; eval-iters 50 on eval-batch 5
    r = problem.defaults("reptile")
    assert (r["shots"], r["inner_steps"], r["meta_batch"], r["outer_lr"]) == (10, 5, 5, 1.0)
    assert r["options"] == {"inner_optimizer": "adam", "inner_batch": 10}
    want = {**problem.eval_defaults, "steps": 50, "inner_batch": 5}
    assert problem.eval_settings("reptile") == want
    # iMAML's Omniglot setting: 16 proximal SGD steps of 0.1 at training and test, lambda 2
    i = problem.defaults("imaml")
    assert (i["inner_lr"], i["inner_steps"]) == (0.1, 16) and problem.eval_settings("imaml")[
        "steps"
    ] == 16


@pytest.mark.parametrize("algorithm", ["metasgd", "metacurv"])
def test_family_trains_on_omniglot_through_the_cli(algorithm: str, omniglot_env, tmp_path) -> None:
    """``train --problem omniglot --algorithm metacurv`` once crashed on the stacked path."""
    from mamlviz.cli import main
    from mamlviz.training import checkpoint

    out = tmp_path / f"{algorithm}.pt"
    args = ["--problem", "omniglot", "--algorithm", algorithm, "--iterations", "2"]
    assert main(["train", *args, "--meta-batch", "2", "--out", str(out), "--quiet"]) == 0
    data = checkpoint.load(out)
    assert data.metadata["iteration"] == 2 and data.metadata["algorithm"] == algorithm
    assert data.metadata["data"]["classes"] == {"train": 1100, "val": 100, "test": 423}
    rule = [n for n in data.tensors["meta"] if n.startswith("rule.")]
    assert rule  # the learned rates / curvature factors are in the checkpoint
