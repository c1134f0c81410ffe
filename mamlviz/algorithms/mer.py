r"""Meta-Experience Replay (Riemer et al. 2019, Algorithm 1) and its baselines on a stream.

For each incoming example (x_t, y_t), with a reservoir memory M of size ``memory_size``:

    \theta_{A0} = \theta
    repeat s times (``batches``):
        B = {(x_t, y_t)} + min(k, |M|) memories          (k = ``replay``)
        \theta_{W0} = \theta
        one SGD step per example of B, in order (batch size 1)      -- ``adapt``, one step each
        \theta = \theta_{W0} + \beta (\theta - \theta_{W0})         within-batch Reptile
    \theta = \theta_{A0} + \gamma (\theta - \theta_{A0})            across-batch Reptile
    reservoir-sample (x_t, y_t) into M

The sequential steps make the Reptile update reward gradient agreement between examples
(transfer) and penalise disagreement (interference). Baselines on the same stream and memory:
``online`` (one SGD step per example, no memory) and ``replay`` (experience replay: s SGD steps
per example, each on the mean loss of a batch B). With beta = gamma = 1, s = 1 and no memory,
MER is exactly online SGD (tested).

:func:`run_stream` evaluates every task's test set after each task: the loss matrix, and
optionally a score matrix such as accuracy (``metric_fn``), with the metrics of Lopez-Paz &
Ranzato 2017 (final average, backward transfer, learning accuracy) and Chaudhry et al. 2018
(forgetting).
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from mamlviz.core.episode import Examples
from mamlviz.core.functional import LossFn, Params, call
from mamlviz.core.inner import adapt
from mamlviz.core.rules import SGD
from mamlviz.errors import DivergenceError, check_range

METHODS = ("online", "replay", "mer")
MetricFn = Callable[[Params, Examples], float]


class Reservoir:
    """Reservoir sampling (Vitter 1985): after n examples, each is in memory w.p. size / n."""

    def __init__(self, size: int, generator: torch.Generator):
        check_range("memory_size", size, 0, integer=True)
        self.size, self.generator, self.seen = size, generator, 0
        self.x: list[torch.Tensor] = []
        self.y: list[torch.Tensor] = []

    def __len__(self) -> int:
        return len(self.x)

    def add(self, x: torch.Tensor, y: torch.Tensor) -> None:
        self.seen += 1
        if len(self.x) < self.size:
            self.x.append(x)
            self.y.append(y)
            return
        j = int(torch.randint(self.seen, (), generator=self.generator))
        if j < self.size:
            self.x[j], self.y[j] = x, y

    def batch(self, x: torch.Tensor, y: torch.Tensor, k: int) -> Examples:
        """The incoming example first, then ``min(k, len(self))`` memories without replacement."""
        idx = torch.randperm(len(self), generator=self.generator)[: min(k, len(self))].tolist()
        return Examples(
            torch.stack([x, *(self.x[i] for i in idx)]), torch.stack([y, *(self.y[i] for i in idx)])
        )


def _interpolate(start: Params, end: Params, weight: float) -> Params:
    """Reptile's ``start + weight (end - start)``."""
    return {n: start[n] + weight * (end[n] - start[n]) for n in start}


def sequential_sgd(loss_fn: LossFn, fast: Params, batch: Examples, lr: float) -> Params:
    """One SGD step per example of ``batch``, in order, batch size 1 (MER's inner loop)."""
    rule = SGD(lr)
    for i in range(batch.x.shape[0]):
        fast = adapt(loss_fn, fast, Examples(batch.x[i : i + 1], batch.y[i : i + 1]), rule, 1)
    return fast


def check_settings(
    method: str, lr: float, memory_size: int, beta: float, gamma: float, batches: int, replay: int
) -> None:
    """Validate every setting of :func:`learn_example`, naming the bad argument."""
    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, got {method!r}")
    check_range("lr", lr, 0.0)
    check_range("memory_size", memory_size, 0, integer=True)
    check_range("beta", beta, 0.0, 1.0, low_open=True)
    check_range("gamma", gamma, 0.0, 1.0, low_open=True)
    check_range("batches", batches, 1, integer=True)
    check_range("replay", replay, 0, integer=True)


def learn_example(
    method: str,
    loss_fn: LossFn,
    theta: Params,
    x: torch.Tensor,
    y: torch.Tensor,
    memory: Reservoir,
    *,
    lr: float,
    beta: float = 1.0,
    gamma: float = 1.0,
    batches: int = 1,
    replay: int = 0,
) -> Params:
    """Update ``theta`` on one stream example with ``method``, then store it in ``memory``."""
    if method == "online":
        theta = adapt(loss_fn, theta, Examples(x[None], y[None]), SGD(lr), 1)
    elif method == "replay":
        for _ in range(batches):
            theta = adapt(loss_fn, theta, memory.batch(x, y, replay), SGD(lr), 1)
    else:
        theta_a0 = theta
        for _ in range(batches):
            theta_w0 = theta
            theta = sequential_sgd(loss_fn, theta, memory.batch(x, y, replay), lr)
            theta = _interpolate(theta_w0, theta, beta)
        theta = _interpolate(theta_a0, theta, gamma)
    memory.add(x, y)
    return theta


def run_stream(
    method: str,
    loss_fn: LossFn,
    theta: Params,
    stream: Examples,
    family: torch.Tensor,
    test_sets: list[Examples],
    *,
    lr: float,
    memory_size: int = 0,
    beta: float = 1.0,
    gamma: float = 1.0,
    batches: int = 1,
    replay: int = 0,
    seed: int = 0,
    metric_fn: MetricFn | None = None,
) -> dict:
    """Learn ``stream`` in order; evaluate on every family's test set after each family.

    Returns ``theta``, ``losses[t][j]`` (loss on family j after family t), ``final_loss`` (mean
    over all families at the end), ``bwt`` (mean of R[T-1, j] - R[j, j], j < T-1: positive means
    forgetting; Lopez-Paz & Ranzato 2017, for losses) and ``forgetting`` (mean increase over the
    best loss reached on an earlier family, Chaudhry et al. 2018), and ``online_loss`` (the loss
    of each example before training on it). Raises :class:`DivergenceError` naming the example.

    With ``metric_fn`` (a score where higher is better, e.g. :func:`make_accuracy`) it also
    returns the matrix ``metrics[t][j]`` = A[t, j] and :func:`score_summary` of it:
    ``final_metric``, ``learning_metric[j]`` = A[j, j] (MER's learning accuracy),
    ``metric_bwt`` and ``metric_forgetting``. Evaluating it changes neither ``theta`` nor any
    random stream, so every other output is the same as without it.
    """
    check_settings(method, lr, memory_size, beta, gamma, batches, replay)
    memory = Reservoir(memory_size, torch.Generator().manual_seed(seed))
    online, losses, scores, n = [], [], [], stream.x.shape[0]
    for t in range(n):
        with torch.no_grad():
            loss = float(loss_fn(theta, Examples(stream.x[t : t + 1], stream.y[t : t + 1])))
        if not torch.isfinite(torch.tensor(loss)):
            raise DivergenceError("stream example", t, loss, "lower lr")
        online.append(loss)
        theta = learn_example(
            method, loss_fn, theta, stream.x[t], stream.y[t], memory,
            lr=lr, beta=beta, gamma=gamma, batches=batches, replay=replay,
        )  # fmt: skip
        if t == n - 1 or family[t + 1] != family[t]:
            with torch.no_grad():
                row = [float(loss_fn(theta, ex)) for ex in test_sets]
            if not torch.isfinite(torch.tensor(row)).all():
                raise DivergenceError("stream example", t, max(row), "lower lr")
            losses.append(row)
            if metric_fn is not None:
                with torch.no_grad():
                    scores.append([float(metric_fn(theta, ex)) for ex in test_sets])
    r = torch.tensor(losses)
    last = r.shape[0] - 1
    earlier = range(last)
    bwt = [float(r[last, j] - r[j, j]) for j in earlier]
    forgetting = [float(r[last, j] - r[j:last, j].min()) for j in earlier]
    out = {
        "theta": theta,
        "losses": losses,
        "final_loss": float(r[last].mean()),
        "bwt": sum(bwt) / max(len(bwt), 1),
        "forgetting": sum(forgetting) / max(len(forgetting), 1),
        "online_loss": online,
    }
    if metric_fn is not None:
        out.update(metrics=scores, **score_summary(scores))
    return out


def score_summary(scores: list[list[float]]) -> dict:
    """Metrics of a score matrix A[t, j] (score on task j after task t; higher is better).

    ``final_metric`` = mean_j A[T-1, j]; ``learning_metric[j]`` = A[j, j], the score on task j
    right after learning it (MER's "learning accuracy" is its mean); ``metric_bwt`` = mean over
    j < T-1 of A[T-1, j] - A[j, j] (Lopez-Paz & Ranzato 2017): for a score NEGATIVE means
    forgetting, the opposite sign of the loss ``bwt``; ``metric_forgetting`` = mean over j < T-1
    of max_{j <= l < T-1} A[l, j] - A[T-1, j] (Chaudhry et al. 2018): POSITIVE means forgetting,
    as for the loss ``forgetting`` (negative: task j got better after it was left).
    """
    a = torch.tensor(scores, dtype=torch.float64)
    last = a.shape[0] - 1
    earlier = range(last)
    bwt = [float(a[last, j] - a[j, j]) for j in earlier]
    forgetting = [float(a[j:last, j].max() - a[last, j]) for j in earlier]
    return {
        "final_metric": float(a[last].mean()),
        "learning_metric": [float(a[j, j]) for j in range(a.shape[0])],
        "metric_bwt": sum(bwt) / max(len(bwt), 1),
        "metric_forgetting": sum(forgetting) / max(len(forgetting), 1),
    }


def make_accuracy(model: torch.nn.Module) -> MetricFn:
    """Classification accuracy of ``model`` run with ``theta``: mean of argmax(logits) == y."""

    def accuracy(theta: Params, examples: Examples) -> float:
        return float((call(model, theta, examples.x).argmax(-1) == examples.y).double().mean())

    return accuracy
