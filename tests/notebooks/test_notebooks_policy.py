"""Every chapter notebook follows the course's rules (no kernel needed).

Stored without outputs or widget state (except the printed text of the cells nbval checks);
opens with learning goals; has an exercises section;
imports mamlviz; and never re-defines a function or class that the package already has (show
package code with ``inspect.getsource`` instead, so what learners read is what the tests cover).
"""

from __future__ import annotations

import ast
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
NOTEBOOKS = sorted((REPO / "notebooks").glob("*.ipynb"))
SCRIPTS = REPO / "scripts"


def package_names() -> set[str]:
    """Public top-level functions and classes of every module of the mamlviz package."""
    names = set()
    for path in (REPO / "mamlviz").rglob("*.py"):
        for node in ast.parse(path.read_text()).body:
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
                if not node.name.startswith("_"):
                    names.add(node.name)
    return names


def code_cells(nb: dict) -> list[str]:
    return ["".join(c["source"]) for c in nb["cells"] if c["cell_type"] == "code"]


def parse(source: str) -> ast.Module:
    """Parse a code cell, blanking IPython magics and shell escapes."""
    lines = ["" if re.match(r"\s*[%!]", line) else line for line in source.splitlines()]
    return ast.parse("\n".join(lines))


def load(path: Path) -> dict:
    return json.loads(path.read_text())


def test_there_are_notebooks() -> None:
    assert NOTEBOOKS, "notebooks/ holds no .ipynb"


CHECK = "# NBVAL_CHECK_OUTPUT"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_stored_without_outputs_or_widget_state(path: Path) -> None:
    """Only the cells nbval checks keep output: their printed text, the expected numbers."""
    nb = load(path)
    assert "widgets" not in nb.get("metadata", {}), "saved widget state: clear it before saving"
    for i, cell in enumerate(nb["cells"]):
        if cell["cell_type"] != "code":
            continue
        if "".join(cell["source"]).lstrip().startswith(CHECK):
            assert cell.get("outputs"), (
                f"cell {i} is marked {CHECK} but stores no expected output, so nbval would"
                " compare nothing: run scripts/refresh_checked_outputs.py"
            )
            assert all(o["output_type"] == "stream" for o in cell["outputs"]), (
                f"cell {i}: a checked cell stores printed text only"
            )
        else:
            assert not cell.get("outputs"), f"cell {i} has stored outputs"
            assert cell.get("execution_count") is None, f"cell {i} has an execution count"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_starts_with_learning_goals_and_has_exercises(path: Path) -> None:
    cells = load(path)["cells"]
    first = "".join(cells[0]["source"])
    assert cells[0]["cell_type"] == "markdown" and re.search("learning goals", first, re.I), (
        "the first cell must be markdown stating the learning goals"
    )
    headings = [
        line
        for c in cells
        if c["cell_type"] == "markdown"
        for line in "".join(c["source"]).splitlines()
        if line.startswith("#")
    ]
    assert any(re.search(r"exercise", h, re.I) for h in headings), "no '## Exercises' section"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_imports_mamlviz(path: Path) -> None:
    imported = set()
    for source in code_cells(load(path)):
        for node in ast.walk(parse(source)):
            if isinstance(node, ast.Import):
                imported.update(a.name.split(".")[0] for a in node.names)
            elif isinstance(node, ast.ImportFrom) and node.module:
                imported.add(node.module.split(".")[0])
    assert "mamlviz" in imported


def private_imports(source: str) -> list[str]:
    """Modules of mamlviz imported by ``source`` other than the public ``mamlviz`` (its
    ``__all__``) and ``mamlviz.course`` (what the chapters are built on)."""
    found = []
    for node in ast.walk(parse(source)):
        names = []
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module:
            names = [node.module]
        for name in names:
            public = (
                name == "mamlviz" or name == "mamlviz.course" or name.startswith("mamlviz.course.")
            )
            if name.startswith("mamlviz") and not public:
                found.append(name)
    return found


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_imports_only_the_public_surface(path: Path) -> None:
    private = [m for source in code_cells(load(path)) for m in private_imports(source)]
    assert not private, f"import these from mamlviz or mamlviz.course instead: {private}"


def test_the_public_surface_check_catches_a_private_import() -> None:
    source = (
        "import mamlviz\nfrom mamlviz.core.inner import adapt\nfrom mamlviz.course import viz\n"
    )
    assert private_imports(source) == ["mamlviz.core.inner"]


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_never_redefines_package_code(path: Path) -> None:
    ours = package_names()
    clashes = []
    for source in code_cells(load(path)):
        for node in ast.walk(parse(source)):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
                if node.name in ours:
                    clashes.append(node.name)
    assert not clashes, f"defines what mamlviz has (use inspect.getsource): {clashes}"


def test_the_policy_check_catches_a_redefinition() -> None:
    tree = parse("%matplotlib inline\ndef adapt(x):\n    return x\n")
    names = {n.name for n in ast.walk(tree) if isinstance(n, ast.FunctionDef)}
    assert names & package_names() == {"adapt"}


def tags(cell: dict) -> list[str]:
    return cell.get("metadata", {}).get("tags", [])


def checker_calls(source: str, asserted: bool | None = None) -> list[str]:
    """Names X of ``exercises.check_X(...)`` calls in ``source``; with ``asserted`` True only
    those that are the test of an ``assert`` statement."""
    tree = parse(source)
    wrapped = {id(n.test) for n in ast.walk(tree) if isinstance(n, ast.Assert)}
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
            name = node.func.attr
            if name.startswith("check_") and (asserted is None or id(node) in wrapped):
                found.append(name.removeprefix("check_"))
    return found


MIN_CLAIMS = 3


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_claims_assert_and_every_exercise_has_a_collapsed_solution(path: Path) -> None:
    """Claim cells hold asserts (at least 3 a chapter); every checker a chapter calls has a
    solution cell after the first call, collapsed, tagged ``solution``, asserting the checker
    accepts it (nbval runs it, so a solution its checker rejects fails the suite)."""
    cells = [c for c in load(path)["cells"] if c["cell_type"] == "code"]
    claims = [c for c in cells if "claim" in tags(c)]
    assert len(claims) >= MIN_CLAIMS, f"{len(claims)} claim cells, need >= {MIN_CLAIMS}"
    for cell in claims:
        source = "".join(cell["source"])
        assert any(isinstance(n, ast.Assert) for n in ast.walk(parse(source))), (
            f"a claim cell without an assert: {source[:80]!r}"
        )
    for i, cell in enumerate(cells):
        source = "".join(cell["source"])
        if "solution" in tags(cell):
            assert cell["metadata"].get("jupyter", {}).get("source_hidden") is True, (
                f"solution cell {i} is not collapsed (metadata jupyter.source_hidden)"
            )
            names = checker_calls(source, asserted=True)
            assert names, f"solution cell {i} does not assert exercises.check_<name>(...)"
    first: dict[str, int] = {}
    for i, cell in enumerate(cells):
        if "solution" not in tags(cell):
            for name in checker_calls("".join(cell["source"])):
                first.setdefault(name, i)
    for name, i in first.items():  # the exercise; later calls may demonstrate the checker
        later = [c for c in cells[i + 1 :] if "solution" in tags(c)]
        assert any(name in checker_calls("".join(c["source"]), True) for c in later), (
            f"exercise check_{name} (code cell {i}) has no solution cell after it"
        )


def test_each_exercise_lives_in_one_chapter() -> None:
    homes: dict[str, list[str]] = {}
    for path in NOTEBOOKS:
        cells = load(path)["cells"]
        solved = {
            n for c in cells if "solution" in tags(c) for n in checker_calls("".join(c["source"]))
        }
        for name in solved:
            homes.setdefault(name, []).append(path.name)
    repeated = {n: where for n, where in homes.items() if len(where) > 1}
    assert not repeated, f"exercises in more than one chapter: {repeated}"


def test_the_solution_check_catches_an_unasserted_or_missing_solution() -> None:
    assert checker_calls("exercises.check_inner_step(f)", asserted=True) == []
    assert checker_calls("assert exercises.check_inner_step(f)", asserted=True) == ["inner_step"]
    assert checker_calls("_ = exercises.check_a(x)\nexercises.check_b(y)") == ["a", "b"]


FILTER = [sys.executable, str(REPO / "scripts" / "refresh_checked_outputs.py"), "--filter"]


def refresh_script():
    """scripts/refresh_checked_outputs.py as a module (its ``clean`` is the git filter's)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("refresh", FILTER[1])
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_git_clean_filter_leaves_every_stored_notebook_unchanged() -> None:
    import nbformat

    clean = refresh_script().clean
    for path in NOTEBOOKS:
        nb = nbformat.read(path, as_version=4)
        clean(nb)
        assert nbformat.writes(nb) + "\n" == path.read_text(), path.name


def test_the_git_clean_filter_strips_what_a_saved_notebook_holds() -> None:
    """Outputs, counts and widget state go; a checked cell keeps its printed text only."""
    import nbformat
    from nbformat.v4 import new_code_cell, new_notebook, new_output

    nb = new_notebook(metadata={"widgets": {"state": {}}})
    plain = new_code_cell("print(1)", execution_count=3)
    plain.outputs = [new_output("stream", name="stdout", text="1\n")]
    checked = new_code_cell(f"{CHECK}\nprint(2)", execution_count=4)
    checked.outputs = [
        new_output("stream", name="stdout", text="2\n"),
        new_output("display_data", data={"text/plain": "figure"}),
    ]
    nb.cells = [plain, checked]
    saved = nbformat.writes(nb).encode()
    out = subprocess.run(FILTER, input=saved, capture_output=True, check=True)
    clean = nbformat.reads(out.stdout.decode(), as_version=4)
    assert "widgets" not in clean.metadata
    assert clean.cells[0].outputs == [] and clean.cells[0].execution_count is None
    assert [o["output_type"] for o in clean.cells[1].outputs] == ["stream"]


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_every_section_states_its_time_and_the_chapter_its_total(path: Path) -> None:
    """``scripts/section_times.py`` leaves the stored chapter unchanged: every ``## `` heading
    carries its current estimate and the first cell their sum."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("section_times", SCRIPTS / "section_times.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    import nbformat

    nb = nbformat.read(path, as_version=4)
    before = nbformat.writes(nb)
    total = module.annotate(nb)
    assert nbformat.writes(nb) == before, (
        f"stale time estimates: run python scripts/section_times.py notebooks/{path.name}"
    )
    assert f"**Time:** about {total} minutes" in "".join(load(path)["cells"][0]["source"])
