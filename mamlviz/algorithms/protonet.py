r"""Prototypical Networks (Snell, Swersky & Zemel 2017): a learned embedding, the nearest mean.

The metric-based baseline beside the gradient-based rows: no inner loop. A task's support set
is embedded by f_theta, each class k gets a prototype, the mean of its support embeddings
(Snell et al. eq. 1), and a query point x a distribution over classes from its squared
Euclidean distances to the prototypes (eq. 2):

    c_k = 1/|S_k| sum_{(x_i, y_i) in S_k} f_theta(x_i),
    p(y = k | x) = softmax_k(-||f_theta(x) - c_k||^2).

Meta-training minimises the query cross-entropy -log p(y | x) over theta with Adam; the logits
are the negative squared distances, so the classifier is the nearest-prototype rule. At 1 shot
the prototype IS the support embedding.

* embedding: the body of MAML's Omniglot net (:class:`mamlviz.models.convnet.ConvNet`'s four
  strided conv blocks and spatial mean, 64 features; no head). Snell et al. use max-pool blocks
  (the ``pool=True`` variant); we keep MAML's body so that the comparison with the shipped
  MAML rows is one of the algorithm, not of the network.
* ``inner_steps`` must be 0 (``make_learner`` refuses any other value, naming the argument
  and the range [0, 0]); ``inner_lr`` is never used, and evaluation refuses ``--inner-lr``
  and ``steps`` other than 0. The registry row's ``classify`` replaces the adapted net's
  logits at evaluation.
* batch norm: the support set and the query set are each embedded as one batch with its own
  statistics, the convention of the shipped MAML rows (transductive: the query images
  inform each other's normalisation). Option ``transductive=false`` (evaluation) embeds
  every query image in a batch with the support set and reads its row, Reptile's
  non-transductive protocol; the prototypes come from the support set alone either way.
* option ``train_ways``: the ways of the meta-training episodes (Snell et al. train Omniglot at
  60 ways and test at 5); the test tasks keep the problem's ways. Option ``halve_every``
  halves Adam's step size every that many episodes (Snell et al.: 2000).
* Each task's ways are read from its support labels (0..ways-1, every class present), so the
  meta-gradient runs task by task (``AlgorithmSpec.batched`` is False), not under ``vmap``.
"""

from __future__ import annotations

import dataclasses

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.func import functional_call, grad_and_value

from mamlviz.algorithms.registry import AlgorithmSpec, register, sgd
from mamlviz.core.episode import Episode, Examples
from mamlviz.core.functional import Params
from mamlviz.core.learner import Learner
from mamlviz.core.rules import InnerRule
from mamlviz.errors import check_range
from mamlviz.models.convnet import ConvNet


class Embedding(nn.Module):
    """f_theta: a :class:`ConvNet`'s conv blocks without its head, [N, C, H, W] -> [N, 64].

    It holds the net's own block modules (no copy) under the same names (``conv1.weight``,
    ``norm1.weight``, ...), so a ProtoNet body and a MAML body line up layer by layer, and its
    forward is :meth:`ConvNet.features` itself.
    """

    def __init__(self, net: ConvNet) -> None:
        super().__init__()
        for name, child in net.named_children():
            if name != "head":
                self.add_module(name, child)
        self.pool, self.size = net.pool, net.size

    def forward(self, x: Tensor) -> Tensor:
        return ConvNet.features(self, x)  # type: ignore[arg-type]  (the same blocks, by name)


def embedding_of(model: nn.Module) -> nn.Module:
    """The embedding a ProtoNet learns: a conv net's body, or ``model`` itself (any module whose
    forward is the embedding, e.g. an ``nn.Linear`` in the tests)."""
    return Embedding(model) if isinstance(model, ConvNet) else model


def class_count(labels: Tensor) -> int:
    """The ways of a support set whose labels are 0..ways-1, every class at least once."""
    if labels.dim() != 1 or labels.numel() == 0 or labels.dtype not in (torch.int64, torch.int32):
        raise ValueError(
            f"support labels must be a non-empty 1-D integer tensor, got {labels.dtype}"
            f" {tuple(labels.shape)}"
        )
    try:
        ways = int(labels.max()) + 1
    except RuntimeError as err:  # under vmap the labels are not values
        raise ValueError(
            "protonet reads each task's ways from its labels: run it task by task"
            " (meta_gradient(..., batched=False)), not under vmap"
        ) from err
    missing = sorted(set(range(ways)) - set(labels.tolist()))
    if int(labels.min()) < 0 or ways < 2 or missing:
        raise ValueError(
            "support labels must be 0..ways-1 with ways >= 2 and every class present"
            f" (a prototype needs a support example); got labels {sorted(set(labels.tolist()))}"
        )
    return ways


def prototypes(embeddings: Tensor, labels: Tensor, ways: int | None = None) -> Tensor:
    """[ways, D]: c_k, the mean of the embeddings [N, D] labelled k (Snell et al. eq. 1)."""
    if embeddings.dim() != 2 or embeddings.shape[0] != labels.shape[0]:
        raise ValueError(
            f"embeddings must be [N, D] with one label each, got {tuple(embeddings.shape)}"
            f" and labels {tuple(labels.shape)}"
        )
    ways = class_count(labels) if ways is None else ways
    onehot = F.one_hot(labels, ways).to(embeddings.dtype)  # [N, ways]
    return (onehot.T @ embeddings) / onehot.sum(0).unsqueeze(1)


def squared_distances(queries: Tensor, centres: Tensor) -> Tensor:
    """[M, K]: ||q_m - c_k||^2 for queries [M, D] and centres [K, D] (exact differences, not the
    expanded ||q||^2 - 2 q.c + ||c||^2, which cancels badly for a query near a prototype)."""
    if queries.dim() != 2 or centres.dim() != 2 or queries.shape[1] != centres.shape[1]:
        raise ValueError(
            f"queries [M, D] and centres [K, D] must share D, got {tuple(queries.shape)} and"
            f" {tuple(centres.shape)}"
        )
    return (queries.unsqueeze(1) - centres.unsqueeze(0)).pow(2).sum(-1)


def _model_params(learner: Learner, meta: Params) -> Params:
    _, frozen, _ = learner.split(meta)  # nothing adapts: every model parameter is frozen
    return frozen


def logits(
    model: nn.Module, params: Params, support: Examples, query: Examples, *, transductive: bool
) -> Tensor:
    """[query examples, ways]: -||f(x) - c_k||^2 for one task (Snell et al. eq. 2's logits)."""
    ways = class_count(support.y)
    centres = prototypes(functional_call(model, params, (support.x,)), support.y, ways)
    if transductive:  # the query set as one batch, as the shipped MAML rows' evaluation
        embedded = functional_call(model, params, (query.x,))
    else:  # each query image in a batch with the support set, its own row read back

        def one(x: Tensor) -> Tensor:
            return functional_call(model, params, (torch.cat([support.x, x.unsqueeze(0)]),))[-1]

        embedded = torch.func.vmap(one)(query.x)
    return -squared_distances(embedded, centres)


def query_loss(learner: Learner, meta: Params, episode: Episode) -> Tensor:
    """Mean query cross-entropy of one task under the prototype classifier (transductive)."""
    support, query = episode
    out = logits(learner.model, _model_params(learner, meta), support, query, transductive=True)
    return F.cross_entropy(out, query.y)


def prototypical(learner: Learner, meta: Params, episode: Episode) -> tuple[Params, Tensor]:
    """The registry strategy: gradient of the query loss with respect to theta, for one task.

    Per task only (each task's ways come from its labels): call ``meta_gradient`` with
    ``batched=False``, as training does for this row."""
    return grad_and_value(lambda m: query_loss(learner, m, episode))(meta)


def classify(learner: Learner, meta: Params, episode: Episode) -> Tensor:
    """[tasks, query examples, ways]: the query logits of every task of a meta-batch episode,
    from its support set (the registry row's ``classify``, which evaluation scores).
    Option ``transductive`` (default true) chooses how the query set is normalised."""
    transductive = bool(learner.options.get("transductive", True))
    params = _model_params(learner, meta)
    with torch.no_grad():
        return torch.stack(
            [
                logits(learner.model, params, *episode.task(i), transductive=transductive)
                for i in range(episode.num_tasks)
            ]
        )


def rule(inner_lr: float, **options: object) -> InnerRule:
    """The row's ``make_rule``: validates the options (at config time, before any work) and
    returns a rule that is never stepped (there is no inner loop)."""
    if "train_ways" in options:
        check_range("train_ways", options["train_ways"], 2, integer=True)  # type: ignore[arg-type]
    if "halve_every" in options:
        check_range("halve_every", options["halve_every"], 1, integer=True)  # type: ignore[arg-type]
    if not isinstance(options.get("transductive", True), bool):
        raise ValueError(f"transductive must be true or false, got {options['transductive']!r}")
    return sgd(inner_lr)


def never(name: str) -> bool:
    """``adapts`` of a learner without an inner loop: no parameter is a fast weight."""
    return False


def no_plain_loss(params: Params, examples: Examples) -> Tensor:
    raise ValueError(
        "protonet has no loss of one set of examples: its logits need a support set"
        " (mamlviz.algorithms.protonet.query_loss(learner, meta, episode))"
    )


def prepare(learner: Learner, loss: str) -> Learner:
    if loss != "cross_entropy":
        raise ValueError(f"protonet classifies: loss must be 'cross_entropy', got {loss!r}")
    return dataclasses.replace(
        learner, model=embedding_of(learner.model), loss=no_plain_loss, adapts=never
    )


register(
    AlgorithmSpec(
        "protonet",
        "Prototypical Networks (nearest class mean of a learned embedding; no inner loop)",
        "Snell, Swersky & Zemel 2017",
        rule,
        prototypical,
        prepare=prepare,
        options=(
            (
                "train_ways",
                "ways of the meta-training episodes, an integer >= 2; default: the problem's"
                " (omniglot: 60)",
            ),
            (
                "halve_every",
                "episodes between halvings of the outer step size, an integer >= 1; default:"
                " the problem's (omniglot: 2000)",
            ),
            (
                "transductive",
                "true: the query set normalised as one batch; false: each query image with the"
                " support set; default true",
            ),
        ),
        uses_inner_lr=False,
        classify=classify,
        batched=False,
        compiles=False,
        no_compile_reason="it runs task by task, with no batched inner loop to compile",
    )
)
