"""Mathematics of chapter 07's helpers (float64): CG iterates, power iteration, the unsolved
fraction of the inner problem, and implicit == unrolled on a convex quadratic inner problem."""

from __future__ import annotations

import asyncio

import pytest
import torch
from torch import nn
from torch.func import grad

from mamlviz.core.episode import Episode, Examples
from mamlviz.core.functional import (
    LossFn,
    Params,
    detach,
    make_loss,
    params_of,
    tree_norm,
    tree_sub,
)
from mamlviz.core.implicit import conjugate_gradient, hvp, implicit_matvec
from mamlviz.course.derivation import top_hessian_eigenvalue
from mamlviz.course.viz.derivation import sinusoid_task
from mamlviz.course.viz.implicit import (
    CG_STEPS,
    PREFETCH_IDLE_S,
    cg_iterates,
    fit_line,
    imaml_widget,
    implicit_vs_unrolled,
    proximal_adapt,
    sharp_inner_lr,
    slider_neighbours,
    support_hessian,
    unrolled_gradient,
    unsolved_fraction,
)
from mamlviz.course.viz.reptile import smooth_problem
from mamlviz.models import sinusoid_mlp


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


def _implicit_vs_unrolled_reference(
    loss_fn: LossFn, theta: Params, episode: Episode, lam: float, cg_steps: tuple, lr: float
) -> tuple[dict[str, object], Params, list[Params]]:
    """The computation before plain autograd, kept verbatim: ``torch.func.grad`` through
    :func:`proximal_adapt`, and CG on :func:`implicit_matvec` (one fresh gradient per product)."""

    def unrolled_query(th: Params) -> tuple[torch.Tensor, Params]:
        phi = proximal_adapt(loss_fn, th, episode.support, lam, lr, 30)
        return loss_fn(phi, episode.query), detach(phi)

    unrolled_g, phi = grad(unrolled_query, has_aux=True)(theta)
    g_query = grad(loss_fn)(phi, episode.query)
    matvec = implicit_matvec(loss_fn, phi, episode.support, lam)
    iterates, curvature = cg_iterates(matvec, g_query, max(60, *cg_steps))
    g_s = grad(loss_fn)(phi, episode.support)
    stationarity = tree_norm({n: g_s[n] + lam * (phi[n] - theta[n]) for n in phi})
    rel = lambda a, b: float(tree_norm(tree_sub(a, b)) / tree_norm(b))
    result = {
        "cg": [rel(iterates[s - 1], iterates[-1]) for s in cg_steps],
        "unrolled": rel(iterates[-1], unrolled_g),
        "stationarity": float(stationarity),
        "curvature": curvature,
    }
    return result, unrolled_g, iterates


@pytest.mark.parametrize("lam", [3.0, 30.0])
def test_fast_implicit_vs_unrolled_equals_the_torch_func_computation(lam: float) -> None:
    """Plain autograd for the unrolled gradient and one kept support gradient for CG's
    Hessian products give the numbers of the torch.func version to float rounding (float64,
    a ReLU net whose inner problem is far from solved, so nothing is near 0)."""
    model = sinusoid_mlp(0).double()
    loss_fn, theta = make_loss(model, "mse"), params_of(model)
    episode = sinusoid_task(seed=0, shots=10, query_shots=10)
    lr, cg_steps = 0.5 / (lam + 20.0), (1, 2, 5, 20)
    ref, ref_g, ref_iterates = _implicit_vs_unrolled_reference(
        loss_fn, theta, episode, lam, cg_steps, lr
    )
    new = implicit_vs_unrolled(loss_fn, theta, episode, lam, cg_steps, inner_lr=lr, steps=30)
    new_g, phi = unrolled_gradient(loss_fn, theta, episode, lam, lr, 30)
    flat = lambda p: torch.cat([w.reshape(-1) for w in p.values()])
    torch.testing.assert_close(flat(new_g), flat(ref_g), rtol=1e-10, atol=0)
    _, hessian_vector = support_hessian(loss_fn, phi, episode.support)
    v = ref_iterates[-1]
    torch.testing.assert_close(
        flat(hessian_vector(v)), flat(hvp(loss_fn, phi, episode.support, v)), rtol=1e-10, atol=0
    )
    assert ref["unrolled"] > 1e-3 and abs(ref["curvature"]) > 1e-3  # far from 0: rtol applies
    for key in ("unrolled", "stationarity", "curvature"):
        assert new[key] == pytest.approx(ref[key], rel=1e-10), key
    # CG errors relative to the converged answer: rounding is absolute at about 1e-15 there
    assert new["cg"] == pytest.approx(ref["cg"], rel=1e-10, abs=1e-12)


def test_slider_neighbours_are_one_log_step_away_inside_the_range() -> None:
    assert slider_neighbours(10.0, 0, 2, 0.125) == [round(10**0.875, 9), round(10**1.125, 9)]
    assert slider_neighbours(1.0, 0, 2, 0.125) == [round(10**0.125, 9)]  # the low end
    assert slider_neighbours(100.0, 0, 2, 0.125) == [round(10**1.875, 9)]  # the high end


def test_imaml_widget_shows_a_busy_line_then_the_result_and_prefetches_neighbours() -> None:
    """An uncached lam says "computing" (with the time estimate) before its result replaces
    it; after ``prefetch`` the neighbours are cached with the numbers a direct call gives."""
    loss_fn, theta = smooth_problem(0)
    episode = sinusoid_task(0)
    kwargs = dict(inner_lr=0.01, steps=20)
    _, parts = imaml_widget(loss_fn, theta, episode, lam=10.0, cg_steps=2, **kwargs)
    seen: list[str] = []
    parts["status"].observe(lambda change: seen.append(change["new"]), names="value")
    parts["lam"].value = 10**1.5
    assert "computing lam = 31.6" in seen[0] and "(about " in seen[0]
    assert "computing" not in parts["status"].value and "lam = 31.6" in parts["status"].value
    assert set(parts["cache"]) == {10.0, round(10**1.5, 9)}  # no running loop: nothing ahead
    parts["prefetch"]()
    up = round(10**1.625, 9)
    assert set(parts["cache"]) == {10.0, round(10**1.375, 9), round(10**1.5, 9), up}
    assert parts["cache"][up] == implicit_vs_unrolled(
        loss_fn, theta, episode, up, CG_STEPS, **kwargs
    )
    seen.clear()
    parts["lam"].value = 10**1.625  # a cache hit: no busy line
    assert not any("computing" in s for s in seen) and "lam = 42.2" in parts["status"].value


def test_imaml_widget_prefetches_on_an_idle_event_loop() -> None:
    """In a kernel (a running asyncio loop) the neighbours are computed after the idle delay,
    one callback each, without anyone calling ``prefetch``."""
    loss_fn, theta = smooth_problem(0)

    async def scenario() -> set[float]:
        _, parts = imaml_widget(loss_fn, theta, sinusoid_task(0), lam=10.0, inner_lr=0.01, steps=20)
        assert set(parts["cache"]) == {10.0}
        for _ in range(50):  # the two neighbours, each a separate callback
            await asyncio.sleep(PREFETCH_IDLE_S / 5)
            if len(parts["cache"]) == 3:
                break
        return set(parts["cache"])

    keys = asyncio.run(scenario())
    assert keys == {10.0, round(10**0.875, 9), round(10**1.125, 9)}
