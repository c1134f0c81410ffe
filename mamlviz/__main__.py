"""``python -m mamlviz``: the command line (:mod:`mamlviz.cli`), in a process of its own."""

import sys

from mamlviz.cli import process_main

sys.exit(process_main())
