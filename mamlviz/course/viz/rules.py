"""Figures and widgets of chapter 06 (Meta-SGD and Meta-Curvature), each with a static fallback.

The learned update rules: their tensors as heat maps with a few numbers each, what one inner step
of the learned rule does to the support gradient (:func:`compare_steps`, :func:`per_tensor_steps`),
and the query loss after adaptation with and without them.
"""

from __future__ import annotations

from dataclasses import dataclass

import ipywidgets as widgets
import matplotlib.pyplot as plt
import plotly.graph_objects as go
import torch
from matplotlib.figure import Figure
from torch import Tensor
from torch.func import grad

from mamlviz.core.episode import Episode, Examples
from mamlviz.core.functional import Params
from mamlviz.core.learner import Learner
from mamlviz.core.rules import RULE_PREFIX
from mamlviz.course.viz.common import MAIN_CLASS, slider
from mamlviz.tasks.sinusoid import SinusoidTasks

# --- chapter 06: Meta-SGD and Meta-Curvature -------------------------------------------------


def rule_meta(algorithm: str, shots: int = 5, iterations: int = 300) -> tuple[Learner, Params, str]:
    """The shipped ``sinusoid-<algorithm>-<shots>shot`` checkpoint, else a short live training
    run with that many shots.

    The fallback (``iterations`` meta-steps, a few seconds) shows the direction the learned
    tensors move in, not their final values.
    """
    from mamlviz.training import hub
    from mamlviz.training.config import TrainConfig, build
    from mamlviz.training.train import fit

    name = f"sinusoid-{algorithm}-{shots}shot"
    if name in hub.available():
        ckpt = hub.load(name)
        return ckpt.learner(), ckpt.meta, name
    config = TrainConfig.for_problem("sinusoid", algorithm, iterations=iterations, shots=shots,
                                     checkpoint_every=10**9, snapshot_every=10**9)  # fmt: skip
    meta, _ = fit(config, progress=False)
    learner, _ = build(config)
    return learner, meta, f"short live run ({iterations} meta-iterations; no checkpoint shipped)"


def reset_rule(learner: Learner, meta: Params) -> Params:
    """``meta`` with the rule's tensors back at their initial values (Meta-SGD: every rate
    ``inner_lr``; Meta-Curvature: identity factors, unit vectors), i.e. MAML's SGD step from the
    same initialisation theta."""
    fast = {n: w for n, w in meta.items() if not n.startswith(RULE_PREFIX)}
    return {**meta, **learner.rule.init_params(fast)}


def rule_tensors(meta: Params) -> dict[str, torch.Tensor]:
    """The update rule's learned tensors (``rule.*``), as 2-D arrays for heat maps."""
    out = {}
    for n, w in meta.items():
        if n.startswith(RULE_PREFIX):
            out[n] = w.detach().reshape(1, -1) if w.dim() < 2 else w.detach()
    return out


def rule_stats(name: str, w: torch.Tensor, inner_lr: float = 0.01) -> str:
    """One line of numbers about a learned tensor, the ones that mean something for its kind.

    * ``rule.lr.*`` (Meta-SGD step sizes alpha): mean |alpha| as a multiple of ``inner_lr``,
      range and share of negative rates (a negative rate steps *up* the gradient);
    * ``rule.mc_vec.*`` (Meta-Curvature's elementwise factor of a bias): the same, as a factor
      that multiplies ``inner_lr``;
    * square factors ``rule.mc_out/in/f.*``: distance from the identity (how far the rule is from
      plain SGD), asymmetry ||M - M^T|| / ||M|| (zero for a metric; a general preconditioner
      need not be symmetric) and the range of singular values (how much M can stretch or shrink
      a gradient; the Kronecker map's gains are products of the two factors' values).
    """
    w = w.detach().double()
    head = f"<b>{name}</b> {tuple(w.shape)}: "
    negative = f"negative {float((w < 0).float().mean()):.0%}"
    if name.startswith(f"{RULE_PREFIX}lr."):
        scale = float(w.abs().mean()) / inner_lr
        return head + (
            f"step sizes: mean |alpha| {float(w.abs().mean()):.4f} = {scale:.1f} x inner_lr,"
            f" range [{float(w.min()):.4f}, {float(w.max()):.4f}], {negative}"
        )
    square = w.dim() == 2 and w.shape[0] == w.shape[1] and w.shape[0] > 1
    if not square:
        return head + (
            f"elementwise factor on the gradient: mean {float(w.mean()):.3f},"
            f" range [{float(w.min()):.3f}, {float(w.max()):.3f}], {negative}"
        )
    eye = torch.eye(w.shape[0], dtype=w.dtype)
    sv = torch.linalg.svdvals(w)
    return head + (
        f"||M - I|| / ||I|| = {float((w - eye).norm() / eye.norm()):.3f},"
        f" asymmetry ||M - M^T|| / ||M|| = {float((w - w.T).norm() / w.norm()):.3f},"
        f" singular values in [{float(sv.min()):.3f}, {float(sv.max()):.2f}]"
    )


def rule_widget(meta: Params, inner_lr: float = 0.01) -> tuple[widgets.VBox, dict]:
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
        status.value = rule_stats(name, meta[name], inner_lr)

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
    learner: Learner, meta: Params, seed: int = 0, tasks: int = 100, shots: int = 5
) -> float:
    """Mean query MSE after the learner's inner loop on ``tasks`` test sinusoids."""
    fast, frozen, rule_params = learner.split(meta)
    dtype = next(iter(meta.values())).dtype
    episode = SinusoidTasks().sample(torch.Generator().manual_seed(seed), shots, 50, tasks, dtype)
    total = 0.0
    for i in range(tasks):
        task = episode.task(i)
        phi = learner.inner_loop(fast, frozen, rule_params, task.support)
        total += float(learner.query_loss(phi, frozen, task.query))
    return total / tasks


def _query_after_step(
    learner: Learner, fast: Params, frozen: Params, g: Params, step: float | Tensor, query: Examples
) -> float:
    """Query loss at ``fast - step * g``."""
    moved = {n: w - step * g[n] for n, w in fast.items()}
    return float(learner.query_loss(moved, frozen, query))


def _flat(params: Params, names: list[str]) -> Tensor:
    return torch.cat([params[n].reshape(-1) for n in names])


@dataclass(frozen=True)
class StepComparison:
    """One inner step of a learned rule against the raw support gradient, per task ``[tasks]``.

    With ``g`` the support gradient at theta, ``alpha`` = ``inner_lr`` and ``d = theta - phi``
    the step the learned rule takes (Meta-SGD: ``alpha_learned (.) g``; Meta-Curvature:
    ``inner_lr MC(g)``):

    * ``cosine``: cos of the angle between ``d`` and ``g`` (1: the rule only rescales the
      gradient; > 0: ``d`` is still a descent direction of the support loss to first order);
    * ``norm_ratio``: ``||d|| / ||alpha g||``, the rule's step length over plain SGD's;
    * query losses at theta (``before``), after SGD ``theta - alpha g`` (``sgd``), after a raw
      gradient step as long as the rule's, ``theta - (||d|| / ||g||) g`` (``same_length``:
      separates the rule's choice of direction from its choice of length), and after the rule's
      step ``theta - d`` (``rule``).
    """

    cosine: Tensor
    norm_ratio: Tensor
    before: Tensor
    sgd: Tensor
    same_length: Tensor
    rule: Tensor


def compare_steps(learner: Learner, meta: Params, episode: Episode) -> StepComparison:
    """:class:`StepComparison` of ``learner``'s learned rule on every task of ``episode``
    (a meta-batch with a leading task axis), at the initialisation stored in ``meta``."""
    fast, frozen, rule_params = learner.split(meta)
    names, alpha = list(fast), learner.rule.inner_lr
    support_loss = learner.support_loss_fn(frozen)
    rows = []
    for i in range(episode.support.x.shape[0]):
        task = episode.task(i)
        g = grad(support_loss)(fast, task.support)
        phi = learner.inner_loop(fast, frozen, rule_params, task.support, steps=1)
        g_flat, d_flat = _flat(g, names), _flat({n: fast[n] - phi[n] for n in names}, names)
        scale = d_flat.norm() / g_flat.norm()

        steps = (0.0, alpha, scale)
        queries = [_query_after_step(learner, fast, frozen, g, s, task.query) for s in steps]
        rows.append(
            [
                float(g_flat @ d_flat / (g_flat.norm() * d_flat.norm())),
                float(d_flat.norm() / (alpha * g_flat.norm())),
                *queries,
                float(learner.query_loss(phi, frozen, task.query)),
            ]
        )
    columns = torch.tensor(rows, dtype=torch.float64).T
    return StepComparison(*columns)


def per_tensor_steps(learner: Learner, meta: Params, episode: Episode) -> dict[str, dict]:
    """Per parameter tensor, averaged over the tasks of ``episode``: mean |g| of the support
    gradient at theta, mean |d| of the step the learned rule takes (``d = theta - phi`` after
    one inner step), and their ratio, the effective step size |d| / |g| the rule applies to
    that tensor (``inner_lr`` for plain SGD)."""
    fast, frozen, rule_params = learner.split(meta)
    support_loss = learner.support_loss_fn(frozen)
    tasks = episode.support.x.shape[0]
    sums = {n: [0.0, 0.0] for n in fast}
    for i in range(tasks):
        task = episode.task(i)
        g = grad(support_loss)(fast, task.support)
        phi = learner.inner_loop(fast, frozen, rule_params, task.support, steps=1)
        for n in fast:
            sums[n][0] += float(g[n].abs().mean()) / tasks
            sums[n][1] += float((fast[n] - phi[n]).abs().mean()) / tasks
    return {n: {"grad": g_, "step": d, "ratio": d / g_} for n, (g_, d) in sums.items()}
