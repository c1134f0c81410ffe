"""Widget suite: how long the sinusoid chapters' slider callbacks take (bar: < 100 ms median).

Each chapter's main widget is built as in its notebook (shipped checkpoints when present, fresh
networks otherwise, which cost the same), then every slider is set programmatically to a cycle
of values and the wall time of each assignment is measured: the observer runs synchronously, so
that is the whole callback (inner loops from each init, projection, figure update; not the
browser's redraw). Values stay in the stable range, because a diverging inner loop stops early
and would flatter the timing.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Sequence
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


def time_slider(widget: Any, name: str, values: Sequence[float], repeats: int) -> list[float]:
    """Milliseconds of each of ``repeats`` assignments cycling through ``values``."""
    slider, times = widget.sliders[name], []
    for i in range(repeats):
        value = values[i % len(values)]
        if slider.value == value:
            value = values[(i + 1) % len(values)]
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
        f"  ch{r['chapter']} {r['slider']:<12} median {r['median_ms']:7.1f} ms"
        f"  max {r['max_ms']:7.1f} ms  {'ok' if r['ok'] else 'SLOW'}"
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


def _measure(repeats: int) -> tuple[list[dict[str, Any]], str]:
    """Build both widgets and time every slider."""
    from mamlviz.course.viz.adaptation import AdaptationExplorer
    from mamlviz.course.viz.landscape import LandscapeExplorer

    model, inits, source = _inits()
    chapter_02 = AdaptationExplorer(model, inits)
    chapter_04 = LandscapeExplorer(model, {n: inits[n] for n in ("MAML", "pretrained")})
    rows = []
    for chapter, widget, table in (
        ("02", chapter_02, CHAPTER_02_VALUES),
        ("04", chapter_04, CHAPTER_04_VALUES),
    ):
        for name, values in table.items():
            time_slider(widget, name, values, 2)  # warm-up
            times = time_slider(widget, name, values, repeats)
            median = statistics.median(times)
            rows.append(
                {
                    "chapter": chapter,
                    "slider": name,
                    "median_ms": round(median, 1),
                    "max_ms": round(max(times), 1),
                    "repeats": repeats,
                    "ok": median < BAR_MS,
                }
            )
    return rows, source
