"""The package's shape: a small explicit public surface, and the layers on disk."""

from __future__ import annotations

import pkgutil

import mamlviz

SUBPACKAGES = {"algorithms", "benchmarks", "core", "course", "models", "tasks", "training"}


def test_public_surface_is_explicit_and_importable() -> None:
    assert len(mamlviz.__all__) == len(set(mamlviz.__all__))
    missing = [name for name in mamlviz.__all__ if not hasattr(mamlviz, name)]
    assert not missing
    # what the notebooks and the README's examples use
    for name in ("make_learner", "adapt", "meta_gradient", "meta_step", "Episode", "load"):
        assert name in mamlviz.__all__


def test_at_most_six_top_level_modules_and_the_layers_as_subpackages() -> None:
    found = list(pkgutil.iter_modules(mamlviz.__path__))
    modules = sorted(m.name for m in found if not m.ispkg)
    assert len(modules) <= 6, modules
    assert {m.name for m in found if m.ispkg} == SUBPACKAGES
