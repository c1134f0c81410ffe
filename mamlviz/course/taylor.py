r"""Chapter 05: Reptile, FOMAML and MAML to leading order in \alpha (Nichol, Achiam & Schulman
2018, "On First-Order Meta-Learning Algorithms", section 5.1).

Throughout the course ``k`` is the number of inner SGD steps (``inner_steps``). One task, k + 1
minibatches with losses L_1 .. L_{k+1}, and k steps of SGD from \phi_1 = \theta on the first k,
step i on minibatch i:  \phi_{i+1} = \phi_i - \alpha g_i,  g_i = L_i'(\phi_i).

* MAML and FOMAML adapt with those k steps and use minibatch k + 1 as the query:
      g_MAML   = d/d\phi_1 L_{k+1}(\phi_{k+1})
               = \prod_{j<=k} (I - \alpha L_j''(\phi_j)) L_{k+1}'(\phi_{k+1})
      g_FOMAML = L_{k+1}'(\phi_{k+1})
* Reptile takes the same k steps (it has no query) and uses the scaled pseudo-gradient
      g_Reptile = (\phi_1 - \phi_{k+1}) / \alpha = \sum_{i<=k} g_i.

With \bar g_i = L_i'(\theta) and \bar H_i = L_i''(\theta), expand to first order in \alpha and
average over the order of the minibatches (they are exchangeable):

    AvgGrad      = E[\bar g_i]                  (the gradient of the expected loss)
    AvgGradInner = E[\bar H_i \bar g_j], i != j  (= 1/2 d/d\theta E[\bar g_i . \bar g_j])

    E[g_MAML]    = AvgGrad - 2k \alpha AvgGradInner  + O(\alpha^2)
    E[g_FOMAML]  = AvgGrad -  k \alpha AvgGradInner  + O(\alpha^2)
    E[g_Reptile] = k AvgGrad - k(k-1)/2 \alpha AvgGradInner + O(\alpha^2)

The paper counts minibatches instead: its k is our k + 1 for MAML and FOMAML (k - 1 inner
steps, coefficients 2(k-1) and k-1), and our k for Reptile. Here the expectation over orders is
taken exactly, over all (k+1)! permutations of k + 1 fixed minibatches, so the identities hold
up to O(\alpha^2) for any network (tested). AvgGrad and AvgGradInner are not orthogonal, so the
coefficients of an update are read off by least squares (:func:`fit_coefficients`).
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence

import torch
from torch import Tensor, nn
from torch.func import grad, vmap

from mamlviz.core.episode import Examples
from mamlviz.core.functional import (
    LossFn,
    Params,
    detach,
    flatten,
    tree_dot,
    tree_norm,
    tree_sub,
)
from mamlviz.core.implicit import hvp

ALGORITHMS = ("maml", "fomaml", "reptile")


def tanh_mlp(seed: int = 0, hidden: int = 40) -> nn.Sequential:
    """A smooth 1-h-h-1 tanh net in float64 (the Reptile sine demo uses tanh).

    The expansion needs a smooth loss: with ReLU a step can switch a unit on or off, and the
    gradient then jumps, so the O(alpha^2) behaviour holds only for very small alpha.
    """
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        layers = [nn.Linear(1, hidden), nn.Tanh(), nn.Linear(hidden, hidden), nn.Tanh()]
        return nn.Sequential(*layers, nn.Linear(hidden, 1)).double()


def sgd_path(
    loss_fn: LossFn, theta: Params, batches: Sequence[Examples], inner_lr: float
) -> list[Params]:
    r"""[\phi_1 = \theta, \phi_2, ..., \phi_{len+1}]: one SGD step per minibatch, in order."""
    path = [theta]
    for batch in batches:
        g = grad(loss_fn)(path[-1], batch)
        path.append({n: w - inner_lr * g[n] for n, w in path[-1].items()})
    return path


def gradients(
    loss_fn: LossFn, theta: Params, batches: Sequence[Examples], inner_lr: float
) -> dict[str, Params]:
    r"""g_MAML, g_FOMAML and g_Reptile for one order of the k + 1 minibatches.

    k = ``len(batches) - 1`` inner SGD steps on ``batches[:k]``; MAML and FOMAML take the query
    gradient on ``batches[k]``; Reptile returns (\theta - \phi_{k+1}) / \alpha after the same
    k steps (Nichol et al. 2018, section 5.1, with k counting inner steps).
    """
    *inner, last = batches

    def maml_objective(th: Params) -> tuple[Tensor, Params]:
        phi = sgd_path(loss_fn, th, inner, inner_lr)[-1]
        return loss_fn(phi, last), detach(phi)

    # phi comes back as auxiliary output: the inner loop runs once, not once more for FOMAML.
    maml, phi = grad(maml_objective, has_aux=True)(theta)
    return {
        "maml": maml,
        "fomaml": grad(loss_fn)(phi, last),
        "reptile": {n: (theta[n] - phi[n]) / inner_lr for n in theta},
    }


def expected_gradients(
    loss_fn: LossFn, theta: Params, batches: Sequence[Examples], inner_lr: float
) -> dict[str, Params]:
    r""":func:`gradients` averaged over all orders of the minibatches ((k+1)! of them):
    E[g] = 1/(k+1)! \sum_\sigma g(B_{\sigma(1)}, ..., B_{\sigma(k+1)}).

    Minibatches of one shape (the chapter's) are stacked into a (k+1)! x (k+1) tensor of
    permuted minibatches and all orders run at once under ``vmap``: one pass of the k-step
    inner loop and its backward instead of (k+1)! Python loops, about 10x faster at k = 3 for
    the same numbers up to float rounding (tested against :func:`expected_gradients_loop`).
    Minibatches of different shapes cannot be stacked and take the loop.
    """
    n_batches = len(batches)
    shapes = {(tuple(b.x.shape), tuple(b.y.shape)) for b in batches}
    if len(shapes) > 1:
        return expected_gradients_loop(loss_fn, theta, batches, inner_lr)
    orders = torch.tensor(list(itertools.permutations(range(n_batches))))
    xs = torch.stack([b.x for b in batches])[orders]  # (orders, k + 1, *x.shape)
    ys = torch.stack([b.y for b in batches])[orders]

    def one_order(x: Tensor, y: Tensor) -> dict[str, Params]:
        return gradients(loss_fn, theta, [Examples(x[i], y[i]) for i in range(n_batches)], inner_lr)

    per_order = vmap(one_order)(xs, ys)
    return {name: {n: v.mean(0) for n, v in g.items()} for name, g in per_order.items()}


def expected_gradients_loop(
    loss_fn: LossFn, theta: Params, batches: Sequence[Examples], inner_lr: float
) -> dict[str, Params]:
    """The same average as :func:`expected_gradients`, one order at a time in a Python loop:
    the plain definition, kept as its reference and for minibatches of different shapes."""
    orders = list(itertools.permutations(range(len(batches))))
    total: dict[str, Params] = {}
    for order in orders:
        g = gradients(loss_fn, theta, [batches[i] for i in order], inner_lr)
        for name, value in g.items():
            acc = total.setdefault(name, {n: 0 * v for n, v in value.items()})
            total[name] = {n: acc[n] + value[n] / len(orders) for n in value}
    return total


def avg_terms(loss_fn: LossFn, theta: Params, batches: Sequence[Examples]) -> tuple[Params, Params]:
    r"""(AvgGrad, AvgGradInner) at \theta over the minibatches (ordered pairs i != j):
    AvgGrad = 1/n \sum_i \bar g_i,  AvgGradInner = 1/(n(n-1)) \sum_{i != j} \bar H_i \bar g_j."""
    n_batches = len(batches)
    grads = [grad(loss_fn)(theta, b) for b in batches]
    total = {n: sum(g[n] for g in grads) for n in theta}
    avg_grad = {n: total[n] / n_batches for n in theta}
    # sum_{i != j} H_i g_j = sum_i H_i (sum_j g_j - g_i): H_i is linear, so one
    # Hessian-vector product per minibatch instead of one per ordered pair.
    others = [{n: total[n] - g[n] for n in theta} for g in grads]
    inner = [hvp(loss_fn, theta, b, v) for b, v in zip(batches, others, strict=True)]
    pairs = n_batches * (n_batches - 1)
    avg_inner = {n: sum(h[n] for h in inner) / pairs for n in theta}
    return avg_grad, avg_inner


def pair_inner_product(loss_fn: LossFn, theta: Params, batches: Sequence[Examples]) -> Tensor:
    r"""E[\bar g_i . \bar g_j] over ordered pairs i != j: how well minibatch gradients agree.

    Its gradient in \theta is 2 AvgGradInner (product rule, H symmetric; tested), so a step
    along +AvgGradInner increases it.
    """
    grads = [grad(loss_fn)(theta, b) for b in batches]
    pairs = [(i, j) for i in range(len(batches)) for j in range(len(batches)) if i != j]
    return sum(tree_dot(grads[i], grads[j]) for i, j in pairs) / len(pairs)


def coefficients(k: int) -> dict[str, tuple[float, float]]:
    """(coefficient of AvgGrad, coefficient of alpha AvgGradInner) per algorithm, k inner steps.

    MAML (1, -2k), FOMAML (1, -k), Reptile (k, -k(k-1)/2): Nichol et al. (2018) section 5.1
    with the paper's minibatch count k_paper = k + 1 for MAML and FOMAML, = k for Reptile.
    """
    return {
        "maml": (1.0, -2.0 * k),
        "fomaml": (1.0, -1.0 * k),
        "reptile": (float(k), -(k * (k - 1)) / 2),
    }


def predictions(avg_grad: Params, avg_inner: Params, k: int, inner_lr: float) -> dict[str, Params]:
    """The leading-order predictions E[g] = a AvgGrad + b alpha AvgGradInner (k inner steps)."""
    return {
        name: {n: a * avg_grad[n] + b * inner_lr * avg_inner[n] for n in avg_grad}
        for name, (a, b) in coefficients(k).items()
    }


def fit_coefficients(
    g: Params, avg_grad: Params, avg_inner: Params, inner_lr: float
) -> tuple[float, float]:
    r"""Least-squares (a, b) minimising ||g - a AvgGrad - b \alpha AvgGradInner||.

    The two directions are not orthogonal, so the components of g along the unit vectors are
    not the coefficients; the 2 x 2 normal equations [u_i . u_j] (a, b) = (u_i . g) are, with
    u_1 = AvgGrad and u_2 = \alpha AvgGradInner. Exact for any g in their span (tested).
    """
    u = (flatten(avg_grad), inner_lr * flatten(avg_inner))
    v = flatten(g)
    gram = torch.stack([torch.stack([u[i] @ u[j] for j in range(2)]) for i in range(2)])
    rhs = torch.stack([u[0] @ v, u[1] @ v])
    a, b = torch.linalg.solve(gram, rhs).tolist()
    return a, b


def fitted_coefficients(
    loss_fn: LossFn, theta: Params, batches: Sequence[Examples], inner_lr: float
) -> dict[str, tuple[float, float]]:
    """:func:`fit_coefficients` of each exact expected gradient (k = len(batches) - 1 steps).

    Tends to :func:`coefficients` (k) as inner_lr -> 0, the error on b being O(inner_lr).
    """
    avg_grad, avg_inner = avg_terms(loss_fn, theta, batches)
    exact = expected_gradients(loss_fn, theta, batches, inner_lr)
    return {
        name: fit_coefficients(exact[name], avg_grad, avg_inner, inner_lr) for name in ALGORITHMS
    }


def taylor_errors(
    loss_fn: LossFn, theta: Params, batches: Sequence[Examples], inner_lrs: Sequence[float]
) -> dict[str, list[float]]:
    r"""||E[g] - prediction|| per algorithm for each \alpha (k = len(batches) - 1 inner steps).

    Falls like \alpha^2: the prediction is the expansion to first order.
    """
    avg_grad, avg_inner = avg_terms(loss_fn, theta, batches)
    errors: dict[str, list[float]] = {name: [] for name in ALGORITHMS}
    for a in inner_lrs:
        exact = expected_gradients(loss_fn, theta, batches, a)
        predicted = predictions(avg_grad, avg_inner, len(batches) - 1, a)
        for name in ALGORITHMS:
            errors[name].append(float(tree_norm(tree_sub(exact[name], predicted[name]))))
    return errors
