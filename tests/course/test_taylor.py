"""Chapter 05's Taylor analysis (Nichol et al. 2018) and the comparison widgets (05-07)."""

from __future__ import annotations

import itertools
from collections.abc import Sequence

import matplotlib
import pytest
import torch
from torch.func import grad

from mamlviz.algorithms import make_learner
from mamlviz.core.episode import Episode, Examples
from mamlviz.core.functional import LossFn, Params, detach, flatten
from mamlviz.core.implicit import hvp
from mamlviz.core.metagrad import reptile, unrolled
from mamlviz.course import taylor
from mamlviz.course.viz.derivation import sinusoid_task
from mamlviz.course.viz.implicit import imaml_widget, implicit_vs_unrolled
from mamlviz.course.viz.reptile import (
    minibatches,
    plot_costs,
    plot_taylor_summary,
    projections,
    smooth_problem,
    taylor_summary,
    taylor_widget,
)
from mamlviz.course.viz.rules import plot_rule_tensors, query_mse_after_adaptation, rule_widget

matplotlib.use("Agg")


def test_coefficients_match_the_paper() -> None:
    """k = inner steps: MAML (1, -2k), FOMAML (1, -k), Reptile (k, -k(k-1)/2)."""
    assert taylor.coefficients(1) == {"maml": (1, -2), "fomaml": (1, -1), "reptile": (1, 0)}
    assert taylor.coefficients(2) == {"maml": (1, -4), "fomaml": (1, -2), "reptile": (2, -1)}
    # The paper counts k_p minibatches: MAML/FOMAML take k_p - 1 inner steps, Reptile k_p.
    for k_p in (2, 3, 5):
        assert taylor.coefficients(k_p - 1)["maml"] == (1, -2 * (k_p - 1))
        assert taylor.coefficients(k_p - 1)["fomaml"] == (1, -(k_p - 1))
        assert taylor.coefficients(k_p)["reptile"] == (k_p, -k_p * (k_p - 1) / 2)


def test_gradients_follow_the_papers_definitions() -> None:
    """k = 1: MAML/FOMAML adapt on minibatch 1, query minibatch 2; Reptile steps on 1 only."""
    model = taylor.tanh_mlp(0, hidden=8)
    learner_fn = lambda alg, steps: make_learner(
        alg, model, "mse", inner_lr=0.05, inner_steps=steps
    )
    loss_fn, theta = learner_fn("maml", 1).loss, learner_fn("maml", 1).init_meta()
    b1, b2 = minibatches(1, 2, size=6)
    g = taylor.gradients(loss_fn, theta, [b1, b2], 0.05)
    for alg in ("maml", "fomaml"):
        ref, _ = unrolled(learner_fn(alg, 1), theta, Episode(b1, b2))
        torch.testing.assert_close(flatten(g[alg]), flatten(ref))
    ref, _ = reptile(learner_fn("reptile", 1), theta, Episode(b1, b2))
    torch.testing.assert_close(flatten(g["reptile"]), flatten(ref) / 0.05)
    # k = 2 steps on the same minibatch twice == the package's 2-step pseudo-gradient / alpha.
    same = taylor.gradients(loss_fn, theta, [b1, b1, b2], 0.05)["reptile"]
    ref, _ = reptile(learner_fn("reptile", 2), theta, Episode(b1, b2))
    torch.testing.assert_close(flatten(same), flatten(ref) / 0.05)


@pytest.mark.parametrize("k", [1, 2])
def test_expected_gradients_approach_the_predictions_at_order_alpha_squared(k: int) -> None:
    loss_fn, theta = smooth_problem(0)
    batches = minibatches(0, k + 1)
    errors = taylor.taylor_errors(loss_fn, theta, batches, [1e-4, 1e-3])
    for name, (small, large) in errors.items():
        if k == 1 and name == "reptile":  # one step: g_Reptile = AvgGrad-term exactly, error 0
            assert large < 1e-10, large
            continue
        assert 80 < large / small < 120, (name, small, large)


def test_fit_recovers_the_coefficients_of_any_combination() -> None:
    """Least squares in a non-orthogonal pair of directions is exact inside their span."""
    g = torch.Generator().manual_seed(0)
    u = {"w": torch.randn(5, 3, generator=g, dtype=torch.float64)}
    v = {"w": u["w"] + 0.3 * torch.randn(5, 3, generator=g, dtype=torch.float64)}  # cos ~ 0.95
    combo = {"w": 2.5 * u["w"] - 4.0 * 0.01 * v["w"]}
    a, b = taylor.fit_coefficients(combo, u, v, 0.01)
    assert a == pytest.approx(2.5, abs=1e-10) and b == pytest.approx(-4.0, abs=1e-10)
    # ...whereas the component along unit v, read as a coefficient, even has the wrong sign.
    _, along_v = projections(combo, u, v)
    assert along_v / (0.01 * flatten(v).norm().item()) > 0


@pytest.mark.parametrize("k", [1, 2])
def test_fitted_coefficients_of_the_exact_updates_tend_to_the_closed_form(k: int) -> None:
    """Float64, exact expectation over orders: the fit's error on b is O(alpha)."""
    loss_fn, theta = smooth_problem(0)
    batches = minibatches(0, k + 1)
    closed = taylor.coefficients(k)
    small, large = (taylor.fitted_coefficients(loss_fn, theta, batches, a) for a in (1e-5, 1e-4))
    for name, (a, b) in closed.items():
        assert small[name][0] == pytest.approx(a, abs=1e-4), (name, small[name])
        assert small[name][1] == pytest.approx(b, abs=2e-3), (name, small[name])
        if b != 0:
            ratio = (large[name][1] - b) / (small[name][1] - b)
            assert 8 < ratio < 12, (name, ratio)  # first order in alpha


def test_pair_inner_product_gradient_is_twice_avg_grad_inner() -> None:
    loss_fn, theta = smooth_problem(1)
    batches = minibatches(1, 3, size=5)
    _, avg_inner = taylor.avg_terms(loss_fn, theta, batches)
    g = torch.func.grad(lambda th: taylor.pair_inner_product(loss_fn, th, batches))(theta)
    torch.testing.assert_close(flatten(g), 2 * flatten(avg_inner), rtol=1e-10, atol=1e-12)


def test_taylor_summary_reports_fitted_and_closed_form_coefficients() -> None:
    loss_fn, theta = smooth_problem(0)
    s = taylor_summary(loss_fn, theta, minibatches(0, 3), 1e-4)
    for name, (a, b) in taylor.coefficients(2).items():
        assert s[name]["predicted"] == (a, b)
        assert s[name]["exact"] == pytest.approx((a, b), abs=0.05)
        assert s[name]["residual"] < 1e-3 and s[name]["error"] < 1e-3


def test_taylor_widget_updates_figure_and_status() -> None:
    box, parts = taylor_widget(seed=0, k=1, inner_lr=0.01)
    assert "mamlviz-main" in box._dom_classes
    before, y = parts["status"].value, parts["figure"].data[0].y
    parts["inner_steps"].value = 2
    assert parts["status"].value != before and parts["figure"].data[0].y != y


def test_implicit_agrees_with_unrolled_when_the_inner_problem_is_convex() -> None:
    loss_fn, theta = smooth_problem(0)
    r = implicit_vs_unrolled(loss_fn, theta, sinusoid_task(0), 30.0, (1, 5, 20))
    assert r["unrolled"] < 1e-8 and r["stationarity"] < 1e-8
    assert r["cg"][0] > r["cg"][1] > r["cg"][2]


def test_imaml_widget_cg_slider_moves_the_marker() -> None:
    loss_fn, theta = smooth_problem(0)
    _, parts = imaml_widget(loss_fn, theta, sinusoid_task(0), lam=30.0, cg_steps=2)
    before = parts["status"].value
    parts["cg_steps"].value = 8
    assert parts["figure"].data[2].x == (8,) and parts["status"].value != before


def test_rule_widget_and_static_plots() -> None:
    learner = make_learner("metasgd", taylor.tanh_mlp(0, 8), "mse", inner_lr=0.01, inner_steps=1)
    meta = learner.init_meta()
    _, parts = rule_widget(meta)
    first = parts["figure"].data[0].z
    parts["tensor"].value = 2
    assert parts["figure"].data[0].z != first and "rule.lr." in parts["status"].value
    assert plot_rule_tensors(meta).axes
    assert plot_taylor_summary(taylor_summary(*smooth_problem(0), minibatches(0, 2), 0.01)).axes
    rows = [{"algorithm": "maml", "inner_steps": 1, "ms": 1.0, "peak_mib": 2.0}]
    assert plot_costs(rows).axes
    assert query_mse_after_adaptation(learner, meta, tasks=3) > 0


def _expected_gradients_reference(
    loss_fn: LossFn, theta: Params, batches: Sequence[Examples], inner_lr: float
) -> dict[str, Params]:
    """The definition before vmap, kept verbatim: one order at a time, the inner loop run once
    under ``grad`` for MAML and once more for phi."""

    def one_order(ordered: list[Examples]) -> dict[str, Params]:
        *inner, last = ordered
        objective = lambda th: loss_fn(taylor.sgd_path(loss_fn, th, inner, inner_lr)[-1], last)
        phi = detach(taylor.sgd_path(loss_fn, theta, inner, inner_lr)[-1])
        return {
            "maml": grad(objective)(theta),
            "fomaml": grad(loss_fn)(phi, last),
            "reptile": {n: (theta[n] - phi[n]) / inner_lr for n in theta},
        }

    orders = list(itertools.permutations(range(len(batches))))
    total: dict = {}
    for order in orders:
        for name, value in one_order([batches[i] for i in order]).items():
            acc = total.setdefault(name, {n: 0 * v for n, v in value.items()})
            total[name] = {n: acc[n] + value[n] / len(orders) for n in value}
    return total


def _avg_terms_reference(
    loss_fn: LossFn, theta: Params, batches: Sequence[Examples]
) -> tuple[Params, Params]:
    """AvgGradInner before the linearity shortcut: one Hessian-vector product per pair."""
    grads = [grad(loss_fn)(theta, b) for b in batches]
    avg_grad = {n: sum(g[n] for g in grads) / len(batches) for n in theta}
    pairs = [(i, j) for i in range(len(batches)) for j in range(len(batches)) if i != j]
    inner = [hvp(loss_fn, theta, batches[i], grads[j]) for i, j in pairs]
    return avg_grad, {n: sum(h[n] for h in inner) / len(pairs) for n in theta}


@pytest.mark.parametrize(("k", "inner_lr"), [(1, 0.01), (2, 0.05), (3, 0.003), (3, 0.1)])
def test_fast_expected_gradients_and_avg_terms_equal_the_plain_definitions(
    k: int, inner_lr: float
) -> None:
    """The widget's path (all orders under vmap; n instead of n(n-1) Hessian products) returns
    the numbers of the plain loops to float rounding (float64)."""
    loss_fn, theta = smooth_problem(0)
    batches = minibatches(3, k + 1)
    fast = taylor.expected_gradients(loss_fn, theta, batches, inner_lr)
    ref = _expected_gradients_reference(loss_fn, theta, batches, inner_lr)
    loop = taylor.expected_gradients_loop(loss_fn, theta, batches, inner_lr)
    for name in taylor.ALGORITHMS:
        scale = float(flatten(ref[name]).abs().max())
        for other in (fast, loop):
            torch.testing.assert_close(
                flatten(other[name]), flatten(ref[name]), rtol=1e-10, atol=1e-13 * scale
            )
    for new, old in zip(
        taylor.avg_terms(loss_fn, theta, batches),
        _avg_terms_reference(loss_fn, theta, batches),
        strict=True,
    ):
        scale = float(flatten(old).abs().max())
        torch.testing.assert_close(flatten(new), flatten(old), rtol=1e-10, atol=1e-13 * scale)


def test_expected_gradients_of_minibatches_of_different_sizes_take_the_loop() -> None:
    """Unequal minibatches cannot be stacked for vmap: the loop's answer comes back."""
    loss_fn, theta = smooth_problem(0)
    b1, b2 = minibatches(0, 2, size=6)
    b2 = Examples(b2.x[:4], b2.y[:4])
    fast = taylor.expected_gradients(loss_fn, theta, [b1, b2], 0.01)
    ref = _expected_gradients_reference(loss_fn, theta, [b1, b2], 0.01)
    for name in taylor.ALGORITHMS:
        torch.testing.assert_close(flatten(fast[name]), flatten(ref[name]), rtol=1e-10, atol=0)
