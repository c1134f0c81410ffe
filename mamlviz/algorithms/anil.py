r"""ANIL, Almost No Inner Loop (Raghu, Raghu, Bengio & Vinyals 2020): only the head adapts.

The inner loop updates the last layer (the head) and leaves the body fixed,

    phi_head = head - alpha grad_head L_support(body, head),   phi_body = body,

and the outer loop meta-learns body and head through the unrolled meta-gradient of
L_query(body, phi_head) (second order through the head's steps; the body's gradient flows
through the features both losses see). The paper's finding: MAML's body barely changes in the
inner loop anyway (feature reuse), so ANIL matches MAML at a fraction of the inner-loop cost.
ANIL is MAML with ``Learner.adapts`` restricted to the head; every other part is shared.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from torch import nn

from mamlviz.algorithms.registry import AlgorithmSpec, register, sgd
from mamlviz.core.learner import Learner
from mamlviz.core.metagrad import unrolled
from mamlviz.models.noise import NOISE_PREFIX


@dataclass(frozen=True)
class InHead:
    """``adapts`` predicate: True for the parameters of the model's head (its last layer)."""

    names: frozenset[str]

    def __call__(self, name: str) -> bool:
        return name in self.names


def head_names(model: nn.Module) -> frozenset[str]:
    """Parameter names of the last child module that has parameters: ``out`` of the sinusoid
    MLP, ``head`` of the Omniglot conv net. Meta-Dropout's noise net is not a layer of the
    predictor and never counts."""
    children = [
        (n, m)
        for n, m in model.named_children()
        if any(True for _ in m.parameters()) and f"{n}." != NOISE_PREFIX
    ]
    if not children:
        raise ValueError(f"anil needs a model with a head layer, got {type(model).__name__}")
    prefix, head = children[-1]
    return frozenset(f"{prefix}.{n}" for n, _ in head.named_parameters())


def prepare(learner: Learner, loss: str) -> Learner:
    return dataclasses.replace(learner, adapts=InHead(head_names(learner.model)))


register(
    AlgorithmSpec(
        "anil",
        "ANIL (head-only inner loop)",
        "Raghu, Raghu, Bengio & Vinyals 2020",
        sgd,
        unrolled,
        prepare=prepare,
    )
)
