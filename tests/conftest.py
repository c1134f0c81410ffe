"""Shared pytest fixtures."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import pytest
import torch

from mamlviz import Episode, SinusoidTasks
from mamlviz.models import MLP


@pytest.fixture(scope="session")
def omniglot_dir() -> Path:
    """The Omniglot folder: ``MAMLVIZ_OMNIGLOT`` if set, else ``../shared/data/omniglot``."""
    shared = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "omniglot"
    path = Path(os.environ.get("MAMLVIZ_OMNIGLOT") or shared)
    if not path.is_dir():
        message = f"Omniglot copy not found at {path} (see its SOURCE.md for how it is made)"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    return path


@pytest.fixture(scope="session")
def omniglot_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One preprocessed-image cache folder for the whole session (made on first load)."""
    return tmp_path_factory.mktemp("omniglot_cache")


@pytest.fixture(scope="session")
def omniglot_tasks(omniglot_dir: Path, omniglot_cache: Path):
    """The Omniglot sampler over the shared copy."""
    from mamlviz.tasks.omniglot import OmniglotTasks
    from mamlviz.tasks.omniglot_data import load_omniglot

    return OmniglotTasks(load_omniglot(root=omniglot_dir, cache_dir=omniglot_cache, progress=False))


@pytest.fixture
def omniglot_env(omniglot_dir: Path, omniglot_cache: Path, monkeypatch: pytest.MonkeyPatch):
    """The package pointed at the shared copy through the users' own mechanism
    (``MAMLVIZ_OMNIGLOT``), with the session's cache; the problem's sampler is rebuilt."""
    from mamlviz.training import omniglot_problem

    monkeypatch.setenv("MAMLVIZ_OMNIGLOT", str(omniglot_dir))
    monkeypatch.setenv("MAMLVIZ_CACHE", str(omniglot_cache))
    omniglot_problem.omniglot_tasks.cache_clear()
    yield
    omniglot_problem.omniglot_tasks.cache_clear()


@pytest.fixture(scope="module")
def one_thread_module():
    """One thread for a whole module, module-scoped fixtures included (shipped evaluations)."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


@pytest.fixture
def float64():
    """float64 as the default dtype for one test (closed forms, finite differences, gradcheck);
    the default is restored afterwards. Modules opt in with
    ``pytestmark = pytest.mark.usefixtures("float64")``."""
    previous = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    yield
    torch.set_default_dtype(previous)


@pytest.fixture
def tiny_sinusoid() -> Callable[..., tuple[MLP, Episode]]:
    """Factory of the tiny float64 problem the engine's exact tests share:
    ``tiny_sinusoid(seed=0, tasks=4, hidden=(8, 8), shots=5, query_shots=7)`` gives a seeded
    MLP 1-h-h-1 in float64 and a meta-batch of ``tasks`` sinusoid tasks in float64."""

    def make(
        seed: int = 0,
        tasks: int = 4,
        hidden: tuple[int, ...] = (8, 8),
        shots: int = 5,
        query_shots: int = 7,
    ) -> tuple[MLP, Episode]:
        torch.manual_seed(seed)
        model = MLP(1, hidden, 1).double()
        generator = torch.Generator().manual_seed(seed)
        episode = SinusoidTasks().sample(generator, shots, query_shots, tasks, torch.float64)
        return model, episode

    return make


@pytest.fixture(autouse=True)
def one_torch_thread():
    """One intra-op thread per test: the workloads here are tiny and dispatch-bound, and two
    threads on a busy 2-core machine made sinusoid steps many times slower."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


@pytest.fixture(scope="session")
def synthetic_omniglot() -> Callable[..., object]:
    """Factory of tiny Omniglot-shaped task distributions of random images (no data needed):
    ``synthetic_omniglot(classes=8, seed=0, train_classes=6, val_classes=2)``."""
    from mamlviz.tasks.omniglot import OmniglotTasks, make_split
    from mamlviz.tasks.omniglot_data import OmniglotArrays

    def make(classes: int = 8, seed: int = 0, train_classes: int = 6, val_classes: int = 2):
        generator = torch.Generator().manual_seed(seed)
        shape = (classes, 20, 28, 28)
        images = torch.randint(0, 256, shape, generator=generator, dtype=torch.uint8)
        arrays = OmniglotArrays(
            images,
            [f"alphabet{i // 4}" for i in range(classes)],
            [f"character{i % 4 + 1:02d}" for i in range(classes)],
            torch.arange(classes) < classes // 2,
        )
        split = make_split(arrays, train_classes=train_classes, val_classes=val_classes)
        return OmniglotTasks(arrays, split)

    return make
