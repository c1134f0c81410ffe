"""Chapter 08's widgets: the Omniglot data, an episode, and adaptation from meta-learned inits.

* :class:`DatasetExplorer`: one drawing, chosen by alphabet, character, drawer and rotation,
  with the split its character belongs to;
* :class:`EpisodeSampler`: an N-way K-shot meta-test episode as a labelled image grid;
* :class:`AdaptationExplorer` (the chapter's main widget): the query predictions of the shipped
  MAML, FOMAML and Reptile 5-way 1-shot nets after 0..10 inner steps on one episode.

Images are shown ink-dark on white paper, as drawn (the data stores ink = 1).
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
from mamlviz.course.omniglot import Adapted, OmniglotDemo
from mamlviz.course.viz.common import (
    MAIN_CLASS,
    TRUTH_COLOR,
    Status,
    color,
    guarded,
    readout,
    slider,
)
from mamlviz.tasks.omniglot import SPLITS, OmniglotTasks

MAX_STEPS = 10
GREY = "#b0b0b0"
PAD = 0.12  # the grey (in ink units) that the NaN padding of a mosaic is shown in


def _z(image: Tensor) -> list[list[float]]:
    """Heatmap rows of ``image``, top row last (plotly's y axis points up), NaN shown as PAD
    (JSON has no NaN)."""
    return image.nan_to_num(PAD).flip(0).tolist()


def drawing(tasks: OmniglotTasks, character: int, drawer: int, rotation: int = 0) -> Tensor:
    """Drawing ``drawer`` of character id ``character`` rotated by ``rotation`` x 90 degrees
    counter-clockwise, float [28, 28] in [0, 1] (ink = 1): the same pixels the sampler gives a
    class (``character``, ``rotation``), since it rotates with ``torch.rot90`` too."""
    image = tasks.arrays.images[character, drawer].to(torch.float32) / 255
    return torch.rot90(image, rotation % 4, dims=(0, 1))


def split_of(tasks: OmniglotTasks, character: int) -> str:
    """Which split ("train", "val" or "test") character id ``character`` belongs to."""
    for name in SPLITS:
        if bool((tasks.partition.classes(name) == character).any()):
            return name
    raise ValueError(f"character id {character} is in no split")


def alphabets(tasks: OmniglotTasks) -> dict[str, list[int]]:
    """Character ids per alphabet, alphabets in the data's order (background set first)."""
    out: dict[str, list[int]] = {}
    for i, name in enumerate(tasks.arrays.alphabets):
        out.setdefault(name, []).append(i)
    return out


def mosaic(images: Tensor, rows: int, cols: int, pad: int = 2) -> Tensor:
    """Tile ``rows * cols`` images [rows * cols, H, W] (row-major) into one image with ``pad``
    pixels of NaN between tiles (NaN shows as background)."""
    n, h, w = images.shape
    if n != rows * cols:
        raise ValueError(f"{n} images do not fill a {rows} x {cols} grid")
    out = torch.full((rows * (h + pad) - pad, cols * (w + pad) - pad), float("nan"))
    for k in range(n):
        r, c = divmod(k, cols)
        out[r * (h + pad) : r * (h + pad) + h, c * (w + pad) : c * (w + pad) + w] = images[k]
    return out


def episode_grid(episode: Episode, ways: int, pad: int = 2) -> Tensor:
    """The episode as one image: row ``i`` holds label ``i``'s support drawings, a blank tile,
    then its query drawings (the sampler groups examples by label)."""
    support = episode.support.x[:, 0].reshape(ways, -1, *episode.support.x.shape[-2:])
    query = episode.query.x[:, 0].reshape(ways, -1, *episode.query.x.shape[-2:])
    blank = torch.full_like(support[:, :1], float("nan"))
    tiles = torch.cat([support, blank, query], dim=1)
    return mosaic(tiles.reshape(-1, *tiles.shape[-2:]), ways, tiles.shape[1], pad)


def _heatmap(image: Tensor) -> go.Heatmap:
    return go.Heatmap(
        z=_z(image),
        colorscale=[[0, "white"], [1, "black"]],
        zmin=0,
        zmax=1,
        showscale=False,
        hoverinfo="skip",
    )


def _axes_off(fig: go.FigureWidget) -> None:
    fig.update_xaxes(visible=False)
    fig.update_yaxes(visible=False, scaleanchor="x")


class DatasetExplorer:
    """Sliders for alphabet, character (within it), drawer and rotation; the drawing shown and
    the split its character belongs to."""

    def __init__(self, tasks: OmniglotTasks) -> None:
        self.tasks = tasks
        self.by_alphabet = alphabets(tasks)
        self.names = list(self.by_alphabet)
        self.alphabet = slider("alphabet", 0, 0, len(self.names) - 1, 1, kind="int")
        self.character = slider(
            "character", 0, 0, len(self.by_alphabet[self.names[0]]) - 1, 1, kind="int"
        )
        self.drawer = slider("drawer", 0, 0, tasks.arrays.images.shape[1] - 1, 1, kind="int")
        self.rotation = slider("rotation (x 90°)", 0, 0, 3, 1, kind="int")
        self.status = Status()
        self.text = readout()
        self.fig = go.FigureWidget(layout=dict(width=300, height=300, margin=dict(t=10, b=10)))
        self.fig.add_trace(_heatmap(torch.zeros(28, 28)))
        _axes_off(self.fig)
        for s in (self.alphabet, self.character, self.drawer, self.rotation):
            s.observe(guarded(self.status, self.update), names="value")
        self.widget = widgets.VBox(
            [
                self.alphabet,
                self.character,
                self.drawer,
                self.rotation,
                self.text,
                self.fig,
                self.status.widget,
            ]
        )
        self.update()

    @property
    def character_id(self) -> int:
        ids = self.by_alphabet[self.names[self.alphabet.value]]
        return ids[min(self.character.value, len(ids) - 1)]

    def describe(self) -> str:
        i = self.character_id
        ids = self.by_alphabet[self.tasks.arrays.alphabets[i]]
        split = split_of(self.tasks, i)
        note = {
            "train": "meta-training (its 4 rotations are 4 classes)",
            "val": "validation (model selection)",
            "test": "meta-test (never seen in meta-training)",
        }[split]
        return (
            f"{self.tasks.arrays.alphabets[i]} ({len(ids)} characters), "
            f"{self.tasks.arrays.characters[i]}, drawer {self.drawer.value} (0-19), "
            f"rotated {90 * self.rotation.value}°: character id {i}, split <b>{split}</b>: {note}"
        )

    def update(self) -> None:
        n = len(self.by_alphabet[self.names[self.alphabet.value]])
        self.character.max = n - 1
        image = drawing(self.tasks, self.character_id, self.drawer.value, self.rotation.value)
        self.fig.data[0].z = _z(image)
        self.text.value = self.describe()
        self.status.ok()


class EpisodeSampler:
    """Ways, shots, query and seed sliders; the episode drawn from the meta-test split as a grid
    (one row per label: support drawings, a gap, query drawings)."""

    def __init__(self, tasks: OmniglotTasks, seed: int = 0) -> None:
        self.tasks = tasks.view("test")
        self.ways = slider("ways (N)", 5, 2, 20, 1, kind="int")
        self.shots = slider("shots (K)", 1, 1, 10, 1, kind="int")
        self.query = slider("query / class", 1, 1, 10, 1, kind="int")
        self.seed = slider("seed", seed, 0, 1000, 1, kind="int")
        self.status = Status()
        self.text = readout()
        self.fig = go.FigureWidget(layout=dict(width=560, height=420, margin=dict(t=10, b=10)))
        self.fig.add_trace(_heatmap(torch.zeros(28, 28)))
        _axes_off(self.fig)
        for s in (self.ways, self.shots, self.query, self.seed):
            s.observe(guarded(self.status, self.update), names="value")
        self.widget = widgets.VBox(
            [self.ways, self.shots, self.query, self.seed, self.text, self.fig, self.status.widget]
        )
        self.episode = self.sample()
        self.update()

    def sample(self) -> Episode:
        tasks = self.tasks.view(ways=self.ways.value)
        generator = torch.Generator().manual_seed(int(self.seed.value))
        return tasks.sample(generator, self.shots.value, self.query.value, 1).task(0)

    def update(self) -> None:
        self.episode = self.sample()
        ways, shots = self.ways.value, self.shots.value
        grid = episode_grid(self.episode, ways)
        self.fig.data[0].z = _z(grid)
        self.fig.layout.height = min(760, 80 + 34 * ways)
        self.fig.layout.annotations = [
            dict(
                x=-4,
                y=grid.shape[0] - 15 - 30 * i,
                text=f"label {i}",
                showarrow=False,
                xanchor="right",
            )
            for i in range(ways)
        ]
        self.fig.update_xaxes(range=[-60, grid.shape[1]])
        self.text.value = (
            f"{ways}-way {shots}-shot: support {ways} x {shots} = {ways * shots} drawings (left),"
            f" query {ways} x {self.query.value} = {ways * self.query.value} (right), from"
            f" {self.tasks.num_classes()} meta-test characters; chance = 1/{ways}"
            f" = {100 / ways:.0f} %"
        )
        self.status.ok()


def true_class_probability(result: Adapted, labels: Tensor) -> Tensor:
    """Per step, each query example's probability of its true label [steps + 1, queries]."""
    return result.probabilities[:, torch.arange(len(labels)), labels]


class AdaptationExplorer:
    """The main widget: the inner-step slider (first), an episode slider and an algorithm
    selector; per-query probability bars of the selected algorithm after k steps, and the query
    accuracy against steps of every algorithm on this episode. Each (algorithm, episode) is
    adapted to ``MAX_STEPS`` once and cached; moving the step slider only indexes."""

    def __init__(self, demos: dict[str, OmniglotDemo], seed: int = 0, steps: int = 0) -> None:
        self.demos = demos
        self.cache: dict[tuple[str, int], Adapted] = {}
        self.episodes: dict[int, Episode] = {}
        self.steps = slider("inner steps k", steps, 0, MAX_STEPS, 1, kind="int")
        self.seed = slider("episode (seed)", seed, 0, 999, 1, kind="int")
        self.algorithm = widgets.ToggleButtons(options=list(demos), value=next(iter(demos)))
        self.status = Status()
        self.text = readout()
        ways = 5
        fig = make_subplots(
            rows=2,
            cols=ways,
            row_heights=[0.3, 0.7],
            vertical_spacing=0.08,
            subplot_titles=[f"query {i + 1}" for i in range(ways)],
        )
        self.fig = go.FigureWidget(fig)
        self.fig.update_layout(width=760, height=380, margin=dict(t=30, b=30), showlegend=False)
        for i in range(ways):
            self.fig.add_trace(_heatmap(torch.zeros(28, 28)), row=1, col=i + 1)
            self.fig.add_trace(go.Bar(x=list(range(ways)), y=[0.2] * ways), row=2, col=i + 1)
        self.fig.update_yaxes(visible=False, row=1)
        self.fig.update_xaxes(visible=False, row=1)
        self.fig.update_yaxes(range=[0, 1], row=2)
        self.fig.update_yaxes(title_text="p(label)", row=2, col=1)
        self.curve = go.FigureWidget(
            layout=dict(
                width=760,
                height=260,
                margin=dict(t=30, b=40),
                xaxis=dict(title="inner steps", dtick=1),
                yaxis=dict(title="query accuracy", range=[0, 1.05]),
                title="accuracy on this episode (5 queries)",
            )
        )
        for name in demos:
            self.curve.add_scatter(name=name, mode="lines+markers", line=dict(color=color(name)))
        self.curve.add_scatter(
            name="k",
            x=[steps, steps],
            y=[0, 1.05],
            mode="lines",
            line=dict(color=GREY, dash="dot"),
            showlegend=False,
        )
        for w in (self.steps, self.seed, self.algorithm):
            w.observe(guarded(self.status, self.update), names="value")
        self.widget = widgets.VBox(
            [
                self.steps,
                self.seed,
                self.algorithm,
                self.text,
                self.fig,
                self.curve,
                self.status.widget,
            ]
        )
        self.widget.add_class(MAIN_CLASS)
        self.update()

    def episode(self, seed: int) -> Episode:
        if seed not in self.episodes:
            self.episodes[seed] = next(iter(self.demos.values())).sample(seed)
        return self.episodes[seed]

    def result(self, name: str, seed: int) -> Adapted:
        """``name``'s adaptation of episode ``seed`` to ``MAX_STEPS`` steps (cached)."""
        key = (name, seed)
        if key not in self.cache:
            self.cache[key] = self.demos[name].adapt(self.episode(seed), MAX_STEPS)
        return self.cache[key]

    def readout_text(self) -> str:
        k, seed = self.steps.value, self.seed.value
        labels = self.episode(seed).query.y
        parts = []
        for name in self.demos:
            r = self.result(name, seed)
            p = float(true_class_probability(r, labels)[k].mean())
            loss = r.support_loss[k]
            parts.append(f"{name} {r.accuracy[k]:.0%} (p(true) {p:.3f}, support loss {loss:.3g})")
        return f"after {k} step{'s' * (k != 1)}: " + " · ".join(parts)

    def update(self) -> None:
        k, seed, name = self.steps.value, self.seed.value, self.algorithm.value
        episode = self.episode(seed)
        r = self.result(name, seed)
        labels = episode.query.y.tolist()
        with self.fig.batch_update():
            for i, label in enumerate(labels):
                self.fig.data[2 * i].z = _z(episode.query.x[i, 0])
                bars = self.fig.data[2 * i + 1]
                bars.y = r.probabilities[k, i].tolist()
                pred = int(r.predictions[k, i])
                bars.marker.color = [
                    TRUTH_COLOR if c == label else (color(name) if c == pred else GREY)
                    for c in range(len(bars.y))
                ]
        with self.curve.batch_update():
            for j, other in enumerate(self.demos):
                acc = self.result(other, seed).accuracy
                self.curve.data[j].x = list(range(len(acc)))
                self.curve.data[j].y = acc
            self.curve.data[-1].x = [k, k]
        self.text.value = self.readout_text()
        self.status.ok(f"bars: {name}; green = true label, coloured = a wrong prediction")


def plot_adaptation(
    demos: dict[str, OmniglotDemo], episode: Episode, steps: tuple[int, ...] = (0, 1, 3)
) -> Figure:
    """Static twin of the main widget: each algorithm's probability of every label for each
    query after ``steps`` inner steps (rows: steps x algorithms), true labels green."""
    results = {name: demo.adapt(episode, max(steps)) for name, demo in demos.items()}
    n = len(episode.query.y)
    rows = [(name, k) for k in steps for name in demos]
    fig, axes = plt.subplots(len(rows) + 1, n, figsize=(1.6 * n, 1.2 * (len(rows) + 1)))
    for i in range(n):
        axes[0, i].imshow((1 - episode.query.x[i, 0]).numpy(), cmap="gray", vmin=0, vmax=1)
        axes[0, i].set_title(f"query {i + 1} (label {int(episode.query.y[i])})", fontsize=8)
        axes[0, i].axis("off")
    for r, (name, k) in enumerate(rows, start=1):
        p = results[name].probabilities[k]
        for i in range(n):
            ax = axes[r, i]
            label = int(episode.query.y[i])
            colors = [TRUTH_COLOR if c == label else color(name) for c in range(p.shape[1])]
            ax.bar(range(p.shape[1]), p[i].numpy(), color=colors)
            ax.set_ylim(0, 1)
            ax.set_xticks([])
            ax.set_yticks([])
            if i == 0:
                ax.set_ylabel(f"{name}\nk={k}", fontsize=8)
    fig.tight_layout()
    return fig


def plot_accuracy_curves(curves: dict[str, Tensor]) -> Figure:
    """Mean query accuracy against inner steps, one line per algorithm (``curves[name]`` is
    [episodes, steps + 1])."""
    fig, ax = plt.subplots(figsize=(6, 3))
    for name, acc in curves.items():
        mean = acc.mean(0)
        ax.plot(range(len(mean)), mean.numpy(), "o-", color=color(name), label=name)
    ax.axhline(0.2, color=GREY, ls=":", label="chance (1/5)")
    ax.set(xlabel="inner steps k", ylabel="mean query accuracy", ylim=(0, 1.05))
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def plot_image_grid(image: Tensor, title: str = "") -> Figure:
    """A drawing or an :func:`episode_grid` as a static figure (ink dark on white, padding
    light grey)."""
    fig, ax = plt.subplots(figsize=(max(2.0, image.shape[1] / 40), max(2.0, image.shape[0] / 40)))
    ax.imshow((1 - image.nan_to_num(PAD)).numpy(), cmap="gray", vmin=0, vmax=1)
    ax.set_title(title, fontsize=9)
    ax.axis("off")
    fig.tight_layout()
    return fig
