"""Benchmark suites for ``python -m mamlviz bench --suite NAME``.

A suite is a module ``mamlviz.benchmarks.<NAME>`` with ``run(quick: bool) -> dict``; the dict is
printed as JSON with ``--json`` and its ``"table"`` entry (aligned text) otherwise. New suites
need no registration: adding the module is enough.
"""

from __future__ import annotations

import pkgutil


def suites() -> list[str]:
    """Names of the suites in this package."""
    return sorted(m.name for m in pkgutil.iter_modules(__path__) if not m.name.startswith("_"))
