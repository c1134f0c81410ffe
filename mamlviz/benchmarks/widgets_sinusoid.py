"""Widget suite: how long the sinusoid chapters' slider callbacks take (bar: < 100 ms median).

Chapters 02 and 04 (main widgets), 05 (the Taylor widget's k and inner_lr, and the 2-D toy's
three sliders) and 07 (the implicit widget's lam). Each widget is built as in its notebook
(shipped checkpoints when present, fresh networks otherwise, which cost the same), then every
slider is set programmatically to a cycle of values and the wall time of each assignment is
measured: the observer runs synchronously, so that is the whole callback (inner loops from each
init, projection, figure update; not the browser's redraw). Values stay in the stable range,
because a diverging inner loop stops early and would flatter the timing. No widget here caches
except chapter 07's, which keeps its result per lam and, in a kernel, computes the current
lam's two slider neighbours once the kernel is idle; so it has three rows. "lam (new)" empties
the cache before every assignment: the cost of a lam not visited yet, during which the status
line shows its busy state "computing lam = ... (about ... s)". "lam (1 step)" empties the cache,
lets the widget prefetch (untimed: what the idle kernel does during the user's pause) and moves
one slider step. "lam (cached)" returns to values already computed.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Sequence
from types import SimpleNamespace
from typing import Any

import torch

BAR_MS = 100.0
CHAPTER_02_VALUES = {
    "inner_lr": (0.005, 0.008, 0.012, 0.015),
    "inner_steps": (4, 6, 8, 10),
    "shots": (4, 6, 8, 10),
    "amplitude": (1.0, 2.0, 3.5, 4.5),
    "phase": (0.5, 1.0, 1.5, 2.0),
}
CHAPTER_04_VALUES = {"inner_lr": (0.005, 0.008, 0.012, 0.015)}
CHAPTER_05_VALUES = {"inner_steps": (1, 3, 2, 3), "inner_lr": (0.003, 0.03, 0.01, 0.05)}
TOY2D_VALUES = {
    "inner_lr": (0.05, 0.1, 0.2, 0.3),
    "inner_steps": (1, 3, 5, 10),
    "lam": (0.3, 1.0, 3.0, 10.0),
}
CHAPTER_07_VALUES = {"lam": (10**0.5, 10**1.0, 10**1.5, 10**2.0)}
# back and forth one slider step (10^0.125) at a time: every move goes to a neighbour
CHAPTER_07_STEPS = {"lam": (10**1.0, 10**1.125, 10**1.25, 10**1.125)}


def _inits() -> tuple[torch.nn.Module, dict[str, Any], str]:
    """The model and the MAML / pretrained / random inits the chapters use."""
    from mamlviz.core.functional import params_of
    from mamlviz.models import sinusoid_mlp
    from mamlviz.training import hub

    names = hub.available()
    if "sinusoid-maml" in names and "sinusoid-pretrained" in names:
        maml, pre = hub.load("sinusoid-maml"), hub.load("sinusoid-pretrained")
        inits = {"MAML": maml.meta, "pretrained": pre.meta}
        source = "shipped checkpoints"
        model = maml.model
    else:
        model = sinusoid_mlp(0)
        inits = {"MAML": params_of(model), "pretrained": params_of(sinusoid_mlp(1))}
        source = "fresh networks (no shipped checkpoints found)"
    inits["scratch"] = params_of(sinusoid_mlp(2))
    return model, inits, source


def time_slider(
    widget: Any,
    name: str,
    values: Sequence[float],
    repeats: int,
    before: Callable[[], None] | None = None,
) -> list[float]:
    """Milliseconds of each of ``repeats`` assignments cycling through ``values``; ``before``
    runs (untimed) ahead of each one."""
    slider, times = widget.sliders[name], []
    for i in range(repeats):
        value = values[i % len(values)]
        if slider.value == value:
            value = values[(i + 1) % len(values)]
        if before is not None:
            before()
        start = time.perf_counter()
        slider.value = value
        times.append(1000 * (time.perf_counter() - start))
    return times


def run(quick: bool = False) -> dict[str, Any]:
    """Median callback ms per widget slider, and whether each is under the 100 ms bar."""
    repeats = 6 if quick else 24
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as the chapters do: for a 1-40-40-1 net threads only add overhead
    try:
        rows, source = _measure(repeats)
    finally:
        torch.set_num_threads(threads)
    lines = [f"widget callbacks ({source}; 1 torch thread, bar {BAR_MS:g} ms)"]
    lines += [
        f"  ch{r['chapter']} {r['widget']:<10} {r['slider']:<14} median {r['median_ms']:7.1f} ms"
        f"  max {r['max_ms']:7.1f} ms  {'ok' if r['ok'] else 'SLOW'}"
        + (f"  ({r['note']})" if r.get("note") else "")
        for r in rows
    ]
    return {
        "suite": "widgets_sinusoid",
        "inits": source,
        "bar_ms": BAR_MS,
        "threads": 1,
        "results": rows,
        "ok": all(r["ok"] for r in rows),
        "table": "\n".join(lines),
    }


def _chapter_05() -> tuple[Any, Any]:
    """Chapter 05's Taylor widget (as its notebook builds it) and its 2-D toy."""
    from mamlviz.course.viz.reptile import taylor_widget
    from mamlviz.course.viz.toy2d import Toy2DExplorer

    _, parts = taylor_widget(seed=0, k=2, inner_lr=0.01)
    taylor = SimpleNamespace(sliders={n: parts[n] for n in ("inner_steps", "inner_lr")})
    return taylor, Toy2DExplorer(inner_lr=0.1, inner_steps=1, lam=1.0)


def _chapter_07() -> tuple[Any, dict]:
    """Chapter 07's implicit widget on the shipped iMAML net in float64, with the notebook's
    step 1 / (h_max + lam); a fresh net of the same shape where no checkpoint is shipped."""
    from mamlviz.core.functional import make_loss, params_of
    from mamlviz.course.derivation import top_hessian_eigenvalue
    from mamlviz.course.viz.derivation import sinusoid_task
    from mamlviz.course.viz.implicit import imaml_widget, sharp_inner_lr
    from mamlviz.models import sinusoid_mlp
    from mamlviz.training import hub

    episode = sinusoid_task(seed=0, shots=10, query_shots=10)
    if "sinusoid-imaml-10shot" in hub.available():
        ckpt = hub.load("sinusoid-imaml-10shot")
        model, meta = ckpt.model, ckpt.meta
    else:
        model = sinusoid_mlp(0)
        meta = params_of(model)
    loss_fn = make_loss(model, "mse")
    theta = {n: w.detach().double() for n, w in meta.items()}
    top = top_hessian_eigenvalue(loss_fn, theta, episode.support, iters=40)
    _, parts = imaml_widget(
        loss_fn, theta, episode, lam=10.0, cg_steps=5, inner_lr=sharp_inner_lr(top)
    )
    return SimpleNamespace(sliders={"lam": parts["lam"]}), parts


def _measure(repeats: int) -> tuple[list[dict[str, Any]], str]:
    """Build every widget and time every slider."""
    from mamlviz.course.viz.adaptation import AdaptationExplorer
    from mamlviz.course.viz.landscape import LandscapeExplorer

    model, inits, source = _inits()
    chapter_02 = AdaptationExplorer(model, inits)
    chapter_04 = LandscapeExplorer(model, {n: inits[n] for n in ("MAML", "pretrained")})
    taylor, toy = _chapter_05()
    implicit, implicit_parts = _chapter_07()
    cache, prefetch = implicit_parts["cache"], implicit_parts["prefetch"]

    def pause() -> None:  # the user's pause: an idle kernel computes lam's neighbours
        cache.clear()
        prefetch()

    cold = (
        "07",
        "implicit",
        implicit,
        CHAPTER_07_VALUES,
        cache.clear,  # time a lam not seen yet, not a cache hit
        {"lam": "lam (new)"},
        "uncached lam, far from the last: busy line 'computing lam = ...' shown first",
    )
    after_pause = (
        "07",
        "implicit",
        implicit,
        CHAPTER_07_STEPS,
        pause,
        {"lam": "lam (1 step)"},
        "one slider step after a pause: neighbours prefetched by the idle kernel, cache hit",
    )
    revisit = (
        "07",
        "implicit",
        implicit,
        CHAPTER_07_VALUES,
        None,  # every value of the cycle is computed once first (untimed)
        {"lam": "lam (cached)"},
        "revisited lam, per-lam cache hit",
    )
    rows = []
    for chapter, label, widget, table, before, names, note in (
        ("02", "adaptation", chapter_02, CHAPTER_02_VALUES, None, {}, ""),
        ("04", "landscape", chapter_04, CHAPTER_04_VALUES, None, {}, ""),
        ("05", "taylor", taylor, CHAPTER_05_VALUES, None, {}, ""),
        ("05", "toy2d", toy, TOY2D_VALUES, None, {}, ""),
        cold,
        after_pause,
        revisit,
    ):
        for name, values in table.items():
            if widget is implicit and before is None:  # compute every value once, untimed
                for value in values:
                    widget.sliders[name].value = value
            if widget is implicit and before is pause:  # start one step from the first value
                widget.sliders[name].value = values[-1]
            time_slider(widget, name, values, 2, before)  # warm-up
            times = time_slider(widget, name, values, repeats, before)
            median = statistics.median(times)
            rows.append(
                {
                    "chapter": chapter,
                    "widget": label,
                    "slider": names.get(name, name),
                    "median_ms": round(median, 1),
                    "max_ms": round(max(times), 1),
                    "repeats": repeats,
                    "ok": median < BAR_MS,
                    "note": note,
                }
            )
    return rows, source
