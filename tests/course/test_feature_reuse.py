"""Chapter 09's measurements (feature reuse), in float64 where they are closed forms: linear CKA's
invariances, layer-restricted adaptation against the evaluation's own path, the prototype head
against its definition, the gradient shares; the exercise checkers and the main widget."""

from __future__ import annotations

import pytest
import torch

from mamlviz.core.functional import call
from mamlviz.course import exercises_reuse as ex
from mamlviz.course import feature_reuse as fr
from mamlviz.course.exercises import CHECKS
from mamlviz.course.omniglot import load_demo
from mamlviz.training.evaluate import metric_curves


@pytest.fixture(scope="module")
def demo(synthetic_omniglot):
    """The shipped 5-way MAML on a synthetic data set (random images, 6 test classes)."""
    d = load_demo("omniglot-maml-5w1s")
    d.tasks = synthetic_omniglot(20, train_classes=12, val_classes=2).view("test")
    return d


def rand(*shape: int, seed: int = 0) -> torch.Tensor:
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


def test_linear_cka_is_one_for_rotated_scaled_shifted_copies_and_symmetric() -> None:
    x = rand(40, 7) + 2
    q, _ = torch.linalg.qr(rand(7, 7, seed=1))
    torch.testing.assert_close(fr.linear_cka(x, x), torch.tensor(1.0, dtype=torch.float64))
    torch.testing.assert_close(
        fr.linear_cka(x, 3 * x @ q - 5), torch.tensor(1.0, dtype=torch.float64)
    )
    y = rand(40, 3, seed=2)
    torch.testing.assert_close(fr.linear_cka(x, y), fr.linear_cka(y, x), rtol=1e-14, atol=0)
    assert 0 <= float(fr.linear_cka(x, y)) < 0.5  # unrelated features: far from 1
    # the Gram form equals the feature form ||Y^T X||^2 / (||X^T X|| ||Y^T Y||)
    xc, yc = x - x.mean(0), y - y.mean(0)
    feature_form = (yc.T @ xc).norm() ** 2 / ((xc.T @ xc).norm() * (yc.T @ yc).norm())
    torch.testing.assert_close(fr.linear_cka(x, y), feature_form, rtol=1e-12, atol=0)
    # not invariant to an anisotropic scaling of the features (linear CKA's known property)
    assert abs(float(fr.linear_cka(x, x * torch.arange(1.0, 8.0, dtype=x.dtype))) - 1) > 1e-3
    with pytest.raises(ValueError, match="same n"):
        fr.linear_cka(x, y[:10])
    with pytest.raises(ValueError, match="n >= 2"):
        fr.linear_cka(x[:1], y[:1])


def test_layers_name_every_parameter_of_the_conv_net(demo) -> None:
    groups = {n: fr.layer_of(n) for n in demo.meta}
    assert set(groups.values()) == set(fr.LAYERS)
    assert groups["conv4.weight"] == groups["norm4.bias"] == "block 4"
    assert fr.layer_of("noise.conv1.weight") == ""
    with pytest.raises(ValueError, match="layers must be among"):
        fr.check_layers(["block 5"])


def test_all_layers_is_the_evaluation_and_nothing_stays_at_theta(demo) -> None:
    episode = fr.episodes(demo, 4, seed=3)
    got = fr.accuracy_adapting(demo, episode, fr.LAYERS, steps=2)
    want = metric_curves(demo.learner(), demo.meta, episode, 2, "accuracy", stacked_path=False)
    torch.testing.assert_close(got, want, rtol=0, atol=0)
    still = fr.accuracy_adapting(demo, episode, (), steps=2)
    assert torch.equal(still[:, 1], still[:, 0]) and torch.equal(still[:, 2], still[:, 0])


def test_adapted_changes_only_the_chosen_layers_and_weight_change_measures_it(demo) -> None:
    episode = fr.episodes(demo, 3, seed=4)
    phi = fr.adapted(demo, episode, ("head",), steps=2)
    for n, w in phi.items():
        moved = (w - demo.meta[n]).flatten(1).abs().amax(1)
        assert (moved > 0).all() if n.startswith("head.") else (moved == 0).all(), n
    change = fr.weight_change_by_layer(demo.meta, phi)
    assert all(float(change[layer].abs().max()) == 0 for layer in fr.LAYERS[:4])
    keys = ("head.weight", "head.bias")
    for t in range(3):
        num = sum((phi[n][t] - demo.meta[n]).pow(2).sum() for n in keys) ** 0.5
        den = sum(demo.meta[n].pow(2).sum() for n in keys) ** 0.5
        torch.testing.assert_close(change["head"][t], num / den)
    one = fr.weight_change_by_layer(demo.meta, {n: w[0] for n, w in phi.items()})
    torch.testing.assert_close(one["head"], change["head"][0])


def test_block_outputs_are_the_forward_pass(demo) -> None:
    x = fr.episodes(demo, 1, seed=5, query_shots=2).query.x[0]
    taps = fr.block_outputs(demo.model, demo.meta, x)
    torch.testing.assert_close(taps["head"], call(demo.model, demo.meta, x))
    with torch.no_grad():
        torch.testing.assert_close(taps["features"], demo.model.features(x))
    assert taps["block 4"].shape == (10, 64, 2, 2) and (taps["block 1"] >= 0).all()
    assert not demo.model.norm1._forward_hooks  # the hooks are removed


def test_prototype_accuracy_is_the_cosine_nearest_class_mean(demo) -> None:
    episode = fr.episodes(demo, 3, seed=6, query_shots=2)
    got = fr.prototype_accuracy(demo, episode)
    for t in range(3):
        task = episode.task(t)
        with torch.no_grad():
            s = fr.features(demo.model, demo.meta, task.support.x)
            q = fr.features(demo.model, demo.meta, task.query.x)
        labels = ex.reference_prototype_labels(s, task.support.y, q, 5)
        assert float(got[t]) == float((labels == task.query.y).double().mean())


def test_gradient_shares_sum_to_one_and_are_the_per_task_gradients(demo) -> None:
    episode = fr.episodes(demo, 2, seed=7)
    share = fr.gradient_share(demo, episode)
    torch.testing.assert_close(sum(share.values()), torch.ones(2))
    task = episode.task(1)
    g = torch.func.grad(lambda p: demo.learner().loss(p, task.support))(dict(demo.meta))
    sq = {layer: sum(float(v.pow(2).sum()) for n, v in g.items() if fr.layer_of(n) == layer)
          for layer in fr.LAYERS}  # fmt: skip
    total = sum(sq.values())
    for layer in fr.LAYERS:
        assert abs(float(share[layer][1]) - sq[layer] / total) < 1e-5


# --- exercise checkers ----------------------------------------------------------------------


def _uncentred(x, y):
    kx, ky = x @ x.T, y @ y.T
    return float((kx * ky).sum() / (kx.norm() * ky.norm()))


def _not_squared(x, y):
    x, y = x - x.mean(0), y - y.mean(0)
    return float((y.T @ x).norm() / ((x.T @ x).norm() * (y.T @ y).norm()))


CKA_MISTAKES = {
    "zeros": lambda x, y: 0.0,
    "always one": lambda x, y: 1.0,
    "no centring": _uncentred,
    "numerator not squared": _not_squared,
    "wrong sign": lambda x, y: -float(fr.linear_cka(x, y)),
}


def _euclidean(s, y, q, ways):
    protos = torch.stack([s[y == c].mean(0) for c in range(ways)])
    return torch.cdist(q, protos).argmin(1)


def _first_shot(s, y, q, ways):
    protos = torch.stack([s[y == c][0] for c in range(ways)])
    return (torch.nn.functional.normalize(q, dim=1) @ protos.T).argmax(1)


PROTO_MISTAKES = {
    "zeros": lambda s, y, q, ways: torch.zeros(len(q), dtype=torch.long),
    "Euclidean distance": _euclidean,
    "one shot instead of the mean": _first_shot,
    "farthest prototype": lambda s, y, q, ways: (
        -ex.reference_prototype_labels(s, y, q, ways) + ways - 1
    ),
}


@pytest.mark.parametrize("mistake", sorted(CKA_MISTAKES))
def test_cka_checker_rejects_the_usual_mistakes(mistake: str, capsys) -> None:
    assert ex.check_linear_cka(CKA_MISTAKES[mistake]) is False
    assert capsys.readouterr().out.startswith("wrong:")


@pytest.mark.parametrize("mistake", sorted(PROTO_MISTAKES))
def test_prototype_checker_rejects_the_usual_mistakes(mistake: str, capsys) -> None:
    assert ex.check_prototype_labels(PROTO_MISTAKES[mistake]) is False
    assert capsys.readouterr().out.startswith("wrong:")


def test_checkers_accept_the_reference_and_say_not_done(capsys) -> None:
    assert CHECKS["linear_cka"] is ex.check_linear_cka
    assert ex.check_linear_cka(fr.linear_cka) is True
    assert ex.check_prototype_labels(ex.reference_prototype_labels) is True
    assert capsys.readouterr().out.count("right:") == 2

    def stub(*args):
        raise NotImplementedError("exercise")

    assert ex.check_linear_cka(stub) is False
    assert capsys.readouterr().out.startswith("not done yet:")


# --- the main widget ------------------------------------------------------------------------


def test_reuse_explorer_moves_with_its_controls(demo) -> None:
    from mamlviz.course.viz.feature_reuse import ReuseExplorer, ReuseMeasurements

    measured = ReuseMeasurements(
        demo, fr.episodes(demo, 3, seed=8), fr.episodes(demo, 2, seed=9, query_shots=2)
    )
    w = ReuseExplorer(measured)
    before = (w.text.value, list(w.fig.data[3].y))
    w.setting.value = "head only"
    assert w.fig.data[1].name == "head only" and w.text.value != before[0]
    assert min(w.fig.data[3].y[:4]) > 1 - 1e-6  # frozen blocks: unchanged (float32 CKA)
    w.steps.value = 0
    assert list(w.fig.data[4].y) == [0.0] * 5 and w.status.message == ""
    with pytest.raises(ValueError, match="setting must be one of"):
        measured.accuracy("everything")


def test_zero_head_zeroes_the_head_only_and_predicts_uniformly(demo) -> None:
    probe = fr.zero_head(demo)
    for n, w in probe.meta.items():
        assert torch.equal(w, torch.zeros_like(w)) if n.startswith("head.") else w is demo.meta[n]
    x = fr.episodes(demo, 1, seed=2).query.x[0]
    assert float(call(probe.model, probe.meta, x).abs().max()) == 0
    assert demo.meta["head.weight"].abs().max() > 0  # the original is untouched


def test_training_episodes_use_the_training_classes_with_the_chosen_labels(
    demo, synthetic_omniglot
) -> None:
    tasks = synthetic_omniglot(20, train_classes=12, val_classes=2)
    fixed = fr.training_episodes(demo, 6, "fixed", seed=1, tasks=tasks)
    again = fr.training_episodes(demo, 6, "fixed", seed=1, tasks=tasks)
    assert torch.equal(fixed.support.x, again.support.x)  # seeded
    assert fixed.support.x.shape == (6, 5, 1, 28, 28)
    test_images = {bytes(x.numpy()) for x in fr.episodes(demo, 20, seed=0).support.x.flatten(0, 1)}
    train_images = {bytes(x.numpy()) for x in fixed.support.x.flatten(0, 1)}
    assert not (test_images & train_images)  # meta-training characters, never meta-test ones
    with pytest.raises(ValueError, match="labels must be one of"):
        fr.training_episodes(demo, 2, "sorted", tasks=tasks)
