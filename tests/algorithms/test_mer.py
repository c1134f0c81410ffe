"""MER on a drifting sinusoid stream: equivalence with online SGD, Reptile interpolation by
hand, reservoir sampling, metrics, bad input and divergence (float64); the accuracy metrics; the
rotated-Omniglot stream; the ``continual`` bench suite at a tiny size."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch.func import grad

from mamlviz.algorithms.mer import (
    Reservoir,
    learn_example,
    make_accuracy,
    run_stream,
    score_summary,
    sequential_sgd,
)
from mamlviz.benchmarks import continual as continual_suite
from mamlviz.core.episode import Examples
from mamlviz.core.functional import make_loss, params_of
from mamlviz.errors import DivergenceError
from mamlviz.models import MLP
from mamlviz.tasks.omniglot import make_split
from mamlviz.tasks.omniglot_data import OmniglotArrays, load_omniglot
from mamlviz.tasks.rotated_omniglot import RotatedOmniglot, choose_characters, rotate
from mamlviz.tasks.stream import DriftingSinusoids

pytestmark = pytest.mark.usefixtures("float64")


def setup(families: int = 3, n: int = 12):
    torch.manual_seed(0)
    model = MLP(3, (10, 10), 1).double()
    stream = DriftingSinusoids(families=families, examples_per_family=n)
    gen = torch.Generator().manual_seed(1)
    examples, family = stream.stream(gen, torch.float64)
    tests = stream.test_sets(gen, 20, torch.float64)
    return make_loss(model, "mse"), params_of(model), examples, family, tests


def test_mer_with_unit_betas_and_no_memory_is_online_sgd() -> None:
    loss, theta, examples, family, tests = setup()
    mer = run_stream("mer", loss, theta, examples, family, tests, lr=0.01, memory_size=0,
                     beta=1.0, gamma=1.0, batches=1, replay=5)  # fmt: skip
    sgd = run_stream("online", loss, theta, examples, family, tests, lr=0.01)
    for name in theta:
        torch.testing.assert_close(mer["theta"][name], sgd["theta"][name], rtol=0, atol=0)
    assert mer["losses"] == sgd["losses"]
    # Hand-written online SGD, as a reference that does not use adapt().
    ref = dict(theta)
    for t in range(examples.x.shape[0]):
        g = grad(loss)(ref, Examples(examples.x[t : t + 1], examples.y[t : t + 1]))
        ref = {n: ref[n] - 0.01 * g[n] for n in ref}
    for name in theta:
        torch.testing.assert_close(sgd["theta"][name], ref[name], rtol=1e-13, atol=1e-14)


def test_mer_step_is_nested_reptile_by_hand() -> None:
    """One example, memory of 2, s = 2 batches of 3: the nested interpolations written out."""
    loss, theta, examples, _, _ = setup()
    lr, beta, gamma = 0.02, 0.3, 0.6
    memory = Reservoir(5, torch.Generator().manual_seed(4))
    for t in range(2):
        memory.add(examples.x[t], examples.y[t])
    state = memory.generator.get_state()
    new = learn_example("mer", loss, theta, examples.x[5], examples.y[5], memory,
                        lr=lr, beta=beta, gamma=gamma, batches=2, replay=2)  # fmt: skip
    memory.generator.set_state(state)
    reference_memory = Reservoir(5, memory.generator)
    reference_memory.x, reference_memory.y = memory.x[:2], memory.y[:2]
    w = dict(theta)
    for _ in range(2):
        batch = reference_memory.batch(examples.x[5], examples.y[5], 2)
        assert batch.x.shape[0] == 3 and torch.equal(batch.x[0], examples.x[5])
        w0 = dict(w)
        for i in range(3):
            g = grad(loss)(w, Examples(batch.x[i : i + 1], batch.y[i : i + 1]))
            w = {n: w[n] - lr * g[n] for n in w}
        w = {n: w0[n] + beta * (w[n] - w0[n]) for n in w}
    w = {n: theta[n] + gamma * (w[n] - theta[n]) for n in w}
    for name in theta:
        torch.testing.assert_close(new[name], w[name], rtol=1e-13, atol=1e-14)
    assert len(memory) == 3  # the incoming example is stored after the update


def test_sequential_sgd_differs_from_one_batch_step() -> None:
    """Batch size 1 in order is what makes MER's Reptile see gradient alignment."""
    loss, theta, examples, _, _ = setup()
    batch = Examples(examples.x[:3], examples.y[:3])
    seq = sequential_sgd(loss, theta, batch, 0.05)
    g = grad(loss)(theta, batch)
    assert any(not torch.allclose(seq[n], theta[n] - 0.15 * g[n]) for n in theta)


def test_reservoir_keeps_each_example_with_probability_size_over_seen() -> None:
    counts = torch.zeros(50)
    for seed in range(400):
        memory = Reservoir(10, torch.Generator().manual_seed(seed))
        for i in range(50):
            memory.add(torch.tensor([float(i)]), torch.tensor([0.0]))
        for x in memory.x:
            counts[int(x)] += 1
    # Each of 50 examples should be kept in 10/50 = 20% of 400 runs (80 +- ~24 at 3 sigma).
    assert len(memory) == 10 and counts.sum() == 4000
    assert float((counts - 80).abs().max()) < 30


def test_metrics_from_the_loss_matrix() -> None:
    loss, theta, examples, family, tests = setup()
    out = run_stream("replay", loss, theta, examples, family, tests, lr=0.01, memory_size=8,
                     batches=2, replay=3)  # fmt: skip
    r = torch.tensor(out["losses"])
    assert r.shape == (3, 3) and len(out["online_loss"]) == examples.x.shape[0]
    assert out["final_loss"] == pytest.approx(float(r[2].mean()))
    assert out["bwt"] == pytest.approx(float((r[2, :2] - r.diagonal()[:2]).mean()))
    best = [float(r[j:2, j].min()) for j in range(2)]
    assert out["forgetting"] == pytest.approx(sum(r[2, j].item() - best[j] for j in range(2)) / 2)


def test_stream_families_drift_and_never_return() -> None:
    stream = DriftingSinusoids(families=4, examples_per_family=5)
    examples, family = stream.stream(torch.Generator().manual_seed(0))
    assert family.tolist() == [t for t in range(4) for _ in range(5)]
    amp = examples.x[:, 1].reshape(4, 5)
    windows = [stream.window(t, stream.amplitude) for t in range(4)]
    assert windows[0][0] == stream.amplitude[0] and windows[-1][1] == pytest.approx(5.0)
    for t, (lo, hi) in enumerate(windows):
        assert bool(((amp[t] >= lo) & (amp[t] <= hi)).all())
    torch.testing.assert_close(
        examples.y[:, 0], examples.x[:, 1] * torch.sin(examples.x[:, 0] - examples.x[:, 2])
    )


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"memory_size": -1}, r"memory_size must be in \[0, inf\)"),
        ({"beta": 0.0}, r"beta must be in \(0, 1\]"),
        ({"beta": 1.5}, r"beta must be in \(0, 1\]"),
        ({"gamma": 0.0}, r"gamma must be in \(0, 1\]"),
        ({"batches": 0}, r"batches must be in \[1, inf\)"),
        ({"replay": -1}, r"replay must be in \[0, inf\)"),
        ({"lr": -0.1}, r"lr must be in \[0, inf\)"),
        ({"method": "ewc"}, "method must be one of"),
    ],
)
def test_bad_settings_name_the_argument(kwargs: dict, message: str) -> None:
    loss, theta, examples, family, tests = setup()
    settings = {"method": "mer", "lr": 0.01, **kwargs}
    method = settings.pop("method")
    with pytest.raises(ValueError, match=message):
        run_stream(method, loss, theta, examples, family, tests, **settings)


def test_bad_stream_arguments() -> None:
    with pytest.raises(ValueError, match=r"families must be in \[1, inf\)"):
        DriftingSinusoids(families=0)
    with pytest.raises(ValueError, match=r"width must be in \(0, 1\]"):
        DriftingSinusoids(width=0.0)


@pytest.mark.parametrize("method", ["online", "replay", "mer"])
def test_divergence_names_the_stream_example(method: str) -> None:
    loss, theta, examples, family, tests = setup()
    with pytest.raises(DivergenceError, match=r"at stream example \d+"):
        run_stream(method, loss, theta, examples, family, tests, lr=1e6, memory_size=5, replay=2)


# --- accuracy metrics of run_stream ----------------------------------------------------------


def test_score_summary_by_hand() -> None:
    """A 3-task accuracy matrix: BWT is negative when accuracy was lost, forgetting positive."""
    a = [[0.9, 0.1, 0.2], [0.6, 0.8, 0.3], [0.5, 0.7, 0.9]]
    out = score_summary(a)
    assert out["final_metric"] == pytest.approx((0.5 + 0.7 + 0.9) / 3)
    assert out["learning_metric"] == pytest.approx([0.9, 0.8, 0.9])
    assert out["metric_bwt"] == pytest.approx(((0.5 - 0.9) + (0.7 - 0.8)) / 2)
    assert out["metric_forgetting"] == pytest.approx(((0.9 - 0.5) + (0.8 - 0.7)) / 2)


def test_accuracy_of_a_hand_built_linear_classifier() -> None:
    """out = x W^T + b with W = I, b = 0: predicts argmax x; 3 of the 4 labels agree."""
    model = MLP(2, (), 2)
    theta = {"out.weight": torch.eye(2), "out.bias": torch.zeros(2)}
    x = torch.tensor([[1.0, 0.0], [0.0, 1.0], [2.0, 1.0], [0.0, 3.0]])
    assert make_accuracy(model)(theta, Examples(x, torch.tensor([0, 1, 1, 1]))) == 0.75


def test_metric_fn_adds_the_score_matrix_and_changes_nothing_else() -> None:
    loss, theta, examples, family, tests = setup()
    settings = {"lr": 0.01, "memory_size": 6, "beta": 0.5, "batches": 2, "replay": 2, "seed": 3}
    plain = run_stream("mer", loss, theta, examples, family, tests, **settings)
    calls: list[int] = []

    def negative_loss(params: dict, ex: Examples) -> float:
        calls.append(ex.x.shape[0])
        return -float(loss(params, ex))

    scored = run_stream("mer", loss, theta, examples, family, tests, metric_fn=negative_loss,
                        **settings)  # fmt: skip
    assert set(plain) == {"theta", "losses", "final_loss", "bwt", "forgetting", "online_loss"}
    for key in plain:
        if key != "theta":
            assert scored[key] == plain[key]
    for name in theta:
        assert torch.equal(scored["theta"][name], plain["theta"][name])
    # The score is -loss, so its matrix is -losses and its BWT is the loss BWT negated.
    assert len(calls) == 3 * 3
    assert scored["metrics"] == [[-v for v in row] for row in plain["losses"]]
    assert scored["metric_bwt"] == pytest.approx(-plain["bwt"])
    assert scored["metric_forgetting"] == pytest.approx(plain["forgetting"])
    assert scored["final_metric"] == pytest.approx(-plain["final_loss"])
    assert scored["learning_metric"] == [-plain["losses"][j][j] for j in range(3)]


# --- the rotated-Omniglot stream ----------------------------------------------------------------


def synthetic(classes: int = 4, **kwargs: object) -> RotatedOmniglot:
    """Random uint8 "characters", so the exact-behaviour tests need no dataset."""
    images = torch.randint(
        0, 256, (classes, 20, 28, 28), generator=torch.Generator().manual_seed(0)
    )
    return RotatedOmniglot(images.to(torch.uint8), **kwargs)  # type: ignore[arg-type]


def pixels_of(stream: RotatedOmniglot, x: torch.Tensor, y: torch.Tensor, task: int) -> torch.Tensor:
    """The index of the drawing of class y whose rotation by the task's angle is x (or -1)."""
    images = rotate(stream.images[y].double() / 255, stream.angle(task)).clamp(0, 1)
    match = (images.flatten(1) - x).abs().amax(-1) < 1e-12
    return match.nonzero().flatten()


def test_rotated_stream_shapes_order_and_balance() -> None:
    stream = synthetic(4, tasks=3, examples_per_task=10, stream_drawings=15)
    examples, task = stream.stream(torch.Generator().manual_seed(0), torch.float64)
    assert examples.x.shape == (30, 784) and examples.x.dtype == torch.float64
    assert examples.y.dtype == torch.int64 and task.tolist() == [0] * 10 + [1] * 10 + [2] * 10
    assert float(examples.x.min()) >= 0.0 and float(examples.x.max()) <= 1.0
    assert [stream.angle(t) for t in range(3)] == [0.0, 60.0, 120.0]
    for t in range(3):
        counts = torch.bincount(examples.y[task == t], minlength=4)
        assert int(counts.max() - counts.min()) <= 1 and int(counts.sum()) == 10
        for i in torch.nonzero(task == t).flatten().tolist():
            found = pixels_of(stream, examples.x[i], examples.y[i], t)
            assert len(found) >= 1 and int(found.min()) < 15  # a stream drawing, by its angle
    tests = stream.test_sets(torch.Generator().manual_seed(1), dtype=torch.float64)
    assert len(tests) == 3
    for t, ex in enumerate(tests):
        assert ex.x.shape == (4 * 5, 784) and torch.bincount(ex.y).tolist() == [5] * 4
        used = sorted(
            (int(y), int(pixels_of(stream, x, y, t).max())) for x, y in zip(ex.x, ex.y, strict=True)
        )
        assert used == [(c, d) for c in range(4) for d in range(15, 20)]  # each held-out once


def test_rotation_task_zero_is_raw_and_ninety_is_rot90() -> None:
    stream = synthetic(3, tasks=2, examples_per_task=6, angles=(0.0, 180.0))
    examples, task = stream.stream(torch.Generator().manual_seed(2))
    raw = stream.images.float() / 255
    for i in range(12):
        x, y, t = examples.x[i].reshape(28, 28), int(examples.y[i]), int(task[i])
        candidates = raw[y] if t == 0 else torch.rot90(raw[y], 1, dims=(-2, -1))
        assert any(torch.equal(x, c) for c in candidates)
    # The grid_sample path agrees with the exact rot90 path at 90 degrees (sign convention) ...
    img = torch.rand(2, 28, 28, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    near = rotate(img, 90.0 + 1e-9)
    torch.testing.assert_close(near, torch.rot90(img, 1, dims=(-2, -1)), rtol=0, atol=1e-7)
    # ... and any other angle is exactly one direct affine_grid + grid_sample call.
    a = math.radians(30.0)
    theta = torch.tensor([[[math.cos(a), -math.sin(a), 0.0], [math.sin(a), math.cos(a), 0.0]]],
                         dtype=torch.float64).expand(2, 2, 3)  # fmt: skip
    grid = F.affine_grid(theta, [2, 1, 28, 28], align_corners=False)
    direct = F.grid_sample(img[:, None], grid, align_corners=False)[:, 0]
    assert torch.equal(rotate(img, 30.0), direct)


def test_rotated_stream_is_deterministic_under_a_seed() -> None:
    stream = synthetic(3, tasks=2, examples_per_task=9, angles=(0.0, 90.0))
    a, ta = stream.stream(torch.Generator().manual_seed(5))
    b, tb = stream.stream(torch.Generator().manual_seed(5))
    c, _ = stream.stream(torch.Generator().manual_seed(6))
    assert torch.equal(a.x, b.x) and torch.equal(a.y, b.y) and torch.equal(ta, tb)
    assert not torch.equal(a.y, c.y) or not torch.equal(a.x, c.x)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"tasks": 0}, r"tasks must be in \[1, inf\)"),
        ({"examples_per_task": 0}, r"examples_per_task must be in \[1, inf\)"),
        ({"stream_drawings": 20}, r"stream_drawings must be in \[1, 19\]"),
        ({"stream_drawings": 2.5}, r"stream_drawings must be an integer"),
        ({"angles": (90.0, 90.0)}, r"angles\[1\] must be in \(90, 450\]"),
    ],
)
def test_rotated_stream_bad_arguments(kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        synthetic(3, **kwargs)


def test_rotated_stream_bad_images_and_task() -> None:
    with pytest.raises(ValueError, match=r"classes must be in \[2, inf\)"):
        synthetic(1)
    with pytest.raises(ValueError, match=r"images must be uint8 \[classes, 20, 28, 28\]"):
        RotatedOmniglot(torch.zeros(3, 20, 28, 28))
    with pytest.raises(ValueError, match=r"task must be in \[0, 9\]"):
        synthetic(3).angle(10)


@pytest.fixture(scope="module")
def arrays(omniglot_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> OmniglotArrays:
    cache = tmp_path_factory.mktemp("omniglot_cache")
    return load_omniglot(root=omniglot_dir, cache_dir=cache, progress=False)


def test_rotated_omniglot_uses_seeded_meta_training_characters(arrays: OmniglotArrays) -> None:
    train = set(make_split(arrays).classes("train").tolist())
    ids = choose_characters(arrays, 10, seed=3)
    assert len(set(ids.tolist())) == 10 and set(ids.tolist()) <= train
    assert torch.equal(ids, choose_characters(arrays, 10, seed=3))
    assert not torch.equal(ids, choose_characters(arrays, 10, seed=4))
    stream = RotatedOmniglot.from_arrays(arrays, 10, seed=3, tasks=4)
    assert torch.equal(stream.images, arrays.images[ids])
    with pytest.raises(ValueError, match=r"classes must be in \[2, 1100\]"):
        choose_characters(arrays, 1101, seed=0)


def test_continual_suite_quick_run_keys(arrays: OmniglotArrays) -> None:
    out = continual_suite.run(quick=True, seeds=(0, 1), arrays=arrays)
    assert {"suite", "seeds", "sinusoid", "omniglot", "table", "wall_s"} <= set(out)
    assert set(out["sinusoid"]["summary"]) == {"online", "replay", "mer"}
    cells = out["omniglot"]["summary"]["mer"]
    assert set(cells) == {"final_metric", "metric_bwt", "metric_forgetting",
                          "learning_accuracy", "final_loss"}  # fmt: skip
    # Each cell is the mean and sample std over the seeds of the per-seed values it summarises.
    runs = out["omniglot"]["runs"]["mer"]
    values = [r["final_metric"] for r in runs]
    assert cells["final_metric"] == pytest.approx(
        [sum(values) / 2, abs(values[0] - values[1]) / 2**0.5]
    )
    assert all(r["learning_accuracy"] == pytest.approx(sum(r["learning_metric"]) / 2) for r in runs)
    assert json.loads(json.dumps(out)) == out  # --json prints it as is
    assert "final acc" in out["table"] and "mer" in out["table"]
