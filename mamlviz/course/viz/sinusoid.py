"""Plotting functions for sinusoid tasks: matplotlib (static) and plotly (interactive).

Pure functions: tensors in, figures out. ``curves`` maps a starting point's name (``"MAML"``,
``"pretrained"``, ...) to its fitted curves ``[inner_steps + 1, len(x)]``, row ``k`` being the
model at the fast weights after ``k`` inner steps (:func:`predictions` of a ``Trajectory``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import matplotlib.pyplot as plt
import plotly.graph_objects as go
import torch
from matplotlib.figure import Figure
from plotly.subplots import make_subplots
from torch import Tensor, nn

from mamlviz.core.episode import Examples
from mamlviz.core.functional import Params, call
from mamlviz.course.viz.common import TRUTH_COLOR, color

Curves = Mapping[str, Tensor]


def predictions(model: nn.Module, path: Sequence[Params], x: Tensor) -> Tensor:
    """The model's outputs on ``x`` ``[n, 1]`` at each fast weights of ``path``: ``[len, n]``."""
    with torch.no_grad():
        return torch.stack([call(model, p, x).reshape(-1) for p in path])


def _np(t: Tensor) -> list[float]:
    return t.detach().reshape(-1).tolist()


def mpl_task_family(
    x: Tensor, amplitudes: Sequence[float], phases: Sequence[float], title: str = ""
) -> Figure:
    """Several tasks of the family, y = A sin(x - phase), one line each."""
    fig, ax = plt.subplots(figsize=(7, 3.2))
    for a, p in zip(amplitudes, phases, strict=True):
        ax.plot(_np(x), _np(a * torch.sin(x - p)), lw=1.2, alpha=0.8)
    ax.set(xlabel="x", ylabel="y", title=title or f"{len(amplitudes)} tasks from p(T)")
    fig.tight_layout()
    return fig


def mpl_fits(
    x: Tensor, truth: Tensor, support: Examples, fits: Mapping[str, Tensor], title: str = ""
) -> Figure:
    """One task: ground truth, support points and one fitted curve per starting point."""
    fig, ax = plt.subplots(figsize=(7, 3.4))
    ax.plot(_np(x), _np(truth), color=TRUTH_COLOR, lw=2.5, alpha=0.6, label="ground truth")
    for name, y in fits.items():
        ax.plot(_np(x), _np(y), color=color(name), lw=1.8, label=name)
    ax.scatter(_np(support.x), _np(support.y), color="k", zorder=5, label="support")
    ax.set(xlabel="x", ylabel="y", title=title)
    ax.legend(fontsize=8, loc="upper right")
    fig.tight_layout()
    return fig


def mpl_adaptation(
    x: Tensor,
    truth: Tensor,
    support: Examples,
    curves: Curves,
    steps: Sequence[int],
    plane: tuple[Tensor, Tensor, Tensor, Curves] | None = None,
) -> Figure:
    """One panel per starting point: the fitted curve after each of ``steps`` inner steps.

    ``plane = (a, b, z, paths)`` adds the static twin of the animation's parameter-space panel:
    the support loss ``z [len(b), len(a)]`` on a plane (log colour scale) and each path
    ``[inner_steps + 1, 2]``, with the points after ``steps`` marked.
    """
    panels = len(curves) + (plane is not None)
    fig, axes = plt.subplots(1, panels, figsize=(4.2 * panels, 3.4), squeeze=False)
    for ax, (name, c) in zip(axes[0], curves.items(), strict=False):
        ax.plot(_np(x), _np(truth), color=TRUTH_COLOR, lw=2.5, alpha=0.6, label="truth")
        shown = [k for k in steps if k < len(c)]
        for i, k in enumerate(shown):
            alpha = 0.25 + 0.75 * (i + 1) / len(shown)
            ax.plot(_np(x), _np(c[k]), color=color(name), alpha=alpha, label=f"{k} steps")
        ax.scatter(_np(support.x), _np(support.y), color="k", zorder=5, s=18, label="support")
        ax.set(title=f"from the {name} init", xlabel="x")
        ax.legend(fontsize=7, loc="upper right")
    axes[0][0].set_ylabel("y")
    if plane is not None:
        _mpl_plane_panel(axes[0][-1], fig, plane, steps)
    fig.tight_layout()
    return fig


def _mpl_plane_panel(
    ax: plt.Axes, fig: Figure, plane: tuple[Tensor, Tensor, Tensor, Curves], steps: Sequence[int]
) -> None:
    """Parameter space: log10 support loss on the plane, each path with its ``steps`` marked."""
    a, b, z, paths = plane
    z_log = torch.log10(torch.nan_to_num(z, nan=1e6, posinf=1e6).clamp(1e-4, 1e6))
    image = ax.contourf(_np(a), _np(b), z_log.numpy(), levels=20, cmap="viridis")
    fig.colorbar(image, ax=ax, shrink=0.85, label="log10 support loss")
    for name, p in paths.items():
        ax.plot(_np(p[:, 0]), _np(p[:, 1]), "-", color=color(name), lw=1.5, label=f"{name} path")
        shown = [k for k in steps if k < len(p)]
        ax.scatter(_np(p[shown, 0]), _np(p[shown, 1]), color=color(name), edgecolor="white",
                   zorder=5, s=30, label=f"after {', '.join(map(str, shown))} steps")  # fmt: skip
    ax.set(title="parameter space (a plane)", xlabel="a", ylabel="b")
    ax.legend(fontsize=7, loc="upper right")


def mpl_fits_and_losses(
    x: Tensor,
    truth: Tensor,
    support: Examples,
    curves: Curves,
    losses: Mapping[str, Sequence[float]],
    title: str = "",
) -> Figure:
    """Static twin of :func:`fit_figure`'s two panels: left, ground truth, support points and
    per starting point its curve before (dotted) and after (solid) the inner loop; right, the
    support loss after each inner step (log scale)."""
    fig, (ax, ax_loss) = plt.subplots(
        1, 2, figsize=(10.5, 3.6), gridspec_kw=dict(width_ratios=[0.62, 0.38])
    )
    ax.plot(_np(x), _np(truth), color=TRUTH_COLOR, lw=2.5, alpha=0.6, label="ground truth")
    for name, c in curves.items():
        ax.plot(_np(x), _np(c[0]), color=color(name), lw=1, ls=":", label=f"{name} (0 steps)")
        ax.plot(_np(x), _np(c[-1]), color=color(name), lw=1.8, label=name)
    ax.scatter(_np(support.x), _np(support.y), color="k", zorder=5, label="support")
    ax.set(xlabel="x", ylabel="y", title=title)
    ax.legend(fontsize=7, loc="upper right", ncol=2)
    for name, values in losses.items():
        ax_loss.plot(range(len(values)), list(values), "o-", color=color(name), ms=3, label=name)
    ax_loss.set(xlabel="inner step", ylabel="support MSE", yscale="log",
                title="support loss per inner step")  # fmt: skip
    ax_loss.legend(fontsize=7)
    fig.tight_layout()
    return fig


def mpl_loss_curves(losses: Mapping[str, Sequence[float]], ylabel: str = "MSE") -> Figure:
    """Loss against inner step for each starting point (log scale)."""
    fig, ax = plt.subplots(figsize=(5, 3.2))
    for name, values in losses.items():
        ax.plot(range(len(values)), list(values), "o-", color=color(name), label=name, ms=3)
    ax.set(xlabel="inner step", ylabel=ylabel, yscale="log")
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def _play_controls(steps: int) -> tuple[dict, dict]:
    """A play/pause button and a step slider for frames named "0", "1", ..."""
    play = dict(
        type="buttons", x=0.0, y=-0.2, xanchor="left",
        buttons=[
            dict(label="play", method="animate",
                 args=[None, dict(frame=dict(duration=500, redraw=True), fromcurrent=True)]),
            dict(label="pause", method="animate",
                 args=[[None], dict(frame=dict(duration=0), mode="immediate")]),
        ],
    )  # fmt: skip
    slider = dict(
        x=0.12, len=0.88, y=-0.12, currentvalue=dict(prefix="inner step "),
        steps=[dict(method="animate", label=str(k), args=[[str(k)], dict(mode="immediate")])
               for k in range(steps)],
    )  # fmt: skip
    return play, slider


def plotly_adaptation_animation(
    x: Tensor,
    truth: Tensor,
    support: Examples,
    curves: Curves,
    title: str = "",
    plane: tuple[Tensor, Tensor, Tensor, Curves] | None = None,
) -> go.Figure:
    """Fitted curves after each inner step as animation frames, with a play button.

    ``plane = (a, b, z, paths)`` adds a second panel, parameter space: the loss ``z`` on a
    plane (e.g. from :func:`mamlviz.course.landscape.surface`) with each path
    ``[steps + 1, 2]`` drawn up to the current step.
    """
    steps = min(len(c) for c in curves.values())
    xs, cols = _np(x), 1 if plane is None else 2
    if plane is not None:
        a, b, z, paths = plane
        z_log = torch.log10(torch.nan_to_num(z, nan=1e6, posinf=1e6).clamp(1e-4, 1e6))
        contour = go.Contour(
            x=_np(a),
            y=_np(b),
            z=z_log.tolist(),
            colorscale="Viridis",
            showscale=False,
            name="log10 support loss",
            xaxis="x2",
            yaxis="y2",
        )

    def traces(k: int) -> list[go.Scatter | go.Contour]:
        # Every frame carries every trace: frames holding a subset of traces make plotly.js
        # drop the contour of the second panel when the animation plays.
        data = [
            go.Scatter(x=xs, y=_np(truth), name="ground truth",
                       line=dict(color=TRUTH_COLOR, width=4)),
            go.Scatter(x=_np(support.x), y=_np(support.y), mode="markers", name="support",
                       marker=dict(color="black", size=8)),
        ]  # fmt: skip
        data += [
            go.Scatter(x=xs, y=_np(c[k]), name=name, line=dict(color=color(name)))
            for name, c in curves.items()
        ]
        if plane is not None:
            data.append(contour)
            data += [
                go.Scatter(x=_np(p[: k + 1, 0]), y=_np(p[: k + 1, 1]), mode="lines+markers",
                           name=f"{name} path", line=dict(color=color(name)),
                           xaxis="x2", yaxis="y2")
                for name, p in paths.items()
            ]  # fmt: skip
        return data

    titles = ("function space", "parameter space (a plane)")[:cols]
    fig = make_subplots(rows=1, cols=cols, subplot_titles=titles)
    fig.add_traces(traces(0))
    fig.frames = [
        go.Frame(name=str(k), data=traces(k),
                 layout=go.Layout(title_text=f"{title} after {k} inner steps"))
        for k in range(steps)
    ]  # fmt: skip
    if plane is not None:
        fig.update_xaxes(range=[float(a[0]), float(a[-1])], row=1, col=2)
        fig.update_yaxes(range=[float(b[0]), float(b[-1])], row=1, col=2)
    y_all = torch.cat([truth.reshape(-1), *[c.reshape(-1) for c in curves.values()]])
    lo, hi = float(y_all.min()), float(y_all.max())
    pad = 0.1 * (hi - lo + 1e-6)
    fig.update_yaxes(range=[lo - pad, hi + pad], row=1, col=1)
    play, slider = _play_controls(steps)
    fig.update_layout(
        title_text=f"{title} after 0 inner steps", updatemenus=[play], sliders=[slider],
        height=460, width=560 * cols, margin=dict(b=120),
    )  # fmt: skip
    return fig


def fit_figure(names: Sequence[str], width: int = 900) -> go.FigureWidget:
    """The live figure of chapter 02: fits (left) and support loss per inner step (right).

    Traces (every one in the legend): 0 ground truth, 1 support points, then per name its start
    curve (dotted) and its adapted curve, then per name its support loss curve.
    :mod:`mamlviz.course.viz.adaptation` fills them.
    """
    fig = make_subplots(
        rows=1, cols=2, column_widths=[0.62, 0.38],
        subplot_titles=("function space", "support loss per inner step"),
    )  # fmt: skip
    fig.add_trace(go.Scatter(name="ground truth", line=dict(color=TRUTH_COLOR, width=4)), 1, 1)
    fig.add_trace(
        go.Scatter(name="support", mode="markers", marker=dict(color="black", size=8)), 1, 1
    )
    for name in names:
        style = dict(color=color(name), dash="dot", width=1)
        fig.add_trace(go.Scatter(name=f"{name} (0 steps)", line=style, legendgroup=name), 1, 1)
        line = dict(color=color(name), width=2.5)
        fig.add_trace(go.Scatter(name=name, line=line, legendgroup=name), 1, 1)
    for name in names:
        line = dict(color=color(name))
        fig.add_trace(
            go.Scatter(name=f"{name} support loss", mode="lines+markers", line=line,
                       legendgroup=name),
            1, 2,
        )  # fmt: skip
    fig.update_yaxes(type="log", row=1, col=2)
    fig.update_xaxes(title_text="x", row=1, col=1)
    fig.update_xaxes(title_text="inner step", row=1, col=2)
    fig.update_layout(width=width, height=400, margin=dict(t=40, l=40, r=10, b=40))
    return go.FigureWidget(fig)
