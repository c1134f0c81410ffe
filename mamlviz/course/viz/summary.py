"""Chapter 12's comparison widget: every shipped learner on one benchmark, at k inner steps.

:class:`FamilyComparison` (the main widget): a test-steps slider k (first) and a benchmark
menu. Left: each row's metric after k steps with its 95 % interval, best first (rows not
evaluated at k, or diverged there, are listed under the figure instead). Right: every row's
metric against inner steps, a marker line at k. Under the figure: the best row, its paired
difference from MAML on the same tasks, and a table of what each row learns and costs. The rows
of a benchmark are computed once (sinusoid: about 10 s, evaluated on 600 tasks; Omniglot: the
stored evaluations) and cached, so moving the slider only redraws.

:func:`plot_comparison` is the static twin.
"""

from __future__ import annotations

import html
import math
from typing import Any

import ipywidgets as widgets
import matplotlib.pyplot as plt
import plotly.graph_objects as go
from matplotlib.figure import Figure
from plotly.subplots import make_subplots

from mamlviz.course import summary as sm
from mamlviz.course.viz.common import MAIN_CLASS, Status, guarded, readout, slider

# One colour per algorithm, in every panel (the course's MAML/FOMAML/Reptile/pretrained ones).
ALGORITHM_COLORS = {
    "maml": "#d62728",
    "fomaml": "#ff7f0e",
    "reptile": "#9467bd",
    "pretrained": "#1f77b4",
    "metasgd": "#2ca02c",
    "metacurv": "#17becf",
    "imaml": "#e377c2",
    "metadropout": "#8c564b",
    "anil": "#bcbd22",
    "protonet": "#7f7f7f",
}
MAX_STEPS = 10


def algorithm_color(algorithm: str) -> str:
    return ALGORITHM_COLORS.get(algorithm, "#000000")


def _label(benchmark: sm.Benchmark, value: float) -> str:
    if not math.isfinite(value):
        return "diverged"
    return f"{100 * value:.1f} %" if benchmark.metric == "accuracy" else f"{value:.3f}"


def _scale(benchmark: sm.Benchmark) -> float:
    return 100.0 if benchmark.metric == "accuracy" else 1.0


def _axis(benchmark: sm.Benchmark) -> str:
    return "query accuracy (%)" if benchmark.metric == "accuracy" else "query MSE"


def _ci(row: sm.Row, k: int) -> float:
    at = row.at(k)
    return 0.0 if at is None else at[1]


def _curve(row: sm.Row, longest: int) -> tuple[list[int], list[float]]:
    """(steps, metric) to draw: a row's evaluated steps, or a flat line over the benchmark's
    steps for a learner without an inner loop (its accuracy does not depend on k)."""
    if not row.inner_loop:
        return list(range(longest + 1)), [row.mean[0]] * (longest + 1)
    steps = list(range(min(row.steps, MAX_STEPS) + 1))
    return steps, [row.mean[i] for i in steps]


def summary_line(benchmark: sm.Benchmark, table: list[sm.Row], k: int) -> str:
    """The readout under the figure: best row at k, its paired gap to MAML, the left-outs."""
    ranked = sm.ranking(table, k, benchmark.higher_is_better)
    if not ranked:
        return f"no row is evaluated (and finite) at k = {k}"
    best, value = ranked[0]
    parts = [f"after k = {k}: best <b>{html.escape(best)}</b> {_label(benchmark, value)}"]
    by = {r.name: r for r in table}
    maml = next((r for r in table if r.algorithm == "maml" and r.at(k) is not None), None)
    b = by[best]
    mine, theirs = b.per_task_at(k), None if maml is None else maml.per_task_at(k)
    if maml is not None and maml.name != best and mine is not None and theirs is not None:
        mean, half = sm.paired_difference(mine, theirs)
        s = _scale(benchmark)
        unit = " points" if benchmark.metric == "accuracy" else ""
        parts.append(
            f"{html.escape(best)} - {html.escape(maml.name)} on the same tasks:"
            f" {s * mean:+.3f} ± {s * half:.3f}{unit}"
        )
    out = [r.name for r in table if r.at(k) is None]
    diverged = [r.name for r in table if (at := r.at(k)) is not None and not math.isfinite(at[0])]
    if out:
        parts.append(f"not evaluated at k = {k}: {', '.join(out)}")
    if diverged:
        parts.append(f"diverged at k = {k}: {', '.join(diverged)}")
    return " · ".join(parts)


def cost_table(table: list[sm.Row], bench: dict[str, Any] | None = None) -> str:
    """HTML table: what each row learns and what it cost (training record, bench if given)."""
    measured = {r["name"]: r for r in (bench or {}).get("rows", [])}
    head = (
        "<tr><th>checkpoint</th><th>algorithm</th><th>trained steps</th><th>trained shots</th>"
        "<th>meta-parameters</th><th>training iterations</th><th>s / iteration (recorded)</th>"
        "<th>bench ms / iteration</th><th>bench MiB</th><th>source</th></tr>"
    )
    lines = []
    for r in table:
        m = measured.get(r.name)
        spi = f"{r.seconds_per_iteration:.3g}" if r.seconds_per_iteration else "–"
        ms, mib = (f"{m['cpu_ms']:.1f}", f"{m['peak_mib']:.1f}") if m else ("–", "–")
        lines.append(
            f"<tr><td>{html.escape(r.name)}</td><td>{r.algorithm}</td><td>{r.trained_steps}</td>"
            f"<td>{r.trained_shots}</td><td>{r.meta_parameters:,}</td><td>{r.iterations:,}</td>"
            f"<td>{spi}</td><td>{ms}</td><td>{mib}</td><td>{html.escape(r.source)}</td></tr>"
        )
    style = "border-collapse:collapse;font-size:12px"
    return f"<table style='{style}'>{head}{''.join(lines)}</table>"


class FamilyComparison:
    """The main widget of chapter 12 (see the module doc)."""

    def __init__(
        self,
        benchmark: str = "sinusoid-10",
        tables: dict[str, list[sm.Row]] | None = None,
        bench: dict[str, Any] | None = None,
        k: int = 1,
    ) -> None:
        if benchmark not in sm.BENCHMARKS:
            raise ValueError(f"benchmark must be one of {sorted(sm.BENCHMARKS)}, got {benchmark!r}")
        self.tables: dict[str, list[sm.Row]] = dict(tables or {})
        self.bench = bench
        self.steps = slider("test steps k", k, 0, MAX_STEPS, 1, kind="int")
        self.choice = widgets.Dropdown(
            options=[(b.title, key) for key, b in sm.BENCHMARKS.items()],
            value=benchmark,
            description="benchmark",
            style={"description_width": "110px"},
            layout=widgets.Layout(width="420px"),
        )
        self.status = Status()
        self.text = readout()
        self.costs = widgets.HTML()
        self.drawn = ""  # the benchmark whose curves the figure holds
        self.adjusting = False
        fig = make_subplots(
            rows=1,
            cols=2,
            column_widths=[0.45, 0.55],
            horizontal_spacing=0.22,
            subplot_titles=["after k inner steps (95 % interval)", "against inner steps"],
        )
        self.fig = go.FigureWidget(fig)
        self.fig.update_layout(
            width=980, height=440, margin=dict(t=40, b=40, l=10), barmode="group"
        )
        self.fig.update_xaxes(title_text="inner steps", row=1, col=2)
        self.steps.observe(guarded(self.status, self.update), names="value")
        self.choice.observe(guarded(self.status, self.update), names="value")
        self.widget = widgets.VBox(
            [self.steps, self.choice, self.text, self.fig, self.status.widget, self.costs]
        )
        self.widget.add_class(MAIN_CLASS)
        self.update()

    @property
    def benchmark(self) -> sm.Benchmark:
        return sm.BENCHMARKS[str(self.choice.value)]

    def table(self) -> list[sm.Row]:
        """The current benchmark's rows (computed on first use, then cached)."""
        key = str(self.choice.value)
        if key not in self.tables:
            self.status.ok(f"computing the rows of {self.benchmark.title} (once) ...")
            self.tables[key] = sm.rows(key)
        return self.tables[key]

    def update(self) -> None:
        b, table = self.benchmark, self.table()
        if self.adjusting:  # the slider's own range is being set below: one redraw suffices
            return
        longest = min(max(r.steps for r in table), MAX_STEPS)  # rows without inner loop: 0
        if self.steps.max != longest:  # each benchmark's slider reaches its longest evaluation
            self.adjusting = True
            try:
                self.steps.value = min(int(self.steps.value), longest)
                self.steps.max = longest
            finally:
                self.adjusting = False
        k = int(self.steps.value)
        s = _scale(b)
        ranked = sm.ranking(table, k, b.higher_is_better)[::-1]  # best on top of the bars
        by = {r.name: r for r in table}
        with self.fig.batch_update():
            if self.drawn != b.key:  # a new benchmark: its curves and an empty bar trace
                self.fig.data = []
                self.fig.add_bar(orientation="h", showlegend=False, textposition="inside")
                for r in table:
                    xs, ys = _curve(r, longest)
                    self.fig.add_scatter(
                        x=xs,
                        y=[s * m if math.isfinite(m) else None for m in ys],
                        mode="lines+markers",
                        name=r.name if r.inner_loop else f"{r.name} (no inner loop)",
                        line=dict(
                            color=algorithm_color(r.algorithm),
                            dash="solid" if r.inner_loop else "dash",
                        ),
                        marker=dict(size=4),
                        xaxis="x2",
                        yaxis="y2",
                    )
                self.fig.update_xaxes(title_text=_axis(b), row=1, col=1)
                self.fig.update_yaxes(title_text=_axis(b), row=1, col=2)
                log = b.metric == "mse"
                self.fig.update_yaxes(type="log" if log else "linear", row=1, col=2)
                self.fig.update_yaxes(range=[-1.3, 0.7] if log else None, row=1, col=2)
                self.fig.update_xaxes(range=[-0.3, longest + 0.3], row=1, col=2)
                self.drawn = b.key
            bars = self.fig.data[0]
            bars.y = [n for n, _ in ranked]
            bars.x = [s * v for _, v in ranked]
            bars.error_x = dict(type="data", array=[s * _ci(by[n], k) for n, _ in ranked])
            bars.marker.color = [algorithm_color(by[n].algorithm) for n, _ in ranked]
            bars.text = [_label(b, v) for _, v in ranked]
            self.fig.layout.shapes = [
                dict(
                    type="line",
                    xref="x2",
                    yref="y2 domain",
                    x0=k,
                    x1=k,
                    y0=0,
                    y1=1,
                    line=dict(color="#555555", dash="dot"),
                )
            ]
        self.text.value = summary_line(b, table, k)
        self.costs.value = cost_table(table, self.bench if b.family == "sinusoid" else None)
        self.status.ok(f"{len(table)} rows; {table[0].source}")


def plot_comparison(benchmark: str, table: list[sm.Row], k: int = 1) -> Figure:
    """Static twin of :class:`FamilyComparison`: the two panels for ``benchmark`` at ``k``."""
    b = sm.BENCHMARKS[benchmark]
    s = _scale(b)
    ranked = sm.ranking(table, k, b.higher_is_better)[::-1]
    by = {r.name: r for r in table}
    fig, (left, right) = plt.subplots(
        1, 2, figsize=(12, 4.4), gridspec_kw={"width_ratios": [0.9, 1.1]}
    )
    ys = range(len(ranked))
    left.barh(
        list(ys),
        [s * v for _, v in ranked],
        xerr=[s * _ci(by[n], k) for n, _ in ranked],
        color=[algorithm_color(by[n].algorithm) for n, _ in ranked],
    )
    left.set_yticks(list(ys), [n for n, _ in ranked], fontsize=8)
    left.set_xlabel(_axis(b))
    left.set_title(f"{b.title}: after k = {k} inner steps (95 % interval)", fontsize=10)
    if b.metric == "accuracy":
        low = min(s * v for _, v in ranked) if ranked else 0.0
        left.set_xlim(max(0.0, low - 10), 100)
    longest = min(max(r.steps for r in table), MAX_STEPS)
    for r in table:
        steps, ys = _curve(r, longest)
        values = [s * m if math.isfinite(m) else float("nan") for m in ys]
        right.plot(
            steps,
            values,
            marker="o",
            ms=3,
            color=algorithm_color(r.algorithm),
            ls="-" if r.inner_loop else "--",
            label=r.name if r.inner_loop else f"{r.name} (no inner loop)",
        )
    right.axvline(k, color="#555555", ls=":", label=f"k = {k}")
    if b.metric == "mse":
        right.set_yscale("log")
        right.set_ylim(0.05, 5)
    right.set_xlabel("inner steps")
    right.set_ylabel(_axis(b))
    right.set_title("against inner steps (diverged values not drawn)", fontsize=10)
    right.legend(fontsize=7, loc="center left", bbox_to_anchor=(1.01, 0.5))
    fig.tight_layout()
    return fig
