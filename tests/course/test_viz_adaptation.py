"""Chapter 02's additions, in float64: the power-iteration curvature against the explicit
Hessian, the words placing inner_lr against 1/lambda_max and 2/lambda_max, the static twins
of the widget and the animation (every panel, every line in a legend), and the per-step
query losses."""

from __future__ import annotations

import pytest
import torch

from mamlviz.core.episode import Examples
from mamlviz.core.functional import make_loss, params_of
from mamlviz.course.derivation import top_hessian_eigenpair, top_hessian_eigenvalue
from mamlviz.course.viz.adaptation import AdaptationExplorer, curvature_note, plane_panel
from mamlviz.models import MLP, sinusoid_mlp


def _flat_hessian(loss_fn, params, examples) -> torch.Tensor:
    names = list(params)
    shapes = [params[n].shape for n in names]
    flat = torch.cat([params[n].reshape(-1) for n in names])

    def f(v: torch.Tensor) -> torch.Tensor:
        out, i = {}, 0
        for n, s in zip(names, shapes, strict=True):
            out[n] = v[i : i + s.numel()].reshape(s)
            i += s.numel()
        return loss_fn(out, examples)

    return torch.autograd.functional.hessian(f, flat)


def test_power_iteration_finds_the_top_eigenvalue_of_a_quadratic() -> None:
    a = torch.diag(torch.tensor([1.0, 3.0, -2.0, 7.5], dtype=torch.float64))
    q = torch.linalg.qr(torch.randn(4, 4, generator=torch.Generator().manual_seed(0),
                                    dtype=torch.float64))[0]  # fmt: skip
    h = q @ a @ q.T

    def loss(params, examples):  # 0.5 w^T H w: Hessian H everywhere
        return 0.5 * params["w"] @ h @ params["w"]

    w = {"w": torch.ones(4, dtype=torch.float64)}
    assert top_hessian_eigenvalue(loss, w, None, iters=200) == pytest.approx(7.5, rel=1e-10)


def test_power_iteration_matches_the_explicit_hessian_of_an_mlp() -> None:
    torch.manual_seed(0)
    model = MLP(1, (6, 6), 1).double()
    loss_fn, params = make_loss(model, "mse"), params_of(model)
    x = torch.linspace(-4, 4, 5, dtype=torch.float64).unsqueeze(-1)
    examples = Examples(x, 2 * torch.sin(x - 0.5))
    eig = torch.linalg.eigvalsh(_flat_hessian(loss_fn, params, examples))
    dominant = float(eig[eig.abs().argmax()])
    assert top_hessian_eigenvalue(loss_fn, params, examples, iters=400) == pytest.approx(
        dominant, rel=1e-6
    )


def test_curvature_note_says_which_side() -> None:
    assert "below 1/lambda_max" in curvature_note(100.0, 0.005)
    assert "between 1/ and 2/lambda_max" in curvature_note(100.0, 0.015)
    assert "above 2/lambda_max" in curvature_note(100.0, 0.025)
    assert "1/lambda_max = 0.01," in curvature_note(100.0, 0.005)


@pytest.fixture(scope="module")
def explorer() -> AdaptationExplorer:
    torch.set_num_threads(1)
    model = sinusoid_mlp(0)
    inits = {"MAML": params_of(model), "pretrained": params_of(sinusoid_mlp(1))}
    return AdaptationExplorer(model, inits, inner_lr=0.01, inner_steps=3, shots=5)


def test_widget_prints_the_curvature_of_the_first_init(explorer) -> None:
    init = explorer.inits["MAML"]
    lam = top_hessian_eigenvalue(explorer.loss_fn, init, explorer.episode().support, iters=500)
    assert explorer.lambda_max() == pytest.approx(lam, rel=5e-3)  # stopped at 1e-3 change
    assert explorer.curvature.value == curvature_note(explorer.lambda_max(), 0.01)


def test_query_losses_are_the_losses_along_the_trajectory(explorer) -> None:
    out = explorer.outcomes["MAML"]
    query = explorer.episode().query
    expect = [float(explorer.loss_fn(p, query)) for p in out.trajectory.fast]
    assert explorer.query_losses("MAML") == pytest.approx(expect)
    assert explorer.query_losses("MAML")[-1] == pytest.approx(out.query_mse)


def _legend_labels(ax) -> list[str]:
    legend = ax.get_legend()
    return [t.get_text() for t in legend.get_texts()] if legend else []


def test_static_twins_draw_every_panel_and_every_line_is_in_a_legend(explorer) -> None:
    fig = explorer.static_figure()
    panels = [ax for ax in fig.axes if ax.get_legend() is not None]
    assert len(panels) == 2  # fits, support loss per inner step: the widget's two panels
    for ax in panels:
        labels = _legend_labels(ax)
        assert all(line.get_label() in labels for line in ax.lines)
    loss_ax = panels[1]
    drawn = list(loss_ax.lines[0].get_ydata())
    assert drawn == pytest.approx(explorer.outcomes["MAML"].trajectory.losses)

    fig = explorer.static_adaptation([0, 1, 3])
    # one function-space panel per init, the parameter-space panel, its colour bar
    assert len(fig.axes) == len(explorer.inits) + 2
    for ax in fig.axes[: len(explorer.inits) + 1]:
        labels = _legend_labels(ax)
        assert labels and all(line.get_label() in labels for line in ax.lines)
    _, _, _, _, coords = plane_panel(explorer)
    path_line = fig.axes[len(explorer.inits)].lines[0]
    assert list(path_line.get_xdata()) == pytest.approx(coords[:, 0].tolist())


def test_live_widget_puts_every_trace_in_the_legend(explorer) -> None:
    assert all(trace.showlegend is not False for trace in explorer.figure.data)


def test_a_warm_started_power_iteration_agrees_in_fewer_products() -> None:
    """The widget starts from the previous task's eigenvector and stops at 1e-3: it must land on
    the same eigenvalue as a cold start run to convergence."""
    torch.manual_seed(0)
    model = MLP(1, (8, 8), 1).double()
    loss_fn, params = make_loss(model, "mse"), params_of(model)
    g = torch.Generator().manual_seed(0)
    x = torch.rand(10, 1, generator=g, dtype=torch.float64) * 10 - 5
    near = [Examples(x, torch.sin(x - p)) for p in (0.5, 0.55)]
    cold = top_hessian_eigenvalue(loss_fn, params, near[1], iters=500)
    _, v = top_hessian_eigenpair(loss_fn, params, near[0], iters=500)
    warm, _ = top_hessian_eigenpair(loss_fn, params, near[1], iters=30, start=v, tol=1e-3)
    assert warm == pytest.approx(cold, rel=5e-3)
