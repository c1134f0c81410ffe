"""The Omniglot conv net and the stacked (grouped-convolution) meta-batch path, in float64.

Every batched path must give the per-task loop's meta-gradient: second order (MAML) and first
order (FOMAML), Reptile's pseudo-gradient, 1 and 2 inner steps, strided and max-pool nets.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from mamlviz.algorithms import make_learner
from mamlviz.core import stacked
from mamlviz.core.episode import Episode, Examples
from mamlviz.core.functional import call
from mamlviz.core.learner import Learner
from mamlviz.core.outer import meta_gradient, task_gradients
from mamlviz.core.rules import RULE_PREFIX
from mamlviz.errors import IndefiniteError, IndefiniteWarning
from mamlviz.models import MLP
from mamlviz.models.convnet import BatchStatNorm, ConvNet, batch_stat_norm, omniglot_convnet
from mamlviz.models.noise import NOISE_PREFIX

TASKS, WAYS = 3, 5


def episode(shots: int = 1, query_shots: int = 2, seed: int = 1) -> Episode:
    g = torch.Generator().manual_seed(seed)

    def examples(k: int) -> Examples:
        x = torch.rand(TASKS, WAYS * k, 1, 28, 28, generator=g, dtype=torch.float64)
        y = torch.arange(WAYS).repeat_interleave(k).expand(TASKS, -1).contiguous()
        return Examples(x, y)

    return Episode(examples(shots), examples(query_shots))


def small_net(pool: bool) -> ConvNet:
    """8 filters keep float64 second order fast; BN scale/shift moved off 1/0 to be generic."""
    torch.manual_seed(0)
    net = ConvNet(WAYS, filters=8, pool=pool).double()
    with torch.no_grad():
        for i in range(1, 5):
            getattr(net, f"norm{i}").weight.uniform_(0.5, 1.5)
            getattr(net, f"norm{i}").bias.uniform_(-0.3, 0.3)
    return net


def rel_err(a: dict, b: dict) -> float:
    return max(float((a[n] - b[n]).norm() / b[n].norm()) for n in b)


def test_batch_stat_norm_is_the_textbook_formula() -> None:
    g = torch.Generator().manual_seed(0)
    x = torch.randn(6, 4, 5, 5, generator=g, dtype=torch.float64) * 3 + 1
    w, b = torch.rand(4, generator=g, dtype=torch.float64), torch.randn(4, dtype=torch.float64)
    mean = x.mean(dim=(0, 2, 3), keepdim=True)
    var = ((x - mean) ** 2).mean(dim=(0, 2, 3), keepdim=True)  # biased, over N, H, W
    want = (x - mean) / torch.sqrt(var + 1e-5) * w.view(1, -1, 1, 1) + b.view(1, -1, 1, 1)
    torch.testing.assert_close(batch_stat_norm(x, w, b), want, rtol=1e-13, atol=1e-13)
    fused = F.batch_norm(x, None, None, w, b, training=True, eps=1e-5)
    torch.testing.assert_close(batch_stat_norm(x, w, b), fused, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(
        BatchStatNorm(4).double()(x).mean(dim=(0, 2, 3)),
        torch.zeros(4, dtype=torch.float64),
        atol=1e-13,
        rtol=0,
    )


@pytest.mark.parametrize("pool", [False, True])
def test_shapes(pool: bool) -> None:
    net = omniglot_convnet(WAYS, pool=pool, dtype=torch.float64)
    assert net(torch.rand(7, 1, 28, 28, dtype=torch.float64)).shape == (7, WAYS)
    assert net.features(torch.rand(7, 1, 28, 28, dtype=torch.float64)).shape == (7, 64)
    meta = {n: w.detach() for n, w in net.named_parameters()}
    x = torch.rand(TASKS, 7, 1, 28, 28, dtype=torch.float64)
    logits = stacked.stacked_logits(net, stacked.stack(meta, TASKS), x)
    assert logits.shape == (TASKS, 7, WAYS)
    # The stacked forward of task t is the plain forward of task t.
    for t in range(TASKS):
        torch.testing.assert_close(logits[t], call(net, meta, x[t]), rtol=1e-12, atol=1e-12)


def generic(meta: dict) -> dict:
    """Meta-SGD's rates, Meta-Curvature's factors and Meta-Dropout's noise net moved off their
    neutral init (constant, identity, zero), so that a wrong axis or a missing transpose on the
    stacked path shows."""
    g = torch.Generator().manual_seed(5)
    return {
        n: w + 0.05 * torch.randn(w.shape, generator=g, dtype=w.dtype)
        if n.startswith((RULE_PREFIX, NOISE_PREFIX))
        else w
        for n, w in meta.items()
    }


ALGORITHMS = ["maml", "fomaml", "reptile", "metasgd", "metacurv", "anil", "metadropout", "imaml"]


@pytest.mark.parametrize("pool", [False, True])
@pytest.mark.parametrize("algorithm", ALGORITHMS)
@pytest.mark.parametrize("inner_steps", [1, 2])
def test_stacked_equals_loop(pool: bool, algorithm: str, inner_steps: int) -> None:
    """Every algorithm that runs on the stacked path (``stacked.supports``) equals the loop.

    Meta-Dropout with its noise at the mean (deterministic, ``noise=mean``), two draws averaged:
    the noise net's path through the support forward is then compared exactly.
    """
    options = {"noise": "mean", "samples": 2} if algorithm == "metadropout" else {}
    if algorithm == "imaml":  # 3 CG steps: a converged solve would hide a wrong step size;
        options = {"cg_steps": 3, "damping": 4.0}  # damped: these tasks' systems are definite
    learner = make_learner(
        algorithm,
        small_net(pool),
        "cross_entropy",
        inner_lr=0.4,
        inner_steps=inner_steps,
        **options,
    )
    assert stacked.supports(learner)
    meta, ep = generic(learner.init_meta()), episode()
    want, want_losses = meta_gradient(learner, meta, ep, batched=False)
    got, got_losses = stacked.meta_gradient(learner, meta, ep)
    assert rel_err(got, want) < 1e-11
    torch.testing.assert_close(got_losses, want_losses, rtol=1e-12, atol=1e-12)


PATHS = {
    "loop": lambda learner, meta, ep: meta_gradient(learner, meta, ep, batched=False),
    "stacked": stacked.meta_gradient,
}


def imaml_learner(damping: float, **options: str) -> Learner:
    """A pooled net, inner_lr 0.4: undamped and damped by 4 its implicit systems on
    :func:`episode` are indefinite, damped by 10 definite."""
    return make_learner(
        "imaml", small_net(True), "cross_entropy", inner_lr=0.4, inner_steps=2, damping=damping,
        **options,
    )  # fmt: skip


def test_stacked_imaml_refuses_the_meta_batches_the_loop_refuses() -> None:
    """The stacked CG sees each task's own curvature, so both paths refuse the same meta-batches
    with the same task count and smallest curvature; damped by 10, neither refuses."""
    for damping, refused in ((0.0, True), (4.0, True), (10.0, False)):
        learner = imaml_learner(damping)
        meta, ep = generic(learner.init_meta()), episode()
        errors = []
        for path in PATHS.values():
            try:
                path(learner, meta, ep)
            except IndefiniteError as err:
                errors.append((err.tasks, err.total, round(err.curvature, 9)))
        assert len(errors) == (2 if refused else 0)
        assert errors[:1] * len(errors) == errors


def test_imaml_skip_averages_over_the_definite_tasks_only() -> None:
    """``indefinite=skip``: the meta-gradient is the mean of the definite tasks' implicit
    gradients (from the per-task loop's own per-task results), on both paths, with a warning
    that counts the skipped tasks; a refused meta-batch under ``refuse`` is the same batch."""
    learner = imaml_learner(4.0, indefinite="skip")
    meta, ep = generic(learner.init_meta()), episode()
    per_task, _, diagnostics = task_gradients(learner, meta, ep, batched=False)
    keep = diagnostics["curvature"] > 0
    assert 0 < int(keep.sum()) < TASKS  # some tasks skipped, not all
    want = {n: g[keep].mean(0) for n, g in per_task.items()}
    for path in PATHS.values():
        with pytest.warns(IndefiniteWarning, match=f"skipped {TASKS - int(keep.sum())} of 3"):
            got, _ = path(learner, meta, ep)
        assert rel_err(got, want) < 1e-11
    with pytest.raises(ValueError, match="indefinite must be one of"):
        imaml_learner(4.0, indefinite="ignore")


def test_vmap_equals_loop() -> None:
    """BatchStatNorm keeps the vmap path exact, second order included (see convnet.py)."""
    learner = make_learner("maml", small_net(False), "cross_entropy", inner_lr=0.4, inner_steps=2)
    meta, ep = learner.init_meta(), episode()
    want, _ = meta_gradient(learner, meta, ep, batched=False)
    got, _ = meta_gradient(learner, meta, ep, batched=True)
    assert rel_err(got, want) < 1e-11


def test_stacked_maml_matches_finite_differences() -> None:
    """Directional derivative of the mean post-adaptation query loss, central differences."""
    learner = make_learner("maml", small_net(False), "cross_entropy", inner_lr=0.4, inner_steps=1)
    meta, ep = learner.init_meta(), episode()
    grads, _ = stacked.meta_gradient(learner, meta, ep)
    g = torch.Generator().manual_seed(3)
    direction = {n: torch.randn(w.shape, generator=g, dtype=w.dtype) for n, w in meta.items()}
    norm = sum(float((d**2).sum()) for d in direction.values()) ** 0.5
    direction = {n: d / norm for n, d in direction.items()}

    def mean_query_loss(eps: float) -> float:
        moved = {n: w + eps * direction[n] for n, w in meta.items()}
        return float(stacked.meta_gradient(learner, moved, ep)[1].mean())

    # A small step: BatchNorm over 5 support images and ReLU make the loss sharply curved and
    # kinked, so central differences only settle below ~1e-6 (checked: 1e-4 is off by 2x).
    h = 1e-7
    numeric = (mean_query_loss(h) - mean_query_loss(-h)) / (2 * h)
    analytic = sum(float((grads[n] * direction[n]).sum()) for n in meta)
    assert abs(numeric - analytic) < 1e-6 * max(1.0, abs(analytic))


def test_errors() -> None:
    with pytest.raises(ValueError, match="ways"):
        ConvNet(1)
    with pytest.raises(ValueError, match="filters"):
        ConvNet(5, filters=0)
    with pytest.raises(ValueError, match="x must have shape"):
        ConvNet(5)(torch.rand(1, 28, 28))
    net = ConvNet(5)
    with pytest.raises(ValueError, match="x must have shape"):
        stacked.stacked_logits(net, dict(net.named_parameters()), torch.rand(2, 1, 28, 28))
    learner = make_learner("maml", MLP(), "mse", inner_lr=0.1, inner_steps=1)
    assert not stacked.supports(learner)
    assert stacked.supports(
        make_learner("fomaml", net, "cross_entropy", inner_lr=0.1, inner_steps=1)
    )
    with pytest.raises(ValueError, match=r"learner\.model"):
        stacked.meta_gradient(learner, learner.init_meta(), episode())


@pytest.mark.parametrize("algorithm", ["maml", "reptile", "imaml"])
def test_stacked_accuracy_curves_equal_the_vmap_evaluation(algorithm: str) -> None:
    """iMAML too: its evaluation adapts on the proximal objective, stacked or not."""
    from mamlviz.training.evaluate import metric_curves

    options = {"inner_optimizer": "adam", "inner_batch": 3} if algorithm == "reptile" else {}
    lr = 0.1 if algorithm == "reptile" else 0.4
    learner = make_learner(
        algorithm, small_net(False), "cross_entropy", inner_lr=lr, inner_steps=1, **options
    )
    meta, ep = learner.init_meta(), episode(shots=2, query_shots=3)
    want = metric_curves(learner, meta, ep, 4, "accuracy", stacked_path=False)
    got = metric_curves(learner, meta, ep, 4, "accuracy")
    assert got.shape == (TASKS, 5)
    torch.testing.assert_close(got, want, rtol=0, atol=0)
    assert not torch.equal(got[:, 0], got[:, -1])  # the steps change the predictions


def test_a_diverged_task_is_nan_not_chance_on_both_paths() -> None:
    """A diverged adaptation once scored about 20 % (the arg-max of NaN logits); now its
    accuracy is NaN on the stacked and the vmap path alike, and evaluation counts it."""
    from mamlviz.training.evaluate import metric_curves

    learner = make_learner("maml", small_net(False), "cross_entropy", inner_lr=1e300, inner_steps=1)
    meta, ep = learner.init_meta(), episode()
    for stacked_path in (True, False):
        curves = metric_curves(learner, meta, ep, 3, "accuracy", stacked_path=stacked_path)
        assert torch.isfinite(curves[:, 0]).all()  # before adapting: a real accuracy
        assert torch.isnan(curves[:, -1]).all(), curves
