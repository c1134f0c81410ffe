"""Playwright steps on a JupyterLab notebook page: run all cells, find the main widget, read it.

The chapter's main widget is the ``ipywidgets`` container with CSS class ``mamlviz-main``
(``box.add_class("mamlviz-main")``); without one, the output area of the first slider is used.
"""

from __future__ import annotations

import re
import time

from playwright.sync_api import Locator, Page

PANEL = ".jp-NotebookPanel:not(.lm-mod-hidden)"  # the notebook tab on screen
MAIN = f"{PANEL} .mamlviz-main"
ERROR_OUTPUTS = (
    f'{PANEL} .jp-RenderedText[data-mime-type="application/vnd.jupyter.stderr"], '
    f'{PANEL} .jp-RenderedText[data-mime-type="application/vnd.jupyter.error"]'
)
START_WAIT = 30.0  # seconds for the first cell to show [*] after Run All is clicked
RUN_ALL_CLICKS = 3
NUMBER = re.compile(r"[-+]?\d+(?:\.\d+)?(?:[eE][-+]?\d+)?")

# Text of the container without sliders, readouts and figures: the "printed numbers".
PRINTED_TEXT_JS = """el => {
  const copy = el.cloneNode(true);
  copy.querySelectorAll('.widget-slider, .widget-readout, .js-plotly-plot, svg, canvas, img,'
    + ' .widget-dropdown, .widget-toggle-buttons, .widget-button')
    .forEach(n => n.remove());
  return copy.textContent;
}"""

# Data of every plotly figure inside the container (plotly.js keeps it on the graph div).
FIGURE_DATA_JS = """el => JSON.stringify(Array.from(el.querySelectorAll('.js-plotly-plot'))
  .map(gd => (gd.data || []).map(t => [t.x, t.y, t.z])))"""


def open_notebook(page: Page, url: str, name: str) -> None:
    """Open ``name`` alone (``?reset`` drops restored tabs) and wait until its kernel is idle."""
    page.goto(f"{url}/lab/tree/{name}?reset", wait_until="domcontentloaded")
    page.wait_for_selector(f"{PANEL} .jp-Cell", timeout=120_000)
    time.sleep(2.0)  # a "Select Kernel" dialog, if any, shows up within this time
    wait_idle(page, 120)


def accept_kernel_dialog(page: Page) -> bool:
    """Accept JupyterLab's "Select Kernel" dialog (the notebook's own kernel) if it is open.

    It can appear when the page loads before the kernel specs do; the default is right.
    """
    dialog = page.locator(".jp-Dialog", has_text="Select Kernel")
    if not dialog.count():
        return False
    dialog.locator(".jp-Dialog-button.jp-mod-accept").first.click()
    return True


def wait_idle(page: Page, timeout: float) -> None:
    """Wait for the kernel's execution indicator to read idle (accepting a kernel dialog)."""
    indicator = page.locator(f"{PANEL} .jp-Notebook-ExecutionIndicator").first
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        accept_kernel_dialog(page)
        if indicator.count() and indicator.get_attribute("data-status") == "idle":
            return
        time.sleep(0.5)
    raise TimeoutError(f"the kernel did not become idle within {timeout:.0f} s")


def run_all(page: Page, timeout: float) -> None:
    """Run > Run All Cells from the menu bar, then wait until execution has finished.

    Finished means: the kernel reads idle, no prompt shows ``[*]``, and that stays so for 3 s.
    JupyterLab stops "Run All" at the first cell that raises; cells left at ``[ ]`` then mean
    the notebook failed, and the error outputs are reported.
    """
    click_run_all(page)
    deadline, quiet_since, started = time.monotonic() + timeout, None, False
    clicked_at, clicks = time.monotonic(), 1
    prompts: list[str] = []
    while time.monotonic() < deadline:
        prompts = page.locator(f"{PANEL} .jp-CodeCell .jp-InputPrompt").all_inner_texts()
        started = started or any(re.search(r"\[(\*|\d+)\]", p) for p in prompts)
        if not started and clicks < RUN_ALL_CLICKS and time.monotonic() - clicked_at > START_WAIT:
            # Nothing was queued: the click landed before the notebook took the focus (seen on
            # the first chapter of a fresh server). Nothing has run yet, so clicking again is safe.
            click_run_all(page)
            clicked_at, clicks = time.monotonic(), clicks + 1
        indicator = page.locator(f"{PANEL} .jp-Notebook-ExecutionIndicator").first
        quiet = indicator.get_attribute("data-status") == "idle"
        quiet = quiet and started and not any("*" in p for p in prompts)
        quiet_since = (quiet_since or time.monotonic()) if quiet else None
        if quiet_since is not None and time.monotonic() - quiet_since > 3.0:
            if any(re.fullmatch(r"\[\s*\]:?", p.strip()) for p in prompts):
                errors = error_outputs(page)
                detail = errors[0][:2000] if errors else str(prompts)
                raise AssertionError(f"Run All stopped before the end: {detail}")
            return
        dialog = page.locator(".jp-Dialog")
        if dialog.count() and not accept_kernel_dialog(page):
            raise AssertionError(f"a dialog blocks the notebook: {dialog.first.inner_text()[:500]}")
        time.sleep(1.0)
    state = "cells still running" if started else f"no cell started after {clicks} Run All clicks"
    raise TimeoutError(f"{state} after {timeout:.0f} s: {prompts}")


def click_run_all(page: Page) -> None:
    """Make the notebook the current widget (click its first prompt), then Run > Run All Cells."""
    page.locator(f"{PANEL} .jp-CodeCell .jp-InputPrompt").first.click()
    page.locator(".lm-MenuBar-itemLabel", has_text=re.compile(r"^Run$")).click()
    page.locator(".lm-Menu-itemLabel", has_text=re.compile(r"^Run All Cells$")).click()


def error_outputs(page: Page) -> list[str]:
    """Texts of outputs that hold a traceback or an error."""
    texts = page.locator(ERROR_OUTPUTS).all_inner_texts()
    return [t for t in texts if "Traceback" in t or "Error" in t]


def main_widget(page: Page) -> Locator:
    """The chapter's main widget, or the output area holding the first slider."""
    main = page.locator(MAIN)
    if main.count():
        return main.first
    first_slider = page.locator(f"{PANEL} .widget-slider").first
    return first_slider.locator("xpath=ancestor::div[contains(@class,'jp-OutputArea')][1]")


def printed_numbers(widget: Locator) -> list[str]:
    """Numbers printed in the widget's text (sliders and figures excluded)."""
    return NUMBER.findall(widget.evaluate(PRINTED_TEXT_JS))


def figure_data(widget: Locator) -> str:
    """JSON of the plotly figures' data in the widget ('' when it has none)."""
    return widget.evaluate(FIGURE_DATA_JS)


def move_first_slider(page: Page, widget: Locator, presses: int = 3) -> str:
    """Focus the first slider handle of ``widget`` and press ArrowRight; returns its readout."""
    handle = widget.locator(".widget-slider .noUi-handle").first
    handle.scroll_into_view_if_needed()
    handle.focus()
    for _ in range(presses):
        page.keyboard.press("ArrowRight")
        time.sleep(0.2)
    return widget.locator(".widget-slider .widget-readout").first.inner_text()
