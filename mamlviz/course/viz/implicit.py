"""Figures and widgets of chapter 07 (implicit MAML), each with a static fallback.

The implicit meta-gradient (conjugate gradient on the proximal inner problem) against the
unrolled one as ``lam`` and ``cg_steps`` vary, and iMAML's memory against MAML's.
"""

from __future__ import annotations

from collections.abc import Sequence

import ipywidgets as widgets
import matplotlib.pyplot as plt
import plotly.graph_objects as go
from matplotlib.figure import Figure
from torch.func import grad

from mamlviz.core.episode import Episode, Examples
from mamlviz.core.functional import LossFn, Params, detach, proximal_loss, tree_norm, tree_sub
from mamlviz.core.implicit import conjugate_gradient, implicit_matvec
from mamlviz.core.inner import adapt
from mamlviz.core.rules import SGD
from mamlviz.course.viz.common import MAIN_CLASS, NAMES, slider
from mamlviz.measure import measure_in_fresh_process

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
    return adapt(proximal_loss(loss_fn, theta, lam), theta, support, SGD(inner_lr), steps)


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

    matvec = implicit_matvec(loss_fn, phi, episode.support, lam)
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
    return measure_in_fresh_process("mamlviz.benchmarks.imaml", configs, "1")


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
