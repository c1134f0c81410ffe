"""Figures and widgets of chapter 06 (Meta-SGD and Meta-Curvature), each with a static fallback.

The learned update rules: their tensors as heat maps with a few numbers each, and the query
loss after adaptation with and without them.
"""

from __future__ import annotations

import ipywidgets as widgets
import matplotlib.pyplot as plt
import plotly.graph_objects as go
import torch
from matplotlib.figure import Figure

from mamlviz.core.functional import Params
from mamlviz.core.learner import Learner
from mamlviz.core.rules import RULE_PREFIX
from mamlviz.course.viz.common import MAIN_CLASS, slider
from mamlviz.tasks.sinusoid import SinusoidTasks

# --- chapter 06: Meta-SGD and Meta-Curvature -------------------------------------------------


def rule_meta(algorithm: str, iterations: int = 300) -> tuple[Learner, Params, str]:
    """The shipped ``sinusoid-<algorithm>-10shot`` checkpoint, else a short live training run.

    The fallback (``iterations`` meta-steps, a few seconds) shows the direction the learned
    tensors move in, not their final values.
    """
    from mamlviz.training import hub
    from mamlviz.training.config import TrainConfig, build
    from mamlviz.training.train import fit

    for name in (f"sinusoid-{algorithm}-10shot", f"sinusoid-{algorithm}"):
        if name in hub.available():
            ckpt = hub.load(name)
            return ckpt.learner(), ckpt.meta, name
    config = TrainConfig.for_problem("sinusoid", algorithm, iterations=iterations,
                                     checkpoint_every=10**9, snapshot_every=10**9)  # fmt: skip
    meta, _ = fit(config, progress=False)
    learner, _ = build(config)
    return learner, meta, f"short live run ({iterations} meta-iterations; no checkpoint shipped)"


def rule_tensors(meta: Params) -> dict[str, torch.Tensor]:
    """The update rule's learned tensors (``rule.*``), as 2-D arrays for heat maps."""
    out = {}
    for n, w in meta.items():
        if n.startswith(RULE_PREFIX):
            out[n] = w.detach().reshape(1, -1) if w.dim() < 2 else w.detach()
    return out


def rule_stats(name: str, w: torch.Tensor) -> str:
    """One line of numbers about a learned tensor (distance from identity for square factors)."""
    text = (
        f"<b>{name}</b> {tuple(w.shape)}: mean {w.mean():.4f}, min {w.min():.4f}, "
        f"max {w.max():.4f}, negative {float((w < 0).float().mean()):.0%}"
    )
    if w.shape[0] == w.shape[1] and w.shape[0] > 1:
        eye = torch.eye(w.shape[0], dtype=w.dtype)
        text += f", ||M - I|| / ||I|| = {float((w - eye).norm() / eye.norm()):.3f}"
    return text


def rule_widget(meta: Params) -> tuple[widgets.VBox, dict]:
    """Chapter 06's main widget: pick a learned tensor, see it as a heat map with its numbers."""
    tensors = rule_tensors(meta)
    names = list(tensors)
    pick = slider("tensor", 0, 0, len(names) - 1, 1, kind="int", continuous_update=True)
    fig = go.FigureWidget(layout=dict(width=640, height=420, margin=dict(l=60, r=20, t=50, b=40)))
    fig.add_heatmap(z=tensors[names[0]].tolist(), colorscale="RdBu", zmid=0)
    status = widgets.HTML()

    def update(_: object = None) -> None:
        name = names[pick.value]
        with fig.batch_update():
            fig.data[0].z = tensors[name].tolist()
            fig.layout.title = name
        status.value = rule_stats(name, tensors[name])

    pick.observe(update, names="value")
    update()
    box = widgets.VBox([pick, fig, status])
    box.add_class(MAIN_CLASS)
    return box, {"tensor": pick, "figure": fig, "status": status}


def plot_rule_tensors(meta: Params, columns: int = 3) -> Figure:
    """Static version: every learned tensor, heat map if it is a matrix, else a histogram."""
    tensors = rule_tensors(meta)
    rows = -(-len(tensors) // columns)
    fig, axes = plt.subplots(rows, columns, figsize=(4 * columns, 3 * rows), squeeze=False)
    for ax, (name, w) in zip(axes.flat, tensors.items(), strict=False):
        if min(w.shape) > 1:
            top = float(w.abs().max())
            image = ax.imshow(w.numpy(), cmap="RdBu", vmin=-top, vmax=top)
            fig.colorbar(image, ax=ax, shrink=0.8)
        else:
            ax.hist(w.flatten().tolist(), bins=30)
        ax.set_title(name.removeprefix(RULE_PREFIX), fontsize=9)
    for ax in list(axes.flat)[len(tensors) :]:
        ax.axis("off")
    fig.tight_layout()
    return fig


def query_mse_after_adaptation(
    learner: Learner, meta: Params, seed: int = 0, tasks: int = 100
) -> float:
    """Mean query MSE after the learner's inner loop on ``tasks`` test sinusoids (5 shots)."""
    fast, frozen, rule_params = learner.split(meta)
    dtype = next(iter(meta.values())).dtype
    episode = SinusoidTasks().sample(torch.Generator().manual_seed(seed), 5, 50, tasks, dtype)
    total = 0.0
    for i in range(tasks):
        task = episode.task(i)
        phi = learner.inner_loop(fast, frozen, rule_params, task.support)
        total += float(learner.query_loss(phi, frozen, task.query))
    return total / tasks
