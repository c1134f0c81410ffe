"""The problem registry: what a benchmark is, apart from the algorithm that meta-learns it.

A :class:`Problem` bundles a model factory, a task distribution per split, the loss, the metric
reported at evaluation, and the default training and evaluation settings of its paper. Training
(:mod:`mamlviz.training.train`), evaluation (:mod:`mamlviz.training.evaluate`), checkpoints and
the CLI look problems up by name, so a new benchmark registers itself and needs no change elsewhere:

>>> register_problem(Problem(name="my-problem", ...))

"omniglot" is registered by ``mamlviz.training.omniglot_problem`` when that module exists; it is
imported lazily on first lookup, so importing mamlviz never loads image data.
"""

from __future__ import annotations

import importlib
import importlib.util
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

import torch
from torch import nn

from mamlviz.models import sinusoid_mlp
from mamlviz.tasks import TaskDistribution
from mamlviz.tasks.sinusoid import SinusoidTasks

METRICS = ("mse", "accuracy")


def _frozen(mapping: Mapping[str, Any] | None = None) -> Mapping[str, Any]:
    return MappingProxyType(dict(mapping or {}))


@dataclass(frozen=True)
class Preset:
    """A named training recipe of one problem: ``train --problem P --preset NAME``.

    ``overrides`` are :class:`mamlviz.training.config.TrainConfig` fields on top of the
    problem's defaults for ``algorithm``; flags given on the command line win over them.
    ``compile`` runs the meta-gradient through torch.compile (:mod:`mamlviz.core.compiled`).
    """

    name: str
    about: str
    algorithm: str
    overrides: Mapping[str, Any] = field(default_factory=_frozen)
    compile: bool = False


@dataclass(frozen=True)
class Problem:
    """One benchmark.

    ``make_tasks(split)`` returns the task distribution of ``"train"`` or ``"test"`` (the same
    object for sinusoid, whose tasks are drawn afresh; held-out classes for Omniglot).
    ``train_defaults`` holds :class:`mamlviz.training.config.TrainConfig` fields;
    ``algorithm_defaults`` overrides them per algorithm (e.g. Reptile's outer step size).
    ``eval_defaults`` holds
    :func:`mamlviz.training.evaluate.evaluate` arguments (shots, query_shots, tasks, steps;
    query_shots None means "as many as shots", as in MAML's few-shot classification code), and
    ``algorithm_eval_defaults`` overrides them per algorithm, plus the support ``inner_batch``
    (e.g. Reptile evaluates with 50 steps on minibatches of 5).
    """

    name: str
    title: str
    paper: str
    make_model: Callable[[int, torch.dtype], nn.Module]
    make_tasks: Callable[[str], TaskDistribution]
    loss: str  # "mse" or "cross_entropy"
    metric: str  # "mse" (lower is better) or "accuracy"
    train_defaults: Mapping[str, Any] = field(default_factory=_frozen)
    algorithm_defaults: Mapping[str, Mapping[str, Any]] = field(default_factory=_frozen)
    eval_defaults: Mapping[str, Any] = field(default_factory=_frozen)
    algorithm_eval_defaults: Mapping[str, Mapping[str, Any]] = field(default_factory=_frozen)
    batching: str = "vmap"  # "vmap", or "stacked": grouped convolutions (mamlviz.core.stacked)
    presets: tuple[Preset, ...] = ()

    def __post_init__(self) -> None:
        if self.metric not in METRICS:
            raise ValueError(f"metric must be one of {METRICS}, got {self.metric!r}")

    def defaults(self, algorithm: str) -> dict[str, Any]:
        """Training defaults for ``algorithm``: the problem's, then the algorithm's overrides."""
        return {**self.train_defaults, **self.algorithm_defaults.get(algorithm, {})}

    def preset(self, name: str) -> Preset:
        """The preset called ``name``, with an error that lists this problem's presets."""
        for preset in self.presets:
            if preset.name == name:
                return preset
        known = ", ".join(p.name for p in self.presets) or "none"
        raise ValueError(
            f"preset must be one of this problem's ({self.name}): {known}; got {name!r}"
        )

    def eval_settings(self, algorithm: str) -> dict[str, Any]:
        """Evaluation defaults for ``algorithm``: the problem's, then the algorithm's overrides."""
        return {**self.eval_defaults, **self.algorithm_eval_defaults.get(algorithm, {})}


PROBLEMS: dict[str, Problem] = {}

# Problems registered by an optional module, imported on first lookup.
LAZY = {
    "omniglot": "mamlviz.training.omniglot_problem",
    "omniglot-20way": "mamlviz.training.omniglot_problem",
    "omniglot-fixed-labels": "mamlviz.training.omniglot_problem",
    "omniglot-100": "mamlviz.training.omniglot_problem",
    "omniglot-100-fixed-labels": "mamlviz.training.omniglot_problem",
}


def register_problem(problem: Problem) -> Problem:
    """Add ``problem`` to the registry under ``problem.name`` (replacing any earlier entry)."""
    PROBLEMS[problem.name] = problem
    return problem


def get_problem(name: str) -> Problem:
    """Registry lookup; imports the module of a lazily registered problem on first use."""
    if name not in PROBLEMS and name in LAZY:
        try:
            importlib.import_module(LAZY[name])
        except ModuleNotFoundError as err:
            if err.name != LAZY[name]:
                raise
    if name not in PROBLEMS:
        known = ", ".join(available_problems())
        raise ValueError(f"problem must be one of: {known}; got {name!r}")
    return PROBLEMS[name]


def available_problems() -> list[str]:
    """Names of the registered problems, plus lazily registered ones whose module exists."""
    lazy = [n for n, mod in LAZY.items() if importlib.util.find_spec(mod) is not None]
    return sorted({*PROBLEMS, *lazy})


# --- sinusoid regression (Finn et al. 2017, section 5.1 and appendix C) -------------------

_SINUSOID = SinusoidTasks()

register_problem(
    Problem(
        name="sinusoid",
        title="Sinusoid regression",
        paper="Finn, Abbeel & Levine 2017, sec. 5.1",
        make_model=lambda seed, dtype: sinusoid_mlp(seed, dtype),
        make_tasks=lambda split: _SINUSOID,
        loss="mse",
        metric="mse",
        # The MAML paper: K = 10 support and 10 query points, alpha = 0.01, one inner step,
        # meta-batch 25, Adam 1e-3, 70,000 iterations.
        train_defaults=_frozen(
            dict(
                inner_lr=0.01,
                inner_steps=1,
                shots=10,
                query_shots=10,
                meta_batch=25,
                outer_lr=1e-3,
                iterations=70_000,
            )
        ),
        algorithm_defaults=_frozen(
            {
                # Joint training: the query loss at theta itself, no inner step.
                "pretrained": _frozen(dict(inner_steps=0)),
                # Reptile: 5 SGD steps on the support; outer step eps = 1 annealed linearly to 0
                # (Nichol et al. 2018); 12,000 meta-batches of 25 tasks.
                "reptile": _frozen(
                    dict(inner_lr=0.01, inner_steps=5, outer_lr=1.0, iterations=12_000)
                ),
                # iMAML: the sinusoid net's support Hessian is strongly indefinite (lambda_min
                # down to -28), so lambda 10 with damping 2 keeps (1 + damping) I + H / lambda
                # positive definite (mamlviz/algorithms/imaml.py says how it was measured).
                "imaml": _frozen(dict(options={"lam": 10.0, "damping": 2.0})),
            }
        ),
        # Appendix C, Table 2: fine-tuned on K = 5 points, 600 tasks, 0..10 steps. 100 query
        # points per task estimate the same expected MSE as K query points, with less noise.
        eval_defaults=_frozen(dict(shots=5, query_shots=100, tasks=600, steps=10)),
        presets=(
            # Meta-train MAML from scratch in well under a minute on a laptop CPU (chapter 02's
            # "meta-train it yourself"): 5-shot tasks as evaluated, a larger step cosine-annealed
            # to 0, compiled. 25,000 iterations reach 0.62-0.65 MSE after one step (seeds 0-2,
            # the README's 600-task protocol), where the paper reports 0.67 (Finn et al. 2017,
            # Table 2) after 70,000.
            Preset(
                name="live",
                about="MAML from scratch in under a minute: 25,000 compiled meta-iterations of"
                " 5-shot tasks, Adam 2e-3 cosine-annealed to 0",
                algorithm="maml",
                overrides=_frozen(
                    dict(
                        shots=5,
                        query_shots=10,
                        iterations=25_000,
                        outer_lr=2e-3,
                        outer_schedule="cosine",
                        checkpoint_every=5_000,
                        snapshot_every=5_000,
                    )
                ),
                compile=True,
            ),
        ),
    )
)
