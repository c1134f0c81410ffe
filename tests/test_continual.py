"""MER on a drifting sinusoid stream: equivalence with online SGD, Reptile interpolation by
hand, reservoir sampling, metrics, bad input and divergence (float64)."""

from __future__ import annotations

import pytest
import torch
from torch.func import grad

from mamlviz.continual import Reservoir, learn_example, run_stream, sequential_sgd
from mamlviz.errors import DivergenceError
from mamlviz.functional import make_loss, params_of
from mamlviz.models import MLP
from mamlviz.tasks.episode import Examples
from mamlviz.tasks.stream import DriftingSinusoids


@pytest.fixture(autouse=True)
def float64():
    previous = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    yield
    torch.set_default_dtype(previous)


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
