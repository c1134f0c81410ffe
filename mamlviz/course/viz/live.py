"""Chapter 02's "meta-train it yourself" panel: sinusoid MAML from scratch, live, in the kernel.

Sliders set inner_lr, inner_steps, shots and the meta-batch; Train meta-trains from a fresh
init with the ``live`` preset's recipe (``train --problem sinusoid --preset live``: Adam 2e-3
cosine-annealed to 0, compiled) in a background thread, so the kernel keeps answering; a
progress bar, the meta-loss curve (means over windows of 100 iterations) and the current
theta's one-step fit grow as it runs. Stop ends the run where it is and keeps what was learned.
At the end (or the stop) the new initialisation's one-step fit is drawn beside the shipped
``sinusoid-maml``'s on the same task, with both one-step MSEs on 100 held-out tasks.

:class:`LiveRun` is the part without widgets (the config, the thread, the windows), so tests
and the static twin drive it directly.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field

import ipywidgets as widgets
import matplotlib.pyplot as plt
import plotly.graph_objects as go
import torch
from matplotlib.figure import Figure
from plotly.subplots import make_subplots

from mamlviz.core.functional import Params, call
from mamlviz.course.viz.common import TRUTH_COLOR, Status, color, fmt, readout, slider
from mamlviz.errors import DivergenceError
from mamlviz.tasks.sinusoid import SinusoidTasks, sinusoid
from mamlviz.training import hub
from mamlviz.training.config import TrainConfig
from mamlviz.training.evaluate import evaluate
from mamlviz.training.history import History
from mamlviz.training.problems import get_problem
from mamlviz.training.train import fit

LIVE_CLASS = "mamlviz-live"
GRID = torch.linspace(-5, 5, 121).view(-1, 1)
WINDOW = 100  # iterations per point of the meta-loss curve
HELD_OUT = 100  # held-out 5-shot tasks for the one-step MSE readout


def live_config(
    inner_lr: float = 0.01,
    inner_steps: int = 1,
    shots: int = 5,
    meta_batch: int = 25,
    iterations: int | None = None,
    seed: int = 0,
) -> TrainConfig:
    """The ``live`` preset of the sinusoid problem with the panel's four settings on top."""
    preset = get_problem("sinusoid").preset("live")
    overrides = {**preset.overrides, "snapshot_every": 10**9, "checkpoint_every": 10**9}
    if iterations is not None:
        overrides["iterations"] = iterations
    return TrainConfig.for_problem(
        "sinusoid", preset.algorithm, **{**overrides, "inner_lr": inner_lr,
        "inner_steps": inner_steps, "shots": shots, "meta_batch": meta_batch, "seed": seed},
    )  # fmt: skip


def windows(loss: list[float], size: int = WINDOW) -> tuple[list[int], list[float]]:
    """Mean meta-loss over each complete window of ``size`` iterations: (last iteration of each
    window, its mean)."""
    n = len(loss) // size
    means = [sum(loss[i * size : (i + 1) * size]) / size for i in range(n)]
    return [(i + 1) * size for i in range(n)], means


@dataclass
class LiveRun:
    """One meta-training run in a background thread; ``stop()`` ends it and keeps theta.

    ``state``: "idle", "compiling", "training", "stopped", "done" or "failed" (``error`` says
    why). ``iteration``, ``history`` and ``meta`` are read by the panel while it runs.
    """

    config: TrainConfig
    compile: bool = True
    state: str = "idle"
    iteration: int = 0
    error: str = ""
    meta: Params | None = None
    history: History = field(default_factory=History)
    started: float = 0.0
    seconds: float = 0.0
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def start(self) -> None:
        self.state = "compiling" if self.compile else "training"
        self.started = time.perf_counter()
        self._thread = threading.Thread(target=self._run, name="mamlviz-live", daemon=True)
        self._thread.start()

    def run(self) -> LiveRun:
        """Train in this thread (the static twin and the tests); returns self."""
        self.started = time.perf_counter()
        self.state = "compiling" if self.compile else "training"
        self._run()
        return self

    def stop(self) -> None:
        self._stop.set()

    def join(self, timeout: float | None = None) -> None:
        if self._thread is not None:
            self._thread.join(timeout)

    @property
    def running(self) -> bool:
        return self.state in ("compiling", "training")

    def _step(self, iteration: int, meta: Params, history: History) -> bool:
        self.iteration, self.history, self.state = iteration, history, "training"
        self.meta = meta
        self.seconds = time.perf_counter() - self.started
        return self._stop.is_set()

    def _run(self) -> None:
        try:
            meta, history = fit(
                self.config, progress=False, compile=self.compile, callback=self._step
            )
        except DivergenceError as err:
            self.state, self.error = "failed", f"{err}; lower inner_lr or the meta-batch noise"
            return
        except Exception as err:  # shown in the panel's status line, not lost
            self.state, self.error = "failed", f"{type(err).__name__}: {err}"
            return
        self.meta, self.history = meta, history
        self.seconds = time.perf_counter() - self.started
        self.state = "stopped" if self._stop.is_set() else "done"


class LiveMetaTraining:
    """The panel: four sliders, Train and Stop, a progress bar, the live curves."""

    def __init__(self, amplitude: float = 3.0, phase: float = 1.0, seed: int = 0) -> None:
        self.shipped = hub.load("sinusoid-maml")
        self.amplitude, self.phase = float(amplitude), float(phase)
        generator = torch.Generator().manual_seed(seed)
        self.task = SinusoidTasks().episode(
            torch.tensor(self.amplitude), torch.tensor(self.phase), generator, 5, 100
        )
        self.sliders = {
            "inner_lr": slider("inner_lr", 0.01, -3, -1, 0.05, kind="log"),
            "inner_steps": slider("inner_steps", 1, 1, 5, 1, kind="int"),
            "shots": slider("shots", 5, 2, 20, 1, kind="int"),
            "meta_batch": slider("meta-batch", 25, 1, 50, 1, kind="int"),
            "iterations": slider("iterations", 25_000, 1_000, 50_000, 1_000, kind="int"),
        }
        self.compile = widgets.Checkbox(value=True, description="compile (first run ~20 s)")
        self.train_button = widgets.Button(description="Train", button_style="success")
        self.stop_button = widgets.Button(description="Stop", disabled=True)
        self.progress = widgets.IntProgress(min=0, max=1, value=0, layout={"width": "420px"})
        self.bar_text = readout("press Train to meta-train from a fresh initialisation")
        self.text = readout()
        self.status = Status()
        self.run: LiveRun | None = None
        self.shipped_fit = self.one_step(self.shipped.meta)
        self._shipped_mse = self.held_out(self.shipped.meta)
        self.fig = self._figure()
        for s in self.sliders.values():
            s.observe(lambda change: self._preview(), names="value")
        self.train_button.on_click(lambda _: self.train())
        self.stop_button.on_click(lambda _: self.stop())
        controls = widgets.VBox([*self.sliders.values(), self.compile])
        buttons = widgets.HBox([self.train_button, self.stop_button, self.progress])
        self.widget = widgets.VBox(
            [controls, buttons, self.bar_text, self.fig, self.text, self.status.widget]
        )
        self.widget.add_class(LIVE_CLASS)
        self._preview()

    # --- settings -------------------------------------------------------------------------

    def config(self) -> TrainConfig:
        v = {k: s.value for k, s in self.sliders.items()}
        return live_config(
            float(v["inner_lr"]), int(v["inner_steps"]), int(v["shots"]), int(v["meta_batch"]),
            int(v["iterations"]),
        )  # fmt: skip

    def _idle_config(self) -> TrainConfig | None:
        """The sliders' config, or None while a run is going or when a setting is refused
        (said in the status line)."""
        if self.run is not None and self.run.running:
            return None
        try:
            return self.config()
        except ValueError as err:
            self.status.error(str(err))
            return None

    def _preview(self) -> None:
        """What Train will do (a slider callback: no computation, well under 100 ms)."""
        c = self._idle_config()
        if c is None:
            return
        self.status.ok(
            f"Train: {c.iterations:,} meta-iterations of {c.meta_batch} tasks with {c.shots}"
            f" shots, {c.inner_steps} inner step(s) of {c.inner_lr:.3g}; Adam {c.outer_lr:g}"
            " cosine-annealed to 0"
        )

    # --- the run --------------------------------------------------------------------------

    def train(self) -> None:
        """Start a run with the sliders' settings (nothing while one is going)."""
        config = self._idle_config()
        if config is None:
            return
        self.run = LiveRun(config, compile=self.compile.value)
        self.progress.max, self.progress.value = config.iterations, 0
        self._enable(False)
        self.run.start()
        threading.Thread(target=self._watch, args=(self.run,), daemon=True).start()

    def stop(self) -> None:
        if self.run is not None:
            self.run.stop()

    def _enable(self, idle: bool) -> None:
        for w in (*self.sliders.values(), self.compile, self.train_button):
            w.disabled = not idle
        self.stop_button.disabled = idle

    def _watch(self, run: LiveRun, every: float = 0.4) -> None:
        """Redraw from the run's state every ``every`` s until it ends (its own thread)."""
        while run.running:
            self.refresh(run)
            time.sleep(every)
        self.refresh(run)
        self._enable(True)

    def refresh(self, run: LiveRun) -> None:
        """Progress bar, curve and readouts from ``run`` as it is now."""
        total = run.config.iterations
        self.progress.value = run.iteration
        if run.state == "compiling":
            self.bar_text.value = "compiling the meta-step (tens of seconds the first time)…"
        elif run.state == "failed":
            self.status.error(run.error)
        else:
            rate = run.iteration / max(run.seconds, 1e-9)
            eta = (total - run.iteration) / rate if rate > 0 else float("nan")
            verb = {"stopped": "stopped at", "done": "done:"}.get(run.state, "")
            self.bar_text.value = (
                f"{verb} iteration {run.iteration:,} / {total:,}  [{run.seconds:.0f} s,"
                f" {rate:,.0f} it/s" + (f", ~{eta:.0f} s left]" if run.running else "]")
            )
        its, means = windows(list(run.history.loss))
        fit_now = self.one_step(run.meta) if run.meta is not None else None
        with self.fig.batch_update():
            self.fig.data[0].x, self.fig.data[0].y = its, means
            if fit_now is not None:
                self.fig.data[3].x = GRID.reshape(-1).tolist()
                self.fig.data[3].y = fit_now.tolist()
        if run.state in ("stopped", "done") and run.meta is not None:
            mse = self.held_out(run.meta)
            self.text.value = (
                f"one step on {HELD_OUT} held-out 5-shot tasks: your theta {fmt(mse)}, the"
                f" shipped sinusoid-maml {fmt(self._shipped_mse)} (30,000 iterations)"
            )

    # --- measurements ---------------------------------------------------------------------

    def one_step(self, meta: Params) -> torch.Tensor:
        """The fit after one inner step (inner_lr 0.01) on the fixed task."""
        learner = self.shipped.learner()
        fast, frozen, rule = learner.split({n: w.detach() for n, w in meta.items()})
        phi = learner.inner_loop(fast, frozen, rule, self.task.support, steps=1)
        with torch.no_grad():
            return call(learner.model, {**phi, **frozen}, GRID).reshape(-1)

    def held_out(self, meta: Params) -> float:
        """Mean query MSE after one step on 100 held-out 5-shot tasks (the README's protocol)."""
        learner = self.shipped.learner()
        tasks = get_problem("sinusoid").make_tasks("test")
        detached = {n: w.detach() for n, w in meta.items()}
        return evaluate(learner, detached, tasks, shots=5, tasks=HELD_OUT, steps=1).mean[1]

    def _figure(self) -> go.FigureWidget:
        fig = make_subplots(
            rows=1, cols=2, column_widths=[0.5, 0.5],
            subplot_titles=["meta-loss (query MSE after the inner loop)", "one step on this task"],
        )  # fmt: skip
        widget = go.FigureWidget(fig)
        widget.update_layout(width=920, height=340, margin=dict(t=40, b=40))
        widget.add_scatter(x=[], y=[], name=f"mean of {WINDOW} iterations", row=1, col=1,
                           line=dict(color=color("MAML")))  # fmt: skip
        x = GRID.reshape(-1).tolist()
        truth = sinusoid(GRID, self.amplitude, self.phase).reshape(-1).tolist()
        widget.add_scatter(x=x, y=truth, name="truth", line=dict(color=TRUTH_COLOR), row=1, col=2)
        widget.add_scatter(
            x=x, y=self.shipped_fit.tolist(), name="shipped sinusoid-maml",
            line=dict(color="#555555", dash="dot"), row=1, col=2,
        )  # fmt: skip
        widget.add_scatter(x=[], y=[], name="your theta", line=dict(color=color("MAML")),
                           row=1, col=2)  # fmt: skip
        widget.add_scatter(
            x=self.task.support.x.reshape(-1).tolist(), y=self.task.support.y.reshape(-1).tolist(),
            mode="markers", name="support", marker=dict(color="black", size=8), row=1, col=2,
        )  # fmt: skip
        widget.update_yaxes(type="log", row=1, col=1)
        widget.update_yaxes(range=[-5.5, 5.5], row=1, col=2)
        widget.update_xaxes(title_text="meta-iteration", row=1, col=1)
        widget.update_xaxes(title_text="x", row=1, col=2)
        return widget


def plot_live(panel: LiveMetaTraining, run: LiveRun) -> Figure:
    """Static twin: the run's meta-loss curve, and its theta's one-step fit beside the shipped
    one's on the panel's task."""
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 3.4))
    its, means = windows(list(run.history.loss))
    left.semilogy(its, means, color=color("MAML"))
    left.set(xlabel="meta-iteration", ylabel="query MSE", title=f"meta-loss, mean of {WINDOW}")
    x = GRID.reshape(-1)
    right.plot(x, sinusoid(GRID, panel.amplitude, panel.phase).reshape(-1), color=TRUTH_COLOR,
               label="truth")  # fmt: skip
    right.plot(x, panel.shipped_fit, ":", color="#555555", label="shipped sinusoid-maml")
    if run.meta is not None:
        right.plot(x, panel.one_step(run.meta), color=color("MAML"),
                   label=f"theta after {run.iteration:,} iterations")  # fmt: skip
    support = panel.task.support
    right.plot(support.x.reshape(-1), support.y.reshape(-1), "ko", ms=4)
    right.set(title="one inner step on this task", xlabel="x", ylim=(-5.5, 5.5))
    right.legend(fontsize=7)
    fig.tight_layout()
    return fig


__all__ = ["LIVE_CLASS", "LiveMetaTraining", "LiveRun", "live_config", "plot_live", "windows"]
