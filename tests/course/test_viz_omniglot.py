"""Chapter 08's widgets and exercises: the drawing shown is the sampler's class, the episode grid
puts every example at its label's row, the main widget's step slider changes what it prints, and
every checker accepts the right answer and rejects the usual wrong ones."""

from __future__ import annotations

import pytest
import torch

from mamlviz.course import exercises_omniglot as ex
from mamlviz.course.exercises import CHECKS
from mamlviz.course.omniglot import load_demo
from mamlviz.course.viz import omniglot as vo


def test_drawing_is_what_the_sampler_gives_a_rotated_class(synthetic_omniglot) -> None:
    """Every support image of sampled training tasks (rotations as classes) is drawing(c, d, r)
    for some character c, drawer d and rotation r, and its label's images share one (c, r)."""
    tasks = synthetic_omniglot().view("train", ways=4)
    episode = tasks.sample(torch.Generator().manual_seed(3), 2, 1, 3)
    ids = tasks.partition.classes("train").tolist()
    table = {
        (c, d, r): vo.drawing(tasks, c, d, r) for c in ids for d in range(20) for r in range(4)
    }
    for t in range(3):
        task = episode.task(t)
        for label in range(4):
            found = set()
            for x in task.support.x[task.support.y == label]:
                keys = [k for k, img in table.items() if torch.equal(img, x[0])]
                assert keys, "a sampled image is no rotated drawing"
                found.add({(c, r) for c, _, r in keys}.pop())
            assert len(found) == 1


def test_split_of_and_alphabets_partition_the_characters(synthetic_omniglot) -> None:
    tasks = synthetic_omniglot()
    for name in ("train", "val", "test"):
        assert all(vo.split_of(tasks, i) == name for i in tasks.partition.classes(name).tolist())
    groups = vo.alphabets(tasks)
    assert sorted(i for ids in groups.values() for i in ids) == list(range(8))
    assert list(groups) == ["alphabet0", "alphabet1"]


def test_mosaic_places_tiles_row_major_with_nan_padding() -> None:
    images = torch.arange(6 * 4, dtype=torch.float32).reshape(6, 2, 2)
    grid = vo.mosaic(images, 2, 3, pad=1)
    assert grid.shape == (2 * 3 - 1, 3 * 3 - 1)
    assert torch.equal(grid[3:5, 3:5], images[4])  # row 1, col 1
    assert torch.equal(grid[0:2, 6:8], images[2])
    assert grid[2].isnan().all() and grid[:, 2].isnan().all()
    with pytest.raises(ValueError, match="grid"):
        vo.mosaic(images, 2, 2)


def test_episode_grid_rows_are_labels_support_then_query(synthetic_omniglot) -> None:
    tasks = synthetic_omniglot().view("train", ways=3)
    episode = tasks.sample(torch.Generator().manual_seed(0), 2, 1, 1).task(0)
    grid = vo.episode_grid(episode, 3, pad=2)
    assert grid.shape == (3 * 30 - 2, 4 * 30 - 2)
    for label in range(3):
        top = 30 * label
        support = episode.support.x[episode.support.y == label]
        for j in range(2):
            assert torch.equal(grid[top : top + 28, 30 * j : 30 * j + 28], support[j, 0])
        assert grid[top : top + 28, 60:88].isnan().all()  # the gap
        query = episode.query.x[episode.query.y == label]
        assert torch.equal(grid[top : top + 28, 90:118], query[0, 0])


def test_widgets_explore_data_and_episodes(omniglot_tasks) -> None:
    explorer = vo.DatasetExplorer(omniglot_tasks)
    first = explorer.text.value
    explorer.alphabet.value = 5
    assert explorer.text.value != first and not explorer.status.message
    explorer.character.value = explorer.character.max
    explorer.rotation.value = 2
    i = explorer.character_id
    assert vo.split_of(omniglot_tasks, i) in explorer.text.value
    z = torch.tensor(explorer.fig.data[0].z).flip(0)
    assert torch.equal(z, vo.drawing(omniglot_tasks, i, 0, 2))
    sampler = vo.EpisodeSampler(omniglot_tasks)
    sampler.ways.value = 7
    sampler.shots.value = 3
    assert sampler.episode.support.x.shape[0] == 21 and "7-way 3-shot" in sampler.text.value


def test_main_widget_step_slider_changes_readout_and_bars(omniglot_tasks) -> None:
    demos = {"MAML": load_demo("omniglot-maml-5w1s"), "Reptile": load_demo("omniglot-reptile-5w1s")}
    for demo in demos.values():
        demo.tasks = omniglot_tasks.view("test")
    widget = vo.AdaptationExplorer(demos, seed=2)
    assert MAIN_IN(widget)
    assert widget.widget.children[0] is widget.steps  # the first slider is the step slider
    before, bars = widget.text.value, list(widget.fig.data[1].y)
    assert widget.steps.value == 0 and widget.curve.data[-1].x == (0, 0)
    widget.steps.value = 1
    assert widget.text.value != before and list(widget.fig.data[1].y) != bars
    r = widget.result("MAML", 2)
    assert list(widget.fig.data[1].y) == r.probabilities[1, 0].tolist()
    assert widget.curve.data[-1].x == (1, 1)
    assert len(widget.cache) == 2  # the step slider only indexes the cache
    widget.seed.value = 3
    assert len(widget.cache) == 4 and not widget.status.message
    fig = vo.plot_adaptation(demos, widget.episode(3), steps=(0, 1))
    assert len(fig.axes) == 5 * 5


def MAIN_IN(widget) -> bool:
    return vo.MAIN_CLASS in widget.widget._dom_classes


def test_true_class_probability_picks_each_querys_label() -> None:
    from mamlviz.course.omniglot import Adapted

    p = torch.rand(3, 4, 5)
    labels = torch.tensor([4, 0, 2, 2])
    r = Adapted(p, p.argmax(-1), [0.0] * 3, [0.0] * 3, {})
    got = vo.true_class_probability(r, labels)
    assert got.shape == (3, 4) and got[1, 0] == p[1, 0, 4] and got[2, 3] == p[2, 3, 2]


# --- exercises ------------------------------------------------------------------------------


def _right_accuracy(logits, labels):
    return float((logits.argmax(-1) == labels).float().mean())


WRONG_ACCURACY = {
    "zeros": lambda logits, labels: 0.0,
    "input unchanged": lambda logits, labels: logits,
    "sign flipped (argmin)": lambda logits, labels: float(
        (logits.argmin(-1) == labels).float().mean()
    ),
    "transposed (argmax over examples)": lambda logits, labels: float(
        (logits.argmax(0)[: len(labels)] == labels[: logits.shape[1]]).float().mean()
    ),
    "count, not share": lambda logits, labels: float((logits.argmax(-1) == labels).sum()),
    "error rate": lambda logits, labels: 1 - _right_accuracy(logits, labels),
}
WRONG_ROTATIONS = {
    "no rotations": 1100,
    "validation rotated too": 1200 * 4,
    "all characters": 1623 * 4,
    "zero": 0,
    "rotations only": 4,
}


def test_every_checker_of_the_module_is_covered() -> None:
    ours = {n for n, f in CHECKS.items() if f.__module__ == ex.__name__}
    assert ours == {"episode_accuracy", "rotation_classes"}
    for name in ours:
        assert getattr(ex, f"check_{name}") is CHECKS[name]


def test_right_answers_pass(capsys: pytest.CaptureFixture[str]) -> None:
    assert ex.check_episode_accuracy(_right_accuracy) is True
    assert ex.check_rotation_classes(4400) is True
    assert capsys.readouterr().out.count("right:") == 2


@pytest.mark.parametrize("mistake", sorted(WRONG_ACCURACY))
def test_accuracy_checker_rejects(mistake: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert ex.check_episode_accuracy(WRONG_ACCURACY[mistake]) is False
    assert capsys.readouterr().out.startswith("wrong:")


@pytest.mark.parametrize("mistake", sorted(WRONG_ROTATIONS))
def test_rotation_checker_rejects(mistake: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert ex.check_rotation_classes(WRONG_ROTATIONS[mistake]) is False
    assert capsys.readouterr().out.startswith("wrong:")


def test_unfinished_answers_say_not_done_yet(capsys: pytest.CaptureFixture[str]) -> None:
    def stub(*args):
        raise NotImplementedError("exercise")

    assert ex.check_episode_accuracy(stub) is False
    assert ex.check_rotation_classes(...) is False
    assert capsys.readouterr().out.count("not done yet:") == 2


def test_reference_accuracy_is_the_share_of_argmax_hits() -> None:
    logits = torch.tensor([[2.0, 1.0], [0.0, 3.0], [5.0, -1.0]])
    assert ex.reference_accuracy(logits, torch.tensor([0, 1, 1])) == pytest.approx(2 / 3)
