"""Task distributions: each one samples ``Episode`` objects from an explicit generator."""

from mamlviz.tasks.episode import Episode, Examples

__all__ = ["Episode", "Examples"]
