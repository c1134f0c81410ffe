"""Chapter 04: loss surfaces on a plane of parameter space, with inner-loop paths drawn on them.

Pure plotting functions (:func:`mpl_contour`, :func:`plotly_surface`) and the chapter's main
widget, :class:`LandscapeExplorer`. The plane goes through the meta-learned init (origin), the
weights adapted from it at a reference ``inner_lr``, and the pretrained init
(:func:`mamlviz.course.landscape.plane_through`); the surface is the task's support loss on it,
so the inner loop runs downhill on exactly what is drawn (up to the part of the path off the plane).
The first slider, ``inner_lr``, redraws both paths and the printed losses without recomputing
the surface: small steps converge, larger ones overshoot and zigzag, too large ones diverge
(reported in words; the widget keeps working).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import ipywidgets as widgets
import matplotlib.pyplot as plt
import plotly.graph_objects as go
import torch
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from plotly.subplots import make_subplots
from torch import Tensor, nn

from mamlviz.core.episode import Examples
from mamlviz.core.functional import Params, make_loss
from mamlviz.core.inner import Trajectory, adapt
from mamlviz.core.rules import SGD
from mamlviz.course.landscape import Plane, plane_through, surface
from mamlviz.course.viz.common import MAIN_CLASS, Status, color, guarded, readout, slider
from mamlviz.errors import DivergenceError
from mamlviz.tasks.sinusoid import SinusoidTasks, sinusoid

Paths = Mapping[str, Tensor]  # name -> [steps + 1, 2] plane coordinates


def log_loss(z: Tensor) -> Tensor:
    """log10 of a loss grid, with non-finite or huge values clipped (for colour scales)."""
    return torch.log10(torch.nan_to_num(z, nan=1e6, posinf=1e6).clamp(1e-4, 1e6))


def mpl_contour(
    a: Tensor,
    b: Tensor,
    z: Tensor,
    paths: Paths,
    title: str = "",
    ax: Axes | None = None,
    levels: int | list[float] = 30,
) -> Figure:
    """Filled contours of log10 loss with each path (start marked by a square).

    Pass the same ``levels`` (log10 values) to several plots to share one colour scale.
    """
    if ax is None:
        _, ax = plt.subplots(figsize=(6, 4.6))
    fig = ax.figure
    cs = ax.contourf(a.tolist(), b.tolist(), log_loss(z).tolist(), levels=levels, cmap="viridis")
    fig.colorbar(cs, ax=ax, label="log10 loss")
    for name, p in paths.items():
        ax.plot(p[:, 0].tolist(), p[:, 1].tolist(), "o-", color=color(name), ms=3, label=name)
        ax.plot(float(p[0, 0]), float(p[0, 1]), "s", color=color(name), ms=8, mec="white")
    ax.set(xlim=(float(a[0]), float(a[-1])), ylim=(float(b[0]), float(b[-1])), title=title)
    ax.set(xlabel="direction 1", ylabel="direction 2")
    if paths:
        ax.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    return fig


def mpl_surface(a: Tensor, b: Tensor, z: Tensor, paths: Paths, losses: Paths) -> Figure:
    """Static 3-D surface of log10 loss with each path lifted to its recorded loss."""
    fig = plt.figure(figsize=(7, 5))
    ax = fig.add_subplot(projection="3d")
    bb, aa = torch.meshgrid(b, a, indexing="ij")
    ax.plot_surface(aa.numpy(), bb.numpy(), log_loss(z).numpy(), cmap="viridis", alpha=0.8)
    for name, p in paths.items():
        zs = log_loss(losses[name]).tolist()
        ax.plot(p[:, 0].tolist(), p[:, 1].tolist(), zs, "o-", color=color(name), ms=3, label=name)
    ax.set(xlabel="direction 1", ylabel="direction 2", zlabel="log10 loss")
    ax.legend(fontsize=8)
    return fig


def plotly_surface(a: Tensor, b: Tensor, z: Tensor, paths: Paths, losses: Paths) -> go.Figure:
    """3-D surface of log10 loss with each path lifted to its recorded loss."""
    fig = go.Figure(
        go.Surface(x=a.tolist(), y=b.tolist(), z=log_loss(z).tolist(), colorscale="Viridis",
                   opacity=0.9, showscale=False)
    )  # fmt: skip
    for name, p in paths.items():
        zs = log_loss(losses[name]).tolist()
        fig.add_trace(
            go.Scatter3d(x=p[:, 0].tolist(), y=p[:, 1].tolist(), z=zs, name=name,
                         mode="lines+markers", line=dict(color=color(name), width=6),
                         marker=dict(size=3))
        )  # fmt: skip
    fig.update_layout(
        width=700, height=560, margin=dict(l=0, r=0, t=30, b=0),
        scene=dict(xaxis_title="direction 1", yaxis_title="direction 2", zaxis_title="log10 loss"),
    )  # fmt: skip
    return fig


@dataclass
class Slice:
    """A plane around one init, zoomed on its adaptation path, and the loss grid on it."""

    plane: Plane
    a: Tensor
    b: Tensor
    z: Tensor


class LandscapeExplorer:
    """Support-loss surface of one task around each of two inits, with their inner-loop paths.

    Each init gets its own plane: through the init (origin), the weights adapted from it at the
    starting ``inner_lr``, and the other init, zoomed (same scale on both axes) on the path.
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
        self.inner_steps = inner_steps
        self.slices = {
            name: self._slice(name, other, inner_lr, grid)
            for name, other in zip(self.names, self.names[::-1], strict=True)
        }
        self.sliders = {"inner_lr": slider("inner_lr", inner_lr, -3.0, 0.5, 0.1, kind="log")}
        self.readout, self.status = readout(), Status()
        self.figure = self._figure()
        self.paths: dict[str, Tensor] = {}
        self.trajectories: dict[str, Trajectory] = {}
        callback = guarded(self.status, self.update)
        self.sliders["inner_lr"].observe(callback, names="value")
        self.widget = widgets.VBox(
            [*self.sliders.values(), self.readout, self.status.widget, self.figure],
            layout=widgets.Layout(width="1000px"),
        )
        self.widget.add_class(MAIN_CLASS)
        callback()

    def _slice(self, name: str, other: str, inner_lr: float, grid: int) -> Slice:
        init = self.inits[name]
        phi = adapt(self.loss_fn, init, self.support, SGD(inner_lr), self.inner_steps)
        plane = plane_through(init, phi, self.inits[other])
        length = max(plane.project(phi)[0], 1e-3)
        a = torch.linspace(-0.6 * length, 1.6 * length, grid)
        b = torch.linspace(-1.1 * length, 1.1 * length, grid)
        return Slice(plane, a, b, surface(self.loss_fn, plane, self.support, a, b))

    def _figure(self) -> go.FigureWidget:
        titles = [f"around the {n} init" for n in self.names] + ["support loss per inner step"]
        fig = make_subplots(rows=1, cols=3, subplot_titles=titles, horizontal_spacing=0.07)
        for col, (name, sl) in enumerate(self.slices.items(), start=1):
            fig.add_trace(
                go.Contour(x=sl.a.tolist(), y=sl.b.tolist(), z=log_loss(sl.z).tolist(),
                           colorscale="Viridis", ncontours=25, showscale=False,
                           name=f"log10 loss, {name} plane"), 1, col,
            )  # fmt: skip
            fig.update_xaxes(range=[float(sl.a[0]), float(sl.a[-1])], row=1, col=col)
            fig.update_yaxes(range=[float(sl.b[0]), float(sl.b[-1])], row=1, col=col)
        for col, name in enumerate(self.names, start=1):
            style = dict(line=dict(color=color(name)), marker=dict(size=5))
            fig.add_trace(go.Scatter(name=f"{name} path", mode="lines+markers", **style), 1, col)
        for name in self.names:
            fig.add_trace(
                go.Scatter(name=name, mode="lines+markers", line=dict(color=color(name)),
                           showlegend=False), 1, 3,
            )  # fmt: skip
        fig.update_yaxes(type="log", row=1, col=3)
        fig.update_xaxes(title_text="inner step", row=1, col=3)
        fig.update_layout(width=980, height=380, margin=dict(t=40, l=40, r=10, b=40))
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
        """Recompute both paths and redraw (the slider callback)."""
        self.trajectories, errors = self.run()
        self.paths = {
            n: self.slices[n].plane.project_path(t.fast) for n, t in self.trajectories.items()
        }
        fig, k = self.figure, len(self.names)
        with fig.batch_update():
            for i, name in enumerate(self.names):
                path, losses = self.paths[name], self.trajectories[name].losses
                fig.data[k + i].x, fig.data[k + i].y = path[:, 0].tolist(), path[:, 1].tolist()
                fig.data[2 * k + i].x, fig.data[2 * k + i].y = list(range(len(losses))), losses
        parts = []
        for name, t in self.trajectories.items():
            done = len(t.losses) - 1 == self.inner_steps
            parts.append(f"{name} init {t.losses[-1]:.3f}" if done else f"{name} init diverged")
        steps = self.inner_steps
        self.readout.value = f"support loss after {steps} steps: " + " · ".join(parts)
        self.status.error("; ".join(errors)) if errors else self.status.ok()

    def static_figure(self) -> Figure:
        """Matplotlib version of the current state (the fallback where widgets do not render)."""
        fig, axes = plt.subplots(1, len(self.names), figsize=(6 * len(self.names), 4.4))
        lr = self.sliders["inner_lr"].value
        for ax, name in zip(axes, self.names, strict=True):
            sl = self.slices[name]
            title = f"around the {name} init, inner_lr {lr:.3g}"
            mpl_contour(sl.a, sl.b, sl.z, {name: self.paths[name]}, title, ax=ax)
        return fig
