r"""Chapter 11 (Meta-Experience Replay): a stream player for online SGD, replay and MER.

:func:`play_stream` learns a stream one example at a time with
:func:`mamlviz.algorithms.mer.learn_example` (Riemer et al. 2019, Algorithm 1, and its two
baselines) and records, after every example t, each family's held-out loss and which stream
examples the reservoir memory holds. The updates are exactly those of
:func:`mamlviz.algorithms.mer.run_stream` (same calls, same random streams; evaluation runs
under ``no_grad`` and draws no random numbers), so its family-boundary rows are run_stream's
loss matrix R[t, j] (tested), and :func:`loss_metrics` gives the same final loss, backward
transfer (Lopez-Paz & Ranzato 2017) and forgetting (Chaudhry et al. 2018).

:func:`stream_widget` is the chapter's main widget: a time slider that only indexes the
precomputed snapshots (fast), and sliders for lr, beta, gamma, s, k and the memory size that
recompute a short stream (cached per setting). :func:`plot_stream` is its static twin.

The chapter's non-public MER and continual-bench names are re-exported here.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import ipywidgets as widgets
import matplotlib.pyplot as plt
import plotly.graph_objects as go
import torch
from matplotlib.figure import Figure
from plotly.subplots import make_subplots
from torch import Tensor

from mamlviz.algorithms.mer import (
    METHODS,
    Reservoir,
    check_settings,
    learn_example,
    run_stream,
    score_summary,
    sequential_sgd,
)
from mamlviz.core.episode import Examples
from mamlviz.core.functional import LossFn, Params, make_loss, params_of
from mamlviz.course.viz.common import MAIN_CLASS, Status, fmt, guarded, readout, slider
from mamlviz.errors import DivergenceError
from mamlviz.models import MLP
from mamlviz.tasks.stream import DriftingSinusoids
from mamlviz.training.continual import HIDDEN, MEMORY, SETTINGS, SIZES, one_run

__all__ = [
    "HIDDEN",
    "MEMORY",
    "METHODS",
    "NAMES",
    "SETTINGS",
    "SIZES",
    "WIDGET_SIZES",
    "Reservoir",
    "StreamProblem",
    "StreamRun",
    "boundary_matrix",
    "check_settings",
    "learn_example",
    "loss_metrics",
    "one_run",
    "play_all",
    "play_stream",
    "plot_stream",
    "run_stream",
    "score_summary",
    "sequential_sgd",
    "stream_problem",
    "stream_widget",
]

NAMES = {"online": "online SGD", "replay": "experience replay", "mer": "MER"}
# The widget's short stream: 4 families x 30 examples, 100 held-out examples per family.
WIDGET_SIZES = {"families": 4, "examples_per_family": 30, "test_examples": 100}
# Shared by all three methods in the widget (the bench tunes each method's lr on its own).
WIDGET_SETTINGS = {"lr": 0.01, "beta": 0.6, "gamma": 1.0, "batches": 2, "replay": 5, "memory": 40}
FAMILY_COLORS = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2")


def family_color(j: int) -> str:
    """Colour of stream family ``j`` in every figure of the chapter."""
    return FAMILY_COLORS[j % len(FAMILY_COLORS)]


@dataclass(frozen=True)
class StreamProblem:
    """A drifting-sinusoid stream, its held-out sets, and an MLP's loss and initial weights."""

    loss_fn: LossFn
    theta: Params
    stream: Examples
    family: Tensor
    tests: list[Examples]


def stream_problem(
    seed: int = 0, families: int = 5, examples_per_family: int = 200, test_examples: int = 200
) -> StreamProblem:
    """The continual bench's sinusoid problem (:func:`mamlviz.benchmarks.continual.one_run`):
    seed s fixes the MLP 3-40-40-1's init, the stream and the test sets, all float32."""
    gen = torch.Generator().manual_seed(seed)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        stream = DriftingSinusoids(families, examples_per_family)
        model = MLP(3, HIDDEN["sinusoid"], 1)
    model = model.float()
    examples, family = stream.stream(gen, torch.float32)
    tests = stream.test_sets(gen, test_examples, torch.float32)
    return StreamProblem(make_loss(model, "mse"), params_of(model), examples, family, tests)


@dataclass
class StreamRun:
    """Snapshots of one method on one stream, after each example t = 0 .. n-1.

    ``losses[t, j]``: held-out loss of family j after learning example t; ``memory[t]``: the
    stream indices the reservoir holds after example t; ``online_loss[t]``: the loss of example
    t before learning it; ``family[t]``: its family.
    """

    method: str
    losses: Tensor
    memory: list[list[int]]
    online_loss: list[float]
    family: Tensor
    theta: Params
    settings: dict = field(default_factory=dict)

    def memory_counts(self, t: int, families: int | None = None) -> list[int]:
        """How many examples of each family the memory holds after example t."""
        families = int(self.family.max()) + 1 if families is None else families
        counts = [0] * families
        for i in self.memory[t]:
            counts[int(self.family[i])] += 1
        return counts


def play_stream(
    method: str,
    problem: StreamProblem,
    *,
    lr: float,
    memory_size: int = 0,
    beta: float = 1.0,
    gamma: float = 1.0,
    batches: int = 1,
    replay: int = 0,
    seed: int = 0,
) -> StreamRun:
    """Learn ``problem.stream`` with ``method`` and keep a snapshot after every example.

    The same calls as :func:`run_stream` (one :func:`learn_example` per example, a
    :class:`Reservoir` seeded with ``seed``), plus an evaluation of every family's test set after
    every example. Raises :class:`DivergenceError` naming the example.
    """
    check_settings(method, lr, memory_size, beta, gamma, batches, replay)
    loss_fn, theta = problem.loss_fn, problem.theta
    memory = Reservoir(memory_size, torch.Generator().manual_seed(seed))
    n = problem.stream.x.shape[0]
    xs = [problem.stream.x[t] for t in range(n)]  # the objects the memory stores: kept alive
    position = {id(x): t for t, x in enumerate(xs)}
    losses = torch.empty(n, len(problem.tests))
    snapshots, online = [], []
    for t in range(n):
        y = problem.stream.y[t]
        with torch.no_grad():
            loss = float(loss_fn(theta, Examples(xs[t][None], y[None])))
        if not torch.isfinite(torch.tensor(loss)):
            raise DivergenceError("stream example", t, loss, "lower lr")
        online.append(loss)
        theta = learn_example(
            method, loss_fn, theta, xs[t], y, memory,
            lr=lr, beta=beta, gamma=gamma, batches=batches, replay=replay,
        )  # fmt: skip
        with torch.no_grad():
            row = torch.stack([loss_fn(theta, ex) for ex in problem.tests])
        if not torch.isfinite(row).all():
            raise DivergenceError("stream example", t, float(row.max()), "lower lr")
        losses[t] = row
        snapshots.append([position[id(x)] for x in memory.x])
    settings = dict(lr=lr, memory_size=memory_size, beta=beta, gamma=gamma, batches=batches,
                    replay=replay, seed=seed)  # fmt: skip
    return StreamRun(method, losses, snapshots, online, problem.family, theta, settings)


def boundary_matrix(run: StreamRun) -> Tensor:
    """R[t, j]: the held-out loss of family j after the LAST example of family t (the rows of
    :func:`run_stream`'s ``losses``)."""
    f = run.family
    last = [t for t in range(len(f)) if t == len(f) - 1 or f[t + 1] != f[t]]
    return run.losses[last]


def loss_metrics(r: Tensor) -> dict[str, float]:
    r"""Metrics of a loss matrix R[t, j] (loss on family j after family t; T families).

    ``final_loss`` = mean_j R[T-1, j]; ``bwt`` = mean_{j<T-1} R[T-1, j] - R[j, j] (Lopez-Paz &
    Ranzato 2017, for a loss: positive means forgetting); ``forgetting`` = mean_{j<T-1}
    R[T-1, j] - min_{j <= l < T-1} R[l, j] (Chaudhry et al. 2018: the rise above the best loss
    reached before the end); ``learning_loss`` = mean_j R[j, j]. The same formulas as
    :func:`run_stream`.
    """
    last = r.shape[0] - 1
    bwt = [float(r[last, j] - r[j, j]) for j in range(last)]
    forgetting = [float(r[last, j] - r[j:last, j].min()) for j in range(last)]
    return {
        "final_loss": float(r[last].mean()),
        "bwt": sum(bwt) / max(len(bwt), 1),
        "forgetting": sum(forgetting) / max(len(forgetting), 1),
        "learning_loss": float(torch.diagonal(r).mean()),
    }


def play_all(
    problem: StreamProblem,
    *,
    lr: float,
    beta: float,
    gamma: float,
    batches: int,
    replay: int,
    memory: int,
    seed: int = 0,
) -> dict[str, StreamRun]:
    """Online SGD, replay and MER on ``problem`` with one shared lr; replay and MER share the
    memory size, s = ``batches`` and k = ``replay``; online SGD has no memory."""
    runs = {}
    for method in METHODS:
        extra = (
            {} if method == "online" else dict(memory_size=memory, batches=batches, replay=replay)
        )
        if method == "mer":
            extra.update(beta=beta, gamma=gamma)
        runs[method] = play_stream(method, problem, lr=lr, seed=seed, **extra)
    return runs


def _readout(runs: dict[str, StreamRun], t: int) -> str:
    run = runs["mer"]
    fam = int(run.family[t])
    means = ", ".join(
        f"{NAMES[m]} <b>{fmt(float(r.losses[t].mean()))}</b>" for m, r in runs.items()
    )
    counts = run.memory_counts(t, len(run.losses[t]))
    held = ", ".join(f"family {j}: {c}" for j, c in enumerate(counts))
    return (
        f"after example t = {t} (family {fam}): mean held-out loss over all families: {means}."
        f"<br>memory of replay and MER ({sum(counts)} of {run.settings['memory_size']}): {held}"
    )


def _curves(runs: dict[str, StreamRun], t: int) -> list[tuple[list[int], list[float]]]:
    """Per method, per family: (steps 0..t, losses) in the order the traces were added."""
    steps = list(range(t + 1))
    return [(steps, r.losses[: t + 1, j].tolist()) for r in runs.values()
            for j in range(r.losses.shape[1])]  # fmt: skip


def stream_widget(
    problem: StreamProblem | None = None, t: int | None = None, **settings: float
) -> tuple[widgets.VBox, dict]:
    """Chapter 11's main widget: the stream player.

    The FIRST slider is the example index t: it only indexes the snapshots (no training). The
    figure shows each family's held-out loss up to t for online SGD, replay and MER, and the
    reservoir's contents at t (per family; replay and MER draw the same random numbers from
    the memory's generator, so they hold the same examples). The other sliders (lr, beta,
    gamma, s, k, memory size) recompute the short stream, cached per setting.
    """
    problem = stream_problem(0, **WIDGET_SIZES) if problem is None else problem
    chosen = {**WIDGET_SETTINGS, **settings}
    n, families = problem.stream.x.shape[0], len(problem.tests)
    cache: dict[tuple, dict[str, StreamRun]] = {}

    def runs_for(values: dict) -> dict[str, StreamRun]:
        key = tuple(sorted(values.items()))
        if key not in cache:
            cache[key] = play_all(problem, **values)
        return cache[key]

    current = {"runs": runs_for(chosen)}
    t0 = n // 2 - 1 if t is None else t  # mid-stream: the slider can move both ways
    time_slider = slider("example t", t0, 0, n - 1, 1, kind="int", continuous_update=True)
    play = widgets.Play(value=t0, min=0, max=n - 1, step=1, interval=150)
    widgets.jslink((play, "value"), (time_slider, "value"))
    controls = {
        "lr": slider("lr", chosen["lr"], -3, -0.5, 0.1, kind="log"),
        "beta": slider("beta (MER)", chosen["beta"], 0.05, 1.0, 0.05),
        "gamma": slider("gamma (MER)", chosen["gamma"], 0.05, 1.0, 0.05),
        "batches": slider("s batches", chosen["batches"], 1, 5, 1, kind="int"),
        "replay": slider("k replay", chosen["replay"], 0, 10, 1, kind="int"),
        "memory": slider("memory size", chosen["memory"], 0, 120, 5, kind="int"),
    }
    fig = go.FigureWidget(
        make_subplots(
            rows=1, cols=4, column_widths=[0.27, 0.27, 0.27, 0.19], horizontal_spacing=0.05,
            subplot_titles=[NAMES[m] for m in METHODS] + ["memory at t"],
            shared_yaxes=False,
        )
    )  # fmt: skip
    for col in range(1, len(METHODS) + 1):
        for j in range(families):
            fig.add_scatter(
                mode="lines", line=dict(color=family_color(j), width=1.5), name=f"family {j}",
                legendgroup=f"f{j}", showlegend=col == 1, row=1, col=col,
            )  # fmt: skip
    fig.add_bar(x=[f"{j}" for j in range(families)], marker_color=[family_color(j)
                for j in range(families)], showlegend=False, row=1, col=4)  # fmt: skip
    fig.update_layout(width=1000, height=340, margin=dict(l=45, r=10, t=40, b=40),
                      legend=dict(orientation="h", y=-0.2))  # fmt: skip
    for col in range(1, 4):
        fig.update_xaxes(title_text="example t", range=[0, n - 1], row=1, col=col)
        fig.update_yaxes(type="log", dtick=1, row=1, col=col)  # decades only: no bare 2 and 5
    fig.update_yaxes(title_text="held-out MSE", row=1, col=1)
    fig.update_xaxes(title_text="family", row=1, col=4)
    text = readout()
    status = Status()

    def draw() -> None:
        runs, t_now = current["runs"], time_slider.value
        counts = runs["mer"].memory_counts(t_now, families)
        with fig.batch_update():
            for trace, (xs, ys) in zip(fig.data[:-1], _curves(runs, t_now), strict=True):
                trace.x, trace.y = xs, ys
            fig.data[-1].y = counts
            top = max(float(r.losses.max()) for r in runs.values())
            low = min(float(r.losses.min()) for r in runs.values())
            span = [math.log10(low) - 0.05, math.log10(top) + 0.05]  # log axes take exponents
            for col in range(1, 4):
                fig.update_yaxes(range=span, row=1, col=col)
            fig.update_yaxes(range=[0, max(1, runs["mer"].settings["memory_size"])], row=1, col=4)
        text.value = _readout(runs, t_now)

    def recompute() -> None:
        values = {k: c.value for k, c in controls.items()}
        status.ok("recomputing the short stream (2 to 4 s) ...")
        try:
            current["runs"] = runs_for(values)
        finally:
            status.ok()  # guarded() then shows the error, if any; the last good run stays
        draw()

    time_slider.observe(guarded(status, draw), names="value")
    for c in controls.values():
        c.observe(guarded(status, recompute), names="value")
    draw()
    c = controls
    rows = [widgets.HBox([time_slider, play]), fig, text, status.widget,
            widgets.HBox([c["lr"], c["beta"], c["gamma"]]),
            widgets.HBox([c["batches"], c["replay"], c["memory"]])]  # fmt: skip
    box = widgets.VBox(rows)
    box.add_class(MAIN_CLASS)
    parts = {"time": time_slider, "play": play, "figure": fig, "readout": text, "status": status,
             "controls": controls, "runs": lambda: current["runs"]}  # fmt: skip
    return box, parts


def plot_stream(runs: dict[str, StreamRun], t: int | None = None) -> Figure:
    """Static version of :func:`stream_widget` at example ``t`` (default: the end)."""
    any_run = next(iter(runs.values()))
    n, families = any_run.losses.shape
    t = n - 1 if t is None else t
    fig, axes = plt.subplots(1, len(runs) + 1, figsize=(12, 3.2),
                             gridspec_kw={"width_ratios": [1] * len(runs) + [0.7]})  # fmt: skip
    top = max(float(r.losses.max()) for r in runs.values())
    low = min(float(r.losses.min()) for r in runs.values())
    for ax, (method, run) in zip(axes, runs.items(), strict=False):
        for j in range(families):
            ax.semilogy(range(t + 1), run.losses[: t + 1, j], color=family_color(j), lw=1.2,
                        label=f"family {j}")  # fmt: skip
        for b in range(1, families):
            ax.axvline(b * n / families - 0.5, color="gray", lw=0.5, ls=":")
        ax.set(
            title=NAMES[method], xlabel="example t", xlim=(0, n - 1), ylim=(low * 0.9, top * 1.1)
        )
    axes[0].set_ylabel("held-out MSE")
    axes[0].legend(fontsize=7)
    counts = runs["mer"].memory_counts(t, families) if "mer" in runs else [0] * families
    axes[-1].bar(range(families), counts, color=[family_color(j) for j in range(families)])
    axes[-1].set(title=f"memory at t = {t}", xlabel="family", ylabel="examples",
                 xticks=range(families))  # fmt: skip
    fig.tight_layout()
    return fig
