"""The Omniglot bench times its paths in turns, and reports each path's own median."""

from __future__ import annotations

import time

from mamlviz.benchmarks.omniglot import interleaved


def test_paths_take_turns_after_one_warm_up_each() -> None:
    calls: list[str] = []
    result = interleaved({"a": lambda: calls.append("a"), "b": lambda: calls.append("b")}, 3)
    assert calls == ["a", "b"] + ["a", "b"] * 3
    assert set(result) == {"a", "b"}


def test_each_path_gets_the_median_of_its_own_calls() -> None:
    # b sleeps 50 (warm-up), then 1, 1, 50 ms: the median of its timed calls is ~1 ms; counting
    # the warm-up would make it ~25
    sleeps = iter([0.05, 0.001, 0.001, 0.05])
    result = interleaved({"a": lambda: None, "b": lambda: time.sleep(next(sleeps))}, 3)
    assert 0.9 <= result["b"]["ms"] < 10, result
    assert result["a"]["ms"] < result["b"]["ms"]
    assert set(result["a"]) == set(result["b"]) == {"ms", "cpu_ms", "faults"}
