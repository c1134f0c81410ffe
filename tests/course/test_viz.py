"""Widget wiring without a browser: set sliders programmatically, check figures and numbers.

The widgets are built on freshly initialised networks (no checkpoint needed); what is checked is
that what they draw and print is exactly what the package computes.
"""

from __future__ import annotations

import math
import re

import pytest
import torch

from mamlviz.core.functional import call, params_of
from mamlviz.core.inner import adapt
from mamlviz.core.rules import SGD
from mamlviz.course.viz import common
from mamlviz.course.viz import sinusoid as vs
from mamlviz.course.viz import tasks as vt
from mamlviz.course.viz.adaptation import AdaptationExplorer, animation
from mamlviz.course.viz.landscape import LandscapeExplorer, mpl_contour, plotly_surface
from mamlviz.models import sinusoid_mlp
from mamlviz.tasks.sinusoid import SinusoidTasks, sinusoid


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """The chapters run the tiny sinusoid net on one thread; so do these tests (then restore)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _numbers(text: str) -> list[float]:
    return [float(t) for t in re.findall(r"\d+\.\d+", text)]


@pytest.fixture(scope="module")
def inits() -> tuple[torch.nn.Module, dict]:
    model = sinusoid_mlp(0)
    return model, {"MAML": params_of(model), "pretrained": params_of(sinusoid_mlp(1))}


@pytest.fixture
def explorer(inits) -> AdaptationExplorer:
    model, params = inits
    return AdaptationExplorer(model, params, inner_lr=0.01, inner_steps=3, shots=5)


def test_adaptation_draws_what_adapt_computes(explorer, inits) -> None:
    model, params = inits
    explorer.sliders["inner_steps"].value = 4
    episode = explorer.episode()
    assert episode.support.x.shape == (5, 1)
    phi = adapt(explorer.loss_fn, params["MAML"], episode.support, SGD(0.01), 4)
    # the MAML curve (trace 3) is the model at the Trajectory's last fast weights, i.e. phi
    drawn = torch.tensor(explorer.figure.data[3].y)
    expected = call(model, phi, explorer.x_plot).reshape(-1)
    assert torch.allclose(drawn, expected.detach(), atol=1e-5)
    outcome = explorer.outcomes["MAML"]
    assert len(outcome.trajectory) == 5
    for k in (0, 2, 4):
        at_k = call(model, outcome.trajectory.fast[k], explorer.x_plot).reshape(-1)
        assert torch.allclose(outcome.curves[k], at_k.detach(), atol=1e-6)
    query_mse = float(explorer.loss_fn(phi, episode.query))
    text = explorer.readout.value
    assert text.startswith("query MSE after 4 steps")
    assert _numbers(text)[0] == pytest.approx(query_mse, abs=1.5e-3)
    # support loss panel: one point per step, equal to the recorded losses
    n = len(explorer.inits)
    assert list(explorer.figure.data[2 + 2 * n].y) == pytest.approx(outcome.trajectory.losses)


def test_first_slider_changes_figure_and_number(explorer, inits) -> None:
    first = next(iter(explorer.sliders.values()))
    before_text, before_y = explorer.readout.value, list(explorer.figure.data[3].y)
    first.value = first.value * 2
    assert explorer.readout.value != before_text
    assert list(explorer.figure.data[3].y) != before_y

    model, params = inits
    land = LandscapeExplorer(model, params, inner_steps=3, grid=9)
    first = next(iter(land.sliders.values()))
    before_text, before_x = land.readout.value, list(land.figure.data[2].x)
    first.value = first.value * 2
    assert land.readout.value != before_text
    assert list(land.figure.data[2].x) != before_x


@pytest.mark.parametrize("name", ["shots", "amplitude", "phase"])
def test_task_sliders_change_the_task(explorer, name) -> None:
    truth, support = list(explorer.figure.data[0].y), list(explorer.figure.data[1].y)
    s = explorer.sliders[name]
    s.value = s.value + 2 * s.step
    assert list(explorer.figure.data[0].y) != truth or list(explorer.figure.data[1].y) != support
    if name == "shots":
        assert len(explorer.figure.data[1].x) == s.value


def test_divergence_is_reported_and_widget_recovers(explorer) -> None:
    explorer.sliders["inner_lr"].value = 3.0
    assert re.search(r"diverged: loss is (NaN|infinite) at inner step \d+", explorer.status.message)
    assert "lower the learning rate" in explorer.status.message
    assert "diverged" in explorer.readout.value
    explorer.sliders["inner_lr"].value = 0.01
    assert explorer.status.message == ""
    assert "diverged" not in explorer.readout.value
    assert len(_numbers(explorer.readout.value)) == len(explorer.inits)


def test_animation_has_a_frame_per_step_and_a_play_button(explorer) -> None:
    fig = animation(explorer)
    assert len(fig.frames) == explorer.value("inner_steps") + 1
    assert fig.layout.updatemenus[0].buttons[0].label == "play"
    # last frame: MAML curve after all steps, path with every step
    last = fig.frames[-1]
    assert list(last.data[2].y) == pytest.approx(explorer.outcomes["MAML"].curves[-1].tolist())
    assert len(last.data[-1].x) == explorer.value("inner_steps") + 1


def test_landscape_paths_are_projected_trajectories(inits) -> None:
    model, params = inits
    land = LandscapeExplorer(model, params, inner_steps=4, grid=11)
    for i, name in enumerate(land.names):
        traj, sl = land.trajectories[name], land.slices[name]
        path = land.paths[name]
        assert path.shape == (5, 2)
        assert path[0].tolist() == pytest.approx([0.0, 0.0], abs=1e-5)  # the init is the origin
        assert path[2].tolist() == pytest.approx(list(sl.plane.project(traj.fast[2])), abs=1e-6)
        assert list(land.figure.data[2 + i].x) == pytest.approx(path[:, 0].tolist())
        # a grid value is the support loss at that point of the plane
        point = sl.plane.point(float(sl.a[3]), float(sl.b[7]))
        assert float(sl.z[7, 3]) == pytest.approx(float(land.loss_fn(point, land.support)), 1e-5)
    losses = [land.trajectories[n].losses[-1] for n in land.names]
    # the landscape readout prints 3 significant digits
    assert _numbers(land.readout.value) == pytest.approx(losses, rel=5e-3)


def test_landscape_divergence_and_recovery(inits) -> None:
    model, params = inits
    land = LandscapeExplorer(model, params, inner_steps=6, grid=9)
    land.sliders["inner_lr"].value = 3.0
    assert "diverged: loss is" in land.status.message
    assert "diverged" in land.readout.value
    land.sliders["inner_lr"].value = 0.01
    assert land.status.message == "" and "diverged" not in land.readout.value


def test_static_figures(explorer) -> None:
    x = explorer.x_plot
    episode = explorer.episode()
    curves = {n: o.curves for n, o in explorer.outcomes.items()}
    truth = curves["MAML"][0]
    fig = vs.mpl_adaptation(x, truth, episode.support, curves, steps=[0, 1, 3])
    assert len(fig.axes) == len(curves) and len(fig.axes[0].lines) == 1 + 3
    fig = vs.mpl_task_family(x, [1.0, 2.0], [0.0, 1.0])
    assert len(fig.axes[0].lines) == 2
    a, b = torch.linspace(-1, 1, 5), torch.linspace(-1, 1, 4)
    z = torch.rand(4, 5)
    paths = {"MAML": torch.zeros(3, 2)}
    assert len(mpl_contour(a, b, z, paths).axes) == 2  # plot + colour bar
    fig3d = plotly_surface(a, b, z, paths, {"MAML": torch.ones(3)})
    assert len(fig3d.data) == 2


def test_common_helpers() -> None:
    assert common.slider("n", 3, 1, 9, 1, kind="int").value == 3
    assert common.slider("lr", 0.01, -3, 0, 0.1, kind="log").value == pytest.approx(0.01)
    with pytest.raises(ValueError, match="kind"):
        common.slider("x", 1, 0, 2, 1, kind="cubic")
    status = common.Status()

    def fail() -> None:
        raise ValueError("inner_lr must be in [0, inf), got -1")

    common.guarded(status, fail)()
    assert "inner_lr must be" in status.message and "inner_lr" in status.widget.value
    status.ok()
    assert status.widget.value == ""
    assert common.fmt(float("nan")) == "diverged" and common.fmt(0.41234) == "0.412"


def test_mean_function_is_the_average_task() -> None:
    tasks = SinusoidTasks()
    x = torch.linspace(-5, 5, 7, dtype=torch.float64).unsqueeze(-1)
    # closed form for phase ~ U[0, pi]: -(2 / pi) E[A] cos x
    expected = -(2 / math.pi) * 2.55 * torch.cos(x)
    assert torch.allclose(vt.mean_function(x, tasks), expected)
    amps, phases = tasks.sample_tasks(torch.Generator().manual_seed(0), 100_000, torch.float64)
    monte_carlo = (amps * torch.sin(x - phases)).mean(1, keepdim=True)
    assert torch.allclose(monte_carlo, expected, atol=0.03)


def test_task_explorer_first_slider_and_numbers(inits) -> None:
    model, params = inits
    explorer = vt.TaskExplorer(model, params["pretrained"])
    first = next(iter(explorer.sliders.values()))
    before_text, before_y = explorer.readout.value, list(explorer.figure.data[-2].y)
    first.value = 4.0
    assert explorer.readout.value != before_text
    assert list(explorer.figure.data[-2].y) != before_y
    explorer.sliders["shots"].value = 7
    assert len(explorer.figure.data[-1].x) == 7
    y = sinusoid(explorer.x_query, 4.0, explorer.sliders["phase"].value)
    zero_mse = float((y**2).mean())
    assert _numbers(explorer.readout.value)[-1] == pytest.approx(zero_mse, abs=1.5e-3)


def test_main_widgets_carry_the_main_class(explorer, inits) -> None:
    model, params = inits
    land = LandscapeExplorer(model, params, inner_steps=2, grid=5)
    tasks = vt.TaskExplorer(model, params["pretrained"])
    for widget in (explorer.widget, land.widget, tasks.widget):
        assert common.MAIN_CLASS in widget._dom_classes
