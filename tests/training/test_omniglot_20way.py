"""The "omniglot-20way" problem carries MAML's 20-way settings and samples 20-way tasks from the
same images (one copy) as the 5-way problem."""

from __future__ import annotations

import torch

from mamlviz.models.convnet import ConvNet
from mamlviz.training.problems import available_problems, get_problem


def test_20way_problem_has_the_maml_code_settings() -> None:
    assert "omniglot-20way" in available_problems()
    problem = get_problem("omniglot-20way")
    d = problem.defaults("maml")
    # MAML's code for 20-way Omniglot: alpha 0.1, 5 steps, meta-batch 16, 1 query per class.
    assert (d["inner_lr"], d["inner_steps"], d["meta_batch"]) == (0.1, 5, 16)
    assert (d["shots"], d["query_shots"], d["outer_lr"]) == (1, 1, 1e-3)
    assert problem.eval_settings("anil")["steps"] == 5
    assert problem.batching == "stacked" and problem.metric == "accuracy"
    model = problem.make_model(0, torch.float64)
    assert model.head.out_features == 20 and model.head.weight.dtype == torch.float64
    assert get_problem("omniglot").make_model(0, torch.float32).head.out_features == 5


def test_20way_tasks_are_a_view_of_the_5way_images(omniglot_env) -> None:
    from mamlviz.training import omniglot_problem

    five = omniglot_problem.omniglot_tasks()
    twenty = get_problem("omniglot-20way").make_tasks("test")
    assert twenty.ways == 20 and twenty.split == "test"
    episode = twenty.sample(torch.Generator().manual_seed(0), 1, 1, 2, torch.float32)
    assert episode.support.x.shape == (2, 20, 1, 28, 28)
    # every task has 20 distinct labels, each once in the support and once in the query
    for y in (episode.support.y, episode.query.y):
        assert all(sorted(row.tolist()) == list(range(20)) for row in y)
    assert twenty.num_classes() == five.view("test").num_classes()


def test_a_5way_checkpoint_starts_a_20way_run_with_its_body_and_a_fresh_head() -> None:
    """The body is copied exactly; the head, whose shape is the number of ways, keeps the run's
    own initialisation and is recorded; Meta-Dropout's noise net stays at its zero init; any
    mismatch outside the head is refused."""
    import pytest

    from mamlviz.algorithms import make_learner
    from mamlviz.algorithms.anil import head_names
    from mamlviz.training import hub
    from mamlviz.training.checkpoint import CheckpointError
    from mamlviz.training.train import _warm_start

    source = hub.load("omniglot-maml-5w1s").meta
    for algorithm in ("maml", "metadropout"):
        model = get_problem("omniglot-20way").make_model(0, torch.float32)
        learner = make_learner(algorithm, model, "cross_entropy", inner_lr=0.1, inner_steps=5)
        meta = learner.init_meta()
        head = {n: w.clone() for n, w in meta.items() if n.startswith("head.")}
        record = _warm_start("omniglot-maml-5w1s", meta, None, head_names(learner.model))
        assert record["new_head"] == ["head.bias", "head.weight"]
        for n, w in meta.items():
            if n in head:
                assert torch.equal(w, head[n]) and w.shape[0] == 20
            elif n.startswith("noise."):
                assert float(w.abs().max()) == 0
            else:
                assert torch.equal(w, source[n]), n
        if algorithm == "metadropout":
            assert all(n.startswith("noise.") for n in record["kept_at_init"])
    meta = learner.init_meta()
    with pytest.raises(CheckpointError, match="shape"):  # the head is not named: refused
        _warm_start("omniglot-maml-5w1s", meta, None, frozenset())
    narrow = make_learner(
        "maml", ConvNet(20, filters=32), "cross_entropy", inner_lr=0.1, inner_steps=1
    )
    with pytest.raises(CheckpointError, match="shape"):  # another body: refused
        _warm_start("omniglot-maml-5w1s", narrow.init_meta(), None, head_names(narrow.model))
