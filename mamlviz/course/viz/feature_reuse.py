"""Chapter 09's widget and figures: which layers does the inner loop need to change?

:class:`ReuseExplorer` (the main widget): an inner-step slider (first) and a choice of the layers
the inner loop may change; the mean query accuracy against inner steps for the chosen setting
next to all layers, and per layer the representation similarity (linear CKA) of the query images
before and after adaptation and the relative weight change. Accuracy curves and per-layer
numbers are computed once per setting (on the stacked path) and cached, so moving the step
slider only indexes.
"""

from __future__ import annotations

import ipywidgets as widgets
import matplotlib.pyplot as plt
import plotly.graph_objects as go
import torch
from matplotlib.figure import Figure
from plotly.subplots import make_subplots
from torch import Tensor

from mamlviz.core.episode import Episode
from mamlviz.course import feature_reuse as fr
from mamlviz.course.omniglot import OmniglotDemo
from mamlviz.course.viz.common import MAIN_CLASS, Status, guarded, readout, slider

GREY = "#aaaaaa"
SETTING_COLORS = {
    "all layers": "#d62728",
    "blocks 2-4 + head": "#ff7f0e",
    "blocks 3-4 + head": "#bcbd22",
    "block 4 + head": "#2ca02c",
    "block 4 only": "#17becf",
    "head only": "#1f77b4",
    "nothing": "#7f7f7f",
}
MAX_STEPS = 10


class ReuseMeasurements:
    """Per adaptation setting (:data:`mamlviz.course.feature_reuse.SETTINGS`), cached: the query
    accuracy after 0..``MAX_STEPS`` steps on ``episodes`` and, on the few ``probe`` episodes (more
    query images, for CKA), per-layer CKA and weight change after each step count asked for."""

    def __init__(self, demo: OmniglotDemo, episodes: Episode, probe: Episode) -> None:
        self.demo, self.episodes, self.probe = demo, episodes, probe
        self._accuracy: dict[str, Tensor] = {}
        self._layers: dict[tuple[str, int], tuple[dict[str, float], dict[str, float]]] = {}

    def accuracy(self, setting: str) -> Tensor:
        """``[episodes, MAX_STEPS + 1]`` query accuracy when ``setting``'s layers adapt."""
        if setting not in fr.SETTINGS:
            raise ValueError(f"setting must be one of {list(fr.SETTINGS)}, got {setting!r}")
        if setting not in self._accuracy:
            self._accuracy[setting] = fr.accuracy_adapting(
                self.demo, self.episodes, fr.SETTINGS[setting], MAX_STEPS
            )
        return self._accuracy[setting]

    def layers(self, setting: str, steps: int) -> tuple[dict[str, float], dict[str, float]]:
        """Mean per-layer CKA(theta, phi) and ||phi - theta|| / ||theta|| after ``steps``."""
        key = (setting, steps)
        if key not in self._layers:
            layers = fr.SETTINGS[setting]
            phi = fr.adapted(self.demo, self.probe, layers, steps)  # once, for both measures
            cka = fr.cka_by_layer(self.demo, self.probe, phi=phi)
            change = fr.weight_change_by_layer(self.demo.meta, phi)
            self._layers[key] = (
                {n: float(v.mean()) for n, v in cka.items()},
                {n: float(v.mean()) for n, v in change.items()},
            )
        return self._layers[key]


class ReuseExplorer:
    """The main widget of chapter 09 (see the module doc)."""

    def __init__(self, measured: ReuseMeasurements, setting: str = "all layers", steps: int = 1):
        self.measured = measured
        self.steps = slider("inner steps k", steps, 0, MAX_STEPS, 1, kind="int")
        self.setting = widgets.ToggleButtons(
            options=list(fr.SETTINGS), value=setting, description="adapt"
        )
        self.status = Status()
        self.text = readout()
        fig = make_subplots(
            rows=1,
            cols=3,
            column_widths=[0.42, 0.29, 0.29],
            subplot_titles=[
                "mean query accuracy",
                "CKA(theta, phi) of the query images",
                "||phi - theta|| / ||theta||",
            ],
        )
        self.fig = go.FigureWidget(fig)
        self.fig.update_layout(width=900, height=340, margin=dict(t=40, b=40), showlegend=True)
        for name in ("all layers", setting):
            self.fig.add_scatter(
                x=[], y=[], mode="lines+markers", name=name, row=1, col=1, showlegend=True
            )
        self.fig.add_scatter(
            x=[steps, steps],
            y=[0, 1.02],
            mode="lines",
            line=dict(color=GREY, dash="dot"),
            showlegend=False,
            row=1,
            col=1,
        )
        self.fig.add_bar(x=list(fr.LAYERS), y=[1.0] * 5, row=1, col=2, showlegend=False)
        self.fig.add_bar(x=list(fr.LAYERS), y=[0.0] * 5, row=1, col=3, showlegend=False)
        self.fig.update_yaxes(range=[0, 1.02], row=1, col=1)
        self.fig.update_yaxes(range=[0, 1.02], row=1, col=2)
        self.fig.update_xaxes(title_text="inner steps", dtick=1, row=1, col=1)
        for w in (self.steps, self.setting):
            w.observe(guarded(self.status, self.update), names="value")
        self.widget = widgets.VBox(
            [self.steps, self.setting, self.text, self.fig, self.status.widget]
        )
        self.widget.add_class(MAIN_CLASS)
        self.update()

    def update(self) -> None:
        k, setting = self.steps.value, self.setting.value
        full = self.measured.accuracy("all layers").mean(0)
        mine = self.measured.accuracy(setting).mean(0)
        cka, change = self.measured.layers(setting, k)
        steps = list(range(len(full)))
        with self.fig.batch_update():
            ref, cur, marker, cka_bars, change_bars = self.fig.data
            ref.x, ref.y = steps, full.tolist()
            ref.line.color = SETTING_COLORS["all layers"]
            cur.x, cur.y, cur.name = steps, mine.tolist(), setting
            cur.line.color = SETTING_COLORS[setting]
            marker.x = [k, k]
            cka_bars.y = [cka[n] for n in fr.LAYERS]
            change_bars.y = [change[n] for n in fr.LAYERS]
            colors = [
                SETTING_COLORS[setting] if n in fr.SETTINGS[setting] else GREY for n in fr.LAYERS
            ]
            cka_bars.marker.color = colors
            change_bars.marker.color = colors
        n = self.measured.episodes.num_tasks
        self.text.value = (
            f"adapting <b>{setting}</b>: {100 * float(mine[k]):.1f} % after {k} step"
            f"{'s' * (k != 1)} (all layers: {100 * float(full[k]):.1f} %), mean over {n}"
            f" meta-test episodes; CKA of block 4 {cka['block 4']:.3f}, of the head"
            f" {cka['head']:.3f}"
        )
        self.status.ok("coloured bars: layers the inner loop may change; grey: kept at theta")


def plot_reuse(measured: ReuseMeasurements, steps: int = 3) -> Figure:
    """Static twin of the main widget: accuracy against inner steps for every setting, and per
    layer CKA and weight change after ``steps`` steps of full adaptation and of head only."""
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.6), gridspec_kw=dict(width_ratios=[1.4, 1, 1]))
    for setting, c in SETTING_COLORS.items():
        acc = measured.accuracy(setting).mean(0)
        axes[0].plot(range(len(acc)), acc.numpy(), "o-", ms=3, color=c, label=setting)
    axes[0].set(xlabel="inner steps k", ylabel="mean query accuracy", ylim=(0, 1.02))
    axes[0].legend(fontsize=7)
    x = torch.arange(len(fr.LAYERS))
    for j, setting in enumerate(("all layers", "head only")):
        cka, change = measured.layers(setting, steps)
        kw = dict(width=0.4, color=SETTING_COLORS[setting], label=setting)
        axes[1].bar(x + 0.4 * j - 0.2, [cka[n] for n in fr.LAYERS], **kw)
        axes[2].bar(x + 0.4 * j - 0.2, [change[n] for n in fr.LAYERS], **kw)
    axes[1].set(title=f"CKA(theta, phi) after {steps} steps", ylim=(0, 1.02))
    axes[2].set(title=f"||phi - theta|| / ||theta|| after {steps} steps")
    for ax in axes[1:]:
        ax.set_xticks(x.tolist(), list(fr.LAYERS), fontsize=8)
        ax.legend(fontsize=7)
    fig.tight_layout()
    return fig
