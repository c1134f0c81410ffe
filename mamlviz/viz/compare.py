r"""Figures and widgets that compare algorithms (chapters 05-07), each with a static fallback.

Chapter 05: Reptile's, FOMAML's and MAML's expected updates against the Taylor predictions of
Nichol et al. (2018), and their live cost. The widget's sliders are ``inner_steps`` k and
``inner_lr``; the bars show each expected gradient projected on AvgGrad and AvgGradInner, exact
(averaged over all k! minibatch orders) beside the prediction.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Sequence

import ipywidgets as widgets
import matplotlib.pyplot as plt
import plotly.graph_objects as go
import torch
from matplotlib.figure import Figure
from torch.func import grad

from mamlviz import taylor
from mamlviz.functional import (
    LossFn,
    Params,
    detach,
    make_loss,
    params_of,
    tree_dot,
    tree_norm,
    tree_sub,
)
from mamlviz.implicit import conjugate_gradient, hvp
from mamlviz.inner import adapt
from mamlviz.learner import Learner
from mamlviz.rules import RULE_PREFIX, SGD
from mamlviz.tasks.episode import Episode, Examples
from mamlviz.tasks.sinusoid import SinusoidTasks
from mamlviz.viz.common import MAIN_CLASS, slider

NAMES = {"maml": "MAML", "fomaml": "FOMAML", "reptile": "Reptile", "imaml": "iMAML"}


def minibatches(seed: int, k: int, size: int = 10) -> list[Examples]:
    """``k`` minibatches of ``size`` points from one sinusoid task (float64)."""
    g = torch.Generator().manual_seed(seed)
    ep = SinusoidTasks().sample(g, k * size, 1, 1, torch.float64).task(0)
    x, y = ep.support
    return [Examples(x[i * size : (i + 1) * size], y[i * size : (i + 1) * size]) for i in range(k)]


def smooth_problem(seed: int = 0) -> tuple[LossFn, Params]:
    """The tanh net of :func:`mamlviz.taylor.tanh_mlp` with its MSE loss and parameters."""
    model = taylor.tanh_mlp(seed)
    return make_loss(model, "mse"), params_of(model)


def projections(g: Params, avg_grad: Params, avg_inner: Params) -> tuple[float, float]:
    """Components of ``g`` along unit AvgGrad and unit AvgGradInner."""
    return (
        float(tree_dot(g, avg_grad) / tree_norm(avg_grad)),
        float(tree_dot(g, avg_inner) / tree_norm(avg_inner)),
    )


def taylor_summary(
    loss_fn: LossFn, theta: Params, batches: Sequence[Examples], inner_lr: float
) -> dict[str, dict[str, object]]:
    """Per algorithm: exact and predicted projections, and the prediction's relative error."""
    avg_grad, avg_inner = taylor.avg_terms(loss_fn, theta, batches)
    exact = taylor.expected_gradients(loss_fn, theta, batches, inner_lr)
    pred = taylor.predictions(avg_grad, avg_inner, len(batches), inner_lr)
    return {
        name: {
            "exact": projections(exact[name], avg_grad, avg_inner),
            "predicted": projections(pred[name], avg_grad, avg_inner),
            "error": float(tree_norm(tree_sub(exact[name], pred[name])) / tree_norm(exact[name])),
        }
        for name in taylor.ALGORITHMS
    }


def summary_html(k: int, inner_lr: float, summary: dict) -> str:
    errors = ", ".join(f"{NAMES[n]} {summary[n]['error']:.2e}" for n in taylor.ALGORITHMS)
    return f"<b>k = {k}, inner_lr = {inner_lr:.3g}</b>: relative error of the prediction: {errors}"


def _bars(summary: dict) -> list[dict]:
    out = []
    for kind, pattern in (("exact", ""), ("predicted", "/")):
        for axis, label in ((0, "AvgGrad"), (1, "AvgGradInner")):
            out.append(
                dict(
                    x=[NAMES[n] for n in taylor.ALGORITHMS],
                    y=[summary[n][kind][axis] for n in taylor.ALGORITHMS],
                    name=f"{kind}: along {label}",
                    marker_pattern_shape=pattern,
                )
            )
    return out


def taylor_widget(seed: int = 0, k: int = 3, inner_lr: float = 0.01) -> tuple[widgets.VBox, dict]:
    """Chapter 05's main widget: expected updates vs the Taylor predictions (k, inner_lr)."""
    steps = slider("inner_steps k", k, 2, 4, 1, kind="int")
    alpha = slider("inner_lr", inner_lr, -3, -1, 0.25, kind="log")
    loss_fn, theta = smooth_problem(seed)
    summary = taylor_summary(loss_fn, theta, minibatches(seed, k), inner_lr)
    fig = go.FigureWidget(layout=dict(barmode="group", width=680, height=380,
                          title="Expected update, projected (exact vs Taylor prediction)",
                          margin=dict(l=50, r=20, t=50, b=40)))  # fmt: skip
    for bar in _bars(summary):
        fig.add_bar(**bar)
    status = widgets.HTML(summary_html(k, inner_lr, summary))

    def update(_: object = None) -> None:
        s = taylor_summary(loss_fn, theta, minibatches(seed, steps.value), alpha.value)
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
        ax.bar(xs, bar["y"], width, label=bar["name"], hatch=hatch, alpha=0.85)
    ax.set_xticks(range(len(bars[0]["x"])), bars[0]["x"])
    ax.axhline(0, color="black", lw=0.5)
    ax.set(ylabel="component of E[g]")
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
    code = (
        "import json, sys\n"
        "from mamlviz.benchmarks.sinusoid import measure\n"
        "for a, k in json.loads(sys.argv[1]):\n"
        f"    print(json.dumps(measure(a, k, True, {int(iters)}, {int(warmup)})))\n"
    )
    env = {**os.environ, "MALLOC_MMAP_THRESHOLD_": "65536", "OMP_NUM_THREADS": "1"}
    out = subprocess.run(
        [sys.executable, "-c", code, json.dumps(configs)],
        capture_output=True, text=True, check=True, env=env,
    )  # fmt: skip
    return [json.loads(line) for line in out.stdout.strip().splitlines()[-len(configs) :]]


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


# --- chapter 07: implicit MAML ---------------------------------------------------------------

CG_STEPS = (1, 2, 3, 4, 5, 6, 8, 10, 12, 15, 20)
IMAML_STEPS = 100  # proximal GD steps: near convergence when the inner problem is convex


def imaml_inner_lr(lam: float) -> float:
    """A stable step for GD on L_s + lam/2 ||.||^2 on the tanh net (curvature below ~20 + lam)."""
    return 0.5 / (lam + 20.0)


def proximal_adapt(
    loss_fn: LossFn, theta: Params, support: Examples, lam: float, inner_lr: float, steps: int
) -> Params:
    r"""\phi after ``steps`` of GD on L_s(\phi) + lam/2 ||\phi - \theta||^2 (iMAML's inner problem).

    Differentiable in \theta: an outer ``grad`` unrolls through every step (the baseline).
    """

    def proximal(phi: Params, examples: Examples) -> torch.Tensor:
        return loss_fn(phi, examples) + 0.5 * lam * sum(
            torch.sum((phi[n] - theta[n]) ** 2) for n in phi
        )

    return adapt(proximal, theta, support, SGD(inner_lr), steps)


def implicit_vs_unrolled(
    loss_fn: LossFn, theta: Params, episode: Episode, lam: float, cg_steps: Sequence[int]
) -> dict[str, object]:
    r"""The implicit meta-gradient with each number of CG steps, converged, and unrolled.

    Returns ``{"cg": [relative error vs converged per cg_steps], "unrolled": relative difference
    converged-implicit vs unrolled, "stationarity": ||grad of the proximal objective at \phi||}``.
    """
    lr, steps = imaml_inner_lr(lam), IMAML_STEPS
    phi = detach(proximal_adapt(loss_fn, detach(theta), episode.support, lam, lr, steps))
    g_query = grad(loss_fn)(phi, episode.query)

    def matvec(v: Params) -> Params:
        hv = hvp(loss_fn, phi, episode.support, v)
        return {n: v[n] + hv[n] / lam for n in v}

    converged = conjugate_gradient(matvec, g_query, 60)
    cg = [conjugate_gradient(matvec, g_query, s) for s in cg_steps]
    unrolled_g = grad(
        lambda th: loss_fn(
            proximal_adapt(loss_fn, th, episode.support, lam, lr, steps), episode.query
        )
    )(theta)
    g_s = grad(loss_fn)(phi, episode.support)
    stationarity = tree_norm({n: g_s[n] + lam * (phi[n] - theta[n]) for n in phi})
    rel = lambda a, b: float(tree_norm(tree_sub(a, b)) / tree_norm(b))
    return {
        "cg": [rel(g, converged) for g in cg],
        "unrolled": rel(converged, unrolled_g),
        "stationarity": float(stationarity),
    }


def imaml_html(lam: float, cg_steps: int, result: dict, index: int) -> str:
    return (
        f"<b>lam = {lam:.3g}, cg_steps = {cg_steps}</b>: CG vs converged implicit gradient, "
        f"relative error = {result['cg'][index]:.2e}; implicit vs unrolled (100 inner steps) = "
        f"{result['unrolled']:.2e}; inner-problem gradient norm = {result['stationarity']:.1e}"
    )


def imaml_widget(
    loss_fn: LossFn, theta: Params, episode: Episode, lam: float = 10.0, cg_steps: int = 5
) -> tuple[widgets.VBox, dict]:
    """Chapter 07's main widget: ``lam`` and ``cg_steps`` against the implicit meta-gradient."""
    lam_slider = slider("lam", lam, 0, 2, 0.125, kind="log")
    cg = widgets.SelectionSlider(options=list(CG_STEPS), value=cg_steps, description="cg_steps")
    state = {"result": implicit_vs_unrolled(loss_fn, theta, episode, lam, CG_STEPS)}
    fig = go.FigureWidget(layout=dict(width=640, height=360, margin=dict(l=60, r=20, t=50, b=50),
                          title="Implicit meta-gradient: CG steps and the unrolled baseline",
                          xaxis=dict(title="cg_steps"),
                          yaxis=dict(type="log", title="relative error")))  # fmt: skip
    fig.add_scatter(x=list(CG_STEPS), y=state["result"]["cg"], name="CG vs converged")
    fig.add_scatter(x=[CG_STEPS[0], CG_STEPS[-1]], y=[state["result"]["unrolled"]] * 2,
                    name="implicit vs unrolled", line=dict(dash="dash"))  # fmt: skip
    fig.add_scatter(x=[cg_steps], y=[state["result"]["cg"][CG_STEPS.index(cg_steps)]],
                    mode="markers", marker=dict(size=12, color="black"), name="slider")  # fmt: skip
    status = widgets.HTML()

    def on_cg(_: object = None) -> None:
        i = CG_STEPS.index(cg.value)
        r = state["result"]
        with fig.batch_update():
            fig.data[2].x, fig.data[2].y = [cg.value], [r["cg"][i]]
        status.value = imaml_html(lam_slider.value, cg.value, r, i)

    def on_lam(_: object = None) -> None:
        r = implicit_vs_unrolled(loss_fn, theta, episode, lam_slider.value, CG_STEPS)
        state["result"] = r
        with fig.batch_update():
            fig.data[0].y = r["cg"]
            fig.data[1].y = [r["unrolled"]] * 2
        on_cg()

    lam_slider.observe(on_lam, names="value")
    cg.observe(on_cg, names="value")
    on_cg()
    box = widgets.VBox([widgets.HBox([lam_slider, cg]), fig, status])
    box.add_class(MAIN_CLASS)
    return box, {"lam": lam_slider, "cg_steps": cg, "figure": fig, "status": status}


def measure_imaml_memory(inner_steps: Sequence[int] = (1, 5, 10, 20)) -> list[dict]:
    """Peak memory and time of one meta-iteration, iMAML vs MAML, in one fresh process.

    Uses :func:`mamlviz.benchmarks.imaml.measure` (meta-batch 25, lam 2, 5 CG steps); it resets
    the peak resident size before each configuration.
    """
    configs = [(a, k) for a in ("imaml", "maml") for k in inner_steps]
    code = (
        "import json, sys\n"
        "from mamlviz.benchmarks.imaml import measure\n"
        "for a, k in json.loads(sys.argv[1]):\n"
        "    print(json.dumps(measure(a, k, 1)))\n"
    )
    env = {**os.environ, "MALLOC_MMAP_THRESHOLD_": "65536", "OMP_NUM_THREADS": "1"}
    out = subprocess.run(
        [sys.executable, "-c", code, json.dumps(configs)],
        capture_output=True, text=True, check=True, env=env,
    )  # fmt: skip
    return [json.loads(line) for line in out.stdout.strip().splitlines()[-len(configs) :]]


def plot_memory(rows: list[dict]) -> Figure:
    """Peak memory against inner_steps per algorithm (from :func:`measure_imaml_memory`)."""
    fig, ax = plt.subplots(figsize=(6, 3.4))
    for algorithm in sorted({r["algorithm"] for r in rows}):
        own = [r for r in rows if r["algorithm"] == algorithm]
        ax.plot([r["inner_steps"] for r in own], [r["peak_mib"] for r in own], "o-",
                label=NAMES.get(algorithm, "iMAML"))  # fmt: skip
    ax.set(xlabel="inner_steps", ylabel="peak memory growth (MiB)")
    ax.legend()
    fig.tight_layout()
    return fig


def plot_implicit(results: dict[float, dict]) -> Figure:
    """Static version of :func:`imaml_widget`: CG error against cg_steps for several lam."""
    fig, ax = plt.subplots(figsize=(6, 3.6))
    for lam, r in results.items():
        line = ax.semilogy(CG_STEPS, [max(e, 1e-17) for e in r["cg"]], "o-", label=f"lam={lam:g}")
        ax.axhline(max(r["unrolled"], 1e-17), ls="--", color=line[0].get_color(), lw=0.8)
    ax.set(xlabel="cg_steps", ylabel="relative error",
           title="CG vs converged (solid); implicit vs unrolled (dashed)")  # fmt: skip
    ax.legend()
    fig.tight_layout()
    return fig


# --- chapter 06: Meta-SGD and Meta-Curvature -------------------------------------------------


def rule_meta(algorithm: str, iterations: int = 300) -> tuple[Learner, Params, str]:
    """The shipped ``sinusoid-<algorithm>`` checkpoint, else a short live meta-training run.

    The fallback (``iterations`` meta-steps, a few seconds) shows the direction the learned
    tensors move in, not their final values.
    """
    import mamlviz.algorithms_family  # noqa: F401  (registers metacurv)
    from mamlviz import hub
    from mamlviz.train import TrainConfig, build, fit

    name = f"sinusoid-{algorithm}"
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
        phi = adapt(learner.support_loss_fn(frozen), fast, task.support, learner.rule,
                    learner.inner_steps, rule_params=rule_params)  # fmt: skip
        total += float(learner.query_loss(phi, frozen, task.query))
    return total / tasks
