"""Chapter 02's main widget: adapt several starting points to one sinusoid task, live.

Sliders (in this order): ``inner_lr``, ``inner_steps``, ``shots``, amplitude, phase. Every change
runs :func:`mamlviz.core.inner.adapt` from each starting point (the meta-learned init, the
pretrained init, a random init: never training from scratch for more than ``inner_steps``),
redraws the fitted curves and the support loss per step, and prints the query MSE after
``inner_steps``.

The support inputs are the first ``shots`` of a fixed pool and the query inputs are fixed, so
moving a slider changes only what that slider controls. A second line places ``inner_lr``
against the curvature of the current support loss at the first init: 1 / lambda_max and
2 / lambda_max of its Hessian (:func:`mamlviz.course.derivation.top_hessian_eigenpair`).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import ipywidgets as widgets
import plotly.graph_objects as go
import torch
from matplotlib.figure import Figure
from torch import Tensor, nn

from mamlviz.core.episode import Episode, Examples
from mamlviz.core.functional import Params, make_loss
from mamlviz.core.inner import Trajectory, adapt
from mamlviz.core.rules import SGD
from mamlviz.course.derivation import top_hessian_eigenpair
from mamlviz.course.landscape import Plane, plane_through, surface
from mamlviz.course.viz.common import MAIN_CLASS, Status, fmt, guarded, readout, slider
from mamlviz.course.viz.sinusoid import (
    fit_figure,
    mpl_adaptation,
    mpl_fits_and_losses,
    plotly_adaptation_animation,
    predictions,
)
from mamlviz.errors import DivergenceError
from mamlviz.tasks.sinusoid import SinusoidTasks, sinusoid


def curvature_note(lam: float, inner_lr: float) -> str:
    """Where ``inner_lr`` lies against 1 / lambda_max and 2 / lambda_max, in words."""
    if lam <= 0:
        return f"lambda_max = {lam:.3g}: no positive curvature along the top direction"
    lo, hi = 1 / lam, 2 / lam
    if inner_lr < lo:
        side = "below 1/lambda_max: along the sharpest direction each step shrinks the error"
    elif inner_lr < hi:
        side = (
            "between 1/ and 2/lambda_max: along the sharpest direction each step overshoots"
            " (zigzag) but still shrinks the error"
        )
    else:
        side = (
            "above 2/lambda_max: along the sharpest direction each step overshoots further"
            " (unstable, at least while the curvature stays this large)"
        )
    return (
        f"support-loss Hessian at the first init: lambda_max = {lam:.3g}, 1/lambda_max = {lo:.3g},"
        f" 2/lambda_max = {hi:.3g}; inner_lr {inner_lr:.3g} is {side}"
    )


@dataclass
class Outcome:
    """What one starting point did: its trajectory, fitted curves and query MSE (NaN if lost)."""

    trajectory: Trajectory
    curves: Tensor
    query_mse: float
    error: str = ""


class AdaptationExplorer:
    """Fitted curves of each starting point on one task, for any inner_lr / inner_steps / shots."""

    def __init__(
        self,
        model: nn.Module,
        inits: Mapping[str, Params],
        *,
        inner_lr: float = 0.01,
        inner_steps: int = 5,
        shots: int = 5,
        amplitude: float = 3.0,
        phase: float = 1.0,
        seed: int = 0,
        max_shots: int = 20,
        max_steps: int = 20,
        query_shots: int = 100,
    ) -> None:
        self.model, self.inits = model, dict(inits)
        self.loss_fn = make_loss(model, "mse")
        tasks = SinusoidTasks()
        generator = torch.Generator().manual_seed(seed)
        self.x_pool = tasks.sample_x(generator, (max_shots,))
        self.x_query = tasks.sample_x(generator, (query_shots,))
        self.x_plot = torch.linspace(-5.0, 5.0, 200).unsqueeze(-1)
        lo_lr = math.log10(1e-3)
        self.sliders = {
            "inner_lr": slider("inner_lr", inner_lr, lo_lr, 0.5, 0.1, kind="log"),
            "inner_steps": slider("inner_steps", inner_steps, 0, max_steps, 1, kind="int"),
            "shots": slider("shots", shots, 1, max_shots, 1, kind="int"),
            "amplitude": slider("amplitude A", amplitude, 0.1, 5.0, 0.1),
            "phase": slider("phase", phase, 0.0, round(math.pi, 2), 0.05),
        }
        self.figure = fit_figure(list(self.inits))
        self.figure.update_yaxes(range=[-6.5, 6.5], row=1, col=1)
        self.readout = readout()
        self.curvature = readout()
        self._lam_cache: dict[tuple, float] = {}
        self._lam_vector: Params | None = None
        self.status = Status()
        self.outcomes: dict[str, Outcome] = {}
        callback = guarded(self.status, self.update)
        for s in self.sliders.values():
            s.observe(callback, names="value")
        self.widget = widgets.VBox(
            [*self.sliders.values(), self.readout, self.curvature, self.status.widget, self.figure],
            layout=widgets.Layout(width="920px"),
        )
        self.widget.add_class(MAIN_CLASS)
        callback()

    def value(self, name: str) -> float:
        """Current value of a slider."""
        return self.sliders[name].value

    def episode(self) -> Episode:
        """The current task's support (first ``shots`` of the pool) and query sets."""
        a, p = self.value("amplitude"), self.value("phase")
        x_support = self.x_pool[: self.value("shots")]
        return Episode(
            Examples(x_support, sinusoid(x_support, a, p)),
            Examples(self.x_query, sinusoid(self.x_query, a, p)),
        )

    def lambda_max(self) -> float:
        """Top Hessian eigenvalue of the current support loss at the first init (cached per
        task and shots, so moving ``inner_lr`` or ``inner_steps`` does not recompute it)."""
        key = tuple(self.value(n) for n in ("shots", "amplitude", "phase"))
        if key not in self._lam_cache:
            init = next(iter(self.inits.values()))
            # at most 30 iterations (as scripts/sharpness.py), started from the last task's
            # eigenvector: a slider step moves the task a little, so a few products converge
            self._lam_cache[key], self._lam_vector = top_hessian_eigenpair(
                self.loss_fn,
                init,
                self.episode().support,
                iters=30,
                start=self._lam_vector,
                tol=1e-3,
            )
        return self._lam_cache[key]

    def query_losses(self, name: str) -> list[float]:
        """Query MSE at each fast weights phi_0 .. phi_k of ``name``'s last adaptation."""
        query = self.episode().query
        with torch.no_grad():
            return [float(self.loss_fn(p, query)) for p in self.outcomes[name].trajectory.fast]

    def run(self) -> dict[str, Outcome]:
        """Adapt every starting point to the current task (no drawing)."""
        episode, rule = self.episode(), SGD(self.value("inner_lr"))
        outcomes = {}
        for name, init in self.inits.items():
            trajectory, error = Trajectory(), ""
            try:
                phi = adapt(
                    self.loss_fn, init, episode.support, rule, self.value("inner_steps"),
                    record=trajectory.record, check_finite=True,
                )  # fmt: skip
                query_mse = float(self.loss_fn(phi, episode.query))
            except DivergenceError as err:
                error, query_mse = f"{name} init: {err}", float("nan")
            curves = predictions(self.model, trajectory.fast, self.x_plot)
            outcomes[name] = Outcome(trajectory, curves, query_mse, error)
        return outcomes

    def update(self) -> None:
        """Recompute and redraw (the slider callback)."""
        self.outcomes = outcomes = self.run()
        episode, steps = self.episode(), self.value("inner_steps")
        xs = self.x_plot.reshape(-1).tolist()
        a, p = self.value("amplitude"), self.value("phase")
        fig, n = self.figure, len(self.inits)
        with fig.batch_update():
            fig.data[0].x, fig.data[0].y = xs, sinusoid(self.x_plot, a, p).reshape(-1).tolist()
            fig.data[1].x = episode.support.x.reshape(-1).tolist()
            fig.data[1].y = episode.support.y.reshape(-1).tolist()
            for i, out in enumerate(outcomes.values()):
                start, last = out.curves[0], out.curves[-1].clamp(-1e3, 1e3)
                fig.data[2 + 2 * i].x, fig.data[2 + 2 * i].y = xs, start.tolist()
                fig.data[3 + 2 * i].x, fig.data[3 + 2 * i].y = xs, last.tolist()
                losses = out.trajectory.losses
                fig.data[2 + 2 * n + i].x = list(range(len(losses)))
                fig.data[2 + 2 * n + i].y = losses
        parts = [f"{name} {fmt(out.query_mse)}" for name, out in outcomes.items()]
        self.readout.value = f"query MSE after {steps} steps: " + " · ".join(parts)
        self.curvature.value = curvature_note(self.lambda_max(), self.value("inner_lr"))
        errors = [out.error for out in outcomes.values() if out.error]
        if errors:
            self.status.error("; ".join(errors))
        else:
            self.status.ok()

    def static_figure(self) -> Figure:
        """Matplotlib version of the widget's current state, both panels: fitted curves before
        and after the inner loop, and the support loss per inner step."""
        truth = sinusoid(self.x_plot, self.value("amplitude"), self.value("phase"))
        ok = {n: o for n, o in self.outcomes.items() if not o.error}
        curves = {n: o.curves for n, o in ok.items()}
        losses = {n: o.trajectory.losses for n, o in ok.items()}
        steps, lr = self.value("inner_steps"), self.value("inner_lr")
        title = f"after {steps} steps at inner_lr {lr:.3g}, {self.value('shots')} shots"
        return mpl_fits_and_losses(
            self.x_plot, truth, self.episode().support, curves, losses, title
        )

    def static_adaptation(
        self, steps: Sequence[int] = (0, 1, 2, 5, 10), along: str = "MAML"
    ) -> Figure:
        """Matplotlib version of :func:`animation`, every panel: each init's curve after each of
        ``steps``, and the ``along`` init's path on the same plane over the support loss."""
        truth = sinusoid(self.x_plot, self.value("amplitude"), self.value("phase"))
        curves = {n: o.curves for n, o in self.outcomes.items() if not o.error}
        _, a, b, z, coords = plane_panel(self, along)
        plane = (a, b, z, {along: coords})
        return mpl_adaptation(self.x_plot, truth, self.episode().support, curves, steps, plane)


def plane_panel(
    explorer: AdaptationExplorer, along: str = "MAML", grid: int = 31
) -> tuple[Plane, Tensor, Tensor, Tensor, Tensor]:
    """The parameter-space panel of :func:`animation` and its static twin: the plane through
    the ``along`` init, its adapted weights and the next init, a ``grid x grid`` window of
    the support loss on it, and the path's coordinates ``[inner_steps + 1, 2]``."""
    path = explorer.outcomes[along].trajectory.fast
    other = next(n for n in explorer.inits if n != along)
    plane = plane_through(path[0], path[-1], explorer.inits[other])
    coords = plane.project_path(path)
    length = max(float(coords[:, 0].max()), 1e-3)
    a = torch.linspace(-0.4 * length, 1.4 * length, grid)
    b = torch.linspace(-0.9 * length, 0.9 * length, grid)
    z = surface(explorer.loss_fn, plane, explorer.episode().support, a, b)
    return plane, a, b, z, coords


def animation(explorer: AdaptationExplorer, along: str = "MAML") -> go.Figure:
    """The explorer's current task as an animation: fitted curves per inner step (left) and
    the path from the ``along`` init on the plane through that init, its adapted weights and
    the next init, over the support loss (right)."""
    _, a, b, z, coords = plane_panel(explorer, along)
    support = explorer.episode().support
    x = explorer.x_plot
    truth = sinusoid(x, explorer.value("amplitude"), explorer.value("phase"))
    curves = {n: o.curves for n, o in explorer.outcomes.items() if not o.error}
    return plotly_adaptation_animation(
        x, truth, support, curves, title="fits", plane=(a, b, z, {along: coords})
    )
