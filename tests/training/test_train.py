"""Meta-training: reproducibility, exact resume, the outer optimisers, validation, and a smoke
test that real training lowers the query loss."""

from __future__ import annotations

import math

import pytest
import torch

from mamlviz import History, TrainConfig, fit
from mamlviz.algorithms import make_learner
from mamlviz.core.outer import meta_gradient
from mamlviz.models import sinusoid_mlp
from mamlviz.tasks.sinusoid import SinusoidTasks
from mamlviz.training.checkpoint import CheckpointError, load, save


def small(**overrides) -> TrainConfig:
    base = dict(iterations=30, meta_batch=4, checkpoint_every=10, snapshot_every=10)
    return TrainConfig.for_problem(
        "sinusoid", overrides.pop("algorithm", "maml"), **{**base, **overrides}
    )


def same_weights(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[n], b[n]) for n in a)


def test_same_seed_same_run_and_another_seed_differs() -> None:
    meta_a, hist_a = fit(small(seed=3), progress=False)
    meta_b, hist_b = fit(small(seed=3), progress=False)
    meta_c, hist_c = fit(small(seed=4), progress=False)
    assert hist_a == hist_b and same_weights(meta_a, meta_b)
    assert hist_a != hist_c and not same_weights(meta_a, meta_c)
    assert len(hist_a) == 30 and hist_a.snapshot_iterations == [0, 10, 20, 30]
    assert same_weights(hist_a.snapshots[-1], meta_a)


def test_fit_leaves_the_global_rng_alone() -> None:
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    fit(small(iterations=2), progress=False)
    assert torch.equal(torch.rand(3), expected)


@pytest.mark.parametrize("algorithm", ["maml", "reptile"])
def test_resume_after_stop_equals_uninterrupted(tmp_path, algorithm: str) -> None:
    config = small(algorithm=algorithm)
    meta_full, hist_full = fit(config, progress=False)
    path = tmp_path / "run.pt"
    # "Killed" after iteration 17: the last checkpoint is from iteration 10.
    fit(config, path, progress=False, stop_after=17)
    assert load(path).metadata["iteration"] == 10
    meta_resumed, hist_resumed = fit(config, path, progress=False)
    assert same_weights(meta_resumed, meta_full)
    assert hist_resumed == hist_full


def test_resume_refuses_another_config(tmp_path) -> None:
    path = tmp_path / "run.pt"
    fit(small(iterations=10), path, progress=False)
    with pytest.raises(CheckpointError, match=r"outer_lr \(0.001 in the checkpoint, 0.002 now\)"):
        fit(small(iterations=10, outer_lr=0.002), path, progress=False)


def test_reptile_outer_step_is_interpolation_with_linearly_annealed_eps() -> None:
    """theta_{i+1} = theta_i - eps_i * mean(theta_i - phi), eps_i = outer_lr * (1 - i / N)."""
    config = small(algorithm="reptile", iterations=2, outer_lr=0.8, inner_steps=3)
    meta, _ = fit(config, progress=False)
    learner = make_learner(
        "reptile",
        sinusoid_mlp(config.stream_seed("init")),
        "mse",
        inner_lr=config.inner_lr,
        inner_steps=3,
    )
    theta = learner.init_meta()
    generator, tasks = torch.Generator().manual_seed(config.stream_seed("tasks")), SinusoidTasks()
    for eps in [0.8, 0.8 * (1 - 1 / 2)]:
        episode = tasks.sample(generator, config.shots, config.query_shots, config.meta_batch)
        grads, _ = meta_gradient(learner, theta, episode)
        theta = {n: w - eps * grads[n] for n, w in theta.items()}
    for n in meta:
        torch.testing.assert_close(meta[n], theta[n], rtol=1e-6, atol=1e-7)


def test_adam_is_the_outer_optimiser_of_maml() -> None:
    """Adam's first step is lr * g / (|g| + eps) per weight (bias-corrected m / sqrt(v) = g/|g|):
    1e-3 * sign(g) for all but tiny gradients, unlike SGD's lr * g."""
    config = small(iterations=1, outer_lr=1e-3)
    meta, _ = fit(config, progress=False)
    learner = make_learner(
        "maml", sinusoid_mlp(config.stream_seed("init")), "mse", inner_lr=0.01, inner_steps=1
    )
    theta = learner.init_meta()
    episode = SinusoidTasks().sample(
        torch.Generator().manual_seed(config.stream_seed("tasks")),
        config.shots,
        config.query_shots,
        4,
    )
    grads, _ = meta_gradient(learner, theta, episode)
    for n, g in grads.items():
        expected = theta[n] - 1e-3 * g / (g.abs() + 1e-8)
        torch.testing.assert_close(meta[n], expected, rtol=0, atol=1e-7)
    moved = torch.cat([(theta[n] - meta[n]).abs().flatten() for n in meta])
    assert (moved > 0.999e-3).float().mean() > 0.5  # most weights moved by lr, whatever |g|


def test_history_roundtrip_and_subsample() -> None:
    _, hist = fit(small(iterations=25), progress=False)
    assert History.from_tensors(hist.to_tensors()) == hist
    sub = hist.subsample(10)
    assert sub.iterations == [0, 10, 20, 24] and sub.every == 10
    assert sub.loss == [hist.loss[i] for i in (0, 10, 20, 24)]
    assert all(math.isfinite(g) and g > 0 for g in hist.grad_norm)


def test_real_training_reduces_query_loss_float32() -> None:
    """500 MAML iterations in float32 nearly halve the query loss, and bring it below 2.5: under
    what any single non-adapted network can reach (joint training converges at ~2.95)."""
    config = TrainConfig.for_problem("sinusoid", "maml", iterations=500)
    meta, hist = fit(config, progress=False)
    assert meta["out.weight"].dtype == torch.float32
    first, last = sum(hist.loss[:50]) / 50, sum(hist.loss[-50:]) / 50
    assert last < 0.65 * first and last < 2.5, (first, last)


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("inner_lr", float("nan"), r"inner_lr must be a finite number in \[0, inf\)"),
        ("inner_lr", -0.01, r"inner_lr must be in \[0, inf\), got -0.01"),
        ("outer_lr", float("inf"), r"outer_lr must be a finite number in \(0, inf\)"),
        ("outer_lr", -1e-3, r"outer_lr must be in \(0, inf\), got -0.001"),
        ("outer_lr", 0.0, r"outer_lr must be in \(0, inf\), got 0.0"),
        ("inner_steps", -1, r"inner_steps must be in \[0, inf\), got -1"),
        ("shots", 0, r"shots must be in \[1, inf\), got 0"),
        ("query_shots", 0, r"query_shots must be in \[1, inf\), got 0"),
        ("meta_batch", 2.5, r"meta_batch must be an integer in \[1, inf\)"),
        ("algorithm", "mamal", r"algorithm must be one of: .*maml.*; got 'mamal'"),
        ("problem", "cosine", r"problem must be one of: .*sinusoid.*; got 'cosine'"),
        ("dtype", "float16", r"dtype must be one of \('float32', 'float64'\)"),
    ],
)
def test_config_rejects_bad_values(field: str, value, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        TrainConfig(**{field: value})


def test_pretrained_trains_with_zero_inner_steps() -> None:
    assert TrainConfig.for_problem("sinusoid", "pretrained").inner_steps == 0
    with pytest.raises(ValueError, match="inner_steps must be 0 for 'pretrained', got 1"):
        TrainConfig(algorithm="pretrained", inner_steps=1)


def test_config_dict_roundtrip() -> None:
    config = small(algorithm="reptile", options={"inner_optimizer": "adam"})
    assert TrainConfig.from_dict(config.to_dict()) == config
    with pytest.raises(ValueError, match=r"unknown TrainConfig fields: \['lr'\]"):
        TrainConfig.from_dict({**config.to_dict(), "lr": 1.0})
    with pytest.raises(ValueError, match="inner_optimizer must be 'sgd' or 'adam'"):
        small(algorithm="reptile", options={"inner_optimizer": "rmsprop"})


def test_options_merge_with_the_algorithm_defaults() -> None:
    """An ``--option`` adds to the paper settings; it used to replace them (Reptile lost Adam)."""
    config = TrainConfig.for_problem("omniglot", "reptile", options={"inner_batch": 5})
    assert config.options == {"inner_optimizer": "adam", "inner_batch": 5}
    assert TrainConfig.for_problem("omniglot", "reptile").options["inner_batch"] == 10


def test_warm_start_copies_the_checkpoint_and_records_it(tmp_path) -> None:
    first = tmp_path / "first.pt"
    theta, _ = fit(small(iterations=10), first, progress=False)
    second = tmp_path / "second.pt"
    start, _ = fit(small(init=str(first)), progress=False, stop_after=0)
    assert same_weights(start, theta)  # before any step: exactly the loaded weights
    fit(small(iterations=1, init=str(first)), second, progress=False)
    info = load(second).metadata["initialised_from"]
    assert info["from"] == str(first) and info["iterations"] == 10
    moved, _ = fit(small(iterations=1, init=str(first)), progress=False)
    fresh, _ = fit(small(iterations=1), progress=False)
    assert not same_weights(moved, fresh)
    data = load(first)
    data.tensors["meta"]["fc1.weight"] = torch.zeros(20, 1)  # another model
    other = tmp_path / "other.pt"
    save(other, data.metadata, data.tensors)
    with pytest.raises(CheckpointError, match="shape"):
        fit(small(iterations=1, init=str(other)), progress=False)


def test_warm_start_across_the_family_keeps_the_rules_neutral(tmp_path) -> None:
    """Meta-SGD from a MAML checkpoint starts at MAML's theta with alpha = inner_lr, where it
    equals MAML; the reverse would drop the learned alphas and is refused."""
    first = tmp_path / "maml.pt"
    theta, _ = fit(small(iterations=10), first, progress=False)
    second = tmp_path / "metasgd.pt"
    config = small(iterations=1, algorithm="metasgd", init=str(first))
    start, _ = fit(config, progress=False, stop_after=0)
    model = {n: w for n, w in start.items() if not n.startswith("rule.")}
    assert same_weights(model, theta)
    rates = [w for n, w in start.items() if n.startswith("rule.lr.")]
    assert len(rates) == len(theta) and all(torch.all(r == config.inner_lr) for r in rates)
    fit(config, second, progress=False)
    info = load(second).metadata["initialised_from"]
    assert info["algorithm"] == "maml" and sorted(info["kept_at_init"]) == sorted(
        f"rule.lr.{n}" for n in theta
    )
    with pytest.raises(CheckpointError, match="unexpected"):
        fit(small(iterations=1, init=str(second)), progress=False)


def test_init_tasks_and_noise_have_their_own_streams() -> None:
    """Before: one seed fed the init, the tasks and the noise, so the initial weights were the
    first task's uniforms (correlation 1.0) and training seed 1000003 replayed the evaluation
    tasks. Derived seeds are distinct per purpose and lie above every evaluation seed."""
    from mamlviz.training.config import DERIVED, derive_seed
    from mamlviz.training.evaluate import EVAL_SEED

    config = small()
    seeds = {p: config.stream_seed(p) for p in ("init", "tasks", "noise")}
    assert len(set(seeds.values())) == 3 and all(s >= DERIVED for s in seeds.values())
    assert derive_seed(EVAL_SEED, "tasks") != EVAL_SEED and EVAL_SEED < DERIVED

    def init_vs_first_task(c: TrainConfig) -> float:
        """Correlation of the first weights with the uniforms that draw the first tasks."""
        gen = torch.Generator().manual_seed(c.stream_seed("tasks"))
        uniforms = torch.rand(40, generator=gen)  # the amplitudes and phases of 20 tasks
        weights = sinusoid_mlp(c.stream_seed("init")).fc1.weight.detach().flatten()
        pair = torch.stack([weights[: len(uniforms)], uniforms])
        return float(torch.corrcoef(pair)[0, 1])

    assert init_vs_first_task(small(rng="shared")) > 0.99  # the old coupling
    assert abs(init_vs_first_task(config)) < 0.5
    # "shared" is how the stored checkpoints were trained, and what their configs load as
    shared = small(rng="shared")
    assert {shared.stream_seed(p) for p in ("init", "tasks", "noise")} == {shared.seed}
    stored = {k: v for k, v in small().to_dict().items() if k != "rng"}
    assert TrainConfig.from_dict(stored).rng == "shared"
    with pytest.raises(ValueError, match="rng must be one of"):
        small(rng="random")


def test_evaluation_seeds_stay_below_the_training_streams() -> None:
    from mamlviz.training.config import DERIVED
    from mamlviz.training.evaluate import evaluate

    learner = make_learner("maml", sinusoid_mlp(0), "mse", inner_lr=0.01, inner_steps=1)
    with pytest.raises(ValueError, match=r"seed must be in \[0, 4.6"):
        evaluate(learner, learner.init_meta(), SinusoidTasks(), tasks=1, seed=DERIVED)


def test_unrolled_memory_estimate_matches_the_measured_growth() -> None:
    """``bench --suite imaml`` measures about 0.76 MiB per inner step for sinusoid MAML at
    meta-batch 25 (README); the up-front estimate that refuses huge --inner-steps agrees."""
    from mamlviz.training.config import build
    from mamlviz.training.train import unrolled_bytes_per_step

    learner, meta = build(TrainConfig.for_problem("sinusoid", "maml"))
    episode = SinusoidTasks().sample(torch.Generator().manual_seed(0), 10, 10, 25)
    mib = unrolled_bytes_per_step(learner, meta, episode) / 2**20
    assert 0.5 < mib < 1.0, mib
