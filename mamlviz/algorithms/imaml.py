r"""Implicit MAML (Rajeswaran, Finn, Kakade & Levine 2019).

The inner loop minimises the proximal objective L_support(phi) + lambda/2 ||phi - theta||^2;
the meta-gradient is the implicit one, (I + H / lambda)^{-1} grad L_query(phi), solved by
conjugate gradient with Hessian-vector products (:func:`mamlviz.core.implicit.implicit`), so
memory does not grow with the number of inner steps.

The formula holds where phi is a minimum of the proximal objective, i.e. where
(1 + damping) I + H / lambda is positive definite; elsewhere CG's answer is no meta-gradient,
and ``meta_gradient`` refuses the meta-batch (:class:`mamlviz.errors.IndefiniteError`). The row's
default ``damping`` is 1 (the official code damps its operator too, (1 + cg_damping) v +
Hv / (lambda + 10); REFERENCES.md 4.5), not the exact 0: a ReLU net's support Hessian is
indefinite. Measured on sinusoids with ``scripts/implicit_definiteness.py`` (dense
lambda_min(H) at phi): at the shipped ``sinusoid-imaml-10shot`` (lambda 10, 60 training tasks)
lambda_min down to -28, the system indefinite on 5 / 3 / 3 / 0 tasks at damping 0 / 0.5 / 1 / 2;
at a fresh init (``--fresh sinusoid``, 25 tasks, one inner step) with lambda 2 on 19 of 25
tasks at damping 0 and still 8 at damping 8, with lambda 10 on 16 / 6 / 0 at damping 0 / 1 / 2.
So the sinusoid problem trains iMAML with lambda 10 and damping 2
(``mamlviz/training/problems.py``).

Option ``indefinite=skip`` keeps training through such meta-batches: the indefinite tasks are
left out of the meta-gradient's mean, with a one-line warning (a batch with no definite task is
still refused). On Omniglot the conv net runs on the stacked path
(:mod:`mamlviz.core.stacked`): the 16 proximal steps and the T conjugate-gradient solves of a
meta-batch run side by side, tested equal to the per-task loop.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from mamlviz.algorithms.registry import AlgorithmSpec, register, sgd_or_adam
from mamlviz.core.implicit import implicit, implicit_options
from mamlviz.core.learner import Learner
from mamlviz.core.rules import SGD, InnerRule


def imaml_rule(
    inner_lr: float, inner_optimizer: str = "sgd", max_norm: float | None = None, **options: Any
) -> InnerRule:
    implicit_options(options)  # bad lam / cg_steps / solver fail when the learner is built
    # The implicit gradient only needs the inner solution, not how it was reached, so any
    # solver that converges will do: clipped SGD or Adam stay finite where the support loss is
    # sharper than 2 / inner_lr.
    if max_norm is not None and inner_optimizer == "sgd":
        return SGD(inner_lr, float(max_norm))
    return sgd_or_adam(inner_lr, inner_optimizer)


def prepare(learner: Learner, loss: str) -> Learner:
    """Adapt on the proximal objective everywhere, evaluation included (Rajeswaran et al.)."""
    return dataclasses.replace(learner, proximal=implicit_options(learner.options)[0])


register(
    AlgorithmSpec(
        "imaml",
        "iMAML",
        "Rajeswaran, Finn, Kakade & Levine 2019",
        imaml_rule,
        implicit,
        defaults=(("lam", 2.0), ("cg_steps", 5), ("solver", "cg"), ("damping", 1.0)),
        prepare=prepare,
        options=(
            ("lam", "proximal strength lambda > 0; default 2"),
            ("cg_steps", "conjugate-gradient steps, an integer >= 1; default 5"),
            ("solver", "cg or dense (exact, small models); default cg"),
            ("damping", "delta >= 0 in ((1 + delta) I + H / lambda); default 1"),
            (
                "indefinite",
                "refuse or skip: a meta-batch with an indefinite system stops training, or its"
                " indefinite tasks are left out of the mean (with a warning); default refuse",
            ),
            ("inner_optimizer", "sgd or adam; default sgd"),
            ("max_norm", "clip each inner gradient to this global norm > 0; default off"),
        ),
    )
)
