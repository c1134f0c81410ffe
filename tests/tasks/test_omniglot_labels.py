"""The label assignment of the Omniglot sampler: shuffled per task (standard) or fixed per class
(non-mutually-exclusive tasks, Yin et al. 2020), on synthetic images that name their class."""

from __future__ import annotations

import pytest
import torch

from mamlviz.tasks.omniglot import OmniglotTasks, make_split
from mamlviz.tasks.omniglot_data import DRAWINGS, SIZE, OmniglotArrays

CLASSES = 240


def arrays() -> OmniglotArrays:
    """Class c's drawings all carry the value c + 1 in pixel (0, 0): the corner it ends up in
    after a rotation tells the rotation, the value the character."""
    images = torch.zeros(CLASSES, DRAWINGS, SIZE, SIZE, dtype=torch.uint8)
    images[:, :, 0, 0] = torch.arange(1, CLASSES + 1, dtype=torch.uint8).view(-1, 1)
    names = [f"character{c:03d}" for c in range(CLASSES)]
    return OmniglotArrays(images, ["synthetic"] * CLASSES, names, torch.ones(CLASSES, dtype=bool))


def identities(x: torch.Tensor) -> list[tuple[int, int]]:
    """(character, corner) of each image in [..., 1, 28, 28]."""
    flat = x.reshape(-1, SIZE, SIZE)
    out = []
    for img in flat:
        corners = [img[0, 0], img[0, -1], img[-1, -1], img[-1, 0]]
        k = max(range(4), key=lambda i: float(corners[i]))
        out.append((round(float(corners[k]) * 255) - 1, k))
    return out


@pytest.fixture(scope="module")
def tasks() -> OmniglotTasks:
    return OmniglotTasks(arrays(), make_split(CLASSES, train_classes=200, val_classes=20))


def label_maps(
    tasks: OmniglotTasks, seed: int, meta_batch: int = 512
) -> dict[tuple[int, int], set[int]]:
    """Labels each (character, rotation) class got over ``meta_batch`` tasks (~3.5 tasks per
    class of the 720)."""
    episode = tasks.sample(torch.Generator().manual_seed(seed), 1, 2, meta_batch)
    seen: dict[tuple[int, int], set[int]] = {}
    for part in (episode.support, episode.query):
        for who, y in zip(identities(part.x), part.y.reshape(-1).tolist(), strict=True):
            seen.setdefault(who, set()).add(y)
    for y in episode.support.y:  # every task still has labels 0..ways-1, each once
        assert sorted(y.tolist()) == list(range(tasks.ways))
    return seen


def test_fixed_labels_give_every_class_one_label_in_every_task(tasks: OmniglotTasks) -> None:
    fixed = tasks.view(labels="fixed")
    seen = label_maps(fixed, 0)
    assert len(seen) > 600  # most of the 180 x 4 classes met, rotated ones included
    assert all(len(labels) == 1 for labels in seen.values())
    assert {c for c, _ in seen} <= set(tasks.partition.train.tolist())  # training characters only
    again = label_maps(fixed, 1)
    shared = set(seen) & set(again)
    assert shared and all(seen[c] == again[c] for c in shared)  # the same label across seeds


def test_shuffled_labels_change_from_task_to_task(tasks: OmniglotTasks) -> None:
    seen = label_maps(tasks, 0)
    assert sum(len(labels) > 1 for labels in seen.values()) > len(seen) // 2
    assert tasks.labels == "shuffled" and tasks.view(labels="fixed").labels == "fixed"
    assert tasks.view("test").labels == "shuffled"


def test_fixed_labels_are_seeded_and_reject_unknown_modes(tasks: OmniglotTasks) -> None:
    fixed = tasks.view(labels="fixed")
    a = fixed.sample(torch.Generator().manual_seed(3), 1, 1, 4).support.x
    b = fixed.sample(torch.Generator().manual_seed(3), 1, 1, 4).support.x
    assert torch.equal(a, b)
    with pytest.raises(ValueError, match="labels must be one of"):
        tasks.view(labels="sorted")


@pytest.mark.parametrize("labels", ["shuffled", "fixed"])
def test_a_class_cap_draws_from_the_first_classes_of_the_pool_only(
    tasks: OmniglotTasks, labels: str
) -> None:
    """``classes=K`` keeps the first K classes of the training pool (unrotated characters
    first), with either label assignment; fixed labels stay one label per class."""
    capped = tasks.view(labels=labels, classes=10)
    assert capped.num_classes() == 10 and capped.num_classes("test") == tasks.num_classes("test")
    seen = label_maps(capped, 1, meta_batch=200)
    first = tasks.partition.train[:10].tolist()
    assert {who for who in seen} == {(c, 0) for c in first}  # all ten met, none other, unrotated
    if labels == "fixed":
        assert all(len(ys) == 1 for ys in seen.values())
    else:
        assert max(len(ys) for ys in seen.values()) > 1
    # another split drops the cap; the same split keeps it
    assert capped.view(split="val").classes is None and capped.view(ways=3).classes == 10


def test_a_class_cap_outside_its_range_is_refused(tasks: OmniglotTasks) -> None:
    with pytest.raises(ValueError, match="classes"):
        tasks.view(classes=1)
    with pytest.raises(ValueError, match="classes"):
        tasks.view(classes=tasks.num_classes() + 1)
    with pytest.raises(ValueError, match="ways"):
        tasks.view(classes=3, ways=5)
