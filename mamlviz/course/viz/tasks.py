"""Chapter 01's widget: the sinusoid task family p(T), one task and its support points.

:class:`TaskExplorer` shows a task beside the mean function of p(T) (:func:`mean_function`) and
a baseline network's prediction, with sliders for amplitude, phase and shots. Two learners *use*
the support points shown, so that ``shots`` changes what is printed: a least-squares fit within
the sinusoid family (:func:`sine_fit`, which knows the family) and piecewise-linear
interpolation (:func:`interpolate`, which knows nothing about it).
"""

from __future__ import annotations

import ipywidgets as widgets
import matplotlib.pyplot as plt
import plotly.graph_objects as go
import torch
from matplotlib.figure import Figure
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


def sine_fit(x_support: Tensor, y_support: Tensor, x: Tensor) -> Tensor:
    """Least-squares fit of ``y = a sin x + b cos x`` to the support points, evaluated at ``x``.

    Every task of the family is of this form, A sin(x - phase) = (A cos phase) sin x
    - (A sin phase) cos x, and the model is linear in (a, b): the fit is the minimum-norm
    least-squares solution (pseudo-inverse). With two or more support points at generic inputs
    it recovers a noise-free task exactly; with one it is the smallest (a, b) through the point,
    one of a one-parameter family of sines that all fit it.
    """
    design = torch.cat([torch.sin(x_support), torch.cos(x_support)], dim=-1)  # [K, 2]
    coef = torch.linalg.pinv(design) @ y_support.reshape(-1, 1)  # [2, 1]
    return (torch.cat([torch.sin(x), torch.cos(x)], dim=-1) @ coef).reshape(x.shape)


def interpolate(x_support: Tensor, y_support: Tensor, x: Tensor) -> Tensor:
    """Piecewise-linear interpolation of the support points, constant beyond the outermost ones
    (``numpy.interp``'s convention); one point gives a constant. It assumes nothing about the
    task family, only that y varies continuously with x."""
    xs, order = x_support.reshape(-1).sort()
    ys = y_support.reshape(-1)[order]
    q = x.reshape(-1).clamp(xs[0], xs[-1])
    if xs.numel() == 1:
        return ys.expand(q.shape).reshape(x.shape).clone()
    right = torch.searchsorted(xs, q).clamp(1, xs.numel() - 1)
    x0, x1, y0, y1 = xs[right - 1], xs[right], ys[right - 1], ys[right]
    t = torch.where(x1 > x0, (q - x0) / (x1 - x0), torch.zeros_like(q))
    return (y0 + t * (y1 - y0)).reshape(x.shape)


FITS = {"sine fit": sine_fit, "interpolation": interpolate}


def fit_errors(
    tasks: SinusoidTasks,
    shots: list[int],
    n_tasks: int = 200,
    query_shots: int = 100,
    seed: int = 0,
    dtype: torch.dtype = torch.float32,
) -> dict[str, list[float]]:
    """Mean query MSE of :func:`sine_fit` and :func:`interpolation` over ``n_tasks`` tasks of
    ``tasks``, for each number of ``shots`` (the first ``shots`` of one pool of support inputs
    per task, so that more shots only add points)."""
    generator = torch.Generator().manual_seed(seed)
    episode = tasks.sample(generator, max(shots), query_shots, n_tasks, dtype)
    out: dict[str, list[float]] = {name: [] for name in FITS}
    for k in shots:
        for name, fit in FITS.items():
            total = 0.0
            for i in range(n_tasks):
                t = episode.task(i)
                f = fit(t.support.x[:k], t.support.y[:k], t.query.x)
                total += float(((f - t.query.y) ** 2).mean())
            out[name].append(total / n_tasks)
    return out


class TaskExplorer:
    """Chapter 01's widget: one task of the sinusoid family, its support points, the mean
    function of p(T), a baseline network's prediction, and two fits to the support points shown
    (sliders: amplitude, phase, shots; the printed errors of the fits change with ``shots``)."""

    def __init__(self, model: nn.Module, params: Params, *, seed: int = 0, others: int = 12):
        self.tasks, self.model, self.params = SinusoidTasks(), model, params
        generator = torch.Generator().manual_seed(seed)
        self.x_pool = self.tasks.sample_x(generator, (20,))
        self.x_query = self.tasks.sample_x(generator, (100,))
        amps, phases = self.tasks.sample_tasks(generator, others)
        self.others = list(zip(amps.tolist(), phases.tolist(), strict=True))
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
        fig.add_scatter(name="sine fit to the support", line=dict(color="#d62728", dash="dot"))
        fig.add_scatter(name="interpolation of the support", line=dict(color="#9467bd", width=1))
        fig.add_scatter(name="this task", line=dict(color=TRUTH_COLOR, width=4))
        fig.add_scatter(name="support", mode="markers", marker=dict(color="black", size=8))
        fig.update_yaxes(range=[-5.5, 5.5])
        self.figure, self.readout = fig, readout()
        for s in self.sliders.values():
            s.observe(lambda change: self.update(), names="value")
        self.widget = widgets.VBox([*self.sliders.values(), self.readout, fig])
        self.widget.add_class(MAIN_CLASS)
        self.update()

    def support(self) -> tuple[Tensor, Tensor]:
        """The support points shown: the first ``shots`` of a fixed pool, on the current task."""
        a, p, k = (self.sliders[n].value for n in ("amplitude", "phase", "shots"))
        x_support = self.x_pool[:k]
        return x_support, sinusoid(x_support, a, p)

    def errors(self) -> dict[str, float]:
        """Query MSE (100 fixed query points) of each predictor on the current task: the two
        fits to the shown support points, then the three that ignore the support set."""
        a, p = self.sliders["amplitude"].value, self.sliders["phase"].value
        x_support, y_support = self.support()
        y = sinusoid(self.x_query, a, p)
        net = predictions(self.model, [self.params], self.x_query)[0].reshape(y.shape)
        predicted = {
            **{name: fit(x_support, y_support, self.x_query) for name, fit in FITS.items()},
            "pretrained network": net,
            "mean function": mean_function(self.x_query, self.tasks),
            "predicting 0": torch.zeros_like(y),
        }
        return {name: float(((f - y) ** 2).mean()) for name, f in predicted.items()}

    def update(self) -> None:
        """Redraw the task, its support points and the fits to them; print every query MSE."""
        a, p = self.sliders["amplitude"].value, self.sliders["phase"].value
        (x_support, y_support), fig, x = self.support(), self.figure, self.x_plot
        with fig.batch_update():
            fig.data[-4].x, fig.data[-4].y = _np(x), _np(sine_fit(x_support, y_support, x))
            fig.data[-3].x, fig.data[-3].y = _np(x), _np(interpolate(x_support, y_support, x))
            fig.data[-2].x, fig.data[-2].y = _np(x), _np(sinusoid(x, a, p))
            fig.data[-1].x, fig.data[-1].y = _np(x_support), _np(y_support)
        e = self.errors()
        self.readout.value = (
            f"query MSE on this task. Using the {len(x_support)} support points: sine fit"
            f" {e['sine fit']:.3f} · interpolation {e['interpolation']:.3f}. Ignoring them:"
            f" pretrained network {e['pretrained network']:.3f} · mean function"
            f" {e['mean function']:.3f} · predicting 0: {e['predicting 0']:.3f}"
        )

    def static_figure(self) -> Figure:
        """Matplotlib version of the widget at its current sliders, every line it draws."""
        a, p = self.sliders["amplitude"].value, self.sliders["phase"].value
        (x_support, y_support), x = self.support(), self.x_plot
        fig, ax = plt.subplots(figsize=(7.6, 3.6))
        for i, (amp, ph) in enumerate(self.others):
            label = "other tasks from p(T)" if i == 0 else None
            ax.plot(_np(x), _np(sinusoid(x, amp, ph)), color="#cccccc", lw=1, label=label)
        ax.plot(_np(x), _np(mean_function(x, self.tasks)), "k--", label="mean function")
        net = predictions(self.model, [self.params], x)[0]
        ax.plot(_np(x), _np(net), color=color("pretrained"), label="pretrained network")
        ax.plot(_np(x), _np(sine_fit(x_support, y_support, x)), ":", color="#d62728",
                label="sine fit to the support")  # fmt: skip
        ax.plot(_np(x), _np(interpolate(x_support, y_support, x)), color="#9467bd", lw=1,
                label="interpolation of the support")  # fmt: skip
        ax.plot(_np(x), _np(sinusoid(x, a, p)), color=TRUTH_COLOR, lw=3, alpha=0.7,
                label="this task")  # fmt: skip
        ax.scatter(_np(x_support), _np(y_support), color="k", zorder=5, label="support")
        ax.set(xlabel="x", ylabel="y", ylim=(-5.5, 5.5),
               title=f"y = {a:.3g} sin(x - {p:.3g}), {len(x_support)} shots")  # fmt: skip
        ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))
        fig.tight_layout()
        return fig
