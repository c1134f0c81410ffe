"""Chapter 00's environment check: does this installation compute what the course says?

Each check returns what it found and, when it fails, what to do. The mathematical check runs
the package's own meta-gradient on a problem whose answer is known in closed form: one-step
MAML on the model y = w x with the mean squared error (Finn et al. 2017, eq. 1),

    L(w) = mean((w x - y)^2),  g(w) = 2 (w Sxx - Sxy),  phi = w - alpha g_support(w),
    dL_query(phi)/dw = (1 - 2 alpha Sxx_support) * 2 (phi Sxx_query - Sxy_query),

with Sxx = mean(x^2), Sxy = mean(x y) over the support or the query set.
"""

from __future__ import annotations

import importlib
import platform
from dataclasses import dataclass

import torch
from torch import nn

from mamlviz.algorithms import make_learner
from mamlviz.core.episode import Episode, Examples
from mamlviz.core.outer import meta_gradient
from mamlviz.training import hub

REINSTALL = "rebuild the environment: delete .venv and run ./course lab"


@dataclass(frozen=True)
class Check:
    """One line of the environment check: ``fix`` says what to do when ``ok`` is False."""

    name: str
    ok: bool
    detail: str
    fix: str = ""

    def __str__(self) -> str:
        mark = "ok  " if self.ok else "FAIL"
        return f"{mark} {self.name}: {self.detail}" + ("" if self.ok else f" -> {self.fix}")


def closed_form_meta_gradient(w: float, alpha: float, episode: Episode) -> float:
    """The one-step MAML meta-gradient of y = w x under MSE, from the formula above."""
    (xs, ys), (xq, yq) = episode.support, episode.query
    sxx, sxy = float((xs * xs).mean()), float((xs * ys).mean())
    qxx, qxy = float((xq * xq).mean()), float((xq * yq).mean())
    phi = w - alpha * 2 * (w * sxx - sxy)
    return (1 - 2 * alpha * sxx) * 2 * (phi * qxx - qxy)


def meta_gradient_check(w: float = 0.7, alpha: float = 0.1) -> tuple[float, float]:
    """(package's meta-gradient, closed form) in float64 on a fixed linear task."""
    g = torch.Generator().manual_seed(0)
    x = torch.randn(1, 15, 1, generator=g, dtype=torch.float64)
    y = 1.3 * x + 0.1 * torch.randn(1, 15, 1, generator=g, dtype=torch.float64)
    episode = Episode(Examples(x[:, :5], y[:, :5]), Examples(x[:, 5:], y[:, 5:]))
    model = nn.Linear(1, 1, bias=False).double()
    learner = make_learner("maml", model, "mse", inner_lr=alpha, inner_steps=1)
    meta = {"weight": torch.full((1, 1), w, dtype=torch.float64)}
    grads, _ = meta_gradient(learner, meta, episode)
    return float(grads["weight"]), closed_form_meta_gradient(w, alpha, episode.task(0))


def version_of(module: str) -> str | None:
    try:
        return str(importlib.import_module(module).__version__)
    except (ImportError, AttributeError):
        return None


def at_least(version: str | None, minimum: tuple[int, ...]) -> bool:
    if version is None:
        return False
    parts = []
    for piece in version.split("+")[0].split(".")[: len(minimum)]:
        digits = "".join(ch for ch in piece if ch.isdigit())
        parts.append(int(digits or 0))
    return tuple(parts) >= minimum


def environment_check() -> list[Check]:
    """Versions, the widget front end, a meta-gradient against its closed form, checkpoints."""
    checks = []
    python = platform.python_version()
    checks.append(
        Check("python", at_least(python, (3, 10)), python, "install Python 3.10 or newer")
    )
    wanted = {
        "torch": (2, 4),
        "ipywidgets": (8, 0),
        "plotly": (5, 0),
        "matplotlib": (3, 5),
        "jupyterlab_widgets": (3, 0),  # the front end that draws ipywidgets in JupyterLab
    }
    for module, minimum in wanted.items():
        found = version_of(module)
        need = ".".join(map(str, minimum))
        detail = f"{found} (need >= {need})" if found else f"missing (need >= {need})"
        checks.append(Check(module, at_least(found, minimum), detail, REINSTALL))
    if at_least(version_of("plotly"), (6, 0)):
        found = version_of("anywidget")
        checks.append(
            Check(
                "anywidget",
                found is not None,
                found or "missing (plotly >= 6 needs it for live figures)",
                REINSTALL,
            )
        )
    ours, exact = meta_gradient_check()
    error = abs(ours - exact)
    checks.append(
        Check(
            "meta-gradient",
            error < 1e-12 * max(1.0, abs(exact)),
            f"package {ours:.15f}, closed form {exact:.15f}, |difference| {error:.1e}",
            "the engine disagrees with the formula: report it, with this output and `pip freeze`",
        )
    )
    names = hub.available()
    broken = []
    for name in names:
        try:
            hub.load(name)
        except Exception as err:  # any failure to load is what this check reports
            broken.append(f"{name} ({type(err).__name__})")
    checks.append(
        Check(
            "checkpoints",
            bool(names) and not broken,
            f"{len(names) - len(broken)} of {len(names)} load and verify"
            + (f"; broken: {', '.join(broken)}" if broken else ""),
            "restore them from the repository: git checkout -- mamlviz/checkpoints",
        )
    )
    return checks
