"""The package's cache folder, shared by every layer: env ``MAMLVIZ_CACHE``, else
``~/.cache/mamlviz``. It holds the preprocessed Omniglot arrays (``omniglot/``) and the
compiled meta-step's kernels (``inductor/``), things that are slow to make and safe to delete.
"""

from __future__ import annotations

import os
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
