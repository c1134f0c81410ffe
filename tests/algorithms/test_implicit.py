"""iMAML: Hessian-vector products, conjugate gradient, and the implicit meta-gradient against
closed forms and against unrolling the proximal inner loop (float64)."""

from __future__ import annotations

import itertools

import pytest
import torch
from torch import nn
from torch.func import vmap

from mamlviz.algorithms import make_learner
from mamlviz.core.episode import Episode, Examples
from mamlviz.core.functional import flatten, unflatten
from mamlviz.core.implicit import (
    conjugate_gradient,
    conjugate_gradient_checked,
    dense_solve,
    dense_solve_checked,
    hvp,
    implicit,
    implicit_matvec,
)
from mamlviz.core.learner import Learner
from mamlviz.core.metagrad import unrolled
from mamlviz.core.outer import meta_gradient
from mamlviz.core.rules import SGD
from mamlviz.errors import IndefiniteError
from mamlviz.models import MLP
from mamlviz.tasks.sinusoid import SinusoidTasks

pytestmark = pytest.mark.usefixtures("float64")


def spd(n: int, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    m = torch.randn(n, n, generator=g)
    return m @ m.T / n + 0.5 * torch.eye(n)


def quadratic(params: dict, examples: Examples) -> torch.Tensor:
    """L(phi) = 1/2 (phi - c)^T A (phi - c), with A = examples.x and c = examples.y."""
    d = params["theta"] - examples.y
    return 0.5 * d @ examples.x @ d


def test_hvp_equals_hessian_times_v(tiny_sinusoid) -> None:
    model, episode = tiny_sinusoid(hidden=(6, 6), tasks=3)
    learner = make_learner("maml", model, "mse", inner_lr=0.1, inner_steps=1)
    params, support = learner.init_meta(), episode.task(0).support
    v = {n: torch.randn_like(w) for n, w in params.items()}
    h = torch.func.hessian(lambda x: learner.loss(unflatten(x, params), support))(flatten(params))
    torch.testing.assert_close(flatten(hvp(learner.loss, params, support, v)), h @ flatten(v))


def test_conjugate_gradient_solves_spd_systems_and_is_vmap_safe() -> None:
    n = 6
    a = torch.stack([spd(n, s) for s in range(3)])
    b = torch.randn(3, n, generator=torch.Generator().manual_seed(9))

    def solve(a: torch.Tensor, b: torch.Tensor, steps: int) -> torch.Tensor:
        return conjugate_gradient(lambda v: {"x": a @ v["x"]}, {"x": b}, steps)["x"]

    exact = torch.linalg.solve(a, b)
    # n steps are exact in exact arithmetic; more steps hit a zero residual and must stay finite.
    for steps in (n, 3 * n):
        batched = vmap(lambda a, b, s=steps: solve(a, b, s))(a, b)
        torch.testing.assert_close(batched, exact, rtol=1e-8, atol=1e-10)
        looped = torch.stack([solve(a[i], b[i], steps) for i in range(3)])
        torch.testing.assert_close(batched, looped, rtol=1e-10, atol=1e-12)
    # CG minimises the A-norm of the error over growing Krylov spaces: it never increases.
    errors = []
    for steps in range(1, n + 1):
        e = solve(a[0], b[0], steps) - exact[0]
        errors.append(float(e @ a[0] @ e))
    assert all(later <= earlier + 1e-12 for earlier, later in itertools.pairwise(errors))
    assert torch.equal(solve(a[0], torch.zeros(n), 4), torch.zeros(n))


@pytest.mark.parametrize("solver", ["cg", "dense"])
def test_quadratic_support_loss_gives_the_analytic_implicit_gradient(solver: str) -> None:
    """phi* = (A + lam I)^-1 (A c + lam theta); g = (I + A/lam)^-1 B (phi* - d)."""
    n, lam = 5, 2.0
    a, b = spd(n, 1), spd(n, 2)
    gen = torch.Generator().manual_seed(3)
    c, d, theta = (torch.randn(n, generator=gen) for _ in range(3))
    learner = Learner(
        model=nn.Identity(),
        loss=quadratic,
        rule=SGD(0.1),
        strategy=implicit,
        inner_steps=300,
        options={"lam": lam, "cg_steps": n, "solver": solver},
    )
    g, loss, info = implicit(learner, {"theta": theta}, Episode(Examples(a, c), Examples(b, d)))
    eye = torch.eye(n)
    # SPD system: the curvature seen is a Rayleigh quotient of I + A/lam, above its smallest
    # eigenvalue (equal to it for the dense solve)
    smallest = float(torch.linalg.eigvalsh(eye + a / lam).min())
    assert float(info["curvature"]) >= smallest - 1e-9 and smallest > 0
    phi = torch.linalg.solve(a + lam * eye, a @ c + lam * theta)
    expected = torch.linalg.solve(eye + a / lam, b @ (phi - d))
    torch.testing.assert_close(g["theta"], expected, rtol=1e-9, atol=1e-11)
    torch.testing.assert_close(loss, 0.5 * (phi - d) @ b @ (phi - d))
    # And it is the true derivative of L_query(phi*(theta)) in theta.
    true = torch.func.grad(
        lambda t: (
            0.5
            * (torch.linalg.solve(a + lam * eye, a @ c + lam * t) - d)
            @ b
            @ (torch.linalg.solve(a + lam * eye, a @ c + lam * t) - d)
        )
    )(theta)
    torch.testing.assert_close(g["theta"], true, rtol=1e-9, atol=1e-11)


def test_implicit_gradient_equals_unrolling_the_converged_proximal_loop(tiny_sinusoid) -> None:
    """Dense implicit gradient == backprop through 400 proximal SGD steps, on a smooth net.

    A tanh net, because ReLU kinks keep plain SGD from converging to a stationary point; lam is
    larger than the most negative Hessian eigenvalue, so the proximal problem is strongly convex
    and the inner loop contracts.
    """
    _, episode = tiny_sinusoid(hidden=(6, 6), tasks=3)
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(1, 8), nn.Tanh(), nn.Linear(8, 1))
    task, lam = episode.task(0), 5.0
    learner = make_learner(
        "imaml", model, "mse", inner_lr=0.05, inner_steps=400, lam=lam, solver="dense", damping=0.0
    )
    meta = learner.init_meta()
    g, *_ = implicit(learner, meta, task)

    def proximal_unrolled(theta: dict) -> torch.Tensor:
        def prox(phi: dict, ex: Examples) -> torch.Tensor:
            dist = sum(torch.sum((phi[n] - theta[n]) ** 2) for n in phi)
            return learner.loss(phi, ex) + 0.5 * lam * dist

        phi = dict(theta)
        for _ in range(learner.inner_steps):
            grads = torch.func.grad(prox)(phi, task.support)
            phi = {n: phi[n] - 0.05 * grads[n] for n in phi}
        return learner.loss(phi, task.query)

    reference = torch.func.grad(proximal_unrolled)(meta)
    torch.testing.assert_close(flatten(g), flatten(reference), rtol=1e-6, atol=1e-8)
    cg = make_learner(
        "imaml", model, "mse", inner_lr=0.05, inner_steps=400, lam=lam, cg_steps=40, damping=0.0
    )
    torch.testing.assert_close(
        flatten(implicit(cg, meta, task)[0]), flatten(g), rtol=1e-6, atol=1e-8
    )


@pytest.mark.parametrize("solver", ["cg", "dense"])
def test_vmap_path_equals_per_task_loop(tiny_sinusoid, solver: str) -> None:
    model, episode = tiny_sinusoid(hidden=(6, 6), seed=2, tasks=4)
    learner = make_learner(
        "imaml", model, "mse", inner_lr=0.05, inner_steps=10, solver=solver, damping=1.0
    )
    meta = learner.init_meta()
    gb, lb = meta_gradient(learner, meta, episode, batched=True)
    gl, ll = meta_gradient(learner, meta, episode, batched=False)
    torch.testing.assert_close(lb, ll, rtol=1e-12, atol=1e-12)
    for name in meta:
        torch.testing.assert_close(gb[name], gl[name], rtol=1e-10, atol=1e-12)


def test_large_lam_approaches_first_order_maml(tiny_sinusoid) -> None:
    """lam -> inf: phi -> theta and g -> grad L_query(theta), FOMAML with zero inner steps."""
    model, episode = tiny_sinusoid(hidden=(6, 6), tasks=3)
    task = episode.task(1)
    learner = make_learner(
        "imaml", model, "mse", inner_lr=1e-7, inner_steps=3, lam=1e7, damping=0.0
    )
    meta = learner.init_meta()
    g, *_ = implicit(learner, meta, task)
    zero_steps = make_learner("maml", model, "mse", inner_lr=0.0, inner_steps=0)
    torch.testing.assert_close(
        flatten(g), flatten(unrolled(zero_steps, meta, task)[0]), rtol=1e-5, atol=1e-7
    )


def test_dense_solve_matches_linalg_solve() -> None:
    n, lam = 4, 0.5
    a = spd(n, 5)
    b = {"theta": torch.randn(n, generator=torch.Generator().manual_seed(1))}
    params = {"theta": torch.zeros(n)}
    x = dense_solve(quadratic, params, Examples(a, torch.zeros(n)), b, lam)
    torch.testing.assert_close(x["theta"], torch.linalg.solve(torch.eye(n) + a / lam, b["theta"]))


def test_damping_solves_the_damped_system_with_cg_and_dense() -> None:
    """((1 + d) I + H / lam) g = b, with an INDEFINITE H that damping makes positive definite."""
    n, lam, damping = 4, 2.0, 1.5
    a = spd(n, 5) - 3.0 * torch.eye(n)  # eigenvalues below -lam: I + H/lam is indefinite
    assert torch.linalg.eigvalsh(torch.eye(n) + a / lam).min() < 0
    want_matrix = (1 + damping) * torch.eye(n) + a / lam
    assert torch.linalg.eigvalsh(want_matrix).min() > 0
    b = {"theta": torch.randn(n, generator=torch.Generator().manual_seed(1))}
    params, ex = {"theta": torch.zeros(n)}, Examples(a, torch.zeros(n))
    want = torch.linalg.solve(want_matrix, b["theta"])
    dense = dense_solve(quadratic, params, ex, b, lam, damping)
    torch.testing.assert_close(dense["theta"], want)
    matvec = implicit_matvec(quadratic, params, ex, lam, damping)
    torch.testing.assert_close(conjugate_gradient(matvec, b, n)["theta"], want)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"lam": 0.0}, r"lam must be in \(0, inf\)"),
        ({"lam": -1.0}, r"lam must be in \(0, inf\)"),
        ({"cg_steps": 0}, r"cg_steps must be in \[1, inf\)"),
        ({"cg_steps": 2.5}, "cg_steps must be an integer"),
        ({"solver": "lu"}, "solver must be one of"),
        ({"damping": -0.1}, r"damping must be in \[0, inf\)"),
    ],
)
def test_bad_options_name_the_argument(tiny_sinusoid, options: dict, message: str) -> None:
    model, _ = tiny_sinusoid(hidden=(6, 6), tasks=3)
    with pytest.raises(ValueError, match=message):
        make_learner("imaml", model, "mse", inner_lr=0.1, inner_steps=1, **options)
    with pytest.raises(ValueError, match="cg_steps"):
        conjugate_gradient(lambda v: v, {"x": torch.ones(2)}, 0)


def test_imaml_adapts_on_the_proximal_objective_at_test_time_too(tiny_sinusoid) -> None:
    """``inner_objective`` (what ``evaluate`` adapts on) is L_s + lam/2 ||phi - theta||^2 for
    iMAML and the plain support loss for MAML."""
    model, ep = tiny_sinusoid(hidden=(6, 6), tasks=3)
    task = ep.task(0)
    imaml = make_learner("imaml", model, "mse", inner_lr=0.02, inner_steps=3, lam=4.0)
    maml = make_learner("maml", model, "mse", inner_lr=0.02, inner_steps=3)
    assert imaml.proximal == 4.0 and maml.proximal is None
    theta = imaml.init_meta()
    phi = {n: w + 0.1 for n, w in theta.items()}
    support = imaml.loss(phi, task.support)
    distance = sum(float(((phi[n] - theta[n]) ** 2).sum()) for n in phi)
    got = imaml.inner_objective({}, theta)(phi, task.support)
    torch.testing.assert_close(got, support + 0.5 * 4.0 * distance)
    torch.testing.assert_close(maml.inner_objective({}, theta)(phi, task.support), support)


def indefinite_quadratic(n: int = 4, shift: float = 3.0) -> torch.Tensor:
    """A support Hessian with eigenvalues below -lam for lam = 2: I + H/lam is indefinite."""
    return spd(n, 5) - shift * torch.eye(n)


def test_cg_reports_negative_curvature_on_an_indefinite_system() -> None:
    n, lam = 4, 2.0
    a = indefinite_quadratic(n)
    system = torch.eye(n) + a / lam
    assert torch.linalg.eigvalsh(system).min() < 0
    b = {"theta": torch.linalg.eigh(system).eigenvectors[:, 0] + 0.1}  # sees the bad direction
    params, ex = {"theta": torch.zeros(n)}, Examples(a, torch.zeros(n))
    x, curvature = conjugate_gradient_checked(implicit_matvec(quadratic, params, ex, lam), b, n)
    assert float(curvature) <= 0
    # ... and never on an SPD one (the damped system), where CG equals the exact solve
    damped = implicit_matvec(quadratic, params, ex, lam, damping=1.5)
    x, curvature = conjugate_gradient_checked(damped, b, n)
    assert float(curvature) > 0
    want = torch.linalg.solve(2.5 * torch.eye(n) + a / lam, b["theta"])
    torch.testing.assert_close(x["theta"], want)
    _, smallest = dense_solve_checked(quadratic, params, ex, b, lam)
    torch.testing.assert_close(smallest, torch.linalg.eigvalsh(system).min())


@pytest.mark.parametrize("solver", ["cg", "dense"])
@pytest.mark.parametrize("batched", [True, False])
def test_meta_gradient_refuses_an_indefinite_implicit_system(solver: str, batched: bool) -> None:
    """Before: CG returned a wrong answer undetected. Now the meta-batch is refused, naming the
    tasks and what to change; with enough damping the same meta-batch goes through."""
    n, lam, tasks = 4, 2.0, 3
    a = indefinite_quadratic(n).expand(tasks, n, n).clone()
    a[1] = spd(n, 6)  # task 1 is fine; tasks 0 and 2 are indefinite
    gen = torch.Generator().manual_seed(4)
    c, d = torch.randn(tasks, n, generator=gen), torch.randn(tasks, n, generator=gen)
    episode = Episode(Examples(a, c), Examples(spd(n, 2).expand(tasks, n, n), d))

    def learner(damping: float) -> Learner:
        return Learner(
            model=nn.Identity(),
            loss=quadratic,
            rule=SGD(0.01),
            strategy=implicit,
            inner_steps=1,  # a non-stationary phi; the system is indefinite whatever phi is
            options={"lam": lam, "cg_steps": n, "solver": solver, "damping": damping},
        )

    theta = {"theta": torch.zeros(n)}
    with pytest.raises(IndefiniteError, match=r"on 2 of 3 tasks.*damping"):
        meta_gradient(learner(0.0), theta, episode, batched=batched)
    grads, _ = meta_gradient(learner(2.0), theta, episode, batched=batched)
    assert torch.isfinite(grads["theta"]).all()


def test_default_damping_and_the_sinusoid_settings_are_positive_definite_at_init() -> None:
    """The defaults the docstrings justify: the row damps by 1; the sinusoid problem trains
    iMAML with lam 10 and damping 2, where a fresh init's 25-task meta-batch goes through,
    while the paper's lam 2 undamped is refused there."""
    from mamlviz.training.config import TrainConfig, build

    model = MLP(1, (4,), 1)
    assert make_learner("imaml", model, "mse", inner_lr=0.1, inner_steps=1).options["damping"] == 1
    config = TrainConfig.for_problem("sinusoid", "imaml", dtype="float64")
    assert config.options == {"lam": 10.0, "damping": 2.0}
    learner, meta = build(config)
    episode = SinusoidTasks().sample(torch.Generator().manual_seed(0), 10, 10, 25, torch.float64)
    grads, _ = meta_gradient(learner, meta, episode)
    assert all(torch.isfinite(g).all() for g in grads.values())
    undamped = make_learner(
        "imaml", learner.model, "mse", inner_lr=0.01, inner_steps=1, lam=2.0, damping=0.0
    )
    with pytest.raises(IndefiniteError, match="damping"):
        meta_gradient(undamped, meta, episode)
