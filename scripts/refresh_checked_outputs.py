"""Store the expected text of the cells marked ``# NBVAL_CHECK_OUTPUT``, and nothing else.

nbval compares a marked cell's fresh output with the output stored in the notebook, so those
cells (and only those) keep their printed text; every other output, execution count and the
widget state are cleared, so the notebooks stay small and diff cleanly. Run it after changing a
chapter or a shipped checkpoint, then review the diff of the numbers:

    .venv/bin/python scripts/refresh_checked_outputs.py notebooks/*.ipynb

With ``--filter`` it only strips (stdin to stdout, nothing executed): the git clean filter
that ``./course lab`` configures (``.gitattributes``), so a notebook saved with outputs is
committed clean.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import nbformat
from nbclient import NotebookClient

MARK = "# NBVAL_CHECK_OUTPUT"


def is_checked(cell: nbformat.NotebookNode) -> bool:
    """Whether a code cell carries the nbval output-check marker on its first line."""
    return cell.cell_type == "code" and cell.source.lstrip().startswith(MARK)


def clean(nb: nbformat.NotebookNode) -> int:
    """Strip ``nb`` in place to what the repository stores; return the checked outputs kept.

    Checked cells keep their printed stdout (nbval's expected text); every other output,
    execution count, run timestamp and the widget state go.
    """
    kept = 0
    for cell in nb.cells:
        cell.metadata.pop("execution", None)  # run timestamps: noise in every diff
        if cell.cell_type != "code":
            continue
        if is_checked(cell):
            text = [o for o in cell.outputs if o.output_type == "stream" and o.name == "stdout"]
            cell.outputs = text
            kept += len(cell.outputs)
        else:
            cell.outputs = []
            cell.execution_count = None
    nb.metadata.pop("widgets", None)
    return kept


def refresh(path: Path, timeout: int = 300) -> int:
    """Execute ``path`` from a fresh kernel and keep only the checked cells' text output."""
    nb = nbformat.read(path, as_version=4)
    resources = {"metadata": {"path": str(path.parent)}}
    NotebookClient(nb, timeout=timeout, resources=resources).execute()
    kept = clean(nb)
    nbformat.write(nb, path)
    return kept


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("notebooks", nargs="*", type=Path)
    parser.add_argument(
        "--filter",
        action="store_true",
        help="git clean filter: read a notebook on stdin, write it stripped (nothing executed)",
    )
    args = parser.parse_args()
    if args.filter:
        nb = nbformat.read(sys.stdin, as_version=4)
        clean(nb)
        nbformat.write(nb, sys.stdout)
        return
    for path in args.notebooks:
        print(f"{path}: {refresh(path)} checked output(s) stored")


if __name__ == "__main__":
    main()
