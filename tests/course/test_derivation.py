"""Chapter 03's derivation, line by line, against autodiff and closed forms (float64)."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from mamlviz.algorithms import make_learner
from mamlviz.core.episode import Episode, Examples
from mamlviz.core.functional import flatten, make_loss, params_of, unflatten
from mamlviz.core.metagrad import unrolled
from mamlviz.course import derivation as d
from mamlviz.models import MLP
from mamlviz.tasks.sinusoid import SinusoidTasks


def problem(seed: int = 0):
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = MLP(1, (16, 16), 1).double()
    g = torch.Generator().manual_seed(seed)
    episode = SinusoidTasks().sample(g, 10, 10, 1, torch.float64).task(0)
    return model, make_loss(model, "mse"), params_of(model), episode


def hessian(loss_fn, theta, examples) -> torch.Tensor:
    return torch.func.hessian(lambda v: loss_fn(unflatten(v, theta), examples))(flatten(theta))


@pytest.mark.parametrize("alpha", [0.003, 0.05])
def test_exact_formula_equals_autodiff_chain_rule_and_maml_learner(alpha: float) -> None:
    model, loss_fn, theta, episode = problem()
    exact = d.exact_meta_gradient(loss_fn, theta, episode, alpha)
    learner = make_learner("maml", model, "mse", inner_lr=alpha, inner_steps=1)
    for other in (
        d.autodiff_meta_gradient(loss_fn, theta, episode, alpha),
        d.chain_rule(loss_fn, theta, episode, alpha),
        unrolled(learner, dict(theta), episode)[0],
    ):
        torch.testing.assert_close(flatten(other), flatten(exact), rtol=1e-10, atol=1e-12)


def test_exact_formula_with_dense_support_hessian_at_theta() -> None:
    _, loss_fn, theta, episode = problem(1)
    alpha = 0.02
    h = hessian(loss_fn, theta, episode.support)
    g_q = flatten(d.adapted_query_gradient(loss_fn, theta, episode, alpha))
    expected = (torch.eye(h.shape[0], dtype=h.dtype) - alpha * h) @ g_q
    exact = flatten(d.exact_meta_gradient(loss_fn, theta, episode, alpha))
    torch.testing.assert_close(exact, expected, rtol=1e-10, atol=1e-12)


def test_fomaml_drops_exactly_the_hessian_term_and_matches_the_learner() -> None:
    model, loss_fn, theta, episode = problem(2)
    alpha = 0.03
    fo = d.fomaml_gradient(loss_fn, theta, episode, alpha)
    learner = make_learner("fomaml", model, "mse", inner_lr=alpha, inner_steps=1)
    torch.testing.assert_close(flatten(fo), flatten(unrolled(learner, dict(theta), episode)[0]))
    h = hessian(loss_fn, theta, episode.support)
    gap = flatten(d.exact_meta_gradient(loss_fn, theta, episode, alpha)) - flatten(fo)
    torch.testing.assert_close(gap, -alpha * h @ flatten(fo), rtol=1e-9, atol=1e-12)


def test_the_two_mistakes_differ_from_the_truth_and_match_their_formulas() -> None:
    _, loss_fn, theta, episode = problem(3)
    alpha = 0.05
    truth = d.autodiff_meta_gradient(loss_fn, theta, episode, alpha)
    phi = d.inner_step(loss_fn, theta, episode, alpha)
    g_q = flatten(d.adapted_query_gradient(loss_fn, theta, episode, alpha))
    eye = torch.eye(g_q.numel(), dtype=g_q.dtype)
    cases = {
        ("query", "theta"): hessian(loss_fn, theta, episode.query),
        ("support", "theta_prime"): hessian(loss_fn, phi, episode.support),
    }
    for (of, at), h in cases.items():
        wrong = d.meta_gradient_with_hessian(
            loss_fn, theta, episode, alpha, hessian_of=of, hessian_at=at
        )
        torch.testing.assert_close(flatten(wrong), (eye - alpha * h) @ g_q, rtol=1e-9, atol=1e-12)
        assert d.relative_error(wrong, truth) > 1e-4
    with pytest.raises(ValueError, match="hessian_of"):
        d.meta_gradient_with_hessian(loss_fn, theta, episode, alpha, hessian_of="both")


def test_first_order_error_shrinks_linearly_and_cosine_tends_to_one() -> None:
    _, loss_fn, theta, episode = problem(4)
    errors, cosines = d.first_order_errors(loss_fn, theta, episode, [1e-5, 1e-4, 1e-3])
    assert errors[0] < errors[1] < errors[2]
    ratio = (errors[1] / errors[0]).item()
    assert 8 < ratio < 12  # O(alpha): ten times smaller alpha, ten times smaller error
    assert cosines[0] > 1 - 1e-8 and cosines[0] >= cosines[2]
    assert d.first_order_error(loss_fn, theta, episode, 0.0) == pytest.approx((0.0, 1.0))


def test_taylor_expansion_of_the_objective_has_second_order_error() -> None:
    _, loss_fn, theta, episode = problem(5)
    small, large = (d.taylor_objective(loss_fn, theta, episode, a) for a in (1e-4, 1e-3))
    assert 80 < large.error / small.error < 120
    assert 50 < large.error_at_prime / small.error_at_prime < 150
    assert small.exact == pytest.approx(small.approx, abs=1e-6)


def test_linear_model_hand_derived_values() -> None:
    """w = 1, support (1, 2), query (2, 1), alpha = 0.1 (see test_core_math): 4.48 and 5.6."""
    model = nn.Linear(1, 1, bias=False).double()
    with torch.no_grad():
        model.weight.fill_(1.0)
    loss_fn, theta = make_loss(model, "mse"), params_of(model)
    t = lambda v: torch.tensor([[v]], dtype=torch.float64)
    episode = Episode(Examples(t(1.0), t(2.0)), Examples(t(2.0), t(1.0)))
    assert d.inner_step(loss_fn, theta, episode, 0.1)["weight"].item() == pytest.approx(1.2)
    assert d.exact_meta_gradient(loss_fn, theta, episode, 0.1)["weight"].item() == pytest.approx(
        4.48
    )
    assert d.fomaml_gradient(loss_fn, theta, episode, 0.1)["weight"].item() == pytest.approx(5.6)
    # Taylor: L_q(w) = 1, grad L_s(w) = -2, grad L_q(w) = 4 -> 1 - 0.1 * (-8) = 1.8 vs 1.96.
    taylor = d.taylor_objective(loss_fn, theta, episode, 0.1)
    assert (taylor.exact, taylor.approx) == pytest.approx((1.96, 1.8))


def test_first_order_widget_updates_figure_and_status() -> None:
    import matplotlib

    from mamlviz.course.viz import derivation as view

    matplotlib.use("Agg")
    net = view.load_sinusoid("no-such-checkpoint")  # falls back to a fresh network
    assert net.source.startswith("fresh init")
    box, parts = view.first_order_widget(net, seed=0, inner_lr=0.01)
    assert view.MAIN_CLASS in box._dom_classes
    status, marker = parts["status"].value, parts["figure"].data[2].y
    parts["inner_lr"].value = 0.05
    assert parts["status"].value != status and parts["figure"].data[2].y != marker
    curve = parts["figure"].data[0].y
    parts["task"].value = 3
    assert parts["figure"].data[0].y != curve
    episode = view.sinusoid_task(0)
    assert view.plot_first_order_error(net, episode).axes
    assert view.plot_taylor_error(net, episode).axes


def test_below_the_first_relu_kink_the_taylor_error_is_exactly_second_order() -> None:
    model, loss_fn, theta, episode = problem(6)
    x = torch.cat([episode.support.x, episode.query.x])
    assert d.relu_pattern(model, theta, x).numel() == 32 * x.shape[0]  # 16 + 16 hidden units
    kink = d.kink_free_inner_lr(model, theta, episode, torch.logspace(-8, -1, 29).tolist())
    assert kink > 1e-7
    small, large = (d.taylor_objective(loss_fn, theta, episode, a).error for a in (kink / 10, kink))
    assert large / small == pytest.approx(100, rel=0.02)


def test_meta_batch_error_compares_the_averaged_gradients() -> None:
    _, loss_fn, theta, episode = problem(7)
    _, _, _, other = problem(8)
    alpha = 0.03
    err, cos = d.meta_batch_first_order_error(loss_fn, theta, [episode, other], alpha)
    fo = (flatten(d.fomaml_gradient(loss_fn, theta, episode, alpha))
          + flatten(d.fomaml_gradient(loss_fn, theta, other, alpha))) / 2  # fmt: skip
    ex = (flatten(d.autodiff_meta_gradient(loss_fn, theta, episode, alpha))
          + flatten(d.autodiff_meta_gradient(loss_fn, theta, other, alpha))) / 2  # fmt: skip
    assert err == pytest.approx(((fo - ex).norm() / ex.norm()).item(), rel=1e-10)
    assert cos == pytest.approx(torch.nn.functional.cosine_similarity(fo, ex, dim=0).item())
    # one task: the meta-batch numbers are the per-task ones
    one = d.meta_batch_first_order_error(loss_fn, theta, [episode], alpha)
    assert one == pytest.approx(d.first_order_error(loss_fn, theta, episode, alpha))


def test_top_hessian_eigenvalue_matches_the_dense_spectrum() -> None:
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        model = MLP(1, (6, 6), 1).double()
    loss_fn, theta = make_loss(model, "mse"), params_of(model)
    episode = problem(0)[3]
    eig = torch.linalg.eigvalsh(hessian(loss_fn, theta, episode.support))
    top = eig[eig.abs().argmax()].item()
    assert d.top_hessian_eigenvalue(loss_fn, theta, episode.support, iters=500) == pytest.approx(
        top, rel=1e-6
    )


def test_loglog_slope_of_power_laws() -> None:
    x = [1e-4, 1e-3, 1e-2]
    assert d.loglog_slope(x, [3 * a**2 for a in x]) == pytest.approx(2.0, abs=1e-12)
    assert d.loglog_slope(x, [0.5 / a for a in x]) == pytest.approx(-1.0, abs=1e-12)
