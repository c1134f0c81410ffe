"""The 2-D toy's closed forms against the package's own learners, in float64.

Every algorithm's meta-gradient is linear in theta here, so outer SGD is a linear iteration
e <- (I - beta J) e with J the (symmetric) Jacobian of the meta-gradient: the step
beta = 2 / (lambda_min + lambda_max) contracts the error by (kappa - 1) / (kappa + 1) per step,
which sets the iterations each convergence test needs.
"""

from __future__ import annotations

import math

import pytest
import torch
from torch.func import grad, jacrev

from mamlviz.core.outer import meta_gradient
from mamlviz.course import toy2d

ALGORITHMS = ("pretrained", "maml", "fomaml", "reptile", "imaml")


def random_theta(seed: int) -> torch.Tensor:
    return torch.randn(2, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


@pytest.mark.parametrize("algorithm", ALGORITHMS)
@pytest.mark.parametrize("inner_steps", [1, 3])
def test_the_package_meta_gradient_is_the_closed_form(algorithm: str, inner_steps: int) -> None:
    theta = random_theta(inner_steps)
    learner = toy2d.learner(algorithm, 0.15, inner_steps, lam=1.0)
    for batched in (True, False):
        got, losses = meta_gradient(
            learner, {"weight": theta.view(1, 2)}, toy2d.tasks(), batched=batched
        )
        want = toy2d.meta_gradient(algorithm, theta, 0.15, inner_steps, lam=1.0)
        # iMAML's phi comes from 60 proximal SGD steps, which leave 0.61^60 ~ 1e-13 of the
        # error (toy2d.learner); its 2-step CG is exact on a 2 x 2 system. The others are
        # exact up to rounding.
        rtol = 1e-9 if algorithm == "imaml" else 1e-10
        torch.testing.assert_close(got["weight"].view(2), want, rtol=rtol, atol=1e-13)
    if algorithm == "maml":  # and the reported query losses are L_t(phi_k) = c_t^{2k} r_t^2
        r = toy2d.X.double() @ theta - toy2d.Y.double()
        ck = (1 - 0.15 * toy2d.curvatures()) ** inner_steps
        torch.testing.assert_close(losses, (ck * r) ** 2, rtol=1e-10, atol=1e-14)


def test_mamls_closed_form_gradient_is_the_gradient_of_its_objective() -> None:
    theta = random_theta(7)
    auto = grad(lambda th: toy2d.post_adaptation_loss(th, 0.2, 2))(theta)
    torch.testing.assert_close(auto, toy2d.meta_gradient("maml", theta, 0.2, 2), rtol=1e-12, atol=0)


def outer_schedule(algorithm: str, inner_lr: float, k: int, lam: float) -> tuple[float, int]:
    """Step 2 / (lambda_min + lambda_max) and the iterations that shrink |theta_0 - theta*|
    below 1e-10 of itself, from the Jacobian of the closed-form meta-gradient."""
    jac = jacrev(lambda th: toy2d.meta_gradient(algorithm, th, inner_lr, k, lam))(
        torch.zeros(2, dtype=torch.float64)
    )
    low, high = torch.linalg.eigvalsh((jac + jac.T) / 2).tolist()
    rate = (high - low) / (high + low)
    return 2 / (low + high), math.ceil(math.log(1e-10) / math.log(rate)) + 3


@pytest.mark.parametrize(
    ("algorithm", "inner_steps"),
    [("maml", 1), ("maml", 3), ("reptile", 3), ("imaml", 1), ("pretrained", 1)],
)
def test_meta_training_converges_to_the_closed_form_optimum(
    algorithm: str, inner_steps: int
) -> None:
    lr, iterations = outer_schedule(algorithm, 0.1, inner_steps, 1.0)
    theta = toy2d.meta_train(algorithm, 0.1, inner_steps, 1.0, outer_lr=lr, iterations=iterations)
    want = toy2d.optimum(algorithm, 0.1, inner_steps, 1.0)
    assert float((theta - want).abs().max()) < 1e-8
    # and the optimum is where the algorithm differs: not the pretrained point (but Reptile
    # with k > 1 differs from it only slightly)
    if algorithm != "pretrained":
        assert float((want - toy2d.optimum("pretrained", 0.1, 1)).norm()) > 1e-2


@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_the_batched_and_the_per_task_paths_train_alike(algorithm: str) -> None:
    start = random_theta(3)
    runs = [toy2d.meta_train(algorithm, 0.1, 2, 1.0, outer_lr=0.3, iterations=4, start=start,
                             batched=b) for b in (True, False)]  # fmt: skip
    assert float((runs[0] - start).norm()) > 1e-3  # it moved
    torch.testing.assert_close(runs[0], runs[1], rtol=1e-12, atol=1e-14)


def closest_by_least_squares() -> torch.Tensor:
    """Independent of toy2d's weights: the distance to line t is (x_t . theta - y_t) / |x_t|, so
    the summed squared distance is an ordinary least-squares problem in normalised rows."""
    x, y = toy2d.X.double(), toy2d.Y.double()
    norms = x.norm(dim=-1, keepdim=True)
    return torch.linalg.lstsq(x / norms, (y / norms.squeeze(-1)).unsqueeze(-1)).solution.view(2)


def test_reptile_moves_from_the_pretrained_point_to_the_closest_point() -> None:
    pretrained = toy2d.optimum("pretrained", 0.1, 1)
    # inner_lr -> 0: weights 2 k alpha, equal across tasks, so the gap shrinks like alpha
    gaps = [float((toy2d.optimum("reptile", a, 5) - pretrained).norm()) for a in (1e-2, 1e-3, 1e-4)]
    assert gaps[0] > 1e-3 and all(8 < gaps[i] / gaps[i + 1] < 12 for i in range(2)), gaps
    # k -> infinity: the Euclidean-closest point, approached monotonically
    closest = closest_by_least_squares()
    torch.testing.assert_close(toy2d.closest_point(), closest, rtol=1e-12, atol=1e-14)
    gaps = [float((toy2d.optimum("reptile", 0.1, k) - closest).norm()) for k in (1, 10, 100, 1000)]
    assert all(gaps[i] > gaps[i + 1] for i in range(len(gaps) - 1)), gaps
    assert gaps[0] > 0.1 and gaps[-1] < 1e-12
    # at k = 1 Reptile is joint training exactly
    torch.testing.assert_close(toy2d.optimum("reptile", 0.1, 1), pretrained, rtol=1e-12, atol=0)


def test_distances_are_euclidean() -> None:
    theta = random_theta(5)
    x, y = toy2d.X.double(), toy2d.Y.double()
    for t in range(3):
        # the foot of the perpendicular from theta onto line t, and its distance
        foot = theta - (x[t] @ theta - y[t]) * x[t] / x[t].dot(x[t])
        assert abs(float(x[t] @ foot - y[t])) < 1e-12
        assert abs(float((theta - foot).norm() - toy2d.distances(theta)[t])) < 1e-12


def test_maml_moves_towards_the_flattest_tasks_line() -> None:
    flat = int(toy2d.curvatures().argmin())
    pre = float(toy2d.distances(toy2d.optimum("pretrained", 0.1, 1))[flat])
    near = [float(toy2d.distances(toy2d.optimum("maml", 0.1, k))[flat]) for k in (1, 2, 3)]
    assert pre > near[0] > near[1] > near[2]
    # where one step solves the sharpest task exactly (c = 0), MAML ignores it: theta sits on
    # the intersection of the other two lines
    sharp = int(toy2d.curvatures().argmax())
    at = 1 / float(toy2d.curvatures()[sharp])
    d = toy2d.distances(toy2d.optimum("maml", at, 1))
    assert float(d[sharp]) > 0.1 and float(d.sum() - d[sharp]) < 1e-12


@pytest.mark.parametrize("algorithm", ["maml", "fomaml", "reptile"])
def test_inner_lr_at_the_stability_bound_is_refused(algorithm: str) -> None:
    bound = toy2d.max_inner_lr()
    assert bound == pytest.approx(2 / 5.12, rel=1e-6)
    for lr in (bound, 1.01 * bound):
        with pytest.raises(ValueError, match="inner_lr"):
            toy2d.weights(algorithm, lr, 2)
    assert torch.isfinite(toy2d.weights(algorithm, 0.999 * bound, 2)).all()
    # iMAML's and pretrained's weights do not depend on inner_lr
    torch.testing.assert_close(
        toy2d.weights("imaml", bound, 2, lam=2.0), toy2d.weights("imaml", 0.1, 2, lam=2.0)
    )


def test_settings_without_an_optimum_are_refused() -> None:
    with pytest.raises(ValueError, match="lam"):
        toy2d.weights("imaml", 0.1, 1, lam=0.0)
    with pytest.raises(ValueError, match="Reptile"):
        toy2d.optimum("reptile", 0.1, 0)
    with pytest.raises(ValueError, match="singular"):
        toy2d.weighted_point(torch.tensor([1.0, 0.0, 0.0], dtype=torch.float64))
    with pytest.raises(ValueError, match="algorithm"):
        toy2d.weights("protonet", 0.1, 1)


@pytest.mark.parametrize("inner_steps", [1, 4])
def test_adapted_is_k_explicit_sgd_steps(inner_steps: int) -> None:
    theta, lr = random_theta(11), 0.3
    x, y = toy2d.X.double(), toy2d.Y.double()
    phis, losses = [], []
    for t in range(3):
        phi = theta.clone().requires_grad_(True)
        for _ in range(inner_steps):
            (g,) = torch.autograd.grad((x[t] @ phi - y[t]) ** 2, phi)
            phi = (phi - lr * g).detach().requires_grad_(True)
        phis.append(phi.detach())
        losses.append(float((x[t] @ phi.detach() - y[t]) ** 2))
    torch.testing.assert_close(toy2d.adapted(theta, lr, inner_steps), torch.stack(phis),
                               rtol=1e-12, atol=1e-14)  # fmt: skip
    loss = toy2d.post_adaptation_loss(theta, lr, inner_steps)
    assert abs(float(loss) - sum(losses) / 3) < 1e-12
    # a batch of thetas gives a batch of results (the widget's contour grid)
    batch = torch.stack([theta, 2 * theta])
    torch.testing.assert_close(toy2d.adapted(batch, lr, inner_steps)[0], torch.stack(phis))
    assert toy2d.post_adaptation_loss(batch, lr, inner_steps).shape == (2,)
