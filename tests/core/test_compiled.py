"""The compiled meta-gradient (make_learner(..., compile=True), train --compile) computes what
the eager path computes: float64 to 1e-10, and a float32 training run to 1e-5 relative; where
compilation fails it says so in one line and runs eager."""

from __future__ import annotations

import functools

import pytest
import torch

from mamlviz.algorithms import make_learner
from mamlviz.cache import inductor_cache
from mamlviz.core import outer
from mamlviz.core.compiled import Compiled
from mamlviz.core.functional import detach
from mamlviz.core.outer import meta_gradient
from mamlviz.models import sinusoid_mlp
from mamlviz.tasks.sinusoid import SinusoidTasks
from mamlviz.training.config import TrainConfig
from mamlviz.training.train import fit


@pytest.fixture(autouse=True)
def _own_cache(tmp_path_factory: pytest.TempPathFactory):
    """Compile into a folder of the test session's, never into the user's cache."""
    with inductor_cache(tmp_path_factory.getbasetemp() / "inductor"):
        yield


def _pair(algorithm: str, steps: int) -> tuple:
    build = lambda compile: make_learner(
        algorithm, sinusoid_mlp(0).double(), "mse", inner_lr=0.05, inner_steps=steps,
        compile=compile,
    )  # fmt: skip
    eager, compiled = build(False), build(True)
    meta = detach(eager.init_meta())
    if algorithm == "metasgd":  # learned step sizes away from their neutral value
        meta = {n: w * 1.7 if n.startswith("rule.") else w for n, w in meta.items()}
    episode = SinusoidTasks().sample(torch.Generator().manual_seed(4), 5, 7, 6, torch.float64)
    return eager, compiled, meta, episode


@pytest.mark.slow
@pytest.mark.parametrize(("algorithm", "steps"), [("maml", 2), ("metasgd", 1)])
def test_compiled_meta_gradient_equals_eager_in_float64(algorithm: str, steps: int):
    eager, compiled, meta, episode = _pair(algorithm, steps)
    want, want_losses = meta_gradient(eager, meta, episode)
    got, losses = meta_gradient(compiled, meta, episode)
    assert compiled.compiled["task_gradients"].state == "compiled"
    for n in want:
        torch.testing.assert_close(got[n], want[n], rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(losses, want_losses, rtol=1e-10, atol=1e-12)
    # a second meta-batch reuses the compiled function (no new trace) and still agrees
    other = SinusoidTasks().sample(torch.Generator().manual_seed(5), 5, 7, 6, torch.float64)
    again, _ = meta_gradient(compiled, meta, other)
    ref, _ = meta_gradient(eager, meta, other)
    for n in ref:
        torch.testing.assert_close(again[n], ref[n], rtol=1e-10, atol=1e-12)
    assert max(float((again[n] - got[n]).abs().max()) for n in ref) > 1e-6  # not a stale result


@pytest.mark.slow
def test_compiled_training_run_equals_eager_in_float32():
    config = TrainConfig.for_problem(
        "sinusoid", "maml", iterations=40, meta_batch=8, shots=5, outer_lr=2e-3,
        outer_schedule="cosine", snapshot_every=1000,
    )  # fmt: skip
    eager, eager_history = fit(config, progress=False)
    compiled, history = fit(config, progress=False, compile=True)
    for n in eager:
        torch.testing.assert_close(compiled[n], eager[n], rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(
        torch.tensor(history.loss), torch.tensor(eager_history.loss), rtol=1e-5, atol=1e-6
    )
    start = fit(config, progress=False, stop_after=1)[0]
    assert max(float((eager[n] - start[n]).abs().max()) for n in eager) > 1e-3  # it trained


def test_a_failing_compiler_falls_back_to_eager_in_one_line(monkeypatch: pytest.MonkeyPatch):
    def broken(*args, **kwargs):
        raise RuntimeError("InvalidCxxCompiler: No working C++ compiler found\nmore detail")

    monkeypatch.setattr(torch, "compile", broken)
    said: list[str] = []
    eager, compiled, meta, episode = _pair("maml", 1)
    compiled.compiled["task_gradients"] = wrapped = Compiled(
        functools.partial(outer._vmapped, compiled),
        "maml's meta-gradient",
        say=said.append,
    )
    got, _ = meta_gradient(compiled, meta, episode)
    want, _ = meta_gradient(eager, meta, episode)
    for n in want:
        torch.testing.assert_close(got[n], want[n], rtol=0, atol=0)
    assert wrapped.state == "eager" and len(said) == 1
    assert "No working C++ compiler found" in said[0] and "running eager" in said[0]
    assert "\n" not in said[0]
    meta_gradient(compiled, meta, episode)
    assert len(said) == 1  # said once, not per call


def test_errors_of_the_caller_are_raised_not_taken_for_a_compiler_failure():
    calls = []

    def bad_input(x: torch.Tensor) -> torch.Tensor:
        calls.append(1)
        raise ValueError("shots must be in [1, inf), got 0")

    said: list[str] = []
    wrapped = Compiled(bad_input, "f", say=said.append)
    with pytest.raises(ValueError, match="shots must be"):
        wrapped(torch.zeros(2))
    assert said == []


def test_compile_is_refused_where_it_would_change_the_results():
    with pytest.raises(ValueError, match=r"compile must be False for 'metadropout'.*maml"):
        make_learner(
            "metadropout", sinusoid_mlp(0), "mse", inner_lr=0.01, inner_steps=1, compile=True
        )


@pytest.mark.slow
def test_compiled_stacked_conv_meta_gradient_equals_eager_in_float64():
    """train --compile on Omniglot: the stacked grouped-conv path (batch norm's double backward
    included) through torch.compile, against the same path eager."""
    from mamlviz.core import stacked
    from mamlviz.core.episode import Episode, Examples
    from mamlviz.models.convnet import omniglot_convnet

    build = lambda compile: make_learner(
        "maml", omniglot_convnet(3, dtype=torch.float64), "cross_entropy", inner_lr=0.4,
        inner_steps=1, compile=compile,
    )  # fmt: skip
    eager, compiled = build(False), build(True)
    meta = detach(eager.init_meta())
    g = torch.Generator().manual_seed(0)
    y = torch.arange(3).repeat_interleave(2).expand(2, -1).contiguous()
    x = lambda: torch.rand(2, 6, 1, 28, 28, generator=g, dtype=torch.float64)
    episode = Episode(Examples(x(), y), Examples(x(), y))
    want, want_losses = stacked.meta_gradient(eager, meta, episode)
    got, losses = stacked.meta_gradient(compiled, meta, episode)
    assert compiled.compiled["stacked"].state == "compiled"
    for n in want:
        torch.testing.assert_close(got[n], want[n], rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(losses, want_losses, rtol=1e-10, atol=1e-12)
