"""Figures and widgets of chapter 07 (implicit MAML), each with a static fallback.

The implicit meta-gradient (conjugate gradient on the proximal inner problem) against the
unrolled one as ``lam`` and ``cg_steps`` vary, and iMAML's memory against MAML's.

The implicit gradient is exact only at the inner problem's minimiser phi*. Gradient descent
with step ``lr`` contracts the error along a direction of curvature ``h + lam`` of the proximal
objective by ``1 - lr (h + lam)`` per step, so in the flat directions of the support loss
(h ~ 0, most of them) ``steps`` steps leave the fraction ``(1 - lr lam)^steps`` of it
(:func:`unsolved_fraction`); ``lr`` itself must stay below ``2 / (h_max + lam)``. A sharp
network (large ``h_max``, see ``derivation.top_hessian_eigenvalue``) at small ``lam`` therefore
needs many steps before the implicit gradient describes the inner loop that was actually run.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Callable, Sequence

import ipywidgets as widgets
import matplotlib.pyplot as plt
import plotly.graph_objects as go
import torch
from matplotlib.figure import Figure
from torch import Tensor
from torch.func import grad

from mamlviz.core.episode import Episode, Examples
from mamlviz.core.functional import (
    LossFn,
    Params,
    detach,
    proximal_loss,
    tree_dot,
    tree_norm,
    tree_sub,
)
from mamlviz.core.implicit import implicit_matvec
from mamlviz.core.inner import adapt
from mamlviz.core.learner import zeros_like
from mamlviz.core.rules import SGD
from mamlviz.course.viz.common import MAIN_CLASS, NAMES, slider

# --- chapter 07: implicit MAML ---------------------------------------------------------------

CG_STEPS = (1, 2, 3, 4, 5, 6, 8, 10, 12, 15, 20)
IMAML_STEPS = 100  # proximal GD steps: near convergence when the inner problem is convex
CONVERGED_CG = 60  # CG steps of the reference ("converged") implicit gradient
MEMORY_STEPS = (1, 10, 20, 40)


def imaml_inner_lr(lam: float) -> float:
    """A stable step for GD on L_s + lam/2 ||.||^2 on the tanh net (curvature below ~20 + lam)."""
    return 0.5 / (lam + 20.0)


def sharp_inner_lr(top: float) -> Callable[[float], float]:
    """``lam -> 1 / (top + lam)``: the 1/L step of GD on an L-smooth objective, here with
    L = top + lam for a support loss whose largest Hessian eigenvalue is ``top``."""
    return lambda lam: 1.0 / (top + lam)


def unsolved_fraction(inner_lr: float, lam: float, steps: int) -> float:
    r"""``(1 - lr lam)^steps``: what GD leaves of the initial error of the proximal problem
    along a direction where the support loss is flat (Hessian eigenvalue 0, curvature lam)."""
    return abs(1.0 - inner_lr * lam) ** steps


def cg_iterates(
    matvec: Callable[[Params], Params], b: Params, steps: int
) -> tuple[list[Params], float]:
    """Every iterate ``x_1 .. x_steps`` of ONE conjugate-gradient run from ``x_0 = 0``, and the
    smallest curvature ``p.Ap / p.p`` it met (<= 0: the operator is not positive definite).

    The same recurrences as :func:`mamlviz.core.implicit.conjugate_gradient` (Hestenes &
    Stiefel 1952), whose ``k``-step answer is ``x_k`` here: one run of ``max(k)`` matrix-vector
    products gives all of them, instead of one run per ``k``.
    """
    x, r, p = zeros_like(b), dict(b), dict(b)
    rs = tree_dot(r, r)
    iterates, curvature = [], float("inf")
    for _ in range(steps):
        ap = matvec(p)
        pap, pp = tree_dot(p, ap), tree_dot(p, p)
        if float(pp) > 0:
            curvature = min(curvature, float(pap / pp))
        alpha = rs / pap if float(pap) > 0 else torch.zeros_like(rs)
        x = {n: x[n] + alpha * p[n] for n in x}
        r = {n: r[n] - alpha * ap[n] for n in r}
        rs_new = tree_dot(r, r)
        beta = rs_new / rs if float(rs) > 0 else torch.zeros_like(rs)
        p = {n: r[n] + beta * p[n] for n in p}
        rs = rs_new
        iterates.append(x)
    return iterates, curvature


def proximal_adapt(
    loss_fn: LossFn, theta: Params, support: Examples, lam: float, inner_lr: float, steps: int
) -> Params:
    r"""\phi after ``steps`` of GD on L_s(\phi) + lam/2 ||\phi - \theta||^2 (iMAML's inner problem).

    Differentiable in \theta: an outer ``grad`` unrolls through every step (the baseline).
    """
    return adapt(proximal_loss(loss_fn, theta, lam), theta, support, SGD(inner_lr), steps)


def implicit_vs_unrolled(
    loss_fn: LossFn,
    theta: Params,
    episode: Episode,
    lam: float,
    cg_steps: Sequence[int],
    *,
    inner_lr: float | Callable[[float], float] = imaml_inner_lr,
    steps: int = IMAML_STEPS,
) -> dict[str, object]:
    r"""The implicit meta-gradient with each number of CG steps, converged, and unrolled.

    ``inner_lr``: a step size, or a function of ``lam`` (default :func:`imaml_inner_lr`).
    One inner loop of ``steps`` steps gives both \phi and the unrolled gradient (the outer
    ``grad`` differentiates through it and returns \phi as auxiliary output), and one CG run
    gives every ``cg_steps`` answer and the converged one (:func:`cg_iterates`).

    Returns ``{"cg": [relative error vs converged per cg_steps], "unrolled": relative difference
    converged-implicit vs unrolled, "stationarity": ||grad of the proximal objective at \phi||,
    "left": unsolved_fraction, "curvature": smallest curvature CG met (<= 0: indefinite, no
    meta-gradient), "inner_lr", "steps"}``.
    """
    lr = inner_lr(lam) if callable(inner_lr) else float(inner_lr)

    def unrolled_query(th: Params) -> tuple[Tensor, Params]:
        phi = proximal_adapt(loss_fn, th, episode.support, lam, lr, steps)
        return loss_fn(phi, episode.query), detach(phi)

    unrolled_g, phi = grad(unrolled_query, has_aux=True)(theta)
    g_query = grad(loss_fn)(phi, episode.query)
    matvec = implicit_matvec(loss_fn, phi, episode.support, lam)
    iterates, curvature = cg_iterates(matvec, g_query, max(CONVERGED_CG, *cg_steps))
    converged = iterates[-1]
    g_s = grad(loss_fn)(phi, episode.support)
    stationarity = tree_norm({n: g_s[n] + lam * (phi[n] - theta[n]) for n in phi})
    rel = lambda a, b: float(tree_norm(tree_sub(a, b)) / tree_norm(b))
    return {
        "cg": [rel(iterates[s - 1], converged) for s in cg_steps],
        "unrolled": rel(converged, unrolled_g),
        "stationarity": float(stationarity),
        "left": unsolved_fraction(lr, lam, steps),
        "curvature": curvature,
        "inner_lr": lr,
        "steps": steps,
    }


def imaml_html(lam: float, cg_steps: int, result: dict, index: int) -> str:
    """The status line of :func:`imaml_widget`, with a verdict on the inner problem."""
    steps, left = result.get("steps", IMAML_STEPS), result.get("left", 0.0)
    text = (
        f"<b>lam = {lam:.3g}, cg_steps = {cg_steps}</b>: CG vs converged implicit gradient, "
        f"relative error = {result['cg'][index]:.2e}; implicit vs unrolled ({steps} inner steps)"
        f" = {result['unrolled']:.2e}; inner-problem gradient norm = "
        f"{result['stationarity']:.1e}"
    )
    if result.get("curvature", 1.0) <= 0:
        verdict = (
            "I + H/lam is NOT positive definite here: CG's answer is no meta-gradient "
            "(meta_gradient would raise IndefiniteError); raise lam or damping."
        )
    elif left > 1e-2:
        verdict = (
            f"inner problem unsolved: {steps} steps of size {result['inner_lr']:.2g} leave "
            f"{100 * left:.0f} % of the error in the flat directions, (1 - lr lam)^steps; the "
            "implicit gradient assumes phi*, the unrolled one differentiates the steps taken."
        )
    else:
        verdict = f"inner loop converged in the flat directions ((1 - lr lam)^steps = {left:.0e})."
    return f"{text}<br>{verdict}"


def imaml_widget(
    loss_fn: LossFn,
    theta: Params,
    episode: Episode,
    lam: float = 10.0,
    cg_steps: int = 5,
    *,
    inner_lr: float | Callable[[float], float] = imaml_inner_lr,
    steps: int = IMAML_STEPS,
) -> tuple[widgets.VBox, dict]:
    """Chapter 07's main widget: ``lam`` and ``cg_steps`` against the implicit meta-gradient.

    A ``lam`` change runs one inner loop (with its unrolled gradient) and one CG run; results
    are cached per ``lam``, so returning to a value is instant, and the status line says
    "computing" while it works. ``parts["timings"]`` collects each ``lam`` callback's seconds.
    """
    lam_slider = slider("lam", lam, 0, 2, 0.125, kind="log")
    cg = widgets.SelectionSlider(options=list(CG_STEPS), value=cg_steps, description="cg_steps")
    cache: dict[float, dict] = {}
    timings: list[float] = []

    def result(value: float) -> dict:
        key = round(float(value), 9)
        if key not in cache:
            cache[key] = implicit_vs_unrolled(
                loss_fn, theta, episode, key, CG_STEPS, inner_lr=inner_lr, steps=steps
            )
        return cache[key]

    state = {"result": result(lam)}
    fig = go.FigureWidget(layout=dict(width=680, height=380, margin=dict(l=70, r=20, t=50, b=50),
                          title="Implicit meta-gradient: CG steps and the unrolled baseline",
                          xaxis=dict(title="cg_steps"),
                          yaxis=dict(type="log", title="relative error", dtick=1,
                                     exponentformat="power")))  # fmt: skip
    fig.add_scatter(x=list(CG_STEPS), y=state["result"]["cg"], name="CG vs converged (60 steps)")
    fig.add_scatter(x=[CG_STEPS[0], CG_STEPS[-1]], y=[state["result"]["unrolled"]] * 2,
                    name="converged implicit vs unrolled", line=dict(dash="dash"))  # fmt: skip
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
        start = time.perf_counter()
        status.value = f"<i>computing lam = {lam_slider.value:.3g} (inner loop, unrolled, CG)…</i>"
        r = state["result"] = result(lam_slider.value)
        with fig.batch_update():
            fig.data[0].y = r["cg"]
            fig.data[1].y = [r["unrolled"]] * 2
        on_cg()
        timings.append(time.perf_counter() - start)

    lam_slider.observe(on_lam, names="value")
    cg.observe(on_cg, names="value")
    on_cg()
    box = widgets.VBox([widgets.HBox([lam_slider, cg]), fig, status])
    box.add_class(MAIN_CLASS)
    parts = {"lam": lam_slider, "cg_steps": cg, "figure": fig, "status": status}
    return box, {**parts, "timings": timings, "cache": cache}


def measure_imaml_memory(inner_steps: Sequence[int] = MEMORY_STEPS, repeats: int = 1) -> list[dict]:
    """Peak memory and time of one meta-iteration, iMAML vs MAML, each in a fresh process.

    One clean subprocess per configuration, as ``python -m mamlviz bench --suite imaml`` runs
    them (:func:`mamlviz.benchmarks.imaml.measure`: meta-batch 25, lam 10, damping 2, 5 CG
    steps): a process that already ran a configuration keeps allocator pages and caches that
    hide part of the next one's memory.
    """
    env = {**os.environ, "MALLOC_MMAP_THRESHOLD_": "65536", "OMP_NUM_THREADS": "1"}
    rows = []
    for algorithm in ("imaml", "maml"):
        for k in inner_steps:
            command = [sys.executable, "-m", "mamlviz.benchmarks.imaml", algorithm, str(k)]
            out = subprocess.run(
                [*command, str(repeats)], capture_output=True, text=True, check=True, env=env
            )
            rows.append(json.loads(out.stdout.strip().splitlines()[-1]))
    return rows


def fit_line(xs: Sequence[float], ys: Sequence[float]) -> dict[str, float]:
    """Least-squares line ``y = slope x + intercept`` and its largest absolute residual."""
    x = torch.tensor(xs, dtype=torch.float64)
    y = torch.tensor(ys, dtype=torch.float64)
    design = torch.stack([x, torch.ones_like(x)], dim=1)
    coef = torch.linalg.lstsq(design, y.unsqueeze(1)).solution.squeeze(1)
    residual = y - design @ coef
    return {
        "slope": float(coef[0]),
        "intercept": float(coef[1]),
        "max_residual": float(residual.abs().max()),
    }


def plot_memory(rows: list[dict]) -> Figure:
    """Peak memory against inner_steps per algorithm (from :func:`measure_imaml_memory`),
    with each algorithm's least-squares line (dotted)."""
    fig, ax = plt.subplots(figsize=(6.4, 3.6))
    for algorithm in sorted({r["algorithm"] for r in rows}):
        own = [r for r in rows if r["algorithm"] == algorithm]
        xs, ys = [r["inner_steps"] for r in own], [r["peak_mib"] for r in own]
        name = NAMES.get(algorithm, algorithm)
        line = ax.plot(xs, ys, "o-", label=f"{name} (measured)")
        fit = fit_line(xs, ys)
        ax.plot(xs, [fit["slope"] * x + fit["intercept"] for x in xs], ":",
                color=line[0].get_color(),
                label=f"{name} fit: {fit['slope']:.2f} MiB per step")  # fmt: skip
    ax.set(xlabel="inner_steps", ylabel="peak memory growth (MiB)",
           title="One meta-iteration, each configuration in a fresh process")  # fmt: skip
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def plot_implicit(results: dict[float, dict]) -> Figure:
    """Static version of :func:`imaml_widget`: CG error against cg_steps for several lam."""
    fig, ax = plt.subplots(figsize=(6.4, 3.8))
    for lam, r in results.items():
        line = ax.semilogy(CG_STEPS, [max(e, 1e-17) for e in r["cg"]], "o-",
                           label=f"lam={lam:g}: CG vs converged")  # fmt: skip
        ax.axhline(max(r["unrolled"], 1e-17), ls="--", color=line[0].get_color(), lw=0.8,
                   label=f"lam={lam:g}: implicit vs unrolled")  # fmt: skip
    ax.set(xlabel="cg_steps", ylabel="relative error",
           title="CG vs converged (solid); implicit vs unrolled (dashed)")  # fmt: skip
    ax.legend(fontsize=7, ncol=2)
    fig.tight_layout()
    return fig
