"""The algorithm registry and its rows, one module per family.

Importing this package registers every row: ``maml`` (maml, fomaml, pretrained), ``reptile``,
``metasgd``, ``metacurv``, ``imaml``, ``metadropout``, ``anil``, and the metric-based
``protonet`` (Prototypical Networks, no inner loop). ``mer`` (Meta-Experience
Replay) learns online from a stream rather than from episodes, so it is a runner, not a
registry row.
"""

from mamlviz.algorithms import (  # noqa: F401  (each module registers its rows)
    anil,
    imaml,
    maml,
    metacurv,
    metadropout,
    metasgd,
    protonet,
    reptile,
)
from mamlviz.algorithms.registry import (
    ALGORITHMS,
    AlgorithmSpec,
    get_algorithm,
    make_learner,
    register,
)

__all__ = ["ALGORITHMS", "AlgorithmSpec", "get_algorithm", "make_learner", "register"]
