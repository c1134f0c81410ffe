"""Mathematics of the loss-landscape slices (float64)."""

from __future__ import annotations

import pytest
import torch

from mamlviz.core.episode import Examples
from mamlviz.core.functional import make_loss, params_of, tree_dot, tree_norm
from mamlviz.core.inner import Trajectory, adapt
from mamlviz.core.rules import SGD
from mamlviz.course.landscape import (
    filter_normalized,
    grid_around,
    plane_through,
    random_plane,
    surface,
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
