"""The "omniglot-20way" problem carries MAML's 20-way settings and samples 20-way tasks from the
same images (one copy) as the 5-way problem."""

from __future__ import annotations

import torch

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
