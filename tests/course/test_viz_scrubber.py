"""Chapter 02's meta-training scrubber: each snapshot's fits are theta's and one inner step's on
the fixed task, the slider indexes them, and the marker sits on the recorded meta-loss."""

from __future__ import annotations

import pytest
import torch

from mamlviz.core.functional import call
from mamlviz.course.viz.scrubber import GRID, MetaTrainingScrubber, plot_scrubber
from mamlviz.training import hub


@pytest.fixture(scope="module")
def scrubber() -> MetaTrainingScrubber:
    return MetaTrainingScrubber(hub.load("sinusoid-maml"), tasks=100)


def test_each_snapshot_fit_is_theta_and_one_step(scrubber) -> None:
    history = scrubber.history
    i = len(scrubber.iterations) // 2
    theta = history.snapshots[i]
    learner = scrubber.checkpoint.learner()
    with torch.no_grad():
        torch.testing.assert_close(
            scrubber.fits[i]["theta"], call(learner.model, theta, GRID).reshape(-1)
        )
    fast, frozen, rule = learner.split(dict(theta))
    phi = learner.inner_loop(fast, frozen, rule, scrubber.episode.support, steps=1)
    with torch.no_grad():
        want = call(learner.model, {**phi, **frozen}, GRID).reshape(-1)
    torch.testing.assert_close(scrubber.fits[i]["phi"], want)
    # the final snapshot is the shipped theta
    final = history.snapshots[-1]
    assert all(torch.equal(final[n], w) for n, w in scrubber.checkpoint.meta.items())
    # meta-training made the one-step fit on this task better than at initialisation
    assert scrubber.fits[-1]["phi_mse"] < 0.5 * scrubber.fits[0]["phi_mse"]


def test_the_slider_moves_the_fits_and_the_marker(scrubber) -> None:
    scrubber.slider.value = scrubber.iterations[0]
    first = (list(scrubber.fig.data[2].y), scrubber.text.value)
    scrubber.slider.value = scrubber.iterations[-1]
    assert list(scrubber.fig.data[2].y) != first[0] and scrubber.text.value != first[1]
    for trace in scrubber.fig.data[1:3]:  # the fits are drawn against x in [-5, 5]
        assert len(trace.x) == len(trace.y) == len(GRID) and trace.x[0] == -5.0
    it = scrubber.iterations[-1]
    assert scrubber.fig.data[5].x == (it,) and scrubber.status.message == ""
    assert scrubber.fig.data[5].y[0] == float(scrubber.held_out[-1, 1])
    plot_scrubber(scrubber, (0, 30000))  # the static twin draws
    with pytest.raises(ValueError, match="stored snapshots"):
        plot_scrubber(scrubber, (1234,))


def test_held_out_curves_are_the_evaluation_of_each_snapshot(scrubber) -> None:
    from mamlviz.training.evaluate import evaluate
    from mamlviz.training.problems import get_problem

    i = 3
    want = evaluate(
        scrubber.checkpoint.learner(), scrubber.history.snapshots[i],
        get_problem("sinusoid").make_tasks("test"), shots=5, tasks=100, steps=1,
    ).mean  # fmt: skip
    torch.testing.assert_close(scrubber.held_out[i], torch.tensor(want))


def test_a_checkpoint_without_snapshots_is_refused() -> None:
    from dataclasses import replace

    from mamlviz.training.history import History

    bare = replace(hub.load("sinusoid-maml"), history=History())
    with pytest.raises(ValueError, match="fewer than 2 theta snapshots"):
        MetaTrainingScrubber(bare)
