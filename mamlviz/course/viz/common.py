"""Widget helpers shared by the chapters: sliders, a status line, readouts, static fallbacks.

Every callback is wrapped by :func:`guarded`: a :class:`~mamlviz.errors.DivergenceError` or a
``ValueError`` is shown in words in the status line (e.g. "diverged: loss is NaN at inner step
3, lower the learning rate") instead of a traceback, and the widget keeps working.
"""

from __future__ import annotations

import html
import math
from collections.abc import Callable
from typing import Any

import ipywidgets as widgets
import matplotlib.pyplot as plt
from matplotlib.figure import Figure

from mamlviz.errors import DivergenceError

SLIDER_STYLE = {"description_width": "110px"}
SLIDER_LAYOUT = {"width": "420px"}
# Colours of the three starting points, the same in every figure of the course.
COLORS = {
    "MAML": "#d62728",
    "FOMAML": "#ff7f0e",
    "Reptile": "#9467bd",
    "pretrained": "#1f77b4",
    "scratch": "#7f7f7f",
}
TRUTH_COLOR = "#2ca02c"
# CSS class of a chapter's main widget (the browser test finds the widget by it).
MAIN_CLASS = "mamlviz-main"


def color(name: str) -> str:
    """Colour of a starting point by name (falls back to black)."""
    return COLORS.get(name, "#000000")


def slider(
    description: str,
    value: float,
    low: float,
    high: float,
    step: float,
    *,
    kind: str = "float",
    continuous_update: bool = False,
) -> widgets.ValueWidget:
    """A labelled slider. ``kind``: "float", "int" or "log" (``low``/``high`` as exponents of 10).

    ``continuous_update=False`` (the default) fires the callback when the handle is released,
    which is what callbacks slower than ~50 ms need.
    """
    common: dict[str, Any] = dict(
        description=description,
        value=value,
        min=low,
        max=high,
        step=step,
        continuous_update=continuous_update,
        style=SLIDER_STYLE,
        layout=widgets.Layout(**SLIDER_LAYOUT),
    )
    if kind == "int":
        return widgets.IntSlider(**common)
    if kind == "log":
        return widgets.FloatLogSlider(base=10, readout_format=".3g", **common)
    if kind == "float":
        return widgets.FloatSlider(readout_format=".2f", **common)
    raise ValueError(f"kind must be 'float', 'int' or 'log', got {kind!r}")


class Status:
    """A one-line HTML status: empty when all is well, a red message when a callback failed."""

    def __init__(self) -> None:
        self.widget = widgets.HTML(value="", layout=widgets.Layout(min_height="1.5em"))
        self.message = ""

    def ok(self, note: str = "") -> None:
        """Clear the error (optionally show a grey note)."""
        self.message = ""
        self.widget.value = f"<span style='color:#555'>{html.escape(note)}</span>" if note else ""

    def error(self, message: str) -> None:
        """Show ``message`` in red; the widget stays usable."""
        self.message = message
        self.widget.value = f"<b style='color:#c0392b'>{html.escape(message)}</b>"


def guarded(status: Status, fn: Callable[[], None]) -> Callable[[Any], None]:
    """A ``observe`` callback that runs ``fn`` and reports failures in ``status`` in words."""

    def callback(change: Any = None) -> None:
        try:
            fn()
        except (DivergenceError, ValueError) as err:
            status.error(str(err))

    return callback


def readout(text: str = "") -> widgets.HTML:
    """An HTML line for the numbers a widget prints (e.g. "query MSE after 5 steps: 0.412")."""
    return widgets.HTML(value=text, layout=widgets.Layout(min_height="1.5em"))


def fmt(value: float) -> str:
    """A number for readouts: 3 decimals, or "diverged" when not finite."""
    return f"{value:.3f}" if math.isfinite(value) else "diverged"


def show_static(fig: Figure, title: str = "Static version") -> None:
    """Display a matplotlib figure as the static fallback of an interactive one, then close it.

    The image stays in the rendered notebook (e.g. on GitHub, where widgets do not render).
    """
    from IPython.display import Markdown, display

    display(Markdown(f"*{title} (shown when interactive widgets do not render):*"))
    display(fig)
    plt.close(fig)


# Display names of the algorithms, in the figures that compare them (chapters 05 and 07).
NAMES = {"maml": "MAML", "fomaml": "FOMAML", "reptile": "Reptile", "imaml": "iMAML"}
