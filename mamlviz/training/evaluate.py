"""Evaluation as in the MAML paper: the query metric after 0..10 inner steps on 600 new tasks.

For each held-out task, the learner adapts theta to ``shots`` support points with its own inner
rule (SGD at ``inner_lr``, or Meta-SGD's learned rates, ...) and after every step k the metric of
phi_k on the task's query set is recorded. The summary per step is the mean over tasks and the
95% confidence interval 1.96 * std / sqrt(n) (std with ddof=0, as ``np.std`` in the MAML code;
Finn et al. 2017, appendix C, Table 2).

The query set is larger than in training (100 points per sinusoid task): the expected query MSE
of a task does not depend on how many query points estimate it, but more points estimate it with
less noise. Tasks come from a generator seeded with ``EVAL_SEED``, a stream apart from training
(training seeds are small integers), in fixed blocks of ``BLOCK`` tasks so that the tasks do not
depend on how many are evaluated; a noisy learner's support noise (Meta-Dropout) comes from one
stream per block too. Each block goes through one ``vmap`` or stacked pass (or ``chunk`` tasks
at a time where memory is short; for a noisy learner a smaller chunk draws other noise), and all
steps are recorded in the same pass, so step k costs one inner step, not k.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass, field, fields, replace
from typing import Any

import torch
from torch import Tensor
from torch.func import vmap
from tqdm.auto import tqdm

from mamlviz.algorithms import ALGORITHMS, get_algorithm
from mamlviz.core import stacked
from mamlviz.core.episode import Episode, Examples
from mamlviz.core.functional import Params, call, detach
from mamlviz.core.learner import Learner
from mamlviz.errors import check_range
from mamlviz.tasks import TaskDistribution
from mamlviz.training import distributed
from mamlviz.training.checkpoint import CheckpointError
from mamlviz.training.config import DERIVED, derive_seed
from mamlviz.training.problems import get_problem

EVAL_SEED = 1_000_003
BLOCK = 100


@dataclass(frozen=True)
class Evaluation:
    """Per-step summary: ``mean[k]`` and ``ci95[k]`` of the metric after k inner steps."""

    metric: str
    mean: list[float]
    ci95: list[float]
    shots: int
    query_shots: int
    tasks: int
    seed: int
    inner_lr: float | None  # None for rules without one scalar step size
    # Per-step median over tasks: robust to the rare task on which fine-tuning runs far off
    # (a task whose metric is non-finite makes it NaN, like the mean: never folded in).
    median: list[float] | None = None
    inner_batch: int | None = None  # support minibatch per step (None: the whole support)
    # Per step, how many tasks' loss or logits were non-finite (None: stored before counting).
    diverged: list[int] | None = None
    # [tasks, steps + 1], the metric of every task (a tensor in the checkpoint, not in JSON):
    # CI re-evaluates a subset of the tasks against it (tests/training/test_shipped_omniglot.py).
    per_task: Tensor | None = field(default=None, repr=False, compare=False)

    def divergence(self) -> str | None:
        """What to say when some tasks diverged, or None."""
        if not self.diverged or not any(self.diverged):
            return None
        first = next(k for k, n in enumerate(self.diverged) if n)
        return (
            f"diverged on {max(self.diverged)} of {self.tasks} tasks (non-finite from inner step"
            f" {first}): lower --inner-lr (gradient descent on a task is stable below about"
            " 2 / lambda_max, lambda_max the largest eigenvalue of its support-loss Hessian;"
            " scripts/sharpness.py measures it)"
        )

    @property
    def steps(self) -> int:
        return len(self.mean) - 1

    def to_dict(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in fields(self) if f.name != "per_task"}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Evaluation:
        return cls(**data)

    def settings(self) -> dict[str, Any]:
        """The arguments that reproduce this evaluation."""
        keys = ("shots", "query_shots", "tasks", "seed", "inner_lr", "inner_batch")
        return {k: getattr(self, k) for k in keys} | {"steps": self.steps}

    def table(self) -> str:
        """Aligned text: one row per inner step."""
        head = f"{self.metric} after k inner steps ({self.tasks} tasks, {self.shots} shots,"
        head += f" {self.query_shots} query, inner_lr {self.inner_lr}; mean +- 95% CI)"
        median = self.median or [float("nan")] * len(self.mean)
        rows = [
            f"  k={k:>2}  {m:10.4f} +- {c:<10.4f} median {md:.4f}"
            for k, ((m, c), md) in enumerate(zip(self.zipped(), median, strict=True))
        ]
        note = self.divergence()
        return "\n".join([head, *rows, *([f"  {note}"] if note else [])])

    def zipped(self) -> list[tuple[float, float]]:
        return list(zip(self.mean, self.ci95, strict=True))


def mse(learner: Learner, params: Params, examples: Examples) -> Tensor:
    """Mean squared error of ``params`` on ``examples`` (the learner's noise-free loss)."""
    return learner.loss(params, examples)


def accuracy(learner: Learner, params: Params, examples: Examples) -> Tensor:
    """Fraction of ``examples`` whose arg-max logit is the label; NaN where a logit is not
    finite (a diverged task is reported as such, never scored as chance)."""
    logits = call(learner.model, params, examples.x)
    hits = (logits.argmax(-1) == examples.y).to(logits.dtype).mean()
    return torch.where(torch.isfinite(logits).all(), hits, torch.nan)


METRICS = {"mse": mse, "accuracy": accuracy}


def metric_curves(
    learner: Learner,
    meta: Params,
    episode: Episode,
    steps: int,
    metric: str = "mse",
    *,
    stacked_path: bool = True,
) -> Tensor:
    """``[tasks, steps + 1]``: the query metric of phi_0 = theta, phi_1, ..., phi_steps.

    Conv-net accuracy runs on the stacked path (one grouped convolution per layer for every
    task; :func:`mamlviz.core.stacked.accuracy_curves`) unless ``stacked_path=False``; everything
    else under ``vmap``.
    """
    spec = ALGORITHMS.get(learner.algorithm)
    if spec is not None and spec.classify is not None:  # no inner loop (ProtoNet)
        if steps != 0 or metric != "accuracy":
            raise ValueError(
                f"steps must be 0 and metric 'accuracy' for {spec.name!r} (it has no inner loop"
                f" and classifies), got steps {steps} and metric {metric!r}"
            )
        logits = spec.classify(learner, detach(meta), episode)
        hits = (logits.argmax(-1) == episode.query.y).to(logits.dtype).mean(1)
        finite = torch.isfinite(logits).flatten(1).all(1)  # non-finite is NaN, not chance
        return torch.where(finite, hits, torch.nan).unsqueeze(1)
    if stacked_path and metric == "accuracy" and stacked.supports(learner):
        return stacked.accuracy_curves(learner, meta, episode, steps)
    measure = METRICS[metric]
    fast, frozen, rule_params = learner.split(detach(meta))

    def one_task(ep: Episode) -> Tensor:
        curve: list[Tensor] = []
        learner.inner_loop(
            fast,
            frozen,
            rule_params,
            ep.support,
            steps=steps,
            first_order=True,  # no meta-gradient is taken here
            record=lambda k, phi, loss, grads: curve.append(
                measure(learner, {**phi, **frozen}, ep.query)
            ),
        )
        return torch.stack(curve)

    with torch.no_grad():  # torch.func.grad inside adapt still works; no outer graph is built
        return vmap(one_task, randomness="different")(episode)


def tree_map_episode(episode: Episode, index: slice) -> Episode:
    """Tasks ``index`` of a meta-batch episode."""
    return Episode(*(Examples(part.x[index], part.y[index]) for part in episode))


def summarize(values: Tensor) -> tuple[list[float], list[float]]:
    """Mean and 95% CI (1.96 std / sqrt(n), ddof=0) over the task axis (dim 0), per column."""
    v = values.double()
    ci = 1.96 * v.std(0, correction=0) / math.sqrt(v.shape[0])
    return v.mean(0).tolist(), ci.tolist()


def evaluate(
    learner: Learner,
    meta: Params,
    distribution: TaskDistribution,
    *,
    metric: str = "mse",
    shots: int = 5,
    query_shots: int = 100,
    tasks: int = 600,
    steps: int = 10,
    seed: int = EVAL_SEED,
    chunk: int | None = None,
    progress: bool = False,
) -> Evaluation:
    """The MAML-paper protocol for ``learner`` with meta-parameters ``meta`` (see module doc)."""
    if metric not in METRICS:
        raise ValueError(f"metric must be one of {tuple(METRICS)}, got {metric!r}")
    check_range("shots", shots, 1, integer=True)
    check_range("query_shots", query_shots, 1, integer=True)
    check_range("tasks", tasks, 1, integer=True)
    check_range("steps", steps, 0, integer=True)
    # below 2^62: training streams are derived seeds >= 2^62, so no evaluation task stream
    # can be one a model trained on (mamlviz.training.config.derive_seed)
    check_range("seed", seed, 0, DERIVED - 1, integer=True)
    dtype = next(iter(meta.values())).dtype
    generator = torch.Generator().manual_seed(seed)
    blocks = [
        distribution.sample(generator, shots, query_shots, min(BLOCK, tasks - start), dtype)
        for start in range(0, tasks, BLOCK)
    ]
    parts = zip(*blocks, strict=True)  # support, query
    episode = Episode(*(Examples(*map(torch.cat, zip(*p, strict=True))) for p in parts))
    device = next(iter(meta.values())).device  # tasks are drawn on the CPU, then moved
    if device.type != "cpu":
        episode = distributed.to_device(episode, device)
    chunk = BLOCK if chunk is None else chunk
    check_range("chunk", chunk, 1, BLOCK, integer=True)
    curves = []
    with torch.random.fork_rng(devices=[]):
        for first in tqdm(range(0, tasks, BLOCK), disable=not progress, desc="evaluate"):
            # Meta-Dropout's support noise: one stream per block of tasks, so that a task's
            # noise, like the task itself, does not depend on how many tasks are evaluated
            torch.manual_seed(derive_seed(seed, f"eval-noise:{first // BLOCK}"))
            end = min(first + BLOCK, tasks)
            for start in range(first, end, chunk):
                part = tree_map_episode(episode, slice(start, min(start + chunk, end)))
                curves.append(metric_curves(learner, meta, part, steps, metric))
    values = torch.cat(curves).cpu()
    mean, ci = summarize(values)
    finite = torch.isfinite(values)
    median = values.double().nanmedian(0).values
    median = torch.where(finite.all(0), median, torch.nan).tolist()
    diverged = (~finite).sum(0).tolist()
    inner_lr = getattr(learner.rule, "inner_lr", None)
    learned = getattr(learner.rule, "learned_lr", False)  # Meta-SGD: the rates are alpha
    inner_lr = None if inner_lr is None or learned else float(inner_lr)
    if learner.algorithm in ALGORITHMS and not get_algorithm(learner.algorithm).has_inner_loop:
        inner_lr = None  # ProtoNet: no step size is used
    return Evaluation(
        metric,
        mean,
        ci,
        shots,
        query_shots,
        tasks,
        seed,
        inner_lr,
        median,
        learner.inner_batch,
        diverged,
        values.float(),
    )


def evaluate_checkpoint(
    checkpoint: Any,
    *,
    shots: int | None = None,
    query_shots: int | None = None,
    tasks: int | None = None,
    steps: int | None = None,
    inner_lr: float | None = None,
    inner_batch: int | None = None,
    seed: int | None = None,
    progress: bool = False,
    options: dict[str, Any] | None = None,
    device: str = "cpu",
) -> Evaluation:
    """``evaluate`` a loaded :class:`mamlviz.training.hub.Checkpoint` on its problem's held-out
    tasks, on ``device`` (``cpu``, ``cuda`` or ``auto``; the tasks are the same on every device).

    ``options`` override the algorithm's options for the evaluation only (e.g. Meta-Dropout's
    Monte-Carlo ``samples``).

    Arguments left ``None`` take the settings of the evaluation stored in the checkpoint, so
    ``evaluate NAME`` reproduces the number the course states; without one, the problem's
    defaults for the checkpoint's algorithm
    (:meth:`mamlviz.training.problems.Problem.eval_settings`;
    sinusoid: 5 shots, 100 query points, 600 tasks, 10 steps; Omniglot: 1 shot, query shots =
    shots, 3 steps, Reptile 50 steps on minibatches of 5), the training ``inner_lr`` and
    ``EVAL_SEED``.
    """
    problem = get_problem(checkpoint.config.problem)
    spec = get_algorithm(checkpoint.config.algorithm)
    dev = distributed.resolve_device(device)
    if dev.type != "cpu":  # a copy: the loaded checkpoint stays on the CPU
        model = copy.deepcopy(checkpoint.model).to(dev)
        meta = {n: w.to(dev) for n, w in checkpoint.meta.items()}
        checkpoint = replace(checkpoint, model=model, meta=meta)
    if inner_lr is not None and not spec.has_inner_loop:
        raise ValueError(f"--inner-lr does not apply to {spec.name}: it has no inner loop")
    if inner_lr is not None and not spec.uses_inner_lr:
        raise ValueError(
            f"--inner-lr does not apply to {spec.name}: its inner step sizes are learned"
            " (alpha, stored in the checkpoint) and inner_lr only initialised them; drop"
            " --inner-lr (to study other step sizes, scale alpha in the Python API)"
        )
    settings = checkpoint_settings(
        checkpoint,
        shots=shots,
        query_shots=query_shots,
        tasks=tasks,
        steps=steps,
        inner_batch=inner_batch,
        inner_lr=inner_lr,
        seed=seed,
    )
    inner_lr, seed = settings.pop("inner_lr", None), settings.pop("seed", None)
    learner = checkpoint.learner(inner_lr=inner_lr, **(options or {}))
    batch = settings.pop("inner_batch", None)
    if batch is not None:
        learner = replace(learner, inner_batch=int(batch))
    tasks = problem.make_tasks("test")
    check_data(checkpoint, tasks)
    return evaluate(
        learner,
        checkpoint.meta,
        tasks,
        metric=problem.metric,
        seed=EVAL_SEED if seed is None else seed,
        progress=progress,
        **settings,
    )


def check_data(checkpoint: Any, tasks: object) -> None:
    """Refuse to evaluate ``checkpoint`` on ``tasks`` whose data differ from its training data.

    Task distributions with a ``signature()`` (Omniglot: the split and its characters) are
    compared with the one the checkpoint stored at training time; another split would put the
    checkpoint's own training characters among the test tasks.
    """
    stored = checkpoint.metadata.get("data")
    current = tasks.signature() if hasattr(tasks, "signature") else None
    if stored is not None and current is not None and stored != current:
        raise CheckpointError(
            checkpoint.path,
            f"was trained on other data than this (its split: seed {stored.get('split_seed')},"
            f" sha256 {str(stored.get('sha256'))[:12]}...; here: seed {current['split_seed']},"
            f" sha256 {current['sha256'][:12]}...): evaluating it would test on characters it"
            " may have trained on. Use the data and split it was trained with.",
        )


def checkpoint_settings(checkpoint: Any, **given: Any) -> dict[str, Any]:
    """The evaluation settings of a checkpoint: ``given`` (None: not given), then the stored
    evaluation's, then the problem's defaults for its algorithm; ``query_shots`` None means
    "as many as shots". ``inner_lr`` None means the training ``inner_lr``."""
    problem = get_problem(checkpoint.config.problem)
    shots, query_shots = given.get("shots"), given.get("query_shots")
    defaults = problem.eval_settings(checkpoint.config.algorithm)
    stored = checkpoint.evaluation.settings() if checkpoint.evaluation is not None else {}
    settings = {
        **defaults,
        **{k: v for k, v in stored.items() if v is not None},
        **{k: v for k, v in given.items() if v is not None},
    }
    follows_shots = defaults.get("query_shots", 0) is None and query_shots is None
    if settings.get("query_shots") is None or (follows_shots and shots is not None):
        settings["query_shots"] = settings["shots"]
    return settings
