r"""Chapter 05: Reptile, FOMAML and MAML to leading order in \alpha (Nichol, Achiam & Schulman
2018, "On First-Order Meta-Learning Algorithms", section 5.1).

The paper's setting: one task, k minibatches with losses L_1 .. L_k, and k steps of SGD from
\phi_1 = \theta, step i on minibatch i:  \phi_{i+1} = \phi_i - \alpha g_i,  g_i = L_i'(\phi_i).

* MAML and FOMAML adapt on the first k-1 minibatches and use the k-th as the query:
      g_MAML   = d/d\phi_1 L_k(\phi_k) = \prod_{j<k} (I - \alpha L_j''(\phi_j)) L_k'(\phi_k)
      g_FOMAML = L_k'(\phi_k)
* Reptile takes all k steps and uses the scaled pseudo-gradient
      g_Reptile = (\phi_1 - \phi_{k+1}) / \alpha = \sum_i g_i.

With \bar g_i = L_i'(\theta) and \bar H_i = L_i''(\theta), expand to first order in \alpha and
average over the order of the minibatches (they are exchangeable):

    AvgGrad      = E[\bar g_i]                  (the gradient of the expected loss)
    AvgGradInner = E[\bar H_i \bar g_j], i != j  (= 1/2 d/d\theta E[\bar g_i . \bar g_j])

    E[g_MAML]    = AvgGrad - 2(k-1) \alpha AvgGradInner  + O(\alpha^2)
    E[g_FOMAML]  = AvgGrad -  (k-1) \alpha AvgGradInner  + O(\alpha^2)
    E[g_Reptile] = k AvgGrad - k(k-1)/2 \alpha AvgGradInner + O(\alpha^2)

Here the expectation over orders is taken exactly, over all k! permutations of k fixed
minibatches, so the identities hold up to O(\alpha^2) for any network (tested).
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence

import torch
from torch import nn
from torch.func import grad

from mamlviz.core.episode import Examples
from mamlviz.core.functional import LossFn, Params, detach, tree_norm, tree_sub
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
    r"""g_MAML, g_FOMAML and g_Reptile for one order of the k minibatches (paper's definitions)."""
    *inner, last = batches

    def maml_objective(th: Params) -> object:
        return loss_fn(sgd_path(loss_fn, th, inner, inner_lr)[-1], last)

    phi_k = detach(sgd_path(loss_fn, theta, inner, inner_lr)[-1])
    phi_end = sgd_path(loss_fn, theta, batches, inner_lr)[-1]
    return {
        "maml": grad(maml_objective)(theta),
        "fomaml": grad(loss_fn)(phi_k, last),
        "reptile": {n: (theta[n] - phi_end[n]) / inner_lr for n in theta},
    }


def expected_gradients(
    loss_fn: LossFn, theta: Params, batches: Sequence[Examples], inner_lr: float
) -> dict[str, Params]:
    """:func:`gradients` averaged over all orders of the minibatches (k! of them)."""
    orders = list(itertools.permutations(range(len(batches))))
    total: dict[str, Params] = {}
    for order in orders:
        g = gradients(loss_fn, theta, [batches[i] for i in order], inner_lr)
        for name, value in g.items():
            acc = total.setdefault(name, {n: 0 * v for n, v in value.items()})
            total[name] = {n: acc[n] + value[n] / len(orders) for n in value}
    return total


def avg_terms(loss_fn: LossFn, theta: Params, batches: Sequence[Examples]) -> tuple[Params, Params]:
    r"""(AvgGrad, AvgGradInner) at \theta over the k minibatches (ordered pairs i != j)."""
    k = len(batches)
    grads = [grad(loss_fn)(theta, b) for b in batches]
    avg_grad = {n: sum(g[n] for g in grads) / k for n in theta}
    pairs = [(i, j) for i in range(k) for j in range(k) if i != j]
    inner = [hvp(loss_fn, theta, batches[i], grads[j]) for i, j in pairs]
    avg_inner = {n: sum(h[n] for h in inner) / len(pairs) for n in theta}
    return avg_grad, avg_inner


def coefficients(k: int) -> dict[str, tuple[float, float]]:
    """(coefficient of AvgGrad, coefficient of alpha AvgGradInner) per algorithm, k steps."""
    return {
        "maml": (1.0, -2.0 * (k - 1)),
        "fomaml": (1.0, -1.0 * (k - 1)),
        "reptile": (float(k), -0.5 * k * (k - 1)),
    }


def predictions(avg_grad: Params, avg_inner: Params, k: int, inner_lr: float) -> dict[str, Params]:
    """The leading-order predictions E[g] = a AvgGrad + b alpha AvgGradInner per algorithm."""
    return {
        name: {n: a * avg_grad[n] + b * inner_lr * avg_inner[n] for n in avg_grad}
        for name, (a, b) in coefficients(k).items()
    }


def taylor_errors(
    loss_fn: LossFn, theta: Params, batches: Sequence[Examples], inner_lrs: Sequence[float]
) -> dict[str, list[float]]:
    r"""||E[g] - prediction|| per algorithm for each \alpha: falls like \alpha^2."""
    avg_grad, avg_inner = avg_terms(loss_fn, theta, batches)
    errors: dict[str, list[float]] = {name: [] for name in ALGORITHMS}
    for a in inner_lrs:
        exact = expected_gradients(loss_fn, theta, batches, a)
        predicted = predictions(avg_grad, avg_inner, len(batches), a)
        for name in ALGORITHMS:
            errors[name].append(float(tree_norm(tree_sub(exact[name], predicted[name]))))
    return errors
