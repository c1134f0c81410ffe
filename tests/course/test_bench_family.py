"""The family bench behind chapter 12's price list: each row times the shipped checkpoint's own
training step, counts what the outer loop learns, and a meta-batch that iMAML's definiteness
check refuses is still timed (it did the whole work) and counted, never a crash."""

from __future__ import annotations

import pytest

from mamlviz.benchmarks.family import measure, table
from mamlviz.training import hub


def test_a_row_counts_the_meta_parameters_and_times_its_steps() -> None:
    row = measure("sinusoid-metasgd-10shot", 1, iters=2, warmup=1)
    meta = hub.load("sinusoid-metasgd-10shot").meta
    assert row["meta_parameters"] == sum(t.numel() for t in meta.values()) == 2 * 1761
    assert row["ms"] > 0 and row["cpu_ms"] > 0 and row["refused"] == 0
    assert "sinusoid-metasgd-10shot" in table([row])
    with pytest.raises(ValueError, match="inner steps"):
        measure("sinusoid-metasgd-10shot", 5, iters=1, warmup=0)


def test_an_indefinite_imaml_meta_batch_is_timed_and_counted() -> None:
    """The full bench's 35 seeded meta-batches include one on which the shipped iMAML's system
    (1 + damping) I + H / lam is indefinite (the README's account of that checkpoint)."""
    row = measure("sinusoid-imaml-10shot", 90, iters=30, warmup=5)
    assert row["refused"] >= 1 and row["ms"] > 0
    assert "refused as indefinite" in table([row])
