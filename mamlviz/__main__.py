"""``python -m mamlviz``: the command line (:mod:`mamlviz.cli`)."""

import sys

from mamlviz.cli import main

sys.exit(main())
