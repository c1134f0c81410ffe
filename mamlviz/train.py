"""Meta-training: ``fit(config) -> (meta, History)``, reproducible and resumable.

Each iteration samples a meta-batch from the problem's task distribution and takes one outer step
(:func:`mamlviz.outer.meta_step`, batched over tasks with vmap). The outer optimiser is Adam
(Finn et al. 2017) for every algorithm except those whose registry row says ``outer="sgd"``
(Reptile): SGD whose learning rate eps is annealed linearly from ``outer_lr`` to 0 over the
run, theta <- theta + eps_i (mean phi - theta), eps_i = outer_lr (1 - i / iterations)
(Nichol et al. 2018).

All randomness comes from ``config.seed``: the model init, a ``torch.Generator`` for the tasks,
and the global RNG (seeded inside ``fork_rng``, so the caller's RNG is untouched) for stochastic
forwards. A checkpoint holds all three states plus the optimiser's, so a run killed at any point
and resumed from its last checkpoint ends with exactly the weights of an uninterrupted run.
"""

from __future__ import annotations

import os
import platform
import shlex
import sys
import time
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import torch
from tqdm.auto import tqdm

import mamlviz
from mamlviz import checkpoint as ckpt
from mamlviz import stacked
from mamlviz.algorithms import get_algorithm, make_learner
from mamlviz.errors import check_range
from mamlviz.functional import Params
from mamlviz.history import History  # re-exported: ``from mamlviz.train import History``
from mamlviz.learner import Learner
from mamlviz.outer import meta_step
from mamlviz.problems import get_problem

DTYPES = {"float32": torch.float32, "float64": torch.float64}


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

    def __post_init__(self) -> None:
        get_problem(self.problem)
        spec = get_algorithm(self.algorithm)
        check_range("inner_lr", self.inner_lr, 0.0)
        check_range("outer_lr", self.outer_lr, 0.0, low_open=True)
        check_range("inner_steps", self.inner_steps, 0, integer=True)
        if self.algorithm == "pretrained" and self.inner_steps != 0:
            raise ValueError(f"inner_steps must be 0 for 'pretrained', got {self.inner_steps}")
        for name in ("shots", "query_shots", "meta_batch", "iterations"):
            check_range(name, getattr(self, name), 1, integer=True)
        check_range("seed", self.seed, 0, 2**63 - 1, integer=True)
        check_range("checkpoint_every", self.checkpoint_every, 1, integer=True)
        check_range("snapshot_every", self.snapshot_every, 1, integer=True)
        if self.dtype not in DTYPES:
            raise ValueError(f"dtype must be one of {tuple(DTYPES)}, got {self.dtype!r}")
        for key, value in self.options.items():
            if not isinstance(value, str | int | float | bool):
                raise ValueError(f"option {key} must be a str, int, float or bool, got {value!r}")
        spec.make_rule(self.inner_lr, **self.options)  # rejects bad options (inner_optimizer)

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
        return cls(**data)

    @property
    def torch_dtype(self) -> torch.dtype:
        return DTYPES[self.dtype]


def build(config: TrainConfig) -> tuple[Learner, Params]:
    """The model (initialised from the seed), its learner, and fresh meta-parameters."""
    problem = get_problem(config.problem)
    model = problem.make_model(config.seed, config.torch_dtype)
    learner = make_learner(
        config.algorithm,
        model,
        problem.loss,
        inner_lr=config.inner_lr,
        inner_steps=config.inner_steps,
        **config.options,
    )
    return learner, learner.init_meta()


def hardware() -> dict[str, Any]:
    """Where a run happened, for the checkpoint metadata."""
    return {
        "platform": platform.platform(),
        "machine": platform.machine(),
        "python": platform.python_version(),
        "cpu_count": os.cpu_count(),
        "threads": torch.get_num_threads(),
        "device": "cpu",
    }


def _outer_sgd(config: TrainConfig) -> bool:
    return get_algorithm(config.algorithm).outer == "sgd"


def _resume(path: Path, config: TrainConfig, meta: Params, state: dict[str, Any]) -> dict:
    data = ckpt.load(path)
    saved = TrainConfig.from_dict(data.metadata["config"])
    ignore = {"checkpoint_every"}
    diff = [
        f"{f.name} ({getattr(saved, f.name)!r} in the checkpoint, {getattr(config, f.name)!r} now)"
        for f in fields(TrainConfig)
        if f.name not in ignore and getattr(saved, f.name) != getattr(config, f.name)
    ]
    if diff:
        raise ckpt.CheckpointError(path, "cannot resume, the config differs: " + "; ".join(diff))
    tensors = data.tensors
    if "optimizer" not in tensors or "rng" not in tensors:
        raise ckpt.CheckpointError(path, "cannot resume: no optimizer or RNG state (shipped file?)")
    ckpt.check_params(path, tensors["meta"], meta)
    with torch.no_grad():
        for n, w in meta.items():
            w.copy_(tensors["meta"][n])
    state["optimizer"].load_state_dict(tensors["optimizer"])
    state["generator"].set_state(tensors["rng"]["tasks"])
    torch.set_rng_state(tensors["rng"]["torch"])
    return data.metadata


def _warm_start(name: str, meta: Params) -> dict[str, Any]:
    """Copy the meta-parameters of checkpoint ``name`` into ``meta``; what to record of it.

    E.g. 5-shot training that starts from a 1-shot checkpoint. Names and shapes must match.
    """
    from mamlviz import hub  # hub imports this module

    source = hub.load(name)
    ckpt.check_params(Path(source.path), source.meta, meta)
    with torch.no_grad():
        for n, w in meta.items():
            w.copy_(source.meta[n])
    info = source.metadata
    return {
        "from": name,
        "algorithm": info.get("algorithm"),
        "iterations": info.get("iteration"),
        "shots": info.get("config", {}).get("shots"),
        "wall_time_s": info.get("wall_time_s"),
    }


def save_run(path: Path, config: TrainConfig, meta: Params, state: dict, history: History) -> None:
    """Write a resumable checkpoint of the run so far."""
    metadata = {
        "algorithm": config.algorithm,
        "problem": config.problem,
        "config": config.to_dict(),
        "seed": config.seed,
        "iteration": state["iteration"],
        "mamlviz_version": mamlviz.__version__,
        "torch_version": torch.__version__,
        "command": state["command"],
        "wall_time_s": state["wall_time_s"],
        "hardware": hardware(),
    }
    if "init" in state:
        metadata["initialised_from"] = state["init"]
    tensors = {
        "meta": {n: w.detach().clone() for n, w in meta.items()},
        "optimizer": state["optimizer"].state_dict(),
        "rng": {"tasks": state["generator"].get_state(), "torch": torch.get_rng_state()},
        "history": history.to_tensors(),
    }
    ckpt.save(path, metadata, tensors)


def fit(
    config: TrainConfig,
    checkpoint: str | os.PathLike[str] | None = None,
    *,
    resume: bool = True,
    progress: bool = True,
    stop_after: int | None = None,
    command: str | None = None,
) -> tuple[Params, History]:
    """Meta-train ``config``; returns the meta-parameters (detached) and the ``History``.

    With ``checkpoint``, the run is saved there every ``config.checkpoint_every`` iterations and
    at the end, and (``resume=True``) continued from it if it exists. ``stop_after=n`` returns
    after iteration n without a final save, as if the process had been killed there.
    """
    generator = torch.Generator().manual_seed(config.seed)
    state: dict[str, Any] = {
        "generator": generator,
        "iteration": 0,
        "wall_time_s": 0.0,
        "command": command if command is not None else shlex.join(sys.argv),
    }
    history = History()
    tasks = get_problem(config.problem).make_tasks("train")
    path = Path(checkpoint) if checkpoint is not None else None
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(config.seed)
        learner, init = build(config)
        if config.init:
            state["init"] = _warm_start(config.init, init)
        meta = {n: w.requires_grad_() for n, w in init.items()}
        if _outer_sgd(config):
            optimizer: torch.optim.Optimizer = torch.optim.SGD(meta.values(), lr=config.outer_lr)
        else:
            optimizer = torch.optim.Adam(meta.values(), lr=config.outer_lr)
        state["optimizer"] = optimizer
        if path is not None and resume and path.exists():
            saved = _resume(path, config, meta, state)
            state["iteration"], state["wall_time_s"] = saved["iteration"], saved["wall_time_s"]
            history = History.from_tensors(ckpt.load(path).tensors["history"])
        else:
            history.snapshot(0, meta)
        end = config.iterations if stop_after is None else min(stop_after, config.iterations)
        bar = tqdm(
            total=config.iterations, initial=state["iteration"], disable=not progress, desc="train"
        )
        started = time.perf_counter() - state["wall_time_s"]
        stack = get_problem(config.problem).batching == "stacked" and stacked.supports(learner)
        gradient = stacked.meta_gradient if stack else None
        for i in range(state["iteration"], end):
            if _outer_sgd(config):  # Reptile: eps annealed linearly to 0
                optimizer.param_groups[0]["lr"] = config.outer_lr * (1 - i / config.iterations)
            episode = tasks.sample(
                generator, config.shots, config.query_shots, config.meta_batch, config.torch_dtype
            )
            losses = meta_step(learner, meta, optimizer, episode, iteration=i, gradient=gradient)
            grad_norm = torch.sqrt(sum(w.grad.pow(2).sum() for w in meta.values()))
            history.record(i, float(losses.mean()), float(grad_norm))
            state["iteration"] = i + 1
            if (i + 1) % config.snapshot_every == 0 or i + 1 == config.iterations:
                history.snapshot(i + 1, meta)
            bar.update(1)
            last = i + 1 == config.iterations  # a stop_after run ends without a final save
            if path is not None and ((i + 1) % config.checkpoint_every == 0 or last):
                state["wall_time_s"] = time.perf_counter() - started
                save_run(path, config, meta, state, history)
        bar.close()
    return {n: w.detach().clone() for n, w in meta.items()}, history
