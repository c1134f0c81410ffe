"""Playwright steps on a JupyterLab notebook page: run all cells, find the main widget, read it.

The chapter's main widget is the ``ipywidgets`` container with CSS class ``mamlviz-main``
(``box.add_class("mamlviz-main")``); without one, the output area of the first slider is used.
"""

from __future__ import annotations

import re
import time

from playwright.sync_api import Locator, Page

MAIN = ".mamlviz-main"
ERROR_OUTPUTS = (
    '.jp-RenderedText[data-mime-type="application/vnd.jupyter.stderr"], '
    '.jp-RenderedText[data-mime-type="application/vnd.jupyter.error"]'
)
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
    """Open ``name`` in JupyterLab and wait until its kernel is idle."""
    page.goto(f"{url}/lab/tree/{name}", wait_until="domcontentloaded")
    page.wait_for_selector(".jp-NotebookPanel .jp-Cell", timeout=120_000)
    wait_idle(page, 120)


def wait_idle(page: Page, timeout: float) -> None:
    """Wait for the kernel's execution indicator to read idle."""
    page.wait_for_selector(
        '.jp-NotebookPanel:not(.lm-mod-hidden) .jp-Notebook-ExecutionIndicator[data-status="idle"]',
        timeout=timeout * 1000,
    )


def run_all(page: Page, timeout: float) -> None:
    """Run > Run All Cells from the menu bar, then wait until every code cell has run."""
    page.locator(".lm-MenuBar-itemLabel", has_text=re.compile(r"^Run$")).click()
    page.locator(".lm-Menu-itemLabel", has_text=re.compile(r"^Run All Cells$")).click()
    deadline = time.monotonic() + timeout
    time.sleep(1.0)
    while time.monotonic() < deadline:
        prompts = page.locator(".jp-CodeCell .jp-InputPrompt").all_inner_texts()
        done = prompts and all(re.search(r"\[\d+\]", p) for p in prompts)
        status = page.locator(".jp-Notebook-ExecutionIndicator").first.get_attribute("data-status")
        if done and status == "idle":
            return
        time.sleep(1.0)
    raise TimeoutError(f"cells still running after {timeout:.0f} s: {prompts}")


def error_outputs(page: Page) -> list[str]:
    """Texts of outputs that hold a traceback or an error."""
    texts = page.locator(ERROR_OUTPUTS).all_inner_texts()
    return [t for t in texts if "Traceback" in t or "Error" in t]


def main_widget(page: Page) -> Locator:
    """The chapter's main widget, or the output area holding the first slider."""
    main = page.locator(MAIN)
    if main.count():
        return main.first
    first_slider = page.locator(".widget-slider").first
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
