"""Chapter 02's meta-training scrubber: drag through the meta-training of a shipped checkpoint.

The slider picks one of the checkpoint's stored theta snapshots (``History.snapshots``, every
1,000 iterations for ``sinusoid-maml-replay``). For that theta, on one fixed task: the
prediction before adaptation and after one inner step, and the query MSE of both. Beside it,
against meta-iterations: the mean query MSE over ``tasks`` held-out 5-shot tasks before and
after one step, for every snapshot (the evaluation protocol of the README on fewer tasks), the
training meta-loss faint behind, and a marker at the snapshot. Everything is computed once,
when the widget is built (about a second), so dragging only indexes.
"""

from __future__ import annotations

from collections.abc import Sequence

import ipywidgets as widgets
import matplotlib.pyplot as plt
import plotly.graph_objects as go
import torch
from matplotlib.figure import Figure
from plotly.subplots import make_subplots
from torch import Tensor

from mamlviz.core.episode import Episode
from mamlviz.core.functional import call
from mamlviz.course.viz.common import TRUTH_COLOR, Status, color, fmt, guarded, readout
from mamlviz.tasks.sinusoid import SinusoidTasks, sinusoid
from mamlviz.training.evaluate import evaluate
from mamlviz.training.hub import Checkpoint
from mamlviz.training.problems import get_problem

GRID = torch.linspace(-5, 5, 161).view(-1, 1)
SCRUBBER_CLASS = "mamlviz-scrubber"


class MetaTrainingScrubber:
    """Slider over meta-training snapshots; theta's fit and its one-step fit on one task."""

    def __init__(
        self,
        checkpoint: Checkpoint,
        amplitude: float = 3.0,
        phase: float = 1.0,
        shots: int = 5,
        seed: int = 0,
        tasks: int = 100,
    ) -> None:
        history = checkpoint.history
        if history is None or len(history.snapshots) < 2:
            raise ValueError(f"{checkpoint.path} stores fewer than 2 theta snapshots")
        self.checkpoint, self.history = checkpoint, history
        self.amplitude, self.phase, self.tasks = float(amplitude), float(phase), int(tasks)
        self.episode = self._task(shots, seed)
        self.iterations = list(history.snapshot_iterations)
        self.fits = [self._fits(theta) for theta in history.snapshots]
        # [snapshots, 2]: mean held-out query MSE before and after one step, per snapshot
        test = get_problem("sinusoid").make_tasks("test")
        learner = checkpoint.learner()
        self.held_out = torch.tensor(
            [
                evaluate(learner, theta, test, shots=shots, tasks=tasks, steps=1).mean
                for theta in history.snapshots
            ]
        )
        self.slider = widgets.SelectionSlider(
            options=self.iterations,
            value=self.iterations[0],  # drag forward through meta-training
            description="meta-iteration",
            continuous_update=True,
            style={"description_width": "110px"},
            layout=widgets.Layout(width="520px"),
        )
        self.status = Status()
        self.text = readout()
        fig = make_subplots(
            rows=1,
            cols=2,
            column_widths=[0.55, 0.45],
            subplot_titles=["theta and one inner step on this task", "meta-training"],
        )
        self.fig = go.FigureWidget(fig)
        self.fig.update_layout(width=920, height=360, margin=dict(t=40, b=40))
        x = GRID.reshape(-1).tolist()
        truth = sinusoid(GRID, self.amplitude, self.phase).reshape(-1).tolist()
        self.fig.add_scatter(x=x, y=truth, name="truth", line=dict(color=TRUTH_COLOR), row=1, col=1)
        self.fig.add_scatter(
            x=x, y=[], name="theta (0 steps)", line=dict(color=color("MAML"), dash="dot"),
            row=1, col=1,
        )  # fmt: skip
        self.fig.add_scatter(
            x=x, y=[], name="after 1 step", line=dict(color=color("MAML")), row=1, col=1
        )
        self.fig.add_scatter(
            x=self.episode.support.x.reshape(-1).tolist(),
            y=self.episode.support.y.reshape(-1).tolist(),
            mode="markers",
            name="support",
            marker=dict(color="black", size=8),
            row=1,
            col=1,
        )
        self.fig.add_scatter(
            x=list(history.iterations),
            y=list(history.loss),
            name="training meta-loss",
            line=dict(color="rgba(85, 85, 85, 0.3)", width=1),
            row=1,
            col=2,
        )
        self.fig.add_scatter(
            x=[], y=[], mode="markers", name="this snapshot",
            marker=dict(color=color("MAML"), size=11), row=1, col=2,
        )  # fmt: skip
        for k, dash in ((0, "dot"), (1, "solid")):
            self.fig.add_scatter(
                x=self.iterations,
                y=self.held_out[:, k].tolist(),
                name=f"{tasks} held-out tasks, {k} step{'s' * (k != 1)}",
                mode="lines+markers",
                line=dict(color=color("MAML"), dash=dash),
                row=1,
                col=2,
            )
        self.fig.update_yaxes(range=[-5.5, 5.5], row=1, col=1)
        self.fig.update_yaxes(type="log", title_text="query MSE", row=1, col=2)
        self.fig.update_xaxes(title_text="x", row=1, col=1)
        self.fig.update_xaxes(title_text="meta-iteration", row=1, col=2)
        self.slider.observe(guarded(self.status, self.update), names="value")
        self.widget = widgets.VBox([self.slider, self.text, self.fig, self.status.widget])
        self.widget.add_class(SCRUBBER_CLASS)  # chapter 02's second widget (browser test)
        self.update()

    def _task(self, shots: int, seed: int) -> Episode:
        """The fixed task: ``shots`` support and 100 query points of y = A sin(x - phase)."""
        amplitude, phase = torch.tensor(self.amplitude), torch.tensor(self.phase)
        generator = torch.Generator().manual_seed(seed)
        return SinusoidTasks().episode(amplitude, phase, generator, shots, 100)

    def _fits(self, theta: dict[str, Tensor]) -> dict[str, object]:
        learner = self.checkpoint.learner()
        fast, frozen, rule = learner.split({n: w.detach() for n, w in theta.items()})
        phi = learner.inner_loop(fast, frozen, rule, self.episode.support, steps=1)
        with torch.no_grad():
            out = {}
            for key, params in (("theta", {**fast, **frozen}), ("phi", {**phi, **frozen})):
                query = call(learner.model, params, self.episode.query.x)
                out[key] = call(learner.model, params, GRID).reshape(-1)
                out[f"{key}_mse"] = float((query - self.episode.query.y).pow(2).mean())
        return out

    def index(self) -> int:
        return self.iterations.index(self.slider.value)

    def update(self) -> None:
        i = self.index()
        fits, it = self.fits[i], self.iterations[i]
        with self.fig.batch_update():
            grid = GRID.reshape(-1).tolist()  # x with y: plotly drops an x set beside y=[]
            self.fig.data[1].x, self.fig.data[1].y = grid, fits["theta"].tolist()  # type: ignore[attr-defined]
            self.fig.data[2].x, self.fig.data[2].y = grid, fits["phi"].tolist()  # type: ignore[attr-defined]
            self.fig.data[5].x, self.fig.data[5].y = [it], [float(self.held_out[i, 1])]
        self.text.value = (
            f"iteration {it:,} of {self.iterations[-1]:,}: query MSE on this task before"
            f" adapting {fmt(fits['theta_mse'])}, after one step {fmt(fits['phi_mse'])}"  # type: ignore[arg-type]
            f"; over {self.tasks} held-out tasks {fmt(float(self.held_out[i, 0]))}"
            f" and {fmt(float(self.held_out[i, 1]))}"
        )
        self.status.ok(f"{len(self.iterations)} stored snapshots of theta; inner_lr 0.01")


def plot_scrubber(
    scrubber: MetaTrainingScrubber, iterations: Sequence[int] = (0, 1000, 5000, 30000)
) -> Figure:
    """Static twin: theta's fit and its one-step fit at the snapshots of ``iterations``, and the
    held-out query MSE of every snapshot before and after one step."""
    unknown = [it for it in iterations if it not in scrubber.iterations]
    if unknown:
        raise ValueError(
            f"iterations must be stored snapshots {scrubber.iterations}, got {unknown}"
        )
    idx = [scrubber.iterations.index(it) for it in iterations]
    picks = len(idx)
    fig, axes = plt.subplots(1, picks + 1, figsize=(3.2 * (picks + 1), 3))
    x = GRID.reshape(-1)
    truth = sinusoid(GRID, scrubber.amplitude, scrubber.phase).reshape(-1)
    ep = scrubber.episode
    for ax, i in zip(axes, idx, strict=False):
        f = scrubber.fits[i]
        ax.plot(x, truth, color=TRUTH_COLOR, label="truth")
        ax.plot(x, f["theta"], ":", color=color("MAML"), label="theta")
        ax.plot(x, f["phi"], color=color("MAML"), label="after 1 step")
        ax.plot(ep.support.x.reshape(-1), ep.support.y.reshape(-1), "ko", ms=4)
        ax.set(title=f"iteration {scrubber.iterations[i]:,}", ylim=(-5.5, 5.5))
    axes[0].legend(fontsize=7)
    h, its = scrubber.history, scrubber.iterations
    axes[-1].semilogy(list(h.iterations), list(h.loss), color="#555555", lw=0.5, alpha=0.4,
                      label="training meta-loss")  # fmt: skip
    axes[-1].semilogy(
        its, scrubber.held_out[:, 0], ":o", ms=3, color=color("MAML"), label="0 steps"
    )
    axes[-1].semilogy(its, scrubber.held_out[:, 1], "-o", ms=3, color=color("MAML"), label="1 step")
    axes[-1].set(title="held-out query MSE", xlabel="meta-iteration")
    axes[-1].legend(fontsize=7)
    fig.tight_layout()
    return fig
