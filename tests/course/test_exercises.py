"""Exercise checkers: right answers pass, wrong ones fail with a hint, stubs say "not done"."""

from __future__ import annotations

import pytest
import torch
from torch.func import grad

from mamlviz.core.episode import Episode, Examples
from mamlviz.core.functional import tree_dot, tree_sub
from mamlviz.core.implicit import conjugate_gradient, hvp
from mamlviz.course import derivation, exercises, taylor
from mamlviz.course.landscape import Plane, filter_normalized
from mamlviz.tasks.sinusoid import SinusoidTasks

RIGHT = {
    "inner_step": lambda loss_fn, theta, support, lr: derivation.inner_step(
        loss_fn, theta, derivation.Episode(support, support), lr
    ),
    "hessian_vector_product": hvp,
    "maml_meta_gradient": derivation.autodiff_meta_gradient,
    "fomaml_gradient": derivation.fomaml_gradient,
    "reptile_update": lambda theta, phi, eps: {
        n: (1 - eps) * theta[n] + eps * phi[n] for n in theta
    },
    "reptile_inner_coefficient": lambda k: 0.5 * k * (k - 1),
    "meta_sgd_step": lambda theta, g, lrs: {n: theta[n] - lrs[n] * g[n] for n in theta},
    "conjugate_gradient": conjugate_gradient,
    "sinusoid_episode": SinusoidTasks().sample(torch.Generator().manual_seed(0), 5, 10, 1).task(0),
    "zero_predictor_mse": (5**3 - 0.1**3) / (3 * 4.9) / 2,
    "adaptation_losses": lambda loss_fn, theta, support, lr, steps: [
        float(loss_fn(p, support)) for p in taylor.sgd_path(loss_fn, theta, [support] * steps, lr)
    ],
    "project_to_plane": lambda o, d1, d2, p: Plane(o, d1, d2).project(p),
    "filter_normalized": filter_normalized,
}

# chapter 01's function form of the episode exercise
EPISODE_FN = lambda a, phase, xs, xq: Episode(
    Examples(xs, a * torch.sin(xs - phase)), Examples(xq, a * torch.sin(xq - phase))
)

WRONG = {
    # the query loss instead of the support loss
    "inner_step": lambda loss_fn, theta, support, lr: {n: w + lr for n, w in theta.items()},
    # the gradient instead of H v
    "hessian_vector_product": lambda loss_fn, params, examples, v: grad(loss_fn)(params, examples),
    # the Hessian of the query loss: the common mistake
    "maml_meta_gradient": lambda loss_fn, theta, episode, lr: derivation.meta_gradient_with_hessian(
        loss_fn, theta, episode, lr, hessian_of="query"
    ),
    # MAML's gradient is not FOMAML's
    "fomaml_gradient": derivation.exact_meta_gradient,
    "reptile_update": lambda theta, phi, eps: {
        n: theta[n] + eps * (theta[n] - phi[n]) for n in theta
    },
    "reptile_inner_coefficient": lambda k: 2 * (k - 1),
    "meta_sgd_step": lambda theta, g, lrs: {n: theta[n] - lrs[n].mean() * g[n] for n in theta},
    "conjugate_gradient": lambda matvec, b, steps: b,
    "sinusoid_episode": SinusoidTasks().sample(torch.Generator().manual_seed(0), 10, 5, 1).task(0),
    "zero_predictor_mse": 4.9,
    "adaptation_losses": lambda loss_fn, theta, support, lr, steps: [1.0] * (steps + 1),
    "project_to_plane": lambda o, d1, d2, p: (tree_dot(d1, tree_sub(p, o)), 0.0),
    "filter_normalized": lambda d, w: d,
}

VALUES = {"sinusoid_episode", "zero_predictor_mse"}  # checkers that take a value


def test_every_registered_checker_is_covered() -> None:
    assert set(exercises.CHECKS) == set(RIGHT) == set(WRONG)
    for name in exercises.CHECKS:
        assert getattr(exercises, f"check_{name}") is exercises.CHECKS[name]


@pytest.mark.parametrize("name", sorted(RIGHT))
def test_right_answer_passes(name: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert exercises.CHECKS[name](RIGHT[name]) is True
    assert capsys.readouterr().out.startswith("right:")


@pytest.mark.parametrize("name", sorted(WRONG))
def test_wrong_answer_fails_with_a_hint(name: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert exercises.CHECKS[name](WRONG[name]) is False
    out = capsys.readouterr().out
    assert out.startswith("wrong:") and "Hint:" in out


@pytest.mark.parametrize("name", sorted(set(RIGHT) - VALUES))
def test_stub_says_not_done_yet(name: str, capsys: pytest.CaptureFixture[str]) -> None:
    def stub(*args):
        raise NotImplementedError("exercise")

    assert exercises.CHECKS[name](stub) is False
    assert capsys.readouterr().out.startswith("not done yet:")


def test_a_crashing_or_malformed_answer_never_raises(capsys: pytest.CaptureFixture[str]) -> None:
    assert exercises.check_inner_step(lambda *a: 1 / 0) is False
    assert "ZeroDivisionError" in capsys.readouterr().out
    assert exercises.check_fomaml_gradient(lambda *a: {"nope": torch.zeros(1)}) is False
    assert "expected a dict with keys" in capsys.readouterr().out
    assert exercises.check_reptile_inner_coefficient(lambda k: float("nan")) is False
    assert capsys.readouterr().out.startswith("wrong:")
    assert exercises.check_sinusoid_episode(...) is False
    assert capsys.readouterr().out.startswith("not done yet:")


def test_episode_checker_takes_chapter_01_function_form(capsys: pytest.CaptureFixture[str]) -> None:
    assert exercises.check_sinusoid_episode(EPISODE_FN) is True
    wrong = lambda a, phase, xs, xq: EPISODE_FN(a, -phase, xs, xq)  # sin(x + phase)
    assert exercises.check_sinusoid_episode(wrong) is False
    assert "Hint:" in capsys.readouterr().out
