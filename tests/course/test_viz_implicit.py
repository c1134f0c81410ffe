"""Mathematics of chapter 07's helpers (float64): CG iterates, power iteration, the unsolved
fraction of the inner problem, and implicit == unrolled on a convex quadratic inner problem."""

from __future__ import annotations

import pytest
import torch
from torch import nn
from torch.func import grad

from mamlviz.core.episode import Episode, Examples
from mamlviz.core.functional import make_loss, params_of
from mamlviz.core.implicit import conjugate_gradient
from mamlviz.course.derivation import top_hessian_eigenvalue
from mamlviz.course.viz.implicit import (
    cg_iterates,
    fit_line,
    implicit_vs_unrolled,
    proximal_adapt,
    sharp_inner_lr,
    unsolved_fraction,
)


def _spd(n: int = 7, seed: int = 0) -> torch.Tensor:
    m = torch.randn(n, n, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    return m @ m.T + 0.5 * torch.eye(n, dtype=torch.float64)


def test_cg_iterates_are_the_answers_of_cg_with_each_number_of_steps() -> None:
    a = _spd()
    matvec = lambda v: {"x": a @ v["x"]}
    b = {"x": torch.linspace(-1.0, 2.0, 7, dtype=torch.float64)}
    iterates, curvature = cg_iterates(matvec, b, 7)
    for k, x in enumerate(iterates, start=1):
        assert torch.allclose(x["x"], conjugate_gradient(matvec, b, k)["x"], atol=1e-12)
    # n steps solve an n x n SPD system exactly; the curvature seen is within A's spectrum
    assert torch.allclose(iterates[-1]["x"], torch.linalg.solve(a, b["x"]), atol=1e-9)
    eig = torch.linalg.eigvalsh(a)
    assert float(eig[0]) - 1e-9 <= curvature <= float(eig[-1]) + 1e-9


def test_cg_iterates_report_an_indefinite_operator() -> None:
    a = torch.diag(torch.tensor([2.0, -1.0, 3.0], dtype=torch.float64))
    _, curvature = cg_iterates(lambda v: {"x": a @ v["x"]}, {"x": torch.ones(3).double()}, 3)
    assert curvature <= 0


def test_top_curvature_is_the_largest_hessian_eigenvalue() -> None:
    a = _spd(6, seed=1)
    loss_fn = lambda p, examples: 0.5 * p["w"] @ a @ p["w"]  # Hessian a
    examples = Examples(torch.zeros(1, 1).double(), torch.zeros(1, 1).double())
    value = top_hessian_eigenvalue(loss_fn, {"w": torch.zeros(6).double()}, examples, iters=300)
    assert value == pytest.approx(float(torch.linalg.eigvalsh(a)[-1]), rel=1e-8)


def test_unsolved_fraction_and_sharp_step() -> None:
    assert unsolved_fraction(0.01, 10.0, 100) == pytest.approx(0.9**100, rel=1e-12)
    assert sharp_inner_lr(90.0)(10.0) == pytest.approx(0.01)


def test_fit_line_recovers_a_line_and_measures_the_residual() -> None:
    fit = fit_line([1, 10, 20, 40], [2.5 + 0.75 * x for x in (1, 10, 20, 40)])
    assert fit["slope"] == pytest.approx(0.75) and fit["intercept"] == pytest.approx(2.5)
    assert fit["max_residual"] == pytest.approx(0.0, abs=1e-10)
    bent = fit_line([0, 1, 2], [0.0, 1.0, 0.0])  # best line y = 1/3, residuals 1/3, 2/3, 1/3
    assert bent["slope"] == pytest.approx(0.0, abs=1e-12)
    assert bent["max_residual"] == pytest.approx(2 / 3)


def _linear_episode() -> tuple:
    torch.manual_seed(0)
    model = nn.Linear(3, 1).double()  # MSE of a linear model: a convex quadratic inner problem
    g = torch.Generator().manual_seed(1)
    x = torch.randn(8, 3, generator=g, dtype=torch.float64)
    xq = torch.randn(6, 3, generator=g, dtype=torch.float64)
    w = torch.tensor([[1.0, -2.0, 0.5]], dtype=torch.float64)
    episode = Episode(Examples(x, x @ w.T), Examples(xq, xq @ w.T + 0.3))
    return make_loss(model, "mse"), params_of(model), episode


def test_implicit_equals_unrolled_on_a_solved_convex_inner_problem() -> None:
    loss_fn, theta, episode = _linear_episode()
    r = implicit_vs_unrolled(loss_fn, theta, episode, 1.0, (1, 2, 4), inner_lr=0.1, steps=600)
    assert r["left"] == pytest.approx(0.9**600)
    assert r["stationarity"] < 1e-10 and r["unrolled"] < 1e-9
    assert r["cg"][2] < 1e-10  # 4 parameters: 4 CG steps are exact
    assert r["curvature"] > 0


def test_few_steps_leave_the_inner_problem_unsolved_and_the_gradients_apart() -> None:
    loss_fn, theta, episode = _linear_episode()
    r = implicit_vs_unrolled(loss_fn, theta, episode, 1.0, (4,), inner_lr=0.1, steps=5)
    assert r["left"] == pytest.approx(0.9**5)
    assert r["unrolled"] > 1e-2 and r["stationarity"] > 1e-2
    # the unrolled gradient is the derivative of the 5 steps actually taken: a finite difference
    # of the query loss after 5 steps along a direction agrees with it
    q = lambda th: loss_fn(proximal_adapt(loss_fn, th, episode.support, 1.0, 0.1, 5), episode.query)
    g = grad(q)(theta)
    d = {n: torch.ones_like(w) for n, w in theta.items()}
    h = 1e-6
    plus = {n: theta[n] + h * d[n] for n in theta}
    minus = {n: theta[n] - h * d[n] for n in theta}
    fd = (float(q(plus)) - float(q(minus))) / (2 * h)
    assert fd == pytest.approx(float(sum((g[n] * d[n]).sum() for n in g)), rel=1e-6)
