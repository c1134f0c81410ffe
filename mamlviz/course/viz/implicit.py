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

import asyncio
import json
import math
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Sequence

import ipywidgets as widgets
import matplotlib.pyplot as plt
import plotly.graph_objects as go
import torch
from matplotlib.figure import Figure
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
from mamlviz.core.inner import adapt
from mamlviz.core.learner import zeros_like
from mamlviz.core.rules import SGD
from mamlviz.course.viz.common import MAIN_CLASS, NAMES, slider

# --- chapter 07: implicit MAML ---------------------------------------------------------------

CG_STEPS = (1, 2, 3, 4, 5, 6, 8, 10, 12, 15, 20)
IMAML_STEPS = 100  # proximal GD steps: near convergence when the inner problem is convex
CONVERGED_CG = 60  # CG steps of the reference ("converged") implicit gradient
MEMORY_STEPS = (1, 10, 20, 40)
PREFETCH_IDLE_S = 0.3  # kernel idle time before the widget computes lam's neighbours


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


def unrolled_gradient(
    loss_fn: LossFn,
    theta: Params,
    episode: Episode,
    lam: float,
    inner_lr: float,
    steps: int,
) -> tuple[Params, Params]:
    r"""(d/d\theta L_q(\phi_T), \phi_T) for T = ``steps`` of :func:`proximal_adapt`:
    \phi_0 = \theta,  \phi_{t+1} = \phi_t - lr \nabla [L_s + lam/2 ||. - \theta||^2](\phi_t).

    The same inner loop and the same reverse-mode derivative as ``grad`` of
    :func:`proximal_adapt` (equal up to float rounding, tested), taken with plain
    ``torch.autograd`` on leaf tensors: ``torch.func.grad`` re-wraps every tensor at each of the
    ``steps`` nested gradient calls, which here cost as much as the arithmetic.
    """
    with torch.enable_grad():
        th = {n: w.detach().requires_grad_() for n, w in theta.items()}
        objective = proximal_loss(loss_fn, th, lam)
        phi = dict(th)
        for _ in range(steps):
            # create_graph: the outer derivative runs back through every inner step
            g = torch.autograd.grad(objective(phi, episode.support), list(phi.values()),
                                    create_graph=True)  # fmt: skip
            phi = {n: w - inner_lr * gn for (n, w), gn in zip(phi.items(), g, strict=True)}
        query = loss_fn(phi, episode.query)
        g_theta = torch.autograd.grad(query, list(th.values()), allow_unused=True)
    unrolled = {
        n: torch.zeros_like(w) if gn is None else gn
        for (n, w), gn in zip(th.items(), g_theta, strict=True)
    }
    return unrolled, detach(phi)


def support_hessian(
    loss_fn: LossFn, phi: Params, support: Examples
) -> tuple[Params, Callable[[Params], Params]]:
    r"""(\nabla L_s(\phi), v -> H v) with H = \nabla^2 L_s(\phi): the gradient is taken once,
    with its graph kept, and every product is one backward pass through it.

    :func:`mamlviz.core.implicit.hvp` recomputes the loss and its gradient for each ``v``;
    CG asks for many products at one \phi, so this does that work once (same numbers).
    """
    with torch.enable_grad():
        leaves = {n: w.detach().requires_grad_() for n, w in phi.items()}
        g = torch.autograd.grad(loss_fn(leaves, support), list(leaves.values()),
                                create_graph=True)  # fmt: skip

    def hessian_vector(v: Params) -> Params:
        with torch.enable_grad():
            hv = torch.autograd.grad(g, list(leaves.values()), [v[n] for n in leaves],
                                     retain_graph=True, allow_unused=True)  # fmt: skip
        return {
            n: torch.zeros_like(w) if h is None else h
            for (n, w), h in zip(leaves.items(), hv, strict=True)
        }

    return dict(zip(leaves, (gn.detach() for gn in g), strict=True)), hessian_vector


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
    One inner loop of ``steps`` steps gives both \phi and the unrolled gradient
    (:func:`unrolled_gradient`), and one CG run on (I + H/lam) x = \nabla L_q(\phi) gives
    every ``cg_steps`` answer and the converged one (:func:`cg_iterates`), its products with
    H from one kept support gradient (:func:`support_hessian`).

    Returns ``{"cg": [relative error vs converged per cg_steps], "unrolled": relative difference
    converged-implicit vs unrolled, "stationarity": ||grad of the proximal objective at \phi||,
    "left": unsolved_fraction, "curvature": smallest curvature CG met (<= 0: indefinite, no
    meta-gradient), "inner_lr", "steps"}``.
    """
    lr = inner_lr(lam) if callable(inner_lr) else float(inner_lr)
    unrolled_g, phi = unrolled_gradient(loss_fn, theta, episode, lam, lr, steps)
    g_query = grad(loss_fn)(phi, episode.query)
    g_s, hessian_vector = support_hessian(loss_fn, phi, episode.support)

    def matvec(v: Params) -> Params:  # mamlviz.core.implicit.implicit_matvec with damping 0
        hv = hessian_vector(v)
        return {n: v[n] + hv[n] / lam for n in v}

    iterates, curvature = cg_iterates(matvec, g_query, max(CONVERGED_CG, *cg_steps))
    converged = iterates[-1]
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


def _lam_key(value: float) -> float:
    """The cache key of a lam: the page and Python may differ in the last bits of 10**x."""
    return round(float(value), 9)


def slider_neighbours(value: float, low: float, high: float, step: float) -> list[float]:
    """Keys of the values one ``step`` below and above ``value`` on a log slider whose
    exponents of 10 run from ``low`` to ``high``: lam 10^(e -+ step) for lam = 10^e."""
    exponent = math.log10(value)
    return [
        _lam_key(10**e)
        for e in (exponent - step, exponent + step)
        if low - 1e-9 <= e <= high + 1e-9
    ]


def imaml_widget(
    loss_fn: LossFn,
    theta: Params,
    episode: Episode,
    lam: float = 10.0,
    cg_steps: int = 5,
    *,
    inner_lr: float | Callable[[float], float] = imaml_inner_lr,
    steps: int = IMAML_STEPS,
    prefetch: bool = True,
) -> tuple[widgets.VBox, dict]:
    """Chapter 07's main widget: ``lam`` and ``cg_steps`` against the implicit meta-gradient.

    A ``lam`` change runs one inner loop (with its unrolled gradient) and one CG run, about
    0.2 s on one core. Results are cached per ``lam``, so returning to a value is instant; a
    value not seen yet first puts "computing lam = ... (about ... s)" in the status line (the
    estimate is the median of the earlier computations), which ipywidgets sends to the page
    before the callback returns, and the result replaces it.

    In a kernel, ``prefetch`` computes the two slider neighbours of the current ``lam`` once
    the kernel has been idle for ``PREFETCH_IDLE_S`` (one neighbour per event-loop callback,
    so a move waits at most for the one in progress): a one-step move after a short pause is a
    cache hit. It runs on the kernel's event loop, not in a thread: ``loss_fn`` runs the model
    through ``functional_call``, which swaps the parameters of the one shared module, so a
    thread using it beside a cell would read the cell's weights. Without a running event loop
    (scripts, tests, the bench) nothing is scheduled; ``parts["prefetch"]()`` computes the
    current lam's neighbours at once. ``parts["timings"]`` collects each ``lam`` callback's seconds,
    ``parts["cache"]`` is the cache.
    """
    low, high, step = 0, 2, 0.125
    lam_slider = slider("lam", lam, low, high, step, kind="log")
    cg = widgets.SelectionSlider(options=list(CG_STEPS), value=cg_steps, description="cg_steps")
    cache: dict[float, dict] = {}
    timings: list[float] = []
    computed: list[float] = []  # seconds of each computation (not cache hits): the estimate
    queued: list[float] = []  # neighbours still to prefetch, nearest first
    scheduled: dict[str, asyncio.TimerHandle] = {}

    def result(value: float) -> dict:
        key = _lam_key(value)
        if key not in cache:
            start = time.perf_counter()
            cache[key] = implicit_vs_unrolled(
                loss_fn, theta, episode, key, CG_STEPS, inner_lr=inner_lr, steps=steps
            )
            computed.append(time.perf_counter() - start)
        return cache[key]

    def prefetch_one() -> None:
        """Compute the first queued neighbour; schedule the next as a separate callback."""
        scheduled.pop("next", None)
        while queued and queued[0] in cache:
            queued.pop(0)
        if queued:
            result(queued.pop(0))
        if queued:
            schedule(0.0)

    def schedule(delay: float) -> None:
        try:
            loop = asyncio.get_running_loop()  # the kernel's; none in a plain script
        except RuntimeError:
            return
        if "next" in scheduled:
            scheduled.pop("next").cancel()
        scheduled["next"] = loop.call_later(delay, prefetch_one)

    def prefetch_around(value: float) -> None:
        queued[:] = [k for k in slider_neighbours(value, low, high, step) if k not in cache]
        if prefetch and queued:
            schedule(PREFETCH_IDLE_S)

    def prefetch_now() -> None:
        """Compute the current lam's uncached neighbours at once (what an idle kernel does)."""
        if "next" in scheduled:
            scheduled.pop("next").cancel()
        queued[:] = slider_neighbours(lam_slider.value, low, high, step)
        while queued:
            result(queued.pop(0))

    state = {"result": result(lam)}
    prefetch_around(lam)
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
        if _lam_key(lam_slider.value) not in cache:  # a hit is instant: no busy line
            about = statistics.median(computed)
            status.value = (
                f"<i>computing lam = {lam_slider.value:.3g}: inner loop, unrolled gradient, CG"
                f" (about {about:.1f} s)…</i>"
            )
        r = state["result"] = result(lam_slider.value)
        with fig.batch_update():
            fig.data[0].y = r["cg"]
            fig.data[1].y = [r["unrolled"]] * 2
        on_cg()
        timings.append(time.perf_counter() - start)
        prefetch_around(lam_slider.value)

    lam_slider.observe(on_lam, names="value")
    cg.observe(on_cg, names="value")
    on_cg()
    box = widgets.VBox([widgets.HBox([lam_slider, cg]), fig, status])
    box.add_class(MAIN_CLASS)
    parts = {"lam": lam_slider, "cg_steps": cg, "figure": fig, "status": status}
    return box, {**parts, "timings": timings, "cache": cache, "prefetch": prefetch_now}


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
