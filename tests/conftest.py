"""Shared pytest fixtures."""

from __future__ import annotations

import os
from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def omniglot_dir() -> Path:
    """The shared read-only Omniglot copy next to the repo (``../shared/data/omniglot``)."""
    path = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "omniglot"
    if not path.is_dir():
        message = f"Omniglot copy not found at {path} (see its SOURCE.md for how it is made)"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    return path


@pytest.fixture(autouse=True)
def one_torch_thread():
    """One intra-op thread per test: the workloads here are tiny and dispatch-bound, and two
    threads on a busy 2-core machine made sinusoid steps many times slower."""
    import torch

    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)
