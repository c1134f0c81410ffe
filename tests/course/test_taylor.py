"""Chapter 05's Taylor analysis (Nichol et al. 2018) and the comparison widgets (05-07)."""

from __future__ import annotations

import matplotlib
import pytest
import torch

from mamlviz.algorithms import make_learner
from mamlviz.core.episode import Episode
from mamlviz.core.functional import flatten
from mamlviz.core.metagrad import reptile, unrolled
from mamlviz.course import taylor
from mamlviz.course.viz.derivation import sinusoid_task
from mamlviz.course.viz.implicit import imaml_widget, implicit_vs_unrolled
from mamlviz.course.viz.reptile import (
    minibatches,
    plot_costs,
    plot_taylor_summary,
    smooth_problem,
    taylor_summary,
    taylor_widget,
)
from mamlviz.course.viz.rules import plot_rule_tensors, query_mse_after_adaptation, rule_widget

matplotlib.use("Agg")


def test_coefficients_match_the_paper() -> None:
    assert taylor.coefficients(1) == {"maml": (1, 0), "fomaml": (1, 0), "reptile": (1, 0)}
    assert taylor.coefficients(3) == {"maml": (1, -4), "fomaml": (1, -2), "reptile": (3, -3)}


def test_gradients_follow_the_papers_definitions() -> None:
    """k = 2: MAML/FOMAML adapt on minibatch 1, query minibatch 2; Reptile steps on both."""
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
    # Reptile on the same minibatch twice == the package's pseudo-gradient / alpha.
    same = taylor.gradients(loss_fn, theta, [b1, b1], 0.05)["reptile"]
    ref, _ = reptile(learner_fn("reptile", 2), theta, Episode(b1, b1))
    torch.testing.assert_close(flatten(same), flatten(ref) / 0.05)


@pytest.mark.parametrize("k", [2, 3])
def test_expected_gradients_approach_the_predictions_at_order_alpha_squared(k: int) -> None:
    loss_fn, theta = smooth_problem(0)
    batches = minibatches(0, k)
    errors = taylor.taylor_errors(loss_fn, theta, batches, [1e-4, 1e-3])
    for name, (small, large) in errors.items():
        assert 80 < large / small < 120, (name, small, large)


def test_taylor_widget_updates_figure_and_status() -> None:
    box, parts = taylor_widget(seed=0, k=2, inner_lr=0.01)
    assert "mamlviz-main" in box._dom_classes
    before, y = parts["status"].value, parts["figure"].data[0].y
    parts["inner_steps"].value = 3
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
