"""Sphinx configuration of the static course site (built by scripts/build_site.py).

The chapters arrive executed: MyST-NB renders their stored outputs and never runs them again.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

project = "mamlviz: learning to learn, chapter by chapter"
author = "mamlviz contributors"
extensions = ["myst_nb"]
exclude_patterns = ["_build", "**.ipynb_checkpoints"]

nb_execution_mode = "off"  # executed by the builder, once, in the notebooks' own folder
nb_merge_streams = True
myst_enable_extensions = ["dollarmath", "amsmath"]
myst_heading_anchors = 3  # README's "#section" links resolve to its headings

html_theme = "sphinx_book_theme"
html_title = "mamlviz"
html_static_path = ["static"]
html_css_files = ["mamlviz.css"]
html_theme_options = {"show_toc_level": 2, "home_page_in_toc": True}
html_copy_source = False
html_show_sourcelink = False

_mathjax = os.environ.get("MAMLVIZ_SITE_MATHJAX", "")
if _mathjax:
    # Served from the site itself: the pages' math renders without network.
    mathjax_path = "mathjax/tex-chtml.js"


def _write_assets(app, exception):
    """plotly.js (from the plotly package) and MathJax (from npm) into the site's _static."""
    if exception is not None:
        return
    import plotly.offline

    static = Path(app.outdir) / "_static"
    (static / "plotly.min.js").write_text(plotly.offline.get_plotlyjs(), encoding="utf-8")
    if _mathjax:
        dest = static / "mathjax"
        dest.mkdir(parents=True, exist_ok=True)
        for part in ("tex-chtml.js", "input", "output", "ui", "a11y", "sre", "adaptors"):
            source = Path(_mathjax) / part
            if source.is_dir():
                shutil.copytree(source, dest / part, dirs_exist_ok=True)
            elif source.exists():
                shutil.copy(source, dest / part)


def setup(app):
    app.connect("build-finished", _write_assets)
