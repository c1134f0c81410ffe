"""The static course site (``./course site``): built from every chapter, then checked as a reader.

The fast tests pin the builder's rules (a widget becomes a note, solutions collapse, a partial
build links only to what it built). The slow tests build the whole site once, from every
chapter executed in a fresh kernel, and check what a reader gets: a page per chapter holding
each figure the chapter drew, the README's tables on the start page, math typeset by the
site's own MathJax, and no internal link or image that points nowhere. The browser test opens
the built start page and one chapter in Chromium and saves screenshots.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import subprocess
import sys
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote, urlsplit

import nbformat
import pytest

REPO = Path(__file__).resolve().parents[2]
BUILDER = REPO / "scripts" / "build_site.py"
CHAPTERS = sorted(p.stem for p in (REPO / "notebooks").glob("[0-9][0-9]_*.ipynb"))


def builder():
    spec = importlib.util.spec_from_file_location("build_site", BUILDER)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# ---------------------------------------------------------------- the builder's rules (fast)


def test_a_widget_output_becomes_a_note_and_a_solution_collapses() -> None:
    site = builder()
    nb = nbformat.v4.new_notebook()
    widget = nbformat.v4.new_code_cell("explorer")
    widget.outputs = [
        nbformat.v4.new_output(
            "display_data",
            data={site.WIDGET_MIME: {"model_id": "abc"}, "text/plain": "VBox(...)"},
        ),
        nbformat.v4.new_output("display_data", data={"image/png": "iVBORw0KGgo="}),
    ]
    solution = nbformat.v4.new_code_cell("answer = 1", metadata={"tags": ["solution"]})
    plain = nbformat.v4.new_code_cell("x = 1")
    nb.cells = [widget, solution, plain]
    nb.metadata["widgets"] = {"application/vnd.jupyter.widget-state+json": {"state": {}}}
    assert site.prepare(nb) == 1
    assert "widgets" not in nb.metadata
    assert site.WIDGET_MIME not in json.dumps(nb)
    assert widget.outputs[0]["data"] == {"text/html": site.WIDGET_NOTE}
    assert widget.outputs[1]["data"] == {"image/png": "iVBORw0KGgo="}  # the static twin stays
    assert solution.metadata["tags"] == ["solution", "hide-input"]
    assert plain.metadata["tags"] == []


def test_a_partial_build_links_only_to_the_chapters_it_built(tmp_path: Path) -> None:
    site = builder()
    pages = site.chapters("00,02")
    assert [p.name[:2] for p in pages] == ["00", "02"]
    site.start_page(tmp_path, pages)
    index = (tmp_path / "index.md").read_text()
    linked = set(re.findall(r"\]\(notebooks/(\d\d)_[^)]*\.ipynb\)", index))
    assert linked == {"00", "02"}
    assert "notebooks/00_start_here\nnotebooks/02_maml\n```" in index
    assert (tmp_path / "contributing.md").read_text() == (REPO / "CONTRIBUTING.md").read_text()


def test_an_unknown_chapter_is_refused_with_the_allowed_ones() -> None:
    with pytest.raises(SystemExit, match=r"--chapters: no chapter 99; allowed: 00, 01"):
        builder().chapters("00,99")


# ---------------------------------------------------------------- the whole site (slow)


class Page(HTMLParser):
    """The links, images, element ids, tables and typeset-math markers of one HTML page."""

    def __init__(self) -> None:
        super().__init__()
        self.links: list[str] = []
        self.images: list[str] = []
        self.scripts: list[str] = []
        self.ids: set[str] = set()
        self.tables = 0
        self.math = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        if a.get("id"):
            self.ids.add(a["id"])
        if tag == "a" and a.get("href"):
            self.links.append(a["href"])
        elif tag == "link" and a.get("href") and a.get("rel") == "stylesheet":
            self.links.append(a["href"])
        elif tag == "img" and a.get("src"):
            self.images.append(a["src"])
        elif tag == "script" and a.get("src"):
            self.scripts.append(a["src"])
        elif tag == "table":
            self.tables += 1
        if "math" in (a.get("class") or "").split():
            self.math += 1


def parse(path: Path) -> Page:
    page = Page()
    page.feed(path.read_text(encoding="utf-8"))
    return page


def internal(url: str) -> bool:
    return not re.match(r"^[a-z][a-z0-9+.-]*:", url)  # http:, https:, mailto:, data:, ...


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("site")
    result = subprocess.run(
        [sys.executable, str(BUILDER), "--out", str(out)],
        capture_output=True,
        text=True,
        cwd=REPO,
    )
    assert result.returncode == 0, f"./course site failed:\n{result.stdout}\n{result.stderr}"
    return out


@pytest.mark.slow
@pytest.mark.timeout(1800)
def test_every_chapter_has_a_page_with_each_figure_it_drew(built: Path) -> None:
    report = json.loads((built / "report.json").read_text())
    assert [row["chapter"] for row in report["chapters"]] == CHAPTERS
    html = built / "html"
    for row in report["chapters"]:
        page_path = html / "notebooks" / f"{row['chapter']}.html"
        assert page_path.is_file(), f"no page for {row['chapter']}"
        executed = nbformat.read(built / "src" / "notebooks" / f"{row['chapter']}.ipynb", 4)
        drawn = sum(
            "image/png" in out.get("data", {})
            for cell in executed.cells
            if cell.cell_type == "code"
            for out in cell.outputs
        )
        page = parse(page_path)
        shown = [src for src in page.images if src.endswith(".png") and internal(src)]
        assert len(shown) == drawn == row["images"], row["chapter"]
        for src in shown:
            assert (page_path.parent / unquote(urlsplit(src).path)).stat().st_size > 1000, src
        text = page_path.read_text(encoding="utf-8")
        plotted = sum(
            "plotly-graph-div" in out.get("data", {}).get("text/html", "")
            for cell in executed.cells
            if cell.cell_type == "code"
            for out in cell.outputs
        )
        assert text.count('class="plotly-graph-div"') == plotted == row["plots"], row["chapter"]
        assert "widget-view+json" not in text, f"{row['chapter']}: a dead widget on the page"
        assert "widget-state+json" not in text, f"{row['chapter']}: widget state on the page"
        assert text.count("mamlviz-widget-note") >= row["widgets"], row["chapter"]
    # the chapters that teach with figures do show them
    drawn_by = {row["chapter"][:2]: row["images"] for row in report["chapters"]}
    assert all(drawn_by[n] >= 2 for n in ("01", "02", "04", "05", "08", "12")), drawn_by
    assert sorted(report["pages"]) == sorted(
        ["index.html", "contributing.html", "genindex.html", "search.html"]
        + [f"notebooks/{c}.html" for c in CHAPTERS]
    )


@pytest.mark.slow
@pytest.mark.timeout(1800)
def test_the_start_page_is_the_readme_with_its_tables(built: Path) -> None:
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    # a Markdown table: a header row followed by a |---|---| separator row
    tables = len(re.findall(r"^\|.*\|\n\|[ :|-]+\|$", readme, flags=re.M))
    page = parse(built / "html" / "index.html")
    assert tables >= 5 and page.tables == tables
    for chapter in CHAPTERS:
        assert f"notebooks/{chapter}.html" in page.links, f"start page lacks {chapter}"


@pytest.mark.slow
@pytest.mark.timeout(1800)
def test_no_internal_link_or_image_points_nowhere(built: Path) -> None:
    html = built / "html"
    pages = {p: parse(p) for p in html.rglob("*.html") if "_static" not in p.parts}
    broken = []
    for path, page in pages.items():
        for url in page.links + page.images + page.scripts:
            if not internal(url):
                continue
            parts = urlsplit(url)
            target = (path.parent / unquote(parts.path)).resolve() if parts.path else path
            if not target.exists():
                broken.append(f"{path.relative_to(html)}: {url}")
            elif parts.fragment and target.suffix == ".html":
                ids = pages[target].ids if target in pages else parse(target).ids
                if parts.fragment not in ids:
                    broken.append(f"{path.relative_to(html)}: {url} (no such anchor)")
    assert not broken, "\n".join(broken[:20])


@pytest.mark.slow
@pytest.mark.timeout(1800)
def test_math_is_marked_for_the_sites_own_mathjax(built: Path) -> None:
    html = built / "html"
    if not (REPO / "node_modules" / "mathjax").is_dir():
        pytest.skip("MathJax not installed (npm ci): the site loads it from its CDN")
    page = parse(html / "notebooks" / "03_meta_gradient.html")
    assert page.math > 20  # the chapter derives the meta-gradient in display and inline math
    assert any(src.endswith("_static/mathjax/tex-chtml.js") for src in page.scripts)
    assert (html / "_static" / "mathjax" / "output" / "chtml" / "fonts" / "woff-v2").is_dir()


@pytest.mark.slow
@pytest.mark.browser
@pytest.mark.timeout(1800)
def test_a_reader_sees_the_start_page_and_a_chapter_with_math_and_figures(built: Path) -> None:
    from browser.lab import CHROMIUM_FLAGS, chromium_path

    executable = chromium_path()
    if executable is None or importlib.util.find_spec("playwright") is None:
        message = (
            "site browser test not run: Chromium or Playwright missing (apt-get install chromium)"
        )
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    from playwright.sync_api import sync_playwright

    shots = Path(os.environ.get("MAMLVIZ_SCREENSHOTS", REPO / "artifacts" / "screenshots"))
    shots.mkdir(parents=True, exist_ok=True)
    html = built / "html"
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=executable, args=CHROMIUM_FLAGS)
        page = browser.new_page(viewport={"width": 1300, "height": 1000})
        try:
            page.goto((html / "index.html").as_uri())
            page.get_by_role("heading", name="mamlviz", exact=True).wait_for()
            assert page.locator("article table").count() >= 5
            page.screenshot(path=shots / "site-start.png")
            # follow the start page's link to chapter 02, as a reader would
            page.locator("article a[href='notebooks/02_maml.html']").first.click()
            page.wait_for_url("**/notebooks/02_maml.html")
            page.locator("mjx-container").first.wait_for(timeout=30_000)  # MathJax typeset
            images = page.locator("article img")
            assert images.count() >= 2
            widths = images.evaluate_all("els => els.map(e => e.naturalWidth)")
            assert all(w > 100 for w in widths), widths  # every figure loaded
            assert page.locator(".mamlviz-widget-note").count() >= 1
            page.screenshot(path=shots / "site-chapter-02.png", full_page=False)
        finally:
            browser.close()
