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
    "sinusoid_task": SinusoidTasks().sample(torch.Generator().manual_seed(0), 5, 10, 1).task(0),
    "sinusoid_episode": lambda a, phase, xs, xq: EPISODE_FN(a, phase, xs, xq),
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
    "sinusoid_task": SinusoidTasks().sample(torch.Generator().manual_seed(0), 10, 5, 1).task(0),
    "sinusoid_episode": lambda a, phase, xs, xq: Episode(
        Examples(xs, a * torch.sin(xs + phase)), Examples(xq, a * torch.sin(xq + phase))
    ),
    "zero_predictor_mse": 4.9,
    "adaptation_losses": lambda loss_fn, theta, support, lr, steps: [1.0] * (steps + 1),
    "project_to_plane": lambda o, d1, d2, p: (tree_dot(d1, tree_sub(p, o)), 0.0),
    "filter_normalized": lambda d, w: d,
}

VALUES = {"sinusoid_task", "zero_predictor_mse"}  # checkers that take a value


def test_every_registered_checker_is_covered() -> None:
    """Every checker of this module is tested here; chapter modules that register their own
    (``exercises_<chapter>.py``) test theirs beside their widgets."""
    ours = {n for n, f in exercises.CHECKS.items() if f.__module__ == exercises.__name__}
    assert ours == set(RIGHT) == set(WRONG)
    for name in ours:
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
    assert exercises.check_sinusoid_task(...) is False
    assert capsys.readouterr().out.startswith("not done yet:")


def test_episode_checker_takes_chapter_01_function_form(capsys: pytest.CaptureFixture[str]) -> None:
    assert exercises.check_sinusoid_episode(EPISODE_FN) is True
    wrong = lambda a, phase, xs, xq: EPISODE_FN(a, -phase, xs, xq)  # sin(x + phase)
    assert exercises.check_sinusoid_episode(wrong) is False
    assert "Hint:" in capsys.readouterr().out


# --- every checker rejects the usual wrong answers ---------------------------------------------


def mapped(out, f):
    """Apply ``f`` to every tensor / number in a checker answer's output."""
    if isinstance(out, Episode):
        return Episode(*(Examples(e.x, f(e.y)) for e in out))
    if isinstance(out, dict):
        return {n: mapped(w, f) for n, w in out.items()}
    if isinstance(out, list | tuple):
        return type(out)(mapped(v, f) for v in out)
    if isinstance(out, torch.Tensor):
        return f(out)
    return float(f(torch.tensor(float(out))))


def transposed(t: torch.Tensor) -> torch.Tensor:
    return t.T if t.dim() == 2 else t


MUTATIONS = {
    "zeros": torch.zeros_like,
    "sign flipped": torch.neg,
    "constant offset": lambda t: t + 0.1,
    "transposed": transposed,
}


# answers without a matrix in them, where "transposed" is no mistake one can make
NO_MATRIX = {"reptile_inner_coefficient", "conjugate_gradient", "adaptation_losses"} | {
    "project_to_plane"
}


def query_gradient_at_theta(loss_fn, theta, episode, lr):
    """No adaptation at all: the query gradient at theta (the input, not phi)."""
    return grad(loss_fn)(theta, episode.query)


# "the input returned unchanged", per checker: what that mistake looks like for its signature
UNCHANGED = {
    "inner_step": lambda loss_fn, theta, support, lr: theta,
    "hessian_vector_product": lambda loss_fn, params, examples, v: v,
    "maml_meta_gradient": query_gradient_at_theta,
    "fomaml_gradient": query_gradient_at_theta,
    "reptile_update": lambda theta, phi, eps: theta,
    "reptile_inner_coefficient": lambda k: float(k),
    "meta_sgd_step": lambda theta, g, lrs: theta,
    "conjugate_gradient": lambda matvec, b, steps: b,
    "adaptation_losses": lambda loss_fn, theta, support, lr, steps: (
        [float(loss_fn(theta, support))] * (steps + 1)
    ),
    "project_to_plane": lambda o, d1, d2, p: (1.0, 1.0),
    "filter_normalized": lambda d, w: d,
    "sinusoid_episode": lambda a, phase, xs, xq: Episode(Examples(xs, xs), Examples(xq, xq)),
}

# the sign mistake in the update rule itself, where it is not just -answer
SIGN = {
    "inner_step": lambda loss_fn, theta, support, lr: derivation.inner_step(
        loss_fn, theta, derivation.Episode(support, support), -lr
    ),
    "reptile_update": lambda theta, phi, eps: {
        n: theta[n] - eps * (phi[n] - theta[n]) for n in theta
    },
    "meta_sgd_step": lambda theta, g, lrs: {n: theta[n] + lrs[n] * g[n] for n in theta},
    "maml_meta_gradient": lambda loss_fn, theta, episode, lr: derivation.exact_meta_gradient(
        loss_fn, theta, episode, -lr
    ),
}


def battery() -> list[tuple[str, str, object]]:
    """(checker, mistake, answer) for every usual mistake that applies to the checker."""
    cases = []
    for name, right in RIGHT.items():
        if name in VALUES:
            continue
        for label, f in MUTATIONS.items():
            if label == "transposed" and name in NO_MATRIX:
                continue
            cases.append((name, label, lambda *a, r=right, f=f: mapped(r(*a), f)))
        cases.append((name, "input unchanged", UNCHANGED[name]))
        if name in SIGN:
            cases.append((name, "wrong sign in the rule", SIGN[name]))
    value = RIGHT["zero_predictor_mse"]
    cases += [
        ("zero_predictor_mse", label, mapped(value, f))
        for label, f in MUTATIONS.items()
        if label != "transposed"
    ]
    cases.append(("zero_predictor_mse", "the variance of A, not E[A^2]/2", 4.9**2 / 12))
    cos = lambda a, phase, xs, xq: Episode(
        Examples(xs, a * torch.cos(xs - phase)), Examples(xq, a * torch.cos(xq - phase))
    )
    cases.append(("sinusoid_episode", "cos for sin", cos))
    return cases


def episode_values() -> list[tuple[str, Episode]]:
    """Chapter 00's value form: one task's Episode, and the usual wrong values."""
    g = torch.Generator().manual_seed(11)
    xs, xq = 10 * torch.rand(5, 1, generator=g) - 5, 10 * torch.rand(10, 1, generator=g) - 5
    task = lambda f: Episode(Examples(xs, f(xs)), Examples(xq, f(xq)))
    other = SinusoidTasks().sample(torch.Generator().manual_seed(5), 5, 10, 2)
    return [
        ("zeros", task(torch.zeros_like)),
        ("input unchanged (y = x)", task(lambda x: x)),
        ("sign flipped", task(lambda x: -2.0 * torch.sin(x - 0.3))),
        ("constant offset", task(lambda x: 2.0 * torch.sin(x - 0.3) + 0.1)),
        ("cos for sin", task(lambda x: 2.0 * torch.cos(x - 0.3))),
        ("transposed", Episode(Examples(xs.T, xs.T), Examples(xq.T, xq.T))),
        ("support and query of two tasks", Episode(other.task(0).support, other.task(1).query)),
        ("amplitude out of range", task(lambda x: 7.0 * torch.sin(x - 0.3))),
    ]


BATTERY = battery()


@pytest.mark.parametrize(
    ("name", "mistake", "answer"),
    BATTERY,
    ids=[f"{n}-{m.replace(' ', '_')}" for n, m, _ in BATTERY],
)
def test_checker_rejects_the_usual_mistake(name, mistake, answer, capsys) -> None:
    assert exercises.CHECKS[name](answer) is False, f"{name} accepted: {mistake}"
    assert capsys.readouterr().out.startswith("wrong:")


@pytest.mark.parametrize(("mistake", "value"), episode_values(), ids=lambda v: str(v)[:30])
def test_episode_value_checker_rejects_the_usual_mistakes(mistake, value, capsys) -> None:
    assert exercises.check_sinusoid_task(value) is False, f"accepted: {mistake}"
    assert capsys.readouterr().out.startswith("wrong:")


def test_episode_value_checker_accepts_any_task_of_the_distribution() -> None:
    tasks = SinusoidTasks().sample(torch.Generator().manual_seed(3), 5, 10, 20)
    assert all(exercises.check_sinusoid_task(tasks.task(i)) for i in range(20))


@pytest.mark.parametrize("eps", [1e-5, 1e-4, 1e-3])
def test_hvp_checker_accepts_a_central_difference(eps: float) -> None:
    """A correct finite-difference answer of the kind the hint suggests passes."""

    def central(loss_fn, params, examples, v):
        shifted = lambda s: grad(loss_fn)(
            {n: w + s * eps * v[n] for n, w in params.items()}, examples
        )
        plus, minus = shifted(1.0), shifted(-1.0)
        return {n: (plus[n] - minus[n]) / (2 * eps) for n in params}

    assert exercises.check_hessian_vector_product(central)


def test_hvp_checker_accepts_a_forward_difference() -> None:
    def forward(loss_fn, params, examples, v, eps=1e-7):
        base = grad(loss_fn)(params, examples)
        moved = grad(loss_fn)({n: w + eps * v[n] for n, w in params.items()}, examples)
        return {n: (moved[n] - base[n]) / eps for n in params}

    assert exercises.check_hessian_vector_product(forward)


def test_reptile_checker_rejects_a_uniform_move() -> None:
    """Before, phi - theta was +0.3 everywhere, so 'theta + eps * 0.3' passed."""
    assert not exercises.check_reptile_update(
        lambda theta, phi, eps: {n: w + eps * 0.3 for n, w in theta.items()}
    )
    assert not exercises.check_reptile_update(
        lambda theta, phi, eps: {n: theta[n] + eps * (phi[n] - theta[n]).abs() for n in theta}
    )
