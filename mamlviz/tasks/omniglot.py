"""Omniglot as a task distribution: the standard class split and an N-way K-shot sampler.

Split (Vinyals et al. 2016, as used by MAML): a seeded random permutation of the 1623
characters; the first ``train_classes`` (1200) are for meta-training, of which the last
``val_classes`` (100) are held out for model selection, and the remaining 423 are meta-test.

Rotations: by default every meta-training character also appears rotated by 90, 180 and 270
degrees as a separate class (Santoro et al. 2016), so "train" has 1100 * 4 = 4400 classes and a
task may, rarely, contain two rotations of one character. Validation and test classes are
unrotated by default (``rotate_eval=True`` rotates them too). Note that the MAML reference code
instead draws distinct characters and then one random rotation each.
"""

from __future__ import annotations

import copy
import hashlib
from dataclasses import dataclass

import torch
from torch import Tensor

from mamlviz.core.episode import Episode, Examples
from mamlviz.errors import check_range
from mamlviz.tasks.omniglot_data import DRAWINGS, SIZE, OmniglotArrays

SPLITS = ("train", "val", "test")
LABELS = ("shuffled", "fixed")


@dataclass(frozen=True)
class OmniglotSplit:
    """Which character ids (indices into ``OmniglotArrays``) belong to each split.

    The ids are stored explicitly, not just the seed, so a checkpoint that saves
    ``state_dict()`` restores the exact split even if torch's RNG changes.
    """

    seed: int
    train: Tensor  # int64 class ids
    val: Tensor
    test: Tensor

    def classes(self, split: str) -> Tensor:
        """The class ids of ``split`` ("train", "val" or "test")."""
        if split not in SPLITS:
            raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
        return getattr(self, split)

    def state_dict(self) -> dict[str, int | list[int]]:
        """Plain-Python form for checkpoints."""
        return {"seed": self.seed, **{s: self.classes(s).tolist() for s in SPLITS}}

    @classmethod
    def from_state_dict(cls, state: dict[str, int | list[int]]) -> OmniglotSplit:
        """Inverse of ``state_dict``."""
        ids = {s: torch.as_tensor(state[s], dtype=torch.int64) for s in SPLITS}
        return cls(seed=int(state["seed"]), **ids)  # type: ignore[arg-type]


def make_split(
    arrays: OmniglotArrays | int, seed: int = 0, train_classes: int = 1200, val_classes: int = 100
) -> OmniglotSplit:
    """The standard split of ``arrays`` (or of that many classes) from a seeded permutation."""
    n = arrays if isinstance(arrays, int) else len(arrays)
    check_range("train_classes", train_classes, 2, n, integer=True)
    check_range("val_classes", val_classes, 0, train_classes - 2, integer=True)
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    cut = train_classes - val_classes
    return OmniglotSplit(seed, perm[:cut], perm[cut:train_classes], perm[train_classes:])


class OmniglotTasks:
    """``ways``-way few-shot tasks over the classes of one split: THE Omniglot sampler.

    ``sample(generator, shots, query_shots, meta_batch, dtype)`` is the ``TaskDistribution``
    form that training, evaluation and the notebooks all use; ``view(split, ways)`` gives the
    same images seen through another split or number of ways, sharing every tensor. Sampling
    is vectorised over the meta-batch and takes all randomness from the caller's (CPU)
    generator, so the same seed gives the same episodes.
    """

    def __init__(
        self,
        arrays: OmniglotArrays,
        partition: OmniglotSplit | None = None,
        *,
        split: str = "train",
        ways: int = 5,
        rotate_train: bool = True,
        rotate_eval: bool = False,
        labels: str = "shuffled",
    ) -> None:
        self.arrays = arrays
        self.partition = partition if partition is not None else make_split(arrays)
        # Flat pixels: a rotation by k * 90 degrees is then a single gather with _rot[k].
        self._pixels = arrays.images.reshape(len(arrays), DRAWINGS, SIZE * SIZE)
        grid = torch.arange(SIZE * SIZE).view(SIZE, SIZE)
        self._rot = torch.stack([torch.rot90(grid, k, dims=(0, 1)).reshape(-1) for k in range(4)])
        # Each split's classes as (character id, rotation) pairs.
        self._pools: dict[str, tuple[Tensor, Tensor]] = {}
        for name in SPLITS:
            ids = self.partition.classes(name)
            k = 4 if (rotate_train if name == "train" else rotate_eval) else 1
            self._pools[name] = (ids.repeat(k), torch.arange(k).repeat_interleave(len(ids)))
        self.split, self.ways, self.labels, self.classes = "train", 2, "shuffled", None
        self._bind(split, ways, labels)

    def _bind(self, split: str, ways: int, labels: str, classes: int | None = None) -> None:
        self.partition.classes(split)  # validates the name
        if labels not in LABELS:
            raise ValueError(f"labels must be one of {LABELS}, got {labels!r}")
        pool = len(self._pools[split][0])
        if classes is not None:
            check_range("classes", classes, 2, pool, integer=True)
        limit = pool if classes is None else int(classes)
        check_range("ways", ways, 2, limit, integer=True)
        self.split, self.ways, self.labels = split, int(ways), labels
        self.classes = None if classes is None else int(classes)

    def view(
        self,
        split: str | None = None,
        ways: int | None = None,
        labels: str | None = None,
        classes: int | None = None,
    ) -> OmniglotTasks:
        """These tasks drawn from another ``split``, with another number of ``ways``, another
        label assignment (``labels``, see :meth:`sample`), or from the first ``classes``
        classes of the split only (None: all; a new split or cap always resets it)."""
        other = copy.copy(self)  # shares the pixel, rotation and pool tensors
        same_split = split is None or split == self.split
        other._bind(
            self.split if split is None else split,
            self.ways if ways is None else ways,
            self.labels if labels is None else labels,
            classes if classes is not None or not same_split else self.classes,
        )
        return other

    def signature(self) -> dict[str, object]:
        """What identifies the data a checkpoint was trained on: the split seed, how many
        characters each split holds, whether rotations are classes, and a sha256 of every
        split's character names in order (so another seed, another permutation or other data
        shows, whatever the ids)."""
        h = hashlib.sha256()
        for name in SPLITS:
            for i in self.partition.classes(name).tolist():
                h.update(
                    f"{name}:{self.arrays.alphabets[i]}/{self.arrays.characters[i]}\n".encode()
                )
        return {
            "split_seed": self.partition.seed,
            "classes": {name: len(self.partition.classes(name)) for name in SPLITS},
            "rotations": {name: len(self._pools[name][0]) for name in SPLITS},
            "sha256": h.hexdigest(),
        }

    def num_classes(self, split: str | None = None) -> int:
        """Number of classes a task of ``split`` is drawn from (rotated copies count)."""
        split = self.split if split is None else split
        self.partition.classes(split)  # validates the name
        pool = len(self._pools[split][0])
        return pool if self.classes is None or split != self.split else min(pool, self.classes)

    def sample(
        self,
        generator: torch.Generator,
        shots: int,
        query_shots: int,
        meta_batch: int,
        dtype: torch.dtype = torch.float32,
    ) -> Episode:
        """A meta-batch of ``meta_batch`` ``ways``-way tasks of this split.

        ``support.x`` is [meta_batch, ways * shots, 1, 28, 28] in [0, 1] (ink = 1) of ``dtype``
        and ``support.y`` int64 [meta_batch, ways * shots] with labels 0..ways-1, grouped by
        label; ``query`` likewise with ``query_shots``. Support and query drawings of a class
        are distinct.

        Which class gets which label: with ``labels="shuffled"`` (the standard, and the
        default) a random order in every task, so no single network can solve the tasks
        without their support sets (the tasks are *mutually exclusive*). With
        ``labels="fixed"`` the classes are dealt into ``ways`` groups by their index (class i
        into group i mod ways) and a task takes one class from each group, class of group j
        labelled j: every class keeps one label in every task, and a network can learn to
        classify the training tasks while ignoring their support sets (the label memorisation
        of Yin et al. 2020, "Meta-Learning without Memorization", sec. 3).
        """
        ways, n_classes = self.ways, self.num_classes()
        check_range("shots", shots, 1, DRAWINGS - 1, integer=True)
        check_range("query_shots", query_shots, 1, DRAWINGS - 1, integer=True)
        if shots + query_shots > DRAWINGS:
            raise ValueError(
                f"shots + query_shots must be <= {DRAWINGS} (drawings per character), so"
                f" query_shots must be in [1, {DRAWINGS - shots}] for shots={shots}; got"
                f" query_shots={query_shots}"
            )
        check_range("meta_batch", meta_batch, 1, integer=True)
        ways, shots, query_shots, meta_batch = map(int, (ways, shots, query_shots, meta_batch))
        ids, rots = self._pools[self.split]
        per_class = shots + query_shots
        # Row-wise random permutations: the first `ways` entries are distinct classes in a
        # random label order; float64 keys make ties (and the bias they cause) negligible.
        if self.labels == "fixed":
            per_group = n_classes // ways  # the classes of the last incomplete round are unused
            u = torch.rand(meta_batch, ways, generator=generator, dtype=torch.float64)
            member = (u * per_group).long().clamp_(max=per_group - 1)
            pick = torch.arange(ways) + ways * member  # class of group j: j, j + ways, ...
        else:
            keys = torch.rand(meta_batch, n_classes, generator=generator, dtype=torch.float64)
            pick = keys.argsort(dim=1)[:, :ways]
        keys = torch.rand(meta_batch, ways, DRAWINGS, generator=generator, dtype=torch.float64)
        drawings = keys.argsort(dim=2)[..., :per_class]  # without replacement per class
        pixels = self._pixels[ids[pick].unsqueeze(-1), drawings]  # uint8 [B, ways, n, 784]
        pixels = pixels.gather(-1, self._rot[rots[pick]].unsqueeze(2).expand_as(pixels))
        x = pixels.view(meta_batch, ways, per_class, 1, SIZE, SIZE).to(dtype).div_(255)

        def examples(part: Tensor) -> Examples:
            k = part.shape[2]
            y = torch.arange(ways).repeat_interleave(k).expand(meta_batch, -1).contiguous()
            return Examples(part.reshape(meta_batch, ways * k, 1, SIZE, SIZE), y)

        return Episode(examples(x[:, :, :shots]), examples(x[:, :, shots:]))
