"""Chapter 01's support-set learners, in float64: the sine fit recovers a noise-free task from
two points and is the minimum-norm sine through one; interpolation is numpy.interp; the widget
prints the errors of exactly these fits on the support points it shows."""

from __future__ import annotations

import re

import numpy as np
import pytest
import torch

from mamlviz.core.functional import params_of
from mamlviz.course.viz import tasks as vt
from mamlviz.models import sinusoid_mlp
from mamlviz.tasks.sinusoid import SinusoidTasks, sinusoid

F64 = torch.float64


def _x(*values: float) -> torch.Tensor:
    return torch.tensor(values, dtype=F64).unsqueeze(-1)


def test_sine_fit_recovers_a_task_from_two_points() -> None:
    xs, x = _x(-2.0, 0.7), torch.linspace(-5, 5, 50, dtype=F64).unsqueeze(-1)
    fit = vt.sine_fit(xs, sinusoid(xs, 3.7, 2.1), x)
    assert torch.allclose(fit, sinusoid(x, 3.7, 2.1), atol=1e-10)


def test_sine_fit_through_one_point_is_the_minimum_norm_sine() -> None:
    x0 = _x(1.2)
    y0 = sinusoid(x0, 2.0, 0.4)
    x = torch.linspace(-5, 5, 50, dtype=F64).unsqueeze(-1)
    fit = vt.sine_fit(x0, y0, x)
    assert float(vt.sine_fit(x0, y0, x0)) == pytest.approx(float(y0), abs=1e-12)
    # min-norm (a, b) solving a sin x0 + b cos x0 = y0 is y0 (sin x0, cos x0) (a unit vector)
    a, b = float(y0) * torch.sin(x0), float(y0) * torch.cos(x0)
    assert torch.allclose(fit, a * torch.sin(x) + b * torch.cos(x), atol=1e-12)


def test_interpolate_is_numpy_interp() -> None:
    xs = _x(2.0, -3.0, 0.5, 4.0)
    ys = _x(1.0, -2.0, 0.3, 5.0)
    x = torch.linspace(-5, 5, 41, dtype=F64).unsqueeze(-1)
    order = np.argsort(xs.numpy().ravel())
    expect = np.interp(x.numpy().ravel(), xs.numpy().ravel()[order], ys.numpy().ravel()[order])
    assert np.allclose(vt.interpolate(xs, ys, x).numpy().ravel(), expect, atol=1e-12)
    assert torch.allclose(vt.interpolate(_x(1.0), _x(2.5), x), torch.full_like(x, 2.5))


def test_fit_errors_average_the_fits_over_tasks() -> None:
    tasks = SinusoidTasks()
    errors = vt.fit_errors(tasks, [1, 3], n_tasks=2, query_shots=7, seed=3, dtype=F64)
    episode = tasks.sample(torch.Generator().manual_seed(3), 3, 7, 2, F64)
    for j, k in enumerate((1, 3)):
        expect = np.mean([
            float(((vt.interpolate(t.support.x[:k], t.support.y[:k], t.query.x) - t.query.y) ** 2)
                  .mean())
            for t in (episode.task(0), episode.task(1))
        ])  # fmt: skip
        assert errors["interpolation"][j] == pytest.approx(expect, rel=1e-12)
    assert errors["sine fit"][1] == pytest.approx(0.0, abs=1e-12)  # 3 noise-free points: exact


def test_task_explorer_prints_the_fits_to_the_shown_points() -> None:
    torch.set_num_threads(1)
    model = sinusoid_mlp(0)
    explorer = vt.TaskExplorer(model, params_of(model))
    explorer.sliders["shots"].value = 3
    before = explorer.errors()
    explorer.sliders["shots"].value = 8
    after = explorer.errors()
    assert after["interpolation"] != before["interpolation"]
    for name in ("pretrained network", "mean function", "predicting 0"):
        assert after[name] == before[name]  # these ignore the support set
    xs, ys = explorer.support()
    assert xs.shape == (8, 1)
    y = sinusoid(explorer.x_query, explorer.sliders["amplitude"].value,
                 explorer.sliders["phase"].value)  # fmt: skip
    expect = float(((vt.interpolate(xs, ys, explorer.x_query) - y) ** 2).mean())
    assert after["interpolation"] == pytest.approx(expect)
    numbers = [float(t) for t in re.findall(r"\d+\.\d+", explorer.readout.value)]
    assert numbers == pytest.approx(list(after.values()), abs=1.5e-3)
    assert "8 support points" in explorer.readout.value
    drawn = torch.tensor(explorer.figure.data[-3].y)  # the interpolation curve
    assert torch.allclose(drawn, vt.interpolate(xs, ys, explorer.x_plot).reshape(-1), atol=1e-6)
    fig = explorer.static_figure()
    labels = [t.get_text() for t in fig.axes[0].get_legend().get_texts()]
    for line in fig.axes[0].lines:
        assert line.get_label() in labels or line.get_label().startswith("_")
    assert len(fig.axes[0].lines) == len(explorer.others) + 5
