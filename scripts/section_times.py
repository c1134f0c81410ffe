"""Write an estimated time into every section heading of the chapters, and the chapter's total.

    python scripts/section_times.py notebooks/*.ipynb          # rewrite in place
    python scripts/section_times.py --check notebooks/*.ipynb  # exit 1 if any estimate is stale

The estimate of a ``## `` section is a reading and doing time, rounded up to whole minutes:
its prose at 120 words a minute (a technical text, read with the numbers beside it), half a
minute per code cell to run and read its output, 3 more minutes per widget to play with and 5
per exercise to solve (solution and claim cells are not counted). The first cell states the
sum, with the learning goals and set-up before the first section, as
``**Time:** about N minutes``. The same rule for every chapter, so the estimates compare.
"""

from __future__ import annotations

import argparse
import math
import re
import sys
from pathlib import Path

import nbformat

HEADING = re.compile(r"^(## .*?)(?: \(about \d+ min\))?$", re.M)
TOTAL = re.compile(r"\*\*Time:\*\* about \d+ minutes[^\n]*")
WORDS_PER_MINUTE = 120


def cell_minutes(cell: nbformat.NotebookNode) -> float:
    source = "".join(cell.source)
    if cell.cell_type == "markdown":
        text = re.sub(r"\$[^$]*\$", " x ", source)  # a formula reads as a word or two
        return len(text.split()) / WORDS_PER_MINUTE
    tags = cell.metadata.get("tags", [])
    if "solution" in tags or "claim" in tags:
        return 0.0
    minutes = 0.5
    if re.search(r"\.widget\s*$|display\([^)]*widget", source.strip()):
        minutes += 3
    if re.search(r"\.check_\w+\(my_", source):
        minutes += 5
    return minutes


def sections(nb: nbformat.NotebookNode) -> list[tuple[int, float]]:
    """(index of the heading cell, minutes) for every ``## `` section."""
    out: list[tuple[int, float]] = []
    for i, cell in enumerate(nb.cells):
        if cell.cell_type == "markdown" and HEADING.search("".join(cell.source)):
            out.append((i, 0.0))
        if out:
            out[-1] = (out[-1][0], out[-1][1] + cell_minutes(cell))
    return out


def annotate(nb: nbformat.NotebookNode) -> int:
    """Rewrite the headings and the total in place; returns the total minutes."""
    found = sections(nb)
    start = found[0][0] if found else len(nb.cells)
    total = math.ceil(sum(cell_minutes(c) for c in nb.cells[:start]))  # goals and set-up
    for i, minutes in found:
        m = max(1, math.ceil(minutes))
        total += m
        cell = nb.cells[i]
        cell.source = HEADING.sub(lambda h, m=m: f"{h.group(1)} (about {m} min)", cell.source, 1)
    first = nb.cells[0]
    line = f"**Time:** about {total} minutes (each section's heading gives its share)."
    if TOTAL.search(first.source):
        first.source = TOTAL.sub(line, first.source)
    else:
        first.source = first.source.rstrip() + "\n\n" + line
    return total


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("notebooks", nargs="+", type=Path)
    parser.add_argument("--check", action="store_true", help="only report stale estimates")
    args = parser.parse_args()
    stale = []
    for path in args.notebooks:
        nb = nbformat.read(path, as_version=4)
        before = nbformat.writes(nb)
        total = annotate(nb)
        if nbformat.writes(nb) != before:
            stale.append(path.name)
            if not args.check:
                nbformat.write(nb, path)
        print(f"{path.name}: about {total} minutes")
    if args.check and stale:
        print(f"stale estimates in {stale}: run python scripts/section_times.py notebooks/*.ipynb")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
