"""The package's cache folder, shared by every layer: env ``MAMLVIZ_CACHE``, else
``~/.cache/mamlviz``. It holds the preprocessed Omniglot arrays (``omniglot/``) and the
compiled meta-step's kernels (``inductor/``), things that are slow to make and safe to delete.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path

ENV_CACHE = "MAMLVIZ_CACHE"
INDUCTOR_ENV = "TORCHINDUCTOR_CACHE_DIR"
# The user's own choice of inductor cache, read before anything runs: torch sets this variable
# to its default (a folder under /tmp) once inductor is imported, so a later read cannot tell.
USER_INDUCTOR_CACHE = os.environ.get(INDUCTOR_ENV)


def default_cache_dir() -> Path:
    """The mamlviz cache root: env ``MAMLVIZ_CACHE``, else ``~/.cache/mamlviz``."""
    value = os.environ.get(ENV_CACHE)
    return Path(value).expanduser() if value else Path.home() / ".cache" / "mamlviz"


def use_inductor_cache() -> str:
    """Point torch.compile's kernel cache at ``<cache>/inductor`` unless the user chose a folder
    (``TORCHINDUCTOR_CACHE_DIR`` set before mamlviz was imported); returns the folder."""
    folder = USER_INDUCTOR_CACHE or str(default_cache_dir() / "inductor")
    os.environ[INDUCTOR_ENV] = folder
    return folder


@contextlib.contextmanager
def inductor_cache(folder: str | os.PathLike[str]) -> Iterator[str]:
    """torch.compile's kernels in ``folder`` for the duration (benchmarks time a cold cache in
    an empty one; tests keep the user's cache untouched)."""
    global USER_INDUCTOR_CACHE
    saved = USER_INDUCTOR_CACHE, os.environ.get(INDUCTOR_ENV)
    USER_INDUCTOR_CACHE = str(folder)
    os.environ[INDUCTOR_ENV] = str(folder)
    try:
        yield str(folder)
    finally:
        USER_INDUCTOR_CACHE = saved[0]
        if saved[1] is None:
            os.environ.pop(INDUCTOR_ENV, None)
        else:
            os.environ[INDUCTOR_ENV] = saved[1]
