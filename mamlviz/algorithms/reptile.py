"""Reptile (Nichol, Achiam & Schulman 2018): k inner steps, then move theta toward phi.

The meta-gradient is the pseudo-gradient theta - phi; the outer step interpolates,
theta <- theta + eps (phi - theta), with eps annealed linearly to 0 (``outer="sgd"``).
"""

from __future__ import annotations

from mamlviz.algorithms.registry import AlgorithmSpec, register, sgd_or_adam
from mamlviz.core.metagrad import reptile

register(
    AlgorithmSpec(
        "reptile",
        "Reptile",
        "Nichol, Achiam & Schulman 2018",
        sgd_or_adam,
        reptile,
        outer="sgd",
        options=(("inner_optimizer", "sgd or adam; default sgd (Omniglot's paper default: adam)"),),
    )
)
