"""`train --problem sinusoid --preset live` keeps its promise: sinusoid MAML from scratch to at
most 0.70 MSE after one step (5 shots, the README's 600 tasks), the number the README and
chapter 02 state (0.62); compiled, about half a minute on a warm kernel cache."""

from __future__ import annotations

import pytest

from mamlviz.cli import main
from mamlviz.training import hub
from mamlviz.training.evaluate import evaluate_checkpoint


@pytest.mark.slow
def test_the_live_preset_trains_maml_from_scratch_to_the_readme_number(tmp_path, capsys):
    out = tmp_path / "live.pt"
    args = ["train", "--problem", "sinusoid", "--algorithm", "maml", "--preset", "live"]
    assert main([*args, "--out", str(out), "--quiet"]) == 0
    assert "25000 iterations" in capsys.readouterr().out
    run = hub.load(str(out))
    c = run.config
    assert (c.shots, c.iterations, c.outer_lr, c.outer_schedule) == (5, 25_000, 2e-3, "cosine")
    result = evaluate_checkpoint(run, steps=1)
    assert result.tasks == 600 and result.shots == 5
    after_one = result.mean[1]
    assert after_one <= 0.70, f"the preset's promise: <= 0.70 after one step, got {after_one}"
    assert abs(after_one - 0.62) < 0.04, f"README and chapter 02 state 0.62, got {after_one}"
