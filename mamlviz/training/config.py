"""A training run's configuration, and the one place that turns it into a learner and a problem.

``TrainConfig`` holds everything that determines a run (and nothing that does not);
``build(config)`` makes the model from the seed, the algorithm's ``Learner`` and fresh
meta-parameters. Training, resume, warm starts, the shipped-checkpoint hub and the notebooks all
go through ``build``, so a config means the same thing everywhere.
"""

from __future__ import annotations

import hashlib
from dataclasses import asdict, dataclass, field, fields
from typing import Any

import torch

from mamlviz.algorithms import get_algorithm, make_learner
from mamlviz.core.functional import Params
from mamlviz.core.learner import Learner
from mamlviz.errors import check_range
from mamlviz.training.problems import get_problem

DTYPES = {"float32": torch.float32, "float64": torch.float64}


RNG_MODES = ("derived", "shared")
SCHEDULES = ("constant", "cosine")
DERIVED = 2**62  # derived seeds lie in [2^62, 2^63); evaluation seeds must lie below 2^62


def derive_seed(seed: int, purpose: str) -> int:
    """The seed of one random stream of a run: ``2^62 + (sha256("mamlviz:<purpose>:<seed>")
    mod 2^62)``.

    Each purpose (``init``, ``tasks``, ``noise``; ``eval-noise`` for evaluation) gets its own
    stream, so the initial weights are not the first task's uniforms, and no training stream
    can be an evaluation stream: derived seeds are >= 2^62, evaluation seeds below it.
    """
    digest = hashlib.sha256(f"mamlviz:{purpose}:{int(seed)}".encode()).digest()
    return DERIVED + int.from_bytes(digest[:8], "big") % DERIVED


@dataclass(frozen=True)
class TrainConfig:
    """Everything that determines a training run (and nothing that does not)."""

    problem: str = "sinusoid"
    algorithm: str = "maml"
    inner_lr: float = 0.01
    inner_steps: int = 1
    shots: int = 10
    query_shots: int = 10
    meta_batch: int = 25
    outer_lr: float = 1e-3
    iterations: int = 70_000
    seed: int = 0
    checkpoint_every: int = 1000
    snapshot_every: int = 1000
    options: dict[str, Any] = field(default_factory=dict)
    dtype: str = "float32"
    init: str = ""  # a checkpoint (shipped name or file) to start from instead of the seed
    # "derived": init, tasks and noise each from derive_seed(seed, purpose); "shared": all three
    # from the seed itself, as every run before this field (and its checkpoints) used.
    rng: str = "derived"
    # the outer step size over the run: "constant", or "cosine" from outer_lr down to 0
    # (Loshchilov & Hutter 2017, without restarts); Reptile's linear annealing is its own rule
    outer_schedule: str = "constant"

    def __post_init__(self) -> None:
        get_problem(self.problem)
        spec = get_algorithm(self.algorithm)
        check_range("inner_lr", self.inner_lr, 0.0)
        check_range("outer_lr", self.outer_lr, 0.0, low_open=True)
        check_range("inner_steps", self.inner_steps, 0, integer=True)
        zero_steps = self.algorithm == "pretrained" or not spec.has_inner_loop
        if zero_steps and self.inner_steps != 0:
            raise ValueError(
                f"inner_steps must be 0 for {self.algorithm!r}, got {self.inner_steps}"
                + ("" if spec.has_inner_loop else " (it has no inner loop)")
            )
        if not zero_steps and self.inner_steps == 0:
            raise ValueError(
                f"inner_steps must be in [1, inf) for {self.algorithm!r}, got 0 (zero inner steps"
                " trains the joint-training baseline: use --algorithm pretrained)"
            )
        for name in ("shots", "query_shots", "meta_batch", "iterations"):
            check_range(name, getattr(self, name), 1, integer=True)
        check_range("seed", self.seed, 0, 2**63 - 1, integer=True)
        check_range("checkpoint_every", self.checkpoint_every, 1, integer=True)
        check_range("snapshot_every", self.snapshot_every, 1, integer=True)
        if self.outer_schedule not in SCHEDULES:
            raise ValueError(
                f"outer_schedule must be one of {SCHEDULES}, got {self.outer_schedule!r}"
            )
        if self.rng not in RNG_MODES:
            raise ValueError(f"rng must be one of {RNG_MODES}, got {self.rng!r}")
        if self.dtype not in DTYPES:
            raise ValueError(f"dtype must be one of {tuple(DTYPES)}, got {self.dtype!r}")
        for key, value in self.options.items():
            if not isinstance(value, str | int | float | bool):
                raise ValueError(f"option {key} must be a str, int, float or bool, got {value!r}")
        spec.check_options(self.options)
        spec.make_rule(self.inner_lr, **self.options)  # rejects bad values (inner_optimizer)

    @classmethod
    def for_problem(cls, problem: str, algorithm: str, **overrides: Any) -> TrainConfig:
        """The problem's paper settings for ``algorithm``, with ``overrides`` on top.

        ``options`` merge key by key, so ``--option inner_batch=5`` keeps the algorithm's other
        default options (Reptile's Adam inner optimiser) instead of dropping them.
        """
        defaults = get_problem(problem).defaults(algorithm)
        options = {**defaults.get("options", {}), **overrides.pop("options", {})}
        return cls(
            problem=problem, algorithm=algorithm, **{**defaults, **overrides, "options": options}
        )

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrainConfig:
        unknown = set(data) - {f.name for f in fields(cls)}
        if unknown:
            raise ValueError(f"unknown TrainConfig fields: {sorted(unknown)}")
        return cls(**{"rng": "shared", **data})  # configs stored before `rng` shared the seed

    def stream_seed(self, purpose: str) -> int:
        """The seed of the ``purpose`` stream (``init``, ``tasks`` or ``noise``) of this run."""
        return self.seed if self.rng == "shared" else derive_seed(self.seed, purpose)

    @property
    def torch_dtype(self) -> torch.dtype:
        return DTYPES[self.dtype]


def build(
    config: TrainConfig, *, compile: bool = False, device: torch.device | str = "cpu"
) -> tuple[Learner, Params]:
    """The model (initialised from the seed), its learner, and fresh meta-parameters.

    ``compile=True`` gives a learner whose batched meta-gradient runs through torch.compile
    (same values; not part of the config, since it changes only the speed). The model is made
    on the CPU from the seed, then moved to ``device``, so every device starts from one init."""
    problem = get_problem(config.problem)
    model = problem.make_model(config.stream_seed("init"), config.torch_dtype).to(device)
    learner = make_learner(
        config.algorithm,
        model,
        problem.loss,
        inner_lr=config.inner_lr,
        inner_steps=config.inner_steps,
        compile=compile,
        **config.options,
    )
    return learner, learner.init_meta()
