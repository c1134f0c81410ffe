"""Build the static course site: every chapter executed, rendered to HTML by Sphinx + MyST-NB.

    ./course site                      # all chapters into build/site/html (index.html)
    ./course site --chapters 00,02     # a subset (the start page links only to those)

Steps: each notebook runs top to bottom in a fresh kernel, in ``notebooks/`` as nbval runs it
(so the chapters read the same checkpoints and data); a live widget cannot work without a
kernel, so its output is replaced by a note pointing to JupyterLab, while the static twin the
chapter draws next to every widget stays; ``solution`` cells are collapsed (MyST-NB's
``hide-input``). README.md becomes the start page (its tables included, its links to
``notebooks/NN_*.ipynb`` resolve to the chapter pages), CONTRIBUTING.md a page for teachers.
Sphinx runs with warnings as errors, so a broken cross-reference or missing image fails the
build. MathJax is served from the site itself (the npm package of package.json) so the math
renders offline; without Node.js the pages load it from MathJax's CDN and the build says so.

Why not Jupyter Book 2: its HTML build fetches the book theme from api.mystmd.org at build
time, which an offline build (and a CI without network) cannot do; Sphinx, MyST-NB and the
book theme all install from PyPI with the rest of requirements.lock.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import nbformat
from nbclient import NotebookClient
from nbclient.exceptions import CellExecutionError

REPO = Path(__file__).resolve().parents[1]
NOTEBOOKS = REPO / "notebooks"
CONF = REPO / "scripts" / "site"
MATHJAX = REPO / "node_modules" / "mathjax" / "es5"
WIDGET_MIME = "application/vnd.jupyter.widget-view+json"
PLOTLY_MIME = "application/vnd.plotly.v1+json"
# plotly.js, written into the site by scripts/site/conf.py; chapter pages live in notebooks/.
PLOTLY_JS = "../_static/plotly.min.js"
WIDGET_NOTE = (
    '<div class="mamlviz-widget-note">Interactive widget: open this chapter in JupyterLab '
    "(<code>./course lab</code>) to drag its controls. The static version it draws is shown "
    "with it.</div>"
)


def chapters(selection: str | None) -> list[Path]:
    """The chapter notebooks, all or those named by two-digit numbers ("00,02")."""
    found = sorted(NOTEBOOKS.glob("[0-9][0-9]_*.ipynb"))
    if not selection:
        return found
    wanted = [s.strip() for s in selection.split(",") if s.strip()]
    by_number = {p.name[:2]: p for p in found}
    unknown = [w for w in wanted if w not in by_number]
    if unknown:
        raise SystemExit(
            f"--chapters: no chapter {', '.join(unknown)}; allowed: {', '.join(by_number)}"
        )
    return [by_number[w] for w in sorted(set(wanted))]


def plotly_html(figure: dict, first: bool) -> str:
    """A plotly figure (its JSON output) as HTML that draws it with the site's plotly.js."""
    import plotly.io as pio

    script = PLOTLY_JS if first else False
    return pio.to_html(figure, include_plotlyjs=script, full_html=False, validate=False)


def prepare(nb: nbformat.NotebookNode) -> int:
    """Make an executed chapter static in place; return the widget outputs replaced.

    A widget view needs a live kernel, so it becomes a note; a plotly figure (not a widget)
    stays interactive through plotly.js served by the site; solution cells collapse behind a
    toggle as they are collapsed in JupyterLab.
    """
    replaced = plotted = 0
    # the saved widget state (megabytes of widget models and their JavaScript) serves no page
    nb.metadata.pop("widgets", None)
    for cell in nb.cells:
        if cell.cell_type != "code":
            continue
        tags = cell.metadata.setdefault("tags", [])
        if "solution" in tags and "hide-input" not in tags:
            tags.append("hide-input")
        outputs = []
        for out in cell.get("outputs", []):
            if WIDGET_MIME in out.get("data", {}):
                replaced += 1
                out = nbformat.v4.new_output("display_data", data={"text/html": WIDGET_NOTE})
            elif PLOTLY_MIME in out.get("data", {}):
                html = plotly_html(out["data"][PLOTLY_MIME], first=plotted == 0)
                plotted += 1
                out = nbformat.v4.new_output("display_data", data={"text/html": html})
            outputs.append(out)
        cell.outputs = outputs
    return replaced


def execute(path: Path, dest: Path, timeout: int) -> dict:
    """Run one chapter in a fresh kernel (working folder notebooks/), write it static to dest."""
    nb = nbformat.read(path, as_version=4)
    start = time.perf_counter()
    client = NotebookClient(
        nb, timeout=timeout, kernel_name="python3", resources={"metadata": {"path": str(NOTEBOOKS)}}
    )
    try:
        client.execute()
    except CellExecutionError as err:
        raise SystemExit(f"{path.name}: a cell failed while building the site:\n{err}") from None
    seconds = time.perf_counter() - start
    widgets = prepare(nb)
    outputs = [out for cell in nb.cells if cell.cell_type == "code" for out in cell.outputs]
    images = sum("image/png" in out.get("data", {}) for out in outputs)
    plots = sum("plotly-graph-div" in out.get("data", {}).get("text/html", "") for out in outputs)
    nbformat.write(nb, dest)
    row = {"chapter": path.stem, "seconds": round(seconds, 1), "images": images, "plots": plots}
    return row | {"widgets": widgets}


def start_page(src: Path, pages: list[Path]) -> None:
    """README.md as the start page, with the hidden table of contents Sphinx needs."""
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    built = {p.name for p in pages}
    for path in NOTEBOOKS.glob("[0-9][0-9]_*.ipynb"):
        if path.name not in built:  # a partial build: plain text, not a broken link
            readme = re.sub(rf"\[([^\]]*)\]\(notebooks/{re.escape(path.name)}\)", r"\1", readme)
    toc = "\n".join(f"notebooks/{p.stem}" for p in pages)
    readme += (
        "\n\n```{toctree}\n:hidden:\n:caption: Chapters\n\n" + toc + "\n```\n"
        "\n```{toctree}\n:hidden:\n:caption: For teachers\n\ncontributing\n```\n"
    )
    (src / "index.md").write_text(readme, encoding="utf-8")
    shutil.copy(REPO / "CONTRIBUTING.md", src / "contributing.md")


def build(out: Path, pages: list[Path], timeout: int) -> dict:
    """Execute ``pages``, render the site into ``out/html``; return the build report."""
    src = out / "src"
    if src.exists():
        shutil.rmtree(src)
    (src / "notebooks").mkdir(parents=True)
    start_page(src, pages)
    report = {"chapters": []}
    for path in pages:
        row = execute(path, src / "notebooks" / path.name, timeout)
        print(
            f"  executed {row['chapter']}: {row['seconds']} s, {row['images']} figures"
            f" + {row['plots']} plotly, {row['widgets']} widgets shown as notes",
            flush=True,
        )
        report["chapters"].append(row)
    html = out / "html"
    if html.exists():
        shutil.rmtree(html)
    env = dict(os.environ, MAMLVIZ_SITE_MATHJAX=str(MATHJAX) if MATHJAX.is_dir() else "")
    if not MATHJAX.is_dir():
        print("  MathJax not installed (npm ci needs Node.js): pages load it from its CDN")
    command = [sys.executable, "-m", "sphinx", "-b", "html", "-W", "--keep-going", "-q"]
    command += ["-c", str(CONF), str(src), str(html)]
    start = time.perf_counter()
    if subprocess.run(command, env=env).returncode != 0:
        raise SystemExit("sphinx-build reported the problems above (warnings count as errors)")
    report["sphinx_seconds"] = round(time.perf_counter() - start, 1)
    report["pages"] = sorted(
        str(p.relative_to(html)) for p in html.rglob("*.html") if "_static" not in p.parts
    )
    (out / "report.json").write_text(json.dumps(report, indent=1) + "\n")
    return report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, default=REPO / "build" / "site", help="build folder")
    parser.add_argument("--chapters", help="two-digit chapter numbers, e.g. 00,02 (default all)")
    parser.add_argument("--timeout", type=int, default=900, help="seconds per cell (default 900)")
    args = parser.parse_args(argv)
    if args.timeout < 1:
        raise SystemExit(f"--timeout must be at least 1 second, got {args.timeout}")
    pages = chapters(args.chapters)
    print(f"==> building the course site from {len(pages)} chapters into {args.out}")
    report = build(args.out.resolve(), pages, args.timeout)
    print(f"==> {len(report['pages'])} pages, sphinx {report['sphinx_seconds']} s:")
    for page in report["pages"]:
        print(f"  {page}")
    print(f"open {args.out / 'html' / 'index.html'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
