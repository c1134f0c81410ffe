"""When the suite runs the chapters (nbval), point them at a local Omniglot copy.

The Omniglot chapters read the data through the users' own mechanism, ``MAMLVIZ_OMNIGLOT``.
If it is unset and a copy lies in ``shared/data/omniglot`` beside the repository (where the
test suite's fixtures find it too), the kernels nbval starts inherit it. A learner sets the
variable, or lets the package download and verify the data (README, "Omniglot").
"""

from __future__ import annotations

import os
from pathlib import Path

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "omniglot"

if "MAMLVIZ_OMNIGLOT" not in os.environ and SHARED.is_dir():
    os.environ["MAMLVIZ_OMNIGLOT"] = str(SHARED)
