r"""A 2-D toy where every task's solutions form a line: where MAML, Reptile and iMAML put theta.

The model is ``nn.Linear(2, 1, bias=False)``: theta in R^2. Task t holds one example (x_t, y_t),
used as support and query, and the package's "mse" loss is L_t(theta) = (x_t . theta - y_t)^2.
Its solutions are the line x_t . theta = y_t, its curvature along x_t is h_t = 2 |x_t|^2. Write
r_t = x_t . theta - y_t and c_t = 1 - alpha h_t. One SGD step moves theta along x_t and
multiplies r_t by c_t, so k steps give

    phi_k = theta - (1 - c_t^k) r_t x_t / |x_t|^2,        r_t(phi_k) = c_t^k r_t.

Each algorithm's meta-gradient is then 2 w_t r_t x_t up to a constant: its optimum (fixed point)
is the weighted least-squares point argmin sum_t w_t r_t^2 with the weights of :func:`weights`

* pretrained (joint training, Finn et al. 2017 sec. 5.1): w_t = 1;
* MAML (Finn et al. 2017, eq. 1; their Figure 1): L_t(phi_k) = c_t^{2k} r_t^2, so w_t = c_t^{2k}:
  a sharp task (large h_t) is solved by the inner loop from anywhere, so MAML's theta moves
  towards the flat tasks' lines, where it must start close;
* FOMAML: its gradient is grad L_t at phi_k, 2 c_t^k r_t x_t, so w_t = c_t^k;
* Reptile (Nichol et al. 2018, sec. 5.2): theta - phi_k = (1 - c_t^k) r_t x_t / |x_t|^2, so
  w_t = (1 - c_t^k) / |x_t|^2. As alpha k -> 0 it tends to k alpha h_t / |x_t|^2 = 2 k alpha,
  the same for every task: the pretrained point. As k -> infinity it tends to 1 / |x_t|^2 and
  w_t r_t^2 is the squared Euclidean distance to line t: "the point closest to all task
  manifolds";
* iMAML (Rajeswaran et al. 2019): the proximal phi* = argmin L_t + lam/2 |phi - theta|^2 has
  r_t(phi*) = r_t / (1 + h_t / lam), and (I + H/lam)^{-1} x_t = x_t / (1 + h_t/lam), so the
  implicit gradient is 2 r_t x_t / (1 + h_t/lam)^2 and w_t = (1 + h_t / lam)^{-2}.

The widget draws these closed forms (microseconds a slider move); the tests check them against
the package's own learners: meta-gradients, Reptile's pseudo-gradient, iMAML's implicit
gradient, and meta-training with ``meta_step`` converging to :func:`optimum`.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from mamlviz.algorithms import make_learner
from mamlviz.core.episode import Episode, Examples
from mamlviz.core.learner import Learner
from mamlviz.core.outer import meta_step

ALGORITHMS = ("pretrained", "maml", "fomaml", "reptile", "imaml")
# Three tasks: normals at 0, 60 and 125 degrees with |x| = 1.6, 1.0, 0.5 (curvatures 5.12, 2,
# 0.5), offsets chosen so that the lines bound a triangle and the points are far apart.
# float64 throughout: max_inner_lr() must be the exact bound that weights() enforces.
X = torch.tensor(
    [[1.6, 0.0], [0.5, 0.5 * 3**0.5], [-0.5 * 0.5736, 0.5 * 0.8192]], dtype=torch.float64
)
Y = torch.tensor([1.6, 1.5, 0.45], dtype=torch.float64)


def tasks(dtype: torch.dtype = torch.float64) -> Episode:
    """The three tasks as a meta-batch: x [3, 1, 2], y [3, 1, 1]; support and query the same."""
    examples = Examples(X.to(dtype).unsqueeze(1), Y.to(dtype).view(-1, 1, 1))
    return Episode(examples, examples)


def curvatures(x: Tensor = X) -> Tensor:
    """h_t = 2 |x_t|^2: the support loss's Hessian is h_t along x_t and 0 across it."""
    return 2 * x.pow(2).sum(-1)


def max_inner_lr(x: Tensor = X) -> float:
    """2 / max h_t: from this inner_lr on, SGD on the sharpest task diverges (|c_t| >= 1)."""
    return float(2 / curvatures(x.double()).max())


def weights(
    algorithm: str, inner_lr: float, inner_steps: int, lam: float = 1.0, x: Tensor = X
) -> Tensor:
    """The per-task weights w_t of the module docstring: the optimum minimises sum w_t r_t^2.

    Raises ``ValueError`` (in words, for the widget's status line) where the weights define no
    optimum: ``inner_lr`` at or above :func:`max_inner_lr` (the inner loop diverges or, at the
    bound, oscillates for ever), Reptile without a step (every w_t = 0), ``lam <= 0``.
    """
    if algorithm not in ALGORITHMS:
        raise ValueError(f"algorithm must be one of {ALGORITHMS}, got {algorithm!r}")
    if inner_lr < 0 or inner_steps < 0 or int(inner_steps) != inner_steps:
        raise ValueError(
            f"inner_lr must be >= 0 and inner_steps an integer >= 0, got {inner_lr:g} and"
            f" {inner_steps!r}"
        )
    x = x.double()
    h = curvatures(x)
    # iMAML solves its proximal problem exactly and pretrained takes no step: inner_lr is not
    # part of their weights, so only the unrolled SGD algorithms are bounded by it.
    if algorithm in ("maml", "fomaml", "reptile") and inner_lr * float(h.max()) >= 2:
        raise ValueError(
            f"inner_lr {inner_lr:g} makes SGD diverge on the sharpest task (curvature"
            f" {float(h.max()):.3g}): keep inner_lr below {2 / float(h.max()):.3g}"
        )
    if algorithm == "reptile" and (inner_lr == 0 or inner_steps == 0):
        raise ValueError("Reptile needs inner_lr > 0 and inner_steps >= 1: theta - phi is 0")
    if algorithm == "imaml" and lam <= 0:
        raise ValueError(f"lam must be > 0, got {lam:g}")
    ck = (1 - inner_lr * h) ** inner_steps  # c_t^k: the factor k steps put on the residual
    if algorithm == "pretrained":
        return torch.ones_like(h)
    if algorithm == "maml":
        return ck**2
    if algorithm == "fomaml":
        return ck
    if algorithm == "reptile":
        return (1 - ck) / x.pow(2).sum(-1)
    return (1 + h / lam) ** -2


def weighted_point(w: Tensor, x: Tensor = X, y: Tensor = Y) -> Tensor:
    """argmin_theta sum_t w_t (x_t . theta - y_t)^2 = (X^T W X)^{-1} X^T W y.

    It needs two tasks with w_t != 0 and independent x_t; where FOMAML's weights c_t^k are
    negative (inner_lr > 1 / h_t and k odd) it is a saddle, still the fixed point of the
    update. A singular system raises ``ValueError``.
    """
    x, y = x.double(), y.double()
    a = x.T @ (w[:, None] * x)
    # relative to the unweighted system, so that the test does not depend on the scale of w
    if float(torch.linalg.det(a).abs()) <= 1e-12 * float(w.abs().max()) ** 2 * float(
        torch.linalg.det(x.T @ x)
    ):
        raise ValueError(f"the weights {w.tolist()} define no single point (X^T W X is singular)")
    return torch.linalg.solve(a, x.T @ (w * y))


def closest_point(x: Tensor = X, y: Tensor = Y) -> Tensor:
    """The point of least summed squared Euclidean distance to the task lines: w_t = 1/|x_t|^2
    (Nichol et al. 2018, sec. 5.2; Reptile's optimum as k -> infinity)."""
    return weighted_point(1 / x.double().pow(2).sum(-1), x, y)


def distances(theta: Tensor, x: Tensor = X, y: Tensor = Y) -> Tensor:
    """Euclidean distance |x_t . theta - y_t| / |x_t| from ``theta`` [2] to each task line."""
    x, y = x.double(), y.double()
    return (x @ theta.double() - y).abs() / x.norm(dim=-1)


def optimum(
    algorithm: str,
    inner_lr: float,
    inner_steps: int,
    lam: float = 1.0,
    x: Tensor = X,
    y: Tensor = Y,
) -> Tensor:
    """Closed-form theta of ``algorithm`` (the fixed point of its meta-update), a [2] vector."""
    return weighted_point(weights(algorithm, inner_lr, inner_steps, lam, x), x, y)


def adapted(
    theta: Tensor, inner_lr: float, inner_steps: int, x: Tensor = X, y: Tensor = Y
) -> Tensor:
    """phi_k of every task from ``theta`` [2]: [tasks, 2], by the closed form above.

    ``theta`` may carry leading batch axes ([..., 2] gives [..., tasks, 2]): the widget's
    contour evaluates a whole grid at once.
    """
    x, y = x.double(), y.double()
    ck = (1 - inner_lr * curvatures(x)) ** inner_steps
    r = theta.double() @ x.T - y  # [..., tasks]
    step = (1 - ck) * r / x.pow(2).sum(-1)
    return theta.double()[..., None, :] - step[..., None] * x


def post_adaptation_loss(
    theta: Tensor, inner_lr: float, inner_steps: int, x: Tensor = X, y: Tensor = Y
) -> Tensor:
    """Mean over tasks of L_t(phi_k) = c_t^{2k} r_t^2: MAML's meta-objective (Finn et al. 2017,
    eq. 1), per theta (``theta`` [..., 2] gives [...])."""
    phi = adapted(theta, inner_lr, inner_steps, x, y)
    return ((phi * x.double()).sum(-1) - y.double()).pow(2).mean(-1)


def meta_gradient(
    algorithm: str, theta: Tensor, inner_lr: float, inner_steps: int, lam: float = 1.0
) -> Tensor:
    """Closed form of what the package's meta-gradient averages over the tasks at ``theta``:
    2 w_t r_t x_t for MAML, FOMAML, iMAML and pretrained, and theta - phi_k for Reptile."""
    w = weights(algorithm, inner_lr, inner_steps, lam)
    x, r = X.double(), X.double() @ theta - Y.double()
    scale = 1.0 if algorithm == "reptile" else 2.0
    return (scale * w * r)[:, None].mul(x).mean(0)


def learner(
    algorithm: str, inner_lr: float, inner_steps: int, lam: float = 1.0, imaml_steps: int = 60
) -> Learner:
    """The package's learner of ``algorithm`` on the toy's 2-parameter linear model.

    ``pretrained`` takes 0 inner steps (joint training). iMAML runs ``imaml_steps`` SGD steps
    on its proximal problem, whose curvature along x_t is h_t + lam: the step
    2 / (max h + min h + 2 lam) shrinks the error by at most (max h - min h) / (max h + min h
    + 2 lam) per step (0.61 at lam 1: 60 steps leave 1e-13), then an exact 2-step CG.
    """
    model = nn.Linear(2, 1, bias=False).double()
    if algorithm == "pretrained":
        return make_learner("pretrained", model, "mse", inner_lr=inner_lr, inner_steps=0)
    if algorithm == "imaml":
        h = curvatures()
        lr = 2.0 / (float(h.max() + h.min()) + 2 * lam)
        return make_learner("imaml", model, "mse", inner_lr=lr, inner_steps=imaml_steps,
                            lam=lam, cg_steps=2, damping=0.0)  # fmt: skip
    return make_learner(algorithm, model, "mse", inner_lr=inner_lr, inner_steps=inner_steps)


def meta_train(
    algorithm: str,
    inner_lr: float,
    inner_steps: int,
    lam: float = 1.0,
    *,
    outer_lr: float = 0.5,
    iterations: int = 500,
    start: Tensor | None = None,
    batched: bool = True,
) -> Tensor:
    """theta after ``iterations`` outer SGD steps of the package's ``meta_step`` on the three
    tasks (every task in every meta-batch), from ``start`` (default the origin). ``batched``:
    ``vmap`` over the tasks (the faster path, also here), or the per-task reference loop; the
    tests check that both land on the same theta."""
    learn = learner(algorithm, inner_lr, inner_steps, lam)
    w = torch.zeros(1, 2, dtype=torch.float64) if start is None else start.double().view(1, 2)
    meta = {"weight": w.clone().requires_grad_(True)}
    optimizer = torch.optim.SGD(meta.values(), lr=outer_lr)
    episode = tasks()
    for i in range(iterations):
        meta_step(learn, meta, optimizer, episode, iteration=i, batched=batched)
    return meta["weight"].detach().view(2)
