"""Chapter 12: the family table is the shipped checkpoints' own numbers (stored evaluations, or
a live evaluation equal to ``evaluate_checkpoint``), the paired interval is the textbook one,
the ranking leaves out what was not measured or diverged, the widget shows the table it holds,
and chapter 12's checkers accept the right answers and reject the usual wrong ones."""

from __future__ import annotations

import math

import pytest
import torch
from matplotlib.figure import Figure

from mamlviz.core.functional import Params
from mamlviz.course import exercises, exercises_summary
from mamlviz.course import summary as sm
from mamlviz.course.exercises import problem
from mamlviz.course.viz.summary import FamilyComparison, plot_comparison, summary_line
from mamlviz.training import hub
from mamlviz.training.evaluate import evaluate_checkpoint


def row(name: str, algorithm: str, mean: list[float], per_task: torch.Tensor | None = None):
    return sm.Row(name, algorithm, mean, [0.01] * len(mean), per_task, 1, 1, 10, 100, None, "test")


def test_paired_difference_is_the_mean_and_interval_of_the_differences() -> None:
    a = torch.tensor([1.0, 2.0, 4.0, 7.0], dtype=torch.float64)
    b = torch.tensor([0.5, 2.5, 3.0, 6.0], dtype=torch.float64)
    d = [0.5, -0.5, 1.0, 1.0]  # by hand: mean 0.5, sample variance 0.5
    mean, half = sm.paired_difference(a, b)
    assert mean == pytest.approx(sum(d) / 4, abs=1e-15)
    assert half == pytest.approx(1.96 * math.sqrt(0.5 / 4), rel=1e-14)
    # shared difficulty cancels: the unpaired interval of these pairs is ~5x wider
    assert sm.unpaired_half_width(a, b) > 4 * half
    with pytest.raises(ValueError, match="paired"):
        sm.paired_difference(a, b[:3])


def test_ranking_orders_by_the_metric_and_leaves_out_unmeasured_and_diverged_rows() -> None:
    table = [
        row("a", "maml", [0.2, 0.9]),
        row("b", "fomaml", [0.2, 0.7]),
        row("c", "metasgd", [0.2, float("nan")]),
        row("d", "pretrained", [0.2]),
    ]
    assert sm.ranking(table, 1, higher_is_better=True) == [("a", 0.9), ("b", 0.7)]
    assert sm.ranking(table, 1, higher_is_better=False) == [("b", 0.7), ("a", 0.9)]
    assert [n for n, _ in sm.ranking(table, 0, True)] == ["a", "b", "c", "d"]


def test_members_are_the_shipped_rows_of_the_benchmark_minus_the_studies() -> None:
    five = sm.members(sm.BENCHMARKS["omniglot-5w1s"])
    assert "omniglot-maml-5w1s" in five and "omniglot-metacurv-5w1s" in five
    assert not set(five) & set(sm.EXCLUDED)
    for name in five:
        checkpoint = hub.load(name)
        assert checkpoint.evaluation.shots == 1
    twenty = sm.members(sm.BENCHMARKS["omniglot-20w1s"])
    assert set(twenty) >= {"omniglot-maml-20w1s", "omniglot-anil-20w1s"}
    assert not set(twenty) & set(five)
    sinusoid = sm.members(sm.BENCHMARKS["sinusoid-10"])
    assert "sinusoid-maml" in sinusoid and "sinusoid-maml-replay" not in sinusoid


def test_a_learner_without_inner_loop_holds_its_one_column_at_every_k() -> None:
    table = {r.name: r for r in sm.rows("omniglot-5w1s")}
    proto = table["omniglot-protonet-5w1s"]
    ev = hub.load("omniglot-protonet-5w1s").evaluation
    assert not proto.inner_loop and proto.steps == 0 and ev.steps == 0
    assert proto.at(0) == proto.at(3) == (ev.mean[0], ev.ci95[0])
    assert torch.equal(proto.per_task_at(3), ev.per_task[:, 0])
    assert table["omniglot-maml-5w1s"].at(4) is None  # an inner loop: its evaluated steps only
    assert "omniglot-protonet-5w1s" in dict(sm.ranking(list(table.values()), 3, True))


def test_omniglot_rows_are_the_stored_evaluations() -> None:
    for r in sm.rows("omniglot-20w1s"):
        ev = hub.load(r.name).evaluation
        assert r.mean == ev.mean and r.ci95 == ev.ci95 and torch.equal(r.per_task, ev.per_task)
        assert r.meta_parameters == sum(t.numel() for t in hub.load(r.name).meta.values())


def test_sinusoid_rows_are_evaluate_checkpoint_at_the_benchmarks_shots() -> None:
    table = {r.name: r for r in sm.rows("sinusoid-5", tasks=20)}
    for name in ("sinusoid-maml", "sinusoid-metasgd-10shot"):
        ev = evaluate_checkpoint(hub.load(name), shots=5, steps=sm.SINUSOID_STEPS, tasks=20)
        got, want = torch.tensor(table[name].mean), torch.tensor(ev.mean)
        torch.testing.assert_close(got, want, rtol=0, atol=0, equal_nan=True)  # NaN: diverged
        assert table[name].steps == 10
    with pytest.raises(ValueError, match="benchmark"):
        sm.rows("sinusoid-7")
    with pytest.raises(ValueError, match="tasks"):
        sm.rows("sinusoid-5", tasks=0)


@pytest.fixture(scope="module")
def tables() -> dict[str, list[sm.Row]]:
    return {key: sm.rows(key) for key in ("omniglot-5w1s", "omniglot-20w1s")}


def test_the_widget_draws_the_ranking_at_k_and_follows_the_benchmark(tables) -> None:
    w = FamilyComparison("omniglot-5w1s", tables=tables, k=1)
    bars = w.fig.data[0]
    want = sm.ranking(tables["omniglot-5w1s"], 1, True)[::-1]
    assert list(bars.y) == [n for n, _ in want]
    assert list(bars.x) == pytest.approx([100 * v for _, v in want])
    w.steps.value = 0
    at0 = sm.ranking(tables["omniglot-5w1s"], 0, True)[::-1]
    assert list(w.fig.data[0].x) == pytest.approx([100 * v for _, v in at0])
    assert w.fig.layout.shapes[0].x0 == 0
    w.choice.value = "omniglot-20w1s"
    names = {r.name for r in tables["omniglot-20w1s"]}
    assert set(w.fig.data[0].y) == names and {t.name for t in w.fig.data[1:]} == names
    assert w.steps.max == min(max(r.steps for r in tables["omniglot-20w1s"]), 10)
    assert "best" in w.text.value and "error" not in w.status.widget.value.lower()


def test_the_summary_line_quotes_the_paired_gap_to_maml() -> None:
    per_a = torch.tensor([[0.2, 0.9], [0.2, 0.8], [0.2, 1.0]], dtype=torch.float64)
    per_m = torch.tensor([[0.2, 0.8], [0.2, 0.8], [0.2, 0.9]], dtype=torch.float64)
    table = [row("x", "metacurv", [0.2, 0.9], per_a), row("m", "maml", [0.2, 0.8333], per_m)]
    mean, half = sm.paired_difference(per_a[:, 1], per_m[:, 1])
    line = summary_line(sm.BENCHMARKS["omniglot-5w1s"], table, 1)
    assert "best <b>x</b>" in line and f"{100 * mean:+.3f} ± {100 * half:.3f} points" in line


def test_the_static_twin_has_a_bar_per_ranked_row_and_a_curve_per_row(tables) -> None:
    table = tables["omniglot-5w1s"]
    fig = plot_comparison("omniglot-5w1s", table, k=1)
    assert isinstance(fig, Figure)
    left, right = fig.axes[:2]
    assert len(left.patches) == len(sm.ranking(table, 1, True))
    assert len(right.get_lines()) == len(table) + 1  # one per row and the k marker


# ---- chapter 12's checkers --------------------------------------------------------------------


def _paired(a: torch.Tensor, b: torch.Tensor) -> tuple[float, float]:
    d = a - b
    return float(d.mean()), 1.96 * float(d.std()) / math.sqrt(len(d))


def _lambda_max(loss_fn, theta: Params, support, iters: int = 200) -> float:
    from mamlviz import hvp

    v = {n: torch.randn(w.shape, generator=torch.Generator().manual_seed(0), dtype=w.dtype)
         for n, w in theta.items()}  # fmt: skip
    lam = 0.0
    for _ in range(iters):
        hv = hvp(loss_fn, theta, support, v)
        norm = math.sqrt(sum(float((t * t).sum()) for t in hv.values()))
        lam = sum(float((v[n] * hv[n]).sum()) for n in v)
        v = {n: t / norm for n, t in hv.items()}
    return lam


def _edge(loss_fn, theta, support) -> float:
    return 2.0 / _lambda_max(loss_fn, theta, support)


WRONG = {
    "paired_difference": {
        "zeros": lambda a, b: (0.0, 0.0),
        "input unchanged": lambda a, b: (float(a.mean()), 1.96 * float(a.std()) / len(a) ** 0.5),
        "sign flipped": lambda a, b: (-_paired(a, b)[0], _paired(a, b)[1]),
        "unpaired interval": lambda a, b: (
            float((a - b).mean()),
            sm.unpaired_half_width(a, b),
        ),
        "population std": lambda a, b: (
            float((a - b).mean()),
            1.96 * float((a - b).std(correction=0)) / len(a) ** 0.5,
        ),
        "no 1.96": lambda a, b: (float((a - b).mean()), float((a - b).std()) / len(a) ** 0.5),
        "std not stderr": lambda a, b: (float((a - b).mean()), 1.96 * float((a - b).std())),
        "a single number": lambda a, b: float((a - b).mean()),
    },
    "stability_edge": {
        "zeros": lambda f, t, s: 0.0,
        "one over lambda": lambda f, t, s: 1.0 / _lambda_max(f, t, s),
        "lambda itself": lambda f, t, s: _lambda_max(f, t, s),
        "sign flipped": lambda f, t, s: -_edge(f, t, s),
        "too few iterations": lambda f, t, s: 2.0 / _lambda_max(f, t, s, iters=2),
    },
}
RIGHT = {"paired_difference": _paired, "stability_edge": _edge}


def test_every_checker_of_the_module_is_covered() -> None:
    ours = {n for n, f in exercises.CHECKS.items() if f.__module__ == exercises_summary.__name__}
    assert ours == set(RIGHT) == set(WRONG)


@pytest.mark.parametrize("name", sorted(RIGHT))
def test_right_answer_accepted(name: str, capsys) -> None:
    assert exercises.CHECKS[name](RIGHT[name]) is True
    assert capsys.readouterr().out.startswith("right:")


@pytest.mark.parametrize(("name", "mistake"), [(n, m) for n in WRONG for m in WRONG[n]])
def test_wrong_answer_rejected(name: str, mistake: str, capsys) -> None:
    assert exercises.CHECKS[name](WRONG[name][mistake]) is False
    assert capsys.readouterr().out.startswith("wrong:")


def test_the_stability_problem_is_the_shared_one_and_its_edge_is_where_descent_turns() -> None:
    """2 / lambda_max is the edge: a quadratic model of the loss along the top eigenvector
    stops shrinking there; checked on the exact Hessian of the checker's own problem."""
    loss_fn, theta, support = exercises_summary.stability_problem()
    assert set(theta) == set(problem(seed=3)[1])
    edge = exercises_summary.reference_stability_edge(loss_fn, theta, support)
    assert edge == pytest.approx(_edge(loss_fn, theta, support), rel=1e-6)
