"""Chapter 04: loss surfaces on a plane of parameter space, with inner-loop paths drawn on them.

Pure plotting functions (:func:`mpl_contour`, :func:`mpl_losses`, :func:`plotly_surface`) and
the chapter's main widget, :class:`LandscapeExplorer`. The plane goes through the meta-learned
init (origin), the weights adapted from it at a reference ``inner_lr``, and the pretrained init
(:func:`mamlviz.course.landscape.plane_through`); the surface is the task's support loss on it,
so the inner loop runs downhill on exactly what is drawn (up to the part of the path off the
plane). The slider, ``inner_lr``, redraws both paths, the loss per step and the printed losses;
the surface is recomputed on the same plane only when the window must grow to hold the path
(:func:`mamlviz.course.landscape.window_around`). Small steps converge, larger ones overshoot
and zigzag, too large ones diverge (reported in words; the widget keeps working).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

import ipywidgets as widgets
import matplotlib.pyplot as plt
import plotly.graph_objects as go
import torch
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.ticker import FixedLocator, FuncFormatter, LogLocator, NullFormatter
from plotly.subplots import make_subplots
from torch import Tensor, nn

from mamlviz.core.episode import Examples
from mamlviz.core.functional import Params, make_loss
from mamlviz.core.inner import Trajectory, adapt
from mamlviz.core.rules import SGD
from mamlviz.course.landscape import Plane, plane_through, surface, window_around
from mamlviz.course.viz.common import MAIN_CLASS, Status, color, guarded, readout, slider
from mamlviz.errors import DivergenceError
from mamlviz.tasks.sinusoid import SinusoidTasks, sinusoid

Paths = Mapping[str, Tensor]  # name -> [steps + 1, 2] plane coordinates
# A path point whose support loss exceeds this multiple of the start's is left outside the
# window: a diverging path runs off to astronomically large coordinates, which no window shows.
VIEW_LIMIT = 100.0


def log_loss(z: Tensor) -> Tensor:
    """log10 of a loss grid, with non-finite or huge values clipped (for colour scales)."""
    return torch.log10(torch.nan_to_num(z, nan=1e6, posinf=1e6).clamp(1e-4, 1e6))


def loss_ticks(lo: float, hi: float) -> list[float]:
    """log10 values for the ticks of a loss colour bar between ``lo`` and ``hi`` (log10).

    Every decade where the range spans three or more, else the 1-2-5 values in it.
    """
    decades = [k for k in range(math.ceil(lo), math.floor(hi) + 1)]
    if len(decades) >= 3:
        return [float(k) for k in decades]
    steps = [k + math.log10(m) for k in range(math.floor(lo), math.ceil(hi) + 1) for m in (1, 2, 5)]
    return [t for t in steps if lo <= t <= hi]


def loss_label(log10_value: float) -> str:
    """A colour-bar label in loss units (the colour is log10 of the loss)."""
    return f"{10**log10_value:.2g}"


def mpl_contour(
    a: Tensor,
    b: Tensor,
    z: Tensor,
    paths: Paths,
    title: str = "",
    ax: Axes | None = None,
    levels: int | list[float] = 30,
    xlabel: str = "direction 1",
    ylabel: str = "direction 2",
) -> Figure:
    """Filled contours of log10 loss with each path (start marked by a square).

    The colour bar is labelled in loss units. Pass the same ``levels`` (log10 values) to
    several plots to share one colour scale; ``xlabel``/``ylabel`` name the plane's directions.
    """
    if ax is None:
        _, ax = plt.subplots(figsize=(6, 4.6))
    fig = ax.figure
    cs = ax.contourf(a.tolist(), b.tolist(), log_loss(z).tolist(), levels=levels, cmap="viridis")
    bar = fig.colorbar(cs, ax=ax, label="support loss (colour: log scale)")
    bar.locator = FixedLocator(loss_ticks(float(cs.levels[0]), float(cs.levels[-1])))
    bar.formatter = FuncFormatter(lambda v, _: loss_label(v))
    bar.update_ticks()
    for name, p in paths.items():
        ax.plot(p[:, 0].tolist(), p[:, 1].tolist(), "o-", color=color(name), ms=3,
                label=f"{name} inner-loop path")  # fmt: skip
        ax.plot(float(p[0, 0]), float(p[0, 1]), "s", color=color(name), ms=8, mec="white",
                label=f"{name} init (start)")  # fmt: skip
    ax.set(xlim=(float(a[0]), float(a[-1])), ylim=(float(b[0]), float(b[-1])), title=title)
    ax.set_xlabel(xlabel, fontsize=9)
    ax.set_ylabel(ylabel, fontsize=9)
    if paths:
        ax.legend(fontsize=8, loc="best", framealpha=0.8)
    fig.tight_layout()
    return fig


def mpl_losses(
    losses: Mapping[str, list[float]], ax: Axes | None = None, title: str = ""
) -> Figure:
    """Support loss per inner step of each init, on a log axis labelled at every decade."""
    if ax is None:
        _, ax = plt.subplots(figsize=(4.6, 4.2))
    fig = ax.figure
    for name, values in losses.items():
        ax.semilogy(range(len(values)), values, "o-", color=color(name), ms=3,
                    label=f"{name} init")  # fmt: skip
    ax.yaxis.set_major_locator(LogLocator(base=10, numticks=12))
    ax.yaxis.set_minor_locator(LogLocator(base=10, subs=tuple(range(2, 10)), numticks=12))
    ax.yaxis.set_minor_formatter(NullFormatter())
    ax.set(xlabel="inner step", ylabel="support loss (log scale)", title=title)
    ax.grid(True, which="major", alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


KEEP = 0.5  # a window is kept while the window its path needs is at least this share of it


def mpl_surface(
    a: Tensor,
    b: Tensor,
    z: Tensor,
    paths: Paths,
    losses: Paths,
    xlabel: str = "direction 1",
    ylabel: str = "direction 2",
) -> Figure:
    """Static 3-D surface of log10 loss with each path lifted to its recorded loss."""
    fig = plt.figure(figsize=(7.5, 5.5))
    ax = fig.add_subplot(projection="3d")
    bb, aa = torch.meshgrid(b, a, indexing="ij")
    ax.plot_surface(aa.numpy(), bb.numpy(), log_loss(z).numpy(), cmap="viridis", alpha=0.8)
    for name, p in paths.items():
        zs = log_loss(losses[name]).tolist()
        ax.plot(p[:, 0].tolist(), p[:, 1].tolist(), zs, "o-", color=color(name), ms=3,
                label=f"{name} inner-loop path, at its recorded loss")  # fmt: skip
    ax.set_xlabel(xlabel, fontsize=8)
    ax.set_ylabel(ylabel, fontsize=8)
    ax.set_zlabel("log10 support loss")
    ax.legend(fontsize=8)
    return fig


def plotly_surface(
    a: Tensor,
    b: Tensor,
    z: Tensor,
    paths: Paths,
    losses: Paths,
    xlabel: str = "direction 1",
    ylabel: str = "direction 2",
) -> go.Figure:
    """3-D surface of log10 loss with each path lifted to its recorded loss."""
    fig = go.Figure(
        go.Surface(x=a.tolist(), y=b.tolist(), z=log_loss(z).tolist(), colorscale="Viridis",
                   opacity=0.9, showscale=True, name="support loss",
                   colorbar=dict(title="log10 loss", len=0.6))
    )  # fmt: skip
    for name, p in paths.items():
        zs = log_loss(losses[name]).tolist()
        fig.add_trace(
            go.Scatter3d(x=p[:, 0].tolist(), y=p[:, 1].tolist(), z=zs,
                         name=f"{name} inner-loop path", mode="lines+markers",
                         line=dict(color=color(name), width=6), marker=dict(size=3))
        )  # fmt: skip
    fig.update_layout(
        width=760, height=580, margin=dict(l=0, r=0, t=30, b=0), showlegend=True,
        scene=dict(xaxis_title=xlabel, yaxis_title=ylabel, zaxis_title="log10 loss"),
    )  # fmt: skip
    return fig


@dataclass
class Slice:
    """A plane around one init, a window on it, and the support loss on that window's grid."""

    plane: Plane
    a: Tensor
    b: Tensor
    z: Tensor
    xlabel: str = "direction 1"
    ylabel: str = "direction 2"

    @property
    def window(self) -> tuple[float, float, float, float]:
        return float(self.a[0]), float(self.a[-1]), float(self.b[0]), float(self.b[-1])


def visible(path: Tensor, losses: list[float], limit: float = VIEW_LIMIT) -> Tensor:
    """The points of ``path`` a window should hold: those up to the first whose loss exceeds
    ``limit`` times the start's (a diverging path's later points are off any useful scale)."""
    n = len(path)
    for k, loss in enumerate(losses[:n]):
        if not loss <= limit * losses[0]:  # also catches NaN
            n = k
            break
    return path[: max(n, 1)]


class LandscapeExplorer:
    """Support-loss surface of one task around each of two inits, with their inner-loop paths.

    Each init gets its own plane: through the init (origin), the weights adapted from it at the
    starting ``inner_lr``, and the other init. The window is square (same scale on both axes),
    at least the reference one zoomed on the starting path, and grows with the slider until it
    holds the whole path (up to a diverging path's runaway, see :func:`visible`).
    """

    def __init__(
        self,
        model: nn.Module,
        inits: Mapping[str, Params],
        *,
        inner_lr: float = 0.01,
        inner_steps: int = 10,
        shots: int = 5,
        amplitude: float = 3.0,
        phase: float = 1.0,
        seed: int = 0,
        grid: int = 41,
    ) -> None:
        if len(inits) != 2:
            raise ValueError(f"inits must hold two starting points, got {len(inits)}")
        self.model, self.inits, self.names = model, dict(inits), list(inits)
        self.loss_fn = make_loss(model, "mse")
        generator = torch.Generator().manual_seed(seed)
        x = SinusoidTasks().sample_x(generator, (shots,))
        self.support = Examples(x, sinusoid(x, amplitude, phase))
        self.inner_steps, self.grid, self.reference_lr = inner_steps, grid, inner_lr
        self.slices = {
            name: self._slice(name, other, inner_lr)
            for name, other in zip(self.names, self.names[::-1], strict=True)
        }
        self.base = {name: sl.window for name, sl in self.slices.items()}
        self.sliders = {"inner_lr": slider("inner_lr", inner_lr, -3.0, 0.5, 0.1, kind="log")}
        self.readout, self.status = readout(), Status()
        self.figure = self._figure()
        self.paths: dict[str, Tensor] = {}
        self.trajectories: dict[str, Trajectory] = {}
        callback = guarded(self.status, self.update)
        self.sliders["inner_lr"].observe(callback, names="value")
        self.widget = widgets.VBox(
            [*self.sliders.values(), self.readout, self.status.widget, self.figure],
            layout=widgets.Layout(width="1100px"),
        )
        self.widget.add_class(MAIN_CLASS)
        callback()

    def _slice(self, name: str, other: str, inner_lr: float) -> Slice:
        init = self.inits[name]
        phi = adapt(self.loss_fn, init, self.support, SGD(inner_lr), self.inner_steps)
        plane = plane_through(init, phi, self.inits[other])
        length = max(plane.project(phi)[0], 1e-3)
        xlabel = f"d1: towards {name} adapted ({self.inner_steps} steps, inner_lr {inner_lr:g})"
        ylabel = f"d2: towards the {other} init, made orthogonal to d1"
        sl = Slice(plane, torch.zeros(0), torch.zeros(0), torch.zeros(0), xlabel, ylabel)
        return self._regrid(sl, (-0.6 * length, 1.6 * length, -1.1 * length, 1.1 * length))

    def _regrid(self, sl: Slice, window: tuple[float, float, float, float]) -> Slice:
        """The slice with its grid on ``window`` and the support loss evaluated there."""
        a = torch.linspace(window[0], window[1], self.grid)
        b = torch.linspace(window[2], window[3], self.grid)
        z = surface(self.loss_fn, sl.plane, self.support, a, b)
        return Slice(sl.plane, a, b, z, sl.xlabel, sl.ylabel)

    def _fit_windows(self) -> None:
        """Grow each window when its path leaves it, shrink it when the path fills less than
        ``KEEP`` of its side; otherwise keep it, so that most slider moves redraw the path on
        the surface already computed (a regrid is ``grid**2`` forward passes per panel)."""
        for name, path in self.paths.items():
            shown = visible(path, self.trajectories[name].losses)
            needed = window_around(shown, self.base[name])
            sl = self.slices[name]
            have = sl.window
            inside = have[0] <= needed[0] and needed[1] <= have[1]
            inside = inside and have[2] <= needed[2] and needed[3] <= have[3]
            if inside and needed[1] - needed[0] >= KEEP * (have[1] - have[0]):
                continue
            self.slices[name] = self._regrid(sl, needed)

    def _figure(self) -> go.FigureWidget:
        titles = [f"around the {n} init" for n in self.names] + ["support loss per inner step"]
        fig = make_subplots(rows=1, cols=3, subplot_titles=titles, horizontal_spacing=0.13)
        # each colour bar just right of its panel (paper coordinates)
        bar_x = [fig.layout.xaxis.domain[1] + 0.005, fig.layout.xaxis2.domain[1] + 0.005]
        for col, (name, sl) in enumerate(self.slices.items(), start=1):
            z = log_loss(sl.z)
            ticks = loss_ticks(float(z.min()), float(z.max()))
            fig.add_trace(
                go.Contour(x=sl.a.tolist(), y=sl.b.tolist(), z=z.tolist(),
                           colorscale="Viridis", ncontours=25, name=f"support loss, {name} plane",
                           colorbar=dict(x=bar_x[col - 1], len=0.85, thickness=12,
                                         title=dict(text="loss", side="right"), tickvals=ticks,
                                         ticktext=[loss_label(t) for t in ticks])), 1, col,
            )  # fmt: skip
            fig.update_xaxes(title_text=sl.xlabel, title_font_size=10, row=1, col=col)
            fig.update_yaxes(title_text=sl.ylabel, title_font_size=10, row=1, col=col)
        for name in self.names:
            style = dict(line=dict(color=color(name)), marker=dict(size=5))
            fig.add_trace(go.Scatter(name=f"{name} path (projected)", mode="lines+markers",
                                     **style), 1, self.names.index(name) + 1)  # fmt: skip
        for name in self.names:
            fig.add_trace(
                go.Scatter(name=f"{name} loss per step", mode="lines+markers",
                           line=dict(color=color(name), dash="dot")), 1, 3,
            )  # fmt: skip
        fig.update_yaxes(type="log", dtick=1, exponentformat="power", row=1, col=3,
                         title_text="support loss (log scale)")  # fmt: skip
        fig.update_xaxes(title_text="inner step", row=1, col=3)
        fig.update_layout(
            width=1080, height=500, margin=dict(t=40, l=60, r=10, b=120),
            legend=dict(orientation="h", y=-0.3, x=0.0),
        )  # fmt: skip
        return go.FigureWidget(fig)

    def run(self) -> tuple[dict[str, Trajectory], list[str]]:
        """Adapt both inits at the current ``inner_lr``; returns trajectories and errors."""
        rule, trajectories, errors = SGD(self.sliders["inner_lr"].value), {}, []
        for name, init in self.inits.items():
            trajectories[name] = trajectory = Trajectory()
            try:
                adapt(self.loss_fn, init, self.support, rule, self.inner_steps,
                      record=trajectory.record, check_finite=True)  # fmt: skip
            except DivergenceError as err:
                errors.append(f"from the {name} init: {err}")
        return trajectories, errors

    def update(self) -> None:
        """Recompute both paths, fit the windows and redraw (the slider callback)."""
        self.trajectories, errors = self.run()
        self.paths = {
            n: self.slices[n].plane.project_path(t.fast) for n, t in self.trajectories.items()
        }
        self._fit_windows()
        fig, k = self.figure, len(self.names)
        with fig.batch_update():
            for i, name in enumerate(self.names):
                sl = self.slices[name]
                z = log_loss(sl.z)
                ticks = loss_ticks(float(z.min()), float(z.max()))
                contour = fig.data[i]
                contour.x, contour.y, contour.z = sl.a.tolist(), sl.b.tolist(), z.tolist()
                contour.colorbar.tickvals = ticks
                contour.colorbar.ticktext = [loss_label(t) for t in ticks]
                a_lo, a_hi, b_lo, b_hi = sl.window
                fig.layout[f"xaxis{'' if i == 0 else i + 1}"].range = [a_lo, a_hi]
                fig.layout[f"yaxis{'' if i == 0 else i + 1}"].range = [b_lo, b_hi]
                path, losses = self.paths[name], self.trajectories[name].losses
                fig.data[k + i].x, fig.data[k + i].y = path[:, 0].tolist(), path[:, 1].tolist()
                fig.data[2 * k + i].x, fig.data[2 * k + i].y = list(range(len(losses))), losses
        self.readout.value = "support loss after " + self.summary()
        self.status.error("; ".join(errors)) if errors else self.status.ok()

    def summary(self) -> str:
        """``"10 steps: MAML init 0.000 · pretrained init 0.218"`` (or "diverged")."""
        parts = []
        for name, t in self.trajectories.items():
            done = len(t.losses) - 1 == self.inner_steps
            parts.append(f"{name} init {t.losses[-1]:.3g}" if done else f"{name} init diverged")
        return f"{self.inner_steps} steps: " + " · ".join(parts)

    def static_figure(self) -> Figure:
        """Matplotlib version of the current state, every panel of the widget (the fallback
        where widgets do not render): both planes with their paths, and the loss per step."""
        k = len(self.names)
        fig, axes = plt.subplots(1, k + 1, figsize=(6.2 * k + 4.8, 5.0),
                                 gridspec_kw=dict(width_ratios=[1.25] * k + [1]))  # fmt: skip
        lr = self.sliders["inner_lr"].value
        for ax, name in zip(axes[:k], self.names, strict=True):
            sl = self.slices[name]
            left = len(visible(self.paths[name], self.trajectories[name].losses))
            title = f"around the {name} init, inner_lr {lr:.3g}"
            if left < len(self.paths[name]):
                title += f"\n(diverging: the path leaves the window after step {left - 1})"
            mpl_contour(sl.a, sl.b, sl.z, {name: self.paths[name]}, title, ax=ax,
                        xlabel=sl.xlabel, ylabel=sl.ylabel)  # fmt: skip
        losses = {n: t.losses for n, t in self.trajectories.items()}
        mpl_losses(losses, ax=axes[-1], title=f"support loss per inner step, inner_lr {lr:.3g}")
        fig.suptitle("Support loss after " + self.summary(), fontsize=10)
        fig.tight_layout()
        return fig
