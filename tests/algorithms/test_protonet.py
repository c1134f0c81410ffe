"""Prototypical Networks (Snell et al. 2017): prototypes are class means of support embeddings
(eq. 1), logits are negative squared Euclidean distances (eq. 2), so the classifier is the
nearest-mean rule; checked by hand in float64, against central differences, and for the
invariances the definition implies. No inner loop: inner_steps other than 0 is refused."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from mamlviz.algorithms import get_algorithm, make_learner
from mamlviz.algorithms.protonet import (
    Embedding,
    classify,
    logits,
    prototypes,
    prototypical,
    query_loss,
    squared_distances,
)
from mamlviz.core.episode import Episode, Examples
from mamlviz.core.outer import meta_gradient
from mamlviz.models import omniglot_convnet
from mamlviz.training.config import TrainConfig
from mamlviz.training.evaluate import metric_curves


def conv_learner(seed: int = 0):
    return make_learner(
        "protonet",
        omniglot_convnet(5, seed=seed, dtype=torch.float64),
        "cross_entropy",
        inner_lr=0.0,
        inner_steps=0,
    )


def images(n: int, seed: int) -> torch.Tensor:
    return torch.rand(n, 1, 28, 28, generator=torch.Generator().manual_seed(seed)).double()


def task(ways: int = 3, shots: int = 2, query_shots: int = 2, seed: int = 0) -> Episode:
    """One task of random images, labels grouped by class as the Omniglot sampler gives them."""
    ys = torch.arange(ways).repeat_interleave(shots)
    yq = torch.arange(ways).repeat_interleave(query_shots)
    return Episode(Examples(images(len(ys), seed), ys), Examples(images(len(yq), seed + 1), yq))


def meta_batch(*tasks: Episode) -> Episode:
    return Episode(
        *(Examples(torch.stack([t[i].x for t in tasks]), torch.stack([t[i].y for t in tasks]))
          for i in range(2))
    )  # fmt: skip


def test_prototypes_are_the_hand_computed_class_means(float64) -> None:
    g = torch.Generator().manual_seed(0)
    emb = torch.randn(6, 4, generator=g)
    labels = torch.tensor([2, 0, 1, 2, 0, 2])  # unsorted, 2 / 1 / 3 examples per class
    got = prototypes(emb, labels)
    for k in range(3):
        rows = [emb[i] for i in range(6) if labels[i] == k]
        want = sum(rows[1:], rows[0]) / len(rows)
        torch.testing.assert_close(got[k], want, rtol=0, atol=1e-15)


def test_the_one_shot_prototype_is_the_support_embedding(float64) -> None:
    learner = conv_learner()
    ep = task(ways=5, shots=1)
    emb = learner.model(ep.support.x)
    assert torch.equal(prototypes(emb, ep.support.y), emb)  # one-hot^T @ emb / 1: exact


def test_logits_are_minus_squared_distances_to_the_means_computed_by_hand(float64) -> None:
    learner = conv_learner()
    net = omniglot_convnet(5, seed=0, dtype=torch.float64)  # the same init: MAML's body
    ep = task(ways=3, shots=2, query_shots=2)
    params = {n: w.detach() for n, w in learner.model.named_parameters()}
    got = logits(learner.model, params, *ep, transductive=True)
    fs, fq = net.features(ep.support.x), net.features(ep.query.x)  # each set one batch
    for m in range(fq.shape[0]):
        for k in range(3):
            members = [fs[i] for i in range(fs.shape[0]) if ep.support.y[i] == k]
            centre = (members[0] + members[1]) / 2
            want = -sum(float(d) ** 2 for d in (fq[m] - centre).detach())
            assert abs(float(got[m, k]) - want) < 1e-10 * max(1.0, abs(want))
    # and through the registry row's classify, which evaluation scores
    out = classify(learner, learner.init_meta(), meta_batch(ep))
    torch.testing.assert_close(out[0], got, rtol=0, atol=0)


def test_with_an_identity_embedding_the_classifier_is_the_nearest_mean_rule(float64) -> None:
    identity = nn.Linear(2, 2)
    with torch.no_grad():
        identity.weight.copy_(torch.eye(2))
        identity.bias.zero_()
    learner = make_learner("protonet", identity, "cross_entropy", inner_lr=0.0, inner_steps=0)
    # class 0 at (0,0) and (4,0) (mean (2,0)), class 1 twice at (3,2), class 2 at (-3,-3): the
    # query (4, 0.9) lies nearest to a class-0 point but nearest to the class-1 mean
    sx = torch.tensor([[0.0, 0.0], [4.0, 0.0], [3.0, 2.0], [3.0, 2.0], [-3.0, -3.0], [-2.0, -3.0]])
    sy = torch.tensor([0, 0, 1, 1, 2, 2])
    grid = torch.cartesian_prod(torch.linspace(-5, 6, 23), torch.linspace(-5, 5, 21))
    qx = torch.cat([torch.tensor([[4.0, 0.9]]), grid])
    qy = torch.zeros(len(qx), dtype=torch.int64)
    out = logits(identity, dict(identity.named_parameters()), Examples(sx, sy), Examples(qx, qy),
                 transductive=True)  # fmt: skip
    means = torch.stack([sx[sy == k].mean(0) for k in range(3)])
    dist = torch.stack([((qx - c) ** 2).sum(1) for c in means], dim=1)
    torch.testing.assert_close(out, -dist, rtol=0, atol=1e-12)
    assert torch.equal(out.argmax(1), dist.argmin(1))
    nearest_point = sy[((qx[0] - sx) ** 2).sum(1).argmin()]
    assert int(out[0].argmax()) == 1 and int(nearest_point) == 0  # the mean, not 1-NN
    assert learner.init_meta().keys() == {"weight", "bias"}


def test_support_order_within_a_class_leaves_the_logits_unchanged(float64) -> None:
    learner = conv_learner()
    ep = task(ways=3, shots=3, query_shots=2)
    params = dict(learner.model.named_parameters())
    base = logits(learner.model, params, *ep, transductive=True)
    for seed in range(3):
        order = torch.randperm(9, generator=torch.Generator().manual_seed(seed))
        shuffled = Examples(ep.support.x[order], ep.support.y[order])
        got = logits(learner.model, params, shuffled, ep.query, transductive=True)
        torch.testing.assert_close(got, base, rtol=1e-12, atol=1e-12)
    # a change of which example is in which class does change them (the test can fail)
    relabelled = Examples(ep.support.x, ep.support.y[[1, 0, 2, 3, 4, 5, 6, 7, 8]].roll(1))
    other = logits(learner.model, params, relabelled, ep.query, transductive=True)
    assert (other - base).abs().max() > 1e-3


def test_the_loss_gradient_matches_central_differences(float64) -> None:
    learner = conv_learner()
    meta = learner.init_meta()
    ep = task(ways=3, shots=2, query_shots=2)
    grads, loss = prototypical(learner, meta, ep)
    want = F.cross_entropy(logits(learner.model, meta, *ep, transductive=True), ep.query.y)
    torch.testing.assert_close(loss, want, rtol=0, atol=0)
    assert set(grads) == set(meta) and not any(n.startswith("head") for n in meta)
    g = torch.Generator().manual_seed(3)
    for _ in range(3):
        v = {n: torch.randn(w.shape, generator=g) for n, w in meta.items()}
        eps = 1e-8  # small: a larger step crosses ReLU kinks along a random direction
        plus = query_loss(learner, {n: w + eps * v[n] for n, w in meta.items()}, ep)
        minus = query_loss(learner, {n: w - eps * v[n] for n, w in meta.items()}, ep)
        numeric = float(plus - minus) / (2 * eps)
        analytic = float(sum((grads[n] * v[n]).sum() for n in meta))
        assert abs(numeric - analytic) < 1e-6 * max(1.0, abs(analytic)), (numeric, analytic)


def test_meta_gradient_is_the_mean_of_the_tasks_and_refuses_vmap(float64) -> None:
    learner = conv_learner()
    meta = learner.init_meta()
    a, b = task(seed=0), task(seed=5)
    grads, losses = meta_gradient(learner, meta, meta_batch(a, b), batched=False)
    ga, la = prototypical(learner, meta, a)
    gb, lb = prototypical(learner, meta, b)
    for n in meta:
        torch.testing.assert_close(grads[n], (ga[n] + gb[n]) / 2, rtol=1e-12, atol=1e-14)
    torch.testing.assert_close(losses, torch.stack([la, lb]))
    with pytest.raises(ValueError, match=r"task by task .*batched=False"):
        meta_gradient(learner, meta, meta_batch(a, b), batched=True)


def test_the_embedding_is_the_maml_body_under_the_same_names(float64) -> None:
    net = omniglot_convnet(5, seed=0, dtype=torch.float64)
    emb = Embedding(net)
    names = {n for n, _ in net.named_parameters() if not n.startswith("head.")}
    assert {n for n, _ in emb.named_parameters()} == names
    x = images(4, 0)
    assert torch.equal(emb(x), net.features(x))


def test_non_transductive_query_images_do_not_inform_each_other(float64) -> None:
    learner = conv_learner()
    ep = task(ways=3, shots=1, query_shots=2)
    params = dict(learner.model.named_parameters())
    changed = Examples(ep.query.x.clone(), ep.query.y)
    changed.x[1:] = images(5, 99)  # every query image but the first replaced
    for transductive, same in ((False, True), (True, False)):
        a = logits(learner.model, params, ep.support, ep.query, transductive=transductive)
        b = logits(learner.model, params, ep.support, changed, transductive=transductive)
        assert torch.allclose(a[0], b[0], rtol=0, atol=1e-12) == same, transductive
    # "with support": the first query image's logits are those of [support; that image]
    alone = learner.model(torch.cat([ep.support.x, ep.query.x[:1]]))[-1:]
    centres = prototypes(learner.model(ep.support.x), ep.support.y)
    row = logits(learner.model, params, ep.support, ep.query, transductive=False)[:1]
    torch.testing.assert_close(row, -squared_distances(alone, centres), rtol=0, atol=1e-12)


def test_evaluation_scores_the_nearest_prototype_accuracy(float64) -> None:
    learner = conv_learner()
    tasks = [task(ways=5, shots=1, query_shots=2, seed=s) for s in range(0, 8, 2)]
    meta = learner.init_meta()
    curves = metric_curves(learner, meta, meta_batch(*tasks), 0, "accuracy")
    assert curves.shape == (4, 1)
    for i, ep in enumerate(tasks):
        out = logits(learner.model, meta, *ep, transductive=True)
        assert float(curves[i, 0]) == float((out.argmax(1) == ep.query.y).double().mean())
    with pytest.raises(ValueError, match=r"steps must be 0 .*protonet.*got steps 3"):
        metric_curves(learner, meta, meta_batch(*tasks), 3, "accuracy")


def test_same_seed_same_run_other_seed_other_run(omniglot_env) -> None:
    from mamlviz.training.train import fit

    def run(seed: int):
        config = TrainConfig.for_problem(
            "omniglot", "protonet", iterations=3, seed=seed, options={"train_ways": 5}
        )
        return fit(config, progress=False)

    (m1, h1), (m2, h2), (m3, h3) = run(0), run(0), run(1)
    assert h1.loss == h2.loss and all(torch.equal(m1[n], m2[n]) for n in m1)
    assert h1.loss != h3.loss and not torch.equal(m1["conv1.weight"], m3["conv1.weight"])


def test_the_outer_step_size_halves_every_halve_every_episodes() -> None:
    from mamlviz.training.train import _outer_lr

    config = TrainConfig.for_problem("omniglot", "protonet")
    assert config.options == {"train_ways": 60, "halve_every": 2000}
    assert [_outer_lr(config, i) for i in (0, 1999, 2000, 4000)] == [1e-3, 1e-3, 5e-4, 2.5e-4]
    maml = TrainConfig.for_problem("omniglot", "maml")
    assert _outer_lr(maml, 59_999) == maml.outer_lr  # other Adam rows: constant


@pytest.mark.parametrize(
    ("call", "match"),
    [
        (lambda: conv_learner_steps(1), r"inner_steps must be in \[0, 0\] for 'protonet', got 1"),
        (lambda: conv_learner_loss("mse"), r"protonet classifies: loss must be 'cross_entropy'"),
        (
            lambda: TrainConfig.for_problem("omniglot", "protonet", inner_steps=3),
            r"inner_steps must be 0 for 'protonet', got 3 \(it has no inner loop\)",
        ),
        (
            lambda: TrainConfig.for_problem("omniglot", "protonet", options={"train_ways": 1}),
            r"train_ways must be in \[2, inf\), got 1",
        ),
        (
            lambda: TrainConfig.for_problem("omniglot", "protonet", options={"halve_every": 0}),
            r"halve_every must be in \[1, inf\), got 0",
        ),
        (
            lambda: TrainConfig.for_problem("omniglot", "protonet", options={"transductive": "x"}),
            r"transductive must be true or false, got 'x'",
        ),
        (
            lambda: TrainConfig.for_problem("omniglot", "protonet", options={"train_way": 5}),
            r"unknown option 'train_way' for protonet \(did you mean 'train_ways'\?\)",
        ),
        (
            lambda: prototypes(torch.zeros(3, 2), torch.tensor([0, 2, 2])),
            r"every class present .*got labels \[0, 2\]",
        ),
        (lambda: prototypes(torch.zeros(3, 2), torch.tensor([0, 1])), r"one label each"),
        (lambda: squared_distances(torch.zeros(3, 2), torch.zeros(2, 3)), r"must share D"),
    ],
)
def test_bad_arguments_are_clear_errors(call, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        call()


def conv_learner_steps(steps: int):
    net = omniglot_convnet(5)
    return make_learner("protonet", net, "cross_entropy", inner_lr=0.0, inner_steps=steps)


def conv_learner_loss(loss: str):
    return make_learner("protonet", omniglot_convnet(5), loss, inner_lr=0.0, inner_steps=0)


def test_the_row_says_it_has_no_inner_loop() -> None:
    spec = get_algorithm("protonet")
    assert not spec.has_inner_loop and not spec.batched and not spec.uses_inner_lr
    assert get_algorithm("maml").has_inner_loop and get_algorithm("maml").batched
