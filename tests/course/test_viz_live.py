"""Chapter 02's live meta-training panel: its runs are the preset's runs, Stop keeps exactly
what was learned, a diverging run is reported in words, and the panel's curve is the windowed
mean of the run's own meta-loss."""

from __future__ import annotations

import time

import pytest
import torch

from mamlviz.course.viz.live import (
    WINDOW,
    LiveMetaTraining,
    LiveRun,
    live_config,
    plot_live,
    windows,
)
from mamlviz.training.problems import get_problem
from mamlviz.training.train import fit


def test_live_config_is_the_preset_with_the_panels_settings_on_top():
    preset = get_problem("sinusoid").preset("live")
    c = live_config(inner_lr=0.05, inner_steps=3, shots=7, meta_batch=4)
    assert (c.algorithm, c.inner_lr, c.inner_steps, c.shots, c.meta_batch) == (
        "maml", 0.05, 3, 7, 4,
    )  # fmt: skip
    for key in ("outer_lr", "outer_schedule", "iterations", "query_shots"):
        assert getattr(c, key) == preset.overrides[key]
    assert live_config(iterations=300).iterations == 300
    with pytest.raises(ValueError, match="meta_batch must be in"):
        live_config(meta_batch=0)


def test_windows_are_means_of_complete_windows():
    loss = [float(i) for i in range(250)]
    its, means = windows(loss, 100)
    assert its == [100, 200]
    assert means == [sum(range(100)) / 100, sum(range(100, 200)) / 100]
    assert windows(loss[:99], 100) == ([], [])


def test_a_live_run_is_the_presets_fit_and_stop_keeps_exactly_what_was_learned():
    config = live_config(iterations=400, meta_batch=5)
    done = LiveRun(config, compile=False).run()
    want, history = fit(config, progress=False)
    assert done.state == "done" and done.iteration == 400
    for n in want:
        torch.testing.assert_close(done.meta[n], want[n], rtol=0, atol=0)
    assert done.history.loss == history.loss

    run = LiveRun(live_config(iterations=50_000, meta_batch=5), compile=False)
    run.start()
    deadline = time.monotonic() + 60
    while run.iteration < 30 and time.monotonic() < deadline:
        time.sleep(0.05)
    run.stop()
    run.join(60)
    assert run.state == "stopped" and 30 <= run.iteration < 50_000
    assert len(run.history.loss) == run.iteration
    kept, _ = fit(run.config, progress=False, stop_after=run.iteration)
    for n in kept:  # theta after exactly the iterations that ran, not the init, not more
        torch.testing.assert_close(run.meta[n], kept[n], rtol=0, atol=0)


def test_a_diverging_run_says_so_in_words():
    run = LiveRun(live_config(inner_lr=0.1, inner_steps=5, iterations=3000), compile=False).run()
    assert run.state == "failed"
    assert "diverged" in run.error and "lower" in run.error


@pytest.mark.slow
def test_the_panel_trains_stops_and_reports_against_the_shipped_init():
    panel = LiveMetaTraining()
    assert list(panel.fig.data[0].x) == []
    assert "25,000 meta-iterations" in panel.status.widget.value
    panel.sliders["meta_batch"].value = 6
    assert "of 6 tasks" in panel.status.widget.value  # the preview follows the sliders
    panel.compile.value = False
    panel.sliders["iterations"].value = 50_000
    panel.train()
    assert panel.train_button.disabled and not panel.stop_button.disabled
    assert all(s.disabled for s in panel.sliders.values())
    deadline = time.monotonic() + 60
    while panel.run.iteration < 3 * WINDOW and time.monotonic() < deadline:
        time.sleep(0.1)
    panel.stop()
    panel.run.join(60)
    time.sleep(1.0)  # the watcher's last refresh
    run = panel.run
    assert run.state == "stopped"
    its, means = windows(run.history.loss)
    assert list(panel.fig.data[0].x) == its and list(panel.fig.data[0].y) == means
    assert len(its) >= 3
    assert "stopped at iteration" in panel.bar_text.value
    assert f"{panel.held_out(run.meta):.3f}" in panel.text.value
    assert f"{panel.held_out(panel.shipped.meta):.3f}" in panel.text.value
    assert not panel.train_button.disabled and panel.stop_button.disabled
    figure = plot_live(panel, run)
    assert len(figure.axes) == 2 and len(figure.axes[0].lines[0].get_xdata()) == len(its)
