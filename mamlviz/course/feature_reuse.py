r"""Rapid learning or feature reuse? Measurements on a meta-trained Omniglot net (chapter 09).

Raghu, Raghu, Bengio & Vinyals 2020 ("Rapid Learning or Feature Reuse?", ICLR) asked what the
inner loop of MAML changes. Their tools, here for the package's conv nets:

* :func:`accuracy_adapting`: query accuracy when only some layers adapt at test time (the
  rest stay at the meta-learned theta); "head only" is ANIL's inner loop applied to a net that
  MAML trained (their Table 1 freezes layers in the same way);
* :func:`prototype_accuracy`: no head at all (NIL, their sec. 4.2): the body's features at theta,
  each query given the label of the support feature most similar in cosine;
* :func:`linear_cka` and :func:`cka_by_layer`: how much each layer's representation of the query
  images changes between theta and the adapted phi (linear centred kernel alignment, Kornblith,
  Norouzi, Lee & Hinton 2019, eq. 5; Raghu et al. use CCA and CKA alike);
* :func:`weight_change_by_layer`: the relative distance ||phi - theta|| / ||theta|| per layer;
* :func:`training_episodes`: meta-TRAINING tasks with shuffled or fixed labels, to see label
  memorisation (Yin et al. 2020);
* :func:`gradient_share`: each layer's share of the first inner step's first-order loss
  decrease, alpha ||g_l||^2 / alpha ||g||^2: where one SGD step can act.

Every function takes the episodes as one meta-batch (one ``Episode`` with a task axis) and
adapts every task at once on the stacked path (:mod:`mamlviz.core.stacked`), so a chapter can
measure a few hundred episodes in seconds.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from mamlviz.core import stacked
from mamlviz.core.episode import Episode
from mamlviz.core.functional import Params, call, detach
from mamlviz.course.omniglot import OmniglotDemo
from mamlviz.models.convnet import BLOCKS
from mamlviz.tasks import TaskDistribution
from mamlviz.training.evaluate import check_data
from mamlviz.training.problems import get_problem

LAYERS = (*(f"block {i}" for i in range(1, BLOCKS + 1)), "head")
# The adaptation settings of the chapter: which layers the inner loop may change.
SETTINGS: dict[str, tuple[str, ...]] = {
    "all layers": LAYERS,
    "blocks 2-4 + head": LAYERS[1:],
    "blocks 3-4 + head": LAYERS[2:],
    "block 4 + head": LAYERS[3:],
    "block 4 only": LAYERS[3:4],
    "head only": LAYERS[4:],
    "nothing": (),
}


def layer_of(name: str) -> str:
    """The layer a parameter belongs to: ``conv2.weight`` and ``norm2.bias`` to "block 2",
    ``head.*`` to "head"; anything else (Meta-Dropout's noise net) to "" (never adapted here)."""
    if name.startswith("head."):
        return "head"
    for i in range(1, BLOCKS + 1):
        if name.startswith((f"conv{i}.", f"norm{i}.")):
            return f"block {i}"
    return ""


@dataclass(frozen=True)
class AdaptsLayers:
    """``Learner.adapts`` predicate: True for the parameters of ``layers``."""

    layers: frozenset[str]

    def __call__(self, name: str) -> bool:
        return layer_of(name) in self.layers


def check_layers(layers: Iterable[str]) -> frozenset[str]:
    """``layers`` as a set, each checked against :data:`LAYERS`."""
    chosen = frozenset(layers)
    unknown = sorted(chosen - set(LAYERS))
    if unknown:
        raise ValueError(f"layers must be among {LAYERS}, got {unknown}")
    return chosen


def episodes(demo: OmniglotDemo, count: int, seed: int = 0, query_shots: int = 1) -> Episode:
    """``count`` meta-test episodes of the demo's problem as one meta-batch, from ``seed``."""
    demo.sample(0)  # loads and checks the meta-test tasks
    generator = torch.Generator().manual_seed(seed)
    return demo.tasks.sample(generator, demo.shots, query_shots, count)


def training_episodes(
    demo: OmniglotDemo,
    count: int,
    labels: str = "shuffled",
    seed: int = 0,
    tasks: TaskDistribution | None = None,
) -> Episode:
    """``count`` episodes of the META-TRAINING classes with ``labels`` "shuffled" (the standard
    sampler) or "fixed" (every class keeps one label: the tasks a memorising learner saw), as
    one meta-batch. ``tasks`` defaults to the training tasks of the standard Omniglot problem,
    checked against the data split the demo's checkpoint was trained on."""
    if tasks is None:
        tasks = get_problem("omniglot").make_tasks("train")
        check_data(demo.checkpoint, tasks)
    tasks = tasks.view("train", ways=demo.model.ways, labels=labels)  # type: ignore[attr-defined]
    return tasks.sample(torch.Generator().manual_seed(seed), demo.shots, 1, count)


def accuracy_adapting(
    demo: OmniglotDemo,
    episode: Episode,
    layers: Iterable[str] = LAYERS,
    steps: int = 3,
    inner_lr: float | None = None,
) -> Tensor:
    """``[tasks, steps + 1]`` query accuracy after 0..``steps`` inner steps that change only
    ``layers`` (the others stay at theta). Transductive, as the shipped evaluations."""
    learner = replace(demo.learner(inner_lr), adapts=AdaptsLayers(check_layers(layers)))
    return stacked.accuracy_curves(learner, detach(demo.meta), episode, steps)


def adapted(
    demo: OmniglotDemo, episode: Episode, layers: Iterable[str] = LAYERS, steps: int = 3
) -> Params:
    """Every task's parameters after ``steps`` inner steps on ``layers``: [tasks, ...] each."""
    learner = replace(demo.learner(), adapts=AdaptsLayers(check_layers(layers)))
    sl = stacked.stacked_learner(learner)
    fast, frozen, rule = sl.split(stacked.stack(detach(demo.meta), episode.num_tasks))
    with torch.no_grad():
        phi = sl.inner_loop(fast, frozen, rule, episode.support, steps=steps, first_order=True)
    return {**frozen, **detach(phi)}


def features(model: nn.Module, params: Params, x: Tensor) -> Tensor:
    """The body's output, i.e. the head's input [N, filters], of ``model`` with ``params``."""
    return block_outputs(model, params, x)["features"]


def block_outputs(model: nn.Module, params: Params, x: Tensor) -> dict[str, Tensor]:
    """Each layer's output on ``x`` (one batch, batch-norm statistics of ``x``): the feature maps
    after block i's ReLU [N, C, H, W] and the head's logits [N, ways], keyed by :data:`LAYERS`,
    plus ``"features"``, the head's input [N, filters]."""
    taps: dict[str, Tensor] = {}
    handles = []
    for i in range(1, BLOCKS + 1):

        def hook(_m: nn.Module, _i: object, out: Tensor, key: str = f"block {i}") -> None:
            taps[key] = torch.relu(out)  # the block's ReLU follows its norm

        handles.append(getattr(model, f"norm{i}").register_forward_hook(hook))

    def head_input(_m: nn.Module, args: tuple[Tensor, ...]) -> None:
        taps["features"] = args[0]

    handles.append(model.get_submodule("head").register_forward_pre_hook(head_input))
    try:
        taps["head"] = call(model, params, x)
    finally:
        for h in handles:
            h.remove()
    return taps


def prototype_accuracy(demo: OmniglotDemo, episode: Episode) -> Tensor:
    """``[tasks]`` query accuracy with no head and no inner step (NIL, Raghu et al. sec. 4.2):
    the body's features at theta; each query gets the label of the class whose mean support
    feature (its prototype; with one shot, the support feature) is most similar in cosine.
    Support and query are fed as separate batches, as in the adaptation."""
    meta = detach(demo.meta)
    ways = int(episode.support.y.max()) + 1
    out = []
    with torch.no_grad():
        for t in range(episode.num_tasks):
            task = episode.task(t)
            s = features(demo.model, meta, task.support.x)
            q = features(demo.model, meta, task.query.x)
            protos = torch.stack([s[task.support.y == c].mean(0) for c in range(ways)])
            sim = F.normalize(q, dim=1) @ F.normalize(protos, dim=1).T
            out.append((sim.argmax(1) == task.query.y).double().mean())
    return torch.stack(out)


def linear_cka(x: Tensor, y: Tensor) -> Tensor:
    r"""Linear CKA of two representations of the same n examples, ``x`` [n, p], ``y`` [n, q]:

        CKA(X, Y) = ||Y_c^T X_c||_F^2 / (||X_c^T X_c||_F ||Y_c^T Y_c||_F),

    with X_c, Y_c the column-centred matrices (Kornblith et al. 2019, eq. 5). 1 for identical
    representations, invariant to rotations and isotropic scaling of either, in [0, 1].
    """
    if x.dim() != 2 or y.dim() != 2 or x.shape[0] != y.shape[0]:
        raise ValueError(
            f"x and y must be [n, features] with the same n, got {tuple(x.shape)}, {tuple(y.shape)}"
        )
    if x.shape[0] < 2:
        raise ValueError(f"linear_cka needs n >= 2 examples, got {x.shape[0]}")
    x, y = x - x.mean(0), y - y.mean(0)
    # the n x n Gram form: cheaper when features outnumber examples, as for conv maps
    kx, ky = x @ x.T, y @ y.T
    return (kx * ky).sum() / (kx.norm() * ky.norm())


def cka_by_layer(
    demo: OmniglotDemo,
    episode: Episode,
    layers: Iterable[str] = LAYERS,
    steps: int = 3,
    phi: Params | None = None,
) -> dict[str, Tensor]:
    """Per layer, ``[tasks]`` linear CKA between its representation of each task's query images
    at theta and after ``steps`` inner steps on ``layers`` (1: unchanged). ``phi``: those
    adapted parameters if the caller has them already (:func:`adapted`)."""
    phi = adapted(demo, episode, layers, steps) if phi is None else phi
    meta = detach(demo.meta)
    out: dict[str, list[Tensor]] = {name: [] for name in LAYERS}
    with torch.no_grad():
        for t in range(episode.num_tasks):
            x = episode.task(t).query.x
            before = block_outputs(demo.model, meta, x)
            after = block_outputs(demo.model, {n: w[t] for n, w in phi.items()}, x)
            for name in LAYERS:
                out[name].append(linear_cka(before[name].flatten(1), after[name].flatten(1)))
    return {name: torch.stack(v) for name, v in out.items()}


def weight_change_by_layer(theta: Params, phi: Params) -> dict[str, Tensor]:
    """Per layer, ``||phi - theta|| / ||theta||`` over the layer's parameters; ``phi`` may have a
    leading task axis ([tasks] results) or not (a scalar)."""
    out: dict[str, Tensor] = {}
    for name in LAYERS:
        keys = [n for n in theta if layer_of(n) == name]
        ref = torch.sqrt(sum(theta[n].pow(2).sum() for n in keys))
        batched = phi[keys[0]].dim() > theta[keys[0]].dim()
        dims: Callable[[Tensor], Tensor] = (
            (lambda d: d.flatten(1).pow(2).sum(1)) if batched else (lambda d: d.pow(2).sum())
        )
        out[name] = torch.sqrt(sum(dims(phi[n] - theta[n]) for n in keys)) / ref
    return out


def gradient_share(demo: OmniglotDemo, episode: Episode) -> dict[str, Tensor]:
    r"""Per layer l, ``[tasks]`` share ||g_l||^2 / ||g||^2 of the support-loss gradient at theta.

    One SGD step changes the loss by -alpha ||g||^2 + O(alpha^2) = -alpha sum_l ||g_l||^2, so
    this is each layer's share of what the first inner step can achieve, to first order.
    """
    sl = stacked.stacked_learner(demo.learner())
    fast, frozen, _ = sl.split(stacked.stack(detach(demo.meta), episode.num_tasks))
    grads = torch.func.grad(lambda f: sl.loss({**f, **frozen}, episode.support))(fast)
    sq = {
        name: sum(g.flatten(1).pow(2).sum(1) for n, g in grads.items() if layer_of(n) == name)
        for name in LAYERS
    }
    total = sum(sq.values())
    return {name: v / total for name, v in sq.items()}  # type: ignore[operator]


def zero_head(demo: OmniglotDemo) -> OmniglotDemo:
    """``demo`` with its head (weights and bias) set to zero: a linear probe on theta's body
    that starts from uniform predictions instead of from the meta-learned head."""
    meta = {n: torch.zeros_like(w) if layer_of(n) == "head" else w for n, w in demo.meta.items()}
    return replace(demo, meta=meta)
