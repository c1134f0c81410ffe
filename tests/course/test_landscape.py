"""Mathematics of the loss-landscape slices (float64)."""

from __future__ import annotations

import pytest
import torch

from mamlviz.core.episode import Examples
from mamlviz.core.functional import make_loss, params_of, tree_dot, tree_norm
from mamlviz.core.inner import Trajectory, adapt
from mamlviz.core.rules import SGD
from mamlviz.course.landscape import (
    curvature_along,
    filter_normalized,
    grid_around,
    losses_per_step,
    plane_through,
    random_plane,
    surface,
    window_around,
)
from mamlviz.models import MLP


def _params(seed: int) -> dict[str, torch.Tensor]:
    torch.manual_seed(seed)
    return params_of(MLP(hidden=(8, 8)).double())


@pytest.fixture
def three() -> tuple[dict, dict, dict]:
    return _params(0), _params(1), _params(2)


def _close(a: dict, b: dict, atol: float = 1e-10) -> bool:
    return all(torch.allclose(a[n], b[n], atol=atol, rtol=0) for n in a)


def test_plane_passes_through_the_three_points(three) -> None:
    origin, first, second = three
    plane = plane_through(origin, first, second)
    for p in (origin, first, second):
        a, b = plane.project(p)
        assert _close(plane.point(a, b), p)
    assert plane.project(origin) == pytest.approx((0.0, 0.0), abs=1e-12)
    a1, b1 = plane.project(first)
    assert a1 == pytest.approx(float(tree_norm({n: first[n] - origin[n] for n in first})))
    assert b1 == pytest.approx(0.0, abs=1e-10)


def test_plane_directions_are_orthonormal(three) -> None:
    plane = plane_through(*three)
    assert float(tree_dot(plane.d1, plane.d1)) == pytest.approx(1.0)
    assert float(tree_dot(plane.d2, plane.d2)) == pytest.approx(1.0)
    assert float(tree_dot(plane.d1, plane.d2)) == pytest.approx(0.0, abs=1e-12)


def test_projection_of_a_point_in_the_plane_is_exact(three) -> None:
    plane = plane_through(*three)
    assert plane.project(plane.point(0.3, -1.7)) == pytest.approx((0.3, -1.7), abs=1e-10)
    # also for non-orthogonal (random) directions
    rplane = random_plane(three[0], torch.Generator().manual_seed(0))
    assert rplane.project(rplane.point(-0.4, 0.9)) == pytest.approx((-0.4, 0.9), abs=1e-10)


def test_collinear_points_are_refused(three) -> None:
    origin, first, _ = three
    middle = {n: 0.5 * (origin[n] + first[n]) for n in origin}
    with pytest.raises(ValueError, match="one line"):
        plane_through(origin, first, middle)


def test_grid_loss_at_origin_equals_loss_at_centre(three) -> None:
    torch.manual_seed(3)
    model = MLP(hidden=(8, 8)).double()
    loss_fn = make_loss(model, "mse")
    x = torch.linspace(-5, 5, 7, dtype=torch.float64).unsqueeze(-1)
    examples = Examples(x, torch.sin(x))
    plane = plane_through(*three)
    a = torch.linspace(-1.0, 1.0, 5, dtype=torch.float64)  # contains 0 at index 2
    b = torch.linspace(-2.0, 2.0, 9, dtype=torch.float64)  # contains 0 at index 4
    grid = surface(loss_fn, plane, examples, a, b, chunk=7)
    assert grid.shape == (9, 5)
    assert float(grid[4, 2]) == pytest.approx(float(loss_fn(three[0], examples)), rel=1e-12)
    # every grid value equals the loss at that point (batched == one by one)
    assert float(grid[1, 3]) == pytest.approx(
        float(loss_fn(plane.point(float(a[3]), float(b[1])), examples)), rel=1e-12
    )


def test_filter_normalisation_matches_weight_filter_norms(three) -> None:
    weights = three[0]
    g = torch.Generator().manual_seed(1)
    direction = {n: torch.randn(w.shape, generator=g, dtype=w.dtype) for n, w in weights.items()}
    normed = filter_normalized(direction, weights)
    for n, w in weights.items():
        if w.dim() == 2:
            assert torch.allclose(normed[n].norm(dim=1), w.norm(dim=1))
            # direction within each filter is kept
            cos = torch.nn.functional.cosine_similarity(normed[n], direction[n], dim=1)
            assert torch.allclose(cos, torch.ones_like(cos))
        else:
            assert torch.count_nonzero(normed[n]) == 0
    as_filter = filter_normalized(direction, weights, bias="filter")
    assert float(as_filter["fc1.bias"].norm()) == pytest.approx(float(weights["fc1.bias"].norm()))


def test_trajectory_projection_and_grid_cover(three) -> None:
    torch.manual_seed(4)
    model = MLP(hidden=(8, 8)).double()
    loss_fn = make_loss(model, "mse")
    x = torch.linspace(-5, 5, 5, dtype=torch.float64).unsqueeze(-1)
    support = Examples(x, 2 * torch.sin(x))
    theta = params_of(model)
    traj = Trajectory()
    phi = adapt(loss_fn, theta, support, SGD(0.01), 4, record=traj.record)
    plane = plane_through(theta, phi, three[1])
    path = plane.project_path(traj.fast)
    assert path.shape == (5, 2)
    assert path[0].tolist() == pytest.approx([0.0, 0.0], abs=1e-10)
    assert path[-1, 1].item() == pytest.approx(0.0, abs=1e-10)  # phi is on the d1 axis
    a, b = grid_around(path, n=11)
    assert float(a.min()) <= float(path[:, 0].min()) and float(a.max()) >= float(path[:, 0].max())
    assert len(a) == len(b) == 11


def _quadratic(curvatures: torch.Tensor):
    """L(w) = 1/2 sum_i c_i w_i^2 (Examples ignored): Hessian diag(c), closed-form GD."""
    return lambda params, examples: 0.5 * (curvatures * params["w"] ** 2).sum()


_NO_DATA = Examples(torch.zeros(1, 1, dtype=torch.float64), torch.zeros(1, 1, dtype=torch.float64))


def test_curvature_along_is_the_rayleigh_quotient_of_the_hessian() -> None:
    c = torch.tensor([1.0, 4.0, 9.0], dtype=torch.float64)
    loss_fn = _quadratic(c)
    w = {"w": torch.tensor([0.3, -0.2, 0.5], dtype=torch.float64)}
    d = torch.tensor([1.0, 2.0, -1.0], dtype=torch.float64)
    expected = float((d * c * d).sum() / (d * d).sum())  # (1 + 16 + 9) / 6
    assert curvature_along(loss_fn, w, _NO_DATA, {"w": d}) == pytest.approx(expected, rel=1e-12)
    # along an eigenvector it is the eigenvalue, whatever the direction's length
    e3 = {"w": torch.tensor([0.0, 0.0, 7.0], dtype=torch.float64)}
    assert curvature_along(loss_fn, w, _NO_DATA, e3) == pytest.approx(9.0, rel=1e-12)
    # and it matches a central finite difference of the loss along d
    h = 1e-4
    line = lambda t: float(loss_fn({"w": w["w"] + t * d / d.norm()}, _NO_DATA))
    fd = (line(h) - 2 * line(0.0) + line(-h)) / h**2
    assert curvature_along(loss_fn, w, _NO_DATA, {"w": d}) == pytest.approx(fd, rel=1e-6)


def test_losses_per_step_follow_the_closed_form_of_gradient_descent() -> None:
    c = torch.tensor([1.0, 10.0], dtype=torch.float64)
    loss_fn = _quadratic(c)
    w0 = torch.tensor([1.0, 1.0], dtype=torch.float64)
    lr, steps = 0.15, 6  # lr * 10 = 1.5 < 2: stable, the stiff coordinate zigzags
    got = losses_per_step(loss_fn, {"w": w0}, _NO_DATA, lr, steps)
    k = torch.arange(steps + 1, dtype=torch.float64).unsqueeze(1)
    w_k = w0 * (1 - lr * c) ** k  # w_{k+1} = (1 - lr c) w_k
    assert torch.allclose(got, 0.5 * (c * w_k**2).sum(1), rtol=1e-12, atol=0)
    # lr * 10 = 3 > 2: |1 - lr c| = 2 per step, the loss grows 4x per step until it overflows
    blown = losses_per_step(loss_fn, {"w": torch.tensor([0.0, 1e100], dtype=torch.float64)},
                            _NO_DATA, 0.3, 200)  # fmt: skip
    assert torch.isinf(blown[-1]) and bool(torch.isfinite(blown[0]))
    first_inf = int(torch.isinf(blown).nonzero()[0])
    assert torch.isinf(blown[first_inf:]).all()
    assert float(blown[1] / blown[0]) == pytest.approx(4.0, rel=1e-12)


def test_window_holds_base_and_path_and_is_square() -> None:
    path = torch.tensor([[0.0, 0.0], [2.0, 0.5], [3.0, -1.0], [float("nan"), 1e9]])
    base = (-0.5, 1.0, -0.2, 0.2)
    a_lo, a_hi, b_lo, b_hi = window_around(path, base, margin=0.1)
    assert a_hi - a_lo == pytest.approx(b_hi - b_lo)  # same scale on both axes
    assert a_lo <= -0.5 and a_hi >= 3.0 + 0.1 * 3.0  # path plus room (the larger side is 3)
    assert b_lo <= -1.0 and b_hi >= 0.5  # the non-finite row is ignored
    assert b_hi < 1e8
    # a path inside the base window leaves it as it is, squared
    assert window_around(torch.zeros(1, 2), (-1.0, 1.0, -1.0, 1.0)) == (-1.0, 1.0, -1.0, 1.0)


def test_explorer_window_holds_the_path_and_the_static_twin_has_every_panel() -> None:
    import matplotlib

    matplotlib.use("Agg")
    from mamlviz.course.viz.landscape import LandscapeExplorer, visible

    torch.manual_seed(5)
    model = MLP(hidden=(8, 8))
    inits = {"MAML": params_of(model), "pretrained": params_of(MLP(hidden=(8, 8)))}
    land = LandscapeExplorer(model, inits, inner_lr=0.01, inner_steps=5, grid=9)
    for lr in (0.01, 0.05, 0.2):
        land.sliders["inner_lr"].value = lr
        for name in land.names:
            shown = visible(land.paths[name], land.trajectories[name].losses)
            a_lo, a_hi, b_lo, b_hi = land.slices[name].window
            assert a_hi - a_lo == pytest.approx(b_hi - b_lo, rel=1e-5)  # one scale, both axes
            assert bool((shown[:, 0] >= a_lo).all() and (shown[:, 0] <= a_hi).all())
            assert bool((shown[:, 1] >= b_lo).all() and (shown[:, 1] <= b_hi).all())
            # the drawn surface is the loss on the window: its corner is the loss there
            sl = land.slices[name]
            corner = land.loss_fn(sl.plane.point(a_lo, b_lo), land.support)
            assert float(sl.z[0, 0]) == pytest.approx(float(corner), rel=1e-4)
    fig = land.static_figure()
    contour_axes = [ax for ax in fig.axes if ax.get_label() != "<colorbar>"]
    assert len(contour_axes) == 3  # both planes and the loss per step, as in the widget
    assert contour_axes[2].get_yscale() == "log"
    assert all(len(ax.get_legend().get_texts()) >= 2 for ax in contour_axes)
    assert all("d1" in ax.get_xlabel() and "d2" in ax.get_ylabel() for ax in contour_axes[:2])
    lines = [t for t in land.figure.data if t.type == "scatter"]
    assert all(t.showlegend is not False and t.name for t in lines)
    assert all(t.showscale is not False for t in land.figure.data if t.type == "contour")
