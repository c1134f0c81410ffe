"""Store the expected text of the cells marked ``# NBVAL_CHECK_OUTPUT``, and nothing else.

nbval compares a marked cell's fresh output with the output stored in the notebook, so those
cells (and only those) keep their printed text; every other output, execution count and the
widget state are cleared, so the notebooks stay small and diff cleanly. Run it after changing a
chapter or a shipped checkpoint, then review the diff of the numbers:

    .venv/bin/python scripts/refresh_checked_outputs.py notebooks/*.ipynb
"""

from __future__ import annotations

import argparse
from pathlib import Path

import nbformat
from nbclient import NotebookClient

MARK = "# NBVAL_CHECK_OUTPUT"


def is_checked(cell: nbformat.NotebookNode) -> bool:
    """Whether a code cell carries the nbval output-check marker on its first line."""
    return cell.cell_type == "code" and cell.source.lstrip().startswith(MARK)


def refresh(path: Path, timeout: int = 300) -> int:
    """Execute ``path`` from a fresh kernel and keep only the checked cells' text output."""
    nb = nbformat.read(path, as_version=4)
    resources = {"metadata": {"path": str(path.parent)}}
    NotebookClient(nb, timeout=timeout, resources=resources).execute()
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
    nbformat.write(nb, path)
    return kept


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("notebooks", nargs="+", type=Path)
    for path in parser.parse_args().notebooks:
        print(f"{path}: {refresh(path)} checked output(s) stored")


if __name__ == "__main__":
    main()
