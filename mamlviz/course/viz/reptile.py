r"""Figures and widgets of chapter 05 (FOMAML and Reptile), each with a static fallback.

Reptile's, FOMAML's and MAML's expected updates against the Taylor predictions of
Nichol et al. (2018), and their live cost. The widget's sliders are ``inner_steps`` k (the
number of inner SGD steps, on k + 1 minibatches of one task) and ``inner_lr``. AvgGrad and
AvgGradInner are not orthogonal, so the bars show each expected gradient's least-squares
coefficients (a, b) in E[g] ~ a AvgGrad + b alpha AvgGradInner, exact (averaged over all
(k+1)! minibatch orders) beside the closed form of :func:`mamlviz.course.taylor.coefficients`.
"""

from __future__ import annotations

from collections.abc import Sequence

import ipywidgets as widgets
import matplotlib.pyplot as plt
import plotly.graph_objects as go
import torch
from matplotlib.figure import Figure

from mamlviz.core.episode import Examples
from mamlviz.core.functional import (
    LossFn,
    Params,
    make_loss,
    params_of,
    tree_dot,
    tree_norm,
    tree_sub,
)
from mamlviz.course import taylor
from mamlviz.course.viz.common import MAIN_CLASS, NAMES, slider
from mamlviz.measure import measure_in_fresh_process
from mamlviz.tasks.sinusoid import SinusoidTasks


def minibatches(seed: int, k: int, size: int = 10) -> list[Examples]:
    """``k`` minibatches of ``size`` points from one sinusoid task (float64)."""
    g = torch.Generator().manual_seed(seed)
    ep = SinusoidTasks().sample(g, k * size, 1, 1, torch.float64).task(0)
    x, y = ep.support
    return [Examples(x[i * size : (i + 1) * size], y[i * size : (i + 1) * size]) for i in range(k)]


def smooth_problem(seed: int = 0) -> tuple[LossFn, Params]:
    """The tanh net of :func:`mamlviz.course.taylor.tanh_mlp` with its MSE loss and parameters."""
    model = taylor.tanh_mlp(seed)
    return make_loss(model, "mse"), params_of(model)


def projections(g: Params, avg_grad: Params, avg_inner: Params) -> tuple[float, float]:
    """Components of ``g`` along unit AvgGrad and unit AvgGradInner.

    These are *not* the coefficients of g in the two directions, which are not orthogonal (see
    :func:`mamlviz.course.taylor.fit_coefficients`); kept to show the difference.
    """
    return (
        float(tree_dot(g, avg_grad) / tree_norm(avg_grad)),
        float(tree_dot(g, avg_inner) / tree_norm(avg_inner)),
    )


def taylor_summary(
    loss_fn: LossFn, theta: Params, batches: Sequence[Examples], inner_lr: float
) -> dict[str, dict[str, object]]:
    """Per algorithm, for k = ``len(batches) - 1`` inner steps: ``exact`` the least-squares
    coefficients (a, b) of the exact expected gradient, ``predicted`` the closed-form ones,
    ``error`` the prediction's relative error ||E[g] - prediction|| / ||E[g]||, and ``residual``
    the part of E[g] outside the plane of AvgGrad and AvgGradInner (relative)."""
    k = len(batches) - 1
    avg_grad, avg_inner = taylor.avg_terms(loss_fn, theta, batches)
    exact = taylor.expected_gradients(loss_fn, theta, batches, inner_lr)
    pred = taylor.predictions(avg_grad, avg_inner, k, inner_lr)
    out: dict[str, dict[str, object]] = {}
    for name, (a, b) in taylor.coefficients(k).items():
        fa, fb = taylor.fit_coefficients(exact[name], avg_grad, avg_inner, inner_lr)
        in_plane = {n: fa * avg_grad[n] + fb * inner_lr * avg_inner[n] for n in avg_grad}
        norm = tree_norm(exact[name])
        out[name] = {
            "exact": (fa, fb),
            "predicted": (a, b),
            "error": float(tree_norm(tree_sub(exact[name], pred[name])) / norm),
            "residual": float(tree_norm(tree_sub(exact[name], in_plane)) / norm),
        }
    return out


def summary_html(k: int, inner_lr: float, summary: dict) -> str:
    errors = ", ".join(f"{NAMES[n]} {summary[n]['error']:.2e}" for n in taylor.ALGORITHMS)
    return (
        f"<b>k = {k} inner steps, inner_lr = {inner_lr:.3g}</b>: "
        f"relative error of the prediction: {errors}"
    )


def _bars(summary: dict) -> list[dict]:
    out = []
    for kind, pattern in (("exact", ""), ("predicted", "/")):
        for axis, label, color in (
            (0, "a (AvgGrad)", "#1f77b4"),
            (1, "b (\u03b1 AvgGradInner)", "#ff7f0e"),
        ):
            out.append(
                dict(
                    x=[NAMES[n] for n in taylor.ALGORITHMS],
                    y=[summary[n][kind][axis] for n in taylor.ALGORITHMS],
                    name=f"{'closed form' if kind == 'predicted' else 'exact, fitted'}: {label}",
                    marker_pattern_shape=pattern,
                    marker_color=color,
                )
            )
    return out


def taylor_widget(seed: int = 0, k: int = 2, inner_lr: float = 0.01) -> tuple[widgets.VBox, dict]:
    """Chapter 05's main widget: fitted coefficients of the expected updates vs the Taylor
    prediction, for k inner steps (k + 1 minibatches) and inner_lr."""
    steps = slider("inner_steps k", k, 1, 3, 1, kind="int")
    alpha = slider("inner_lr", inner_lr, -4, -1, 0.25, kind="log")
    loss_fn, theta = smooth_problem(seed)
    summary = taylor_summary(loss_fn, theta, minibatches(seed, k + 1), inner_lr)
    fig = go.FigureWidget(layout=dict(barmode="group", width=680, height=380,
                          title="E[g] = a AvgGrad + b \u03b1 AvgGradInner: exact fit vs Taylor",
                          margin=dict(l=50, r=20, t=50, b=40)))  # fmt: skip
    for bar in _bars(summary):
        fig.add_bar(**bar)
    status = widgets.HTML(summary_html(k, inner_lr, summary))

    def update(_: object = None) -> None:
        s = taylor_summary(loss_fn, theta, minibatches(seed, steps.value + 1), alpha.value)
        with fig.batch_update():
            for trace, bar in zip(fig.data, _bars(s), strict=True):
                trace.y = bar["y"]
        status.value = summary_html(steps.value, alpha.value, s)

    steps.observe(update, names="value")
    alpha.observe(update, names="value")
    box = widgets.VBox([widgets.HBox([steps, alpha]), fig, status])
    box.add_class(MAIN_CLASS)
    return box, {"inner_steps": steps, "inner_lr": alpha, "figure": fig, "status": status}


def plot_taylor_summary(summary: dict) -> Figure:
    """Static version of :func:`taylor_widget`: the same grouped bars with matplotlib."""
    fig, ax = plt.subplots(figsize=(6.5, 3.4))
    bars = _bars(summary)
    width = 0.8 / len(bars)
    for i, bar in enumerate(bars):
        xs = [j + (i - (len(bars) - 1) / 2) * width for j in range(len(bar["x"]))]
        hatch = "//" if bar["marker_pattern_shape"] else None
        ax.bar(xs, bar["y"], width, label=bar["name"], hatch=hatch, color=bar["marker_color"])
    ax.set_xticks(range(len(bars[0]["x"])), bars[0]["x"])
    ax.axhline(0, color="black", lw=0.5)
    ax.set(ylabel="coefficient in E[g]")
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def plot_taylor_errors(errors: dict[str, list[float]], inner_lrs: Sequence[float]) -> Figure:
    """||E[g] - prediction|| against alpha per algorithm (log-log), with a slope-2 guide."""
    fig, ax = plt.subplots(figsize=(6, 3.6))
    for name, values in errors.items():
        ax.loglog(inner_lrs, values, "o-", label=NAMES[name])
    a = torch.tensor(list(inner_lrs), dtype=torch.float64)
    ref = errors["maml"][0] * (a / a[0]) ** 2
    ax.loglog(a, ref, ":", color="gray", label="slope 2 (\u03b1\u00b2)")
    ax.set(xlabel="inner_lr (\u03b1)", ylabel="||E[g] - Taylor prediction||")
    ax.legend()
    fig.tight_layout()
    return fig


def measure_costs(
    algorithms: Sequence[str] = ("maml", "fomaml", "reptile"),
    inner_steps: Sequence[int] = (1, 5),
    iters: int = 5,
    warmup: int = 2,
) -> list[dict]:
    """ms per meta-iteration and peak memory growth, measured in one fresh process.

    Calls :func:`mamlviz.benchmarks.sinusoid.measure` (the MAML paper's sinusoid workload:
    meta-batch 25, 10 + 10 points, batched path, one thread), which resets the peak resident
    size before each configuration. A low mmap threshold hands freed blocks back to the OS, so
    one configuration's memory does not hide the next one's.
    """
    configs = [(a, k) for a in algorithms for k in inner_steps]
    args = f"'batched', {int(iters)}, {int(warmup)}"  # the vmap path, timing repeats, warm-up
    return measure_in_fresh_process("mamlviz.benchmarks.sinusoid", configs, args)


def plot_costs(rows: list[dict]) -> Figure:
    """Bar charts of time and memory per algorithm and inner_steps (from :func:`measure_costs`)."""
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.2))
    labels = [f"{NAMES.get(r['algorithm'], r['algorithm'])}\nk={r['inner_steps']}" for r in rows]
    axes[0].bar(labels, [r["ms"] for r in rows], color="tab:blue")
    axes[0].set(ylabel="ms per meta-iteration")
    axes[1].bar(labels, [r["peak_mib"] for r in rows], color="tab:orange")
    axes[1].set(ylabel="peak memory growth (MiB)")
    fig.tight_layout()
    return fig
