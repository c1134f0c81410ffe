r"""iMAML (Rajeswaran, Finn, Kakade & Levine 2019): the implicit meta-gradient.

The inner problem is proximal, solved to near convergence by ``adapt``:

    \phi^*(\theta) = argmin_\phi  L_support(\phi) + \lambda/2 ||\phi - \theta||^2.

Its stationarity condition gives d\phi/d\theta = (I + H/\lambda)^{-1}, H = \nabla^2 L_support(\phi),
so the meta-gradient needs only \phi, not the path that reached it:

    g = (I + H/\lambda)^{-1} \nabla_\phi L_query(\phi)            (iMAML, Lemma 1)

solved with ``cg_steps`` of conjugate gradient on Hessian-vector products, or exactly with a
dense solve for small models. CG needs I + H/\lambda positive definite, which fails when the
support Hessian has eigenvalues below -\lambda (a ReLU net's MSE Hessian does, about -24 on
sinusoids). ``damping`` \delta >= 0 solves ((1 + \delta) I + H/\lambda) g = \nabla L_query
instead: Tikhonov damping, as in Hessian-free optimisation (Martens 2010); \delta = 0 (the
default) is the exact implicit gradient. \theta is detached inside the inner loop, so no graph
is kept across inner steps: memory does not grow with ``inner_steps`` (benchmarks/imaml.py).
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable

import torch
from torch import Tensor
from torch.func import grad, grad_and_value, hessian, vjp

from mamlviz.core.episode import Episode, Examples
from mamlviz.core.functional import (
    LossFn,
    Params,
    detach,
    flatten,
    proximal_loss,
    tree_dot,
    unflatten,
)
from mamlviz.core.learner import Learner, zeros_like
from mamlviz.errors import IndefiniteError, IndefiniteWarning, check_range

SOLVERS = ("cg", "dense")
POLICIES = ("refuse", "skip")


def hvp(loss_fn: LossFn, params: Params, examples: Examples, v: Params) -> Params:
    """Hessian-vector product ``H v`` of ``loss_fn`` at ``params``, reverse over reverse.

    H is symmetric, so the vector-Jacobian product of the gradient, ``v^T H``, is ``H v``.
    (Forward-over-reverse raised "ZeroTensors are immutable" with ``mse_loss`` on torch 2.13.)
    """
    _, vjp_fn = vjp(lambda p: grad(loss_fn)(p, examples), params)
    return vjp_fn(v)[0]


def _safe_ratio(num: Tensor, den: Tensor) -> Tensor:
    """``num / den``, or 0 where ``den`` is 0: CG has converged there, so the step is 0."""
    ok = den > 0
    return torch.where(ok, num / torch.where(ok, den, torch.ones_like(den)), torch.zeros_like(num))


def conjugate_gradient(matvec: Callable[[Params], Params], b: Params, steps: int) -> Params:
    """Approximate ``A^{-1} b`` for SPD ``A`` with ``steps`` CG iterations from ``x_0 = 0``.

    A fixed number of steps and no data-dependent Python branches, so it runs under ``vmap``;
    a zero residual makes later steps exact no-ops instead of 0/0 (Hestenes & Stiefel 1952).
    :func:`conjugate_gradient_checked` also says whether ``A`` was seen not to be SPD.
    """
    return conjugate_gradient_checked(matvec, b, steps)[0]


def task_dot(a: Params, b: Params) -> Tensor:
    """``<a_t, b_t>`` for every task t of stacked leaves [T, ...]: a [T] tensor."""
    return sum(torch.sum((a[n] * b[n]).flatten(1), dim=1) for n in a)  # type: ignore[return-value]


def conjugate_gradient_checked(
    matvec: Callable[[Params], Params], b: Params, steps: int, *, stacked: bool = False
) -> tuple[Params, Tensor]:
    """:func:`conjugate_gradient`, and the smallest curvature ``p.Ap / p.p`` it met.

    Each search direction p gives a Rayleigh quotient of A, which is >= the smallest eigenvalue
    of A; a value <= 0 therefore proves that A is NOT positive definite, and CG's answer is then
    meaningless (it steps along a direction of negative curvature, or stalls at 0/0). Directions
    after convergence (p = 0) count as +inf.

    ``stacked=True``: every leaf of ``b`` is [T, ...], T independent systems whose ``matvec``
    is block diagonal (:mod:`mamlviz.core.stacked`); each task then gets its own step sizes
    and curvature [T], exactly as T separate solves would (tested).
    """
    check_range("cg_steps", steps, 1, integer=True)
    dot = task_dot if stacked else tree_dot

    def scaled(c: Tensor, v: Tensor) -> Tensor:  # a per-task scalar times a [T, ...] leaf
        return c.view(-1, *[1] * (v.dim() - 1)) * v if stacked else c * v

    x = zeros_like(b)
    r = dict(b)
    p = dict(b)
    rs = dot(r, r)
    curvature = torch.full_like(rs, math.inf)
    for _ in range(steps):
        ap = matvec(p)
        pap, pp = dot(p, ap), dot(p, p)
        quotient = torch.where(pp > 0, pap / torch.where(pp > 0, pp, torch.ones_like(pp)), math.inf)
        curvature = torch.minimum(curvature, quotient)
        alpha = _safe_ratio(rs, pap)
        x = {n: x[n] + scaled(alpha, p[n]) for n in x}
        r = {n: r[n] - scaled(alpha, ap[n]) for n in r}
        rs_new = dot(r, r)
        beta = _safe_ratio(rs_new, rs)
        p = {n: r[n] + scaled(beta, p[n]) for n in p}
        rs = rs_new
    return x, curvature


def dense_solve(
    loss_fn: LossFn,
    params: Params,
    examples: Examples,
    b: Params,
    lam: float,
    damping: float = 0.0,
) -> Params:
    """Exact ``((1 + damping) I + H/lam)^{-1} b`` with the full Hessian: for small models and
    for teaching."""
    return dense_solve_checked(loss_fn, params, examples, b, lam, damping)[0]


def dense_solve_checked(
    loss_fn: LossFn,
    params: Params,
    examples: Examples,
    b: Params,
    lam: float,
    damping: float = 0.0,
) -> tuple[Params, Tensor]:
    """:func:`dense_solve`, and the smallest eigenvalue of the system matrix (<= 0: not SPD)."""
    flat = flatten(params)
    h = hessian(lambda v: loss_fn(unflatten(v, params), examples))(flat)
    eye = torch.eye(flat.numel(), dtype=flat.dtype, device=flat.device)
    system = (1 + damping) * eye + h / lam
    smallest = torch.linalg.eigvalsh((system + system.T) / 2)[0]
    return unflatten(torch.linalg.solve(system, flatten(b)), params), smallest


def indefinite_policy(options: dict) -> str:
    """What a meta-batch with an indefinite implicit system gets (option ``indefinite``):
    ``refuse`` (default) raises :class:`IndefiniteError`; ``skip`` averages the meta-gradient
    over the other tasks and warns (:class:`IndefiniteWarning`)."""
    policy = options.get("indefinite", "refuse")
    if policy not in POLICIES:
        raise ValueError(f"indefinite must be one of {POLICIES}, got {policy!r}")
    return str(policy)


def task_weights(curvature: Tensor, policy: str) -> Tensor:
    """Weights [T] of each task's implicit gradient in the meta-gradient: 1/T, or under
    ``skip`` 1/(number of definite tasks) on the definite ones and 0 on the rest (no
    data-dependent branch, so it runs under torch.compile; :func:`refuse_indefinite` decides
    afterwards whether the result may be used)."""
    if policy == "refuse":
        return torch.full_like(curvature, 1.0 / curvature.numel())
    keep = (curvature > 0).to(curvature.dtype)
    return keep / keep.sum().clamp(min=1.0)


def refuse_indefinite(diagnostics: dict[str, Tensor], policy: str = "refuse") -> None:
    """Raise :class:`IndefiniteError` where a task's implicit solve met curvature <= 0
    (``diagnostics["curvature"]``, one value per task; no entry: not an implicit strategy).
    Under ``skip`` only a meta-batch with no definite task is refused; skipped tasks warn."""
    curvature = diagnostics.get("curvature")
    if curvature is None or not bool((curvature <= 0).any()):
        return
    bad, total, smallest = int((curvature <= 0).sum()), curvature.numel(), float(curvature.min())
    if policy == "refuse" or bad == total:
        raise IndefiniteError(bad, total, smallest)
    warnings.warn(IndefiniteWarning(bad, total, smallest), stacklevel=3)


def implicit_options(options: dict) -> tuple[float, int, str, float]:
    """``(lam, cg_steps, solver, damping)`` from a learner's options, validated
    (iMAML defaults: 2.0, 5, "cg", 0.0)."""
    lam, cg_steps = options.get("lam", 2.0), options.get("cg_steps", 5)
    solver, damping = options.get("solver", "cg"), options.get("damping", 0.0)
    indefinite_policy(options)
    check_range("lam", lam, 0.0, low_open=True)
    check_range("cg_steps", cg_steps, 1, integer=True)
    check_range("damping", damping, 0.0)
    if solver not in SOLVERS:
        raise ValueError(f"solver must be one of {SOLVERS}, got {solver!r}")
    return float(lam), int(cg_steps), solver, float(damping)


def implicit_matvec(
    support_loss: LossFn, phi: Params, support: Examples, lam: float, damping: float = 0.0
) -> Callable[[Params], Params]:
    r"""``v -> ((1 + damping) v + H v / \lambda)``, H the support Hessian at \phi (for CG)."""

    def matvec(v: Params) -> Params:
        hv = hvp(support_loss, phi, support, v)
        return {n: (1 + damping) * v[n] + hv[n] / lam for n in v}

    return matvec


def implicit(
    learner: Learner, meta: Params, episode: Episode
) -> tuple[Params, Tensor, dict[str, Tensor]]:
    """iMAML strategy: proximal inner loop, then the implicit meta-gradient for the fast weights.

    Frozen and rule parameters get zero gradient: the implicit formula covers only \theta.
    The third output, ``{"curvature": c}``, is the smallest curvature of (1 + damping) I + H/lam
    the solve saw (CG: along its search directions; dense: the smallest eigenvalue); the outer
    step refuses a meta-batch on which it is <= 0 (:class:`mamlviz.errors.IndefiniteError`).
    """
    lam, cg_steps, solver, damping = implicit_options(learner.options)
    fast, frozen, rule_params = learner.split(detach(meta))
    support_loss = learner.support_loss_fn(frozen)
    objective = proximal_loss(support_loss, fast, lam)  # as learner.inner_objective does
    phi = detach(
        learner.inner_loop(fast, frozen, rule_params, episode.support, objective=objective)
    )
    g_query, query_loss = grad_and_value(lambda p: learner.query_loss(p, frozen, episode.query))(
        phi
    )
    if solver == "dense":
        g, curvature = dense_solve_checked(
            support_loss, phi, episode.support, g_query, lam, damping
        )
    else:
        matvec = implicit_matvec(support_loss, phi, episode.support, lam, damping)
        g, curvature = conjugate_gradient_checked(matvec, g_query, cg_steps)
    grads = {**zeros_like(frozen), **zeros_like(rule_params), **g}
    return {n: grads[n] for n in meta}, query_loss, {"curvature": curvature}
