"""mamlviz: optimization-based meta-learning (MAML and its family), built to be read and seen.

The core is functional: fast weights are ``dict[str, Tensor]`` (:mod:`mamlviz.functional`),
one inner loop serves every algorithm (:func:`mamlviz.inner.adapt`), and each algorithm is a
registry row (:mod:`mamlviz.algorithms`).
"""

from mamlviz.algorithms import ALGORITHMS, get_algorithm, make_learner
from mamlviz.errors import DivergenceError
from mamlviz.inner import Trajectory, adapt
from mamlviz.outer import meta_gradient, meta_step
from mamlviz.tasks import Episode, Examples

__version__ = "0.1.0"

__all__ = [
    "ALGORITHMS",
    "DivergenceError",
    "Episode",
    "Examples",
    "Trajectory",
    "__version__",
    "adapt",
    "get_algorithm",
    "make_learner",
    "meta_gradient",
    "meta_step",
]
