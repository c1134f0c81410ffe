"""The notebook-facing Omniglot API: load a shipped learner, draw a meta-test task, adapt."""

from __future__ import annotations

import pytest
import torch

from mamlviz.course.omniglot import load_demo
from mamlviz.tasks.omniglot import OmniglotTasks


@pytest.mark.parametrize(
    ("name", "shots"),
    [("omniglot-maml-5w1s", 1), ("omniglot-reptile-5w1s", 1), ("omniglot-reptile-5w5s", 5)],
)
def test_demo_samples_at_the_checkpoints_own_evaluation_shots(name: str, shots: int) -> None:
    """Reptile trains on 10 shots whatever the test shots: the demo must not default to 10."""
    demo = load_demo(name)
    assert demo.shots == shots and demo.shots == demo.checkpoint.evaluation.shots


def test_notebook_api_adapts_a_meta_test_task(omniglot_tasks: OmniglotTasks) -> None:
    demo = load_demo("omniglot-maml-5w1s")
    demo.tasks = omniglot_tasks.view("test")
    episode = demo.sample(seed=3, query_shots=2)
    assert episode.support.x.shape == (5, 1, 28, 28) and episode.query.y.shape == (10,)
    result = demo.adapt(episode, steps=3)
    assert result.probabilities.shape == (4, 10, 5) and len(result.support_loss) == 4
    torch.testing.assert_close(result.probabilities.sum(-1), torch.ones(4, 10))
    want = (result.predictions == episode.query.y).double().mean(-1)
    assert result.accuracy == want.tolist()
    assert result.support_loss[1] < result.support_loss[0]  # one SGD step lowers the loss
    with pytest.raises(ValueError, match="steps"):
        demo.adapt(episode, steps=-1)
