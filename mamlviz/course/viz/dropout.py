"""Chapter 10's widget and figures: adaptation under Meta-Dropout's learned noise.

:class:`DropoutExplorer` (the main widget, sinusoids): a noise-draw slider (first), a slider for
the number of draws averaged in each step's support loss, and a task slider. Left: the task, the
one-step fits of MAML and of Meta-Dropout under this draw, under ten other draws (faint) and
with the noise at its mean. Right: the learned noise map, the mean multiplier softplus(a(h)) of
each hidden layer against x. Each task's MAML fit, faint draws and noise map are computed once
and cached.

:func:`plot_noise_maps` (Omniglot): the mean multiplier of every conv block over a few drawings.
"""

from __future__ import annotations

import ipywidgets as widgets
import matplotlib.pyplot as plt
import plotly.graph_objects as go
import torch
from matplotlib.figure import Figure
from plotly.subplots import make_subplots
from torch import Tensor

from mamlviz.core.episode import Episode
from mamlviz.course import dropout as dr
from mamlviz.course.viz.common import (
    MAIN_CLASS,
    TRUTH_COLOR,
    Status,
    color,
    fmt,
    guarded,
    readout,
    slider,
)
from mamlviz.tasks.sinusoid import SinusoidTasks
from mamlviz.training.hub import Checkpoint

DROPOUT_COLOR = "#8c564b"
FAINT = "rgba(140, 86, 75, 0.18)"
GRID = torch.linspace(-5, 5, 161).view(-1, 1)
OTHER_DRAWS = range(1000, 1010)  # the faint fits: ten draws the slider does not reach
SHOTS, QUERY = 10, 100


class DropoutExplorer:
    """The main widget of chapter 10 (see the module doc)."""

    def __init__(
        self, dropout: Checkpoint, maml: Checkpoint, task_seed: int = 0, tasks=None
    ) -> None:
        self.dropout, self.maml = dropout, maml
        self.tasks = tasks if tasks is not None else SinusoidTasks()
        self.cache: dict[int, dict[str, object]] = {}
        self.draw = slider("noise draw", 0, 0, 99, 1, kind="int")
        self.samples = slider("draws averaged", 1, 1, 30, 1, kind="int")
        self.task = slider("task (seed)", task_seed, 0, 999, 1, kind="int")
        self.status = Status()
        self.text = readout()
        fig = make_subplots(
            rows=1,
            cols=2,
            column_widths=[0.6, 0.4],
            subplot_titles=["one inner step on 10 support points", "learned noise map"],
        )
        self.fig = go.FigureWidget(fig)
        self.fig.update_layout(width=920, height=380, margin=dict(t=40, b=40))
        self.fig.add_scatter(name="truth", mode="lines", line=dict(color=TRUTH_COLOR), row=1, col=1)
        for i in range(len(OTHER_DRAWS)):
            self.fig.add_scatter(
                mode="lines",
                line=dict(color=FAINT, width=1),
                showlegend=i == 0,
                name="Meta-Dropout, other draws",
                row=1,
                col=1,
            )
        self.fig.add_scatter(
            name="Meta-Dropout, noise at its mean",
            mode="lines",
            line=dict(color=DROPOUT_COLOR, dash="dash"),
            row=1,
            col=1,
        )
        self.fig.add_scatter(
            name="MAML", mode="lines", line=dict(color=color("MAML")), row=1, col=1
        )
        self.fig.add_scatter(
            name="Meta-Dropout, this draw",
            mode="lines",
            line=dict(color=DROPOUT_COLOR, width=3),
            row=1,
            col=1,
        )
        self.fig.add_scatter(
            name="support",
            mode="markers",
            marker=dict(color="black", size=7),
            row=1,
            col=1,
        )
        for name, dash in (("fc1", "solid"), ("fc2", "dot")):
            self.fig.add_scatter(
                name=f"softplus(a), layer {name[-1]}",
                mode="lines",
                line=dict(color="#555555", dash=dash),
                row=1,
                col=2,
            )
        self.fig.update_xaxes(title_text="x", row=1, col=1)
        self.fig.update_xaxes(title_text="x", row=1, col=2)
        self.fig.update_yaxes(range=[-6, 6], row=1, col=1)
        self.fig.update_yaxes(title_text="mean multiplier over units", row=1, col=2)
        for w in (self.draw, self.samples, self.task):
            w.observe(guarded(self.status, self.update), names="value")
        self.widget = widgets.VBox(
            [self.draw, self.samples, self.task, self.text, self.fig, self.status.widget]
        )
        self.widget.add_class(MAIN_CLASS)
        self.update()

    def episode(self, seed: int) -> Episode:
        generator = torch.Generator().manual_seed(int(seed))
        return self.tasks.sample(generator, SHOTS, QUERY, 1).task(0)

    def task_view(self, seed: int) -> dict[str, object]:
        """What does not depend on the draw sliders, for task ``seed`` (cached)."""
        if seed not in self.cache:
            episode = self.episode(seed)
            md, maml = self.dropout, self.maml
            x = torch.cat([GRID, episode.query.x])
            n = len(GRID)
            maml_out = dr.adapted_fits(maml.learner(), maml.meta, episode, x, [0])[0]
            faint = dr.adapted_fits(md.learner(), md.meta, episode, x, OTHER_DRAWS)
            mean = dr.adapted_fits(md.learner(noise="mean"), md.meta, episode, x, [0])[0]
            maps = dr.noise_multipliers(md.learner().model, md.meta, GRID)
            self.cache[seed] = dict(
                episode=episode,
                maml=maml_out[:n],
                maml_mse=float((maml_out[n:] - episode.query.y).pow(2).mean()),
                faint=faint[:, :n],
                faint_mse=(faint[:, n:] - episode.query.y).pow(2).mean((1, 2)),
                mean=mean[:n],
                mean_mse=float((mean[n:] - episode.query.y).pow(2).mean()),
                maps={k: v.mean(1) for k, v in maps.items()},
            )
        return self.cache[seed]

    def this_draw(self, seed: int) -> tuple[Tensor, float]:
        """Meta-Dropout's fit on the grid and its query MSE for the sliders' draw and samples."""
        view = self.task_view(seed)
        episode: Episode = view["episode"]  # type: ignore[assignment]
        learner = self.dropout.learner(samples=int(self.samples.value))
        x = torch.cat([GRID, episode.query.x])
        out = dr.adapted_fits(learner, self.dropout.meta, episode, x, [int(self.draw.value)])[0]
        n = len(GRID)
        return out[:n], float((out[n:] - episode.query.y).pow(2).mean())

    def update(self) -> None:
        seed = int(self.task.value)
        view = self.task_view(seed)
        episode: Episode = view["episode"]  # type: ignore[assignment]
        fit, mse = self.this_draw(seed)
        x = GRID.reshape(-1).tolist()
        amplitude, phase = self.truth(episode)
        truth = amplitude * torch.sin(GRID.reshape(-1) - phase)
        faint: Tensor = view["faint"]  # type: ignore[assignment]
        with self.fig.batch_update():
            data = self.fig.data
            data[0].x, data[0].y = x, truth.tolist()
            for i in range(len(OTHER_DRAWS)):
                data[1 + i].x, data[1 + i].y = x, faint[i].reshape(-1).tolist()
            k = 1 + len(OTHER_DRAWS)
            data[k].x, data[k].y = x, view["mean"].reshape(-1).tolist()  # type: ignore[attr-defined]
            data[k + 1].x, data[k + 1].y = x, view["maml"].reshape(-1).tolist()  # type: ignore[attr-defined]
            data[k + 2].x, data[k + 2].y = x, fit.reshape(-1).tolist()
            data[k + 3].x = episode.support.x.reshape(-1).tolist()
            data[k + 3].y = episode.support.y.reshape(-1).tolist()
            maps: dict[str, Tensor] = view["maps"]  # type: ignore[assignment]
            for j, name in enumerate(("fc1", "fc2")):
                data[k + 4 + j].x, data[k + 4 + j].y = x, maps[name].tolist()
        faint_mse: Tensor = view["faint_mse"]  # type: ignore[assignment]
        s = int(self.samples.value)
        self.text.value = (
            f"query MSE after one step: Meta-Dropout, draw {self.draw.value} averaged over {s}"
            f" draw{'s' * (s != 1)}: <b>{fmt(mse)}</b> · other draws {fmt(float(faint_mse.min()))}"
            f"-{fmt(float(faint_mse.max()))} · noise at its mean {fmt(view['mean_mse'])}"  # type: ignore[arg-type]
            f" · MAML {fmt(view['maml_mse'])}"  # type: ignore[arg-type]
        )
        self.status.ok("one inner step at inner_lr 0.01 from each meta-learned theta")

    @staticmethod
    def truth(episode: Episode) -> tuple[float, float]:
        """Amplitude and phase of the task, recovered from two of its noise-free points."""
        x = torch.cat([episode.support.x, episode.query.x]).reshape(-1).double()
        y = torch.cat([episode.support.y, episode.query.y]).reshape(-1).double()
        # y = A sin(x - p) = (A cos p) sin x - (A sin p) cos x: linear least squares
        basis = torch.stack([torch.sin(x), -torch.cos(x)], dim=1)
        c, s = torch.linalg.lstsq(basis, y.unsqueeze(1)).solution.reshape(-1).tolist()
        return float((c * c + s * s) ** 0.5), float(torch.atan2(torch.tensor(s), torch.tensor(c)))


def plot_dropout(explorer: DropoutExplorer, seed: int = 0) -> Figure:
    """Static twin of the main widget for task ``seed`` (draw 0, one draw per step)."""
    view = explorer.task_view(seed)
    episode: Episode = view["episode"]  # type: ignore[assignment]
    amplitude, phase = explorer.truth(episode)
    x = GRID.reshape(-1)
    fig, (ax, bx) = plt.subplots(1, 2, figsize=(12, 3.8), gridspec_kw=dict(width_ratios=[3, 2]))
    ax.plot(x, amplitude * torch.sin(x - phase), color=TRUTH_COLOR, label="truth")
    faint: Tensor = view["faint"]  # type: ignore[assignment]
    for i, row in enumerate(faint):
        ax.plot(x, row.reshape(-1), color=DROPOUT_COLOR, alpha=0.25, lw=1,
                label="Meta-Dropout, 10 noise draws" if i == 0 else None)  # fmt: skip
    ax.plot(x, view["mean"].reshape(-1), "--", color=DROPOUT_COLOR, label="noise at its mean")  # type: ignore[attr-defined]
    ax.plot(x, view["maml"].reshape(-1), color=color("MAML"), label="MAML")  # type: ignore[attr-defined]
    ax.plot(episode.support.x.reshape(-1), episode.support.y.reshape(-1), "ko", label="support")
    ax.set(xlabel="x", ylim=(-6, 6), title="one inner step on 10 support points")
    ax.legend(fontsize=7)
    maps: dict[str, Tensor] = view["maps"]  # type: ignore[assignment]
    for name, ls in (("fc1", "-"), ("fc2", ":")):
        bx.plot(x, maps[name], ls, color="#555555", label=f"layer {name[-1]}")
    bx.set(xlabel="x", ylabel="mean softplus(a) over units", title="learned noise map")
    bx.legend(fontsize=7)
    fig.tight_layout()
    return fig


def plot_noise_maps(images: Tensor, maps: dict[str, Tensor], count: int = 4) -> Figure:
    """Omniglot: ``count`` drawings (rows) and, per conv block (columns), the multiplier
    softplus(a) averaged over the block's channels (``maps`` from
    :func:`mamlviz.course.dropout.noise_multipliers`, [N, C, H, W] each)."""
    blocks = list(maps)
    fig, axes = plt.subplots(count, 1 + len(blocks), figsize=(1.8 * (1 + len(blocks)), 1.8 * count))
    for r in range(count):
        axes[r, 0].imshow((1 - images[r, 0]).numpy(), cmap="gray", vmin=0, vmax=1)
        for c, name in enumerate(blocks, start=1):
            m = maps[name][r].mean(0)
            im = axes[r, c].imshow(m.numpy(), cmap="viridis")
            fig.colorbar(im, ax=axes[r, c], fraction=0.046)
            if r == 0:
                axes[r, c].set_title(f"block {name[-1]}", fontsize=9)
        for ax in axes[r]:
            ax.axis("off")
    fig.tight_layout()
    return fig
