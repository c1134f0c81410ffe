"""Chapter 01's widget: the sinusoid task family p(T), one task and its support points.

:class:`TaskExplorer` shows a task beside the mean function of p(T) (:func:`mean_function`) and
a baseline network's prediction, with sliders for amplitude, phase and shots.
"""

from __future__ import annotations

import ipywidgets as widgets
import plotly.graph_objects as go
import torch
from torch import Tensor, nn

from mamlviz.core.functional import Params
from mamlviz.course.viz.common import MAIN_CLASS, TRUTH_COLOR, color, readout, slider
from mamlviz.course.viz.sinusoid import _np, predictions
from mamlviz.tasks.sinusoid import SinusoidTasks, sinusoid


def mean_function(x: Tensor, tasks: SinusoidTasks) -> Tensor:
    """E_T[y | x] over p(T): for y = A sin(x - phase) with A and phase uniform, this is
    E[A] (cos(x - p1) - cos(x - p0)) / (p1 - p0); for phase in [0, pi], -(2 / pi) E[A] cos x."""
    (a0, a1), (p0, p1) = tasks.amplitude, tasks.phase
    return 0.5 * (a0 + a1) * (torch.cos(x - p1) - torch.cos(x - p0)) / (p1 - p0)


class TaskExplorer:
    """Chapter 01's widget: one task of the sinusoid family, its support points, the mean
    function of p(T) and a baseline network's prediction (sliders: amplitude, phase, shots)."""

    def __init__(self, model: nn.Module, params: Params, *, seed: int = 0, others: int = 12):
        self.tasks, self.model, self.params = SinusoidTasks(), model, params
        generator = torch.Generator().manual_seed(seed)
        self.x_pool = self.tasks.sample_x(generator, (20,))
        self.x_query = self.tasks.sample_x(generator, (100,))
        amps, phases = self.tasks.sample_tasks(generator, others)
        x = self.x_plot = torch.linspace(-5.0, 5.0, 200).unsqueeze(-1)
        self.sliders = {
            "amplitude": slider("amplitude A", 3.0, 0.1, 5.0, 0.1, continuous_update=True),
            "phase": slider("phase", 1.0, 0.0, 3.14, 0.05, continuous_update=True),
            "shots": slider("shots", 5, 1, 20, 1, kind="int", continuous_update=True),
        }
        fig = go.FigureWidget(layout=dict(width=760, height=380, margin=dict(t=30, b=40)))
        for a, p in zip(amps.tolist(), phases.tolist(), strict=True):
            y = _np(sinusoid(x, a, p))
            fig.add_scatter(x=_np(x), y=y, line=dict(color="#cccccc", width=1), showlegend=False)
        fig.add_scatter(x=_np(x), y=_np(mean_function(x, self.tasks)), name="mean function",
                        line=dict(color="black", dash="dash"))  # fmt: skip
        net = _np(predictions(model, [params], x)[0])
        line = dict(color=color("pretrained"))
        fig.add_scatter(x=_np(x), y=net, name="pretrained network", line=line)
        fig.add_scatter(name="this task", line=dict(color=TRUTH_COLOR, width=4))
        fig.add_scatter(name="support", mode="markers", marker=dict(color="black", size=8))
        fig.update_yaxes(range=[-5.5, 5.5])
        self.figure, self.readout = fig, readout()
        for s in self.sliders.values():
            s.observe(lambda change: self.update(), names="value")
        self.widget = widgets.VBox([*self.sliders.values(), self.readout, fig])
        self.widget.add_class(MAIN_CLASS)
        self.update()

    def update(self) -> None:
        """Redraw the task and its support points; print the baselines' query MSE."""
        a, p, k = (self.sliders[n].value for n in ("amplitude", "phase", "shots"))
        x_support, fig = self.x_pool[:k], self.figure
        with fig.batch_update():
            fig.data[-2].x, fig.data[-2].y = _np(self.x_plot), _np(sinusoid(self.x_plot, a, p))
            fig.data[-1].x, fig.data[-1].y = _np(x_support), _np(sinusoid(x_support, a, p))
        y = sinusoid(self.x_query, a, p)
        net = predictions(self.model, [self.params], self.x_query)[0]
        mse_net = float(((net - y.reshape(-1)) ** 2).mean())
        mse_mean = float(((mean_function(self.x_query, self.tasks) - y) ** 2).mean())
        self.readout.value = (
            f"query MSE on this task: pretrained network {mse_net:.3f} · mean function"
            f" {mse_mean:.3f} · predicting 0: {float((y**2).mean()):.3f}"
        )
