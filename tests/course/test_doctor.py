"""Chapter 00's environment check: its closed form is right, and each check can fail."""

from __future__ import annotations

import torch

from mamlviz.core.episode import Episode, Examples
from mamlviz.course import doctor


def test_closed_form_equals_a_finite_difference_of_the_adapted_query_loss() -> None:
    """d/dw L_query(w - alpha g_support(w)) by central differences, independent of autograd."""
    g = torch.Generator().manual_seed(3)
    x = torch.randn(12, 1, generator=g, dtype=torch.float64)
    y = -0.8 * x + 0.3 * torch.randn(12, 1, generator=g, dtype=torch.float64)
    episode = Episode(Examples(x[:4], y[:4]), Examples(x[4:], y[4:]))
    alpha = 0.15

    def adapted_query_loss(w: float) -> float:
        (xs, ys), (xq, yq) = episode.support, episode.query
        phi = w - alpha * float((2 * (w * xs - ys) * xs).mean())
        return float(((phi * xq - yq) ** 2).mean())

    eps, w = 1e-5, 0.4
    numeric = (adapted_query_loss(w + eps) - adapted_query_loss(w - eps)) / (2 * eps)
    assert abs(doctor.closed_form_meta_gradient(w, alpha, episode) - numeric) < 1e-8


def test_the_package_passes_and_a_wrong_engine_would_fail(monkeypatch) -> None:
    ours, exact = doctor.meta_gradient_check()
    assert abs(ours - exact) < 1e-12
    checks = {c.name: c for c in doctor.environment_check()}
    assert all(c.ok for c in checks.values()), [str(c) for c in checks.values() if not c.ok]
    # an engine 10 % off (say, a dropped or doubled term) must fail the check
    monkeypatch.setattr(doctor, "meta_gradient_check", lambda: (ours / 0.9, exact))
    failed = {c.name: c for c in doctor.environment_check()}["meta-gradient"]
    assert not failed.ok and "report it" in str(failed)


def test_versions_and_checkpoints_can_fail(monkeypatch) -> None:
    assert doctor.at_least("2.13.0+cpu", (2, 4)) and not doctor.at_least("2.3.1", (2, 4))
    assert not doctor.at_least(None, (1,)) and doctor.at_least("8.1.9", (8, 0))

    def broken(name: str):
        raise doctor.hub.ckpt.CheckpointError(name, "checksum mismatch")

    monkeypatch.setattr(doctor.hub, "load", broken)
    check = {c.name: c for c in doctor.environment_check()}["checkpoints"]
    assert not check.ok and "broken" in check.detail and "git checkout" in check.fix
