r"""Chapter 03: MAML's meta-gradient derived one step at a time (Finn, Abbeel & Levine 2017).

Every function is one line of the derivation, so that the notebook can check each line
numerically on the real sinusoid network. For one inner SGD step with ``inner_lr`` = \alpha:

1. inner step          \theta' = \theta - \alpha \nabla L_s(\theta)
2. chain rule          \nabla_\theta L_q(\theta') = (d\theta'/d\theta)^T \nabla L_q(\theta')
3. Jacobian            d\theta'/d\theta = I - \alpha H_s(\theta),  H_s = \nabla^2 L_s at \theta
4. exact meta-gradient (I - \alpha H_s(\theta)) \nabla L_q(\theta')   -- MAML is second order
5. FOMAML              drop the Hessian term: \nabla L_q(\theta')
6. Taylor (objective)  L_q(\theta') ~ L_q(\theta) - \alpha \nabla L_s(\theta)^T \nabla L_q(\theta)

``L_s`` is the support loss and ``L_q`` the query loss of one task. The two common mistakes,
using the Hessian of the *query* loss or evaluating it at \theta' instead of \theta, are
computed by :func:`meta_gradient_with_hessian` so that they can be seen to differ.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import torch
from torch import Tensor, nn
from torch.func import grad, vjp

from mamlviz.core.episode import Episode, Examples
from mamlviz.core.functional import LossFn, Params, call, make_loss, tree_dot, tree_norm, tree_sub
from mamlviz.core.implicit import hvp


def inner_step(loss_fn: LossFn, theta: Params, episode: Episode, inner_lr: float) -> Params:
    r"""Step 1: \theta' = \theta - \alpha \nabla_\theta L_s(\theta) (MAML eq. 1, one step)."""
    g = grad(loss_fn)(theta, episode.support)
    return {n: w - inner_lr * g[n] for n, w in theta.items()}


def adapted_query_gradient(
    loss_fn: LossFn, theta: Params, episode: Episode, inner_lr: float
) -> Params:
    r"""\nabla_{\theta'} L_q(\theta'): the query gradient at the adapted weights (FOMAML's)."""
    phi = inner_step(loss_fn, theta, episode, inner_lr)
    return grad(loss_fn)(phi, episode.query)


def chain_rule(loss_fn: LossFn, theta: Params, episode: Episode, inner_lr: float) -> Params:
    r"""Step 2: (d\theta'/d\theta)^T \nabla L_q(\theta'), a vector-Jacobian product of step 1.

    No Hessian is written down here: autodiff transposes the Jacobian of the map
    \theta -> \theta' and applies it to the query gradient.
    """
    phi, pullback = vjp(lambda th: inner_step(loss_fn, th, episode, inner_lr), theta)
    return pullback(grad(loss_fn)(phi, episode.query))[0]


def meta_gradient_with_hessian(
    loss_fn: LossFn,
    theta: Params,
    episode: Episode,
    inner_lr: float,
    *,
    hessian_of: str = "support",
    hessian_at: str = "theta",
) -> Params:
    r"""(I - \alpha H) \nabla L_q(\theta') with H chosen by ``hessian_of`` and ``hessian_at``.

    The correct choice (steps 3-4) is ``hessian_of="support", hessian_at="theta"``: the inner
    step differentiates L_s, at \theta. ``"query"`` or ``"theta_prime"`` give the two common
    mistakes. H is never formed: one Hessian-vector product ``hvp`` (reverse over reverse).
    """
    if hessian_of not in ("support", "query") or hessian_at not in ("theta", "theta_prime"):
        raise ValueError(
            "hessian_of must be 'support' or 'query'; hessian_at 'theta' or 'theta_prime'"
        )
    phi = inner_step(loss_fn, theta, episode, inner_lr)
    g_query = grad(loss_fn)(phi, episode.query)
    examples = episode.support if hessian_of == "support" else episode.query
    at = theta if hessian_at == "theta" else phi
    h_g = hvp(loss_fn, at, examples, g_query)
    return {n: g_query[n] - inner_lr * h_g[n] for n in g_query}


def exact_meta_gradient(
    loss_fn: LossFn, theta: Params, episode: Episode, inner_lr: float
) -> Params:
    r"""Step 4: MAML's exact one-step meta-gradient (I - \alpha H_s(\theta)) \nabla L_q(\theta')."""
    return meta_gradient_with_hessian(loss_fn, theta, episode, inner_lr)


def autodiff_meta_gradient(
    loss_fn: LossFn, theta: Params, episode: Episode, inner_lr: float
) -> Params:
    r"""\nabla_\theta L_q(\theta - \alpha \nabla L_s(\theta)) by autodiff through the step."""
    return grad(lambda th: loss_fn(inner_step(loss_fn, th, episode, inner_lr), episode.query))(
        theta
    )


def fomaml_gradient(loss_fn: LossFn, theta: Params, episode: Episode, inner_lr: float) -> Params:
    r"""Step 5: First-Order MAML keeps only \nabla L_q(\theta'): (I - \alpha H) replaced by I."""
    return adapted_query_gradient(loss_fn, theta, episode, inner_lr)


class Taylor(NamedTuple):
    """Step 6: the objective L_q(theta') and its first-order Taylor expansions in alpha."""

    exact: float  # L_q(theta')
    approx: float  # L_q(theta) - alpha grad L_s(theta) . grad L_q(theta)
    approx_at_prime: float  # the article's form: grad L_q taken at theta' instead
    error: float  # |exact - approx|, O(alpha^2)
    error_at_prime: float  # |exact - approx_at_prime|, also O(alpha^2)


def taylor_objective(loss_fn: LossFn, theta: Params, episode: Episode, inner_lr: float) -> Taylor:
    r"""Step 6: L_q(\theta') ~ L_q - \alpha \nabla L_s^T \nabla L_q at \theta, error O(\alpha^2).

    This expands the *objective*, not the gradient; it is what the source article writes (with
    the query gradient at \theta', which is first-order accurate too). Its gradient in \theta
    contains \alpha H_s \nabla L_q + \alpha H_q \nabla L_s: second derivatives again.
    """
    g_s = grad(loss_fn)(theta, episode.support)
    phi = {n: w - inner_lr * g_s[n] for n, w in theta.items()}
    exact = float(loss_fn(phi, episode.query))
    base = float(loss_fn(theta, episode.query))
    approx = base - inner_lr * float(tree_dot(g_s, grad(loss_fn)(theta, episode.query)))
    at_prime = base - inner_lr * float(tree_dot(g_s, grad(loss_fn)(phi, episode.query)))
    return Taylor(exact, approx, at_prime, abs(exact - approx), abs(exact - at_prime))


def relu_pattern(model: nn.Module, params: Params, x: Tensor) -> Tensor:
    """On/off state of every hidden unit for inputs ``x``: the sign of the pre-activations of
    every ``nn.Linear`` but the last (the MLP applies ReLU to each of them)."""
    linears = [m for m in model.modules() if isinstance(m, nn.Linear)][:-1]
    states: list[Tensor] = []
    hooks = [m.register_forward_hook(lambda m, i, out: states.append(out > 0)) for m in linears]
    try:
        call(model, params, x)
    finally:
        for hook in hooks:
            hook.remove()
    return torch.cat([s.flatten() for s in states])


def kink_free_inner_lr(
    model: nn.Module, theta: Params, episode: Episode, inner_lrs: Sequence[float]
) -> float:
    r"""Largest \alpha of the increasing grid ``inner_lrs`` before any ReLU unit switches on the
    path \theta - \alpha \nabla L_s(\theta) (support and query inputs); 0 if the first does.

    Between such kinks a ReLU net's loss is a polynomial in \alpha, so Taylor's O(\alpha^2)
    holds there; past a kink the gradient jumps.
    """
    x = torch.cat([episode.support.x, episode.query.x])
    start = relu_pattern(model, theta, x)
    loss_fn = make_loss(model, "mse")
    g = grad(loss_fn)(theta, episode.support)
    last = 0.0
    for a in inner_lrs:
        phi = {n: w - float(a) * g[n] for n, w in theta.items()}
        if not torch.equal(relu_pattern(model, phi, x), start):
            break
        last = float(a)
    return last


def relative_error(approx: Params, exact: Params) -> float:
    """||approx - exact|| / ||exact|| over all parameters."""
    return float(tree_norm(tree_sub(approx, exact)) / tree_norm(exact))


def cosine(a: Params, b: Params) -> float:
    """Cosine of the angle between two parameter dicts taken as one vector."""
    return float(tree_dot(a, b) / (tree_norm(a) * tree_norm(b)))


def first_order_error(
    loss_fn: LossFn, theta: Params, episode: Episode, inner_lr: float
) -> tuple[float, float]:
    r"""(relative norm error, cosine) of the FOMAML gradient against MAML's exact one.

    The gap is \alpha H_s(\theta) \nabla L_q(\theta'), so the relative error is O(\alpha) and
    the cosine tends to 1 as \alpha -> 0.
    """
    exact = exact_meta_gradient(loss_fn, theta, episode, inner_lr)
    fo = fomaml_gradient(loss_fn, theta, episode, inner_lr)
    return relative_error(fo, exact), cosine(fo, exact)


def first_order_errors(
    loss_fn: LossFn, theta: Params, episode: Episode, inner_lrs: Tensor | list[float]
) -> tuple[Tensor, Tensor]:
    """:func:`first_order_error` over a grid of inner learning rates: (errors, cosines)."""
    pairs = [first_order_error(loss_fn, theta, episode, float(a)) for a in inner_lrs]
    errors = torch.tensor([p[0] for p in pairs], dtype=torch.float64)
    cosines = torch.tensor([p[1] for p in pairs], dtype=torch.float64)
    return errors, cosines


def mean_params(trees: Sequence[Params]) -> Params:
    """The average of parameter dicts (e.g. the meta-batch average of per-task gradients)."""
    return {n: sum(t[n] for t in trees) / len(trees) for n in trees[0]}


def per_task_gradients(
    loss_fn: LossFn, theta: Params, episodes: Sequence[Episode], inner_lr: float
) -> tuple[list[Params], list[Params]]:
    """(MAML's exact meta-gradients, FOMAML's gradients), one of each per episode."""
    exact = [exact_meta_gradient(loss_fn, theta, e, inner_lr) for e in episodes]
    return exact, [fomaml_gradient(loss_fn, theta, e, inner_lr) for e in episodes]


def meta_batch_first_order_error(
    loss_fn: LossFn, theta: Params, episodes: Sequence[Episode], inner_lr: float
) -> tuple[float, float]:
    r"""(relative error, cosine) of the meta-batch-averaged FOMAML gradient against MAML's.

    Meta-training steps along the average over a meta-batch of tasks, an estimate of the
    expected meta-gradient E_T[(I - \alpha H_s) \nabla L_q(\theta')]; the per-task errors
    \alpha H_s \nabla L_q(\theta') point in different directions and partly cancel in it.
    """
    exact, fo = per_task_gradients(loss_fn, theta, episodes, inner_lr)
    return relative_error(mean_params(fo), mean_params(exact)), cosine(
        mean_params(fo), mean_params(exact)
    )


def top_hessian_eigenpair(
    loss_fn: LossFn,
    theta: Params,
    examples: Examples,
    iters: int = 100,
    seed: int = 0,
    start: Params | None = None,
    tol: float = 0.0,
) -> tuple[float, Params]:
    r"""(\lambda, v): the eigenvalue of largest magnitude of H = \nabla^2 L(\theta) and a unit
    vector along it, by power iteration on Hessian-vector products (v <- H v / ||H v||; H is
    never formed); \lambda is the Rayleigh quotient v^T H v of the last unit iterate.

    ``start`` (e.g. the vector of a nearby problem) replaces the seeded Gaussian start, and
    ``tol`` > 0 stops once \lambda changes by at most ``tol`` |\lambda| in one iteration: a
    widget that moves the task a little converges in a few products instead of ``iters``.
    """
    g = torch.Generator().manual_seed(seed)
    if start is None:
        start = {n: torch.randn(w.shape, generator=g, dtype=w.dtype) for n, w in theta.items()}
    v = {n: w.detach() for n, w in start.items()}
    theta = {n: w.detach() for n, w in theta.items()}
    value = 0.0
    for _ in range(iters):
        norm = tree_norm(v)
        v = {n: x / norm for n, x in v.items()}
        hv = hvp(loss_fn, theta, examples, v)
        if float(tree_norm(hv)) == 0.0:
            return 0.0, v
        previous, value = value, float(tree_dot(v, hv))
        if tol > 0 and abs(value - previous) <= tol * abs(value):
            break
        v = hv
    norm = tree_norm(v)
    return value, {n: x / norm for n, x in v.items()}


def top_hessian_eigenvalue(
    loss_fn: LossFn, theta: Params, examples: Examples, iters: int = 100, seed: int = 0
) -> float:
    r"""The eigenvalue of largest magnitude of H = \nabla^2 L(\theta), by power iteration on
    Hessian-vector products (:func:`top_hessian_eigenpair`).

    Two readings the course uses. Gradient descent on a quadratic of that curvature is stable
    for \alpha < 2 / \lambda_max (below 1 / \lambda_max without sign changes, between the two
    it zigzags but shrinks). And \alpha |\lambda| >= 1 means the factor I - \alpha H of the
    meta-gradient is nowhere near I along that direction.
    """
    return top_hessian_eigenpair(loss_fn, theta, examples, iters, seed)[0]


def loglog_slope(xs: Sequence[float] | Tensor, ys: Sequence[float] | Tensor) -> float:
    """Least-squares slope of log10(y) against log10(x): p where y ~ C x^p."""
    x = torch.log10(torch.as_tensor(xs, dtype=torch.float64))
    y = torch.log10(torch.as_tensor(ys, dtype=torch.float64))
    xc = x - x.mean()
    return float((xc * (y - y.mean())).sum() / (xc * xc).sum())
