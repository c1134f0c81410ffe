"""The chapters in a real browser: JupyterLab + Chromium driven by Playwright.

For each chapter: open it, Run > Run All Cells, wait for the kernel, then move the FIRST slider
of the main widget with the keyboard and check that a figure and a printed number changed and
that no cell shows a traceback. Screenshots go to ``$MAMLVIZ_SCREENSHOTS`` (default
``artifacts/screenshots/``, git-ignored).

In CI (``CI`` set) the test must run: a missing Chromium or Playwright is a failure. On a
learner's machine it is skipped with a message saying how to enable it.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from browser.lab import CHROMIUM_FLAGS, Lab, chromium_path, start_lab

REPO = Path(__file__).resolve().parents[2]
NOTEBOOKS = REPO / "notebooks"
# Chapter prefixes of notebooks/NN_*.ipynb to drive; MAMLVIZ_BROWSER_CHAPTERS="05,06" overrides.
CHAPTERS = os.environ.get("MAMLVIZ_BROWSER_CHAPTERS", "02,03,04,05,08,09,10,11,12").split(",")
RUN_ALL_TIMEOUT = float(os.environ.get("MAMLVIZ_BROWSER_TIMEOUT", "300"))
# Widgets besides the main one that a chapter's browser test also moves (their CSS class).
# Chapter 05's is the 2-D toy (mamlviz.course.viz.toy2d.TOY2D_CLASS); its first slider is inner_lr.
SECONDARY = {"02": ["mamlviz-scrubber"], "05": ["mamlviz-toy2d"]}
# Chapters with a live meta-training panel (mamlviz.course.viz.live.LIVE_CLASS): press Train,
# see the loss curve grow, press Stop, see it stop and the panel come back.
LIVE = {"02": "mamlviz-live"}

pytestmark = [pytest.mark.browser, pytest.mark.slow, pytest.mark.timeout(900)]


def unavailable(reason: str) -> None:
    """Fail in CI, skip elsewhere, with a message that says how to enable the test."""
    message = (
        f"browser test not run: {reason}. Install Chromium (`apt-get install chromium`) or set "
        "MAMLVIZ_CHROMIUM=/path/to/chromium; Playwright's own browsers are not needed."
    )
    if os.environ.get("CI"):
        pytest.fail(message)
    pytest.skip(message)


def screenshot_dir() -> Path:
    path = Path(os.environ.get("MAMLVIZ_SCREENSHOTS", REPO / "artifacts" / "screenshots"))
    path.mkdir(parents=True, exist_ok=True)
    return path


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    server = start_lab(NOTEBOOKS, tmp_path_factory.mktemp("lab"))
    yield server
    server.stop()


@pytest.fixture(scope="module")
def browser(tmp_path_factory: pytest.TempPathFactory) -> Iterator[object]:
    executable = chromium_path()
    if executable is None:
        unavailable("Chromium not found")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        unavailable("the playwright Python package is not installed")
    with sync_playwright() as pw:
        context = pw.chromium.launch_persistent_context(
            str(tmp_path_factory.mktemp("chromium-profile")),
            executable_path=executable,
            headless=True,
            args=CHROMIUM_FLAGS,
            viewport={"width": 1400, "height": 1000},
        )
        yield context
        context.close()


def chapter_path(prefix: str) -> Path:
    found = sorted(NOTEBOOKS.glob(f"{prefix}_*.ipynb"))
    if not found:
        pytest.skip(f"no notebooks/{prefix}_*.ipynb yet")
    return found[0]


def wait_for_change(read, before: str, timeout: float = 20.0) -> str:
    """Poll ``read()`` until it differs from ``before`` (or the timeout passes)."""
    deadline, now = time.monotonic() + timeout, read()
    while now == before and time.monotonic() < deadline:
        time.sleep(0.25)
        now = read()
    return now


@pytest.mark.parametrize("prefix", CHAPTERS)
def test_chapter_runs_and_first_slider_updates(prefix: str, browser, lab: Lab) -> None:
    from browser import notebook as nb

    path = chapter_path(prefix)
    page = browser.new_page()
    shots = screenshot_dir()
    try:
        nb.open_notebook(page, lab.url, path.name)
        nb.run_all(page, RUN_ALL_TIMEOUT)
        errors = nb.error_outputs(page)
        assert not errors, f"{path.name}: a cell shows an error:\n{errors[0][:2000]}"

        widget = nb.main_widget(page)
        widget.scroll_into_view_if_needed()
        widget.locator(".js-plotly-plot, .widget-image, img, canvas").first.wait_for(timeout=60_000)
        time.sleep(1.0)  # let the figure finish its first draw
        numbers, data = nb.printed_numbers(widget), nb.figure_data(widget)
        widget.screenshot(path=shots / f"{path.stem}-before.png")
        image = widget.screenshot()

        readout = nb.move_first_slider(page, widget)
        new_numbers = wait_for_change(lambda: nb.printed_numbers(widget), numbers)
        new_data = wait_for_change(lambda: nb.figure_data(widget), data)
        time.sleep(1.0)
        widget.screenshot(path=shots / f"{path.stem}-after.png")
        page.screenshot(path=shots / f"{path.stem}.png")

        assert numbers, f"{path.name}: the main widget prints no number"
        assert new_numbers != numbers, f"{path.name}: no printed number changed ({readout=})"
        if data not in ("", "[]"):
            assert new_data != data, f"{path.name}: plotly figure data did not change"
        else:  # matplotlib/image output: compare pixels
            assert widget.screenshot() != image, f"{path.name}: the figure did not change"
        errors = nb.error_outputs(page)
        assert not errors, f"{path.name}: moving the slider raised:\n{errors[0][:2000]}"
        for css in SECONDARY.get(prefix, []):
            other = page.locator(f"{nb.PANEL} .{css}").first
            other.scroll_into_view_if_needed()
            other.locator(".js-plotly-plot").first.wait_for(timeout=60_000)
            numbers, data = nb.printed_numbers(other), nb.figure_data(other)
            nb.move_first_slider(page, other)
            assert wait_for_change(lambda o=other: nb.printed_numbers(o), numbers) != numbers, (
                f"{path.name}: {css}: no printed number changed"
            )
            assert wait_for_change(lambda o=other: nb.figure_data(o), data) != data, (
                f"{path.name}: {css}: the figure did not change"
            )
            other.screenshot(path=shots / f"{path.stem}-{css}.png")
        if prefix in LIVE:
            drive_live_panel(page, page.locator(f"{nb.PANEL} .{LIVE[prefix]}").first, shots)
            errors = nb.error_outputs(page)
            assert not errors, f"{path.name}: the live panel raised:\n{errors[0][:2000]}"
    finally:
        page.close()
        lab.shutdown_kernels()


def drive_live_panel(page, panel, shots: Path) -> None:
    """Train (eager, so no compile wait), the curve grows, Stop ends the run and keeps it."""
    from browser import notebook as nb

    panel.scroll_into_view_if_needed()
    panel.locator(".js-plotly-plot").first.wait_for(timeout=60_000)
    panel.locator(".widget-checkbox input[type=checkbox]").first.uncheck()
    curve = lambda: panel.evaluate(CURVE_POINTS_JS)
    assert curve() == 0, "the loss curve has points before Train"
    panel.locator("button", has_text="Train").click()
    deadline = time.monotonic() + 120
    while curve() < 3 and time.monotonic() < deadline:
        time.sleep(0.5)
    first = curve()
    assert first >= 3, f"the loss curve did not grow after Train ({first} points)"
    grown = wait_for_change(lambda: str(curve()), str(first), timeout=30)
    assert int(grown) > first, "the loss curve stopped growing while training"
    panel.locator("button", has_text="Stop").click()
    text = lambda: panel.evaluate(nb.PRINTED_TEXT_JS)
    deadline = time.monotonic() + 60
    while "stopped at" not in text() and time.monotonic() < deadline:
        time.sleep(0.5)
    assert "stopped at" in text(), f"Stop did not stop the run: {text()[:300]}"
    held = curve()
    time.sleep(2.0)
    assert curve() == held, "the loss curve still grows after Stop"
    assert "your theta" in text(), "no held-out MSE of the stopped run's theta"
    assert panel.locator("button", has_text="Train").is_enabled(), "Train stays disabled"
    panel.screenshot(path=shots / "02_maml-live.png")


# points of the first plotly trace (the meta-loss curve) of the panel
CURVE_POINTS_JS = """el => {
  const plot = el.querySelector('.js-plotly-plot');
  return plot && plot.data && plot.data[0].x ? plot.data[0].x.length : 0;
}"""
