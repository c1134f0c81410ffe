r"""Chapter 12: every shipped learner side by side, from checkpoints and benchmarks only.

A :class:`Row` is one shipped checkpoint on one :class:`Benchmark`: its metric after
k = 0, 1, ... inner steps with a 95 % interval, what it learns (meta-parameters) and what it
cost (wall time per training iteration, as recorded in the checkpoint). Omniglot rows are the
stored 600-episode evaluations (``python -m mamlviz evaluate NAME``); sinusoid rows are
evaluated here on the README's 600 tasks at the benchmark's shots, so rows trained at 5 and at
10 shots are compared on the same tasks. Nothing in this module is a typed-in number.

The paired difference of two rows on the same tasks,

    d_i = m_i(A) - m_i(B),   \bar d \pm 1.96 s_d / \sqrt{n},

is the comparison to quote: the tasks' own difficulty cancels, so the interval is far narrower
than the two rows' own intervals suggest (the unpaired half-width is
1.96 \sqrt{(s_A^2 + s_B^2) / n}).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
from torch import Tensor

from mamlviz.algorithms import get_algorithm
from mamlviz.training.evaluate import Evaluation, evaluate_checkpoint
from mamlviz.training.hub import Checkpoint, available, load
from mamlviz.training.problems import get_problem


@dataclass(frozen=True)
class Benchmark:
    """A setting on which rows are comparable: the problem's tasks at these ways and shots."""

    key: str
    title: str
    family: str  # "sinusoid" or "omniglot"
    shots: int
    ways: int | None = None  # Omniglot only

    @property
    def metric(self) -> str:
        return "mse" if self.family == "sinusoid" else "accuracy"

    @property
    def higher_is_better(self) -> bool:
        return self.metric == "accuracy"


BENCHMARKS: dict[str, Benchmark] = {
    b.key: b
    for b in (
        Benchmark("sinusoid-10", "Sinusoid regression, 10 shots", "sinusoid", 10),
        Benchmark("sinusoid-5", "Sinusoid regression, 5 shots", "sinusoid", 5),
        Benchmark("omniglot-5w1s", "Omniglot 5-way 1-shot", "omniglot", 1, 5),
        Benchmark("omniglot-5w5s", "Omniglot 5-way 5-shot", "omniglot", 5, 5),
        Benchmark("omniglot-20w1s", "Omniglot 20-way 1-shot", "omniglot", 1, 20),
    )
}

# Shipped checkpoints that are not a family member's row, and the chapter that uses each.
EXCLUDED = {
    "sinusoid-maml-replay": "a re-run of sinusoid-maml with weight snapshots (chapter 02)",
    "omniglot-maml-5w1s-1k": "a 1,000-iteration budget study (chapter 09)",
    "omniglot-maml-5w1s-fixedlabels": "the label-memorisation study (chapter 09)",
    "omniglot-maml-5w1s-100cls": "the label-memorisation study, shuffled labels (chapter 09)",
    "omniglot-maml-5w1s-100cls-fixedlabels": "the label-memorisation study (chapter 09)",
}

SINUSOID_STEPS = 10  # the README's sinusoid protocol evaluates 0..10 inner steps


@dataclass
class Row:
    """One checkpoint on one benchmark; ``mean[k]``/``ci95[k]`` after k inner steps."""

    name: str
    algorithm: str
    mean: list[float]
    ci95: list[float]
    per_task: Tensor | None = field(repr=False)
    trained_shots: int
    trained_steps: int
    iterations: int
    meta_parameters: int
    seconds_per_iteration: float | None
    source: str
    # False for a learner without an inner loop (ProtoNet): its one evaluated column holds at
    # every k, since there is nothing to step
    inner_loop: bool = True

    @property
    def steps(self) -> int:
        return len(self.mean) - 1

    def at(self, k: int) -> tuple[float, float] | None:
        """(mean, ci95) after ``k`` steps, or None where this row was not evaluated at k."""
        if not self.inner_loop and k >= 0:
            return self.mean[0], self.ci95[0]
        if not 0 <= k <= self.steps:
            return None
        return self.mean[k], self.ci95[k]

    def per_task_at(self, k: int) -> Tensor | None:
        """The per-task metric after ``k`` steps (see :meth:`at`), or None."""
        if self.per_task is None or self.at(k) is None:
            return None
        return self.per_task[:, 0 if not self.inner_loop else k]


def _ways(checkpoint: Checkpoint) -> int | None:
    ways = getattr(checkpoint.model, "ways", None)
    if ways is None:  # an embedding without a head (ProtoNet): the problem's tasks' ways
        model = get_problem(checkpoint.config.problem).make_model(0, torch.float32)
        ways = getattr(model, "ways", None)
    return ways


def members(benchmark: Benchmark) -> list[str]:
    """Shipped checkpoints of ``benchmark``'s family (minus :data:`EXCLUDED`); Omniglot ones
    whose ways and stored evaluation shots are the benchmark's."""
    names = []
    for name in available():
        if name in EXCLUDED or not name.startswith(benchmark.family):
            continue
        if benchmark.family == "omniglot":
            checkpoint = load(name)
            ev = checkpoint.evaluation
            if ev is None or ev.shots != benchmark.shots or _ways(checkpoint) != benchmark.ways:
                continue
        names.append(name)
    return names


def _row(checkpoint: Checkpoint, name: str, ev: Evaluation, source: str) -> Row:
    iterations = int(checkpoint.metadata.get("iteration") or checkpoint.config.iterations)
    wall = checkpoint.metadata.get("wall_time_s")
    return Row(
        name=name,
        algorithm=checkpoint.config.algorithm,
        mean=list(ev.mean),
        ci95=list(ev.ci95),
        per_task=ev.per_task,
        trained_shots=checkpoint.config.shots,
        trained_steps=checkpoint.config.inner_steps,
        iterations=iterations,
        meta_parameters=sum(t.numel() for t in checkpoint.meta.values()),
        seconds_per_iteration=float(wall) / iterations if wall and iterations else None,
        source=source,
        inner_loop=get_algorithm(checkpoint.config.algorithm).has_inner_loop,
    )


def rows(benchmark: Benchmark | str, tasks: int = 600) -> list[Row]:
    """Every member of ``benchmark`` as a :class:`Row` (sinusoid: evaluated now on ``tasks``
    of the README's meta-test tasks with 0..10 steps; Omniglot: the stored evaluation)."""
    if isinstance(benchmark, str):
        if benchmark not in BENCHMARKS:
            raise ValueError(f"benchmark must be one of {sorted(BENCHMARKS)}, got {benchmark!r}")
        benchmark = BENCHMARKS[benchmark]
    if not 1 <= tasks <= 600:
        raise ValueError(f"tasks must be an integer in 1..600, got {tasks}")
    out = []
    for name in members(benchmark):
        checkpoint = load(name)
        if benchmark.family == "sinusoid":
            ev = evaluate_checkpoint(
                checkpoint, shots=benchmark.shots, steps=SINUSOID_STEPS, tasks=tasks
            )
            source = f"evaluated here on {tasks} tasks"
        else:
            ev = checkpoint.evaluation
            assert ev is not None  # members() keeps evaluated checkpoints only
            source = f"stored evaluation, {ev.tasks} episodes"
        out.append(_row(checkpoint, name, ev, source))
    return out


def ranking(table: list[Row], k: int, higher_is_better: bool) -> list[tuple[str, float]]:
    """(name, metric after k steps) from best to worst; rows not evaluated at k, or whose
    metric is not finite there (diverged), are left out."""
    scored = [(r.name, at[0]) for r in table if (at := r.at(k)) is not None]
    scored = [(n, m) for n, m in scored if math.isfinite(m)]
    return sorted(scored, key=lambda p: -p[1] if higher_is_better else p[1])


def paired_difference(a: Tensor, b: Tensor) -> tuple[float, float]:
    r"""(mean, 95 % half-width) of a - b over paired tasks: \bar d \pm 1.96 s_d / \sqrt{n}."""
    a, b = torch.as_tensor(a, dtype=torch.float64), torch.as_tensor(b, dtype=torch.float64)
    if a.shape != b.shape or a.dim() != 1 or a.numel() < 2:
        raise ValueError(
            f"a and b must be 1-D and of one length >= 2 (paired tasks), got {tuple(a.shape)}"
            f" and {tuple(b.shape)}"
        )
    d = a - b
    return float(d.mean()), 1.96 * float(d.std()) / math.sqrt(d.numel())


def unpaired_half_width(a: Tensor, b: Tensor) -> float:
    r"""95 % half-width of mean(a) - mean(b) if the tasks were NOT shared:
    1.96 \sqrt{s_a^2 / n_a + s_b^2 / n_b}."""
    a, b = torch.as_tensor(a, dtype=torch.float64), torch.as_tensor(b, dtype=torch.float64)
    return 1.96 * math.sqrt(float(a.var()) / a.numel() + float(b.var()) / b.numel())
