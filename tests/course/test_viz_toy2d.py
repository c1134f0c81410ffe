"""Chapter 05's 2-D toy widget: its points and arrows are the closed forms at the sliders'
values, a refused setting is reported in words, and the static twin draws the same scene."""

from __future__ import annotations

import pytest
import torch
from matplotlib.figure import Figure

from mamlviz.course import toy2d
from mamlviz.course.viz.toy2d import LR_MAX, POINTS, Toy2DExplorer, plot_toy2d, window


@pytest.fixture(scope="module")
def toy() -> Toy2DExplorer:
    return Toy2DExplorer(inner_lr=0.1, inner_steps=1, lam=1.0)


def point(toy: Toy2DExplorer, name: str) -> tuple[float, ...]:
    trace = toy.fig.data[toy.first_point + POINTS.index(name)]
    return (*trace.x, *trace.y)


def assert_at(toy: Toy2DExplorer, name: str, want: torch.Tensor) -> None:
    got = point(toy, name)
    assert len(got) == 2, f"{name} is not drawn"
    assert max(abs(a - float(b)) for a, b in zip(got, want, strict=True)) < 1e-12


def test_the_first_slider_is_inner_lr_and_stays_below_the_stability_bound(toy) -> None:
    first = next(iter(toy.sliders))
    assert first == "inner_lr"
    assert toy.sliders["inner_lr"].max < toy2d.max_inner_lr() < toy.sliders["inner_lr"].max + 0.005


def test_sliders_move_the_points_to_the_closed_form_optima(toy) -> None:
    toy.sliders["inner_steps"].value = 1
    toy.sliders["inner_lr"].value = 0.2
    assert_at(toy, "MAML", toy2d.optimum("maml", 0.2, 1))
    before = point(toy, "Reptile")
    toy.sliders["inner_steps"].value = 4
    for name in ("pretrained", "MAML", "Reptile"):
        assert_at(toy, name, toy2d.optimum(name.lower(), 0.2, 4))
    assert point(toy, "Reptile") != before
    toy.sliders["lam"].value = 10.0
    assert_at(toy, "iMAML", toy2d.optimum("imaml", 0.2, 4, lam=10.0))
    assert_at(toy, "closest", toy2d.closest_point())
    # the arrows end at the adapted phi_t of each task after k steps from the point
    theta = toy2d.optimum("maml", 0.2, 4)
    arrow = toy.fig.data[toy.first_arrow]
    tips = torch.tensor([[arrow.x[i], arrow.y[i]] for i in (1, 4, 7)], dtype=torch.float64)
    torch.testing.assert_close(tips, toy2d.adapted(theta, 0.2, 4), rtol=0, atol=1e-12)
    assert (arrow.x[0], arrow.y[0]) == (float(theta[0]), float(theta[1]))
    # and the readout says where MAML is in numbers that match
    flat = int(toy2d.curvatures().argmin())
    assert f"MAML is {float(toy2d.distances(theta)[flat]):.3f} from the flattest" in toy.text.value


def test_the_contour_is_mamls_post_adaptation_loss(toy) -> None:
    toy.sliders["inner_lr"].value, toy.sliders["inner_steps"].value = 0.15, 2
    c = toy.fig.data[0]
    i, j = 17, 40
    theta = torch.tensor([c.x[j], c.y[i]], dtype=torch.float64)
    want = torch.log10(toy2d.post_adaptation_loss(theta, 0.15, 2))
    assert abs(c.z[i][j] - float(want)) < 1e-12


def test_fomamls_saddle_is_not_drawn_and_is_explained(toy) -> None:
    toy.sliders["inner_steps"].value = 1
    toy.sliders["inner_lr"].value = 0.3  # c = 1 - 0.3 * 5.12 < 0 on the sharpest task
    assert point(toy, "FOMAML") == ()
    assert "saddle" in toy.text.value and toy.status.message == ""
    toy.sliders["inner_steps"].value = 2  # c^2 > 0: a minimum again
    assert_at(toy, "FOMAML", toy2d.optimum("fomaml", 0.3, 2))


def test_an_invalid_setting_is_reported_and_the_widget_keeps_working(toy) -> None:
    s = toy.sliders["inner_lr"]
    s.max = 0.45  # as a learner widening the slider might
    s.value = 0.42
    assert "inner_lr" in toy.status.message and "diverge" in toy.status.message
    s.value = 0.25
    s.max = LR_MAX
    assert toy.status.message == ""
    assert_at(toy, "MAML", toy2d.optimum("maml", 0.25, toy.sliders["inner_steps"].value))


def test_the_frame_holds_every_point_and_every_trace_is_named(toy) -> None:
    x0, x1, y0, y1 = window()
    assert tuple(toy.fig.layout.xaxis.range) == (x0, x1)
    assert toy.fig.layout.xaxis.title.text == "theta_1"
    assert toy.fig.layout.yaxis.title.text == "theta_2"
    for lr, k, lam in ((0.005, 1, 0.1), (0.39, 10, 31.6), (0.2, 3, 1.0), (0.39, 1, 1.0)):
        toy.sliders["inner_lr"].value, toy.sliders["inner_steps"].value = lr, k
        toy.sliders["lam"].value = lam
        for trace in toy.fig.data[toy.first_point :]:
            xs = [v for v in trace.x if v is not None]
            ys = [v for v in trace.y if v is not None]
            assert all(x0 <= v <= x1 for v in xs) and all(y0 <= v <= y1 for v in ys), trace.name
    names = [t.name for t in toy.fig.data]
    assert all(names) and len(set(names)) == len(names)
    assert all(t.showlegend is not False for t in toy.fig.data)


def test_the_static_twin_draws_the_same_scene() -> None:
    fig = plot_toy2d(0.2, 3, 1.0)
    assert isinstance(fig, Figure)
    ax = fig.axes[0]
    assert (ax.get_xlabel(), ax.get_ylabel()) == ("theta_1", "theta_2")
    lines = {line.get_label(): line for line in ax.get_lines()}
    assert sum(label.startswith("task ") for label in lines) == 3
    for name, algorithm in (("MAML", "maml"), ("Reptile", "reptile"), ("iMAML", "imaml")):
        want = toy2d.optimum(algorithm, 0.2, 3, 1.0)
        got = lines[name].get_xydata()[0]
        assert abs(got[0] - float(want[0])) < 1e-12 and abs(got[1] - float(want[1])) < 1e-12
    assert "FOMAML" not in lines  # c = 1 - 0.2 * 5.12 < 0 and k odd: a saddle
    arrows = [a for a in ax.texts if a.arrow_patch is not None]
    assert len(arrows) == 6  # k-step arrows to the three tasks from MAML and from Reptile
    legend = {t.get_text() for t in ax.get_legend().get_texts()}
    assert {"MAML", "Reptile", "iMAML", "pretrained", "closest to all lines"} <= legend
