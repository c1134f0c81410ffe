r"""Chapter 03's figures and widget: how far First-Order MAML is from the exact meta-gradient.

The main widget has an ``inner_lr`` slider (log scale) and a task-seed slider. The figure shows
the relative error ||g_FO - g|| / ||g|| and 1 - cos(g_FO, g) against \alpha on log axes, with a
marker at the slider's \alpha; the status line prints both numbers. Each move costs two
gradients and one Hessian-vector product on the sinusoid MLP (a few milliseconds).
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from pathlib import Path

import ipywidgets as widgets
import matplotlib.pyplot as plt
import plotly.graph_objects as go
import torch
from matplotlib.figure import Figure

from mamlviz.core.episode import Episode
from mamlviz.core.functional import LossFn, Params, make_loss, params_of
from mamlviz.course.derivation import (
    first_order_error,
    first_order_errors,
    kink_free_inner_lr,
    taylor_objective,
)
from mamlviz.course.viz.common import MAIN_CLASS, Status, guarded, readout, slider
from mamlviz.models import sinusoid_mlp
from mamlviz.tasks.sinusoid import SinusoidTasks

ALPHAS = torch.logspace(-4, -0.5, 22, dtype=torch.float64)
TAYLOR_ALPHAS = torch.logspace(-6, -1, 21, dtype=torch.float64)  # ReLU kinks show from ~1e-4


@dataclass
class SinusoidNet:
    """The sinusoid MLP in float64 with its meta-learned init ``theta`` and its MSE loss."""

    model: torch.nn.Module
    loss_fn: LossFn
    theta: Params
    source: str  # checkpoint name, or "fresh init (seed 0)" when no checkpoint is shipped


def load_sinusoid(name: str = "sinusoid-maml") -> SinusoidNet:
    """The shipped checkpoint ``name`` (or a checkpoint file) in float64, else a fresh MLP."""
    try:
        from mamlviz.training import hub

        shipped = name in hub.available() or Path(name).is_file()
    except ImportError:
        shipped = False
    if shipped:
        ckpt = hub.load(name)
        model = copy.deepcopy(ckpt.model).double()
        theta = {n: ckpt.meta[n].detach().double().clone() for n, _ in model.named_parameters()}
        source = name
    else:
        model, source = sinusoid_mlp(0, torch.float64), "fresh init (seed 0), no checkpoint shipped"
        theta = params_of(model)
    return SinusoidNet(model, make_loss(model, "mse"), theta, source)


def sinusoid_task(seed: int, shots: int = 10, query_shots: int = 10) -> Episode:
    """One sinusoid task (float64) with ``shots`` support and ``query_shots`` query points."""
    generator = torch.Generator().manual_seed(seed)
    return SinusoidTasks().sample(generator, shots, query_shots, 1, torch.float64).task(0)


def status_html(inner_lr: float, error: float, cos: float) -> str:
    """The printed numbers under the figure."""
    return (
        f"<b>inner_lr = {inner_lr:.3g}</b>: FOMAML vs exact meta-gradient, "
        f"relative error = {error:.4f}, cosine = {cos:.5f}"
    )


def first_order_figure(net: SinusoidNet, episode: Episode, inner_lr: float) -> go.FigureWidget:
    """Relative error and 1 - cosine of FOMAML against \u03b1 (log-log), marker at ``inner_lr``."""
    errors, cosines = first_order_errors(net.loss_fn, net.theta, episode, ALPHAS)
    err, cos = first_order_error(net.loss_fn, net.theta, episode, inner_lr)
    fig = go.FigureWidget()
    a = ALPHAS.tolist()
    fig.add_scatter(x=a, y=errors.tolist(), name="relative error", mode="lines")
    fig.add_scatter(x=a, y=(1 - cosines).clamp_min(1e-16).tolist(), name="1 - cosine", mode="lines")
    fig.add_scatter(x=[inner_lr, inner_lr], y=[err, max(1 - cos, 1e-16)], mode="markers",
                    marker=dict(size=12, color="black"), name="slider")  # fmt: skip
    fig.update_layout(
        width=640, height=380, margin=dict(l=60, r=20, t=40, b=50),
        title="First-Order MAML vs the exact meta-gradient",
        xaxis=dict(type="log", title="inner_lr (\u03b1)"), yaxis=dict(type="log", title="error"),
    )  # fmt: skip
    return fig


def first_order_widget(
    net: SinusoidNet, seed: int = 0, inner_lr: float = 0.01
) -> tuple[widgets.VBox, dict]:
    """The chapter's main widget. Returns ``(box, parts)``; ``parts`` names the sub-widgets."""
    # A move costs ~3 ms: the inner_lr slider updates continuously, the task seed on release.
    alpha = slider("inner_lr", inner_lr, -4, -0.5, 0.1, kind="log", continuous_update=True)
    task = slider("task seed", seed, 0, 20, 1, kind="int")
    state = {"episode": sinusoid_task(seed)}
    fig = first_order_figure(net, state["episode"], inner_lr)
    numbers, errors = readout(), Status()

    def on_alpha(_: object = None) -> None:
        err, cos = first_order_error(net.loss_fn, net.theta, state["episode"], alpha.value)
        with fig.batch_update():
            fig.data[2].x = [alpha.value, alpha.value]
            fig.data[2].y = [err, max(1 - cos, 1e-16)]
        numbers.value = status_html(alpha.value, err, cos)
        errors.ok()

    def on_task(_: object = None) -> None:
        state["episode"] = sinusoid_task(task.value)
        errors, cosines = first_order_errors(net.loss_fn, net.theta, state["episode"], ALPHAS)
        with fig.batch_update():
            fig.data[0].y = errors.tolist()
            fig.data[1].y = (1 - cosines).clamp_min(1e-16).tolist()
        on_alpha()

    alpha.observe(guarded(errors, on_alpha), names="value")
    task.observe(guarded(errors, on_task), names="value")
    on_alpha()
    box = widgets.VBox([widgets.HBox([alpha, task]), fig, numbers, errors.widget])
    box.add_class(MAIN_CLASS)
    return box, {"inner_lr": alpha, "task": task, "figure": fig, "status": numbers}


def plot_first_order_error(net: SinusoidNet, episode: Episode, inner_lr: float = 0.01) -> Figure:
    """Static matplotlib version of :func:`first_order_figure`."""
    errors, cosines = first_order_errors(net.loss_fn, net.theta, episode, ALPHAS)
    err, cos = first_order_error(net.loss_fn, net.theta, episode, inner_lr)
    fig, ax = plt.subplots(figsize=(6, 3.6))
    ax.loglog(ALPHAS, errors, label="relative error")
    ax.loglog(ALPHAS, (1 - cosines).clamp_min(1e-16), label="1 - cosine")
    ax.plot([inner_lr, inner_lr], [err, max(1 - cos, 1e-16)], "ko", label=f"inner_lr={inner_lr}")
    ax.set(xlabel="inner_lr (\u03b1)", ylabel="error", title="FOMAML vs exact meta-gradient")
    ax.legend()
    fig.tight_layout()
    return fig


def plot_taylor_error(net: SinusoidNet, episode: Episode) -> Figure:
    """|L_q(\u03b8') - first-order Taylor| against \u03b1, with an \u03b1^2 reference line."""
    alphas = TAYLOR_ALPHAS
    rows = [taylor_objective(net.loss_fn, net.theta, episode, float(a)) for a in alphas]
    fig, ax = plt.subplots(figsize=(6, 3.6))
    ax.loglog(alphas, [r.error for r in rows], label="Taylor at \u03b8 (grad L_q(\u03b8))")
    ax.loglog(alphas, [r.error_at_prime for r in rows], "--", label="article's form (at \u03b8')")
    ref = rows[0].error * (alphas / alphas[0]) ** 2
    ax.loglog(alphas, ref, ":", color="gray", label="slope 2 (\u03b1\u00b2)")
    kink = kink_free_inner_lr(net.model, net.theta, episode, alphas.tolist())
    ax.axvline(kink, color="black", lw=0.8, label="first ReLU switches after this")
    ax.set(xlabel="inner_lr (\u03b1)", ylabel="|error| of the objective")
    ax.legend()
    fig.tight_layout()
    return fig
