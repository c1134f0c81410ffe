"""Chapter 11's stream player and exercises: the per-step snapshots are exactly
:func:`run_stream`'s updates (its loss matrix and metrics, bit for bit), the memory snapshots
follow reservoir sampling, MER with beta = gamma = 1, s = 1 and no memory is online SGD, and
every checker of :mod:`mamlviz.course.exercises_stream` accepts the right answer and rejects
the usual wrong ones."""

from __future__ import annotations

import pytest
import torch

from mamlviz.course import exercises, exercises_stream
from mamlviz.course.viz.stream import (
    SETTINGS,
    boundary_matrix,
    loss_metrics,
    one_run,
    play_all,
    play_stream,
    plot_stream,
    run_stream,
    stream_problem,
    stream_widget,
)

SIZES = {"families": 3, "examples_per_family": 6, "test_examples": 5}
MER = {"lr": 0.01, "beta": 0.6, "gamma": 0.8, "batches": 2, "replay": 3, "memory_size": 4}


@pytest.fixture(scope="module")
def problem():
    return stream_problem(0, **SIZES)


@pytest.mark.parametrize("method", ["online", "replay", "mer"])
def test_snapshots_are_run_streams_updates(problem, method: str) -> None:
    settings = MER if method != "online" else {"lr": 0.01}
    run = play_stream(method, problem, seed=3, **settings)
    ref = run_stream(method, problem.loss_fn, problem.theta, problem.stream, problem.family,
                     problem.tests, seed=3, **settings)  # fmt: skip
    assert torch.equal(boundary_matrix(run), torch.tensor(ref["losses"]))
    assert all(torch.equal(run.theta[n], ref["theta"][n]) for n in ref["theta"])
    assert run.online_loss == ref["online_loss"]
    metrics = loss_metrics(boundary_matrix(run))
    for key in ("final_loss", "bwt", "forgetting"):
        assert metrics[key] == pytest.approx(ref[key], rel=1e-12, abs=1e-12)


def test_stream_problem_is_the_continual_bench(problem) -> None:
    """The chapter's problem is the bench's: one_run's loss matrix comes out again."""
    sizes = {"families": 2, "examples_per_family": 5, "test_examples": 4}
    ref = one_run("sinusoid", "replay", 1, sizes, SETTINGS["sinusoid"]["replay"])
    run = play_stream("replay", stream_problem(1, **sizes), memory_size=200, seed=1,
                      **SETTINGS["sinusoid"]["replay"])  # fmt: skip
    assert torch.equal(boundary_matrix(run), torch.tensor(ref["losses"]))


def test_loss_metrics_closed_form() -> None:
    r = torch.tensor([[1.0, 5.0, 9.0], [2.0, 0.5, 7.0], [4.0, 1.5, 0.25]], dtype=torch.float64)
    m = loss_metrics(r)
    assert m["final_loss"] == pytest.approx((4.0 + 1.5 + 0.25) / 3)
    assert m["bwt"] == pytest.approx(((4.0 - 1.0) + (1.5 - 0.5)) / 2)
    assert m["forgetting"] == pytest.approx(((4.0 - 1.0) + (1.5 - 0.5)) / 2)
    r[1, 0] = 0.5  # family 0 got better after family 1: forgetting counts from that best
    assert loss_metrics(r)["forgetting"] == pytest.approx(((4.0 - 0.5) + (1.5 - 0.5)) / 2)
    assert loss_metrics(r)["learning_loss"] == pytest.approx((1.0 + 0.5 + 0.25) / 3)


def test_memory_snapshots_follow_reservoir_sampling(problem) -> None:
    run = play_stream("replay", problem, seed=0, **MER | {"beta": 1.0, "gamma": 1.0})
    n = problem.stream.x.shape[0]
    for t in range(n):
        held = run.memory[t]
        assert len(held) == min(t + 1, 4) and len(set(held)) == len(held)
        assert all(0 <= i <= t for i in held)  # only examples already seen
        if t < 4:
            assert held == list(range(t + 1))  # filled in order until full
        else:  # one slot replaced at most per example
            assert len(set(held) - set(run.memory[t - 1])) <= 1
    assert sum(run.memory_counts(n - 1)) == 4


def test_replay_and_mer_hold_the_same_memory(problem) -> None:
    """Both draw s batches of k memories per example from the memory's generator."""
    runs = play_all(problem, lr=0.01, beta=0.5, gamma=0.7, batches=2, replay=3, memory=4)
    assert runs["replay"].memory == runs["mer"].memory
    assert runs["online"].memory == [[] for _ in runs["online"].memory]


def test_mer_without_memory_and_reptile_steps_is_online_sgd(problem) -> None:
    online = play_stream("online", problem, lr=0.02)
    mer = play_stream("mer", problem, lr=0.02, beta=1.0, gamma=1.0, batches=1, replay=5)
    assert torch.equal(online.losses, mer.losses)


def test_widget_time_slider_indexes_and_controls_recompute(problem) -> None:
    box, parts = stream_widget(problem, t=2, lr=0.01, memory=4)
    assert "mamlviz-main" in box._dom_classes
    before, data = parts["readout"].value, parts["figure"].data[0].y
    assert len(data) == 3  # up to t = 2
    parts["time"].value = 10
    assert parts["readout"].value != before and len(parts["figure"].data[0].y) == 11
    runs = parts["runs"]()
    assert list(parts["figure"].data[0].y) == runs["online"].losses[:11, 0].tolist()
    parts["controls"]["lr"].value = 0.05
    assert parts["runs"]() is not runs and not parts["status"].message
    parts["controls"]["lr"].value = 10**-0.5  # a large step: diverges or not, never raises
    message = parts["status"].message
    assert message == "" or message.startswith("diverged"), message
    plot_stream(parts["runs"](), t=5)


def _bwt(r):
    last = r.shape[0] - 1
    return float((r[last, :last] - torch.diagonal(r)[:last]).mean())


WRONG = {
    "backward_transfer": {
        "zeros": lambda r: 0.0,
        "input unchanged": lambda r: r,
        "sign flipped": lambda r: -_bwt(r),
        "transposed matrix": lambda r: _bwt(r.T),
        "last family included": lambda r: float((r[-1] - torch.diagonal(r)).mean()),
    },
    "reservoir_probability": {
        "zeros": lambda size, seen: 0.0,
        "no cap at 1": lambda size, seen: size / seen,
        "flipped ratio": lambda size, seen: seen / size if size else 1.0,
        "one over seen": lambda size, seen: 1 / seen,
    },
}
RIGHT = {
    "backward_transfer": _bwt,
    "reservoir_probability": lambda size, seen: min(1.0, size / seen),
}


def test_every_checker_of_the_module_is_covered() -> None:
    ours = {n for n, f in exercises.CHECKS.items() if f.__module__ == exercises_stream.__name__}
    assert ours == set(RIGHT) == set(WRONG)
    for name in ours:
        assert getattr(exercises_stream, f"check_{name}") is exercises.CHECKS[name]


@pytest.mark.parametrize("name", sorted(RIGHT))
def test_right_answer_accepted(name: str, capsys) -> None:
    assert exercises.CHECKS[name](RIGHT[name]) is True
    assert capsys.readouterr().out.startswith("right:")


@pytest.mark.parametrize(("name", "mistake"), [(n, m) for n, wrong in WRONG.items() for m in wrong])
def test_wrong_answer_rejected(name: str, mistake: str, capsys) -> None:
    assert exercises.CHECKS[name](WRONG[name][mistake]) is False, mistake
    assert "wrong:" in capsys.readouterr().out


@pytest.mark.parametrize("name", sorted(RIGHT))
def test_stub_is_not_done(name: str, capsys) -> None:
    def stub(*args):
        raise NotImplementedError("exercise")

    for answer in (stub, ..., None):
        assert exercises.CHECKS[name](answer) is False
        assert "not done yet" in capsys.readouterr().out
