"""ANIL: the head adapts, the body does not; its meta-gradient is the unrolled gradient of
L_query(body, head after k head-only steps), checked against a hand-written reference and
central differences in float64; with no body at all it is MAML."""

from __future__ import annotations

import pytest
import torch
from torch.func import functional_call, grad

from mamlviz.algorithms import make_learner
from mamlviz.algorithms.anil import head_names
from mamlviz.core.outer import meta_gradient
from mamlviz.models import MLP, omniglot_convnet
from mamlviz.tasks.sinusoid import SinusoidTasks

ALPHA, STEPS = 0.05, 2


def problem(hidden=(8, 8), tasks: int = 3):
    torch.manual_seed(0)
    model = MLP(1, hidden, 1).double()
    episode = SinusoidTasks().sample(torch.Generator().manual_seed(1), 5, 7, tasks, torch.float64)
    return model, episode


def reference(model, meta: dict, episode) -> dict:
    """d/d theta of mean_i L_query_i(body, head_k), head_{j+1} = head_j - alpha grad_head L_s."""
    head = head_names(model)

    def mse(params, x, y):
        return ((functional_call(model, params, (x,)) - y) ** 2).mean()

    def objective(theta):
        total = 0.0
        for i in range(episode.support.x.shape[0]):
            body = {n: w for n, w in theta.items() if n not in head}
            fast = {n: w for n, w in theta.items() if n in head}
            (xs, ys), (xq, yq) = episode.task(i)
            for _ in range(STEPS):
                g = grad(lambda f, b=body, x=xs, y=ys: mse({**b, **f}, x, y))(fast)
                fast = {n: fast[n] - ALPHA * g[n] for n in fast}
            total = total + mse({**body, **fast}, xq, yq)
        return total / episode.support.x.shape[0]

    return grad(objective)(meta), objective


def test_the_head_is_the_last_layer() -> None:
    assert head_names(MLP(1, (40, 40), 1)) == {"out.weight", "out.bias"}
    assert head_names(omniglot_convnet(5)) == {"head.weight", "head.bias"}
    with pytest.raises(ValueError, match="head layer"):
        head_names(torch.nn.ReLU())


@pytest.mark.parametrize("batched", [False, True])
def test_meta_gradient_equals_the_reference_and_finite_differences(batched: bool) -> None:
    model, episode = problem()
    learner = make_learner("anil", model, "mse", inner_lr=ALPHA, inner_steps=STEPS)
    meta = learner.init_meta()
    got, _ = meta_gradient(learner, meta, episode, batched=batched)
    want, objective = reference(model, meta, episode)
    for n in meta:
        torch.testing.assert_close(got[n], want[n], rtol=1e-10, atol=1e-12)
    g = torch.Generator().manual_seed(2)
    v = {n: torch.randn(w.shape, generator=g, dtype=w.dtype) for n, w in meta.items()}
    eps = 1e-5
    shifted = lambda s: float(objective({n: meta[n] + s * eps * v[n] for n in meta}))
    numeric = (shifted(1.0) - shifted(-1.0)) / (2 * eps)
    analytic = float(sum((got[n] * v[n]).sum() for n in meta))
    assert abs(numeric - analytic) < 1e-7 * max(1.0, abs(analytic))


def test_body_gradient_differs_from_maml_but_a_head_only_model_is_maml() -> None:
    model, episode = problem()
    anil = make_learner("anil", model, "mse", inner_lr=ALPHA, inner_steps=STEPS)
    maml = make_learner("maml", model, "mse", inner_lr=ALPHA, inner_steps=STEPS)
    meta = anil.init_meta()
    a, _ = meta_gradient(anil, meta, episode)
    m, _ = meta_gradient(maml, meta, episode)
    assert not torch.allclose(a["fc1.weight"], m["fc1.weight"])  # MAML adapts the body too
    linear, episode = problem(hidden=())  # the head is the whole model
    anil = make_learner("anil", linear, "mse", inner_lr=ALPHA, inner_steps=STEPS)
    maml = make_learner("maml", linear, "mse", inner_lr=ALPHA, inner_steps=STEPS)
    meta = anil.init_meta()
    a, _ = meta_gradient(anil, meta, episode)
    m, _ = meta_gradient(maml, meta, episode)
    for n in meta:
        torch.testing.assert_close(a[n], m[n], rtol=1e-12, atol=1e-14)


def test_the_inner_loop_leaves_the_body_unchanged() -> None:
    model, episode = problem()
    learner = make_learner("anil", model, "mse", inner_lr=ALPHA, inner_steps=STEPS)
    meta = learner.init_meta()
    fast, frozen, rule = learner.split(meta)
    assert set(fast) == {"out.weight", "out.bias"} and "fc1.weight" in frozen
    task = episode.task(0)
    phi = learner.inner_loop(fast, frozen, rule, task.support)
    assert set(phi) == set(fast) and not torch.equal(phi["out.weight"], meta["out.weight"])
