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


# --- how the query set is fed to the adapted net (transductive or not) --------------------


def _episode(synthetic_omniglot, query_shots: int = 2):
    tasks = synthetic_omniglot().view("train", ways=5)
    return tasks.sample(torch.Generator().manual_seed(1), 1, query_shots, 1).task(0)


@pytest.fixture(scope="module")
def demo():
    return load_demo("omniglot-maml-5w1s")


def test_transductive_prediction_is_one_batch_of_the_query_set(demo, synthetic_omniglot) -> None:
    """The default mode is the original one: the trajectory's weights called on the query."""
    from mamlviz.core.functional import call
    from mamlviz.core.inner import Trajectory

    episode = _episode(synthetic_omniglot)
    result = demo.adapt(episode, steps=2)
    learner = demo.learner()
    fast, frozen, rule_params = learner.split(dict(demo.meta))
    trajectory = Trajectory()
    learner.inner_loop(
        fast, frozen, rule_params, episode.support, steps=2, first_order=True,
        record=trajectory.record,
    )  # fmt: skip
    with torch.no_grad():
        want = torch.stack(
            [call(demo.model, {**p, **frozen}, episode.query.x) for p in trajectory.fast]
        ).softmax(-1)
    assert torch.equal(result.probabilities, want)
    assert torch.equal(demo.adapt(episode, 2, transductive=True).probabilities, want)


@pytest.mark.parametrize("with_support", [False, True])
def test_per_example_modes_equal_one_call_per_query_example(
    demo, synthetic_omniglot, with_support: bool
) -> None:
    from mamlviz.core.functional import call
    from mamlviz.course.omniglot import query_logits

    episode = _episode(synthetic_omniglot)
    params = dict(demo.meta)
    got = query_logits(demo.model, params, episode, transductive=False, with_support=with_support)
    rows = []
    for i in range(len(episode.query.y)):
        x = episode.query.x[i : i + 1]
        batch = torch.cat([episode.support.x, x]) if with_support else x
        rows.append(call(demo.model, params, batch)[-1])
    torch.testing.assert_close(got, torch.stack(rows), rtol=1e-5, atol=1e-5)
    # and the adapted result uses exactly these logits
    result = demo.adapt(episode, 0, transductive=False, with_support=with_support)
    torch.testing.assert_close(result.probabilities[0], got.softmax(-1))


def test_no_query_example_informs_another_unless_transductive(demo, synthetic_omniglot) -> None:
    from mamlviz.course.omniglot import query_logits

    episode = _episode(synthetic_omniglot)
    other = episode.query.x.clone()
    other[1:] = other[1:].flip(-1)  # change every query image but the first
    changed = type(episode)(episode.support, type(episode.query)(other, episode.query.y))
    params = dict(demo.meta)
    for flags in (dict(transductive=False), dict(transductive=False, with_support=True)):
        a = query_logits(demo.model, params, episode, **flags)[0]
        b = query_logits(demo.model, params, changed, **flags)[0]
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)
    a = query_logits(demo.model, params, episode)[0]
    b = query_logits(demo.model, params, changed)[0]
    assert (a - b).abs().max() > 1e-3  # transductive: the batch statistics moved


def test_mode_accuracy_is_adapt_in_each_mode(omniglot_tasks: OmniglotTasks, demo) -> None:
    from mamlviz.course.omniglot import MODES, mode_accuracy

    demo.tasks = omniglot_tasks.view("test")
    got = mode_accuracy(demo, [4, 9], steps=2)
    assert set(got) == set(MODES)
    flags = {
        "transductive": dict(transductive=True),
        "alone": dict(transductive=False),
        "with support": dict(transductive=False, with_support=True),
    }
    for mode in MODES:
        want = [demo.adapt(demo.sample(s), 2, **flags[mode]).accuracy[-1] for s in (4, 9)]
        assert got[mode].tolist() == pytest.approx(want, abs=1e-12)
