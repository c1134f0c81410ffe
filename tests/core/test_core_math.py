"""The mathematics of the core: closed forms, finite differences, vmap == loop (float64)."""

from __future__ import annotations

import pytest
import torch
from torch import nn
from torch.func import grad

from mamlviz.algorithms import make_learner
from mamlviz.core.episode import Episode, Examples
from mamlviz.core.functional import flatten, make_loss, params_of, unflatten
from mamlviz.core.inner import Trajectory, adapt
from mamlviz.core.learner import Learner
from mamlviz.core.metagrad import reptile, unrolled
from mamlviz.core.outer import meta_gradient, task_gradients
from mamlviz.core.rules import SGD

pytestmark = pytest.mark.usefixtures("float64")


def quadratic(params: dict, examples: Examples) -> torch.Tensor:
    """L(theta) = 1/2 (theta - c)^T A (theta - c), with A = examples.x and c = examples.y."""
    d = params["theta"] - examples.y
    return 0.5 * d @ examples.x @ d


def quadratic_learner(first_order: bool, inner_lr: float, steps: int = 1) -> Learner:
    return Learner(
        model=nn.Identity(),
        loss=quadratic,
        rule=SGD(inner_lr),
        strategy=unrolled,
        inner_steps=steps,
        first_order=first_order,
    )


def spd(n: int, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    m = torch.randn(n, n, generator=g)
    return m @ m.T / n + 0.5 * torch.eye(n)


@pytest.mark.parametrize("a", [0.5, 2.0, 7.0])
def test_scalar_quadratic_maml_factor(a: float) -> None:
    alpha, b, c, d, theta = 0.1, 3.0, 1.5, -0.5, 0.7
    support = Examples(torch.tensor([[a]]), torch.tensor([c]))
    query = Examples(torch.tensor([[b]]), torch.tensor([d]))
    meta = {"theta": torch.tensor([theta])}
    theta_prime = theta - alpha * a * (theta - c)
    expected_fo = b * (theta_prime - d)
    for first_order, factor in [(False, 1 - alpha * a), (True, 1.0)]:
        g, _ = unrolled(quadratic_learner(first_order, alpha), meta, Episode(support, query))
        torch.testing.assert_close(g["theta"], torch.tensor([factor * expected_fo]))


def test_matrix_quadratic_maml_is_I_minus_alpha_A() -> None:
    n, alpha = 5, 0.07
    A, B = spd(n, 1), spd(n, 2)
    g0 = torch.Generator().manual_seed(3)
    c, d, theta = (torch.randn(n, generator=g0) for _ in range(3))
    episode = Episode(Examples(A, c), Examples(B, d))
    theta_prime = theta - alpha * A @ (theta - c)
    fo = B @ (theta_prime - d)
    g2, _ = unrolled(quadratic_learner(False, alpha), {"theta": theta}, episode)
    g1, _ = unrolled(quadratic_learner(True, alpha), {"theta": theta}, episode)
    torch.testing.assert_close(g2["theta"], (torch.eye(n) - alpha * A) @ fo)
    torch.testing.assert_close(g1["theta"], fo)
    # Three steps: the product of (I - alpha A) three times.
    theta_k = theta
    for _ in range(3):
        theta_k = theta_k - alpha * A @ (theta_k - c)
    g3, _ = unrolled(quadratic_learner(False, alpha, steps=3), {"theta": theta}, episode)
    torch.testing.assert_close(
        g3["theta"], torch.linalg.matrix_power(torch.eye(n) - alpha * A, 3) @ B @ (theta_k - d)
    )


def test_linear_model_hand_derived_values() -> None:
    """f(x) = w x, w = 1, support (1, 2), query (2, 1), alpha = 0.1, MSE loss.

    w' = 1 - 0.1 * 2 (1 - 2) = 1.2; L_q = (2.4 - 1)^2 = 1.96; dL_q/dw' = 2 * 1.4 * 2 = 5.6;
    dw'/dw = 1 - 0.1 * 2 = 0.8, so MAML's meta-gradient is 4.48 and FOMAML's 5.6.
    """
    model = nn.Linear(1, 1, bias=False)
    with torch.no_grad():
        model.weight.fill_(1.0)
    episode = Episode(
        Examples(torch.tensor([[1.0]]), torch.tensor([[2.0]])),
        Examples(torch.tensor([[2.0]]), torch.tensor([[1.0]])),
    )
    for algorithm, expected in [("maml", 4.48), ("fomaml", 5.6)]:
        learner = make_learner(algorithm, model, "mse", inner_lr=0.1, inner_steps=1)
        g, loss = unrolled(learner, learner.init_meta(), episode)
        torch.testing.assert_close(g["weight"], torch.tensor([[expected]]))
        torch.testing.assert_close(loss, torch.tensor(1.96))


@pytest.mark.parametrize("steps", [1, 3])
def test_unrolled_meta_gradient_matches_gradcheck_and_finite_differences(
    tiny_sinusoid, steps: int
) -> None:
    model, episode = tiny_sinusoid()
    task = episode.task(0)
    learner = make_learner("maml", model, "mse", inner_lr=0.05, inner_steps=steps)
    meta = learner.init_meta()

    def meta_loss(vector: torch.Tensor) -> torch.Tensor:
        theta = unflatten(vector, meta)
        phi = adapt(learner.loss, theta, task.support, learner.rule, steps)
        return learner.loss(phi, task.query)

    x = flatten(meta).requires_grad_(True)
    assert torch.autograd.gradcheck(meta_loss, (x,), eps=1e-6, atol=1e-6)
    g, _ = unrolled(learner, meta, task)
    eps, rng = 1e-6, torch.Generator().manual_seed(1)
    for i in torch.randperm(x.numel(), generator=rng)[:10].tolist():
        e = torch.zeros_like(x)
        e[i] = eps
        fd = (meta_loss(x.detach() + e) - meta_loss(x.detach() - e)) / (2 * eps)
        torch.testing.assert_close(flatten(g)[i], fd, atol=1e-7, rtol=1e-5)


def test_first_order_drops_exactly_the_hessian_term(tiny_sinusoid) -> None:
    """MAML - FOMAML = -alpha H_support(theta) grad L_query(phi) for one step."""
    model, episode = tiny_sinusoid()
    task = episode.task(1)
    alpha = 0.05
    maml = make_learner("maml", model, "mse", inner_lr=alpha, inner_steps=1)
    fomaml = make_learner("fomaml", model, "mse", inner_lr=alpha, inner_steps=1)
    meta = maml.init_meta()
    g2, _ = unrolled(maml, meta, task)
    g1, _ = unrolled(fomaml, meta, task)
    h = torch.func.hessian(lambda v: maml.loss(unflatten(v, meta), task.support))(flatten(meta))
    torch.testing.assert_close(flatten(g2) - flatten(g1), -alpha * h @ flatten(g1))


@pytest.mark.parametrize("algorithm", ["maml", "fomaml", "reptile", "metasgd"])
@pytest.mark.parametrize("steps", [1, 3])
def test_vmap_path_equals_per_task_loop(tiny_sinusoid, algorithm: str, steps: int) -> None:
    model, episode = tiny_sinusoid(seed=2, tasks=6)
    learner = make_learner(algorithm, model, "mse", inner_lr=0.03, inner_steps=steps)
    meta = learner.init_meta()
    gb, lb = meta_gradient(learner, meta, episode, batched=True)
    gl, ll = meta_gradient(learner, meta, episode, batched=False)
    torch.testing.assert_close(lb, ll, rtol=1e-12, atol=1e-12)
    assert gb.keys() == gl.keys() == meta.keys()
    for name in meta:
        torch.testing.assert_close(gb[name], gl[name], rtol=1e-10, atol=1e-12)


def test_reptile_one_step_is_alpha_times_gradient(tiny_sinusoid) -> None:
    model, episode = tiny_sinusoid()
    task = episode.task(0)
    alpha = 0.02
    learner = make_learner("reptile", model, "mse", inner_lr=alpha, inner_steps=1)
    meta = learner.init_meta()
    g, _ = reptile(learner, meta, task)
    expected = grad(learner.loss)(meta, task.support)
    for name in meta:
        torch.testing.assert_close(g[name], alpha * expected[name])


def test_reptile_adam_inner_loop_moves_against_the_gradient(tiny_sinusoid) -> None:
    model, episode = tiny_sinusoid()
    task = episode.task(0)
    learner = make_learner(
        "reptile", model, "mse", inner_lr=1e-3, inner_steps=1, inner_optimizer="adam"
    )
    meta = learner.init_meta()
    g, _ = reptile(learner, meta, task)
    grads = grad(learner.loss)(meta, task.support)
    # First Adam step with beta1 = 0: lr * g / (|g| + eps) -> lr * sign(g) elementwise.
    for name in meta:
        torch.testing.assert_close(g[name], 1e-3 * torch.sign(grads[name]), atol=1e-8, rtol=1e-4)


def test_zero_inner_lr_makes_maml_and_fomaml_equal_to_joint_gradient(tiny_sinusoid) -> None:
    model, episode = tiny_sinusoid()
    task = episode.task(2)
    meta = params_of(model)
    for algorithm in ["maml", "fomaml"]:
        learner = make_learner(algorithm, model, "mse", inner_lr=0.0, inner_steps=2)
        g, _ = unrolled(learner, meta, task)
        expected = grad(learner.loss)(meta, task.query)
        for name in meta:
            torch.testing.assert_close(g[name], expected[name])


def test_trajectory_records_every_step_and_matches_plain_adapt(tiny_sinusoid) -> None:
    model, episode = tiny_sinusoid()
    task = episode.task(0)
    loss = make_loss(model, "mse")
    meta = params_of(model)
    trajectory = Trajectory()
    phi = adapt(loss, meta, task.support, SGD(0.05), 4, record=trajectory.record)
    assert len(trajectory) == 5 and len(trajectory.grads) == 4
    for name in meta:
        torch.testing.assert_close(trajectory.fast[-1][name], phi[name])
        torch.testing.assert_close(trajectory.fast[0][name], meta[name])
    assert trajectory.losses[-1] < trajectory.losses[0]
    # Each recorded gradient is the support gradient at that step's fast weights.
    for k in range(4):
        g = grad(loss)(trajectory.fast[k], task.support)
        torch.testing.assert_close(flatten(trajectory.grads[k]), flatten(g))


def test_clipped_sgd_step_by_hand_and_under_vmap() -> None:
    """SGD(lr, max_norm): g * min(1, max_norm / ||g||) with the global norm; None: plain SGD."""
    fast = {"a": torch.tensor([1.0, 2.0], dtype=torch.float64), "b": torch.tensor(3.0).double()}
    grads = {"a": torch.tensor([3.0, 0.0]).double(), "b": torch.tensor(4.0).double()}  # norm 5
    clipped, _ = SGD(0.1, max_norm=2.0).step(fast, grads, {}, {}, 0)
    torch.testing.assert_close(clipped["a"], fast["a"] - 0.1 * 0.4 * grads["a"])
    torch.testing.assert_close(clipped["b"], fast["b"] - 0.1 * 0.4 * grads["b"])
    loose, _ = SGD(0.1, max_norm=50.0).step(fast, grads, {}, {}, 0)
    plain, _ = SGD(0.1).step(fast, grads, {}, {}, 0)
    for n in fast:
        torch.testing.assert_close(loose[n], plain[n], rtol=0, atol=0)
    batched = torch.func.vmap(lambda g: SGD(0.1, max_norm=2.0).step(fast, g, {}, {}, 0)[0])(
        {n: torch.stack([g, 2 * g]) for n, g in grads.items()}
    )
    torch.testing.assert_close(batched["a"][1], clipped["a"])  # same norm after clipping
    with pytest.raises(ValueError, match="max_norm"):
        SGD(0.1, max_norm=0.0)


def test_meta_gradient_refuses_an_episode_without_the_task_axis(tiny_sinusoid) -> None:
    """One task passed where a meta-batch is expected once gave an 86 % wrong answer."""
    model, episode = tiny_sinusoid(shots=5, query_shots=5)
    learner = make_learner("maml", model, "mse", inner_lr=0.05, inner_steps=1)
    with pytest.raises(ValueError, match=r"episode must be a meta-batch.*x\[None\]"):
        meta_gradient(learner, learner.init_meta(), episode.task(0))
    one = Episode(*(Examples(e.x[None], e.y[None]) for e in episode.task(0)))
    grads, losses = meta_gradient(learner, learner.init_meta(), one)
    per_task, _, _ = task_gradients(learner, learner.init_meta(), episode)
    assert losses.shape == (1,)
    for n, g in grads.items():
        torch.testing.assert_close(g, per_task[n][0], rtol=1e-12, atol=1e-14)
