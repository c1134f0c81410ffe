"""Exercise checkers for the notebooks: ``check_<name>(answer) -> bool``.

A checker runs the learner's function (or reads a value) on a small float64 problem, compares
the result with the package's reference and prints one line: ``right: ...``, ``wrong: <hint>``
or ``not done yet: ...``. It never raises on a wrong or unfinished answer, so a notebook always
runs top to bottom. Adding an exercise is one decorated function::

    @exercise("my_name", hint="what usually goes wrong")
    def check_my_name(answer) -> Result:
        return close(answer(...), reference(...))
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from functools import wraps
from typing import Any

import torch
from torch.func import grad

from mamlviz.core.episode import Episode, Examples
from mamlviz.core.functional import LossFn, Params, make_loss, params_of
from mamlviz.core.implicit import conjugate_gradient, hvp
from mamlviz.core.inner import Trajectory, adapt
from mamlviz.core.rules import SGD
from mamlviz.course.derivation import exact_meta_gradient, fomaml_gradient, inner_step
from mamlviz.course.landscape import Plane, filter_normalized
from mamlviz.models import MLP
from mamlviz.tasks.sinusoid import SinusoidTasks


@dataclass(frozen=True)
class Result:
    """Outcome of comparing an answer with the reference (``detail`` says by how much)."""

    ok: bool
    detail: str = ""


CHECKS: dict[str, Callable[[Any], bool]] = {}


def exercise(name: str, hint: str) -> Callable[[Callable[[Any], Result]], Callable[[Any], bool]]:
    """Register ``check_<name>``: wraps a comparison so that it prints and never raises."""

    def wrap(compare: Callable[[Any], Result]) -> Callable[[Any], bool]:
        @wraps(compare)
        def check(answer: Any) -> bool:
            if answer is None or answer is ...:
                print(f"not done yet: {name} got {answer!r}; replace it with your answer.")
                return False
            try:
                result = compare(answer)
            except NotImplementedError as err:
                print(f"not done yet: {name} raises NotImplementedError ({err}); fill it in.")
                return False
            except Exception as err:  # a wrong answer may fail in any way; report it, go on
                print(f"wrong: {name} raised {type(err).__name__}: {err}. Hint: {hint}")
                return False
            if result.ok:
                print(f"right: {name} matches the reference{result.detail}.")
            else:
                print(f"wrong: {name} does not match{result.detail}. Hint: {hint}")
            return result.ok

        CHECKS[name] = check
        return check

    return wrap


def close(answer: Any, reference: Any, rtol: float = 1e-6, atol: float = 1e-9) -> Result:
    """Compare tensors, dicts of tensors or numbers; report the largest absolute difference."""
    if isinstance(reference, dict):
        if not isinstance(answer, dict) or set(answer) != set(reference):
            return Result(False, f" (expected a dict with keys {sorted(reference)})")
        diffs = [close(answer[n], reference[n], rtol, atol) for n in reference]
        bad = [d.detail for d in diffs if not d.ok]
        return Result(not bad, bad[0] if bad else "")
    a = torch.as_tensor(answer, dtype=torch.float64)
    r = torch.as_tensor(reference, dtype=torch.float64)
    if a.shape != r.shape:
        return Result(False, f" (shape {tuple(a.shape)}, expected {tuple(r.shape)})")
    diff = float((a - r).abs().max()) if r.numel() else 0.0
    ok = bool(torch.allclose(a, r, rtol=rtol, atol=atol)) and math.isfinite(diff)
    return Result(ok, f" (max abs difference {diff:.2e})")


def problem(seed: int = 0) -> tuple[LossFn, Params, Episode]:
    """A small float64 sinusoid problem: MLP 1-8-8-1, 5 support and 7 query points."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = MLP(1, (8, 8), 1).double()
    generator = torch.Generator().manual_seed(seed)
    episode = SinusoidTasks().sample(generator, 5, 7, 1, torch.float64).task(0)
    return make_loss(model, "mse"), params_of(model), episode


# --- chapter 01-03: the inner step and the meta-gradient ----------------------------------


@exercise("inner_step", hint="phi = theta - inner_lr * grad of the SUPPORT loss at theta")
def check_inner_step(fn: Callable[[LossFn, Params, Any, float], Params]) -> Result:
    """``fn(loss_fn, theta, support, inner_lr) -> phi`` after one SGD step."""
    loss_fn, theta, episode = problem()
    return close(
        fn(loss_fn, theta, episode.support, 0.05), inner_step(loss_fn, theta, episode, 0.05)
    )


@exercise(
    "hessian_vector_product",
    hint="differentiate <grad L(params), v> once more (torch.func.vjp of torch.func.grad), or"
    " take a central difference (grad L(p + eps v) - grad L(p - eps v)) / (2 eps), eps ~ 1e-4",
)
def check_hessian_vector_product(fn: Callable[[LossFn, Params, Any, Params], Params]) -> Result:
    """``fn(loss_fn, params, examples, v) -> H v`` with H the Hessian of the loss at params.

    Tolerance: 1e-5 of the largest entry of H v, per entry. Autodiff is exact to ~1e-15; a
    float64 central difference with eps in [1e-5, 1e-3] and a forward difference with eps ~
    1e-7 land within ~1e-6 of it. An error of one part in 10^5 is no conceptual mistake.
    """
    loss_fn, theta, episode = problem(1)
    g = torch.Generator().manual_seed(1)
    v = {n: torch.randn(w.shape, generator=g, dtype=w.dtype) for n, w in theta.items()}
    reference = hvp(loss_fn, theta, episode.support, v)
    scale = max(float(w.abs().max()) for w in reference.values())
    answer = fn(loss_fn, theta, episode.support, v)
    return close(answer, reference, rtol=1e-5, atol=1e-5 * scale)


@exercise(
    "maml_meta_gradient",
    hint="(I - inner_lr H_support(theta)) grad L_query(phi): support Hessian, at theta",
)
def check_maml_meta_gradient(fn: Callable[[LossFn, Params, Episode, float], Params]) -> Result:
    """``fn(loss_fn, theta, episode, inner_lr)`` -> MAML's exact one-step meta-gradient."""
    loss_fn, theta, episode = problem(2)
    return close(
        fn(loss_fn, theta, episode, 0.05), exact_meta_gradient(loss_fn, theta, episode, 0.05)
    )


@exercise("fomaml_gradient", hint="the query gradient at the ADAPTED weights phi, no Hessian")
def check_fomaml_gradient(fn: Callable[[LossFn, Params, Episode, float], Params]) -> Result:
    """``fn(loss_fn, theta, episode, inner_lr)`` -> First-Order MAML's meta-gradient."""
    loss_fn, theta, episode = problem(3)
    return close(fn(loss_fn, theta, episode, 0.05), fomaml_gradient(loss_fn, theta, episode, 0.05))


# --- chapter 05: Reptile ------------------------------------------------------------------


@exercise("reptile_update", hint="interpolate towards phi: theta + outer_lr * (phi - theta)")
def check_reptile_update(fn: Callable[[Params, Params, float], Params]) -> Result:
    """``fn(theta, phi, outer_lr) -> new theta`` (Nichol et al. 2018, the serial version).

    phi - theta is random with mixed signs and sizes, so answers that move every entry by the
    same amount, or that use |phi - theta|, fail.
    """
    _, theta, _ = problem(4)
    g = torch.Generator().manual_seed(4)
    phi = {n: w + 0.3 * torch.randn(w.shape, generator=g, dtype=w.dtype) for n, w in theta.items()}
    return close(fn(theta, phi, 0.1), {n: theta[n] + 0.1 * (phi[n] - theta[n]) for n in theta})


@exercise(
    "reptile_inner_coefficient",
    hint="write phi_i = theta - alpha (g_1 + ... + g_{i-1}), expand g_i = L_i'(phi_i) to first"
    " order in alpha, and count the cross terms H_i g_j: each is alpha AvgGradInner in"
    " expectation",
)
def check_reptile_inner_coefficient(fn: Callable[[int], float]) -> Result:
    """``fn(k)`` -> the coefficient of alpha AvgGradInner in Reptile's expected update."""
    return close([fn(k) for k in (1, 2, 3, 5)], [k * (k - 1) / 2 for k in (1, 2, 3, 5)])


# --- chapter 06-07: Meta-SGD and iMAML ----------------------------------------------------


@exercise("meta_sgd_step", hint="elementwise: theta - lr * grad, lr has the shape of theta")
def check_meta_sgd_step(fn: Callable[[Params, Params, Params], Params]) -> Result:
    """``fn(theta, grads, lrs) -> phi`` for Meta-SGD's per-parameter learning rates."""
    loss_fn, theta, episode = problem(5)
    g = grad(loss_fn)(theta, episode.support)
    lrs = {
        n: torch.linspace(-0.1, 0.2, w.numel(), dtype=w.dtype).reshape(w.shape)
        for n, w in theta.items()
    }
    return close(fn(theta, g, lrs), {n: theta[n] - lrs[n] * g[n] for n in theta})


@exercise("conjugate_gradient", hint="r = b - A x; alpha = r.r / p.Ap; p = r + beta p, from x = 0")
def check_conjugate_gradient(
    fn: Callable[[Callable[[Params], Params], Params, int], Params],
) -> Result:
    """``fn(matvec, b, steps)`` -> approximate A^{-1} b after ``steps`` CG iterations."""
    m = torch.randn(6, 6, generator=torch.Generator().manual_seed(6), dtype=torch.float64)
    a = m @ m.T + torch.eye(6, dtype=torch.float64)
    b = {"x": torch.arange(6.0, dtype=torch.float64)}
    matvec = lambda v: {"x": a @ v["x"]}
    return close(fn(matvec, b, 4), conjugate_gradient(matvec, b, 4))


# --- chapters 00-02: tasks and the inner loop ------------------------------------------------


@exercise("sinusoid_episode", hint="y = amplitude * sin(x - phase); Episode(Examples, Examples)")
def check_sinusoid_episode(fn: Callable[[float, float, Any, Any], Episode]) -> Result:
    """``fn(amplitude, phase, x_support, x_query) -> Episode`` of that task (chapter 01)."""
    g = torch.Generator().manual_seed(7)
    xs, xq = 10 * torch.rand(5, 1, generator=g) - 5, 10 * torch.rand(10, 1, generator=g) - 5
    y = lambda x: 2.5 * torch.sin(x - 0.7)
    expected = Episode(Examples(xs, y(xs)), Examples(xq, y(xq)))
    flat = lambda ep: {f"{p}.{v}": getattr(getattr(ep, p), v) for p in ep._fields for v in "xy"}
    return close(flat(fn(2.5, 0.7, xs, xq)), flat(expected), rtol=1e-5)


@exercise(
    "sinusoid_task",
    hint="one task of SinusoidTasks with 5 support and 10 query points: sample, then .task(0)",
)
def check_sinusoid_task(answer: Episode) -> Result:
    """An ``Episode`` value of ONE sinusoid task with 5 support and 10 query points (chapter
    00); see :func:`sinusoid_task_values`."""
    return sinusoid_task_values(answer)


def sinusoid_task_values(answer: Any) -> Result:
    """An Episode VALUE of one task of MAML's distribution: y = A sin(x - phase) with
    A in [0.1, 5], phase in [0, pi], x in [-5, 5], 5 support and 10 query points.

    A sinusoid is a sin x + b cos x; the least-squares fit of (a, b) over all 15 points must
    leave no residual (so support and query share one task, and an offset, y = x or noise
    fail), and A = |(a, b)|, phase = atan2(-b, a) must lie in the ranges (so zeros and a
    flipped sign, phase + pi, fail). From values alone, cos(x - p) is sin(x - (p - pi/2)): it
    is rejected only where p - pi/2 falls outside [0, pi].
    """
    (xs, ys), (xq, yq) = answer
    shapes = [tuple(t.shape) for t in (xs, ys, xq, yq)]
    if shapes != [(5, 1), (5, 1), (10, 1), (10, 1)]:
        return Result(False, f" (shapes {shapes}, expected support [5, 1] and query [10, 1])")
    x = torch.cat([xs, xq]).double().flatten()
    y = torch.cat([ys, yq]).double().flatten()
    if not bool((x.abs() <= 5).all()):
        return Result(False, " (x must lie in [-5, 5])")
    basis = torch.stack([torch.sin(x), torch.cos(x)], dim=1)
    a, b = torch.linalg.lstsq(basis, y.unsqueeze(1)).solution.flatten()
    residual = float((basis @ torch.stack([a, b]) - y).abs().max())
    if residual > 1e-4 * max(1.0, float(y.abs().max())):
        return Result(False, f" (the points are not one sinusoid: residual {residual:.2e})")
    amplitude, phase = float(torch.hypot(a, b)), float(torch.atan2(-b, a))
    if not (0.1 - 1e-6 <= amplitude <= 5 + 1e-6 and -1e-6 <= phase <= math.pi + 1e-6):
        return Result(
            False,
            f" (amplitude {amplitude:.3f}, phase {phase:.3f}: MAML's tasks have amplitude in"
            " [0.1, 5] and phase in [0, pi])",
        )
    return Result(True, f" (one task: amplitude {amplitude:.3f}, phase {phase:.3f})")


@exercise("zero_predictor_mse", hint="E[A^2 sin^2(x - phase)] = E[A^2] / 2, A ~ U[0.1, 5]")
def check_zero_predictor_mse(value: float) -> Result:
    """The expected MSE of predicting 0 on the MAML sinusoid task distribution."""
    return close(float(value), (5**3 - 0.1**3) / (3 * 4.9) / 2, rtol=1e-3)


@exercise("adaptation_losses", hint="adapt(..., record=trajectory.record); trajectory.losses")
def check_adaptation_losses(fn: Callable[[LossFn, Params, Any, float, int], list]) -> Result:
    """``fn(loss_fn, theta, support, inner_lr, inner_steps)`` -> support losses at phi_0..phi_k."""
    loss_fn, theta, episode = problem(8)
    trajectory = Trajectory()
    adapt(loss_fn, theta, episode.support, SGD(0.05), 3, record=trajectory.record)
    return close(
        [float(v) for v in fn(loss_fn, theta, episode.support, 0.05, 3)], trajectory.losses
    )


# --- chapter 04: loss landscapes -----------------------------------------------------------


@exercise("project_to_plane", hint="solve the 2 x 2 normal equations [d_i . d_j] (a, b) = d_i . v")
def check_project_to_plane(fn: Callable[[Params, Params, Params, Params], tuple]) -> Result:
    """``fn(origin, d1, d2, params) -> (a, b)``: least-squares coordinates in the plane."""
    _, origin, _ = problem(9)
    g = torch.Generator().manual_seed(9)
    rand = lambda: {n: torch.randn(w.shape, generator=g, dtype=w.dtype) for n, w in origin.items()}
    d1, d2, params = rand(), rand(), rand()
    return close(list(fn(origin, d1, d2, params)), list(Plane(origin, d1, d2).project(params)))


@exercise(
    "filter_normalized", hint="scale each row of d to the norm of the same row of w; biases 0"
)
def check_filter_normalized(fn: Callable[[Params, Params], Params]) -> Result:
    """``fn(direction, weights)``: Li et al. (2018) filter normalisation, biases set to zero."""
    _, weights, _ = problem(10)
    g = torch.Generator().manual_seed(10)
    d = {n: torch.randn(w.shape, generator=g, dtype=w.dtype) for n, w in weights.items()}
    return close(fn(d, weights), filter_normalized(d, weights), rtol=1e-6, atol=1e-9)
